//! `otlp::json`'s decoders (traces, logs, metrics) on any bytes; what one decodes, its encoder
//! writes back to the same request. The receivers' bounded forms agree with them: the same
//! request less its invalid spans (logs and metrics leave nothing out), and never more than
//! the budget.
#![no_main]

use std::fmt::Debug;
use std::mem::size_of_val;

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, NumberDataPoint, ResourceMetrics, metric::Data,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use wasmcol_fuzz::measure;
use wasmcol_fuzz::otlp::json::{self, DecodeError, Decoded};

/// Small enough that the seed requests (3 spans) sit near it, so both answers are common.
const BUDGET: usize = 4 * 1024;

fuzz_target!(|data: &[u8]| {
    traces(data);
    logs(data);
    metrics(data);
});

fn traces(data: &[u8]) {
    let decoded = json::decode_traces(data);
    let bounded = json::decode_traces_within(data, BUDGET);
    let Ok(request) = decoded else {
        // Malformed, or over its budget before the point where it is malformed.
        assert!(bounded.is_err(), "{bounded:?}");
        return;
    };

    let rs = &request.resource_spans;
    match bounded {
        Ok(kept) => {
            let elements = measure::measure(&kept.request.resource_spans).elements;
            assert!(elements <= BUDGET, "kept {elements} bytes");
            assert_eq!(kept.invalid, measure::invalid_spans(rs));
            assert_eq!(
                measure::spans(&kept.request.resource_spans) + kept.invalid,
                measure::spans(rs)
            );
            assert_eq!(measure::invalid_spans(&kept.request.resource_spans), 0);
        }
        Err(DecodeError::OverBudget { budget }) => {
            assert_eq!(budget, BUDGET);
            // Whatever it counted before it stopped, the whole request holds at least as much.
            let elements = measure::measure(rs).elements;
            assert!(elements > BUDGET, "refused a request of {elements} bytes");
        }
        Err(e) => panic!("decode_traces accepted, decode_traces_within: {e:?}"),
    }

    round_trip(
        &request,
        |r| &r.resource_spans[..],
        json::encode_traces,
        json::decode_traces,
    );
}

fn logs(data: &[u8]) {
    let decoded = json::decode_logs(data);
    let bounded = json::decode_logs_within(data, BUDGET);
    let Ok(request) = decoded else {
        assert!(bounded.is_err(), "{bounded:?}");
        return;
    };
    let elements = || log_elements(&request.resource_logs);
    bounded_agrees(&request, bounded, elements);
    round_trip(
        &request,
        |r| &r.resource_logs[..],
        json::encode_logs,
        json::decode_logs,
    );
}

fn metrics(data: &[u8]) {
    let decoded = json::decode_metrics(data);
    let bounded = json::decode_metrics_within(data, BUDGET);
    let Ok(request) = decoded else {
        assert!(bounded.is_err(), "{bounded:?}");
        return;
    };
    let elements = || metric_elements(&request.resource_metrics);
    bounded_agrees(&request, bounded, elements);
    round_trip(
        &request,
        |r| &r.resource_metrics[..],
        json::encode_metrics,
        json::decode_metrics,
    );
}

/// For logs and metrics, which leave nothing out: the bounded decoding of a request the
/// unbounded one accepted is the whole request if it is within the budget, and a refusal
/// otherwise.
fn bounded_agrees<R: PartialEq + Debug>(
    request: &R,
    bounded: Result<Decoded<R>, DecodeError>,
    elements: impl Fn() -> usize,
) {
    match bounded {
        Ok(kept) => {
            assert_eq!(kept.invalid, 0);
            same(&kept.request, request);
            let elements = elements();
            assert!(elements <= BUDGET, "kept {elements} bytes");
        }
        Err(DecodeError::OverBudget { budget }) => {
            assert_eq!(budget, BUDGET);
            let elements = elements();
            assert!(elements > BUDGET, "refused a request of {elements} bytes");
        }
        Err(e) => panic!("the unbounded decoder accepted, the bounded one: {e:?}"),
    }
}

/// Encodes `request`, decodes it back to the same request, and encodes that to the same bytes.
fn round_trip<R: PartialEq + Debug, T>(
    request: &R,
    items: impl Fn(&R) -> &[T],
    encode: fn(&[T], &mut Vec<u8>),
    decode: fn(&[u8]) -> Result<R, String>,
) {
    let mut encoded = Vec::new();
    encode(items(request), &mut encoded);
    let again =
        decode(&encoded).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&encoded)));
    same(&again, request);
    let mut re_encoded = Vec::new();
    encode(items(&again), &mut re_encoded);
    assert_eq!(encoded, re_encoded);
}

