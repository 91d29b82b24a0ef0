// AudioWorklet processor: the microphone at the context's rate in, 16-bit PCM at
// `targetRateHz` out, posted to the main thread in chunks of `chunkSamples`.
// Downsampling averages each output sample's span of input (a box filter), which
// keeps aliasing down without a long FIR; runs in the audio rendering thread.

declare const sampleRate: number;
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
  constructor(options?: unknown);
}
declare function registerProcessor(name: string, ctor: new (options: never) => AudioWorkletProcessor): void;

interface Options {
  targetRateHz: number;
  chunkSamples: number;
}

class Pcm16Capture extends AudioWorkletProcessor {
  private readonly ratio: number;
  private readonly chunk: Int16Array;
  private filled = 0;
  private acc = 0;
  private phase = 0;

  constructor(options: { processorOptions: Options }) {
    super(options);
    const { targetRateHz, chunkSamples } = options.processorOptions;
    this.ratio = sampleRate / targetRateHz;
    this.chunk = new Int16Array(chunkSamples);
  }

  process(inputs: Float32Array[][]): boolean {
    const channel = inputs[0]?.[0];
    if (channel) {
      for (let i = 0; i < channel.length; i++) this.push(channel[i]);
    }
    return true;
  }

  private push(x: number): void {
    let remaining = 1; // this input sample's width, in input samples
    while (remaining > 0) {
      const take = Math.min(this.ratio - this.phase, remaining);
      this.acc += x * take;
      this.phase += take;
      remaining -= take;
      if (this.phase >= this.ratio - 1e-9) {
        this.emit(this.acc / this.ratio);
        this.acc = 0;
        this.phase = 0;
      }
    }
  }

  private emit(value: number): void {
    const clamped = Math.max(-1, Math.min(1, value));
    this.chunk[this.filled++] = Math.round(clamped * 32767);
    if (this.filled === this.chunk.length) {
      const out = this.chunk.slice();
      this.port.postMessage(out, [out.buffer]);
      this.filled = 0;
    }
  }
}

registerProcessor("pcm16-capture", Pcm16Capture as unknown as new (options: never) => AudioWorkletProcessor);
