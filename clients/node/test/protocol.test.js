// Key layout and call encoding against tests/vectors/encoding.json (no server needed).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import {
  ChatHistoryError,
  ConflictError,
  LIBRARY_VERSION,
  PagedSearch,
  appendCall,
  checkCompatible,
  clearCall,
  compareIds,
  decodePaged,
  decodeReindex,
  deleteCall,
  errorOf,
  expireCall,
  importCall,
  lenCall,
  newToken,
  parseError,
  rangeCall,
  reindexCall,
  searchCall,
  sessionKeys,
  ttlCall,
  versionCall,
} from "../src/protocol.js";
import { loadVector } from "./helpers.js";

const ENCODING = loadVector("encoding.json");

for (const vector of ENCODING.keys) {
  test(`keys of ${JSON.stringify(vector.prefix)} + ${JSON.stringify(vector.session)}`, () => {
    if ("error" in vector) {
      assert.throws(() => sessionKeys(vector.prefix, vector.session), (error) => {
        assert.ok(error instanceof ChatHistoryError);
        assert.strictEqual(error.code, vector.error);
        return true;
      });
    } else {
      assert.deepStrictEqual(sessionKeys(vector.prefix, vector.session), vector.keys);
    }
  });
}

function build(vector) {
  const keys = sessionKeys(vector.prefix, vector.session);
  const params = vector.params ?? {};
  switch (vector.call) {
    case "append":
      return appendCall(keys, params.messages, params);
    case "range":
      return rangeCall(keys, params);
    case "search":
      return searchCall(keys, params.query, params);
    case "reindex":
      return reindexCall(keys);
    case "delete":
      return deleteCall(keys, { ids: params.ids, messageIds: params.message_ids });
    case "import":
      return importCall(keys, params.entries, params);
    case "ttl":
      return ttlCall(keys);
    case "expire":
      return expireCall(keys, params.seconds);
    case "clear":
      return clearCall(keys);
    case "len":
      return lenCall(keys);
    case "version":
      return versionCall();
    default:
      throw new Error(`unknown call ${vector.call}`);
  }
}

function contains(actual, expected) {
  if (expected !== null && typeof expected === "object" && !Array.isArray(expected)) {
    return actual !== null && typeof actual === "object"
      && Object.entries(expected).every(([key, value]) => key in actual && contains(actual[key], value));
  }
  try {
    assert.deepStrictEqual(actual, expected);
    return true;
  } catch {
    return false;
  }
}

for (const vector of ENCODING.calls) {
  test(`encoding: ${vector.name}`, () => {
    const call = build(vector);
    assert.strictEqual(call.function, vector.function);
    assert.strictEqual(call.readOnly, vector.read_only);
    assert.deepStrictEqual(call.keys, vector.keys);
    assert.strictEqual(call.args.length, vector.args.length);
    vector.args.forEach((want, i) => {
      if (typeof want === "object") {
        assert.ok(contains(JSON.parse(call.args[i]), want.$json), `${call.args[i]}`);
      } else {
        assert.strictEqual(call.args[i], want);
      }
    });
  });
}

test("LIBRARY_VERSION is the version declared in lua/chat_history.lua", () => {
  const source = readFileSync(new URL("../../../lua/chat_history.lua", import.meta.url), "utf8");
  assert.strictEqual(/^local LIBRARY_VERSION = '([^']+)'$/m.exec(source)[1], LIBRARY_VERSION);
});

test("error replies: code and text; other errors are not ours", () => {
  assert.deepStrictEqual(parseError("ERR CHATHIST_BADARG option TTL needs a value"), {
    code: "BADARG",
    message: "option TTL needs a value",
  });
  assert.strictEqual(parseError("ERR Function not found"), null);
});

test("version check: same major and not older is ok, older upgrades, newer major refuses", () => {
  assert.strictEqual(checkCompatible("1.0.0", "1.0.0"), "ok");
  assert.strictEqual(checkCompatible("1.3.0", "1.0.0"), "ok");
  assert.strictEqual(checkCompatible("1.0.0", "1.1.0"), "upgrade");
  assert.strictEqual(checkCompatible("0.9.9", "1.0.0"), "upgrade");
  assert.strictEqual(checkCompatible("2.0.0", "1.9.0"), "incompatible");
  assert.strictEqual(checkCompatible("1.10.0", "1.9.0"), "ok");
});

