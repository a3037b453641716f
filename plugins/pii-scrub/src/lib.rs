//! `builtin:pii-scrub`: removes, masks or hashes personal data and secrets in spans, logs and
//! metrics before they leave the service network.
//!
//! Span, resource, scope, event and link attributes are scrubbed (values nested in arrays and
//! maps too); span and event names and status messages on request. In logs: log record,
//! resource and scope attributes, and the body (a string as free text, strings inside an
//! array or map body as nested attribute values). In metrics: data point (of every type),
//! resource and scope attributes. Key rules come first
//! (`ignored_keys`, `allowed_keys` fail-closed mode, `blocked_keys`), then the URL and SQL
//! sanitizers, then the value detectors and `blocked_values`. See `plugins/README.md` for
//! every option.

mod config;
mod detectors;
mod sanitize;
mod scrub;

#[cfg(test)]
mod tests;

use wasmcol_plugin_sdk::prelude::*;

pub use config::Config;
use scrub::{Engine, List, Outcome, Scratch, Stats};

/// The plugin.
pub struct PiiScrub {
    engine: Engine,
    scratch: Scratch,
    changes: Vec<(String, Outcome)>,
}

/// Applies recorded changes through one of the SDK views' set/remove methods.
macro_rules! apply {
    ($changes:expr, |$k:ident, $v:ident| $set:expr, |$rk:ident| $remove:expr) => {
        for (key, outcome) in $changes.drain(..) {
            match outcome {
                Outcome::Replace(value) => {
                    let ($k, $v) = (key, Value::from(value));
                    $set;
                }
                Outcome::Remove => {
                    let $rk = key;
                    $remove;
                }
                Outcome::Keep => {}
            }
        }
    };
}

/// The summary attributes for what `stats` saw, as (key, value).
fn summary(stats: &Stats) -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    let joined = |keys: &[String]| {
        let mut keys = keys.to_vec();
        keys.sort();
        Value::from(keys.join(","))
    };
    let masked = stats.masked + stats.hashed;
    if masked > 0 {
        out.push(("redaction.masked.count", Value::Int(masked as i64)));
        out.push(("redaction.masked.keys", joined(&stats.masked_keys)));
    }
    if stats.removed > 0 {
        out.push(("redaction.redacted.count", Value::Int(stats.removed as i64)));
        out.push(("redaction.redacted.keys", joined(&stats.removed_keys)));
    }
    out
}

/// What one call changed, reported on the plugin's counters at its end.
#[derive(Default)]
struct Totals {
    masked: u64,
    hashed: u64,
    removed: u64,
}

impl Totals {
    fn add(&mut self, s: &Stats) {
        self.masked += s.masked;
        self.hashed += s.hashed;
        self.removed += s.removed;
    }

    fn report(self) {
        host::add_counter("values_masked", self.masked);
        host::add_counter("values_hashed", self.hashed);
        host::add_counter("values_removed", self.removed);
    }
}

/// Scrubs a resource's attributes (the same for every signal), with the summary attributes
/// when asked; `sc.stats` holds what it saw.
fn scrub_resource(
    engine: &Engine,
    sc: &mut Scratch,
    changes: &mut Vec<(String, Outcome)>,
    r: &mut ResourceViewMut<'_>,
) {
    sc.stats.reset();
    engine.scrub_attributes(r.attributes(), List::Resource, sc, changes);
    apply!(changes, |k, v| r.set_attribute(k, v), |k| r
        .remove_attribute(&k));
    if engine.summary && sc.stats.any() {
        for (k, v) in summary(&sc.stats) {
            r.set_attribute(k, v);
        }
    }
}

/// Scrubs an instrumentation scope's attributes; `sc.stats` holds what it saw.
fn scrub_scope(
    engine: &Engine,
    sc: &mut Scratch,
    changes: &mut Vec<(String, Outcome)>,
    s: &mut ScopeViewMut<'_>,
) {
    sc.stats.reset();
    engine.scrub_attributes(s.attributes(), List::Scope, sc, changes);
    apply!(changes, |k, v| s.set_attribute(k, v), |k| s
        .remove_attribute(&k));
}

fn status_code(otlp: i32) -> StatusCode {
    match otlp {
        1 => StatusCode::Ok,
        2 => StatusCode::Error,
        _ => StatusCode::Unset,
    }
}

impl Plugin for PiiScrub {
    fn new(config: PluginConfig) -> Result<Self, String> {
        let engine = config.parse::<Config>()?.build()?;
        let mut scratch = Scratch::default();
        scratch.stats.record_keys = engine.summary;
        Ok(Self {
            engine,
            scratch,
            changes: Vec::new(),
        })
    }

