//! The metrics batch: views of every metric and data-point type, edits of resource, scope
//! and data-point attributes, dropped points and metrics, and the host's applier agreeing with
//! the plugin's own copy.

use super::*;
use crate::testing::{Harness, every_metric_type, resource_metrics, string_value};
use crate::{Batch, Plugin, PluginConfig};

fn input() -> Vec<ResourceMetrics> {
    vec![
        resource_metrics(
            "cart",
            every_metric_type(&[
                &[
                    ("user", Value::from("a@example.com")),
                    ("keep", Value::Int(1)),
                ],
                &[("user", Value::from("b")), ("debug", Value::Bool(true))],
            ]),
        ),
        resource_metrics(
            "search",
            every_metric_type(&[&[("user", Value::from("c"))]]),
        ),
    ]
}

/// Tags resources and scopes, rewrites `user`, drops points marked `debug` and the summary
/// of `search`.
struct Edit5;

impl Plugin for Edit5 {
    fn new(_: PluginConfig) -> Result<Self, String> {
        Ok(Edit5)
    }

    fn process(&mut self, _: &mut Batch) -> Result<(), String> {
        Ok(())
    }

    fn process_metrics(&mut self, batch: &mut MetricBatch) -> Result<(), String> {
        batch.for_each_resource(|r| r.set_attribute("seen", true));
        batch.for_each_scope(|s| s.set_attribute("scope.tag", "x"));
        batch.for_each_metric(|m| {
            if m.service_name() == Some("search") && m.metric_type() == MetricType::Summary {
                m.drop_metric();
            }
        });
        batch.for_each_data_point(|p| {
            if p.attribute("debug").is_some() {
                p.drop_point();
                return;
            }
            if let Some(user) = p.attribute_str("user").map(str::to_uppercase) {
                p.set_attribute("user", user);
            }
            p.remove_attribute("keep");
            let kind = format!("{:?}", p.metric().metric_type);
            p.set_attribute("kind", kind);
        });
        Ok(())
    }
}

#[test]
fn views_see_every_metric_and_point_type() {
    let mut batch = MetricBatch::from_encoded(crate::edit::encode_metrics_batch(&input()));
    assert_eq!(batch.metric_count(), 10);
    assert_eq!(batch.point_count(), 15);
    let mut metrics = Vec::new();
    batch.for_each_metric(|m| {
        metrics.push((
            m.index(),
            m.name().to_string(),
            m.description().to_string(),
            m.unit().to_string(),
            m.metric_type(),
            m.point_count(),
        ))
    });
    assert_eq!(metrics.len(), 10);
    assert_eq!(
        metrics[2],
        (
            2,
            "histogram".into(),
            "the histogram".into(),
            "1".into(),
            MetricType::Histogram,
            2
        )
    );
    let types: Vec<MetricType> = metrics.iter().take(5).map(|m| m.4).collect();
    assert_eq!(
        types,
        [
            MetricType::Gauge,
            MetricType::Sum,
            MetricType::Histogram,
            MetricType::ExponentialHistogram,
            MetricType::Summary
        ]
    );
    let mut points = Vec::new();
    batch.for_each_data_point(|p| {
        let point = p.point();
        let kind = match point {
            DataPoint::Number(_) => "number",
            DataPoint::Histogram(_) => "histogram",
            DataPoint::ExponentialHistogram(_) => "exp",
            DataPoint::Summary(_) => "summary",
        };
        points.push((
            p.index(),
            p.metric_name().to_string(),
            kind,
            p.attribute_str("user").map(str::to_string),
            p.service_name().map(str::to_string),
            point.count(),
            point.number(),
            point.time_unix_nano(),
        ));
    });
    assert_eq!(points.len(), 15);
    assert_eq!(
        points[0],
        (
            0,
            "gauge".into(),
            "number",
            Some("a@example.com".into()),
            Some("cart".into()),
            None,
            Some(3.0),
            1_700_000_000_000_000_000
        )
    );
    assert_eq!(points[4].2, "histogram");
    assert_eq!(points[4].5, Some(2));
    assert_eq!(points[7].2, "exp");
    assert_eq!(points[9].2, "summary");
    assert_eq!(points[14].1, "summary");
    assert_eq!(points[14].4.as_deref(), Some("search"));
    assert_eq!(batch.into_output(), Output::Unchanged);
}

