// Key layout and call encoding against tests/vectors/encoding.json (no server needed).

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import {
  ChatHistoryError,
  LIBRARY_VERSION,
  appendCall,
  checkCompatible,
  clearCall,
  deleteCall,
  expireCall,
  importCall,
  lenCall,
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
