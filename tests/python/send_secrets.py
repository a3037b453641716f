"""Sends spans full of personal data and secrets with the unmodified OpenTelemetry Python SDK,
for the pii-scrub + enrich end-to-end test (tests/scrub_enrich.rs).

Usage: send_secrets.py --endpoint HOST:PORT --expected FILE

Two services (`checkout` and `search`, one TracerProvider each) export over OTLP/HTTP. Secrets
sit in span, resource, event and link attributes, inside string arrays, in SQL statements and
URLs, and in a status message and a span name; beside them are look-alikes that must stay
(order ids that fail the Luhn check, long integers, version strings) and ordinary attributes.
Every value is fixed, so two runs send the same content (only the ids and times differ).

FILE gets `{"spans": [...], "secrets": [...]}`: the spans as the SDK recorded them (the shape
of send_traces.py), and every secret string that must not appear in the collector's output.
"""

import argparse
import json

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from send_traces import span_json

VISA = "4111 1111 1111 1111"
VISA_COMPACT = "4111111111111111"
MASTERCARD = "5500-0000-0000-0004"
AMEX = "3782-822463-10005"
CARD_INT = 4242424242424242
JANE = "jane.doe@example.com"
JOHN = "john.roe@example.org"
OWNER = "ops-team@example.com"
TEAM_MAIL = "team@example.com"
BEARER = "mF_9.B5f-4.1JqM"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUgRG9lIn0"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
GITHUB = "ghp_" + "aB3" * 12
AWS = "AKIAIOSFODNN7EXAMPLE"
STRIPE = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
PASSWORD = "hunter2hunter2"
TOKEN_TEXT = "abcd1234efgh"
URL_TOKEN = "s3cr3tT0k3nValue"
URL_SIG = "0f9e8d7c6b5a4321"
URL_PASSWORD = "Sup3rS3cret"
SEARCH_KEY = "9f8e7d6c5b4a39281706"
SQL_TOKEN = "tok_live_abcdef123456"
IPV4 = "203.0.113.7"
IPV6 = "2001:db8::42"
PHONE = "+44 20 7946 0958"
SSN = "123-45-6789"
IBAN = "DE89 3704 0044 0532 0130 00"
COOKIE = "abc123def456ghi"
CUSTOMER = "customer-482913"

SECRETS = [
    VISA, VISA_COMPACT, MASTERCARD, AMEX, str(CARD_INT), JANE, JOHN, OWNER, TEAM_MAIL, BEARER,
    JWT, GITHUB, AWS, STRIPE, PASSWORD, TOKEN_TEXT, URL_TOKEN, URL_SIG, URL_PASSWORD, SEARCH_KEY,
    SQL_TOKEN, IPV4, IPV6, PHONE, SSN, IBAN, COOKIE, CUSTOMER,
]

# Look-alikes and ordinary values that must come out exactly as they went in.
PLAIN = {
    "http.request.method": "POST",
    "http.response.status_code": 402,
    "server.address": "shop.internal",
    "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "order.id": "4111111111111112",  # 16 digits, Visa prefix, fails the Luhn check
    "order.number": 1234567890123456,  # no card issuer starts with 1
    "order.created_ns": 1763700000000000000,
    "order.note": "Order 42 of 3 items, shipped 2026-11-21 from bay 7",
    "tracking.number": "1Z999AA10123456784",
    "build.version": "1.2.3.4.5",
    "code.function": "std::fmt::write",
    "sku.list": ["SKU-10001", "SKU-10002"],
    "ratio": 0.25,
    "cached": True,
    "sizes": [1, 2, 3],
    "help.url": "https://shop.example.com/help?topic=returns&lang=en",
}


