"""Sends traces with planted performance anti-patterns and an error with the unmodified
OpenTelemetry Python SDK, for the trace-analysis test (tests/trace_analysis.rs).

Usage:
  send_patterns.py --endpoint HOST:PORT --traces N [--clean]

Each trace is one request, "GET /order" (a SERVER span of frontend, the root), with five
branches (times are explicit; a trace lasts 400 ms and ended just now):

  n_plus_one      frontend CLIENT "GET /orders/{id}" → orders SERVER, which makes 12
                  sequential database calls "SELECT * FROM items WHERE order_id = ? AND
                  line = <i>" (postgresql, db.namespace=shop). Clean: the 12 calls read 12
                  different tables.
  duplicate_call  3 sequential frontend CLIENT calls GET http://users/users/7, each answered
                  by a users SERVER span. Clean: users 7, 8 and 9.
  fan_out         30 frontend CLIENT calls GET http://pricing/price/<i> at once, each answered
                  by a pricing SERVER span. Clean: 15 calls.
  error_origin    frontend CLIENT "POST /pay" → payments SERVER "POST /pay" → payments
                  INTERNAL "charge card", 3 levels below the root, which fails; the error
                  propagates: "POST /pay" (both) and the root have status ERROR. Clean: no
                  errors.
  serial_calls    frontend INTERNAL "render page" makes 4 HTTP calls of 40 ms, each to
                  another service (server.address inventory, shipping, reviews, ads), one
                  after the other, 2 ms apart: 120 ms to save by making them at once. Clean:
                  the 4 calls at once.

Spans are recorded in memory first, then sent over OTLP/gRPC in one request per service; a
request the exporter fails to deliver exits with status 1. Prints {"spans": S, "trace_ids":
[HEX, ...]} on stdout.
"""

import argparse
import json
import sys
import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

MS = 1_000_000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--traces", type=int, required=True)
    ap.add_argument("--clean", action="store_true")
    args = ap.parse_args()
    dirty = not args.clean

    memory = InMemorySpanExporter()
    tracers = {}
    for service in ["frontend", "orders", "users", "pricing", "payments"]:
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tracers[service] = provider.get_tracer("patterns")
    fe = tracers["frontend"]

    def child(tracer, parent, name, kind, start, end, attributes=None, error=False):
        span = tracer.start_span(
            name,
            context=trace.set_span_in_context(parent),
            kind=kind,
            attributes=attributes or {},
            start_time=start,
        )
        if error:
            span.set_status(Status(StatusCode.ERROR, "card declined"))
        span.end(end_time=end)
        return span

    trace_ids = []
    for _ in range(args.traces):
        t0 = time.time_ns() - 400 * MS
        root = fe.start_span("GET /order", kind=SpanKind.SERVER, start_time=t0)
        trace_ids.append(f"{root.get_span_context().trace_id:032x}")

        # N+1: 12 sequential queries of one statement.
        call = fe.start_span(
            "GET /orders/{id}",
            context=trace.set_span_in_context(root),
            kind=SpanKind.CLIENT,
            start_time=t0 + 1 * MS,
        )
        server = tracers["orders"].start_span(
            "GET /orders/{id}",
            context=trace.set_span_in_context(call),
            kind=SpanKind.SERVER,
            start_time=t0 + 2 * MS,
        )
        for i in range(12):
            table = "items" if dirty else f"items_{chr(ord('a') + i)}"
            query = f"SELECT * FROM {table} WHERE order_id = 42 AND line = {i}"
            child(
                tracers["orders"],
                server,
                f"SELECT shop.{table}",
                SpanKind.CLIENT,
                t0 + (3 + 3 * i) * MS,
                t0 + (5 + 3 * i) * MS,
                {"db.system": "postgresql", "db.namespace": "shop", "db.query.text": query},
            )
        server.end(end_time=t0 + 40 * MS)
        call.end(end_time=t0 + 41 * MS)

        # Duplicates: the same user fetched 3 times, one after the other.
        for i in range(3):
            user = 7 if dirty else 7 + i
            start = t0 + (42 + 4 * i) * MS
            c = child(
                fe,
                root,
                "GET",
                SpanKind.CLIENT,
                start,
                start + 3 * MS,
                {"http.request.method": "GET", "url.full": f"http://users/users/{user}"},
            )
            child(tracers["users"], c, "GET /users/{id}", SpanKind.SERVER, start + MS, start + 2 * MS)

        # Fan-out: 30 prices at once.
        for i in range(30 if dirty else 15):
            start = t0 + 60 * MS
            c = child(
                fe,
                root,
                "GET",
                SpanKind.CLIENT,
                start,
                start + 20 * MS,
                {"http.request.method": "GET", "url.full": f"http://pricing/price/{i}"},
            )
            child(
                tracers["pricing"], c, "GET /price/{id}", SpanKind.SERVER, start + MS, start + 19 * MS
            )

        # An error 3 levels down, propagated to the root.
        pay = fe.start_span(
            "POST /pay",
            context=trace.set_span_in_context(root),
            kind=SpanKind.CLIENT,
            start_time=t0 + 100 * MS,
        )
        pay_server = tracers["payments"].start_span(
            "POST /pay",
            context=trace.set_span_in_context(pay),
            kind=SpanKind.SERVER,
            start_time=t0 + 101 * MS,
        )
        child(
            tracers["payments"],
            pay_server,
            "charge card",
            SpanKind.INTERNAL,
            t0 + 102 * MS,
            t0 + 150 * MS,
            error=dirty,
        )
        # Serial calls: 4 independent calls, one after the other.
        render = fe.start_span(
            "render page",
            context=trace.set_span_in_context(root),
            kind=SpanKind.INTERNAL,
            start_time=t0 + 165 * MS,
        )
        for i, (host, path) in enumerate(
            [("inventory", "/stock"), ("shipping", "/quote"), ("reviews", "/reviews"), ("ads", "/ads")]
        ):
            start = t0 + ((170 + 42 * i) if dirty else 170) * MS
            child(
                fe,
                render,
                f"GET {path}",
                SpanKind.CLIENT,
                start,
                start + 40 * MS,
                {
                    "http.request.method": "GET",
                    "url.full": f"http://{host}{path}",
                    "server.address": host,
                },
            )
        render.end(end_time=t0 + 340 * MS)

        for span, end in [(pay_server, 160), (pay, 161), (root, 400)]:
            if dirty:
                span.set_status(Status(StatusCode.ERROR, "payment failed"))
            span.end(end_time=t0 + end * MS)

    spans = memory.get_finished_spans()
    exporter = OTLPSpanExporter(endpoint=f"http://{args.endpoint}", insecure=True, timeout=30)
    by_service = {}
    for s in spans:
        by_service.setdefault(s.resource.attributes.get("service.name"), []).append(s)
    for service, chunk in by_service.items():
        result = exporter.export(chunk)
        if result != SpanExportResult.SUCCESS:
            sys.exit(f"the OTLP exporter failed to deliver {service}'s {len(chunk)} spans: {result}")
    print(json.dumps({"spans": len(spans), "trace_ids": trace_ids}))


if __name__ == "__main__":
    main()
