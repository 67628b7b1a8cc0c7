// ChatHistoryClient against a real server: load-on-first-use, errors by code, decoded replies.

import assert from "node:assert/strict";
import { after, before, beforeEach, test } from "node:test";
import {
  ChatHistoryClient,
  ChatHistoryError,
  ConflictError,
  LIBRARY_VERSION,
  librarySource,
  newToken,
  searchCall,
} from "../src/index.js";
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

// -- 1.3: searches longer than one call's budget, and reindex in steps ------------------------

const SIZE = 2000;
const SPECIAL = new Set([3, 700, 1500, 1501]);
const texts = Array.from({ length: SIZE }, (_, i) =>
  SPECIAL.has(i) ? `common alpha special ${i}` : i % 2 ? `alpha common ${i}` : `beta common ${i}`);

/** Brute force over the texts (ASCII words): what one unbounded search answers. */
function reference(ids, query, { limit = 10, mode = "all", minScore = 1 } = {}) {
  const terms = [...new Set(query.toLowerCase().match(/[a-z0-9]+/g))];
  const phrase = query.includes('"');
  const scored = texts.slice(0, ids.length).map((text, i) => {
    const words = text.toLowerCase().match(/[a-z0-9]+/g);
    const score = terms.filter((term) => words.includes(term)).length;
    const all = phrase ? ` ${words.join(" ")} `.includes(` ${terms.join(" ")} `) : score === terms.length;
    return { id: ids[i], score, all };
  });
  if (mode === "any") {
    return scored.filter((hit) => hit.score >= Math.max(1, minScore)).reverse()
      .sort((a, b) => b.score - a.score).slice(0, limit).map((hit) => [hit.id, hit.score]);
  }
  return scored.filter((hit) => hit.all).slice(-limit).map((hit) => [hit.id, hit.score]);
}

/** A ChatHistoryClient over the real connection that counts the commands it sends. */
function counting() {
  const counter = { calls: 0 };
  const wrapped = { sendCommand: (args) => { counter.calls += 1; return redis.sendCommand(args); } };
  return [new ChatHistoryClient(wrapped), counter];
}

for (const noindex of [false, true]) {
  test(`search follows the PAGED cursor to the answer of one unbounded search (${noindex ? "scan" : "index"})`, async () => {
    const [chats, counter] = counting();
    const ids = [];
    for (let first = 0; first < SIZE; first += 500) {
      const batch = texts.slice(first, first + 500).map((text) => ({ type: "human", data: { content: text } }));
      ids.push(...await chats.append("long", batch, { noindex }));
    }
    assert.strictEqual(await redis.sendCommand(["HGET", "chat:{long}:x", "\0v"]), noindex ? "N" : "2");
    const cases = [
      // every message scores 1: proving none scores 2 means judging them all
      ["alpha beta", { mode: "any" }, 4],
      // 4 score 2, then the newest alpha ones; MINSCORE rises once 6 are held
      ["alpha special", { mode: "any", limit: 6 }, 1],
      ["alpha special", { mode: "any", limit: 6, minScore: 2 }, 1],
      ["alpha beta", {}, 4],                         // never in one message: no hit
      ['"common alpha"', { limit: 3 }, 4],           // a phrase of common words, rare in order
      ['"common alpha"', { limit: 10, before: ids[1501] }, 4],
      ["common", { limit: 4 }, 1],                   // answered by the first call
    ];
    for (const [query, options, calls] of cases) {
      counter.calls = 0;
      const hits = await chats.search("long", query, options);
      const want = reference(options.before ? ids.slice(0, ids.indexOf(options.before)) : ids, query, options);
      assert.deepStrictEqual(hits.map((hit) => [hit.id, hit.score]), want, `${query} ${JSON.stringify(options)}`);
      assert.ok(counter.calls >= calls, `${query}: ${counter.calls} calls, expected at least ${calls}`);
      assert.deepStrictEqual(hits[0]?.message, hits[0] && { type: "human", data: { content: texts[ids.indexOf(hits[0].id)] } });
    }
    // the same search without PAGED is refused with the BUDGET code, like every library error
    const keys = chats.keys("long");
    await assert.rejects(chats.run(searchCall(keys, "alpha beta", { mode: "any" })), (error) => {
      assert.ok(error instanceof ChatHistoryError);
      assert.strictEqual(error.code, "BUDGET");
      assert.match(error.message, /^this search needs more than one call: pass PAGED/);
      return true;
    });
  });
}

