// Orders translated speech by utterance. The server sends each listener whole
// utterances one after another (SpeechAudio in conversation.proto), so this
// normally passes every chunk straight through; should chunks of another
// speaker's utterance arrive before the current one's last chunk, they wait
// their turn instead of being mixed into it. In simultaneous mode an utterance
// comes in pieces (SpeechAudio.piece_index) with seconds of silence between
// them while its speaker talks on; only the last chunk of the last piece says
// is_last, and news of that utterance (heard) keeps it from counting as stalled.

/** What the queue needs to know of a chunk. */
export interface Queueable {
  utteranceId: string;
  isLast: boolean;
}

/** Default for how long an unfinished utterance may hold the others back. */
export const STALL_MS = 5000;

export class SpeechQueue<C extends Queueable> {
  /** The utterance whose chunks are handed out as they come. */
  private current: string | undefined;
  /** Utterances waiting their turn, in the order their first chunk arrived (Map keeps insertion order). */
  private readonly waiting = new Map<string, C[]>();
  /** Waiting utterances the server said are over (ProcessingEnded): no more chunks will come. */
  private readonly over = new Set<string>();
  private lastChunkAt = 0;

  constructor(private readonly stallMs = STALL_MS) {}

  /** The utterance being played out now, if any. */
  get playing(): string | undefined {
    return this.current;
  }

  /** Utterances queued behind the current one. */
  get queued(): number {
    return this.waiting.size;
  }

  /** Takes a chunk as it arrives; returns the chunks to play now, in order. */
  push(chunk: C, nowMs: number): C[] {
    if (this.current === undefined || this.current === chunk.utteranceId) {
      this.current = chunk.utteranceId;
      this.lastChunkAt = nowMs;
      return chunk.isLast ? [chunk, ...this.advance(nowMs)] : [chunk];
    }
    const held = this.waiting.get(chunk.utteranceId);
    if (held) held.push(chunk);
    else this.waiting.set(chunk.utteranceId, [chunk]);
    return [];
  }

  /** Something else about an utterance came (a transcript or translation): if it is the
   * current one, it is still in progress, so the stall clock starts again. */
  heard(utteranceId: string, nowMs: number): void {
    if (this.current === utteranceId) this.lastChunkAt = nowMs;
  }

  /** The utterance ended (ProcessingEnded): if it is the current one, the next may start,
   * even when its last chunk never came (synthesis failed half-way). */
  end(utteranceId: string, nowMs: number): C[] {
    if (this.current === utteranceId) return this.advance(nowMs);
    if (this.waiting.has(utteranceId)) this.over.add(utteranceId);
    return [];
  }

  /** Moves on when nothing came of the current utterance for `stallMs` while others wait. */
  poll(nowMs: number): C[] {
    if (this.current === undefined || this.waiting.size === 0 || nowMs - this.lastChunkAt < this.stallMs) {
      return [];
    }
    return this.advance(nowMs);
  }

  private advance(nowMs: number): C[] {
    this.current = undefined;
    const out: C[] = [];
    for (const [id, chunks] of this.waiting) {
      this.waiting.delete(id);
      out.push(...chunks);
      const finished = chunks[chunks.length - 1].isLast || this.over.has(id);
      this.over.delete(id);
      if (!finished) {
        this.current = id;
        this.lastChunkAt = nowMs;
        break;
      }
    }
    return out;
  }
}
