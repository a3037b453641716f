"""Sends traces to a collector with the unmodified OpenTelemetry Python SDK.

Usage: send_traces.py --protocol grpc|http|http-json --endpoint HOST:PORT --expected FILE
       [--traces N] [--service NAME]

The SDK records every span it exports (in memory, beside the OTLP exporter); the script writes
them to FILE as JSON so the test can compare, field by field, what the collector wrote.
`http-json` posts the SDK's spans as OTLP/JSON (hex ids) with urllib, since the SDK's HTTP
exporter speaks protobuf only: the encoding to the OTLP message is still the SDK's own.
"""

import argparse
import json
import sys
import urllib.error
import urllib.request

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode


def make_spans(provider, traces):
    tracer = provider.get_tracer("wasmcol.e2e", "1.2.3")
    for t in range(traces):
        with tracer.start_as_current_span(
            f"GET /orders/{t}",
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": "GET",
                "http.response.status_code": 200 + t,
                "server.address": "shop.internal",
                "ratio": 0.25 + t,
                "cached": t % 2 == 0,
                "tags": ["a", "b", f"c{t}"],
                "sizes": [1, 2, 3],
            },
        ) as root:
            root.add_event("cache.miss", {"key": f"order:{t}", "attempt": 2})
            with tracer.start_as_current_span(
                "SELECT orders", kind=SpanKind.CLIENT, attributes={"db.system": "postgresql"}
            ) as child:
                child.set_status(Status(StatusCode.ERROR, "deadline exceeded"))
                child.add_event("exception", {"exception.type": "TimeoutError"})
            linked = root.get_span_context()
            with tracer.start_as_current_span(
                "publish", kind=SpanKind.PRODUCER, links=[Link(linked, {"link.kind": "follows"})]
            ):
                pass
            root.set_status(Status(StatusCode.OK))


def value_json(v):
    if isinstance(v, bool):
        return {"bool": v}
    if isinstance(v, int):
        return {"int": v}
    if isinstance(v, float):
        return {"double": v}
    if isinstance(v, str):
        return {"string": v}
    if isinstance(v, (list, tuple)):
        return {"array": [value_json(x) for x in v]}
    raise TypeError(f"unexpected attribute type {type(v)}")


def attrs_json(attrs):
    return {k: value_json(v) for k, v in (attrs or {}).items()}


def span_json(s):
    ctx = s.get_span_context()
    return {
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_span_id": format(s.parent.span_id, "016x") if s.parent else "",
        "name": s.name,
        "kind": s.kind.value + 1,  # the SDK's enum starts at INTERNAL=0; OTLP's at 1
        "start_time_unix_nano": s.start_time,
        "end_time_unix_nano": s.end_time,
        "attributes": attrs_json(s.attributes),
        "events": [
            {"name": e.name, "time_unix_nano": e.timestamp, "attributes": attrs_json(e.attributes)}
            for e in s.events
        ],
        "links": [
            {
                "trace_id": format(l.context.trace_id, "032x"),
                "span_id": format(l.context.span_id, "016x"),
                "attributes": attrs_json(l.attributes),
            }
            for l in s.links
        ],
        "status_code": {"UNSET": 0, "OK": 1, "ERROR": 2}[s.status.status_code.name],
        "status_message": s.status.description or "",
        "resource": attrs_json(s.resource.attributes),
        "scope": [s.instrumentation_scope.name, s.instrumentation_scope.version],
    }


def post_json(endpoint, spans):
    # The SDK's own encoder builds the OTLP message; we render it as OTLP/JSON (hex ids).
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

    msg = MessageToDict(encode_spans(spans), preserving_proto_field_name=False)

    def fix_ids(o):
        if isinstance(o, dict):
            for k, v in list(o.items()):
                if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                    import base64

                    o[k] = base64.b64decode(v).hex()
                else:
                    fix_ids(v)
        elif isinstance(o, list):
            for x in o:
                fix_ids(x)

    fix_ids(msg)
    req = urllib.request.Request(
        f"http://{endpoint}/v1/traces",
        data=json.dumps(msg).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            if resp.status != 200:
                sys.exit(f"collector answered {resp.status}")
    except urllib.error.HTTPError as e:
        sys.exit(f"collector answered {e.code}: {e.read()[:2000]!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", choices=["grpc", "http", "http-json"], required=True)
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--expected", required=True)
    ap.add_argument("--traces", type=int, default=3)
    ap.add_argument("--service", default="checkout")
    args = ap.parse_args()

    resource = Resource.create(
        {"service.name": args.service, "deployment.environment": "test", "host.cpu.count": 2}
    )
    provider = TracerProvider(resource=resource)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    if args.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"http://{args.endpoint}", insecure=True)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif args.protocol == "http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=f"http://{args.endpoint}/v1/traces")
        provider.add_span_processor(SimpleSpanProcessor(exporter))

    make_spans(provider, args.traces)
    provider.force_flush()
    spans = memory.get_finished_spans()
    if args.protocol == "http-json":
        post_json(args.endpoint, spans)
    provider.shutdown()
    with open(args.expected, "w") as f:
        json.dump([span_json(s) for s in spans], f)


if __name__ == "__main__":
    main()
