//! Metrics: `decode_metrics`, `decode_metrics_within`, `encode_metrics`.

use std::mem::size_of;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge,
    Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    Summary, SummaryDataPoint, exemplar, exponential_histogram_data_point::Buckets, metric::Data,
    number_data_point, summary_data_point::ValueAtQuantile,
};

use super::super::{DecodeError, decode_metrics, decode_metrics_within, encode_metrics};
use super::{every_kind_of_value, full_resource, full_scope, kv, spec_resource, spec_scope};

fn encode(request: &ExportMetricsServiceRequest) -> String {
    super::encoded(&request.resource_metrics, encode_metrics)
}

fn decode(json: &str) -> ExportMetricsServiceRequest {
    decode_metrics(json.as_bytes()).unwrap_or_else(|e| panic!("decoding {json}: {e}"))
}

fn decode_err(json: &str) -> String {
    let err = match decode_metrics(json.as_bytes()) {
        Ok(request) => panic!("decoding {json} succeeded: {request:?}"),
        Err(e) => e,
    };
    // The bounded decoder gives the same message.
    assert_eq!(
        decode_metrics_within(json.as_bytes(), usize::MAX).unwrap_err(),
        DecodeError::Malformed(err.clone())
    );
    err
}

/// A request with one resource and one scope holding metrics whose JSON is `metrics`.
fn with_metrics(metrics: &str) -> String {
    format!(r#"{{"resourceMetrics":[{{"scopeMetrics":[{{"metrics":[{metrics}]}}]}}]}}"#)
}

/// The metrics of the first scope of the first resource.
fn metrics(request: &ExportMetricsServiceRequest) -> &[Metric] {
    &request.resource_metrics[0].scope_metrics[0].metrics
}

/// The data of the first metric.
fn data0(request: &ExportMetricsServiceRequest) -> &Data {
    metrics(request)[0].data.as_ref().expect("data")
}

fn exemplars() -> Vec<Exemplar> {
    vec![
        Exemplar {
            filtered_attributes: every_kind_of_value(),
            time_unix_nano: u64::MAX,
            span_id: vec![0xee; 8],
            trace_id: (1..=16).collect(),
            value: Some(exemplar::Value::AsDouble(-0.5)),
        },
        Exemplar {
            value: Some(exemplar::Value::AsInt(i64::MIN)),
            ..Exemplar::default()
        },
        Exemplar {
            value: Some(exemplar::Value::AsInt(0)),
            ..Exemplar::default()
        },
        Exemplar::default(),
    ]
}

fn number_points() -> Vec<NumberDataPoint> {
    vec![
        NumberDataPoint {
            attributes: every_kind_of_value(),
            start_time_unix_nano: 1_544_712_660_300_000_000,
            time_unix_nano: u64::MAX,
            exemplars: exemplars(),
            flags: 1,
            value: Some(number_data_point::Value::AsDouble(f64::INFINITY)),
        },
        NumberDataPoint {
            value: Some(number_data_point::Value::AsInt(i64::MAX)),
            ..NumberDataPoint::default()
        },
        // Set to zero, which differs from not set.
        NumberDataPoint {
            value: Some(number_data_point::Value::AsDouble(0.0)),
            ..NumberDataPoint::default()
        },
        NumberDataPoint {
            value: Some(number_data_point::Value::AsInt(0)),
            ..NumberDataPoint::default()
        },
        NumberDataPoint::default(),
    ]
}

fn metric(name: &str, data: Option<Data>) -> Metric {
    Metric {
        name: name.into(),
        data,
        ..Metric::default()
    }
}

fn full_request() -> ExportMetricsServiceRequest {
    let metrics = vec![
        Metric {
            name: "gauge".into(),
            description: "a \"gauge\"".into(),
            unit: "ms".into(),
            metadata: vec![kv("m", Value::BoolValue(true))],
            data: Some(Data::Gauge(Gauge {
                data_points: number_points(),
            })),
        },
        metric(
            "sum",
            Some(Data::Sum(Sum {
                data_points: number_points(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
        ),
        metric(
            "histogram",
            Some(Data::Histogram(Histogram {
                data_points: vec![
                    HistogramDataPoint {
                        attributes: every_kind_of_value(),
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count: u64::MAX,
                        sum: Some(1.5e300),
                        bucket_counts: vec![0, 1, u64::MAX],
                        explicit_bounds: vec![-1.0, 2.5e-300],
                        exemplars: exemplars(),
                        flags: 1,
                        min: Some(f64::NEG_INFINITY),
                        max: Some(0.0),
                    },
                    // Set to zero, which differs from not set.
                    HistogramDataPoint {
                        sum: Some(0.0),
                        min: Some(0.0),
                        ..HistogramDataPoint::default()
                    },
                    HistogramDataPoint::default(),
                ],
                aggregation_temporality: AggregationTemporality::Delta as i32,
            })),
        ),
        metric(
            "exponential",
            Some(Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![
                    ExponentialHistogramDataPoint {
                        attributes: every_kind_of_value(),
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count: 3,
                        sum: Some(-4.25),
                        scale: -3,
                        zero_count: 5,
                        positive: Some(Buckets {
                            offset: -7,
                            bucket_counts: vec![1, 0, 9],
                        }),
                        negative: Some(Buckets::default()),
                        flags: 1,
                        exemplars: exemplars(),
                        min: Some(-1e-9),
                        max: Some(7.0),
                        zero_threshold: 1e-12,
                    },
                    ExponentialHistogramDataPoint::default(),
                ],
                aggregation_temporality: 7, // unknown to the enum, kept
            })),
        ),
        metric(
            "summary",
            Some(Data::Summary(Summary {
                data_points: vec![
                    SummaryDataPoint {
                        attributes: every_kind_of_value(),
                        start_time_unix_nano: 1,
                        time_unix_nano: 2,
                        count: 3,
                        sum: 4.5,
                        quantile_values: vec![
                            ValueAtQuantile {
                                quantile: 0.0,
                                value: -1.0,
                            },
                            ValueAtQuantile {
                                quantile: 0.99,
                                value: f64::INFINITY,
                            },
                            ValueAtQuantile::default(),
                        ],
                        flags: 1,
                    },
                    SummaryDataPoint::default(),
                ],
            })),
        ),
        // Every kind of data, empty: still set.
        metric("empty-gauge", Some(Data::Gauge(Gauge::default()))),
        metric("empty-sum", Some(Data::Sum(Sum::default()))),
        metric(
            "empty-histogram",
            Some(Data::Histogram(Histogram::default())),
        ),
        metric(
            "empty-exponential",
            Some(Data::ExponentialHistogram(ExponentialHistogram::default())),
        ),
        metric("empty-summary", Some(Data::Summary(Summary::default()))),
        Metric::default(),
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![
            ResourceMetrics {
                resource: Some(full_resource()),
                scope_metrics: vec![
                    ScopeMetrics {
                        scope: Some(full_scope()),
                        metrics,
                        schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
                    },
                    ScopeMetrics::default(),
                ],
                schema_url: "https://opentelemetry.io/schemas/1.22.0".into(),
            },
            ResourceMetrics::default(),
        ],
    }
}

#[test]
fn round_trips_a_fully_populated_request() {
    let request = full_request();
    let json = encode(&request);
    assert!(!json.contains('\n'), "one line: {json}");
    serde_json::from_str::<serde_json::Value>(&json).expect("valid JSON");
    let decoded = decode(&json);
    assert_eq!(decoded, request);
    assert_eq!(encode(&decoded), json);

    let kept = decode_metrics_within(json.as_bytes(), usize::MAX).expect("within budget");
    assert_eq!(kept.request, request);
    assert_eq!(kept.invalid, 0, "nothing is left out of metrics");
}

#[test]
fn encodes_the_canonical_form() {
    let request = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "c".into(),
                        unit: "1".into(),
                        data: Some(Data::Sum(Sum {
                            data_points: vec![NumberDataPoint {
                                time_unix_nano: 1_544_712_660_300_000_000,
                                value: Some(number_data_point::Value::AsInt(-5)),
                                exemplars: vec![Exemplar {
                                    value: Some(exemplar::Value::AsDouble(f64::NAN)),
                                    span_id: hex::decode("EEE19B7EC3C1B174").unwrap(),
                                    trace_id: hex::decode("5B8EFFF798038103D269B633813FC60C")
                                        .unwrap(),
                                    ..Exemplar::default()
                                }],
                                ..NumberDataPoint::default()
                            }],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        })),
                        ..Metric::default()
                    },
                    metric(
                        "h",
                        Some(Data::Histogram(Histogram {
                            data_points: vec![HistogramDataPoint {
                                count: 3,
                                sum: Some(0.0),
                                bucket_counts: vec![1, 0, 2],
                                explicit_bounds: vec![0.5, 1e300],
                                max: Some(f64::INFINITY),
                                ..HistogramDataPoint::default()
                            }],
                            aggregation_temporality: 1,
                        })),
                    ),
                    metric(
                        "e",
                        Some(Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![ExponentialHistogramDataPoint {
                                scale: -2,
                                zero_threshold: 0.001,
                                negative: Some(Buckets {
                                    offset: -1,
                                    bucket_counts: vec![4],
                                }),
                                ..ExponentialHistogramDataPoint::default()
                            }],
                            aggregation_temporality: 0,
                        })),
                    ),
                    metric(
                        "s",
                        Some(Data::Summary(Summary {
                            data_points: vec![SummaryDataPoint {
                                sum: -0.0,
                                quantile_values: vec![ValueAtQuantile {
                                    quantile: 0.5,
                                    value: 0.0,
                                }],
                                ..SummaryDataPoint::default()
                            }],
                        })),
                    ),
                    metric("g", Some(Data::Gauge(Gauge::default()))),
                ],
                ..ScopeMetrics::default()
            }],
            ..ResourceMetrics::default()
        }],
    };
    assert_eq!(
        encode(&request),
        concat!(
            r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":["#,
            r#"{"name":"c","unit":"1","sum":{"dataPoints":[{"timeUnixNano":"1544712660300000000","asInt":"-5","#,
            r#""exemplars":[{"asDouble":"NaN","spanId":"eee19b7ec3c1b174","traceId":"5b8efff798038103d269b633813fc60c"}]}],"#,
            r#""aggregationTemporality":2,"isMonotonic":true}},"#,
            r#"{"name":"h","histogram":{"dataPoints":[{"count":"3","sum":0.0,"bucketCounts":["1","0","2"],"#,
            r#""explicitBounds":[0.5,1e300],"max":"Infinity"}],"aggregationTemporality":1}},"#,
            r#"{"name":"e","exponentialHistogram":{"dataPoints":[{"scale":-2,"negative":{"offset":-1,"bucketCounts":["4"]},"#,
            r#""zeroThreshold":0.001}]}},"#,
            r#"{"name":"s","summary":{"dataPoints":[{"quantileValues":[{"quantile":0.5}]}]}},"#,
            r#"{"name":"g","gauge":{}}]}]}]}"#,
        )
    );
    assert_eq!(
        encode(&ExportMetricsServiceRequest::default()),
        r#"{"resourceMetrics":[]}"#
    );
}

