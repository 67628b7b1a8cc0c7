// The chathist FCALL protocol without I/O: key layout, argument encoding, reply decoding.
// docs/PROTOCOL.md is the contract; tests/vectors/encoding.json checks this file against it.

import { randomUUID } from "node:crypto";

export const LIBRARY_NAME = "chathist";
/** Version of lua/chat_history.lua this client is written for. */
export const LIBRARY_VERSION = "1.8.0";
export const DEFAULT_PREFIX = "chat:";
export const KEY_SUFFIXES = [":m", ":x", ":i"];

export const FUNCTIONS = Object.freeze({
  append: "chathist_append",
  range: "chathist_range",
  search: "chathist_search",
  clear: "chathist_clear",
  len: "chathist_len",
  version: "chathist_version",
  delete: "chathist_delete",
  import: "chathist_import",
  ttl: "chathist_ttl",
  expire: "chathist_expire",
  reindex: "chathist_reindex",
});

/** An error of the chathist protocol, with the library's stable code (BADKEYS, BADARG, ...). */
export class ChatHistoryError extends Error {
  constructor(message, code = "BADARG") {
    super(message);
    this.name = "ChatHistoryError";
    this.code = code;
  }
}

const CONFLICT_TEXT = /^the session's last message is (\S+), not (\S+)$/;

/**
 * An IFLAST append found another newest message (code CONFLICT, 1.3); nothing was written.
 * `lastId` is the session's newest stream id ("0-0": empty), `expectedId` the IFLAST sent
 * (both null if the text is not the library's).
 */
export class ConflictError extends ChatHistoryError {
  constructor(message) {
    super(message, "CONFLICT");
    this.name = "ConflictError";
    const match = CONFLICT_TEXT.exec(message);
    this.lastId = match ? match[1] : null;
    this.expectedId = match ? match[2] : null;
  }
}

/** The package's error for a library error reply's {code, message}. */
export function errorOf({ code, message }) {
  return code === "CONFLICT" ? new ConflictError(message) : new ChatHistoryError(message, code);
}

const TAG_ESCAPES = { "%": "%25", "{": "%7B", "}": "%7D" };

/**
 * The three keys of a session: messages stream, search index, client-id map.
 * The session id becomes the hash tag with "%", "{" and "}" percent-encoded, so a session
 * lives in one cluster slot and no two sessions share a key.
 */
export function sessionKeys(prefix, sessionId) {
  if (typeof sessionId !== "string" || sessionId === "") {
    throw new ChatHistoryError("sessionId must be a non-empty string", "BADKEYS");
  }
  if (typeof prefix !== "string" || /[{}]/.test(prefix)) {
    throw new ChatHistoryError("prefix must be a string without '{' or '}'", "BADKEYS");
  }
  const base = `${prefix}{${sessionId.replace(/[%{}]/g, (c) => TAG_ESCAPES[c])}}`;
  return KEY_SUFFIXES.map((suffix) => base + suffix);
}

/** A stored message (LangChain's {type, data} object, or its JSON text) as the JSON argument. */
export function encodeMessage(message) {
  return typeof message === "string" ? message : JSON.stringify(message);
}

function call(fn, keys, args, readOnly) {
  return { function: fn, keys, args, readOnly };
}

/**
 * A fresh name for one write (TOKEN, 1.3): 32 hex characters. Send the same token when the same
 * write is sent again, and the library replies the first call's ids instead of storing it twice.
 */
export function newToken() {
  return randomUUID().replaceAll("-", "");
}

const given = (value) => value !== undefined && value !== null;

/**
 * Store messages in one atomic call. `ttl` > 0 renews the whole session's TTL; `maxlen` /
 * `maxbytes` trim the oldest messages in the same call (1.1); `noindex` keeps a session that has
 * no index without one (1.1). 1.3: `token` names the write, so a retry with the same token is
 * stored once (see newToken); `ifLast` writes only if the session's newest stream id is that one
 * ("0-0": empty), else the library replies CONFLICT; `toolSafe` makes the trim also remove the
 * tool results left at the start of the window.
 */
export function appendCall(keys, messages, { ttl, maxlen, maxbytes, noindex, token, ifLast, toolSafe } = {}) {
  const args = ttl ? ["TTL", String(ttl)] : [];
  if (given(maxlen)) args.push("MAXLEN", String(maxlen));
  if (given(maxbytes)) args.push("MAXBYTES", String(maxbytes));
  if (noindex) args.push("NOINDEX");
  if (given(token)) args.push("TOKEN", String(token));
  if (given(ifLast)) args.push("IFLAST", String(ifLast));
  if (toolSafe) args.push("TOOLSAFE");
  args.push("MESSAGES", ...messages.map(encodeMessage));
  return call(FUNCTIONS.append, keys, args, false);
}

