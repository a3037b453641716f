#!/usr/bin/env python3
"""End-to-end cost of the built-in plugins: OTLP/gRPC -> [wasm/scrub | wasm/enrich] -> batch -> nop.

Usage: benches/scrub_e2e.py [--duration S] [--repeats R] [--loads fixed,saturated] [--rate N]

Runs the release `wasmcol` (copied to a temp dir first, so a rebuild cannot change what is
measured) under `wasmcol-loadgen`, the same way `benches/src/bin/e2e.rs` does: a fresh collector
per run, its CPU time (utime + stime of /proc/PID/stat) from just before the load until 0.5 s
after it, spans accepted from the load generator's JSON summary. Prints a markdown table of
medians: CPU-seconds per million spans and spans per second per collector core.

Scenarios: `none` (otlp -> batch -> nop), `scrub` (builtin:pii-scrub, every detector on, as in
benches/benches/scrub.rs), `enrich` (builtin:enrich, as there). Loads: `fixed` (--rate spans/s,
100 spans per request, 2 connections) and `saturated` (no limit, 400 spans per request, 4
connections). Spans: 10 spans per trace, 10 string attributes of 64 random bytes each (the
load generator's), so detectors rarely fire: this is the cost of scanning clean spans.

Build first: cargo build --release -p wasmcol --bins
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRUB = """
  wasm/p:
    plugin: builtin:pii-scrub
    config:
      ignored_keys: [service.name, http.route]
      detectors:
        credit_card: { action: mask, keep_suffix: 4 }
        email: hash
        ssn: true
        ip: true
        jwt: true
        bearer_token: true
        api_key: true
        iban: true
        phone: true
      hash: { key: bench-key-not-a-secret }
"""

ENRICH = """
  wasm/p:
    plugin: builtin:enrich
    tables:
      owners: { rows: { loadgen: { team: payments, tier: "1" } } }
    config:
      resource:
        - lookup: { table: owners, key: service.name, columns: [team, tier] }
        - environment: { key: host.name, attribute: collector.host.name }
      span:
        - set: { attribute: deployment.environment.name, value: production, mode: insert }
        - set: { attribute: slo.critical, value: true, when: { attribute: attr.0, matches: "^a" } }
"""


def config(scenario, port):
    plugin = {"none": "", "scrub": SCRUB, "enrich": ENRICH}[scenario]
    chain = "[batch]" if scenario == "none" else "[wasm/p, batch]"
    return f"""
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{port}
processors:
  batch: {{}}
{plugin}
exporters:
  nop: {{}}
service:
  telemetry:
    metrics:
      address: none
  pipelines:
    traces:
      receivers: [otlp]
      processors: {chain}
      exporters: [nop]
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_ticks(pid):
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def wait_port(port, proc):
    deadline = time.time() + 60
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"wasmcol exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"wasmcol did not listen on {port}")


def one_run(bins, work, scenario, load, args):
    port = free_port()
    cfg = work / f"{scenario}.yaml"
    cfg.write_text(config(scenario, port))
    proc = subprocess.Popen(
        [bins / "wasmcol", "--config", cfg],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc)
        time.sleep(1)
        cpu0 = cpu_ticks(proc.pid)
        batch, workers, rate = (10, 2, args.rate / 10) if load == "fixed" else (40, 4, 0)
        out = subprocess.run(
            [
                bins / "wasmcol-loadgen",
                "--endpoint", f"127.0.0.1:{port}",
                "--duration", f"{args.duration}s",
                "--spans-per-trace", "10",
                "--attributes", "10",
                "--attribute-size", "64",
                "--batch-traces", str(batch),
                "--workers", str(workers),
                "--rate", str(rate),
                "--json", "--quiet",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        time.sleep(0.5)
        cpu1 = cpu_ticks(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    summary = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])
    cpu = (cpu1 - cpu0) / os.sysconf("SC_CLK_TCK")
    spans = summary["spans_accepted"]
    return {
        "accepted_per_s": spans / summary["elapsed_secs"],
        "refused_pct": 100 * summary["spans_refused"] / max(1, summary["spans_sent"]),
        "cores": cpu / summary["elapsed_secs"],
        "cpu_per_m": cpu / spans * 1e6,
        "per_core": spans / cpu,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loads", default="fixed,saturated")
    ap.add_argument("--rate", type=int, default=20_000, help="spans/s of the fixed load")
    ap.add_argument("--scenarios", default="none,scrub,enrich")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for b in ["wasmcol", "wasmcol-loadgen"]:
            shutil.copy2(ROOT / "target/release" / b, work / b)
        print("| load | pipeline | runs | accepted spans/s | refused % | collector cores "
              "| CPU-s per M spans | spans/s per core |")
        print("|---|---|---|---|---|---|---|---|")
        for load in args.loads.split(","):
            for scenario in args.scenarios.split(","):
                runs = [one_run(work, work, scenario, load, args) for _ in range(args.repeats)]
                med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                pipeline = "otlp → batch → nop" if scenario == "none" else (
                    f"otlp → wasm/{scenario} → batch → nop")
                print(
                    f"| {load} | {pipeline} | {len(runs)} | {med['accepted_per_s']:,.0f} "
                    f"| {med['refused_pct']:.1f} | {med['cores']:.2f} | {med['cpu_per_m']:.2f} "
                    f"| {med['per_core']:,.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