#[test]
fn the_host_applies_what_the_plugin_did_to_its_copy() {
    let mut h = Harness::<Edit5>::new(serde_json::Value::Null).unwrap();
    let got = h.process_metrics(input()).unwrap();
    let mut batch = MetricBatch::new(input());
    Edit5.process_metrics(&mut batch).unwrap();
    assert_eq!(got, batch.into_resource_metrics());

    assert_eq!(got.len(), 2);
    let cart = &got[0];
    assert_eq!(
        crate::attributes::get(&cart.resource.as_ref().unwrap().attributes, "seen"),
        Some(&Value::Bool(true).into_any_value())
    );
    let scope = cart.scope_metrics[0].scope.as_ref().unwrap();
    assert_eq!(
        crate::attributes::get(&scope.attributes, "scope.tag"),
        Some(&string_value("x"))
    );
    // Every type kept its first point (rewritten) and lost its `debug` one.
    let metrics = &cart.scope_metrics[0].metrics;
    assert_eq!(metrics.len(), 5);
    for m in metrics {
        assert_eq!(point_count(m), 1, "{}", m.name);
        let mut copy = m.clone();
        let attrs = crate::wire::edit_metrics::point_attributes_mut(&mut copy, 0).clone();
        assert_eq!(
            crate::attributes::get(&attrs, "user"),
            Some(&string_value("A@EXAMPLE.COM"))
        );
        assert!(crate::attributes::get(&attrs, "keep").is_none());
        assert!(crate::attributes::get(&attrs, "kind").is_some());
    }
    // `search` lost its summary.
    let names: Vec<&str> = got[1].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, ["gauge", "sum", "histogram", "exp_histogram"]);
}

#[test]
fn dropping_every_point_removes_the_metric_scope_and_resource() {
    struct DropAll;
    impl Plugin for DropAll {
        fn new(_: PluginConfig) -> Result<Self, String> {
            Ok(DropAll)
        }
        fn process(&mut self, _: &mut Batch) -> Result<(), String> {
            Ok(())
        }
        fn process_metrics(&mut self, batch: &mut MetricBatch) -> Result<(), String> {
            batch.for_each_data_point(|p| {
                if p.service_name() == Some("cart") {
                    p.drop_point();
                }
            });
            Ok(())
        }
    }
    let mut h = Harness::<DropAll>::new(serde_json::Value::Null).unwrap();
    let got = h.process_metrics(input()).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0], input()[1]);
}

#[test]
fn a_plugin_without_a_metrics_handler_passes_metrics_unchanged() {
    struct Traces;
    impl Plugin for Traces {
        fn new(_: PluginConfig) -> Result<Self, String> {
            Ok(Traces)
        }
        fn process(&mut self, _: &mut Batch) -> Result<(), String> {
            Err("not for metrics".into())
        }
    }
    let mut h = Harness::<Traces>::new(serde_json::Value::Null).unwrap();
    assert_eq!(h.process_metrics(input()).unwrap(), input());
}

#[test]
fn a_replacement_goes_back_whole() {
    let mut batch = MetricBatch::new(input());
    batch.for_each_data_point(|p| p.set_attribute("x", 1i64));
    batch.replace(vec![resource_metrics("other", vec![])]);
    match batch.into_output() {
        Output::Replace(bytes) => {
            let got = crate::edit::decode_metrics_replacement(&bytes).unwrap();
            assert_eq!(got.len(), 1);
        }
        other => panic!("{other:?}"),
    }
}

/// `Edit5`'s point edits in view mode (resources and scopes too).
struct Edit5Views;

impl Plugin for Edit5Views {
    fn new(_: PluginConfig) -> Result<Self, String> {
        Ok(Edit5Views)
    }

    fn process(&mut self, _: &mut Batch) -> Result<(), String> {
        Ok(())
    }

    fn process_metrics(&mut self, batch: &mut MetricBatch) -> Result<(), String> {
        batch.for_each_resource_view(|r| r.set_attribute("seen", true));
        batch.for_each_scope_view(|s| s.set_attribute("scope.tag", "x"));
        batch.for_each_data_point_view(|p| {
            let v = p.view();
            if v.attributes().get("debug").is_some() {
                p.drop_point();
                return;
            }
            if let Some(user) = v.attributes().get_str("user").map(str::to_uppercase) {
                p.set_attribute("user", user);
            }
            p.remove_attribute("keep");
        });
        Ok(())
    }
}

/// `Edit5` without the summary drop and the `kind` attribute, in the mutable API.
struct Edit5Mutable;

impl Plugin for Edit5Mutable {
    fn new(_: PluginConfig) -> Result<Self, String> {
        Ok(Edit5Mutable)
    }

