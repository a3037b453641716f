//! `validate_metrics` held to `ExportMetricsServiceRequest::decode` with the machinery of the
//! trace tests, plus what only metrics have: repeated numeric fields (packed or not) and
//! oneof members that carry data points.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, Summary,
    SummaryDataPoint, exemplar, exponential_histogram_data_point::Buckets, metric::Data,
    number_data_point, summary_data_point::ValueAtQuantile,
};

use super::*;

/// Metrics: [`validate_metrics`].
struct Metrics;

const METRICS_SCHEMA: &[MessageSchema] = &[
    ("ExportMetricsServiceRequest", &[], &[(1, LEN)]),
    ("ResourceMetrics", &[1], &[(1, LEN), (2, LEN), (3, LEN)]),
    ("Resource", &[1, 1], &[(1, LEN), (2, VARINT), (3, LEN)]),
    (
        "EntityRef",
        &[1, 1, 3],
        &[(1, LEN), (2, LEN), (3, LEN), (4, LEN)],
    ),
    ("ScopeMetrics", &[1, 2], &[(1, LEN), (2, LEN), (3, LEN)]),
    (
        "InstrumentationScope",
        &[1, 2, 1],
        &[(1, LEN), (2, LEN), (3, LEN), (4, VARINT)],
    ),
    (
        "Metric",
        &[1, 2, 2],
        &[
            (1, LEN),
            (2, LEN),
            (3, LEN),
            (5, LEN),
            (7, LEN),
            (9, LEN),
            (10, LEN),
            (11, LEN),
            (12, LEN),
        ],
    ),
    ("Gauge", &[1, 2, 2, 5], &[(1, LEN)]),
    ("Sum", &[1, 2, 2, 7], &[(1, LEN), (2, VARINT), (3, VARINT)]),
    ("Histogram", &[1, 2, 2, 9], &[(1, LEN), (2, VARINT)]),
    (
        "ExponentialHistogram",
        &[1, 2, 2, 10],
        &[(1, LEN), (2, VARINT)],
    ),
    ("Summary", &[1, 2, 2, 11], &[(1, LEN)]),
    (
        "NumberDataPoint",
        &[1, 2, 2, 5, 1],
        &[
            (2, I64),
            (3, I64),
            (4, I64),
            (5, LEN),
            (6, I64),
            (7, LEN),
            (8, VARINT),
        ],
    ),
    (
        "HistogramDataPoint",
        &[1, 2, 2, 9, 1],
        &[
            (2, I64),
            (3, I64),
            (4, I64),
            (5, I64),
            (6, I64 | PACKED),
            (7, I64 | PACKED),
            (8, LEN),
            (9, LEN),
            (10, VARINT),
            (11, I64),
            (12, I64),
        ],
    ),
    (
        "ExponentialHistogramDataPoint",
        &[1, 2, 2, 10, 1],
        &[
            (1, LEN),
            (2, I64),
            (3, I64),
            (4, I64),
            (5, I64),
            (6, VARINT),
            (7, I64),
            (8, LEN),
            (9, LEN),
            (10, VARINT),
            (11, LEN),
            (12, I64),
            (13, I64),
            (14, I64),
        ],
    ),
    (
        "Buckets",
        &[1, 2, 2, 10, 1, 8],
        &[(1, VARINT), (2, VARINT | PACKED)],
    ),
    (
        "SummaryDataPoint",
        &[1, 2, 2, 11, 1],
        &[
            (2, I64),
            (3, I64),
            (4, I64),
            (5, I64),
            (6, LEN),
            (7, LEN),
            (8, VARINT),
        ],
    ),
    (
        "ValueAtQuantile",
        &[1, 2, 2, 11, 1, 6],
        &[(1, I64), (2, I64)],
    ),
    (
        "Exemplar",
        &[1, 2, 2, 5, 1, 5],
        &[(2, I64), (3, I64), (4, LEN), (5, LEN), (6, I64), (7, LEN)],
    ),
    (
        "KeyValue",
        &[1, 2, 2, 12],
        &[(1, LEN), (2, LEN), (3, VARINT)],
    ),
    (
        "AnyValue",
        &[1, 2, 2, 12, 2],
        &[
            (1, LEN),
            (2, VARINT),
            (3, VARINT),
            (4, I64),
            (5, LEN),
            (6, LEN),
            (7, LEN),
            (8, VARINT),
        ],
    ),
    ("ArrayValue", &[1, 2, 2, 12, 2, 5], &[(1, LEN)]),
    ("KeyValueList", &[1, 2, 2, 12, 2, 6], &[(1, LEN)]),
];

