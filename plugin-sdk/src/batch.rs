//! The batch a plugin works on: typed, mutable views of resources, scopes and spans. Every
//! change is made to the plugin's copy at once (so later reads see it) and recorded as an
//! [`Edit`] for the host.

use std::cell::OnceCell;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span, Status, TracesData};
use prost::Message;

use crate::attributes;
use crate::edit::{Edit, Output, StatusCode, Target, encode_batch};
use crate::value::{Value, as_str};

/// One batch of spans, as handed to [`crate::Plugin::process`].
///
/// The batch arrives as protobuf and is decoded on first access, so a plugin that decides
/// it has nothing to do (or only replaces the batch) never pays for decoding.
#[derive(Debug, Default)]
pub struct Batch {
    raw: Vec<u8>,
    data: OnceCell<Vec<ResourceSpans>>,
    edits: Vec<Edit>,
    dropped: Vec<bool>,
    replaced: bool,
    encoded: Option<Vec<u8>>,
}

impl Batch {
    /// A batch holding `data`.
    pub fn new(data: Vec<ResourceSpans>) -> Self {
        Self {
            data: OnceCell::from(data),
            ..Self::default()
        }
    }

    /// A batch that decodes `raw` (`TracesData`, protobuf) when first looked at. Bytes that
    /// do not decode make the first access panic: the host only sends what it decoded itself.
    pub fn from_encoded(raw: Vec<u8>) -> Self {
        Self {
            raw,
            ..Self::default()
        }
    }

    fn data(&self) -> &Vec<ResourceSpans> {
        self.data.get_or_init(|| {
            TracesData::decode(&self.raw[..])
                .expect("the host sends valid OTLP protobuf")
                .resource_spans
        })
    }

    /// Decodes if needed; borrows only the data field, so edits can be recorded alongside.
    fn decoded(&mut self) {
        self.data();
        self.raw = Vec::new();
    }

    /// The batch as it is now (dropped spans included until the host removes them).
    pub fn resource_spans(&self) -> &[ResourceSpans] {
        self.data()
    }

    /// How many spans the batch holds.
    pub fn span_count(&self) -> usize {
        self.data()
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .map(|ss| ss.spans.len())
            .sum()
    }

    /// The edits recorded so far.
    pub fn edits(&self) -> &[Edit] {
        &self.edits
    }

