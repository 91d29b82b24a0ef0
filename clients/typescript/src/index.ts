// @dragoman/client: the dragoman speech translation API over gRPC-Web.

export { connect, DragomanClient, type ConnectOptions } from "./client.js";
export {
  Conversation, SESSION_HEADER, type AudioInput, type CapturedAudio, type ConversationStatus, type ConverseOptions,
} from "./conversation.js";
export { toEvent, type Event, type EventType } from "./events.js";
export { AudioQueue, parseWav, pcmBytes, pcmChunks, type ChunkOptions, type Pcm } from "./audio.js";
export {
  newHistoryKey, openSealedTranscript, type OpenedTranscript, type OpenedUtterance,
} from "./privacy.js";
export { Code, ConnectError, type Client } from "@connectrpc/connect";
export * from "./gen/dragoman/v1/auth_pb.js";
export * from "./gen/dragoman/v1/conversation_pb.js";
export * from "./gen/dragoman/v1/recording_pb.js";
export * from "./gen/dragoman/v1/sessions_pb.js";
export * from "./gen/dragoman/v1/vocabulary_pb.js";
