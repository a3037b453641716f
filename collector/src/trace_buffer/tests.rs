use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, TracesData, status::StatusCode,
};
use prost::Message;

use super::*;
use crate::trace_buffer::cache::{ExactCache, Kept, SampledCache};

const WAIT: Duration = Duration::from_secs(10);

fn limits() -> BufferLimits {
    BufferLimits {
        decision_wait: WAIT,
        num_traces: 1000,
        max_bytes: 64 << 20,
        max_spans_per_trace: 100,
        max_bytes_per_trace: 1 << 20,
        early_quiet: None,
        expected_traces: 0,
    }
}

fn buffer(limits: BufferLimits) -> Buffer {
    Buffer::new(
        limits,
        SampledCache::Exact(ExactCache::new(100)),
        ExactCache::new(100),
    )
}

fn span(trace: u8, id: u8, parent: Option<u8>, error: bool) -> Span {
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: format!("op-{id}"),
        start_time_unix_nano: 1_000 + u64::from(id),
        end_time_unix_nano: 2_000 + u64::from(id),
        attributes: vec![KeyValue {
            key: "k".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!("v{id}"))),
            }),
            ..Default::default()
        }],
        status: error.then(|| Status {
            code: StatusCode::Error as i32,
            message: "boom".into(),
        }),
        ..Default::default()
    }
}

fn batch(service: &str, spans: Vec<Span>) -> Vec<ResourceSpans> {
    vec![ResourceSpans {
        resource: Some(Resource {
            attributes: vec![KeyValue {
                key: "service.name".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(service.into())),
                }),
                ..Default::default()
            }],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
    }]
}

fn spans_of(groups: &[Group]) -> Vec<Span> {
    groups
        .iter()
        .flat_map(|g| g.decode().expect("decodes").scope_spans)
        .flat_map(|ss| ss.spans)
        .collect()
}

/// How a test hands spans to the buffer: decoded, or as checked protobuf (what the OTLP
/// receivers produce). Both must buffer exactly the same.
type Ingest = fn(&mut Buffer, &[ResourceSpans], Instant, u64) -> Ingested;

fn decoded(b: &mut Buffer, rs: &[ResourceSpans], now: Instant, unix: u64) -> Ingested {
    b.ingest(rs, now, unix)
}

fn protobuf(b: &mut Buffer, rs: &[ResourceSpans], now: Instant, unix: u64) -> Ingested {
    let bytes = TracesData {
        resource_spans: rs.to_vec(),
    }
    .encode_to_vec();
    crate::otlp::wire::validate(&bytes).expect("valid");
    // Split in two requests where possible, as a merged batch arrives.
    let cut = if rs.len() > 1 {
        prost::encoding::message::encoded_len(1, &rs[0])
    } else {
        bytes.len()
    };
    b.ingest_protobuf([&bytes[..cut], &bytes[cut..]], now, unix)
}

#[test]
fn traces_wait_for_decision_wait_then_come_out_oldest_first_with_summaries() {
    waits_then_comes_out_oldest_first(decoded);
}

#[test]
fn protobuf_traces_wait_then_come_out_oldest_first_with_summaries() {
    waits_then_comes_out_oldest_first(protobuf);
}

fn waits_then_comes_out_oldest_first(ingest: Ingest) {
    let t0 = Instant::now();
    let mut b = buffer(limits());
    ingest(
        &mut b,
        &batch("a", vec![span(1, 1, None, false), span(2, 2, None, true)]),
        t0,
        5,
    );
    ingest(
        &mut b,
        &batch(
            "b",
            vec![span(1, 3, Some(1), true), span(3, 4, Some(9), false)],
        ),
        t0 + Duration::from_secs(1),
        6,
    );
    assert_eq!(b.trace_count(), 3);
    assert!(
        b.take_due(t0 + Duration::from_secs(9), 100, usize::MAX)
            .is_empty()
    );

    let due = b.take_due(t0 + WAIT, 100, usize::MAX);
    let ids: Vec<TraceId> = due.iter().map(|t| t.id).collect();
    assert_eq!(
        ids,
        vec![u128::from_be_bytes([1; 16]), u128::from_be_bytes([2; 16])]
    );
    let t1 = &due[0].summary;
    assert_eq!((t1.span_count, t1.error_spans, t1.has_root), (2, 1, true));
    assert_eq!(t1.service_name, "a");
    assert_eq!(t1.first_seen_unix_nano, 5);
    assert_eq!((t1.start_unix_nano, t1.end_unix_nano), (1_001, 2_003));
    // Spans come back exactly as they went in, resource and schema included.
    assert_eq!(
        spans_of(&due[0].groups),
        vec![span(1, 1, None, false), span(1, 3, Some(1), true)]
    );
    let rs = due[0].groups[1].decode().unwrap();
    assert_eq!(rs.schema_url, "https://opentelemetry.io/schemas/1.26.0");

    let later = b.take_due(t0 + WAIT + Duration::from_secs(1), 100, usize::MAX);
    assert_eq!(later.len(), 1);
    assert!(!later[0].summary.has_root);
}

