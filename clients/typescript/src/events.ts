// The conversation's events as a union discriminated by `type`, with the
// payload under a property of the same name, so that
// `if (e.type === "translation") e.translation.text` type-checks.

import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ConversationEvent } from "./gen/dragoman/v1/conversation_pb.js";

type Kind = ConversationEvent["kind"];

/** Every event type but heartbeats, which carry nothing (the SDK drops them). */
export type EventType = Exclude<NonNullable<Kind["case"]>, "heartbeat">;

/** One event of the caller's stream; `sequence` counts it from 1, without gaps. */
export type Event = {
  [K in EventType]: {
    type: K;
    sessionId: string;
    sequence: bigint;
    time: Date | undefined;
  } & { [P in K]: Extract<Kind, { case: K }>["value"] };
}[EventType];

/** The typed event of a generated one; undefined for heartbeats and unknown kinds. */
export function toEvent(event: ConversationEvent): Event | undefined {
  const { case: type, value } = event.kind;
  if (type === undefined || type === "heartbeat") return undefined;
  return {
    type, sessionId: event.sessionId, sequence: event.sequence,
    time: event.time ? timestampDate(event.time) : undefined, [type]: value,
  } as Event;
}
