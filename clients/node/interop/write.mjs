// Writes a conversation of every LangChain.js message kind with the Node client.
// Usage: node interop/write.mjs <redis-url> <prefix> <session-id> [ttl-seconds]
// Prints {"ids": [...], "stored": [...]} (the stream ids and the stored messages sent).

import { createClient } from "redis";
import {
  AIMessage,
  ChatMessage,
  HumanMessage,
  SystemMessage,
  ToolMessage,
} from "@langchain/core/messages";
import { ChatHistoryClient } from "../src/index.js";
import { toStored } from "../src/langchain.js";

const [url, prefix, sessionId, ttl] = process.argv.slice(2);

export const MESSAGES = [
  new SystemMessage({ content: "You are terse.", id: "sys-1" }),
  new HumanMessage({
    content: "What's the weather in Paris? ünïcödé 😀",
    id: "h-1",
    name: "alice",
    additional_kwargs: { locale: "fr", nested: { list: [1, 2.5, null, true] } },
    response_metadata: { source: "web" },
  }),
  new AIMessage({
    content: "",
    id: "run-42",
    name: "assistant",
    tool_calls: [{ name: "get_weather", args: { city: "Paris" }, id: "call_1", type: "tool_call" }],
    invalid_tool_calls: [
      { name: "broken", args: '{"city": ', id: "call_2", error: "bad JSON", type: "invalid_tool_call" },
    ],
    usage_metadata: { input_tokens: 12, output_tokens: 3, total_tokens: 15 },
    response_metadata: { model_name: "fake", finish_reason: "tool_calls" },
    additional_kwargs: { refusal: null },
  }),
  new ToolMessage({
    content: "18 °C, cloudy",
    tool_call_id: "call_1",
    status: "success",
    artifact: { raw: { temp: 18.5, unit: "C" }, ok: [1, "é"] },
    name: "get_weather",
  }),
  new ToolMessage({ content: "timeout", tool_call_id: "call_2", status: "error" }),
  new AIMessage({ content: "It is 18 °C and cloudy.", response_metadata: { logprobs: null } }),
  new ChatMessage({ content: "Looks fine to me.", role: "critic", id: "c-1" }),
  new HumanMessage({
    content: [
      { type: "text", text: "What is in this picture?" },
      { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
    ],
  }),
];

const redis = createClient({ url });
await redis.connect();
try {
  const stored = toStored(MESSAGES);
  const client = new ChatHistoryClient(redis, { prefix });
  const ids = await client.append(sessionId, stored, { ttl: ttl ? Number(ttl) : undefined });
  process.stdout.write(JSON.stringify({ ids, stored }));
} finally {
  await redis.quit();
}
