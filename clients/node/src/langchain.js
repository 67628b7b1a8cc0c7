// Between LangChain.js messages and the stored-message JSON the library keeps.

import {
  ChatMessage,
  mapChatMessagesToStoredMessages,
  mapStoredMessagesToChatMessages,
} from "@langchain/core/messages";

/** Stored-message objects of LangChain.js messages, as the library stores them. */
export function toStored(messages) {
  return mapChatMessagesToStoredMessages(messages);
}

// Types LangChain Python writes that LangChain.js names otherwise.
const JS_TYPES = {
  chat: "generic",
  AIMessageChunk: "ai",
  HumanMessageChunk: "human",
  SystemMessageChunk: "system",
  ToolMessageChunk: "tool",
  FunctionMessageChunk: "function",
  ChatMessageChunk: "generic",
};

/**
 * LangChain.js messages from stored messages, whichever language wrote them, through
 * mapStoredMessagesToChatMessages. Python's ChatMessage ("chat") is LangChain.js's "generic",
 * chunks become their message type, and a type neither knows becomes a ChatMessage whose role
 * is that type, so one odd message never makes a session unreadable.
 */
export function fromStored(stored) {
  return stored.map((item) => {
    const type = JS_TYPES[item.type] ?? item.type;
    try {
      return mapStoredMessagesToChatMessages([{ ...item, type }])[0];
    } catch {
      const { role, ...data } = item.data ?? {};
      return new ChatMessage({ ...data, role: role ?? item.type });
    }
  });
}
