"""Why a streamed transcript is wrong: each word error put in one class.

`classify` aligns the finals of a stream (words tagged with their
utterance) and a whole-utterance decode of the same audio with the
reference (jiwer's `process_words`, so its errors are the WER's: one per
substituted, deleted or inserted word), and labels every streamed error
with the first class that fits, in this order:

* `model_error`: the whole-utterance decode makes it too (the same
  reference word wrong or missing, or an insertion at the same place);
* `boundary_duplicate`: an inserted word within a run of words that repeats
  across a cut (the end of one utterance's final equals the start of the next);
* `boundary_loss`: a reference word missing (in a deletion run of at most
  SHORT_RUN words) or substituted within BOUNDARY_WORDS words of a cut;
* `forced_prefix`: an error inside the forced stable prefix of its
  utterance: the words on which two successive partials agreed (the
  LocalAgreement rule stt_svc applies), which the final must start with;
  and the errors right after it in the same run of errors, that would
  otherwise be `other` (the rest of the same misreading);
* `premature_end`: a deletion run longer than SHORT_RUN words (a sentence
  that vanished), or any deletion after the last final word of the stream
  (its audio ended before the words did);
* `tail_hallucination`: inserted words that end an utterance's final;
* `other`: the rest, with a note saying what it looks like: a substitution,
  a short deletion or an insertion inside an utterance, and whether that
  utterance's final was decoded after a forced prefix (the error lies past
  it) or without one; an insertion within 2 words of a cut says so.

The inputs are words already normalised the way the WER is computed. The
function is pure: no audio, no model, no clock.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import jiwer

CLASSES = (
    "boundary_loss", "boundary_duplicate", "forced_prefix", "premature_end",
    "tail_hallucination", "model_error", "other",
)
BOUNDARY_WORDS = 2
"""A missing word this close to a cut (in words of the finals) is lost at the cut."""
SHORT_RUN = 4
"""Deletion runs up to this long can be a cut's loss; longer ones are a vanished sentence."""
MAX_REPEAT = 3
"""Longest run of words checked for repetition across a cut."""


@dataclass(frozen=True, slots=True)
class Aligned:
    """One step of the alignment of the finals with the reference."""

    op: str
    """equal, substitute, delete or insert"""
    ref: str | None
    hyp: str | None
    utterance: int | None
    """Utterance of the final word (for a deletion: of the final word before the gap)."""
    label: str | None = None
    """The error's class; None for a correct word."""
    note: str = ""


@dataclass(frozen=True, slots=True)
class Diagnosis:
    alignment: tuple[Aligned, ...]
    reference_words: int
    whole_errors: int
    """Errors of the whole-utterance decode against the same reference."""
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(self.counts.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "reference_words": self.reference_words, "errors": self.errors,
            "whole_errors": self.whole_errors, "counts": self.counts,
            "alignment": [{k: v for k, v in asdict(a).items() if v not in (None, "")}
                          for a in self.alignment],
        }


def forced_prefix_length(partials: Sequence[str]) -> int:
    """Words of the stable prefix after these partials (in order): the longest run on which
    two successive partials agreed, as LocalAgreement-2 grows it."""
    stable = 0
    previous: list[str] = []
    for text in partials:
        words = text.split()
        agreed = 0
        for before, now in zip(previous, words, strict=False):
            if before != now:
                break
            agreed += 1
        stable = max(stable, agreed)
        previous = words
    return stable


def _ops(reference: Sequence[str], hypothesis: Sequence[str]) -> list[tuple[str, int | None, int | None]]:
    """(op, reference index, hypothesis index) per word; a deletion carries the hypothesis
    gap it sits before, an insertion the reference gap."""
    if not reference:
        return [("insert", 0, j) for j in range(len(hypothesis))]
    out = jiwer.process_words(" ".join(reference), " ".join(hypothesis))
    ops: list[tuple[str, int | None, int | None]] = []
    for chunk in out.alignments[0]:
        i0, i1, j0, j1 = chunk.ref_start_idx, chunk.ref_end_idx, chunk.hyp_start_idx, chunk.hyp_end_idx
        if chunk.type in ("equal", "substitute"):
            ops += [(chunk.type, i0 + k, j0 + k) for k in range(i1 - i0)]
        elif chunk.type == "delete":
            ops += [("delete", i, j0) for i in range(i0, i1)]
        else:
            ops += [("insert", i0, j) for j in range(j0, j1)]
    return ops


