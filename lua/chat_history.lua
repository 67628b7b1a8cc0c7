#!lua name=chathist
--[[
redis-chat-history: chat message history kept inside Redis.

One Redis Functions library. Every session function takes the three keys of
one session, in this order (see docs/PROTOCOL.md):

  KEYS[1]  <prefix>{<tag>}:m   stream of messages (one entry per message, field "m")
  KEYS[2]  <prefix>{<tag>}:x   hash: the session's token index and meta fields
  KEYS[3]  <prefix>{<tag>}:i   hash: client message id -> stream id (retry dedup)

<tag> is the session id with "%", "{" and "}" percent-encoded, so all keys of a
session share one hash slot and no two sessions can collide.

Errors are replied as "ERR CHATHIST_<CODE> <what was wrong>". A function that
replies an error has written nothing: every argument is checked first.

The index (KEYS[2]) maps each token to its postings: the pages holding a
message with that token. A page is PAGE_MESSAGES consecutive messages,
named by the stream id of its newest; a search reads the pages its tokens
share and judges their messages, so it never returns a message that is gone
or does not match. Fields:
  "\0v"             the index state: '2' indexed (pages); 'N' written with
                    NOINDEX (no postings); 'B' a rebuild is under way, a
                    bounded step per call; '1' (library 1.1, a posting per
                    message) or absent (the hash was lost): a rebuild starts
                    at the next write. Search scans unless it is '2'.
  "\0b"             total bytes of the stored message JSON (for MAXBYTES)
  "\0e"             epoch: the ms time of the first indexed message
  "\0r" <k>         pending record k (k = 1, 2, ...): the stream id of one of
                    the newest messages, not yet in the fields below (1.6;
                    before, its text: the stream holds it); every
                    PENDING_RECORDS of them are folded in, in one pass
  "\0n"             the pending records' count and first stream id
  "\0f"             the JSON bytes of the messages written since the last
                    fold (long messages fold before PENDING_RECORDS of them
                    are pending; trims and deletes do not lower it)
  "\0s"             the sweep's HSCAN cursor, while a sweep is under way:
                    once messages of folded pages are dropped, each fold
                    looks at SWEEP_FIELDS fields and deletes the blocks and
                    tokens that name only pages older than every message
  "\0c"             while the index is rebuilt ("\0v" = 'B'): the last id
                    indexed and the count indexed so far
  "\0B"             while a rebuild recounts "\0b" (it was lost): the bytes
                    of the messages up to "\0c"
  "\0t"             present when a tool-safe trim (TOOLSAFE) had to leave
                    tool results at the window's start: the next tool-safe
                    write goes on removing them
  "\0M"             an upper bound of every stored message JSON's length (the
                    longest ever stored): reads take as many entries at once
                    as their byte budget has room for at that length, one at
                    a time when it is absent (sessions of library 1.2, or a
                    rebuild that measures it again)
  <token>           head: varint first_block, varint next_block, then the
                    newest block of postings
  <token> "\0" <k>  an older, full block k (first_block <= k < next_block)
A posting is varint(2 * (ms - epoch) + has_seq) [varint seq] of a page id.
Blocks hold increasing ids and every id of a block is below the next
block's first, so a fold touches one field per token of its pages: the work
per message is O(its tokens), whatever the session's length. Message types
are indexed as the token "\1" <type>. Tokens never hold a byte below 0x20,
so they cannot collide with the meta fields or block names.

Every call's work is bounded, whatever the session holds (see the budgets
below and "Bounded work" in docs/PROTOCOL.md): long jobs are a series of
calls, or small steps folded into the writes.

Contents (sections in this order):
  1. Constants and budgets
  2. Arguments and keys: errors, key layout, options, message JSON checks
  3. Tokenizer: the same for stored messages and for queries
  4. Postings: varints, blocks, batches of pages added to the index
  5. Writer state: pending records, rebuilds, folds, the sweep, trims
  6. Reading: replies and range bounds
  7. Search: queries, judging, the work meter, cursors, indexed search
  8. Checkpoints: a LangGraph thread's keys, records (and, 1.8, their
     fields), writes, runs of messages (stored short, replied as 1.7 gave
     them), shaped values, the order set's pages, and the budgets of their
     reads
  9. Entry points (fields of API and CP: a chunk has at most 200 local
     names, and sections 1 to 7 take nearly all): chathist_append,
     _import, _delete, _range, _search, _reindex, _clear, _len, _ttl,
     _expire, _version; then (1.4)
     chathist_cp_put, _writes, _get, _list, _more, _drop, _dump, _load,
     _delete, _touch; (1.5) chathist_cp_chain; and their register_function
     calls
]]

------------------------------------------------------------------------------
-- 1. Constants and budgets.
------------------------------------------------------------------------------

local LIBRARY_VERSION = '1.8.0'

