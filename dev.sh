#!/usr/bin/env bash
# dragoman developer entry point.
#
#   ./dev.sh demo     set up (venv, deps, model weights) and run the demo conversation
#   ./dev.sh test     set up and run every check and test (what CI runs)
#   ./dev.sh setup    only set up: .venv with the locked dependencies + model weights
#   ./dev.sh gen      regenerate the stubs in gen/, web/src/gen and clients/typescript/src/gen,
#                     and docs/api.md, from proto/
#
# Set-up is idempotent: a second run only checks what is there.
set -euo pipefail
cd "$(dirname "$0")"

UV_VERSION=0.13.9
PY=${PYTHON:-python3}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

setup_python() {
  if [ ! -x .venv/bin/python ]; then
    "$PY" -c 'import sys; assert (3, 11) <= sys.version_info[:2] < (3, 13), sys.version' 2>/dev/null || {
      echo "dragoman needs Python 3.11 or 3.12 (found: $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
      exit 1
    }
    log "creating .venv"
    "$PY" -m venv .venv || { echo "python venv failed: on Debian, apt-get install python3-venv" >&2; exit 1; }
  fi
  if [ ! -x .venv/bin/uv ] || [ "$(.venv/bin/uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    log "installing uv $UV_VERSION"
    .venv/bin/python -m pip install -q "uv==$UV_VERSION"
  fi
  log "installing locked dependencies (uv.lock)"
  # --inexact keeps uv and pip themselves, which live in the same venv.
  UV_PROJECT_ENVIRONMENT=.venv .venv/bin/uv sync --frozen --inexact --python .venv/bin/python "$@"
}

setup_models() {
  log "model weights"
  .venv/bin/dragoman models install
}

setup_apt() {
  # Apertium serves English<->Spanish; optional (the default demo pairs English with Portuguese).
  command -v apertium >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing apertium (English<->Spanish MT) from Debian"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q apertium apertium-eng-spa
  else
    echo "note: apertium not installed; English<->Spanish needs: apt-get install apertium apertium-eng-spa" >&2
  fi
}

setup_codegen() {
  # Stubs for C++, C#, Objective-C, PHP and Ruby (gen/, docs/stubs.md) come from
  # Debian's protoc and gRPC plugins; the C++ ones are compile-checked against libgrpc++-dev.
  command -v protoc >/dev/null && command -v grpc_cpp_plugin >/dev/null \
    && pkg-config --exists grpc++ protobuf 2>/dev/null && command -v g++ >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing protoc, the gRPC plugins and libgrpc++-dev (stub generation) from Debian"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      protobuf-compiler protobuf-compiler-grpc libgrpc++-dev libprotobuf-dev g++ pkg-config
  else
    echo "note: the stubs need: apt-get install protobuf-compiler protobuf-compiler-grpc libgrpc++-dev libprotobuf-dev g++ pkg-config" >&2
  fi
}

setup_node() {
  log "node tools (buf)"
  npm ci --no-audit --no-fund --loglevel=error
  log "web client toolchain (web/package-lock.json)"
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
  log "TypeScript SDK toolchain (clients/typescript/package-lock.json)"
  (cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error)
}

setup_browser() {
  # The browser tests drive Debian's Chromium; test certificates come from openssl;
  # promtool (Debian's prometheus package) checks the alert rules and /metrics;
  # php and ruby lint gen/{php,ruby} and load them with Debian's runtimes (docs/stubs.md).
  command -v chromium >/dev/null && command -v openssl >/dev/null && command -v promtool >/dev/null \
    && command -v php >/dev/null && [ -f /usr/share/php/Google/Protobuf/Internal/Message.php ] \
    && command -v ruby >/dev/null && ruby -e 'require "grpc"; require "google/protobuf"' 2>/dev/null \
    && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing chromium, openssl, promtool, php and ruby (test tools) from Debian"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      chromium openssl prometheus php-cli php-google-protobuf ruby ruby-grpc ruby-google-protobuf
  else
    echo "note: the tests need: apt-get install chromium openssl prometheus" \
      "php-cli php-google-protobuf ruby ruby-grpc ruby-google-protobuf" >&2
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  setup)
    setup_python; setup_apt; setup_models ;;
  demo)
    setup_python --no-dev; setup_apt; setup_models
    exec .venv/bin/dragoman demo "$@" ;;
  test)
    setup_python; setup_apt; setup_models; setup_node; setup_browser; setup_codegen
    log "uv.lock in sync with pyproject.toml"
    .venv/bin/uv lock --check --python .venv/bin/python
    log "generated stubs and docs/api.md in sync with proto/"
    .venv/bin/python scripts/genproto.py --check
    log "buf lint"
    npx --no-install buf lint
    log "buf breaking against the released API (api/released.binpb)"
    npx --no-install buf breaking --against api/released.binpb
    log "ruff"
    .venv/bin/ruff check .
    log "import contracts (import-linter)"
    .venv/bin/python scripts/lint_imports.py
    log "pytest"
    set +e
    .venv/bin/pytest "$@"
    rc=$?
    set -e
    if [ $rc -eq 5 ]; then
      echo "pytest collected no tests: that is a failure here" >&2
      exit 1
    fi
    exit $rc ;;
  gen)
    setup_codegen; setup_node
    .venv/bin/python scripts/genproto.py
    (cd web && npm run gen) ;;
  *)
    sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
    exit 2 ;;
esac
