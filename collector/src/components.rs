//! The registry of built-in component types. Adding a type is one line here.

use serde_yaml_ng::Value;

use crate::component::{
    ConnectorConfig, ExporterConfig, ExtensionConfig, Problem, ProcessorConfig, ReceiverConfig,
};
use crate::config::parse_component;
use crate::{connectors, exporters, extensions, processors, receivers};

/// How to parse one component type's configuration.
pub struct Factory<C: ?Sized + 'static> {
    /// The type name used in ids (`otlp` in `otlp/in`).
    pub type_name: &'static str,
    /// One line for `wasmcol components`.
    pub description: &'static str,
    /// Parses and validates the YAML section of one component.
    pub parse: fn(Value) -> Result<Box<C>, Vec<Problem>>,
}

// Not derived: `derive` would ask `C: Clone` of the unsized component trait.
impl<C: ?Sized + 'static> Clone for Factory<C> {
    fn clone(&self) -> Self {
        Self {
            type_name: self.type_name,
            description: self.description,
            parse: self.parse,
        }
    }
}

macro_rules! factory {
    ($name:literal, $desc:literal, $cfg:ty) => {
        Factory {
            type_name: $name,
            description: $desc,
            parse: |v| Ok(Box::new(parse_component::<$cfg>(v)?)),
        }
    };
}

/// Receiver types.
pub static RECEIVERS: &[Factory<dyn ReceiverConfig>] = &[
    factory!(
        "otlp",
        "OTLP over gRPC (4317) and HTTP (4318), protobuf and JSON, gzip/zstd",
        receivers::otlp::OtlpReceiverConfig
    ),
    factory!(
        "kafka",
        "OTLP messages from Kafka topics in a consumer group, committed only once delivered",
        receivers::kafka::KafkaReceiverConfig
    ),
];

/// Processor types.
pub static PROCESSORS: &[Factory<dyn ProcessorConfig>] = &[
    factory!(
        "batch",
        "groups spans into batches by size and time",
        processors::batch::BatchConfig
    ),
    factory!(
        "memory_limiter",
        "refuses data with a retryable error while memory use is above its limit",
        processors::memory_limiter::MemoryLimiterConfig
    ),
    factory!(
        "probabilistic_sampler",
        "keeps a percentage of traces, consistently by trace id",
        processors::probabilistic_sampler::ProbabilisticSamplerConfig
    ),
    factory!(
        "tail_sampling",
        "buffers spans by trace and keeps whole traces as policy plugins decide (builtin:tail-policies)",
        processors::tail_sampling::TailSamplingConfig
    ),
    factory!(
        "wasm",
        "runs a sandboxed WebAssembly plugin (builtin:NAME or a .wasm file) over each batch",
        processors::wasm::WasmProcessorConfig
    ),
];

/// Processor types that exist for tests only: registered when `WASMCOL_TEST_COMPONENTS=1`
/// is set at start-up, never otherwise.
pub static TEST_PROCESSORS: &[Factory<dyn ProcessorConfig>] = &[factory!(
    "test_panic",
    "(test facility) panics on its worker thread for the first panic_batches batches",
    processors::test_panic::TestPanicConfig
)];

/// The environment variable that registers [`TEST_PROCESSORS`].
pub const TEST_COMPONENTS_ENV: &str = "WASMCOL_TEST_COMPONENTS";

/// The processor types of this process: [`PROCESSORS`], plus [`TEST_PROCESSORS`] when
/// `WASMCOL_TEST_COMPONENTS=1` was set when first asked (at start-up).
pub fn processors() -> &'static [Factory<dyn ProcessorConfig>] {
    static ALL: std::sync::LazyLock<Vec<Factory<dyn ProcessorConfig>>> =
        std::sync::LazyLock::new(|| {
            let mut all = PROCESSORS.to_vec();
            if std::env::var(TEST_COMPONENTS_ENV).is_ok_and(|v| v == "1") {
                all.extend_from_slice(TEST_PROCESSORS);
            }
            all
        });
    &ALL
}