fn metrics_of(request: &ExportMetricsServiceRequest) -> impl Iterator<Item = &Metric> {
    request
        .resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
}

/// The data points of every kind prost decoded.
fn data_point_count(request: &ExportMetricsServiceRequest) -> usize {
    metrics_of(request)
        .map(|m| match &m.data {
            None => 0,
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(e)) => e.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
        })
        .sum()
}

/// What [`ValidatedMetrics::decoded_bytes`] bounds.
fn decoded_metrics_size(request: &ExportMetricsServiceRequest) -> usize {
    use std::mem::{size_of, size_of_val};
    fn exemplars(list: &[Exemplar]) -> usize {
        list.iter()
            .map(|e| {
                size_of::<Exemplar>()
                    + kvs_size(&e.filtered_attributes)
                    + e.span_id.len()
                    + e.trace_id.len()
            })
            .sum()
    }
    fn numbers(points: &[NumberDataPoint]) -> usize {
        points
            .iter()
            .map(|p| {
                size_of::<NumberDataPoint>() + kvs_size(&p.attributes) + exemplars(&p.exemplars)
            })
            .sum()
    }
    let mut total = 0;
    for rm in &request.resource_metrics {
        total += size_of::<ResourceMetrics>()
            + rm.schema_url.len()
            + resource_and_scope_size(rm.resource.as_ref(), None);
        for sm in &rm.scope_metrics {
            total += size_of::<ScopeMetrics>()
                + sm.schema_url.len()
                + resource_and_scope_size(None, sm.scope.as_ref());
            for m in &sm.metrics {
                total += size_of::<Metric>()
                    + m.name.len()
                    + m.description.len()
                    + m.unit.len()
                    + kvs_size(&m.metadata);
                total += match &m.data {
                    None => 0,
                    Some(Data::Gauge(g)) => numbers(&g.data_points),
                    Some(Data::Sum(s)) => numbers(&s.data_points),
                    Some(Data::Histogram(h)) => h
                        .data_points
                        .iter()
                        .map(|p| {
                            size_of::<HistogramDataPoint>()
                                + kvs_size(&p.attributes)
                                + exemplars(&p.exemplars)
                                + size_of_val(&p.bucket_counts[..])
                                + size_of_val(&p.explicit_bounds[..])
                        })
                        .sum(),
                    Some(Data::ExponentialHistogram(e)) => e
                        .data_points
                        .iter()
                        .map(|p| {
                            let buckets = |b: &Option<Buckets>| {
                                b.as_ref().map_or(0, |b| size_of_val(&b.bucket_counts[..]))
                            };
                            size_of::<ExponentialHistogramDataPoint>()
                                + kvs_size(&p.attributes)
                                + exemplars(&p.exemplars)
                                + buckets(&p.positive)
                                + buckets(&p.negative)
                        })
                        .sum(),
                    Some(Data::Summary(s)) => s
                        .data_points
                        .iter()
                        .map(|p| {
                            size_of::<SummaryDataPoint>()
                                + kvs_size(&p.attributes)
                                + size_of_val(&p.quantile_values[..])
                        })
                        .sum(),
                };
            }
        }
    }
    total
}

