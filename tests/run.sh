#!/usr/bin/env bash
# Runs wasmcol's whole test suite on a fresh machine: installs what the tests need (Python
# OpenTelemetry SDK in .venv), builds the binaries, then runs every test with cargo-nextest
# (or cargo test where nextest is not installed).
set -euo pipefail
cd "$(dirname "$0")/.."

# Python senders: the unmodified OpenTelemetry SDK from PyPI, in a project-local venv.
if ! .venv/bin/python -c "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http, chdb, confluent_kafka, helm_python, kubernetes_validate" 2>/dev/null || [ ! -x .venv/bin/hadolint ] || [ ! -x .venv/bin/checkov ]; then
  echo "== installing the Python OpenTelemetry SDK and chDB into .venv"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r tests/python/requirements.txt
fi

# A real Kafka-protocol broker for the Kafka tests: tansu (crates.io), in-memory storage.
# Built once into ~/.cargo/bin (about 12-15 minutes on 2 cores), then reused.
if ! command -v tansu >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tansu" ]; then
  echo "== installing the tansu Kafka broker (cargo install tansu --features dynostore)"
  cargo install --locked tansu --version 0.6.0 --features dynostore
fi

# Debian tools the deployment tests use: systemd-analyze judges the systemd unit
# (tests/deploy.rs); buildah builds the container image without a daemon (tests/container.rs).
apt_updated=
for tool in systemd-analyze:systemd buildah:buildah; do
  if ! command -v "${tool%%:*}" >/dev/null 2>&1; then
    echo "== installing ${tool#*:} (for ${tool%%:*})"
    [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${tool#*:}" >/dev/null
  fi
done

# Plugins (built in and test plugins) are WebAssembly components for wasm32-wasip2.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "== adding the wasm32-wasip2 target"
  rustup target add wasm32-wasip2
fi

echo "== building"
cargo build --workspace --bins --all-targets
# The container image holds the release build, as shipped (tests/container.rs).
cargo build --release -p wasmcol --bin wasmcol

# Coverage-guided fuzzing (tests/fuzz): a short libFuzzer run per target from the committed seed
# corpus, on the stable toolchain. A crash or a hang (an input over 5 s) fails the run and
# leaves the input in tests/fuzz/artifacts/TARGET/.
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install --locked cargo-fuzz --version 0.13.2
fi
echo "== fuzzing (${FUZZ_SECONDS:=30} s per target)"
(cd tests/fuzz && cargo fuzz build -s none)
for target in $(cd tests/fuzz && cargo fuzz list); do
  log="tests/fuzz/target/$target.log"
  mkdir -p "tests/fuzz/corpus/$target"
  if (cd tests/fuzz && cargo fuzz run -s none "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$FUZZ_SECONDS" -timeout=5 -print_final_stats=1) >"$log" 2>&1; then
    echo "$target: $(grep -E '^Done' "$log")"
  else
    tail -n 60 "$log"
    echo "fuzz target $target failed (full log: $log)"
    exit 1
  fi
done

echo "== doctests (nextest does not run them)"
cargo test --workspace --doc --quiet

echo "== testing"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
