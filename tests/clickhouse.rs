//! The `clickhouse` exporter against a real ClickHouse engine (chDB 26.x behind
//! `tests/python/clickhouse_front.py`, which serves the HTTP subset the exporter speaks), with
//! the unmodified OpenTelemetry Python SDK as the sender.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use wasmcol_tests::{Collector, binary, free_port, python, wait_until, workspace_root};

/// The chDB HTTP front as a child process; killed on drop. Its data directory outlives
/// restarts, as a server's would.
struct Front {
    child: Option<Child>,
    port: u16,
    data: PathBuf,
    password: String,
    /// Set when the front serves https: how the test's own queries connect.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Front {
    fn start(data: &Path, port: u16, password: &str, extra: &[&str]) -> Self {
        let mut f = Self {
            child: None,
            port,
            data: data.to_path_buf(),
            password: password.into(),
            tls: None,
        };
        f.spawn(extra);
        f
    }

    fn spawn(&mut self, extra: &[&str]) {
        let mut child = Command::new(python())
            .arg(workspace_root().join("tests/python/clickhouse_front.py"))
            .arg("--data")
            .arg(&self.data)
            .args([
                "--port",
                &self.port.to_string(),
                "--password",
                &self.password,
            ])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the chDB front (tests/run.sh installs chdb into .venv)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("LISTENING"),
            "the front did not start: {line:?}"
        );
        self.child = Some(child);
    }

    /// Kills the process (SIGKILL: nothing flushed on the way out but what the engine wrote).
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Runs a statement; rows of `FORMAT JSONEachRow` queries come back parsed.
    fn query(&self, sql: &str) -> Result<String, String> {
        let auth = base64_basic("default", &self.password);
        let request = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{sql}",
            sql.len()
        );
        let out = self
            .exchange(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let out = String::from_utf8_lossy(&out);
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        if head.starts_with("HTTP/1.1 200") {
            Ok(body.to_string())
        } else {
            Err(body.to_string())
        }
    }

    /// Sends `request` on a new connection (TLS when the front serves https) and reads the
    /// answer up to the close.
    fn exchange(&self, request: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut tcp = TcpStream::connect(("127.0.0.1", self.port))?;
        let mut out = Vec::new();
        let Some(config) = &self.tls else {
            tcp.write_all(request)?;
            tcp.read_to_end(&mut out)?;
            return Ok(out);
        };
        let name = rustls::pki_types::ServerName::from(std::net::IpAddr::from([127, 0, 0, 1]));
        let conn =
            rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(request)?;
        tls.flush()?;
        match tls.read_to_end(&mut out) {
            // Python's ssl closes without close_notify; the answer is complete by then.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
            r => {
                r?;
            }
        }
        Ok(out)
    }

    fn rows(&self, sql: &str) -> Vec<Json> {
        let text = self
            .query(&format!("{sql} FORMAT JSONEachRow"))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn count(&self, sql: &str) -> u64 {
        self.query(sql)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A number of a JSONEachRow row (64-bit integers may come quoted).
fn num(v: &Json) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

fn base64_basic(user: &str, password: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A collector: OTLP in on `grpc`, the clickhouse exporter(s) given as YAML out.
fn collector(grpc: u16, exporters: &str, names: &str) -> Collector {
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
exporters:
{exporters}
service:
  telemetry: {{ metrics: {{ address: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [{names}] }}
"#
    );
    Collector::start(&config, grpc)
}

/// Runs the Python SDK sender; returns the spans it recorded (the JSON of send_traces.py).
fn send(grpc: u16, traces: u32, service: &str, dir: &Path) -> Vec<Json> {
    let expected = dir.join(format!("expected-{service}-{}.json", free_port()));
    let status = Command::new(python())
        .arg(workspace_root().join("tests/python/send_traces.py"))
        .args([
            "--protocol",
            "grpc",
            "--endpoint",
            &format!("127.0.0.1:{grpc}"),
        ])
        .args([
            "--traces",
            &traces.to_string(),
            "--service",
            service,
            "--expected",
        ])
        .arg(&expected)
        .status()
        .expect("run python");
    assert!(status.success(), "the Python sender failed");
    serde_json::from_str(&std::fs::read_to_string(expected).unwrap()).unwrap()
}

/// An attribute value of send_traces.py's JSON as the exporter must write it into a map.
fn attr_string(v: &Json) -> String {
    let (kind, x) = v.as_object().unwrap().iter().next().unwrap();
    match kind.as_str() {
        "string" => x.as_str().unwrap().to_string(),
        "int" | "bool" => x.to_string(),
        "double" => x.as_f64().unwrap().to_string(),
        "array" => Json::Array(
            x.as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let (_, inner) = e.as_object().unwrap().iter().next().unwrap();
                    inner.clone()
                })
                .collect(),
        )
        .to_string(),
        other => panic!("unexpected attribute kind {other}"),
    }
}

fn attrs_map(attrs: &Json) -> Json {
    Json::Object(
        attrs
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), Json::String(attr_string(v))))
            .collect(),
    )
}

