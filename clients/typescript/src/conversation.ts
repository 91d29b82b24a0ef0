// One participant's conversation over gRPC-Web, which has no client streams:
// events come from a Listen server stream, reopened after a drop with
// `resume_after_sequence` so none is lost or seen twice, and the caller's
// audio goes up in SendAudio calls, one at a time because the server takes
// sequences only in increasing order.

import { Code, ConnectError, type Client } from "@connectrpc/connect";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { pcmBytes } from "./audio.js";
import { type Event, toEvent } from "./events.js";
import { AudioEncoding, type ConversationService, Speaker } from "./gen/dragoman/v1/conversation_pb.js";

/** Session affinity key for the edge: every call about a session carries its id. */
export const SESSION_HEADER = "x-dragoman-session";

/** What a conversation needs of the client: the service and a way to renew the sign-in. */
export interface ConversationApi {
  readonly conversation: Client<typeof ConversationService>;
  refresh(): Promise<void>;
}

/** A piece of audio and when its first sample was captured (Date.now() clock). */
export interface CapturedAudio {
  audio: Int16Array | Uint8Array;
  capturedMs: number;
}

/**
 * LINEAR16 audio: PCM16 samples, or their little-endian bytes (captured when they are
 * read), or either with its capture time.
 */
export type AudioInput = AsyncIterable<Int16Array | Uint8Array | CapturedAudio>;

/**
 * Where a conversation stands: connecting (first stream), live (events flow), reconnecting
 * (after a drop, resuming), ended (for good: the session ended, close(), or a failure).
 */
export type ConversationStatus = "connecting" | "live" | "reconnecting" | "ended";

export interface ConverseOptions {
  /** Sample rate of the audio sent (8000 to 48000). Default 16000. */
  sampleRateHz?: number;
  /** Rate to get translated speech in (16000, 22050, 24000, 48000); 0 keeps the voice's. */
  outputSampleRateHz?: number;
  /** Resume a stream after this event sequence (the last one received). */
  resumeAfterSequence?: bigint;
  /** Ends the conversation when aborted. */
  signal?: AbortSignal;
  /** With audio: end once it is spent and every utterance of it was processed. Default true. */
  endAfterAudio?: boolean;
  /** How long after the audio (or its last utterance) to wait for more of it to be recognised. */
  settleMs?: number;
  /** With audio: end at most this long after it is spent, even with utterances unprocessed. */
  drainLimitMs?: number;
  /** Reconnect when nothing arrived for this long (the server's heartbeat comes every 15 s). */
  silenceLimitMs?: number;
  /** Largest audio message; audio that piled up behind a slow call goes out merged. */
  maxChunkBytes?: number;
  /** Audio kept while it cannot be sent; older audio is dropped (counted in droppedBytes). */
  maxBacklogBytes?: number;
  /** How long SendAudio is retried on transient errors before the conversation fails. */
  retryLimitMs?: number;
  /**
   * In a PRIVACY_MODE_PARTICIPANT_KEYED session, the caller's 32-byte key that seals its copy
   * of the history: the same on every stream of the session (the server refuses another).
   */
  historyKey?: Uint8Array;
  /** Called on every status change; `cause` is the drop (reconnecting) or the failure (ended). */
  onStatus?: (status: ConversationStatus, cause?: ConnectError) => void;
}

/** Errors after which reconnecting cannot help. */
const FINAL = new Set([
  Code.InvalidArgument, Code.NotFound, Code.PermissionDenied, Code.FailedPrecondition, Code.Aborted,
  Code.Unimplemented, Code.OutOfRange,
]);
/** SendAudio errors worth retrying: not listening yet, reconnecting, rate limited. */
const TRANSIENT = new Set([
  Code.Unavailable, Code.ResourceExhausted, Code.FailedPrecondition, Code.DeadlineExceeded, Code.Unauthenticated,
]);

type Item = { event: Event } | { end: true } | { error: unknown } | { tick: true };

