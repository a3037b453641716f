#!/usr/bin/env bash
# Runs wasmcol's whole test suite on a fresh machine: installs what the tests need (Python
# OpenTelemetry SDK in .venv), builds the binaries, then runs every test with cargo-nextest
# (or cargo test where nextest is not installed).
set -euo pipefail
cd "$(dirname "$0")/.."

# Python senders: the unmodified OpenTelemetry SDK from PyPI, in a project-local venv.
if ! .venv/bin/python -c "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http" 2>/dev/null; then
  echo "== installing the Python OpenTelemetry SDK into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi

echo "== building"
cargo build --workspace --bins --all-targets

echo "== testing"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
