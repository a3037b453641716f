//! `trace_analysis`: a traces → metrics and traces → traces connector that analyses every
//! complete trace for performance anti-patterns and error origins (see [`detect`], from the
//! `trace-analysis-plugin` crate, linked natively).
//!
//! Spans wait in the trace buffer `tail_sampling` uses ([`crate::trace_buffer`]: encoded, per trace,
//! with its `decision_wait`, trace count and byte budget, per-trace cap and evictions), and a
//! trace is analysed once it is due. The metrics side sends `trace_analysis.findings`, a cumulative
//! sum per pattern, service and span name, each finding weighted by the adjusted count of the
//! span it is about (its sampling threshold, [`crate::sampling::adjusted`]), with the trace
//! id of the worst finding so far as an attribute, and `trace_analysis.critical_path.self_time`,
//! each span's self time on its trace's critical path per service and span name, and
//! `trace_analysis.dependency.*`, calls and failures per caller → callee (how often a callee's
//! failure fails the caller's request: strong and weak dependencies). The traces side passes every analysed
//! trace on, the spans involved in a finding carrying `trace_analysis.findings` (the patterns,
//! a string array). Spans of a trace that arrive after it was analysed are passed on as they
//! are (traces side) and not analysed again, while its id is remembered
//! (`late_span_cache_size`).
//!
//! Analyser plugins (`analysers:`, the `wasmcol:plugin/analyser` world) get each batch of
//! due traces after the detectors, on a blocking thread; their findings join the detectors'
//! in the metric and on the spans. A plugin that fails (trap, error, timeout, out of memory,
//! a finding out of range) costs only its own findings for that batch: the traces pass on,
//! the failure is counted (`wasmcol_plugin_failures_total`) and logged at a limited rate.
//! Without analysers, nothing of this runs and the metrics side buffers spans cut down to
//! what the detectors read.
//!
//! Used on both sides, the connector is two instances, each with its own buffer.

mod config;
mod findings;
mod strip;
#[cfg(test)]
mod tests;

pub use config::TraceAnalysisConfig;
pub use trace_analysis_plugin::detect;
use trace_analysis_plugin::spans;

use crate::connectors::unix_nanos;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message;
use tokio_util::sync::CancellationToken;

use crate::component::{BuildContext, Connector, ConnectorConfig, Lifecycle};
use crate::otlp::wire;
use crate::pipeline::{
    Batch, ConsumeError, Consumer, Metrics, SharedConsumer, SignalKind, TraceBatch, Traces,
};
use crate::plugin_host::Services;
use crate::plugin_host::analyser::{AnalyserRunner, PluginFinding};
use crate::sampling::adjusted::adjusted_count;
use crate::telemetry::{ExporterMetrics, TraceAnalysisMetrics};
use crate::trace_buffer::cache::{ExactCache, Kept, SampledCache};
use crate::trace_buffer::{Buffer, BufferLimits, DueTrace, Eviction, encode_for_policy};
use config::Detectors;
use detect::{Finding, Pattern, TraceSpan};
use findings::{Findings, Sums};

/// The metric sent.
pub const METRIC: &str = "trace_analysis.findings";
/// The span attribute listing a span's findings.
pub const SPAN_ATTRIBUTE: &str = "trace_analysis.findings";
/// The span attribute of an error origin listing the services the error reached.
pub const PROPAGATED_ATTRIBUTE: &str = "trace_analysis.error.propagated_to";
/// The metric of self time on the critical path.
pub const CRITICAL_PATH_METRIC: &str = "trace_analysis.critical_path.self_time";
/// Calls per caller → callee.
pub const DEPENDENCY_CALLS_METRIC: &str = "trace_analysis.dependency.calls";
/// Failed calls per caller → callee.
pub const DEPENDENCY_FAILED_METRIC: &str = "trace_analysis.dependency.failed_calls";
/// Failed calls per caller → callee whose caller's entry span failed too.
pub const DEPENDENCY_FAILED_ENTRIES_METRIC: &str = "trace_analysis.dependency.failed_entries";
/// The metric attribute holding the worst finding's trace id (hex).
pub const WORST_TRACE_ATTRIBUTE: &str = "trace_analysis.worst_trace_id";
/// Instrumentation scope of the metrics.
pub const SCOPE_NAME: &str = "wasmcol/trace_analysis";
/// Most traces handed to an analyser plugin in one call (as to a tail-sampling policy).
const MAX_TRACES_PER_CALL: usize = 4096;
/// About how many span bytes go into one analyser call (as into a policy call).
const MAX_BYTES_PER_CALL: usize = 8 << 20;

