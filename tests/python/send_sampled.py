"""Sends spans through a consistent probability sampler in the unmodified OpenTelemetry
Python SDK, for the weighted span-metrics test (tests/connectors.rs).

Usage:
  send_sampled.py --endpoint HOST:PORT --spans N --fraction F [--seed S]

Makes N single-span traces (a SERVER span "GET /item" of service "shop"). The sampler is
OpenTelemetry's consistent probability sampling: it keeps a trace when the randomness in its
trace id (the rightmost 56 bits) is at least the threshold T = (1 - F) * 2^56, and records T
in the kept spans' tracestate as `ot=th:HEX` (14 hex digits, trailing zeros left out). Trace
ids come from a random generator seeded with S (default 1), so a run is repeatable.

Kept spans are recorded in memory, then sent over OTLP/gRPC in requests of 2000; a request
the exporter fails to deliver exits with status 1. Prints {"made": N, "kept": K, "th": HEX}.
"""

import argparse
import json
import random
import sys
from fractions import Fraction

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import SpanKind, TraceState


class Consistent(Sampler):
    def __init__(self, fraction):
        # Exact arithmetic: (1 - F) * 2^56 in floating point is off in the last digits.
        self.threshold = 2**56 - round(Fraction(fraction) * 2**56)
        self.th = f"{self.threshold:014x}".rstrip("0") or "0"
        self.state = TraceState([("ot", f"th:{self.th}")])

    def should_sample(self, parent_context, trace_id, name, kind=None, attributes=None, links=None):
        if trace_id & (2**56 - 1) >= self.threshold:
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes, self.state)
        return SamplingResult(Decision.DROP)

    def get_description(self):
        return f"Consistent{{th:{self.th}}}"


class Seeded(IdGenerator):
    def __init__(self, seed):
        self.random = random.Random(seed)

    def generate_span_id(self):
        return self.random.getrandbits(64) or 1

    def generate_trace_id(self):
        return self.random.getrandbits(128) or 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--spans", type=int, required=True)
    ap.add_argument("--fraction", required=True)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()

    sampler = Consistent(args.fraction)
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": "shop"}),
        sampler=sampler,
        id_generator=Seeded(args.seed),
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("sampled")
    for _ in range(args.spans):
        tracer.start_span("GET /item", kind=SpanKind.SERVER).end()

    spans = memory.get_finished_spans()
    exporter = OTLPSpanExporter(endpoint=f"http://{args.endpoint}", insecure=True, timeout=30)
    for i in range(0, len(spans), 2000):
        chunk = spans[i : i + 2000]
        if exporter.export(chunk) != SpanExportResult.SUCCESS:
            sys.exit(f"the OTLP exporter failed to deliver {len(chunk)} spans")
    print(json.dumps({"made": args.spans, "kept": len(spans), "th": sampler.th}))


if __name__ == "__main__":
    main()