/** A queue whose reader waits for the next item. */
class Mailbox<T> {
  private readonly items: T[] = [];
  private wake: (() => void) | undefined;

  put(item: T): void {
    this.items.push(item);
    this.wake?.();
    this.wake = undefined;
  }

  async take(): Promise<T> {
    while (this.items.length === 0) await new Promise<void>((resolve) => (this.wake = resolve));
    return this.items.shift()!;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });
}

const backoffMs = (failures: number, capMs: number) =>
  Math.min(capMs, 100 * 2 ** Math.min(failures, 6)) * (0.75 + Math.random() / 2);

/**
 * The events of one participant's conversation, as an async iterable (iterate it once).
 * Ends when the session ends, when `close()` is called or the loop is left, or, when
 * audio was given, once it has all been processed (see `endAfterAudio`). A failure that
 * reconnecting cannot mend is thrown from the loop as a ConnectError.
 */
export class Conversation implements AsyncIterable<Event> {
  /** Sequence of the last event received: resume from it with `resumeAfterSequence`. */
  lastSequence: bigint;
  /** Times the event stream was reopened after a drop. */
  reconnects = 0;
  /** Audio messages the server accepted. */
  sentChunks = 0;
  /** Audio dropped because it piled up beyond maxBacklogBytes while it could not be sent. */
  droppedBytes = 0;
  /** The caller's utterances started and not yet processed (when it ended: cut off by drainLimitMs). */
  readonly unfinished = new Set<string>();
  private current: ConversationStatus = "connecting";
  private readonly stop = new AbortController();
  private readonly options: Required<Omit<ConverseOptions, "signal" | "resumeAfterSequence" | "onStatus">>;
  private readonly onStatus: ConverseOptions["onStatus"];
  private readonly headers: Record<string, string>;
  private iterated = false;
  private skipWait: (() => void) | undefined;
  private hurry = false;

  constructor(
    private readonly api: ConversationApi,
    readonly sessionId: string,
    private readonly audio: AudioInput | undefined,
    options: ConverseOptions = {},
  ) {
    this.options = {
      sampleRateHz: 16000, outputSampleRateHz: 0, endAfterAudio: true, settleMs: 3000, drainLimitMs: 60_000,
      silenceLimitMs: 40_000, maxChunkBytes: 32_000, maxBacklogBytes: 0, retryLimitMs: 30_000,
      historyKey: new Uint8Array(), ...options,
    };
    this.onStatus = options.onStatus;
    this.options.maxBacklogBytes ||= this.options.sampleRateHz * 2 * 10; // 10 s of audio
    this.lastSequence = options.resumeAfterSequence ?? 0n;
    this.headers = { [SESSION_HEADER]: sessionId };
    options.signal?.addEventListener("abort", () => this.close(), { once: true });
    if (options.signal?.aborted) this.close();
  }

  get status(): ConversationStatus {
    return this.current;
  }

  /** Stops the conversation: the loop over it ends after the event at hand. */
  close(): void {
    this.stop.abort();
  }

  /** While reconnecting, tries now instead of after the backoff (e.g. when a browser is back online). */
  reconnectNow(): void {
    if (this.current !== "reconnecting") return;
    this.hurry = true;
    this.skipWait?.();
  }

  [Symbol.asyncIterator](): AsyncIterator<Event> {
    if (this.iterated) throw new Error("a Conversation is iterated once; open another to resume");
    this.iterated = true;
    return this.events();
  }

