"""Logs personal data and secrets through the unmodified OpenTelemetry Python SDK, for the
scrubbing tests.

Usage: send_pii_logs.py --protocol grpc|http --endpoint HOST:PORT --expected FILE
       [--records N] [--service NAME]

Each record goes through Python's `logging` into the SDK's `LoggerProvider`. Records
alternate between a string body ("rec-I paid with card ..., mail ..., header Bearer ...")
and a map body (`log.info({...})`, with the secrets in entries, in a nested map and in an
array); every record also carries secrets in its attributes, beside plain ones. The resource
carries an e-mail address.

The script writes FILE as JSON: the secrets it used, and per record its id and the parts
that must arrive unchanged.
"""

import argparse
import json
import logging

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

CARD = "4111 1111 1111 1111"
CARD_DIGITS = "5500000000000004"
BEARER = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJqYW5lIn0.c2lnbmF0dXJlLXNlY3JldA"
OWNER = "owner.person@example.org"


def email(i):
    return f"jane.doe{i}@example.com"


def exporter(protocol, endpoint):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        return OTLPLogExporter(endpoint=f"http://{endpoint}", insecure=True)
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

    return OTLPLogExporter(endpoint=f"http://{endpoint}/v1/logs")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", required=True, choices=["grpc", "http"])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--expected", required=True)
    ap.add_argument("--records", type=int, default=10)
    ap.add_argument("--service", default="payments")
    args = ap.parse_args()

    resource = Resource.create({"service.name": args.service, "owner.email": OWNER})
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter(args.protocol, args.endpoint)))
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    log = logging.getLogger(f"wasmcol.pii.{args.protocol}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    log.addHandler(handler)

    records = []
    for i in range(args.records):
        rec = f"rec-{i}"
        attrs = {
            "rec": rec,
            "order.id": i,
            "customer.email": email(i),
            "http.request.header.authorization": BEARER,
            "payment.note": f"card {CARD_DIGITS} on file",
        }
        if i % 2 == 0:
            body = f"{rec} paid with card {CARD}, mail {email(i)}, header {BEARER}"
            log.warning(body, extra=attrs)
            records.append({"rec": rec, "kind": "string", "keeps": [f"{rec} paid with card ", ", mail ", ", header "]})
        else:
            body = {
                "rec": rec,
                "user": email(i),
                "amount": 12.5,
                "request": {"authorization": BEARER, "path": "/checkout"},
                "items": ["socks", f"gift card {CARD}"],
            }
            log.info(body, extra=attrs)
            records.append({"rec": rec, "kind": "map", "keeps": ["socks", "/checkout"]})
    provider.force_flush()
    provider.shutdown()

    with open(args.expected, "w") as f:
        json.dump(
            {
                "secrets": [CARD, CARD_DIGITS, BEARER.split(" ", 1)[1], OWNER, "jane.doe"],
                "records": records,
            },
            f,
        )


if __name__ == "__main__":
    main()
