"""Speech a final's words do not cover, and splicing the re-decoded words back in.

One no-timestamps generate per utterance sometimes ends early or starts late:
Whisper given two sentences may transcribe only one (issue #28: a 9.2 s
utterance came back as its first sentence; the same audio without the forced
prefix came back as its second). The final's words are aligned to the audio,
so a stretch of the VAD's speech with no word in it (before the first word,
between two words, after the last) is speech nobody transcribed; the stream
decodes that stretch alone and splices its words in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from stt_svc.engines.base import WordTiming
from stt_svc.guards import normalised_words

MIN_GAP_S = 1.0
"""Speech without a word this long is a lost stretch: inside an utterance nobody pauses longer
than the endpoint silence (300 ms), and alignment errors stay under half a second."""
MARGIN_S = 0.1
"""Audio kept on each side of a gap when it is re-decoded, for the onsets and endings of the
neighbouring words (a word read twice is dropped when spliced)."""


@dataclass(frozen=True, slots=True)
class Gap:
    """A stretch of an utterance's audio, in seconds from its start, and where its words go."""

    start_s: float
    end_s: float
    index: int
    """Position in the word list that its words are inserted at."""


def gaps(words: Sequence[WordTiming], speech_end_s: float, min_gap_s: float = MIN_GAP_S) -> list[Gap]:
    """Stretches of speech (0 to `speech_end_s`) longer than `min_gap_s` that no word covers."""
    if not words:
        return [Gap(0.0, speech_end_s, 0)] if speech_end_s >= min_gap_s else []
    found: list[Gap] = []
    edges = [0.0] + [w.end_s for w in words]
    starts = [w.start_s for w in words] + [speech_end_s]
    for i, (after, before) in enumerate(zip(edges, starts, strict=True)):
        if before - after >= min_gap_s:
            found.append(Gap(after, before, i))
    return found


def splice(
    words: Sequence[WordTiming], gap: Gap, found: Sequence[WordTiming], offset_s: float
) -> tuple[WordTiming, ...]:
    """`words` with `found` (timed from `offset_s`) inserted where the gap is; a first or last
    found word equal to its neighbour is that word heard again in the margin: dropped."""
    moved = list(shifted(found, offset_s))
    before, after = list(words[: gap.index]), list(words[gap.index :])
    if moved and before and _same(moved[0], before[-1]):
        moved = moved[1:]
    if moved and after and _same(moved[-1], after[0]):
        moved = moved[:-1]
    return tuple(before + moved + after)


def shifted(words: Sequence[WordTiming], offset_s: float) -> tuple[WordTiming, ...]:
    """`words` timed from `offset_s` earlier (from the start of a longer audio)."""
    return tuple(replace(w, start_s=w.start_s + offset_s, end_s=w.end_s + offset_s) for w in words)


def text_of(words: Sequence[WordTiming]) -> str:
    return " ".join(w.word for w in words)


def _same(a: WordTiming, b: WordTiming) -> bool:
    return normalised_words(a.word) == normalised_words(b.word)
