//! The OpenTelemetry Collector's spellings, read as `wasmcol` understands them.
//!
//! Runs on the YAML tree after `${...}` expansion and before any section is parsed, so every
//! component's config struct sees one spelling only. Three kinds of rewrite:
//! - deprecated or alternative spellings become the current one (`auth.plain_text` →
//!   `auth.sasl` with `PLAIN`, `service.telemetry.metrics.readers` → `address`), with an
//!   info note;
//! - options the Collector has and `wasmcol` does not use are removed with a warning naming
//!   them (never dropped silently);
//! - component types of the Collector's distributions that this one lacks are named by
//!   [`missing`], with what to use instead.

use serde_yaml_ng::{Mapping, Value};

/// How much a note matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Accepted as written; said so the user knows what happens to it.
    Info,
    /// Accepted, but what it asks for does not happen.
    Warning,
}

/// One note from the rewrite: the option's dotted path and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    /// Info or warning.
    pub level: Level,
    /// Dotted YAML path (`receivers.kafka.protocol_version`).
    pub path: String,
    /// What happened.
    pub message: String,
    /// True when the rewrite could not be made (two spellings of one option): an error.
    pub error: bool,
}

/// Options the Collector's components have that `wasmcol` accepts and does not use:
/// (section, component types, dotted option path, why). Each is removed with a warning.
const IGNORED: &[(&str, &[&str], &str, &str)] = &[
    (
        "receivers",
        &["kafka"],
        "autocommit",
        "offsets are committed only once every exporter has delivered the data (see commit_interval)",
    ),
    (
        "receivers",
        &["kafka"],
        "message_marking",
        "a message is marked only once every exporter has delivered it (or sent it to dead_letter_topic)",
    ),
    (
        "receivers",
        &["kafka"],
        "header_extraction",
        "Kafka headers are not copied into resource attributes",
    ),
    (
        "receivers",
        &["kafka"],
        "min_fetch_size",
        "set librdkafka's fetch.min.bytes in librdkafka_options",
    ),
    (
        "receivers",
        &["kafka"],
        "default_fetch_size",
        "set librdkafka's fetch.max.bytes in librdkafka_options",
    ),
    (
        "receivers",
        &["kafka"],
        "max_fetch_size",
        "set librdkafka's fetch.max.bytes in librdkafka_options",
    ),
    (
        "receivers",
        &["kafka"],
        "group_rebalance_strategy",
        "set librdkafka's partition.assignment.strategy in librdkafka_options",
    ),
    (
        "receivers",
        &["kafka"],
        "group_instance_id",
        "set librdkafka's group.instance.id in librdkafka_options",
    ),
    (
        "receivers",
        &["kafka"],
        "error_backoff",
        "refused data is retried by leaving its offset uncommitted",
    ),
    (
        "receivers",
        &["kafka"],
        "telemetry",
        "the receiver's metrics are always on the metrics endpoint",
    ),
    (
        "receivers",
        &["kafka"],
        "rack_id",
        "set librdkafka's client.rack in librdkafka_options",
    ),
    (
        "receivers",
        &["kafka"],
        "use_leader_epoch",
        "librdkafka handles leader epochs itself",
    ),
    (
        "receivers|exporters",
        &["kafka"],
        "metadata",
        "librdkafka refreshes metadata itself (topic.metadata.refresh.interval.ms in librdkafka_options)",
    ),
    (
        "receivers|exporters",
        &["kafka"],
        "resolve_canonical_bootstrap_servers_only",
        "set librdkafka's client.dns.lookup in librdkafka_options",
    ),
    (
        "receivers|exporters",
        &["kafka"],
        "auth.sasl.version",
        "librdkafka negotiates the SASL handshake version",
    ),
    (
        "exporters",
        &["kafka"],
        "producer.flush_max_messages",
        "set librdkafka's batch.num.messages in librdkafka_options",
    ),
    (
        "exporters",
        &["kafka"],
        "producer.compression_params",
        "set librdkafka's compression.level in librdkafka_options",
    ),
    (
        "exporters",
        &["otlp", "otlp_grpc"],
        "balancer_name",
        "connections go to the endpoint's first resolved address",
    ),
    (
        "exporters",
        &["otlp", "otlp_grpc"],
        "wait_for_ready",
        "requests fail fast and are retried by retry_on_failure",
    ),
    (
        "exporters",
        &["otlp", "otlp_grpc"],
        "authority",
        "the :authority is taken from endpoint",
    ),
    (
        "exporters",
        &["otlp", "otlp_grpc"],
        "keepalive",
        "HTTP/2 keepalive uses the client's defaults",
    ),
    (
        "exporters",
        &["otlp", "otlp_grpc", "otlphttp", "otlp_http"],
        "read_buffer_size",
        "buffers are sized by the client",
    ),
    (
        "exporters",
        &["otlp", "otlp_grpc", "otlphttp", "otlp_http"],
        "write_buffer_size",
        "buffers are sized by the client",
    ),
    (
        "exporters",
        &["otlphttp", "otlp_http"],
        "idle_conn_timeout",
        "idle connections use the client's defaults",
    ),
    (
        "exporters",
        &["otlphttp", "otlp_http"],
        "max_idle_conns",
        "idle connections use the client's defaults",
    ),
    (
        "exporters",
        &["otlphttp", "otlp_http"],
        "max_idle_conns_per_host",
        "idle connections use the client's defaults",
    ),
    (
        "exporters",
        &["otlphttp", "otlp_http"],
        "max_conns_per_host",
        "connections are bounded by sending_queue.num_consumers",
    ),
    (
        "exporters",
        &["otlphttp", "otlp_http"],
        "disable_keep_alives",
        "connections are kept alive",
    ),
    (
        "exporters",
        &["otlphttp", "otlp_http"],
        "http2_read_idle_timeout",
        "HTTP/2 health checks use the client's defaults",
    ),
    (
        "exporters",
        &["otlphttp", "otlp_http"],
        "http2_ping_timeout",
        "HTTP/2 health checks use the client's defaults",
    ),
    (
        "exporters",
        &["otlphttp", "otlp_http"],
        "cookies",
        "cookies are not kept between requests",
    ),
    (
        "exporters",
        &[
            "otlp",
            "otlp_grpc",
            "otlphttp",
            "otlp_http",
            "kafka",
            "clickhouse",
        ],
        "sending_queue.batch",
        "batch with the batch processor in the pipeline",
    ),
    (
        "exporters",
        &[
            "otlp",
            "otlp_grpc",
            "otlphttp",
            "otlp_http",
            "kafka",
            "clickhouse",
        ],
        "sending_queue.block_on_overflow",
        "a full queue refuses data with a retryable error, which reaches the client",
    ),
    (
        "exporters",
        &[
            "otlp",
            "otlp_grpc",
            "otlphttp",
            "otlp_http",
            "kafka",
            "clickhouse",
        ],
        "sending_queue.wait_for_result",
        "see acknowledgement in the README: receivers answer once data is queued or stored",
    ),
    (
        "exporters",
        &["file"],
        "rotation.max_days",
        "rotated files are kept by count (rotation.max_backups)",
    ),
    (
        "exporters",
        &["file"],
        "rotation.localtime",
        "rotated file names use UTC",
    ),
    (
        "exporters",
        &["debug"],
        "use_internal_logger",
        "the debug exporter always writes to stderr",
    ),
    (
        "receivers",
        &["otlp"],
        "protocols.grpc.read_buffer_size",
        "buffers are sized by the server",
    ),
    (
        "receivers",
        &["otlp"],
        "protocols.grpc.write_buffer_size",
        "buffers are sized by the server",
    ),
    (
        "receivers",
        &["otlp"],
        "protocols.grpc.transport",
        "the gRPC server listens on TCP",
    ),
    (
        "receivers",
        &["otlp"],
        "protocols.http.compression_algorithms",
        "gzip, zstd and deflate are always accepted",
    ),
    (
        "receivers",
        &["otlp"],
        "protocols.http.response_headers",
        "responses carry no extra headers",
    ),
    (
        "exporters",
        &["clickhouse"],
        "connection_params",
        "connection parameters are not passed to ClickHouse",
    ),
    (
        "extensions",
        &["file_storage"],
        "compaction",
        "queue files are not compacted",
    ),
    (
        "extensions",
        &["health_check"],
        "check_collector_pipeline",
        "health follows the collector's state (starting, running, stopping)",
    ),
    (
        "extensions",
        &["health_check"],
        "response_body",
        "the body is fixed",
    ),
];

