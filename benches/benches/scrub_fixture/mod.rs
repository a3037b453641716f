//! What the scrub benches share: the `pii-scrub` and `enrich` configurations, the batch with
//! secrets, the `wasm` processors built as the collector builds them, and the same plugins
//! compiled natively and run as the host runs a plugin. [`Fixture::new`] checks that the WASM
//! and native plugins give the same spans and that the detectors fired before anything is
//! measured.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use wasmcol::pipeline::{ConsumeError, Consumer, SharedConsumer, TraceBatch, Traces};
use wasmcol_benches::{Processors, realistic_request};
use wasmcol_plugin_sdk::edit::Output;
use wasmcol_plugin_sdk::wire::edit as wire_edit;
use wasmcol_plugin_sdk::{Batch, Plugin, PluginConfig, testing};

/// Spans per batch.
pub const SPANS: usize = 8192;

/// Keeps what reaches the end of the chain, so that freeing it happens outside the timed
/// section (as for the native runs, whose output criterion drops untimed).
#[derive(Default)]
pub struct Sink {
    /// What arrived, kept for the checks (and so freeing it is not timed).
    batches: Mutex<Vec<TraceBatch>>,
    out: Mutex<Vec<u8>>,
}

impl Sink {
    /// The last batch that arrived, decoded.
    pub fn take_last(&self) -> Vec<ResourceSpans> {
        let last = self.batches.lock().unwrap().pop();
        last.expect("a batch arrived").into_resources()
    }

    /// Frees what arrived.
    pub fn clear(&self) {
        self.batches.lock().unwrap().clear();
    }
}

/// Stands for an exporter that sends protobuf (`otlp`, `file`, Kafka): it encodes each batch,
/// which costs a copy when the batch still holds bytes and an encode when a stage decoded it.
#[async_trait]
impl Consumer<Traces> for Sink {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        let mut out = self.out.lock().unwrap();
        out.clear();
        batch.encode_protobuf(&mut out);
        self.batches.lock().unwrap().push(batch);
        Ok(())
    }
}

/// `pii-scrub` with every detector on (`ip` and `phone` are off by default), e-mails hashed.
pub fn scrub_config() -> serde_json::Value {
    serde_json::json!({
        "ignored_keys": ["service.name", "http.route"],
        "detectors": {
            "credit_card": { "action": "mask", "keep_suffix": 4 },
            "email": "hash",
            "ssn": true,
            "ip": true,
            "jwt": true,
            "bearer_token": true,
            "api_key": true,
            "iban": true,
            "phone": true,
        },
        "hash": { "key": "bench-key-not-a-secret" },
    })
}

/// `enrich` as the plugins README shows it: ownership by lookup, the environment, a route
/// extracted from the URL, and conditional attributes.
pub fn enrich_config() -> serde_json::Value {
    serde_json::json!({
        "resource": [
            { "lookup": { "table": "owners", "key": "service.name", "columns": ["team", "tier"] } },
            { "environment": { "key": "host.name", "attribute": "collector.host.name" } },
            { "environment": { "key": "k8s.pod.name", "attribute": "collector.pod.name" } },
        ],
        "span": [
            { "extract": {
                "from": "url.full",
                "pattern": "^https?://[^/]+(?P<url.path>/[^?#]*)",
            } },
            { "rename": { "from": "http.method", "to": "http.request.method", "mode": "insert" } },
            { "set": { "attribute": "deployment.environment.name", "value": "production", "mode": "insert" } },
            { "set": {
                "attribute": "slo.critical",
                "value": true,
                "when": { "attribute": "http.route", "matches": "^/api/v1/checkout" },
            } },
        ],
    })
}

const OWNERS: &[(&str, &str, &str)] = &[
    ("checkout-service", "payments", "1"),
    ("frontend", "web", "2"),
];
const HOST_NAME: &str = "gateway-0.eu-west-1.compute.internal";
const POD_NAME: &str = "wasmcol-gateway-5c9d7f-abcde";

