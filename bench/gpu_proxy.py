"""GPU throughput of the production model architectures, for the capacity model.

    python bench/gpu_proxy.py [--out bench/results/gpu.json] [--batches 1,8,32,64] [--quick]

Runs on a machine whose PyTorch sees a CUDA GPU and needs only torch and
transformers: no weights (none can be fetched there), so every model is the
real architecture with random weights, and decoding is forced to a fixed,
realistic number of tokens. Compute per utterance is then what the trained
model costs; only quality is absent. Measured per model and batch size:
the time of one batched call (for Whisper also of its encoder alone) and
the throughput that follows
(utterances/s for STT, sentences/s for MT, seconds of audio per second for TTS).

Models: Whisper large-v3-turbo and base (STT: one 30 s encoder window, 40
decoded tokens; and a 10 s window, as stt_svc encodes utterances that fit,
`window_s` in each row), NLLB-200 distilled 600M and OPUS-MT tc-big (MT: 32 source
tokens, 40 target tokens), VITS as in MMS-TTS (TTS: 60 input symbols).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import transformers as tf

warnings.filterwarnings("ignore", category=FutureWarning)

STT_TOKENS = 40
MT_SOURCE_TOKENS = 32
MT_TARGET_TOKENS = 40
TTS_SYMBOLS = 60


DEVICE = "cuda"
DTYPE = torch.half


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of `fn` after two warm-up calls."""
    for _ in range(2):
        fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def greedy(decoder_step: Callable[[torch.Tensor, object], torch.Tensor],
           batch: int, steps: int, device: torch.device) -> None:
    """`steps` greedy decoder steps with a KV cache (self- and cross-attention)."""
    tokens = torch.ones(batch, 1, dtype=torch.long, device=device)
    cache = tf.EncoderDecoderCache(tf.DynamicCache(), tf.DynamicCache())
    for _ in range(steps):
        tokens = decoder_step(tokens, cache)[:, -1:].argmax(-1)


def whisper(name: str, cfg: dict[str, int], batches: list[int], repeats: int,
            window_s: int = 30) -> list[dict[str, object]]:
    # a shorter window is the same architecture with fewer positions (50 a second after the
    # encoder's stride-2 convolution), which is what the engine's 10 s windows compute
    config = tf.WhisperConfig(**cfg, max_source_positions=window_s * 50)
    with torch.device(DEVICE):
        model = tf.WhisperForConditionalGeneration(config).to(DTYPE).eval()
    rows = []
    for b in batches:
        feats = torch.randn(b, cfg["num_mel_bins"], window_s * 100, device=DEVICE, dtype=DTYPE)

        def run(b: int = b, feats: torch.Tensor = feats) -> None:
            with torch.inference_mode():
                enc = model.model.encoder(feats).last_hidden_state

                def step(tok: torch.Tensor, cache: object) -> torch.Tensor:
                    out = model.model.decoder(input_ids=tok, encoder_hidden_states=enc,
                                              past_key_values=cache, use_cache=True)
                    return model.proj_out(out.last_hidden_state)

                greedy(step, b, STT_TOKENS, enc.device)

        def encode(feats: torch.Tensor = feats) -> None:
            with torch.inference_mode():
                model.model.encoder(feats)

        t = timed(run, repeats)
        # the encoder's part of a decode: bench.capacity weighs encoder seconds by it
        t_enc = timed(encode, repeats)
        rows.append({"model": name, "role": "stt", "batch": b, "seconds_per_call": t,
                     "encoder_seconds_per_call": t_enc,
                     "utterances_per_s": b / t, "window_s": window_s, "decoded_tokens": STT_TOKENS})
        print(f"{name:<32} {window_s:>2} s, batch {b:>3}: {t * 1000:8.1f} ms/call  "
              f"{b / t:8.1f} utterances/s", flush=True)
    return rows


def seq2seq(name: str, config: tf.PretrainedConfig, cls: type, batches: list[int],
            repeats: int) -> list[dict[str, object]]:
    with torch.device(DEVICE):
        model = cls(config).to(DTYPE).eval()
    rows = []
    for b in batches:
        src = torch.randint(4, config.vocab_size, (b, MT_SOURCE_TOKENS), device=DEVICE)

        def run(b: int = b, src: torch.Tensor = src) -> None:
            with torch.inference_mode():
                enc = model.get_encoder()(input_ids=src).last_hidden_state

                def step(tok: torch.Tensor, cache: object) -> torch.Tensor:
                    out = model.get_decoder()(input_ids=tok, encoder_hidden_states=enc,
                                              past_key_values=cache, use_cache=True)
                    return model.lm_head(out.last_hidden_state)

                greedy(step, b, MT_TARGET_TOKENS, enc.device)

        t = timed(run, repeats)
        rows.append({"model": name, "role": "mt", "batch": b, "seconds_per_call": t,
                     "sentences_per_s": b / t, "source_tokens": MT_SOURCE_TOKENS,
                     "target_tokens": MT_TARGET_TOKENS})
        print(f"{name:<32} batch {b:>3}: {t * 1000:8.1f} ms/call  {b / t:8.1f} sentences/s", flush=True)
    return rows


