//! The trace messages: which JSON field is which prost field, both ways.

use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};
use serde::de::MapAccess;

use super::ExportTraceServiceRequest;
use super::common::{write_key_value, write_resource, write_scope};
use super::decode::{EnumSeed, Field, HexId, JsonMessage, Path, fields, nested, repeated, scalar};
use super::encode::Obj;

fields! { RequestField { ResourceSpans = "resourceSpans" | "resource_spans" } }

impl JsonMessage for ExportTraceServiceRequest {
    const NAME: &'static str = "ExportTraceServiceRequest";
    type Field = RequestField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: RequestField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            RequestField::ResourceSpans => self.resource_spans = repeated(map, path)?,
        }
        Ok(())
    }
}

fields! {
    ResourceSpansField {
        Resource = "resource",
        ScopeSpans = "scopeSpans" | "scope_spans",
        SchemaUrl = "schemaUrl" | "schema_url",
    }
}

impl JsonMessage for ResourceSpans {
    const NAME: &'static str = "ResourceSpans";
    type Field = ResourceSpansField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ResourceSpansField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            ResourceSpansField::Resource => self.resource = nested(map, path)?,
            ResourceSpansField::ScopeSpans => self.scope_spans = repeated(map, path)?,
            ResourceSpansField::SchemaUrl => self.schema_url = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    ScopeSpansField {
        Scope = "scope",
        Spans = "spans",
        SchemaUrl = "schemaUrl" | "schema_url",
    }
}

impl JsonMessage for ScopeSpans {
    const NAME: &'static str = "ScopeSpans";
    type Field = ScopeSpansField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ScopeSpansField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            ScopeSpansField::Scope => self.scope = nested(map, path)?,
            ScopeSpansField::Spans => self.spans = repeated(map, path)?,
            ScopeSpansField::SchemaUrl => self.schema_url = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    SpanField {
        TraceId = "traceId" | "trace_id",
        SpanId = "spanId" | "span_id",
        TraceState = "traceState" | "trace_state",
        ParentSpanId = "parentSpanId" | "parent_span_id",
        Flags = "flags",
        Name = "name",
        Kind = "kind",
        StartTimeUnixNano = "startTimeUnixNano" | "start_time_unix_nano",
        EndTimeUnixNano = "endTimeUnixNano" | "end_time_unix_nano",
        Attributes = "attributes",
        DroppedAttributesCount = "droppedAttributesCount" | "dropped_attributes_count",
        Events = "events",
        DroppedEventsCount = "droppedEventsCount" | "dropped_events_count",
        Links = "links",
        DroppedLinksCount = "droppedLinksCount" | "dropped_links_count",
        Status = "status",
    }
}

impl JsonMessage for Span {
    const NAME: &'static str = "Span";
    type Field = SpanField;

    fn valid(&self) -> bool {
        crate::otlp::wire::valid_id(&self.trace_id, 16)
            && crate::otlp::wire::valid_id(&self.span_id, 8)
    }

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: SpanField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            SpanField::TraceId => self.trace_id = map.next_value_seed(HexId::TRACE_ID)?,
            SpanField::SpanId => self.span_id = map.next_value_seed(HexId::SPAN_ID)?,
            SpanField::TraceState => self.trace_state = scalar(map)?,
            SpanField::ParentSpanId => {
                self.parent_span_id = map.next_value_seed(HexId::PARENT_SPAN_ID)?;
            }
            SpanField::Flags => self.flags = scalar(map)?,
            SpanField::Name => self.name = scalar(map)?,
            SpanField::Kind => self.kind = map.next_value_seed(EnumSeed::SPAN_KIND)?,
            SpanField::StartTimeUnixNano => self.start_time_unix_nano = scalar(map)?,
            SpanField::EndTimeUnixNano => self.end_time_unix_nano = scalar(map)?,
            SpanField::Attributes => self.attributes = repeated(map, path)?,
            SpanField::DroppedAttributesCount => self.dropped_attributes_count = scalar(map)?,
            SpanField::Events => self.events = repeated(map, path)?,
            SpanField::DroppedEventsCount => self.dropped_events_count = scalar(map)?,
            SpanField::Links => self.links = repeated(map, path)?,
            SpanField::DroppedLinksCount => self.dropped_links_count = scalar(map)?,
            SpanField::Status => self.status = nested(map, path)?,
        }
        Ok(())
    }
}

fields! {
    EventField {
        TimeUnixNano = "timeUnixNano" | "time_unix_nano",
        Name = "name",
        Attributes = "attributes",
        DroppedAttributesCount = "droppedAttributesCount" | "dropped_attributes_count",
    }
}

