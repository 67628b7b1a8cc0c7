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
