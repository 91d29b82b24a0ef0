// Plays the others' translated speech: whole utterances one after another, in
// the order they arrived (SpeechQueue), each chunk scheduled right after the
// one before; says whose speech is playing now.

import type { SpeechAudio } from "@dragoman/client";
import { SpeechQueue } from "../speechqueue";

const START_DELAY_S = 0.05;
const WATCH_MS = 100;

/** The speaker of what is playing now, and when it changes. */
export interface NowSpeaking {
  participantId: string;
  name: string;
  utteranceId: string;
}

interface Scheduled {
  start: number;
  end: number;
  speaking: NowSpeaking;
}

export class Player {
  /** Samples handed to the audio output, and those it finished playing. */
  scheduledSamples = 0;
  playedSamples = 0;
  muted = false;
  /** Utterances in the order their speech started playing, each once unless another came between. */
  readonly playedUtterances: NowSpeaking[] = [];
  private next = 0;
  private readonly queue = new SpeechQueue<SpeechAudio>();
  private readonly scheduled: Scheduled[] = [];
  private speaking: NowSpeaking | undefined;
  private watch: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly ctx: AudioContext,
    private readonly onSpeaking: (now: NowSpeaking | undefined) => void = () => {},
  ) {}

  get nowSpeaking(): NowSpeaking | undefined {
    return this.speaking;
  }

  /** Queues a chunk as it arrives. */
  play(chunk: SpeechAudio): void {
    for (const ready of this.queue.push(chunk, performance.now())) this.schedule(ready);
    this.watching();
  }

  /** News of an utterance (a transcript or translation): one still being spoken in pieces is not stalled. */
  heard(utteranceId: string): void {
    this.queue.heard(utteranceId, performance.now());
  }

  /** The utterance ended (ProcessingEnded): the next one need not wait for a last chunk. */
  ended(utteranceId: string): void {
    for (const ready of this.queue.end(utteranceId, performance.now())) this.schedule(ready);
    this.watching();
  }

  private schedule(chunk: SpeechAudio): void {
    const bytes = chunk.data.slice(); // aligned copy
    const pcm = new Int16Array(bytes.buffer, 0, bytes.byteLength >> 1);
    if (pcm.length === 0 || this.muted) return;
    const buffer = this.ctx.createBuffer(1, pcm.length, chunk.sampleRateHertz);
    const out = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) out[i] = pcm[i] / 32768;
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.ctx.destination);
    const at = Math.max(this.ctx.currentTime + START_DELAY_S, this.next);
    source.onended = () => {
      this.playedSamples += pcm.length;
    };
    source.start(at);
    this.next = at + buffer.duration;
    this.scheduledSamples += pcm.length;
    const last = this.scheduled[this.scheduled.length - 1];
    if (last?.speaking.utteranceId === chunk.utteranceId) {
      last.end = this.next;
    } else {
      this.scheduled.push({ start: at, end: this.next, speaking: {
        participantId: chunk.speakerParticipantId, name: chunk.speakerDisplayName,
        utteranceId: chunk.utteranceId } });
    }
  }

  /** Follows the audio clock to say who is speaking, and unblocks a stalled queue. */
  private watching(): void {
    this.watch ??= setInterval(() => {
      for (const ready of this.queue.poll(performance.now())) this.schedule(ready);
      const now = this.ctx.currentTime;
      while (this.scheduled.length && this.scheduled[0].end <= now) this.scheduled.shift();
      const head = this.scheduled[0];
      // between two chunks of an utterance that synthesis has not caught up with, it still speaks
      const waitingForMore = this.speaking && this.queue.playing === this.speaking.utteranceId;
      const speaking = head && head.start <= now ? head.speaking : waitingForMore ? this.speaking : undefined;
      if (speaking !== this.speaking) {
        const last = this.playedUtterances[this.playedUtterances.length - 1];
        if (speaking && speaking.utteranceId !== last?.utteranceId) this.playedUtterances.push(speaking);
        this.speaking = speaking;
        this.onSpeaking(speaking);
      }
      if (!this.scheduled.length && !this.queue.queued) {
        clearInterval(this.watch);
        this.watch = undefined;
      }
    }, WATCH_MS);
  }
}
