//! `on_error` and the splitting of batches too big for a plugin's limits, with the built-in
//! scrubber (the plugin whose failure must never let data through).

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

use super::WasmProcessorConfig;
use crate::component::{ProcessorConfig, Validate};
use crate::config::parse_component;
use crate::pipeline::{ConsumeError, TraceBatch};
use crate::plugin_host::OnError;
use crate::testing::{Recorder, context, spans};

const CARD: &str = "4111 1111 1111 1111";

fn config(yaml: &str) -> WasmProcessorConfig {
    let cfg: WasmProcessorConfig = parse_component(serde_yaml_ng::from_str(yaml).unwrap()).unwrap();
    let problems = cfg.validate();
    assert!(problems.is_empty(), "{problems:?}");
    cfg
}

/// `n` spans, each with an attribute of `bytes` bytes full of card numbers.
fn cards(n: usize, bytes: usize) -> TraceBatch {
    let text = format!("card {CARD}; ").repeat(bytes / (CARD.len() + 7) + 1);
    let mut batch = spans(n);
    for span in &mut batch.resources_mut()[0].scope_spans[0].spans {
        span.attributes.push(KeyValue {
            key: "note".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(text.clone())),
            }),
            ..Default::default()
        });
    }
    batch
}

fn leaks(batches: &[TraceBatch]) -> bool {
    let needle = CARD.as_bytes();
    batches.iter().any(|b| {
        let mut bytes = Vec::new();
        b.encode_protobuf(&mut bytes);
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

#[test]
fn on_error_defaults_to_refuse_for_the_scrubber_only() {
    let scrub: WasmProcessorConfig =
        parse_component(serde_yaml_ng::from_str("plugin: builtin:pii-scrub").unwrap()).unwrap();
    assert_eq!(scrub.on_error(), OnError::Refuse);
    let pass: WasmProcessorConfig = parse_component(
        serde_yaml_ng::from_str("plugin: builtin:pii-scrub\non_error: pass").unwrap(),
    )
    .unwrap();
    assert_eq!(pass.on_error(), OnError::Pass);
    let enrich: WasmProcessorConfig =
        parse_component(serde_yaml_ng::from_str("plugin: builtin:enrich").unwrap()).unwrap();
    assert_eq!(enrich.on_error(), OnError::Pass);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_scrubber_refuses_and_lets_nothing_through() {
    let id = "wasm/scrub-refuse";
    let cfg = config("plugin: builtin:pii-scrub\nlimits: { memory_mib: 8 }");
    let ctx = context(id);
    let metrics = ctx.metrics.clone();
    let rec = Recorder::new();
    let p = cfg.build_traces(&ctx, rec.clone()).unwrap();

    // One span with 12 MB of card numbers cannot fit in 8 MiB, whole or split.
    let err = p.consume(cards(1, 12 << 20)).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("on_error: refuse"), "{err}");
    assert!(rec.batches().is_empty(), "nothing passed on");

    // The back-off follows the same rule: after three failures in a row the plugin is
    // paused, and a batch arriving meanwhile is refused too (with when to come back).
    for _ in 0..2 {
        assert!(p.consume(cards(1, 12 << 20)).await.is_err());
    }
    match p.consume(cards(1, 1000)).await {
        Err(ConsumeError::Retryable {
            reason,
            retry_after,
        }) => {
            assert!(reason.contains("paused"), "{reason}");
            assert!(retry_after.is_some());
        }
        other => panic!("expected a retryable refusal while paused, got {other:?}"),
    }
    assert!(rec.batches().is_empty(), "nothing passed on while paused");
    assert_eq!(metrics.plugin_failures(id, "memory_limit").get(), 3);
    assert_eq!(metrics.plugin_skipped(id).get(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_too_big_for_the_memory_cap_is_split_and_scrubbed() {
    let id = "wasm/scrub-split";
    let cfg = config("plugin: builtin:pii-scrub\nlimits: { memory_mib: 8, call_timeout: 5s }");
    let ctx = context(id);
    let metrics = ctx.metrics.clone();
    let rec = Recorder::new();
    let p = cfg.build_traces(&ctx, rec.clone()).unwrap();

    // 1,000 spans of 10 KB each: 10 MB, more than the cap, in one batch.
    let batch = cards(1000, 10_000);
    assert!(batch.to_protobuf().len() > 8 << 20);
    p.consume(batch).await.unwrap();
    assert_eq!(
        rec.batch_sizes(),
        vec![1000],
        "every span, in one batch, in order"
    );
    let out = &rec.batches()[0];
    let ids: Vec<u64> = out.resources()[..]
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .map(|s| u64::from_be_bytes(s.span_id[..].try_into().unwrap()))
        .collect();
    assert_eq!(ids, (1..=1000).collect::<Vec<_>>());
    assert!(!leaks(&rec.batches()), "a card number got through");
    assert!(metrics.plugin_failures(id, "memory_limit").get() >= 1);
    assert!(metrics.plugin_calls(id).get() >= 1);
}

// ----- Logs ---------------------------------------------------------------------------------

use crate::pipeline::{Batch, Logs, SignalKind};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};

/// `n` log records, each with a body and an attribute of `bytes` bytes full of card numbers
/// and a `seq` attribute (its position).
fn card_logs(n: usize, bytes: usize) -> Batch<Logs> {
    let text = format!("card {CARD}; ").repeat(bytes / (CARD.len() + 7) + 1);
    let s = |v: String| AnyValue {
        value: Some(any_value::Value::StringValue(v)),
    };
    let records = (0..n)
        .map(|i| LogRecord {
            time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
            severity_text: "INFO".into(),
            body: Some(s(text.clone())),
            attributes: vec![
                KeyValue {
                    key: "note".into(),
                    value: Some(s(text.clone())),
                    ..Default::default()
                },
                KeyValue {
                    key: "seq".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::IntValue(i as i64)),
                    }),
                    ..Default::default()
                },
            ],
            trace_id: vec![7; 16],
            ..Default::default()
        })
        .collect();
    Batch::new(vec![ResourceLogs {
        resource: None,
        scope_logs: vec![ScopeLogs {
            log_records: records,
            ..Default::default()
        }],
        schema_url: String::new(),
    }])
}

fn logs_leak(batches: &[Batch<Logs>]) -> bool {
    let needle = CARD.as_bytes();
    batches.iter().any(|b| {
        let mut bytes = Vec::new();
        b.encode_protobuf(&mut bytes);
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

#[test]
fn the_processor_takes_traces_logs_and_metrics() {
    let cfg = config("plugin: builtin:pii-scrub");
    let signals = cfg.signals();
    assert!(signals.contains(SignalKind::Traces));
    assert!(signals.contains(SignalKind::Logs));
    assert!(signals.contains(SignalKind::Metrics));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scrubber_scrubs_log_bodies_and_attributes() {
    let cfg = config("plugin: builtin:pii-scrub");
    let ctx = context("wasm/scrub-logs");
    let rec = Recorder::<Logs>::new();
    let p = cfg.build_logs(&ctx, rec.clone()).unwrap();
    p.consume(card_logs(3, 100)).await.unwrap();
    assert_eq!(rec.batch_sizes(), vec![3]);
    assert!(!logs_leak(&rec.batches()), "a card number got through");
    let out = &rec.batches()[0];
    let records = &out.resources()[0].scope_logs[0].log_records;
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.trace_id, vec![7; 16]);
        assert_eq!(r.time_unix_nano, 1_700_000_000_000_000_000 + i as u64);
        let seq = r.attributes.iter().find(|kv| kv.key == "seq").unwrap();
        assert_eq!(
            seq.value.as_ref().unwrap().value,
            Some(any_value::Value::IntValue(i as i64))
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_scrubber_on_logs_refuses_and_lets_nothing_through() {
    let id = "wasm/scrub-logs-refuse";
    let cfg = config("plugin: builtin:pii-scrub\nlimits: { memory_mib: 8 }");
    let ctx = context(id);
    let metrics = ctx.metrics.clone();
    let rec = Recorder::<Logs>::new();
    let p = cfg.build_logs(&ctx, rec.clone()).unwrap();

    // One record with 2 × 6 MB of card numbers cannot fit in 8 MiB, whole or split.
    let err = p.consume(card_logs(1, 6 << 20)).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("on_error: refuse"), "{err}");
    assert!(rec.batches().is_empty(), "nothing passed on");
    assert_eq!(metrics.plugin_failures(id, "memory_limit").get(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_logs_batch_too_big_for_the_memory_cap_is_split_and_scrubbed() {
    let id = "wasm/scrub-logs-split";
    let cfg = config("plugin: builtin:pii-scrub\nlimits: { memory_mib: 8, call_timeout: 5s }");
    let ctx = context(id);
    let metrics = ctx.metrics.clone();
    let rec = Recorder::<Logs>::new();
    let p = cfg.build_logs(&ctx, rec.clone()).unwrap();

    let batch = card_logs(500, 10_000);
    assert!(batch.to_protobuf().len() > 8 << 20);
    p.consume(batch).await.unwrap();
    assert_eq!(rec.batch_sizes(), vec![500], "every record, in one batch");
    let seqs: Vec<i64> = rec.batches()[0]
        .resources()
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .flat_map(|sl| &sl.log_records)
        .map(|r| match r.attributes.iter().find(|kv| kv.key == "seq") {
            Some(KeyValue {
                value:
                    Some(AnyValue {
                        value: Some(any_value::Value::IntValue(i)),
                    }),
                ..
            }) => *i,
            other => panic!("seq {other:?}"),
        })
        .collect();
    assert_eq!(seqs, (0..500).collect::<Vec<_>>(), "in order");
    assert!(!logs_leak(&rec.batches()), "a card number got through");
    assert!(metrics.plugin_failures(id, "memory_limit").get() >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_error_drop_on_logs_drops_the_batch() {
    let id = "wasm/scrub-logs-drop";
    let cfg = config("plugin: builtin:pii-scrub\nlimits: { memory_mib: 8 }\non_error: drop");
    let ctx = context(id);
    let rec = Recorder::<Logs>::new();
    let p = cfg.build_logs(&ctx, rec.clone()).unwrap();
    p.consume(card_logs(1, 6 << 20)).await.unwrap();
    assert!(rec.batches().is_empty(), "dropped, not passed on");
}

// ----- Metrics ------------------------------------------------------------------------------

use crate::pipeline::Metrics;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};

/// One gauge with `n` data points, each with an attribute of `bytes` bytes full of card
/// numbers and a `seq` attribute (its position).
fn card_metrics(n: usize, bytes: usize) -> Batch<Metrics> {
    let text = format!("card {CARD}; ").repeat(bytes / (CARD.len() + 7) + 1);
    let points = (0..n)
        .map(|i| NumberDataPoint {
            time_unix_nano: 1_700_000_000_000_000_000 + i as u64,
            value: Some(number_data_point::Value::AsInt(i as i64)),
            attributes: vec![
                KeyValue {
                    key: "note".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(text.clone())),
                    }),
                    ..Default::default()
                },
                KeyValue {
                    key: "seq".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::IntValue(i as i64)),
                    }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        })
        .collect();
    Batch::new(vec![ResourceMetrics {
        resource: None,
        scope_metrics: vec![ScopeMetrics {
            metrics: vec![Metric {
                name: "queue.depth".into(),
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: points,
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        schema_url: String::new(),
    }])
}

fn metrics_leak(batches: &[Batch<Metrics>]) -> bool {
    let needle = CARD.as_bytes();
    batches.iter().any(|b| {
        let mut bytes = Vec::new();
        b.encode_protobuf(&mut bytes);
        bytes.windows(needle.len()).any(|w| w == needle)
    })
}

fn seqs(batch: &Batch<Metrics>) -> Vec<i64> {
    batch
        .resources()
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .flat_map(|m| match &m.data {
            Some(metric::Data::Gauge(g)) => g.data_points.clone(),
            other => panic!("{other:?}"),
        })
        .map(|p| {
            assert_eq!(
                p.value,
                Some(number_data_point::Value::AsInt(
                    (p.time_unix_nano - 1_700_000_000_000_000_000) as i64
                )),
                "the value is as it came"
            );
            match p.attributes.iter().find(|kv| kv.key == "seq") {
                Some(KeyValue {
                    value:
                        Some(AnyValue {
                            value: Some(any_value::Value::IntValue(i)),
                        }),
                    ..
                }) => *i,
                other => panic!("seq {other:?}"),
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scrubber_scrubs_data_point_attributes() {
    let cfg = config("plugin: builtin:pii-scrub");
    let ctx = context("wasm/scrub-metrics");
    let rec = Recorder::<Metrics>::new();
    let p = cfg.build_metrics(&ctx, rec.clone()).unwrap();
    p.consume(card_metrics(3, 100)).await.unwrap();
    assert_eq!(rec.batch_sizes(), vec![3]);
    assert!(!metrics_leak(&rec.batches()), "a card number got through");
    assert_eq!(seqs(&rec.batches()[0]), vec![0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_scrubber_on_metrics_refuses_and_lets_nothing_through() {
    let id = "wasm/scrub-metrics-refuse";
    let cfg = config("plugin: builtin:pii-scrub\nlimits: { memory_mib: 8 }");
    let ctx = context(id);
    let metrics = ctx.metrics.clone();
    let rec = Recorder::<Metrics>::new();
    let p = cfg.build_metrics(&ctx, rec.clone()).unwrap();
    // One point with 6 MB of card numbers cannot fit in 8 MiB, whole or split.
    let err = p.consume(card_metrics(1, 6 << 20)).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("on_error: refuse"), "{err}");
    assert!(rec.batches().is_empty(), "nothing passed on");
    assert_eq!(metrics.plugin_failures(id, "memory_limit").get(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_metrics_batch_too_big_for_the_memory_cap_is_split_and_scrubbed() {
    let id = "wasm/scrub-metrics-split";
    let cfg = config("plugin: builtin:pii-scrub\nlimits: { memory_mib: 8, call_timeout: 5s }");
    let ctx = context(id);
    let metrics = ctx.metrics.clone();
    let rec = Recorder::<Metrics>::new();
    let p = cfg.build_metrics(&ctx, rec.clone()).unwrap();
    let batch = card_metrics(500, 20_000);
    assert!(batch.to_protobuf().len() > 8 << 20);
    p.consume(batch).await.unwrap();
    assert_eq!(rec.batch_sizes(), vec![500], "every point, in one batch");
    let all: Vec<i64> = rec.batches().iter().flat_map(seqs).collect();
    assert_eq!(all, (0..500).collect::<Vec<_>>(), "in order");
    assert!(!metrics_leak(&rec.batches()), "a card number got through");
    assert!(metrics.plugin_failures(id, "memory_limit").get() >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn on_error_drop_on_metrics_drops_the_batch() {
    let id = "wasm/scrub-metrics-drop";
    let cfg = config("plugin: builtin:pii-scrub\nlimits: { memory_mib: 8 }\non_error: drop");
    let ctx = context(id);
    let rec = Recorder::<Metrics>::new();
    let p = cfg.build_metrics(&ctx, rec.clone()).unwrap();
    p.consume(card_metrics(1, 6 << 20)).await.unwrap();
    assert!(rec.batches().is_empty(), "dropped, not passed on");
}