impl Signal for Metrics {
    type Request = ExportMetricsServiceRequest;
    type Counts = ValidatedMetrics;
    const SCHEMA: &'static [MessageSchema] = METRICS_SCHEMA;
    // ResourceMetrics.schema_url, EntityRef's four, ScopeMetrics.schema_url, the scope's name
    // and version, Metric.name, description and unit, KeyValue.key, AnyValue.string_value.
    const STRING_FIELDS: usize = 13;

    fn validate(buf: &[u8]) -> Result<ValidatedMetrics, WireError> {
        validate_metrics(buf)
    }

    fn check(counts: &ValidatedMetrics, request: &ExportMetricsServiceRequest, buf: &[u8]) {
        assert_eq!(counts.resource_metrics, request.resource_metrics.len());
        assert_eq!(counts.metrics, metrics_of(request).count());
        assert_eq!(
            counts.data_points,
            data_point_count(request),
            "input {buf:02x?}"
        );
        let decoded = decoded_metrics_size(request);
        assert!(
            counts.decoded_bytes >= decoded,
            "estimate {} below the decoded size {decoded}, input {buf:02x?}",
            counts.decoded_bytes
        );
    }

    fn items(counts: &ValidatedMetrics) -> usize {
        counts.metrics
    }

    fn request_items(request: &ExportMetricsServiceRequest) -> usize {
        metrics_of(request).count()
    }

    fn child(kind: &str, tag: u32) -> Option<&'static str> {
        Some(match (kind, tag) {
            ("Request", 1) => "ResourceMetrics",
            ("ResourceMetrics", 1) => "Resource",
            ("ResourceMetrics", 2) => "ScopeMetrics",
            ("ScopeMetrics", 1) => "InstrumentationScope",
            ("ScopeMetrics", 2) => "Metric",
            ("Metric", 5) => "Gauge",
            ("Metric", 7) => "Sum",
            ("Metric", 9) => "Histogram",
            ("Metric", 10) => "ExponentialHistogram",
            ("Metric", 11) => "Summary",
            ("Gauge" | "Sum", 1) => "NumberDataPoint",
            ("Histogram", 1) => "HistogramDataPoint",
            ("ExponentialHistogram", 1) => "ExponentialHistogramDataPoint",
            ("Summary", 1) => "SummaryDataPoint",
            ("ExponentialHistogramDataPoint", 8 | 9) => "Buckets",
            ("SummaryDataPoint", 6) => "ValueAtQuantile",
            ("NumberDataPoint", 5) | ("HistogramDataPoint", 8) => "Exemplar",
            ("ExponentialHistogramDataPoint", 11) => "Exemplar",
            ("Metric", 12)
            | ("NumberDataPoint", 7)
            | ("HistogramDataPoint", 9)
            | ("ExponentialHistogramDataPoint", 1)
            | ("SummaryDataPoint", 7)
            | ("Exemplar", 7) => "KeyValue",
            _ => return None,
        })
    }

    fn singular(kind: &str, tag: u32) -> bool {
        // A oneof member given twice merges like a singular message.
        matches!(
            (kind, tag),
            ("ResourceMetrics", 1)
                | ("ScopeMetrics", 1)
                | ("Metric", 5 | 7 | 9 | 10 | 11)
                | ("ExponentialHistogramDataPoint", 8 | 9)
        )
    }

    fn merges(kind: &str) -> bool {
        // Two metrics' fields in one: the second's data member merges into the first's or
        // replaces it. Data points: the value oneof, packed runs appended.
        matches!(
            kind,
            "Metric"
                | "NumberDataPoint"
                | "HistogramDataPoint"
                | "ExponentialHistogramDataPoint"
                | "Exemplar"
        )
    }

    fn packed(kind: &str, tag: u32) -> Option<u8> {
        match (kind, tag) {
            ("HistogramDataPoint", 6 | 7) => Some(I64),
            ("Buckets", 2) => Some(VARINT),
            _ => None,
        }
    }
}