def vits(batches: list[int], repeats: int) -> list[dict[str, object]]:
    config = tf.VitsConfig(vocab_size=64)
    torch.manual_seed(0)
    with torch.device(DEVICE):
        model = tf.VitsModel(config).eval()
    rows = []
    for b in batches:
        ids = torch.randint(1, 64, (b, TTS_SYMBOLS), device=DEVICE)
        samples: list[int] = []

        def run(ids: torch.Tensor = ids, samples: list[int] = samples) -> None:
            with torch.inference_mode():
                out = model(input_ids=ids, attention_mask=torch.ones_like(ids))
                samples.append(int(out.sequence_lengths.sum()) if out.sequence_lengths is not None
                               else out.waveform.shape[0] * out.waveform.shape[1])

        t = timed(run, repeats)
        audio_s = statistics.median(samples) / config.sampling_rate
        rows.append({"model": "vits-mms", "role": "tts", "batch": b, "seconds_per_call": t,
                     "audio_seconds_per_s": audio_s / t, "symbols": TTS_SYMBOLS,
                     "audio_seconds_per_call": audio_s})
        print(f"{'vits-mms':<32} batch {b:>3}: {t * 1000:8.1f} ms/call  "
              f"{audio_s / t:8.1f} s of audio/s", flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/results/gpu.json")
    p.add_argument("--batches", default="1,8,32,64")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="whisper-base and VITS only (a check of the script)")
    p.add_argument("--cpu", action="store_true", help="run on the CPU in fp32 (checks the script only)")
    args = p.parse_args()
    global DEVICE, DTYPE
    if args.cpu:
        DEVICE, DTYPE = "cpu", torch.float32
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark measures GPU throughput (--cpu to check the script)")
    torch.backends.cuda.matmul.allow_tf32 = True
    batches = [int(b) for b in args.batches.split(",")]
    base = {"d_model": 512, "encoder_layers": 6, "decoder_layers": 6, "encoder_attention_heads": 8,
            "decoder_attention_heads": 8, "encoder_ffn_dim": 2048, "decoder_ffn_dim": 2048,
            "num_mel_bins": 80, "vocab_size": 51865}
    turbo = {"d_model": 1280, "encoder_layers": 32, "decoder_layers": 4, "encoder_attention_heads": 20,
             "decoder_attention_heads": 20, "encoder_ffn_dim": 5120, "decoder_ffn_dim": 5120,
             "num_mel_bins": 128, "vocab_size": 51866}
    rows = whisper("whisper-base", base, batches, args.repeats)
    rows += whisper("whisper-base", base, batches, args.repeats, window_s=10)
    if not args.quick:
        rows += whisper("whisper-large-v3-turbo", turbo, batches, args.repeats)
        rows += whisper("whisper-large-v3-turbo", turbo, batches, args.repeats, window_s=10)
        nllb = tf.M2M100Config(vocab_size=256206, d_model=1024, encoder_layers=12, decoder_layers=12,
                               encoder_attention_heads=16, decoder_attention_heads=16,
                               encoder_ffn_dim=4096, decoder_ffn_dim=4096)
        rows += seq2seq("nllb-200-distilled-600M", nllb, tf.M2M100ForConditionalGeneration,
                        batches, args.repeats)
        marian = tf.MarianConfig(vocab_size=60000, d_model=1024, encoder_layers=6, decoder_layers=6,
                                 encoder_attention_heads=16, decoder_attention_heads=16,
                                 encoder_ffn_dim=4096, decoder_ffn_dim=4096, decoder_start_token_id=1,
                                 pad_token_id=0)
        rows += seq2seq("opus-mt-tc-big", marian, tf.MarianMTModel, batches, args.repeats)
    rows += vits(batches, args.repeats)
    out = {
        "kind": "gpu-proxy",
        "note": "real architectures with random weights, fixed decode lengths; fp16 except VITS (fp32)",
        "device": torch.cuda.get_device_name(0) if DEVICE == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "transformers": tf.__version__, "python": platform.python_version(),
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