    /// Calls `f` for each resource.
    pub fn for_each_resource(&mut self, mut f: impl FnMut(&mut ResourceMut<'_>)) {
        let replaced = self.replaced;
        self.decoded();
        let data = self.data.get_mut().expect("decoded");
        for (i, rs) in data.iter_mut().enumerate() {
            let mut r = ResourceMut {
                resource: rs.resource.get_or_insert_with(Default::default),
                target: Target::Resource(i as u32),
                edits: (!replaced).then_some(&mut self.edits),
            };
            f(&mut r);
        }
    }

    /// Calls `f` for each instrumentation scope.
    pub fn for_each_scope(&mut self, mut f: impl FnMut(&mut ScopeMut<'_>)) {
        let replaced = self.replaced;
        self.decoded();
        let data = self.data.get_mut().expect("decoded");
        let mut i = 0u32;
        for rs in data.iter_mut() {
            for ss in &mut rs.scope_spans {
                let mut s = ScopeMut {
                    resource: rs.resource.as_ref(),
                    scope: ss.scope.get_or_insert_with(Default::default),
                    target: Target::Scope(i),
                    edits: (!replaced).then_some(&mut self.edits),
                };
                f(&mut s);
                i += 1;
            }
        }
    }

    /// Calls `f` for each span that has not been dropped, in batch order.
    pub fn for_each_span(&mut self, mut f: impl FnMut(&mut SpanMut<'_>)) {
        let replaced = self.replaced;
        let total = self.span_count();
        if self.dropped.len() < total {
            self.dropped.resize(total, false);
        }
        let data = self.data.get_mut().expect("decoded by span_count");
        let mut i = 0usize;
        for rs in data.iter_mut() {
            let resource = rs.resource.as_ref();
            for ss in &mut rs.scope_spans {
                let scope = ss.scope.as_ref();
                for span in &mut ss.spans {
                    if !self.dropped[i] {
                        let mut s = SpanMut {
                            resource,
                            scope,
                            span,
                            index: i as u32,
                            target: Target::Span(i as u32),
                            edits: (!replaced).then_some(&mut self.edits),
                            dropped: &mut self.dropped[i],
                        };
                        f(&mut s);
                    }
                    i += 1;
                }
            }
        }
    }

    /// Replaces the whole batch: the escape hatch for changes edits cannot express (adding
    /// spans, restructuring). It costs a full encode here and a decode in the host, so prefer
    /// edits. Edits made before are folded into `data` by the caller; later changes through
    /// the `for_each_*` views go into the replacement.
    pub fn replace(&mut self, data: Vec<ResourceSpans>) {
        self.data = OnceCell::from(data);
        self.raw = Vec::new();
        self.edits.clear();
        self.dropped.clear();
        self.replaced = true;
    }

    /// Records an edit without applying it to this copy: for plugins that compute edits
    /// themselves. The host checks it like any other.
    pub fn push_edit(&mut self, edit: Edit) {
        self.edits.push(edit);
    }

    /// Replaces the batch with an already encoded `TracesData` (protobuf), which the host
    /// decodes and checks.
    pub fn replace_encoded(&mut self, bytes: Vec<u8>) {
        self.encoded = Some(bytes);
    }

    /// The batch with every change applied here, dropped spans removed: for running a
    /// plugin natively inside another program.
    pub fn into_resource_spans(mut self) -> Vec<ResourceSpans> {
        if let Some(bytes) = self.encoded.take() {
            return crate::edit::decode_replacement(&bytes).unwrap_or_default();
        }
        self.decoded();
        let mut data = self.data.take().unwrap_or_default();
        if self.dropped.iter().any(|d| *d) {
            let mut i = 0;
            for rs in &mut data {
                for ss in &mut rs.scope_spans {
                    ss.spans.retain(|_| {
                        let keep = !self.dropped[i];
                        i += 1;
                        keep
                    });
                }
                rs.scope_spans.retain(|ss| !ss.spans.is_empty());
            }
            data.retain(|rs| !rs.scope_spans.is_empty());
        }
        data
    }

    /// What goes back to the host.
    pub fn into_output(self) -> Output {
        if let Some(bytes) = self.encoded {
            Output::Replace(bytes)
        } else if self.replaced {
            Output::Replace(encode_batch(&self.into_resource_spans()))
        } else if self.edits.is_empty() {
            Output::Unchanged
        } else {
            Output::Edits(self.edits)
        }
    }
}

fn record(edits: &mut Option<&mut Vec<Edit>>, edit: impl FnOnce() -> Edit) {
    if let Some(e) = edits {
        e.push(edit());
    }
}

/// Sets an attribute in this copy and records the edit for the host.
fn set_recorded(
    attrs: &mut Vec<KeyValue>,
    edits: &mut Option<&mut Vec<Edit>>,
    target: Target,
    key: String,
    value: Value,
) {
    attributes::set(attrs, &key, value.clone().into_any_value());
    record(edits, || Edit::SetAttribute { target, key, value });
}

/// Removes an attribute from this copy and records the edit when there was one.
fn remove_recorded(
    attrs: &mut Vec<KeyValue>,
    edits: &mut Option<&mut Vec<Edit>>,
    target: Target,
    key: &str,
) -> Option<AnyValue> {
    let old = attributes::remove(attrs, key)?;
    record(edits, || Edit::RemoveAttribute {
        target,
        key: key.to_string(),
    });
    Some(old)
}

/// Shared attribute editing for every view.
macro_rules! attribute_methods {
    ($field:ident . $($path:ident).*) => {
        /// The attributes.
        pub fn attributes(&self) -> &[KeyValue] {
            &self.$field.$($path).*
        }

        /// The value of attribute `key`.
        pub fn attribute(&self, key: &str) -> Option<&AnyValue> {
            attributes::get(&self.$field.$($path).*, key)
        }

        /// The string value of attribute `key` (None if absent or not a string).
        pub fn attribute_str(&self, key: &str) -> Option<&str> {
            self.attribute(key).and_then(as_str)
        }

        /// Inserts or replaces attribute `key`.
        pub fn set_attribute(&mut self, key: impl Into<String>, value: impl Into<Value>) {
            let target = self.target;
            set_recorded(
                &mut self.$field.$($path).*,
                &mut self.edits,
                target,
                key.into(),
                value.into(),
            );
        }

        /// Removes attribute `key`, returning its value.
        pub fn remove_attribute(&mut self, key: &str) -> Option<AnyValue> {
            let target = self.target;
            remove_recorded(&mut self.$field.$($path).*, &mut self.edits, target, key)
        }
    };
}

/// A resource of the batch.
pub struct ResourceMut<'a> {
    resource: &'a mut Resource,
    target: Target,
    edits: Option<&'a mut Vec<Edit>>,
}

impl ResourceMut<'_> {
    /// The resource.
    pub fn resource(&self) -> &Resource {
        self.resource
    }

    attribute_methods!(resource.attributes);
}

/// An instrumentation scope of the batch.
pub struct ScopeMut<'a> {
    resource: Option<&'a Resource>,
    scope: &'a mut InstrumentationScope,
    target: Target,
    edits: Option<&'a mut Vec<Edit>>,
}

