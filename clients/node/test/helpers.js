// Shared by the tests: where the vectors are and which server to use.

import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createClient } from "redis";

export const VECTORS = fileURLToPath(new URL("../../../tests/vectors/", import.meta.url));

export function loadVector(name) {
  return JSON.parse(readFileSync(VECTORS + name, "utf8"));
}

export function serverVectorFiles() {
  return readdirSync(VECTORS).filter((name) => /^chathist-.*\.json$/.test(name)).sort();
}

/** The server to test against: REDIS_URL is required (the Python suite starts one and sets it). */
export function redisUrl() {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error("set REDIS_URL to a Redis 7+ server the tests may flush");
  return url;
}

export async function connect(resp = 2) {
  const client = createClient({ url: redisUrl(), RESP: resp });
  client.on("error", () => {});
  await client.connect();
  return client;
}
