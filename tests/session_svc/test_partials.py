"""The coalescing translator of stable prefixes (translated partials), on a fake clock."""

from __future__ import annotations

import asyncio

from dragoman.errors import Unavailable
from session_svc.partials import Partial, Partials

INTERVAL_S = 1.0


class Clock:
    """Time that passes only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


class Translator:
    """Each translation waits until the test lets it finish (`release`)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.started: list[tuple[str, float]] = []
        self.cancelled: list[str] = []
        self.gates: list[asyncio.Event] = []
        self.fail = False

    async def __call__(self, text: str) -> str:
        self.started.append((text, self.clock.now))
        gate = asyncio.Event()
        self.gates.append(gate)
        try:
            await gate.wait()
        except asyncio.CancelledError:
            self.cancelled.append(text)
            raise
        if self.fail:
            raise Unavailable("mt is down")
        return text.upper()

    async def release(self) -> None:
        for gate in self.gates:
            gate.set()
        for _ in range(5):
            await asyncio.sleep(0)


def _make() -> tuple[Partials[str], Translator, list[tuple[int, str, str]]]:
    clock = Clock()
    translator = Translator(clock)
    emitted: list[tuple[int, str, str]] = []
    partials = Partials(translator, lambda p, t: emitted.append((p.utterance_index, p.text, t)),
                        INTERVAL_S, clock=clock, sleep=clock.sleep)
    return partials, translator, emitted


def _p(index: int, text: str, stability: float = 0.5) -> Partial:
    return Partial(index, text, len(text.split()), stability)


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_one_pending_at_most_and_the_newest_wins() -> None:
    partials, translator, emitted = _make()
    partials.offer(_p(0, "one"))
    await _settle()
    assert [t for t, _ in translator.started] == ["one"]  # the first goes at once
    partials.offer(_p(0, "one two"))
    partials.offer(_p(0, "one two three"))  # replaces "one two", never translated
    await _settle()
    assert len(translator.started) == 1  # one in flight, one pending: nothing more started
    await translator.release()
    await _settle()
    await translator.release()
    await _settle()
    assert [t for t, _ in translator.started] == ["one", "one two three"]
    assert emitted == [(0, "one", "ONE"), (0, "one two three", "ONE TWO THREE")]
    await partials.aclose()


async def test_translations_start_at_most_once_per_interval() -> None:
    partials, translator, _ = _make()
    for n in range(1, 6):
        partials.offer(_p(0, " ".join(["w"] * n)))
        await _settle()
        await translator.release()
        await _settle()
    starts = [at for _, at in translator.started]
    assert len(starts) >= 2
    assert all(b - a >= INTERVAL_S for a, b in zip(starts, starts[1:], strict=False))
    await partials.aclose()


async def test_a_prefix_that_did_not_grow_by_a_word_is_not_translated() -> None:
    partials, translator, emitted = _make()
    partials.offer(_p(0, "one two"))
    await _settle()
    await translator.release()
    partials.offer(_p(0, "one two,"))  # punctuation only: same words
    partials.offer(_p(0, "one"))
    await _settle()
    assert [t for t, _ in translator.started] == ["one two"] and len(emitted) == 1
    partials.offer(_p(1, "next"))  # a new utterance counts from zero
    await _settle()
    await translator.release()
    await _settle()
    assert emitted[-1] == (1, "next", "NEXT")
    await partials.aclose()


async def test_the_final_supersedes_what_is_pending_or_in_flight() -> None:
    partials, translator, emitted = _make()
    partials.offer(_p(0, "one"))
    await _settle()
    partials.offer(_p(0, "one two"))  # pending
    partials.close(0)  # the final of utterance 0 came
    partials.offer(_p(0, "one two three"))  # a late partial of it: ignored
    await translator.release()
    await _settle()
    await translator.release()
    await _settle()
    assert [t for t, _ in translator.started] == ["one"] and emitted == []
    assert translator.cancelled == ["one"]  # the final's translation need not wait for it
    partials.offer(_p(1, "after"))  # the next utterance goes on
    await _settle()
    await translator.release()
    await _settle()
    assert emitted == [(1, "after", "AFTER")]
    await partials.aclose()


async def test_a_failed_partial_translation_is_dropped_and_the_next_goes() -> None:
    partials, translator, emitted = _make()
    translator.fail = True
    partials.offer(_p(0, "one"))
    await _settle()
    await translator.release()
    await _settle()
    translator.fail = False
    partials.offer(_p(0, "one two"))
    await _settle()
    await translator.release()
    await _settle()
    assert emitted == [(0, "one two", "ONE TWO")]
    await partials.aclose()
