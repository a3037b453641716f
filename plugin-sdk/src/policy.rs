//! Tail-sampling policy plugins: the host buffers spans by trace ID and asks a [`Policy`]
//! whether to keep each complete trace.
//!
//! ```
//! use wasmcol_plugin_sdk::policy::{Decision, Policy, Trace};
//! use wasmcol_plugin_sdk::PluginConfig;
//!
//! /// Keeps traces with an error, and every tenth of the others.
//! struct ErrorsAndSome;
//!
//! impl Policy for ErrorsAndSome {
//!     fn new(_: PluginConfig) -> Result<Self, String> {
//!         Ok(ErrorsAndSome)
//!     }
//!
//!     fn decide(&mut self, trace: &Trace<'_>) -> Decision {
//!         if trace.summary.error_spans > 0 {
//!             Decision::sample("errors", 1.0)
//!         } else if trace.summary.keeps_at(0.1) {
//!             Decision::sample("some", 0.1)
//!         } else {
//!             Decision::drop("some")
//!         }
//!     }
//! }
//!
//! wasmcol_plugin_sdk::export_policy!(ErrorsAndSome);
//! ```

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span, status::StatusCode};

use crate::PluginConfig;

/// A tail-sampling policy plugin.
pub trait Policy: Sized + 'static {
    /// Builds the policy from the processor's policy configuration. An error rejects the
    /// configuration: the collector does not start, and the message names the processor.
    fn new(config: PluginConfig) -> Result<Self, String>;

    /// Whether [`Policy::decide`] reads span contents ([`Trace::spans`]). When false the host
    /// does not send them, and a trace is only its [`TraceSummary`]: cheaper.
    fn needs_spans(&self) -> bool {
        true
    }

    /// Called once per batch of traces, before their decisions, with the host's clock.
    fn begin(&mut self, _now_unix_nano: u64) {}

    /// Decides whether to keep one trace.
    fn decide(&mut self, trace: &Trace<'_>) -> Decision;
}

/// What the host gathered about a trace while buffering it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceSummary {
    /// The trace ID.
    pub trace_id: [u8; 16],
    /// Spans buffered for the trace.
    pub span_count: u32,
    /// Their OTLP protobuf-encoded size.
    pub encoded_bytes: u32,
    /// Earliest span start (ns since the Unix epoch; 0 when no span).
    pub start_unix_nano: u64,
    /// Latest span end (ns since the Unix epoch).
    pub end_unix_nano: u64,
    /// A span without a parent was seen.
    pub has_root: bool,
    /// Spans with status ERROR.
    pub error_spans: u32,
    /// Spans with status OK.
    pub ok_spans: u32,
    /// `service.name` of the root span's resource, else of the first span's.
    pub service_name: String,
    /// When the host saw the first span (ns since the Unix epoch).
    pub first_seen_unix_nano: u64,
}

impl TraceSummary {
    /// An empty summary for `trace_id`, first seen at `first_seen_unix_nano`.
    pub fn new(trace_id: [u8; 16], first_seen_unix_nano: u64) -> Self {
        Self {
            trace_id,
            first_seen_unix_nano,
            ..Default::default()
        }
    }

    /// Builds the summary of the spans in `resource_spans` (all of one trace), as the host
    /// does while buffering them.
    pub fn of(resource_spans: &[ResourceSpans], first_seen_unix_nano: u64) -> Self {
        let mut summary = Self::new([0; 16], first_seen_unix_nano);
        for rs in resource_spans {
            let service = service_name(rs.resource.as_ref());
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    if let Ok(id) = <[u8; 16]>::try_from(span.trace_id.as_slice()) {
                        summary.trace_id = id;
                    }
                    summary.add(span, service, prost::Message::encoded_len(span));
                }
            }
        }
        summary
    }

    /// Counts one span (of the resource whose `service.name` is `service`, `encoded_len`
    /// bytes when encoded) into the summary.
    pub fn add(&mut self, span: &Span, service: Option<&str>, encoded_len: usize) {
        let status = span.status.as_ref().map_or(0, |s| s.code);
        let facts = SpanFacts {
            start_unix_nano: span.start_time_unix_nano,
            end_unix_nano: span.end_time_unix_nano,
            status_code: status,
            root: span.parent_span_id.is_empty(),
        };
        self.add_facts(&facts, service, encoded_len);
    }

    /// [`TraceSummary::add`] for a span the caller has not decoded (a host reading protobuf
    /// directly): only the fields a summary needs.
    pub fn add_facts(&mut self, span: &SpanFacts, service: Option<&str>, encoded_len: usize) {
        let first = self.span_count == 0;
        self.span_count = self.span_count.saturating_add(1);
        self.encoded_bytes = self
            .encoded_bytes
            .saturating_add(u32::try_from(encoded_len).unwrap_or(u32::MAX));
        if first || span.start_unix_nano < self.start_unix_nano {
            self.start_unix_nano = span.start_unix_nano;
        }
        self.end_unix_nano = self.end_unix_nano.max(span.end_unix_nano);
        match StatusCode::try_from(span.status_code) {
            Ok(StatusCode::Error) => self.error_spans += 1,
            Ok(StatusCode::Ok) => self.ok_spans += 1,
            _ => {}
        }
        if let Some(service) = service
            && ((span.root && !self.has_root) || self.service_name.is_empty())
        {
            self.service_name.clear();
            self.service_name.push_str(service);
        }
        self.has_root |= span.root;
    }

    /// The trace's duration: latest end minus earliest start.
    pub fn duration_nanos(&self) -> u64 {
        self.end_unix_nano.saturating_sub(self.start_unix_nano)
    }

    /// The trace ID as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        self.trace_id.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The trace ID's randomness: its low 56 bits (W3C trace context level 2), in [0, 2^56).
    pub fn randomness(&self) -> u64 {
        let mut low = [0u8; 8];
        low[1..].copy_from_slice(&self.trace_id[9..16]);
        u64::from_be_bytes(low)
    }

    /// Whether a sampler with probability `p` keeps this trace, by the OpenTelemetry
    /// consistent-probability rule: kept when the randomness is at least the rejection
    /// threshold `(1 - p) * 2^56`, the threshold the host writes as `ot=th:...`. Every
    /// collector applying `p` (or more) to the same trace keeps it, so decisions agree
    /// across tiers and kept sets nest (what 10% keeps, 20% keeps too).
    pub fn keeps_at(&self, p: f64) -> bool {
        if p >= 1.0 {
            return true;
        }
        if p.is_nan() || p <= 0.0 {
            return false;
        }
        let threshold = ((1.0 - p) * (1u64 << 56) as f64).round() as u64;
        self.randomness() >= threshold
    }
}

