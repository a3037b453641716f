//! CORS on the OTLP/HTTP receiver, as a browser sees it: preflights and posts with an `Origin`
//! header, over real sockets, against one `wasmcol` process with a CORS-enabled receiver and
//! one without.

use std::time::Duration;

use prost::Message;
use wasmcol_tests::{
    Collector, HttpReply, free_port, http_request, output_span_ids, spans_request, wait_until,
};

fn header<'a>(r: &'a HttpReply, name: &str) -> Option<&'a str> {
    r.headers.get(name).map(|v| v.to_str().unwrap())
}

/// A header's comma-separated values, lowercased.
fn values(r: &HttpReply, name: &str) -> Vec<String> {
    header(r, name)
        .unwrap_or_default()
        .split(',')
        .map(|v| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .collect()
}

async fn preflight(url: &str, origin: &str) -> HttpReply {
    http_request(
        "OPTIONS",
        url,
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type,x-tenant"),
        ],
        Vec::new(),
    )
    .await
    .unwrap()
}

async fn post(url: &str, origin: &str, first_span: u64) -> HttpReply {
    let body = spans_request(1, first_span, 2, 0).encode_to_vec();
    http_request(
        "POST",
        url,
        &[
            ("origin", origin),
            ("content-type", "application/x-protobuf"),
        ],
        body,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsers_from_allowed_origins_only() {
    // One origin comes from a file (`${file:...}`, written with a final newline, which must
    // not end up in the origin or it would never match).
    let secrets = tempfile::tempdir().unwrap();
    let origin_file = secrets.path().join("origin");
    std::fs::write(&origin_file, "http://localhost:3000\n").unwrap();
    let (cors, plain) = (free_port(), free_port());
    let config = format!(
        r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{cors}
        cors:
          allowed_origins: ["https://*.example.com", "${{file:{origin}}}"]
          allowed_headers: [x-tenant]
          max_age: 600
  otlp/plain:
    protocols:
      http:
        endpoint: 127.0.0.1:{plain}
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 50ms
service:
  pipelines:
    traces:
      receivers: [otlp, otlp/plain]
      exporters: [file]
"#,
        origin = origin_file.display()
    );
    let mut c = tokio::task::block_in_place(|| Collector::start(&config, cors));
    let url = format!("http://127.0.0.1:{cors}/v1/traces");
    let plain_url = format!("http://127.0.0.1:{plain}/v1/traces");

    // Preflight from allowed origins: the origin echoed, POST and the headers allowed.
    for origin in [
        "https://app.example.com",
        "https://a.b.example.com",
        "http://localhost:3000",
    ] {
        let r = preflight(&url, origin).await;
        assert_eq!(r.status, 200, "{origin}: {:?}\n{}", r.headers, c.log());
        assert_eq!(
            header(&r, "access-control-allow-origin"),
            Some(origin),
            "{:?}",
            r.headers
        );
        assert_eq!(header(&r, "access-control-allow-credentials"), Some("true"));
        assert_eq!(values(&r, "access-control-allow-methods"), ["post"]);
        let allowed = values(&r, "access-control-allow-headers");
        for h in ["content-type", "x-tenant", "accept"] {
            assert!(allowed.iter().any(|a| a == h), "{h} not in {allowed:?}");
        }
        assert_eq!(header(&r, "access-control-max-age"), Some("600"));
        assert!(
            values(&r, "vary").iter().any(|v| v == "origin"),
            "{:?}",
            r.headers
        );
    }

    // Preflight from other origins: no Access-Control-Allow-Origin, so the browser refuses.
    for origin in [
        "https://example.com",
        "https://app.example.com.evil.net",
        "http://app.example.com",
        "http://localhost:3001",
    ] {
        let r = preflight(&url, origin).await;
        assert_eq!(
            header(&r, "access-control-allow-origin"),
            None,
            "{origin}: {:?}",
            r.headers
        );
    }

    // An actual POST from an allowed origin: accepted, and the browser may read the answer.
    let r = post(&url, "https://app.example.com", 1).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        header(&r, "access-control-allow-origin"),
        Some("https://app.example.com")
    );
    // From another origin the server still answers (CORS is enforced by the browser), but
    // without the header that would let the page read the answer.
    let r = post(&url, "https://evil.net", 11).await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "access-control-allow-origin"), None);

    // Without `cors`: no CORS headers at all, and OPTIONS is not a method the receiver takes.
    tokio::task::block_in_place(|| {
        assert!(wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", plain)).is_ok()
        }));
    });
    let r = preflight(&plain_url, "https://app.example.com").await;
    assert_eq!(r.status, 405, "{:?}", r.headers);
    assert!(
        !r.headers
            .keys()
            .any(|k| k.as_str().starts_with("access-control-")),
        "{:?}",
        r.headers
    );
    let r = post(&plain_url, "https://app.example.com", 21).await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "access-control-allow-origin"), None);

    let out = c.path("out.jsonl");
    tokio::task::block_in_place(|| {
        assert!(
            wait_until(Duration::from_secs(10), || output_span_ids(&out).len() >= 6),
            "{}",
            c.log()
        );
    });
    let mut ids = output_span_ids(&out);
    ids.sort();
    assert_eq!(ids, [1, 2, 11, 12, 21, 22]);
    assert_eq!(c.stop(), 0);
}