test("reindex drives RESTART then CONTINUE to the end, reporting progress", async () => {
  const chats = new ChatHistoryClient(redis);
  const batch = Array.from({ length: 1200 }, (_, i) => human(`word${i % 7} filler ${i}`));
  await chats.append("big", batch, { noindex: true });
  assert.strictEqual(await redis.sendCommand(["HGET", "chat:{big}:x", "\0v"]), "N");
  const seen = [];
  assert.strictEqual(await chats.reindex("big", { onProgress: (step) => seen.push(step) }), 1200);
  assert.deepStrictEqual(seen, [{ indexed: 512, total: 1200 }, { indexed: 1024, total: 1200 }, { indexed: 1200, total: 1200 }]);
  assert.strictEqual(await redis.sendCommand(["HGET", "chat:{big}:x", "\0v"]), "2");
  const hits = await chats.search("big", "word3 filler", { limit: 1000 });
  assert.strictEqual(hits.length, batch.filter((_, i) => i % 7 === 3).length);

  const small = [];
  await chats.append("small", [human("a"), human("b")]);
  assert.strictEqual(await chats.reindex("small", { onProgress: async (step) => small.push(step) }), 2);
  assert.deepStrictEqual(small, [{ indexed: 2, total: 2 }]);
  assert.strictEqual(await chats.reindex("nobody"), 0);
  assert.strictEqual(await redis.sendCommand(["EXISTS", "chat:{nobody}:m", "chat:{nobody}:x"]), 0);
});

// -- 1.3: exactly-once appends (TOKEN), conditional appends (IFLAST), tool-safe windows --------

/**
 * A ChatHistoryClient over the real connection that records every command it sends; `lose(n)`
 * makes the next n appends reach the server and then fail as if the reply was lost.
 */
function recording() {
  const log = { commands: [], lost: 0 };
  const wrapped = {
    async sendCommand(args) {
      log.commands.push(args);
      const reply = await redis.sendCommand(args);
      if (args[1] === "chathist_append" && log.lost > 0) {
        log.lost -= 1;
        throw new Error("Socket closed unexpectedly");
      }
      return reply;
    },
  };
  return [new ChatHistoryClient(wrapped), log];
}

const appendsOf = (log) => log.commands.filter((args) => args[1] === "chathist_append");
const tokenOf = (args) => args[args.indexOf("TOKEN") + 1];

test("append sends a fresh token per call; a retry with the caller's token is stored once", async () => {
  const [chats, log] = recording();
  const batch = [human("no client id"), human("nor this one")];
  const first = await chats.append("s", batch);
  const second = await chats.append("s", batch);
  const [a, b] = appendsOf(log);
  assert.match(tokenOf(a), /^[0-9a-f]{32}$/);
  assert.notStrictEqual(tokenOf(a), tokenOf(b));
  assert.notDeepStrictEqual(first, second);
  assert.strictEqual(await chats.len("s"), 4, "two calls without client ids store twice");

  // The reply of the first attempt is lost; the caller retries with the same token.
  const token = newToken();
  log.lost = 1;
  await assert.rejects(chats.append("s", batch, { token }), /Socket closed/);
  assert.strictEqual(await chats.len("s"), 6, "the lost attempt was stored");
  const stored = (await chats.range("s", { count: 2 })).map((record) => record.id);
  assert.deepStrictEqual(await chats.append("s", batch, { token }), stored);
  assert.deepStrictEqual(await chats.append("s", batch, { token }), stored);
  assert.strictEqual(await chats.len("s"), 6, "retries with the token stored nothing");
  assert.deepStrictEqual(appendsOf(log).slice(2).map(tokenOf), [token, token, token]);
});

test("the reload after a vanished library resends the append with the same token", async () => {
  const [chats, log] = recording();
  await chats.append("s", [human("a")]);
  await redis.sendCommand(["FUNCTION", "FLUSH"]);
  log.commands.length = 0;
  const ids = await chats.append("s", [human("b")]);
  const attempts = appendsOf(log);
  assert.strictEqual(attempts.length, 2, "sent, refused (Function not found), loaded, sent again");
  assert.strictEqual(tokenOf(attempts[0]), tokenOf(attempts[1]));
  assert.deepStrictEqual(attempts[0], attempts[1]);
  assert.deepStrictEqual((await chats.range("s")).map((record) => record.message), [human("a"), human("b")]);
  assert.deepStrictEqual((await chats.range("s", { count: 1 })).map((record) => record.id), ids);
});

