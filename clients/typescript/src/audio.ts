// Audio for the conversation: 16-bit PCM from WAV files, cut into the ~100 ms
// chunks the API expects and paced at real time (the gateway refuses audio
// much faster than real time). No Node.js or DOM APIs: it runs anywhere.

import type { CapturedAudio } from "./conversation.js";

/** Mono 16-bit PCM and its sample rate. */
export interface Pcm {
  readonly sampleRateHz: number;
  readonly samples: Int16Array;
}

/** The audio of a WAV file: PCM, 16 bits, one channel (what the API takes as LINEAR16). */
export function parseWav(bytes: Uint8Array): Pcm {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at: number) => String.fromCharCode(...bytes.subarray(at, at + 4));
  if (bytes.byteLength < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") {
    throw new Error("not a WAV file (no RIFF/WAVE header)");
  }
  let format: { channels: number; rate: number; bits: number; codec: number } | undefined;
  for (let at = 12; at + 8 <= bytes.byteLength;) {
    const id = tag(at);
    const size = view.getUint32(at + 4, true);
    const body = at + 8;
    if (id === "fmt ") {
      format = {
        codec: view.getUint16(body, true), channels: view.getUint16(body + 2, true),
        rate: view.getUint32(body + 4, true), bits: view.getUint16(body + 14, true),
      };
    } else if (id === "data") {
      if (!format) throw new Error("WAV data chunk before its fmt chunk");
      // 0xfffe: WAVE_FORMAT_EXTENSIBLE, which plain PCM writers also use
      if ((format.codec !== 1 && format.codec !== 0xfffe) || format.bits !== 16 || format.channels !== 1) {
        throw new Error(`WAV must be 16-bit mono PCM (got codec ${format.codec}, ${format.bits} bits, `
          + `${format.channels} channels)`);
      }
      const length = Math.min(size, bytes.byteLength - body) >> 1;
      const samples = new Int16Array(length);
      for (let i = 0; i < length; i++) samples[i] = view.getInt16(body + 2 * i, true);
      return { sampleRateHz: format.rate, samples };
    }
    at = body + size + (size & 1); // chunks are padded to an even length
  }
  throw new Error("WAV file has no data chunk");
}

export interface ChunkOptions {
  /** Length of each chunk; the API expects about 100 ms. */
  chunkMs?: number;
  /** Yield each chunk when its audio would have been captured (real time); false: at once. */
  paced?: boolean;
  /** Silence appended so the last phrase ends (the server ends a phrase after ~300 ms of it). */
  trailingSilenceMs?: number;
}

/** `pcm` as chunks of `chunkMs`, paced at real time unless `paced` is false. */
export async function* pcmChunks(pcm: Pcm, options: ChunkOptions = {}): AsyncGenerator<Int16Array> {
  const { chunkMs = 100, paced = true, trailingSilenceMs = 0 } = options;
  const step = Math.max(1, Math.round((pcm.sampleRateHz * chunkMs) / 1000));
  const silence = Math.round((pcm.sampleRateHz * trailingSilenceMs) / 1000);
  const all = new Int16Array(pcm.samples.length + silence);
  all.set(pcm.samples);
  const start = Date.now();
  for (let i = 0, at = 0; at < all.length; i++, at += step) {
    if (paced) {
      const due = start + i * chunkMs - Date.now();
      if (due > 0) await new Promise((resolve) => setTimeout(resolve, due));
    }
    yield all.subarray(at, at + step);
  }
}

/** Little-endian bytes of PCM16 samples (the wire format of LINEAR16). */
export function pcmBytes(samples: Int16Array): Uint8Array {
  const out = new Uint8Array(samples.length * 2);
  const view = new DataView(out.buffer);
  for (let i = 0; i < samples.length; i++) view.setInt16(2 * i, samples[i], true);
  return out;
}

/**
 * Audio pushed as it is captured (a microphone's callback), as the input of
 * `converse(sessionId, queue)`. A pause in pushing sends nothing; the input ends after `end()`.
 */
export class AudioQueue implements AsyncIterable<CapturedAudio> {
  private readonly pieces: CapturedAudio[] = [];
  private ended = false;
  private wake: (() => void) | undefined;

  /** Queues `audio`, whose first sample was captured at `capturedMs` (default: now). */
  push(audio: Int16Array | Uint8Array, capturedMs = Date.now()): void {
    if (this.ended) return;
    this.pieces.push({ audio, capturedMs });
    this.nudge();
  }

  end(): void {
    this.ended = true;
    this.nudge();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<CapturedAudio> {
    for (;;) {
      const piece = this.pieces.shift();
      if (piece) yield piece;
      else if (this.ended) return;
      else await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private nudge(): void {
    this.wake?.();
    this.wake = undefined;
  }
}