/// `service.name` of a resource, if it is a string.
pub fn service_name(resource: Option<&Resource>) -> Option<&str> {
    resource?
        .attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        })
}

/// What a [`TraceSummary`] takes from one span.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanFacts {
    /// The span's start.
    pub start_unix_nano: u64,
    /// The span's end.
    pub end_unix_nano: u64,
    /// The span's status code (`0` unset, `1` OK, `2` error).
    pub status_code: i32,
    /// The span has no parent.
    pub root: bool,
}

/// One trace, as a policy sees it.
pub struct Trace<'a> {
    /// What the host gathered about the trace.
    pub summary: &'a TraceSummary,
    /// The trace's spans, grouped by resource and scope as they arrived (empty when the
    /// policy said it does not need spans).
    pub resource_spans: &'a [ResourceSpans],
}

impl<'a> Trace<'a> {
    /// Every span with its resource and scope.
    pub fn spans(
        &self,
    ) -> impl Iterator<
        Item = (
            Option<&'a Resource>,
            Option<&'a InstrumentationScope>,
            &'a Span,
        ),
    > + 'a {
        self.resource_spans.iter().flat_map(|rs| {
            rs.scope_spans.iter().flat_map(move |ss| {
                ss.spans
                    .iter()
                    .map(move |span| (rs.resource.as_ref(), ss.scope.as_ref(), span))
            })
        })
    }

    /// Whether some span's attribute `key` (or its resource's) satisfies `test`.
    pub fn any_attribute(&self, key: &str, mut test: impl FnMut(&AnyValue) -> bool) -> bool {
        self.resource_spans.iter().any(|rs| {
            let resource = rs.resource.iter().flat_map(|r| r.attributes.iter());
            let spans = rs
                .scope_spans
                .iter()
                .flat_map(|ss| ss.spans.iter().flat_map(|s| s.attributes.iter()));
            resource
                .chain(spans)
                .any(|kv| kv.key == key && kv.value.as_ref().is_some_and(&mut test))
        })
    }
}

/// A policy's verdict on one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// Keep the trace.
    pub sample: bool,
    /// The deciding policy's name (written on kept spans as `sampling.policy`).
    pub policy: String,
    /// The probability with which traces like this one are kept, in (0, 1].
    pub probability: f64,
}

impl Decision {
    /// Keep the trace: `policy` decided, keeping such traces with `probability`.
    pub fn sample(policy: impl Into<String>, probability: f64) -> Self {
        Self {
            sample: true,
            policy: policy.into(),
            probability,
        }
    }

    /// Drop the trace: `policy` decided.
    pub fn drop(policy: impl Into<String>) -> Self {
        Self {
            sample: false,
            policy: policy.into(),
            probability: 0.0,
        }
    }
}

/// Splits `resource_spans` into the traces the summaries describe (`counts[i]` consecutive
/// entries each) and runs `decide` over them in order (a policy's decisions, an analyser's
/// findings).
pub fn decide_all<T>(
    resource_spans: &[ResourceSpans],
    summaries: &[TraceSummary],
    counts: &[u32],
    mut decide: impl FnMut(&Trace<'_>) -> T,
) -> Result<Vec<T>, String> {
    let mut at = 0usize;
    let mut out = Vec::with_capacity(summaries.len());
    for (summary, &n) in summaries.iter().zip(counts) {
        let end = at + n as usize;
        let Some(slice) = resource_spans.get(at..end) else {
            return Err(format!(
                "the host described {end} resource spans, the batch has {}",
                resource_spans.len()
            ));
        };
        out.push(decide(&Trace {
            summary,
            resource_spans: slice,
        }));
        at = end;
    }
    Ok(out)
}