/// Equal, or (NaN is not equal to itself) equal in their Debug forms.
fn same<R: PartialEq + Debug>(a: &R, b: &R) {
    if a != b {
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}

/// The elements of repeated fields in `resource_logs`, by `measure::measure`'s measure.
fn log_elements(resource_logs: &[ResourceLogs]) -> usize {
    let mut n = size_of_val(resource_logs);
    for rl in resource_logs {
        n += resource(rl.resource.as_ref()) + size_of_val(&rl.scope_logs[..]);
        for sl in &rl.scope_logs {
            n += scope(sl.scope.as_ref()) + size_of_val(&sl.log_records[..]);
            for record in &sl.log_records {
                n += attributes(&record.attributes) + record.body.as_ref().map_or(0, value);
            }
        }
    }
    n
}

/// The elements of repeated fields in `resource_metrics`, by `measure::measure`'s measure.
fn metric_elements(resource_metrics: &[ResourceMetrics]) -> usize {
    let exemplars = |exemplars: &[Exemplar]| -> usize {
        size_of_val(exemplars)
            + exemplars
                .iter()
                .map(|e| attributes(&e.filtered_attributes))
                .sum::<usize>()
    };
    let mut n = size_of_val(resource_metrics);
    for rm in resource_metrics {
        n += resource(rm.resource.as_ref()) + size_of_val(&rm.scope_metrics[..]);
        for sm in &rm.scope_metrics {
            n += scope(sm.scope.as_ref()) + size_of_val(&sm.metrics[..]);
            for metric in &sm.metrics {
                n += attributes(&metric.metadata);
                n += match &metric.data {
                    None => 0,
                    Some(Data::Gauge(g)) => number_points(&g.data_points, exemplars),
                    Some(Data::Sum(s)) => number_points(&s.data_points, exemplars),
                    Some(Data::Histogram(h)) => {
                        size_of_val(&h.data_points[..])
                            + h.data_points
                                .iter()
                                .map(|p| {
                                    attributes(&p.attributes)
                                        + size_of_val(&p.bucket_counts[..])
                                        + size_of_val(&p.explicit_bounds[..])
                                        + exemplars(&p.exemplars)
                                })
                                .sum::<usize>()
                    }
                    Some(Data::ExponentialHistogram(h)) => {
                        size_of_val(&h.data_points[..])
                            + h.data_points
                                .iter()
                                .map(|p| {
                                    attributes(&p.attributes)
                                        + [&p.positive, &p.negative]
                                            .into_iter()
                                            .flatten()
                                            .map(|b| size_of_val(&b.bucket_counts[..]))
                                            .sum::<usize>()
                                        + exemplars(&p.exemplars)
                                })
                                .sum::<usize>()
                    }
                    Some(Data::Summary(s)) => {
                        size_of_val(&s.data_points[..])
                            + s.data_points
                                .iter()
                                .map(|p| {
                                    attributes(&p.attributes) + size_of_val(&p.quantile_values[..])
                                })
                                .sum::<usize>()
                    }
                };
            }
        }
    }
    n
}

fn number_points(points: &[NumberDataPoint], exemplars: impl Fn(&[Exemplar]) -> usize) -> usize {
    size_of_val(points)
        + points
            .iter()
            .map(|p| attributes(&p.attributes) + exemplars(&p.exemplars))
            .sum::<usize>()
}

fn resource(resource: Option<&Resource>) -> usize {
    resource.map_or(0, |r| {
        attributes(&r.attributes)
            + size_of_val(&r.entity_refs[..])
            + r.entity_refs
                .iter()
                .map(|e| size_of_val(&e.id_keys[..]) + size_of_val(&e.description_keys[..]))
                .sum::<usize>()
    })
}

fn scope(scope: Option<&InstrumentationScope>) -> usize {
    scope.map_or(0, |s| attributes(&s.attributes))
}

fn attributes(kvs: &[KeyValue]) -> usize {
    size_of_val(kvs)
        + kvs
            .iter()
            .filter_map(|kv| kv.value.as_ref())
            .map(value)
            .sum::<usize>()
}

fn value(v: &AnyValue) -> usize {
    match &v.value {
        Some(any_value::Value::ArrayValue(a)) => {
            size_of_val(&a.values[..]) + a.values.iter().map(value).sum::<usize>()
        }
        Some(any_value::Value::KvlistValue(l)) => attributes(&l.values),
        _ => 0,
    }
}