test("error replies: BUDGET (1.3) parses like every other code", () => {
  const text = "ERR CHATHIST_BUDGET this search needs more than one call: pass PAGED and continue "
    + "with BEFORE set to the reply's first element";
  assert.deepStrictEqual(parseError(text), {
    code: "BUDGET",
    message: "this search needs more than one call: pass PAGED and continue with BEFORE set to the reply's first element",
  });
  assert.strictEqual(parseError(text.slice(4)).code, "BUDGET");
});

// -- 1.3: PAGED search and reindex steps (no server: the pure parts) ---------------------------

const KEYS = sessionKeys("chat:", "s");

test("searchCall: MINSCORE and PAGED (1.3) come after the 1.1 options; absent, nothing is sent", () => {
  assert.deepStrictEqual(searchCall(KEYS, "a b", { mode: "any", before: "5-0", minScore: 2, paged: true }).args,
    ["a b", "LIMIT", "10", "MODE", "ANY", "BEFORE", "5-0", "MINSCORE", "2", "PAGED"]);
  assert.deepStrictEqual(searchCall(KEYS, "a", { paged: false, minScore: null }).args, ["a", "LIMIT", "10"]);
  assert.strictEqual(searchCall(KEYS, "a", { paged: true }).readOnly, true);
});

test("reindexCall: no argument (1.1), RESTART or CONTINUE (1.3); anything else is refused", () => {
  assert.deepStrictEqual(reindexCall(KEYS).args, []);
  assert.deepStrictEqual(reindexCall(KEYS, "RESTART").args, ["RESTART"]);
  assert.deepStrictEqual(reindexCall(KEYS, "continue").args, ["CONTINUE"]);
  assert.strictEqual(reindexCall(KEYS, "CONTINUE").readOnly, false);
  assert.throws(() => reindexCall(KEYS, "AGAIN"), { code: "BADARG" });
});

test("decodeReindex: [indexed, messages, complete]", () => {
  assert.deepStrictEqual(decodeReindex([512, 1200, 0]), { indexed: 512, total: 1200, complete: false });
  assert.deepStrictEqual(decodeReindex([0, 3, 1]), { indexed: 0, total: 3, complete: true });
  assert.throws(() => decodeReindex(3), { code: "PROTOCOL" });
});

const json = (text) => JSON.stringify({ type: "human", data: { content: text } });

test("decodePaged: next, then id, json, score triples; the score is a number", () => {
  assert.deepStrictEqual(decodePaged([""]), { next: "", hits: [] });
  assert.deepStrictEqual(decodePaged(["7-0", "9-0", json("x"), 2]), {
    next: "7-0",
    hits: [{ id: "9-0", message: { type: "human", data: { content: "x" } }, score: 2 }],
  });
  assert.throws(() => decodePaged(["", "9-0", json("x")]), { code: "PROTOCOL" });
  assert.throws(() => decodePaged([]), { code: "PROTOCOL" });
});

test("compareIds: by millisecond, then sequence, as integers; a plain ms is ms-0", () => {
  assert.ok(compareIds("9-0", "10-0") < 0);
  assert.ok(compareIds("10-2", "10-10") < 0);
  assert.strictEqual(compareIds("10-0", "10"), 0);
  assert.ok(compareIds("99999999999999999-1", "99999999999999999-0") > 0);
});

const triple = (id, score) => [id, json(id), score];

