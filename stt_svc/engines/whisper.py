"""faster-whisper (CTranslate2) engine: one Whisper model, one window per call.

Utterances from the segmenter are shorter than Whisper's 30 s window, so a
call is one encoder pass and one greedy (or beam) decode. Running the steps
ourselves instead of `WhisperModel.transcribe` lets one encoder pass serve
language identification, decoding and word alignment, and lets the stable
prefix of partial results be forced as a decoder prefix while keeping word
timings for the prefix words too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from stt_svc.engines.base import Capabilities, DecodeOptions, Transcription, WordTiming

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer

log = logging.getLogger("stt_svc.whisper")

SAMPLE_RATE_HZ = 16_000
# Same thresholds as faster-whisper's temperature fallback.
COMPRESSION_RATIO_LIMIT = 2.4
LOGPROB_LIMIT = -1.0
NO_SPEECH_LIMIT = 0.6
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


class WhisperEngine:
    """A faster-whisper model loaded from `path` (int8 on CPU)."""

    def __init__(self, path: str | Path, *, name: str, cpu_threads: int) -> None:
        from faster_whisper import WhisperModel

        path = Path(path)
        if not (path / "model.bin").is_file():
            raise FileNotFoundError(f"no Whisper model in {path} (model.bin missing)")
        self._model: WhisperModel = WhisperModel(
            str(path), device="cpu", compute_type="int8", cpu_threads=cpu_threads, num_workers=1
        )
        self._multilingual = bool(self._model.model.is_multilingual)
        self._capabilities = Capabilities(
            name=name,
            engine="faster-whisper",
            languages=tuple(  # faster-whisper lists large-v3's codes too; keep the model's own
                code for code in self._model.supported_languages
                if self._model.hf_tokenizer.token_to_id(f"<|{code}|>") is not None
            ),
            detects_language=self._multilingual,
            max_audio_s=self._model.feature_extractor.n_samples / SAMPLE_RATE_HZ,
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def warm_up(self) -> None:
        """One decode of silence then a tone, so the first real call is not slow."""
        t = np.arange(SAMPLE_RATE_HZ, dtype=np.float32) / SAMPLE_RATE_HZ
        tone = 0.1 * np.sin(2 * np.pi * 440.0 * t).astype(np.float32)
        audio = np.concatenate([np.zeros(SAMPLE_RATE_HZ // 2, np.float32), tone])
        self.transcribe(audio, DecodeOptions(language="en", word_timestamps=True))

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcription:
        from faster_whisper.audio import pad_or_trim
        from faster_whisper.tokenizer import Tokenizer

        model = self._model
        extractor = model.feature_extractor
        audio = np.asarray(audio, dtype=np.float32)[: extractor.n_samples]
        features = extractor(audio)
        num_frames = min(features.shape[-1] - 1, extractor.nb_max_frames)
        encoder_output = model.encode(pad_or_trim(features[:, :num_frames]))

        language, language_probability = self._language(encoder_output, options.language)
        tokenizer = Tokenizer(
            model.hf_tokenizer, self._multilingual, task="transcribe", language=language
        )
        prefix_tokens = _encode(tokenizer, options.prefix, model.max_length // 2 - 1)
        prompt = self._prompt(tokenizer, prefix_tokens, options.hotwords)
        result, avg_logprob, compression_ratio = self._generate(
            encoder_output, prompt, tokenizer, options
        )
        # CTranslate2 returns the forced prefix as the start of the sequence.
        tokens = [t for t in result.sequences_ids[0] if t < tokenizer.eot]
        words: tuple[WordTiming, ...] = ()
        if options.word_timestamps and tokens:
            words = self._align(tokenizer, tokens, encoder_output, num_frames, len(audio))
        return Transcription(
            text=tokenizer.decode(tokens).strip(),
            language=language,
            language_probability=language_probability,
            avg_logprob=avg_logprob,
            no_speech_prob=float(result.no_speech_prob),
            compression_ratio=compression_ratio,
            words=words,
        )

    def _language(self, encoder_output: Any, language: str | None) -> tuple[str, float]:
        if not self._multilingual:
            if language not in (None, "en"):
                raise ValueError(f"{self._capabilities.name} only transcribes English")
            return "en", 1.0
        if language is not None:
            return language, 1.0
        token, probability = self._model.model.detect_language(encoder_output)[0][0]
        return token[2:-2], float(probability)

    def _prompt(
        self, tokenizer: Tokenizer, prefix_tokens: list[int], hotwords: tuple[str, ...]
    ) -> list[int]:
        """<|startofprev|> hotwords, start of transcript, no timestamps, prefix."""
        prompt: list[int] = []
        if hotwords:
            prompt.append(tokenizer.sot_prev)
            prompt += _encode(tokenizer, ", ".join(hotwords), self._model.max_length // 4)
        prompt += tokenizer.sot_sequence
        prompt.append(tokenizer.no_timestamps)
        return prompt + prefix_tokens

    def _generate(
        self, encoder_output: Any, prompt: list[int], tokenizer: Tokenizer, options: DecodeOptions
    ) -> tuple[Any, float, float]:
        """Greedy/beam decode with faster-whisper's temperature fallback rule."""
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        suppress = get_suppressed_tokens(tokenizer, [-1])
        tries: list[tuple[Any, float, float]] = []
        for temperature in options.temperatures or (0.0,):
            sampling: dict[str, Any] = (
                {"beam_size": 1, "num_hypotheses": 1, "sampling_topk": 0,
                 "sampling_temperature": temperature}
                if temperature > 0
                else {"beam_size": options.beam_size}
            )
            result = self._model.model.generate(
                encoder_output,
                [prompt],
                max_length=self._model.max_length,
                return_scores=True,
                return_no_speech_prob=True,
                suppress_blank=True,
                suppress_tokens=suppress,
                **sampling,
            )[0]
            tokens = result.sequences_ids[0]
            avg_logprob = float(result.scores[0]) * len(tokens) / (len(tokens) + 1)
            ratio = get_compression_ratio(tokenizer.decode(tokens).strip())
            tries.append((result, avg_logprob, ratio))
            silent = result.no_speech_prob > NO_SPEECH_LIMIT and avg_logprob < LOGPROB_LIMIT
            if silent or (ratio <= COMPRESSION_RATIO_LIMIT and avg_logprob >= LOGPROB_LIMIT):
                return tries[-1]
        sane = [t for t in tries if t[2] <= COMPRESSION_RATIO_LIMIT] or tries
        return max(sane, key=lambda t: t[1])

    def _align(
        self,
        tokenizer: Tokenizer,
        tokens: list[int],
        encoder_output: Any,
        num_frames: int,
        num_samples: int,
    ) -> tuple[WordTiming, ...]:
        duration_s = num_samples / SAMPLE_RATE_HZ
        segment: dict[str, Any] = {"seek": 0, "start": 0.0, "end": duration_s, "tokens": tokens}
        self._model.add_word_timestamps(
            [[segment]],
            tokenizer,
            encoder_output,
            num_frames,
            PREPEND_PUNCTUATIONS,
            APPEND_PUNCTUATIONS,
            last_speech_timestamp=0.0,
        )
        return tuple(
            WordTiming(
                word=w["word"].strip(),
                start_s=min(float(w["start"]), duration_s),
                end_s=min(float(w["end"]), duration_s),
                probability=float(w["probability"]),
            )
            for w in segment.get("words", [])
            if w["word"].strip()
        )


def _encode(tokenizer: Tokenizer, text: str, limit: int) -> list[int]:
    text = text.strip()
    return tokenizer.encode(" " + text)[:limit] if text else []