fn number_point(i: u64, int: bool) -> NumberDataPoint {
    NumberDataPoint {
        attributes: vec![s("host", "a")],
        start_time_unix_nano: 1_763_700_000_000_000_000,
        time_unix_nano: 1_763_700_000_000_000_000 + i,
        exemplars: vec![Exemplar {
            filtered_attributes: vec![s("user", "u1")],
            time_unix_nano: 1_763_700_000_000_000_001,
            span_id: vec![1; 8],
            trace_id: vec![2; 16],
            value: Some(exemplar::Value::AsDouble(0.5)),
        }],
        flags: 0,
        value: Some(if int {
            number_data_point::Value::AsInt(i as i64)
        } else {
            number_data_point::Value::AsDouble(i as f64 / 2.0)
        }),
    }
}

fn metric(name: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        description: "d".into(),
        unit: "1".into(),
        metadata: vec![s("m", "v")],
        data: Some(data),
    }
}

/// One metric of every kind: a gauge (2 points), a sum (1), a histogram (2), an exponential
/// histogram (1) and a summary (1), plus a metric without data.
fn sample_metrics() -> ExportMetricsServiceRequest {
    let histogram_point = |i: u64| HistogramDataPoint {
        attributes: vec![s("route", "/")],
        start_time_unix_nano: 1,
        time_unix_nano: 2 + i,
        count: 6,
        sum: Some(12.5),
        bucket_counts: vec![1, 2, 3, 0],
        explicit_bounds: vec![0.5, 1.0, 2.5],
        exemplars: Vec::new(),
        flags: 0,
        min: Some(0.1),
        max: None,
    };
    let metrics = vec![
        metric(
            "g",
            Data::Gauge(Gauge {
                data_points: vec![number_point(1, false), number_point(2, true)],
            }),
        ),
        metric(
            "s",
            Data::Sum(Sum {
                data_points: vec![number_point(3, true)],
                aggregation_temporality: 2,
                is_monotonic: true,
            }),
        ),
        metric(
            "h",
            Data::Histogram(Histogram {
                data_points: vec![histogram_point(0), histogram_point(1)],
                aggregation_temporality: 1,
            }),
        ),
        metric(
            "e",
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![ExponentialHistogramDataPoint {
                    attributes: Vec::new(),
                    start_time_unix_nano: 1,
                    time_unix_nano: 2,
                    count: 9,
                    sum: Some(3.0),
                    scale: -2,
                    zero_count: 1,
                    positive: Some(Buckets {
                        offset: -3,
                        bucket_counts: vec![1, 300, 0, u64::MAX],
                    }),
                    negative: Some(Buckets {
                        offset: 0,
                        bucket_counts: Vec::new(),
                    }),
                    flags: 1,
                    exemplars: Vec::new(),
                    min: None,
                    max: Some(7.0),
                    zero_threshold: 1e-9,
                }],
                aggregation_temporality: 2,
            }),
        ),
        metric(
            "q",
            Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    attributes: Vec::new(),
                    start_time_unix_nano: 1,
                    time_unix_nano: 2,
                    count: 4,
                    sum: 10.0,
                    quantile_values: vec![
                        ValueAtQuantile {
                            quantile: 0.5,
                            value: 2.0,
                        },
                        ValueAtQuantile {
                            quantile: 0.99,
                            value: 4.0,
                        },
                    ],
                    flags: 0,
                }],
            }),
        ),
        Metric {
            name: "empty".into(),
            ..Default::default()
        },
    ];
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![s("service.name", "checkout")],
                dropped_attributes_count: 0,
                entity_refs: Vec::new(),
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: None,
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// A request holding one metric with body `metric`.
fn one_metric(metric: &[u8]) -> Vec<u8> {
    nest(&[1, 2, 2], metric)
}

#[test]
fn accepts_sample_metrics_and_counts_points() {
    let request = sample_metrics();
    let buf = request.encode_to_vec();
    let counts = same_as::<Metrics>(&buf).expect("valid");
    assert_eq!(
        (counts.resource_metrics, counts.metrics, counts.data_points),
        (1, 6, 7)
    );
    assert_eq!(counts.decoded_bytes, decoded_metrics_size(&request));
    assert_eq!(
        same_as::<Metrics>(&[]).expect("empty"),
        ValidatedMetrics::default()
    );
}