def checkout(provider):
    tracer = provider.get_tracer("wasmcol.scrub", "0.4.0")
    with tracer.start_as_current_span(
        "POST /checkout",
        kind=SpanKind.SERVER,
        attributes={
            **PLAIN,
            "payment.card": VISA,
            "payment.card_number": CARD_INT,
            "payment.note": f"charged {MASTERCARD} twice",
            "payment.amex.message": f"amex {AMEX} ok",
            "payment.iban": IBAN,
            "enduser.email": JANE,
            "customer.id": CUSTOMER,
            "customer.phone": PHONE,
            "customer.note": f"ssn {SSN} on file",
            "client.address": IPV4,
            "network.peer.address": IPV6,
            "http.request.header.authorization": [f"Bearer {BEARER}"],
            "http.request.header.cookie": [f"session={COOKIE}"],
            "auth.jwt": JWT,
            "github.token": GITHUB,
            "aws.access_key_id": AWS,
            "stripe.key": STRIPE,
            "config.dump": f"password={PASSWORD} retries=3",
            "url.full": f"https://shop.example.com/checkout?cart=991&access_token={URL_TOKEN}&lang=en",
            "http.url": f"https://admin:{URL_PASSWORD}@internal.example.com/admin?sig={URL_SIG}&page=2",
        },
    ) as root:
        root.add_event(
            "payment.declined",
            {"card": MASTERCARD, "reason": "insufficient funds", "attempt": 2},
        )
        root.add_event(
            "exception",
            {
                "exception.type": "AuthError",
                "exception.message": f"login failed for {JANE} with token={TOKEN_TEXT}",
            },
        )
        with tracer.start_as_current_span(
            "SELECT users",
            kind=SpanKind.CLIENT,
            attributes={
                "db.system": "postgresql",
                "db.statement": "SELECT id, name FROM users WHERE email = "
                f"'{JANE}' AND card = '{VISA_COMPACT}' LIMIT 10",
                "db.query.text": "INSERT INTO payments (user_id, token, amount) VALUES "
                f"(7, '{SQL_TOKEN}', 19.99)",
                "db.operation.name": "SELECT",
            },
        ):
            pass
        linked = root.get_span_context()
        with tracer.start_as_current_span(
            "publish receipt",
            kind=SpanKind.PRODUCER,
            links=[
                Link(
                    linked,
                    {
                        "link.reason": f"retry of payment {VISA_COMPACT} for {CUSTOMER}",
                        "link.kind": "follows",
                    },
                )
            ],
        ):
            pass
        root.set_status(Status(StatusCode.ERROR, f"card {VISA} declined"))
    with tracer.start_as_current_span(
        "GET /account",
        kind=SpanKind.SERVER,
        attributes={"enduser.email": JANE, "contact.email": JOHN, "http.request.method": "GET"},
    ):
        pass
    with tracer.start_as_current_span(f"notify {JANE}", kind=SpanKind.INTERNAL):
        pass


def search(provider):
    tracer = provider.get_tracer("wasmcol.scrub", "0.4.0")
    with tracer.start_as_current_span(
        "GET /q",
        kind=SpanKind.SERVER,
        attributes={
            "url.full": f"https://search.example.com/q?term=boots&api_key={SEARCH_KEY}&page=1",
            "search.term": "boots",
            "mail.recipients": [JANE, "not-an-email", TEAM_MAIL],
            "http.response.status_code": 200,
        },
    ):
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--expected", required=True)
    args = ap.parse_args()

    resources = {
        "checkout": Resource.create(
            {
                "service.name": "checkout",
                "service.version": "2.31.0",
                "deployment.environment": "test",
                "process.command_args": ["java", "-jar", "app.jar", f"--db-password={PASSWORD}"],
                "deployment.owner": OWNER,
            }
        ),
        "search": Resource.create(
            {
                "service.name": "search",
                "process.command_args": ["python", "-m", "search", "--port=8080"],
            }
        ),
    }
    spans = []
    for name, make in [("checkout", checkout), ("search", search)]:
        provider = TracerProvider(resource=resources[name])
        memory = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(memory))
        exporter = OTLPSpanExporter(endpoint=f"http://{args.endpoint}/v1/traces")
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        make(provider)
        provider.force_flush()
        spans.extend(memory.get_finished_spans())
        provider.shutdown()
    with open(args.expected, "w") as f:
        json.dump({"spans": [span_json(s) for s in spans], "secrets": SECRETS}, f)


if __name__ == "__main__":
    main()