  private async *events(): AsyncGenerator<Event> {
    const box = new Mailbox<Item>();
    const ended = () => box.put({ end: true });
    this.stop.signal.addEventListener("abort", ended);
    const tasks = [this.listen(box).then(ended, (error) => box.put({ error }))];
    let audioSpent = false;
    const own = this.unfinished;
    let lastOwnChange = 0;
    const timers: ReturnType<typeof setTimeout>[] = [];
    const settleLater = () => {
      lastOwnChange = Date.now();
      timers.push(setTimeout(() => box.put({ tick: true }), this.options.settleMs));
    };
    if (this.audio) {
      tasks.push(this.send(this.audio).then(() => {
        audioSpent = true;
        settleLater();
        if (this.options.endAfterAudio) timers.push(setTimeout(ended, this.options.drainLimitMs));
      }, (error) => box.put({ error })));
    }
    let failure: ConnectError | undefined;
    try {
      for (;;) {
        const item = await box.take();
        if ("error" in item) {
          failure = ConnectError.from(item.error);
          throw item.error;
        }
        if ("end" in item) return;
        if ("event" in item) {
          const e = item.event;
          if (e.type === "processingStarted" && e.processingStarted.speaker === Speaker.SELF) {
            own.add(e.processingStarted.utteranceId);
            lastOwnChange = Date.now();
          } else if (e.type === "processingEnded" && e.processingEnded.speaker === Speaker.SELF) {
            own.delete(e.processingEnded.utteranceId);
            if (audioSpent) settleLater();
          }
          yield e;
        }
        if (this.audio && this.options.endAfterAudio && audioSpent && own.size === 0
            && Date.now() - lastOwnChange >= this.options.settleMs) return;
      }
    } finally {
      timers.forEach(clearTimeout);
      this.stop.signal.removeEventListener("abort", ended);
      this.stop.abort();
      await Promise.allSettled(tasks);
      this.setStatus("ended", failure);
    }
  }

  private setStatus(status: ConversationStatus, cause?: ConnectError): void {
    if (this.current === "ended" || (status === this.current && status !== "reconnecting")) return;
    this.current = status;
    this.onStatus?.(status, cause);
  }

  /** Listen streams until the session ends (resolves) or a final error (rejects). */
  private async listen(box: Mailbox<Item>): Promise<void> {
    let failures = 0;
    while (!this.stop.signal.aborted) {
      try {
        if (await this.listenOnce(box, () => (failures = 0))) return;
      } catch (e) {
        if (this.stop.signal.aborted) return;
        const err = ConnectError.from(e);
        if (FINAL.has(err.code)) throw err;
        if (err.code === Code.Unauthenticated) await this.api.refresh(); // fails for good if it fails
        this.setStatus("reconnecting", err);
      }
      this.reconnects++;
      const wait = backoffMs(++failures, 5000);
      if (!this.hurry) {
        await new Promise<void>((resolve) => {
          this.skipWait = resolve;
          void sleep(wait, this.stop.signal).then(resolve);
        });
      }
      this.skipWait = undefined;
      this.hurry = false;
    }
  }

  /** One Listen stream; true when it ended with the session. */
  private async listenOnce(box: Mailbox<Item>, onLive: () => void): Promise<boolean> {
    const call = new AbortController();
    const cancel = () => call.abort();
    this.stop.signal.addEventListener("abort", cancel);
    let watchdog = setTimeout(cancel, this.options.silenceLimitMs);
    try {
      const stream = this.api.conversation.listen({
        join: {
          sessionId: this.sessionId, encoding: AudioEncoding.LINEAR16,
          sampleRateHertz: this.options.sampleRateHz, outputSampleRateHertz: this.options.outputSampleRateHz,
          resumeAfterSequence: this.lastSequence, historyKey: this.options.historyKey,
        },
      }, { signal: call.signal, headers: this.headers });
      // Node's fetch may miss an abort that lands between reads (nodejs/undici#1940): the
      // stream would go on until the server's next heartbeat, so the abort itself ends the loop.
      const aborted = new Promise<undefined>((resolve) => {
        if (call.signal.aborted) resolve(undefined);
        call.signal.addEventListener("abort", () => resolve(undefined), { once: true });
      });
      const messages = stream[Symbol.asyncIterator]();
      for (;;) {
        const next = messages.next();
        const result = await Promise.race([next, aborted]);
        if (result === undefined) {
          next.catch(() => undefined);
          throw new ConnectError("the conversation was closed", Code.Canceled);
        }
        if (result.done) break;
        const { event } = result.value;
        clearTimeout(watchdog);
        watchdog = setTimeout(cancel, this.options.silenceLimitMs);
        if (this.current !== "live") {
          this.setStatus("live");
          onLive();
        }
        // heartbeats repeat the last sequence; after a resume nothing at or below it is new
        if (!event || event.sequence <= this.lastSequence) continue;
        const typed = toEvent(event);
        if (!typed) continue;
        this.lastSequence = event.sequence;
        box.put({ event: typed });
        if (typed.type === "sessionEnded") return true;
      }
      throw new ConnectError("the server closed the event stream", Code.Unavailable);
    } finally {
      clearTimeout(watchdog);
      this.stop.signal.removeEventListener("abort", cancel);
    }
  }