#[test]
fn truncated_metrics_fail_like_prost() {
    let buf = sample_metrics().encode_to_vec();
    for len in 0..buf.len() {
        let result = same_as::<Metrics>(&buf[..len]);
        assert_eq!(result.is_ok(), len == 0, "cut at {len}");
    }
}

#[test]
fn schema_rules_hold_for_every_metric_message() {
    bad_utf8_in_every_string_field::<Metrics>();
    wrong_wire_type_for_every_known_field::<Metrics>();
    unknown_fields_and_groups_are_skipped_at_every_level::<Metrics>();
    malformed_groups_fail_like_prost::<Metrics>();
    field_number_zero_and_wire_types_6_and_7_are_invalid::<Metrics>();
}

#[test]
fn data_member_given_again_merges_and_another_replaces() {
    let gauge = |points: usize| ld(5, &ld(1, b"").repeat(points));
    let sum = |points: usize| ld(7, &ld(1, b"").repeat(points));
    let histogram = |points: usize| ld(9, &ld(1, b"").repeat(points));
    let points = |metric: &[u8]| {
        same_as::<Metrics>(&one_metric(metric))
            .expect("valid")
            .data_points
    };
    // The same member merges: its data points add up.
    assert_eq!(points(&[gauge(2), gauge(3)].concat()), 5);
    // Another member replaces it, and the first member given again starts afresh.
    assert_eq!(points(&[gauge(2), sum(1)].concat()), 1);
    assert_eq!(points(&[gauge(2), sum(1), gauge(4)].concat()), 4);
    assert_eq!(points(&[sum(3), histogram(0)].concat()), 0);
    assert_eq!(
        points(&[histogram(1), ld(1, b"name"), histogram(2), field(30, I64)].concat()),
        3
    );
    // Each metric starts without a member: the next metric's gauge does not merge.
    let two = [ld(2, &gauge(2)), ld(2, &gauge(1))].concat();
    let counts = same_as::<Metrics>(&nest(&[1, 2], &two)).expect("valid");
    assert_eq!((counts.metrics, counts.data_points), (2, 3));
    // A member that fails fails the request, whichever member came before.
    let err = expect_kind_of::<Metrics>(
        &one_metric(&[gauge(1), ld(7, &[key(2, I64)].concat())].concat()),
        ErrorKind::UnexpectedWireType {
            actual: I64,
            expected: VARINT,
        },
    );
    assert_eq!(
        err.path()[..2],
        [("Sum", "aggregation_temporality"), ("Metric", "data")]
    );
}

#[test]
fn value_oneof_members_replace_each_other() {
    let point = [
        [key(4, I64), 1.5f64.to_le_bytes().to_vec()].concat(),
        [key(6, I64), 7i64.to_le_bytes().to_vec()].concat(),
    ]
    .concat();
    let buf = one_metric(&ld(5, &ld(1, &point)));
    assert_eq!(same_as::<Metrics>(&buf).expect("valid").data_points, 1);
    let request = ExportMetricsServiceRequest::decode(&buf[..]).expect("valid");
    let Some(Data::Gauge(g)) = &request.resource_metrics[0].scope_metrics[0].metrics[0].data else {
        panic!("a gauge")
    };
    assert_eq!(
        g.data_points[0].value,
        Some(number_data_point::Value::AsInt(7))
    );
    // A member with the wrong wire type is reported as the oneof field.
    let bad = one_metric(&ld(5, &ld(1, &[key(6, VARINT), varint(1)].concat())));
    let err = validate_metrics(&bad).expect_err("wrong wire type");
    assert_eq!(
        err.to_string(),
        "failed to decode Protobuf message: NumberDataPoint.value: Gauge.data_points: \
         Metric.data: ScopeMetrics.metrics: ResourceMetrics.scope_metrics: \
         ExportMetricsServiceRequest.resource_metrics: \
         invalid wire type: Varint (expected SixtyFourBit)"
    );
    same_as::<Metrics>(&bad).expect_err("wrong wire type");
}