#[test]
fn the_policy_batch_is_a_traces_data_trace_by_trace() {
    let t0 = Instant::now();
    let mut b = buffer(limits());
    b.ingest(
        &batch("a", vec![span(1, 1, None, false), span(2, 2, None, false)]),
        t0,
        0,
    );
    b.ingest(&batch("b", vec![span(1, 3, Some(1), false)]), t0, 0);
    let due = b.take_due(t0 + WAIT, 100, usize::MAX);
    let mut bytes = Vec::new();
    let counts = encode_for_policy(&due, &mut bytes);
    assert_eq!(counts, vec![2, 1]);
    let data = TracesData::decode(&bytes[..]).unwrap();
    assert_eq!(data.resource_spans.len(), 3);
    let names: Vec<&str> = data
        .resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter().flat_map(|ss| ss.spans.iter()))
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, vec!["op-1", "op-3", "op-2"]);
}

#[test]
fn num_traces_evicts_the_oldest_first_and_it_is_decided_at_once() {
    let t0 = Instant::now();
    let mut b = buffer(BufferLimits {
        num_traces: 2,
        ..limits()
    });
    let mut evictions = Vec::new();
    for t in 1..=4u8 {
        evictions.extend(
            b.ingest(&batch("a", vec![span(t, t, None, false)]), t0, 0)
                .evictions,
        );
    }
    assert_eq!(evictions, vec![Eviction::NumTraces, Eviction::NumTraces]);
    let due = b.take_due(t0, 100, usize::MAX);
    let ids: Vec<u8> = due.iter().map(|t| t.summary.trace_id[0]).collect();
    assert_eq!(ids, vec![1, 2]);
}

#[test]
fn a_trace_past_its_cap_is_decided_at_once() {
    let t0 = Instant::now();
    let mut b = buffer(BufferLimits {
        max_spans_per_trace: 3,
        ..limits()
    });
    let spans: Vec<Span> = (1..=4).map(|i| span(7, i, Some(1), false)).collect();
    let ingested = b.ingest(&batch("a", spans), t0, 0);
    assert_eq!(ingested.evictions, vec![Eviction::TraceCap]);
    let due = b.take_due(t0, 100, usize::MAX);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].summary.span_count, 4);
}

#[test]
fn late_spans_follow_the_decision_and_spans_during_the_decision_join_it() {
    late_spans_follow_the_decision(decoded);
}

#[test]
fn protobuf_late_spans_follow_the_decision() {
    late_spans_follow_the_decision(protobuf);
}

fn late_spans_follow_the_decision(ingest: Ingest) {
    let t0 = Instant::now();
    let mut b = buffer(limits());
    ingest(
        &mut b,
        &batch("a", vec![span(1, 1, None, false), span(2, 2, None, false)]),
        t0,
        0,
    );
    let due = b.take_due(t0 + WAIT, 100, usize::MAX);
    assert_eq!(due.len(), 2);
    // Arrives while trace 1 is being decided: joins it.
    let during = ingest(
        &mut b,
        &batch("a", vec![span(1, 5, Some(1), false)]),
        t0 + WAIT,
        0,
    );
    assert_eq!((during.late_sampled, during.late_dropped), (0, 0));
    let kept = Kept {
        policy: 0,
        probability: 1.0,
    };
    let joined = b.finish(due[0].id, Some(kept), t0 + WAIT);
    assert_eq!(spans_of(&joined), vec![span(1, 5, Some(1), false)]);
    assert!(b.finish(due[1].id, None, t0 + WAIT).is_empty());
    assert_eq!(b.trace_count(), 0);

    let late = ingest(
        &mut b,
        &batch(
            "a",
            vec![span(1, 6, Some(1), false), span(2, 7, Some(2), false)],
        ),
        t0 + WAIT * 2,
        0,
    );
    assert_eq!((late.late_sampled, late.late_dropped), (1, 1));
    assert_eq!(
        late.forward[0].scope_spans[0].spans,
        vec![span(1, 6, Some(1), false)]
    );
    assert_eq!(late.forward[0].resource, batch("a", vec![])[0].resource);
    assert_eq!(b.trace_count(), 0, "late spans never start a new trace");
}

