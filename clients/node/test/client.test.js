// ChatHistoryClient against a real server: load-on-first-use, errors by code, decoded replies.

import assert from "node:assert/strict";
import { after, before, beforeEach, test } from "node:test";
import { ChatHistoryClient, ChatHistoryError, LIBRARY_VERSION, librarySource } from "../src/index.js";
import { connect } from "./helpers.js";

let redis;
before(async () => {
  redis = await connect(3);
});
after(async () => redis?.destroy());
beforeEach(async () => {
  await redis.sendCommand(["FLUSHALL"]);
  await redis.sendCommand(["FUNCTION", "FLUSH"]);
});

const human = (content, id) => ({ type: "human", data: id ? { content, id } : { content } });

function relabelled(version) {
  return librarySource().replace(/^local LIBRARY_VERSION = '[^']+'$/m, `local LIBRARY_VERSION = '${version}'`);
}

test("loads the library on first use and appends, reads, searches, counts and clears", async () => {
  const chats = new ChatHistoryClient(redis, { prefix: "chat:" });
  const ids = await chats.append("user 1", [human("Hello there", "m1"), human("General Kenobi")], { ttl: 60 });
  assert.strictEqual(ids.length, 2);
  assert.strictEqual(await chats.version(), LIBRARY_VERSION);
  assert.deepStrictEqual(await chats.append("user 1", [human("Hello there", "m1")]), [ids[0]]);

  const records = await chats.range("user 1");
  assert.deepStrictEqual(records.map((r) => r.id), ids);
  assert.deepStrictEqual(records[1].message, human("General Kenobi"));
  assert.strictEqual(records[0].time.getTime(), Number(ids[0].split("-")[0]));
  assert.deepStrictEqual((await chats.range("user 1", { count: 1 })).map((r) => r.id), [ids[1]]);
  assert.deepStrictEqual((await chats.range("user 1", { before: ids[1] })).map((r) => r.id), [ids[0]]);
  assert.deepStrictEqual((await chats.search("user 1", "KENOBI")).map((r) => r.id), [ids[1]]);
  assert.strictEqual(await chats.len("user 1"), 2);
  const pttl = Number(await redis.sendCommand(["PTTL", "chat:{user 1}:m"]));
  assert.ok(pttl > 55000 && pttl <= 60000);
  assert.strictEqual(await chats.clear("user 1"), 2);
  assert.strictEqual(await chats.len("user 1"), 0);
});

test("reloads the library once when it vanished (FUNCTION FLUSH)", async () => {
  const chats = new ChatHistoryClient(redis);
  await chats.append("s", [human("a")]);
  await redis.sendCommand(["FUNCTION", "FLUSH"]);
  assert.strictEqual(await chats.len("s"), 1);
});

test("upgrades an older library, uses a newer minor, refuses a newer major", async () => {
  await redis.sendCommand(["FUNCTION", "LOAD", relabelled("0.9.0")]);
  await new ChatHistoryClient(redis).len("s");
  assert.strictEqual(String(await redis.sendCommand(["FCALL_RO", "chathist_version", "0"])), LIBRARY_VERSION);

  const [major, minor] = LIBRARY_VERSION.split(".").map(Number);
  await redis.sendCommand(["FUNCTION", "LOAD", "REPLACE", relabelled(`${major}.${minor + 1}.0`)]);
  assert.strictEqual(await new ChatHistoryClient(redis).version(), `${major}.${minor + 1}.0`);

  await redis.sendCommand(["FUNCTION", "LOAD", "REPLACE", relabelled(`${major + 1}.0.0`)]);
  await assert.rejects(new ChatHistoryClient(redis).len("s"), (error) => {
    assert.ok(error instanceof ChatHistoryError);
    assert.strictEqual(error.code, "INCOMPATIBLE");
    return true;
  });
  assert.strictEqual(String(await redis.sendCommand(["FCALL_RO", "chathist_version", "0"])), `${major + 1}.0.0`);
});

test("library errors arrive as ChatHistoryError with the library's code; nothing is written", async () => {
  const chats = new ChatHistoryClient(redis);
  await assert.rejects(chats.append("s", [human("ok"), { type: "human" }]), (error) => {
    assert.ok(error instanceof ChatHistoryError);
    assert.strictEqual(error.code, "BADMSG");
    assert.strictEqual(error.message, 'message 2 has no "data" object');
    return true;
  });
  await assert.rejects(chats.search("s", "x", { limit: 5000 }), { code: "BADARG" });
  assert.throws(() => chats.keys(""), { code: "BADKEYS" });
  assert.strictEqual(await chats.len("s"), 0);
});

test("1.1 calls: import, search options, delete, ttl, expire, reindex", async () => {
  const chats = new ChatHistoryClient(redis);
  const ai = (content) => ({ type: "ai", data: { content } });
  const ids = await chats.import("s", [
    { id: "1000-0", message: human("pizza please", "h1") },
    { id: "2000-0", message: ai("pizza or pasta?") },
    { id: "3000-0", message: human("pasta") },
  ]);
  assert.deepStrictEqual(ids, ["1000-0", "2000-0", "3000-0"]);
  const found = (records) => records.map((r) => r.id);
  assert.deepStrictEqual(found(await chats.search("s", "pizza pasta", { mode: "any" })), ["2000-0", "3000-0", "1000-0"]);
  assert.deepStrictEqual(found(await chats.search("s", "pizza", { type: "ai" })), ["2000-0"]);
  assert.deepStrictEqual(found(await chats.search("s", "pizza", { before: "2000-0" })), ["1000-0"]);
  assert.strictEqual(await chats.delete("s", { messageIds: ["h1"] }), 1);
  assert.strictEqual(await chats.delete("s", { ids: ["3000-0", "9000-0"] }), 1);
  assert.strictEqual(await chats.ttl("s"), -1);
  assert.strictEqual(await chats.expire("s", 100), 1);
  const ttl = await chats.ttl("s");
  assert.ok(ttl > 95000 && ttl <= 100000, String(ttl));
  assert.strictEqual(await chats.expire("s", "PERSIST"), 1);
  assert.strictEqual(await chats.ttl("s"), -1);
  assert.strictEqual(await chats.reindex("s"), 1);
  await chats.append("s", [human("a"), human("b"), human("c")], { maxlen: 2, noindex: true });
  assert.strictEqual(await chats.len("s"), 2);
  assert.strictEqual(await chats.ttl("nobody"), -2);
  await assert.rejects(chats.import("s", [{ id: "1-0", message: human("old") }]), { code: "BADARG" });
  await assert.rejects(chats.delete("s", {}), { code: "BADARG" });
});