/// Component types the OpenTelemetry Collector's distributions have and this one lacks, with
/// what to use instead: (section, type, alternative). A type may list its current and
/// deprecated names, `|`-separated.
const MISSING: &[(&str, &str, &str)] = &[
    (
        "receivers",
        "zipkin",
        "send OTLP instead: Zipkin and OpenTelemetry SDKs export OTLP to the otlp receiver",
    ),
    (
        "receivers",
        "jaeger",
        "send OTLP instead: Jaeger clients are retired in favour of OpenTelemetry SDKs, which export OTLP to the otlp receiver",
    ),
    ("receivers", "opencensus", "send OTLP to the otlp receiver"),
    (
        "receivers",
        "prometheus",
        "scrape with Prometheus or an OpenTelemetry Collector and send OTLP to the otlp receiver",
    ),
    (
        "receivers",
        "hostmetrics|host_metrics",
        "run a node agent that exports OTLP (an OpenTelemetry Collector) to the otlp receiver",
    ),
    (
        "receivers",
        "filelog",
        "ship log files with an agent that exports OTLP to the otlp receiver",
    ),
    (
        "receivers",
        "fluentforward",
        "send OTLP to the otlp receiver",
    ),
    ("receivers", "syslog", "send OTLP to the otlp receiver"),
    (
        "receivers",
        "statsd",
        "send OTLP metrics to the otlp receiver",
    ),
    (
        "receivers",
        "k8s_cluster",
        "run an OpenTelemetry Collector for cluster metrics and export OTLP to wasmcol",
    ),
    (
        "receivers",
        "kubeletstats|kubelet_stats",
        "run an OpenTelemetry Collector for node metrics and export OTLP to wasmcol",
    ),
    (
        "processors",
        "attributes",
        "the wasm processor: builtin:enrich sets attributes from its config; other edits are a plugin (wasmcol plugin new NAME)",
    ),
    (
        "processors",
        "resource",
        "the wasm processor: builtin:enrich sets resource attributes from its config",
    ),
    (
        "processors",
        "transform",
        "the wasm processor with a plugin of your own (wasmcol plugin new NAME)",
    ),
    (
        "processors",
        "filter",
        "the wasm processor with a plugin that drops what it should (wasmcol plugin new NAME)",
    ),
    (
        "processors",
        "span",
        "the wasm processor with a plugin of your own (wasmcol plugin new NAME)",
    ),
    (
        "processors",
        "redaction",
        "the wasm processor with builtin:pii-scrub",
    ),
    (
        "processors",
        "k8sattributes|k8s_attributes",
        "the wasm processor: builtin:enrich sets fixed attributes; per-pod metadata needs an OpenTelemetry Collector agent in front",
    ),
    (
        "processors",
        "resourcedetection|resource_detection",
        "the wasm processor: builtin:enrich sets fixed resource attributes (fill them from ${env:...})",
    ),
    (
        "processors",
        "metricstransform|metrics_transform",
        "the wasm processor with a plugin of your own (wasmcol plugin new NAME)",
    ),
    (
        "processors",
        "groupbytrace",
        "the tail_sampling processor, which buffers spans by trace",
    ),
    (
        "processors",
        "routing",
        "separate pipelines joined by the forward connector",
    ),
    (
        "exporters",
        "logging",
        "the debug exporter (the Collector's replacement for logging)",
    ),
    (
        "exporters",
        "loadbalancing|load_balancing",
        "the kafka exporter with partition_traces_by_id: true, read by kafka receivers in one consumer group (each trace lands on one collector)",
    ),
    (
        "exporters",
        "prometheusremotewrite|prometheus_remote_write",
        "the otlp or otlp_http exporter to a back end that takes OTLP metrics (Prometheus with its OTLP receiver, Mimir, Thanos)",
    ),
    (
        "exporters",
        "prometheus",
        "wasmcol's own metrics are Prometheus text on service.telemetry.metrics; pipeline metrics go out with the otlp or otlp_http exporter",
    ),
    (
        "exporters",
        "zipkin",
        "the otlp or otlp_http exporter (Zipkin-compatible back ends such as Jaeger and Tempo take OTLP)",
    ),
    (
        "exporters",
        "jaeger",
        "the otlp exporter: Jaeger takes OTLP on 4317",
    ),
    (
        "exporters",
        "loki",
        "the otlp_http exporter: Loki takes OTLP logs at /otlp",
    ),
    (
        "exporters",
        "elasticsearch",
        "the otlp or otlp_http exporter to an OTLP-capable back end, or the clickhouse exporter",
    ),
    (
        "extensions",
        "pprof",
        "not needed: wasmcol is not a Go program",
    ),
    (
        "extensions",
        "zpages",
        "the metrics endpoint (service.telemetry.metrics) and the logs",
    ),
    (
        "extensions",
        "memory_ballast",
        "not needed (removed from the Collector too)",
    ),
    (
        "extensions",
        "headers_setter",
        "static headers: the exporters' headers option",
    ),
    (
        "extensions",
        "oauth2client",
        "a token in bearertokenauth (read from ${file:...})",
    ),
    (
        "connectors",
        "count",
        "the spanmetrics connector counts spans by service and name",
    ),
    (
        "connectors",
        "routing",
        "separate pipelines joined by the forward connector",
    ),
];

