//! The logs batch a plugin works on: typed, mutable views of resources, scopes and log
//! records, as [`crate::Batch`] is for spans. Every change is made to the plugin's copy at once
//! (so later reads see it) and recorded as an [`Edit`] for the host, which applies it to its
//! own copy of the batch with [`crate::wire::edit::apply_logs`].

use std::cell::OnceCell;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, LogsData, ResourceLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;

use crate::attributes;
use crate::batch::{
    Mode, ResourceMut, ResourceViewMut, ScopeMut, ScopeViewMut, attribute_methods, record,
    remove_recorded, remove_viewed, set_recorded, view_attribute_methods, view_bytes,
};
use crate::edit::{Edit, Output, Target, encode_logs_batch};
use crate::value::{Value, as_str};
use crate::view::{self, AttributesView, LogRecordView};

/// One batch of log records, as handed to [`crate::Plugin::process_logs`].
///
/// The batch arrives as protobuf (`LogsData`) and is decoded on first access, so a plugin
/// that has nothing to do on logs never pays for decoding.
#[derive(Debug, Default)]
pub struct LogBatch {
    raw: Vec<u8>,
    data: OnceCell<Vec<ResourceLogs>>,
    edits: Vec<Edit>,
    dropped: Vec<bool>,
    replaced: bool,
    encoded: Option<Vec<u8>>,
    mode: Mode,
    /// `data` encoded, for view mode over a batch that was built rather than received.
    view_buf: OnceCell<Vec<u8>>,
}

impl LogBatch {
    /// A batch holding `data`.
    pub fn new(data: Vec<ResourceLogs>) -> Self {
        Self {
            data: OnceCell::from(data),
            ..Self::default()
        }
    }

    /// A batch that decodes `raw` (`LogsData`, protobuf) when first looked at. Bytes that do
    /// not decode make the first access panic: the host only sends what it checked itself.
    pub fn from_encoded(raw: Vec<u8>) -> Self {
        Self {
            raw,
            ..Self::default()
        }
    }

    fn data(&self) -> &Vec<ResourceLogs> {
        self.data.get_or_init(|| {
            LogsData::decode(&self.raw[..])
                .expect("the host sends valid OTLP protobuf")
                .resource_logs
        })
    }

    fn enter(&mut self, mode: Mode) {
        self.mode = self.mode.enter(mode, self.replaced);
    }

