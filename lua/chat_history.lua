#!lua name=chathist
--[[
redis-chat-history: chat message history kept inside Redis.

One Redis Functions library. Every function takes the three keys of one
session, in this order (see docs/PROTOCOL.md):

  KEYS[1]  <prefix>{<tag>}:m   stream of messages (one entry per message, field "m")
  KEYS[2]  <prefix>{<tag>}:x   search index (reserved; deleted with the session)
  KEYS[3]  <prefix>{<tag>}:i   hash: client message id -> stream id (retry dedup)

<tag> is the session id with "%", "{" and "}" percent-encoded, so all keys of a
session share one hash slot and no two sessions can collide.

Errors are replied as "ERR CHATHIST_<CODE> <what was wrong>". A function that
replies an error has written nothing: every argument is checked first.
]]

local LIBRARY_VERSION = '1.0.0'

local MAX_MESSAGE_BYTES = 1048576    -- one stored message JSON
local MAX_BATCH_MESSAGES = 10000     -- messages in one append
local MAX_TTL_SECONDS = 315360000    -- ten years
local MAX_QUERY_BYTES = 4096
local DEFAULT_SEARCH_LIMIT = 10
local MAX_SEARCH_LIMIT = 1000
local MESSAGE_FIELD = 'm'
local SUFFIXES = {':m', ':x', ':i'}
local KEY_TYPES = {'stream', 'hash', 'hash'}

local function fail(code, text)
  return redis.error_reply('ERR CHATHIST_' .. code .. ' ' .. text)
end

-- Checks that keys are exactly the three keys of one session, each absent or
-- of its type; returns an error reply or nil.
local function check_keys(keys)
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
  for i, expected in ipairs(KEY_TYPES) do
    local actual = redis.call('TYPE', keys[i])['ok']
    if actual ~= 'none' and actual ~= expected then
      return fail('BADKEYS', 'key ' .. i .. ' holds a ' .. actual .. ', not the ' .. expected
        .. ' of a chat session')
    end
  end
  return nil
end

-- Parses a non-negative decimal integer no larger than max; returns the number or nil.
local function parse_count(text, max)
  if type(text) ~= 'string' or not string.match(text, '^%d+$') or #text > 15 then
    return nil
  end
  local n = tonumber(text)
  if n > max then return nil end
  return n
end

local function is_stream_id(text)
  return type(text) == 'string'
    and (string.match(text, '^%d+%-%d+$') ~= nil or string.match(text, '^%d+$') ~= nil)
    and #text <= 41
end

