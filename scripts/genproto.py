"""Regenerate the Python stubs in gen/python and docs/api.md from proto/ (or check them).

    python scripts/genproto.py          # write gen/python and docs/api.md
    python scripts/genproto.py --check  # exit 1 when either is stale

Uses the pinned grpcio-tools and mypy-protobuf of the dev group, so the
output is reproducible; `.pyi` files come from mypy-protobuf. The API
reference comes from scripts/gendocs.py.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import gendocs  # scripts/ is on sys.path when this runs as a script

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
OUT = ROOT / "gen" / "python"


def generate(out: Path) -> None:
    protos = sorted(str(p.relative_to(PROTO)) for p in PROTO.rglob("*.proto"))
    scripts = Path(sysconfig.get_path("scripts"))
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO}",
        f"--plugin=protoc-gen-mypy={scripts / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={scripts / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}", f"--grpc_python_out={out}",
        f"--mypy_out={out}", f"--mypy_grpc_out={out}", *protos,
    ]
    subprocess.run(cmd, check=True, cwd=PROTO)
    # Packages are explicit so tools (mypy, wheels) see them; dragoman/ itself
    # is the hand-written package, which extends its __path__ to this tree.
    for d in sorted({p.parent for p in out.rglob("*_pb2.py")}):
        while d != out / "dragoman":
            (d / "__init__.py").touch()
            d = d.parent


def differences(a: Path, b: Path) -> list[str]:
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    diff = sorted(str(p) for p in files_a ^ files_b)
    diff += sorted(str(p) for p in files_a & files_b if not filecmp.cmp(a / p, b / p, shallow=False))
    return diff


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if gen/python or docs/api.md is stale")
    args = parser.parse_args()
    docs = gendocs.render(gendocs.descriptors())
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        if args.check:
            stale = differences(fresh, OUT)
            if not gendocs.OUT.exists() or gendocs.OUT.read_text() != docs:
                stale.append(str(gendocs.OUT.relative_to(ROOT)))
            if stale:
                print("generated stubs or docs are stale; run: python scripts/genproto.py", file=sys.stderr)
                for name in stale:
                    print(f"  {name}", file=sys.stderr)
                return 1
            print("generated stubs are up to date")
            return 0
        if OUT.exists():
            shutil.rmtree(OUT)
        shutil.copytree(fresh, OUT)
    gendocs.OUT.write_text(docs)
    print(f"wrote {OUT.relative_to(ROOT)} and {gendocs.OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