    /// Calls `f` for each resource, in view mode: read in place (the batch is never decoded),
    /// changes only recorded, so they are not visible to later reads within this call.
    pub fn for_each_resource_view(&mut self, mut f: impl FnMut(&mut ResourceViewMut<'_>)) {
        self.enter(Mode::View);
        let bytes = view_bytes(&self.raw, &self.data, &self.view_buf, encode_logs_batch);
        let edits = &mut self.edits;
        view::walk_logs(
            bytes,
            |i, resource| {
                let start = edits.len();
                f(&mut ResourceViewMut {
                    resource,
                    target: Target::Resource(i),
                    edits: &mut *edits,
                    start,
                });
            },
            None,
            None,
        );
    }

    /// Calls `f` for each instrumentation scope, in view mode.
    pub fn for_each_scope_view(&mut self, mut f: impl FnMut(&mut ScopeViewMut<'_>)) {
        self.enter(Mode::View);
        let bytes = view_bytes(&self.raw, &self.data, &self.view_buf, encode_logs_batch);
        let edits = &mut self.edits;
        view::walk_logs(
            bytes,
            |_, _| {},
            Some(&mut |i, resource, scope| {
                let start = edits.len();
                f(&mut ScopeViewMut {
                    resource,
                    scope,
                    target: Target::Scope(i),
                    edits: &mut *edits,
                    start,
                });
            }),
            None,
        );
    }

    /// Calls `f` for each log record that has not been dropped, in batch order, in view mode.
    pub fn for_each_log_record_view(&mut self, mut f: impl FnMut(&mut LogRecordViewMut<'_>)) {
        self.enter(Mode::View);
        let bytes = view_bytes(&self.raw, &self.data, &self.view_buf, encode_logs_batch);
        let edits = &mut self.edits;
        let dropped = &mut self.dropped;
        view::walk_logs(
            bytes,
            |_, _| {},
            None,
            Some(&mut |log: LogRecordView<'_>| {
                let i = log.index() as usize;
                if dropped.len() <= i {
                    dropped.resize(i + 1, false);
                }
                if dropped[i] {
                    return;
                }
                let start = edits.len();
                f(&mut LogRecordViewMut {
                    log,
                    target: Target::LogRecord(i as u32),
                    edits: &mut *edits,
                    start,
                    dropped: &mut dropped[i],
                });
            }),
        );
    }

    fn decoded(&mut self) {
        self.data();
        self.raw = Vec::new();
    }

    /// The batch as it is now (dropped records included until the host removes them).
    pub fn resource_logs(&self) -> &[ResourceLogs] {
        self.data()
    }

    /// How many log records the batch holds.
    pub fn record_count(&self) -> usize {
        self.data()
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .map(|sl| sl.log_records.len())
            .sum()
    }

    /// The edits recorded so far.
    pub fn edits(&self) -> &[Edit] {
        &self.edits
    }

    /// Calls `f` for each resource.
    pub fn for_each_resource(&mut self, mut f: impl FnMut(&mut ResourceMut<'_>)) {
        self.enter(Mode::Mutable);
        let replaced = self.replaced;
        self.decoded();
        let data = self.data.get_mut().expect("decoded");
        for (i, rl) in data.iter_mut().enumerate() {
            let mut r = ResourceMut {
                resource: rl.resource.get_or_insert_with(Default::default),
                target: Target::Resource(i as u32),
                edits: (!replaced).then_some(&mut self.edits),
            };
            f(&mut r);
        }
    }

    /// Calls `f` for each instrumentation scope.
    pub fn for_each_scope(&mut self, mut f: impl FnMut(&mut ScopeMut<'_>)) {
        self.enter(Mode::Mutable);
        let replaced = self.replaced;
        self.decoded();
        let data = self.data.get_mut().expect("decoded");
        let mut i = 0u32;
        for rl in data.iter_mut() {
            for sl in &mut rl.scope_logs {
                let mut s = ScopeMut {
                    resource: rl.resource.as_ref(),
                    scope: sl.scope.get_or_insert_with(Default::default),
                    target: Target::Scope(i),
                    edits: (!replaced).then_some(&mut self.edits),
                };
                f(&mut s);
                i += 1;
            }
        }
    }

    /// Calls `f` for each log record that has not been dropped, in batch order.
    pub fn for_each_log_record(&mut self, mut f: impl FnMut(&mut LogRecordMut<'_>)) {
        self.enter(Mode::Mutable);
        let replaced = self.replaced;
        let total = self.record_count();
        self.raw = Vec::new();
        if self.dropped.len() < total {
            self.dropped.resize(total, false);
        }
        let data = self.data.get_mut().expect("decoded by record_count");
        let mut i = 0usize;
        for rl in data.iter_mut() {
            let resource = rl.resource.as_ref();
            for sl in &mut rl.scope_logs {
                let scope = sl.scope.as_ref();
                for log in &mut sl.log_records {
                    if !self.dropped[i] {
                        let mut r = LogRecordMut {
                            resource,
                            scope,
                            log,
                            index: i as u32,
                            target: Target::LogRecord(i as u32),
                            edits: (!replaced).then_some(&mut self.edits),
                            dropped: &mut self.dropped[i],
                        };
                        f(&mut r);
                    }
                    i += 1;
                }
            }
        }
    }

    /// Replaces the whole batch: the escape hatch for changes edits cannot express. Edits
    /// made before are dropped; later changes through `for_each_*` go into the replacement.
    pub fn replace(&mut self, data: Vec<ResourceLogs>) {
        self.data = OnceCell::from(data);
        self.raw = Vec::new();
        self.edits.clear();
        self.dropped.clear();
        self.replaced = true;
        self.mode = Mode::Unused;
    }

    /// Records an edit without applying it to this copy. The host checks it like any other.
    pub fn push_edit(&mut self, edit: Edit) {
        self.edits.push(edit);
    }

    /// Replaces the batch with an already encoded `LogsData` (protobuf), which the host
    /// decodes and checks.
    pub fn replace_encoded(&mut self, bytes: Vec<u8>) {
        self.encoded = Some(bytes);
    }

    /// The batch with every change applied here, dropped records removed.
    pub fn into_resource_logs(mut self) -> Vec<ResourceLogs> {
        if let Some(bytes) = self.encoded.take() {
            return crate::edit::decode_logs_replacement(&bytes).unwrap_or_default();
        }
        if self.mode == Mode::View {
            // The host's own applier on the bytes the views read.
            let bytes = view_bytes(&self.raw, &self.data, &self.view_buf, encode_logs_batch);
            let edited = crate::wire::edit::apply_logs(bytes, self.edits)
                .expect("view-mode edits index the batch they were recorded on");
            return LogsData::decode(edited.bytes.as_slice())
                .expect("the edit applier writes what it was given: valid protobuf")
                .resource_logs;
        }
        self.decoded();
        let mut data = self.data.take().unwrap_or_default();
        if self.dropped.iter().any(|d| *d) {
            let mut i = 0;
            for rl in &mut data {
                for sl in &mut rl.scope_logs {
                    sl.log_records.retain(|_| {
                        let keep = !self.dropped[i];
                        i += 1;
                        keep
                    });
                }
                rl.scope_logs.retain(|sl| !sl.log_records.is_empty());
            }
            data.retain(|rl| !rl.scope_logs.is_empty());
        }
        data
    }

    /// What goes back to the host.
    pub fn into_output(self) -> Output {
        if let Some(bytes) = self.encoded {
            Output::Replace(bytes)
        } else if self.replaced {
            Output::Replace(encode_logs_batch(&self.into_resource_logs()))
        } else if self.edits.is_empty() {
            Output::Unchanged
        } else {
            Output::Edits(self.edits)
        }
    }
}

/// A log record in view mode: read in place, changes recorded for the host only.
pub struct LogRecordViewMut<'a> {
    log: LogRecordView<'a>,
    target: Target,
    edits: &'a mut Vec<Edit>,
    start: usize,
    dropped: &'a mut bool,
}

impl<'a> LogRecordViewMut<'a> {
    view_attribute_methods!(log);

    /// The record as received (body, severity, ids, times, resource and scope).
    pub fn view(&self) -> LogRecordView<'a> {
        self.log
    }

    /// Records setting the body (not visible to reads within this call).
    pub fn set_body(&mut self, value: impl Into<Value>) {
        self.edits.push(Edit::SetBody {
            record: self.log.index(),
            value: value.into(),
        });
    }

    /// Drops the record from the batch.
    pub fn drop_record(&mut self) {
        if !*self.dropped {
            *self.dropped = true;
            self.edits.push(Edit::DropLogRecord {
                record: self.log.index(),
            });
        }
    }
}

/// A log record of the batch, with read access to its resource and scope.
pub struct LogRecordMut<'a> {
    resource: Option<&'a Resource>,
    scope: Option<&'a InstrumentationScope>,
    log: &'a mut LogRecord,
    index: u32,
    target: Target,
    edits: Option<&'a mut Vec<Edit>>,
    dropped: &'a mut bool,
}

impl LogRecordMut<'_> {
    attribute_methods!(log.attributes);

    /// The record (read-only; change it through the methods below so the host sees it).
    pub fn log_record(&self) -> &LogRecord {
        self.log
    }

    /// The record's position in the batch.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The resource the record belongs to.
    pub fn resource(&self) -> Option<&Resource> {
        self.resource
    }

    /// The value of resource attribute `key` (e.g. `service.name`).
    pub fn resource_attribute(&self, key: &str) -> Option<&AnyValue> {
        self.resource
            .and_then(|r| attributes::get(&r.attributes, key))
    }

    /// The resource's `service.name`.
    pub fn service_name(&self) -> Option<&str> {
        self.resource_attribute("service.name").and_then(as_str)
    }

    /// The instrumentation scope the record belongs to.
    pub fn scope(&self) -> Option<&InstrumentationScope> {
        self.scope
    }

    /// The body, if any.
    pub fn body(&self) -> Option<&AnyValue> {
        self.log.body.as_ref()
    }

    /// The body when it is a string.
    pub fn body_str(&self) -> Option<&str> {
        self.body().and_then(as_str)
    }

    /// The severity number (`SeverityNumber`, 0 when unspecified).
    pub fn severity_number(&self) -> i32 {
        self.log.severity_number
    }

    /// The severity text as the source wrote it (`"WARN"`, `"error"`, ...).
    pub fn severity_text(&self) -> &str {
        &self.log.severity_text
    }

    /// When the event happened, nanoseconds since the Unix epoch (0 when unknown).
    pub fn time_unix_nano(&self) -> u64 {
        self.log.time_unix_nano
    }

    /// When the event was observed by the collection system, nanoseconds since the epoch.
    pub fn observed_time_unix_nano(&self) -> u64 {
        self.log.observed_time_unix_nano
    }

    /// The 16-byte trace id (empty when the record is not tied to a trace).
    pub fn trace_id(&self) -> &[u8] {
        &self.log.trace_id
    }

    /// The 8-byte span id (empty when the record is not tied to a span).
    pub fn span_id(&self) -> &[u8] {
        &self.log.span_id
    }

    /// The W3C trace flags.
    pub fn flags(&self) -> u32 {
        self.log.flags
    }

    /// The event name (empty when the record is not an event).
    pub fn event_name(&self) -> &str {
        &self.log.event_name
    }

    /// Sets the body: a string, number, ... or, with [`Value::Any`], an array or map.
    pub fn set_body(&mut self, value: impl Into<Value>) {
        let value = value.into();
        self.log.body = Some(value.clone().into_any_value());
        let record_index = self.index;
        record(&mut self.edits, || Edit::SetBody {
            record: record_index,
            value,
        });
    }

    /// Drops the record from the batch.
    pub fn drop_record(&mut self) {
        if !*self.dropped {
            *self.dropped = true;
            let record_index = self.index;
            record(&mut self.edits, || Edit::DropLogRecord {
                record: record_index,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Harness, log_record, resource_logs, string_value};
    use crate::{Batch, Plugin, PluginConfig};

    /// Redacts bodies holding "secret", tags records, drops DEBUG ones.
    struct Redact;

    impl Plugin for Redact {
        fn new(_: PluginConfig) -> Result<Self, String> {
            Ok(Redact)
        }

        fn process(&mut self, _: &mut Batch) -> Result<(), String> {
            Ok(())
        }

        fn process_logs(&mut self, batch: &mut LogBatch) -> Result<(), String> {
            batch.for_each_resource(|r| r.set_attribute("seen", true));
            batch.for_each_log_record(|r| {
                if r.severity_text() == "DEBUG" {
                    r.drop_record();
                    return;
                }
                if r.body_str().is_some_and(|b| b.contains("secret")) {
                    r.set_body("[redacted]");
                }
                r.remove_attribute("token");
                r.set_attribute("service", r.service_name().unwrap_or("").to_string());
            });
            Ok(())
        }
    }

    fn input() -> Vec<ResourceLogs> {
        let mut debug = log_record(Some(Value::from("noise")), &[]);
        debug.severity_text = "DEBUG".into();
        vec![resource_logs(
            "cart",
            vec![
                log_record(
                    Some(Value::from("the secret is 42")),
                    &[("token", Value::from("t")), ("keep", Value::Int(1))],
                ),
                debug,
                log_record(Some(Value::Int(7)), &[]),
            ],
        )]
    }

    #[test]
    fn the_host_applies_what_the_plugin_did_to_its_copy() {
        let mut h = Harness::<Redact>::new(serde_json::Value::Null).unwrap();
        let got = h.process_logs(input()).unwrap();
        let mut batch = LogBatch::new(input());
        Redact.process_logs(&mut batch).unwrap();
        assert_eq!(got, batch.into_resource_logs());
        let records = &got[0].scope_logs[0].log_records;
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].body, Some(string_value("[redacted]")));
        assert_eq!(records[0].attributes.len(), 2);
        assert_eq!(records[0].trace_id, vec![1; 16]);
        assert_eq!(records[1].body, Some(Value::Int(7).into_any_value()));
    }

    /// `Redact` in view mode.
    struct RedactViews;

    impl Plugin for RedactViews {
        fn new(_: PluginConfig) -> Result<Self, String> {
            Ok(RedactViews)
        }

        fn process(&mut self, _: &mut Batch) -> Result<(), String> {
            Ok(())
        }

        fn process_logs(&mut self, batch: &mut LogBatch) -> Result<(), String> {
            batch.for_each_resource_view(|r| r.set_attribute("seen", true));
            batch.for_each_log_record_view(|r| {
                let v = r.view();
                if v.severity_text() == "DEBUG" {
                    r.drop_record();
                    return;
                }
                if v.body_str().is_some_and(|b| b.contains("secret")) {
                    r.set_body("[redacted]");
                }
                r.remove_attribute("token");
                r.set_attribute("service", v.service_name().unwrap_or("").to_string());
            });
            Ok(())
        }
    }

    #[test]
    fn view_mode_reads_what_the_decoded_record_holds_and_edits_the_same() {
        let mut mutable = Harness::<Redact>::new(serde_json::Value::Null).unwrap();
        let mut views = Harness::<RedactViews>::new(serde_json::Value::Null).unwrap();
        assert_eq!(
            views.process_logs(input()).unwrap(),
            mutable.process_logs(input()).unwrap()
        );
        let bytes = crate::edit::encode_logs_batch(&input());
        let decoded = input();
        let mut batch = LogBatch::from_encoded(bytes);
        let mut seen = Vec::new();
        batch.for_each_log_record_view(|r| {
            let v = r.view();
            seen.push((
                v.body().to_any_value(),
                v.severity_number(),
                v.severity_text().to_string(),
                v.time_unix_nano(),
                v.observed_time_unix_nano(),
                v.trace_id().to_vec(),
                v.span_id().to_vec(),
                v.flags(),
                v.attributes().to_key_values(),
            ));
        });
        let expected: Vec<_> = decoded[0].scope_logs[0]
            .log_records
            .iter()
            .map(|l| {
                (
                    l.body.clone().unwrap_or_default(),
                    l.severity_number,
                    l.severity_text.clone(),
                    l.time_unix_nano,
                    l.observed_time_unix_nano,
                    l.trace_id.clone(),
                    l.span_id.clone(),
                    l.flags,
                    l.attributes.clone(),
                )
            })
            .collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_plugin_without_a_logs_handler_passes_logs_unchanged() {
        struct Traces;
        impl Plugin for Traces {
            fn new(_: PluginConfig) -> Result<Self, String> {
                Ok(Traces)
            }
            fn process(&mut self, _: &mut Batch) -> Result<(), String> {
                Err("not for logs".into())
            }
        }
        let mut h = Harness::<Traces>::new(serde_json::Value::Null).unwrap();
        assert_eq!(h.process_logs(input()).unwrap(), input());
        let mut batch = LogBatch::from_encoded(crate::edit::encode_logs_batch(&input()));
        Traces.process_logs(&mut batch).unwrap();
        assert_eq!(batch.into_output(), Output::Unchanged);
    }

    #[test]
    fn a_replacement_goes_back_whole() {
        let mut batch = LogBatch::new(input());
        batch.for_each_log_record(|r| r.set_body("x"));
        batch.replace(vec![resource_logs("other", vec![])]);
        match batch.into_output() {
            Output::Replace(bytes) => {
                let got = crate::edit::decode_logs_replacement(&bytes).unwrap();
                // Replacing prunes nothing itself: the empty scope stays.
                assert_eq!(got.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }
}
