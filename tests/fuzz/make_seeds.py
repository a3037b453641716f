"""Writes the fuzz targets' seed corpus (seeds/TARGET/) from requests of the real OpenTelemetry
Python SDK.

Usage (from the repository root): .venv/bin/python tests/fuzz/make_seeds.py

It listens on a loopback port, lets tests/python/send_traces.py send one trace to it as OTLP/HTTP
protobuf (plain, gzip and deflate, compressed by the SDK's own exporter) and as OTLP/JSON, and
keeps the bodies. zstd variants come from the `zstd` command. The log and metric requests
(seeds of wire_validate_logs and wire_validate_metrics) come from the SDK's own OTLP encoders,
in process. The seeds are committed; run this again only to refresh them (`--logs-and-metrics`
refreshes only those two).
"""

import hashlib
import http.server
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import threading
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SEEDS = os.path.join(ROOT, "tests", "fuzz", "seeds")
SENDER = os.path.join(ROOT, "tests", "python", "send_traces.py")

received = []  # (content-type, content-encoding, body)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        received.append(
            (self.headers.get("Content-Type", ""), self.headers.get("Content-Encoding", ""), body)
        )
        json_request = self.headers.get("Content-Type", "").startswith("application/json")
        answer = b"{}" if json_request else b""
        self.send_response(200)
        self.send_header("Content-Type", "application/json" if json_request else "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def send(port, protocol, compression=None):
    env = dict(os.environ)
    env.pop("OTEL_EXPORTER_OTLP_COMPRESSION", None)
    if compression:
        env["OTEL_EXPORTER_OTLP_COMPRESSION"] = compression
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, SENDER, "--protocol", protocol, "--endpoint", f"127.0.0.1:{port}",
             "--expected", os.path.join(tmp, "expected.json"), "--traces", "1"],
            env=env, check=True,
        )


def write(target, data):
    folder = os.path.join(SEEDS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def inflate(encoding, body):
    if encoding == "gzip":
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


def zstd(data):
    return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, capture_output=True, check=True).stdout


def decompress_seed(encoding, limit, body):
    # decompress target: encoding byte (0 identity, 1 gzip, 2 deflate, 3 zstd), u16 LE limit, body.
    code = {"": 0, "gzip": 1, "deflate": 2, "zstd": 3}[encoding]
    return bytes([code]) + struct.pack("<H", min(limit, 0xFFFF)) + body


def logs_and_metrics():
    """Log and metric requests as the SDK's OTLP exporters encode them: a few log records
    (text, structured attributes, an exception) and a metric of every instrument the SDK
    has, with explicit and exponential histograms."""
    import logging

    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
    from opentelemetry.metrics import Observation
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create({"service.name": "checkout", "host.name": "node-7"})
    exporter = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    log = logging.getLogger("orders")
    log.propagate = False
    log.addHandler(LoggingHandler(logger_provider=logger_provider))
    log.setLevel(logging.INFO)
    log.info("order %s placed", 42, extra={"order.id": 42, "tags": ["a", "b"]})
    log.warning("slow", extra={"latency": 1.5})
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("failed")
    records = exporter.get_finished_logs()
    bodies = [encode_logs(records).SerializeToString()]
    bodies += [encode_logs([r]).SerializeToString() for r in records]
    # Repeated fields concatenate: several requests are one request.
    for body in bodies + [b"".join(bodies[1:])]:
        write("wire_validate_logs", body)

    reader = InMemoryMetricReader()
    exponential = View(instrument_name="exp.*", aggregation=ExponentialBucketHistogramAggregation())
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader],
                                   views=[exponential, View(instrument_name="*")])
    meter = meter_provider.get_meter("shop", "1.0")
    counter = meter.create_counter("orders")
    counter.add(3, {"route": "/"})
    counter.add(1, {"route": "/x"})
    meter.create_up_down_counter("queue").add(-2)
    latency = meter.create_histogram("latency", unit="ms")
    for v in (1, 5, 20, 300):
        latency.record(v)
    size = meter.create_histogram("exp.size")
    for v in (0, 0.5, 3, 1000):
        size.record(v, {"k": "v"})
    temperature = meter.create_gauge("temp")
    temperature.set(21.5)
    temperature.set(7, {"room": "b"})
    meter.create_observable_gauge("cpu", callbacks=[lambda _: [Observation(0.25)]])
    first = encode_metrics(reader.get_metrics_data()).SerializeToString()
    counter.add(5)
    second = encode_metrics(reader.get_metrics_data()).SerializeToString()
    for body in (first, second, first + second):
        write("wire_validate_metrics", body)


def main():
    if sys.argv[1:] == ["--logs-and-metrics"]:
        logs_and_metrics()
        return
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    send(port, "http")
    send(port, "http", "gzip")
    send(port, "http", "deflate")
    send(port, "http-json")
    server.shutdown()

    protobuf, json_bodies = [], []
    for content_type, encoding, body in received:
        plain = inflate(encoding, body)
        (json_bodies if content_type.startswith("application/json") else protobuf).append(plain)
        if encoding:
            # As sent, with a limit that holds it and one that does not.
            write("decompress", decompress_seed(encoding, len(plain), body))
            write("decompress", decompress_seed(encoding, len(plain) // 2, body))
    protobuf = sorted(set(protobuf))
    # The SDK's exporter sends one span per request here; repeated fields concatenate, so the
    # bodies together are one request of several resource spans.
    merged = b"".join(protobuf)
    for body in protobuf + [merged]:
        write("wire_validate", body)
        # wire_edit target: u16 LE request length, request, edit program (see the target).
        prefix = struct.pack("<H", len(body)) + body
        write("wire_edit", prefix)
        # Set an attribute on span 0, rename span 1, drop span 2, remove a resource attribute.
        write("wire_edit", prefix + bytes([0, 2, 0, 1, 1, 42, 0, 0, 2, 1, 0x83]) + b"new"
              + bytes([5, 2, 1, 0, 0]))
    # The same request with snake_case field names, which receivers accept too, and the
    # shape of a request that amplifies: empty spans.
    snake = lambda o: (
        {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): snake(v) for k, v in o.items()}
        if isinstance(o, dict) else [snake(x) for x in o] if isinstance(o, list) else o
    )
    json_bodies += [json.dumps(snake(json.loads(b))).encode() for b in json_bodies]
    json_bodies.append(b'{"resourceSpans":[{"scopeSpans":[{"spans":[{},{},{}]}]}]}')
    for body in json_bodies:
        write("json_decode", body)
        write("decompress", decompress_seed("", len(body), body))
        write("decompress", decompress_seed("zstd", len(body), zstd(body)))
    write("decompress", decompress_seed("zstd", len(merged), zstd(merged)))
    write("decompress", decompress_seed("zstd", len(merged) - 1, zstd(merged)))
    logs_and_metrics()
    counts = {t: len(os.listdir(os.path.join(SEEDS, t))) for t in sorted(os.listdir(SEEDS))}
    print(f"seeds from {len(received)} requests: {counts}")


if __name__ == "__main__":
    main()