fn indent(v: &serde_json::Value, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    serde_yaml_ng::to_string(v)
        .unwrap()
        .lines()
        .map(|l| format!("{pad}{l}\n"))
        .collect()
}

/// The two `wasm` processors, built as the collector builds them, each in front of a sink.
pub fn processors() -> [(SharedConsumer<Traces>, Arc<Sink>); 2] {
    let rows: String = OWNERS
        .iter()
        .map(|(svc, team, tier)| format!("          {svc}: {{ team: {team}, tier: \"{tier}\" }}\n"))
        .collect();
    let section = format!(
        r#"  wasm/scrub:
    plugin: builtin:pii-scrub
    config:
{scrub}
  wasm/enrich:
    plugin: builtin:enrich
    tables:
      owners:
        rows:
{rows}
    config:
{enrich}"#,
        scrub = indent(&scrub_config(), 6),
        enrich = indent(&enrich_config(), 6),
    );
    let built = Processors::parse(&section, &["wasm/enrich", "wasm/scrub"]);
    ["wasm/scrub", "wasm/enrich"].map(|id| {
        let sink = Arc::new(Sink::default());
        let p: SharedConsumer<Traces> = built.build(id, sink.clone());
        (p, sink)
    })
}

fn set_string(spans: &mut ResourceSpans, i: usize, key: &str, f: impl FnOnce(&str) -> String) {
    let span = &mut spans.scope_spans[0].spans[i];
    let kv = span.attributes.iter_mut().find(|kv| kv.key == key).unwrap();
    let Some(Value::StringValue(s)) = kv.value.as_mut().and_then(|v| v.value.as_mut()) else {
        panic!("{key} is not a string");
    };
    *s = f(s);
}

/// [`realistic_request`] with secrets in three spans of every eight (the URL and SQL
/// sanitizers already find the `session` parameter and the number literals in every span):
/// an e-mail in the URL, a card number in a SQL comment, an IP address as the peer name.
pub fn with_secrets(mut request: ExportTraceServiceRequest) -> ExportTraceServiceRequest {
    let rs = &mut request.resource_spans[0];
    for i in 0..rs.scope_spans[0].spans.len() {
        match i % 8 {
            1 => set_string(rs, i, "url.full", |s| {
                format!("{s}&email=jane.doe{i}@example.com")
            }),
            3 => set_string(rs, i, "db.statement", |s| {
                format!("{s} /* card 4111 1111 1111 1111 */")
            }),
            5 => set_string(rs, i, "net.peer.name", |_| {
                format!("10.12.{}.{}", i % 250, i % 200)
            }),
            _ => {}
        }
    }
    request
}

/// Runs `p` natively on `data`.
pub fn native<P: Plugin>(p: &mut P, data: Vec<ResourceSpans>) -> Vec<ResourceSpans> {
    let mut batch = Batch::new(data);
    p.process(&mut batch).unwrap();
    batch.into_resource_spans()
}

/// The plugin compiled natively, run as the host runs a plugin: it gets the batch's protobuf
/// (`Batch::from_encoded`, one copy, as into the sandbox) and its edits are applied to those
/// bytes (`wire_edit`), so the native and WASM cases differ only in where the plugin's code
/// runs.
pub fn as_host_runs<P: Plugin>(p: &mut P, mut batch: TraceBatch) -> TraceBatch {
    let bytes = batch.to_protobuf();
    let mut plugin_batch = Batch::from_encoded(bytes.to_vec());
    p.process(&mut plugin_batch).unwrap();
    match plugin_batch.into_output() {
        Output::Unchanged => {}
        Output::Edits(edits) => {
            let edited = wire_edit::apply(&bytes, edits).unwrap();
            batch.set_trusted_protobuf(edited.bytes.into(), edited.spans);
        }
        Output::Replace(replacement) => {
            batch.set_payload_of(TraceBatch::from_protobuf(replacement.into()).unwrap());
        }
    }
    batch
}

