"""Apertium rule-based translation (Debian packages `apertium` + one package per pair).

Starting `apertium` costs 100-300 ms per call, so each mode (e.g. eng-spa)
runs as one long-lived pipeline in null-flush mode: a NUL-terminated block
in, a NUL-terminated block out, in a few milliseconds. The `apertium` script
itself cannot be used for that (its text deformatter drops the NUL), so the
engine runs the mode's own command line from `apertium-wblank-mode -z` and
does the deformatting itself: stream-format escapes on the way in, and on the
way out the escapes and superblank brackets are removed. Unknown words are
passed through unmarked (the `-u` of the `apertium` script: generator `-n`).

Blocks are sent one at a time per mode, under a lock; different modes run in
parallel. A pipeline that dies or stalls is killed and restarted on the next
call, and the failing call gets UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterable
from pathlib import Path

from dragoman.errors import FailedPrecondition, Unavailable
from mt_svc.engines.base import Capabilities, Offer, Pair, TranslationBatch

log = logging.getLogger(__name__)

NAME = "apertium"
LICENSE = "GPL-2.0"
DEFAULT_DATADIR = "/usr/share/apertium"
# Apt packages of the pairs among the product languages (Debian 12).
_PACKAGES: dict[Pair, str] = {
    ("en", "es"): "apertium-eng-spa",
    ("es", "pt"): "apertium-es-pt",
    ("fr", "es"): "apertium-fr-es",
    ("es", "it"): "apertium-spa-ita",
}
OFFER = Offer(
    name=NAME,
    license=LICENSE,
    install={
        pair: f"apt-get install -y apertium {package}"
        for (a, b), package in _PACKAGES.items()
        for pair in ((a, b), (b, a))
    },
)
# Mode names use ISO 639-1 or 639-3 codes ("es-pt", "eng-spa").
_ISO639_3 = {
    "eng": "en", "spa": "es", "fra": "fr", "deu": "de", "ita": "it", "por": "pt", "rus": "ru",
    "ara": "ar", "zho": "zh", "jpn": "ja", "kor": "ko", "hin": "hi", "tur": "tr", "nld": "nl",
    "pol": "pl",
}
_MODE = re.compile(r"([a-z]{2,3})-([a-z]{2,3})")
_SPECIAL = re.compile(r"([\\^$@/<>{}\[\]])")  # escaped in the stream format, as apertium-destxt does
_ODD_SPACE = re.compile(r"\s+")
_OUTPUT_MARKUP = re.compile(r"\\(.)|[\[\]]", re.DOTALL)


def mode_pair(mode: str) -> Pair | None:
    """The product pair of a mode name ("eng-spa" -> ("en", "es")), or None (e.g. "spa-eng_US")."""
    match = _MODE.fullmatch(mode)
    if match is None:
        return None
    codes = [_ISO639_3.get(code, code) for code in match.groups()]
    if any(code not in _ISO639_3.values() for code in codes):
        return None
    return codes[0], codes[1]


def to_stream(text: str) -> bytes:
    """Plain text as one null-flush block of the apertium stream format."""
    text = _SPECIAL.sub(r"\\\1", text.replace("\0", " "))
    # Blanks other than one space travel as superblanks, as the deformatter does.
    text = _ODD_SPACE.sub(lambda m: m[0] if m[0] == " " else f"[{m[0]}]", text)
    return f"{text}[]\0".encode()


def from_stream(block: bytes) -> str:
    """Plain text of one output block (without its NUL)."""
    text = _OUTPUT_MARKUP.sub(lambda m: m[1] or "", block.decode(errors="replace"))
    return re.sub(r" {2,}", " ", text).strip()


class NullFlushPipeline:
    """One apertium mode running in null-flush mode."""

    def __init__(self, mode: str, command: str, timeout_s: float) -> None:
        self.mode = mode
        self._command = command
        self._timeout_s = timeout_s
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def translate(self, texts: Iterable[str]) -> list[str]:
        async with self._lock:
            try:
                return [await self._one(text) for text in texts]
            except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                await self.close()
                raise Unavailable(
                    f"apertium {self.mode} failed or stalled; it restarts on the next call"
                ) from None
            except asyncio.CancelledError:
                await self.close()  # unread output would shift every later answer
                raise

    async def _one(self, text: str) -> str:
        stdin, stdout = await self._streams()
        async with asyncio.timeout(self._timeout_s):
            stdin.write(to_stream(text))
            await stdin.drain()
            block = await stdout.readuntil(b"\0")
        return from_stream(block[:-1])

    async def _streams(self) -> tuple[asyncio.StreamWriter, asyncio.StreamReader]:
        if self._process is None or self._process.returncode is not None:
            # `bash -c CMD $0 $1 $2`: $1 is the generator option (-n: no unknown-word
            # marks), $2 the tagger option (none).
            self._process = await asyncio.create_subprocess_exec(
                "bash", "-c", self._command, "apertium", "-n", "",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # its own process group, killed as a whole
                limit=1 << 20,
            )
            log.info("apertium %s started", self.mode, extra={"pid": self._process.pid})
        if self._process.stdin is None or self._process.stdout is None:
            raise OSError("apertium pipeline has no pipes")
        return self._process.stdin, self._process.stdout

    async def close(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


class ApertiumEngine:
    """Every installed apertium mode among the product languages, one pipeline per mode."""

    def __init__(
        self,
        datadir: str | None = None,
        modes: Iterable[str] | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        """`modes` restricts the engine to those mode names (default: every installed one)."""
        if shutil.which("apertium-wblank-mode") is None or shutil.which("lt-proc") is None:
            raise FailedPrecondition(
                "apertium is not installed: apt-get install -y apertium apertium-eng-spa"
            )
        root = Path(datadir or os.environ.get("APERTIUM_DATADIR", DEFAULT_DATADIR)) / "modes"
        wanted = set(modes) if modes is not None else None
        self._pipelines: dict[Pair, NullFlushPipeline] = {}
        for path in sorted(root.glob("*.mode")):
            pair = mode_pair(path.stem)
            if pair is None or (wanted is not None and path.stem not in wanted):
                continue
            command = subprocess.run(
                ["apertium-wblank-mode", "-z", str(path)],
                capture_output=True, text=True, check=True,
            ).stdout.strip()
            self._pipelines[pair] = NullFlushPipeline(path.stem, command, timeout_s)
        if not self._pipelines:
            raise FailedPrecondition(
                f"no apertium language pair installed in {root}: "
                "apt-get install -y apertium apertium-eng-spa"
            )
        version = subprocess.run(["apertium", "-V"], capture_output=True, text=True).stdout
        self._capabilities = Capabilities(
            name=NAME,
            version=version.strip() or "apertium",
            license=LICENSE,
            pairs=frozenset(self._pipelines),
        )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    @property
    def modes(self) -> dict[Pair, str]:
        """The mode that serves each pair."""
        return {pair: p.mode for pair, p in self._pipelines.items()}

    async def translate(self, batch: TranslationBatch) -> list[str]:
        return await self._pipelines[(batch.source, batch.target)].translate(batch.texts)

    async def close(self) -> None:
        for pipeline in self._pipelines.values():
            await pipeline.close()