/**
 * The whole session, the latest `count`, or a page before/after an id or ms time. 1.3:
 * `toolSafe` keeps a window from starting with tool results whose AI message is outside it;
 * the library refuses it with `after`, and so does this, before anything is sent.
 */
export function rangeCall(keys, { count, before, after, toolSafe } = {}) {
  if (toolSafe && given(after)) {
    throw new ChatHistoryError("TOOLSAFE applies to windows read backward (not with AFTER)", "BADARG");
  }
  const args = [];
  if (given(count)) args.push("COUNT", String(count));
  if (given(before)) args.push("BEFORE", String(before));
  if (given(after)) args.push("AFTER", String(after));
  if (toolSafe) args.push("TOOLSAFE");
  return call(FUNCTIONS.range, keys, args, true);
}

/**
 * Messages matching `query`: with mode "all" (the default) the latest `limit` holding every token
 * and phrase, oldest first; with mode "any" (1.1) the best `limit`, best first. `type` keeps one
 * message type and `before` pages to older matches (1.1). 1.3: `minScore` keeps "any" hits
 * holding at least that many distinct query tokens; `paged` asks for the PAGED reply (see
 * decodePaged), which a search too long for one call needs.
 */
export function searchCall(keys, query, { limit = 10, mode, type, before, minScore, paged } = {}) {
  const args = [query, "LIMIT", String(limit)];
  if (mode && mode.toUpperCase() !== "ALL") args.push("MODE", mode.toUpperCase());
  if (type !== undefined && type !== null) args.push("TYPE", type);
  if (before !== undefined && before !== null) args.push("BEFORE", String(before));
  if (minScore !== undefined && minScore !== null) args.push("MINSCORE", String(minScore));
  if (paged) args.push("PAGED");
  return call(FUNCTIONS.search, keys, args, true);
}

/**
 * {next, hits: [{id, message, score}]} of a PAGED search reply `next, id, json, score, ...`:
 * `next` is "" once the search is complete, else the BEFORE of the next call (1.3).
 */
export function decodePaged(reply) {
  if (!Array.isArray(reply) || reply.length % 3 !== 1) {
    throw new ChatHistoryError("a PAGED search reply is next, then id, json, score triples", "PROTOCOL");
  }
  const hits = [];
  for (let i = 1; i < reply.length; i += 3) {
    hits.push({ id: String(reply[i]), message: JSON.parse(String(reply[i + 1])), score: Number(reply[i + 2]) });
  }
  return { next: String(reply[0]), hits };
}

