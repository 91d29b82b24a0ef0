"""Hallucination guards: decide whether a decoded utterance is real speech.

Whisper invents text for silence and noise ("Thank you.", loops of one
phrase). The segmenter already keeps audio the VAD never flags away from the
decoder; these checks catch the rest from the decoder's own signals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stt_svc.engines.base import Transcription


class Rejection(str):
    """Why a transcription was dropped: the message, and its `kind` for metrics
    (empty, no_speech, repetitive, loop, too_fast)."""

    kind: str

    def __new__(cls, kind: str, message: str) -> Rejection:
        self = super().__new__(cls, message)
        self.kind = kind
        return self


@dataclass(frozen=True, slots=True)
class GuardOptions:
    """Thresholds (Whisper's own defaults where it has them)."""

    no_speech: tuple[tuple[float, float], ...] = ((0.0, 0.6), (-1.0, 0.5), (-1.5, 0.35))
    """(avg_logprob below, no_speech_prob above) pairs, each enough to reject. Whisper
    skips a window at (-1.0, 0.6). On silence, noise and music Whisper says "you",
    "Thank you." or "I'm sorry." with no_speech_prob 0.45-0.95; on FLEURS speech,
    even cut after 1 s, it stays under 0.6, and under 0.25 wherever avg_logprob is
    below -1.5."""
    max_compression_ratio: float = 2.4
    """gzip ratio above this is a repetition loop."""
    max_repeats: int = 3
    """A 2-4 word phrase repeated back to back more often than this is a loop (one word: +1)."""
    max_words_per_s: float = 7.0
    """More words per second of audio than anyone speaks."""


_WORD = re.compile(r"[^\w']+")


def normalised_words(text: str) -> list[str]:
    """Lower case words without punctuation, for comparisons."""
    return [w for w in (_WORD.sub("", w.casefold()) for w in text.split()) if w]


def has_repetition_loop(words: list[str], max_repeats: int) -> bool:
    """True if some 1-4 word phrase repeats back to back too often."""
    for n in range(1, 5):
        limit = max_repeats + 1 if n == 1 else max_repeats
        for start in range(len(words) - n * (limit + 1) + 1):
            phrase = words[start : start + n]
            repeats = 1
            while words[start + repeats * n : start + (repeats + 1) * n] == phrase:
                repeats += 1
                if repeats > limit:
                    return True
    return False


def repeated_tail(words: list[str], min_words: int = 5) -> int | None:
    """Where a phrase of `min_words` or more words that comes twice in a row repeats
    (the index of its second copy), or None.

    Whisper given a short window sometimes reads the utterance twice ("Fue tanta la
    cantidad de gente. Fue tanta la cantidad de gente. F"); nobody says five words
    twice in a row.
    """
    keys = normalised_words(" ".join(words))
    if len(keys) != len(words):  # punctuation-only tokens: compare as written instead
        keys = [w.casefold() for w in words]
    for start in range(len(keys)):
        for n in range(min_words, (len(keys) - start) // 2 + 1):
            if keys[start : start + n] == keys[start + n : start + 2 * n]:
                return start + n
    return None


def rejection(
    result: Transcription, audio_s: float, options: GuardOptions | None = None,
    speech_heard: bool = False,
) -> Rejection | None:
    """Why `result` should be dropped, or None to keep it. `speech_heard`: words of this audio
    passed the guards before (partials agreed on them), so the no-speech check is moot: quiet
    speech raises no_speech_prob, and a final read with confidence was dropped for it, its
    last sentence with it (bench/results/stt_levels.md)."""
    o = options or GuardOptions()
    words = normalised_words(result.text)
    if not words:
        return Rejection("empty", "empty transcript")
    if not speech_heard and any(
        result.avg_logprob < logprob and result.no_speech_prob > no_speech
        for logprob, no_speech in o.no_speech
    ):
        return Rejection(
            "no_speech",
            f"no speech (p={result.no_speech_prob:.2f}, logprob={result.avg_logprob:.2f})",
        )
    if result.compression_ratio > o.max_compression_ratio:
        return Rejection(
            "repetitive", f"repetitive text (compression ratio {result.compression_ratio:.2f})"
        )
    if has_repetition_loop(words, o.max_repeats):
        return Rejection("loop", "repetition loop")
    if audio_s > 0 and len(words) > o.max_words_per_s * max(audio_s, 1.0):
        return Rejection("too_fast", f"{len(words)} words in {audio_s:.1f} s of audio")
    return None
