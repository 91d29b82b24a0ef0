// The live conversation of a browser: Listen (server stream of events) with
// reconnection. Every event has a sequence number; after a drop the stream is
// reopened with join.resume_after_sequence = the last one seen, so no event is
// lost, and any event at or below it is ignored, so none is seen twice.

import { Code, ConnectError } from "@connectrpc/connect";
import { type Api, describeError } from "./api";
import { AudioEncoding, type ConversationEvent } from "./gen/dragoman/v1/conversation_pb";
import { Waker } from "./waker";

export type Status = "connecting" | "live" | "reconnecting" | "ended";

export interface ConversationHandlers {
  event(event: ConversationEvent): void;
  status(status: Status, detail: string): void;
}

export interface ConversationOptions {
  inputRateHz: number;
  outputRateHz: number;
  /** A participant-keyed session's key (privacy.historyKey); empty in any other. */
  historyKey: Uint8Array;
  /** Reconnect when nothing (not even a heartbeat, every 15 s) arrived for this long. */
  silenceLimitMs: number;
}

const DEFAULTS: ConversationOptions = {
  inputRateHz: 16000, outputRateHz: 24000, silenceLimitMs: 40000, historyKey: new Uint8Array(),
};

/** Errors after which reconnecting cannot help. */
const FINAL = new Set([
  Code.InvalidArgument, Code.NotFound, Code.PermissionDenied, Code.FailedPrecondition, Code.Aborted,
  Code.Unimplemented,
]);

export class Conversation {
  lastSequence = 0n;
  reconnects = 0;
  status: Status = "connecting";
  private readonly stopped = new AbortController();
  private readonly waker = new Waker();
  private readonly options: ConversationOptions;

  constructor(
    private readonly api: Api,
    readonly sessionId: string,
    private readonly handlers: ConversationHandlers,
    options: Partial<ConversationOptions> = {},
  ) {
    this.options = { ...DEFAULTS, ...options };
  }

  get ended(): boolean {
    return this.status === "ended";
  }

  /** Runs until the session ends, a final error, or stop(). */
  async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped.signal.aborted) {
      this.setStatus(this.reconnects ? "reconnecting" : "connecting", "");
      try {
        const endedCleanly = await this.listenOnce(() => {
          failures = 0;
        });
        if (endedCleanly) return this.finish("the session ended");
      } catch (e) {
        if (this.stopped.signal.aborted) break;
        const err = ConnectError.from(e);
        if (FINAL.has(err.code)) return this.finish(describeError(err));
        if (err.code === Code.Unauthenticated) {
          try {
            await this.api.refresh();
          } catch {
            return this.finish("signed out: log in again");
          }
        }
        this.setStatus("reconnecting", `connection lost (${describeError(err)})`);
      }
      this.reconnects++;
      failures++;
      await this.waker.sleep(Math.min(5000, 250 * 2 ** Math.min(failures, 5)) * (0.75 + Math.random() / 2));
    }
    this.finish("left");
  }

  stop(): void {
    this.stopped.abort();
    this.waker.wakeUp();
  }

  /** Skips the wait before the next reconnection attempt (e.g. when the browser is back online). */
  retryNow(): void {
    this.waker.wakeUp();
  }

  /** One Listen stream; true when it ended with the session. */
  private async listenOnce(onLive: () => void): Promise<boolean> {
    const call = new AbortController();
    const abort = () => call.abort();
    this.stopped.signal.addEventListener("abort", abort);
    let watchdog = setTimeout(abort, this.options.silenceLimitMs);
    try {
      const stream = this.api.conversation.listen({
        join: {
          sessionId: this.sessionId,
          encoding: AudioEncoding.LINEAR16,
          sampleRateHertz: this.options.inputRateHz,
          outputSampleRateHertz: this.options.outputRateHz,
          resumeAfterSequence: this.lastSequence,
          historyKey: this.options.historyKey,
        },
      }, { signal: call.signal });
      for await (const response of stream) {
        clearTimeout(watchdog);
        watchdog = setTimeout(abort, this.options.silenceLimitMs);
        if (this.status !== "live") {
          onLive();
          this.setStatus("live", "");
        }
        const event = response.event;
        if (!event || event.kind.case === "heartbeat" || event.sequence <= this.lastSequence) continue;
        this.lastSequence = event.sequence;
        this.handlers.event(event);
        if (event.kind.case === "sessionEnded") return true;
      }
      // The server closed the stream without ending the session: reconnect, resuming.
      throw new ConnectError("stream closed", Code.Unavailable);
    } finally {
      clearTimeout(watchdog);
      this.stopped.signal.removeEventListener("abort", abort);
    }
  }


  private finish(detail: string): void {
    this.setStatus("ended", detail);
  }

  private setStatus(status: Status, detail: string): void {
    if (this.status === "ended") return;
    this.status = status;
    this.handlers.status(status, detail);
  }
}