test("PagedSearch ALL: LIMIT = hits still missing, BEFORE = last next, older hits go in front", () => {
  const search = new PagedSearch(KEYS, "q", { limit: 3, type: "human", before: "100-0" });
  assert.deepStrictEqual(search.nextCall().args, ["q", "LIMIT", "3", "TYPE", "human", "BEFORE", "100-0", "PAGED"]);
  assert.strictEqual(search.add(["60-0", ...triple("80-0", 1)]), false);
  assert.deepStrictEqual(search.nextCall().args, ["q", "LIMIT", "2", "TYPE", "human", "BEFORE", "60-0", "PAGED"]);
  assert.strictEqual(search.add(["30-0"]), false);  // a call may find nothing and still move on
  assert.deepStrictEqual(search.nextCall().args, ["q", "LIMIT", "2", "TYPE", "human", "BEFORE", "30-0", "PAGED"]);
  assert.strictEqual(search.add(["", ...triple("10-0", 1), ...triple("20-0", 1)]), true);
  assert.strictEqual(search.nextCall(), null);
  assert.deepStrictEqual(search.hits.map((hit) => hit.id), ["10-0", "20-0", "80-0"]);
  assert.strictEqual(search.calls, 3);
});

test("PagedSearch ALL: done once it holds LIMIT hits, and at once for LIMIT 0", () => {
  const search = new PagedSearch(KEYS, "q", { limit: 1 });
  assert.strictEqual(search.add(["", ...triple("5-0", 1)]), true);
  assert.deepStrictEqual(search.hits.map((hit) => hit.id), ["5-0"]);
  const none = new PagedSearch(KEYS, "q", { limit: 0 });
  assert.deepStrictEqual(none.nextCall().args, ["q", "LIMIT", "0", "PAGED"]);
  assert.strictEqual(none.add([""]), true);
  assert.deepStrictEqual(none.hits, []);
});

test("PagedSearch ANY: keeps the LIMIT best (score, then newer), MINSCORE = LIMIT-th score + 1", () => {
  const search = new PagedSearch(KEYS, "a b c", { limit: 2, mode: "any" });
  assert.deepStrictEqual(search.nextCall().args, ["a b c", "LIMIT", "2", "MODE", "ANY", "PAGED"]);
  search.add(["50-0", ...triple("90-0", 1)]);
  // fewer than LIMIT hits held: MINSCORE stays 1 (not sent)
  assert.deepStrictEqual(search.nextCall().args, ["a b c", "LIMIT", "2", "MODE", "ANY", "BEFORE", "50-0", "PAGED"]);
  search.add(["40-0", ...triple("45-0", 2), ...triple("48-0", 1)]);
  assert.deepStrictEqual(search.hits.map((hit) => [hit.id, hit.score]), [["45-0", 2], ["90-0", 1]]);
  assert.deepStrictEqual(search.nextCall().args,
    ["a b c", "LIMIT", "2", "MODE", "ANY", "BEFORE", "40-0", "MINSCORE", "2", "PAGED"]);
  // a hit that comes twice counts once
  search.add(["20-0", ...triple("45-0", 2), ...triple("30-0", 3)]);
  assert.deepStrictEqual(search.hits.map((hit) => [hit.id, hit.score]), [["30-0", 3], ["45-0", 2]]);
  assert.strictEqual(search.nextCall().args.at(-2), "3");
  search.add(["", ...triple("10-0", 3)]);
  assert.strictEqual(search.nextCall(), null);
  assert.deepStrictEqual(search.hits.map((hit) => [hit.id, hit.score]), [["30-0", 3], ["10-0", 3]]);
});

test("PagedSearch ANY: the caller's minScore is a floor for every call", () => {
  const search = new PagedSearch(KEYS, "a b c", { limit: 1, mode: "ANY", minScore: 2 });
  assert.deepStrictEqual(search.nextCall().args.slice(-3), ["MINSCORE", "2", "PAGED"]);
  search.add(["50-0", ...triple("60-0", 2)]);
  assert.deepStrictEqual(search.nextCall().args.slice(-5), ["BEFORE", "50-0", "MINSCORE", "3", "PAGED"]);
});

test("PagedSearch refuses a cursor that does not move to older ids (never loops forever)", () => {
  const search = new PagedSearch(KEYS, "q", { limit: 5 });
  search.add(["50-0"]);
  assert.throws(() => search.add(["50-0"]), { code: "PROTOCOL" });
  const later = new PagedSearch(KEYS, "q", { limit: 5, before: "40" });
  assert.throws(() => later.add(["40-0"]), { code: "PROTOCOL" });
});

