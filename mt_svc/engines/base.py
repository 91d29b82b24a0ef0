"""The text translation engine interface and the records it takes and returns.

An engine translates a batch of texts for one of the language pairs it
serves directly. Routing (pivoting through English), validation, whitespace
framing and admission control belong to the service, not the engine: an
engine gets only non-empty, stripped texts for a pair listed in its
`capabilities`. Blocking model calls run on the engine's own executor,
never on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

Pair = tuple[str, str]
"""(source, target) product language codes, e.g. ("en", "pt")."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What an installed engine offers.

    Attributes:
        name: Engine name as in `settings.mt.engines` and `Translation.engine`.
        version: Version of the software and/or models.
        license: SPDX-style licence of the models it runs.
        pairs: The (source, target) pairs it translates directly.
    """

    name: str
    version: str
    license: str
    pairs: frozenset[Pair]


@dataclass(frozen=True, slots=True)
class Offer:
    """What an engine could serve once installed, and how to install each pair.

    Attributes:
        name: Engine name.
        license: Licence of its models.
        install: For each pair it can serve, the command that installs it.
        setting: The settings.mt.engines entry that enables it (default: `name`).
    """

    name: str
    license: str
    install: dict[Pair, str]
    setting: str = ""


@dataclass(frozen=True, slots=True)
class TranslationBatch:
    """Texts to translate from `source` to `target` (product codes, e.g. "en", "pt")."""

    source: str
    target: str
    texts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Scored:
    """A translation and how sure the model was of it.

    Attributes:
        text: The translation.
        confidence: The geometric mean of the model's token probabilities, in
            (0, 1]; None when the engine gives no score.
    """

    text: str
    confidence: float | None = None


class MtEngine(Protocol):
    """A text translation engine."""

    @property
    def capabilities(self) -> Capabilities:
        """Name, version, licence and the pairs installed here."""
        ...

    async def translate(self, batch: TranslationBatch) -> list[str]:
        """One translation per text of `batch`, in the same order.

        Raises `dragoman.errors.Unavailable` when the engine fails in a way a
        retry may fix (e.g. a crashed subprocess, restarted on the next call).
        """
        ...

    async def close(self) -> None:
        """Releases processes, threads and models."""
        ...


@runtime_checkable
class ScoringEngine(MtEngine, Protocol):
    """An engine that also says how sure it is of each translation (CTranslate2's do;
    Bergamot and Apertium give no score)."""

    async def translate_scored(self, batch: TranslationBatch) -> list[Scored]:
        """`translate` with each text's confidence."""
        ...
