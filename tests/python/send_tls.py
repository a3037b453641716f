"""Sends traces over TLS (or, to test refusals, in plaintext) with the OpenTelemetry Python SDK.

Usage: send_tls.py --protocol grpc|http --endpoint HOST:PORT --expected FILE
       [--ca FILE] [--cert FILE --key FILE] [--header KEY=VALUE ...]
       [--traces N] [--batches N] [--pause SECONDS] [--timeout SECONDS] [--plaintext]

Makes `--batches` rounds of `--traces` traces (the spans of send_traces.py) and exports each
round with one OTLP exporter (so one long-lived connection), `--pause` apart. The spans of every
round the collector acknowledged are written to FILE as JSON (send_traces.py's shape); the exit
status is 1 if any round was not acknowledged.
"""

import argparse
import json
import sys
import time

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from send_traces import make_spans, span_json


def read(path):
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def exporter(args, headers):
    scheme = "http" if args.plaintext else "https"
    if args.protocol == "grpc":
        import grpc
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        if args.plaintext:
            return OTLPSpanExporter(
                endpoint=f"http://{args.endpoint}", insecure=True, headers=headers,
                timeout=args.timeout,
            )
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(args.ca),
            private_key=read(args.key),
            certificate_chain=read(args.cert),
        )
        return OTLPSpanExporter(
            endpoint=f"https://{args.endpoint}", credentials=credentials, headers=headers,
            timeout=args.timeout,
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(
        endpoint=f"{scheme}://{args.endpoint}/v1/traces",
        certificate_file=args.ca,
        client_certificate_file=args.cert,
        client_key_file=args.key,
        headers=headers,
        timeout=args.timeout,
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", choices=["grpc", "http"], required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--expected", required=True)
    ap.add_argument("--ca")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--traces", type=int, default=3)
    ap.add_argument("--batches", type=int, default=1)
    ap.add_argument("--pause", type=float, default=0.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--plaintext", action="store_true")
    ap.add_argument("--service", default="checkout")
    args = ap.parse_args()
    headers = dict(h.split("=", 1) for h in args.header)

    provider = TracerProvider(resource=Resource.create({"service.name": args.service}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    otlp = exporter(args, headers)
    delivered, failed = [], 0
    for b in range(args.batches):
        if b:
            time.sleep(args.pause)
        before = len(memory.get_finished_spans())
        make_spans(provider, args.traces)
        spans = memory.get_finished_spans()[before:]
        if otlp.export(spans) == SpanExportResult.SUCCESS:
            delivered.extend(spans)
        else:
            failed += 1
            print(f"round {b}: the collector did not acknowledge {len(spans)} spans", file=sys.stderr)
    otlp.shutdown()
    provider.shutdown()
    with open(args.expected, "w") as f:
        json.dump([span_json(s) for s in delivered], f)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