/// What to use instead of `type_name` in `section`, when the Collector has it and this
/// distribution does not.
pub fn missing(section: &str, type_name: &str) -> Option<String> {
    MISSING
        .iter()
        .find(|(s, t, _)| *s == section && t.split('|').any(|t| t == type_name))
        .map(|(s, _, instead)| {
            format!(
                "{} type {type_name:?} is not in this distribution; instead use {instead}",
                s.strip_suffix('s').unwrap_or(s)
            )
        })
}

/// The rewrites of `root` (a whole configuration, after `${...}` expansion).
pub fn rewrite(root: &mut Value) -> Vec<Rewrite> {
    let mut out = Vec::new();
    let Value::Mapping(top) = root else {
        return out;
    };
    for section in [
        "receivers",
        "processors",
        "exporters",
        "extensions",
        "connectors",
    ] {
        let Some(Value::Mapping(components)) = top.get_mut(section) else {
            continue;
        };
        for (key, value) in components.iter_mut() {
            let Some(id) = key.as_str() else { continue };
            let type_name = id.split('/').next().unwrap_or(id);
            let path = format!("{section}.{id}");
            let Value::Mapping(cfg) = value else { continue };
            if type_name == "kafka" {
                kafka(cfg, &path, section == "receivers", &mut out);
            }
            for (sections, types, option, why) in IGNORED {
                if !sections.split('|').any(|s| s == section) || !types.contains(&type_name) {
                    continue;
                }
                if remove_path(cfg, option).is_some() {
                    out.push(warning(
                        format!("{path}.{option}"),
                        format!("ignored: {why}"),
                    ));
                }
            }
        }
    }
    if let Some(Value::Mapping(service)) = top.get_mut("service")
        && let Some(Value::Mapping(telemetry)) = service.get_mut("telemetry")
    {
        self::telemetry(telemetry, &mut out);
    }
    out
}