-- Reads "NAME value" option pairs from args starting at index first, until
-- the end or until a name listed in stop_words. Returns options table, index
-- of the stop word (or #args + 1), or nil and an error reply.
local function read_options(args, first, allowed, stop_words)
  local options = {}
  local i = first
  while i <= #args do
    local name = string.upper(args[i])
    if stop_words and stop_words[name] then
      return options, i
    end
    if not allowed[name] then
      return nil, fail('BADARG', 'unknown option "' .. string.sub(args[i], 1, 64) .. '"')
    end
    if options[name] ~= nil then
      return nil, fail('BADARG', 'option ' .. name .. ' given twice')
    end
    if i == #args then
      return nil, fail('BADARG', 'option ' .. name .. ' needs a value')
    end
    options[name] = args[i + 1]
    i = i + 2
  end
  return options, i
end

-- True for a decoded JSON array (cjson gives arrays and objects both as tables).
local function is_list(value)
  if type(value) ~= 'table' then return false end
  local count = 0
  for _ in pairs(value) do count = count + 1 end
  return count == #value
end

-- Decodes and checks one stored-message JSON; returns the decoded table or
-- nil and an error text.
local function decode_message(json, position)
  if #json > MAX_MESSAGE_BYTES then
    return nil, 'TOOBIG', 'message ' .. position .. ' is ' .. #json
      .. ' bytes, over the limit of ' .. MAX_MESSAGE_BYTES
  end
  local ok, message = pcall(cjson.decode, json)
  if not ok or type(message) ~= 'table' then
    return nil, 'BADMSG', 'message ' .. position .. ' is not a JSON object'
  end
  if type(message.type) ~= 'string' or message.type == '' or #message.type > 64 then
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
local function stored_id(keys, id)
  local existing = redis.call('HGET', keys[3], id)
  if existing and #redis.call('XRANGE', keys[1], existing, existing) > 0 then
    return existing
  end
  return nil
end

--[[
chathist_append: store a batch of messages, atomically.
  KEYS: the session's 3 keys.
  ARGV: [TTL seconds] MESSAGES json [json ...]
    TTL 0 leaves the TTL as it is; TTL n > 0 sets every key of the session to
    expire n seconds from now (a sliding TTL for the whole conversation).
    A message whose data.id was already stored in this session is not stored
    again: its existing stream id is returned (safe retries).
  Reply: array of stream ids, one per message, in order.
]]
local function append(keys, args)
  local bad = check_keys(keys)
  if bad then return bad end
  local options, at = read_options(args, 1, {TTL = true}, {MESSAGES = true})
  if not options then return at end
  if at >= #args then
    return fail('BADARG', 'MESSAGES and at least one message JSON are required')
  end
  local ttl = 0
  if options.TTL then
    ttl = parse_count(options.TTL, MAX_TTL_SECONDS)
    if not ttl then
      return fail('BADARG', 'TTL must be an integer from 0 to ' .. MAX_TTL_SECONDS .. ' seconds')
    end
  end
  local count = #args - at
  if count > MAX_BATCH_MESSAGES then
    return fail('TOOBIG', 'batch of ' .. count .. ' messages is over the limit of ' .. MAX_BATCH_MESSAGES)
  end
  local ids = {}
  for position = 1, count do
    local message, code, text = decode_message(args[at + position], position)
    if not message then return fail(code, text) end
    ids[position] = client_id(message)
  end

  local stream_ids = {}
  local seen = {}
  for position = 1, count do
    local id = ids[position]
    local existing = id and (seen[id] or stored_id(keys, id))
    if existing then
      stream_ids[position] = existing
    else
      local stream_id = redis.call('XADD', keys[1], '*', MESSAGE_FIELD, args[at + position])
      if id then
        redis.call('HSET', keys[3], id, stream_id)
        seen[id] = stream_id
      end
      stream_ids[position] = stream_id
    end
  end
  refresh_ttl(keys, ttl)
  return stream_ids
end

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

--[[
chathist_range: read messages in order (read-only).
  KEYS: the session's 3 keys.
  ARGV: [COUNT n] [BEFORE id] [AFTER id]
    no options         the whole session
    COUNT n            the latest n messages
    BEFORE id COUNT n  the n messages just before id (exclusive)
    AFTER id [COUNT n] the messages just after id (exclusive), oldest first
  An id may be a stream id "ms-seq" or a time in ms: BEFORE ms means stored
  before that millisecond, AFTER ms stored after it.
  Reply: flat array id1, json1, id2, json2, ... oldest first.
]]
local function range(keys, args)
  local bad = check_keys(keys)
  if bad then return bad end
  local options, err = read_options(args, 1, {COUNT = true, BEFORE = true, AFTER = true})
  if not options then return err end
  local count
  if options.COUNT then
    count = parse_count(options.COUNT, 1e15)
    if not count then return fail('BADARG', 'COUNT must be a non-negative integer') end
    if count == 0 then return {} end
  end
  for _, name in ipairs({'BEFORE', 'AFTER'}) do
    if options[name] and not is_stream_id(options[name]) then
      return fail('BADARG', name .. ' must be a stream id "ms-seq" or a time in ms')
    end
  end
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
  return flatten(entries, not options.AFTER and count ~= nil)
end

-- Lower-cases ASCII letters and splits text into word tokens; bytes of
-- UTF-8 sequences stay inside words.
local function tokenize(text, into)
  for word in string.gmatch(string.lower(text), '[%w\128-\255]+') do
    into[#into + 1] = word
  end
  return into
end

-- The searchable text of a message: string content, or the "text" of the
-- parts of list content.
local function message_tokens(message)
  local content = message.data.content
  local tokens = {}
  if type(content) == 'string' then
    return tokenize(content, tokens)
  end
  for _, part in ipairs(content) do
    if type(part) == 'string' then
      tokenize(part, tokens)
    elseif type(part) == 'table' and type(part.text) == 'string' then
      tokenize(part.text, tokens)
    end
  end
  return tokens
end

local function contains_all(tokens, wanted)
  local present = {}
  for _, token in ipairs(tokens) do present[token] = true end
  for _, token in ipairs(wanted) do
    if not present[token] then return false end
  end
  return true
end

--[[
chathist_search: messages whose text holds every token of a query (read-only).
  KEYS: the session's 3 keys.
  ARGV: query [LIMIT n]   (LIMIT defaults to 10, at most 1000)
  Tokens are runs of letters and digits, ASCII case-folded.
  Reply: flat array id1, json1, ... of the most recent matches, oldest first.
]]
local function search(keys, args)
  local bad = check_keys(keys)
  if bad then return bad end
  local query = args[1]
  if type(query) ~= 'string' or #query > MAX_QUERY_BYTES then
    return fail('BADARG', 'a query of at most ' .. MAX_QUERY_BYTES .. ' bytes is required')
  end
  local options, err = read_options(args, 2, {LIMIT = true})
  if not options then return err end
  local limit = DEFAULT_SEARCH_LIMIT
  if options.LIMIT then
    limit = parse_count(options.LIMIT, MAX_SEARCH_LIMIT)
    if not limit then return fail('BADARG', 'LIMIT must be an integer from 0 to ' .. MAX_SEARCH_LIMIT) end
  end
  local wanted = tokenize(query, {})
  if #wanted == 0 or limit == 0 then return {} end
  local entries = redis.call('XREVRANGE', keys[1], '+', '-')
  local hits = {}
  for _, entry in ipairs(entries) do
    if #hits >= limit then break end
    local ok, message = pcall(cjson.decode, entry[2][2])
    if ok and type(message) == 'table' and type(message.data) == 'table'
        and contains_all(message_tokens(message), wanted) then
      hits[#hits + 1] = entry
    end
  end
  return flatten(hits, true)
end

--[[
chathist_clear: delete every key of the session.
  KEYS: the session's 3 keys.  ARGV: none.
  Reply: the number of messages deleted.
]]
local function clear(keys, args)
  local bad = check_keys(keys)
  if bad then return bad end
  if #args > 0 then return fail('BADARG', 'clear takes no arguments') end
  local count = redis.call('XLEN', keys[1])
  redis.call('DEL', keys[1], keys[2], keys[3])
  return count
end

--[[
chathist_len: the number of messages in the session (read-only).
  KEYS: the session's 3 keys.  ARGV: none.  Reply: integer.
]]
local function len(keys, args)
  local bad = check_keys(keys)
  if bad then return bad end
  if #args > 0 then return fail('BADARG', 'len takes no arguments') end
  return redis.call('XLEN', keys[1])
end

--[[
chathist_version: the library version, "major.minor.patch" (read-only).
  KEYS: none.  ARGV: none.  Reply: bulk string.
  Same major: compatible protocol; a higher minor only adds.
]]
local function version(keys, args)
  if #keys > 0 then return fail('BADKEYS', 'version takes no keys') end
  return LIBRARY_VERSION
end

redis.register_function{function_name = 'chathist_append', callback = append}
redis.register_function{function_name = 'chathist_range', callback = range, flags = {'no-writes'}}
redis.register_function{function_name = 'chathist_search', callback = search, flags = {'no-writes'}}
redis.register_function{function_name = 'chathist_clear', callback = clear}
redis.register_function{function_name = 'chathist_len', callback = len, flags = {'no-writes'}}
redis.register_function{function_name = 'chathist_version', callback = version, flags = {'no-writes'}}
