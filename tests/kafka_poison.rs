//! Poison data does not block a Kafka partition: a `wasmcol` gateway (kafka receiver → `otlp`
//! exporter) reads from a real Kafka-protocol broker (tansu) and exports to an OTLP/gRPC sink in
//! this process that refuses marked spans for good (INVALID_ARGUMENT, or a partial success).
//! The refused messages are counted, logged and written to `dead_letter_topic`; their offsets
//! move on; everything else flows, and a gateway killed with SIGKILL mid-stream loses nothing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use wasmcol_tests::kafka::{Broker, Record, produce, produce_stream, read_all};
use wasmcol_tests::{
    Collector, free_port, metric_value, scrape_metrics, span_ids, spans_request, wait_until,
};

/// Spans per Kafka message.
const PER: u64 = 10;

/// What the sink does with a request holding a marked span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Poison {
    /// Refuses the whole request with INVALID_ARGUMENT (a permanent error).
    Refuse,
    /// Accepts the request but reports the marked span rejected (partial success).
    Partial,
}

/// An OTLP/gRPC back end that records every span it accepts (duplicates included) and refuses
/// marked spans for good.
#[derive(Default)]
struct Sink {
    /// Span id → what to do with a request holding it.
    poison: HashMap<u64, Poison>,
    accepted: Mutex<Vec<u64>>,
    /// Requests answered with a refusal or a partial success.
    refusals: Mutex<usize>,
}

impl Sink {
    fn accepted(&self) -> Vec<u64> {
        self.accepted.lock().unwrap().clone()
    }
    fn refusals(&self) -> usize {
        *self.refusals.lock().unwrap()
    }
}

struct Service(Arc<Sink>);

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let ids = span_ids(&request.into_inner().resource_spans);
        let marked: Vec<(u64, Poison)> = ids
            .iter()
            .filter_map(|id| self.0.poison.get(id).map(|p| (*id, *p)))
            .collect();
        if let Some((id, _)) = marked.iter().find(|(_, p)| *p == Poison::Refuse) {
            *self.0.refusals.lock().unwrap() += 1;
            return Err(Status::invalid_argument(format!("span {id} is poison")));
        }
        let good = ids.iter().filter(|id| !self.0.poison.contains_key(id));
        self.0.accepted.lock().unwrap().extend(good);
        if marked.is_empty() {
            return Ok(Response::new(ExportTraceServiceResponse::default()));
        }
        *self.0.refusals.lock().unwrap() += 1;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: marked.len() as i64,
                error_message: format!("span {} is poison", marked[0].0),
            }),
        }))
    }
}

async fn serve(sink: Arc<Sink>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = TraceServiceServer::new(Service(sink))
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    addr
}

fn gateway_config(brokers: &str, sink: SocketAddr, metrics: u16) -> String {
    format!(
        r#"
receivers:
  kafka:
    brokers: [{brokers}]
    topics: [spans]
    group_id: gateway
    initial_offset: earliest
    session_timeout: 6s
    heartbeat_interval: 1s
    commit_interval: 200ms
    # tansu answers a fetch only when this wait is over, even with data at hand.
    max_fetch_wait: 10ms
    dead_letter_topic: spans_dlq
exporters:
  otlp:
    endpoint: {sink}
    tls:
      insecure: true
    retry_on_failure:
      initial_interval: 100ms
      max_interval: 500ms
service:
  pipelines:
    traces:
      receivers: [kafka]
      exporters: [otlp]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
    )
}

/// Message `k`: span ids `k*PER+1 ..= (k+1)*PER`, keyed `m{k}`.
fn message(k: u64) -> (Option<Vec<u8>>, Vec<u8>) {
    let req = spans_request((k % 250 + 1) as u8, k * PER + 1, PER as usize, 20);
    (Some(format!("m{k}").into_bytes()), req.encode_to_vec())
}

fn message_span_ids(k: u64) -> std::ops::RangeInclusive<u64> {
    k * PER + 1..=(k + 1) * PER
}

/// A sink refusing message `k` whole for each `refuse`, and one span of message `k` for each
/// `partial`.
fn poisoned(refuse: &[u64], partial: &[u64]) -> Arc<Sink> {
    let mut poison = HashMap::new();
    for &k in refuse {
        poison.insert(k * PER + 1, Poison::Refuse);
    }
    for &k in partial {
        poison.insert(k * PER + 3, Poison::Partial);
    }
    Arc::new(Sink {
        poison,
        ..Default::default()
    })
}

/// Every span the sink must accept: all of messages `0..total` but the marked ones.
fn wanted(sink: &Sink, total: u64, refuse: &[u64]) -> HashSet<u64> {
    (0..total)
        .filter(|k| !refuse.contains(k))
        .flat_map(message_span_ids)
        .filter(|id| !sink.poison.contains_key(id))
        .collect()
}

fn header<'a>(r: &'a Record, key: &str) -> &'a str {
    r.headers
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| std::str::from_utf8(v).expect("UTF-8 header"))
        .unwrap_or_else(|| panic!("no {key} header in {:?}", r.headers))
}

