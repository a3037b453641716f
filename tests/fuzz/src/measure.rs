//! What a decoded request holds on the heap, by the measure of
//! `wire::Validated::decoded_bytes` (and of its log and metric counterparts): every element of every repeated field at its in-memory
//! size, and the bytes of every string and bytes field.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, NumberDataPoint, ResourceMetrics, metric::Data,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
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

    fn resource(&mut self, resource: Option<&Resource>) {
        if let Some(r) = resource {
            self.attributes(&r.attributes);
            self.list(&r.entity_refs);
            for e in &r.entity_refs {
                self.str(&e.schema_url);
                self.str(&e.r#type);
                self.list(&e.id_keys);
                self.list(&e.description_keys);
                e.id_keys
                    .iter()
                    .chain(&e.description_keys)
                    .for_each(|k| self.str(k));
            }
        }
    }

    fn scope(&mut self, scope: Option<&InstrumentationScope>) {
        if let Some(s) = scope {
            self.str(&s.name);
            self.str(&s.version);
            self.attributes(&s.attributes);
        }
    }

    fn exemplars(&mut self, exemplars: &[Exemplar]) {
        self.list(exemplars);
        for e in exemplars {
            self.attributes(&e.filtered_attributes);
            self.str(&e.span_id);
            self.str(&e.trace_id);
        }
    }

    fn numbers(&mut self, points: &[NumberDataPoint]) {
        self.list(points);
        for p in points {
            self.attributes(&p.attributes);
            self.exemplars(&p.exemplars);
        }
    }
}

/// Measures `resource_spans` as prost decoded them.
pub fn measure(resource_spans: &[ResourceSpans]) -> Measure {
    let mut m = Measure::default();
    m.list(resource_spans);
    for rs in resource_spans {
        m.str(&rs.schema_url);
        m.resource(rs.resource.as_ref());
        m.list(&rs.scope_spans);
        for ss in &rs.scope_spans {
            m.str(&ss.schema_url);
            m.scope(ss.scope.as_ref());
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

/// Measures `resource_logs` as prost decoded them, by the measure of
/// `wire::ValidatedLogs::decoded_bytes`.
pub fn measure_logs(resource_logs: &[ResourceLogs]) -> Measure {
    let mut m = Measure::default();
    m.list(resource_logs);
    for rl in resource_logs {
        m.str(&rl.schema_url);
        m.resource(rl.resource.as_ref());
        m.list(&rl.scope_logs);
        for sl in &rl.scope_logs {
            m.str(&sl.schema_url);
            m.scope(sl.scope.as_ref());
            m.list(&sl.log_records);
            for r in &sl.log_records {
                m.str(&r.severity_text);
                if let Some(body) = &r.body {
                    m.value(body);
                }
                m.attributes(&r.attributes);
                m.str(&r.trace_id);
                m.str(&r.span_id);
                m.str(&r.event_name);
            }
        }
    }
    m
}

/// Log records in `resource_logs`.
pub fn log_records(resource_logs: &[ResourceLogs]) -> usize {
    resource_logs
        .iter()
        .flat_map(|rl| &rl.scope_logs)
        .map(|sl| sl.log_records.len())
        .sum()
}

/// Measures `resource_metrics` as prost decoded them, by the measure of
/// `wire::ValidatedMetrics::decoded_bytes`: elements of repeated numeric fields count too.
pub fn measure_metrics(resource_metrics: &[ResourceMetrics]) -> Measure {
    let mut m = Measure::default();
    m.list(resource_metrics);
    for rm in resource_metrics {
        m.str(&rm.schema_url);
        m.resource(rm.resource.as_ref());
        m.list(&rm.scope_metrics);
        for sm in &rm.scope_metrics {
            m.str(&sm.schema_url);
            m.scope(sm.scope.as_ref());
            m.list(&sm.metrics);
            for metric in &sm.metrics {
                m.str(&metric.name);
                m.str(&metric.description);
                m.str(&metric.unit);
                m.attributes(&metric.metadata);
                match &metric.data {
                    None => {}
                    Some(Data::Gauge(g)) => m.numbers(&g.data_points),
                    Some(Data::Sum(s)) => m.numbers(&s.data_points),
                    Some(Data::Histogram(h)) => {
                        m.list(&h.data_points);
                        for p in &h.data_points {
                            m.attributes(&p.attributes);
                            m.exemplars(&p.exemplars);
                            m.list(&p.bucket_counts);
                            m.list(&p.explicit_bounds);
                        }
                    }
                    Some(Data::ExponentialHistogram(e)) => {
                        m.list(&e.data_points);
                        for p in &e.data_points {
                            m.attributes(&p.attributes);
                            m.exemplars(&p.exemplars);
                            for b in p.positive.iter().chain(&p.negative) {
                                m.list(&b.bucket_counts);
                            }
                        }
                    }
                    Some(Data::Summary(s)) => {
                        m.list(&s.data_points);
                        for p in &s.data_points {
                            m.attributes(&p.attributes);
                            m.list(&p.quantile_values);
                        }
                    }
                }
            }
        }
    }
    m
}

/// Metrics in `resource_metrics`.
pub fn metrics(resource_metrics: &[ResourceMetrics]) -> usize {
    resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .map(|sm| sm.metrics.len())
        .sum()
}

/// Data points of every kind in `resource_metrics`.
pub fn data_points(resource_metrics: &[ResourceMetrics]) -> usize {
    resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|metric| match &metric.data {
            None => 0,
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(e)) => e.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
        })
        .sum()
}
