"""Sends a described mix of traces with the unmodified OpenTelemetry Python SDK, for the
tail-sampling end-to-end tests (tests/tail_sampling.rs).

Usage:
  send_tail.py --protocol grpc|http --endpoint HOST:PORT --spec JSON [--batch SPANS]
               [--by-service]
  send_tail.py --protocol grpc|http --endpoint HOST:PORT --late TRACE_ID[,TRACE_ID...]

--spec describes groups of traces, each sent `count` times:

  {"services": ["frontend", "checkout", "payments"],
   "groups": [
     {"name": "errors", "count": 20, "spans": 4, "error": true},
     {"name": "slow", "count": 20, "spans": 4, "duration_ms": 2000},
     {"name": "vip", "count": 20, "spans": 4, "attributes": {"user.tier": "vip"}},
     {"name": "plain", "count": 2000, "spans": 3},
     {"name": "trap", "count": 1, "spans": 2, "span_name": "trigger", "service": "checkout"}]}

A trace is a root SERVER span with `spans - 1` children, spread over the services: the root
on `service` (or the services in turn, trace by trace), child i on the next services in
turn, each service with its own TracerProvider (so a trace's spans come under several
resources, as across real services). Times are explicit: a trace lasts `duration_ms`
(default 20) and ended just now, whatever the time spent creating it. Options of a group:
  error        the last child (the root when there is no child) gets status ERROR
  duration_ms  the trace's duration (root start to root end)
  attributes   attributes set on the root span
  span_name    name of every child span (the root's when there is no child)
  service      the root's service (default: the services in turn)

Every span is recorded in memory first; then the SDK's OTLP exporter sends them in requests
of whole traces, at least --batch spans each (default 512; a large value sends one request).
With --by-service, each service's spans are sent on their own instead, in requests of
--batch spans, service after service, as services export independently: a trace's spans
then arrive in several requests. A request the exporter fails to deliver exits with
status 1.

--late sends one span per given trace ID (32 hex digits), as a late arrival of that trace:
a child of a remote parent span (a random span ID) in that trace, from service `late`.

Prints one JSON object on stdout:
  {"groups": {"errors": [{"trace_id": HEX, "span_ids": [HEX, ...]}, ...], ...},
   "late": [{"trace_id": HEX, "span_id": HEX, "parent_span_id": HEX}, ...],
   "spans": N, "requests": N}
"""

import argparse
import json
import random
import sys
import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)


class Services:
    """One TracerProvider per service, all recording into one in-memory exporter."""

    def __init__(self, names):
        self.memory = InMemorySpanExporter()
        self.providers = {}
        self.tracers = {}
        for name in names:
            self.add(name)

    def add(self, name):
        if name in self.tracers:
            return self.tracers[name]
        provider = TracerProvider(
            resource=Resource.create({"service.name": name, "deployment.environment": "e2e"})
        )
        provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.providers[name] = provider
        self.tracers[name] = provider.get_tracer("wasmcol.e2e.tail", "1.0.0")
        return self.tracers[name]

    def shutdown(self):
        for p in self.providers.values():
            p.shutdown()


def hex_trace(ctx):
    return format(ctx.trace_id, "032x")


def hex_span(ctx):
    return format(ctx.span_id, "016x")


def make_trace(services, names, group, index, now_ns):
    """Creates one trace of `group`; returns (trace id, [span ids])."""
    spans = max(1, int(group.get("spans", 1)))
    duration = int(float(group.get("duration_ms", 20)) * 1_000_000)
    root_service = group.get("service") or names[index % len(names)]
    root_at = names.index(root_service) if root_service in names else 0
    span_name = group.get("span_name")
    error = bool(group.get("error", False))
    start = now_ns - duration
    end = now_ns

    root_tracer = services.add(root_service)
    root = root_tracer.start_span(
        span_name if (span_name and spans == 1) else f"GET /{group['name']}/{index}",
        kind=SpanKind.SERVER,
        start_time=start,
        attributes={"e2e.group": group["name"], **group.get("attributes", {})},
    )
    ids = [hex_span(root.get_span_context())]
    ctx = trace.set_span_in_context(root)
    children = spans - 1
    for i in range(children):
        tracer = services.add(names[(root_at + 1 + i) % len(names)])
        # Children run one after the other inside the root.
        c_start = start + duration * (i + 1) // (children + 2)
        c_end = start + duration * (i + 2) // (children + 2)
        child = tracer.start_span(
            span_name or f"call-{i}",
            context=ctx,
            kind=SpanKind.CLIENT,
            start_time=c_start,
            attributes={"e2e.child": i},
        )
        if error and i == children - 1:
            child.set_status(Status(StatusCode.ERROR, "e2e: failing on purpose"))
        ids.append(hex_span(child.get_span_context()))
        child.end(end_time=c_end)
    if error and children == 0:
        root.set_status(Status(StatusCode.ERROR, "e2e: failing on purpose"))
    root.end(end_time=end)
    return hex_trace(root.get_span_context()), ids