local MAX_MESSAGE_BYTES = 1048576    -- one stored message JSON
local EXACT_INTEGER = 9007199254740992  -- 2^53: a stream id's parts up to it are exact numbers
local MAX_IMPORTED_SEQ = 999999999999999  -- appends after an imported id stay below 2^53
local MAX_BATCH_MESSAGES = 10000     -- messages in one append, ids in one delete
local MAX_TTL_SECONDS = 315360000    -- ten years
local MAX_QUERY_BYTES = 4096
local MAX_QUERY_TOKENS = 64
local DEFAULT_SEARCH_LIMIT = 10
local MAX_SEARCH_LIMIT = 1000
local MAX_WINDOW = 1000000000        -- MAXLEN
local MAX_WINDOW_BYTES = 1099511627776  -- MAXBYTES, 1 TiB
local MAX_TOKEN_BYTES = 64
local SEARCHABLE_BYTES = 32768       -- a message is searched by this much of its text
local BLOCK_BYTES = 160              -- a head block this long is rolled into a full block
local MESSAGE_FIELD = 'm'
local INDEX_FORMAT = '2'          -- '1': exact postings (library 1.1), rebuilt on a write
local NOINDEX_FORMAT = 'N'        -- the session keeps no index (NOINDEX)
local BUILDING = 'B'              -- the index is being rebuilt, a step per call
local META_INDEXED = '\0v'
local META_BYTES = '\0b'
local META_EPOCH = '\0e'
local META_SWEEP = '\0s'          -- where the sweep of dead postings goes on (HSCAN cursor)
local META_RECORDS = '\0n'        -- pending records: "<count> <first id>"
local META_FOLDED = '\0f'         -- JSON bytes written since the last fold
local META_CURSOR = '\0c'         -- rebuilding: "<last id indexed> <messages indexed>"
local META_COUNTED = '\0B'        -- rebuilding with "\0b" unknown: bytes up to the cursor
local META_WRITES = '\0k'         -- writes named by a TOKEN so far
local META_LARGEST = '\0M'        -- an upper bound of every stored JSON's length
local META_ORPHANS = '\0t'        -- a tool-safe trim left tool results at the start
local TOKEN_MARK = '\0T'          -- "\0T" <g> <token>: the ids that write replied
local SLOT_MARK = '\0S'           -- "\0S" <g> "." <i>: the token of generation g's write i
local TOKEN_WRITES = 64           -- writes per generation: a token lives 64 to 128 writes
local RECORD_MARK = '\0r'         -- pending record k is the field "\0r" <k>
local PENDING_RECORDS = 64         -- pending records this many are folded into the index
local PENDING_BYTES = 32768        -- ... or fewer, once their messages' JSON is this long
local PAGE_MESSAGES = 32           -- messages per page: a posting names a page, not a message
local SWEEP_FIELDS = 128           -- index fields a sweep step looks at (one step per fold)
local TYPE_TOKEN = '\1'
local BLOCK_MARK = '\0'
-- Work budgets: what one call may do, whatever the session holds.
local SEARCH_JUDGED = 64             -- messages a search call decodes and judges
local SEARCH_ENTRIES = 256           -- stream entries a search call reads
local SEARCH_BYTES = 131072          -- JSON bytes a search call reads
local SEARCH_POSTINGS = 4096         -- postings a search call walks
local TOKENIZE_COST = 3              -- ... and a text byte it tokenizes counts 1 + this many
local BUILD_STEP = 512               -- messages a reindex call indexes
local BUILD_BYTES = 131072           -- ... or fewer, once their JSON is this long
local WRITE_BUILD_STEP = 64          -- messages a write indexes while a rebuild is under way
local TRIM_STEP = 256                -- oldest messages a write removes for MAXLEN / MAXBYTES
local TRIM_BYTES = 262144            -- ... and JSON bytes (beyond what the write added)
local TOOLSAFE_BYTES = 262144        -- JSON bytes a window may read back for a tool call
local GARBAGE_KB = 4096              -- Lua heap after which a call ends with a collection
local COUNT_WORK = false             -- tests: search replies start with its work counts
local HASH_CHUNK = 500               -- fields per HMGET/HSET (stays under Lua's unpack limit)
local SUFFIXES = {':m', ':x', ':i'}
local KEY_TYPES = {'stream', 'hash', 'hash'}

local function fail(code, text)
  return redis.error_reply('ERR CHATHIST_' .. code .. ' ' .. text)
end

------------------------------------------------------------------------------
-- 2. Arguments and keys.
------------------------------------------------------------------------------

-- Frees the garbage of a call that made much of it: the Lua heap is memory
-- that maxmemory does not see.
local function collect_garbage()
  if collectgarbage('count') > GARBAGE_KB then collectgarbage('collect') end
end

-- Checks that keys are exactly the three keys of one session, each absent or
-- of its type; returns an error reply, or nil and whether the session's
-- stream exists.
local function check_keys(keys)
  collect_garbage()  -- what an earlier call's reply left behind
  if #keys ~= 3 then
    return fail('BADKEYS', 'expected 3 keys (messages, index, ids) of one session, got ' .. #keys)
  end
  local base = string.match(keys[1], '^([^{}]*{[^{}]+}):m$')
  if not base then
    return fail('BADKEYS', 'key 1 is not a session messages key "<prefix>{<session>}:m"')
  end
  for i = 2, 3 do
    if keys[i] ~= base .. SUFFIXES[i] then
      return fail('BADKEYS', 'key ' .. i .. ' must be "' .. base .. SUFFIXES[i] .. '"')
    end
  end
  -- Types, of all three keys on every call: a write that failed half-way
  -- on a key of another type would leave half its work behind.
  local exists = false
  for i, expected in ipairs(KEY_TYPES) do
    local actual = redis.call('TYPE', keys[i])['ok']
    if actual ~= 'none' and actual ~= expected then
      return fail('BADKEYS', 'key ' .. i .. ' holds a ' .. actual .. ', not the ' .. expected
        .. ' of a chat session')
    end
    if i == 1 then exists = actual == expected end
  end
  return nil, exists
end

-- How many entries a read may take at once: as many as bytes_left has room
-- for when each is as long as largest (the session's "\0M"), from 1 to cap;
-- 1 when largest is unknown. A read then never takes much more than its
-- budget, however long the messages.
local function read_room(largest, bytes_left, cap)
  if not largest then return 1 end
  return math.max(1, math.min(cap, math.floor(bytes_left / math.max(largest, 1))))
end

-- Parses a decimal integer from min to max; returns the number or nil.
local function parse_count(text, max, min)
  if type(text) ~= 'string' or not string.match(text, '^%d+$') or #text > 15 then
    return nil
  end
  local n = tonumber(text)
  if n > max or n < (min or 0) then return nil end
  return n
end

local function is_stream_id(text)
  return type(text) == 'string'
    and (string.match(text, '^%d+%-%d+$') ~= nil or string.match(text, '^%d+$') ~= nil)
    and #text <= 41
end

-- A full stream id "ms-seq" whose parts Lua numbers hold exactly, as (ms, seq); or nil.
local function parse_full_id(text)
  if type(text) ~= 'string' or #text > 33 then return nil end
  local ms, seq = string.match(text, '^(%d+)%-(%d+)$')
  if not ms or #ms > 15 or #seq > 16 then return nil end
  local seq_number = tonumber(seq)
  if seq_number > EXACT_INTEGER then return nil end
  return tonumber(ms), seq_number
end

-- Reads "NAME value" option pairs (and value-less flags) from args starting
-- at index first, until the end or until a name listed in stop_words.
-- Returns options table and the index of the stop word (or #args + 1), or
-- nil and an error reply.
local function read_options(args, first, allowed, stop_words, flags)
  local options = {}
  local i = first
  while i <= #args do
    local name = string.upper(args[i])
    if stop_words and stop_words[name] then
      return options, i
    end
    if options[name] ~= nil then
      return nil, fail('BADARG', 'option ' .. name .. ' given twice')
    end
    if flags and flags[name] then
      options[name] = true
      i = i + 1
    elseif not allowed[name] then
      return nil, fail('BADARG', 'unknown option "' .. string.sub(args[i], 1, 64) .. '"')
    elseif i == #args then
      return nil, fail('BADARG', 'option ' .. name .. ' needs a value')
    else
      options[name] = args[i + 1]
      i = i + 2
    end
  end
  return options, i
end

-- Parses an optional numeric option; returns the value (or default), or nil
-- and an error reply.
local function count_option(options, name, max, min, default)
  if options[name] == nil then return default end
  local n = parse_count(options[name], max, min)
  if not n then
    return nil, fail('BADARG', name .. ' must be an integer from ' .. (min or 0) .. ' to '
      .. string.format('%.0f', max))
  end
  return n
end

-- True for a decoded JSON array (cjson gives arrays and objects both as tables).
local function is_list(value)
  if type(value) ~= 'table' then return false end
  local count = 0
  for _ in pairs(value) do count = count + 1 end
  return count == #value
end

local MAX_JSON_DEPTH = 128

-- True if a decoded value nests tables no deeper than depth levels.
local function shallow(value, depth)
  if type(value) ~= 'table' then return true end
  if depth == 0 then return false end
  for _, item in pairs(value) do
    if not shallow(item, depth - 1) then return false end
  end
  return true
end

-- True if the JSON text holds only what strict JSON parsers read: cjson also
-- takes hex numbers, inf, nan and text after a NUL byte, which other
-- languages' parsers refuse, so a session holding them could not be read.
local function strict_json(json)
  if string.find(json, '\0', 1, true) then return false end
  local unescaped = json
  if string.find(json, '\\', 1, true) then unescaped = string.gsub(json, '\\.', '') end
  local outside = string.gsub(unescaped, '"[^"]*"', '')
  return not (string.find(outside, '[xX]') or string.find(outside, '[iI][nN][fF]')
    or string.find(outside, '[nN][aA][nN]'))
end

-- Decodes and checks one stored-message JSON; returns the decoded table or
-- nil and an error text.
local function decode_message(json, position)
  if #json > MAX_MESSAGE_BYTES then
    return nil, 'TOOBIG', 'message ' .. position .. ' is ' .. #json
      .. ' bytes, over the limit of ' .. MAX_MESSAGE_BYTES
  end
  local ok, message = pcall(cjson.decode, json)
  if not ok or type(message) ~= 'table' or not strict_json(json) then
    return nil, 'BADMSG', 'message ' .. position .. ' is not a JSON object'
  end
  if not shallow(message, MAX_JSON_DEPTH) then
    return nil, 'BADMSG', 'message ' .. position .. ' nests deeper than ' .. MAX_JSON_DEPTH
      .. ' levels'
  end
  if type(message.type) ~= 'string' or message.type == '' or #message.type > 64
      or string.find(message.type, '%c') then
    return nil, 'BADMSG', 'message ' .. position .. ' has no "type" string'
  end
  local data = message.data
  if type(data) ~= 'table' then
    return nil, 'BADMSG', 'message ' .. position .. ' has no "data" object'
  end
  if type(data.content) ~= 'string' and not is_list(data.content) then
    return nil, 'BADMSG', 'message ' .. position .. ' has no "data.content" (string or list)'
  end
  return message
end

-- A stored JSON decoded without checks (it was checked when stored); nil if unreadable.
local function decode_stored(json)
  local ok, message = pcall(cjson.decode, json)
  if ok and type(message) == 'table' and type(message.data) == 'table' then return message end
  return nil
end

-- True if a stored JSON is a tool message (a tool call's result). A JSON
-- with \u escapes (which may spell "tool") is decoded to know.
local function is_tool(json)
  if not string.find(json, '"type"%s*:%s*"tool"') and not string.find(json, '\\u', 1, true) then
    return false
  end
  local message = decode_stored(json)
  return message ~= nil and message.type == 'tool'
end

-- The client-assigned id of a decoded message (LangChain's message.id), or nil.
local function client_id(message)
  local id = message.data.id
  if type(id) == 'string' and id ~= '' then return id end
  return nil
end

-- After a write: with ttl > 0, every key of the session expires ttl seconds
-- from now; with ttl 0, keys the call created inherit the messages' expiry so
-- no part of a session outlives the rest.
local function refresh_ttl(keys, ttl)
  if ttl > 0 then
    for i = 1, #keys do
      redis.call('EXPIRE', keys[i], ttl)
    end
    return
  end
  local remaining = redis.call('PTTL', keys[1])
  if remaining > 0 then
    for i = 2, #keys do
      if redis.call('PTTL', keys[i]) == -1 then
        redis.call('PEXPIRE', keys[i], remaining)
      end
    end
  end
end

-- The stream id stored for a client message id, if that entry still exists
-- (the messages key may have been evicted or trimmed since).
-- Reading an entry copies it: a call reads entries to check while
-- budget.bytes lasts (twice the JSON it carries and 256 KiB, and one entry
-- more, however long the messages its ids name); past that it trusts the
-- id map, which the library clears of every message it deletes or trims,
-- if the stream is there (a stream evicted alone leaves the map behind).
local function stored_id(keys, id, budget)
  local existing = redis.call('HGET', keys[3], id)
  if not existing then return nil end
  if budget.bytes <= 0 then
    if budget.stream == nil then budget.stream = redis.call('EXISTS', keys[1]) == 1 end
    return budget.stream and existing or nil
  end
  local entry = redis.call('XRANGE', keys[1], existing, existing)[1]
  if not entry then return nil end
  budget.bytes = budget.bytes - #entry[2][2]
  return existing
end

------------------------------------------------------------------------------
-- 3. Tokenizer: the same for stored messages and for queries.
------------------------------------------------------------------------------

-- Code point classes: a letter kept inside words, a character that is a token
-- by itself (CJK, emoji), or a separator.
local WORD, SINGLE, SEPARATOR = 1, 2, 3

local function classify(cp)
  if cp < 0xC0 then
    if cp == 0xAA or cp == 0xB5 or cp == 0xBA then return WORD end
    return SEPARATOR
  end
  if cp == 0xD7 or cp == 0xF7 then return SEPARATOR end
  if cp < 0x0370 then return WORD end                        -- Latin, IPA, combining marks
  if cp < 0x0530 then                                         -- Greek, Cyrillic
    if cp == 0x037E or cp == 0x0387 or cp == 0x0375 or cp == 0x0482 then return SEPARATOR end
    return WORD
  end
  if cp < 0x1100 then return WORD end                        -- other alphabets: whole words
  if cp < 0x1200 then return SINGLE end                      -- Hangul jamo
  if cp < 0x2000 then return WORD end                        -- incl. Latin Extended Additional
  if cp < 0x2600 then return SEPARATOR end                   -- punctuation, symbols, arrows
  if cp < 0x27C0 then return SINGLE end                      -- misc symbols, dingbats (emoji)
  if cp < 0x2E80 then return SEPARATOR end
  if cp < 0x3000 then return SINGLE end                      -- CJK radicals
  if cp < 0x3040 then return SEPARATOR end                   -- CJK punctuation
  if cp == 0x30FB then return SEPARATOR end                  -- katakana middle dot
  if cp < 0xA000 then return SINGLE end                      -- kana, jamo, CJK ideographs
  if cp < 0xAC00 then return WORD end
  if cp < 0xD7B0 then return SINGLE end                      -- Hangul syllables
  if cp < 0xF900 then return SEPARATOR end                   -- surrogates, private use
  if cp < 0xFB00 then return SINGLE end                      -- CJK compatibility ideographs
  if cp < 0xFE00 then return WORD end
  if cp < 0xFF10 then return SEPARATOR end                   -- variation selectors, forms
  if cp < 0xFF1A or (cp >= 0xFF21 and cp < 0xFF3B) or (cp >= 0xFF41 and cp < 0xFF5B) then
    return WORD                                              -- fullwidth digits and letters
  end
  if cp >= 0xFF66 and cp < 0xFFA0 then return SINGLE end     -- halfwidth katakana
  if cp < 0x10000 then return SEPARATOR end
  if cp >= 0x1F3FB and cp <= 0x1F3FF then return SEPARATOR end  -- skin tone modifiers
  if cp >= 0x1F000 and cp < 0x1FB00 then return SINGLE end   -- emoji
  if cp >= 0x20000 and cp < 0x32000 then return SINGLE end   -- CJK extensions
  if cp >= 0xE0000 then return SEPARATOR end                 -- tags, private use
  return WORD
end

-- The lower-case form of a letter where Unicode's simple case folding is a
-- fixed offset (Latin-1, Latin Extended-A, Greek, Cyrillic, fullwidth Latin).
local function fold(cp)
  if cp < 0x0100 then
    if cp >= 0x41 and cp <= 0x5A then return cp + 32 end
    if cp >= 0xC0 and cp <= 0xDE and cp ~= 0xD7 then return cp + 32 end
    return cp
  end
  if cp < 0x0180 then
    if cp == 0x0178 then return 0xFF end
    if (cp < 0x0138 or (cp >= 0x014A and cp < 0x0178)) then
      return cp % 2 == 0 and cp + 1 or cp
    end
    if (cp >= 0x0139 and cp < 0x0149) or (cp >= 0x0179 and cp < 0x017F) then
      return cp % 2 == 1 and cp + 1 or cp
    end
    return cp
  end
  if cp >= 0x0386 and cp < 0x03D0 then
    if cp >= 0x0391 and cp <= 0x03AB and cp ~= 0x03A2 then return cp + 32 end
    if cp == 0x0386 then return 0x03AC end
    if cp >= 0x0388 and cp <= 0x038A then return cp + 37 end
    if cp == 0x038C then return 0x03CC end
    if cp == 0x038E or cp == 0x038F then return cp + 63 end
    if cp == 0x03C2 then return 0x03C3 end
    return cp
  end
  if cp >= 0x0400 and cp < 0x0500 then
    if cp < 0x0410 then return cp + 80 end
    if cp < 0x0430 then return cp + 32 end
    if (cp >= 0x0460 and cp < 0x0482) or (cp >= 0x048A and cp < 0x04C0)
        or (cp >= 0x04D0) then
      return cp % 2 == 0 and cp + 1 or cp
    end
    if cp >= 0x04C1 and cp < 0x04CF then return cp % 2 == 1 and cp + 1 or cp end
    return cp
  end
  if cp >= 0x1E00 and cp < 0x1F00 and (cp < 0x1E96 or cp >= 0x1EA0) then
    return cp % 2 == 0 and cp + 1 or cp
  end
  if cp >= 0xFF21 and cp <= 0xFF3A then return cp - 0xFF21 + 0x61 end   -- fullwidth A-Z
  if cp >= 0xFF41 and cp <= 0xFF5A then return cp - 0xFF41 + 0x61 end   -- fullwidth a-z
  if cp >= 0xFF10 and cp <= 0xFF19 then return cp - 0xFF10 + 0x30 end   -- fullwidth 0-9
  return cp
end

local function utf8_char(cp)
  if cp < 0x80 then return string.char(cp) end
  if cp < 0x800 then
    return string.char(0xC0 + math.floor(cp / 64), 0x80 + cp % 64)
  end
  if cp < 0x10000 then
    return string.char(0xE0 + math.floor(cp / 4096), 0x80 + math.floor(cp / 64) % 64,
      0x80 + cp % 64)
  end
  return string.char(0xF0 + math.floor(cp / 262144), 0x80 + math.floor(cp / 4096) % 64,
    0x80 + math.floor(cp / 64) % 64, 0x80 + cp % 64)
end

-- Decodes the UTF-8 character at byte i of s: code point and next index.
-- A malformed byte decodes as -1 (a separator) of length 1.
local function utf8_at(s, i)
  local b = string.byte(s, i)
  local length, cp
  if b < 0x80 then return b, i + 1
  elseif b >= 0xF0 and b < 0xF5 then length, cp = 4, b - 0xF0
  elseif b >= 0xE0 then length, cp = 3, b - 0xE0
  elseif b >= 0xC2 and b < 0xE0 then length, cp = 2, b - 0xC0
  else return -1, i + 1 end
  for j = i + 1, i + length - 1 do
    local c = string.byte(s, j)
    if not c or c < 0x80 or c >= 0xC0 then return -1, i + 1 end
    cp = cp * 64 + c - 0x80
  end
  return cp, i + length
end

-- Splits a run of non-ASCII-punctuation bytes that holds UTF-8 into tokens.
-- joined[n] is set when token n is a single character written right after
-- the previous single character (a CJK run, an implicit phrase).
local function tokenize_unicode(run, tokens, joined, offset)
  local word, word_bytes, full = {}, 0, false
  local previous_single = false
  local function flush()
    if word_bytes > 0 then
      tokens[#tokens + 1] = table.concat(word)
      word, word_bytes = {}, 0
    end
    full = false
  end
  local i, n = 1, #run
  while i <= n do
    local cp, next_i = utf8_at(run, i)
    local class
    if cp < 0 then class = SEPARATOR elseif cp < 0x80 then class = WORD else class = classify(cp) end
    if class == WORD then
      local char = utf8_char(fold(cp))
      if not full and word_bytes + #char <= MAX_TOKEN_BYTES then
        word[#word + 1] = char
        word_bytes = word_bytes + #char
      else
        full = true  -- the token is the word's first MAX_TOKEN_BYTES, cut at a character
      end
      previous_single = false
    elseif class == SINGLE then
      flush()
      tokens[#tokens + 1] = utf8_char(cp)
      if joined and previous_single then joined[offset + #tokens] = true end
      previous_single = true
    else
      flush()
      previous_single = false
    end
    i = next_i
  end
  flush()
end

-- True if text holds a byte above 127. (An anchored pattern runs in one
-- pass of C; an unanchored one restarts at every byte.)
local function has_non_ascii(text)
  return not string.find(text, '^[^\128-\255]*$')
end

-- Calls emit(token) for each token of text, in order (see docs/PROTOCOL.md).
-- ASCII text takes a fast path with the same result.
local function each_token(text, emit, joined, tokens)
  if not has_non_ascii(text) then
    for word in string.gmatch(string.lower(text), '%w+') do
      emit(#word > MAX_TOKEN_BYTES and string.sub(word, 1, MAX_TOKEN_BYTES) or word)
    end
    return
  end
  for run in string.gmatch(text, '[%w\128-\255]+') do
    if has_non_ascii(run) then
      local found = {}
      tokenize_unicode(run, found, joined, tokens and #tokens or 0)
      for _, token in ipairs(found) do emit(token) end
    else
      emit(string.lower(#run > MAX_TOKEN_BYTES and string.sub(run, 1, MAX_TOKEN_BYTES) or run))
    end
  end
end

-- Appends the tokens of text to the list tokens, in order.
local function tokenize(text, tokens, joined)
  each_token(text, function(token) tokens[#tokens + 1] = token end, joined, tokens)
  return tokens
end

-- Calls visit with each piece of a message's searchable text: string
-- content, or the string items and "text" fields of list content.
-- The first n bytes of text, cut back to the start of a character.
local function utf8_cut(text, n)
  if #text <= n then return text end
  local stop = n
  while stop > 0 do
    local b = string.byte(text, stop + 1)
    if b < 0x80 or b >= 0xC0 then break end
    stop = stop - 1
  end
  return string.sub(text, 1, stop)
end

-- Calls visit with each text piece of a message (its string content, or its
-- string and text parts), in order, cut so that together they hold at most
-- SEARCHABLE_BYTES: the searchable text, whose tokenizing stays bounded
-- however long the message.
local function each_text(message, visit)
  local left = SEARCHABLE_BYTES
  local function take(text)
    if left <= 0 then return end
    local cut = utf8_cut(text, left)
    left = left - #text
    visit(cut)
  end
  local content = message.data.content
  if type(content) == 'string' then
    take(content)
  elseif type(content) == 'table' then
    for _, part in ipairs(content) do
      if type(part) == 'string' then
        take(part)
      elseif type(part) == 'table' and type(part.text) == 'string' then
        take(part.text)
      end
    end
  end
end

-- Calls emit for each token of a message's text.
local function each_message_token(message, emit)
  each_text(message, function(text) each_token(text, emit) end)
end

-- The tokens of a message's text, in order.
-- The tokens of a message's searchable text, in order; tokens.bytes is the
-- length of the text.
local function message_tokens(message)
  local tokens = {bytes = 0}
  each_text(message, function(text)
    tokens.bytes = tokens.bytes + #text
    each_token(text, function(token) tokens[#tokens + 1] = token end)
  end)
  return tokens
end

------------------------------------------------------------------------------
-- 4. Postings: varint-coded stream ids in blocks (see the header comment).
------------------------------------------------------------------------------

local function varint(n)
  if n < 128 then return string.char(n) end
  if n < 16384 then return string.char(n % 128 + 128, math.floor(n / 128)) end
  local bytes = {}
  while n >= 128 do
    bytes[#bytes + 1] = n % 128 + 128
    n = math.floor(n / 128)
  end
  bytes[#bytes + 1] = n
  return string.char(unpack(bytes))
end

local function read_varint(s, pos)
  local n, scale = 0, 1
  while true do
    local b = string.byte(s, pos)
    if b < 128 then return n + b * scale, pos + 1 end
    n = n + (b - 128) * scale
    scale = scale * 128
    pos = pos + 1
  end
end

-- The posting of stream id (ms, seq) in an index whose epoch is the time of
-- its first indexed message: varint(2 * (ms - epoch) + has_seq) [varint seq].
local function posting(epoch, ms, seq)
  if seq == 0 then return varint((ms - epoch) * 2) end
  return varint((ms - epoch) * 2 + 1) .. varint(seq)
end

-- Decodes the posting at pos: ms, seq and the position after it.
local function read_posting(epoch, body, pos)
  local code
  code, pos = read_varint(body, pos)
  local seq = 0
  if code % 2 == 1 then seq, pos = read_varint(body, pos) end
  return epoch + (code - code % 2) / 2, seq, pos
end

local function id_after(ams, aseq, bms, bseq)
  return ams > bms or (ams == bms and aseq > bseq)
end

local function format_id(ms, seq)
  return string.format('%.0f-%.0f', ms, seq)
end

-- Parses a head value: first block, next block, and where its postings start.
local function parse_head(head)
  local first_block, pos = read_varint(head, 1)
  local next_block
  next_block, pos = read_varint(head, pos)
  return first_block, next_block, pos
end

local function head_value(first_block, next_block, postings)
  return varint(first_block) .. varint(next_block) .. postings
end

-- Block k's name suffix, "\0" <k>, made once per k (number formatting is
-- slow in Lua).
local block_suffixes = {}

local function block_field(term, k)
  local suffix = block_suffixes[k]
  if not suffix then
    suffix = BLOCK_MARK .. k
    block_suffixes[k] = suffix
  end
  return term .. suffix
end

-- Decodes the postings of a block from pos into ascending lists ms, seq and
-- their byte offsets (start of each posting), for splicing.
local function decode_block(epoch, body, pos)
  local ms, seq, starts = {}, {}, {}
  local n = #body
  while pos <= n do
    starts[#starts + 1] = pos
    ms[#ms + 1], seq[#seq + 1], pos = read_posting(epoch, body, pos)
  end
  return ms, seq, starts
end

-- Reads hash fields in chunks; returns a table field -> value (or false).
local function hash_get_many(key, fields)
  local values = {}
  for first = 1, #fields, HASH_CHUNK do
    local last = math.min(first + HASH_CHUNK - 1, #fields)
    local reply = redis.call('HMGET', key, unpack(fields, first, last))
    for i = first, last do values[fields[i]] = reply[i - first + 1] end
  end
  return values
end

-- Writes field -> value pairs (a flat list) in chunks.
local function hash_set_many(key, pairs_list)
  for first = 1, #pairs_list, 2 * HASH_CHUNK do
    local last = math.min(first + 2 * HASH_CHUNK - 1, #pairs_list)
    redis.call('HSET', key, unpack(pairs_list, first, last))
  end
end

-- The index epoch: the time of the first message indexed (set by the first
-- call that indexes, from the first id it indexes).
local function index_epoch(index_key, first_ms)
  local epoch = redis.call('HGET', index_key, META_EPOCH)
  if epoch then return tonumber(epoch) end
  if first_ms then redis.call('HSET', index_key, META_EPOCH, string.format('%.0f', first_ms)) end
  return first_ms
end

-- The position after the binary posting at pos.
local function skip_posting(postings, pos)
  local code
  code, pos = read_varint(postings, pos)
  if code % 2 == 1 then
    local _
    _, pos = read_varint(postings, pos)
  end
  return pos
end

-- Appends binary postings (one string, ascending) to a term's head (nil
-- when it has none). A head block that reaches BLOCK_BYTES moves to the
-- next numbered field and later postings start a new one. Adds the writes
-- to the list writes.
local function extend_head(term, head, postings, writes)
  head = head or '\1\1'
  if #head + #postings <= BLOCK_BYTES then
    writes[#writes + 1] = term
    writes[#writes + 1] = head .. postings
    return
  end
  local first_block, next_block, pos = parse_head(head)
  local body = string.sub(head, pos)
  if #postings <= BLOCK_BYTES then
    -- The common case: the head's postings and the new ones make one block.
    writes[#writes + 1] = block_field(term, next_block)
    writes[#writes + 1] = body .. postings
    writes[#writes + 1] = term
    writes[#writes + 1] = head_value(first_block, next_block + 1, '')
    return
  end
  local size, start, at = #body, 1, 1
  while at <= #postings do
    if size >= BLOCK_BYTES then
      writes[#writes + 1] = block_field(term, next_block)
      writes[#writes + 1] = body .. string.sub(postings, start, at - 1)
      next_block = next_block + 1
      body, size, start = '', 0, at
    end
    local after = skip_posting(postings, at)
    size = size + after - at
    at = after
  end
  writes[#writes + 1] = term
  writes[#writes + 1] = head_value(first_block, next_block, body .. string.sub(postings, start))
end

-- A batch of postings to add, relative to the index epoch: the page ids,
-- in increasing order (their binary postings in bin), the distinct terms in
-- first-seen order, and for each term the last page position holding it
-- (last) and, for a term held by several pages, its postings (more): joined
-- as they come when the batch has few pages, else a list of positions.
local function new_batch(epoch, few)
  return {epoch = epoch, n = 0, ms = {}, seq = {}, bin = {}, terms = {}, last = {},
    more = {}, few = few}
end

-- Starts the terms of the next page, named by its newest id (ms, seq);
-- returns its position.
local function batch_id(batch, ms, seq)
  local n = batch.n + 1
  batch.n, batch.ms[n], batch.seq[n] = n, ms, seq
  batch.bin[n] = posting(batch.epoch, ms, seq)
  return n
end

-- Records that the page at position n (the newest) holds term.
local function batch_term(batch, term, n)
  local last = batch.last
  local seen = last[term]
  if seen == n then return end
  last[term] = n
  if not seen then
    local terms = batch.terms
    terms[#terms + 1] = term
    return
  end
  local more = batch.more[term]
  if batch.few then
    batch.more[term] = (more or batch.bin[seen]) .. batch.bin[n]
  elseif more then
    more[#more + 1] = n
  else
    batch.more[term] = {seen, n}
  end
end

-- The postings of the pages at the positions listed (a term's list of
-- many pages, in a batch that is not few).
local function joined_postings(batch, positions)
  local parts, bin = {}, batch.bin
  for i = 1, #positions do parts[i] = bin[positions[i]] end
  return table.concat(parts)
end

-- Adds a batch's postings to the index: each term's head (all found by one
-- HMGET) is extended and everything is written by one HSET.
local function add_postings(index_key, batch)
  local terms = batch.terms
  if #terms == 0 then return end
  local more, last, bin = batch.more, batch.last, batch.bin
  local writes, count = {}, 0
  for first = 1, #terms, HASH_CHUNK do
    local stop = math.min(first + HASH_CHUNK - 1, #terms)
    local heads = redis.call('HMGET', index_key, unpack(terms, first, stop))
    for i = first, stop do
      local term = terms[i]
      local head = heads[i - first + 1] or '\1\1'
      local postings = more[term]
      if not postings then
        postings = bin[last[term]]
      elseif type(postings) ~= 'string' then
        postings = joined_postings(batch, postings)
      end
      if #head + #postings <= BLOCK_BYTES then
        writes[count + 1] = term
        writes[count + 2] = head .. postings
        count = count + 2
      else
        extend_head(term, head, postings, writes)
        count = #writes
      end
    end
  end
  hash_set_many(index_key, writes)
end

------------------------------------------------------------------------------
-- 5. Writer state.
------------------------------------------------------------------------------

--[[
Writer state: every writer (append, import, delete, reindex) reads the
session's meta fields once, in prepare_write, into one table `state`; the
helpers below change the table, and finish_write saves it in one HSET.

  field      meaning                                  written by
  indexed    the session has an index of format 2     prepare_write,
             and new messages get pending records     start_build, build_step
  building   a rebuild is under way ("\0v" = 'B')     start_build, build_step
  cursor     rebuild: the last id indexed             start_build, build_step
  built      rebuild: messages indexed so far         start_build, build_step
  counting   rebuild recounts the byte total          start_build, build_step
  total      "\0b" (or "\0B" while counting): the    prepare_write,
             JSON bytes of the stored messages        store_messages, trim,
                                                      delete, build_step
  count      pending records, in fields 1..count      prepare_write, add_record
  first      the first pending record's stream id     prepare_write, add_record
  fresh      this call's new records {k, text}        add_record
  removed    record numbers deleted by this call      remove_record
  where      stream id -> record number (lazy)        find_record
  changed    records were added or removed            add_record, remove_record
  unfolded   JSON bytes written since the last fold   prepare_write, add_record,
             ("\0f"); trims do not lower it            finish_write
  sweep      the sweep's HSCAN cursor ("\0s")          prepare_write, finish_write
  dropped    messages of folded pages were removed    forget_entries

finish_write reads them all: it folds the records once there are
PENDING_RECORDS (or PENDING_BYTES of JSON) and saves the rest.
]]

-- Pending postings: the newest messages, one record each, in fields
-- "\0r" <k> (k = 1, 2, ...), written without reading anything back and
-- folded into the index PENDING_RECORDS at a time: one hash update per term
-- and fold instead of one per term and message. A record is stored as its
-- message's stream id (1.6; see RECORDS.texts); its text, made at a fold or
-- a search (or stored so by 1.5), is
--   <stream id> "\0a" <type> "\0" <lower-cased text>    ASCII text, or
--   <stream id> "\0u\0" <term> "\0" <term> ... "\0"    its terms (type first),
-- so that ASCII text, most text, is split into words once, when folded.
local ASCII_RECORD = 97  -- "a"

local function pending_record(stream_id, message)
  local content = message.data.content
  if type(content) == 'string' and not has_non_ascii(content) then
    return stream_id .. '\0a' .. message.type .. '\0'
      .. string.lower(utf8_cut(content, SEARCHABLE_BYTES))
  end
  local pieces, unicode = {}, false
  each_text(message, function(text)
    pieces[#pieces + 1] = text
    unicode = unicode or has_non_ascii(text)
  end)
  if not unicode then
    return stream_id .. '\0a' .. message.type .. '\0' .. string.lower(table.concat(pieces, '\0'))
  end
  local terms = {TYPE_TOKEN .. message.type}
  for _, text in ipairs(pieces) do tokenize(text, terms) end
  return stream_id .. '\0u\0' .. table.concat(terms, '\0') .. '\0'
end

-- The decimal text of small counts, made once each (number formatting is
-- slow in Lua).
local decimals = {}

local function decimal(n)
  local text = decimals[n]
  if not text then
    text = string.format('%d', n)
    if n <= 4 * PENDING_RECORDS then decimals[n] = text end
  end
  return text
end

local function record_field(k)
  return RECORD_MARK .. decimal(k)
end

local RECORDS = {}  -- pending records' helpers (Lua allows 200 locals)

-- The texts of stored pending records (values, in order; those removed,
-- false or in skip, left out), and the stream entries read: since 1.6 the
-- record of an ASCII message is its stream id alone, and the text is made
-- again from the stream (the newest messages' JSON, under PENDING_BYTES, is
-- not kept twice), read in one XRANGE over the records' ids with a COUNT of
-- their number (entries another client added between them are not read)
-- and a record it did not reach alone; other records (1.5's, non-ASCII
-- text) hold their text or terms. A record whose message is gone is left
-- out.
function RECORDS.texts(keys, values, count, skip)
  local low, high, ids = nil, nil, {}
  for k = 1, count do
    local value = values[k]
    if value and not (skip and skip[k]) and not string.find(value, '\0', 1, true) then
      low, high = low or value, value
      ids[#ids + 1] = value
    end
  end
  local found, read = {}, 0
  if low then
    -- At most as many entries as there are records: entries another client
    -- added between them do not make the read longer; a record the read
    -- did not reach is read alone.
    local entries = redis.call('XRANGE', keys[1], low, high, 'COUNT', #ids)
    for _, entry in ipairs(entries) do found[entry[1]] = entry[2][2] end
    read = #entries
    if #entries == #ids then
      for _, id in ipairs(ids) do
        if not found[id] then
          local entry = redis.call('XRANGE', keys[1], id, id)[1]
          if entry then found[id] = entry[2][2] end
          read = read + 1
        end
      end
    end
  end
  local texts = {}
  for k = 1, count do
    local value = values[k]
    if value and not (skip and skip[k]) then
      if string.find(value, '\0', 1, true) then
        texts[#texts + 1] = value
      else
        local message = found[value] and decode_stored(found[value])
        if message then texts[#texts + 1] = pending_record(value, message) end
      end
    end
  end
  return texts, read
end

-- The names of pending record fields 1..count and their values, in order
-- (false for a record since removed).
local function read_records(index_key, count)
  local fields, values = {}, {}
  for k = 1, count do fields[k] = record_field(k) end
  local found = hash_get_many(index_key, fields)
  for k = 1, count do values[k] = found[fields[k]] end
  return fields, values
end

-- Parses a pending record: {id, ms, seq, ascii, type, raw, from}: its text
-- (lower-cased for ASCII records, else "\0" term "\0" term ... "\0") is
-- raw from position from on, searched in place.
function RECORDS.parse(record)
  local cut = string.find(record, '\0', 1, true)
  local id = string.sub(record, 1, cut - 1)
  local ms, seq = parse_full_id(id)
  local parsed = {id = id, ms = ms, seq = seq, raw = record, from = cut + 2, type = false,
    ascii = string.byte(record, cut + 1) == ASCII_RECORD}
  if parsed.ascii then
    local stop = string.find(record, '\0', cut + 2, true)
    parsed.type = string.sub(record, cut + 2, stop - 1)
    parsed.from = stop + 1
  end
  return parsed
end

-- The count and first id of the pending records, from their meta value.
function RECORDS.meta(value)
  if not value then return 0, nil end
  local count, first = string.match(value, '^(%d+) (.*)$')
  return tonumber(count), first
end

-- The pending records stored in the index hash, oldest first, and the
-- stream entries read to make their texts.
local function stored_records(keys, records_meta)
  local records = {}
  local count = RECORDS.meta(records_meta)
  if count == 0 then return records, 0 end
  local _, values = read_records(keys[2], count)
  local texts, read = RECORDS.texts(keys, values, count)
  for _, text in ipairs(texts) do records[#records + 1] = RECORDS.parse(text) end
  return records, read
end

-- The stream id that starts a pending record (or an entry), parsed.
local function record_id(record)
  return parse_full_id(string.match(record, '^[^%z]+'))
end

-- Folds pending records (as written, oldest first) into the index: every
-- PAGE_MESSAGES of them make a page, named by its newest id, and each term
-- gets the postings of the pages holding it.
local function fold_records(index_key, records)
  if #records == 0 then return end
  local gmatch, sub, find, byte = string.gmatch, string.sub, string.find, string.byte
  -- A term's postings over a few pages are joined as they come; over many
  -- (a bulk append), listed and joined once.
  local few = #records <= 4 * PAGE_MESSAGES
  local batch = new_batch(index_epoch(index_key, record_id(records[1])), few)
  local n
  for r, record in ipairs(records) do
    local cut = find(record, '\0', 1, true)
    if (r - 1) % PAGE_MESSAGES == 0 then
      n = batch_id(batch, record_id(records[math.min(r + PAGE_MESSAGES - 1, #records)]))
    end
    local pattern, from = '[^%z]+', cut + 2
    if string.byte(record, cut + 1) == ASCII_RECORD then
      local stop = find(record, '\0', cut + 2, true)
      batch_term(batch, TYPE_TOKEN .. sub(record, cut + 2, stop - 1), n)
      pattern, from = '%w+', stop + 1
    end
    -- batch_term, inlined: this loop runs once per word of every message.
    local last, more, terms, bin = batch.last, batch.more, batch.terms, batch.bin
    local count = #terms
    for term in gmatch(sub(record, from), pattern) do
      if #term > MAX_TOKEN_BYTES and byte(term) ~= 1 then  -- a type stays whole
        term = sub(term, 1, MAX_TOKEN_BYTES)
      end
      local seen = last[term]
      if seen ~= n then
        last[term] = n
        if not seen then
          count = count + 1
          terms[count] = term
        else
          local list = more[term]
          if few then
            more[term] = (list or bin[seen]) .. bin[n]
          elseif list then
            list[#list + 1] = n
          else
            more[term] = {seen, n}
          end
        end
      end
    end
  end
  add_postings(index_key, batch)
end

-- True if the session keeps an index of this library's format (one of
-- library 1.1, or one being rebuilt, is searched by a scan).
local function is_indexed(keys)
  return redis.call('HGET', keys[2], META_INDEXED) == INDEX_FORMAT
end

-- Starts a rebuild of the index: the index hash is dropped (UNLINK frees a
-- large one off the main thread) and build steps index the messages, oldest
-- first, a bounded number per call. total is the byte total of the stored
-- JSON, or nil when it is unknown and is recounted by the same steps.
local function start_build(keys, state, total)
  redis.call('UNLINK', keys[2])
  local writes = {META_INDEXED, BUILDING, META_CURSOR, '0-0 0'}
  writes[5], writes[6] = total and META_BYTES or META_COUNTED, total or 0
  local known = state.largest and not state.sizing  -- not a rebuild's partial measure
  if known then
    writes[7], writes[8] = META_LARGEST, state.largest
  else
    writes[4] = '0-0 0 0'  -- the steps measure "\0M" again
  end
  redis.call('HSET', keys[2], unpack(writes))
  state.sizing, state.largest = not known, known and state.largest or 0
  state.stored_largest = state.largest
  state.indexed, state.building, state.counting = false, true, total == nil
  state.cursor, state.built, state.total = '0-0', 0, total or 0
  state.count, state.first, state.sweep, state.unfolded = 0, nil, nil, 0
end

-- One step of a rebuild: indexes about n messages after the cursor (fewer
-- once their JSON takes BUILD_BYTES), a page of at most PAGE_MESSAGES at a
-- time, and ends the rebuild once it reaches the newest message. Entries
-- are read as many at once as the bytes left have room for ("\0M"), so a
-- step of long messages reads little more than BUILD_BYTES. Writes while a
-- rebuild is under way keep no pending records: the steps index what they
-- add. A rebuild that measures "\0M" again keeps the longest so far in the
-- cursor until it ends.
local function build_step(keys, state, n)
  local batch, counted, done, finished = nil, 0, 0, false
  local low = '(' .. state.cursor
  local known = not state.sizing and state.largest or nil
  while done < n and counted < BUILD_BYTES and not finished do
    local page = {}
    while #page < PAGE_MESSAGES and counted < BUILD_BYTES do
      local want = read_room(known, BUILD_BYTES - counted, PAGE_MESSAGES - #page)
      local entries = redis.call('XRANGE', keys[1], low, '+', 'COUNT', want)
      local taken = 0
      for _, entry in ipairs(entries) do
        page[#page + 1] = entry
        taken = taken + 1
        counted = counted + #entry[2][2]
        if counted >= BUILD_BYTES then break end
      end
      if taken > 0 then low = '(' .. page[#page][1] end
      if #entries < want and taken == #entries then
        finished = true
        break
      end
    end
    if #page == 0 then break end
    batch = batch or new_batch(index_epoch(keys[2], parse_full_id(page[1][1])))
    local named = batch_id(batch, parse_full_id(page[#page][1]))
    for _, entry in ipairs(page) do
      local json = entry[2][2]
      if state.largest and #json > state.largest then state.largest = #json end
      local message = decode_stored(json)
      if message then
        each_message_token(message, function(token) batch_term(batch, token, named) end)
        batch_term(batch, TYPE_TOKEN .. message.type, named)
      end
    end
    done = done + #page
    state.cursor = page[#page][1]
  end
  if batch then add_postings(keys[2], batch) end
  state.built = state.built + done
  if state.counting then state.total = state.total + counted end
  if not finished then
    local cursor = state.cursor .. ' ' .. state.built
    if state.sizing then cursor = cursor .. ' ' .. state.largest end
    redis.call('HSET', keys[2], META_CURSOR, cursor)
    return
  end
  redis.call('HDEL', keys[2], META_CURSOR, META_COUNTED)
  redis.call('HSET', keys[2], META_INDEXED, INDEX_FORMAT, META_FOLDED, 0)
  state.building, state.counting, state.indexed, state.sizing = false, false, true, false
  state.unfolded = 0
end

-- Tokens: a write named by a TOKEN stores the ids it replied in the field
-- "\0T" <g> <token>, where g is its generation (0 or 1, taking turns every
-- TOKEN_WRITES writes), and its token in the slot "\0S" <g> "." <i>. A
-- generation's first write deletes what that generation held two
-- generations ago (TOKEN_WRITES fields, read by one HMGET), so a token is
-- kept for the next TOKEN_WRITES to 2 * TOKEN_WRITES writes, long enough for
-- a retry, and a write finds a retry of itself with two fields of the
-- HMGET it does anyway.

-- The two fields that may hold a token's ids.
local function token_fields(token)
  return TOKEN_MARK .. '0' .. token, TOKEN_MARK .. '1' .. token
end

-- A write's reply as stored: its ids, comma-separated, a run of ids with
-- one ms and consecutive seqs written "ms-seq+n" (n more after the first),
-- so a write of many new messages is remembered in a few bytes.
local function packed_ids(ids)
  local items, i = {}, 1
  while i <= #ids do
    local ms, seq = parse_full_id(ids[i])
    local j = i
    while ms and j < #ids do  -- an id too long to parse stays an item of its own
      local next_ms, next_seq = parse_full_id(ids[j + 1])
      if not next_ms or next_ms ~= ms or next_seq ~= seq + (j + 1 - i) then break end
      j = j + 1
    end
    items[#items + 1] = j > i and (ids[i] .. '+' .. (j - i)) or ids[i]
    i = j + 1
  end
  return table.concat(items, ',')
end

-- The ids a write named token replied (the value of one of its fields), as a list.
local function replayed(value)
  if not value then return nil end
  local list = {}
  for item in string.gmatch(value, '[^,]+') do
    local ms, seq, more = string.match(item, '^(%d+)%-(%d+)%+(%d+)$')
    if ms then
      for k = 0, tonumber(more) do
        list[#list + 1] = ms .. '-' .. string.format('%d', seq + k)
      end
    else
      list[#list + 1] = item
    end
  end
  return list
end

-- Adds the fields that remember state.token (and its reply) to writes, and
-- deletes the oldest generation's when one starts.
local function remember_token(keys, state, writes)
  local count = state.writes
  local generation, slot = math.floor(count / TOKEN_WRITES) % 2, count % TOKEN_WRITES
  if slot == 0 and count >= 2 * TOKEN_WRITES then
    local slots = {}
    for i = 0, TOKEN_WRITES - 1 do slots[#slots + 1] = SLOT_MARK .. generation .. '.' .. i end
    local old = redis.call('HMGET', keys[2], unpack(slots))
    local gone = {}
    for i, name in ipairs(old) do
      if name then gone[#gone + 1] = TOKEN_MARK .. generation .. name end
      gone[#gone + 1] = slots[i]
    end
    redis.call('HDEL', keys[2], unpack(gone))
  end
  local n = #writes
  writes[n + 1], writes[n + 2] = TOKEN_MARK .. generation .. state.token,
    packed_ids(state.replied)
  writes[n + 3], writes[n + 4] = SLOT_MARK .. generation .. '.' .. slot, state.token
  writes[n + 5], writes[n + 6] = META_WRITES, count + 1
end

-- Before a write: the session's state (see "Writer state" above). A session
-- without messages starts over (clearing what an evicted stream left
-- behind) and is indexed unless noindex; one with messages keeps its state.
-- An index of library 1.1, or a lost index hash, starts a rebuild.
local function prepare_write(keys, noindex, exists, token)
  local state = {total = 0, count = 0, first = nil, fresh = {}, removed = {}, changed = false,
    unfolded = 0, indexed = false, building = false, counting = false, writes = 0,
    largest = 0, stored_largest = nil, sizing = false, added = 0, added_bytes = 0}
  if not exists then
    redis.call('UNLINK', keys[2], keys[3])
    redis.call('HSET', keys[2], META_INDEXED, noindex and NOINDEX_FORMAT or INDEX_FORMAT)
    state.indexed = not noindex
    return state
  end
  local first, second = token_fields(token or '')
  local meta = redis.call('HMGET', keys[2], META_INDEXED, META_BYTES, META_RECORDS, META_SWEEP,
    META_FOLDED, META_CURSOR, META_COUNTED, META_WRITES, first, second, META_LARGEST,
    META_ORPHANS)
  local format, total = meta[1], tonumber(meta[2] or nil)
  state.sweep, state.writes = meta[4] or nil, tonumber(meta[8] or nil) or 0
  state.again = token and (meta[9] or meta[10]) or nil
  state.largest = tonumber(meta[11] or nil)
  state.stored_largest = state.largest
  state.orphans, state.stored_orphans = meta[12] ~= false, meta[12] ~= false
  if format == INDEX_FORMAT and total then
    state.indexed, state.total = true, total
    state.count, state.first = RECORDS.meta(meta[3] or nil)
    state.unfolded = tonumber(meta[5] or nil) or 0
  elseif format == NOINDEX_FORMAT and total then
    state.total = total
  elseif format == BUILDING and meta[6] then
    local cursor, built, sizing = string.match(meta[6], '^(%S+) (%d+) ?(%d*)$')
    state.building, state.cursor, state.built = true, cursor, tonumber(built)
    if sizing ~= '' then state.sizing, state.largest = true, tonumber(sizing) end
    state.counting = meta[7] ~= false
    state.total = tonumber(meta[7] or nil) or total or 0
  elseif not format and total then
    -- Written with NOINDEX by library 1.2 or older: the hash holds only "\0b".
    redis.call('HSET', keys[2], META_INDEXED, NOINDEX_FORMAT)
    state.total = total
  else
    -- An index of library 1.1, or an index hash lost (evicted) alone.
    start_build(keys, state, format == '1' and total or nil)
  end
  return state
end

-- Adds the pending record of a message (of bytes of JSON) just stored under
-- stream_id.
local function add_record(state, stream_id, message, bytes)
  state.count = state.count + 1
  state.unfolded = state.unfolded + bytes
  state.first = state.first or stream_id
  -- A record of non-ASCII text keeps its terms (tokenizing them again at
  -- every search of the session would cost far more than the search).
  local text = pending_record(stream_id, message)
  local ascii = string.byte(text, #stream_id + 2) == ASCII_RECORD
  state.fresh[#state.fresh + 1] = {k = state.count, id = stream_id, text = text,
    value = ascii and stream_id or text}
  state.changed = true
end

-- The field number of the pending record of stream id (ms, seq), or nil.
local function find_record(keys, state, stream_id, ms, seq)
  if state.count == 0 then return nil end
  local first_ms, first_seq = parse_full_id(state.first)
  if id_after(first_ms, first_seq, ms, seq) then return nil end
  if not state.where then
    state.where = {}
    local stored = state.count - #state.fresh  -- fresh records are not written yet
    local _, values = read_records(keys[2], stored)
    for k = 1, stored do
      if values[k] then state.where[string.match(values[k], '^[^%z]+')] = k end
    end
    for _, fresh in ipairs(state.fresh) do state.where[fresh.id] = fresh.k end
  end
  return state.where[stream_id]
end

-- Removes the pending record in field k.
local function remove_record(state, k)
  state.removed[k] = true
  state.changed = true
end

-- True if the postings of value from pos on all name pages older than the
-- oldest message (ms, seq): pages whose messages are all gone.
local function all_dead(epoch, value, pos, ms, seq)
  local list_ms, list_seq = decode_block(epoch, value, pos)
  local n = #list_ms
  return n > 0 and id_after(ms, seq, list_ms[n], list_seq[n])
end

-- One step of the sweep that deletes postings of pages whose messages are
-- all gone (trimmed, or deleted from the oldest end): it looks at about
-- SWEEP_FIELDS index fields from cursor on and deletes the blocks, and the
-- terms, that hold only such postings. Returns the next cursor, or nil once
-- the whole index has been looked at.
local function sweep_step(keys, cursor)
  local reply = redis.call('HSCAN', keys[2], cursor, 'COUNT', SWEEP_FIELDS)
  local oldest = redis.call('XRANGE', keys[1], '-', '+', 'COUNT', 1)[1]
  local epoch = tonumber(redis.call('HGET', keys[2], META_EPOCH) or nil)
  local items, dead = reply[2], {}
  if oldest and epoch then
    local ms, seq = parse_full_id(oldest[1])
    for i = 1, #items, 2 do
      local field, value = items[i], items[i + 1]
      if string.byte(field, 1) == 0 then
        -- a meta field or a pending record
      elseif string.find(field, BLOCK_MARK, 2, true) then
        if all_dead(epoch, value, 1, ms, seq) then dead[#dead + 1] = field end
      else
        local first_block, next_block, pos = parse_head(value)
        local newest, at = value, pos
        if pos > #value then
          -- The head's postings all rolled into blocks: its newest block tells.
          newest, at = false, 1
          if next_block > first_block then
            newest = redis.call('HGET', keys[2], block_field(field, next_block - 1))
          end
        end
        if not newest or all_dead(epoch, newest, at, ms, seq) then
          dead[#dead + 1] = field
          for k = first_block, next_block - 1 do dead[#dead + 1] = block_field(field, k) end
        end
      end
    end
  end
  for first = 1, #dead, HASH_CHUNK do
    redis.call('HDEL', keys[2], unpack(dead, first, math.min(first + HASH_CHUNK - 1, #dead)))
  end
  if reply[1] == '0' then return nil end
  return reply[1]
end

-- After a write: saves the byte total and the pending records, folding
-- them into the index once there are PENDING_RECORDS, or once the messages
-- written since the last fold hold PENDING_BYTES of JSON (long messages
-- fold sooner, so a fold's pause stays short), and goes on with the
-- sweep (one step per fold) once messages of folded pages have been dropped.
local function finish_write(keys, state)
  local writes = {state.counting and META_COUNTED or META_BYTES, state.total}
  if state.token then remember_token(keys, state, writes) end
  if state.largest and not state.sizing and state.largest ~= state.stored_largest then
    writes[#writes + 1] = META_LARGEST
    writes[#writes + 1] = state.largest
  end
  if state.orphans and not state.stored_orphans then
    writes[#writes + 1] = META_ORPHANS
    writes[#writes + 1] = '1'
  elseif state.stored_orphans and not state.orphans then
    redis.call('HDEL', keys[2], META_ORPHANS)
  end
  local sweep = state.sweep
  if (state.indexed or state.building) and state.dropped and not sweep then sweep = '0' end
  if state.indexed and state.changed then
    local fresh = {}
    for _, record in ipairs(state.fresh) do
      if not state.removed[record.k] then fresh[#fresh + 1] = record end
    end
    local old = state.count - #state.fresh
    if state.count >= PENDING_RECORDS
        or (state.count > 0 and state.unfolded >= PENDING_BYTES) then
      local fields, values = read_records(keys[2], old)
      local texts = RECORDS.texts(keys, values, old, state.removed)
      for _, record in ipairs(fresh) do
        texts[#texts + 1] = record.text
      end
      fold_records(keys[2], texts)
      if old > 0 then redis.call('HDEL', keys[2], unpack(fields)) end
      redis.call('HDEL', keys[2], META_RECORDS)
      writes[#writes + 1] = META_FOLDED
      writes[#writes + 1] = 0
      if sweep then sweep = sweep_step(keys, sweep) end
    else
      local gone = {}
      for k in pairs(state.removed) do
        if k <= old then gone[#gone + 1] = record_field(k) end
      end
      if #gone > 0 then redis.call('HDEL', keys[2], unpack(gone)) end
      for _, record in ipairs(fresh) do
        writes[#writes + 1] = record_field(record.k)
        writes[#writes + 1] = record.value
      end
      if state.count > 0 then
        writes[#writes + 1] = META_RECORDS
        writes[#writes + 1] = decimal(state.count) .. ' ' .. state.first
        writes[#writes + 1] = META_FOLDED
        writes[#writes + 1] = state.unfolded
      end
    end
  end
  if sweep then
    writes[#writes + 1] = META_SWEEP
    writes[#writes + 1] = sweep
  elseif state.sweep then
    redis.call('HDEL', keys[2], META_SWEEP)
  end
  hash_set_many(keys[2], writes)
end

-- Drops stored entries ({id, {field, json}} as XRANGE gives them) from the
-- index (or the pending postings) and the client-id map; returns the bytes
-- of JSON they held. The caller removes the entries from the stream.
local function forget_entries(keys, entries, state)
  local freed = 0
  local cursor_ms, cursor_seq
  if state.counting then cursor_ms, cursor_seq = parse_full_id(state.cursor) end
  for _, entry in ipairs(entries) do
    local json = entry[2][2]
    local ms, seq = parse_full_id(entry[1])
    -- While bytes are recounted, only messages up to the cursor are counted.
    if not state.counting or not id_after(ms, seq, cursor_ms, cursor_seq) then
      freed = freed + #json
    end
    -- Only a JSON that names an id (or may, with escapes) is decoded to find it.
    local message = (string.find(json, '"id"', 1, true) or string.find(json, '\\u', 1, true))
      and decode_stored(json)
    local id = message and client_id(message)
    if id and redis.call('HGET', keys[3], id) == entry[1] then
      redis.call('HDEL', keys[3], id)
    end
    local k = state.indexed and find_record(keys, state, entry[1], ms, seq)
    if k then
      remove_record(state, k)
    else
      -- Its page's postings stay (search judges every page it reads)
      -- until the sweep finds the whole page gone.
      state.dropped = true
    end
  end
  return freed
end

-- Removes the oldest messages until at most max_count remain and their JSON
-- takes at most max_bytes (the newest message always stays). A call removes
-- at most TRIM_STEP messages and TRIM_BYTES of JSON more than it added: a
-- larger excess (a window just made smaller) goes with the next writes.
-- While the byte total is being recounted, MAXBYTES waits for the count.
-- With toolsafe, a window never starts with tool results: those whose AI
-- message is removed go with it; where the step's bound left some at the
-- window's start, "\0t" asks the next write to go on (a write that removes
-- nothing otherwise leaves the window's start as it was).
local function trim(keys, state, max_count, max_bytes, toolsafe)
  if not max_count and not max_bytes then return end
  local length = redis.call('XLEN', keys[1])
  local by_count = max_count and math.max(length - max_count, 0) or 0
  local by_bytes = max_bytes and not state.counting
  if by_count == 0 and not (by_bytes and state.total > max_bytes)
      and not (toolsafe and state.orphans) then
    return
  end
  local room = math.min(TRIM_STEP + state.added, length - 1)
  local room_bytes = TRIM_BYTES + state.added_bytes
  local known = not state.sizing and state.largest or nil
  local entries, total, taken, low, stop = {}, state.total, 0, '-', false
  -- Takes the next oldest entry while the window asks for it, or (TOOLSAFE)
  -- while it is a tool result, whose call is gone or goes now.
  local function wanted(entry)
    if #entries >= room or taken >= room_bytes then return false end
    if #entries < by_count or (by_bytes and total > max_bytes) then return true end
    return toolsafe and is_tool(entry[2][2])
  end
  while not stop and #entries < room and taken < room_bytes do
    local want = read_room(known, room_bytes - taken,
      math.min(room - #entries, math.max(by_count - #entries, 4)))
    local batch = redis.call('XRANGE', keys[1], low, '+', 'COUNT', want)
    for _, entry in ipairs(batch) do
      if not wanted(entry) then
        stop = true
        break
      end
      entries[#entries + 1] = entry
      total = total - #entry[2][2]
      taken = taken + #entry[2][2]
    end
    if #batch < want then break end
    low = '(' .. batch[#batch][1]
  end
  state.orphans = toolsafe and not stop and (#entries >= room or taken >= room_bytes)
  if #entries == 0 then return end
  state.total = state.total - forget_entries(keys, entries, state)
  redis.call('XTRIM', keys[1], 'MAXLEN', '=', length - #entries)
end

-- Stores decoded messages (with their JSON) under the explicit stream ids
-- in ids, or new ones ("*") when ids is nil; returns the stream ids. A
-- message whose client id is stored already is not stored again.
local function store_messages(keys, jsons, messages, ids, state)
  local stream_ids, seen, budget = {}, {}, {bytes = 262144}
  for _, json in ipairs(jsons) do budget.bytes = budget.bytes + 2 * #json end
  for position, json in ipairs(jsons) do
    local id = client_id(messages[position])
    local existing = id and (seen[id] or stored_id(keys, id, budget))
    if existing then
      stream_ids[position] = existing
    else
      local stream_id = redis.call('XADD', keys[1], ids and ids[position] or '*',
        MESSAGE_FIELD, json)
      if id then
        redis.call('HSET', keys[3], id, stream_id)
        seen[id] = stream_id
      end
      stream_ids[position] = stream_id
      if not state.counting then state.total = state.total + #json end
      state.added, state.added_bytes = state.added + 1, state.added_bytes + #json
      if state.largest and #json > state.largest then state.largest = #json end
      if state.indexed then add_record(state, stream_id, messages[position], #json) end
    end
  end
  return stream_ids
end

-- Decodes and checks message JSONs args[first..last]; returns the decoded
-- list or nil and an error reply.
local function decode_batch(args, first, last, step)
  local count = math.floor((last - first) / step) + 1
  if count > MAX_BATCH_MESSAGES then
    return nil, fail('TOOBIG', 'batch of ' .. count .. ' messages is over the limit of '
      .. MAX_BATCH_MESSAGES)
  end
  local messages, jsons = {}, {}
  for position = 1, count do
    local json = args[first + (position - 1) * step]
    local message, code, text = decode_message(json, position)
    if not message then return nil, fail(code, text) end
    messages[position], jsons[position] = message, json
  end
  return messages, jsons
end

-- Checks the TOKEN option: a write's name for retries; returns the token
-- (or nil), or nil and an error reply.
local function token_option(options)
  local token = options.TOKEN
  if token == nil then return nil end
  if #token > 64 or not string.match(token, '^[%w_%-]+$') then
    return nil, fail('BADARG', 'TOKEN must be 1 to 64 letters, digits, "-" or "_"')
  end
  return token
end

local function ttl_option(options)
  local ttl = count_option(options, 'TTL', MAX_TTL_SECONDS, 0, 0)
  if not ttl then
    return nil, fail('BADARG', 'TTL must be an integer from 0 to ' .. MAX_TTL_SECONDS .. ' seconds')
  end
  return ttl
end

------------------------------------------------------------------------------
-- 6. Reading: replies and range bounds.
------------------------------------------------------------------------------

-- Flattens XRANGE entries into {id1, json1, id2, json2, ...}, oldest first.
local function flatten(entries, reversed)
  local out = {}
  local n = #entries
  for i = 1, n do
    local entry = reversed and entries[n + 1 - i] or entries[i]
    out[#out + 1] = entry[1]
    out[#out + 1] = entry[2][2]
  end
  return out
end

-- A window (entries as XRANGE gives them, or newest first when backward)
-- that does not start with tool results: they are left out (their AI
-- message is older than the window; a page read before this one ends with
-- them), unless that leaves nothing, when the window reaches back to the AI
-- message instead (at most TOOLSAFE_REACH more entries, TOOLSAFE_BYTES of
-- JSON read).
local TOOLSAFE_REACH = 64

local function tool_safe(keys, entries, backward)
  local n = #entries
  local function at(i) return backward and entries[n + 1 - i] or entries[i] end  -- oldest first
  local cut = 0
  while cut < n and is_tool(at(cut + 1)[2][2]) do cut = cut + 1 end
  if cut == 0 then return entries end
  local kept = {}
  if cut < n then
    for i = cut + 1, n do kept[#kept + 1] = at(i) end
  else
    local largest = tonumber(redis.call('HGET', keys[2], META_LARGEST) or nil)
    local older, reach, read, high = {}, 0, 0, '(' .. at(1)[1]
    while reach == 0 and #older < TOOLSAFE_REACH and read < TOOLSAFE_BYTES do
      local want = read_room(largest, TOOLSAFE_BYTES - read, TOOLSAFE_REACH - #older)
      local batch = redis.call('XREVRANGE', keys[1], high, '-', 'COUNT', want)
      for _, entry in ipairs(batch) do
        older[#older + 1] = entry
        read = read + #entry[2][2]
        if not is_tool(entry[2][2]) then
          reach = #older
          break
        end
      end
      if #batch < want then break end
      high = '(' .. batch[#batch][1]
    end
    if reach == 0 then return entries end  -- no call within reach: as it is
    for i = reach, 1, -1 do kept[#kept + 1] = older[i] end
    for i = 1, n do kept[#kept + 1] = at(i) end
  end
  if not backward then return kept end
  local newest_first = {}
  for i = #kept, 1, -1 do newest_first[#newest_first + 1] = kept[i] end
  return newest_first
end

-- Range bounds that exclude an id, or a whole millisecond given as a time.
local MAX_SEQUENCE = '18446744073709551615'

local function exclusive_after(id)
  if string.find(id, '-', 1, true) then return '(' .. id end
  return '(' .. id .. '-' .. MAX_SEQUENCE
end

local function exclusive_before(id)
  if string.find(id, '-', 1, true) then return '(' .. id end
  return '(' .. id .. '-0'
end

-- True if a decimal number (leading zeros allowed) fits in 64 bits.
local function fits_u64(digits)
  digits = string.match(digits, '^0*(%d*)$')
  return #digits < 20 or (#digits == 20 and digits <= MAX_SEQUENCE)
end

-- True if text can bound a range exclusively: a stream id or a time whose
-- parts fit in 64 bits; a BEFORE bound above 0-0 (nothing is before it).
local function is_bound(text, before)
  if not is_stream_id(text) then return false end
  local ms, seq = string.match(text, '^(%d+)%-?(%d*)$')
  if not fits_u64(ms) or not fits_u64(seq) then return false end
  return not before or string.find(ms .. seq, '[1-9]') ~= nil
end

-- Checks BEFORE/AFTER options; returns an error reply or nil. Without
-- strict, a bound out of the stream's range is left to the stream command
-- (range replies its own error for it, as it did before search checked).
local function check_bounds(options, names, strict)
  for _, name in ipairs(names) do
    local text, ok = options[name], true
    if text and strict then ok = is_bound(text, name == 'BEFORE') end
    if text and not strict then ok = is_stream_id(text) end
    if not ok then
      return fail('BADARG', name .. ' must be a stream id "ms-seq" or a time in ms')
    end
  end
  return nil
end

------------------------------------------------------------------------------
-- 7. Search: queries and judging.
------------------------------------------------------------------------------

-- What one search call has read and judged so far: entries (and reads),
-- messages judged, bytes (of JSON read, and TOKENIZE_COST more per byte of
-- text tokenized) and postings. A call checks its budget before each
-- candidate page and each entry and, once any count is spent, stops and
-- replies where to continue: a call does at most its budget and one message.
local work = {judged = 0, entries = 0, bytes = 0, postings = 0}

local function reset_work()
  work.judged, work.entries, work.bytes, work.postings = 0, 0, 0, 0
end

local function over_budget()
  return work.judged >= SEARCH_JUDGED or work.entries >= SEARCH_ENTRIES
    or work.bytes >= SEARCH_BYTES or work.postings >= SEARCH_POSTINGS
end

-- Parses a query: distinct tokens, and phrases (token lists that must appear
-- consecutively): quoted text, and runs of CJK characters.
local function parse_query(query)
  local terms, seen, phrases = {}, {}, {}
  local quoted = false
  for part in string.gmatch(query .. '"', '([^"]*)"') do
    local joined = {}
    local tokens = tokenize(part, {}, joined)
    for _, token in ipairs(tokens) do
      if not seen[token] then
        seen[token] = true
        terms[#terms + 1] = token
      end
    end
    if quoted and #tokens > 1 then
      phrases[#phrases + 1] = tokens
    elseif not quoted then
      local run = {}
      for i = 1, #tokens + 1 do
        if i <= #tokens and joined[i] then
          run[#run + 1] = tokens[i]
        else
          if #run > 1 then phrases[#phrases + 1] = run end
          run = {tokens[i]}
        end
      end
    end
    quoted = not quoted
  end
  return terms, phrases
end

-- True if the token list holds the phrase as consecutive tokens.
local function holds_phrase(tokens, phrase)
  for start = 1, #tokens - #phrase + 1 do
    local all = true
    for j = 1, #phrase do
      if tokens[start + j - 1] ~= phrase[j] then all = false break end
    end
    if all then return true end
  end
  return false
end

-- How a decoded message matches a query: the number of distinct query terms
-- it holds, and whether it holds all of them and every phrase.
local function judge(message, query)
  if query.type and message.type ~= query.type then return 0, false end
  local tokens = message_tokens(message)
  work.bytes = work.bytes + TOKENIZE_COST * tokens.bytes
  local present = {}
  for _, token in ipairs(tokens) do present[token] = true end
  local score = 0
  for _, term in ipairs(query.terms) do
    if present[term] then score = score + 1 end
  end
  if score < #query.terms then return score, false end
  for _, phrase in ipairs(query.phrases) do
    if not holds_phrase(tokens, phrase) then return score, false end
  end
  return score, true
end

-- The query terms that are ASCII words: a message holding one holds it in
-- its JSON text, lower-cased, unless the JSON writes a letter or digit as a
-- \u escape or in fullwidth form (U+FF10 to U+FF5A, folded to ASCII).
local function plain_terms(terms)
  local plain = {}
  for _, term in ipairs(terms) do
    if string.find(term, '^%w+$') then plain[#plain + 1] = term end
  end
  return plain
end

-- A quick test on a stored JSON before it is decoded and judged: false if
-- the message cannot match the query (ALL mode: a plain term is missing;
-- ANY mode: every term is plain and none is there).
local function may_match(json, query)
  local plain = query.plain
  if #plain == 0 or string.find(json, '\\u', 1, true) or string.find(json, '\239\188', 1, true)
    or string.find(json, '\239\189', 1, true) then
    return true
  end
  local lower, found = string.lower(json), 0
  for _, term in ipairs(plain) do
    if string.find(lower, term, 1, true) then
      found = found + 1
    elseif not query.any then
      return false
    end
  end
  return found > 0 or #plain < #query.terms
end

------------------------------------------------------------------------------
-- Bounded search: the work meter, the hits, the cursor to continue from.
------------------------------------------------------------------------------

-- How a stored JSON matches the query (see judge); 0, false for a JSON
-- that does not decode or cannot match. Counts the entry as read, and as
-- judged once it passes the quick test.
local function judge_json(json, query)
  local weight = query.weight
  work.entries = work.entries + weight
  work.bytes = work.bytes + #json
  if not may_match(json, query) then return 0, false end
  work.judged = work.judged + weight
  local message = decode_stored(json)
  if not message then return 0, false end
  return judge(message, query)
end

-- The entry {id, {field, json}} stored under an id, or nil if it is gone.
local function entry_at(keys, id)
  return redis.call('XRANGE', keys[1], id, id)[1]
end

-- Ranks ANY-mode hits: more matched terms first, then newer first.
local function by_rank(a, b)
  if a.score ~= b.score then return a.score > b.score end
  return id_after(a.ms, a.seq, b.ms, b.seq)
end

-- The bound below which hits are searched: just before query.before, or everything.
local function before_id(ms, seq)
  if seq > 0 then return ms, seq - 1 end
  return ms - 1, math.huge
end

local function search_start(query)
  if not query.before then return math.huge, math.huge end
  local ms, seq = string.match(query.before, '^(%d+)%-?(%d*)$')
  if seq == '' then return tonumber(ms) - 1, math.huge end
  return before_id(tonumber(ms), tonumber(seq))
end

-- The hits of one call. Candidates come newest first, so in ALL mode the
-- first LIMIT matches are the answer; in ANY mode an older candidate can
-- only displace one of the LIMIT best with a higher score, which gives the
-- floor below which candidates are skipped (query.minscore, the caller's
-- floor from earlier calls, at least).
local function new_hits(query)
  local start_ms, start_seq = search_start(query)
  return {query = query, list = {}, floor = query.minscore, seen = {}, oldest_ms = nil,
    oldest_seq = nil, done = false, steps = 0, start_ms = start_ms, start_seq = start_seq}
end

-- Keeps the ANY-mode list to its LIMIT best and raises the floor.
local function cut_hits(hits)
  local list, limit = hits.list, hits.query.limit
  table.sort(list, by_rank)
  for i = #list, limit + 1, -1 do list[i] = nil end
  if #list >= limit then
    hits.floor = math.max(hits.floor, list[limit].score + 1)
    if hits.floor > #hits.query.terms then hits.done = true end
  end
end

-- Judges a stored entry (once per call) and keeps it if it is a hit.
local function consider(hits, entry)
  if not entry or hits.done then return end
  local id = entry[1]
  if hits.seen[id] then return end
  hits.seen[id] = true
  local ms, seq = parse_full_id(id)
  if not hits.oldest_ms or id_after(hits.oldest_ms, hits.oldest_seq, ms, seq) then
    hits.oldest_ms, hits.oldest_seq = ms, seq
  end
  local query = hits.query
  local score, all = judge_json(entry[2][2], query)
  if query.any then
    if score >= hits.floor then
      hits.list[#hits.list + 1] = {entry = entry, score = score, ms = ms, seq = seq}
      if #hits.list >= 2 * query.limit then cut_hits(hits) end
    end
  elseif all then
    hits.list[#hits.list + 1] = {entry = entry, score = score}
    if #hits.list >= query.limit then hits.done = true end
  end
end

-- Where a call that stops before the candidate page (ms, seq) would continue
-- from, as a BEFORE bound, or nil while it must go on. Every message at or
-- after the bound was judged or lies in a page that cannot match; entries
-- already read below the candidate (a page whose messages were deleted reads
-- into the next older one) are not read again. A call stops only once its
-- budget is spent, it has taken a step, and the bound is below its own
-- BEFORE (pages named after BEFORE may hold older messages), so every call
-- makes progress.
local function stop_before(hits, ms, seq)
  if hits.steps == 0 or not over_budget() then return nil end
  local next_ms, next_seq = ms, seq + 1
  if hits.oldest_ms and not id_after(hits.oldest_ms, hits.oldest_seq, ms, seq) then
    next_ms, next_seq = hits.oldest_ms, hits.oldest_seq
  end
  local start_ms, start_seq = hits.start_ms, hits.start_seq
  if id_after(next_ms, next_seq, start_ms, start_seq) then return nil end
  return format_id(next_ms, next_seq)
end

-- The reply: with PAGED, {next, id, json, score, ...} ("" for next once the
-- search is complete); without, the 1.2 form {id, json, ...}, which needs
-- the search to have finished in this call.
local function search_reply(hits, next_before)
  local query, list = hits.query, hits.list
  if query.any then cut_hits(hits) end
  local out = {}
  if query.paged then out[1] = next_before or '' end
  local n = #list
  for i = 1, n do
    local hit = query.any and list[i] or list[n + 1 - i]  -- ALL: oldest first
    out[#out + 1] = hit.entry[1]
    out[#out + 1] = hit.entry[2][2]
    if query.paged then out[#out + 1] = hit.score end
  end
  if next_before and not query.paged then
    return fail('BUDGET', 'this search needs more than one call: pass PAGED and continue '
      .. 'with BEFORE set to the reply\'s first element')
  end
  if COUNT_WORK then
    table.insert(out, 1, string.format('%d %d %d %d', work.judged, work.entries, work.bytes,
      work.postings))
  end
  return out
end

-- Reads and judges entries newest first from high (a range bound) on, at
-- most count of them; as many at a time as the budget's bytes have room for
-- at the session's longest message. Returns true if the budget ran out
-- first (the call then stops at the oldest entry it judged: it has judged
-- one at least, so every call makes progress), and then whether the read
-- reached the session's oldest message.
local function judge_entries(keys, hits, high, count)
  local query = hits.query
  while count > 0 and not hits.done do
    local want = read_room(query.largest, SEARCH_BYTES - work.bytes, count)
    local entries = redis.call('XREVRANGE', keys[1], high, '-', 'COUNT', want)
    work.entries = work.entries + 1  -- a read costs, even one that finds nothing new
    for _, entry in ipairs(entries) do
      if hits.oldest_ms and over_budget() then return true, false end
      consider(hits, entry)
    end
    if #entries < want then return false, true end
    count = count - want
    high = '(' .. entries[#entries][1]
  end
  return false, false
end

-- Where a call whose budget ran out inside a page continues: before the
-- oldest entry it judged.
local function stopped_inside(hits)
  return search_reply(hits, format_id(hits.oldest_ms, hits.oldest_seq))
end

-- Search without an index: a scan of the session, newest first, until the
-- hits are complete or the budget is spent.
local SCAN_PAGE = 64

local function scan_search(keys, query)
  local hits = new_hits(query)
  query.largest = tonumber(redis.call('HGET', keys[2], META_LARGEST) or nil)
  local high = query.before and exclusive_before(query.before) or '+'
  while not hits.done do
    if hits.oldest_ms then high = exclusive_before(format_id(hits.oldest_ms, hits.oldest_seq)) end
    local stopped, ended = judge_entries(keys, hits, high, SCAN_PAGE)
    if stopped then return stopped_inside(hits) end
    if ended then break end
  end
  return search_reply(hits, nil)
end

------------------------------------------------------------------------------
-- Index cursors: one term's postings, newest to oldest.
------------------------------------------------------------------------------

-- A cursor walks one term's postings from newest to oldest, one block at a
-- time; it jumps to an older block by a binary search on the blocks' first
-- postings, so a seek reads O(log blocks) fields, however far it goes.
local BLOCK_COST = 16  -- postings a block read counts for

local function open_cursor(index_key, epoch, term, head)
  local first_block, next_block, pos = parse_head(head)
  return {key = index_key, epoch = epoch, term = term, first = first_block, k = next_block,
    body = head, pos = pos, ms = nil, seq = nil, i = 0,
    size = (next_block - first_block) * BLOCK_BYTES + #head}
end

local function read_block(c, k)
  work.postings = work.postings + BLOCK_COST
  return redis.call('HGET', c.key, block_field(c.term, k))
end

-- Moves to the newest block older than the current one whose first posting
-- is at or before (ms, seq); the cursor ends when there is none. Blocks the
-- sweep deleted are the oldest, so a missing block means "look newer".
local function cursor_jump(c, ms, seq)
  c.ms = nil
  local low, high, best, body = c.first, c.k - 1, nil, nil
  while low <= high do
    local mid = math.floor((low + high) / 2)
    local value = read_block(c, mid)
    if value then
      local first_ms, first_seq = read_posting(c.epoch, value, 1)
      if id_after(first_ms, first_seq, ms, seq) then
        high = mid - 1
      else
        best, body, low = mid, value, mid + 1
      end
    else
      low = mid + 1
    end
  end
  c.body, c.pos = body, 1
  if best then c.k = best else c.k = c.first end
end

-- Moves the cursor to the newest posting at or before (ms, seq) (math.huge
-- seq for "any"); returns its id, or nil when no posting is that old.
local function cursor_seek(c, ms, seq)
  while c.body do
    if not c.ms then
      if c.pos > #c.body then
        cursor_jump(c, ms, seq)
      else
        local base_ms, base_seq = read_posting(c.epoch, c.body, c.pos)
        if id_after(base_ms, base_seq, ms, seq) then
          cursor_jump(c, ms, seq)
        else
          c.ms, c.seq = decode_block(c.epoch, c.body, c.pos)
          c.i = #c.ms
          work.postings = work.postings + c.i
        end
      end
    else
      while c.i > 0 and id_after(c.ms[c.i], c.seq[c.i], ms, seq) do c.i = c.i - 1 end
      if c.i > 0 then return c.ms[c.i], c.seq[c.i] end
      cursor_jump(c, ms, seq)
    end
  end
  return nil
end

------------------------------------------------------------------------------
-- Indexed search.
------------------------------------------------------------------------------

-- True if a pending record holds the term. A term of MAX_TOKEN_BYTES may
-- be the cut form of a longer word there, so it matches as a prefix.
local function record_holds(record, term)
  if not record.ascii then
    local needle = #term < MAX_TOKEN_BYTES and ('\0' .. term .. '\0') or ('\0' .. term)
    return string.find(record.raw, needle, record.from, true) ~= nil
  end
  if string.byte(term, 1) == 1 then return TYPE_TOKEN .. record.type == term end
  if not string.find(term, '^%w+$') then return false end
  -- A whole word (one pattern search, however often the term occurs inside
  -- longer words); a cut term as the start of a word.
  local pattern = '%f[%w]' .. term .. (#term >= MAX_TOKEN_BYTES and '' or '%f[^%w]')
  return string.find(record.raw, pattern, record.from) ~= nil
end

-- The index fields a query needs: its terms, and in ALL mode its type.
local function query_fields(query)
  local fields = {}
  for i, term in ipairs(query.terms) do fields[i] = term end
  if query.type and not query.any then fields[#fields + 1] = TYPE_TOKEN .. query.type end
  return fields
end

-- The newest page id a search must start from: with BEFORE, the page of the
-- newest message before it may end up to PAGE_MESSAGES - 1 messages later;
-- nil when no message is old enough.
local function page_bound(keys, query)
  if not query.before then return math.huge, math.huge end
  local below = redis.call('XREVRANGE', keys[1], exclusive_before(query.before), '-', 'COUNT', 1)[1]
  if not below then return nil end
  if PAGE_MESSAGES == 1 then return parse_full_id(below[1]) end
  local after = redis.call('XRANGE', keys[1], '(' .. below[1], '+', 'COUNT', PAGE_MESSAGES - 1)
  if #after < PAGE_MESSAGES - 1 then return math.huge, math.huge end
  return parse_full_id(after[#after][1])
end

-- Judges the messages of the page named (ms, seq) that are older than the
-- query's bound: at most PAGE_MESSAGES ending at its id (after deletes,
-- older pages' entries come along). Pages come newest first and each read
-- goes on from the one before, so the entries from the oldest judged up to
-- this page were all read: the page's read starts below them. A read that
-- reaches the session's oldest message has judged everything left, so the
-- search is complete. Returns true if the budget ran out inside the page.
local function judge_page(keys, hits, ms, seq)
  local query = hits.query
  local high = format_id(ms, seq)
  if query.before then
    local start_ms, start_seq = search_start(query)
    if id_after(ms, seq, start_ms, start_seq) then high = exclusive_before(query.before) end
  end
  if hits.oldest_ms and not id_after(hits.oldest_ms, hits.oldest_seq, ms, seq) then
    high = exclusive_before(format_id(hits.oldest_ms, hits.oldest_seq))
  end
  local stopped, ended = judge_entries(keys, hits, high, PAGE_MESSAGES)
  if ended then hits.done = true end
  return stopped
end

-- The pending records (the newest messages, not yet folded) are judged
-- first, newest first: in ALL mode those holding every field, in ANY mode
-- those holding at least the floor's count of terms.
local function judge_records(keys, hits, fields, records)
  local query = hits.query
  local start_ms, start_seq = hits.start_ms, hits.start_seq
  for r = #records, 1, -1 do
    if hits.done then return end
    local record = records[r]
    work.bytes = work.bytes + #record.raw
    if not id_after(record.ms, record.seq, start_ms, start_seq) then
      local count = 0
      for _, field in ipairs(fields) do
        if record_holds(record, field) then
          count = count + 1
        elseif not query.any then
          break
        end
      end
      if count == #fields or (query.any and count >= hits.floor) then
        consider(hits, entry_at(keys, record.id))
      end
    end
  end
end

-- ALL mode: the rarest term's pages newest first, keeping those every other
-- term also names and judging their messages.
local function index_search_all(keys, hits, cursors)
  local bound_ms, bound_seq = page_bound(keys, hits.query)
  if not bound_ms then return search_reply(hits, nil) end
  table.sort(cursors, function(a, b) return a.size < b.size end)
  local driver = cursors[1]
  local ms, seq = cursor_seek(driver, bound_ms, bound_seq)
  while ms and not hits.done do
    local stop = stop_before(hits, ms, seq)
    if stop then return search_reply(hits, stop) end
    hits.steps = hits.steps + 1
    local all = true
    for j = 2, #cursors do
      local other_ms, other_seq = cursor_seek(cursors[j], ms, seq)
      if not other_ms then return search_reply(hits, nil) end
      if other_ms ~= ms or other_seq ~= seq then
        -- Older: no page between it and this one holds both terms.
        all, ms, seq = false, other_ms, other_seq
        break
      end
    end
    if all then
      if judge_page(keys, hits, ms, seq) then return stopped_inside(hits) end
      ms, seq = cursor_seek(driver, before_id(ms, seq))
    else
      ms, seq = cursor_seek(driver, ms, seq)
    end
  end
  return search_reply(hits, nil)
end

-- ANY mode: the pages some term names, newest first (a merge of the terms'
-- cursors), each judged when the number of terms naming it, the most any of
-- its messages can match, reaches the floor.
local function index_search_any(keys, hits, cursors)
  local bound_ms, bound_seq = page_bound(keys, hits.query)
  if not bound_ms then return search_reply(hits, nil) end
  local at_ms, at_seq = {}, {}
  for i, c in ipairs(cursors) do at_ms[i], at_seq[i] = cursor_seek(c, bound_ms, bound_seq) end
  while not hits.done do
    local ms, seq
    for i = 1, #cursors do
      if at_ms[i] and (not ms or id_after(at_ms[i], at_seq[i], ms, seq)) then
        ms, seq = at_ms[i], at_seq[i]
      end
    end
    if not ms then break end
    local stop = stop_before(hits, ms, seq)
    if stop then return search_reply(hits, stop) end
    hits.steps = hits.steps + 1
    work.postings = work.postings + #cursors  -- the merge looked at every cursor
    local naming = 0
    local older_ms, older_seq = before_id(ms, seq)
    for i, c in ipairs(cursors) do
      if at_ms[i] == ms and at_seq[i] == seq then
        naming = naming + 1
        at_ms[i], at_seq[i] = cursor_seek(c, older_ms, older_seq)
      end
    end
    if naming >= hits.floor and judge_page(keys, hits, ms, seq) then
      return stopped_inside(hits)
    end
  end
  return search_reply(hits, nil)
end

local function index_search(keys, query)
  local hits = new_hits(query)
  local fields = query_fields(query)
  local lookup = {META_RECORDS, META_EPOCH, META_LARGEST}
  for _, field in ipairs(fields) do lookup[#lookup + 1] = field end
  local values = hash_get_many(keys[2], lookup)
  query.largest = tonumber(values[META_LARGEST] or nil)
  local pending, read = stored_records(keys, values[META_RECORDS] or nil)
  work.entries = work.entries + read  -- the entries its pending messages' texts came from
  judge_records(keys, hits, fields, pending)
  local epoch = tonumber(values[META_EPOCH] or nil)
  local cursors = {}
  for _, field in ipairs(fields) do
    local head = epoch and values[field]
    if head then
      cursors[#cursors + 1] = open_cursor(keys[2], epoch, field, head)
    elseif not query.any then
      -- A field no folded message holds: only pending records can match.
      return search_reply(hits, nil)
    end
  end
  if hits.done or #cursors == 0 then return search_reply(hits, nil) end
  if query.any then return index_search_any(keys, hits, cursors) end
  return index_search_all(keys, hits, cursors)
end

------------------------------------------------------------------------------
-- 8. Checkpoints: a LangGraph thread's checkpoints beside its chat session.
------------------------------------------------------------------------------

--[[
A thread is a chat session plus three keys of the same hash tag, so one
FCALL reaches all six (docs/PROTOCOL.md, "Checkpoints"):

  KEYS[4]  <prefix>{<tag>}:c   hash: "c" <ns> "\0" <checkpoint id> -> record
                               (1.8: a UUID id as "\255" and its 16 bytes);
                               "b" <ns> "\0" <channel> "\0" <version> -> a
                               channel value (one per version)
  KEYS[5]  <prefix>{<tag>}:w   hash: a checkpoint's pending writes in groups,
                               a group the writes of one task that one call
                               stored (m is <ns> "\0" <id>):
                                 m              -> n "\0" <the first group's
                                                   name>: n groups stored (n
                                                   alone if the name is longer
                                                   than NAME_BYTES: slot 1
                                                   holds it); with FOLD (1.6)
                                                   also "\0=" <the first
                                                   group> while it takes at
                                                   most FOLD_BYTES
                                 m "\0" <k>     -> the k-th group's name (2..n):
                                                   <task id> "\0" <index of its
                                                   first write> [ "\0" <k> ]
                                 m "\0=" <name> -> netstrings: task path, then
                                                   the first write's channel
                                                   and value, then index,
                                                   channel and value of each
                                                   other write
                               (1.4 stored one write per group, and m -> n with
                               the first name at m "\0" 1: such fields read the
                               same, and its checkpoints go on so.) A group
                               holds at most GROUP_WRITES writes and
                               GROUP_BYTES (or one longer write). A call merges
                               into the checkpoint's newest group if that is its
                               task's, has the name it would give, and is short
                               (MERGE_SLACK); else it starts groups, a name
                               taken already getting "\0" <k>.
  KEYS[6]  <prefix>{<tag>}:k   sorted set, all scores 0: pages <ns> "\0"
                               <id> ["\0" <id>...] of the checkpoints' ids
                               (1.6; a 1.5 member is a page of one), so that
                               ZRANGEBYLEX pages them in id order (ids sort
                               as they were made)

A record is a header the library reads, then a payload only clients read:
  <header bytes, decimal> "\n" <header> <payload>
  header lines, each ending in "\n":
    "M" <channel> "\t" <runs>     a list of messages held in the session's
                                  stream: runs "<a>..<b>" of consecutive
                                  entries, separated by spaces
    "B" <channel> "\t" <version>  the value is the blob of that version
    "V" <channel>                 the payload holds the value (1.5)
    "P" <parent id>               the parent checkpoint, of the same
                                  namespace (1.5; at most one line, an id
                                  of 1 to 64 bytes)
    "P"                           stored only (1.7): the parent is the id
                                  before the checkpoint's in the order set
                                  (a put stores a "P" line so when it is;
                                  a change of the order set that puts
                                  another id before such a record writes
                                  the id into it first); replies and dumps
                                  give the id; only a record of at
                                  most SMALL_RECORD_BYTES is stored so
    "W" <bytes>                   stored only, the last line (1.7,
                                  INRECORD): the record's last <bytes>
                                  bytes are its checkpoint's count of
                                  writes "1\0<name>\0=<group>", which :w
                                  then does not hold (a count is read from
                                  :w first); only a record of at most
                                  SMALL_RECORD_BYTES, count included
                                  (and room for a "P" line's id, see
                                  CP.fits_small), holds one; replies
                                  leave both out
In a call, a run's end may be "#k": the k-th message of the call, stored by
the call (the library replaces it with its stream id and joins runs that
meet in the stream). A write is replied as five netstrings (<length> ":"
<bytes>): task id, index, task path, channel, value; a value that starts
with "\1M" holds runs instead of bytes.

Bounded work: a write call's work grows with what it carries (its messages,
writes, blobs, the runs of its record). A read replies at most READ_ENTRIES
stream entries and pending writes, or fewer once READ_BYTES are read
(checked after each entry and write), and says where to go on: the rest is
read with chathist_cp_more, a bounded call each. Stream entries are read as
many at once as the bytes left have room for at the session's longest
message ("\0M" of the index hash, one at a time when it is absent), pending
writes a group at a time and channel values one at a time (no bound of
their length is kept), so a read takes at most READ_BYTES and one message,
group of writes or value more. A chain call walks at most CP_PAGE
ancestors within the same budget. A dump page holds CP_SCAN fields or READ_BYTES and one HSCAN step
more. A drop deletes at most
DROP_FIELDS write fields besides what it names, and says how many of its
checkpoints are done; the client sends the others again.
]]

local CP = {}  -- this section's helpers and constants (Lua allows 200 locals)
CP.CP_SUFFIXES = {':c', ':w', ':k'}
CP.CP_TYPES = {'hash', 'hash', 'zset'}
-- Checkpoints a list call returns at most, ancestors a chain call walks.
CP.CP_PAGE = 64
CP.CP_MAX_FIELDS = 1000         -- fields in one drop or load call
CP.CP_SCAN = 64                 -- fields of a dump page, at most (and READ_BYTES)
CP.REFS_MARK = '\1M'
-- A shaped value (1.6): "\1T" <runs> "\n" <template>, a value whose long
-- texts are those of the messages of the runs (the client fills them in).
CP.SHAPE_MARK = '\1T'
CP.CHAIN_CHANNELS = 64          -- channels one chain call walks for
-- Budgets of one call (tests shrink them; keep each on its own line). A
-- read takes at most READ_STEP stream entries per XRANGE.
CP.READ_ENTRIES = 512
CP.READ_BYTES = 262144
CP.READ_STEP = 64
CP.DROP_FIELDS = 1024
CP.SEGMENTS = 4096
-- A group of writes holds at most GROUP_WRITES writes and GROUP_BYTES of
-- them (or one longer write); a call merges into its task's newest group if
-- that is at most twice what it carries and MERGE_SLACK; a count names the
-- first group if the name is at most NAME_BYTES long.
CP.GROUP_WRITES = 64
CP.GROUP_BYTES = 65536
CP.MERGE_SLACK = 256
CP.NAME_BYTES = 128
-- With FOLD (1.6), a checkpoint's first group is kept in its count while it
-- takes at most FOLD_BYTES.
CP.FOLD_BYTES = 4096
-- A page of the order set holds at most ORDER_PAGE checkpoint ids (1.6).
CP.ORDER_PAGE = 64
-- A record holds its count of writes or names its parent by its place
-- (1.7) only while it takes at most SMALL_RECORD_BYTES: the calls that read
-- a record for these (a write, a put or drop of another checkpoint, a read
-- of writes) read no more of a record than that, however long it is.
CP.SMALL_RECORD_BYTES = 8192
-- (1.8) The most run items cp_load takes in one field: what one put may
-- store (CP.SEGMENTS and two per message of a batch), so a reply of a copied
-- thread looks at no more runs than one of the thread it copies.
CP.LOADED_RUNS = 4096 + 2 * MAX_BATCH_MESSAGES
-- A stored record's header holds at most HEADER_LINES lines (a put's
-- CP_MAX_FIELDS and a "W" line) and HEADER_BYTES bytes: a longer one is not
-- parsed (a put and a load refuse it), so each parse of a record is bounded.
CP.HEADER_LINES = 1001
CP.HEADER_BYTES = 1048576

-- Checks the six keys of a thread; returns an error reply, or nil and
-- whether the session's stream exists.
function CP.check_thread_keys(keys)
  if #keys ~= 6 then
    return fail('BADKEYS', 'expected 6 keys (messages, index, ids, checkpoints, writes, order) '
      .. 'of one thread, got ' .. #keys)
  end
  local bad, exists = check_keys({keys[1], keys[2], keys[3]})
  if bad then return bad end
  local base = string.sub(keys[1], 1, -3)
  for i = 1, 3 do
    if keys[i + 3] ~= base .. CP.CP_SUFFIXES[i] then
      return fail('BADKEYS', 'key ' .. (i + 3) .. ' must be "' .. base .. CP.CP_SUFFIXES[i] .. '"')
    end
    local actual = redis.call('TYPE', keys[i + 3])['ok']
    if actual ~= 'none' and actual ~= CP.CP_TYPES[i] then
      return fail('BADKEYS', 'key ' .. (i + 3) .. ' holds a ' .. actual .. ', not the '
        .. CP.CP_TYPES[i] .. ' of a thread')
    end
  end
  return nil, exists
end

-- True for a channel value's field "b" <ns> "\0" <channel> "\0" <version>
-- of namespace ns.
function CP.is_blob_field(field, ns)
  return string.sub(field, 1, #ns + 2) == 'b' .. ns .. '\0'
    and string.find(field, '\0', #ns + 3, true) ~= nil
end

-- The order set (1.6): its members are pages "<ns>\0<id>[\0<id>...]" of
-- at most ORDER_PAGE ids of one namespace, in increasing byte order; a page
-- sorts among the others by its first id, and holds the ids from it up to
-- the next page's first (a member of 1.4 and 1.5 is a page of one id). A
-- sorted set of pages takes about a third of the memory of one member per
-- checkpoint (a skiplist node, a dict entry and a string each). Work: one
-- or two pages (ORDER_PAGE ids) per id added or removed.

-- True if a sorts before b byte by byte (Lua's < follows the server's
-- locale; the sorted set compares bytes).
function CP.bytes_before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- A page's namespace and ids (split with plain finds: Lua's patterns take
-- several times as long over a page of 64 ids).
function CP.page_ids(page)
  local at = string.find(page, '\0', 1, true)
  local ns, ids = string.sub(page, 1, at - 1), {}
  while at do
    local stop = string.find(page, '\0', at + 1, true)
    ids[#ids + 1] = string.sub(page, at + 1, (stop or 0) - 1)
    at = stop
  end
  return ns, ids
end

-- The number of ids of a page, and its last id (at most 64 bytes: found
-- in the page's tail).
function CP.page_size(page)
  local n, at = 0, string.find(page, '\0', 1, true)
  while at do n, at = n + 1, string.find(page, '\0', at + 1, true) end
  return n
end

function CP.page_last(page)
  return string.match(string.sub(page, -65), '%z([^%z]+)$')
end

function CP.page_member(ns, ids)
  return ns .. '\0' .. table.concat(ids, '\0')
end

-- The page that holds id or would: the last of ns whose first id is at most
-- id (nil if id is before them all).
function CP.page_at(key, ns, id)
  return redis.call('ZREVRANGEBYLEX', key, '[' .. ns .. '\0' .. id .. '\0\255', '[' .. ns .. '\0',
    'LIMIT', 0, 1)[1]
end

-- The first id of a page, and the page of ns after page (nil if none).
function CP.page_first(page)
  return string.match(page, '^[^%z]*%z([^%z]+)')
end

function CP.page_after(key, ns, page)
  return redis.call('ZRANGEBYLEX', key, '(' .. page, '[' .. ns .. '\0\255', 'LIMIT', 0, 1)[1]
end

function CP.page_before(key, ns, page)
  return redis.call('ZREVRANGEBYLEX', key, '(' .. page, '[' .. ns .. '\0', 'LIMIT', 0, 1)[1]
end

-- Adds a checkpoint's member "<ns>\0<id>" to the order set: into the page
-- that would hold it, a new page after a full one, or the full page split
-- in two when the id falls inside it. Returns the ids before and after it
-- (nil: none) and whether it was added (false: it was there).
function CP.order_add(key, member)
  local ns, id = string.match(member, '^([^%z]*)%z([^%z]+)$')
  local page = CP.page_at(key, ns, id)
  if not page then
    local next_page = CP.page_after(key, ns, member)
    redis.call('ZADD', key, 0, member)
    return nil, next_page and CP.page_first(next_page), true
  end
  -- the common case, an id after every other: appended without parsing the page
  local last = CP.page_last(page)
  if CP.bytes_before(last, id) then
    local next_page = CP.page_after(key, ns, page)
    if CP.page_size(page) >= CP.ORDER_PAGE then
      redis.call('ZADD', key, 0, member)
    else
      redis.call('ZREM', key, page)
      redis.call('ZADD', key, 0, page .. '\0' .. id)
    end
    return last, next_page and CP.page_first(next_page), true
  end
  local _, ids = CP.page_ids(page)
  local at = #ids + 1
  for i, other in ipairs(ids) do
    if other == id then
      local previous = i == 1 and CP.page_before(key, ns, page)
      return ids[i - 1] or (previous and CP.page_last(previous)) or nil, ids[i + 1], false
    end
    if CP.bytes_before(id, other) then
      at = i
      break
    end
  end
  local before, after = ids[at - 1], ids[at]
  table.insert(ids, at, id)
  redis.call('ZREM', key, page)
  if #ids <= CP.ORDER_PAGE then
    redis.call('ZADD', key, 0, CP.page_member(ns, ids))
    return before, after, true
  end
  local half, low, high = math.floor(#ids / 2), {}, {}
  for i, other in ipairs(ids) do
    if i <= half then low[#low + 1] = other else high[#high + 1] = other end
  end
  redis.call('ZADD', key, 0, CP.page_member(ns, low), 0, CP.page_member(ns, high))
  return before, after, true
end

-- Removes a checkpoint's member from the order set; returns the id that was
-- after it (nil: none, or the member was not there).
function CP.order_remove(key, member)
  local ns, id = string.match(member, '^([^%z]*)%z([^%z]+)$')
  local page = CP.page_at(key, ns, id)
  if not page then return nil end
  local _, ids = CP.page_ids(page)
  for i, other in ipairs(ids) do
    if other == id then
      local next_page = i == #ids and CP.page_after(key, ns, page)
      table.remove(ids, i)
      redis.call('ZREM', key, page)
      if #ids > 0 then redis.call('ZADD', key, 0, CP.page_member(ns, ids)) end
      return ids[i] or (next_page and CP.page_first(next_page)) or nil
    end
  end
  return nil
end

-- The id before id in the order set of ns (nil if none). Work: one or two
-- pages.
function CP.order_before(key, ns, id)
  local page = CP.page_at(key, ns, id)
  if not page then return nil end
  if CP.bytes_before(CP.page_first(page), id) then
    if CP.bytes_before(CP.page_last(page), id) then return CP.page_last(page) end
    local _, ids = CP.page_ids(page)
    for i = #ids, 1, -1 do
      if CP.bytes_before(ids[i], id) then return ids[i] end
    end
  end
  local previous = CP.page_before(key, ns, page)
  return previous and CP.page_last(previous) or nil
end

-- Up to count members "<ns>\0<id>" of the order set, newest first, between
-- the lex bounds low and high (ZREVRANGEBYLEX's), below before (a member,
-- or nil): pages are read a few at a time, so a call reads at most count
-- pages more than it replies ids.
function CP.order_page(key, high, low, before, count)
  local before_ns, before_id
  if before then before_ns, before_id = string.match(before, '^([^%z]*)%z([^%z]+)$') end
  local members, offset = {}, 0
  while #members < count do
    local pages = redis.call('ZREVRANGEBYLEX', key, high, low, 'LIMIT', offset, 4)
    for _, page in ipairs(pages) do
      local ns, ids = CP.page_ids(page)
      for i = #ids, 1, -1 do
        if ns ~= before_ns or CP.bytes_before(ids[i], before_id) then
          members[#members + 1] = ns .. '\0' .. ids[i]
          if #members >= count then return members end
        end
      end
    end
    if #pages < 4 then break end
    offset = offset + 4
  end
  return members
end

-- A checkpoint's member "<ns>\0<id>": an id of 1 to 64 bytes without NUL,
-- or (1.7.1) a newline (a "P" line could not name it) or 0xFF (UTF-8 never
-- holds it, and "<ns>\0\255" bounds the order set's pages of ns).
function CP.is_member(text)
  return type(text) == 'string' and string.match(text, '^[^%z]*%z[^%z\n\255]+$') ~= nil
    and #text <= 4096 and #string.match(text, '%z([^%z]+)$') <= 64
end

-- Record fields (1.8). A record's :c field is "c<ns>\0<id>", or for an id
-- in canonical UUID form (36 bytes: lower-case hex and four dashes, what
-- LangGraph makes) "c<ns>\0\255" and the id's 16 bytes: 19 bytes less per
-- checkpoint. (No id holds 0xFF, so the two forms never meet.) A record
-- stored before 1.8 keeps its field "c<ns>\0<id>" until it is written again:
-- readers look there when the packed field is absent, writers delete it.
CP.UUID_TEXT = '%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x'
CP.UUID_FORM = '^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$'

-- Two hex digits -> their byte, made at the first use (the string library
-- is not there while the library loads).
function CP.hex_bytes()
  if not CP.HEX_BYTE then
    CP.HEX_BYTE = {}
    for byte = 0, 255 do CP.HEX_BYTE[string.format('%02x', byte)] = string.char(byte) end
  end
  return CP.HEX_BYTE
end

-- The :c field of a member's record, and the field a record stored before
-- 1.8 had (nil when that is the same). A put names a few checkpoints several
-- times each: the last ones named are remembered (at most FIELDS_KEPT, of
-- members of at most 128 bytes: a few KB of the Lua heap), which keeps a
-- put's time what it was before 1.8.
CP.FIELDS_KEPT = 64
CP.fields_known, CP.fields_count = {}, 0
function CP.record_field(member)
  local known = CP.fields_known[member]
  if known then return known[1], known[2] end
  local field, legacy = CP.make_record_field(member)
  if #member > 128 then return field, legacy end
  if CP.fields_count >= CP.FIELDS_KEPT then CP.fields_known, CP.fields_count = {}, 0 end
  CP.fields_known[member] = {field, legacy}
  CP.fields_count = CP.fields_count + 1
  return field, legacy
end

function CP.make_record_field(member)
  local at = string.find(member, '\0', 1, true)
  local id = string.sub(member, at + 1)
  if #id ~= 36 or not string.find(id, CP.UUID_FORM) or string.find(id, '%u') then
    return 'c' .. member, nil
  end
  local packed = string.gsub(string.gsub(id, '%-', ''), '%x%x', CP.hex_bytes())
  return 'c' .. string.sub(member, 1, at) .. '\255' .. packed, 'c' .. member
end

-- The member a :c record field names (either form); nil for another field.
function CP.field_member(field)
  if string.sub(field, 1, 1) ~= 'c' then return nil end
  local at = string.find(field, '\0', 1, true)
  if not at then return nil end
  if string.sub(field, at + 1, at + 1) ~= '\255' then return string.sub(field, 2) end
  if #field ~= at + 17 then return nil end
  return string.sub(field, 2, at) .. string.format(CP.UUID_TEXT, string.byte(field, at + 2, at + 17))
end

-- A member's record, or nil.
function CP.record_get(keys, member)
  local field, legacy = CP.record_field(member)
  local record = redis.call('HGET', keys[4], field)
  if record or not legacy then return record or nil end
  return redis.call('HGET', keys[4], legacy) or nil
end

-- The length of a member's record (0: none).
function CP.record_length(keys, member)
  local field, legacy = CP.record_field(member)
  local size = redis.call('HSTRLEN', keys[4], field)
  if size > 0 or not legacy then return size end
  return redis.call('HSTRLEN', keys[4], legacy)
end

-- Stores a member's record (in the field of 1.8, the older one deleted).
function CP.record_set(keys, member, record)
  local field, legacy = CP.record_field(member)
  redis.call('HSET', keys[4], field, record)
  if legacy then redis.call('HDEL', keys[4], legacy) end
end

-- Deletes a member's record; returns 1 if there was one, else 0.
function CP.record_delete(keys, member)
  local field, legacy = CP.record_field(member)
  if legacy then return math.min(1, redis.call('HDEL', keys[4], field, legacy)) end
  return redis.call('HDEL', keys[4], field)
end

-- After a thread write: with ttl > 0 every key expires ttl seconds from now;
-- with 0, keys without expiry take the longest TTL another key has.
function CP.thread_ttl(keys, ttl)
  if ttl > 0 then
    for i = 1, #keys do redis.call('EXPIRE', keys[i], ttl) end
    return
  end
  local longest = -1
  for i = 1, #keys do longest = math.max(longest, redis.call('PTTL', keys[i])) end
  if longest > 0 then
    for i = 1, #keys do
      if redis.call('PTTL', keys[i]) == -1 then redis.call('PEXPIRE', keys[i], longest) end
    end
  end
end

-- Reads a record's header: its lines and where the payload starts; nil if
-- the header is malformed or longer than HEADER_LINES and HEADER_BYTES.
function CP.record_header(record)
  local size, at = string.match(record, '^(%d+)\n()')
  if not size or #size > 9 then return nil end
  size = tonumber(size)
  if at + size - 1 > #record or size > CP.HEADER_BYTES then return nil end
  local header = string.sub(record, at, at + size - 1)
  if header ~= '' and string.sub(header, -1) ~= '\n' then return nil end
  -- (plain searches: Lua's pattern matcher steps through every byte)
  local lines, from = {}, 1
  while from <= #header do
    if #lines >= CP.HEADER_LINES then return nil end
    local stop = string.find(header, '\n', from, true)
    lines[#lines + 1] = string.sub(header, from, stop - 1)
    from = stop + 1
  end
  return lines, at + size
end

-- A record's header with the newline before its first line ("\n" <lines>),
-- and where its payload starts; nil if it has none. Cut, not parsed: what
-- looks for one line finds it with a plain search.
function CP.raw_header(record)
  local size, at = string.match(record, '^(%d+)\n()')
  if not size or #size > 9 or at + tonumber(size) - 1 > #record then return nil end
  return string.sub(record, at - 1, at + tonumber(size) - 1), at + tonumber(size)
end

-- The ends of a run item: "<a>..<b>", or "<a>" alone for "<a>..<a>" (1.8:
-- a client may send a run of one entry so); nil if it is neither.
function CP.run_ends(item)
  local a, b = string.match(item, '^([^.]+)%.%.([^.]+)$')
  if a then return a, b end
  a = string.match(item, '^([^. ]+)$')
  return a, a
end

-- The text of the run from a to b: with short (1.8: the runs of a write's
-- or channel's value, 16 bytes less for each of an agent's writes of one
-- message) "<a>" alone when they are one entry, which replies give as
-- "<a>..<a>" (see CP.replied_value). A record's "M" lines keep "<a>..<a>":
-- a reply gives a record as stored, with no pass over its header.
function CP.run_text(a, b, short)
  if a == b and short then return a end
  return a .. '..' .. b
end

-- Runs as replies give them: "<a>..<a>" for a run stored as "<a>", the form
-- clients of every 1.x version read. Work: a search and two passes of
-- string.gsub over the runs' text (in C, not a Lua step per run: tens of ns
-- a byte, and a value's runs are bounded by its group); the second pass
-- finds the items right after one the first changed (whose space it took).
function CP.replied_runs(runs)
  local text = ' ' .. runs .. ' '
  if not string.find(text, ' %d+%-%d+ ') then return runs end  -- no run of one entry
  for _ = 1, 2 do text = string.gsub(text, ' (%d+%-%d+) ', ' %1..%1 ') end
  return string.sub(text, 2, -2)
end

-- A write's or channel's value as replies give it: the runs of a "\1M" or
-- "\1T" value as CP.replied_runs gives them.
function CP.replied_value(value)
  local mark = string.sub(value, 1, 2)
  if mark == CP.REFS_MARK then return mark .. CP.replied_runs(string.sub(value, 3)) end
  if mark == CP.SHAPE_MARK then
    local at = string.find(value, '\n', 3, true)
    if at then return mark .. CP.replied_runs(string.sub(value, 3, at - 1)) .. string.sub(value, at) end
  end
  return value
end

-- True if every run of a runs text is one stream entry ("<a>" or "<a>..<a>").
function CP.single_entry_runs(runs)
  for item in string.gmatch(runs .. ' ', '([^ ]*) ') do
    local a, b = CP.run_ends(item)
    if not a or a ~= b then return false end
  end
  return true
end

-- If runs text is well formed ("<a>..<b>" items separated by spaces, each
-- end a full stream id, or "#k" with k from 1 to placeholders), the number
-- of segments it resolves through (an item 1, "#i..#j" j - i + 1); else false.
function CP.check_runs(runs, placeholders)
  if runs == '' then return 0 end
  local segments = 0
  for item in string.gmatch(runs .. ' ', '([^ ]*) ') do
    local a, b = CP.run_ends(item)
    if not a or (string.sub(a, 1, 1) == '#') ~= (string.sub(b, 1, 1) == '#') then return false end
    local i, j = string.match(a, '^#(%d+)$'), string.match(b, '^#(%d+)$')
    if i and j and tonumber(i) > tonumber(j) then return false end
    segments = segments + (i and tonumber(j) - tonumber(i) + 1 or 1)
    for _, part in ipairs({a, b}) do
      local k = string.match(part, '^#(%d+)$')
      if k then
        if tonumber(k) < 1 or tonumber(k) > placeholders then return false end
      elseif not parse_full_id(part) then
        return false
      end
    end
  end
  return segments
end

-- Checks a record sent by a client: its header lines are "M" runs with
-- placeholders up to placeholders, or "B" versions, at most CP_MAX_FIELDS.
-- Returns an error text or nil, and the segments its runs resolve through.
function CP.check_record(record, placeholders)
  local problem = CP.header_problem(record, CP.CP_MAX_FIELDS)
  if problem then return problem end
  local lines = CP.record_header(record)
  local segments, parents = 0, 0
  for _, line in ipairs(lines) do
    local kind, channel, rest = string.match(line, '^([MB])([^\t]+)\t(.*)$')
    if not kind then kind, channel = string.match(line, '^([PV])([^\t%z]+)$') end
    if kind == 'P' then
      parents = parents + 1
      if parents > 1 or #channel > 64 then
        return 'has more than one P<parent id> line, or an id longer than 64 bytes'
      end
    end
    if not kind then
      return 'has a header line that is not M<channel>\\t..., B<channel>\\t..., V<channel> or P<parent id>'
    end
    local found = kind == 'M' and CP.check_runs(rest, placeholders)
    if kind == 'M' and not found then
      return 'has malformed runs for channel ' .. string.sub(channel, 1, 64)
    end
    segments = segments + (found or 0)
    if kind == 'B' and (rest == '' or #rest > 128) then
      return 'has a version of 1 to 128 bytes missing for channel ' .. string.sub(channel, 1, 64)
    end
  end
  return nil, segments
end

-- Why a record's header cannot be stored (at most most_lines lines), or nil.
-- Each "#" (a placeholder a put resolves) counts for the 40 bytes a stream
-- id may take.
function CP.header_problem(record, most_lines)
  local header = CP.raw_header(record)
  if not header or string.sub(header, -1) ~= '\n' then return 'has no header "<bytes>\\n<lines>"' end
  if #header - 1 + 40 * select(2, string.gsub(header, '#', '')) > CP.HEADER_BYTES then
    return 'has a header longer than ' .. CP.HEADER_BYTES .. ' bytes (each "#k" counting 40)'
  end
  if select(2, string.gsub(header, '\n', '')) - 1 > most_lines then
    return 'has more than ' .. most_lines .. ' header lines'
  end
  return nil
end

-- The most run segments one write call may resolve (each a read of the
-- stream): CP.SEGMENTS and two per message the call carries.
function CP.segments_allowed(messages)
  return CP.SEGMENTS + 2 * messages
end

-- The id of the stream entry right after id, or nil.
function CP.entry_after(key, id)
  local next_entry = redis.call('XRANGE', key, '(' .. id, '+', 'COUNT', 1)[1]
  return next_entry and next_entry[1]
end

-- Runs text with placeholders "#k" replaced by stored[k], and runs that
-- meet in the stream (one's end is followed by the next one's start)
-- joined, unless apart (a shaped value's runs stay one per text): a
-- conversation that only grows stays one run. Work: one XRANGE COUNT 1 per
-- run of the text (which the call carries).
function CP.resolve_runs(key, runs, stored, apart, short)
  if runs == '' then return '' end
  local list = {}
  local segments = {}
  for item in string.gmatch(runs .. ' ', '([^ ]*) ') do
    local a, b = CP.run_ends(item)
    local i, j = string.match(a, '^#(%d+)$'), string.match(b, '^#(%d+)$')
    if i then
      -- This call's messages: each where it was stored (a message stored
      -- before keeps its entry), joined below where they meet.
      for k = tonumber(i), tonumber(j) do segments[#segments + 1] = {stored[k], stored[k]} end
    else
      segments[#segments + 1] = {a, b}
    end
  end
  for _, segment in ipairs(segments) do
    local last = list[#list]
    if last and not apart and CP.entry_after(key, last[2]) == segment[1] then
      last[2] = segment[2]
    else
      list[#list + 1] = segment
    end
  end
  local out = {}
  for i, run in ipairs(list) do out[i] = CP.run_text(run[1], run[2], short) end
  return table.concat(out, ' ')
end

-- A record with the placeholders of its "M" lines resolved.
function CP.resolve_record(key, record, stored)
  local lines, payload_at = CP.record_header(record)
  local out = {}
  for i, line in ipairs(lines) do
    if string.sub(line, 1, 1) == 'M' then
      local head, runs = string.match(line, '^(M[^\t]+\t)(.*)$')
      line = head .. CP.resolve_runs(key, runs, stored)
    end
    out[i] = line .. '\n'
  end
  local header = table.concat(out)
  return #header .. '\n' .. header .. string.sub(record, payload_at)
end

-- Reads netstrings "<length>:<bytes>" from text; returns the list or nil.
function CP.read_netstrings(text)
  local list, at = {}, 1
  while at <= #text do
    local size, start = string.match(text, '^(%d+):()', at)
    if not size or #size > 10 then return nil end
    local stop = start + tonumber(size) - 1
    if stop > #text then return nil end
    list[#list + 1] = string.sub(text, start, stop)
    at = stop + 1
  end
  return list
end

function CP.netstring(text)
  return #text .. ':' .. text
end

-- The runs a stored value holds: a "\1M" value's, or a shaped value's
-- (before its "\n"); nil for a value of bytes.
function CP.value_runs(value)
  local mark = string.sub(value, 1, 2)
  if mark == CP.REFS_MARK then return string.sub(value, 3) end
  if mark == CP.SHAPE_MARK then return string.match(value, '^..([^\n]*)\n') end
  return nil
end

-- The :w fields of a checkpoint's writes (see the keys above).
function CP.write_slot(member, k)
  return member .. '\0' .. k
end

function CP.write_field(member, name)
  return member .. '\0=' .. name
end

-- A checkpoint's count of write groups "<n>[\0<first group's name>[\0=
-- <first group>]]": n, the first group's name when the count holds it
-- (since 1.5; a 1.4 count is n alone, the name in slot 1), and the first
-- group itself when the count holds that too (folded, 1.6; a name holds no
-- "\0=": a task id holds no NUL). nil if it is malformed.
function CP.parse_count(count)
  local n, rest = string.match(count, '^(%d+)%z(.+)$')
  if n then
    local at = string.find(rest, '\0=', 1, true)
    if at then return tonumber(n), string.sub(rest, 1, at - 1), string.sub(rest, at + 2) end
    return tonumber(n), rest
  end
  return tonumber(string.match(count, '^(%d+)$') or nil)
end

-- A record's own count of writes (INRECORD, 1.7): a "W<bytes>" header line
-- says that the record's last <bytes> bytes are its checkpoint's count.
-- Returns that count (nil if the record holds none, or a malformed one), the
-- header lines without the "W" line, and where the payload starts and ends.
function CP.record_parts(record)
  local lines, payload_at = CP.record_header(record)
  if not lines then return nil end
  local kept, size = lines, nil
  if lines[#lines] and string.byte(lines[#lines], 1) == 87 then  -- "W", the last line
    size = tonumber(string.match(lines[#lines], '^W(%d%d?%d?%d?%d?%d?%d?%d?%d?)$') or nil)
    if size then
      kept = {}
      for i = 1, #lines - 1 do kept[i] = lines[i] end
    end
  end
  if not size or size > #record - payload_at + 1 then return nil, lines, payload_at, #record end
  return string.sub(record, -size), kept, payload_at, #record - size
end

-- A record of header lines, a payload and a count of writes (or nil).
function CP.build_record(lines, payload, count)
  local header = {}
  for i, line in ipairs(lines) do header[i] = line .. '\n' end
  if count then header[#header + 1] = 'W' .. #count .. '\n' end
  header = table.concat(header)
  return #header .. '\n' .. header .. payload .. (count or '')
end

-- A record with its count of writes replaced (count nil: the record as its
-- client stored it).
function CP.with_count(record, count)
  local held, lines, payload_at, payload_end = CP.record_parts(record)
  if not lines or (not held and not count) then return record end
  return CP.build_record(lines, string.sub(record, payload_at, payload_end), count)
end

-- A record's parent (1.7): a "P" line without an id says that the parent
-- is the id before the checkpoint's in the order set of its namespace. The
-- library stores it so instead of the id (about 40 bytes a checkpoint), and
-- writes the id back into such a record before a change of the order set
-- puts another id before it. Replies and dumps give the id.

-- A record with its "P" line's id replaced: "" (the id before it), an id,
-- or nil (no "P" line); the record itself if it has no "P" line or its
-- line already says so.
function CP.with_parent(record, parent)
  local count, lines, payload_at, payload_end = CP.record_parts(record)
  if not lines then return record end
  for i, line in ipairs(lines) do
    if string.byte(line, 1) == 80 then  -- "P"
      if parent and line == 'P' .. parent then return record end
      if parent then
        lines[i] = 'P' .. parent
      else
        table.remove(lines, i)
      end
      return CP.build_record(lines, string.sub(record, payload_at, payload_end), count)
    end
  end
  return record
end

-- The header lines of a record that start with kind (a letter), in order:
-- found by a search of the header, not parsed line by line (a call that
-- replies no record reads only what it looks for). Past HEADER_LINES and
-- HEADER_BYTES, or malformed: none.
function CP.header_lines(record, kind)
  local header = CP.raw_header(record)
  local lines, from = {}, 1
  if not header or #header - 1 > CP.HEADER_BYTES or string.sub(header, -1) ~= '\n' then
    return lines
  end
  while true do
    local found = string.find(header, '\n' .. kind, from, true)
    if not found then return lines end
    if #lines >= CP.HEADER_LINES then return {} end
    local stop = string.find(header, '\n', found + 1, true)
    lines[#lines + 1] = string.sub(header, found + 1, stop - 1)
    from = stop
  end
end

-- True if a record's header holds the line (a plain search of the header,
-- however many lines it has).
function CP.header_has(record, wanted)
  local header = CP.raw_header(record)
  return header ~= nil and not string.find(wanted, '\n', 1, true)
    and string.find(header, '\n' .. wanted .. '\n', 1, true) ~= nil
end

-- A record that names its parent by its place ("P" alone) with the id
-- parent written into that line: its header spliced, not parsed.
function CP.pinned(record, parent)
  local header, payload_at = CP.raw_header(record)
  local found = header and string.find(header, '\nP\n', 1, true)
  if not found then return record end
  header = string.sub(header, 2, found) .. 'P' .. parent .. string.sub(header, found + 2)
  return #header .. '\n' .. header .. string.sub(record, payload_at)
end

-- A record as a reply gives it: without a count of writes, and with its
-- parent's id (before, the id before it when the caller knows it). parts:
-- what CP.record_parts gave for it (a reply parses a record once).
function CP.reply_record(keys, member, record, before, parts)
  if parts[1] then
    record = CP.build_record(parts[2], string.sub(record, parts[3], parts[4]), nil)
  end
  for _, line in ipairs(parts[2] or {}) do
    if line == 'P' then return CP.reply_parent(keys, member, record, before) end
  end
  return record
end

-- A record with its parent's id if it names its parent by its place.
function CP.reply_parent(keys, member, record, before)
  if not CP.header_has(record, 'P') then return record end
  local ns, id = string.match(member, '^([^%z]*)%z([^%z]+)$')
  if not id then return record end
  local parent = before or CP.order_before(keys[6], ns, id)
  if parent then return CP.pinned(record, parent) end
  return CP.with_parent(record, nil)
end

-- Writes its parent's id into the record of checkpoint id (of ns) if it
-- names its parent by its place, before that place changes (only a small
-- record does).
function CP.pin_parent(keys, ns, id, parent)
  if not id or not parent then return end
  local member = ns .. '\0' .. id
  local record = CP.small_record(keys, member)
  if record and CP.header_has(record, 'P') then
    local pinned = CP.pinned(record, parent)
    local count = #pinned > CP.SMALL_RECORD_BYTES and CP.record_parts(pinned)
    if count then
      -- (a record stored before fits_small: its count goes to :w, where the
      -- calls that read only small records find it)
      CP.store_count(keys, member, count, pinned, false)
    else
      CP.record_set(keys, member, pinned)
    end
  end
end

-- True if a record may hold a count of writes: it takes at most
-- SMALL_RECORD_BYTES, and still would with the id of a parent it names by
-- its place written back into it (a pin, a reply, a dump: up to 64 bytes
-- and a digit more of header length).
function CP.fits_small(record)
  local room = CP.header_has(record, 'P') and 65 or 0
  return #record + room <= CP.SMALL_RECORD_BYTES
end

-- A checkpoint's record if it takes at most SMALL_RECORD_BYTES, else nil:
-- only such a record holds a count of writes or names its parent by its
-- place, and a call reads no longer one for these.
function CP.small_record(keys, member)
  local size = CP.record_length(keys, member)
  if size == 0 or size > CP.SMALL_RECORD_BYTES then return nil end
  return CP.record_get(keys, member)
end

-- A checkpoint's count of writes, from its :w field, else from its record
-- (1.7; the record as given, or read if small; false: none): n, first,
-- folded (as parse_count), and the record if the record holds the count.
-- 0 when there is none, nil if it is malformed.
function CP.write_count(keys, member, record, held)
  local count = redis.call('HGET', keys[5], member)
  if count then return CP.parse_count(count) end
  if record == nil then record = CP.small_record(keys, member) end
  if held ~= nil then count = held else count = record and CP.record_parts(record) end
  if not count then return 0 end
  local n, first, folded = CP.parse_count(count)
  return n, first, folded, record
end

-- Stores a checkpoint's count: in its record (in_record, the record as
-- read) if both take at most SMALL_RECORD_BYTES, else in its :w field (then
-- a record that held it no longer does). Returns the record if it holds
-- the count.
function CP.store_count(keys, member, value, record, in_record)
  if in_record then
    local holding = CP.with_count(record, value)
    if CP.fits_small(holding) then
      CP.record_set(keys, member, holding)
      redis.call('HDEL', keys[5], member)
      return holding
    end
  end
  redis.call('HSET', keys[5], member, value)
  if record and CP.record_parts(record) then
    CP.record_set(keys, member, CP.with_count(record, nil))
  end
  return nil
end

-- The name of a checkpoint's k-th write group.
function CP.group_at(key, member, k, first)
  if k == 1 and first then return first end
  return redis.call('HGET', key, CP.write_slot(member, k))
end

-- A count to store: n, with the first group's name unless slot 1 holds it,
-- and the first group if it is folded.
function CP.count_value(n, first, folded)
  if first and folded then return n .. '\0' .. first .. '\0=' .. folded end
  if first then return n .. '\0' .. first end
  return n
end

-- A group's name "<task>\0<first index>[\0<k>]": its task and first index
-- (nil if it is not a name).
function CP.group_name(name)
  return string.match(name, '^([^%z]*)%z(%-?%d+)')
end

-- A stored group: its task path and writes {{index, channel, value}, ...}
-- (the first write's index is the name's); nil if it is malformed.
function CP.parse_group(first, value)
  local parts = value and CP.read_netstrings(value)
  if not parts or #parts < 3 or #parts % 3 ~= 0 then return nil end
  local writes = {{first, parts[2], parts[3]}}
  for i = 4, #parts, 3 do
    if not string.match(parts[i], '^%-?%d+$') then return nil end
    writes[#writes + 1] = {parts[i], parts[i + 1], parts[i + 2]}
  end
  return parts[1], writes
end

function CP.group_value(path, writes)
  local out = {CP.netstring(path), CP.netstring(writes[1][2]), CP.netstring(writes[1][3])}
  for i = 2, #writes do
    out[#out + 1] = CP.netstring(writes[i][1]) .. CP.netstring(writes[i][2])
      .. CP.netstring(writes[i][3])
  end
  return table.concat(out)
end

-- The writes of a cp_writes call (5 arguments each from first), each (task
-- id, index) once: the first write of an index, the last of a negative one
-- (a special channel, which replaces); then by task and path, in the order
-- they first come: {task, path, items (write numbers from 0), carried (the
-- bytes of their indexes, channels and values)}, ...
function CP.call_groups(args, first, count)
  local last, seen, groups, order = {}, {}, {}, {}
  for w = 0, count - 1 do
    local at_w = first + w * 5
    if tonumber(args[at_w + 1]) < 0 then last[args[at_w] .. '\0' .. args[at_w + 1]] = w end
  end
  for w = 0, count - 1 do
    local key = args[first + w * 5] .. '\0' .. args[first + w * 5 + 1]
    if not seen[key] then
      seen[key] = true
      local taken = last[key] or w
      local at_w = first + taken * 5
      local group_key = args[at_w] .. '\0' .. args[at_w + 2]
      if not groups[group_key] then
        groups[group_key] = {task = args[at_w], path = args[at_w + 2], items = {}, carried = 0}
        order[#order + 1] = groups[group_key]
      end
      local group = groups[group_key]
      group.items[#group.items + 1] = taken
      group.carried = group.carried + #args[at_w + 1] + #args[at_w + 3] + #args[at_w + 4]
    end
  end
  return order
end

-- The stored group a call's group of writes merges into, or nil: only the
-- checkpoint's newest group (so later writes stay later), only if it has
-- the name the call's first write of the task gives (a retry, a resume) and
-- is at most twice what the call carries for it and MERGE_SLACK. A slot's
-- name is read only if it is as long as that name (a name is another
-- call's task id, of any length). Returns {name, writes, bytes, at (index
-- -> position)}.
function CP.merge_target(state, group, first_index)
  local candidate = group.task .. '\0' .. first_index
  state.looked = state.looked + 1
  local newest = state.n == 1 and state.first_group
  local slot = CP.write_slot(state.member, state.n)
  if state.n > 0 and not newest and redis.call('HSTRLEN', state.key, slot) == #candidate then
    newest = redis.call('HGET', state.key, slot)
    state.read = state.read + #newest
  end
  if newest ~= candidate then return nil end
  local field = CP.write_field(state.member, candidate)
  local folded = state.n == 1 and state.folded or nil
  local size = folded and #folded or redis.call('HSTRLEN', state.key, field)
  if size == 0 or size > 2 * group.carried + CP.MERGE_SLACK then return nil end
  state.read = state.read + size
  local path, writes = CP.parse_group(first_index, folded or redis.call('HGET', state.key, field))
  if path ~= group.path then return nil end
  local target = {name = candidate, writes = writes, bytes = size, at = {}, folded = folded ~= nil}
  for i, write in ipairs(writes) do target.at[write[1]] = i end
  return target
end

-- A write's value as stored: runs of the KNOWN messages span names if the
-- session holds them all (IFKNOWN), a "\1M" value's runs resolved, or the
-- value as it came.
function CP.write_value(keys, value, span, stored)
  local found = span ~= nil
  for k = span and span[1] or 1, span and span[2] or 0 do found = found and stored[k] ~= nil end
  if found then
    return CP.REFS_MARK .. CP.resolve_runs(keys[1], '#' .. span[1] .. '..#' .. span[2], stored, false, true)
  elseif string.sub(value, 1, 2) == CP.REFS_MARK then
    return CP.REFS_MARK .. CP.resolve_runs(keys[1], string.sub(value, 3), stored, false, true)
  end
  return value
end

-- Adds to state.fields the groups a call's group of writes changed: a new
-- one takes the next number, a name "<task>\0<first index>" (with "\0" <k>
-- if taken), and the count's inline name or a slot.
-- True if a checkpoint's group of that name is stored (the count's folded
-- first group, or a field of its own).
function CP.is_stored_group(state, name)
  return name == state.folded_name
    or redis.call('HEXISTS', state.key, CP.write_field(state.member, name)) == 1
end

function CP.store_chunks(state, group, chunks)
  local fields = state.fields
  for _, chunk in ipairs(chunks) do
    if chunk.new then
      state.n = state.n + 1
      local name = group.task .. '\0' .. chunk.writes[1][1]
      state.looked = state.looked + 1
      if state.used[name] or CP.is_stored_group(state, name) then
        name = name .. '\0' .. state.n
      end
      state.used[name] = true
      chunk.name = name
      if state.n == 1 and state.inline_first and #name <= CP.NAME_BYTES then
        state.first_group = name
        chunk.first = state.fold
      else
        fields[#fields + 1] = CP.write_slot(state.member, state.n)
        fields[#fields + 1] = name
      end
    end
    if chunk.changed then
      local value = CP.group_value(group.path, chunk.writes)
      if (chunk.first or chunk.folded) and #value <= CP.FOLD_BYTES then
        state.first_body = value  -- the count holds it
      else
        if chunk.folded then state.first_body = nil end  -- out of the count
        fields[#fields + 1] = CP.write_field(state.member, chunk.name)
        fields[#fields + 1] = value
      end
    end
  end
end

-- The data fields the Python client leaves out (since 1.6) while they hold
-- the empty default of LangChain's class, as a whole dict writes them.
CP.EMPTY_FIELDS = {'"additional_kwargs":{}', '"response_metadata":{}', '"name":null',
  '"example":false', '"tool_calls":[]', '"invalid_tool_calls":[]', '"usage_metadata":null',
  '"artifact":null', '"tool_call_chunks":[]', '"chunk_position":null'}

-- True if a stored JSON and a message a call carries (json, decoded) are
-- the same message: the same bytes, or the stored JSON a whole dict whose
-- compact form is the carried JSON byte for byte: the whole dict with its
-- data's type again and its fields above that hold their empty default cut
-- out, each found once (a stored message written before 1.6 is the same
-- message as the Python client sends it now; any other difference is an
-- edit). Work: the carried JSON; a stored one more than 1 KiB longer is not
-- looked at.
function CP.same_message(stored_json, json, message)
  if stored_json == json then return true end
  if #stored_json <= #json or #stored_json > #json + 1024 then return false end
  local data_at = string.find(stored_json, '"data":{', 1, true)
  if not data_at then return false end
  local cut = stored_json
  local patterns = {',"type":' .. cjson.encode(message.type)}
  for _, field in ipairs(CP.EMPTY_FIELDS) do patterns[#patterns + 1] = ',' .. field end
  for _, pattern in ipairs(patterns) do
    local at = string.find(cut, pattern, data_at, true)
    if at then
      if string.find(cut, pattern, at + 1, true) then return false end
      cut = string.sub(cut, 1, at - 1) .. string.sub(cut, at + #pattern)
    end
  end
  return cut == json
end

-- The stored JSON of a message's entry, read while budget.bytes lasts (a
-- call reads at most twice what it carries and READ_BYTES, and one message
-- more, however long the messages its ids name); nil if not read.
function CP.stored_entry(keys, stream_id, budget)
  if budget.bytes <= 0 then return nil end
  local entry = redis.call('XRANGE', keys[1], stream_id, stream_id)[1]
  local json = entry and entry[2][2]
  budget.bytes = budget.bytes - (json and #json or 0)
  budget.read = (budget.read or 0) + (json and #json or 0)
  return json
end

-- A call's messages looked up by client id: the stream id of each that the
-- session holds under its id as the same message (CP.same_message), the
-- bytes of stored entries read (within CP.stored_entry's budget), and the
-- positions whose id the map names otherwise (an edit, or an entry gone).
function CP.known_messages(keys, messages, jsons, exists)
  local found, named = {}, {}
  local budget = {bytes = 2 * CP.carried_bytes(jsons) + CP.READ_BYTES}
  for position, json in ipairs(jsons) do
    local id = exists and client_id(messages[position])
    local existing = id and redis.call('HGET', keys[3], id)
    local entry = existing and CP.stored_entry(keys, existing, budget)
    if entry and CP.same_message(entry, json, messages[position]) then
      found[position] = existing
    elseif existing then
      named[position] = true
    end
  end
  return found, budget.read or 0, named
end

-- Stores the messages of a checkpoint call in the session: one whose client
-- id is stored as the same message is not stored again; one whose id is
-- stored otherwise (an edited message) is stored anew and the id map points
-- to it. noindex: a session this call creates keeps no search index (as
-- append's NOINDEX). Returns the stream id of each message.
function CP.store_thread_messages(keys, messages, jsons, exists, noindex)
  local stored, _, named = CP.known_messages(keys, messages, jsons, exists)
  local fresh_jsons, fresh_messages, where = {}, {}, {}
  for position, json in ipairs(jsons) do
    if not stored[position] then
      if named[position] then redis.call('HDEL', keys[3], client_id(messages[position])) end
      fresh_jsons[#fresh_jsons + 1] = json
      fresh_messages[#fresh_messages + 1] = messages[position]
      where[#fresh_jsons] = position
    end
  end
  if #fresh_jsons > 0 then
    local session = {keys[1], keys[2], keys[3]}
    local state = prepare_write(session, noindex == true, exists)
    local ids = store_messages(session, fresh_jsons, fresh_messages, nil, state)
    if state.building then build_step(session, state, WRITE_BUILD_STEP) end
    finish_write(session, state)
    for k, stream_id in ipairs(ids) do stored[where[k]] = stream_id end
  end
  return stored
end

-- The bytes of JSON a call carries.
function CP.carried_bytes(jsons)
  local bytes = 0
  for _, json in ipairs(jsons) do bytes = bytes + #json end
  return bytes
end

-- SETTLE: the write of settle.index in the group "<task>\0<first>" of a
-- parent's writes, if its value's SHA-1 is settle.sha1, takes the runs
-- settle.runs of the call's messages instead of its bytes. A settled value
-- holds the messages the call carries: the groups a call reads take at most
-- room.bytes (twice the JSON it carries and READ_BYTES), each group once,
-- and each value is hashed at most once; a longer group keeps its bytes
-- (memory, never correctness). CP.settled stores the groups changed.
function CP.settle(keys, settle, stored, room)
  local name = settle.task .. '\0' .. settle.first
  local field = CP.write_field(settle.member, name)
  local group = room.groups[field]
  if group == nil then
    group = false
    local size = redis.call('HSTRLEN', keys[5], field)
    local count, folded = nil, nil
    if size == 0 then  -- the group may be the first, folded into the count
      count = CP.settle_count(keys, settle.member, room)
      folded = count and count.first == name and count.folded or nil
      if folded then room.bytes = room.bytes + #folded end  -- charged with the count
    end
    size = folded and #folded or size
    if size > 0 and size <= room.bytes then
      room.bytes = room.bytes - size
      local path, writes = CP.parse_group(settle.first, folded or redis.call('HGET', keys[5], field))
      if path then
        group = {path = path, writes = writes, field = field, at = {},
          count = folded and count or nil, member = settle.member}
        for i, write in ipairs(writes) do group.at[write[1]] = i end
      end
    end
    room.groups[field] = group
  end
  local write = group and group.writes[group.at[settle.index] or 0]
  if not write or write.hashed or CP.value_runs(write[3]) then return end
  write.hashed = true
  local value = redis.sha1hex(write[3]) == settle.sha1 and CP.settled_value(keys, settle, stored)
  -- (a shaped value is never longer than the value it replaces: its
  -- template is the client's)
  if value and (not settle.template or #value < #write[3]) then
    write[3] = value
    if not group.changed then
      group.changed = true
      room.changed[#room.changed + 1] = group
    end
  end
end

-- A settled value: the runs of the call's messages, or with a template
-- (SHAPE, SHAPEBLOB) a shaped value.
function CP.settled_value(keys, settle, stored)
  local runs = CP.resolve_runs(keys[1], settle.runs, stored, settle.template ~= nil, true)
  if settle.template then return CP.SHAPE_MARK .. runs .. '\n' .. settle.template end
  return CP.REFS_MARK .. runs
end

-- SHAPEBLOB: a channel value stored before (a parent's) becomes a shaped
-- value if its SHA-1 is settle.sha1; it is read if it fits room.bytes.
function CP.shape_blob(keys, settle, stored, room)
  local size = redis.call('HSTRLEN', keys[4], settle.field)
  if size == 0 or size > room.bytes then return end
  room.bytes = room.bytes - size
  local value = redis.call('HGET', keys[4], settle.field)
  if not CP.value_runs(value) and redis.sha1hex(value) == settle.sha1 then
    local shaped = CP.settled_value(keys, settle, stored)
    if #shaped < #value then redis.call('HSET', keys[4], settle.field, shaped) end
  end
end

function CP.settled(keys, room)
  for _, group in ipairs(room.changed) do
    local value = CP.group_value(group.path, group.writes)
    local count = group.count
    if count and #value <= CP.FOLD_BYTES then
      count.folded = value
      count.record = CP.store_count(keys, group.member, CP.count_value(count.n, count.first, value),
        count.record, count.record ~= nil)
    elseif count then  -- a SETTLE made it longer than the count holds: a field of its own
      count.folded = nil
      redis.call('HSET', keys[5], group.field, value)
      count.record = CP.store_count(keys, group.member, CP.count_value(count.n, count.first),
        count.record, false)
    else
      redis.call('HSET', keys[5], group.field, value)
    end
  end
end

-- The count of a parent's writes a SETTLE names (read once per call, within
-- room.bytes, as the groups): {n, first, folded}, or false.
function CP.settle_count(keys, member, room)
  local count = room.counts[member]
  if count == nil then
    count = false
    local size = redis.call('HSTRLEN', keys[5], member)
    -- (a count kept in the record, 1.7, is charged with the record; only
    -- a small record keeps one)
    if size == 0 then
      size = CP.record_length(keys, member)
      if size > CP.SMALL_RECORD_BYTES then size = 0 end
    end
    if size > 0 and size <= room.bytes then
      room.bytes = room.bytes - size
      local n, first, folded, record = CP.write_count(keys, member)
      if n then count = {n = n, first = first, folded = folded, record = record} end
    end
    room.counts[member] = count
  end
  return count
end

-- Options and messages of a checkpoint write call: "[TTL s] ... MESSAGES
-- json..." where the MESSAGES part is optional. Returns the decoded
-- messages and their JSON, or nil and an error reply.
function CP.thread_messages(args, at)
  local messages, jsons = {}, {}
  if at <= #args then
    local err
    messages, err = decode_batch(args, at + 1, #args, 1)
    if not messages then return nil, err end
    jsons = err
  end
  return messages, jsons
end

-- The index of the argument "MESSAGES" from first on, or #args + 1.
function CP.messages_at(args, first)
  for i = first, #args do
    if args[i] == 'MESSAGES' then return i end
  end
  return #args + 1
end

-- A read's meter: what one call has read so far, against the budgets.
-- With COUNT_WORK (tests), a read's reply is {"<entries> <bytes>", reply}:
-- entries counts stream entries and pending writes read, bytes their bytes;
-- runs counts the runs looked at (each 1, and 1 more per 8 runs read before).
function CP.meter()
  return {entries = 0, bytes = 0, runs = 0, covered = {}, partial = {}, sent = {},
    entries_out = {}}
end

function CP.counted(meter, reply)
  if COUNT_WORK then return {meter.entries .. ' ' .. meter.bytes, reply} end
  return reply
end

function CP.spent(meter)
  return meter.entries >= CP.READ_ENTRIES or meter.bytes >= CP.READ_BYTES
    or meter.runs >= CP.READ_ENTRIES
end

-- True if stream id x is before id y.
function CP.id_before(x, y)
  local xms, xseq = parse_full_id(x)
  local yms, yseq = parse_full_id(y)
  return id_after(yms, yseq, xms, xseq)
end

-- Reads stream entries from start ("<id>" or "(<id>") to the id stop while
-- the meter has budget, as many at once as the bytes left have room for at
-- the session's longest message (key index's "\0M"; one at a time when it
-- is absent), checking the budget after each entry: a call reads at most
-- READ_BYTES and one message more. Each entry goes to meter.entries_out once
-- per reply. Returns nil once the range is read, else the start to go on from.
function CP.read_entries(key, index, start, stop, meter)
  if meter.largest == nil then
    meter.largest = tonumber(redis.call('HGET', index, META_LARGEST) or nil) or false
  end
  while not CP.spent(meter) do
    local count = read_room(meter.largest or nil, CP.READ_BYTES - meter.bytes,
      math.min(CP.READ_STEP, CP.READ_ENTRIES - meter.entries))
    local entries = redis.call('XRANGE', key, start, stop, 'COUNT', count)
    for i, entry in ipairs(entries) do
      if i > 1 and CP.spent(meter) then
        -- Only if "\0M" understated a length: the rest is read again later.
        for k = i, #entries do meter.bytes = meter.bytes + #entries[k][2][2] end
        return '(' .. entries[i - 1][1]
      end
      meter.entries = meter.entries + 1
      meter.bytes = meter.bytes + #entry[2][2]
      if not meter.sent[entry[1]] then
        meter.sent[entry[1]] = true
        local out = meter.entries_out
        out[#out + 1] = entry[1]
        out[#out + 1] = entry[2][2]
      end
    end
    if #entries < count or entries[#entries][1] == stop then return nil end
    start = '(' .. entries[#entries][1]
  end
  return start
end

-- Reads the entries of a run "<a>..<b>" that this reply has not read yet
-- (a run inside one read before is skipped; one that goes on past such a
-- run is read from where it ended). Appends a continuation {start, b} to
-- more when the budget ends first.
function CP.read_run(key, index, run, meter, more)
  local a, b = CP.run_ends(run)
  if not a or meter.partial[run] then return end
  if CP.spent(meter) then
    -- The budget is spent: the run is left for chathist_cp_more whole (which
    -- checks its ends: a run stored is well formed, so only a cheap look here,
    -- as a record may hold tens of thousands of them).
    if string.find(a, '^%d+%-%d+$') and string.find(b, '^%d+%-%d+$') then
      meter.partial[run] = true
      more[#more + 1] = a
      more[#more + 1] = b
    end
    return
  end
  if not parse_full_id(a) or not parse_full_id(b) then return end
  -- A run costs a read, and its check against the runs read before: many
  -- short runs (a fragmented conversation) spend the budget too.
  meter.runs = meter.runs + 1 + math.floor(#meter.covered / 8)
  local reach
  for _, span in ipairs(meter.covered) do
    if not CP.id_before(a, span[1]) and not CP.id_before(span[2], a)
        and (not reach or CP.id_before(reach, span[2])) then
      reach = span[2]
    end
  end
  if reach and not CP.id_before(reach, b) then return end
  local rest = CP.read_entries(key, index, reach and '(' .. reach or a, b, meter)
  if rest then
    meter.partial[run] = true
    more[#more + 1] = rest
    more[#more + 1] = b
  else
    meter.covered[#meter.covered + 1] = {a, b}
  end
end

-- Reads a checkpoint's writes from the k-th group on while the meter has
-- budget, a group at a time (a group's name and value may be long, and no
-- bound of their length is kept), so a call reads at most READ_BYTES and
-- READ_ENTRIES writes and one group more (what one write call stored);
-- each write is replied as five netstrings. Returns the writes, the runs
-- their values hold, and the k to go on from (0 when all are read).
function CP.read_writes(keys, member, k, meter, wanted, record, held)
  local key = keys[5]
  local n, first, folded = CP.write_count(keys, member, record, held)
  n = n or 0
  local writes, runs = {}, {}
  while k <= n do
    if CP.spent(meter) then return writes, runs, k end
    local name = CP.group_at(key, member, k, first)
    local value = k == 1 and folded or (name and redis.call('HGET', key, CP.write_field(member, name)))
    local task, first_index = CP.group_name(name or '')
    local path, group = nil, {}
    if task and value then path, group = CP.parse_group(first_index, value) end
    for _, write in ipairs(path and group or {}) do
      -- (a write of a channel the reader did not ask for is replied without
      -- its value, so that a reader still sees which (task, index) came first)
      local replied = (not wanted or wanted[write[2]]) and write[3] or ''
      writes[#writes + 1] = CP.netstring(task) .. CP.netstring(write[1]) .. CP.netstring(path)
        .. CP.netstring(write[2]) .. CP.netstring(CP.replied_value(replied))
      local text = CP.value_runs(replied)
      if text then
        runs[#runs + 1] = text
        -- its runs spend the budget as they will be looked at
        meter.runs = meter.runs + 1 + select(2, string.gsub(text, ' ', ''))
      end
      meter.entries = meter.entries + 1
    end
    if not path then meter.entries = meter.entries + 1 end
    meter.bytes = meter.bytes + (name and #name or 0) + (value and #value or 0)
    k = k + 1
  end
  return writes, runs, 0
end

-- Reads the channel values a record's "B" lines name, from the from-th "B"
-- line on, while the meter has budget (checked before each, and the first
-- is always read), so a call reads at most READ_BYTES and one value more,
-- however many and however long they are. Returns a flat channel, value
-- list, the number of the first "B" line not read (0 when all are) and the
-- runs of the shaped values read.
function CP.read_blobs(key, member, lines, from, meter, wanted)
  local ns = string.match(member, '^([^%z]*)%z')
  local blobs, number, runs = {}, 0, {}
  for _, line in ipairs(lines) do
    local channel, version = string.match(line, '^B([^\t]+)\t(.*)$')
    if channel then
      number = number + 1
      if number >= from and (not wanted or wanted[channel]) then
        if number > from and CP.spent(meter) then return blobs, number, runs end
        meter.entries = meter.entries + 1
        local value = redis.call('HGET', key, 'b' .. ns .. '\0' .. channel .. '\0' .. version)
        if value then
          blobs[#blobs + 1] = channel
          -- (a channel value starting with "\1M" is bytes: only a shaped one holds runs)
          blobs[#blobs + 1] = string.sub(value, 1, 2) == CP.SHAPE_MARK and CP.replied_value(value)
            or value
          meter.bytes = meter.bytes + #value
          if string.sub(value, 1, 2) == CP.SHAPE_MARK then runs[#runs + 1] = CP.value_runs(value) end
        end
      end
    end
  end
  return blobs, 0, runs
end

-- The member of a record's parent (its header lines' "P" line; without an
-- id, the id before member's in the order set), or nil.
function CP.parent_member(keys, lines, member)
  local ns, own = string.match(member, '^([^%z]*)%z([^%z]+)$')
  for _, line in ipairs(lines) do
    if line == 'P' then
      local id = CP.order_before(keys[6], ns, own)
      return id and ns .. '\0' .. id
    end
    local id = string.match(line, '^P(.+)$')
    if id then return ns .. '\0' .. id end
  end
  return nil
end

-- Appends a checkpoint's reply to out (with wanted, a set of channels, only
-- their runs, values and writes): {member, record, writes, blobs,
-- entries, next write, more, next blob}: the blobs its "B" lines name (a
-- flat channel, value list), its writes from the first, the stream entries
-- of the runs it and those writes hold (a flat id, json list, each entry
-- once per reply), the k of the first write not replied (0: none), a flat
-- start, stop list of the ranges of runs not read yet, and the number of
-- the first "B" line whose value is not replied (0: none), for
-- chathist_cp_more.
function CP.checkpoint_reply(keys, member, record, meter, out, wanted, parts, before)
  local runs = {}
  parts = parts or {CP.record_parts(record)}
  local lines = parts[2] or {}
  meter.bytes = meter.bytes + #record
  -- header lines of channels not asked for are parsed too: they spend the budget
  meter.entries = meter.entries + math.floor(#lines / 8)
  for _, line in ipairs(lines) do
    local channel, text = string.match(line, '^M([^\t]+)\t(.*)$')
    if text and (not wanted or wanted[channel]) then runs[#runs + 1] = text end
  end
  local blobs, next_blob, blob_runs = CP.read_blobs(keys[4], member, lines, 1, meter, wanted)
  local writes, write_runs, next_write = CP.read_writes(keys, member, 1, meter, wanted, record,
    parts[1] or false)
  for _, text in ipairs(blob_runs) do runs[#runs + 1] = text end
  for _, text in ipairs(write_runs) do runs[#runs + 1] = text end
  meter.entries_out = {}
  local more = {}
  for _, text in ipairs(runs) do
    for item in string.gmatch(text .. ' ', '([^ ]+) ') do
      CP.read_run(keys[1], keys[2], item, meter, more)
    end
  end
  out[#out + 1] = {member, CP.reply_record(keys, member, record, before, parts), writes, blobs,
    meter.entries_out, next_write, more, next_blob}
end

------------------------------------------------------------------------------
-- 9. Entry points. Each opens with its contract: KEYS, ARGV, reply. Every one
-- checks its keys and every argument before its first write.
------------------------------------------------------------------------------

-- The chat-history entry points (the checkpoint ones are CP's): fields of a
-- table, as CP's helpers are, because Lua allows a chunk 200 local names and
-- the sections above take nearly all of them.
local API = {}

--[[
chathist_append: store a batch of messages, atomically.
  KEYS: the session's 3 keys.
  ARGV: [TTL seconds] [MAXLEN n] [MAXBYTES n] [NOINDEX] [TOKEN t] [IFLAST id] [TOOLSAFE]
        MESSAGES json [json ...]
    TTL 0 leaves the TTL as it is; TTL n > 0 sets every key of the session to
    expire n seconds from now (a sliding TTL for the whole conversation).
    MAXLEN n / MAXBYTES n: afterwards, the oldest messages are removed until
    at most n remain / their JSON takes at most n bytes (the newest stays),
    at most TRIM_STEP messages and TRIM_BYTES more than the call added: a
    larger excess goes with the next writes (1.3).
    NOINDEX: a session with no index yet is not given one.
    TOKEN t: the write's name for retries (1.3): a call whose token names
    one of the session's latest 64 to 128 writes with a token stores
    nothing and replies what that write replied.
    IFLAST id (1.3): write only if the session's newest message is id
    (0-0: the session is empty); else reply CONFLICT and write nothing.
    TOOLSAFE (1.3): a trim also removes the tool results of the AI
    messages it removes, so the window never starts with an orphan.
    A message whose data.id was already stored in this session is not stored
    again: its existing stream id is returned (safe retries).
  Reply: array of stream ids, one per message, in order.
]]
function API.append(keys, args)
  local bad, exists = check_keys(keys)
  if bad then return bad end
  local options, at = read_options(args, 1, {TTL = true, MAXLEN = true, MAXBYTES = true,
    TOKEN = true, IFLAST = true}, {MESSAGES = true}, {NOINDEX = true, TOOLSAFE = true})
  if not options then return at end
  if at >= #args then
    return fail('BADARG', 'MESSAGES and at least one message JSON are required')
  end
  local ttl, err = ttl_option(options)
  if not ttl then return err end
  local max_count, max_bytes
  max_count, err = count_option(options, 'MAXLEN', MAX_WINDOW, 1)
  if err then return err end
  max_bytes, err = count_option(options, 'MAXBYTES', MAX_WINDOW_BYTES, 1)
  if err then return err end
  local token
  token, err = token_option(options)
  if err then return err end
  if options.IFLAST and options.IFLAST ~= '0-0' and not parse_full_id(options.IFLAST) then
    return fail('BADARG', 'IFLAST must be a stream id "ms-seq" (0-0: the session is empty)')
  end
  local messages, jsons = decode_batch(args, at + 1, #args, 1)
  if not messages then return jsons end
  if options.IFLAST then
    -- A conditional write: a retry of it is replayed, another writer's
    -- message in between is a conflict, and either way nothing is written.
    if exists and token then
      local again = redis.call('HMGET', keys[2], token_fields(token))
      if again[1] or again[2] then return replayed(again[1] or again[2]) end
    end
    local last = exists and redis.call('XREVRANGE', keys[1], '+', '-', 'COUNT', 1)[1]
    local last_id = last and last[1] or '0-0'
    if last_id ~= options.IFLAST then
      return fail('CONFLICT', 'the session\'s last message is ' .. last_id .. ', not '
        .. options.IFLAST)
    end
  end

  local state = prepare_write(keys, options.NOINDEX, exists, token)
  if state.again then return replayed(state.again) end
  local stream_ids = store_messages(keys, jsons, messages, nil, state)
  state.token, state.replied = token, stream_ids
  trim(keys, state, max_count, max_bytes, options.TOOLSAFE)
  if state.building then build_step(keys, state, WRITE_BUILD_STEP) end
  finish_write(keys, state)
  refresh_ttl(keys, ttl)
  collect_garbage()
  return stream_ids
end

--[[
chathist_import: store messages under explicit stream ids (export/import).
  KEYS: the session's 3 keys.
  ARGV: [TTL seconds] [NOINDEX] [TOKEN t] ENTRIES id json [id json ...]
    ids are "ms-seq", strictly increasing, after the session's last id.
  Reply: array of stream ids, one per message (the stored one for a message
  whose data.id is stored already).
]]
function API.import(keys, args)
  local bad, exists = check_keys(keys)
  if bad then return bad end
  local options, at = read_options(args, 1, {TTL = true, TOKEN = true}, {ENTRIES = true},
    {NOINDEX = true})
  if not options then return at end
  if at >= #args or (#args - at) % 2 ~= 0 then
    return fail('BADARG', 'ENTRIES and pairs of stream id and message JSON are required')
  end
  local ttl, err = ttl_option(options)
  if not ttl then return err end
  local token
  token, err = token_option(options)
  if err then return err end
  -- A retry of an import that was stored replies what it replied (its ids
  -- are no longer after the session's last one).
  if exists and token then
    local again = redis.call('HMGET', keys[2], token_fields(token))
    if again[1] or again[2] then return replayed(again[1] or again[2]) end
  end
  local ids = {}
  local last_ms, last_seq = 0, 0
  if exists then
    local info = redis.call('XINFO', 'STREAM', keys[1])
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then last_ms, last_seq = parse_full_id(info[i + 1]) end
    end
  end
  for i = at + 1, #args, 2 do
    local position = (i - at + 1) / 2
    local ms, seq = parse_full_id(args[i])
    if not ms or seq > MAX_IMPORTED_SEQ then
      return fail('BADARG', 'entry ' .. position .. ' id is not a stream id "ms-seq"')
    end
    if not id_after(ms, seq, last_ms, last_seq) then
      return fail('BADARG', 'entry ' .. position .. ' id ' .. args[i]
        .. ' is not after the session\'s last id ' .. format_id(last_ms, last_seq))
    end
    last_ms, last_seq = ms, seq
    ids[#ids + 1] = args[i]
  end
  local messages, jsons = decode_batch(args, at + 2, #args, 2)
  if not messages then return jsons end

  local state = prepare_write(keys, options.NOINDEX, exists, token)
  local stream_ids = store_messages(keys, jsons, messages, ids, state)
  state.token, state.replied = token, stream_ids
  if state.building then build_step(keys, state, WRITE_BUILD_STEP) end
  finish_write(keys, state)
  refresh_ttl(keys, ttl)
  collect_garbage()
  return stream_ids
end

--[[
chathist_delete: delete messages by id, atomically.
  KEYS: the session's 3 keys.
  ARGV: IDS id [id ...]            stream ids "ms-seq"
     or MESSAGEIDS mid [mid ...]   client ids (LangChain message.id)
  Unknown ids are ignored. Reply: the number of messages deleted.
]]
function API.delete(keys, args)
  local bad, exists = check_keys(keys)
  if bad then return bad end
  local form = args[1] and string.upper(args[1])
  if (form ~= 'IDS' and form ~= 'MESSAGEIDS') or #args < 2 then
    return fail('BADARG', 'expected IDS id [id ...] or MESSAGEIDS id [id ...]')
  end
  if #args - 1 > MAX_BATCH_MESSAGES then
    return fail('TOOBIG', (#args - 1) .. ' ids is over the limit of ' .. MAX_BATCH_MESSAGES)
  end
  for i = 2, #args do
    if form == 'IDS' and not parse_full_id(args[i]) then
      return fail('BADARG', 'id ' .. (i - 1) .. ' is not a stream id "ms-seq"')
    end
    if args[i] == '' then return fail('BADARG', 'id ' .. (i - 1) .. ' is empty') end
  end
  if not exists then return 0 end
  local entries, seen = {}, {}
  for i = 2, #args do
    local stream_id = args[i]
    if form == 'MESSAGEIDS' then stream_id = redis.call('HGET', keys[3], args[i]) end
    if stream_id and not seen[stream_id] then
      seen[stream_id] = true
      local found = redis.call('XRANGE', keys[1], stream_id, stream_id)
      if #found > 0 then entries[#entries + 1] = found[1] end
    end
  end
  if #entries == 0 then return 0 end
  local state = prepare_write(keys, false, true)
  state.total = state.total - forget_entries(keys, entries, state)
  for _, entry in ipairs(entries) do redis.call('XDEL', keys[1], entry[1]) end
  if redis.call('XLEN', keys[1]) == 0 then
    redis.call('UNLINK', keys[1], keys[2], keys[3])
  else
    if state.building then build_step(keys, state, WRITE_BUILD_STEP) end
    finish_write(keys, state)
  end
  return #entries
end

--[[
chathist_range: read messages in order (read-only).
  KEYS: the session's 3 keys.
  ARGV: [COUNT n] [BEFORE id] [AFTER id] [TOOLSAFE]
    no options         the whole session
    COUNT n            the latest n messages
    BEFORE id COUNT n  the n messages just before id (exclusive)
    AFTER id [COUNT n] the messages just after id (exclusive), oldest first
  An id may be a stream id "ms-seq" or a time in ms: BEFORE ms means stored
  before that millisecond, AFTER ms stored after it.
  TOOLSAFE (1.3, not with AFTER): the window leaves out its oldest messages
  while they are tool results (their AI message is outside it); a window
  of tool results only reaches back to their AI message instead.
  Reply: flat array id1, json1, id2, json2, ... oldest first.
]]
function API.range(keys, args)
  local bad = check_keys(keys)
  if bad then return bad end
  local options, err = read_options(args, 1, {COUNT = true, BEFORE = true, AFTER = true}, nil,
    {TOOLSAFE = true})
  if not options then return err end
  if options.TOOLSAFE and options.AFTER then
    return fail('BADARG', 'TOOLSAFE applies to windows read backward (not with AFTER)')
  end
  local count
  if options.COUNT then
    count = parse_count(options.COUNT, 1e15)
    if not count then return fail('BADARG', 'COUNT must be a non-negative integer') end
    if count == 0 then return {} end
  end
  bad = check_bounds(options, {'BEFORE', 'AFTER'})
  if bad then return bad end
  local low = options.AFTER and exclusive_after(options.AFTER) or '-'
  local high = options.BEFORE and exclusive_before(options.BEFORE) or '+'
  local entries
  if count and not options.AFTER then
    entries = redis.pcall('XREVRANGE', keys[1], high, low, 'COUNT', count)
  elseif count then
    entries = redis.pcall('XRANGE', keys[1], low, high, 'COUNT', count)
  else
    entries = redis.pcall('XRANGE', keys[1], low, high)
  end
  if entries['err'] then
    return fail('BADARG', 'BEFORE/AFTER is not a valid stream id or time')
  end
  local backward = not options.AFTER and count ~= nil
  if options.TOOLSAFE and #entries > 0 then entries = tool_safe(keys, entries, backward) end
  return flatten(entries, backward)
end

--[[
chathist_search: find messages by their words (read-only).
  KEYS: the session's 3 keys.
  ARGV: query [LIMIT n] [MODE ALL|ANY] [TYPE type] [BEFORE id] [MINSCORE n] [PAGED]
    query: tokens (see docs/PROTOCOL.md); "quoted words" must appear as a
    phrase; a run of CJK characters is a phrase too.
    MODE ALL (default): messages holding every token and phrase; the LIMIT
    most recent, oldest first.
    MODE ANY: messages holding any token, best first: most tokens matched,
    then most recent. MINSCORE n: only messages matching at least n tokens.
    TYPE: only messages of this type.  BEFORE id: only messages older than id.
    LIMIT defaults to 10, at most 1000.
    A call does a bounded amount of work (SEARCH_* above). PAGED: the reply
    starts with where to continue, "" once the search is complete.
  Reply: flat array id1, json1, id2, json2, ...; with PAGED:
    next, id1, json1, score1, id2, json2, score2, ...
  A call without PAGED that cannot finish inside its budget replies BUDGET.
]]
function API.search(keys, args)
  local bad = check_keys(keys)
  if bad then return bad end
  local text = args[1]
  if type(text) ~= 'string' or #text > MAX_QUERY_BYTES then
    return fail('BADARG', 'a query of at most ' .. MAX_QUERY_BYTES .. ' bytes is required')
  end
  local options, err = read_options(args, 2, {LIMIT = true, MODE = true, TYPE = true,
    BEFORE = true, MINSCORE = true}, nil, {PAGED = true})
  if not options then return err end
  local limit, minscore
  limit, err = count_option(options, 'LIMIT', MAX_SEARCH_LIMIT, 0, DEFAULT_SEARCH_LIMIT)
  if err then return err end
  minscore, err = count_option(options, 'MINSCORE', MAX_QUERY_TOKENS + 1, 1, 1)
  if err then return err end
  local mode = options.MODE and string.upper(options.MODE) or 'ALL'
  if mode ~= 'ALL' and mode ~= 'ANY' then return fail('BADARG', 'MODE must be ALL or ANY') end
  if options.TYPE and (options.TYPE == '' or #options.TYPE > 64) then
    return fail('BADARG', 'TYPE must be a message type of 1 to 64 bytes')
  end
  bad = check_bounds(options, {'BEFORE'}, true)
  if bad then return bad end
  local terms, phrases = parse_query(text)
  if #terms > MAX_QUERY_TOKENS then
    return fail('BADARG', 'the query has ' .. #terms .. ' distinct tokens, over the limit of '
      .. MAX_QUERY_TOKENS)
  end
  local paged = options.PAGED == true
  if #terms == 0 or limit == 0 or (mode == 'ANY' and minscore > #terms) then
    return paged and {''} or {}
  end
  local query = {terms = terms, plain = plain_terms(terms), phrases = phrases, limit = limit,
    any = mode == 'ANY', minscore = mode == 'ANY' and minscore or 1, paged = paged,
    weight = 1 + math.floor(#terms / 8),  -- a message costs more to judge against many terms
    type = options.TYPE, before = options.BEFORE}
  reset_work()
  local reply
  if is_indexed(keys) then
    reply = index_search(keys, query)
  else
    reply = scan_search(keys, query)
  end
  collect_garbage()
  return reply
end

--[[
chathist_reindex: rebuild the session's index from its messages, in steps.
  KEYS: the session's 3 keys.  ARGV: [RESTART | CONTINUE]
    none, RESTART: drop the index and start a rebuild; CONTINUE: go on with
    the rebuild under way. Each call indexes at most BUILD_STEP messages;
    writes go on with an unfinished rebuild too, and search scans until it
    is done.
  Reply: without arguments, the number of messages (1.1's reply); else
    {messages indexed, messages, 1 when the index is complete else 0}.
]]
function API.reindex(keys, args)
  local bad, exists = check_keys(keys)
  if bad then return bad end
  local form = args[1] and string.upper(args[1])
  if #args > 1 or (form and form ~= 'RESTART' and form ~= 'CONTINUE') then
    return fail('BADARG', 'reindex takes no arguments')
  end
  local length = exists and redis.call('XLEN', keys[1]) or 0
  if length == 0 then return form and {0, 0, 1} or 0 end
  local state = prepare_write(keys, false, true)
  if form ~= 'CONTINUE' and not (state.building and state.built == 0) then
    start_build(keys, state, not state.counting and state.total or nil)
  end
  if state.building then build_step(keys, state, BUILD_STEP) end
  finish_write(keys, state)
  refresh_ttl(keys, 0)
  collect_garbage()
  if not form then return length end
  local indexed = state.building and state.built or (state.indexed and length or 0)
  return {indexed, length, state.building and 0 or 1}
end

--[[
chathist_clear: delete every key of the session.
  KEYS: the session's 3 keys.  ARGV: none.
  Reply: the number of messages deleted.
]]
function API.clear(keys, args)
  local bad = check_keys(keys)
  if bad then return bad end
  if #args > 0 then return fail('BADARG', 'clear takes no arguments') end
  local count = redis.call('XLEN', keys[1])
  redis.call('UNLINK', keys[1], keys[2], keys[3])
  return count
end

--[[
chathist_len: the number of messages in the session (read-only).
  KEYS: the session's 3 keys.  ARGV: none.  Reply: integer.
]]
function API.len(keys, args)
  local bad = check_keys(keys)
  if bad then return bad end
  if #args > 0 then return fail('BADARG', 'len takes no arguments') end
  return redis.call('XLEN', keys[1])
end

--[[
chathist_ttl: the session's remaining time to live (read-only).
  KEYS: the session's 3 keys.  ARGV: none.
  Reply: integer ms; -1 when it has no TTL, -2 when the session does not exist.
]]
function API.ttl(keys, args)
  local bad = check_keys(keys)
  if bad then return bad end
  if #args > 0 then return fail('BADARG', 'ttl takes no arguments') end
  return redis.call('PTTL', keys[1])
end

--[[
chathist_expire: set or drop the TTL of every key of the session.
  KEYS: the session's 3 keys.  ARGV: seconds (1 to 315360000) | PERSIST
  Reply: 1 if the session exists, else 0.
]]
function API.expire(keys, args)
  local bad = check_keys(keys)
  if bad then return bad end
  local persist = #args == 1 and string.upper(args[1]) == 'PERSIST'
  local seconds = #args == 1 and parse_count(args[1], MAX_TTL_SECONDS, 1)
  if not persist and not seconds then
    return fail('BADARG', 'expected seconds (1 to ' .. MAX_TTL_SECONDS .. ') or PERSIST')
  end
  if redis.call('EXISTS', keys[1]) == 0 then return 0 end
  for i = 1, #keys do
    if persist then
      redis.call('PERSIST', keys[i])
    else
      redis.call('EXPIRE', keys[i], seconds)
    end
  end
  return 1
end

--[[
chathist_version: the library version, "major.minor.patch" (read-only).
  KEYS: none.  ARGV: none.  Reply: bulk string.
  Same major: compatible protocol; a higher minor only adds.
]]
function API.version(keys, args)
  if #keys > 0 then return fail('BADKEYS', 'version takes no keys') end
  return LIBRARY_VERSION
end

--[[
chathist_cp_put: store one checkpoint of a thread, atomically (1.4;
  SETTLE's write may name its group's first index since 1.5).
  KEYS: the thread's 6 keys (session :m :x :i, then :c :w :k).
  ARGV: [TTL seconds] [NOINDEX] [INRECORD] CHECKPOINT <ns "\0" id> <record> (BLOB <field> <value>)*
        (SETTLE <parent "<ns>\0<id>"> <write> <sha1> <runs>)*
        [MESSAGES json...]
    where a write is <task id> "\0" <index>, the first write of its group,
    or <task id> "\0" <index> "\0" <first index>, a write of the group
    "<task id>\0<first index>".
    The record's "M" runs may end in "#k", the k-th message of MESSAGES,
    which are stored in the session first (a message whose id is stored
    with the same JSON is not stored again). BLOB stores a channel value
    under its field "b" <ns> "\0" <channel> "\0" <version>. SETTLE names a
    pending write (of the parent) whose value is a list of messages of this
    call: if its stored value's SHA-1 (hex) is sha1, the value becomes the
    runs (with "#k" resolved), so the messages are kept once. A record put
    again keeps the count of writes it held; INRECORD (1.7): a count in :w
    that holds the only group moves into the record. Work: what the call
    carries (a SETTLE reads the one group it names), and the former record
    and count.
  Reply: {the record as stored (its runs resolved), the stream id of each
  message of MESSAGES}.
]]
function CP.cp_put(keys, args)
  local bad, exists = CP.check_thread_keys(keys)
  if bad then return bad end
  local options, at = read_options(args, 1, {TTL = true}, {CHECKPOINT = true},
    {NOINDEX = true, INRECORD = true})
  if not options then return at end
  local ttl, err = ttl_option(options)
  if not ttl then return err end
  local member, record = args[at + 1], args[at + 2]
  if not CP.is_member(member) then
    return fail('BADARG', 'CHECKPOINT needs "<ns>\\0<id>" (an id of 1 to 64 bytes) and a record')
  end
  if type(record) ~= 'string' then return fail('BADARG', 'CHECKPOINT needs a record') end
  local ns = string.match(member, '^([^%z]*)%z')
  local stop = CP.messages_at(args, at + 3)
  local blobs, settles, shapes = {}, {}, {}
  local i = at + 3
  while i < stop do
    local word = string.upper(args[i])
    if word == 'SHAPEBLOB' and i + 4 < stop then
      local field = args[i + 1]
      if not CP.is_blob_field(field, ns) or args[i + 4] == ''
          or not string.match(args[i + 2], '^' .. string.rep('%x', 40) .. '$') then
        return fail('BADARG', 'SHAPEBLOB needs a field "b<ns>\\0<channel>\\0<version>" of the '
          .. 'checkpoint\'s ns, a SHA-1 in hex, runs and a template')
      end
      shapes[#shapes + 1] = {field = field, sha1 = string.lower(args[i + 2]), runs = args[i + 3],
        template = args[i + 4]}
      i = i + 5
    elseif (word == 'SETTLE' and i + 4 < stop) or (word == 'SHAPE' and i + 5 < stop) then
      local task, index = string.match(args[i + 2], '^([^%z]*)%z(%-?%d+)$')
      local first = index
      if not task then
        task, index, first = string.match(args[i + 2], '^([^%z]*)%z(%-?%d+)%z(%-?%d+)$')
      end
      if not CP.is_member(args[i + 1]) or not task or (word == 'SHAPE' and args[i + 5] == '')
          or not string.match(args[i + 3], '^' .. string.rep('%x', 40) .. '$') then
        return fail('BADARG', word .. ' needs a parent "<ns>\\0<id>", a write "<task id>\\0<index>", '
          .. 'a SHA-1 in hex and runs' .. (word == 'SHAPE' and ' and a template' or ''))
      end
      settles[#settles + 1] = {member = args[i + 1], task = task, index = index, first = first,
        sha1 = string.lower(args[i + 3]), runs = args[i + 4],
        template = word == 'SHAPE' and args[i + 5] or nil}
      i = i + (word == 'SHAPE' and 6 or 5)
    else
      if word ~= 'BLOB' or i + 2 >= stop then
        return fail('BADARG', 'expected BLOB <field> <value>, SETTLE, SHAPE, SHAPEBLOB or MESSAGES '
          .. 'after the record')
      end
      local field = args[i + 1]
      if not CP.is_blob_field(field, ns) then
        return fail('BADARG', 'BLOB field must be "b<ns>\\0<channel>\\0<version>" of the checkpoint\'s ns')
      end
      if string.sub(args[i + 2], 1, 2) == CP.SHAPE_MARK then
        return fail('BADARG', 'a BLOB value starting with "\\1T" (a shaped value) is the library\'s to make')
      end
      blobs[#blobs + 1] = field
      blobs[#blobs + 1] = args[i + 2]
      i = i + 3
    end
  end
  if #settles + #shapes > CP.CP_MAX_FIELDS then
    return fail('TOOBIG', 'more than ' .. CP.CP_MAX_FIELDS .. ' SETTLEs, SHAPEs and SHAPEBLOBs in one call')
  end
  if #blobs / 2 > CP.CP_MAX_FIELDS then
    return fail('TOOBIG', 'more than ' .. CP.CP_MAX_FIELDS .. ' blobs in one call')
  end
  local messages, jsons = CP.thread_messages(args, stop)
  if not messages then return jsons end
  local problem, segments = CP.check_record(record, #jsons)
  if problem then return fail('BADARG', 'the record ' .. problem) end
  for k, settle in ipairs(settles) do
    local found = CP.check_runs(settle.runs, #jsons)
    if not found or (settle.template and settle.runs == '') then
      return fail('BADARG', (settle.template and 'SHAPE ' or 'SETTLE ') .. k .. ' has malformed runs')
    end
    segments = segments + found
  end
  for k, shape in ipairs(shapes) do
    local found = CP.check_runs(shape.runs, #jsons)
    if not found or shape.runs == '' then
      return fail('BADARG', 'SHAPEBLOB ' .. k .. ' has malformed runs')
    end
    segments = segments + found
  end
  if segments > CP.segments_allowed(#jsons) then
    return fail('TOOBIG', 'runs of more than ' .. CP.segments_allowed(#jsons)
      .. ' segments in one call (' .. CP.SEGMENTS .. ' and two per message)')
  end

  local stored = CP.store_thread_messages(keys, messages, jsons, exists, options.NOINDEX)
  record = CP.resolve_record(keys[1], record, stored)
  local before, after, added = CP.order_add(keys[6], member)
  if added then CP.pin_parent(keys, ns, after, before) end
  -- (1.7) a small record whose parent is the id before it is stored with
  -- "P" alone
  local kept = before and #record <= CP.SMALL_RECORD_BYTES
    and CP.header_has(record, 'P' .. before) and CP.with_parent(record, '') or record
  -- a record put again keeps the count of writes its former self held (1.7;
  -- only a small record holds one)
  local former = CP.small_record(keys, member)
  local held = former and CP.record_parts(former)
  local from_writes = false
  if not held and options.INRECORD then
    -- INRECORD (1.7): a count stored before the record, that holds its only
    -- group, moves into it
    local count = redis.call('HGET', keys[5], member)
    local n, _, folded = CP.parse_count(count or '')
    if n == 1 and folded then held, from_writes = count, true end
  end
  local holding = held and CP.with_count(kept, held)
  if holding and CP.fits_small(holding) then
    if from_writes then redis.call('HDEL', keys[5], member) end
    kept = holding
  elseif held and not from_writes then
    -- too long to hold it: the count its former self held goes to :w
    redis.call('HSET', keys[5], member, held)
  end
  CP.record_set(keys, member, kept)
  if #blobs > 0 then hash_set_many(keys[4], blobs) end
  local settle_room = {bytes = 2 * CP.carried_bytes(jsons) + CP.READ_BYTES, groups = {},
    changed = {}, counts = {}}
  for _, settle in ipairs(settles) do CP.settle(keys, settle, stored, settle_room) end
  CP.settled(keys, settle_room)
  for _, shape in ipairs(shapes) do CP.shape_blob(keys, shape, stored, settle_room) end
  CP.thread_ttl(keys, ttl)
  collect_garbage()
  local reply = {record}
  for k = 1, #jsons do reply[k + 1] = stored[k] end
  return reply
end

--[[
chathist_cp_writes: store a task's pending writes for a checkpoint (1.4;
  in groups since 1.5).
  KEYS: the thread's 6 keys.
  ARGV: [TTL seconds] [NOINDEX] [FOLD | INRECORD] WRITES <ns "\0" id> <count> (<task id> <index> <task path>
        <channel> <value>) x count (IFKNOWN <w> <i> <j> | SHAPED <w> <runs> <template>)*
        [MESSAGES json... | KNOWN json...]
    A task id holds no NUL byte. A (task id, index) twice in the call is
    taken once: its first write, or its last for a negative index. The
    call's writes of one task and path go to groups (see :w above), merged
    into the newest stored group when that is the task's and short (FOLD,
    1.6: a first group the call makes is kept in the count while it takes
    at most FOLD_BYTES; INRECORD, 1.7: FOLD, and a count that holds the only
    group goes into the record, if it is stored). A write
    whose (task id, index) that group holds, or that is the first of another
    stored group, is kept as it was, unless its index is negative (a special
    channel: error, interrupt...), which replaces it; a reader keeps the
    first of a (task id, index) stored twice (in groups no call read
    together), or the last for a negative index. A value starting with
    "\1M" holds runs, whose "#k" name messages of MESSAGES as in
    chathist_cp_put. KNOWN messages are not stored: each is looked up by its
    id; IFKNOWN w i j: if KNOWN messages i to j are all stored with the same
    JSON, write w (1-based) keeps runs of their entries instead of its
    value. SHAPED w runs template (1.8): write w is stored as the shaped
    value "\1T" runs "\n" template (runs of one stream entry each, whose
    contents the template's placeholders stand for, as SHAPE of
    chathist_cp_put makes it) instead of its value. Work: the call's writes and messages (each looked up by name),
    and the group it merges into: at most twice what it carries for that
    task, and MERGE_SLACK.
  Reply: the number of writes stored.
]]
function CP.cp_writes(keys, args)
  local bad, exists = CP.check_thread_keys(keys)
  if bad then return bad end
  local options, at = read_options(args, 1, {TTL = true}, {WRITES = true},
    {NOINDEX = true, FOLD = true, INRECORD = true})
  if not options then return at end
  local ttl, err = ttl_option(options)
  if not ttl then return err end
  local member = args[at + 1]
  local count = parse_count(args[at + 2], MAX_BATCH_MESSAGES)
  if not CP.is_member(member) or not count then
    return fail('BADARG', 'WRITES needs "<ns>\\0<id>" and a count of writes')
  end
  local first = at + 3
  if first + count * 5 - 1 > #args then
    return fail('BADARG', 'expected ' .. count .. ' writes of 5 arguments, then MESSAGES or nothing')
  end
  local stop, alternatives, shaped, segments = first + count * 5, {}, {}, 0
  local word = args[stop] and string.upper(args[stop])
  while word == 'IFKNOWN' or word == 'SHAPED' do
    if word == 'SHAPED' then
      -- (1.8) a write whose texts are messages the session holds already
      local w, runs, template = parse_count(args[stop + 1], count, 1), args[stop + 2], args[stop + 3]
      local found = runs and runs ~= '' and CP.check_runs(runs, 0)
      if not w or not found or not CP.single_entry_runs(runs) or not template or template == '' then
        return fail('BADARG', 'SHAPED needs a write number, runs of one stream entry each and a template')
      end
      shaped[w] = {runs, template}
      segments = segments + found
    else
      local w = parse_count(args[stop + 1], count, 1)
      local i, j = parse_count(args[stop + 2], MAX_BATCH_MESSAGES, 1),
        parse_count(args[stop + 3], MAX_BATCH_MESSAGES, 1)
      if not w or not i or not j or i > j then
        return fail('BADARG', 'IFKNOWN needs a write number and the first and last of its KNOWN messages')
      end
      alternatives[w] = {i, j}
    end
    stop = stop + 4
    word = args[stop] and string.upper(args[stop])
  end
  local lookup = args[stop] == 'KNOWN'
  if stop <= #args and args[stop] ~= 'MESSAGES' and not lookup then
    return fail('BADARG', 'expected ' .. count .. ' writes of 5 arguments, then MESSAGES or nothing')
  end
  local messages, jsons = CP.thread_messages(args, stop)
  if not messages then return jsons end
  for _, span in pairs(alternatives) do
    if not lookup or span[2] > #jsons then
      return fail('BADARG', 'IFKNOWN names messages that KNOWN does not carry')
    end
    segments = segments + span[2] - span[1] + 1
  end
  for w = 0, count - 1 do
    local index = args[first + w * 5 + 1]
    if not string.match(index, '^%-?%d+$') or #index > 12 then
      return fail('BADARG', 'write ' .. (w + 1) .. ' index is not an integer')
    end
    if string.find(args[first + w * 5], '\0', 1, true) then
      return fail('BADARG', 'write ' .. (w + 1) .. ' task id holds a NUL byte')
    end
    local value = args[first + w * 5 + 4]
    if string.sub(value, 1, 2) == CP.SHAPE_MARK then
      return fail('BADARG', 'write ' .. (w + 1) .. ' value starts with "\\1T" (a shaped value, '
        .. 'the library\'s to make)')
    end
    if string.sub(value, 1, 2) == CP.REFS_MARK then
      local found = CP.check_runs(string.sub(value, 3), #jsons)
      if not found then return fail('BADARG', 'write ' .. (w + 1) .. ' has malformed runs') end
      segments = segments + found
    end
  end
  if segments > CP.segments_allowed(#jsons) then
    return fail('TOOBIG', 'runs of more than ' .. CP.segments_allowed(#jsons)
      .. ' segments in one call (' .. CP.SEGMENTS .. ' and two per message)')
  end
  local n, first_group, folded, held = CP.write_count(keys, member)
  if not n then
    return fail('BADKEYS', 'the writes of ' .. string.gsub(member, '%z', ' ') .. ' are unreadable')
  end
  local inline_first = n == 0 or first_group ~= nil  -- the count holds group 1's name

  local stored, looked_up = nil, 0
  if lookup then
    stored, looked_up = CP.known_messages(keys, messages, jsons, exists)
  else
    stored = CP.store_thread_messages(keys, messages, jsons, exists, options.NOINDEX)
  end
  local state = {key = keys[5], member = member, n = n, first_group = first_group,
    inline_first = inline_first, fields = {}, used = {}, looked = 1 + count, read = looked_up,
    folded = folded, folded_name = folded and first_group, first_body = folded,
    fold = (options.FOLD or options.INRECORD) and true or false}
  local added = 0
  for _, group in ipairs(CP.call_groups(args, first, count)) do
    local target = CP.merge_target(state, group, args[first + group.items[1] * 5 + 1])
    local chunks, current = {}, target
    for _, w in ipairs(group.items) do
      local at_w = first + w * 5
      local index = args[at_w + 1]
      local i = target and target.at[index]
      local negative = tonumber(index) < 0
      local present = i ~= nil
        or (not negative and CP.is_stored_group(state, group.task .. '\0' .. index))
      if not present or negative then
        local shape = shaped[w + 1]
        local write = {index, args[at_w + 3], shape and (CP.SHAPE_MARK
          .. CP.resolve_runs(keys[1], shape[1], stored, true, true) .. '\n' .. shape[2])
          or CP.write_value(keys, args[at_w + 4], alternatives[w + 1], stored)}
        local size = #index + #write[2] + #write[3]
        if i then
          target.writes[i] = write
          target.changed = true
        else
          -- a group holds at most GROUP_WRITES writes and GROUP_BYTES (a longer
          -- write alone), so a read takes at most one group past its budget
          if not current or #current.writes >= CP.GROUP_WRITES
              or (#current.writes > 0 and current.bytes + size > CP.GROUP_BYTES) then
            current = {writes = {}, bytes = 0, new = true}
            chunks[#chunks + 1] = current
          end
          current.writes[#current.writes + 1] = write
          current.bytes = current.bytes + size
          current.changed = true
        end
        added = added + 1
      end
    end
    if target then table.insert(chunks, 1, target) end
    CP.store_chunks(state, group, chunks)
  end
  n, first_group = state.n, state.first_group
  local fields = state.fields
  if #fields > 0 then hash_set_many(keys[5], fields) end
  -- INRECORD (1.7): a count that holds its only group goes into the record
  local record = held
  if options.INRECORD and n == 1 and state.first_body and not held then
    record = CP.small_record(keys, member)
    if not (record and CP.record_header(record)) then record = nil end
  end
  CP.store_count(keys, member, CP.count_value(n, first_group, state.first_body), record,
    (options.INRECORD and n == 1 and state.first_body and record) and true or false)
  CP.thread_ttl(keys, ttl)
  collect_garbage()
  -- the :w fields this call looked at (the count, one name per write, and
  -- per task the newest group and each group it starts), and the bytes of
  -- stored groups and KNOWN messages' entries it read
  if COUNT_WORK then return {state.looked .. ' ' .. state.read, added} end
  return added
end

--[[
chathist_cp_get: one checkpoint with what a reader needs, a bounded part of
  it per call (read-only, 1.4).
  KEYS: the thread's 6 keys.
  ARGV: <ns "\0" id> | LATEST <ns>
  Reply: {} when there is none; else {member, record, writes, blobs,
  entries, next write, more}: writes from the first, each five netstrings;
  blobs a flat channel, value list for the record's "B" lines; entries a
  flat id, json list of the stream entries of the runs of the record and
  its writes (a run "<a>..<b>" is every entry from a to b). The call stops
  at READ_ENTRIES entries and writes, or READ_BYTES read: next write is the
  k of the first write not replied (0: none), more a flat start, stop list
  of ranges not read yet; chathist_cp_more reads both.
]]
function CP.cp_get(keys, args)
  local bad = CP.check_thread_keys(keys)
  if bad then return bad end
  local member = args[1]
  if #args == 2 and string.upper(args[1]) == 'LATEST' and not string.find(args[2], '\0', 1, true) then
    local page = redis.call('ZREVRANGEBYLEX', keys[6], '[' .. args[2] .. '\0\255',
      '[' .. args[2] .. '\0', 'LIMIT', 0, 1)[1]
    if not page then return {} end
    member = args[2] .. '\0' .. CP.page_last(page)
  elseif #args ~= 1 or not CP.is_member(member) then
    return fail('BADARG', 'expected "<ns>\\0<id>" or LATEST <ns>')
  end
  local record = CP.record_get(keys, member)
  if not record then return {} end
  local out, meter = {}, CP.meter()
  CP.checkpoint_reply(keys, member, record, meter, out)
  collect_garbage()
  return CP.counted(meter, out[1])
end

--[[
chathist_cp_list: a page of checkpoints, newest first (read-only, 1.4).
  KEYS: the thread's 6 keys.
  ARGV: <ns> | ALL, <before: "<ns>\0<id>" or "">, <count 1..64>
    ns: only that namespace; ALL: every namespace (by namespace, then id).
  Reply: {next, checkpoint, ...}: each checkpoint as chathist_cp_get
  replies it, a stream entry once per page (a checkpoint's runs are read
  from the entries of the whole page); next is the member to pass as
  before to go on, "" at the end. The page ends early once the budget of
  one call is spent (after its first checkpoint).
]]
function CP.cp_list(keys, args)
  local bad = CP.check_thread_keys(keys)
  if bad then return bad end
  local ns, before = args[1], args[2]
  local count = parse_count(args[3], CP.CP_PAGE, 1)
  if #args ~= 3 or not count or type(ns) ~= 'string' or string.find(ns, '\0', 1, true)
      or (before ~= '' and not CP.is_member(before)) then
    return fail('BADARG', 'expected <ns>|ALL, <before "<ns>\\0<id>" or "">, <count 1 to '
      .. CP.CP_PAGE .. '>')
  end
  local low, high, all = '-', '+', string.upper(ns) == 'ALL'
  if not all then low, high = '[' .. ns .. '\0', '[' .. ns .. '\0\255' end
  -- (before, a member of another namespace: every checkpoint of ns is
  -- before it, or none is)
  local within = before ~= '' and (all or string.sub(before, 1, #ns + 1) == ns .. '\0')
  if within then high = '(' .. before end
  local none = before ~= '' and not within and CP.bytes_before(before, ns .. '\0')
  local members = none and {}
    or CP.order_page(keys[6], high, low, within and before or nil, count + 1)
  local out, meter = {''}, CP.meter()
  for i, member in ipairs(members) do
    if i > count or (i > 1 and CP.spent(meter)) then
      out[1] = members[i - 1]
      break
    end
    local record = CP.record_get(keys, member)
    -- (the page's next member is the id before this one when of the same ns)
    local next_member = members[i + 1]
    local before = next_member and string.match(next_member, '^([^%z]*)%z') == string.match(member, '^([^%z]*)%z')
      and string.match(next_member, '%z([^%z]+)$') or nil
    if record then CP.checkpoint_reply(keys, member, record, meter, out, nil, nil, before) end
  end
  collect_garbage()
  return CP.counted(meter, out)
end

--[[
chathist_cp_more: the rest of a chathist_cp_get or _list reply, a bounded
  part per call (read-only, 1.4).
  KEYS: the thread's 6 keys.
  ARGV: RUN <start> <stop>      stream entries from start ("<id>", or
                                "(<id>" for after id) to the id stop
        WRITES <ns "\0" id> <k> the checkpoint's writes from the k-th on
        BLOBS <ns "\0" id> <n>  the values its record's "B" lines name,
                                from the n-th on
  Reply: {next, item, ...}: for RUN, a flat id, json list and the start to
  go on from ("" at the end); for WRITES, writes as chathist_cp_get
  replies them and the k to go on from (0 at the end); for BLOBS, a flat
  channel, value list and the n to go on from (0 at the end, and when the
  checkpoint is gone).
]]
function CP.cp_more(keys, args)
  local bad = CP.check_thread_keys(keys)
  if bad then return bad end
  local form = args[1] and string.upper(args[1])
  local meter = CP.meter()
  if #args == 3 and form == 'RUN' then
    local start, stop = args[2], args[3]
    if not parse_full_id(string.match(start, '^%(?(.*)$')) or not parse_full_id(stop) then
      return fail('BADARG', 'RUN needs a start "<id>" or "(<id>" and a stop id')
    end
    local rest = CP.read_entries(keys[1], keys[2], start, stop, meter)
    local out = {rest or ''}
    for _, item in ipairs(meter.entries_out) do out[#out + 1] = item end
    return CP.counted(meter, out)
  elseif #args == 3 and form == 'WRITES' then
    local k = parse_count(args[3], 1e15, 1)
    if not CP.is_member(args[2]) or not k then
      return fail('BADARG', 'WRITES needs "<ns>\\0<id>" and a write number from 1')
    end
    local writes, _, next_write = CP.read_writes(keys, args[2], k, meter)
    local out = {next_write}
    for _, item in ipairs(writes) do out[#out + 1] = item end
    return CP.counted(meter, out)
  elseif #args == 3 and form == 'BLOBS' then
    local n = parse_count(args[3], 1e15, 1)
    if not CP.is_member(args[2]) or not n then
      return fail('BADARG', 'BLOBS needs "<ns>\\0<id>" and a value number from 1')
    end
    local record = CP.record_get(keys, args[2])
    if not record then return CP.counted(meter, {0}) end
    local blobs, next_blob = CP.read_blobs(keys[4], args[2], CP.header_lines(record, 'B'), n, meter)
    local out = {next_blob}
    for _, item in ipairs(blobs) do out[#out + 1] = item end
    return CP.counted(meter, out)
  end
  return fail('BADARG', 'expected RUN <start> <stop>, WRITES "<ns>\\0<id>" <k> or BLOBS "<ns>\\0<id>" <n>')
end

--[[
chathist_cp_chain: a checkpoint's ancestors, for replaying channels' writes
  (read-only, 1.5).
  KEYS: the thread's 6 keys.
  ARGV: PARENT|AT <ns "\0" id> <channel>...   (1 to 64 channels)
    From the checkpoint's parent (PARENT: its record's "P" line) or from
    the checkpoint itself (AT), each ancestor in turn, as chathist_cp_get
    replies a checkpoint but with only the runs and values of the channels
    asked for, and the writes of other channels with an empty value. A
    channel the record holds (an "M" or "V" line, or a "B" line whose value
    the call read) is asked for no further. The walk ends at a record without a "P" line
    or absent, once no channel is left, or once CP_PAGE ancestors or the
    read budget are spent (then next is the ancestor to go on AT).
  Reply: {next ("" when the walk ended), ancestor...}.
]]
function CP.cp_chain(keys, args)
  local bad = CP.check_thread_keys(keys)
  if bad then return bad end
  local form, member = args[1] and string.upper(args[1]), args[2]
  if (form ~= 'PARENT' and form ~= 'AT') or not CP.is_member(member) or #args < 3
      or #args > 2 + CP.CHAIN_CHANNELS then
    return fail('BADARG', 'expected PARENT|AT "<ns>\\0<id>" and 1 to ' .. CP.CHAIN_CHANNELS
      .. ' channels')
  end
  local wanted, left = {}, 0
  for i = 3, #args do
    if not wanted[args[i]] then wanted[args[i]], left = true, left + 1 end
  end
  local out, meter, steps = {''}, CP.meter(), 0
  if form == 'PARENT' then
    local record = CP.record_get(keys, member)
    meter.bytes = meter.bytes + (record and #record or 0)
    member = record and CP.parent_member(keys, CP.header_lines(record, 'P'), member)
  end
  while member and left > 0 do
    if steps >= CP.CP_PAGE or CP.spent(meter) then
      out[1] = member
      break
    end
    local record = CP.record_get(keys, member)
    if not record then break end
    local parts = {CP.record_parts(record)}
    local lines = parts[2] or {}
    local parent = CP.parent_member(keys, lines, member)
    CP.checkpoint_reply(keys, member, record, meter, out, wanted, parts,
      parent and string.match(parent, '%z([^%z]+)$'))
    steps = steps + 1
    -- the channels it holds: M and V lines, and B lines whose value was read
    local read = {}
    local blobs = out[#out][4]
    for k = 1, #blobs, 2 do read[blobs[k]] = true end
    for _, line in ipairs(lines) do
      local kind, channel = string.match(line, '^([MB])([^\t]+)\t')
      if not kind then kind, channel = string.match(line, '^(V)(.+)$') end
      if channel and wanted[channel] and (kind ~= 'B' or read[channel]) then
        wanted[channel], left = nil, left - 1
      end
    end
    member = parent
  end
  collect_garbage()
  return CP.counted(meter, out)
end

--[[
chathist_cp_drop: delete checkpoints (their records, writes and order
  entries) and channel values of a thread (1.4).
  KEYS: the thread's 6 keys.
  ARGV: <ns "\0" id> ... [BLOBS <field> ...]   at most 1000 in all.
    The values named and the records and order entries of the checkpoints
    go first; then their writes, DROP_FIELDS fields at most per call, and
    group names of READ_BYTES (and one more).
  Reply: {checkpoints whose record this call deleted, checkpoints done}:
  the checkpoints are done in the order given; send those not done again.
]]
function CP.cp_drop(keys, args)
  local bad = CP.check_thread_keys(keys)
  if bad then return bad end
  if #args > CP.CP_MAX_FIELDS + 1 then
    return fail('TOOBIG', 'more than ' .. CP.CP_MAX_FIELDS .. ' checkpoints and blobs in one call')
  end
  local members, blobs, in_blobs = {}, {}, false
  for _, arg in ipairs(args) do
    if arg == 'BLOBS' then
      in_blobs = true
    elseif in_blobs then
      if string.sub(arg, 1, 1) ~= 'b' then return fail('BADARG', 'a BLOBS field starts with "b"') end
      blobs[#blobs + 1] = arg
    elseif CP.is_member(arg) then
      members[#members + 1] = arg
    else
      return fail('BADARG', 'expected "<ns>\\0<id>" ... [BLOBS field ...]')
    end
  end
  if #blobs > 0 then redis.call('HDEL', keys[4], unpack(blobs)) end
  -- (the groups' names, which no bound keeps short, are read and spend
  -- READ_BYTES: a call deletes at most one long name past it)
  local deleted, done, budget, bytes = 0, 0, CP.DROP_FIELDS, 0
  for _, member in ipairs(members) do
    deleted = deleted + CP.record_delete(keys, member)
    local ns, id = string.match(member, '^([^%z]*)%z([^%z]+)$')
    CP.pin_parent(keys, ns, CP.order_remove(keys[6], member), id)
    local n, first, folded = CP.write_count(keys, member, false)
    n = n or 0
    while n > 0 and budget > 0 and bytes <= CP.READ_BYTES do
      local name = CP.group_at(keys[5], member, n, first)
      if name then redis.call('HDEL', keys[5], CP.write_field(member, name)) end
      redis.call('HDEL', keys[5], CP.write_slot(member, n))
      n, budget, bytes = n - 1, budget - 2, bytes + (name and #name or 0)
    end
    if n > 0 then
      redis.call('HSET', keys[5], member, CP.count_value(n, first, folded))
      break
    end
    redis.call('HDEL', keys[5], member)
    done = done + 1
  end
  if COUNT_WORK then
    -- the write fields this call deleted (besides those it names)
    return {tostring(CP.DROP_FIELDS - budget), {deleted, done}}
  end
  return {deleted, done}
end

--[[
chathist_cp_dump: a page of a thread's raw fields, for copying (read-only, 1.4).
  KEYS: the thread's 6 keys.  ARGV: C | W, <HSCAN cursor>
  Reply: {next cursor ("0" at the end), field, value, ...} of :c or :w.
  The page is taken in HSCAN steps of COUNT 1 (one bucket of the hash table
  each, usually one field) until it holds CP_SCAN fields or READ_BYTES of
  fields and values, or after 4 * CP_SCAN steps (a sparse table), so a page
  is at most its budget and one bucket more,
  however long the stored values. (A hash small enough to be a listpack is
  replied whole by one step: it is small by definition.)
]]
function CP.cp_dump(keys, args)
  local bad = CP.check_thread_keys(keys)
  if bad then return bad end
  local which = args[1] and string.upper(args[1])
  if #args ~= 2 or (which ~= 'C' and which ~= 'W') or not string.match(args[2], '^%d+$') then
    return fail('BADARG', 'expected C|W and an HSCAN cursor')
  end
  local key = which == 'C' and keys[4] or keys[5]
  local cursor, out, fields, bytes, steps = args[2], {false}, 0, 0, 0
  repeat
    steps = steps + 1
    local reply = redis.call('HSCAN', key, cursor, 'COUNT', 1)
    cursor = reply[1]
    local items = reply[2]
    for k = 1, #items, 2 do
      local field, value = items[k], items[k + 1]
      local member = which == 'C' and CP.field_member(field)
      if member then
        -- (1.8) a record's field is given as "c<ns>\0<id>", the form clients of
        -- every 1.x version parse (chathist_cp_load takes it back), and (1.7) a
        -- record that names its parent by its place with the id
        field, value = 'c' .. member, CP.reply_parent(keys, member, value)
      end
      out[#out + 1] = field
      out[#out + 1] = value
      bytes = bytes + #field + #value
    end
    fields = fields + #reply[2] / 2
  until cursor == '0' or fields >= CP.CP_SCAN or bytes >= CP.READ_BYTES
    or steps >= 4 * CP.CP_SCAN
  out[1] = cursor
  if COUNT_WORK then return {fields .. ' ' .. bytes, out} end
  return out
end

--[[
chathist_cp_load: store raw fields copied from another thread (1.4).
  KEYS: the thread's 6 keys.
  ARGV: [TTL seconds] [NOINDEX] C|W <field> <value> ... [ENTRIES id json ...]
    C fields go to :c (a checkpoint's field "c<ns>\0<id>" also to the order
    set), W fields to :w; ENTRIES are session messages stored under their
    ids (after the session's last one), as chathist_import stores them;
    NOINDEX (1.5): a session the call creates keeps no search index.
  Reply: the number of fields stored.
]]
-- True for a value of bytes, or a well-formed shaped value (runs of stream
-- ids, a template): what cp_load takes from another thread's dump.
function CP.is_shaped_or_bytes(value)
  if string.sub(value, 1, 2) ~= CP.SHAPE_MARK then return true end
  local runs = CP.value_runs(value)
  return runs ~= nil and runs ~= '' and #value > #runs + 3 and CP.check_runs(runs, 0) ~= false
end

-- The run items a text of runs holds (counted in C: a space between two).
function CP.run_items(runs)
  if not runs or runs == '' then return 0 end
  local _, spaces = string.gsub(runs, ' ', ' ')
  return spaces + 1
end

-- The run items of a group's values ("\1M" and shaped values).
function CP.group_run_items(body)
  local parts, items = body and CP.read_netstrings(body), 0
  for i = 3, parts and #parts or 0, 3 do items = items + CP.run_items(CP.value_runs(parts[i])) end
  return items
end

-- (1.8) The run items a field copied from a dump holds: a record's "M" lines
-- and the count of writes it holds, a value, or a group (or a count holding
-- the first group). A reply looks at each run it replies, so cp_load takes no
-- more than a put or a write could store (LOADED_RUNS).
function CP.loaded_run_items(which, field, value)
  if which == 'W' then return CP.group_run_items(CP.loaded_group(field, value)) end
  if string.sub(field, 1, 1) ~= 'c' then return CP.run_items(CP.value_runs(value)) end
  local header = CP.raw_header(value)
  local items = 0
  for runs in string.gmatch(header or '', '\nM[^\t\n]*\t([^\n]*)') do
    items = items + CP.run_items(runs)
  end
  local count = CP.record_parts(value)
  local at = count and string.find(count, '\0=', 1, true)
  return items + (at and CP.group_run_items(string.sub(count, at + 2)) or 0)
end

-- True if every "M" line of a copied record holds well-formed runs of
-- stream ids as a put stores them: "<a>..<b>", also for one entry, which
-- CP.replied_runs leaves as it is (replies give a record as stored). Its
-- runs were counted first (CP.loaded_run_items, in C), so this Lua pass
-- over them is bounded by LOADED_RUNS.
function CP.loaded_runs_ok(record)
  for runs in string.gmatch(CP.raw_header(record) or '', '\nM[^\t\n]*\t([^\n]*)') do
    if CP.check_runs(runs, 0) == false or CP.replied_runs(runs) ~= runs then return false end
  end
  return true
end

-- The group a :w field copied from a dump holds: a group's field's value, or
-- the first group folded into a count ("<n>\0<name>\0=<group>"); or nil.
function CP.loaded_group(field, value)
  if string.find(field, '\0=', 1, true) then return value end
  local at = string.find(value, '\0=', 1, true)
  return at and string.sub(value, at + 2)
end

-- True unless a :w field copied from a dump holds a group (in a field of
-- its own, or folded into a count) with a malformed shaped value.
function CP.group_values_ok(field, value)
  local body = CP.loaded_group(field, value)
  local parts = body and CP.read_netstrings(body)
  for i = 3, parts and #parts or 0, 3 do
    if not CP.is_shaped_or_bytes(parts[i]) then return false end
  end
  return true
end

-- True unless a record copied from a dump ends its header with a "W" line
-- (1.7) that is not a well-formed count of writes holding its only group,
-- or the record is longer than a record that holds one may be.
function CP.held_count_ok(record)
  local lines = CP.record_header(record)
  local last = lines and lines[#lines]
  if not last or string.sub(last, 1, 1) ~= 'W' then return true end
  if #record > CP.SMALL_RECORD_BYTES then return false end
  local count = CP.record_parts(record)
  local n, _, folded = CP.parse_count(count or '')
  return n == 1 and folded ~= nil and CP.group_values_ok('', count)
end

function CP.cp_load(keys, args)
  local bad, exists = CP.check_thread_keys(keys)
  if bad then return bad end
  local options, at = read_options(args, 1, {TTL = true}, {C = true, W = true, ENTRIES = true},
    {NOINDEX = true})
  if not options then return at end
  local ttl, err = ttl_option(options)
  if not ttl then return err end
  local fields, members = {[4] = {}, [5] = {}}, {}
  local i = at
  while i <= #args and string.upper(args[i]) ~= 'ENTRIES' do
    local which = string.upper(args[i])
    if (which ~= 'C' and which ~= 'W') or not args[i + 2] then
      return fail('BADARG', 'expected C|W <field> <value> ... [ENTRIES id json ...]')
    end
    if (which == 'C' and not CP.is_shaped_or_bytes(args[i + 2]))
        or (which == 'W' and not CP.group_values_ok(args[i + 1], args[i + 2])) then
      return fail('BADARG', 'field ' .. ((i - at) / 3 + 1) .. ' holds a malformed shaped value')
    end
    local member = which == 'C' and CP.field_member(args[i + 1])
    if which == 'C' and string.sub(args[i + 1], 1, 1) == 'c' and not CP.is_member(member) then
      return fail('BADARG', 'field ' .. ((i - at) / 3 + 1) .. ' names no checkpoint "c<ns>\\0<id>"')
    end
    local problem = which == 'C' and string.sub(args[i + 1], 1, 1) == 'c'
      and CP.header_problem(args[i + 2], CP.HEADER_LINES)
    if problem then
      return fail('BADARG', 'field ' .. ((i - at) / 3 + 1) .. ' holds a record that ' .. problem)
    end
    if which == 'C' and string.sub(args[i + 1], 1, 1) == 'c' and not CP.held_count_ok(args[i + 2]) then
      return fail('BADARG', 'field ' .. ((i - at) / 3 + 1) .. ' holds a malformed count of writes')
    end
    if CP.loaded_run_items(which, args[i + 1], args[i + 2]) > CP.LOADED_RUNS then
      return fail('BADARG', 'field ' .. ((i - at) / 3 + 1) .. ' holds more than ' .. CP.LOADED_RUNS
        .. ' runs (what one put or write may store)')
    end
    if which == 'C' and member and not CP.loaded_runs_ok(args[i + 2]) then
      return fail('BADARG', 'field ' .. ((i - at) / 3 + 1) .. ' holds a record with malformed runs')
    end
    if which == 'C' and string.sub(args[i + 1], 1, 1) == 'c' and CP.header_has(args[i + 2], 'P') then
      return fail('BADARG', 'field ' .. ((i - at) / 3 + 1) .. ' names its parent by its place '
        .. '("P" without an id: a dump gives the id)')
    end
    local list = fields[which == 'C' and 4 or 5]
    -- a record goes to its field of this version, whichever form it came in
    list[#list + 1] = member and CP.record_field(member) or args[i + 1]
    list[#list + 1] = args[i + 2]
    if member then members[#members + 1] = member end
    i = i + 3
  end
  if (#fields[4] + #fields[5]) / 2 > CP.CP_MAX_FIELDS then
    return fail('TOOBIG', 'more than ' .. CP.CP_MAX_FIELDS .. ' fields in one call')
  end
  local ids, messages, jsons = {}, {}, {}
  if i <= #args then
    if (#args - i) % 2 ~= 0 then
      return fail('BADARG', 'ENTRIES and pairs of stream id and message JSON are required')
    end
    local last_ms, last_seq = 0, 0
    if exists then
      local info = redis.call('XINFO', 'STREAM', keys[1])
      for k = 1, #info, 2 do
        if info[k] == 'last-generated-id' then last_ms, last_seq = parse_full_id(info[k + 1]) end
      end
    end
    for k = i + 1, #args, 2 do
      local ms, seq = parse_full_id(args[k])
      if not ms or not id_after(ms, seq, last_ms, last_seq) then
        return fail('BADARG', 'entry ' .. ((k - i + 1) / 2) .. ' id is not a stream id after the '
          .. 'session\'s last one')
      end
      last_ms, last_seq = ms, seq
      ids[#ids + 1] = args[k]
    end
    messages, jsons = decode_batch(args, i + 2, #args, 2)
    if not messages then return jsons end
  end

  if #jsons > 0 then
    local session = {keys[1], keys[2], keys[3]}
    local state = prepare_write(session, options.NOINDEX == true, exists)
    store_messages(session, jsons, messages, ids, state)
    if state.building then build_step(session, state, WRITE_BUILD_STEP) end
    finish_write(session, state)
  end
  if #fields[4] > 0 then
    hash_set_many(keys[4], fields[4])
    for _, member in ipairs(members) do
      local _, legacy = CP.record_field(member)
      if legacy then redis.call('HDEL', keys[4], legacy) end
      local before, after, added = CP.order_add(keys[6], member)
      if added then CP.pin_parent(keys, string.match(member, '^([^%z]*)%z'), after, before) end
    end
  end
  if #fields[5] > 0 then hash_set_many(keys[5], fields[5]) end
  CP.thread_ttl(keys, ttl)
  return (#fields[4] + #fields[5]) / 2
end

--[[
chathist_cp_delete: delete a thread (1.4).
  KEYS: the thread's 6 keys.
  ARGV: ALL (the session too) | CHECKPOINTS (keep the session's messages)
  Reply: 1 if any key existed, else 0. UNLINK frees large threads off the
  main thread.
]]
function CP.cp_delete(keys, args)
  local bad = CP.check_thread_keys(keys)
  if bad then return bad end
  local form = args[1] and string.upper(args[1])
  if #args ~= 1 or (form ~= 'ALL' and form ~= 'CHECKPOINTS') then
    return fail('BADARG', 'expected ALL or CHECKPOINTS')
  end
  local first = form == 'ALL' and 1 or 4
  local gone = redis.call('UNLINK', unpack(keys, first, 6))
  return gone > 0 and 1 or 0
end

--[[
chathist_cp_touch: renew the TTL of every key of a thread (1.4).
  KEYS: the thread's 6 keys.  ARGV: seconds (1 to 315360000)
  Reply: 1 if the thread exists, else 0.
]]
function CP.cp_touch(keys, args)
  local bad = CP.check_thread_keys(keys)
  if bad then return bad end
  local seconds = #args == 1 and parse_count(args[1], MAX_TTL_SECONDS, 1)
  if not seconds then return fail('BADARG', 'expected seconds (1 to ' .. MAX_TTL_SECONDS .. ')') end
  local found = 0
  for i = 1, 6 do found = found + redis.call('EXPIRE', keys[i], seconds) end
  return found > 0 and 1 or 0
end

API.READ_ONLY = {'no-writes'}
API.FREES = {'allow-oom'}  -- frees memory: runs when the server is at maxmemory
redis.register_function{function_name = 'chathist_append', callback = API.append}
redis.register_function{function_name = 'chathist_import', callback = API.import}
redis.register_function{function_name = 'chathist_delete', callback = API.delete, flags = API.FREES}
redis.register_function{function_name = 'chathist_range', callback = API.range, flags = API.READ_ONLY}
redis.register_function{function_name = 'chathist_search', callback = API.search, flags = API.READ_ONLY}
redis.register_function{function_name = 'chathist_reindex', callback = API.reindex}
redis.register_function{function_name = 'chathist_clear', callback = API.clear, flags = API.FREES}
redis.register_function{function_name = 'chathist_len', callback = API.len, flags = API.READ_ONLY}
redis.register_function{function_name = 'chathist_ttl', callback = API.ttl, flags = API.READ_ONLY}
redis.register_function{function_name = 'chathist_expire', callback = API.expire, flags = API.FREES}
redis.register_function{function_name = 'chathist_version', callback = API.version, flags = API.READ_ONLY}
redis.register_function{function_name = 'chathist_cp_put', callback = CP.cp_put}
redis.register_function{function_name = 'chathist_cp_writes', callback = CP.cp_writes}
redis.register_function{function_name = 'chathist_cp_get', callback = CP.cp_get, flags = API.READ_ONLY}
redis.register_function{function_name = 'chathist_cp_list', callback = CP.cp_list, flags = API.READ_ONLY}
redis.register_function{function_name = 'chathist_cp_more', callback = CP.cp_more, flags = API.READ_ONLY}
redis.register_function{function_name = 'chathist_cp_chain', callback = CP.cp_chain, flags = API.READ_ONLY}
redis.register_function{function_name = 'chathist_cp_drop', callback = CP.cp_drop, flags = API.FREES}
redis.register_function{function_name = 'chathist_cp_dump', callback = CP.cp_dump, flags = API.READ_ONLY}
redis.register_function{function_name = 'chathist_cp_load', callback = CP.cp_load}
redis.register_function{function_name = 'chathist_cp_delete', callback = CP.cp_delete, flags = API.FREES}
redis.register_function{function_name = 'chathist_cp_touch', callback = CP.cp_touch}
