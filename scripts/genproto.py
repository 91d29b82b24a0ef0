"""Regenerate the stubs in gen/ and docs/api.md from proto/ (or check them).

    python scripts/genproto.py          # write gen/ and docs/api.md
    python scripts/genproto.py --check  # exit 1 when either is stale

gen/python (every proto) uses the pinned grpcio-tools and mypy-protobuf of
the dev group, so the output is reproducible; `.pyi` files come from
mypy-protobuf. The public API's stubs for other languages (gen/cpp,
gen/csharp, gen/objc, gen/php, gen/ruby) come from buf.gen.stubs.yaml, run by
the pinned buf with Debian's protoc and gRPC plugins (docs/stubs.md). The
API reference (docs/api.md) comes from scripts/gendocs.py. The Python SDK
(clients/python) ships its own stubs of the public API in
clients/python/src/dragoman_client/_gen, so it installs without this repository.
The TypeScript SDK's stubs (clients/typescript/src/gen) come from its own
buf.gen.yaml and pinned protoc-gen-es (clients/typescript/package-lock.json).
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import gendocs  # scripts/ is on sys.path when this runs as a script

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "proto"
GEN = ROOT / "gen"
BUF = ROOT / "node_modules" / ".bin" / "buf"
STUBS_TEMPLATE = ROOT / "buf.gen.stubs.yaml"
# What buf.gen.stubs.yaml runs, and the Debian packages that hold each.
NATIVE_TOOLS = {
    "protoc": "protobuf-compiler",
    "grpc_cpp_plugin": "protobuf-compiler-grpc",
    "grpc_php_plugin": "protobuf-compiler-grpc",
    "grpc_ruby_plugin": "protobuf-compiler-grpc",
}
NATIVE_LANGUAGES = ("cpp", "csharp", "objc", "php", "ruby")
TREES = ("python", *NATIVE_LANGUAGES)
PUBLIC_API = PROTO / "dragoman" / "v1"
PY_SDK_PACKAGE = "dragoman_client._gen"
PY_SDK_GEN = ROOT / "clients" / "python" / "src" / "dragoman_client" / "_gen"
# The stubs name their siblings `dragoman.v1`; inside the SDK they live under PY_SDK_PACKAGE,
# so a top-level `dragoman` (the server package) is never needed nor shadowed.
PY_SDK_IMPORT = re.compile(r"^(from|import) dragoman\.v1\b", re.M)
# @dragoman/client keeps its stubs in its own package; the template's paths are relative to it.
TS_SDK = ROOT / "clients" / "typescript"
TS_SDK_GEN = TS_SDK / "src" / "gen"
TS_SDK_TOOLS = (TS_SDK / "node_modules" / ".bin" / "buf", TS_SDK / "node_modules" / ".bin" / "protoc-gen-es")


class MissingToolError(Exception):
    """A generator is not installed; the message says how to install it."""


def generate_python(out: Path, protos_under: Path = PROTO) -> None:
    protos = sorted(str(p.relative_to(PROTO)) for p in protos_under.rglob("*.proto"))
    scripts = Path(sysconfig.get_path("scripts"))
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO}",
        f"--plugin=protoc-gen-mypy={scripts / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={scripts / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}", f"--grpc_python_out={out}",
        f"--mypy_out={out}", f"--mypy_grpc_out={out}", *protos,
    ]
    # mypy-protobuf names every file it writes on stderr: show that only on failure.
    result = subprocess.run(cmd, cwd=PROTO, capture_output=True, text=True)
    if result.returncode:
        raise subprocess.CalledProcessError(result.returncode, cmd, result.stdout, result.stderr)
    # Packages are explicit so tools (mypy, wheels) see them; dragoman/ itself
    # is the hand-written package, which extends its __path__ to this tree.
    for d in sorted({p.parent for p in out.rglob("*_pb2.py")}):
        while d != out / "dragoman":
            (d / "__init__.py").touch()
            d = d.parent


def generate_sdk(out: Path) -> None:
    """The public API's stubs as the subpackage PY_SDK_PACKAGE of the SDK (clients/python)."""
    out.mkdir(parents=True)
    generate_python(out, PUBLIC_API)
    for path in out.rglob("*.py*"):
        path.write_text(PY_SDK_IMPORT.sub(rf"\1 {PY_SDK_PACKAGE}.dragoman.v1", path.read_text()))
    (out / "__init__.py").write_text('"""Generated from proto/dragoman/v1 by scripts/genproto.py."""\n')
    (out / "dragoman" / "__init__.py").touch()


