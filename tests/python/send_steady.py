"""Sends spans one export at a time, without pause, until told to stop, with the unmodified
OpenTelemetry Python SDK's OTLP/gRPC exporter; records the span id of every span the collector
acknowledged.

Usage: send_steady.py --endpoint HOST:PORT --acked FILE --stop FILE [--max N]

Span ids are 1, 2, 3, ... in the order the spans are exported (each export waits for its
answer), so a test can tell which were sent before which. Each acknowledged id is appended to
--acked (one decimal number a line) as soon as its answer arrives. The sender stops once the
--stop file exists, or after --max spans, and exits 0.
"""

import argparse
import os
import sys

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator


class Sequential(IdGenerator):
    """Span ids 1, 2, 3, ...; one fixed trace id."""

    def __init__(self):
        self.next = 0

    def generate_span_id(self):
        self.next += 1
        return self.next

    def generate_trace_id(self):
        return 0x5EAD7


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--acked", required=True)
    ap.add_argument("--stop", required=True)
    ap.add_argument("--max", type=int, default=100000)
    args = ap.parse_args()

    ids = Sequential()
    provider = TracerProvider(resource=Resource.create({"service.name": "steady"}), id_generator=ids)
    tracer = provider.get_tracer("wasmcol.reload")
    exporter = OTLPSpanExporter(endpoint=f"http://{args.endpoint}", insecure=True, timeout=30)
    refused = 0
    with open(args.acked, "w") as acked:
        for _ in range(args.max):
            if os.path.exists(args.stop):
                break
            span = tracer.start_span("steady")
            span.end()
            if exporter.export([span]) == SpanExportResult.SUCCESS:
                acked.write(f"{span.get_span_context().span_id}\n")
                acked.flush()
            else:
                refused += 1
    exporter.shutdown()
    print(f"sent {ids.next}, not acknowledged {refused}", file=sys.stderr)


if __name__ == "__main__":
    main()