/// Dead-letter messages by the key of the message they hold.
fn dead_letters(brokers: &str) -> BTreeMap<String, Vec<Record>> {
    let mut by_key: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    for r in read_all(brokers, "spans_dlq") {
        let key = String::from_utf8(r.key.clone().unwrap_or_default()).unwrap();
        by_key.entry(key).or_default().push(r);
    }
    by_key
}

/// The receiver's (rejected messages, rejected spans) counters.
async fn rejected(metrics: u16) -> (Option<f64>, Option<f64>) {
    let text = scrape_metrics(metrics).await;
    let get = |name: &str| metric_value(&text, &format!("{name}{{receiver=\"kafka\"}}"));
    (
        get("wasmcol_receiver_rejected_messages_total"),
        get("wasmcol_receiver_rejected_spans_total"),
    )
}

fn sigkill(c: &Collector) {
    let status = Command::new("kill")
        .args(["-KILL", &c.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_messages_are_counted_dead_lettered_and_skipped() {
    let broker = tokio::task::block_in_place(Broker::start);
    let brokers = broker.address.clone();
    let total = 30;
    let (refuse, partial) = ([5u64], [12u64]);
    tokio::task::block_in_place(|| {
        broker.create_topic("spans", 1);
        broker.create_topic("spans_dlq", 1);
        produce(
            &brokers,
            "spans",
            &(0..total).map(message).collect::<Vec<_>>(),
        );
    });
    let sink = poisoned(&refuse, &partial);
    let addr = serve(sink.clone()).await;

    let metrics = free_port();
    let mut gateway = tokio::task::block_in_place(|| {
        Collector::start(&gateway_config(&brokers, addr, metrics), metrics)
    });
    let want = wanted(&sink, total, &refuse);
    let flowed = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(30), || {
            want.is_subset(&sink.accepted().into_iter().collect())
        })
    });
    assert!(
        flowed,
        "the messages after the refused ones must flow; the sink has {} of {} spans\n{}",
        sink.accepted().len(),
        want.len(),
        gateway.log()
    );

    // Counted: both messages, with all their spans.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while rejected(metrics).await != (Some(2.0), Some(20.0))
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        rejected(metrics).await,
        (Some(2.0), Some(20.0)),
        "{}",
        gateway.log()
    );

    // Logged with origin and reason.
    for (k, reason) in [
        (5, "INVALID_ARGUMENT: span 51 is poison"),
        (12, "span 123 is poison"),
    ] {
        let offset = format!("offset={k}");
        assert!(
            gateway.wait_for_log_line(
                &[
                    "refused a message's spans for good",
                    "topic=spans",
                    "partition=0",
                    &offset,
                    reason
                ],
                Duration::from_secs(5)
            ),
            "no log line for message {k}\n{}",
            gateway.log()
        );
    }

    // Dead-lettered unchanged, with origin and reason in headers.
    let mut dlq = BTreeMap::new();
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(10), || {
            dlq = dead_letters(&brokers);
            dlq.len() >= 2
        })
    });
    assert_eq!(
        dlq.keys().collect::<Vec<_>>(),
        ["m12", "m5"],
        "exactly the refused messages are dead-lettered"
    );
    for (k, reason) in [
        (5u64, "INVALID_ARGUMENT: span 51 is poison"),
        (12, "rejected 1 of 10 spans: span 123 is poison"),
    ] {
        let copies = &dlq[&format!("m{k}")];
        assert_eq!(copies.len(), 1, "message {k} dead-lettered once");
        let r = &copies[0];
        assert_eq!(r.value, message(k).1, "message {k} is written unchanged");
        assert_eq!(header(r, "wasmcol.source.topic"), "spans");
        assert_eq!(header(r, "wasmcol.source.partition"), "0");
        assert_eq!(header(r, "wasmcol.source.offset"), k.to_string());
        let error = header(r, "wasmcol.error");
        assert!(error.contains(reason), "message {k}: {error}");
    }

    // The offsets moved on: after a clean stop, a new gateway in the group reads only what is
    // new (the refused messages are not handed to the sink again, nothing is re-read).
    let refusals = sink.refusals();
    assert_eq!(refusals, 2, "each refused message reached the sink once");
    assert_eq!(gateway.stop(), 0);
    tokio::task::block_in_place(|| produce(&brokers, "spans", &[message(total)]));
    let metrics = free_port();
    let second = tokio::task::block_in_place(|| {
        Collector::start(&gateway_config(&brokers, addr, metrics), metrics)
    });
    let newest: HashSet<u64> = message_span_ids(total).collect();
    assert!(
        tokio::task::block_in_place(|| wait_until(Duration::from_secs(30), || {
            newest.is_subset(&sink.accepted().into_iter().collect())
        })),
        "{}",
        second.log()
    );
    let accepted = sink.accepted();
    let distinct: HashSet<u64> = accepted.iter().copied().collect();
    assert_eq!(
        accepted.len(),
        distinct.len(),
        "nothing delivered before the clean stop is read again"
    );
    assert_eq!(
        sink.refusals(),
        refusals,
        "refused messages are not read again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_killed_mid_stream_with_poison_loses_nothing() {
    let broker = tokio::task::block_in_place(Broker::start);
    let brokers = broker.address.clone();
    tokio::task::block_in_place(|| {
        broker.create_topic("spans", 2);
        broker.create_topic("spans_dlq", 1);
    });
    let total = 300u64;
    // Two refused before the kill is likely, one around it, one after.
    let (refuse, partial) = ([20u64, 110, 250], [60u64]);
    let sink = poisoned(&refuse, &partial);
    let addr = serve(sink.clone()).await;

    // The first gateway is consuming before the stream starts, so that it dies mid-stream.
    let warm_up = 5;
    tokio::task::block_in_place(|| {
        produce(
            &brokers,
            "spans",
            &(0..warm_up).map(message).collect::<Vec<_>>(),
        )
    });
    let metrics = free_port();
    let first = tokio::task::block_in_place(|| {
        Collector::start(&gateway_config(&brokers, addr, metrics), metrics)
    });
    let consuming = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(30), || {
            sink.accepted().len() >= (warm_up * PER) as usize
        })
    });
    assert!(
        consuming,
        "the first gateway exported nothing\n{}",
        first.log()
    );
    let address = brokers.clone();
    let writer = std::thread::spawn(move || {
        produce_stream(
            &address,
            "spans",
            &(warm_up..total).map(message).collect::<Vec<_>>(),
            Duration::from_millis(15),
        );
    });
    let got_some = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(30), || sink.accepted().len() >= 1000)
    });
    assert!(
        got_some,
        "the first gateway exported little\n{}",
        first.log()
    );
    sigkill(&first);
    let before_kill = sink.accepted().len();
    assert!(
        !writer.is_finished(),
        "the stream should still be running at the kill"
    );
    // What the first gateway dead-lettered (it may not have committed all of it).
    let dead_lettered_before_kill = tokio::task::block_in_place(|| dead_letters(&brokers)).len();

    let metrics = free_port();
    let second = tokio::task::block_in_place(|| {
        Collector::start(&gateway_config(&brokers, addr, metrics), metrics)
    });
    let want = wanted(&sink, total, &refuse);
    let all_arrived = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(60), || {
            want.is_subset(&sink.accepted().into_iter().collect())
        })
    });
    writer.join().unwrap();
    let accepted = sink.accepted();
    let distinct: HashSet<u64> = accepted.iter().copied().collect();
    let missing: Vec<_> = want.difference(&distinct).take(10).collect();
    assert!(
        all_arrived,
        "{} spans missing after the restart (e.g. {missing:?})\nsecond gateway:\n{}",
        want.difference(&distinct).count(),
        second.log()
    );
    assert!(
        sink.poison.keys().all(|id| !distinct.contains(id)),
        "the sink never accepts a marked span"
    );

    // Every refused message is in the dead-letter topic (a message dead-lettered by the
    // first gateway but not yet committed when it died is written again by the second).
    let mut dlq = BTreeMap::new();
    let poison_keys: Vec<String> = refuse
        .iter()
        .chain(&partial)
        .map(|k| format!("m{k}"))
        .collect();
    tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(15), || {
            dlq = dead_letters(&brokers);
            poison_keys.iter().all(|k| dlq.contains_key(k))
        })
    });
    let mut keys: Vec<&String> = dlq.keys().collect();
    keys.sort();
    let mut expected: Vec<&String> = poison_keys.iter().collect();
    expected.sort();
    assert_eq!(
        keys, expected,
        "exactly the refused messages are dead-lettered"
    );
    for (key, copies) in &dlq {
        let k: u64 = key[1..].parse().unwrap();
        for r in copies {
            assert_eq!(r.value, message(k).1, "{key} is written unchanged");
            assert_eq!(header(r, "wasmcol.source.topic"), "spans");
            assert!(header(r, "wasmcol.error").contains("is poison"));
        }
    }
    let dlq_copies: usize = dlq.values().map(Vec::len).sum();

    // The second gateway counted what it refused: at least the refused messages the first
    // one had not dead-lettered (some it had may be read again, not yet committed).
    let counted = rejected(metrics).await.0.unwrap_or(0.0);
    let at_least = (poison_keys.len() - dead_lettered_before_kill) as f64;
    assert!(
        counted >= at_least,
        "the second gateway counted {counted} refused messages, expected at least {at_least}"
    );
    eprintln!(
        "{} spans wanted, {before_kill} accepted before SIGKILL, {} accepted in all, {} duplicates; \
         {} refused messages, {dead_lettered_before_kill} dead-lettered before SIGKILL, {dlq_copies} dead-letter copies, \
         {counted} counted by the second gateway",
        want.len(),
        accepted.len(),
        accepted.len() - distinct.len(),
        poison_keys.len(),
    );
}