fn info(path: String, message: impl Into<String>) -> Rewrite {
    Rewrite {
        level: Level::Info,
        path,
        message: message.into(),
        error: false,
    }
}

fn warning(path: String, message: impl Into<String>) -> Rewrite {
    Rewrite {
        level: Level::Warning,
        path,
        message: message.into(),
        error: false,
    }
}

fn error(path: String, message: impl Into<String>) -> Rewrite {
    Rewrite {
        level: Level::Warning,
        path,
        message: message.into(),
        error: true,
    }
}

/// Removes the value at the dotted `path` inside `map`, if there is one.
fn remove_path(map: &mut Mapping, path: &str) -> Option<Value> {
    match path.split_once('.') {
        None => map.remove(path),
        Some((head, rest)) => match map.get_mut(head)? {
            Value::Mapping(inner) => remove_path(inner, rest),
            _ => None,
        },
    }
}

/// The Kafka receiver's and exporter's older spellings.
fn kafka(cfg: &mut Mapping, path: &str, receiver: bool, out: &mut Vec<Rewrite>) {
    if cfg.remove("protocol_version").is_some() {
        out.push(info(
            format!("{path}.protocol_version"),
            "accepted and ignored: librdkafka negotiates the protocol version with the brokers",
        ));
    }
    // The receiver's deprecated single `topic` is `topics: [it]`.
    if receiver && let Some(topic) = cfg.remove("topic") {
        if cfg.contains_key("topics") {
            out.push(error(
                format!("{path}.topic"),
                "cannot be set together with topics (use traces.topics, logs.topics, metrics.topics)",
            ));
        } else {
            cfg.insert("topics".into(), Value::Sequence(vec![topic]));
        }
    }
    let Some(Value::Mapping(auth)) = cfg.get_mut("auth") else {
        return;
    };
    if let Some(plain) = auth.remove("plain_text") {
        if auth.contains_key("sasl") {
            out.push(error(
                format!("{path}.auth.plain_text"),
                "cannot be set together with auth.sasl (use auth.sasl)",
            ));
        } else {
            let mut sasl = match plain {
                Value::Mapping(m) => m,
                _ => Mapping::new(),
            };
            sasl.insert("mechanism".into(), "PLAIN".into());
            auth.insert("sasl".into(), Value::Mapping(sasl));
            out.push(info(
                format!("{path}.auth.plain_text"),
                "read as auth.sasl with mechanism PLAIN (the Collector's deprecated spelling)",
            ));
        }
    }
    if let Some(tls) = auth.remove("tls") {
        if cfg.contains_key("tls") {
            out.push(error(
                format!("{path}.auth.tls"),
                "cannot be set together with tls (use tls)",
            ));
        } else {
            cfg.insert("tls".into(), tls);
            out.push(info(
                format!("{path}.auth.tls"),
                "read as tls (the Collector's deprecated spelling)",
            ));
        }
    }
}

