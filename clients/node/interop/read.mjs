// Reads a session with the Node client and turns it into LangChain.js messages.
// Usage: node interop/read.mjs <redis-url> <prefix> <session-id> [search-query]
// Prints {"len": n, "messages": [...], "search": [...]}: each message as LangChain.js sees it.

import { createClient } from "redis";
import { ChatHistoryClient } from "../src/index.js";
import { fromStored } from "../src/langchain.js";

const [url, prefix, sessionId, query] = process.argv.slice(2);

/** The fields of a LangChain.js message, as plain JSON. */
function describe(message, id, time) {
  return {
    stream_id: id,
    time: time.toISOString(),
    type: message.getType(),
    class: message.constructor.name,
    content: message.content,
    id: message.id ?? null,
    name: message.name ?? null,
    additional_kwargs: message.additional_kwargs,
    response_metadata: message.response_metadata,
    tool_calls: message.tool_calls ?? null,
    invalid_tool_calls: message.invalid_tool_calls ?? null,
    usage_metadata: message.usage_metadata ?? null,
    tool_call_id: message.tool_call_id ?? null,
    status: message.status ?? null,
    artifact: message.artifact ?? null,
    role: message.role ?? null,
  };
}

function describeAll(records) {
  const messages = fromStored(records.map((record) => record.message));
  return messages.map((message, i) => describe(message, records[i].id, records[i].time));
}

const redis = createClient({ url });
await redis.connect();
try {
  const client = new ChatHistoryClient(redis, { prefix });
  const out = {
    len: await client.len(sessionId),
    messages: describeAll(await client.range(sessionId)),
  };
  if (query) out.search = describeAll(await client.search(sessionId, query));
  process.stdout.write(JSON.stringify(out));
} finally {
  await redis.quit();
}
