"""Hallucination guards: decide whether a decoded utterance is real speech.

Whisper invents text for silence and noise ("Thank you.", loops of one
phrase). The segmenter already keeps audio the VAD never flags away from the
decoder; these checks catch the rest from the decoder's own signals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stt_svc.engines.base import Transcription


@dataclass(frozen=True, slots=True)
class GuardOptions:
    """Thresholds (Whisper's own defaults where it has them)."""

    no_speech_prob: float = 0.5
    """Rejected when no_speech_prob is above this and ..."""
    min_avg_logprob: float = -1.0
    """... the average log probability is below this (Whisper: 0.6 and -1.0)."""
    max_no_speech_prob: float = 0.6
    """Rejected when no_speech_prob is above this, however sure the words are: on
    silence, noise and music Whisper says "you" or "Thank you." with a fair log
    probability (no_speech_prob 0.6-0.95), on real utterances it stays under 0.3."""
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


def rejection(
    result: Transcription, audio_s: float, options: GuardOptions | None = None
) -> str | None:
    """Why `result` should be dropped, or None to keep it."""
    o = options or GuardOptions()
    words = normalised_words(result.text)
    if not words:
        return "empty transcript"
    if result.no_speech_prob > o.max_no_speech_prob or (
        result.no_speech_prob > o.no_speech_prob and result.avg_logprob < o.min_avg_logprob
    ):
        return f"no speech (p={result.no_speech_prob:.2f}, logprob={result.avg_logprob:.2f})"
    if result.compression_ratio > o.max_compression_ratio:
        return f"repetitive text (compression ratio {result.compression_ratio:.2f})"
    if has_repetition_loop(words, o.max_repeats):
        return "repetition loop"
    if audio_s > 0 and len(words) > o.max_words_per_s * max(audio_s, 1.0):
        return f"{len(words)} words in {audio_s:.1f} s of audio"
    return None
