//! What a decoded request holds on the heap, by the measure of
//! `wire::Validated::decoded_bytes`: every element of every repeated field at its in-memory
//! size, and the bytes of every string and bytes field.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use std::mem::size_of_val;

/// The two parts of the measure.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    /// Elements of repeated fields, at their in-memory size.
    pub elements: usize,
    /// Bytes of strings and bytes fields.
    pub strings: usize,
}

impl Measure {
    /// Both parts.
    pub fn total(&self) -> usize {
        self.elements + self.strings
    }

    fn list<T>(&mut self, items: &[T]) {
        self.elements += size_of_val(items);
    }

    fn str(&mut self, s: impl AsRef<[u8]>) {
        self.strings += s.as_ref().len();
    }

    fn attributes(&mut self, kvs: &[KeyValue]) {
        self.list(kvs);
        for kv in kvs {
            self.str(&kv.key);
            if let Some(v) = &kv.value {
                self.value(v);
            }
        }
    }

    fn value(&mut self, v: &AnyValue) {
        match &v.value {
            Some(Value::StringValue(s)) => self.str(s),
            Some(Value::BytesValue(b)) => self.str(b),
            Some(Value::ArrayValue(a)) => {
                self.list(&a.values);
                for v in &a.values {
                    self.value(v);
                }
            }
            Some(Value::KvlistValue(l)) => self.attributes(&l.values),
            _ => {}
        }
    }
}

/// Measures `resource_spans` as prost decoded them.
pub fn measure(resource_spans: &[ResourceSpans]) -> Measure {
    let mut m = Measure::default();
    m.list(resource_spans);
    for rs in resource_spans {
        m.str(&rs.schema_url);
        if let Some(r) = &rs.resource {
            m.attributes(&r.attributes);
            m.list(&r.entity_refs);
            for e in &r.entity_refs {
                m.str(&e.schema_url);
                m.str(&e.r#type);
                m.list(&e.id_keys);
                m.list(&e.description_keys);
                e.id_keys
                    .iter()
                    .chain(&e.description_keys)
                    .for_each(|k| m.str(k));
            }
        }
        m.list(&rs.scope_spans);
        for ss in &rs.scope_spans {
            m.str(&ss.schema_url);
            if let Some(s) = &ss.scope {
                m.str(&s.name);
                m.str(&s.version);
                m.attributes(&s.attributes);
            }
            m.list(&ss.spans);
            for s in &ss.spans {
                m.str(&s.trace_id);
                m.str(&s.span_id);
                m.str(&s.trace_state);
                m.str(&s.parent_span_id);
                m.str(&s.name);
                m.attributes(&s.attributes);
                m.list(&s.events);
                for e in &s.events {
                    m.str(&e.name);
                    m.attributes(&e.attributes);
                }
                m.list(&s.links);
                for l in &s.links {
                    m.str(&l.trace_id);
                    m.str(&l.span_id);
                    m.str(&l.trace_state);
                    m.attributes(&l.attributes);
                }
                if let Some(st) = &s.status {
                    m.str(&st.message);
                }
            }
        }
    }
    m
}

/// Spans whose trace id or span id is invalid (not 16 resp. 8 bytes, or all zeros).
pub fn invalid_spans(resource_spans: &[ResourceSpans]) -> usize {
    let ok = |id: &[u8], len: usize| id.len() == len && id.iter().any(|&b| b != 0);
    resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .filter(|s| !(ok(&s.trace_id, 16) && ok(&s.span_id, 8)))
        .count()
}

/// Spans in `resource_spans`.
pub fn spans(resource_spans: &[ResourceSpans]) -> usize {
    resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .map(|ss| ss.spans.len())
        .sum()
}
