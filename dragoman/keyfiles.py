"""Key files a single-machine install generates for itself on first use."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def create(path: Path, content: Callable[[], str]) -> None:
    """Writes `content()` to `path`, readable by its owner only, unless the file
    exists: processes starting together race here, and the first one wins."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(content() + "\n")