impl ConnectorConfig for TraceAnalysisConfig {
    fn pairs(&self) -> Vec<(SignalKind, SignalKind)> {
        vec![
            (SignalKind::Traces, SignalKind::Metrics),
            (SignalKind::Traces, SignalKind::Traces),
        ]
    }

    fn build_traces_to_metrics(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Metrics>,
    ) -> anyhow::Result<Arc<dyn Connector<Traces>>> {
        Ok(Arc::new(TraceAnalysis::new(
            self,
            ctx,
            Output::Metrics(next),
        )))
    }

    fn build_traces_to_traces(
        &self,
        ctx: &BuildContext,
        next: SharedConsumer<Traces>,
    ) -> anyhow::Result<Arc<dyn Connector<Traces>>> {
        Ok(Arc::new(TraceAnalysis::new(
            self,
            ctx,
            Output::Traces(next),
        )))
    }
}

#[derive(Clone)]
enum Output {
    Metrics(SharedConsumer<Metrics>),
    Traces(SharedConsumer<Traces>),
}

/// Adds one trace's analysis (in `scratch`) to `sums` (critical path, dependencies, findings
/// with `trace_id` for the worst) and returns its findings. Without `sums` (the traces side,
/// which sends no metrics) it only finds.
fn record<'a>(
    spans: &[TraceSpan<'a>],
    trace_id: impl Fn() -> String,
    config: &Detectors,
    sums: Option<&mut Sums<'a>>,
    scratch: &mut detect::Scratch<'a>,
) -> Vec<Finding> {
    detect::analyse_in(spans, config, scratch);
    let analysis = &mut scratch.analysis;
    let findings = std::mem::take(&mut analysis.findings);
    let Some(sums) = sums else {
        return findings;
    };
    for &(i, nanos) in &analysis.critical {
        let s = &spans[i];
        *sums.critical.entry((s.service, s.name)).or_default() +=
            nanos as f64 / 1e9 * adjusted_count(s.trace_state);
    }
    for d in &analysis.dependencies {
        let s = &spans[d.call];
        let weight = adjusted_count(s.trace_state);
        let (first, second) = d.callee.parts();
        let into = sums
            .dependencies
            .entry((s.service, first, second))
            .or_default();
        into[0] += weight;
        if d.failed {
            into[1] += weight;
        }
        if d.failed_entry {
            into[2] += weight;
        }
    }
    for f in &findings {
        let anchor = &spans[f.anchor];
        sums.add(
            (anchor.service, f.pattern.name(), anchor.name),
            adjusted_count(anchor.trace_state),
            f.magnitude,
            &trace_id,
        );
    }
    findings
}

/// Adds an analyser plugin's findings in one trace to `sums`, as [`record`] does the
/// detectors'.
fn record_plugin<'a>(
    spans: &[TraceSpan<'a>],
    found: &'a [PluginFinding],
    trace_id: impl Fn() -> String,
    sums: &mut Sums<'a>,
) {
    for f in found {
        // Checked against the trace's span count when the plugin answered.
        let Some(anchor) = spans.get(f.anchor) else {
            continue;
        };
        sums.add(
            (anchor.service, &f.pattern, anchor.name),
            adjusted_count(anchor.trace_state),
            f.magnitude,
            &trace_id,
        );
    }
}