/// Exporter types.
pub static EXPORTERS: &[Factory<dyn ExporterConfig>] = &[
    factory!(
        "file",
        "OTLP JSON lines or length-prefixed protobuf to a file, with rotation and zstd",
        exporters::file::FileExporterConfig
    ),
    factory!(
        "debug",
        "prints spans to stderr (basic, normal or detailed)",
        exporters::debug::DebugExporterConfig
    ),
    factory!(
        "nop",
        "accepts and discards everything",
        exporters::nop::NopExporterConfig
    ),
    factory!(
        "kafka",
        "OTLP messages to Kafka, keyed by trace id on request, acked by the brokers",
        exporters::kafka::KafkaExporterConfig
    ),
    factory!(
        "otlp",
        "OTLP/gRPC to a collector or back end, with a sending queue and retries",
        exporters::otlp::OtlpExporterConfig
    ),
    factory!(
        "otlp_grpc",
        "the same as otlp (the OpenTelemetry Collector's current name; otlp is its deprecated alias)",
        exporters::otlp::OtlpExporterConfig
    ),
    factory!(
        "otlphttp",
        "OTLP/HTTP (protobuf or JSON) to a collector or back end, with a sending queue and retries",
        exporters::otlphttp::OtlpHttpExporterConfig
    ),
    factory!(
        "otlp_http",
        "the same as otlphttp (the OpenTelemetry Collector's current name; otlphttp is its deprecated alias)",
        exporters::otlphttp::OtlpHttpExporterConfig
    ),
    factory!(
        "clickhouse",
        "spans, logs and metrics into ClickHouse over HTTP, in the OpenTelemetry Collector's schema",
        exporters::clickhouse::ClickHouseExporterConfig
    ),
];

/// Connector types.
pub static CONNECTORS: &[Factory<dyn ConnectorConfig>] = &[
    factory!(
        "forward",
        "passes each signal on from the pipelines that export to it to those that receive from it",
        connectors::forward::ForwardConfig
    ),
    factory!(
        "spanmetrics",
        "traces to metrics: calls and duration per service, span name, kind, status (R.E.D)",
        connectors::spanmetrics::SpanMetricsConfig
    ),
    factory!(
        "servicegraph",
        "traces to metrics: requests between services (client/server span pairs), Grafana's service graph",
        connectors::servicegraph::ServiceGraphConfig
    ),
    factory!(
        "trace_analysis",
        "traces to metrics and traces: N+1 loops, duplicate calls, fan-out and error origins in complete traces",
        connectors::trace_analysis::TraceAnalysisConfig
    ),
    factory!(
        "span_metrics",
        "the same as spanmetrics (the OpenTelemetry Collector's newer name)",
        connectors::spanmetrics::SpanMetricsConfig
    ),
];

/// Extension types.
pub static EXTENSIONS: &[Factory<dyn ExtensionConfig>] = &[
    factory!(
        "health_check",
        "HTTP health endpoint: 200 while the collector runs, 503 while starting or stopping",
        extensions::health_check::HealthCheckConfig
    ),
    factory!(
        "file_storage",
        "a directory where exporters keep their sending queues on disk (sending_queue.storage)",
        extensions::file_storage::FileStorageConfig
    ),
    factory!(
        "bearertokenauth",
        "a static bearer token: checked on receivers' requests, sent with exporters' (auth.authenticator)",
        extensions::bearertokenauth::BearerTokenAuthConfig
    ),
    factory!(
        "basicauth",
        "HTTP Basic authentication: htpasswd users (bcrypt) for receivers, client_auth for exporters",
        extensions::basicauth::BasicAuthConfig
    ),
    factory!(
        "oidc",
        "checks receivers' requests for a JWT (RS256/ES256) signed by the issuer's keys",
        extensions::oidc::OidcConfig
    ),
];

/// One line per built-in component, grouped by kind, for `wasmcol components`.
pub fn describe() -> String {
    let mut out = String::new();
    let mut section = |title: &str, rows: Vec<(&str, &str)>| {
        out.push_str(title);
        out.push_str(":\n");
        for (name, desc) in rows {
            out.push_str(&format!("  {name:<24}{desc}\n"));
        }
    };
    section(
        "receivers",
        RECEIVERS
            .iter()
            .map(|f| (f.type_name, f.description))
            .collect(),
    );
    section(
        "processors",
        processors()
            .iter()
            .map(|f| (f.type_name, f.description))
            .collect(),
    );
    section(
        "exporters",
        EXPORTERS
            .iter()
            .map(|f| (f.type_name, f.description))
            .collect(),
    );
    section(
        "connectors",
        CONNECTORS
            .iter()
            .map(|f| (f.type_name, f.description))
            .collect(),
    );
    section(
        "built-in plugins (for the wasm processor: `plugin: builtin:NAME`)",
        crate::plugin_host::builtin_plugins(),
    );
    section(
        "extensions",
        EXTENSIONS
            .iter()
            .map(|f| (f.type_name, f.description))
            .collect(),
    );
    out
}