/// A request holding one histogram data point with body `point`.
fn histogram_point(point: &[u8]) -> Vec<u8> {
    one_metric(&ld(9, &ld(1, point)))
}

/// A request holding one exponential histogram data point whose positive buckets are `buckets`.
fn buckets(buckets: &[u8]) -> Vec<u8> {
    one_metric(&ld(10, &ld(1, &ld(8, buckets))))
}

#[test]
fn repeated_numbers_packed_and_unpacked() {
    let f = |v: f64| v.to_le_bytes().to_vec();
    let u = |v: u64| v.to_le_bytes().to_vec();
    // Packed, unpacked, and both mixed and split, all append.
    for point in [
        ld(6, &[u(1), u(2), u(3)].concat()),
        [key(6, I64), u(1), key(6, I64), u(2), key(6, I64), u(3)].concat(),
        [ld(6, &u(1)), key(6, I64), u(2), ld(6, b""), ld(6, &u(3))].concat(),
        [
            ld(7, &[f(0.5), f(1.0)].concat()),
            key(7, I64),
            f(2.0),
            ld(6, &[u(1), u(2), u(3)].concat()),
        ]
        .concat(),
    ] {
        same_as::<Metrics>(&histogram_point(&point)).expect("valid");
    }
    let v = |n: u64| varint(n);
    for b in [
        ld(2, &[v(1), v(300), v(u64::MAX)].concat()),
        [key(2, VARINT), v(1), ld(2, &v(300)), key(2, VARINT), v(0)].concat(),
        ld(2, b""),
    ] {
        same_as::<Metrics>(&buckets(&b)).expect("valid");
    }
    // Decoded sizes count every element.
    let counts =
        same_as::<Metrics>(&histogram_point(&ld(6, &[u(1), u(2)].concat()))).expect("valid");
    let empty = same_as::<Metrics>(&histogram_point(b"")).expect("valid");
    assert_eq!(counts.decoded_bytes - empty.decoded_bytes, 16);
}

#[test]
fn packed_runs_of_the_wrong_length_fail_like_prost() {
    let u = |v: u64| v.to_le_bytes().to_vec();
    for (tag, field) in [(6, "bucket_counts"), (7, "explicit_bounds")] {
        for len in 1..=17usize {
            let run = [key(tag, LEN), varint(len as u64), vec![0x11; len]].concat();
            // At the end of the input: the last element runs out of bytes.
            let at_end = histogram_point(&run);
            // Followed by more fields of the point: the last element reads into them.
            let inside = histogram_point(&[run.clone(), key(4, I64), u(9)].concat());
            // Followed by bytes after the request: the same, read past the request's end.
            let padded = [at_end.clone(), vec![0; 8]].concat();
            for buf in [at_end, inside, padded] {
                let result = same_as::<Metrics>(&buf);
                if len % 8 == 0 {
                    continue;
                }
                let err = result.expect_err("not a multiple of 8");
                assert_eq!(err.path()[0], ("HistogramDataPoint", field));
                assert!(matches!(
                    err.kind(),
                    ErrorKind::BufferUnderflow | ErrorKind::DelimitedLengthExceeded
                ));
            }
        }
        // A run longer than the input.
        let err = expect_kind_of::<Metrics>(
            &histogram_point(&[key(tag, LEN), varint(100), u(1)].concat()),
            ErrorKind::BufferUnderflow,
        );
        assert_eq!(err.path()[0], ("HistogramDataPoint", field));
    }
    // Packed varints: one running past the run, or past the input, or too long.
    for b in [
        [key(2, LEN), varint(1), vec![0x80, 0x01]].concat(),
        [key(2, LEN), varint(2), vec![0x80, 0x80]].concat(),
        [key(2, LEN), varint(11), vec![0xff; 11]].concat(),
        [key(2, LEN), varint(10), vec![0xff; 9], vec![0x02]].concat(),
    ] {
        same_as::<Metrics>(&buckets(&b)).expect_err("bad run");
        same_as::<Metrics>(&buckets(&[b.clone(), key(1, VARINT), varint(1)].concat()))
            .expect_err("bad run");
    }
    // A packed run of a field that is not repeated is the wrong wire type.
    expect_kind_of::<Metrics>(
        &histogram_point(&ld(4, &u(1))),
        ErrorKind::UnexpectedWireType {
            actual: LEN,
            expected: I64,
        },
    );
}

