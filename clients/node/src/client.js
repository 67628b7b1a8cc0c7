// ChatHistoryClient: the protocol's calls over a node-redis client, with load-on-first-use.

import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import {
  ChatHistoryError,
  DEFAULT_PREFIX,
  LIBRARY_VERSION,
  PagedSearch,
  appendCall,
  checkCompatible,
  clearCall,
  commandOf,
  decodePairs,
  decodeReindex,
  deleteCall,
  errorOf,
  expireCall,
  idTime,
  importCall,
  lenCall,
  newToken,
  parseError,
  rangeCall,
  reindexCall,
  sessionKeys,
  ttlCall,
  versionCall,
} from "./protocol.js";

const REPO_LIBRARY = new URL("../../../lua/chat_history.lua", import.meta.url);

/** The library source shipped in this repository (lua/chat_history.lua). */
export function librarySource() {
  return readFileSync(fileURLToPath(REPO_LIBRARY), "utf8");
}

function isFunctionMissing(error) {
  return /function not found/i.test(String(error?.message));
}

/**
 * The package's error for a server error reply: chathist codes become ChatHistoryError
 * (CONFLICT its subclass ConflictError).
 */
function translate(error) {
  const coded = parseError(String(error?.message));
  return coded ? errorOf(coded) : error;
}

/**
 * Sessions of one prefix on one Redis, through the chathist library.
 * `redis` is a connected node-redis client (RESP2 or RESP3).
 */
export class ChatHistoryClient {
  constructor(redis, { prefix = DEFAULT_PREFIX, source } = {}) {
    this.redis = redis;
    this.prefix = prefix;
    this.source = source;
    this.checked = false;
  }

  keys(sessionId) {
    return sessionKeys(this.prefix, sessionId);
  }

  /** Load the library when the server lacks it or has an older one; refuse a newer major. */
  async ensureLibrary() {
    let server = null;
    try {
      server = String(await this.redis.sendCommand(commandOf(versionCall())));
    } catch (error) {
      if (!isFunctionMissing(error)) throw error;
    }
    const verdict = server === null ? "upgrade" : checkCompatible(server);
    if (verdict === "incompatible") {
      throw new ChatHistoryError(
        `the server runs chathist ${server}, a newer major version than ${LIBRARY_VERSION}`,
        "INCOMPATIBLE",
      );
    }
    if (verdict === "upgrade") {
      await this.redis.sendCommand(["FUNCTION", "LOAD", "REPLACE", this.source ?? librarySource()]);
    }
    this.checked = true;
  }

  /**
   * Send a call; load the library first if needed, and once more if it vanished. The retry
   * sends the same call object, so a write's TOKEN is the same on both attempts.
   */
  async run(call) {
    if (!this.checked) await this.ensureLibrary();
    try {
      return await this.redis.sendCommand(commandOf(call));
    } catch (error) {
      if (!isFunctionMissing(error)) throw translate(error);
      await this.ensureLibrary();
      try {
        return await this.redis.sendCommand(commandOf(call));
      } catch (again) {
        throw translate(again);
      }
    }
  }

  /**
   * Store stored-message objects (or JSON texts) atomically; returns their stream ids.
   * Options: ttl, and (1.1) maxlen, maxbytes, noindex, and (1.3) token, ifLast, toolSafe.
   * Every call carries a TOKEN: `token` if given, else a fresh one (newToken()), made once per
   * call and sent unchanged on every attempt, so a write sent twice is stored once. To retry an
   * append whose reply was lost, make a token, pass it, and pass it again on the retry.
   * With `ifLast`, a session whose newest message is another one rejects with ConflictError.
   */
  async append(sessionId, messages, { token, ...options } = {}) {
    const call = appendCall(this.keys(sessionId), messages, { ...options, token: token ?? newToken() });
    return (await this.run(call)).map(String);
  }

  /** Store [{id, message}] under their explicit stream ids (1.1). Options: ttl, noindex. */
  async import(sessionId, entries, options = {}) {
    return (await this.run(importCall(this.keys(sessionId), entries, options))).map(String);
  }

  /** Delete by {ids} (stream ids) or {messageIds} (client ids); returns the number deleted (1.1). */
  async delete(sessionId, which) {
    return Number(await this.run(deleteCall(this.keys(sessionId), which)));
  }

  /** Remaining TTL in ms; -1 without TTL, -2 without session (1.1). */
  async ttl(sessionId) {
    return Number(await this.run(ttlCall(this.keys(sessionId))));
  }

  /** Expire the whole session in `seconds`, or drop its TTL with "PERSIST" (1.1). */
  async expire(sessionId, seconds) {
    return Number(await this.run(expireCall(this.keys(sessionId), seconds)));
  }

  /**
   * Rebuild the session's search index; returns the number of messages in the session. 1.3:
   * the library indexes a bounded number of messages per call, so this sends RESTART, then
   * CONTINUE until the index is complete, calling `onProgress({indexed, total})` after each step.
   * Search stays exact while it runs (it scans the session until the index is complete).
   */
  async reindex(sessionId, { onProgress } = {}) {
    const keys = this.keys(sessionId);
    let step = decodeReindex(await this.run(reindexCall(keys, "RESTART")));
    for (;;) {
      if (onProgress) await onProgress({ indexed: step.indexed, total: step.total });
      if (step.complete) return step.total;
      step = decodeReindex(await this.run(reindexCall(keys, "CONTINUE")));
    }
  }

  /**
   * [{id, time, message}] oldest first: all, the latest `count`, or a page before/after.
   * 1.3: `toolSafe` (not with `after`) never starts the window with an orphan tool result.
   */
  async range(sessionId, options = {}) {
    return withTimes(await this.run(rangeCall(this.keys(sessionId), options)));
  }

  /**
   * [{id, time, message, score}] matching a query: oldest first for mode "all" (the default),
   * best first for "any". Options: limit, and (1.1) mode, type, before, (1.3) minScore. `score` is
   * the number of distinct query tokens the message holds. 1.3: the library bounds each call's
   * work, so this sends PAGED calls and follows the reply's cursor until the search is complete:
   * the result is that of one unbounded search, however many calls it took.
   */
  async search(sessionId, query, options = {}) {
    const search = new PagedSearch(this.keys(sessionId), query, options);
    for (let call = search.nextCall(); call; call = search.nextCall()) {
      search.add(await this.run(call));
    }
    return search.hits.map(({ id, message, score }) => ({ id, time: idTime(id), message, score }));
  }

  async clear(sessionId) {
    return Number(await this.run(clearCall(this.keys(sessionId))));
  }

  async len(sessionId) {
    return Number(await this.run(lenCall(this.keys(sessionId))));
  }

  async version() {
    return String(await this.run(versionCall()));
  }
}

function withTimes(reply) {
  return decodePairs(reply).map(({ id, message }) => ({ id, time: idTime(id), message }));
}
