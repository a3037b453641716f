use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Status};

use super::*;
use crate::component::Validate;
use crate::config::Duration as ConfigDuration;
use crate::connectors::span_fixtures::{SECOND, encoded, resource, span, text, varied_spans};

fn metric<'a>(rm: &'a ResourceMetrics, name: &str) -> &'a Metric {
    rm.scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no metric {name}"))
}

fn calls(rm: &ResourceMetrics) -> &[NumberDataPoint] {
    match &metric(rm, "traces.span.metrics.calls").data {
        Some(metric::Data::Sum(s)) => &s.data_points,
        other => panic!("calls is not a sum: {other:?}"),
    }
}

fn durations(rm: &ResourceMetrics) -> &[HistogramDataPoint] {
    match &metric(rm, "traces.span.metrics.duration").data {
        Some(metric::Data::Histogram(h)) => &h.data_points,
        other => panic!("duration is not a histogram: {other:?}"),
    }
}

fn attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).map(|kv| {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            other => format!("{other:?}"),
        }
    })
}

fn value(p: &NumberDataPoint) -> i64 {
    match p.value {
        Some(number_data_point::Value::AsInt(v)) => v,
        other => panic!("{other:?}"),
    }
}

/// The calls per `span.name`.
fn calls_by_name(rm: &ResourceMetrics) -> Vec<(String, i64)> {
    let mut out: Vec<_> = calls(rm)
        .iter()
        .map(|p| {
            (
                attr(&p.attributes, "span.name").unwrap_or_default(),
                value(p),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn counts_and_durations_per_series_with_the_collectors_names_and_buckets() {
    let mut a = Aggregator::new(SpanMetricsConfig::default(), 0);
    let mut failed = span("GET /cart", 2, 30);
    failed.status = Some(Status {
        code: 2,
        ..Default::default()
    });
    let counted = a.add(
        &[resource(
            "checkout",
            vec![span("GET /cart", 2, 3), span("GET /cart", 2, 70), failed],
        )],
        5 * SECOND,
    );
    assert_eq!(counted, 3);
    let out = a.flush(10 * SECOND);
    assert_eq!(out.len(), 1);
    let rm = &out[0];
    assert_eq!(
        rm.scope_metrics[0].scope.as_ref().unwrap().name,
        "spanmetricsconnector"
    );
    assert_eq!(
        attr(&rm.resource.as_ref().unwrap().attributes, "host.name").as_deref(),
        Some("h1")
    );
    let points = calls(rm);
    assert_eq!(points.len(), 2);
    let ok = points
        .iter()
        .find(|p| attr(&p.attributes, "status.code").as_deref() == Some("STATUS_CODE_UNSET"))
        .unwrap();
    assert_eq!(value(ok), 2);
    assert_eq!(
        attr(&ok.attributes, "service.name").as_deref(),
        Some("checkout")
    );
    assert_eq!(
        attr(&ok.attributes, "span.kind").as_deref(),
        Some("SPAN_KIND_SERVER")
    );
    assert_eq!(ok.attributes.len(), 4);
    assert_eq!(
        (ok.start_time_unix_nano, ok.time_unix_nano),
        (5 * SECOND, 10 * SECOND)
    );
    let Some(metric::Data::Sum(sum)) = &metric(rm, "traces.span.metrics.calls").data else {
        unreachable!()
    };
    assert!(sum.is_monotonic);
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    assert_eq!(metric(rm, "traces.span.metrics.duration").unit, "ms");
    let h = durations(rm)
        .iter()
        .find(|p| attr(&p.attributes, "status.code").as_deref() == Some("STATUS_CODE_UNSET"))
        .unwrap();
    assert_eq!(
        h.explicit_bounds,
        [
            2.0, 4.0, 6.0, 8.0, 10.0, 50.0, 100.0, 200.0, 400.0, 800.0, 1000.0, 1400.0, 2000.0,
            5000.0, 10000.0, 15000.0
        ]
    );
    // 3 ms in (2, 4], 70 ms in (50, 100].
    let mut want = vec![0u64; 17];
    want[1] = 1;
    want[6] = 1;
    assert_eq!(h.bucket_counts, want);
    assert_eq!(
        (h.count, h.sum, h.min, h.max),
        (2, Some(73.0), Some(3.0), Some(70.0))
    );

    // Cumulative: a second flush reports the totals again, from the same start.
    a.add(
        &[resource("checkout", vec![span("GET /cart", 2, 3)])],
        11 * SECOND,
    );
    let out = a.flush(20 * SECOND);
    let ok = calls(&out[0])
        .iter()
        .find(|p| attr(&p.attributes, "status.code").as_deref() == Some("STATUS_CODE_UNSET"))
        .unwrap()
        .clone();
    assert_eq!((value(&ok), ok.start_time_unix_nano), (3, 5 * SECOND));
}

#[test]
fn dimensions_defaults_and_exclusions() {
    let config: SpanMetricsConfig = serde_yaml_ng::from_str(
        r#"
dimensions:
  - name: http.method
    default: GET
  - name: host.name
  - name: absent
exclude_dimensions: [status.code]
namespace: ""
"#,
    )
    .unwrap();
    let mut a = Aggregator::new(config, 0);
    let mut post = span("op", 2, 1);
    post.attributes.push(text("http.method", "POST"));
    a.add(&[resource("s", vec![post, span("op", 2, 1)])], 0);
    let out = a.flush(1);
    let points = match &out[0].scope_metrics[0].metrics[0] {
        Metric {
            name,
            data: Some(metric::Data::Sum(s)),
            ..
        } if name == "calls" => &s.data_points,
        other => panic!("{other:?}"),
    };
    let mut methods: Vec<_> = points
        .iter()
        .map(|p| {
            assert_eq!(attr(&p.attributes, "status.code"), None);
            assert_eq!(attr(&p.attributes, "absent"), None);
            // From the resource.
            assert_eq!(attr(&p.attributes, "host.name").as_deref(), Some("h1"));
            (attr(&p.attributes, "http.method").unwrap(), value(p))
        })
        .collect();
    methods.sort();
    assert_eq!(methods, [("GET".to_string(), 1), ("POST".to_string(), 1)]);
}

#[test]
fn spans_beyond_the_cardinality_limit_go_to_one_overflow_series() {
    let config = SpanMetricsConfig {
        aggregation_cardinality_limit: 2,
        ..Default::default()
    };
    let mut a = Aggregator::new(config, 0);
    let spans = ["a", "b", "c", "d", "a", "c"]
        .into_iter()
        .map(|n| span(n, 1, 1))
        .collect();
    a.add(&[resource("s", spans)], 0);
    assert_eq!(a.series(), 3);
    let out = a.flush(1);
    let mut by_name = calls_by_name(&out[0]);
    by_name.sort();
    // "c" and "d" came after the limit: 3 spans in the overflow series.
    assert_eq!(
        by_name,
        [
            ("".to_string(), 3),
            ("a".to_string(), 2),
            ("b".to_string(), 1)
        ]
    );
    let overflow = calls(&out[0])
        .iter()
        .find(|p| attr(&p.attributes, "span.name").is_none())
        .unwrap();
    assert_eq!(overflow.attributes.len(), 1);
    assert_eq!(
        attr(&overflow.attributes, OVERFLOW_ATTRIBUTE).as_deref(),
        Some("true")
    );
    // Histograms overflow alike.
    assert_eq!(durations(&out[0]).len(), 3);
}

#[test]
fn series_without_spans_for_the_expiration_are_dropped() {
    let config = SpanMetricsConfig {
        metrics_expiration: ConfigDuration::from_secs(60),
        ..Default::default()
    };
    let mut a = Aggregator::new(config, 0);
    a.add(&[resource("s", vec![span("old", 1, 1)])], 0);
    a.add(&[resource("s", vec![span("new", 1, 1)])], 50 * SECOND);
    assert_eq!(calls_by_name(&a.flush(59 * SECOND)[0]).len(), 2);
    let out = a.flush(60 * SECOND);
    assert_eq!(calls_by_name(&out[0]), [("new".to_string(), 1)]);
    assert!(a.flush(200 * SECOND).is_empty());
    assert_eq!(a.series(), 0);
    // A later span starts the series again from zero.
    a.add(&[resource("s", vec![span("old", 1, 1)])], 300 * SECOND);
    let out = a.flush(301 * SECOND);
    assert_eq!(calls_by_name(&out[0]), [("old".to_string(), 1)]);
    assert_eq!(calls(&out[0])[0].start_time_unix_nano, 300 * SECOND);
}

#[test]
fn counts_are_weighted_by_the_adjusted_count_in_tracestate() {
    let mut a = Aggregator::new(SpanMetricsConfig::default(), 0);
    let sampled = |th: &str, ms| {
        let mut s = span("op", 2, ms);
        s.trace_state = format!("ot=th:{th}");
        s
    };
    // One span in two kept, one in four, one in ten; and one not sampled.
    let spans = vec![
        sampled("8", 1),
        sampled("c", 1),
        sampled("e6666666666666", 20),
        span("op", 2, 20),
    ];
    a.add(&[resource("s", spans)], 0);
    let out = a.flush(1);
    assert_eq!(calls_by_name(&out[0]), [("op".to_string(), 17)]);
    let h = &durations(&out[0])[0];
    // 2 + 4 in the (0, 2] bucket, 10 + 1 in (10, 50].
    assert_eq!(
        (h.bucket_counts[0], h.bucket_counts[5], h.count),
        (6, 11, 17)
    );
    assert!((h.sum.unwrap() - (6.0 + 11.0 * 20.0)).abs() < 1e-6);
}

#[test]
fn a_histograms_count_equals_its_calls_with_fractional_weights() {
    let mut a = Aggregator::new(SpanMetricsConfig::default(), 0);
    // Kept with probability 5/7: each counts for 1.4 spans. Three in three buckets round to
    // 1 each on their own, but the three make 4.2 calls.
    let sampled = |ms| {
        let mut s = span("op", 2, ms);
        s.trace_state = "ot=th:4924924924924".into();
        s
    };
    a.add(
        &[resource("s", vec![sampled(1), sampled(3), sampled(5)])],
        0,
    );
    let out = a.flush(1);
    assert_eq!(calls_by_name(&out[0]), [("op".to_string(), 4)]);
    let h = &durations(&out[0])[0];
    assert_eq!(&h.bucket_counts[..3], [1, 2, 1]);
    assert_eq!(h.count, 4);
}

#[test]
fn delta_reports_each_interval_once() {
    let config = SpanMetricsConfig {
        aggregation_temporality: Temporality::Delta,
        ..Default::default()
    };
    let mut a = Aggregator::new(config, 0);
    a.add(
        &[resource("s", vec![span("op", 1, 1), span("op", 1, 1)])],
        SECOND,
    );
    let out = a.flush(10 * SECOND);
    assert_eq!(calls_by_name(&out[0]), [("op".to_string(), 2)]);
    assert_eq!(calls(&out[0])[0].start_time_unix_nano, 0);
    assert!(a.flush(20 * SECOND).is_empty());
    a.add(&[resource("s", vec![span("op", 1, 1)])], 25 * SECOND);
    let out = a.flush(30 * SECOND);
    assert_eq!(calls_by_name(&out[0]), [("op".to_string(), 1)]);
    assert_eq!(calls(&out[0])[0].start_time_unix_nano, 20 * SECOND);
}

#[test]
fn resources_are_told_apart_by_the_key_attributes_only() {
    let config = SpanMetricsConfig {
        resource_metrics_key_attributes: vec!["service.name".into()],
        ..Default::default()
    };
    let mut a = Aggregator::new(config, 0);
    let mut other_host = resource("s", vec![span("op", 1, 1)]);
    other_host.resource.as_mut().unwrap().attributes[1] = text("host.name", "h2");
    a.add(&[resource("s", vec![span("op", 1, 1)]), other_host], 0);
    let out = a.flush(1);
    assert_eq!(out.len(), 1);
    assert_eq!(calls_by_name(&out[0]), [("op".to_string(), 2)]);
    // Without the option, every attribute counts.
    let mut a = Aggregator::new(SpanMetricsConfig::default(), 0);
    let mut other_host = resource("s", vec![span("op", 1, 1)]);
    other_host.resource.as_mut().unwrap().attributes[1] = text("host.name", "h2");
    a.add(&[resource("s", vec![span("op", 1, 1)]), other_host], 0);
    assert_eq!(a.flush(1).len(), 2);
}

#[test]
fn spans_of_a_resource_without_service_name_are_not_counted() {
    let mut a = Aggregator::new(SpanMetricsConfig::default(), 0);
    let mut rs = resource("s", vec![span("op", 1, 1)]);
    rs.resource = None;
    assert_eq!(a.add(&[rs], 0), 0);
    assert!(a.flush(1).is_empty());
}

#[test]
fn exponential_histograms_stay_within_max_size() {
    let config: SpanMetricsConfig =
        serde_yaml_ng::from_str("histogram: { unit: s, exponential: { max_size: 10 } }").unwrap();
    let mut a = Aggregator::new(config, 0);
    let spans = [1u64, 2, 5, 40, 300, 2000, 9000, 0]
        .into_iter()
        .map(|ms| span("op", 1, ms))
        .collect();
    a.add(&[resource("s", spans)], 0);
    let out = a.flush(1);
    let m = metric(&out[0], "traces.span.metrics.duration");
    assert_eq!(m.unit, "s");
    let Some(metric::Data::ExponentialHistogram(h)) = &m.data else {
        panic!("{m:?}")
    };
    let p = &h.data_points[0];
    let positive = p.positive.as_ref().unwrap();
    assert!(positive.bucket_counts.len() <= 10, "{positive:?}");
    assert_eq!((p.count, p.zero_count), (8, 1));
    assert_eq!(positive.bucket_counts.iter().sum::<u64>(), 7);
    // Every value lies in its bucket: (base^(offset+i), base^(offset+i+1)].
    let base = 2f64.powf(2f64.powi(-p.scale));
    let mut seen = 0;
    for (i, c) in positive.bucket_counts.iter().enumerate() {
        let (lo, hi) = (
            base.powi(positive.offset + i as i32),
            base.powi(positive.offset + i as i32 + 1),
        );
        for v in [0.001, 0.002, 0.005, 0.04, 0.3, 2.0, 9.0] {
            if v > lo * (1.0 + 1e-9) && v <= hi * (1.0 + 1e-9) {
                seen += c;
            }
        }
    }
    assert!(seen >= 7, "values outside their buckets: {p:?}");
    assert_eq!(p.min, Some(0.0));
    assert_eq!(p.max, Some(9.0));
}

#[test]
fn validation_names_the_option_and_the_value() {
    let config: SpanMetricsConfig = serde_yaml_ng::from_str(
        r#"
dimensions: [{ name: span.kind }, { name: x }, { name: x }]
exclude_dimensions: [span.name, http.method]
histogram:
  explicit: { buckets: [10ms, 5ms] }
  exponential: {}
metrics_flush_interval: 0s
"#,
    )
    .unwrap();
    let problems: Vec<String> = config
        .validate()
        .into_iter()
        .map(|p| format!("{}: {}", p.path, p.message))
        .collect();
    assert_eq!(
        problems,
        [
            "dimensions[0].name: \"span.kind\" is a default dimension already",
            "dimensions[2].name: dimension \"x\" is listed twice",
            "exclude_dimensions[1]: \"http.method\" is not a default dimension (those are service.name, span.name, span.kind, status.code)",
            "histogram: use either `explicit` or `exponential` buckets, not both",
            "histogram.explicit.buckets[1]: buckets must increase: 5ms follows 10ms",
            "metrics_flush_interval: must be greater than 0",
        ]
    );
}

#[test]
fn defaults_are_the_collectors() {
    let c: SpanMetricsConfig = serde_yaml_ng::from_str("{}").unwrap();
    assert_eq!(
        c.metrics_flush_interval.get(),
        std::time::Duration::from_secs(60)
    );
    assert_eq!(c.namespace, "traces.span.metrics");
    assert_eq!(c.aggregation_temporality, Temporality::Cumulative);
    assert_eq!(c.histogram.unit, Unit::Milliseconds);
    assert_eq!(c.bounds().len(), 16);
    let s: SpanMetricsConfig = serde_yaml_ng::from_str("histogram: { unit: s }").unwrap();
    assert_eq!(s.bounds()[0], 0.002);
    assert!(serde_yaml_ng::from_str::<SpanMetricsConfig>("dimensions_cache_size: 5").is_err());
}

#[test]
fn spans_read_from_bytes_count_as_decoded_ones() {
    let requests = varied_spans();
    let parts = encoded(&requests);
    for yaml in [
        "{}",
        r#"
dimensions:
  - name: http.method
    default: GET
  - name: host.name
  - name: absent
"#,
        r#"
dimensions: [{name: http.method}]
exclude_dimensions: [span.kind, service.name]
histogram: {exponential: {max_size: 10}}
aggregation_cardinality_limit: 5
"#,
    ] {
        let config: SpanMetricsConfig = serde_yaml_ng::from_str(yaml).unwrap();
        let mut decoded = Aggregator::new(config.clone(), 0);
        let mut bytes = Aggregator::new(config.clone(), 0);
        let mut mixed = Aggregator::new(config, 0);
        let all: Vec<ResourceSpans> = requests.concat();
        let counted = decoded.add(&all, SECOND);
        assert_eq!(
            bytes.add_protobuf(parts.iter().map(|p| &p[..]), SECOND),
            counted,
            "{yaml}"
        );
        mixed.add(&requests[0], SECOND);
        mixed.add_protobuf(std::iter::once(&parts[1][..]), SECOND);
        assert_eq!(decoded.series(), bytes.series(), "{yaml}");
        let expected = decoded.flush(2 * SECOND);
        assert!(!expected.is_empty());
        assert_eq!(bytes.flush(2 * SECOND), expected, "{yaml}");
        assert_eq!(mixed.flush(2 * SECOND), expected, "{yaml}");
    }
}
