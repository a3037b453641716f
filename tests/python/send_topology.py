"""Sends traces of a known topology with the unmodified OpenTelemetry Python SDK, for the
connector tests (tests/connectors.rs).

Usage:
  send_topology.py --endpoint HOST:PORT --traces N [--sampled M] [--errors-every K]

Each trace is one request through three services, each with its own TracerProvider:

  frontend  SERVER   "GET /checkout"    (the root)
  frontend  CLIENT   "POST /checkout"
  checkout  SERVER   "POST /checkout"   (child of frontend's client span)
  checkout  CLIENT   "POST /pay"
  checkout  CLIENT   "SELECT orders"    (db.system=postgresql, db.name=orders)
  checkout  PRODUCER "orders publish"   (messaging.system=kafka, messaging.destination.name=orders)
  payments  SERVER   "POST /pay"        (child of checkout's client span)

N traces are sent as recorded by a sampler that keeps everything; M more carry the
OpenTelemetry sampling threshold of a 50% sampler in their tracestate (`ot=th:8`), so each
of their spans stands for two. Every K-th trace of the N (the 1st, the K+1-th, ...) fails
in payments: its "POST /pay" server span has status ERROR. Times are explicit: a trace
lasts 40 ms and ended just now.

Spans are recorded in memory first, then sent over OTLP/gRPC in one request per service;
a request the exporter fails to deliver exits with status 1. Prints {"spans": N} on stdout.
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
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, Status, StatusCode, TraceState


class Threshold(Sampler):
    """Keeps every span; a root gets `ot=th:...` in its tracestate when `th` is set (as a
    sampler with that threshold would write it), and children take their parent's."""

    def __init__(self):
        self.th = None

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None):
        parent = trace.get_current_span(parent_context).get_span_context()
        if parent.is_valid:
            state = parent.trace_state
        elif self.th is not None:
            state = TraceState([("ot", f"th:{self.th}")])
        else:
            state = None
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, state)

    def get_description(self):
        return "Threshold"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--traces", type=int, required=True)
    ap.add_argument("--sampled", type=int, default=0)
    ap.add_argument("--errors-every", type=int, default=0)
    args = ap.parse_args()

    sampler = Threshold()
    memory = InMemorySpanExporter()
    tracers = {}
    for service in ["frontend", "checkout", "payments"]:
        provider = TracerProvider(
            resource=Resource.create({"service.name": service}), sampler=sampler
        )
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tracers[service] = provider.get_tracer("topology")

    ms = 1_000_000
    for i in range(args.traces + args.sampled):
        sampler.th = "8" if i >= args.traces else None
        failed = i < args.traces and args.errors_every > 0 and i % args.errors_every == 0
        t0 = time.time_ns() - 40 * ms
        fe, co, pa = tracers["frontend"], tracers["checkout"], tracers["payments"]
        root = fe.start_span("GET /checkout", kind=SpanKind.SERVER, start_time=t0)
        ctx = trace.set_span_in_context(root)
        call = fe.start_span("POST /checkout", context=ctx, kind=SpanKind.CLIENT, start_time=t0 + ms)
        ctx = trace.set_span_in_context(call)
        server = co.start_span("POST /checkout", context=ctx, kind=SpanKind.SERVER, start_time=t0 + 2 * ms)
        ctx = trace.set_span_in_context(server)
        db = co.start_span(
            "SELECT orders",
            context=ctx,
            kind=SpanKind.CLIENT,
            attributes={"db.system": "postgresql", "db.name": "orders"},
            start_time=t0 + 3 * ms,
        )
        db.end(end_time=t0 + 8 * ms)
        pay = co.start_span("POST /pay", context=ctx, kind=SpanKind.CLIENT, start_time=t0 + 9 * ms)
        pay_server = pa.start_span(
            "POST /pay",
            context=trace.set_span_in_context(pay),
            kind=SpanKind.SERVER,
            start_time=t0 + 10 * ms,
        )
        if failed:
            pay_server.set_status(Status(StatusCode.ERROR, "card declined"))
        pay_server.end(end_time=t0 + 30 * ms)
        pay.end(end_time=t0 + 31 * ms)
        publish = co.start_span(
            "orders publish",
            context=ctx,
            kind=SpanKind.PRODUCER,
            attributes={"messaging.system": "kafka", "messaging.destination.name": "orders"},
            start_time=t0 + 32 * ms,
        )
        publish.end(end_time=t0 + 34 * ms)
        server.end(end_time=t0 + 36 * ms)
        call.end(end_time=t0 + 38 * ms)
        root.end(end_time=t0 + 40 * ms)

    spans = memory.get_finished_spans()
    exporter = OTLPSpanExporter(endpoint=f"http://{args.endpoint}", insecure=True, timeout=30)
    by_service = {}
    for s in spans:
        by_service.setdefault(s.resource.attributes.get("service.name"), []).append(s)
    for service, chunk in by_service.items():
        result = exporter.export(chunk)
        if result != SpanExportResult.SUCCESS:
            sys.exit(f"the OTLP exporter failed to deliver {service}'s {len(chunk)} spans: {result}")
    print(json.dumps({"spans": len(spans)}))


if __name__ == "__main__":
    main()