const KINDS: [&str; 6] = [
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];
const STATUSES: [&str; 3] = ["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

/// What the row of a sent span must hold, in the shape of the SELECT in the test.
fn expected_row(s: &Json) -> Json {
    let n = |k: &str| s[k].as_u64().unwrap();
    json!({
        "ts": n("start_time_unix_nano").to_string(),
        "TraceId": s["trace_id"],
        "SpanId": s["span_id"],
        "ParentSpanId": s["parent_span_id"],
        "TraceState": "",
        "SpanName": s["name"],
        "SpanKind": KINDS[n("kind") as usize],
        "ServiceName": s["resource"]["service.name"]["string"],
        "ResourceAttributes": attrs_map(&s["resource"]),
        "ScopeName": s["scope"][0],
        "ScopeVersion": s["scope"][1],
        "SpanAttributes": attrs_map(&s["attributes"]),
        "Duration": (n("end_time_unix_nano") - n("start_time_unix_nano")).to_string(),
        "StatusCode": STATUSES[n("status_code") as usize],
        "StatusMessage": s["status_message"],
        "event_ts": s["events"].as_array().unwrap().iter().map(|e| e["time_unix_nano"].as_u64().unwrap().to_string()).collect::<Vec<_>>(),
        "Events.Name": s["events"].as_array().unwrap().iter().map(|e| e["name"].clone()).collect::<Vec<_>>(),
        "Events.Attributes": s["events"].as_array().unwrap().iter().map(|e| attrs_map(&e["attributes"])).collect::<Vec<_>>(),
        "Links.TraceId": s["links"].as_array().unwrap().iter().map(|l| l["trace_id"].clone()).collect::<Vec<_>>(),
        "Links.SpanId": s["links"].as_array().unwrap().iter().map(|l| l["span_id"].clone()).collect::<Vec<_>>(),
        "Links.TraceState": s["links"].as_array().unwrap().iter().map(|_| "").collect::<Vec<_>>(),
        "Links.Attributes": s["links"].as_array().unwrap().iter().map(|l| attrs_map(&l["attributes"])).collect::<Vec<_>>(),
    })
}

const ROW_SELECT: &str = "SELECT toString(toUnixTimestamp64Nano(Timestamp)) AS ts, TraceId, SpanId, \
    ParentSpanId, TraceState, SpanName, SpanKind, ServiceName, ResourceAttributes, ScopeName, \
    ScopeVersion, SpanAttributes, toString(Duration) AS Duration, StatusCode, StatusMessage, \
    arrayMap(t -> toString(toUnixTimestamp64Nano(t)), Events.Timestamp) AS event_ts, \
    Events.Name, Events.Attributes, Links.TraceId, Links.SpanId, Links.TraceState, Links.Attributes";

fn exporter(name: &str, port: u16, extra: &str) -> String {
    let batch = if extra.contains("batch:") {
        ""
    } else {
        "    batch: { timeout: 200ms }\n"
    };
    format!(
        "  {name}:\n    endpoint: http://127.0.0.1:{port}\n    database: otel\n    password: pw\n\
         {batch}    retry_on_failure: {{ initial_interval: 200ms, max_interval: 1s, max_elapsed_time: 0s }}\n{extra}"
    )
}

#[test]
fn sdk_spans_land_field_by_field_and_are_found_by_trace_id() {
    let data = tempfile::tempdir().unwrap();
    let front = Front::start(data.path(), free_port(), "pw", &[]);
    let grpc = free_port();
    let c = collector(grpc, &exporter("clickhouse", front.port, ""), "clickhouse");
    let sent = send(grpc, 4, "checkout", c.dir.path());
    assert_eq!(sent.len(), 12);
    assert!(
        wait_until(Duration::from_secs(20), || front
            .count("SELECT count() FROM otel.otel_traces")
            == 12),
        "rows did not arrive:\n{}",
        c.log()
    );
    let rows: HashMap<String, Json> = front
        .rows(&format!("{ROW_SELECT} FROM otel.otel_traces"))
        .into_iter()
        .map(|r| (r["SpanId"].as_str().unwrap().to_string(), r))
        .collect();
    assert_eq!(rows.len(), 12, "one row per span");
    for s in &sent {
        let row = &rows[s["span_id"].as_str().unwrap()];
        let want = expected_row(s);
        for (column, value) in want.as_object().unwrap() {
            assert_eq!(&row[column], value, "column {column} of span {}", s["name"]);
        }
    }
    // Something worth checking is in there: events, links, typed attributes, an error.
    assert!(
        rows.values()
            .any(|r| r["Events.Name"] == json!(["cache.miss"]))
    );
    assert!(
        rows.values()
            .any(|r| r["Links.Attributes"] == json!([{"link.kind": "follows"}]))
    );
    assert!(
        rows.values()
            .any(|r| r["SpanAttributes"]["tags"] == json!(r#"["a","b","c1"]"#))
    );
    assert!(
        rows.values()
            .any(|r| r["StatusMessage"] == json!("deadline exceeded"))
    );

    // Lookup by trace id the way Grafana's data source does it: the time range from the
    // trace_id_ts table, then the spans within it.
    let trace = sent[0]["trace_id"].as_str().unwrap();
    let in_trace = sent.iter().filter(|s| s["trace_id"] == trace).count() as u64;
    assert!(
        wait_until(Duration::from_secs(5), || front.count(&format!(
            "SELECT count() FROM otel.otel_traces_trace_id_ts WHERE TraceId = '{trace}'"
        )) >= 1),
        "trace {trace} is not in the lookup table"
    );
    let found = front.count(&format!(
        "WITH '{trace}' AS trace_id, \
         (SELECT min(Start) FROM otel.otel_traces_trace_id_ts WHERE TraceId = trace_id) AS trace_start, \
         (SELECT max(End) + 1 FROM otel.otel_traces_trace_id_ts WHERE TraceId = trace_id) AS trace_end \
         SELECT count() FROM otel.otel_traces WHERE TraceId = trace_id \
         AND Timestamp >= trace_start AND Timestamp <= trace_end"
    ));
    assert_eq!(found, in_trace);
}

#[test]
fn created_schema_matches_the_collectors_column_by_column() {
    let data = tempfile::tempdir().unwrap();
    let front = Front::start(data.path(), free_port(), "pw", &[]);
    let grpc = free_port();
    let c = collector(
        grpc,
        &exporter(
            "clickhouse",
            front.port,
            "    ttl: 72h\n    span_metrics_tables: true\n",
        ),
        "clickhouse",
    );
    assert!(
        wait_until(Duration::from_secs(10), || {
            front.count(
            "SELECT count() FROM system.tables WHERE database = 'otel' AND name = 'otel_traces_span_metrics_10m_mv'"
        ) == 1
        }),
        "schema not created:\n{}",
        c.log()
    );
    let columns: Vec<(String, String, String)> = front
        .rows(
            "SELECT name, type, compression_codec FROM system.columns \
             WHERE database = 'otel' AND table = 'otel_traces' ORDER BY position",
        )
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().into(),
                r["type"].as_str().unwrap().into(),
                r["compression_codec"].as_str().unwrap().into(),
            )
        })
        .collect();
    let zstd = "CODEC(ZSTD(1))";
    let map = "Map(LowCardinality(String), String)";
    let expected: Vec<(&str, &str, &str)> = vec![
        ("Timestamp", "DateTime64(9)", "CODEC(Delta(8), ZSTD(1))"),
        ("TraceId", "String", zstd),
        ("SpanId", "String", zstd),
        ("ParentSpanId", "String", zstd),
        ("TraceState", "String", zstd),
        ("SpanName", "LowCardinality(String)", zstd),
        ("SpanKind", "LowCardinality(String)", zstd),
        ("ServiceName", "LowCardinality(String)", zstd),
        ("ResourceAttributes", map, zstd),
        ("ScopeName", "String", zstd),
        ("ScopeVersion", "String", zstd),
        ("SpanAttributes", map, zstd),
        ("Duration", "UInt64", "CODEC(T64, ZSTD(1))"),
        ("StatusCode", "LowCardinality(String)", zstd),
        ("StatusMessage", "String", zstd),
        ("Events.Timestamp", "Array(DateTime64(9))", zstd),
        ("Events.Name", "Array(LowCardinality(String))", zstd),
        (
            "Events.Attributes",
            "Array(Map(LowCardinality(String), String))",
            zstd,
        ),
        ("Links.TraceId", "Array(String)", zstd),
        ("Links.SpanId", "Array(String)", zstd),
        ("Links.TraceState", "Array(String)", zstd),
        (
            "Links.Attributes",
            "Array(Map(LowCardinality(String), String))",
            zstd,
        ),
        ("ResourceAttributeItems", "Array(String)", ""),
        ("SpanAttributeItems", "Array(String)", ""),
    ];
    assert_eq!(columns.len(), expected.len(), "{columns:#?}");
    for (got, want) in columns.iter().zip(&expected) {
        assert_eq!((got.0.as_str(), got.1.as_str(), got.2.as_str()), *want);
    }
    let table = &front.rows(
        "SELECT engine, partition_key, sorting_key, primary_key, engine_full FROM system.tables \
         WHERE database = 'otel' AND name = 'otel_traces'",
    )[0];
    assert_eq!(table["engine"], "MergeTree");
    assert_eq!(table["partition_key"], "toDate(Timestamp)");
    assert_eq!(
        table["sorting_key"],
        "ServiceName, SpanName, toDateTime(Timestamp), Timestamp"
    );
    assert_eq!(
        table["primary_key"],
        "ServiceName, SpanName, toDateTime(Timestamp)"
    );
    let full = table["engine_full"].as_str().unwrap();
    assert!(
        full.contains("TTL toDateTime(Timestamp) + toIntervalDay(3)"),
        "{full}"
    );
    assert!(full.contains("ttl_only_drop_parts = 1"), "{full}");
    let indexes: Vec<String> = front
        .rows(
            "SELECT name, type_full, expr, granularity FROM system.data_skipping_indices \
             WHERE database = 'otel' AND table = 'otel_traces' ORDER BY name",
        )
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {}",
                r["name"].as_str().unwrap(),
                r["expr"].as_str().unwrap(),
                r["type_full"].as_str().unwrap(),
                r["granularity"]
            )
        })
        .collect();
    assert_eq!(
        indexes,
        [
            "idx_duration Duration minmax 1",
            "idx_lower_span_name lower(SpanName) tokenbf_v1(32768, 3, 0) 8",
            "idx_res_attr_key mapKeys(ResourceAttributes) bloom_filter(0.01) 1",
            "idx_res_attr_value mapValues(ResourceAttributes) bloom_filter(0.01) 1",
            "idx_span_attr_key mapKeys(SpanAttributes) bloom_filter(0.01) 1",
            "idx_span_attr_value mapValues(SpanAttributes) bloom_filter(0.01) 1",
            "idx_trace_id TraceId bloom_filter(0.001) 1",
        ]
    );
    let lookup = &front.rows(
        "SELECT engine, partition_key, sorting_key FROM system.tables \
         WHERE database = 'otel' AND name = 'otel_traces_trace_id_ts'",
    )[0];
    assert_eq!(
        lookup,
        &json!({"engine": "AggregatingMergeTree", "partition_key": "toStartOfWeek(Start)", "sorting_key": "(TraceId)"})
    );
    let views: Vec<String> = front
        .rows("SELECT name FROM system.tables WHERE database = 'otel' AND engine = 'MaterializedView' ORDER BY name")
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        views,
        [
            "otel_traces_span_metrics_10m_mv",
            "otel_traces_span_metrics_30s_mv",
            "otel_traces_trace_id_ts_mv"
        ]
    );
}