pub fn attribute_str<'a>(rs: &'a [ResourceSpans], span: usize, key: &str) -> &'a str {
    let kv = rs[0].scope_spans[0].spans[span]
        .attributes
        .iter()
        .find(|kv| kv.key == key)
        .unwrap_or_else(|| panic!("no {key}"));
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s,
        other => panic!("{key}: {other:?}"),
    }
}

/// Serves native plugins on this thread the same lookup tables as the `wasm` processors get.
pub fn serve_tables() {
    testing::set_table(
        "owners",
        OWNERS.iter().map(|(svc, team, tier)| {
            (
                svc.to_string(),
                vec![
                    ("team".to_string(), team.to_string()),
                    ("tier".to_string(), tier.to_string()),
                ],
            )
        }),
    );
    testing::set_table(
        "environment",
        [("host.name", HOST_NAME), ("k8s.pod.name", POD_NAME)]
            .map(|(k, v)| (k.to_string(), vec![("value".to_string(), v.to_string())])),
    );
}

/// Everything a scrub bench measures, checked.
pub struct Fixture {
    /// The runtime the processors run on.
    pub runtime: tokio::runtime::Runtime,
    /// `wasm/scrub` and its sink.
    pub scrub: (SharedConsumer<Traces>, Arc<Sink>),
    /// `wasm/enrich` and its sink.
    pub enrich: (SharedConsumer<Traces>, Arc<Sink>),
    /// The request as the receiver gets it.
    pub encoded: bytes::Bytes,
    /// The same spans, decoded.
    #[allow(dead_code, reason = "the ratio bench starts from bytes only")]
    pub data: Vec<ResourceSpans>,
    /// `pii-scrub`, compiled natively.
    pub native_scrub: pii_scrub_plugin::PiiScrub,
    /// `enrich`, compiled natively.
    pub native_enrich: enrich_plugin::Enrich,
}

impl Fixture {
    /// Builds the processors and native plugins and checks that they agree.
    pub fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let [(scrub, scrub_sink), (enrich, enrich_sink)] = processors();
        let request = with_secrets(realistic_request(SPANS));
        let encoded = bytes::Bytes::from(request.encode_to_vec());
        let data: Vec<ResourceSpans> = request.resource_spans;

        serve_tables();
        let mut native_scrub =
            pii_scrub_plugin::PiiScrub::new(PluginConfig::new(scrub_config())).unwrap();
        let mut native_enrich =
            enrich_plugin::Enrich::new(PluginConfig::new(enrich_config())).unwrap();

        // The WASM and native plugins must do the same work.
        runtime
            .block_on(scrub.consume(TraceBatch::new(data.clone())))
            .unwrap();
        let wasm_out = scrub_sink.take_last();
        let native_out = native(&mut native_scrub, data.clone());
        assert!(wasm_out == native_out, "wasm and native pii-scrub disagree");
        assert!(wasm_out != data, "pii-scrub changed nothing");
        assert!(
            attribute_str(&native_out, 1, "url.full").contains("&email=")
                && !attribute_str(&native_out, 1, "url.full").contains("@example.com")
        );
        assert!(attribute_str(&native_out, 3, "db.statement").ends_with("***************1111 */"));
        assert_eq!(
            attribute_str(&native_out, 5, "net.peer.name"),
            "*".repeat(9)
        );
        runtime
            .block_on(enrich.consume(TraceBatch::new(data.clone())))
            .unwrap();
        let wasm_out = enrich_sink.take_last();
        let native_out = native(&mut native_enrich, data.clone());
        // Span attributes are the same; the resource's environment values come from each
        // side's own environment table.
        assert!(
            wasm_out[0].scope_spans == native_out[0].scope_spans,
            "wasm and native enrich disagree"
        );
        assert_eq!(
            attribute_str(&native_out, 0, "url.path").chars().next(),
            Some('/')
        );
        Self {
            runtime,
            scrub: (scrub, scrub_sink),
            enrich: (enrich, enrich_sink),
            encoded,
            data,
            native_scrub,
            native_enrich,
        }
    }
}
