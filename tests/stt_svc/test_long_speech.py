"""Long speech through a real stt_svc: no sentence may vanish (issue #28).

Several FLEURS sentences of one language, their leading and trailing silence
cut off, follow each other with 0.2 s pauses; with a 1 s endpoint silence the
segmenter makes long utterances and cuts them for length, and each decode
holds several sentences: the case where one no-timestamps generate used to
stop after the first. Audio goes at four
times real time with partial results on, so forced prefixes are in play.
Every sentence must be heard: at least MIN_HEARD of its words found in the
finals, in order (whisper-base misspells names, so not all of them).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from dragoman.stt.v1 import stt_pb2_grpc
from tests.helpers import normalise
from tests.stt_svc.conftest import clip, final_text, finals, recognize, requests, silence, stream_config

MIN_HEARD = 0.7
PAUSE_S = 0.2
ENDPOINT_MS = 1000
"""Longer than the readers' pauses: utterances of several sentences, cut for length."""
PACE_S = 0.025
"""Sleep after each 100 ms chunk: four times real time."""


def heard(references: Sequence[str], hypothesis: str) -> list[float]:
    """Per reference sentence, the share of its words that the longest in-order match of all
    references against `hypothesis` finds."""
    sentences = [normalise(r).split() for r in references]
    flat = [w for s in sentences for w in s]
    owner = [i for i, s in enumerate(sentences) for _ in s]
    matched = [0] * len(sentences)
    matcher = difflib.SequenceMatcher(None, flat, normalise(hypothesis).split(), autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.a, block.a + block.size):
            matched[owner[k]] += 1
    return [m / len(s) for m, s in zip(matched, sentences, strict=True)]


def spoken(audio: np.ndarray) -> np.ndarray:
    """The clip from 0.1 s before its first loud sample to 0.1 s after its last (FLEURS
    clips hold up to 2 s of silence around the sentence)."""
    loud = np.flatnonzero(np.abs(audio) > 0.02)
    return audio[max(0, loud[0] - 1600) : loud[-1] + 1600]


def test_heard_counts_words_in_order() -> None:
    assert heard(["a b c d", "e f g h"], "a b c d e f g h") == [1.0, 1.0]
    assert heard(["a b c d", "e f g h"], "A, b. c d") == [1.0, 0.0]
    assert heard(["a b c d", "e f g h"], "e f g h a b") == [0.0, 1.0]


@pytest.mark.parametrize(
    ("language", "names"),
    [
        ("pt", ["fleurs-pt-001", "fleurs-pt-004", "fleurs-pt-000"]),
        ("es", ["fleurs-es-002", "fleurs-es-003", "fleurs-es-000", "fleurs-es-004"]),
    ],
)
async def test_every_sentence_arrives(
    stt: stt_pb2_grpc.SpeechToTextServiceStub, fleurs: Path, language: str, names: list[str]
) -> None:
    pieces = []
    for name in names:
        pieces += [spoken(clip(fleurs, name)), silence(PAUSE_S)]
    audio = np.concatenate([*pieces, silence(2.0)])
    references = [(fleurs / f"{name}.txt").read_text() for name in names]
    responses = await recognize(
        stt, requests(stream_config(language, interim=True, endpoint_ms=ENDPOINT_MS), audio),
        pause_s=PACE_S,
    )
    text = final_text(responses)
    shares = heard(references, text)
    for f in finals(responses):
        print(f.utterance_index, f.start_offset.ToNanoseconds() / 1e9,
              f.end_offset.ToNanoseconds() / 1e9, f.transcript)
    assert min(shares) >= MIN_HEARD, (shares, text)