/** <0, 0 or >0 as stream id `a` is older than, the same as or newer than `b` ("ms-seq" or "ms"). */
export function compareIds(a, b) {
  const [am, as = "0"] = String(a).split("-");
  const [bm, bs = "0"] = String(b).split("-");
  const d = BigInt(am) - BigInt(bm) || BigInt(as) - BigInt(bs);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

/** "any" order: more query tokens first, then newer first. */
const better = (a, b) => b.score - a.score || compareIds(b.id, a.id);

/**
 * One search followed over as many PAGED calls as the server needs, as docs/PROTOCOL.md says
 * ("how to follow it"), so that the hits are those of one unbounded search. No I/O: `nextCall()`
 * is the call to send (null once done), `add(reply)` takes its raw reply, `hits` is the answer
 * ([{id, message, score}], oldest first for "all", best first for "any").
 * Every call must move `next` to an older id than its BEFORE (the library guarantees it); a reply
 * that does not is refused with code PROTOCOL rather than followed forever.
 */
export class PagedSearch {
  constructor(keys, query, { limit = 10, mode, type, before, minScore } = {}) {
    this.keys = keys;
    this.query = query;
    this.limit = limit;
    this.any = Boolean(mode) && mode.toUpperCase() === "ANY";
    this.mode = mode;
    this.type = type;
    this.before = before ?? null;
    this.minScore = minScore ?? null;
    this.hits = [];
    this.done = false;
    this.calls = 0;
  }

  /** MINSCORE for the next "any" call: an older message must beat the LIMIT-th hit held. */
  floor() {
    const held = this.hits.length >= this.limit && this.limit > 0 ? this.hits[this.limit - 1].score + 1 : 1;
    return Math.max(held, this.minScore ?? 1);
  }

  nextCall() {
    if (this.done) return null;
    const options = { mode: this.mode, type: this.type, before: this.before, paged: true };
    if (this.any) {
      options.limit = this.limit;
      const floor = this.floor();
      if (floor > 1 || this.minScore !== null) options.minScore = floor;
    } else {
      options.limit = this.limit - this.hits.length;
    }
    return searchCall(this.keys, this.query, options);
  }

  add(reply) {
    const { next, hits } = decodePaged(reply);
    this.calls += 1;
    if (this.any) {
      const seen = new Set(this.hits.map((hit) => hit.id));
      for (const hit of hits) if (!seen.has(hit.id)) this.hits.push(hit);
      this.hits.sort(better);
      this.hits.length = Math.min(this.hits.length, this.limit);
    } else {
      this.hits = [...hits, ...this.hits];  // each call's hits are older than the last call's
    }
    if (next === "" || (!this.any && this.hits.length >= this.limit)) {
      this.done = true;
    } else if (this.before !== null && compareIds(next, this.before) >= 0) {
      throw new ChatHistoryError(`search cursor ${next} does not move before ${this.before}`, "PROTOCOL");
    } else {
      this.before = next;
    }
    return this.done;
  }
}

/** Delete messages by stream id (`ids`) or by client id (`messageIds`) (1.1). */
export function deleteCall(keys, { ids, messageIds } = {}) {
  if ((ids === undefined) === (messageIds === undefined)) {
    throw new ChatHistoryError("give either ids or messageIds", "BADARG");
  }
  const args = ids !== undefined ? ["IDS", ...ids] : ["MESSAGEIDS", ...messageIds];
  return call(FUNCTIONS.delete, keys, args.map(String), false);
}

/** Store [{id, message}] entries under their explicit stream ids (1.1). */
export function importCall(keys, entries, { ttl, noindex } = {}) {
  const args = ttl ? ["TTL", String(ttl)] : [];
  if (noindex) args.push("NOINDEX");
  args.push("ENTRIES");
  for (const { id, message } of entries) args.push(String(id), encodeMessage(message));
  return call(FUNCTIONS.import, keys, args, false);
}

/** The session's remaining TTL in ms; -1 without TTL, -2 without session (1.1). */
export const ttlCall = (keys) => call(FUNCTIONS.ttl, keys, [], true);

/** Set every key of the session to expire in `seconds`, or drop the TTL with "PERSIST" (1.1). */
export function expireCall(keys, seconds) {
  return call(FUNCTIONS.expire, keys, [String(seconds)], false);
}

/**
 * Rebuild the session's search index (1.1). 1.3: `step` "RESTART" drops the index and indexes
 * the oldest messages, "CONTINUE" the next ones; both reply [indexed, messages, complete].
 */
export function reindexCall(keys, step) {
  if (step !== undefined && step !== null && !/^(RESTART|CONTINUE)$/i.test(step)) {
    throw new ChatHistoryError("reindex step must be RESTART or CONTINUE", "BADARG");
  }
  return call(FUNCTIONS.reindex, keys, step ? [step.toUpperCase()] : [], false);
}

/** {indexed, total, complete} of a RESTART / CONTINUE reindex reply (1.3). */
export function decodeReindex(reply) {
  if (!Array.isArray(reply) || reply.length !== 3) {
    throw new ChatHistoryError("a reindex step reply is [indexed, messages, complete]", "PROTOCOL");
  }
  const [indexed, total, complete] = reply.map(Number);
  return { indexed, total, complete: complete === 1 };
}

export const clearCall = (keys) => call(FUNCTIONS.clear, keys, [], false);
export const lenCall = (keys) => call(FUNCTIONS.len, keys, [], true);
export const versionCall = () => call(FUNCTIONS.version, [], [], true);

/** The full command of a call, for a client's sendCommand. */
export function commandOf({ function: fn, keys, args, readOnly }) {
  return [readOnly ? "FCALL_RO" : "FCALL", fn, String(keys.length), ...keys, ...args];
}

/** [{id, message}] from a flat `id, json, id, json` range or search reply. */
export function decodePairs(reply) {
  const out = [];
  for (let i = 0; i < reply.length; i += 2) {
    out.push({ id: String(reply[i]), message: JSON.parse(String(reply[i + 1])) });
  }
  return out;
}

/** The server time (a Date) at which a message was stored, from its stream id. */
export function idTime(streamId) {
  return new Date(Number(streamId.split("-")[0]));
}

const ERROR_CODE = /^(?:ERR )?CHATHIST_([A-Z]+) ([\s\S]*)$/;

/** {code, message} of a chathist error reply text, or null for any other error. */
export function parseError(text) {
  const match = ERROR_CODE.exec(text);
  return match ? { code: match[1], message: match[2] } : null;
}

export function versionTuple(version) {
  return version.split(".").map(Number);
}

function compare(a, b) {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * What to do about the server's library: "ok" (same major, not older), "upgrade" (older:
 * load ours over it) or "incompatible" (newer major: never downgrade it).
 */
export function checkCompatible(serverVersion, ours = LIBRARY_VERSION) {
  const server = versionTuple(serverVersion);
  const mine = versionTuple(ours);
  if (server[0] > mine[0]) return "incompatible";
  if (compare(server, mine) < 0) return "upgrade";
  return "ok";
}