    fn process(&mut self, _: &mut Batch) -> Result<(), String> {
        Ok(())
    }

    fn process_metrics(&mut self, batch: &mut MetricBatch) -> Result<(), String> {
        batch.for_each_resource(|r| r.set_attribute("seen", true));
        batch.for_each_scope(|s| s.set_attribute("scope.tag", "x"));
        batch.for_each_data_point(|p| {
            if p.attribute("debug").is_some() {
                p.drop_point();
                return;
            }
            if let Some(user) = p.attribute_str("user").map(str::to_uppercase) {
                p.set_attribute("user", user);
            }
            p.remove_attribute("keep");
        });
        Ok(())
    }
}

#[test]
fn view_mode_reads_every_point_type_and_edits_like_the_mutable_api() {
    let mut views = Harness::<Edit5Views>::new(serde_json::Value::Null).unwrap();
    let mut mutable = Harness::<Edit5Mutable>::new(serde_json::Value::Null).unwrap();
    assert_eq!(
        views.process_metrics(input()).unwrap(),
        mutable.process_metrics(input()).unwrap()
    );
    let mut batch = MetricBatch::new(input());
    let mut seen = Vec::new();
    batch.for_each_data_point_view(|p| {
        let v = p.view();
        seen.push((
            v.index(),
            v.metric_name().to_string(),
            v.service_name().map(str::to_string),
            v.attributes().to_key_values(),
        ));
    });
    let mut expected = Vec::new();
    let mut decoded = MetricBatch::new(input());
    decoded.for_each_data_point(|p| {
        expected.push((
            p.index(),
            p.metric_name().to_string(),
            p.service_name().map(str::to_string),
            p.attributes().to_vec(),
        ))
    });
    assert_eq!(seen.len(), 15);
    assert_eq!(seen, expected);
}

#[test]
#[should_panic(expected = "not both")]
fn mixing_modes_panics() {
    let mut batch = MetricBatch::new(input());
    batch.for_each_data_point_view(|_| {});
    batch.for_each_data_point(|_| {});
}

#[test]
fn view_mode_reads_a_metric_split_over_data_fields_as_decoding_does() {
    // Gauge, then sum, then gauge again in one Metric's bytes: decoding keeps the last gauge
    // only (a different oneof field replaces, the same one merges).
    let metrics = every_metric_type(&[&[("a", Value::from("1"))], &[("a", Value::from("2"))]]);
    let (gauge, sum) = (metrics[0].encode_to_vec(), metrics[1].encode_to_vec());
    let mut one = metrics[0].clone();
    if let Some(metric::Data::Gauge(g)) = &mut one.data {
        g.data_points.truncate(1);
        g.data_points[0].attributes = vec![crate::testing::kv("a", Value::from("last"))];
    }
    let body = [gauge, sum, one.encode_to_vec()].concat();
    let decoded = Metric::decode(body.as_slice()).unwrap();
    let mut rm = resource_metrics("cart", vec![decoded.clone()]);
    rm.scope_metrics[0].metrics.clear();
    let mut bytes = crate::edit::encode_metrics_batch(&[rm]);
    // Splice the raw metric in: ResourceMetrics > ScopeMetrics > Metric.
    let mut sm = ScopeMetricsBytes::default();
    sm.metric(&body);
    bytes = sm.wrap(&bytes);
    let batch_decoded = MetricsData::decode(bytes.as_slice()).unwrap();
    assert_eq!(
        batch_decoded.resource_metrics[1].scope_metrics[0].metrics[0],
        decoded
    );
    let mut batch = MetricBatch::from_encoded(bytes);
    let mut seen = Vec::new();
    batch.for_each_data_point_view(|p| {
        seen.push(p.view().attributes().get_str("a").map(str::to_string))
    });
    assert_eq!(seen, [Some("last".to_string())]);
}

/// Builds a batch whose last resource holds a scope with one raw `Metric` body.
#[derive(Default)]
struct ScopeMetricsBytes(Vec<u8>);

impl ScopeMetricsBytes {
    fn metric(&mut self, body: &[u8]) {
        prost::encoding::bytes::encode(2, &body.to_vec(), &mut self.0);
    }

    /// `batch` with a new resource holding this scope appended.
    fn wrap(&self, batch: &[u8]) -> Vec<u8> {
        let mut rm = Vec::new();
        prost::encoding::bytes::encode(2, &self.0, &mut rm);
        let mut out = batch.to_vec();
        prost::encoding::bytes::encode(1, &rm, &mut out);
        out
    }
}