impl JsonMessage for span::Event {
    const NAME: &'static str = "Span.Event";
    type Field = EventField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: EventField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            EventField::TimeUnixNano => self.time_unix_nano = scalar(map)?,
            EventField::Name => self.name = scalar(map)?,
            EventField::Attributes => self.attributes = repeated(map, path)?,
            EventField::DroppedAttributesCount => self.dropped_attributes_count = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    LinkField {
        TraceId = "traceId" | "trace_id",
        SpanId = "spanId" | "span_id",
        TraceState = "traceState" | "trace_state",
        Attributes = "attributes",
        DroppedAttributesCount = "droppedAttributesCount" | "dropped_attributes_count",
        Flags = "flags",
    }
}

impl JsonMessage for span::Link {
    const NAME: &'static str = "Span.Link";
    type Field = LinkField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: LinkField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            LinkField::TraceId => self.trace_id = map.next_value_seed(HexId::TRACE_ID)?,
            LinkField::SpanId => self.span_id = map.next_value_seed(HexId::SPAN_ID)?,
            LinkField::TraceState => self.trace_state = scalar(map)?,
            LinkField::Attributes => self.attributes = repeated(map, path)?,
            LinkField::DroppedAttributesCount => self.dropped_attributes_count = scalar(map)?,
            LinkField::Flags => self.flags = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    StatusField {
        Message = "message",
        Code = "code",
    }
}

impl JsonMessage for Status {
    const NAME: &'static str = "Status";
    type Field = StatusField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: StatusField,
        map: &mut A,
        _path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            StatusField::Message => self.message = scalar(map)?,
            StatusField::Code => self.code = map.next_value_seed(EnumSeed::STATUS_CODE)?,
        }
        Ok(())
    }
}

impl EnumSeed {
    const SPAN_KIND: EnumSeed = EnumSeed {
        field: "kind",
        enum_name: "SpanKind",
        example: "SPAN_KIND_SERVER",
        from_name: span_kind_from_name,
    };
    const STATUS_CODE: EnumSeed = EnumSeed {
        field: "code",
        enum_name: "StatusCode",
        example: "STATUS_CODE_ERROR",
        from_name: status_code_from_name,
    };
}

fn span_kind_from_name(name: &str) -> Option<i32> {
    span::SpanKind::from_str_name(name).map(|kind| kind as i32)
}

fn status_code_from_name(name: &str) -> Option<i32> {
    status::StatusCode::from_str_name(name).map(|code| code as i32)
}

pub(super) fn write_resource_spans(out: &mut Vec<u8>, rs: &ResourceSpans) {
    let mut o = Obj::start(out);
    o.message("resource", rs.resource.as_ref(), write_resource);
    o.list("scopeSpans", &rs.scope_spans, write_scope_spans);
    o.string("schemaUrl", &rs.schema_url);
    o.end();
}

fn write_scope_spans(out: &mut Vec<u8>, ss: &ScopeSpans) {
    let mut o = Obj::start(out);
    o.message("scope", ss.scope.as_ref(), write_scope);
    o.list("spans", &ss.spans, write_span);
    o.string("schemaUrl", &ss.schema_url);
    o.end();
}

fn write_span(out: &mut Vec<u8>, span: &Span) {
    let mut o = Obj::start(out);
    o.hex("traceId", &span.trace_id);
    o.hex("spanId", &span.span_id);
    o.string("traceState", &span.trace_state);
    o.hex("parentSpanId", &span.parent_span_id);
    o.u32("flags", span.flags);
    o.string("name", &span.name);
    o.i32("kind", span.kind);
    o.u64("startTimeUnixNano", span.start_time_unix_nano);
    o.u64("endTimeUnixNano", span.end_time_unix_nano);
    o.list("attributes", &span.attributes, write_key_value);
    o.u32("droppedAttributesCount", span.dropped_attributes_count);
    o.list("events", &span.events, write_event);
    o.u32("droppedEventsCount", span.dropped_events_count);
    o.list("links", &span.links, write_link);
    o.u32("droppedLinksCount", span.dropped_links_count);
    o.message("status", span.status.as_ref(), write_status);
    o.end();
}

fn write_event(out: &mut Vec<u8>, event: &span::Event) {
    let mut o = Obj::start(out);
    o.u64("timeUnixNano", event.time_unix_nano);
    o.string("name", &event.name);
    o.list("attributes", &event.attributes, write_key_value);
    o.u32("droppedAttributesCount", event.dropped_attributes_count);
    o.end();
}

fn write_link(out: &mut Vec<u8>, link: &span::Link) {
    let mut o = Obj::start(out);
    o.hex("traceId", &link.trace_id);
    o.hex("spanId", &link.span_id);
    o.string("traceState", &link.trace_state);
    o.list("attributes", &link.attributes, write_key_value);
    o.u32("droppedAttributesCount", link.dropped_attributes_count);
    o.u32("flags", link.flags);
    o.end();
}

fn write_status(out: &mut Vec<u8>, status: &Status) {
    let mut o = Obj::start(out);
    o.string("message", &status.message);
    o.i32("code", status.code);
    o.end();
}