#[test]
fn endpoint_down_then_up_loses_nothing_and_duplicates_nothing() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let grpc = free_port();
    // Small inserts, so the outage and the lost answers hit several of them.
    let c = collector(
        grpc,
        &exporter(
            "clickhouse",
            port,
            "    batch: { max_rows: 10, timeout: 100ms }\n",
        ),
        "clickhouse",
    );
    // Down from the start: the collector starts anyway, the schema waits for the server.
    let mut sent = send(grpc, 10, "checkout", c.dir.path());
    assert!(
        wait_until(Duration::from_secs(10), || c.log().contains("will retry")),
        "no retry while ClickHouse was down:\n{}",
        c.log()
    );
    // Up, but the first two answers are lost after the rows were written: the retries must
    // be recognised as such.
    let mut front = Front::start(data.path(), port, "pw", &["--drop-answers", "2"]);
    let all = |front: &Front, n: u64| {
        wait_until(Duration::from_secs(30), || {
            front.count("SELECT count() FROM otel.otel_traces") >= n
        })
    };
    assert!(all(&front, 30), "rows did not arrive:\n{}", c.log());
    // Down again in the middle of the traffic, then back.
    front.kill();
    sent.extend(send(grpc, 10, "checkout", c.dir.path()));
    std::thread::sleep(Duration::from_secs(2));
    front.spawn(&[]);
    assert!(
        all(&front, 60),
        "rows sent during the second outage did not arrive:\n{}",
        c.log()
    );
    std::thread::sleep(Duration::from_secs(2)); // anything late would be a duplicate
    let counts =
        &front.rows("SELECT count() AS rows, uniqExact(SpanId) AS spans FROM otel.otel_traces")[0];
    assert_eq!(
        (num(&counts["rows"]), num(&counts["spans"])),
        (60, 60),
        "{}",
        c.log()
    );
    let ids: Vec<String> = front
        .rows("SELECT SpanId FROM otel.otel_traces")
        .iter()
        .map(|r| r["SpanId"].as_str().unwrap().to_string())
        .collect();
    for s in &sent {
        assert!(ids.contains(&s["span_id"].as_str().unwrap().to_string()));
    }
}

#[test]
fn span_metrics_tables_agree_with_the_spans() {
    let data = tempfile::tempdir().unwrap();
    let front = Front::start(data.path(), free_port(), "pw", &[]);
    let grpc = free_port();
    let c = collector(
        grpc,
        &exporter(
            "clickhouse",
            front.port,
            "    span_metrics_tables: true\n    batch: { max_rows: 7, timeout: 100ms }\n",
        ),
        "clickhouse",
    );
    let mut sent = send(grpc, 5, "checkout", c.dir.path());
    sent.extend(send(grpc, 3, "payments", c.dir.path()));
    let total = sent.len() as u64;
    assert!(wait_until(Duration::from_secs(20), || front
        .count("SELECT count() FROM otel.otel_traces")
        == total));

    // Counted here from what the SDK sent, independently of ClickHouse.
    let mut want: BTreeMap<String, (u64, u64, u64, u64)> = BTreeMap::new();
    for s in &sent {
        let key = format!(
            "{}|{}|{}|{}",
            s["resource"]["service.name"]["string"].as_str().unwrap(),
            s["name"].as_str().unwrap(),
            KINDS[s["kind"].as_u64().unwrap() as usize],
            STATUSES[s["status_code"].as_u64().unwrap() as usize]
        );
        let d =
            s["end_time_unix_nano"].as_u64().unwrap() - s["start_time_unix_nano"].as_u64().unwrap();
        let e = want.entry(key).or_insert((0, 0, u64::MAX, 0));
        *e = (e.0 + 1, e.1 + d, e.2.min(d), e.3.max(d));
    }
    for table in [
        "otel_traces_span_metrics_30s",
        "otel_traces_span_metrics_10m",
    ] {
        let got: BTreeMap<String, (u64, u64, u64, u64)> = front
            .rows(&format!(
                "SELECT concat(ServiceName, '|', SpanName, '|', SpanKind, '|', StatusCode) AS key, \
                 sum(Count) AS c, sum(DurationSum) AS s, min(DurationMin) AS lo, max(DurationMax) AS hi \
                 FROM otel.{table} GROUP BY key"
            ))
            .iter()
            .map(|r| {
                let n = |k: &str| num(&r[k]);
                (r["key"].as_str().unwrap().to_string(), (n("c"), n("s"), n("lo"), n("hi")))
            })
            .collect();
        assert_eq!(got, want, "{table}");
    }
    // And per 30-second bucket, against the spans table itself.
    let by_bucket = |sql: &str| -> Vec<Json> { front.rows(sql) };
    assert_eq!(
        by_bucket(
            "SELECT toStartOfInterval(toDateTime(Timestamp), INTERVAL 30 SECOND) AS b, ServiceName, \
             count() AS c FROM otel.otel_traces GROUP BY b, ServiceName ORDER BY b, ServiceName"
        ),
        by_bucket(
            "SELECT TimeBucket AS b, ServiceName, sum(Count) AS c FROM otel.otel_traces_span_metrics_30s \
             GROUP BY b, ServiceName ORDER BY b, ServiceName"
        )
    );
}

#[test]
fn every_compression_and_async_insert_reach_the_engine() {
    let data = tempfile::tempdir().unwrap();
    let front = Front::start(data.path(), free_port(), "pw", &[]);
    let grpc = free_port();
    let mut exporters = String::new();
    let mut names = Vec::new();
    for (name, extra) in [
        ("lz4", "    compress: lz4\n"),
        ("zstd", "    compress: zstd\n"),
        ("gzip", "    compress: gzip\n"),
        ("none", "    compress: none\n"),
        ("async", "    async_insert: true\n"),
    ] {
        let id = format!("clickhouse/{name}");
        exporters.push_str(
            &exporter(&id, front.port, extra)
                .replace("database: otel", &format!("database: db_{name}")),
        );
        names.push(id);
    }
    let c = collector(grpc, &exporters, &names.join(", "));
    send(grpc, 2, "checkout", c.dir.path());
    for name in ["lz4", "zstd", "gzip", "none", "async"] {
        assert!(
            wait_until(Duration::from_secs(20), || front
                .count(&format!("SELECT count() FROM db_{name}.otel_traces"))
                == 6),
            "{name}: rows missing:\n{}",
            c.log()
        );
    }
}

#[test]
fn permanent_errors_are_reported_once_and_not_retried() {
    let data = tempfile::tempdir().unwrap();
    let front = Front::start(data.path(), free_port(), "pw", &[]);

    // With create_schema, a refused login stops the start with the server's message.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    let grpc = free_port();
    std::fs::write(
        &config,
        format!(
            "receivers: {{ otlp: {{ protocols: {{ grpc: {{ endpoint: \"127.0.0.1:{grpc}\" }} }} }} }}\n\
             exporters: {{ clickhouse: {{ endpoint: \"http://127.0.0.1:{}\", password: wrong }} }}\n\
             service: {{ telemetry: {{ metrics: {{ address: none }} }}, pipelines: {{ traces: {{ receivers: [otlp], exporters: [clickhouse] }} }} }}\n",
            front.port
        ),
    )
    .unwrap();
    let started = Instant::now();
    let out = Command::new(binary("wasmcol"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(
        stderr.contains("ClickHouse refused the schema")
            && stderr.contains("AUTHENTICATION_FAILED"),
        "{stderr}"
    );

    // Without it, the table missing: each batch fails once, is dropped, and says why.
    let grpc = free_port();
    let c = collector(
        grpc,
        &exporter("clickhouse", front.port, "    create_schema: false\n"),
        "clickhouse",
    );
    send(grpc, 1, "checkout", c.dir.path());
    assert!(
        wait_until(Duration::from_secs(10), || c
            .log()
            .contains("dropping the data")),
        "{}",
        c.log()
    );
    let log = c.log();
    assert!(
        log.contains("UNKNOWN_DATABASE") || log.contains("UNKNOWN_TABLE"),
        "{log}"
    );
    assert!(log.contains("permanent error, not retried"), "{log}");
    assert!(!log.contains("will retry"), "{log}");
}

/// A throwaway CA and the certificates it signed for the front (127.0.0.1) and for a client,
/// made with the openssl CLI in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run the openssl CLI");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let new_key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &new_key,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=wasmcol test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign",
                ],
            ]
            .concat(),
        );
        for (name, ext) in [
            (
                "server",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
            ),
            ("client", "extendedKeyUsage=clientAuth\n"),
        ] {
            std::fs::write(
                dir.path().join(format!("{name}.ext")),
                format!(
                    "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}"
                ),
            )
            .unwrap();
            let (key, csr, pem, extfile) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            let subject = format!("/CN={name}");
            openssl(
                &[
                    &["req"][..],
                    &new_key,
                    &["-keyout", &key, "-out", &csr, "-subj", &subject],
                ]
                .concat(),
            );
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &extfile,
            ]);
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    /// The test's own client: trusts the CA, presents the client certificate.
    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(self.path("ca.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let chain = CertificateDer::pem_file_iter(self.path("client.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(self.path("client.key")).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
        Arc::new(config)
    }

    /// A chDB front serving https with the server certificate; `mutual` also requires a client
    /// certificate signed by the CA.
    fn front(&self, data: &Path, mutual: bool) -> Front {
        let (cert, key, ca) = (
            self.path("server.pem"),
            self.path("server.key"),
            self.path("ca.pem"),
        );
        let mut args = vec!["--tls-cert", &cert, "--tls-key", &key];
        if mutual {
            args.extend(["--tls-client-ca", &ca]);
        }
        let mut front = Front::start(data, free_port(), "pw", &args);
        front.tls = Some(self.client_config());
        front
    }
}

