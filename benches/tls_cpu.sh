#!/usr/bin/env bash
# Issue 16: what TLS costs the collector.
#
# 1. CPU per span over OTLP/gRPC with TLS vs plaintext, in the same run: `wasmcol` (otlp
#    receiver -> nop) takes 500-span requests (100 traces x 5 spans) from `wasmcol-loadgen` over
#    long-lived connections at a fixed rate; the collector's CPU time (utime + stime of
#    /proc/PID/stat) over the run is divided by the spans it accepted. Plaintext and TLS
#    alternate, REPEATS times each; medians are printed.
# 2. TLS handshakes per second per core: `openssl s_time -new` opens a new connection and does a
#    full handshake each time against the TLS listener; handshakes / the collector's CPU-seconds.
#
# Usage: benches/tls_cpu.sh [REPEATS] [SECONDS] [TRACES_PER_S]
# Needs target/release/wasmcol and wasmcol-loadgen (cargo build --release -p wasmcol --bins)
# and openssl. Everything runs on 127.0.0.1.
set -euo pipefail

repeats=${1:-3}
seconds=${2:-15}
rate=${3:-2000}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${WASMCOL_BIN_DIR:-$root/target/release}
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
pid=

# A CA and a server certificate for 127.0.0.1 (ECDSA P-256, as cert-manager's default).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$dir/ca.key" -out "$dir/ca.pem" -subj /CN=bench-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -keyout "$dir/server.key" -out "$dir/server.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$dir/ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
  -CAcreateserial -days 2 -extfile "$dir/ext" -out "$dir/server.pem" 2>/dev/null

port=24917
ticks=$(getconf CLK_TCK)

# start MODE: the collector with a plaintext or TLS gRPC listener.
start() {
  local tls=""
  if [ "$1" = tls ]; then
    tls="tls: { cert_file: $dir/server.pem, key_file: $dir/server.key }"
  fi
  cat >"$dir/config.yaml" <<EOF
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$port
        $tls
exporters:
  nop:
service:
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [nop]
  telemetry:
    metrics:
      address: none
EOF
  "$bin/wasmcol" --config "$dir/config.yaml" >"$dir/wasmcol.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && return 0
    sleep 0.05
  done
  echo "wasmcol did not start:" >&2
  cat "$dir/wasmcol.log" >&2
  exit 1
}

stop() {
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# run MODE: prints CPU microseconds per accepted span.
run() {
  start "$1"
  local tls_args=()
  [ "$1" = tls ] && tls_args=(--tls-ca "$dir/ca.pem")
  sleep 0.5
  local before after spans
  before=$(cpu_ticks "$pid")
  spans=$("$bin/wasmcol-loadgen" --endpoint "127.0.0.1:$port" "${tls_args[@]}" \
    --duration "${seconds}s" --rate "$rate" --workers 2 --batch-traces 100 \
    --spans-per-trace 5 --json -q | sed 's/.*"spans_accepted":\([0-9]*\).*/\1/')
  after=$(cpu_ticks "$pid")
  stop
  awk -v b="$before" -v a="$after" -v s="$spans" -v t="$ticks" \
    'BEGIN { printf "%.3f\n", (a - b) / t * 1e6 / s }'
}

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

plain=()
tls=()
for i in $(seq "$repeats"); do
  p=$(run plain)
  t=$(run tls)
  echo "run $i: plaintext $p us/span, TLS $t us/span" >&2
  plain+=("$p")
  tls+=("$t")
done
mp=$(printf '%s\n' "${plain[@]}" | median)
mt=$(printf '%s\n' "${tls[@]}" | median)
echo "CPU per span (median of $repeats, ${seconds}s at $rate traces/s = $((rate * 5)) spans/s, 500-span requests):"
echo "  plaintext $mp us, TLS $mt us, ratio $(awk -v a="$mt" -v b="$mp" 'BEGIN { printf "%.3f", a / b }')"

# Handshakes per second per core of the collector.
start tls
before=$(cpu_ticks "$pid")
out=$(openssl s_time -connect "127.0.0.1:$port" -new -time 10 -CAfile "$dir/ca.pem" 2>/dev/null |
  grep -m1 'connections in')
after=$(cpu_ticks "$pid")
stop
n=${out%% connections*}
echo "handshakes: $out"
awk -v n="$n" -v b="$before" -v a="$after" -v t="$ticks" \
  'BEGIN { c = (a - b) / t; printf "  %d full handshakes, collector CPU %.2f s: %.0f handshakes per CPU-second\n", n, c, n / c }'
