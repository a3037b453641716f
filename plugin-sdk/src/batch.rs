//! The batch a plugin works on: typed, mutable views of resources, scopes and spans. Every
//! change is made to the plugin's copy at once (so later reads see it) and recorded as an
//! [`Edit`] for the host.
//!
//! View mode (`for_each_*_view`) instead reads the protobuf in place, without decoding it,
//! and only records edits: changes are not visible to later reads within the call. A plugin
//! uses one mode or the other in a call; mixing them panics.

use std::cell::OnceCell;

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Span, Status, TracesData};
use prost::Message;

use crate::attributes;
use crate::edit::{Edit, Output, StatusCode, Target, encode_batch};
use crate::value::{Value, as_str};
use crate::view::{self, AttributesView, ResourceView, ScopeView, SpanView};

/// Which API a call has used so far: the two do not see each other's changes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    #[default]
    Unused,
    Mutable,
    View,
}

impl Mode {
    /// The mode after a call through `mode`'s API; panics when the batch is already in the
    /// other mode, or when view mode would follow a replacement.
    pub(crate) fn enter(self, mode: Mode, replaced: bool) -> Mode {
        assert!(
            self == Mode::Unused || self == mode,
            "a batch is read either through views or through the mutable API within one call, \
             not both"
        );
        assert!(
            mode != Mode::View || !replaced,
            "view mode reads the batch as received; it cannot follow replace()"
        );
        mode
    }
}

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
    mode: Mode,
    /// `data` encoded, for view mode over a batch that was built rather than received.
    view_buf: OnceCell<Vec<u8>>,
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

    fn enter(&mut self, mode: Mode) {
        self.mode = self.mode.enter(mode, self.replaced);
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
        self.enter(Mode::Mutable);
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
        self.enter(Mode::Mutable);
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
        self.enter(Mode::Mutable);
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

    /// Calls `f` for each resource, in view mode: the resource is read in place and changes
    /// are only recorded, so they are not visible to later reads within this call.
    pub fn for_each_resource_view(&mut self, mut f: impl FnMut(&mut ResourceViewMut<'_>)) {
        self.enter(Mode::View);
        let bytes = view_bytes(&self.raw, &self.data, &self.view_buf, encode_batch);
        let edits = &mut self.edits;
        view::walk(
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

    /// Calls `f` for each instrumentation scope, in view mode (see
    /// [`Self::for_each_resource_view`]).
    pub fn for_each_scope_view(&mut self, mut f: impl FnMut(&mut ScopeViewMut<'_>)) {
        self.enter(Mode::View);
        let bytes = view_bytes(&self.raw, &self.data, &self.view_buf, encode_batch);
        let edits = &mut self.edits;
        view::walk(
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

    /// Calls `f` for each span that has not been dropped, in batch order, in view mode (see
    /// [`Self::for_each_resource_view`]).
    pub fn for_each_span_view(&mut self, mut f: impl FnMut(&mut SpanViewMut<'_>)) {
        self.enter(Mode::View);
        let bytes = view_bytes(&self.raw, &self.data, &self.view_buf, encode_batch);
        let edits = &mut self.edits;
        let dropped = &mut self.dropped;
        view::walk(
            bytes,
            |_, _| {},
            None,
            Some(&mut |span: SpanView<'_>| {
                let i = span.index() as usize;
                if dropped.len() <= i {
                    dropped.resize(i + 1, false);
                }
                if dropped[i] {
                    return;
                }
                let start = edits.len();
                f(&mut SpanViewMut {
                    span,
                    edits: &mut *edits,
                    start,
                    dropped: &mut dropped[i],
                });
            }),
        );
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
        self.mode = Mode::Unused;
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
        if self.mode == Mode::View {
            // The host's own applier on the bytes the views read, so the result equals the
            // collector's.
            let bytes = view_bytes(&self.raw, &self.data, &self.view_buf, encode_batch);
            let edited = crate::wire::edit::apply(bytes, self.edits)
                .expect("view-mode edits index the batch they were recorded on");
            return TracesData::decode(edited.bytes.as_slice())
                .expect("the edit applier writes what it was given: valid protobuf")
                .resource_spans;
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

pub(crate) fn record(edits: &mut Option<&mut Vec<Edit>>, edit: impl FnOnce() -> Edit) {
    if let Some(e) = edits {
        e.push(edit());
    }
}

/// Sets an attribute in this copy and records the edit for the host.
pub(crate) fn set_recorded(
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
pub(crate) fn remove_recorded(
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

pub(crate) use attribute_methods;

/// A resource of the batch.
pub struct ResourceMut<'a> {
    pub(crate) resource: &'a mut Resource,
    pub(crate) target: Target,
    pub(crate) edits: Option<&'a mut Vec<Edit>>,
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
    pub(crate) resource: Option<&'a Resource>,
    pub(crate) scope: &'a mut InstrumentationScope,
    pub(crate) target: Target,
    pub(crate) edits: Option<&'a mut Vec<Edit>>,
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

/// Whether attribute `key` of `target` is there now: in the batch as received, then as the
/// edits this handle recorded left it (the only ones that can touch `target`).
fn present_now(attrs: AttributesView<'_>, edits: &[Edit], target: Target, key: &str) -> bool {
    edits
        .iter()
        .fold(attrs.contains(key), |present, e| match e {
            Edit::SetAttribute {
                target: t, key: k, ..
            } if *t == target && k == key => true,
            Edit::RemoveAttribute { target: t, key: k } if *t == target && k == key => false,
            _ => present,
        })
}

/// Records a removal the way the mutable API does: only when the attribute is there.
pub(crate) fn remove_viewed(
    attrs: AttributesView<'_>,
    edits: &mut Vec<Edit>,
    start: usize,
    target: Target,
    key: &str,
) -> bool {
    let present = present_now(attrs, &edits[start..], target, key);
    if present {
        edits.push(Edit::RemoveAttribute {
            target,
            key: key.to_string(),
        });
    }
    present
}

/// Attribute editing for the view-mode handles.
macro_rules! view_attribute_methods {
    ($($view:ident).+) => {
        /// The attributes as received.
        pub fn attributes(&self) -> AttributesView<'a> {
            self.$($view).+.attributes()
        }

        /// Records setting attribute `key` (not visible to reads within this call).
        pub fn set_attribute(&mut self, key: impl Into<String>, value: impl Into<Value>) {
            self.edits.push(Edit::SetAttribute {
                target: self.target,
                key: key.into(),
                value: value.into(),
            });
        }

        /// Records removing attribute `key` when it is there; returns whether it was.
        pub fn remove_attribute(&mut self, key: &str) -> bool {
            let attrs = self.$($view).+.attributes();
            remove_viewed(attrs, self.edits, self.start, self.target, key)
        }
    };
}
pub(crate) use view_attribute_methods;

/// A resource in view mode: read in place, changes recorded for the host only.
pub struct ResourceViewMut<'a> {
    pub(crate) resource: ResourceView<'a>,
    pub(crate) target: Target,
    pub(crate) edits: &'a mut Vec<Edit>,
    pub(crate) start: usize,
}

impl<'a> ResourceViewMut<'a> {
    /// The resource.
    pub fn resource(&self) -> ResourceView<'a> {
        self.resource
    }

    view_attribute_methods!(resource);
}

/// An instrumentation scope in view mode.
pub struct ScopeViewMut<'a> {
    pub(crate) resource: ResourceView<'a>,
    pub(crate) scope: ScopeView<'a>,
    pub(crate) target: Target,
    pub(crate) edits: &'a mut Vec<Edit>,
    pub(crate) start: usize,
}

impl<'a> ScopeViewMut<'a> {
    /// The resource the scope belongs to.
    pub fn resource(&self) -> ResourceView<'a> {
        self.resource
    }

    /// The scope.
    pub fn scope(&self) -> ScopeView<'a> {
        self.scope
    }

    view_attribute_methods!(scope);
}

/// A span in view mode: the [`SpanView`] (through `Deref`) plus methods that record edits
/// with the same targets as [`SpanMut`]'s. Reads see the span as received.
pub struct SpanViewMut<'a> {
    span: SpanView<'a>,
    edits: &'a mut Vec<Edit>,
    start: usize,
    dropped: &'a mut bool,
}

impl<'a> std::ops::Deref for SpanViewMut<'a> {
    type Target = SpanView<'a>;

    fn deref(&self) -> &SpanView<'a> {
        &self.span
    }
}

impl<'a> SpanViewMut<'a> {
    /// The span as received.
    pub fn view(&self) -> SpanView<'a> {
        self.span
    }

    /// Records setting span attribute `key`.
    pub fn set_attribute(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.edits.push(Edit::SetAttribute {
            target: Target::Span(self.span.index()),
            key: key.into(),
            value: value.into(),
        });
    }

    /// Records removing span attribute `key` when it is there; returns whether it was.
    pub fn remove_attribute(&mut self, key: &str) -> bool {
        let target = Target::Span(self.span.index());
        remove_viewed(self.span.attributes(), self.edits, self.start, target, key)
    }

    /// Records renaming the span.
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.edits.push(Edit::SetSpanName {
            span: self.span.index(),
            name: name.into(),
        });
    }

    /// Records setting the span's status.
    pub fn set_status(&mut self, code: StatusCode, message: impl Into<String>) {
        self.edits.push(Edit::SetStatus {
            span: self.span.index(),
            code,
            message: message.into(),
        });
    }

    /// Records setting attribute `key` of event `event` (ignored when out of range, as in
    /// [`SpanMut::set_event_attribute`]).
    pub fn set_event_attribute(
        &mut self,
        event: usize,
        key: impl Into<String>,
        value: impl Into<Value>,
    ) {
        if event < self.span.event_count() {
            self.edits.push(Edit::SetAttribute {
                target: Target::Event(self.span.index(), event as u32),
                key: key.into(),
                value: value.into(),
            });
        }
    }

    /// Records removing attribute `key` of event `event`; returns whether it was there.
    pub fn remove_event_attribute(&mut self, event: usize, key: &str) -> bool {
        let Some(e) = self.span.events().nth(event) else {
            return false;
        };
        let target = Target::Event(self.span.index(), event as u32);
        remove_viewed(e.attributes(), self.edits, self.start, target, key)
    }

    /// Records renaming event `event` (ignored when out of range).
    pub fn set_event_name(&mut self, event: usize, name: impl Into<String>) {
        if event < self.span.event_count() {
            self.edits.push(Edit::SetEventName {
                span: self.span.index(),
                event: event as u32,
                name: name.into(),
            });
        }
    }

    /// Records setting attribute `key` of link `link` (ignored when out of range).
    pub fn set_link_attribute(
        &mut self,
        link: usize,
        key: impl Into<String>,
        value: impl Into<Value>,
    ) {
        if link < self.span.link_count() {
            self.edits.push(Edit::SetAttribute {
                target: Target::Link(self.span.index(), link as u32),
                key: key.into(),
                value: value.into(),
            });
        }
    }

    /// Records removing attribute `key` of link `link`; returns whether it was there.
    pub fn remove_link_attribute(&mut self, link: usize, key: &str) -> bool {
        let Some(l) = self.span.links().nth(link) else {
            return false;
        };
        let target = Target::Link(self.span.index(), link as u32);
        remove_viewed(l.attributes(), self.edits, self.start, target, key)
    }

    /// Records dropping the span; later `for_each_span_view` calls skip it.
    pub fn drop_span(&mut self) {
        if !*self.dropped {
            *self.dropped = true;
            self.edits.push(Edit::DropSpan {
                span: self.span.index(),
            });
        }
    }
}

/// The protobuf a batch's view mode reads (spans or logs): as received, or `data` (a batch
/// made by `replace`) encoded once with `encode`.
pub(crate) fn view_bytes<'s, R>(
    raw: &'s [u8],
    data: &'s OnceCell<Vec<R>>,
    buf: &'s OnceCell<Vec<u8>>,
    encode: fn(&[R]) -> Vec<u8>,
) -> &'s [u8] {
    match data.get() {
        Some(d) if raw.is_empty() => buf.get_or_init(|| encode(d)),
        _ => raw,
    }
}