#[test]
fn every_byte_is_given_back_once_traces_are_decided() {
    let t0 = Instant::now();
    let mut b = buffer(limits());
    // A span of a typical size (a few hundred bytes: eight attributes).
    let sized = |t: u8, i: u8| {
        let mut s = span(t, i, (i > 1).then_some(1), false);
        for a in 0..8 {
            s.attributes.push(KeyValue {
                key: format!("http.attribute.{a}"),
                value: Some(AnyValue {
                    value: Some(any_value::Value::StringValue(format!(
                        "value number {a} of {i}"
                    ))),
                }),
                ..Default::default()
            });
        }
        s
    };
    let mut encoded = 0;
    for t in 1..=50u8 {
        let spans: Vec<Span> = (1..=6).map(|i| sized(t, i)).collect();
        encoded += spans.iter().map(|s| s.encoded_len()).sum::<usize>();
        b.ingest(&batch("a", spans), t0, 0);
    }
    assert!(b.bytes() > encoded, "{} <= {encoded}", b.bytes());
    assert!(b.bytes() < 2 * encoded, "{} >= 2 x {encoded}", b.bytes());
    for t in b.take_due(t0 + WAIT, 100, usize::MAX) {
        b.finish(t.id, None, t0 + WAIT);
    }
    assert_eq!(b.bytes(), 0);
}

#[test]
fn the_byte_budget_evicts_then_reports_full() {
    let t0 = Instant::now();
    let mut b = buffer(BufferLimits {
        max_bytes: 4096,
        ..limits()
    });
    let mut evictions = 0;
    for t in 1..=40u8 {
        evictions += b
            .ingest(&batch("a", vec![span(t, 1, None, false)]), t0, 0)
            .evictions
            .len();
    }
    assert!(evictions > 0);
    assert!(b.is_full(), "evicted traces stay charged until decided");
    for t in b.take_due(t0, 100, usize::MAX) {
        b.finish(t.id, None, t0);
    }
    assert!(!b.is_full());
}

#[test]
fn early_decision_takes_quiet_rooted_traces() {
    let t0 = Instant::now();
    let mut b = buffer(BufferLimits {
        early_quiet: Some(Duration::from_secs(1)),
        ..limits()
    });
    b.ingest(
        &batch(
            "a",
            vec![span(1, 1, None, false), span(2, 2, Some(9), false)],
        ),
        t0,
        0,
    );
    assert!(
        b.take_due(t0 + Duration::from_millis(500), 100, usize::MAX)
            .is_empty()
    );
    // A new span keeps trace 1 from being quiet.
    b.ingest(
        &batch("a", vec![span(1, 3, Some(1), false)]),
        t0 + Duration::from_millis(900),
        0,
    );
    assert!(
        b.take_due(t0 + Duration::from_millis(1500), 100, usize::MAX)
            .is_empty()
    );
    let due = b.take_due(t0 + Duration::from_millis(1900), 100, usize::MAX);
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].summary.span_count, 2);
    // Trace 2 has no root: it waits the full decision_wait.
    assert!(
        b.take_due(t0 + Duration::from_secs(5), 100, usize::MAX)
            .is_empty()
    );
    assert_eq!(b.take_due(t0 + WAIT, 100, usize::MAX).len(), 1);
}

#[test]
fn spans_without_a_trace_id_are_counted_not_buffered() {
    let mut s = span(1, 1, None, false);
    s.trace_id = vec![1; 3];
    let mut b = buffer(limits());
    let out = b.ingest(&batch("a", vec![s]), Instant::now(), 0);
    assert_eq!(out.invalid, 1);
    assert_eq!(b.trace_count(), 0);
}
