//! The scrubber fails closed: with `builtin:pii-scrub`'s default settings (`on_error: refuse`),
//! no card number reaches any exporter whichever way the plugin fails (memory cap, deadline,
//! too many edits, an answer over `max_output_bytes`, the failure back-off), and nothing a
//! sender was refused is lost: it arrives scrubbed once a retry gets through.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use wasmcol::exporters::file::{Compression, Format};
use wasmcol_tests::{
    Collector, free_port, http_request, length_prefixed_span_ids, metric_value, output_span_ids,
    scrape_metrics, spans_request, wait_until,
};

const CARD: &str = "4111 1111 1111 1111";
/// The same number as some senders write it.
const CARD_DIGITS: &str = "4111111111111111";

/// OTLP/HTTP → `wasm/scrub` (`builtin:pii-scrub`, default config and `on_error`, `limits`) →
/// two file exporters, so "any exporter" is checked on a fan-out.
fn config(http: u16, metrics: u16, limits: &str) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{http}
processors:
  wasm/scrub:
    plugin: builtin:pii-scrub
    limits: {limits}
exporters:
  file/a:
    path: "{{dir}}/a.jsonl"
    flush_interval: 20ms
  file/b:
    path: "{{dir}}/b.pb"
    format: proto
    flush_interval: 20ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [wasm/scrub]
      exporters: [file/a, file/b]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
    )
}

fn card(key: &str, bytes: usize) -> KeyValue {
    let text = format!("card {CARD}; ").repeat(bytes / (CARD.len() + 7) + 1);
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(text)),
        }),
        ..Default::default()
    }
}

/// `n` spans with ids from `first`, each carrying `cards` attributes of about `bytes` bytes
/// full of card numbers.
fn card_request(first: u64, n: usize, cards: usize, bytes: usize) -> Vec<u8> {
    let mut req: ExportTraceServiceRequest = spans_request(3, first, n, 0);
    for s in &mut req.resource_spans[0].scope_spans[0].spans {
        for i in 0..cards {
            s.attributes.push(card(&format!("note.{i}"), bytes));
        }
    }
    req.encode_to_vec()
}

async fn post(http: u16, body: &[u8]) -> u16 {
    http_request(
        "POST",
        &format!("http://127.0.0.1:{http}/v1/traces"),
        &[("content-type", "application/x-protobuf")],
        body.to_vec(),
    )
    .await
    .expect("the collector answers")
    .status
}