#[test]
fn recursion_limit_for_nested_exemplar_attributes() {
    // Exemplar attributes sit deepest: ResourceMetrics, ScopeMetrics, Metric, Gauge,
    // NumberDataPoint, Exemplar, KeyValue and the value each spend one, leaving the value's
    // fields 92; each ArrayValue level spends two.
    let nested = |levels: usize| {
        let mut any = ld(1, b"leaf");
        for _ in 0..levels {
            any = ld(5, &ld(1, &any));
        }
        nest(&[1, 2, 2, 5, 1, 5, 7, 2], &any)
    };
    assert_eq!(recursion_boundary_of::<Metrics>(nested), 46);
}

fn exemplar() -> impl Strategy<Value = Exemplar> {
    (
        attributes(),
        any::<u64>(),
        id(8),
        id(16),
        option::of(prop_oneof![
            any::<f64>().prop_map(exemplar::Value::AsDouble),
            any::<i64>().prop_map(exemplar::Value::AsInt),
        ]),
    )
        .prop_map(
            |(filtered_attributes, time_unix_nano, span_id, trace_id, value)| Exemplar {
                filtered_attributes,
                time_unix_nano,
                span_id,
                trace_id,
                value,
            },
        )
}

fn number_data_points() -> impl Strategy<Value = Vec<NumberDataPoint>> {
    let point = (
        attributes(),
        any::<u64>(),
        any::<u64>(),
        vec(exemplar(), 0..2),
        any::<u32>(),
        option::of(prop_oneof![
            any::<f64>().prop_map(number_data_point::Value::AsDouble),
            any::<i64>().prop_map(number_data_point::Value::AsInt),
        ]),
    )
        .prop_map(
            |(attributes, start_time_unix_nano, time_unix_nano, exemplars, flags, value)| {
                NumberDataPoint {
                    attributes,
                    start_time_unix_nano,
                    time_unix_nano,
                    exemplars,
                    flags,
                    value,
                }
            },
        );
    vec(point, 0..3)
}

fn temporality() -> impl Strategy<Value = i32> {
    prop_oneof![0..3i32, any::<i32>()]
}

fn histogram_data_point() -> impl Strategy<Value = HistogramDataPoint> {
    (
        (attributes(), any::<u64>(), any::<u64>(), any::<u64>()),
        (option::of(any::<f64>()), vec(any::<u64>(), 0..5)),
        (vec(any::<f64>(), 0..4), vec(exemplar(), 0..2), any::<u32>()),
        (option::of(any::<f64>()), option::of(any::<f64>())),
    )
        .prop_map(
            |(
                (attributes, start_time_unix_nano, time_unix_nano, count),
                (sum, bucket_counts),
                (explicit_bounds, exemplars, flags),
                (min, max),
            )| HistogramDataPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                count,
                sum,
                bucket_counts,
                explicit_bounds,
                exemplars,
                flags,
                min,
                max,
            },
        )
}

