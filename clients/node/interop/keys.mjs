// Reads [[prefix, sessionId], ...] as JSON on stdin; prints, for each, the three keys the Node
// client builds, or {"error": code} when it refuses the pair.

import { sessionKeys } from "../src/protocol.js";

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin) input += chunk;
const out = JSON.parse(input).map(([prefix, sessionId]) => {
  try {
    return sessionKeys(prefix, sessionId);
  } catch (error) {
    return { error: error.code };
  }
});
process.stdout.write(JSON.stringify(out));
