// Sends the microphone's audio with SendAudio, strictly in order: the server
// refuses a chunk whose sequence is not above the last one it accepted, so there
// is one call in flight, a failed chunk is retried with the same sequence (the
// server acknowledges a repeat of the last one without using it twice), and
// audio that piled up meanwhile (a slow network, a reconnection) goes out
// merged into larger chunks.

import { Code, ConnectError } from "@connectrpc/connect";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Api } from "./api";
import { Waker } from "./waker";

export interface SenderOptions {
  /** Largest chunk sent when audio piled up (at most 64 KiB on the wire). */
  maxChunkSamples: number;
  /** Audio kept while it cannot be sent; older audio is dropped. */
  maxBacklogSamples: number;
}

const DEFAULTS: SenderOptions = { maxChunkSamples: 16000, maxBacklogSamples: 16000 * 10 };
const FINAL = new Set([Code.InvalidArgument, Code.NotFound, Code.PermissionDenied, Code.Unimplemented]);

export class AudioSender {
  sentChunks = 0;
  droppedSamples = 0;
  private readonly pending: { pcm: Int16Array; captureTimeMs: number }[] = [];
  private pendingSamples = 0;
  private sequence = 0n;
  private readonly waker = new Waker();
  private readonly stopped = new AbortController();
  private readonly options: SenderOptions;

  constructor(
    private readonly api: Api,
    private readonly sessionId: string,
    private readonly canSend: () => boolean,
    private readonly onFatal: (message: string) => void,
    options: Partial<SenderOptions> = {},
  ) {
    this.options = { ...DEFAULTS, ...options };
  }

  push(pcm: Int16Array, captureTimeMs: number): void {
    this.pending.push({ pcm, captureTimeMs });
    this.pendingSamples += pcm.length;
    while (this.pendingSamples > this.options.maxBacklogSamples && this.pending.length > 1) {
      const dropped = this.pending.shift()!;
      this.pendingSamples -= dropped.pcm.length;
      this.droppedSamples += dropped.pcm.length;
    }
    this.waker.wakeUp();
  }

  stop(): void {
    this.stopped.abort();
    this.waker.wakeUp();
  }

  async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped.signal.aborted) {
      if (this.pending.length === 0) {
        await this.waker.sleep(60_000);
        continue;
      }
      const { data, captureTimeMs } = this.take();
      const sequence = ++this.sequence;
      for (;;) {
        if (this.stopped.signal.aborted) return;
        try {
          await this.api.conversation.sendAudio(
            { sessionId: this.sessionId, audio: { data, sequence, captureTime: timestampFromMs(captureTimeMs) } },
            { signal: this.stopped.signal, timeoutMs: 10_000 },
          );
          this.sentChunks++;
          failures = 0;
          break;
        } catch (e) {
          const err = ConnectError.from(e);
          if (this.stopped.signal.aborted) return;
          if (FINAL.has(err.code) || (err.code === Code.FailedPrecondition && !this.canSend())) {
            this.onFatal(err.rawMessage);
            return;
          }
          // not listening yet / reconnecting, unavailable, rate limited: wait and retry
          failures++;
          await this.waker.sleep(Math.min(2000, 100 * 2 ** Math.min(failures, 5)));
        }
      }
    }
  }

  /** The pending audio, up to maxChunkSamples, as one little-endian PCM16 buffer. */
  private take(): { data: Uint8Array; captureTimeMs: number } {
    const captureTimeMs = this.pending[0].captureTimeMs;
    const parts: Int16Array[] = [];
    let samples = 0;
    while (this.pending.length && samples + this.pending[0].pcm.length <= this.options.maxChunkSamples) {
      const part = this.pending.shift()!.pcm;
      parts.push(part);
      samples += part.length;
    }
    if (parts.length === 0) { // one oversized piece: send it alone
      const part = this.pending.shift()!.pcm;
      parts.push(part);
      samples = part.length;
    }
    this.pendingSamples -= samples;
    const out = new Int16Array(samples);
    let offset = 0;
    for (const part of parts) {
      out.set(part, offset);
      offset += part.length;
    }
    return { data: new Uint8Array(out.buffer), captureTimeMs };
  }
}