test("ifLast: written only after the given newest id; else ConflictError and nothing written", async () => {
  const chats = new ChatHistoryClient(redis);
  const [first] = await chats.append("s", [human("a")], { ifLast: "0-0" });
  await assert.rejects(chats.append("s", [human("b")], { ifLast: "0-0" }), (error) => {
    assert.ok(error instanceof ConflictError);
    assert.ok(error instanceof ChatHistoryError);
    assert.strictEqual(error.code, "CONFLICT");
    assert.strictEqual(error.message, `the session's last message is ${first}, not 0-0`);
    assert.deepStrictEqual([error.lastId, error.expectedId], [first, "0-0"]);
    return true;
  });
  await assert.rejects(chats.append("empty", [human("x")], { ifLast: first }), { name: "ConflictError", lastId: "0-0" });
  assert.strictEqual(await chats.len("s"), 1);
  assert.strictEqual(await chats.len("empty"), 0);
  assert.strictEqual(await redis.sendCommand(["EXISTS", "chat:{empty}:m", "chat:{empty}:x", "chat:{empty}:i"]), 0);

  // Two writers read the same newest id; the second one conflicts, the first one's retry replays.
  const token = newToken();
  const second = await chats.append("s", [human("b")], { ifLast: first, token });
  await assert.rejects(chats.append("s", [human("c")], { ifLast: first }), ConflictError);
  assert.deepStrictEqual(await chats.append("s", [human("b")], { ifLast: first, token }), second);
  assert.deepStrictEqual((await chats.range("s")).map((record) => record.message), [human("a"), human("b")]);
  await assert.rejects(chats.append("s", [human("d")], { ifLast: "5" }), (error) =>
    !(error instanceof ConflictError) && error.code === "BADARG");
});

const TOOL_CALLS = [{ id: "c1", name: "f", args: {} }, { id: "c2", name: "f", args: {} }];
const CONVERSATION = [
  human("q"),
  { type: "ai", data: { content: "", tool_calls: TOOL_CALLS } },
  { type: "tool", data: { content: "r1", tool_call_id: "c1" } },
  { type: "tool", data: { content: "r2", tool_call_id: "c2" } },
  { type: "ai", data: { content: "done", tool_calls: [] } },
];

test("range toolSafe: no window starts with a tool result whose AI message it left out", async () => {
  const [chats, log] = recording();
  const ids = await chats.append("s", CONVERSATION);
  const types = (records) => records.map((record) => record.message.type);
  for (let count = 1; count <= CONVERSATION.length; count++) {
    const plain = await chats.range("s", { count });
    const safe = await chats.range("s", { count, toolSafe: true });
    assert.notStrictEqual(types(safe)[0], "tool", `COUNT ${count}`);
    assert.deepStrictEqual(safe.at(-1).id, ids.at(-1), `COUNT ${count} keeps the newest message`);
    if (types(plain)[0] !== "tool") assert.deepStrictEqual(safe, plain, `COUNT ${count}`);
  }
  assert.deepStrictEqual(types(await chats.range("s", { count: 3, toolSafe: true })), ["ai"]);
  // a window of tool results only reaches back to their AI message
  assert.deepStrictEqual((await chats.range("s", { count: 1, before: ids[4], toolSafe: true })).map((r) => r.id),
    ids.slice(1, 4));
  const sent = log.commands.length;
  await assert.rejects(chats.range("s", { after: ids[0], toolSafe: true }),
    { code: "BADARG", message: "TOOLSAFE applies to windows read backward (not with AFTER)" });
  assert.strictEqual(log.commands.length, sent, "nothing was sent");
});

test("append toolSafe: a trim takes the tool results of the AI message it removed", async () => {
  const chats = new ChatHistoryClient(redis);
  await chats.append("plain", CONVERSATION);
  await chats.append("plain", [human("next")], { maxlen: 3 });
  assert.deepStrictEqual((await chats.range("plain")).map((r) => r.message.type), ["tool", "ai", "human"]);

  await chats.append("safe", CONVERSATION);
  await chats.append("safe", [human("next")], { maxlen: 3, toolSafe: true });
  assert.deepStrictEqual((await chats.range("safe")).map((r) => r.message.type), ["ai", "human"]);
});