// -- 1.3: TOKEN, IFLAST and TOOLSAFE on writes, TOOLSAFE on reads, CONFLICT --------------------

const message = { type: "human", data: { content: "hi" } };

test("appendCall: TOKEN, IFLAST, TOOLSAFE (1.3) after the 1.1 options, before MESSAGES", () => {
  const call = appendCall(KEYS, [message], {
    ttl: 60, maxlen: 4, maxbytes: 1000, noindex: true, token: "w-1", ifLast: "5-0", toolSafe: true,
  });
  assert.deepStrictEqual(call.args, [
    "TTL", "60", "MAXLEN", "4", "MAXBYTES", "1000", "NOINDEX",
    "TOKEN", "w-1", "IFLAST", "5-0", "TOOLSAFE", "MESSAGES", JSON.stringify(message),
  ]);
  assert.deepStrictEqual(appendCall(KEYS, [message], { ifLast: "0-0" }).args.slice(0, 2), ["IFLAST", "0-0"]);
  assert.strictEqual(call.readOnly, false);
});

test("appendCall: absent, null or false 1.3 options send nothing", () => {
  const plain = ["MESSAGES", JSON.stringify(message)];
  assert.deepStrictEqual(appendCall(KEYS, [message]).args, plain);
  assert.deepStrictEqual(appendCall(KEYS, [message], { token: null, ifLast: null, toolSafe: false }).args, plain);
});

test("newToken: 32 lowercase hex characters, a new one each time (a valid TOKEN)", () => {
  const tokens = new Set(Array.from({ length: 100 }, () => newToken()));
  assert.strictEqual(tokens.size, 100);
  for (const token of tokens) assert.match(token, /^[0-9a-f]{32}$/);
});

test("rangeCall: TOOLSAFE (1.3) last; refused with AFTER before anything is sent", () => {
  assert.deepStrictEqual(rangeCall(KEYS, { count: 3, toolSafe: true }).args, ["COUNT", "3", "TOOLSAFE"]);
  assert.deepStrictEqual(rangeCall(KEYS, { count: 2, before: "5-0", toolSafe: true }).args,
    ["COUNT", "2", "BEFORE", "5-0", "TOOLSAFE"]);
  assert.deepStrictEqual(rangeCall(KEYS, { toolSafe: true }).args, ["TOOLSAFE"]);
  assert.deepStrictEqual(rangeCall(KEYS, { after: "0", toolSafe: false }).args, ["AFTER", "0"]);
  assert.throws(() => rangeCall(KEYS, { after: "0", toolSafe: true }), (error) => {
    assert.ok(error instanceof ChatHistoryError);
    assert.strictEqual(error.code, "BADARG");
    assert.strictEqual(error.message, "TOOLSAFE applies to windows read backward (not with AFTER)");
    return true;
  });
});

test("errorOf: CONFLICT (1.3) is a ConflictError with both ids; other codes a ChatHistoryError", () => {
  const conflict = errorOf(parseError("ERR CHATHIST_CONFLICT the session's last message is 5-0, not 4-0"));
  assert.ok(conflict instanceof ConflictError);
  assert.ok(conflict instanceof ChatHistoryError);
  assert.strictEqual(conflict.name, "ConflictError");
  assert.strictEqual(conflict.code, "CONFLICT");
  assert.strictEqual(conflict.message, "the session's last message is 5-0, not 4-0");
  assert.strictEqual(conflict.lastId, "5-0");
  assert.strictEqual(conflict.expectedId, "4-0");
  const odd = new ConflictError("another text");
  assert.deepStrictEqual([odd.lastId, odd.expectedId], [null, null]);
  const other = errorOf({ code: "BADARG", message: "x" });
  assert.ok(other instanceof ChatHistoryError && !(other instanceof ConflictError));
  assert.strictEqual(other.code, "BADARG");
});