def require_native_tools() -> None:
    missing = sorted({pkg for tool, pkg in NATIVE_TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise MissingToolError(f"protoc or its gRPC plugins are missing: apt-get install {' '.join(missing)}")
    if not BUF.exists():
        raise MissingToolError("buf is missing: run `npm ci` at the repository root")


def generate_native(gen: Path) -> None:
    # The template's out: paths are gen/<language>, relative to -o.
    subprocess.run([str(BUF), "generate", "--template", str(STUBS_TEMPLATE), "-o", str(gen.parent)],
                   check=True, cwd=ROOT)


def generate_typescript_sdk(out: Path) -> None:
    """clients/typescript/src/gen, written to out/src/gen."""
    if not all(tool.exists() for tool in TS_SDK_TOOLS):
        raise MissingToolError("the TypeScript SDK toolchain is missing: run `npm ci` in clients/typescript")
    subprocess.run([str(TS_SDK_TOOLS[0]), "generate", "--template", "buf.gen.yaml", "-o", str(out)],
                   check=True, cwd=TS_SDK)


def generate(gen: Path) -> None:
    """Write every generated tree under gen (gen/python, gen/cpp, ...), the Python SDK's under
    gen/sdk and the TypeScript SDK's under gen/../typescript-sdk."""
    require_native_tools()
    (gen / "python").mkdir(parents=True)
    generate_python(gen / "python")
    generate_native(gen)
    generate_sdk(gen / "sdk")
    generate_typescript_sdk(gen.parent / "typescript-sdk")


def differences(a: Path, b: Path) -> list[str]:
    files_a = {p.relative_to(a) for p in a.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    files_b = {p.relative_to(b) for p in b.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    diff = sorted(str(p) for p in files_a ^ files_b)
    diff += sorted(str(p) for p in files_a & files_b if not filecmp.cmp(a / p, b / p, shallow=False))
    return diff


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if gen/ or docs/api.md is stale")
    args = parser.parse_args()
    docs = gendocs.render(gendocs.descriptors())
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "gen"
        fresh_sdk = Path(tmp) / "typescript-sdk" / "src" / "gen"
        try:
            generate(fresh)
        except MissingToolError as e:
            print(f"cannot generate the stubs: {e}", file=sys.stderr)
            return 1
        if args.check:
            stale = [f"{tree}/{name}" for tree in TREES for name in differences(fresh / tree, GEN / tree)]
            for made, kept in ((fresh / "sdk", PY_SDK_GEN), (fresh_sdk, TS_SDK_GEN)):
                stale += [str((kept / name).relative_to(ROOT)) for name in differences(made, kept)]
            if not gendocs.OUT.exists() or gendocs.OUT.read_text() != docs:
                stale.append(str(gendocs.OUT.relative_to(ROOT)))
            if stale:
                print("generated stubs or docs are stale; run: python scripts/genproto.py", file=sys.stderr)
                for name in stale:
                    print(f"  {name}", file=sys.stderr)
                return 1
            print("generated stubs are up to date")
            return 0
        for tree in TREES:
            if (GEN / tree).exists():
                shutil.rmtree(GEN / tree)
            shutil.copytree(fresh / tree, GEN / tree)
        if PY_SDK_GEN.exists():
            shutil.rmtree(PY_SDK_GEN)
        shutil.copytree(fresh / "sdk", PY_SDK_GEN)
        if TS_SDK_GEN.exists():
            shutil.rmtree(TS_SDK_GEN)
        shutil.copytree(fresh_sdk, TS_SDK_GEN)
    gendocs.OUT.write_text(docs)
    print(f"wrote {GEN.relative_to(ROOT)}, {PY_SDK_GEN.relative_to(ROOT)}, "
          f"{TS_SDK_GEN.relative_to(ROOT)} and {gendocs.OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
