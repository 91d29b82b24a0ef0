"""Checks the import contracts with import-linter.

    python scripts/lint_imports.py

1. the layers of DESIGN.md ([tool.importlinter] in pyproject.toml): tools above
   services above the library, and no service importing another;
2. generated code imports nothing of ours (scripts/generated-imports.toml). The
   stubs join the hand-written `dragoman` package at run time, so they are
   checked in a process that sees only gen/python.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parent.parent
GEN = ROOT / "gen" / "python"


def main() -> int:
    if sys.argv[1:] == ["--generated"]:
        # No folder that holds the hand-written package (the checkout, its editable install).
        def foreign(p: str) -> bool:
            return bool(p) and not (Path(p) / "dragoman" / "__init__.py").exists() \
                and not p.endswith("gen/python")

        sys.path[:] = [str(GEN), *filter(foreign, sys.path)]
        return lint_imports(str(ROOT / "scripts" / "generated-imports.toml"), no_cache=True, no_logo=True)
    layers = lint_imports(str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    generated = subprocess.run([sys.executable, __file__, "--generated"], cwd=GEN).returncode
    return layers or generated


if __name__ == "__main__":
    sys.exit(main())
