// Plays the partner's translated speech: PCM16 chunks scheduled back to back.

import type { SpeechAudio } from "../gen/dragoman/v1/conversation_pb";

const START_DELAY_S = 0.05;

export class Player {
  /** Samples handed to the audio output, and those it finished playing. */
  scheduledSamples = 0;
  playedSamples = 0;
  muted = false;
  private next = 0;

  constructor(private readonly ctx: AudioContext) {}

  play(chunk: SpeechAudio): void {
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
  }
}
