"""faster-whisper (CTranslate2) engine: one Whisper model, one window per utterance.

Utterances from the segmenter are shorter than Whisper's 30 s window, so a
decode is one encoder pass and one greedy (or beam) generate. The encoder
gets the utterance padded to the next multiple of WINDOW_STEP_S rather than
to 30 s (CTranslate2 takes shorter inputs; the encoder's cost is in
proportion), as whisper.cpp's `audio_ctx` does. Running the
steps ourselves instead of `WhisperModel.transcribe` lets one encoder pass
serve language identification, decoding and word alignment, lets the stable
prefix of partial results be forced as a decoder prefix (keeping word timings
for the prefix words too), and lets the utterances of several streams share
one call: `transcribe_batch` encodes those with windows of the same length
as one batch and generates for all of them at once, as faster-whisper's
BatchedInferencePipeline does for the chunks of one file. CTranslate2 takes a
different prompt (language, forced prefix) per item, but wants
<|startoftranscript|> at the same position in all of them, so requests with
hotwords of different lengths go in separate generate calls. Each answer is
the same as a decode of that utterance alone.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dragoman.devices import Device
from stt_svc import guards
from stt_svc.engines.base import (
    Capabilities,
    DecodeOptions,
    DecodeRequest,
    Transcription,
    WordTiming,
)

if TYPE_CHECKING:
    import ctranslate2
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer

log = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 16_000
CPU = Device("cpu")
# Same thresholds as faster-whisper's temperature fallback.
COMPRESSION_RATIO_LIMIT = 2.4
LOGPROB_LIMIT = -1.0
NO_SPEECH_LIMIT = 0.6
WINDOW_STEP_S = 10.0
"""Encoder windows are the audio plus a fifth of this, rounded up to whole steps (at
most Whisper's 30 s); 0 pads every window to 30 s as Whisper was trained. On the
FLEURS utterances 10 s windows give the WER of 30 s ones (+-2 points a language)
in a third to a fifth of the time; 5 s windows make Whisper repeat itself."""
MAX_TOKENS_PER_S = 12
"""Generated tokens per second of audio, at most: the guards drop anything above 7
words a second anyway, and a decoder caught in a repetition loop (Whisper's way to
fail on a cut-off word) would otherwise run to 448 tokens, seconds on a CPU."""
MIN_NEW_TOKENS = 10
UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})
"""Written without spaces: faster-whisper times their words one character at a time."""
PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"


@dataclass(frozen=True, slots=True)
class _Window:
    """One utterance's features, padded to its encoder window."""

    features: np.ndarray
    num_frames: int
    num_samples: int


@dataclass(slots=True)
class _Attempt:
    """One generate result of one utterance, with the fallback rule's signals."""

    result: Any  # ctranslate2.models.WhisperGenerationResult
    avg_logprob: float
    compression_ratio: float

    @property
    def degenerate(self) -> bool:
        silent = self.result.no_speech_prob > NO_SPEECH_LIMIT and self.avg_logprob < LOGPROB_LIMIT
        return not silent and (
            self.compression_ratio > COMPRESSION_RATIO_LIMIT or self.avg_logprob < LOGPROB_LIMIT
        )


class WhisperEngine:
    """A faster-whisper model loaded from `path` (int8 on the CPU, float16 on a GPU)."""

    def __init__(
        self,
        path: str | Path,
        *,
        name: str,
        cpu_threads: int,
        window_step_s: float = WINDOW_STEP_S,
        device: Device = CPU,
    ) -> None:
        from faster_whisper import WhisperModel

        path = Path(path)
        if not (path / "model.bin").is_file():
            raise FileNotFoundError(f"no Whisper model in {path} (model.bin missing)")
        kind, index = device.ctranslate2()
        self._model: WhisperModel = WhisperModel(
            str(path), device=kind, device_index=index, compute_type="float16" if device.gpu else "int8",
            cpu_threads=cpu_threads, num_workers=1,
        )
        self._multilingual = bool(self._model.model.is_multilingual)
        self._tokenizers: dict[tuple[str, str], Tokenizer] = {}
        self._window_step_s = window_step_s
        self._capabilities = Capabilities(
            name=name,
            engine="faster-whisper",
            languages=tuple(  # faster-whisper lists large-v3's codes too; keep the model's own
                code for code in self._model.supported_languages
                if self._model.hf_tokenizer.token_to_id(f"<|{code}|>") is not None
            ),
            detects_language=self._multilingual,
            translates_to_english=self._multilingual,
            max_audio_s=self._model.feature_extractor.n_samples / SAMPLE_RATE_HZ,
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def warm_up(self) -> None:
        """Decodes silence then a tone, alone and as a batch, so the first real call is not slow."""
        t = np.arange(SAMPLE_RATE_HZ, dtype=np.float32) / SAMPLE_RATE_HZ
        tone = 0.1 * np.sin(2 * np.pi * 440.0 * t).astype(np.float32)
        audio = np.concatenate([np.zeros(SAMPLE_RATE_HZ // 2, np.float32), tone])
        options = DecodeOptions(language="en", word_timestamps=True)
        self.transcribe(audio, options)
        self.transcribe_batch([DecodeRequest(audio, options), DecodeRequest(tone, options)])

    def transcribe(self, audio: np.ndarray, options: DecodeOptions) -> Transcription:
        return self.transcribe_batch([DecodeRequest(audio, options)])[0]

    async def close(self) -> None:
        """Nothing to release: the model goes with the engine."""

    def transcribe_batch(self, requests: Sequence[DecodeRequest]) -> list[Transcription]:
        languages = [self._check_language(r.options) for r in requests]
        windows = [self._window(r.audio, r.options.window_step_s) for r in requests]
        by_length: defaultdict[int, list[int]] = defaultdict(list)
        for i, window in enumerate(windows):
            by_length[window.features.shape[-1]].append(i)
        out: dict[int, Transcription] = {}
        for items in by_length.values():  # one encoder pass per window length
            results = self._transcribe_windows(
                [requests[i] for i in items], [windows[i] for i in items],
                [languages[i] for i in items],
            )
            out.update(zip(items, results, strict=True))
        return [out[i] for i in range(len(requests))]

    def _transcribe_windows(
        self, requests: list[DecodeRequest], windows: list[_Window], languages: list[str | None]
    ) -> list[Transcription]:
        encoded = _Encoded(self._model.encode(np.stack([w.features for w in windows])))
        detected = self._detect(encoded, [i for i, lang in enumerate(languages) if lang is None])
        identified = [
            (lang, 1.0) if lang is not None else detected[i] for i, lang in enumerate(languages)
        ]
        tokenizers = [
            self._tokenizer(lang, r.options.task) for (lang, _), r in zip(identified, requests, strict=True)
        ]
        prompts = [
            self._prompt(tok, r.options) for tok, r in zip(tokenizers, requests, strict=True)
        ]
        limits = [
            min(self._model.max_length, len(prompt) + _max_new_tokens(window))
            for prompt, window in zip(prompts, windows, strict=True)
        ]
        attempts, generated = self._generate(
            encoded, prompts, limits, tokenizers, [r.options for r in requests]
        )
        window_s = windows[0].features.shape[-1] * self._model.feature_extractor.hop_length / SAMPLE_RATE_HZ

        out: list[Transcription] = []
        for i, (request, attempt) in enumerate(zip(requests, attempts, strict=True)):
            tokenizer, window = tokenizers[i], windows[i]
            # CTranslate2 returns the forced prefix as the start of the sequence.
            tokens = [t for t in attempt.result.sequences_ids[0] if t < tokenizer.eot]
            words: tuple[WordTiming, ...] = ()
            if request.options.word_timestamps and tokens:
                words = self._align(tokenizer, tokens, encoded.item(i), window)
            text = tokenizer.decode(tokens).strip()
            cut = guards.repeated_tail(text.split())
            if cut is not None:  # read twice: keep the first reading
                text = " ".join(text.split()[:cut])
                words = words[:cut]
            language, probability = identified[i]
            out.append(Transcription(
                text=text,
                language=language,
                language_probability=probability,
                avg_logprob=attempt.avg_logprob,
                no_speech_prob=float(attempt.result.no_speech_prob),
                compression_ratio=attempt.compression_ratio,
                words=words,
                encoder_audio_s=window_s,
                decoder_tokens=generated[i],
            ))
        return out

    # -- steps ----------------------------------------------------------------------------------

    def _check_language(self, options: DecodeOptions) -> str | None:
        """The language to force (None: identify it); English-only models force "en"."""
        language = options.language
        if self._multilingual:
            return language
        if options.task != "transcribe":
            raise ValueError(f"{self._capabilities.name} only transcribes English; it cannot translate")
        if language not in (None, "en"):
            raise ValueError(f"{self._capabilities.name} only transcribes English")
        return "en"

    def _window(self, audio: np.ndarray, step_s: float | None = None) -> _Window:
        from faster_whisper.audio import pad_or_trim

        step_s = self._window_step_s if step_s is None else step_s
        extractor = self._model.feature_extractor
        audio = np.asarray(audio, dtype=np.float32)[: extractor.n_samples]
        features = extractor(audio)
        num_frames = min(features.shape[-1] - 1, extractor.nb_max_frames)
        length = extractor.nb_max_frames
        if step_s:  # audio + 1/5 step of silence, rounded up to whole steps
            step = round(step_s * SAMPLE_RATE_HZ / extractor.hop_length)
            length = min(length, -(-(num_frames + step // 5) // step) * step)
        return _Window(pad_or_trim(features[:, :num_frames], length), num_frames, len(audio))

    def _detect(self, encoded: _Encoded, items: list[int]) -> dict[int, tuple[str, float]]:
        """Most likely language of each of `items` (multilingual models only)."""
        if not items:
            return {}
        found = self._model.model.detect_language(encoded.subset(items))
        return {i: (pairs[0][0][2:-2], float(pairs[0][1])) for i, pairs in zip(items, found, strict=True)}

    def _tokenizer(self, language: str, task: str) -> Tokenizer:
        """Its <|startoftranscript|> sequence names the language and the task."""
        tokenizer = self._tokenizers.get((language, task))
        if tokenizer is None:
            from faster_whisper.tokenizer import Tokenizer

            tokenizer = Tokenizer(
                self._model.hf_tokenizer, self._multilingual, task=task, language=language
            )
            self._tokenizers[(language, task)] = tokenizer
        return tokenizer

    def _prompt(self, tokenizer: Tokenizer, options: DecodeOptions) -> list[int]:
        """<|startofprev|> hotwords, start of transcript, no timestamps, forced prefix."""
        max_length = self._model.max_length
        prompt: list[int] = []
        if options.hotwords:
            prompt.append(tokenizer.sot_prev)
            prompt += _encode(tokenizer, ", ".join(options.hotwords), max_length // 4)
        prompt += tokenizer.sot_sequence
        prompt.append(tokenizer.no_timestamps)
        return prompt + _encode(tokenizer, options.prefix, max_length // 2 - 1)

    def _generate(
        self,
        encoded: _Encoded,
        prompts: list[list[int]],
        max_lengths: list[int],
        tokenizers: list[Tokenizer],
        options: list[DecodeOptions],
    ) -> tuple[list[_Attempt], list[int]]:
        """Greedy/beam decode with faster-whisper's temperature fallback rule, batched; a
        `fallback_beam_size` try at temperature 0 comes before any sampling (`_steps`); and
        the tokens generated per request over all its attempts (forced prefix not counted).

        Each round generates, in one call per group of compatible requests (same
        sampling, <|startoftranscript|> at the same place), for every request still
        looking for an acceptable answer, at its next temperature. A request stops
        at its `max_lengths` tokens (prompt included); a group at the longest.
        """
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        tries: list[list[_Attempt]] = [[] for _ in prompts]
        chosen: list[_Attempt | None] = [None] * len(prompts)
        steps = [_steps(o) for o in options]
        pending = list(range(len(prompts)))
        generated = [0] * len(prompts)
        # CTranslate2 returns the forced prefix (the prompt after <|notimestamps|>) too
        forced = [len(p) - 1 - p.index(t.no_timestamps) for p, t in zip(prompts, tokenizers, strict=True)]
        while pending:
            groups: defaultdict[tuple[float, int, int], list[int]] = defaultdict(list)
            for i in pending:
                temperature, beam_size = steps[i][len(tries[i])]
                sot = prompts[i].index(tokenizers[i].sot)
                groups[(temperature, beam_size, sot)].append(i)
            for (temperature, beam_size, _), items in groups.items():
                sampling: dict[str, Any] = (
                    {"beam_size": 1, "num_hypotheses": 1, "sampling_topk": 0,
                     "sampling_temperature": temperature}
                    if temperature > 0
                    else {"beam_size": beam_size}
                )
                results = self._model.model.generate(
                    encoded.subset(items),
                    [prompts[i] for i in items],
                    max_length=max(max_lengths[i] for i in items),
                    return_scores=True,
                    return_no_speech_prob=True,
                    suppress_blank=True,
                    suppress_tokens=get_suppressed_tokens(tokenizers[items[0]], [-1]),
                    **sampling,
                )
                for i, result in zip(items, results, strict=True):
                    tokens = result.sequences_ids[0]
                    generated[i] += max(0, len(tokens) - forced[i])
                    text = tokenizers[i].decode(tokens).strip()
                    tries[i].append(_Attempt(
                        result,
                        float(result.scores[0]) * len(tokens) / (len(tokens) + 1),
                        get_compression_ratio(text),
                    ))
            pending = []
            for i, attempts in enumerate(tries):
                if chosen[i] is not None:
                    continue
                if not attempts[-1].degenerate:
                    chosen[i] = attempts[-1]
                elif len(attempts) == len(steps[i]):
                    sane = [a for a in attempts if a.compression_ratio <= COMPRESSION_RATIO_LIMIT]
                    chosen[i] = max(sane or attempts, key=lambda a: a.avg_logprob)
                else:
                    pending.append(i)
        return [c for c in chosen if c is not None], generated

    def _align(
        self,
        tokenizer: Tokenizer,
        tokens: list[int],
        encoder_output: ctranslate2.StorageView,
        window: _Window,
    ) -> tuple[WordTiming, ...]:
        duration_s = window.num_samples / SAMPLE_RATE_HZ
        segment: dict[str, Any] = {"seek": 0, "start": 0.0, "end": duration_s, "tokens": tokens}
        self._model.add_word_timestamps(
            [[segment]],
            tokenizer,
            encoder_output,
            window.num_frames,
            PREPEND_PUNCTUATIONS,
            APPEND_PUNCTUATIONS,
            last_speech_timestamp=0.0,
        )
        spaced = tokenizer.language_code not in UNSPACED_LANGUAGES
        words: list[WordTiming] = []
        for w in segment.get("words", []):
            if not w["word"].strip():
                continue
            timing = WordTiming(
                word=w["word"].strip(),
                start_s=min(float(w["start"]), duration_s),
                end_s=min(float(w["end"]), duration_s),
                probability=float(w["probability"]),
            )
            if spaced and words and not w["word"][:1].isspace():
                # a punctuation token starts a word of its own ("25-30" -> "25", "-30"):
                # join it back so that the words are the text's
                last = words.pop()
                timing = replace(
                    timing, word=last.word + timing.word, start_s=last.start_s,
                    probability=min(last.probability, timing.probability),
                )
            words.append(timing)
        return tuple(words)


class _Encoded:
    """The encoder output of a batch, and of any part of it."""

    def __init__(self, output: ctranslate2.StorageView) -> None:
        self._output = output
        self._size = int(output.shape[0])
        self._array: np.ndarray | None = None

    def subset(self, items: list[int]) -> ctranslate2.StorageView:
        if items == list(range(self._size)):
            return self._output
        import ctranslate2

        if self._array is None:
            self._array = np.asarray(self._output)
        return ctranslate2.StorageView.from_array(np.ascontiguousarray(self._array[items]))

    def item(self, i: int) -> ctranslate2.StorageView:
        return self.subset([i])


def _steps(options: DecodeOptions) -> list[tuple[float, int]]:
    """(temperature, beam size) of each try while the output looks degenerate: the first
    temperature at `beam_size`, a deterministic wider beam if asked, then the other
    temperatures (sampling)."""
    temperatures = options.temperatures or (0.0,)
    steps = [(temperatures[0], options.beam_size)]
    if options.fallback_beam_size > options.beam_size and temperatures[0] == 0:
        steps.append((0.0, options.fallback_beam_size))
    return steps + [(t, options.beam_size) for t in temperatures[1:]]


def _max_new_tokens(window: _Window) -> int:
    """Tokens worth generating for `window`: a repetition loop stops here, not at 448."""
    return MIN_NEW_TOKENS + math.ceil(MAX_TOKENS_PER_S * window.num_samples / SAMPLE_RATE_HZ)


def _encode(tokenizer: Tokenizer, text: str, limit: int) -> list[int]:
    text = text.strip()
    return tokenizer.encode(" " + text)[:limit] if text else []