fn exponential_histogram_data_point() -> impl Strategy<Value = ExponentialHistogramDataPoint> {
    let buckets = (
        any::<i32>(),
        vec(any::<u64>().prop_map(|v| v >> (v % 64)), 0..5),
    )
        .prop_map(|(offset, bucket_counts)| Buckets {
            offset,
            bucket_counts,
        });
    (
        (attributes(), any::<u64>(), any::<u64>(), any::<u64>()),
        (option::of(any::<f64>()), any::<i32>(), any::<u64>()),
        (
            option::of(buckets.clone()),
            option::of(buckets),
            any::<u32>(),
        ),
        (
            vec(exemplar(), 0..2),
            option::of(any::<f64>()),
            option::of(any::<f64>()),
            any::<f64>(),
        ),
    )
        .prop_map(
            |(
                (attributes, start_time_unix_nano, time_unix_nano, count),
                (sum, scale, zero_count),
                (positive, negative, flags),
                (exemplars, min, max, zero_threshold),
            )| ExponentialHistogramDataPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                count,
                sum,
                scale,
                zero_count,
                positive,
                negative,
                flags,
                exemplars,
                min,
                max,
                zero_threshold,
            },
        )
}

fn summary_data_point() -> impl Strategy<Value = SummaryDataPoint> {
    let quantile = (any::<f64>(), any::<f64>())
        .prop_map(|(quantile, value)| ValueAtQuantile { quantile, value });
    (
        (attributes(), any::<u64>(), any::<u64>(), any::<u64>()),
        (any::<f64>(), vec(quantile, 0..3), any::<u32>()),
    )
        .prop_map(
            |(
                (attributes, start_time_unix_nano, time_unix_nano, count),
                (sum, quantile_values, flags),
            )| SummaryDataPoint {
                attributes,
                start_time_unix_nano,
                time_unix_nano,
                count,
                sum,
                quantile_values,
                flags,
            },
        )
}

fn data() -> impl Strategy<Value = Option<Data>> {
    option::of(prop_oneof![
        number_data_points().prop_map(|data_points| Data::Gauge(Gauge { data_points })),
        (number_data_points(), temporality(), any::<bool>()).prop_map(
            |(data_points, aggregation_temporality, is_monotonic)| Data::Sum(Sum {
                data_points,
                aggregation_temporality,
                is_monotonic,
            })
        ),
        (vec(histogram_data_point(), 0..3), temporality()).prop_map(
            |(data_points, aggregation_temporality)| Data::Histogram(Histogram {
                data_points,
                aggregation_temporality,
            })
        ),
        (vec(exponential_histogram_data_point(), 0..3), temporality()).prop_map(
            |(data_points, aggregation_temporality)| {
                Data::ExponentialHistogram(ExponentialHistogram {
                    data_points,
                    aggregation_temporality,
                })
            }
        ),
        vec(summary_data_point(), 0..3)
            .prop_map(|data_points| Data::Summary(Summary { data_points })),
    ])
}

fn metrics_request() -> impl Strategy<Value = ExportMetricsServiceRequest> {
    let metric = (text(), text(), text(), attributes(), data()).prop_map(
        |(name, description, unit, metadata, data)| Metric {
            name,
            description,
            unit,
            metadata,
            data,
        },
    );
    let scope_metrics = (option::of(scope()), vec(metric, 0..5), text()).prop_map(
        |(scope, metrics, schema_url)| ScopeMetrics {
            scope,
            metrics,
            schema_url,
        },
    );
    let resource_metrics = (option::of(resource()), vec(scope_metrics, 0..3), text()).prop_map(
        |(resource, scope_metrics, schema_url)| ResourceMetrics {
            resource,
            scope_metrics,
            schema_url,
        },
    );
    vec(resource_metrics, 1..3)
        .prop_map(|resource_metrics| ExportMetricsServiceRequest { resource_metrics })
}

proptest! {
    #![proptest_config(differential_config())]

    #[test]
    fn prop_validate_metrics_matches_prost(
        request in metrics_request(),
        seed in any::<u64>(),
        mutations in vec(mutation(), 0..3),
    ) {
        differential::<Metrics>(&request, seed, &mutations);
    }

    #[test]
    fn prop_random_bytes_match_prost_as_metrics(buf in vec(any::<u8>(), 0..48)) {
        same_as::<Metrics>(&buf).ok();
    }
}