def classify(
    reference: Sequence[str],
    finals: Sequence[tuple[str, int]],
    partials: Mapping[int, Sequence[str]],
    whole: Sequence[str],
    prefix_words: Mapping[int, int] | None = None,
) -> Diagnosis:
    """Labels every error of `finals` against `reference` (see the module's docstring).

    `finals`: the words of every final in order, each with its utterance index;
    `partials`: per utterance index, its partial transcripts in order;
    `whole`: the words of the whole-utterance decode of the same audio;
    `prefix_words`: per utterance index, the words of the stable prefix its final was forced
    to start with (the last partial's), where known; else LocalAgreement-2 over `partials`.
    """
    hyp = [w for w, _ in finals]
    utt = [u for _, u in finals]
    cuts = [j for j in range(1, len(hyp)) if utt[j] != utt[j - 1]]
    starts = {u: utt.index(u) for u in dict.fromkeys(utt)}
    ends = {u: len(utt) - utt[::-1].index(u) for u in starts}
    prefix = {
        u: prefix_words[u] if prefix_words is not None and u in prefix_words
        else forced_prefix_length(partials.get(u, ()))
        for u in starts
    }

    whole_ops = _ops(reference, whole)
    whole_right = {i for op, i, _ in whole_ops if op == "equal"}
    whole_inserted = Counter(i for op, i, _ in whole_ops if op == "insert")
    repeated: set[int] = set()
    for b in cuts:
        for n in range(1, MAX_REPEAT + 1):
            if b - n >= 0 and b + n <= len(hyp) and hyp[b - n : b] == hyp[b : b + n]:
                repeated.update(range(b - n, b + n))

    ops = _ops(reference, hyp)
    inserted = {j for op, _, j in ops if op == "insert"}
    runs: dict[int, int] = {}  # reference index -> length of its deletion run
    run: list[int] = []
    for op, i, _ in [*ops, ("end", None, None)]:
        if op == "delete" and i is not None:
            run.append(i)
            continue
        runs.update(dict.fromkeys(run, len(run)))
        run = []

    def near_cut(gap: float) -> bool:
        return any(abs(gap - b) <= BOUNDARY_WORDS for b in cuts)

    def in_prefix(j: int) -> bool:
        u = utt[j]
        return j - starts[u] < prefix[u]

    def after_prefix(j: int) -> str:
        """How `other` errors differ: whether the final had to start with a forced prefix."""
        return " after a forced prefix" if prefix[utt[j]] else ", no forced prefix"

    aligned: list[Aligned] = []
    for op, i, j in ops:
        ref_word = reference[i] if op != "insert" and i is not None else None
        hyp_word = hyp[j] if op != "delete" and j is not None else None
        if op == "equal":
            aligned.append(Aligned(op, ref_word, hyp_word, utt[j] if j is not None else None))
            continue
        label, note = "other", ""
        if op == "insert":
            assert i is not None and j is not None
            u = utt[j]
            if j in repeated:
                label = "boundary_duplicate"
            elif whole_inserted[i] > 0:
                whole_inserted[i] -= 1
                label = "model_error"
            elif in_prefix(j):
                label = "forced_prefix"
            elif all(k in inserted for k in range(j, ends[u])):
                label = "tail_hallucination"
            else:
                note = "insertion within 2 words of a cut" if near_cut(j + 0.5) else (
                    f"insertion{after_prefix(j)}")
            aligned.append(Aligned(op, None, hyp_word, u, label, note))
            continue
        assert i is not None and j is not None
        inside = 0 < j < len(hyp) and utt[j] == utt[j - 1]
        if i not in whole_right:
            label = "model_error"
        elif op == "substitute":
            if near_cut(j + 0.5):  # the word itself sits between gaps j and j + 1
                label = "boundary_loss"
            elif in_prefix(j):
                label = "forced_prefix"
            else:
                note = f"substitution{after_prefix(j)}"
        elif runs[i] <= SHORT_RUN and near_cut(j):  # a deletion before hypothesis word j
            label = "boundary_loss"
        elif inside and in_prefix(j):
            label = "forced_prefix"
        elif runs[i] > SHORT_RUN or j == len(hyp):
            label = "premature_end"
        else:
            note = f"short deletion{after_prefix(j)}" if inside else "deletion before the first final"
        # a deletion belongs to the utterance of the final word before its gap
        owner = utt[j] if op == "substitute" else (utt[j - 1] if j > 0 else None)
        aligned.append(Aligned(op, ref_word, hyp_word, owner, label, note))
    # The words after a prefix error that belong to the same misreading ("dinosaurs" forced
    # into "a nurse", then "or as" to fill the audio) share its cause.
    region_start = 0
    for k in range(len(aligned) + 1):
        if k < len(aligned) and aligned[k].op != "equal":
            continue
        region = aligned[region_start:k]
        if any(a.label == "forced_prefix" for a in region):
            for n, a in enumerate(region, start=region_start):
                if a.label == "other":
                    aligned[n] = replace(a, label="forced_prefix", note="")
        region_start = k + 1
    counts = dict.fromkeys(CLASSES, 0)
    for a in aligned:
        if a.label is not None:
            counts[a.label] += 1
    whole_errors = sum(1 for op, _, _ in whole_ops if op != "equal")
    return Diagnosis(tuple(aligned), len(reference), whole_errors, counts)