    fn process(&mut self, batch: &mut Batch) -> Result<(), String> {
        let Self {
            engine,
            scratch: sc,
            changes,
        } = self;
        let mut totals = Totals::default();

        // View mode: scrubbing only reads and records edits, and never needs to see its own
        // changes, so the batch is never decoded.
        batch.for_each_resource_view(|r| {
            scrub_resource(engine, sc, changes, r);
            totals.add(&sc.stats);
        });
        batch.for_each_scope_view(|s| {
            scrub_scope(engine, sc, changes, s);
            totals.add(&sc.stats);
        });

        batch.for_each_span_view(|span| {
            sc.stats.reset();
            let view = span.view();
            engine.scrub_attributes(view.attributes(), List::Span, sc, changes);
            apply!(changes, |k, v| span.set_attribute(k, v), |k| span
                .remove_attribute(&k));
            for (i, event) in view.events().enumerate() {
                engine.scrub_attributes(event.attributes(), List::Event, sc, changes);
                apply!(changes, |k, v| span.set_event_attribute(i, k, v), |k| span
                    .remove_event_attribute(i, &k));
            }
            for (i, link) in view.links().enumerate() {
                engine.scrub_attributes(link.attributes(), List::Link, sc, changes);
                apply!(changes, |k, v| span.set_link_attribute(i, k, v), |k| span
                    .remove_link_attribute(i, &k));
            }
            if engine.span_names {
                if let Some(name) = engine.scrub_name(view.name(), "span.name", sc) {
                    span.set_name(name);
                }
                for (i, event) in view.events().enumerate() {
                    if let Some(name) = engine.scrub_name(event.name(), "event.name", sc) {
                        span.set_event_name(i, name);
                    }
                }
            }
            if engine.status_messages
                && let Some(status) = view.status()
                && !status.message.is_empty()
                && let Some(message) = engine.scrub_name(status.message, "status.message", sc)
            {
                span.set_status(status_code(status.code), message);
            }
            if engine.summary && sc.stats.any() {
                for (k, v) in summary(&sc.stats) {
                    span.set_attribute(k, v);
                }
            }
            totals.add(&sc.stats);
        });

        totals.report();
        Ok(())
    }

    fn process_logs(&mut self, batch: &mut LogBatch) -> Result<(), String> {
        let Self {
            engine,
            scratch: sc,
            changes,
        } = self;
        let mut totals = Totals::default();

        // View mode, as for spans: the batch is never decoded.
        batch.for_each_resource_view(|r| {
            scrub_resource(engine, sc, changes, r);
            totals.add(&sc.stats);
        });
        batch.for_each_scope_view(|s| {
            scrub_scope(engine, sc, changes, s);
            totals.add(&sc.stats);
        });

        batch.for_each_log_record_view(|record| {
            sc.stats.reset();
            let view = record.view();
            engine.scrub_attributes(view.attributes(), List::LogRecord, sc, changes);
            apply!(changes, |k, v| record.set_attribute(k, v), |k| record
                .remove_attribute(&k));
            if let Some(body) = engine.scrub_body(view.body(), sc) {
                record.set_body(Value::from(body));
            }
            if engine.summary && sc.stats.any() {
                for (k, v) in summary(&sc.stats) {
                    record.set_attribute(k, v);
                }
            }
            totals.add(&sc.stats);
        });

        totals.report();
        Ok(())
    }

    /// Resource, scope and data-point attributes, in view mode as for spans and logs.
    /// Exemplars' filtered attributes are not edited: there is no edit that reaches them.
    fn process_metrics(&mut self, batch: &mut MetricBatch) -> Result<(), String> {
        let Self {
            engine,
            scratch: sc,
            changes,
        } = self;
        let mut totals = Totals::default();
        batch.for_each_resource_view(|r| {
            scrub_resource(engine, sc, changes, r);
            totals.add(&sc.stats);
        });
        batch.for_each_scope_view(|s| {
            scrub_scope(engine, sc, changes, s);
            totals.add(&sc.stats);
        });
        batch.for_each_data_point_view(|point| {
            sc.stats.reset();
            engine.scrub_attributes(point.attributes(), List::DataPoint, sc, changes);
            apply!(changes, |k, v| point.set_attribute(k, v), |k| point
                .remove_attribute(&k));
            if engine.summary && sc.stats.any() {
                for (k, v) in summary(&sc.stats) {
                    point.set_attribute(k, v);
                }
            }
            totals.add(&sc.stats);
        });
        totals.report();
        Ok(())
    }
}

export_plugin!(PiiScrub);