  /** Reads `audio` as it comes and sends it, merging what piled up behind a slow call. */
  private async send(audio: AudioInput): Promise<void> {
    const backlog: { data: Uint8Array; capturedMs: number }[] = [];
    let backlogBytes = 0;
    let spent = false;
    let wake: (() => void) | undefined;
    const nudge = () => {
      wake?.();
      wake = undefined;
    };
    const reading = (async () => {
      try {
        for await (const piece of audio) {
          if (this.stop.signal.aborted) break;
          const { audio: chunk, capturedMs } = "capturedMs" in piece ? piece : { audio: piece, capturedMs: Date.now() };
          const data = chunk instanceof Int16Array ? pcmBytes(chunk) : chunk;
          backlog.push({ data, capturedMs });
          backlogBytes += data.length;
          while (backlogBytes > this.options.maxBacklogBytes && backlog.length > 1) {
            const dropped = backlog.shift()!;
            backlogBytes -= dropped.data.length;
            this.droppedBytes += dropped.data.length;
          }
          nudge();
        }
      } finally {
        spent = true;
        nudge();
      }
    })();
    this.stop.signal.addEventListener("abort", nudge);
    try {
      let sequence = 0n;
      while (!this.stop.signal.aborted) {
        if (backlog.length === 0) {
          if (spent) break;
          await new Promise<void>((resolve) => (wake = resolve));
          continue;
        }
        const capturedMs = backlog[0].capturedMs;
        const parts = [backlog.shift()!.data];
        let size = parts[0].length;
        while (backlog.length && size + backlog[0].data.length <= this.options.maxChunkBytes) {
          size += backlog[0].data.length;
          parts.push(backlog.shift()!.data);
        }
        backlogBytes -= size;
        const data = new Uint8Array(size);
        parts.reduce((at, part) => (data.set(part, at), at + part.length), 0);
        await this.sendChunk(data, ++sequence, capturedMs);
      }
    } finally {
      this.stop.signal.removeEventListener("abort", nudge);
    }
    // Stopped: a source that yields nothing more (a muted microphone) must not hold close().
    if (this.stop.signal.aborted) return void reading.catch(() => undefined);
    await reading; // the audio source's own error, if any
  }

  /** One SendAudio, retried with the same sequence (the server takes a repeat once). */
  private async sendChunk(data: Uint8Array, sequence: bigint, capturedMs: number): Promise<void> {
    const giveUpAt = Date.now() + this.options.retryLimitMs;
    for (let failures = 1; !this.stop.signal.aborted; failures++) {
      try {
        await this.api.conversation.sendAudio(
          { sessionId: this.sessionId, audio: { data, sequence, captureTime: timestampFromMs(capturedMs) } },
          { signal: this.stop.signal, timeoutMs: 10_000, headers: this.headers },
        );
        this.sentChunks++;
        return;
      } catch (e) {
        if (this.stop.signal.aborted) return;
        const err = ConnectError.from(e);
        if (!TRANSIENT.has(err.code) || Date.now() > giveUpAt) throw err;
        await sleep(backoffMs(failures, 2000), this.stop.signal);
      }
    }
  }
}
