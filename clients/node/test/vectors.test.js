// The shared test vectors (tests/vectors/chathist-*.json) against a real server, in RESP2 and
// RESP3, with keys built by this client's sessionKeys. Format: tests/vectors/README.md.

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { librarySource } from "../src/client.js";
import { LIBRARY_VERSION, sessionKeys, versionTuple } from "../src/protocol.js";
import { connect, loadVector, serverVectorFiles } from "./helpers.js";

const STREAM_ID = /^\d+-\d+$/;

class Run {
  constructor(prefix) {
    this.prefix = prefix;
    this.ids = new Map();
  }

  args(form) {
    if (form !== null && typeof form === "object" && "$many" in form) {
      return Array(form.times).fill(this.value(form.$many));
    }
    return [this.value(form)];
  }

  value(form) {
    if (typeof form === "string") return form;
    if ("$id" in form) return this.bound(form.$id);
    if ("$ms" in form) return String(Number(this.bound(form.$ms).split("-")[0]) + (form.add ?? 0));
    if ("$repeat" in form) return form.$repeat.repeat(form.times);
    if ("$concat" in form) return form.$concat.map((part) => this.value(part)).join("");
    throw new Error(`unknown argument form ${JSON.stringify(form)}`);
  }

  bound(name) {
    assert.ok(this.ids.has(name), `id ${name} was not captured`);
    return this.ids.get(name);
  }

  match(expected, actual, where) {
    if (expected === null || typeof expected !== "object") {
      assert.strictEqual(actual, expected, where);
    } else if (Array.isArray(expected)) {
      assert.ok(Array.isArray(actual), `${where}: not an array: ${JSON.stringify(actual)}`);
      assert.strictEqual(actual.length, expected.length, `${where}: length`);
      expected.forEach((want, i) => this.match(want, actual[i], `${where}[${i}]`));
    } else if ("$id" in expected) {
      assert.match(actual, STREAM_ID, where);
      if (expected.$id !== null) {
        if (!this.ids.has(expected.$id)) this.ids.set(expected.$id, actual);
        assert.strictEqual(actual, this.ids.get(expected.$id), `${where}: id ${expected.$id}`);
      }
    } else if ("$between" in expected) {
      const [low, high] = expected.$between;
      assert.ok(typeof actual === "number" && low <= actual && actual <= high, `${where}: ${actual}`);
    } else if ("$match" in expected) {
      assert.match(actual, new RegExp(`^(?:${expected.$match})$`, "s"), where);
    } else if ("$each" in expected) {
      assert.ok(Array.isArray(actual) && actual.length === expected.length, `${where}: length`);
      actual.forEach((item, i) => this.match(expected.$each, item, `${where}[${i}]`));
    } else {
      throw new Error(`unknown reply form ${JSON.stringify(expected)}`);
    }
  }

  command(step) {
    if ("command" in step) return step.command.flatMap((form) => this.args(form));
    const fn = step.fcall ?? step.fcall_ro;
    const keys = "session" in step ? sessionKeys(this.prefix, step.session) : (step.keys ?? []);
    const args = (step.args ?? []).flatMap((form) => this.args(form));
    return ["fcall" in step ? "FCALL" : "FCALL_RO", fn, String(keys.length), ...keys, ...args];
  }

  async step(client, step, where) {
    if (step.assert === "increasing") {
      const ids = step.ids.map((name) => this.bound(name).split("-").map(BigInt));
      for (let i = 1; i < ids.length; i++) {
        const [a, b] = [ids[i - 1], ids[i]];
        assert.ok(a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]), `${where}: ids not increasing`);
      }
      return;
    }
    let reply;
    try {
      reply = await client.sendCommand(this.command(step));
    } catch (error) {
      assert.ok("error" in step, `${where}: unexpected error ${error.message}`);
      this.match(step.error, error.message, where);
      return;
    }
    assert.ok(!("error" in step), `${where}: expected an error, got ${JSON.stringify(reply)}`);
    this.match(step.reply, reply, where);
  }
}

for (const resp of [2, 3]) {
  describe(`vectors over RESP${resp}`, () => {
    let client;
    before(async () => {
      client = await connect(resp);
      await client.sendCommand(["FUNCTION", "LOAD", "REPLACE", librarySource()]);
    });
    after(async () => client?.destroy());

    for (const file of serverVectorFiles()) {
      const document = loadVector(file);
      for (const vector of document.cases) {
        test(`${file}: ${vector.name}`, async () => {
          const [ours, written] = [versionTuple(LIBRARY_VERSION), versionTuple(document.library)];
          assert.ok(ours[0] === written[0] && (ours[1] > written[1] || (ours[1] === written[1] && ours[2] >= written[2])),
            `vectors of ${file} need library ${document.library}`);
          await client.sendCommand(["FUNCTION", "LOAD", "REPLACE", librarySource()]);
          await client.sendCommand(["FLUSHALL"]);
          const run = new Run(document.prefix);
          for (const [i, step] of vector.steps.entries()) {
            await run.step(client, step, `${vector.name}, step ${i + 1}`);
          }
        });
      }
    }
  });
}