def exporter_for(protocol, endpoint):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=f"http://{endpoint}", insecure=True, timeout=30)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=f"http://{endpoint}/v1/traces", timeout=30)


def send(exporter, spans, batch):
    """Exports `spans` in requests of whole traces, at least `batch` spans each (in order of
    first appearance of each trace). Returns the number of requests."""
    by_trace = {}
    for s in spans:
        by_trace.setdefault(s.get_span_context().trace_id, []).append(s)
    requests = 0
    chunk = []
    for trace_spans in by_trace.values():
        chunk.extend(trace_spans)
        if len(chunk) >= batch:
            requests += export(exporter, chunk)
            chunk = []
    if chunk:
        requests += export(exporter, chunk)
    return requests


def send_by_service(exporter, spans, batch):
    """Exports each service's spans on their own, in requests of `batch` spans. Returns the
    number of requests."""
    by_service = {}
    for s in spans:
        by_service.setdefault(s.resource.attributes.get("service.name"), []).append(s)
    requests = 0
    for service_spans in by_service.values():
        for i in range(0, len(service_spans), batch):
            requests += export(exporter, service_spans[i : i + batch])
    return requests


def export(exporter, chunk):
    result = exporter.export(chunk)
    if result != SpanExportResult.SUCCESS:
        sys.exit(f"the OTLP exporter failed to deliver {len(chunk)} spans: {result}")
    return 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--spec", help="JSON description of the traces to send")
    ap.add_argument("--late", help="comma-separated trace IDs to send one late span for")
    ap.add_argument("--batch", type=int, default=512, help="spans per request (at least)")
    ap.add_argument(
        "--by-service", action="store_true", help="send each service's spans on their own"
    )
    args = ap.parse_args()
    if bool(args.spec) == bool(args.late):
        sys.exit("give exactly one of --spec and --late")

    out = {"groups": {}, "late": [], "spans": 0, "requests": 0}
    if args.spec:
        spec = json.loads(args.spec)
        names = spec.get("services") or ["frontend", "checkout", "payments"]
        services = Services(names)
        index = 0
        for group in spec["groups"]:
            traces = out["groups"].setdefault(group["name"], [])
            for _ in range(int(group["count"])):
                trace_id, span_ids = make_trace(services, names, group, index, time.time_ns())
                traces.append({"trace_id": trace_id, "span_ids": span_ids})
                index += 1
    else:
        services = Services(["late"])
        tracer = services.tracers["late"]
        now = time.time_ns()
        for trace_id in args.late.split(","):
            parent = SpanContext(
                trace_id=int(trace_id, 16),
                span_id=random.getrandbits(64) or 1,
                is_remote=True,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
            ctx = trace.set_span_in_context(NonRecordingSpan(parent))
            span = tracer.start_span("late", context=ctx, start_time=now - 1_000_000)
            span.end(end_time=now)
            sc = span.get_span_context()
            out["late"].append(
                {
                    "trace_id": hex_trace(sc),
                    "span_id": hex_span(sc),
                    "parent_span_id": format(parent.span_id, "016x"),
                }
            )

    spans = services.memory.get_finished_spans()
    out["spans"] = len(spans)
    exporter = exporter_for(args.protocol, args.endpoint)
    if args.by_service:
        out["requests"] = send_by_service(exporter, spans, max(1, args.batch))
    else:
        out["requests"] = send(exporter, spans, max(1, args.batch))
    exporter.shutdown()
    services.shutdown()
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