/// The example in the OTLP specification (opentelemetry-proto's examples/metrics.json).
#[test]
fn decodes_the_spec_example() {
    let request = decode(
        r#"{
  "resourceMetrics": [
    {
      "resource": {
        "attributes": [
          {
            "key": "service.name",
            "value": {
              "stringValue": "my.service"
            }
          }
        ]
      },
      "scopeMetrics": [
        {
          "scope": {
            "name": "my.library",
            "version": "1.0.0",
            "attributes": [
              {
                "key": "my.scope.attribute",
                "value": {
                  "stringValue": "some scope attribute"
                }
              }
            ]
          },
          "metrics": [
            {
              "name": "my.counter",
              "unit": "1",
              "description": "I am a Counter",
              "sum": {
                "aggregationTemporality": 1,
                "isMonotonic": true,
                "dataPoints": [
                  {
                    "asDouble": 5,
                    "startTimeUnixNano": 1544712660300000000,
                    "timeUnixNano": 1544712660300000000,
                    "attributes": [
                      {
                        "key": "my.counter.attr",
                        "value": {
                          "stringValue": "some value"
                        }
                      }
                    ]
                  }
                ]
              }
            },
            {
              "name": "my.gauge",
              "unit": "1",
              "description": "I am a Gauge",
              "gauge": {
                "dataPoints": [
                  {
                    "asDouble": 10,
                    "timeUnixNano": 1544712660300000000,
                    "attributes": [
                      {
                        "key": "my.gauge.attr",
                        "value": {
                          "stringValue": "some value"
                        }
                      }
                    ]
                  }
                ]
              }
            },
            {
              "name": "my.histogram",
              "unit": "1",
              "description": "I am a Histogram",
              "histogram": {
                "aggregationTemporality": 1,
                "dataPoints": [
                  {
                    "startTimeUnixNano": 1544712660300000000,
                    "timeUnixNano": 1544712660300000000,
                    "count": 2,
                    "sum": 2,
                    "bucketCounts": [1,1],
                    "explicitBounds": [1],
                    "min": 0,
                    "max": 2,
                    "attributes": [
                      {
                        "key": "my.histogram.attr",
                        "value": {
                          "stringValue": "some value"
                        }
                      }
                    ]
                  }
                ]
              }
            }
          ]
        }
      ]
    }
  ]
}
"#,
    );
    const T: u64 = 1_544_712_660_300_000_000;
    let attr = |key: &str| vec![kv(key, Value::StringValue("some value".into()))];
    let expected = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(spec_resource()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(spec_scope()),
                metrics: vec![
                    Metric {
                        name: "my.counter".into(),
                        unit: "1".into(),
                        description: "I am a Counter".into(),
                        data: Some(Data::Sum(Sum {
                            aggregation_temporality: AggregationTemporality::Delta as i32,
                            is_monotonic: true,
                            data_points: vec![NumberDataPoint {
                                value: Some(number_data_point::Value::AsDouble(5.0)),
                                start_time_unix_nano: T,
                                time_unix_nano: T,
                                attributes: attr("my.counter.attr"),
                                ..NumberDataPoint::default()
                            }],
                        })),
                        metadata: vec![],
                    },
                    Metric {
                        name: "my.gauge".into(),
                        unit: "1".into(),
                        description: "I am a Gauge".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                value: Some(number_data_point::Value::AsDouble(10.0)),
                                time_unix_nano: T,
                                attributes: attr("my.gauge.attr"),
                                ..NumberDataPoint::default()
                            }],
                        })),
                        metadata: vec![],
                    },
                    Metric {
                        name: "my.histogram".into(),
                        unit: "1".into(),
                        description: "I am a Histogram".into(),
                        data: Some(Data::Histogram(Histogram {
                            aggregation_temporality: AggregationTemporality::Delta as i32,
                            data_points: vec![HistogramDataPoint {
                                start_time_unix_nano: T,
                                time_unix_nano: T,
                                count: 2,
                                sum: Some(2.0),
                                bucket_counts: vec![1, 1],
                                explicit_bounds: vec![1.0],
                                min: Some(0.0),
                                max: Some(2.0),
                                attributes: attr("my.histogram.attr"),
                                ..HistogramDataPoint::default()
                            }],
                        })),
                        metadata: vec![],
                    },
                ],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    };
    assert_eq!(request, expected);
    assert_eq!(decode(&encode(&request)), request);
}

