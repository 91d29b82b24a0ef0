// The microphone: getUserMedia -> AudioWorklet -> 16 kHz PCM16 chunks of 100 ms.

export const CAPTURE_RATE_HZ = 16000;
export const CHUNK_MS = 100;

export type ChunkHandler = (pcm: Int16Array, captureTimeMs: number) => void;

export class Microphone {
  private stream: MediaStream | undefined;
  private source: MediaStreamAudioSourceNode | undefined;
  private node: AudioWorkletNode | undefined;
  private static loaded = new WeakSet<AudioContext>();

  constructor(private readonly ctx: AudioContext, private readonly onChunk: ChunkHandler) {}

  get active(): boolean {
    return this.stream !== undefined;
  }

  async start(): Promise<void> {
    if (this.stream) return;
    if (!Microphone.loaded.has(this.ctx)) {
      await this.ctx.audioWorklet.addModule(new URL("worklet.js", document.baseURI));
      Microphone.loaded.add(this.ctx);
    }
    // browsers offer no microphone to pages over plain http (other than localhost)
    if (!navigator.mediaDevices) throw new DOMException("no mediaDevices on an insecure page", "SecurityError");
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    await this.ctx.resume();
    const chunkSamples = (CAPTURE_RATE_HZ * CHUNK_MS) / 1000;
    this.node = new AudioWorkletNode(this.ctx, "pcm16-capture", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      channelCount: 1,
      processorOptions: { targetRateHz: CAPTURE_RATE_HZ, chunkSamples },
    });
    this.node.port.onmessage = (e: MessageEvent<Int16Array>) => this.onChunk(e.data, Date.now() - CHUNK_MS);
    this.source = this.ctx.createMediaStreamSource(stream);
    this.source.connect(this.node);
    this.node.connect(this.ctx.destination); // pulls the graph; the worklet outputs silence
    this.stream = stream;
  }

  stop(): void {
    this.source?.disconnect();
    this.node?.disconnect();
    if (this.node) this.node.port.onmessage = null;
    for (const track of this.stream?.getTracks() ?? []) track.stop();
    this.stream = this.source = this.node = undefined;
  }
}

/** What to tell the person when the microphone cannot start, by getUserMedia's error name. */
export function microphoneProblem(e: unknown): string {
  const name = e instanceof Error ? e.name : "";
  switch (name) {
    case "NotAllowedError":
      return "Microphone access is blocked. Allow the microphone for this site in the browser's site " +
        "settings (the icon beside the address), then press Start microphone again.";
    case "SecurityError":
      return "This page may not use the microphone: open it over https.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No microphone was found. Connect one, then press Start microphone again.";
    case "NotReadableError":
    case "AbortError":
      return "The microphone could not be opened: another app may be using it. Close it, then try again.";
    default:
      return `The microphone could not start: ${e instanceof Error ? e.message : String(e)}`;
  }
}
