//! The metrics applier: index checks with the host's messages, edits of other signals
//! refused, attribute semantics equal to the mutable API's, and nothing applied on an error.

use super::*;
use crate::edit::encode_metrics_batch;
use crate::testing::{every_metric_type, resource_metrics, string_value};
use crate::value::Value;

fn bytes() -> Vec<u8> {
    encode_metrics_batch(&[resource_metrics(
        "cart",
        every_metric_type(&[&[("a", Value::from("1"))], &[("a", Value::from("2"))]]),
    )])
}

fn decode(e: &Edited) -> Vec<ResourceMetrics> {
    ExportMetricsServiceRequest::decode(e.bytes.as_slice())
        .unwrap()
        .resource_metrics
}

#[test]
fn out_of_range_and_other_signals_are_refused_naming_the_edit() {
    let err = |edits: Vec<Edit>| apply_metrics(&bytes(), edits).unwrap_err();
    assert_eq!(
        err(vec![Edit::DropDataPoint { point: 10 }]),
        "data point index 10 is out of range (the batch has 10)"
    );
    assert_eq!(
        err(vec![Edit::DropMetric { metric: 5 }]),
        "metric index 5 is out of range (the batch has 5)"
    );
    assert_eq!(
        err(vec![Edit::RemoveAttribute {
            target: Target::Scope(1),
            key: "k".into()
        }]),
        "scope index 1 is out of range (the batch has 1)"
    );
    assert_eq!(
        err(vec![Edit::DropSpan { span: 0 }]),
        "drop-span does not apply to a metrics batch"
    );
    assert_eq!(
        err(vec![Edit::SetBody {
            record: 0,
            value: Value::from("x")
        }]),
        "set-body does not apply to a metrics batch"
    );
    assert_eq!(
        err(vec![Edit::RemoveAttribute {
            target: Target::LogRecord(0),
            key: "k".into()
        }]),
        "target LogRecord(0) does not apply to a metrics batch"
    );
}

#[test]
fn metric_edits_are_refused_on_traces_and_logs() {
    let spans = crate::edit::encode_batch(&[]);
    assert_eq!(
        super::super::edit::apply(&spans, vec![Edit::DropDataPoint { point: 0 }]).unwrap_err(),
        "drop-data-point does not apply to a trace batch"
    );
    let logs = crate::edit::encode_logs_batch(&[]);
    assert_eq!(
        super::super::edit::apply_logs(&logs, vec![Edit::DropMetric { metric: 0 }]).unwrap_err(),
        "drop-metric does not apply to a logs batch"
    );
    assert_eq!(
        super::super::edit::apply_logs(
            &logs,
            vec![Edit::RemoveAttribute {
                target: Target::DataPoint(0),
                key: "k".into()
            }]
        )
        .unwrap_err(),
        "target DataPoint(0) does not apply to a logs batch"
    );
}

#[test]
fn many_ops_on_one_point_mean_what_they_mean_one_at_a_time() {
    let ops: Vec<Edit> = (0..40)
        .flat_map(|i| {
            let key = format!("k{}", i % 7);
            [
                Edit::SetAttribute {
                    target: Target::DataPoint(3),
                    key: key.clone(),
                    value: Value::Int(i),
                },
                Edit::RemoveAttribute {
                    target: Target::DataPoint(3),
                    key: format!("k{}", i % 5),
                },
            ]
        })
        .collect();
    let got = decode(&apply_metrics(&bytes(), ops.clone()).unwrap());
    let mut want = resource_metrics(
        "cart",
        every_metric_type(&[&[("a", Value::from("1"))], &[("a", Value::from("2"))]]),
    );
    for op in ops {
        let attrs = point_attributes_mut(&mut want.scope_metrics[0].metrics[1], 1);
        match op {
            Edit::SetAttribute { key, value, .. } => {
                crate::attributes::set(attrs, &key, value.into_any_value())
            }
            Edit::RemoveAttribute { key, .. } => {
                crate::attributes::remove(attrs, &key);
            }
            _ => unreachable!(),
        }
    }
    assert_eq!(got, vec![want]);
}

#[test]
fn drops_count_and_prune() {
    let edited = apply_metrics(
        &bytes(),
        vec![
            Edit::DropDataPoint { point: 0 },
            Edit::DropDataPoint { point: 1 },
            Edit::DropMetric { metric: 4 },
            Edit::SetAttribute {
                target: Target::DataPoint(2),
                key: "a".into(),
                value: Value::from("x"),
            },
        ],
    )
    .unwrap();
    assert_eq!(edited.spans, 6);
    let got = decode(&edited);
    let names: Vec<&str> = got[0].scope_metrics[0]
        .metrics
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(names, ["sum", "histogram", "exp_histogram"]);
    let mut sum = got[0].scope_metrics[0].metrics[0].clone();
    assert_eq!(
        crate::attributes::get(point_attributes_mut(&mut sum, 0), "a"),
        Some(&string_value("x"))
    );
}

#[test]
fn a_bad_edit_applies_nothing() {
    let err = apply_metrics(
        &bytes(),
        vec![
            Edit::DropMetric { metric: 0 },
            Edit::DropDataPoint { point: 99 },
        ],
    );
    assert!(err.is_err());
}
