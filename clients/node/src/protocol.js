// The chathist FCALL protocol without I/O: key layout, argument encoding, reply decoding.
// docs/PROTOCOL.md is the contract; tests/vectors/encoding.json checks this file against it.

export const LIBRARY_NAME = "chathist";
/** Version of lua/chat_history.lua this client is written for. */
export const LIBRARY_VERSION = "1.3.0";
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
 * Store messages in one atomic call. `ttl` > 0 renews the whole session's TTL; `maxlen` /
 * `maxbytes` trim the oldest messages in the same call (1.1); `noindex` keeps a session that has
 * no index without one (1.1).
 */
export function appendCall(keys, messages, { ttl, maxlen, maxbytes, noindex } = {}) {
  const args = ttl ? ["TTL", String(ttl)] : [];
  if (maxlen !== undefined && maxlen !== null) args.push("MAXLEN", String(maxlen));
  if (maxbytes !== undefined && maxbytes !== null) args.push("MAXBYTES", String(maxbytes));
  if (noindex) args.push("NOINDEX");
  args.push("MESSAGES", ...messages.map(encodeMessage));
  return call(FUNCTIONS.append, keys, args, false);
}

/** The whole session, the latest `count`, or a page before/after an id or ms time. */
export function rangeCall(keys, { count, before, after } = {}) {
  const args = [];
  if (count !== undefined && count !== null) args.push("COUNT", String(count));
  if (before !== undefined && before !== null) args.push("BEFORE", String(before));
  if (after !== undefined && after !== null) args.push("AFTER", String(after));
  return call(FUNCTIONS.range, keys, args, true);
}

/**
 * Messages matching `query`: with mode "all" (the default) the latest `limit` holding every token
 * and phrase, oldest first; with mode "any" (1.1) the best `limit`, best first. `type` keeps one
 * message type and `before` pages to older matches (1.1).
 */
export function searchCall(keys, query, { limit = 10, mode, type, before } = {}) {
  const args = [query, "LIMIT", String(limit)];
  if (mode && mode.toUpperCase() !== "ALL") args.push("MODE", mode.toUpperCase());
  if (type !== undefined && type !== null) args.push("TYPE", type);
  if (before !== undefined && before !== null) args.push("BEFORE", String(before));
  return call(FUNCTIONS.search, keys, args, true);
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

/** Rebuild the session's search index (1.1). */
export const reindexCall = (keys) => call(FUNCTIONS.reindex, keys, [], false);

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
