//! Bounds on what clients choose: 10,000 tenants over time through a `batch` processor with
//! `metadata_keys` (idle tenants expire, new ones keep being served, memory stays flat), and a
//! flood of malformed requests that leaves a handful of log lines plus a count of the rest.

use std::collections::HashSet;
use std::process::Command;
use std::time::{Duration, Instant};

use prost::Message;
use wasmcol_tests::{
    Collector, free_port, output_span_ids, python, spans_request, wait_until, workspace_root,
};

const TENANTS: u64 = 10_000;
const WAVES: u64 = 10;
const SPANS_PER_REQUEST: usize = 2;
/// Requests in flight at once.
const SENDERS: u64 = 16;

fn tenants_config(grpc: u16, http: u16, metrics: u16) -> String {
    format!(
        r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        include_metadata: true
      http:
        endpoint: 127.0.0.1:{http}
        include_metadata: true
processors:
  batch:
    timeout: 50ms
    metadata_keys: [x-tenant]
    metadata_cardinality_limit: 100
    metadata_expiration: 200ms
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 50ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
    )
}

/// Sends tenant `t`'s request until it is accepted; returns how many 503s it got first.
/// Anything but 200 or 503 fails the test, as does a tenant refused for 30 s.
async fn send_tenant(url: String, t: u64) -> u32 {
    let tenant = format!("tenant-{t}");
    let body = spans_request(
        (t % 255) as u8 + 1,
        t * SPANS_PER_REQUEST as u64 + 1,
        SPANS_PER_REQUEST,
        0,
    )
    .encode_to_vec();
    let headers = [
        ("content-type", "application/x-protobuf"),
        ("x-tenant", tenant.as_str()),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut refused = 0;
    loop {
        let r = wasmcol_tests::http_request("POST", &url, &headers, body.clone())
            .await
            .unwrap_or_else(|e| panic!("{tenant}: {e}"));
        match r.status {
            200 => return refused,
            503 => {
                refused += 1;
                assert!(
                    Instant::now() < deadline,
                    "{tenant} was refused for 30 s: new tenants are locked out"
                );
                // A client honouring Retry-After would wait longer; this one is impatient.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            s => panic!(
                "{tenant}: answered {s}: {}",
                String::from_utf8_lossy(&r.body)
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tenants_over_time_are_served_and_memory_stays_flat() {
    let (grpc, http, metrics) = (free_port(), free_port(), free_port());
    let c = Collector::start(&tenants_config(grpc, http, metrics), http);
    let url = format!("http://127.0.0.1:{http}/v1/traces");
    let out = c.path("out.jsonl");

    let mut rss = Vec::new();
    let mut refusals = 0u64;
    let per_wave = TENANTS / WAVES;
    for wave in 0..WAVES {
        let first = wave * per_wave;
        let mut tasks = Vec::new();
        for s in 0..SENDERS {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let mut refused = 0u64;
                let mut t = first + s;
                while t < first + per_wave {
                    refused += u64::from(send_tenant(url.clone(), t).await);
                    t += SENDERS;
                }
                refused
            }));
        }
        for task in tasks {
            refusals += task.await.expect("sender");
        }
        // Every tenant of the wave falls silent: its shard expires (200ms) and is freed.
        tokio::time::sleep(Duration::from_millis(800)).await;
        rss.push(c.rss_bytes());
    }
    eprintln!(
        "RSS after each wave (MiB): {:?}; 503s on the way: {refusals}",
        rss.iter()
            .map(|b| format!("{:.1}", *b as f64 / 1048576.0))
            .collect::<Vec<_>>()
    );
    assert!(
        refusals > 0,
        "the cardinality limit (100) never refused anything: the test did not reach it"
    );

    // A real SDK client, as a tenant never seen before, once every earlier one has expired.
    let expected = c.path("sdk.json");
    let status = Command::new(python())
        .arg(workspace_root().join("tests/python/send_traces.py"))
        .args(["--protocol", "grpc", "--endpoint"])
        .arg(format!("127.0.0.1:{grpc}"))
        .args(["--traces", "3", "--expected"])
        .arg(&expected)
        .env("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=sdk-tenant")
        .status()
        .expect("run python");
    assert!(status.success(), "the SDK client failed");
    let sdk_spans: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&expected).unwrap()).unwrap();
    let sdk_ids: HashSet<u64> = sdk_spans
        .iter()
        .map(|s| u64::from_str_radix(s["span_id"].as_str().unwrap(), 16).unwrap())
        .collect();

    // Every span of every accepted request, and the SDK's, reach the file exactly once.
    let want = TENANTS as usize * SPANS_PER_REQUEST + sdk_ids.len();
    let delivered = wait_until(Duration::from_secs(30), || {
        output_span_ids(&out).len() >= want
    });
    let ids = output_span_ids(&out);
    assert!(
        delivered,
        "{} of {want} spans delivered\n{}",
        ids.len(),
        c.log()
    );
    let unique: HashSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "spans were written twice");
    for id in 1..=TENANTS * SPANS_PER_REQUEST as u64 {
        assert!(unique.contains(&id), "span {id} is missing");
    }
    assert!(sdk_ids.is_subset(&unique), "the SDK's spans are missing");

    // Flat memory: what 9,000 more tenants left behind, once expired, is within a small
    // margin of what the first thousand left (wave 2, after allocator warm-up).
    let (early, last) = (rss[1], *rss.last().unwrap());
    assert!(
        last <= early + 2 * 1024 * 1024,
        "RSS grew from {early} to {last} bytes over {TENANTS} tenants"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_malformed_requests_logs_a_handful_of_lines_and_counts_the_rest() {
    const REQUESTS: u64 = 2_000;
    let (grpc, http, metrics) = (free_port(), free_port(), free_port());
    let c = Collector::start(
        &wasmcol_tests::file_pipeline_config(grpc, http, metrics, "batch", ""),
        http,
    );
    let url = format!("http://127.0.0.1:{http}/v1/traces");
    for i in 0..REQUESTS {
        // Field 1 (resource_spans) with a length running past the end of the body.
        let body = vec![0x0a, 0xff, 0x01, (i % 251) as u8];
        let r = wasmcol_tests::http_request(
            "POST",
            &url,
            &[("content-type", "application/x-protobuf")],
            body,
        )
        .await
        .expect("request");
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    }

    // The lines logged plus the suppressed counts reported (at the latest about a second
    // after the 10 s window ends) account for every request.
    let tally = |log: &str| {
        let mut logged = 0u64;
        let mut suppressed = 0u64;
        for line in log
            .lines()
            .filter(|l| l.contains("malformed request refused"))
        {
            match line.split_once(" similar messages suppressed)") {
                Some((head, _)) => {
                    let n = head.rsplit('(').next().unwrap().trim();
                    suppressed += n.parse::<u64>().unwrap_or_else(|_| panic!("{line}"));
                }
                None => logged += 1,
            }
        }
        (logged, suppressed)
    };
    let complete = wait_until(Duration::from_secs(20), || {
        let (l, s) = tally(&c.log());
        l + s >= REQUESTS
    });
    let log = c.log();
    let (logged, suppressed) = tally(&log);
    eprintln!("{logged} lines logged, {suppressed} suppressed");
    assert!(complete, "{logged} logged + {suppressed} suppressed\n{log}");
    assert_eq!(logged + suppressed, REQUESTS, "{log}");
    assert!(
        logged <= 15,
        "{logged} malformed-request lines logged for {REQUESTS} requests"
    );
}