/// Marks the spans involved in `findings` and the plugins' `found` (indices in the order of
/// `resources`' spans) with their patterns and, on error origins, where the error propagated;
/// writes the plugins' attributes on their anchors.
fn mark(resources: &mut [ResourceSpans], findings: &[Finding], found: &[PluginFinding]) {
    // Patterns per span, in the order found, once each.
    let mut marks: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    let mut propagated: BTreeMap<usize, &[String]> = BTreeMap::new();
    let mut extra: BTreeMap<usize, Vec<&(String, AnyValue)>> = BTreeMap::new();
    let native = findings.iter().map(|f| (f.pattern.name(), &f.spans[..]));
    let plugins = found.iter().map(|f| (f.pattern.as_str(), &f.spans[..]));
    for (pattern, spans) in native.chain(plugins) {
        for &i in spans {
            let list = marks.entry(i).or_default();
            if !list.contains(&pattern) {
                list.push(pattern);
            }
        }
    }
    for f in findings {
        if f.pattern == Pattern::ErrorOrigin && !f.propagated_to.is_empty() {
            propagated.insert(f.anchor, &f.propagated_to);
        }
    }
    for f in found {
        if !f.attributes.is_empty() {
            extra.entry(f.anchor).or_default().extend(&f.attributes);
        }
    }
    let strings = |values: Vec<String>| AnyValue {
        value: Some(any_value::Value::ArrayValue(ArrayValue {
            values: values
                .into_iter()
                .map(|v| AnyValue {
                    value: Some(any_value::Value::StringValue(v)),
                })
                .collect(),
        })),
    };
    let spans = resources
        .iter_mut()
        .flat_map(|rs| &mut rs.scope_spans)
        .flat_map(|ss| &mut ss.spans)
        .enumerate();
    for (i, span) in spans {
        if let Some(list) = marks.get(&i) {
            span.attributes
                .retain(|kv| kv.key != SPAN_ATTRIBUTE && kv.key != PROPAGATED_ATTRIBUTE);
            span.attributes.push(KeyValue {
                key: SPAN_ATTRIBUTE.to_owned(),
                value: Some(strings(list.iter().map(|s| (*s).to_owned()).collect())),
                ..Default::default()
            });
            if let Some(reached) = propagated.get(&i) {
                span.attributes.push(KeyValue {
                    key: PROPAGATED_ATTRIBUTE.to_owned(),
                    value: Some(strings(reached.to_vec())),
                    ..Default::default()
                });
            }
        }
        // After the marks, which clear the connector's own attributes first: a plugin may
        // write one of them (`builtin:trace-analysis` writes an error origin's services).
        if let Some(attributes) = extra.get(&i) {
            for (key, value) in attributes {
                span.attributes.retain(|kv| kv.key != *key);
                span.attributes.push(KeyValue {
                    key: key.clone(),
                    value: Some(value.clone()),
                    ..Default::default()
                });
            }
        }
    }
}

/// Analyses one trace given decoded: its spans (the involved ones marked) and its findings.
pub fn analyse_trace(
    resources: &mut [ResourceSpans],
    trace_id: &str,
    config: &TraceAnalysisConfig,
    findings_out: &mut Findings,
) -> Vec<Finding> {
    let mut bodies = Vec::new();
    for rs in resources.iter() {
        let service = rs
            .resource
            .as_ref()
            .and_then(|res| res.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_default();
        for span in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
            bodies.push((service.clone(), span.encode_to_vec()));
        }
    }
    let spans: Vec<TraceSpan<'_>> = bodies
        .iter()
        .map(|(service, body)| TraceSpan::read(body, service))
        .collect();
    let mut sums = Sums::default();
    let findings = record(
        &spans,
        || trace_id.to_owned(),
        &config.detectors(),
        Some(&mut sums),
        &mut detect::Scratch::default(),
    );
    findings_out.add(&mut sums, unix_nanos());
    mark(resources, &findings, &[]);
    findings
}

struct State {
    buffer: Mutex<Buffer>,
    /// The buffer's size and its evictions.
    buffer_metrics: TraceAnalysisMetrics,
    /// The sums the metrics side sends (`None` on the traces side, which sends none).
    findings: Option<Mutex<Findings>>,
    /// The detector sections of the configuration.
    detectors: Detectors,
    /// The analyser plugins (`None` without any), called on a blocking thread: a call may
    /// take up to its `call_timeout`.
    analysers: Option<Arc<Mutex<Vec<AnalyserRunner>>>>,
}