impl ScopeMut<'_> {
    /// The resource the scope belongs to.
    pub fn resource(&self) -> Option<&Resource> {
        self.resource
    }

    /// The scope.
    pub fn scope(&self) -> &InstrumentationScope {
        self.scope
    }

    attribute_methods!(scope.attributes);
}

/// A span of the batch, with read access to its resource and scope.
pub struct SpanMut<'a> {
    resource: Option<&'a Resource>,
    scope: Option<&'a InstrumentationScope>,
    span: &'a mut Span,
    index: u32,
    target: Target,
    edits: Option<&'a mut Vec<Edit>>,
    dropped: &'a mut bool,
}

impl SpanMut<'_> {
    attribute_methods!(span.attributes);

    /// The span (read-only; change it through the methods below so the host sees it).
    pub fn span(&self) -> &Span {
        self.span
    }

    /// The span's position in the batch.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The resource the span belongs to.
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

    /// The instrumentation scope the span belongs to.
    pub fn scope(&self) -> Option<&InstrumentationScope> {
        self.scope
    }

    /// The span name.
    pub fn name(&self) -> &str {
        &self.span.name
    }

    /// The 16-byte trace id.
    pub fn trace_id(&self) -> &[u8] {
        &self.span.trace_id
    }

    /// The 8-byte span id.
    pub fn span_id(&self) -> &[u8] {
        &self.span.span_id
    }

    /// Duration in nanoseconds (0 when the end precedes the start).
    pub fn duration_nanos(&self) -> u64 {
        self.span
            .end_time_unix_nano
            .saturating_sub(self.span.start_time_unix_nano)
    }

    /// The span's status, if set.
    pub fn status(&self) -> Option<&Status> {
        self.span.status.as_ref()
    }

    /// Renames the span.
    pub fn set_name(&mut self, name: impl Into<String>) {
        let name = name.into();
        self.span.name.clone_from(&name);
        let span = self.index;
        record(&mut self.edits, || Edit::SetSpanName { span, name });
    }

    /// Sets the span's status.
    pub fn set_status(&mut self, code: StatusCode, message: impl Into<String>) {
        let message = message.into();
        let otlp = match code {
            StatusCode::Unset => 0,
            StatusCode::Ok => 1,
            StatusCode::Error => 2,
        };
        self.span.status = Some(Status {
            code: otlp,
            message: message.clone(),
        });
        let span = self.index;
        record(&mut self.edits, || Edit::SetStatus {
            span,
            code,
            message,
        });
    }

    /// The span's events.
    pub fn events(&self) -> &[Event] {
        &self.span.events
    }

    /// Sets attribute `key` of event `event` (a position in [`Self::events`]).
    pub fn set_event_attribute(
        &mut self,
        event: usize,
        key: impl Into<String>,
        value: impl Into<Value>,
    ) {
        let target = Target::Event(self.index, event as u32);
        if let Some(e) = self.span.events.get_mut(event) {
            set_recorded(
                &mut e.attributes,
                &mut self.edits,
                target,
                key.into(),
                value.into(),
            );
        }
    }

    /// Removes attribute `key` of event `event`.
    pub fn remove_event_attribute(&mut self, event: usize, key: &str) -> Option<AnyValue> {
        let target = Target::Event(self.index, event as u32);
        let attrs = &mut self.span.events.get_mut(event)?.attributes;
        remove_recorded(attrs, &mut self.edits, target, key)
    }

    /// Renames event `event`.
    pub fn set_event_name(&mut self, event: usize, name: impl Into<String>) {
        let name = name.into();
        let Some(e) = self.span.events.get_mut(event) else {
            return;
        };
        e.name.clone_from(&name);
        let span = self.index;
        record(&mut self.edits, || Edit::SetEventName {
            span,
            event: event as u32,
            name,
        });
    }

    /// The span's links.
    pub fn links(&self) -> &[Link] {
        &self.span.links
    }

    /// Sets attribute `key` of link `link` (a position in [`Self::links`]).
    pub fn set_link_attribute(
        &mut self,
        link: usize,
        key: impl Into<String>,
        value: impl Into<Value>,
    ) {
        let target = Target::Link(self.index, link as u32);
        if let Some(l) = self.span.links.get_mut(link) {
            set_recorded(
                &mut l.attributes,
                &mut self.edits,
                target,
                key.into(),
                value.into(),
            );
        }
    }

    /// Removes attribute `key` of link `link`.
    pub fn remove_link_attribute(&mut self, link: usize, key: &str) -> Option<AnyValue> {
        let target = Target::Link(self.index, link as u32);
        let attrs = &mut self.span.links.get_mut(link)?.attributes;
        remove_recorded(attrs, &mut self.edits, target, key)
    }

    /// Drops the span from the batch.
    pub fn drop_span(&mut self) {
        if !*self.dropped {
            *self.dropped = true;
            let span = self.index;
            record(&mut self.edits, || Edit::DropSpan { span });
        }
    }
}
