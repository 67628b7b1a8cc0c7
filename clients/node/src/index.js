export * from "./protocol.js";
export { ChatHistoryClient, librarySource } from "./client.js";