struct TraceAnalysis {
    id: String,
    config: Arc<TraceAnalysisConfig>,
    state: Arc<State>,
    output: Output,
    /// Spans taken in (`sent`); on the traces side, analysed spans the next stage refused
    /// (`send_failed`).
    metrics: ExporterMetrics,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl TraceAnalysis {
    fn new(config: &TraceAnalysisConfig, ctx: &BuildContext, output: Output) -> Self {
        let limits = BufferLimits {
            decision_wait: config.decision_wait.0,
            num_traces: config.num_traces,
            max_bytes: config.max_buffer_bytes.0 as usize,
            max_spans_per_trace: config.max_spans_per_trace,
            max_bytes_per_trace: config.max_buffer_bytes.0 as usize,
            early_quiet: None,
            expected_traces: 0,
        };
        let sampled = if config.late_span_cache_size == 0 {
            SampledCache::Disabled
        } else {
            SampledCache::Exact(ExactCache::new(config.late_span_cache_size))
        };
        let id = ctx.id.to_string();
        let analysers = config.loaded.get().filter(|l| !l.is_empty()).map(|loaded| {
            let runners = loaded
                .iter()
                .zip(&config.analysers)
                .enumerate()
                .map(|(i, ((analyser, json), entry))| {
                    // Each side runs its own instances, counted apart.
                    let side = match output {
                        Output::Metrics(_) => "metrics",
                        Output::Traces(_) => "traces",
                    };
                    let services = Arc::new(Services::new(
                        format!("{id}.analysers[{i}].{side}"),
                        ctx.metrics.clone(),
                        Arc::new(Default::default()),
                    ));
                    AnalyserRunner::new(
                        analyser.clone(),
                        json.clone(),
                        services,
                        entry.limits.clone(),
                    )
                })
                .collect();
            Arc::new(Mutex::new(runners))
        });
        Self {
            id,
            config: Arc::new(config.clone()),
            state: Arc::new(State {
                buffer: Mutex::new(Buffer::new(limits, sampled, ExactCache::new(0))),
                buffer_metrics: ctx.metrics.trace_analysis(&ctx.id.to_string()),
                findings: matches!(output, Output::Metrics(_)).then(|| {
                    Mutex::new(Findings::new(
                        &ctx.id.to_string(),
                        unix_nanos(),
                        config.aggregation_cardinality_limit,
                        config.metrics_expiration.0.as_nanos() as u64,
                    ))
                }),
                detectors: config.detectors(),
                analysers,
            }),
            output,
            metrics: ctx
                .metrics
                .exporter(&ctx.id.to_string(), SignalKind::Traces),
            stop: CancellationToken::new(),
            task: Mutex::new(None),
        }
    }
}

/// Analyses every due trace; on the traces side, sends them on. The buffer is locked only to
/// take the due traces and to finish them, not while they are analysed.
async fn run_due(id: &str, state: &State, output: &Output, metrics: &ExporterMetrics) {
    let due: Vec<DueTrace> = state.buffer.lock().expect("trace_analysis lock").take_due(
        Instant::now(),
        usize::MAX,
        usize::MAX,
    );
    if due.is_empty() {
        return;
    }
    let plugin_findings = match &state.analysers {
        Some(runners) => run_analysers(runners, &due).await,
        None => Vec::new(),
    };
    let traces_side = matches!(output, Output::Traces(_));
    // On the traces side: the analysed traces as one `TracesData`, and its span count.
    let mut out: Vec<u8> = Vec::new();
    let mut out_spans = 0usize;
    // Only the metrics side sends the sums.
    let mut sums = state.findings.as_ref().map(|_| Sums::default());
    let mut trace: Vec<TraceSpan<'_>> = Vec::new();
    let mut scratch = detect::Scratch::default();
    for (at, t) in due.iter().enumerate() {
        trace.clear();
        for g in &t.groups {
            let service = g
                .origin()
                .resource()
                .and_then(|r| wire::resource_string_attribute(r, "service.name"))
                .unwrap_or("");
            spans::read_entries(g.span_entries(), service, &mut trace);
        }
        let findings = record(
            &trace,
            || format!("{:032x}", t.id),
            &state.detectors,
            sums.as_mut(),
            &mut scratch,
        );
        let plugins: &[PluginFinding] = plugin_findings.get(at).map_or(&[], Vec::as_slice);
        if let Some(sums) = sums.as_mut() {
            record_plugin(&trace, plugins, || format!("{:032x}", t.id), sums);
        }
        if !traces_side {
            continue;
        }
        out_spans += trace.len();
        if findings.is_empty() && plugins.is_empty() {
            for g in &t.groups {
                g.write_traces_data_entry(&mut out);
            }
        } else {
            // Rare: only traces with findings are decoded, to mark their spans.
            let mut resources: Vec<ResourceSpans> = t
                .groups
                .iter()
                .map(|g| g.decode().unwrap_or_default())
                .collect();
            mark(&mut resources, &findings, plugins);
            prost::encoding::message::encode_repeated(1, &resources, &mut out);
        }
    }
    if let (Some(findings), Some(sums)) = (&state.findings, sums.as_mut()) {
        findings
            .lock()
            .expect("trace_analysis lock")
            .add(sums, unix_nanos());
    }
    drop((trace, scratch, sums));
    {
        let now = Instant::now();
        let mut buffer = state.buffer.lock().expect("trace_analysis lock");
        for t in &due {
            // Spans that arrived while the trace was analysed go on as they are.
            let late = buffer.finish(
                t.id,
                Some(Kept {
                    policy: 0,
                    probability: 1.0,
                }),
                now,
            );
            if traces_side {
                for g in &late {
                    g.write_traces_data_entry(&mut out);
                    out_spans += g.span_count() as usize;
                }
            }
        }
        observe(&state.buffer_metrics, &buffer, &[]);
    }
    drop(due);
    if let Output::Traces(next) = output
        && out_spans > 0
    {
        let batch = TraceBatch::from_trusted_protobuf(out.into(), out_spans);
        let spans = out_spans as u64;
        if let Err(e) = next.consume(batch).await {
            // Accepted when buffered, so they cannot be refused upstream any more.
            metrics.send_failed.inc_by(spans);
            tracing::warn!(connector = %id, error = %e, spans, "analysed traces refused by the next stage; lost");
        }
    }
}

/// Hands `due` to every analyser plugin, in calls of at most [`MAX_TRACES_PER_CALL`] traces
/// and about [`MAX_BYTES_PER_CALL`] bytes, on a blocking thread: the findings, per trace.
async fn run_analysers(
    runners: &Arc<Mutex<Vec<AnalyserRunner>>>,
    due: &[DueTrace],
) -> Vec<Vec<PluginFinding>> {
    let mut per_trace: Vec<Vec<PluginFinding>> = vec![Vec::new(); due.len()];
    let mut start = 0;
    while start < due.len() {
        let (mut end, mut bytes) = (start, 0usize);
        while end < due.len()
            && (end == start || (end - start < MAX_TRACES_PER_CALL && bytes < MAX_BYTES_PER_CALL))
        {
            bytes += due[end].summary.encoded_bytes as usize;
            end += 1;
        }
        let chunk = &due[start..end];
        let mut batch = Vec::with_capacity(bytes + bytes / 8);
        let counts = encode_for_policy(chunk, &mut batch);
        let summaries: Vec<_> = chunk.iter().map(|t| t.summary.clone()).collect();
        let spans: Vec<u32> = chunk
            .iter()
            .map(|t| t.groups.iter().map(|g| g.span_count() as u32).sum())
            .collect();
        let runners = runners.clone();
        let found = tokio::task::spawn_blocking(move || {
            let mut runners = runners.lock().unwrap_or_else(|e| e.into_inner());
            runners
                .iter_mut()
                .flat_map(|r| r.analyse(&batch, &summaries, &counts, &spans))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for f in found {
            per_trace[start + f.trace].push(f);
        }
        start = end;
    }
    per_trace
}

/// Sets the buffer gauges to what `buffer` holds and counts `evictions`.
fn observe(metrics: &TraceAnalysisMetrics, buffer: &Buffer, evictions: &[Eviction]) {
    metrics.traces.set(buffer.trace_count() as i64);
    metrics.bytes.set(buffer.bytes() as i64);
    for e in evictions {
        match e {
            Eviction::NumTraces => &metrics.evictions_num_traces,
            Eviction::Bytes => &metrics.evictions_bytes,
            Eviction::TraceCap => &metrics.evictions_trace_cap,
        }
        .inc();
    }
}

/// The findings metric now, as a batch (`None` when there is none).
fn take_metrics(state: &State) -> Option<Batch<Metrics>> {
    let resources = state
        .findings
        .as_ref()?
        .lock()
        .expect("trace_analysis lock")
        .flush(unix_nanos());
    (!resources.is_empty()).then(|| Batch::new(resources))
}

#[async_trait]
impl Consumer<Traces> for TraceAnalysis {
    async fn consume(&self, batch: TraceBatch) -> Result<(), ConsumeError> {
        let full = || {
            Err(ConsumeError::retryable(format!(
                "{}: trace buffer full (max_buffer_bytes)",
                self.id
            )))
        };
        if self
            .state
            .buffer
            .lock()
            .expect("trace_analysis lock")
            .is_full()
        {
            return full();
        }
        // On the metrics side only what the analysis reads is buffered, cut out before the
        // buffer is locked.
        // With analyser plugins every span is buffered whole: plugins read what they like.
        let strip = matches!(self.output, Output::Metrics(_)) && self.state.analysers.is_none();
        let stripped = strip.then(|| {
            let mut stripped = Vec::with_capacity(batch.protobuf_len() / 4);
            let mut lens = Vec::new();
            match batch.protobuf_parts() {
                Some(parts) => {
                    for p in parts {
                        strip::strip_request(p, &mut stripped, &mut lens);
                    }
                }
                None => {
                    let mut encoded = Vec::new();
                    batch.encode_protobuf(&mut encoded);
                    strip::strip_request(&encoded, &mut stripped, &mut lens);
                }
            }
            stripped
        });
        let ingested = {
            let mut buffer = self.state.buffer.lock().expect("trace_analysis lock");
            if buffer.is_full() {
                return full();
            }
            let now = Instant::now();
            let ingested = match (stripped, batch.protobuf_parts()) {
                (Some(stripped), _) => buffer.ingest_protobuf([&stripped[..]], now, unix_nanos()),
                (None, Some(parts)) => buffer.ingest_protobuf(
                    parts.map(|p| p.as_ref()).collect::<Vec<&[u8]>>(),
                    now,
                    unix_nanos(),
                ),
                (None, None) => buffer.ingest(batch.resources(), now, unix_nanos()),
            };
            observe(&self.state.buffer_metrics, &buffer, &ingested.evictions);
            ingested
        };
        self.metrics.sent.inc_by(batch.item_count() as u64);
        if let Output::Traces(next) = &self.output
            && !ingested.forward.is_empty()
        {
            next.consume(TraceBatch::new(ingested.forward)).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Lifecycle for TraceAnalysis {
    async fn start(&self) -> anyhow::Result<()> {
        let (state, config, output, stop, id, metrics) = (
            self.state.clone(),
            self.config.clone(),
            self.output.clone(),
            self.stop.clone(),
            self.id.clone(),
            self.metrics.clone(),
        );
        let tick = (config.decision_wait.0 / 20).max(Duration::from_millis(10));
        let flush = config.metrics_flush_interval.0;
        *self.task.lock().expect("trace_analysis lock") = Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(tick);
            let mut flushes = tokio::time::interval_at(tokio::time::Instant::now() + flush, flush);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = ticks.tick() => run_due(&id, &state, &output, &metrics).await,
                    _ = flushes.tick() => {
                        if let Output::Metrics(next) = &output
                            && let Some(batch) = take_metrics(&state)
                            && let Err(e) = next.consume(batch).await
                        {
                            tracing::warn!(connector = %id, error = %e, "findings refused by the next stage");
                        }
                    }
                }
            }
        }));
        Ok(())
    }

    async fn shutdown(&self) {
        self.stop.cancel();
        let task = self.task.lock().expect("trace_analysis lock").take();
        if let Some(t) = task {
            let _ = t.await;
        }
        // Every buffered trace is analysed now.
        self.state
            .buffer
            .lock()
            .expect("trace_analysis lock")
            .expire_all();
        run_due(&self.id, &self.state, &self.output, &self.metrics).await;
        let Output::Metrics(next) = &self.output else {
            return;
        };
        let Some(batch) = take_metrics(&self.state) else {
            return;
        };
        super::send_final(&self.id, next, batch, "findings").await;
    }
}
