//! The collector's own metrics, served as Prometheus text at `/metrics`.
//!
//! Names follow the OpenTelemetry Collector's (`otelcol_receiver_accepted_spans` becomes
//! `wasmcol_receiver_accepted_spans_total`) so dashboards translate directly. Components fetch
//! their counters once at build time; the hot path only does atomic adds.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::process::read_sample;
use crate::pipeline::{PerSignal, SignalKind};

type Labels = Vec<(&'static str, String)>;
type CounterFamily = Family<Labels, Counter>;
type GaugeFamily = Family<Labels, Gauge>;
type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// All metric families of one collector process.
pub struct Metrics {
    registry: Mutex<Registry>,
    receiver_accepted: PerSignal<CounterFamily>,
    receiver_refused: PerSignal<CounterFamily>,
    receiver_invalid: PerSignal<CounterFamily>,
    receiver_over_budget: CounterFamily,
    receiver_open_connections: GaugeFamily,
    receiver_connection_limit_reached: CounterFamily,
    processor_incoming: PerSignal<CounterFamily>,
    processor_outgoing: PerSignal<CounterFamily>,
    processor_dropped: PerSignal<CounterFamily>,
    processor_refused: PerSignal<CounterFamily>,
    exporter_sent: PerSignal<CounterFamily>,
    exporter_send_failed: PerSignal<CounterFamily>,
    exporter_enqueue_failed: PerSignal<CounterFamily>,
    exporter_retries: CounterFamily,
    queue_size: GaugeFamily,
    queue_capacity: GaugeFamily,
    queue_disk_bytes: GaugeFamily,
    queue_corrupt: CounterFamily,
    process_rss: Gauge,
    process_cpu: Counter<f64, AtomicU64>,
    plugin_counters: CounterFamily,
    plugin_calls: CounterFamily,
    plugin_failures: CounterFamily,
    plugin_instantiations: CounterFamily,
    plugin_recycles: CounterFamily,
    plugin_skipped: CounterFamily,
    plugin_log_suppressed: CounterFamily,
    component_panics: CounterFamily,
    receiver_malformed: CounterFamily,
    receiver_rejected_messages: CounterFamily,
    receiver_rejected_spans: CounterFamily,
    receiver_auth_failures: CounterFamily,
    tail_traces: GaugeFamily,
    tail_bytes: GaugeFamily,
    tail_cache_bytes: GaugeFamily,
    tail_decisions: CounterFamily,
    tail_late_spans: CounterFamily,
    tail_evictions: CounterFamily,
    analysis_traces: GaugeFamily,
    analysis_bytes: GaugeFamily,
    analysis_evictions: CounterFamily,
    tail_decision_latency: HistogramFamily,
    receiver_tls_handshake_failures: CounterFamily,
    kafka_topic_not_allowed: CounterFamily,
    config_reloads: CounterFamily,
    config_info: GaugeFamily,
}

/// Metrics of one `tail_sampling` processor.
#[derive(Clone)]
pub struct TailSamplingMetrics {
    /// Traces in the buffer.
    pub traces: Gauge,
    /// Bytes the buffer holds.
    pub bytes: Gauge,
    /// Bytes the decision caches hold.
    pub cache_bytes: Gauge,
    /// Late spans forwarded (their trace was kept).
    pub late_sampled: Counter,
    /// Late spans dropped (their trace was dropped).
    pub late_dropped: Counter,
    /// Seconds from a trace's first span to its decision.
    pub decision_latency: Histogram,
}

/// Metrics of one `trace_analysis` connector's trace buffer.
#[derive(Clone, Default)]
pub struct TraceAnalysisMetrics {
    /// Traces in the buffer.
    pub traces: Gauge,
    /// Bytes the buffer holds.
    pub bytes: Gauge,
    /// Traces analysed early because the buffer held `num_traces`.
    pub evictions_num_traces: Counter,
    /// Traces analysed early because the buffer reached `max_buffer_bytes`.
    pub evictions_bytes: Counter,
    /// Traces analysed early because they passed `max_spans_per_trace`.
    pub evictions_trace_cap: Counter,
}

/// Counters of one receiver on one transport.
#[derive(Clone, Default)]
pub struct ReceiverMetrics {
    /// Spans accepted into the pipeline.
    pub accepted: Counter,
    /// Spans refused (back-pressure or malformed).
    pub refused: Counter,
    /// Spans dropped for an invalid trace or span id.
    pub invalid: Counter,
    /// Requests refused for what they would take decoded.
    pub over_budget: Counter,
    /// Connections open now.
    pub open_connections: Gauge,
    /// Times the listener reached `max_connections` and left new connections waiting.
    pub connection_limit_reached: Counter,
    /// TLS handshakes that failed (see [`crate::serve::Tls`]).
    pub tls_handshake_failures: Counter,
}

/// Counters of one processor in one pipeline.
#[derive(Clone, Default)]
pub struct ProcessorMetrics {
    /// Spans that came in.
    pub incoming: Counter,
    /// Spans passed on.
    pub outgoing: Counter,
    /// Spans intentionally dropped (e.g. sampled out).
    pub dropped: Counter,
    /// Spans refused back to the sender (e.g. memory limit).
    pub refused: Counter,
}

/// Counters of one exporter.
#[derive(Clone, Default)]
pub struct ExporterMetrics {
    /// Spans delivered to the destination.
    pub sent: Counter,
    /// Spans given up on after retries or a permanent error.
    pub send_failed: Counter,
    /// Spans refused because the sending queue was full.
    pub enqueue_failed: Counter,
    /// Send attempts that were retried.
    pub retries: Counter,
    /// What the sending queue holds (waiting or being sent), counted as its `sizer` says.
    pub queue_size: Gauge,
    /// Capacity of the sending queue, in the same unit.
    pub queue_capacity: Gauge,
    /// Bytes the queue's files take on disk (`sending_queue.storage`).
    pub queue_disk_bytes: Gauge,
    /// Damaged records the on-disk queue found and skipped.
    pub queue_corrupt: Counter,
    /// Panics caught in the sending queue's consumer tasks.
    pub panics: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every family.
    pub fn new() -> Self {
        let mut reg = Registry::with_prefix("wasmcol");
        macro_rules! family {
            ($name:literal, $help:literal, $ty:ty) => {{
                let f = <$ty>::default();
                reg.register($name, $help, f.clone());
                f
            }};
        }
        // One family per signal, named as the OpenTelemetry Collector names them
        // (`receiver_accepted_spans`, `..._log_records`, `..._metric_points`).
        macro_rules! per_signal {
            ($name:literal, $help:literal) => {
                PerSignal::new(|signal| {
                    let f = CounterFamily::default();
                    let (unit, what) = match signal {
                        SignalKind::Traces => ("spans", "Spans"),
                        SignalKind::Logs => ("log_records", "Log records"),
                        SignalKind::Metrics => ("metric_points", "Metric data points"),
                    };
                    reg.register(
                        format!("{}_{unit}", $name),
                        format!("{what} {}", $help),
                        f.clone(),
                    );
                    f
                })
            };
        }
        Self {
            receiver_accepted: per_signal!(
                "receiver_accepted",
                "a receiver accepted into its pipelines"
            ),
            receiver_refused: per_signal!(
                "receiver_refused",
                "a receiver refused (back-pressure or malformed input)"
            ),
            receiver_invalid: per_signal!(
                "receiver_invalid",
                "a receiver dropped for an invalid trace or span id (empty or all zeros)"
            ),
            receiver_over_budget: family!(
                "receiver_over_budget_requests",
                "Requests (or Kafka messages) refused because decoded they would take more memory than their size limit allows",
                CounterFamily
            ),
            receiver_open_connections: family!(
                "receiver_open_connections",
                "Connections a receiver's listener has open",
                GaugeFamily
            ),
            receiver_connection_limit_reached: family!(
                "receiver_connection_limit_reached",
                "Times a receiver's listener had max_connections open and left new connections waiting in the accept backlog",
                CounterFamily
            ),
            processor_incoming: per_signal!("processor_incoming", "that entered a processor"),
            processor_outgoing: per_signal!("processor_outgoing", "a processor passed on"),
            processor_dropped: per_signal!(
                "processor_dropped",
                "a processor dropped on purpose (sampling)"
            ),
            processor_refused: per_signal!(
                "processor_refused",
                "a processor refused back to the sender"
            ),
            exporter_sent: per_signal!("exporter_sent", "an exporter delivered"),
            exporter_send_failed: per_signal!("exporter_send_failed", "an exporter gave up on"),
            exporter_enqueue_failed: per_signal!(
                "exporter_enqueue_failed",
                "refused because the exporter's sending queue was full"
            ),
            exporter_retries: family!(
                "exporter_retries",
                "Export attempts that failed with a retryable error and were retried",
                CounterFamily
            ),
            queue_size: family!(
                "exporter_queue_size",
                "What the exporter's sending queue holds, waiting or being sent (batches, spans or bytes: its sizer)",
                GaugeFamily
            ),
            queue_capacity: family!(
                "exporter_queue_capacity",
                "Capacity of the exporter's sending queue, in the unit of its sizer",
                GaugeFamily
            ),
            queue_disk_bytes: family!(
                "exporter_queue_disk_bytes",
                "Bytes the exporter's on-disk sending queue takes (sending_queue.storage)",
                GaugeFamily
            ),
            queue_corrupt: family!(
                "exporter_queue_corrupt_records",
                "Damaged records the on-disk sending queue found and skipped",
                CounterFamily
            ),
            process_rss: family!(
                "process_memory_rss_bytes",
                "Resident set size of the collector process",
                Gauge
            ),
            process_cpu: family!(
                "process_cpu_seconds",
                "CPU time (user + system) used by the collector process",
                Counter<f64, AtomicU64>
            ),
            plugin_counters: family!(
                "plugin_counter",
                "Counters reported by plugins",
                CounterFamily
            ),
            receiver_malformed: family!(
                "receiver_malformed_messages",
                "Messages a receiver skipped because they could not be decoded (Kafka)",
                CounterFamily
            ),
            receiver_rejected_messages: family!(
                "receiver_rejected_messages",
                "Messages a receiver skipped or dead-lettered because the pipeline refused their data for good (Kafka)",
                CounterFamily
            ),
            receiver_rejected_spans: family!(
                "receiver_rejected_spans",
                "Spans in the messages counted by wasmcol_receiver_rejected_messages_total",
                CounterFamily
            ),
            receiver_auth_failures: family!(
                "receiver_auth_failures",
                "Requests a receiver refused because authentication failed, by reason (missing, malformed, invalid, expired, not_yet_valid)",
                CounterFamily
            ),
            plugin_calls: family!(
                "plugin_calls",
                "Batches a wasm processor's plugin processed successfully",
                CounterFamily
            ),
            plugin_failures: family!(
                "plugin_failures",
                "Plugin calls that failed, by reason (trap, timeout, memory_limit, invalid_output, error, panic)",
                CounterFamily
            ),
            plugin_instantiations: family!(
                "plugin_instantiations",
                "Plugin instances created (the first, and each replacement after a failure or recycle)",
                CounterFamily
            ),
            plugin_recycles: family!(
                "plugin_recycles",
                "Plugin instances replaced because their memory passed the high-water mark",
                CounterFamily
            ),
            plugin_skipped: family!(
                "plugin_skipped_batches",
                "Batches handled per on_error without calling a plugin that is backing off",
                CounterFamily
            ),
            plugin_log_suppressed: family!(
                "plugin_log_lines_suppressed",
                "Log lines of a plugin left out by its rate limit",
                CounterFamily
            ),
            component_panics: family!(
                "component_panics",
                "Panics caught in a component's workers (each restarted; the data it held failed, retryable)",
                CounterFamily
            ),
            tail_traces: family!(
                "tail_sampling_traces",
                "Traces in a tail_sampling processor's buffer",
                GaugeFamily
            ),
            tail_bytes: family!(
                "tail_sampling_buffer_bytes",
                "Bytes held by a tail_sampling processor's buffer",
                GaugeFamily
            ),
            tail_cache_bytes: family!(
                "tail_sampling_cache_bytes",
                "Bytes held by a tail_sampling processor's decision caches",
                GaugeFamily
            ),
            tail_decisions: family!(
                "tail_sampling_decisions",
                "Traces decided, by deciding policy and decision (sampled, not_sampled)",
                CounterFamily
            ),
            tail_late_spans: family!(
                "tail_sampling_late_spans",
                "Spans that arrived after their trace was decided, by decision",
                CounterFamily
            ),
            tail_evictions: family!(
                "tail_sampling_evictions",
                "Traces decided before decision_wait to make room, by reason (num_traces, buffer_bytes, trace_cap)",
                CounterFamily
            ),
            analysis_traces: family!(
                "trace_analysis_traces",
                "Traces in a trace_analysis connector's buffer",
                GaugeFamily
            ),
            analysis_bytes: family!(
                "trace_analysis_buffer_bytes",
                "Bytes held by a trace_analysis connector's buffer",
                GaugeFamily
            ),
            analysis_evictions: family!(
                "trace_analysis_evictions",
                "Traces analysed before decision_wait to make room, by reason (num_traces, buffer_bytes, trace_cap)",
                CounterFamily
            ),
            tail_decision_latency: {
                let f: HistogramFamily = Family::new_with_constructor(|| {
                    Histogram::new(exponential_buckets(0.05, 2.0, 12))
                });
                reg.register(
                    "tail_sampling_decision_latency_seconds",
                    "Time from a trace's first span to its decision",
                    f.clone(),
                );
                f
            },
            receiver_tls_handshake_failures: family!(
                "receiver_tls_handshake_failures",
                "TLS handshakes a receiver's listener failed (certificate refused, protocol version, plaintext client, timeout)",
                CounterFamily
            ),
            kafka_topic_not_allowed: family!(
                "exporter_kafka_topic_not_allowed_batches",
                "Batches whose request metadata named a topic outside allowed_topics (sent to the default topic)",
                CounterFamily
            ),
            config_reloads: {
                let f = family!(
                    "config_reloads",
                    "Configuration reloads (SIGHUP, or a config file change with --watch-config), by outcome (success, failure)",
                    CounterFamily
                );
                for outcome in ["success", "failure"] {
                    let _ = f.get_or_create(&vec![("outcome", outcome.to_string())]);
                }
                f
            },
            config_info: family!(
                "config_info",
                "1 for the running configuration, labelled with the first 12 hex digits of the SHA-256 of its resolved form",
                GaugeFamily
            ),
            registry: Mutex::new(reg),
        }
    }

    /// Counters for receiver `id` on `transport` (`grpc`, `http`, ...), counting the items of
    /// `signal`.
    pub fn receiver(&self, id: &str, transport: &str, signal: SignalKind) -> ReceiverMetrics {
        let l = vec![
            ("receiver", id.to_string()),
            ("transport", transport.to_string()),
        ];
        ReceiverMetrics {
            accepted: self.receiver_accepted[signal].get_or_create(&l).clone(),
            refused: self.receiver_refused[signal].get_or_create(&l).clone(),
            invalid: self.receiver_invalid[signal].get_or_create(&l).clone(),
            over_budget: self.receiver_over_budget.get_or_create(&l).clone(),
            open_connections: self.receiver_open_connections.get_or_create(&l).clone(),
            connection_limit_reached: self
                .receiver_connection_limit_reached
                .get_or_create(&l)
                .clone(),
            tls_handshake_failures: self
                .receiver_tls_handshake_failures
                .get_or_create(&l)
                .clone(),
        }
    }

    /// Messages receiver `id` skipped as undecodable (for receivers that read messages).
    pub fn receiver_malformed(&self, id: &str) -> Counter {
        let l = vec![("receiver", id.to_string())];
        self.receiver_malformed.get_or_create(&l).clone()
    }

    /// Messages receiver `id` skipped (or dead-lettered) because an exporter or processor
    /// refused their data for good, and the spans in them: `(messages, spans)`.
    pub fn receiver_rejected(&self, id: &str) -> (Counter, Counter) {
        let l = vec![("receiver", id.to_string())];
        (
            self.receiver_rejected_messages.get_or_create(&l).clone(),
            self.receiver_rejected_spans.get_or_create(&l).clone(),
        )
    }

    /// Requests receiver `id` refused on `transport` because authentication failed for
    /// `reason`.
    pub fn receiver_auth_failures(&self, id: &str, transport: &str, reason: &str) -> Counter {
        let l = vec![
            ("receiver", id.to_string()),
            ("transport", transport.to_string()),
            ("reason", reason.to_string()),
        ];
        self.receiver_auth_failures.get_or_create(&l).clone()
    }

    /// Counters for processor `id` in `pipeline`, counting the items of `signal`.
    pub fn processor(&self, id: &str, pipeline: &str, signal: SignalKind) -> ProcessorMetrics {
        let l = vec![
            ("processor", id.to_string()),
            ("pipeline", pipeline.to_string()),
        ];
        ProcessorMetrics {
            incoming: self.processor_incoming[signal].get_or_create(&l).clone(),
            outgoing: self.processor_outgoing[signal].get_or_create(&l).clone(),
            dropped: self.processor_dropped[signal].get_or_create(&l).clone(),
            refused: self.processor_refused[signal].get_or_create(&l).clone(),
        }
    }

    /// Counters for exporter `id`, counting the items of `signal` (its queue's gauges are the
    /// exporter's, whatever the signal).
    pub fn exporter(&self, id: &str, signal: SignalKind) -> ExporterMetrics {
        let l = vec![("exporter", id.to_string())];
        ExporterMetrics {
            sent: self.exporter_sent[signal].get_or_create(&l).clone(),
            send_failed: self.exporter_send_failed[signal].get_or_create(&l).clone(),
            enqueue_failed: self.exporter_enqueue_failed[signal]
                .get_or_create(&l)
                .clone(),
            retries: self.exporter_retries.get_or_create(&l).clone(),
            queue_size: self.queue_size.get_or_create(&l).clone(),
            queue_capacity: self.queue_capacity.get_or_create(&l).clone(),
            queue_disk_bytes: self.queue_disk_bytes.get_or_create(&l).clone(),
            queue_corrupt: self.queue_corrupt.get_or_create(&l).clone(),
            panics: self.component_panics("exporter", id),
        }
    }

    /// A named counter owned by a plugin of processor `id`.
    pub fn plugin_counter(&self, id: &str, name: &str) -> Counter {
        let l = vec![("processor", id.to_string()), ("name", name.to_string())];
        self.plugin_counters.get_or_create(&l).clone()
    }

    /// Successful calls of processor `id`'s plugin.
    pub fn plugin_calls(&self, id: &str) -> Counter {
        self.plugin_calls
            .get_or_create(&vec![("processor", id.to_string())])
            .clone()
    }

    /// Failed calls of processor `id`'s plugin, for one reason.
    pub fn plugin_failures(&self, id: &str, reason: &str) -> Counter {
        let l = vec![
            ("processor", id.to_string()),
            ("reason", reason.to_string()),
        ];
        self.plugin_failures.get_or_create(&l).clone()
    }

    /// Instances created for processor `id`.
    pub fn plugin_instantiations(&self, id: &str) -> Counter {
        self.plugin_instantiations
            .get_or_create(&vec![("processor", id.to_string())])
            .clone()
    }

    /// Instances of processor `id` recycled at the memory high-water mark.
    pub fn plugin_recycles(&self, id: &str) -> Counter {
        self.plugin_recycles
            .get_or_create(&vec![("processor", id.to_string())])
            .clone()
    }

    /// Batches processor `id` handled without its plugin while backing off.
    pub fn plugin_skipped(&self, id: &str) -> Counter {
        self.plugin_skipped
            .get_or_create(&vec![("processor", id.to_string())])
            .clone()
    }

    /// Log lines of processor `id`'s plugin left out by its rate limit.
    pub fn plugin_log_suppressed(&self, id: &str) -> Counter {
        self.plugin_log_suppressed
            .get_or_create(&vec![("processor", id.to_string())])
            .clone()
    }

    /// Panics caught in the workers of component `id` of `kind` (`processor`, `exporter`).
    pub fn component_panics(&self, kind: &str, id: &str) -> Counter {
        let l = vec![("kind", kind.to_string()), ("component", id.to_string())];
        self.component_panics.get_or_create(&l).clone()
    }

    /// Metrics of `tail_sampling` processor `id`.
    pub fn tail_sampling(&self, id: &str) -> TailSamplingMetrics {
        let l = vec![("processor", id.to_string())];
        let late = |decision: &str| {
            let mut l = l.clone();
            l.push(("decision", decision.to_string()));
            self.tail_late_spans.get_or_create(&l).clone()
        };
        TailSamplingMetrics {
            traces: self.tail_traces.get_or_create(&l).clone(),
            bytes: self.tail_bytes.get_or_create(&l).clone(),
            cache_bytes: self.tail_cache_bytes.get_or_create(&l).clone(),
            late_sampled: late("sampled"),
            late_dropped: late("not_sampled"),
            decision_latency: self.tail_decision_latency.get_or_create(&l).clone(),
        }
    }

    /// Decisions of `tail_sampling` processor `id` by `policy`, `sampled` or not.
    pub fn tail_decisions(&self, id: &str, policy: &str, sampled: bool) -> Counter {
        let l = vec![
            ("processor", id.to_string()),
            ("policy", policy.to_string()),
            (
                "decision",
                if sampled { "sampled" } else { "not_sampled" }.to_string(),
            ),
        ];
        self.tail_decisions.get_or_create(&l).clone()
    }

    /// Evictions of `tail_sampling` processor `id` for `reason`.
    pub fn tail_evictions(&self, id: &str, reason: &str) -> Counter {
        let l = vec![
            ("processor", id.to_string()),
            ("reason", reason.to_string()),
        ];
        self.tail_evictions.get_or_create(&l).clone()
    }

    /// Buffer gauges and eviction counters of `trace_analysis` connector `id`.
    pub fn trace_analysis(&self, id: &str) -> TraceAnalysisMetrics {
        let l = vec![("connector", id.to_string())];
        let evictions = |reason: &str| {
            let mut l = l.clone();
            l.push(("reason", reason.to_string()));
            self.analysis_evictions.get_or_create(&l).clone()
        };
        TraceAnalysisMetrics {
            traces: self.analysis_traces.get_or_create(&l).clone(),
            bytes: self.analysis_bytes.get_or_create(&l).clone(),
            evictions_num_traces: evictions("num_traces"),
            evictions_bytes: evictions("buffer_bytes"),
            evictions_trace_cap: evictions("trace_cap"),
        }
    }

    /// Batches Kafka exporter `id` sent to its default topic because their metadata named a
    /// topic outside `allowed_topics`.
    pub fn kafka_topic_not_allowed(&self, id: &str) -> Counter {
        self.kafka_topic_not_allowed
            .get_or_create(&vec![("exporter", id.to_string())])
            .clone()
    }

    /// Counts a configuration reload, successful or not.
    pub fn config_reload(&self, success: bool) {
        let outcome = if success { "success" } else { "failure" };
        self.config_reloads
            .get_or_create(&vec![("outcome", outcome.to_string())])
            .inc();
    }

    /// Shows `hash` (the resolved configuration's SHA-256, hex) as the running one.
    pub fn config_loaded(&self, hash: &str) {
        self.config_info.clear();
        self.config_info
            .get_or_create(&vec![("hash", hash[..hash.len().min(12)].to_string())])
            .set(1);
    }

    /// Renders every metric in the Prometheus text format, refreshing process statistics first.
    pub fn render(&self) -> String {
        if let Some(sample) = read_sample("self") {
            self.process_rss.set(sample.rss_bytes as i64);
            let delta = sample.cpu_seconds - self.process_cpu.get();
            if delta > 0.0 {
                self.process_cpu.inc_by(delta);
            }
        }
        let mut out = String::new();
        if let Ok(reg) = self.registry.lock() {
            // Writing to a String cannot fail.
            let _ = encode(&mut out, &reg);
        }
        out
    }
}