#[test]
fn https_with_a_private_ca_a_client_certificate_or_no_verification() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    // The front requires a client certificate signed by the CA: both exporters present one.
    let front = pki.front(data.path(), true);
    let client_cert = format!(
        "      cert_file: {:?}\n      key_file: {:?}\n",
        pki.path("client.pem"),
        pki.path("client.key")
    );
    let https = |name: &str, database: &str, tls: &str| {
        exporter(name, front.port, &format!("    tls:\n{client_cert}{tls}"))
            .replace("http://", "https://")
            .replace("database: otel", &format!("database: {database}"))
    };
    let exporters = https(
        "clickhouse/ca",
        "otel",
        &format!("      ca_file: {:?}\n", pki.path("ca.pem")),
    ) + &https(
        "clickhouse/skip",
        "otel_skip",
        "      insecure_skip_verify: true\n",
    );
    let grpc = free_port();
    let c = collector(grpc, &exporters, "clickhouse/ca, clickhouse/skip");
    let sent = send(grpc, 3, "checkout", c.dir.path());
    for database in ["otel", "otel_skip"] {
        assert!(
            wait_until(Duration::from_secs(20), || front
                .count(&format!("SELECT count() FROM {database}.otel_traces"))
                == sent.len() as u64),
            "{database}: rows did not arrive over https:\n{}",
            c.log()
        );
    }
    let ids: Vec<String> = front
        .rows("SELECT SpanId FROM otel.otel_traces")
        .iter()
        .map(|r| r["SpanId"].as_str().unwrap().to_string())
        .collect();
    for s in &sent {
        assert!(ids.contains(&s["span_id"].as_str().unwrap().to_string()));
    }
    let log = c.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("tls.insecure_skip_verify is set"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("clickhouse/skip"), "{log}");
}

#[test]
fn an_untrusted_server_certificate_fails_clearly_and_is_not_retried() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let front = pki.front(data.path(), false);

    // With create_schema (the default), no tls.ca_file: the start stops on the certificate.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.yaml");
    let grpc = free_port();
    std::fs::write(
        &config,
        format!(
            "receivers: {{ otlp: {{ protocols: {{ grpc: {{ endpoint: \"127.0.0.1:{grpc}\" }} }} }} }}\n\
             exporters: {{ clickhouse: {{ endpoint: \"https://127.0.0.1:{}\", password: pw }} }}\n\
             service: {{ telemetry: {{ metrics: {{ address: none }} }}, pipelines: {{ traces: {{ receivers: [otlp], exporters: [clickhouse] }} }} }}\n",
            front.port
        ),
    )
    .unwrap();
    let stderr_path = dir.path().join("stderr");
    let mut child = Command::new(binary("wasmcol"))
        .arg("--config")
        .arg(&config)
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut status = None;
    wait_until(Duration::from_secs(15), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the collector should have stopped at start: {status:?}\n{stderr}"
    );
    assert!(
        stderr.contains("TLS with ClickHouse failed")
            && stderr.contains("invalid peer certificate: UnknownIssuer")
            && stderr.contains("set tls.ca_file"),
        "{stderr}"
    );

    // Without create_schema: the batch fails once with the certificate error and is dropped;
    // nothing retries a handshake that cannot succeed.
    let grpc = free_port();
    let c = collector(
        grpc,
        &exporter("clickhouse", front.port, "    create_schema: false\n")
            .replace("http://", "https://"),
        "clickhouse",
    );
    send(grpc, 1, "checkout", c.dir.path());
    assert!(
        wait_until(Duration::from_secs(10), || c
            .log()
            .contains("dropping the data")),
        "{}",
        c.log()
    );
    std::thread::sleep(Duration::from_secs(2)); // a retry loop would show by now
    let log = c.log();
    let failures = log
        .matches("invalid peer certificate: UnknownIssuer")
        .count();
    assert!((1..=2).contains(&failures), "{failures} failures:\n{log}");
    assert!(log.contains("set tls.ca_file"), "{log}");
    assert!(log.contains("permanent error, not retried"), "{log}");
    assert!(!log.contains("will retry"), "{log}");
    assert_eq!(
        front
            .query("SELECT count() FROM system.databases WHERE name = 'otel'")
            .map(|t| t.trim().to_string()),
        Ok("0".to_string()),
        "nothing reached the server"
    );
}

