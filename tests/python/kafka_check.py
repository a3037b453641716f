"""Reads every message of a Kafka topic with an independent client (confluent-kafka) and checks
that each decodes as an OTLP ExportTraceServiceRequest.

Usage: kafka_check.py --brokers HOST:PORT --topic NAME --out FILE [--encoding otlp_proto|otlp_json]

Writes FILE as JSON: {"messages": N, "max_message_bytes": largest key+value,
"undecodable": N, "spans": [{"trace_id", "span_id", "partition", "key"}]} where ids and keys
are lowercase hex. The test decides what to assert; this script only reports.
"""

import argparse
import json
import sys

from confluent_kafka import Consumer, TopicPartition
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def decode(value, encoding):
    req = ExportTraceServiceRequest()
    if encoding == "otlp_json":
        # OTLP/JSON ids are hex; protobuf's JSON mapping expects base64, so convert first.
        doc = json.loads(value)
        for rs in doc.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for s in ss.get("spans", []):
                    for k in ("traceId", "spanId", "parentSpanId"):
                        if s.get(k):
                            import base64

                            s[k] = base64.b64encode(bytes.fromhex(s[k])).decode()
        json_format.ParseDict(doc, req, ignore_unknown_fields=True)
    else:
        req.ParseFromString(value)
    return req


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--encoding", default="otlp_proto")
    args = ap.parse_args()

    c = Consumer(
        {
            "bootstrap.servers": args.brokers,
            "group.id": "kafka-check",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    meta = c.list_topics(args.topic, timeout=10)
    parts = sorted(meta.topics[args.topic].partitions)
    ends = {}
    assign = []
    for p in parts:
        lo, hi = c.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)
        if hi > lo:
            ends[p] = hi
            assign.append(TopicPartition(args.topic, p, lo))
    c.assign(assign)

    messages = 0
    largest = 0
    undecodable = 0
    spans = []
    done = set()
    idle = 0
    # The watermarks are a lower bound (tansu 0.6 counts a record batch as one offset), so
    # read on until nothing has arrived for two seconds.
    while idle < 4 or (len(done) < len(ends) and idle < 20):
        m = c.poll(0.5)
        if m is None:
            idle += 1
            continue
        idle = 0
        if m.error():
            print(f"consumer error: {m.error()}", file=sys.stderr)
            continue
        p, off = m.partition(), m.offset()
        if off + 1 >= ends.get(p, 0):
            done.add(p)
        messages += 1
        key = m.key() or b""
        value = m.value() or b""
        largest = max(largest, len(key) + len(value))
        try:
            req = decode(value, args.encoding)
        except Exception as e:  # noqa: BLE001 - any failure means "not OTLP"
            print(f"partition {p} offset {off}: not OTLP: {e}", file=sys.stderr)
            undecodable += 1
            continue
        for rs in req.resource_spans:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append(
                        {
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "partition": p,
                            "key": key.hex(),
                        }
                    )
    c.close()
    with open(args.out, "w") as f:
        json.dump(
            {
                "messages": messages,
                "max_message_bytes": largest,
                "undecodable": undecodable,
                "complete": len(done) == len(ends),
                "spans": spans,
            },
            f,
        )


if __name__ == "__main__":
    main()