/// Sends `body` as an SDK does: again after each retryable refusal (503), until accepted or
/// `patience` is over. Returns every answer.
async fn send_with_retries(http: u16, body: &[u8], patience: Duration) -> Vec<u16> {
    let start = Instant::now();
    let mut answers = Vec::new();
    loop {
        let status = post(http, body).await;
        answers.push(status);
        if status != 503 || start.elapsed() > patience {
            return answers;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn failures(metrics: u16, reason: &str) -> f64 {
    metric_value(
        &scrape_metrics(metrics).await,
        &format!("wasmcol_plugin_failures_total{{processor=\"wasm/scrub\",reason=\"{reason}\"}}"),
    )
    .unwrap_or(0.0)
}

/// Both exporters' output holds no card number, and exactly the span ids `want`.
fn assert_scrubbed_output(c: &Collector, want: &[u64]) {
    let ids = |name: &str| {
        let mut ids = if name.ends_with(".jsonl") {
            output_span_ids(&c.path(name))
        } else {
            let bytes = std::fs::read(c.path(name)).unwrap_or_default();
            length_prefixed_span_ids(&bytes, Format::Proto, Compression::None)
        };
        ids.sort_unstable();
        ids
    };
    wait_until(Duration::from_secs(10), || {
        ids("a.jsonl").len() >= want.len() && ids("b.pb").len() >= want.len()
    });
    // Let anything that should not be there have its chance to arrive.
    std::thread::sleep(Duration::from_millis(300));
    for name in ["a.jsonl", "b.pb"] {
        assert_eq!(ids(name), want, "{name}:\n{}", c.log());
        let bytes = std::fs::read(c.path(name)).unwrap_or_default();
        for needle in [CARD, CARD_DIGITS] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "a card number reached {name}"
            );
        }
    }
}

fn ids(first: u64, n: u64) -> Vec<u64> {
    (first..first + n).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_span_too_large_for_memory_mib_is_refused_and_the_rest_arrive_scrubbed() {
    let (http, metrics) = (free_port(), free_port());
    let c = Collector::start(
        &config(http, metrics, "{ memory_mib: 8, call_timeout: 2s }"),
        http,
    );
    // 12 MB in one span cannot be scrubbed in 8 MiB, whole or split.
    assert_eq!(post(http, &card_request(1, 1, 1, 12 << 20)).await, 503);
    assert!(
        failures(metrics, "memory_limit").await >= 1.0,
        "{}",
        c.log()
    );
    // 600 spans of 10 KB (6 MB) fail whole, then pass in pieces.
    let answers = send_with_retries(
        http,
        &card_request(100, 600, 1, 10_000),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(answers.last(), Some(&200), "{answers:?}\n{}", c.log());
    assert_scrubbed_output(&c, &ids(100, 600));
}

#[tokio::test(flavor = "multi_thread")]
async fn more_edits_than_max_edits_are_refused_and_split_batches_arrive_scrubbed() {
    let (http, metrics) = (free_port(), free_port());
    // One edit per answer: a batch of many card spans fails whole, then goes through span by
    // span; a span needing two edits can never go through.
    let c = Collector::start(&config(http, metrics, "{ max_edits: 1 }"), http);
    assert_eq!(post(http, &card_request(1, 1, 2, 100)).await, 503);
    assert!(
        failures(metrics, "invalid_output").await >= 1.0,
        "{}",
        c.log()
    );
    let answers =
        send_with_retries(http, &card_request(10, 16, 1, 100), Duration::from_secs(20)).await;
    assert_eq!(answers.last(), Some(&200), "{answers:?}\n{}", c.log());
    assert_scrubbed_output(&c, &ids(10, 16));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_over_max_output_bytes_is_refused() {
    let (http, metrics) = (free_port(), free_port());
    // Any edit list is larger than 8 bytes: every batch with a card in it is refused, a batch
    // with nothing to scrub passes.
    let c = Collector::start(&config(http, metrics, "{ max_output_bytes: 8 }"), http);
    for _ in 0..2 {
        assert_eq!(post(http, &card_request(1, 4, 1, 100)).await, 503);
    }
    assert!(
        failures(metrics, "invalid_output").await >= 1.0,
        "{}",
        c.log()
    );
    // Two failures do not pause the plugin yet (that starts at the third).
    let clean = spans_request(4, 50, 3, 10).encode_to_vec();
    assert_eq!(post(http, &clean).await, 200, "{}", c.log());
    assert_scrubbed_output(&c, &ids(50, 3));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_past_its_deadline_is_refused_and_smaller_batches_still_arrive_scrubbed() {
    let (http, metrics) = (free_port(), free_port());
    // 20 ms cannot scrub one span holding 16 MB of card numbers (and one span cannot be
    // split). (`call_timeout` also bounds the plugin's start, which needs about 10 ms.)
    let c = Collector::start(
        &config(http, metrics, "{ call_timeout: 20ms, memory_mib: 512 }"),
        http,
    );
    let body = card_request(1, 1, 1, 16 << 20);
    for _ in 0..2 {
        assert_eq!(post(http, &body).await, 503, "{}", c.log());
    }
    assert!(failures(metrics, "timeout").await >= 1.0, "{}", c.log());
    // Smaller batches still go through, scrubbed.
    let answers =
        send_with_retries(http, &card_request(30, 2, 1, 100), Duration::from_secs(20)).await;
    assert_eq!(answers.last(), Some(&200), "{answers:?}\n{}", c.log());
    assert_scrubbed_output(&c, &ids(30, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn while_a_failing_scrubber_is_paused_every_batch_is_refused_then_arrives_scrubbed() {
    let (http, metrics) = (free_port(), free_port());
    let c = Collector::start(&config(http, metrics, "{ max_edits: 1 }"), http);
    // Three failures in a row pause the plugin, for longer with each further failure. Then
    // every batch, whoever sent it and whatever it holds, is refused with the pause as the
    // retry delay, not passed unscrubbed. Fail it six times (a pause of 800 ms) so that the
    // next request surely falls inside the pause.
    let poison = card_request(1, 1, 2, 100);
    let start = Instant::now();
    while failures(metrics, "invalid_output").await < 6.0 {
        assert!(start.elapsed() < Duration::from_secs(30), "{}", c.log());
        assert_eq!(post(http, &poison).await, 503);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let other = card_request(20, 1, 1, 100);
    let reply = http_request(
        "POST",
        &format!("http://127.0.0.1:{http}/v1/traces"),
        &[("content-type", "application/x-protobuf")],
        other.clone(),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 503, "{}", c.log());
    assert!(
        reply.headers.contains_key("retry-after"),
        "a paused plugin's refusal names the pause: {:?}",
        reply.headers
    );
    // Once the pause is over, a retry of the other sender's batch gets through, scrubbed.
    let answers = send_with_retries(http, &other, Duration::from_secs(20)).await;
    assert_eq!(answers.last(), Some(&200), "{answers:?}\n{}", c.log());
    assert_scrubbed_output(&c, &[20]);
}