#[test]
fn accepts_snake_case_enum_names_and_strings_for_numbers() {
    let request = decode(&with_metrics(
        r#"{"name":"s","sum":{"aggregation_temporality":"AGGREGATION_TEMPORALITY_CUMULATIVE","is_monotonic":true,
             "data_points":[{"start_time_unix_nano":"1","time_unix_nano":2,"as_int":"-3","flags":"1",
               "exemplars":[{"filtered_attributes":[{"key":"k"}],"time_unix_nano":"4","as_double":"NaN",
                 "span_id":"0102030405060708","trace_id":"0102030405060708090a0b0c0d0e0f10"}]},
               {"as_double":"-Infinity"},{"asDouble":"2.5"},{"asDouble":"Infinity"},{"asInt":7}]}},
           {"exponential_histogram":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_DELTA",
             "data_points":[{"zero_count":"5","zero_threshold":"1e-3","scale":"-2","sum":"NaN",
               "positive":{"offset":"3","bucket_counts":["1",2,"3"]}}]}},
           {"histogram":{"aggregationTemporality":"2","data_points":[{"bucket_counts":["18446744073709551615"],
             "explicit_bounds":["1.5",2,"-Infinity"],"min":"-1","max":1e2}]}},
           {"summary":{"data_points":[{"quantile_values":[{"quantile":"0.5","value":"NaN"}],"sum":"3"}]}}"#,
    ));
    let metrics = metrics(&request);
    let Some(Data::Sum(sum)) = &metrics[0].data else {
        panic!("not a sum: {:?}", metrics[0]);
    };
    assert_eq!(
        (sum.aggregation_temporality, sum.is_monotonic),
        (AggregationTemporality::Cumulative as i32, true)
    );
    let point = &sum.data_points[0];
    assert_eq!(
        (
            point.start_time_unix_nano,
            point.time_unix_nano,
            point.flags
        ),
        (1, 2, 1)
    );
    assert_eq!(point.value, Some(number_data_point::Value::AsInt(-3)));
    let exemplar = &point.exemplars[0];
    assert_eq!(exemplar.filtered_attributes[0].key, "k");
    assert_eq!(exemplar.time_unix_nano, 4);
    assert!(matches!(exemplar.value, Some(exemplar::Value::AsDouble(d)) if d.is_nan()));
    assert_eq!(
        (exemplar.span_id.clone(), exemplar.trace_id.clone()),
        ((1..=8).collect(), (1..=16).collect())
    );
    let values: Vec<_> = sum.data_points[1..].iter().map(|p| p.value).collect();
    assert_eq!(
        values,
        vec![
            Some(number_data_point::Value::AsDouble(f64::NEG_INFINITY)),
            Some(number_data_point::Value::AsDouble(2.5)),
            Some(number_data_point::Value::AsDouble(f64::INFINITY)),
            Some(number_data_point::Value::AsInt(7)),
        ]
    );

    let Some(Data::ExponentialHistogram(exponential)) = &metrics[1].data else {
        panic!("not an exponential histogram: {:?}", metrics[1]);
    };
    assert_eq!(
        exponential.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    let point = &exponential.data_points[0];
    assert_eq!(
        (point.zero_count, point.zero_threshold, point.scale),
        (5, 1e-3, -2)
    );
    assert!(point.sum.unwrap().is_nan());
    assert_eq!(
        point.positive,
        Some(Buckets {
            offset: 3,
            bucket_counts: vec![1, 2, 3]
        })
    );

    let Some(Data::Histogram(histogram)) = &metrics[2].data else {
        panic!("not a histogram: {:?}", metrics[2]);
    };
    assert_eq!(histogram.aggregation_temporality, 2);
    let point = &histogram.data_points[0];
    assert_eq!(point.bucket_counts, vec![u64::MAX]);
    assert_eq!(point.explicit_bounds, vec![1.5, 2.0, f64::NEG_INFINITY]);
    assert_eq!((point.min, point.max), (Some(-1.0), Some(100.0)));

    let Some(Data::Summary(summary)) = &metrics[3].data else {
        panic!("not a summary: {:?}", metrics[3]);
    };
    let point = &summary.data_points[0];
    assert_eq!(point.sum, 3.0);
    assert_eq!(point.quantile_values[0].quantile, 0.5);
    assert!(point.quantile_values[0].value.is_nan());

    // NaN is written back as proto3 JSON spells it.
    let json = encode(&request);
    assert!(json.contains(r#""asDouble":"NaN""#), "{json}");
    assert!(json.contains(r#""sum":"NaN""#), "{json}");
    assert!(json.contains(r#""value":"NaN""#), "{json}");
    assert!(
        json.contains(r#""explicitBounds":[1.5,2.0,"-Infinity"]"#),
        "{json}"
    );
}

#[test]
fn null_means_not_set() {
    let request = decode(&with_metrics(
        r#"{"name":null,"gauge":null,"sum":{"dataPoints":null}},
           {"histogram":{"dataPoints":[{"sum":null,"min":null,"max":null,"bucketCounts":null,
             "explicitBounds":null,"exemplars":[{"asInt":null,"asDouble":1}]}]}},
           {"gauge":{"dataPoints":[{"asDouble":null,"asInt":"1"},{"asInt":null}]}},
           {"exponentialHistogram":{"dataPoints":[{"positive":null,"negative":{"bucketCounts":null}}]}}"#,
    ));
    let metrics = metrics(&request);
    assert_eq!(metrics[0], metric("", Some(Data::Sum(Sum::default()))));
    let Some(Data::Histogram(histogram)) = &metrics[1].data else {
        panic!("not a histogram: {:?}", metrics[1]);
    };
    assert_eq!(
        histogram.data_points,
        vec![HistogramDataPoint {
            exemplars: vec![Exemplar {
                value: Some(exemplar::Value::AsDouble(1.0)),
                ..Exemplar::default()
            }],
            ..HistogramDataPoint::default()
        }]
    );
    let Some(Data::Gauge(gauge)) = &metrics[2].data else {
        panic!("not a gauge: {:?}", metrics[2]);
    };
    assert_eq!(
        gauge.data_points,
        vec![
            NumberDataPoint {
                value: Some(number_data_point::Value::AsInt(1)),
                ..NumberDataPoint::default()
            },
            NumberDataPoint::default(),
        ]
    );
    let Some(Data::ExponentialHistogram(exponential)) = &metrics[3].data else {
        panic!("not an exponential histogram: {:?}", metrics[3]);
    };
    assert_eq!(
        exponential.data_points,
        vec![ExponentialHistogramDataPoint {
            negative: Some(Buckets::default()),
            ..ExponentialHistogramDataPoint::default()
        }]
    );
    assert_eq!(
        decode(r#"{"resourceMetrics":null,"unknown":[{"gauge":1}]}"#),
        ExportMetricsServiceRequest::default()
    );
}

#[test]
fn rejects_a_oneof_set_twice() {
    for (json, message) in [
        (
            r#"{"gauge":{},"sum":{}}"#,
            "metrics[0].sum: Metric has more than one data: gauge and sum",
        ),
        (
            r#"{"summary":{},"exponentialHistogram":{}}"#,
            "metrics[0].exponentialHistogram: Metric has more than one data: summary and exponentialHistogram",
        ),
        (
            r#"{"gauge":{"dataPoints":[{"asDouble":1,"asInt":"1"}]}}"#,
            "metrics[0].gauge.dataPoints[0].asInt: NumberDataPoint has more than one value: asDouble and asInt",
        ),
        (
            r#"{"sum":{"dataPoints":[{"exemplars":[{},{"asInt":1,"as_double":1}]}]}}"#,
            "metrics[0].sum.dataPoints[0].exemplars[1].asDouble: Exemplar has more than one value: asInt and asDouble",
        ),
    ] {
        let err = decode_err(&with_metrics(json));
        assert!(
            err.starts_with(&format!("resourceMetrics[0].scopeMetrics[0].{message}")),
            "{json}: {err}"
        );
    }
}

#[test]
fn rejects_bad_values() {
    for (json, message) in [
        (
            r#"{"sum":{"aggregationTemporality":"CUMULATIVE"}}"#,
            r#"sum.aggregationTemporality: invalid aggregationTemporality "CUMULATIVE": expected one of the AggregationTemporality names, such as "AGGREGATION_TEMPORALITY_CUMULATIVE", or an integer"#,
        ),
        (
            r#"{"gauge":{"dataPoints":[{"asDouble":"nan"}]}}"#,
            "gauge.dataPoints[0].asDouble: invalid value",
        ),
        (
            r#"{"gauge":{"dataPoints":[{"asInt":1.5}]}}"#,
            "gauge.dataPoints[0].asInt: invalid value",
        ),
        (
            r#"{"histogram":{"dataPoints":[{"bucketCounts":[1,2,-3]}]}}"#,
            "histogram.dataPoints[0].bucketCounts[2]: invalid value: integer `-3`",
        ),
        (
            r#"{"histogram":{"dataPoints":[{"explicitBounds":[1,"x"]}]}}"#,
            r#"histogram.dataPoints[0].explicitBounds[1]: invalid value: string "x""#,
        ),
        (
            r#"{"histogram":{"dataPoints":[{"bucketCounts":{}}]}}"#,
            "histogram.dataPoints[0].bucketCounts: invalid type: map, expected an array of numbers",
        ),
        (
            r#"{"exponentialHistogram":{"dataPoints":[{"scale":2147483648}]}}"#,
            "exponentialHistogram.dataPoints[0].scale: invalid value",
        ),
        (
            r#"{"exponentialHistogram":{"dataPoints":[{"negative":{"bucketCounts":[true]}}]}}"#,
            "exponentialHistogram.dataPoints[0].negative.bucketCounts[0]: invalid type: boolean",
        ),
        (
            r#"{"sum":{"isMonotonic":"true"}}"#,
            "sum.isMonotonic: invalid type: string",
        ),
        (
            r#"{"gauge":{"dataPoints":[{"exemplars":[{"traceId":"5b8efff798038103d269b633813fc6"}]}]}}"#,
            r#"gauge.dataPoints[0].exemplars[0].traceId: invalid traceId "5b8efff798038103d269b633813fc6": expected 32 hex digits"#,
        ),
        (
            r#"{"gauge":{"dataPoints":[{"exemplars":[{"spanId":"EEE19B7EC3C1B17"}]}]}}"#,
            r#"gauge.dataPoints[0].exemplars[0].spanId: invalid spanId "EEE19B7EC3C1B17": expected 16 hex digits"#,
        ),
        (
            r#"{"summary":{"dataPoints":[{"quantileValues":[{"quantile":[]}]}]}}"#,
            "summary.dataPoints[0].quantileValues[0].quantile: invalid type: sequence",
        ),
    ] {
        let err = decode_err(&with_metrics(json));
        assert!(
            err.starts_with(&format!(
                "resourceMetrics[0].scopeMetrics[0].metrics[0].{message}"
            )),
            "{json}: {err}"
        );
    }
}

#[test]
fn exemplar_ids_are_optional() {
    let request = decode(&with_metrics(
        r#"{"gauge":{"dataPoints":[{"exemplars":[{"traceId":"","spanId":null},{"asInt":"1"}]}]}}"#,
    ));
    let Data::Gauge(gauge) = data0(&request) else {
        panic!("not a gauge: {request:?}");
    };
    assert_eq!(gauge.data_points[0].exemplars[0], Exemplar::default());
}

#[test]
fn stops_past_its_budget() {
    let json = with_metrics(
        r#"{"histogram":{"dataPoints":[{"bucketCounts":[1,2,3],"explicitBounds":[1,2],
             "exemplars":[{}]}]}},{"gauge":{"dataPoints":[{},{}]}}"#,
    );
    // Every element of every repeated field, at its size in memory.
    let size = size_of::<ResourceMetrics>()
        + size_of::<ScopeMetrics>()
        + 2 * size_of::<Metric>()
        + size_of::<HistogramDataPoint>()
        + 3 * size_of::<u64>()
        + 2 * size_of::<f64>()
        + size_of::<Exemplar>()
        + 2 * size_of::<NumberDataPoint>();
    let kept = decode_metrics_within(json.as_bytes(), size).expect("exactly the budget");
    assert_eq!(kept.request, decode(&json));
    assert_eq!(kept.invalid, 0);
    assert_eq!(
        decode_metrics_within(json.as_bytes(), size - 1).unwrap_err(),
        DecodeError::OverBudget { budget: size - 1 }
    );
    // A long list of bucket counts, a few bytes of JSON each, is stopped as soon as it is
    // over, before the malformed part.
    let budget = 64 * 1024;
    let mut huge = format!(
        r#"{{"exponentialHistogram":{{"dataPoints":[{{"positive":{{"bucketCounts":[{}0]}}}}]}}}}"#,
        "0,".repeat(budget)
    );
    huge.truncate(huge.len() - 10);
    let json = with_metrics(&huge);
    assert_eq!(
        decode_metrics_within(json.as_bytes(), budget).unwrap_err(),
        DecodeError::OverBudget { budget }
    );
    assert!(decode_metrics(json.as_bytes()).is_err());
}
