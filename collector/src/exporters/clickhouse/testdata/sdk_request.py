"""Writes sdk_request.binpb: one ExportTraceServiceRequest as the unmodified OpenTelemetry
Python SDK encodes it (its OTLP exporter's own encoder), for the ClickHouse exporter's
differential test of its two row encoders.

    .venv/bin/python collector/src/exporters/clickhouse/testdata/sdk_request.py

Two resources (two tracer providers), several scopes, server/client/producer/consumer/internal
spans with events (an exception with its stack trace), links, statuses, and attribute values of
every kind the SDK takes: strings with quotes, escapes and non-ASCII text, ints, doubles (whole,
fractional, huge, tiny, infinite, NaN), bools, and arrays of each. Timestamps are fixed so the
file is the same on every run; ids are random, which is what real traffic has.
"""

import os
import sys

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

T0 = 1_763_700_000_000_000_000


def spans_of(provider, service, traces):
    http = provider.get_tracer("opentelemetry.instrumentation.flask", "0.50b0")
    db = provider.get_tracer("opentelemetry.instrumentation.psycopg", "0.50b0")
    bare = provider.get_tracer("")
    for t in range(traces):
        start = T0 + t * 10_000_000
        root = http.start_span(
            f"GET /orders/{t}",
            kind=SpanKind.SERVER,
            start_time=start,
            attributes={
                "http.request.method": "GET",
                "http.response.status_code": 200 + t,
                "url.path": f'/orders/{t}?q="x"&y=\\z',
                "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) — ü 😀",
                "ratio": [0.25, 1.0, 1e300, 5e-324, -0.0][t % 5],
                "limits": [float("inf"), float("-inf"), float("nan"), 2.5e-8],
                "cached": t % 2 == 0,
                "tags": ["a", 'b"q', f"c{t}", "tab\there", "line\nbreak", "\x01ctl"],
                "sizes": [1, -2, 3 + t, 2**63 - 1],
                "flags": [True, False],
                "empty": "",
                "no.values": [],
            },
        )
        root.add_event(
            "cache.miss", {"key": f"order:{t}", "attempt": 2}, timestamp=start + 1_000
        )
        root.add_event("no attributes", timestamp=start + 2_000)
        child = db.start_span(
            "SELECT orders",
            kind=SpanKind.CLIENT,
            start_time=start + 3_000,
            context=_ctx(root),
            attributes={"db.system": "postgresql", "db.statement": "SELECT * FROM \"orders\""},
        )
        try:
            raise TimeoutError("deadline exceeded")
        except TimeoutError as e:
            # A fixed trace instead of this file's path, so every run writes the same text.
            child.record_exception(
                e,
                timestamp=start + 4_000,
                attributes={
                    "exception.stacktrace": 'Traceback (most recent call last):\n'
                    '  File "app/db.py", line 42, in fetch\n'
                    '    raise TimeoutError("deadline exceeded")\n'
                    "TimeoutError: deadline exceeded\n"
                },
            )
        child.set_status(Status(StatusCode.ERROR, "deadline exceeded"))
        child.end(end_time=start + 5_000)
        producer = http.start_span(
            "publish",
            kind=SpanKind.PRODUCER,
            start_time=start + 6_000,
            context=_ctx(root),
            links=[
                Link(root.get_span_context(), {"link.kind": "follows", "n": [1, 2]}),
                Link(child.get_span_context()),
            ],
        )
        producer.end(end_time=start + 7_000)
        consumer = bare.start_span("process", kind=SpanKind.CONSUMER, start_time=start + 8_000)
        # Ends before it starts: the exporter writes a zero duration.
        consumer.end(end_time=start + 7_500)
        internal = db.start_span("internal", start_time=start + 9_000, context=_ctx(root))
        internal.set_status(Status(StatusCode.OK))
        internal.end(end_time=start + 9_000)
        root.set_status(Status(StatusCode.OK))
        root.end(end_time=start + 9_500)


def _ctx(span):
    from opentelemetry.trace import set_span_in_context

    return set_span_in_context(span)


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sdk_request.binpb")
    spans = []
    for service, traces in (("checkout", 6), ("payments", 3)):
        memory = InMemorySpanExporter()
        provider = TracerProvider(
            resource=Resource.create(
                {
                    "service.name": service,
                    "deployment.environment": "test",
                    "host.cpu.count": 2,
                    "process.runtime.version": [3, 11],
                }
            )
        )
        provider.add_span_processor(SimpleSpanProcessor(memory))
        spans_of(provider, service, traces)
        spans.extend(memory.get_finished_spans())
        provider.shutdown()
    request = encode_spans(spans)
    with open(out, "wb") as f:
        f.write(request.SerializeToString())
    print(f"{out}: {len(spans)} spans", file=sys.stderr)


if __name__ == "__main__":
    main()
