"""Writes sdk_logs_request.binpb: one ExportLogsServiceRequest as the unmodified OpenTelemetry
Python SDK encodes it (its OTLP exporter's own encoder), for the ClickHouse exporter's
differential test of its two log row encoders.

    .venv/bin/python collector/src/exporters/clickhouse/testdata/sdk_logs_request.py

Two resources (two logger providers), several scopes (with versions, schema URLs and
attributes, and one bare), records inside spans (trace and span ids, sampled flags) and outside
them, with and without a timestamp (then only the observed time is set), every severity the SDK
names and none, event names, bodies of every kind the SDK takes (strings with quotes, escapes and
non-ASCII text, ints, doubles including infinities and NaN, bools, bytes, lists, nested maps,
none), and attribute values of every kind. Timestamps are fixed so the file is the same on
every run; ids are random, which is what real traffic has.
"""

import os
import sys

from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import set_span_in_context

T0 = 1_763_700_000_000_000_000

BODIES = [
    "GET /orders/1 200",
    'quoted "x" and \\ backslash, tab\there, line\nbreak, \x01ctl, ü 😀',
    "",
    42,
    -(2**63),
    2.5,
    float("inf"),
    float("-inf"),
    float("nan"),
    1e300,
    True,
    b"\xff\x00\x01binary",
    ["a", 1, 2.0, False, None, b"\x01\x02"],
    {
        "z": {"nested": [1, {"deep": "map"}, []], "empty": {}},
        "a": "first",
        "m": float("inf"),
        "none": None,
        "b": b"\x01\x02\x03",
    },
    [],
    {},
    None,
]

SEVERITIES = [
    (SeverityNumber.INFO, "INFO"),
    (SeverityNumber.ERROR, "ERROR"),
    (SeverityNumber.DEBUG2, "debug2"),
    (SeverityNumber.FATAL4, "FATAL4"),
    (None, None),
    (SeverityNumber.WARN, None),
    (None, "custom"),
]


def logs_of(provider, tracer, service, count):
    app = provider.get_logger(
        "app.orders", "1.2.3", "https://opentelemetry.io/schemas/1.26.0", {"scope.attr": "x", "n": 3}
    )
    db = provider.get_logger("opentelemetry.instrumentation.psycopg", "0.50b0")
    bare = provider.get_logger("")
    for i in range(count):
        start = T0 + i * 10_000_000
        span = tracer.start_span(f"{service} {i}", start_time=start)
        inside = set_span_in_context(span)
        severity, text = SEVERITIES[i % len(SEVERITIES)]
        app.emit(
            timestamp=start + 1_000,
            observed_timestamp=start + 2_000,
            context=inside,
            severity_number=severity,
            severity_text=text,
            body=BODIES[i % len(BODIES)],
            attributes={
                "http.request.method": "GET",
                "http.response.status_code": 200 + i,
                "url.path": f'/orders/{i}?q="x"&y=\\z',
                "ratio": [0.25, 1.0, 1e300, 5e-324, -0.0][i % 5],
                "limits": [float("inf"), float("-inf"), float("nan"), 2.5e-8],
                "cached": i % 2 == 0,
                "tags": ["a", 'b"q', f"c{i}", "tab\there"],
                "sizes": [1, -2, 3 + i, 2**63 - 1],
                "flags": [True, False],
                "empty": "",
                "no.values": [],
            },
        )
        # Observed time only, outside any span, an event name.
        db.emit(
            observed_timestamp=start + 3_000,
            severity_number=SeverityNumber.WARN,
            severity_text="WARN",
            body=BODIES[(i + 5) % len(BODIES)],
            event_name="db.query.slow",
            attributes={"db.system": "postgresql", "db.statement": 'SELECT * FROM "orders"'},
        )
        # Nothing but the times.
        bare.emit(timestamp=start + 4_000, observed_timestamp=start + 4_000)
        span.end(end_time=start + 5_000)


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sdk_logs_request.binpb")
    records = []
    for service, count in (("checkout", 17), ("payments", 6)):
        resource = Resource.create(
            {
                "service.name": service,
                "deployment.environment": "test",
                "host.cpu.count": 2,
                "process.runtime.version": [3, 11],
            }
        )
        memory = InMemoryLogRecordExporter()
        provider = LoggerProvider(resource=resource)
        provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
        tracer = TracerProvider(resource=resource).get_tracer("t")
        logs_of(provider, tracer, service, count)
        records.extend(memory.get_finished_logs())
        provider.shutdown()
    request = encode_logs(records)
    with open(out, "wb") as f:
        f.write(request.SerializeToString())
    print(f"{out}: {len(records)} log records", file=sys.stderr)


if __name__ == "__main__":
    main()