/// `service.telemetry`: the Collector's `metrics.level`, `metrics.readers`, `resource`,
/// `logs.*` and `traces`.
fn telemetry(t: &mut Mapping, out: &mut Vec<Rewrite>) {
    const AT: &str = "service.telemetry";
    if t.remove("resource").is_some() {
        out.push(warning(
            format!("{AT}.resource"),
            "ignored: the metrics endpoint serves Prometheus text without resource attributes",
        ));
    }
    if t.remove("traces").is_some() {
        out.push(warning(
            format!("{AT}.traces"),
            "ignored: wasmcol does not trace itself",
        ));
    }
    if let Some(Value::Mapping(logs)) = t.get_mut("logs") {
        for (option, why) in [
            ("development", "development logging is not offered"),
            ("disable_caller", "log lines carry no caller"),
            ("disable_stacktrace", "log lines carry no stack traces"),
            (
                "sampling",
                "repeated log lines are rate-limited per site instead",
            ),
            ("error_output_paths", "errors go where output_paths says"),
            ("initial_fields", "log lines carry no extra fields"),
            ("processors", "logs are written to output_paths only"),
        ] {
            if logs.remove(option).is_some() {
                out.push(warning(
                    format!("{AT}.logs.{option}"),
                    format!("ignored: {why}"),
                ));
            }
        }
        // zap's level names, in any case; its panic levels log errors only.
        if let Some(Value::String(level)) = logs.get_mut("level") {
            let lower = level.to_ascii_lowercase();
            if matches!(lower.as_str(), "dpanic" | "panic" | "fatal") {
                out.push(info(
                    format!("{AT}.logs.level"),
                    format!("{lower}: read as error (wasmcol's most severe level)"),
                ));
                *level = "error".into();
            } else if matches!(lower.as_str(), "debug" | "info" | "warn" | "error") {
                *level = lower;
            }
        }
        if let Some(Value::Sequence(paths)) = logs.get_mut("output_paths") {
            let mut i = 0;
            paths.retain(|p| {
                let keep = matches!(p.as_str(), Some("stderr" | "stdout"));
                if !keep {
                    out.push(warning(
                        format!("{AT}.logs.output_paths[{i}]"),
                        "ignored: logs go to stderr or stdout only (a file needs the service manager's redirection)",
                    ));
                }
                i += 1;
                keep
            });
            if paths.is_empty() {
                logs.remove("output_paths");
            }
        }
    }
    let Some(Value::Mapping(metrics)) = t.get_mut("metrics") else {
        return;
    };
    let level = metrics.remove("level");
    let readers = metrics.remove("readers");
    if metrics.remove("views").is_some() {
        out.push(warning(
            format!("{AT}.metrics.views"),
            "ignored: every metric is served as it is",
        ));
    }
    let mut address: Option<(String, String)> = None;
    if let Some(Value::Sequence(readers)) = readers {
        for (i, reader) in readers.iter().enumerate() {
            let at = format!("{AT}.metrics.readers[{i}]");
            let prometheus = reader
                .get("pull")
                .and_then(|p| p.get("exporter"))
                .and_then(|e| e.get("prometheus"));
            match prometheus {
                Some(p) if address.is_none() => {
                    let host = p
                        .get("host")
                        .and_then(scalar)
                        .unwrap_or_else(|| "localhost".into());
                    let port = p
                        .get("port")
                        .and_then(scalar)
                        .unwrap_or_else(|| "8888".into());
                    // Refused like an endpoint without a host: say which interfaces.
                    if host.is_empty() {
                        out.push(error(
                            format!("{at}.pull.exporter.prometheus.host"),
                            "empty: name the interface (0.0.0.0 for all, localhost for this machine)",
                        ));
                        continue;
                    }
                    let host = if host.contains(':') && !host.starts_with('[') {
                        format!("[{host}]")
                    } else {
                        host
                    };
                    address = Some((format!("{host}:{port}"), at.clone()));
                    for extra in ["without_type_suffix", "without_units", "without_scope_info"] {
                        if p.get(extra).is_some() {
                            out.push(warning(
                                format!("{at}.pull.exporter.prometheus.{extra}"),
                                "ignored: metric names are fixed",
                            ));
                        }
                    }
                }
                Some(_) => out.push(warning(
                    at,
                    "ignored: only the first Prometheus pull reader is served",
                )),
                None => out.push(warning(
                    at,
                    "ignored: only a Prometheus pull reader (pull.exporter.prometheus) is supported; push readers are not",
                )),
            }
        }
    } else if readers.is_some() {
        out.push(error(
            format!("{AT}.metrics.readers"),
            "expected a list of readers",
        ));
    }
    if let Some((addr, at)) = address {
        if metrics.contains_key("address") {
            out.push(error(
                format!("{AT}.metrics.address"),
                "cannot be set together with readers (use one)",
            ));
        } else {
            out.push(info(at, format!("metrics served at {addr}/metrics")));
            metrics.insert("address".into(), Value::String(addr));
        }
    }
    match level.as_ref().and_then(scalar).as_deref() {
        None => {}
        Some("none") => {
            metrics.insert("address".into(), "none".into());
            out.push(info(
                format!("{AT}.metrics.level"),
                "none: the metrics endpoint is off",
            ));
        }
        Some("basic" | "normal" | "detailed") => {}
        Some(other) => out.push(error(
            format!("{AT}.metrics.level"),
            format!("expected none, basic, normal or detailed, got {other:?}"),
        )),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str) -> (Value, Vec<Rewrite>) {
        let mut v: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let notes = rewrite(&mut v);
        (v, notes)
    }

    fn yaml(s: &str) -> Value {
        serde_yaml_ng::from_str(s).unwrap()
    }

    #[test]
    fn kafka_older_spellings_become_current_ones() {
        let (v, notes) = run(
            "receivers:\n  kafka/a:\n    protocol_version: 2.0.0\n    topic: spans\n    auth:\n      plain_text: {username: u, password: p}\n      tls: {insecure: true}\n",
        );
        assert_eq!(
            v["receivers"]["kafka/a"],
            yaml(
                "topics: [spans]\nauth:\n  sasl: {username: u, password: p, mechanism: PLAIN}\ntls: {insecure: true}\n"
            )
        );
        let paths: Vec<(&str, Level, bool)> = notes
            .iter()
            .map(|n| (n.path.as_str(), n.level, n.error))
            .collect();
        assert_eq!(
            paths,
            [
                ("receivers.kafka/a.protocol_version", Level::Info, false),
                ("receivers.kafka/a.auth.plain_text", Level::Info, false),
                ("receivers.kafka/a.auth.tls", Level::Info, false),
            ]
        );
    }

    #[test]
    fn ignored_options_are_removed_with_a_warning_and_others_kept() {
        let (v, notes) = run(
            "exporters:\n  otlp:\n    endpoint: x:4317\n    balancer_name: round_robin\n  otlp_http/b:\n    endpoint: http://x\n    balancer_name: kept\n",
        );
        assert_eq!(v["exporters"]["otlp"], yaml("endpoint: x:4317"));
        // balancer_name is no otlp_http option: left for the config struct to refuse.
        assert_eq!(
            v["exporters"]["otlp_http/b"]["balancer_name"],
            Value::from("kept")
        );
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].path, "exporters.otlp.balancer_name");
        assert_eq!(notes[0].level, Level::Warning);
        assert!(
            notes[0].message.starts_with("ignored: "),
            "{}",
            notes[0].message
        );
    }

    #[test]
    fn telemetry_level_none_wins_over_readers() {
        let (v, notes) = run(
            "service:\n  telemetry:\n    metrics:\n      level: none\n      readers:\n        - pull: {exporter: {prometheus: {host: '::1', port: 9000}}}\n",
        );
        assert_eq!(v["service"]["telemetry"]["metrics"], yaml("address: none"));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].message.contains("[::1]:9000"), "{:?}", notes[0]);
    }

    /// Every option the table ignores is one its component would refuse as unknown: an
    /// option wasmcol has is never removed.
    #[test]
    fn ignored_options_are_none_of_ours() {
        use crate::components;
        for (sections, types, option, _) in IGNORED {
            for section in sections.split('|') {
                for type_name in *types {
                    let mut value = Value::Null;
                    for key in option.rsplit('.') {
                        let mut m = Mapping::new();
                        m.insert(Value::String(key.to_string()), value);
                        value = Value::Mapping(m);
                    }
                    let refused = |problems: Vec<crate::component::Problem>| {
                        problems.iter().any(|p| p.message.contains("unknown field"))
                    };
                    let unknown = match section {
                        "receivers" => components::RECEIVERS
                            .iter()
                            .find(|f| f.type_name == *type_name)
                            .map(|f| (f.parse)(value).map(|_| ()).map_err(refused)),
                        "exporters" => components::EXPORTERS
                            .iter()
                            .find(|f| f.type_name == *type_name)
                            .map(|f| (f.parse)(value).map(|_| ()).map_err(refused)),
                        "extensions" => components::EXTENSIONS
                            .iter()
                            .find(|f| f.type_name == *type_name)
                            .map(|f| (f.parse)(value).map(|_| ()).map_err(refused)),
                        _ => None,
                    };
                    assert_eq!(
                        unknown,
                        Some(Err(true)),
                        "{section}.{type_name}.{option}: not refused as unknown"
                    );
                }
            }
        }
    }

    #[test]
    fn log_levels_are_read_in_any_case() {
        let (v, notes) = run("service:\n  telemetry:\n    logs:\n      level: INFO\n");
        assert_eq!(
            v["service"]["telemetry"]["logs"]["level"],
            Value::from("info")
        );
        assert!(notes.is_empty());
        let (v, notes) = run("service:\n  telemetry:\n    logs:\n      level: fatal\n");
        assert_eq!(
            v["service"]["telemetry"]["logs"]["level"],
            Value::from("error")
        );
        assert_eq!(notes[0].level, Level::Info);
    }

    #[test]
    fn a_bad_level_is_an_error() {
        let (_, notes) = run("service:\n  telemetry:\n    metrics:\n      level: verbose\n");
        assert!(notes[0].error);
        assert_eq!(
            notes[0].message,
            "expected none, basic, normal or detailed, got \"verbose\""
        );
    }

    #[test]
    fn missing_types_name_an_alternative_and_known_ones_none() {
        assert!(
            missing("exporters", "logging")
                .unwrap()
                .contains("the debug exporter")
        );
        assert_eq!(missing("exporters", "otlp"), None);
        assert_eq!(missing("receivers", "loadbalancing"), None);
        assert!(
            missing("exporters", "load_balancing")
                .unwrap()
                .starts_with("exporter type \"load_balancing\" is not in this distribution; instead use the kafka exporter")
        );
    }
}
