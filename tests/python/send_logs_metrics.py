"""Sends logs and metrics to a collector with the unmodified OpenTelemetry Python SDK.

Usage: send_logs_metrics.py --protocol grpc|http --endpoint HOST:PORT --expected FILE
       [--records N] [--service NAME] [--pii]

Logs go through Python's `logging` module into the SDK's `LoggerProvider` (`LoggingHandler`),
half of them inside a span so they carry its trace and span ids. Metrics come from a
`MeterProvider`: a counter, an up-down counter, a histogram and a gauge, exported once at the
end (delta-free defaults: cumulative). The script writes what it sent to FILE as JSON (every
log record with its fields, every metric with its kind and points) so the test can compare it
with what the collector wrote.

With --pii, every metric data point also carries personal data and secrets in its attributes
(an e-mail address, a card number, a bearer token; the same per route or room, so the series
are the same as without), listed under "pii" in FILE.
"""

import argparse
import json
import logging

from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider


def exporters(protocol, endpoint):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

        return (
            OTLPLogExporter(endpoint=f"http://{endpoint}", insecure=True),
            OTLPMetricExporter(endpoint=f"http://{endpoint}", insecure=True),
        )
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    return (
        OTLPLogExporter(endpoint=f"http://{endpoint}/v1/logs"),
        OTLPMetricExporter(endpoint=f"http://{endpoint}/v1/metrics"),
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", required=True, choices=["grpc", "http"])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--expected", required=True)
    ap.add_argument("--records", type=int, default=20)
    ap.add_argument("--service", default="checkout")
    ap.add_argument("--pii", action="store_true")
    args = ap.parse_args()

    resource = Resource.create({"service.name": args.service, "deployment.environment": "test"})
    log_exporter, metric_exporter = exporters(args.protocol, args.endpoint)

    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=logger_provider)
    log = logging.getLogger(f"wasmcol.e2e.{args.protocol}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(handler)

    tracer = TracerProvider(resource=resource).get_tracer("wasmcol.e2e")
    sent_logs = []
    levels = [
        (logging.DEBUG, "DEBUG", 5),
        (logging.INFO, "INFO", 9),
        (logging.WARNING, "WARN", 13),
        (logging.ERROR, "ERROR", 17),
    ]
    for i in range(args.records):
        level, text, number = levels[i % len(levels)]
        body = f"order {i} {args.protocol} processed"
        attrs = {"order.id": i, "customer": f"c{i % 3}"}
        if i % 2 == 0:
            with tracer.start_as_current_span(f"handle {i}") as span:
                ctx = span.get_span_context()
                log.log(level, body, extra=attrs)
                ids = (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"))
        else:
            log.log(level, body, extra=attrs)
            ids = ("", "")
        sent_logs.append(
            {
                "body": body,
                "severity_text": text,
                "severity_number": number,
                "attributes": {"order.id": i, "customer": f"c{i % 3}"},
                "trace_id": ids[0],
                "span_id": ids[1],
            }
        )
    logger_provider.force_flush()
    logger_provider.shutdown()

    # One export at shutdown: a long interval keeps the periodic reader from sending early.
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
    meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = meter_provider.get_meter("wasmcol.e2e", "1.0.0")
    orders = meter.create_counter("orders", unit="1", description="orders taken")
    in_flight = meter.create_up_down_counter("in_flight", unit="1")
    latency = meter.create_histogram("latency", unit="ms")
    temperature = meter.create_gauge("temperature", unit="Cel")
    # Per series key: the personal data its points carry with --pii.
    pii = {
        "/r0": {
            "user.email": "jane.doe@example.com",
            "payment.card": "card 4111 1111 1111 1111",
            "auth": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl",
        },
        "/r1": {
            "user.email": "john.roe@example.org",
            "payment.card": "card 5500 0000 0000 0004",
            "auth": "Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiI0NTYifQ.c2lnbmF0dXJm",
        },
        "lab": {
            "user.email": "lab.admin@example.net",
            "payment.card": "card 4012 8888 8888 1881",
            "auth": "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiI3ODkifQ.c2lnbmF0dXJn",
        },
    }

    def attrs(key, name):
        a = {name: key}
        if args.pii:
            a.update(pii[key])
        return a

    for i in range(args.records):
        route = f"/r{i % 2}"
        orders.add(1, attrs(route, "route"))
        in_flight.add(1 if i % 3 else -1, attrs(route, "route"))
        latency.record(float(i), attrs(route, "route"))
        temperature.set(20.0 + i, attrs("lab", "room"))
    meter_provider.force_flush()
    meter_provider.shutdown()

    half = (args.records + 1) // 2
    other = args.records - half
    ups = [1 if i % 3 else -1 for i in range(args.records)]
    expected_metrics = {
        "orders": {"kind": "sum", "monotonic": True, "points": {"/r0": half, "/r1": other}},
        "in_flight": {
            "kind": "sum",
            "monotonic": False,
            "points": {
                "/r0": sum(ups[0::2]),
                "/r1": sum(ups[1::2]),
            },
        },
        "latency": {
            "kind": "histogram",
            "points": {
                "/r0": {"count": half, "sum": float(sum(range(0, args.records, 2)))},
                "/r1": {"count": other, "sum": float(sum(range(1, args.records, 2)))},
            },
        },
        "temperature": {"kind": "gauge", "points": {"lab": 20.0 + args.records - 1}},
    }
    with open(args.expected, "w") as f:
        sent = {"logs": sent_logs, "metrics": expected_metrics}
        if args.pii:
            sent["pii"] = pii
        json.dump(sent, f)


if __name__ == "__main__":
    main()