/// POSTs protobuf to the collector's OTLP/HTTP receiver at `path`; panics unless it answers
/// 200.
fn post_protobuf(port: u16, path: &str, body: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

/// The exporter writes a batch that still holds the received protobuf straight from those
/// bytes, and a batch a stage decoded from its structures; both must store the same rows.
/// The same request the Python SDK encoded (the unit tests' fixture, written by
/// `collector/src/exporters/clickhouse/testdata/sdk_request.py`) goes to two exporters: one
/// inserts it as received; the other, with `max_rows: 1`, has to cut the 45-span request
/// into single spans, which decodes it. ClickHouse must then hold identical tables.
#[test]
fn rows_from_the_received_bytes_equal_rows_from_decoded_spans() {
    let request = std::fs::read(
        workspace_root().join("collector/src/exporters/clickhouse/testdata/sdk_request.binpb"),
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let front = Front::start(data.path(), free_port(), "pw", &[]);
    let http = free_port();
    let exporters = [
        exporter("clickhouse/bytes", front.port, "")
            .replace("database: otel", "database: db_bytes"),
        exporter(
            "clickhouse/decoded",
            front.port,
            "    batch: { max_rows: 1, timeout: 200ms }\n",
        )
        .replace("database: otel", "database: db_decoded"),
    ]
    .concat();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:{http}" }}
exporters:
{exporters}
service:
  telemetry: {{ metrics: {{ address: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [clickhouse/bytes, clickhouse/decoded] }}
"#
    );
    let c = Collector::start(&config, http);
    post_protobuf(http, "/v1/traces", &request);
    for db in ["db_bytes", "db_decoded"] {
        assert!(
            wait_until(Duration::from_secs(30), || front
                .count(&format!("SELECT count() FROM {db}.otel_traces"))
                == 45),
            "{db}: rows missing:\n{}",
            c.log()
        );
    }
    let table = |db: &str| {
        front
            .query(&format!(
                "SELECT * FROM {db}.otel_traces ORDER BY SpanId, TraceId FORMAT JSONEachRow"
            ))
            .unwrap()
    };
    let (bytes, decoded) = (table("db_bytes"), table("db_decoded"));
    assert_eq!(bytes.lines().count(), 45);
    for (a, b) in bytes.lines().zip(decoded.lines()) {
        assert_eq!(a, b);
    }
    assert_eq!(bytes, decoded);
    // The request's harder values arrived: escapes in JSON arrays, non-finite doubles.
    let rows: Vec<Json> = bytes
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let services: std::collections::BTreeSet<&str> = rows
        .iter()
        .map(|r| r["ServiceName"].as_str().unwrap())
        .collect();
    assert_eq!(services, ["checkout", "payments"].into());
    assert!(rows.iter().any(|r| r["SpanAttributes"]["tags"]
        == json!(r#"["a","b\"q","c1","tab\there","line\nbreak","\u0001ctl"]"#)));
    assert!(
        rows.iter()
            .any(|r| r["SpanAttributes"]["limits"] == json!(r#"["+Inf","-Inf","NaN",2.5e-8]"#))
    );
}

/// A collector with one `clickhouse` exporter in a traces, a logs and a metrics pipeline.
fn every_signal_collector(grpc: u16, exporter: &str) -> Collector {
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
exporters:
{exporter}
service:
  telemetry: {{ metrics: {{ address: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [clickhouse] }}
    logs: {{ receivers: [otlp], exporters: [clickhouse] }}
    metrics: {{ receivers: [otlp], exporters: [clickhouse] }}
"#
    );
    Collector::start(&config, grpc)
}

/// The (name, type) of a table's columns, in order.
fn columns_of(front: &Front, table: &str) -> Vec<(String, String)> {
    front
        .rows(&format!(
            "SELECT name, type FROM system.columns WHERE database = 'otel' AND table = '{table}' \
             ORDER BY position"
        ))
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().into(),
                r["type"].as_str().unwrap().into(),
            )
        })
        .collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn sdk_logs_and_metrics_land_in_the_collectors_tables_and_grafanas_logs_query_finds_them() {
    const RECORDS: usize = 20;
    let data = tempfile::tempdir().unwrap();
    let front = Front::start(data.path(), free_port(), "pw", &[]);
    let grpc = free_port();
    let c = every_signal_collector(grpc, &exporter("clickhouse", front.port, "    ttl: 24h\n"));
    let started = unix_now();
    let expected_file = c.dir.path().join("expected.json");
    let status = Command::new(python())
        .arg(workspace_root().join("tests/python/send_logs_metrics.py"))
        .args([
            "--protocol",
            "grpc",
            "--endpoint",
            &format!("127.0.0.1:{grpc}"),
        ])
        .args(["--records", &RECORDS.to_string(), "--service", "checkout"])
        .arg("--expected")
        .arg(&expected_file)
        .status()
        .expect("run python");
    assert!(status.success(), "the Python sender failed");
    let finished = unix_now();
    let expected: Json =
        serde_json::from_str(&std::fs::read_to_string(&expected_file).unwrap()).unwrap();

    // Every record, once.
    assert!(
        wait_until(Duration::from_secs(20), || front
            .count("SELECT count() FROM otel.otel_logs")
            >= RECORDS as u64),
        "log rows did not arrive:\n{}",
        c.log()
    );
    let rows: HashMap<String, Json> = front
        .rows(
            "SELECT toUnixTimestamp64Nano(Timestamp) AS ts, toUnixTimestamp(TimestampTime) AS tt, \
             TraceId, SpanId, TraceFlags, SeverityText, SeverityNumber, ServiceName, Body, \
             ResourceSchemaUrl, ResourceAttributes, ScopeSchemaUrl, ScopeName, ScopeVersion, \
             ScopeAttributes, LogAttributes FROM otel.otel_logs",
        )
        .into_iter()
        .map(|r| (r["Body"].as_str().unwrap().to_string(), r))
        .collect();
    let sent = expected["logs"].as_array().unwrap();
    assert_eq!(sent.len(), RECORDS);
    assert_eq!(rows.len(), RECORDS, "one row per record");
    for s in sent {
        let body = s["body"].as_str().unwrap();
        let row = &rows[body];
        assert_eq!(row["SeverityText"], s["severity_text"], "{body}");
        assert_eq!(row["SeverityNumber"], s["severity_number"], "{body}");
        assert_eq!(row["TraceId"], s["trace_id"], "{body}");
        assert_eq!(row["SpanId"], s["span_id"], "{body}");
        // A record logged inside a span carries its W3C trace flags (sampled, and the SDK's
        // random-trace-id bit), one outside none.
        let sampled = num(&row["TraceFlags"]) & 1;
        assert_eq!(
            sampled,
            u64::from(s["trace_id"] != ""),
            "TraceFlags of {body}"
        );
        assert_eq!(row["ServiceName"], "checkout");
        assert_eq!(row["ResourceAttributes"]["service.name"], "checkout");
        assert_eq!(row["ResourceAttributes"]["deployment.environment"], "test");
        assert_eq!(row["ScopeName"], "wasmcol.e2e.grpc");
        for (k, v) in s["attributes"].as_object().unwrap() {
            let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            assert_eq!(row["LogAttributes"][k], v, "attribute {k} of {body}");
        }
        let ts = num(&row["ts"]);
        assert!(
            (started * 1_000_000_000..=(finished + 1) * 1_000_000_000).contains(&ts),
            "Timestamp {ts} of {body} is not the time it was logged"
        );
        assert_eq!(
            num(&row["tt"]),
            ts / 1_000_000_000,
            "TimestampTime of {body}"
        );
    }

    // Grafana's ClickHouse data source, logs query builder in OpenTelemetry mode: the time
    // range ($__fromTime/$__toTime), a service, a level and a body search, as it writes them.
    let grafana = |filter: &str| -> Vec<Json> {
        front.rows(&format!(
            "SELECT Timestamp as \"timestamp\", Body as \"body\", SeverityText as \"level\", \
             LogAttributes as \"labels\", TraceId as \"traceID\" FROM \"otel\".\"otel_logs\" \
             WHERE ( timestamp >= fromUnixTimestamp64Milli({}) AND timestamp <= fromUnixTimestamp64Milli({}) ) \
             AND ( ServiceName = 'checkout' ) {filter} ORDER BY timestamp DESC LIMIT 1000",
            started * 1000,
            (finished + 1) * 1000,
        ))
    };
    let bodies = |rows: Vec<Json>| -> Vec<String> {
        let mut b: Vec<String> = rows
            .iter()
            .map(|r| r["body"].as_str().unwrap().to_string())
            .collect();
        b.sort();
        b
    };
    let sent_where = |f: &dyn Fn(&Json) -> bool| -> Vec<String> {
        let mut b: Vec<String> = sent
            .iter()
            .filter(|s| f(s))
            .map(|s| s["body"].as_str().unwrap().to_string())
            .collect();
        b.sort();
        b
    };
    assert_eq!(grafana("").len(), RECORDS);
    let errors = grafana("AND ( level IN ('ERROR') ) AND ( body ILIKE '%PROCESSED%' )");
    assert_eq!(
        bodies(errors),
        sent_where(&|s| s["severity_text"] == "ERROR"),
        "level and ILIKE body search"
    );
    let order_7 = grafana("AND ( hasToken(Body, '7') )");
    assert_eq!(
        bodies(order_7),
        ["order 7 grpc processed"],
        "hasToken body search"
    );
    // Outside the time range: nothing.
    assert!(
        front
            .rows(&format!(
                "SELECT Body FROM otel.otel_logs WHERE Timestamp >= fromUnixTimestamp64Milli({})",
                (finished + 60) * 1000
            ))
            .is_empty()
    );

    // Every data point, in its type's table.
    let metrics = &expected["metrics"];
    assert!(
        wait_until(Duration::from_secs(20), || {
            front.count("SELECT count() FROM otel.otel_metrics_sum") >= 4
                && front.count("SELECT count() FROM otel.otel_metrics_histogram") >= 2
                && front.count("SELECT count() FROM otel.otel_metrics_gauge") >= 1
        }),
        "metric rows did not arrive:\n{}",
        c.log()
    );
    let common = "ServiceName, MetricName, MetricDescription, MetricUnit, Attributes, \
        ResourceAttributes, ScopeName, ScopeVersion, toUnixTimestamp(StartTimeUnix) AS start, \
        toUnixTimestamp(TimeUnix) AS time, Flags";
    let check_common = |r: &Json| {
        assert_eq!(r["ServiceName"], "checkout");
        assert_eq!(r["ResourceAttributes"]["service.name"], "checkout");
        assert_eq!(r["ScopeName"], "wasmcol.e2e");
        assert_eq!(r["ScopeVersion"], "1.0.0");
        let (start, time) = (num(&r["start"]), num(&r["time"]));
        // A gauge's point has no start time (0, the epoch).
        let gauge = r["MetricName"] == "temperature";
        assert!(
            (start >= started || gauge && start == 0) && start <= time && time <= finished + 1,
            "times {start}..{time} outside {started}..{finished}: {r}"
        );
    };
    let sums = front.rows(&format!(
        "SELECT {common}, Value, AggregationTemporality, IsMonotonic FROM otel.otel_metrics_sum"
    ));
    // The SDK's reader exports at its flush and again at shutdown: a cumulative point may
    // arrive twice, with the same value. Every series is there, every row right.
    let series = |rows: &[Json], key: &str| -> std::collections::BTreeSet<(String, String)> {
        rows.iter()
            .map(|r| {
                (
                    r["MetricName"].as_str().unwrap().to_string(),
                    r["Attributes"][key].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let want = |kind: &str| -> std::collections::BTreeSet<(String, String)> {
        metrics
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, m)| m["kind"] == kind)
            .flat_map(|(name, m)| {
                m["points"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(|k| (name.clone(), k.clone()))
            })
            .collect()
    };
    assert_eq!(series(&sums, "route"), want("sum"), "{sums:#?}");
    for r in &sums {
        check_common(r);
        let name = r["MetricName"].as_str().unwrap();
        let want = &metrics[name];
        assert_eq!(want["kind"], "sum", "{name}");
        let route = r["Attributes"]["route"].as_str().unwrap();
        assert_eq!(
            r["Value"].as_f64().unwrap(),
            want["points"][route].as_f64().unwrap(),
            "{name} {route}"
        );
        assert_eq!(r["IsMonotonic"], want["monotonic"], "{name}");
        assert_eq!(r["AggregationTemporality"], 2, "cumulative");
        assert_eq!(r["MetricUnit"], "1");
    }
    assert_eq!(
        sums.iter().find(|r| r["MetricName"] == "orders").unwrap()["MetricDescription"],
        "orders taken"
    );
    let hists = front.rows(&format!(
        "SELECT {common}, Count, Sum, BucketCounts, ExplicitBounds, Min, Max, \
         AggregationTemporality FROM otel.otel_metrics_histogram"
    ));
    assert_eq!(series(&hists, "route"), want("histogram"), "{hists:#?}");
    for r in &hists {
        check_common(r);
        assert_eq!(r["MetricName"], "latency");
        assert_eq!(r["MetricUnit"], "ms");
        let route = r["Attributes"]["route"].as_str().unwrap();
        let want = &metrics["latency"]["points"][route];
        let count = num(&r["Count"]);
        assert_eq!(count, want["count"].as_u64().unwrap(), "{route}");
        assert_eq!(r["Sum"].as_f64(), want["sum"].as_f64(), "{route}");
        let buckets: u64 = r["BucketCounts"].as_array().unwrap().iter().map(num).sum();
        assert_eq!(buckets, count, "bucket counts add up to the count");
        let bounds = r["ExplicitBounds"].as_array().unwrap();
        assert_eq!(
            r["BucketCounts"].as_array().unwrap().len(),
            bounds.len() + 1
        );
        // Recorded values are i for the route's i: its smallest and largest.
        let first = if route == "/r0" { 0.0 } else { 1.0 };
        let last = (RECORDS - if route == "/r0" { 2 } else { 1 }) as f64;
        assert_eq!(
            (r["Min"].as_f64().unwrap(), r["Max"].as_f64().unwrap()),
            (first, last)
        );
        assert_eq!(r["AggregationTemporality"], 2);
    }
    let gauges = front.rows(&format!(
        "SELECT {common}, Value FROM otel.otel_metrics_gauge"
    ));
    assert_eq!(series(&gauges, "room"), want("gauge"), "{gauges:#?}");
    for g in &gauges {
        check_common(g);
        assert_eq!(g["MetricUnit"], "Cel");
        assert_eq!(
            g["Value"].as_f64(),
            metrics["temperature"]["points"]["lab"].as_f64()
        );
    }
    // The SDK sends neither exponential histograms nor summaries: their tables exist, empty.
    assert_eq!(
        front.count("SELECT count() FROM otel.otel_metrics_exponential_histogram"),
        0
    );
    assert_eq!(
        front.count("SELECT count() FROM otel.otel_metrics_summary"),
        0
    );

    // The tables are the Collector's, column by column.
    let map = "Map(LowCardinality(String), String)";
    let logs: Vec<(String, String)> = [
        ("Timestamp", "DateTime64(9)"),
        ("TimestampTime", "DateTime"),
        ("TraceId", "String"),
        ("SpanId", "String"),
        ("TraceFlags", "UInt8"),
        ("SeverityText", "LowCardinality(String)"),
        ("SeverityNumber", "UInt8"),
        ("ServiceName", "LowCardinality(String)"),
        ("Body", "String"),
        ("ResourceSchemaUrl", "LowCardinality(String)"),
        ("ResourceAttributes", map),
        ("ScopeSchemaUrl", "LowCardinality(String)"),
        ("ScopeName", "String"),
        ("ScopeVersion", "LowCardinality(String)"),
        ("ScopeAttributes", map),
        ("LogAttributes", map),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(columns_of(&front, "otel_logs"), logs);
    let mut sum: Vec<(String, String)> = [
        ("ResourceAttributes", map),
        ("ResourceSchemaUrl", "String"),
        ("ScopeName", "String"),
        ("ScopeVersion", "String"),
        ("ScopeAttributes", map),
        ("ScopeDroppedAttrCount", "UInt32"),
        ("ScopeSchemaUrl", "String"),
        ("ServiceName", "LowCardinality(String)"),
        ("MetricName", "LowCardinality(String)"),
        ("MetricDescription", "String"),
        ("MetricUnit", "String"),
        ("Attributes", map),
        ("StartTimeUnix", "DateTime"),
        ("TimeUnix", "DateTime"),
        ("Value", "Float64"),
        ("Flags", "UInt32"),
        (
            "Exemplars.FilteredAttributes",
            "Array(Map(LowCardinality(String), String))",
        ),
        ("Exemplars.TimeUnix", "Array(DateTime)"),
        ("Exemplars.Value", "Array(Float64)"),
        ("Exemplars.SpanId", "Array(String)"),
        ("Exemplars.TraceId", "Array(String)"),
        ("AggregationTemporality", "Int32"),
        ("IsMonotonic", "Bool"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(columns_of(&front, "otel_metrics_sum"), sum);
    // The gauge table is the sum table without the last two.
    sum.truncate(sum.len() - 2);
    assert_eq!(columns_of(&front, "otel_metrics_gauge"), sum);
    let keys = front.rows(
        "SELECT name, partition_key, sorting_key, primary_key FROM system.tables \
         WHERE database = 'otel' AND name LIKE 'otel_%' AND engine = 'MergeTree' ORDER BY name",
    );
    let key = |name: &str| {
        keys.iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no table {name}: {keys:#?}"))
    };
    assert_eq!(key("otel_logs")["partition_key"], "toDate(TimestampTime)");
    assert_eq!(
        key("otel_logs")["sorting_key"],
        "ServiceName, TimestampTime, Timestamp"
    );
    assert_eq!(
        key("otel_logs")["primary_key"],
        "ServiceName, TimestampTime"
    );
    for t in [
        "otel_metrics_gauge",
        "otel_metrics_sum",
        "otel_metrics_histogram",
        "otel_metrics_exponential_histogram",
        "otel_metrics_summary",
    ] {
        assert_eq!(key(t)["partition_key"], "toDate(TimeUnix)", "{t}");
        assert_eq!(
            key(t)["sorting_key"],
            "ServiceName, MetricName, toStartOfHour(TimeUnix), cityHash64(Attributes), TimeUnix",
            "{t}"
        );
    }
    assert!(
        front
            .query("SHOW CREATE TABLE otel.otel_logs")
            .unwrap()
            .contains("TTL TimestampTime + toIntervalDay(1)")
    );
}

/// What the SDK does not send, sent as OTLP/HTTP protobuf: exponential histograms, summaries
/// and exemplars into their tables, log records without a time, with a map body or bytes, all
/// read back from the engine.
#[test]
fn exponential_histograms_summaries_exemplars_and_odd_log_records_reach_the_engine() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, KeyValue, KeyValueList, any_value::Value,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::metrics::v1::{
        Exemplar, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Metric,
        NumberDataPoint, ResourceMetrics, ScopeMetrics, Summary, SummaryDataPoint, exemplar,
        exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
        summary_data_point::ValueAtQuantile,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use prost::Message as _;

    let kv = |k: &str, v: Value| KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    };
    let resource = Some(Resource {
        attributes: vec![kv("service.name", Value::StringValue("hand".into()))],
        ..Default::default()
    });
    let t = 1_700_000_000_000_000_000u64;
    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource.clone(),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![
                    Metric {
                        name: "sizes".into(),
                        data: Some(Data::ExponentialHistogram(ExponentialHistogram {
                            data_points: vec![ExponentialHistogramDataPoint {
                                start_time_unix_nano: t,
                                time_unix_nano: t + 5_000_000_000,
                                count: 9,
                                sum: Some(40.5),
                                scale: -2,
                                zero_count: 1,
                                positive: Some(Buckets {
                                    offset: -3,
                                    bucket_counts: vec![4, 2],
                                }),
                                negative: Some(Buckets {
                                    offset: 1,
                                    bucket_counts: vec![2],
                                }),
                                min: Some(-2.0),
                                max: Some(30.0),
                                ..Default::default()
                            }],
                            aggregation_temporality: 1,
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "rtt".into(),
                        data: Some(Data::Summary(Summary {
                            data_points: vec![SummaryDataPoint {
                                time_unix_nano: t,
                                count: 10,
                                sum: 55.0,
                                quantile_values: vec![
                                    ValueAtQuantile {
                                        quantile: 0.5,
                                        value: 5.0,
                                    },
                                    ValueAtQuantile {
                                        quantile: 0.99,
                                        value: 9.5,
                                    },
                                ],
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    },
                    Metric {
                        name: "queue".into(),
                        data: Some(Data::Gauge(Gauge {
                            data_points: vec![NumberDataPoint {
                                time_unix_nano: t,
                                value: Some(number_data_point::Value::AsInt(-7)),
                                exemplars: vec![Exemplar {
                                    filtered_attributes: vec![kv(
                                        "user",
                                        Value::StringValue("u1".into()),
                                    )],
                                    time_unix_nano: t + 1_000_000_000,
                                    value: Some(exemplar::Value::AsDouble(2.5)),
                                    span_id: vec![0x0a; 8],
                                    trace_id: vec![0x0b; 16],
                                }],
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource,
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    LogRecord {
                        observed_time_unix_nano: t + 123,
                        body: Some(AnyValue {
                            value: Some(Value::KvlistValue(KeyValueList {
                                values: vec![kv("event", Value::StringValue("login".into()))],
                            })),
                        }),
                        ..Default::default()
                    },
                    LogRecord {
                        time_unix_nano: t + 456,
                        severity_number: 21,
                        severity_text: "FATAL".into(),
                        body: Some(AnyValue {
                            value: Some(Value::BytesValue(vec![1, 2, 3])),
                        }),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };

    let data = tempfile::tempdir().unwrap();
    let front = Front::start(data.path(), free_port(), "pw", &[]);
    let http = free_port();
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      http: {{ endpoint: "127.0.0.1:{http}" }}
exporters:
{}
service:
  telemetry: {{ metrics: {{ address: none }} }}
  pipelines:
    logs: {{ receivers: [otlp], exporters: [clickhouse] }}
    metrics: {{ receivers: [otlp], exporters: [clickhouse] }}
"#,
        exporter(
            "clickhouse",
            front.port,
            "    compress: zstd\n    logs_table_name: app_logs\n    metrics_tables: { summary: { name: app_summaries } }\n"
        )
    );
    let c = Collector::start(&config, http);
    post_protobuf(http, "/v1/metrics", &metrics.encode_to_vec());
    post_protobuf(http, "/v1/logs", &logs.encode_to_vec());
    assert!(
        wait_until(Duration::from_secs(20), || {
            front.count("SELECT count() FROM otel.app_logs") == 2
                && front.count("SELECT count() FROM otel.otel_metrics_exponential_histogram") == 1
                && front.count("SELECT count() FROM otel.app_summaries") == 1
                && front.count("SELECT count() FROM otel.otel_metrics_gauge") == 1
        }),
        "rows did not arrive:\n{}",
        c.log()
    );
    // A logs and metrics collector creates no traces tables.
    assert_eq!(
        front.count(
            "SELECT count() FROM system.tables WHERE database = 'otel' AND name LIKE 'otel_traces%'"
        ),
        0
    );
    let secs = t / 1_000_000_000;
    let exp = &front.rows(
        "SELECT ServiceName, MetricName, toUnixTimestamp(StartTimeUnix) AS start, \
         toUnixTimestamp(TimeUnix) AS time, Count, Sum, Scale, ZeroCount, PositiveOffset, \
         PositiveBucketCounts, NegativeOffset, NegativeBucketCounts, Min, Max, \
         AggregationTemporality FROM otel.otel_metrics_exponential_histogram",
    )[0];
    assert_eq!(
        (
            num(&exp["start"]),
            num(&exp["time"]),
            num(&exp["Count"]),
            num(&exp["ZeroCount"])
        ),
        (secs, secs + 5, 9, 1)
    );
    assert_eq!(exp["ServiceName"], "hand");
    assert_eq!(exp["Sum"], 40.5);
    assert_eq!(
        (
            &exp["Scale"],
            &exp["PositiveOffset"],
            &exp["NegativeOffset"]
        ),
        (&json!(-2), &json!(-3), &json!(1))
    );
    assert_eq!(
        exp["PositiveBucketCounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(num)
            .collect::<Vec<_>>(),
        [4, 2]
    );
    assert_eq!(
        exp["NegativeBucketCounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(num)
            .collect::<Vec<_>>(),
        [2]
    );
    assert_eq!((&exp["Min"], &exp["Max"]), (&json!(-2), &json!(30)));
    assert_eq!(exp["AggregationTemporality"], 1);
    let summary = &front.rows(
        "SELECT MetricName, Count, Sum, ValueAtQuantiles.Quantile AS q, \
         ValueAtQuantiles.Value AS v FROM otel.app_summaries",
    )[0];
    assert_eq!(summary["MetricName"], "rtt");
    assert_eq!((num(&summary["Count"]), &summary["Sum"]), (10, &json!(55)));
    assert_eq!(
        (&summary["q"], &summary["v"]),
        (&json!([0.5, 0.99]), &json!([5, 9.5]))
    );
    let gauge = &front.rows(
        "SELECT Value, Exemplars.FilteredAttributes AS fa, \
         arrayMap(t -> toUnixTimestamp(t), Exemplars.TimeUnix) AS et, Exemplars.Value AS ev, \
         Exemplars.SpanId AS es, Exemplars.TraceId AS etr FROM otel.otel_metrics_gauge",
    )[0];
    assert_eq!(gauge["Value"], -7);
    assert_eq!(gauge["fa"], json!([{"user": "u1"}]));
    assert_eq!(
        gauge["et"]
            .as_array()
            .unwrap()
            .iter()
            .map(num)
            .collect::<Vec<_>>(),
        [secs + 1]
    );
    assert_eq!(gauge["ev"], json!([2.5]));
    assert_eq!(gauge["es"], json!(["0a".repeat(8)]));
    assert_eq!(gauge["etr"], json!(["0b".repeat(16)]));
    let logs = front.rows(
        "SELECT toUnixTimestamp64Nano(Timestamp) AS ts, SeverityText, SeverityNumber, Body, \
         TraceId FROM otel.app_logs ORDER BY Timestamp",
    );
    assert_eq!(num(&logs[0]["ts"]), t + 123, "no time: the observed time");
    assert_eq!(logs[0]["Body"], r#"{"event":"login"}"#);
    assert_eq!(logs[0]["TraceId"], "");
    assert_eq!(num(&logs[1]["ts"]), t + 456);
    assert_eq!(
        (
            &logs[1]["SeverityText"],
            &logs[1]["SeverityNumber"],
            &logs[1]["Body"]
        ),
        (&json!("FATAL"), &json!(21), &json!("AQID"))
    );
}

/// The SQL examples of README's "Trace-analysis tables", as written there.
fn readme_trace_analysis_queries() -> Vec<String> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let section = readme
        .split("#### Trace-analysis tables")
        .nth(1)
        .expect("README has the section")
        .split("\n#")
        .next()
        .unwrap();
    section
        .split("```sql\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap().trim().to_string())
        .collect()
}

/// The analytics gateway's flow (configs/gateway-analytics.yaml) on planted patterns: every
/// trace is analysed into the trace-analysis tables, and tail sampling behind the connector
/// keeps exactly the traces with a finding (a clean corpus of the same shapes goes too).
#[test]
fn trace_analysis_tables_hold_the_findings_and_dependencies() {
    const TRACES: usize = 5;
    /// Spans per planted trace: root, N+1 (2 + 12), duplicates (3 × 2), fan-out (30 × 2),
    /// payment (3).
    const SPANS_PER_TRACE: u64 = 1 + 14 + 6 + 60 + 3 + 5;
    let data = tempfile::tempdir().unwrap();
    let front = Front::start(data.path(), free_port(), "pw", &[]);
    let grpc = free_port();
    // The connector reports every 300 ms: the tables get many readings of each series.
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc: {{ endpoint: "127.0.0.1:{grpc}" }}
connectors:
  trace_analysis: {{ decision_wait: 1s, metrics_flush_interval: 300ms }}
processors:
  tail_sampling:
    decision_wait: 500ms
    policies:
      - {{ name: findings, type: trace_analysis, trace_analysis: {{ patterns: [n_plus_one] }} }}
exporters:
{exporter}
service:
  telemetry: {{ metrics: {{ address: none }} }}
  pipelines:
    traces: {{ receivers: [otlp], exporters: [trace_analysis] }}
    traces/sampled: {{ receivers: [trace_analysis], processors: [tail_sampling], exporters: [clickhouse] }}
    metrics: {{ receivers: [trace_analysis], exporters: [clickhouse] }}
"#,
        exporter = exporter(
            "clickhouse",
            front.port,
            "    trace_analysis_tables: true\n"
        ),
    );
    let mut c = Collector::start(&config, grpc);
    let send = |clean: bool| -> Vec<String> {
        let mut cmd = Command::new(python());
        cmd.arg(workspace_root().join("tests/python/send_patterns.py"))
            .args(["--endpoint", &format!("127.0.0.1:{grpc}")])
            .args(["--traces", &TRACES.to_string()]);
        if clean {
            cmd.arg("--clean");
        }
        let out = cmd.output().expect("run send_patterns.py");
        assert!(
            out.status.success(),
            "send_patterns.py failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let sent: Json = serde_json::from_slice(&out.stdout).unwrap();
        sent["trace_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_string())
            .collect()
    };
    let trace_ids = send(false);
    assert_eq!(trace_ids.len(), TRACES);
    let clean_ids = send(true);
    assert_eq!(clean_ids.len(), TRACES);

    // Per key, each run's last reading, summed over runs.
    let findings = || -> BTreeMap<String, f64> {
        front
            .rows(
                "SELECT concat(Pattern, '|', ServiceName, '|', SpanName) AS key, sum(f) AS n FROM \
                 (SELECT Pattern, ServiceName, SpanName, StartTimeUnix, max(Findings) AS f \
                  FROM otel.trace_analysis_findings GROUP BY Pattern, ServiceName, SpanName, StartTimeUnix) \
                 GROUP BY key",
            )
            .iter()
            .map(|r| (r["key"].as_str().unwrap().to_string(), r["n"].as_f64().unwrap()))
            .collect()
    };
    let n = TRACES as f64;
    let expected: BTreeMap<String, f64> = [
        "n_plus_one|orders|GET /orders/{id}",
        "duplicate_call|frontend|GET /order",
        "fan_out|frontend|GET /order",
        "error_origin|payments|charge card",
        "serial_calls|frontend|render page",
    ]
    .into_iter()
    .map(|k| (k.to_string(), n))
    .collect();
    assert!(
        wait_until(Duration::from_secs(30), || findings() == expected),
        "findings: {:?}\n{}",
        findings(),
        c.log()
    );
    // Let a few more readings of the same totals arrive; the shutdown adds the last.
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(c.stop(), 0, "{}", c.log());
    assert_eq!(findings(), expected);
    let readings = front.count(
        "SELECT count() FROM otel.otel_metrics_sum WHERE MetricName = 'trace_analysis.findings'",
    );
    assert!(
        readings >= 3 * expected.len() as u64,
        "{readings} readings: the totals must hold over several"
    );
    for r in front.rows("SELECT DISTINCT WorstTraceId FROM otel.trace_analysis_findings") {
        let id = r["WorstTraceId"].as_str().unwrap();
        assert!(trace_ids.iter().any(|t| t == id), "worst trace {id}");
    }

    // Tail sampling kept the planted traces whole, marked with the policy, and no clean one;
    // each worst trace can be looked up.
    let kept: Vec<Json> = front.rows(
        "SELECT TraceId, count() AS spans, countIf(SpanAttributes['sampling.policy'] = 'findings') AS marked, \
         countIf(has(JSONExtract(SpanAttributes['trace_analysis.findings'], 'Array(String)'), 'n_plus_one')) AS n_plus_one \
         FROM otel.otel_traces GROUP BY TraceId ORDER BY TraceId",
    );
    let mut planted = trace_ids.clone();
    planted.sort();
    let got: Vec<&str> = kept
        .iter()
        .map(|r| r["TraceId"].as_str().unwrap())
        .collect();
    assert_eq!(got, planted, "kept traces (clean ones: {clean_ids:?})");
    for r in &kept {
        assert_eq!(num(&r["spans"]), SPANS_PER_TRACE, "{r}");
        assert_eq!(num(&r["marked"]), SPANS_PER_TRACE, "{r}");
        // The orders span and its 12 queries.
        assert_eq!(num(&r["n_plus_one"]), 13, "{r}");
    }
    let lost = &front.rows(
        "SELECT count() AS c FROM otel.trace_analysis_findings \
         WHERE WorstTraceId NOT IN (SELECT TraceId FROM otel.otel_traces)",
    )[0];
    assert_eq!(num(&lost["c"]), 0, "worst traces not kept");

    let dependencies: BTreeMap<String, (f64, f64, f64)> = front
        .rows(
            "SELECT concat(Client, '>', Server) AS key, sum(c) AS c, sum(f) AS f, sum(e) AS e FROM \
             (SELECT Client, Server, StartTimeUnix, max(Calls) AS c, max(FailedCalls) AS f, \
              max(FailedEntries) AS e FROM otel.trace_analysis_dependencies \
              GROUP BY Client, Server, StartTimeUnix) GROUP BY key",
        )
        .iter()
        .map(|r| {
            let v = |k: &str| r[k].as_f64().unwrap();
            (
                r["key"].as_str().unwrap().to_string(),
                (v("c"), v("f"), v("e")),
            )
        })
        .collect();
    // The clean traces' calls count too (15 prices each), without failures.
    let want: BTreeMap<String, (f64, f64, f64)> = [
        ("frontend>payments", (2.0 * n, n, n)),
        ("frontend>pricing", (45.0 * n, 0.0, 0.0)),
        ("frontend>users", (6.0 * n, 0.0, 0.0)),
        ("frontend>orders", (2.0 * n, 0.0, 0.0)),
        ("orders>postgresql/shop", (24.0 * n, 0.0, 0.0)),
        ("frontend>inventory", (2.0 * n, 0.0, 0.0)),
        ("frontend>shipping", (2.0 * n, 0.0, 0.0)),
        ("frontend>reviews", (2.0 * n, 0.0, 0.0)),
        ("frontend>ads", (2.0 * n, 0.0, 0.0)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(dependencies, want);

    // README's queries, as written there (in the test's database).
    let queries = readme_trace_analysis_queries();
    assert_eq!(queries.len(), 4, "{queries:?}");
    let run = |q: &str| front.rows(&q.replace("FROM trace_analysis_", "FROM otel.trace_analysis_"));
    let close = |a: &Json, b: f64| (a.as_f64().unwrap() - b).abs() < 1e-9;

    let top = run(&queries[0]);
    assert_eq!(top.len(), 1, "{top:?}");
    assert_eq!(
        (&top[0]["ServiceName"], &top[0]["SpanName"]),
        (&json!("orders"), &json!("GET /orders/{id}"))
    );
    assert!(close(&top[0]["Findings"], n), "{top:?}");
    assert!(trace_ids.contains(&top[0]["WorstTraceId"].as_str().unwrap().to_string()));

    let origins = run(&queries[1]);
    assert_eq!(origins.len(), 1, "{origins:?}");
    assert_eq!(origins[0]["ServiceName"], "payments");
    assert_eq!(origins[0]["SpanName"], "charge card");
    assert!(close(&origins[0]["ErrorOrigins"], n), "{origins:?}");

    let strong = run(&queries[2]);
    assert_eq!(strong.len(), 1, "{strong:?}");
    assert_eq!(
        (&strong[0]["Client"], &strong[0]["Server"]),
        (&json!("frontend"), &json!("payments"))
    );
    assert!(close(&strong[0]["Calls"], 2.0 * n) && close(&strong[0]["FailedCalls"], n));
    assert!(close(&strong[0]["Strength"], 1.0), "{strong:?}");

    // Per 400 ms trace (planted and clean alike): the root's own 95 ms; then "render page",
    // whose own time is 15 ms where its 4 calls run one after the other and 135 ms where they
    // run at once; then "charge card" (48 ms), the slowest leaf.
    let slowest = run(&queries[3]);
    assert_eq!(slowest[0]["SpanName"], "GET /order", "{slowest:?}");
    assert!(
        close(&slowest[0]["SelfTimeSeconds"], 2.0 * n * 0.095),
        "{slowest:?}"
    );
    // Its share is of all the critical paths' time (10 × 400 ms), not of the rows shown.
    assert!(close(&slowest[0]["Share"], 0.2375), "{slowest:?}");
    assert_eq!(slowest[1]["SpanName"], "render page", "{slowest:?}");
    assert!(
        close(&slowest[1]["SelfTimeSeconds"], n * (0.015 + 0.135)),
        "{slowest:?}"
    );
    assert_eq!(slowest[2]["SpanName"], "charge card", "{slowest:?}");
    assert!(
        close(&slowest[2]["SelfTimeSeconds"], 2.0 * n * 0.048),
        "{slowest:?}"
    );
}
