//! Every error path of the OTLP receiver, over real sockets: raw HTTP/1.1 requests (hyper) and
//! gRPC calls (tonic), each against its own `wasmcol` process. Status codes are the ones the
//! OTLP specification prescribes; every refusal must also be logged with the component and the
//! reason.

use std::io::{Read, Write};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};
use wasmcol_tests::{
    Collector, free_port, http_request, metric_value, output_span_ids, scrape_metrics,
    spans_request, wait_until,
};

const MIB: usize = 1024 * 1024;
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A collector with OTLP gRPC (`max_recv_msg_size_mib: 1`) and HTTP
/// (`max_request_body_size: 1MiB`) → batch → file `{dir}/out.jsonl`.
struct Env {
    c: Collector,
    grpc: u16,
    http: u16,
    metrics: u16,
}

impl Env {
    fn start() -> Self {
        Self::start_with("", "")
    }

    /// `extensions` is a top-level `extensions:` section (or empty); `service_extra` goes
    /// under `service:` (e.g. `  extensions: [health_check]`).
    fn start_with(extensions: &str, service_extra: &str) -> Self {
        let (grpc, http, metrics) = (free_port(), free_port(), free_port());
        let config = format!(
            r#"
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{grpc}
        max_recv_msg_size_mib: 1
      http:
        endpoint: 127.0.0.1:{http}
        max_request_body_size: 1MiB
processors:
  batch:
    timeout: 50ms
exporters:
  file:
    path: "{{dir}}/out.jsonl"
    flush_interval: 50ms
{extensions}
service:
{service_extra}
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:{metrics}
"#
        );
        // HTTP starts after gRPC, so once it listens both do.
        let c = Collector::start(&config, http);
        Self {
            c,
            grpc,
            http,
            metrics,
        }
    }

    fn traces_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/traces", self.http)
    }

    async fn post(&self, headers: &[(&str, &str)], body: Vec<u8>) -> wasmcol_tests::HttpReply {
        http_request("POST", &self.traces_url(), headers, body)
            .await
            .expect("HTTP request")
    }

    async fn grpc_client(&self) -> TraceServiceClient<Channel> {
        TraceServiceClient::connect(format!("http://127.0.0.1:{}", self.grpc))
            .await
            .expect("connect gRPC")
    }

    /// Sends `message` as the (uncompressed) body of one `Export` call, bypassing protobuf
    /// encoding.
    async fn grpc_raw(&self, message: Vec<u8>) -> Result<Bytes, Status> {
        let channel = Channel::from_shared(format!("http://127.0.0.1:{}", self.grpc))
            .expect("uri")
            .connect()
            .await
            .expect("connect gRPC");
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.expect("gRPC channel ready");
        grpc.unary(
            tonic::Request::new(Bytes::from(message)),
            http::uri::PathAndQuery::from_static(EXPORT_PATH),
            RawCodec,
        )
        .await
        .map(tonic::Response::into_inner)
    }

    /// Asserts that one log line names the receiver and contains every part of the reason.
    fn assert_logged(&self, reason_parts: &[&str]) {
        let mut parts = vec!["receiver=otlp"];
        parts.extend_from_slice(reason_parts);
        assert!(
            self.c.wait_for_log_line(&parts, Duration::from_secs(5)),
            "no log line with {parts:?}:\n{}",
            self.c.log()
        );
    }

    /// Waits until every id in `ids` is in the file output; returns the output's ids.
    fn wait_for_spans(&self, ids: &[u64]) -> Vec<u64> {
        let path = self.c.path("out.jsonl");
        let mut seen = Vec::new();
        let ok = wait_until(Duration::from_secs(10), || {
            seen = output_span_ids(&path);
            ids.iter().all(|id| seen.contains(id))
        });
        assert!(
            ok,
            "spans {ids:?} did not all reach the output; it holds {seen:?}\n{}",
            self.c.log()
        );
        seen
    }
}

/// Passes message bytes through untouched, so a test can send what no protobuf encoder
/// would produce.
#[derive(Clone, Copy)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A valid single-member gzip stream that inflates to `inflated` zero bytes.
fn gzip_bomb(inflated: usize) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; MIB];
    let mut left = inflated;
    while left > 0 {
        let n = left.min(zeros.len());
        e.write_all(&zeros[..n]).unwrap();
        left -= n;
    }
    e.finish().unwrap()
}

/// The `google.rpc.Status` in a protobuf error body.
fn rpc_status(body: &[u8]) -> tonic_types::Status {
    tonic_types::Status::decode(body).unwrap_or_else(|e| {
        panic!(
            "error body is not a google.rpc.Status ({e}): {:?}",
            String::from_utf8_lossy(body)
        )
    })
}

/// The `{"code":..,"message":..}` in a JSON error body.
fn json_status(body: &[u8]) -> (i64, String) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "error body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(body)
        )
    });
    (
        v["code"].as_i64().expect("numeric code in the JSON error"),
        v["message"]
            .as_str()
            .expect("message in the JSON error")
            .to_string(),
    )
}

fn content_type(r: &wasmcol_tests::HttpReply) -> &str {
    r.headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

const PROTO: (&str, &str) = ("content-type", "application/x-protobuf");
const JSON: (&str, &str) = ("content-type", "application/json");

// ---------------------------------------------------------------------------------------------
// OTLP/HTTP

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_truncated_protobuf_is_400_with_rpc_status() {
    let env = Env::start();
    let full = spans_request(1, 1, 5, 0).encode_to_vec();
    let truncated = full[..full.len() - 3].to_vec();
    let r = env.post(&[PROTO], truncated).await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(content_type(&r), "application/x-protobuf");
    let s = rpc_status(&r.body);
    assert_eq!(s.code, Code::InvalidArgument as i32, "{s:?}");
    assert!(s.message.contains("cannot decode"), "{s:?}");
    env.assert_logged(&["transport=\"http\"", "cannot decode the request body"]);
    // Nothing of the refused request reaches the output.
    std::thread::sleep(Duration::from_millis(300));
    assert!(output_span_ids(&env.c.path("out.jsonl")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_malformed_json_is_400_with_json_error() {
    let env = Env::start();
    let r = env
        .post(&[JSON], br#"{"resourceSpans": [{"scopeSpans": ["#.to_vec())
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(content_type(&r), "application/json");
    let (code, message) = json_status(&r.body);
    assert_eq!(code, Code::InvalidArgument as i64);
    assert!(message.contains("cannot decode"), "{message}");
    env.assert_logged(&["transport=\"http\"", "cannot decode the request body"]);

    // Well-formed JSON whose trace id is not hex, as OTLP/JSON requires, is malformed too.
    let r = env
        .post(
            &[JSON],
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"not-a-hex-trace-id!!","spanId":"eee19b7ec3c1b174","name":"x"}]}]}]}"#
                .to_vec(),
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    let (code, _) = json_status(&r.body);
    assert_eq!(code, Code::InvalidArgument as i64);
    std::thread::sleep(Duration::from_millis(300));
    assert!(output_span_ids(&env.c.path("out.jsonl")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_text_plain_is_415() {
    let env = Env::start();
    let body = spans_request(1, 1, 1, 0).encode_to_vec();
    let r = env.post(&[("content-type", "text/plain")], body).await;
    assert_eq!(r.status, 415, "{r:?}");
    env.assert_logged(&["unsupported content type", "text/plain"]);
    // No Content-Type at all is just as unsupported.
    let r = env
        .post(&[], spans_request(1, 1, 1, 0).encode_to_vec())
        .await;
    assert_eq!(r.status, 415, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_unknown_content_encoding_is_415() {
    let env = Env::start();
    let body = spans_request(1, 1, 1, 0).encode_to_vec();
    let r = env.post(&[PROTO, ("content-encoding", "br")], body).await;
    assert_eq!(r.status, 415, "{r:?}");
    let s = rpc_status(&r.body);
    assert!(s.message.contains("br"), "{s:?}");
    env.assert_logged(&["unsupported content encoding", "br"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_corrupt_gzip_is_400() {
    let env = Env::start();
    // A gzip header followed by bytes that are not a deflate stream.
    let mut body = vec![0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff];
    body.extend_from_slice(&[0xff; 64]);
    let r = env.post(&[PROTO, ("content-encoding", "gzip")], body).await;
    assert_eq!(r.status, 400, "{r:?}");
    let s = rpc_status(&r.body);
    assert_eq!(s.code, Code::InvalidArgument as i32, "{s:?}");
    env.assert_logged(&["transport=\"http\"", "cannot decompress"]);

    // A valid gzip stream cut short is corrupt too.
    let good = gzip(&spans_request(1, 1, 50, 100).encode_to_vec());
    let r = env
        .post(
            &[PROTO, ("content-encoding", "gzip")],
            good[..good.len() / 2].to_vec(),
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_body_over_max_request_body_size_is_413() {
    let env = Env::start();
    // Just under the 1 MiB limit: accepted.
    let under = spans_request(1, 1, 1, 900 * 1024).encode_to_vec();
    assert!(under.len() < MIB);
    let r = env.post(&[PROTO], under).await;
    assert_eq!(r.status, 200, "{r:?}");
    // Over it: refused before decoding.
    let over = spans_request(1, 2, 1, 1536 * 1024).encode_to_vec();
    let r = env.post(&[PROTO], over).await;
    assert_eq!(r.status, 413, "{r:?}");
    let s = rpc_status(&r.body);
    assert_eq!(s.code, Code::ResourceExhausted as i32, "{s:?}");
    env.assert_logged(&["transport=\"http\"", "exceeds max_request_body_size"]);
    // Only the accepted span is written.
    let seen = env.wait_for_spans(&[1]);
    std::thread::sleep(Duration::from_millis(300));
    let seen_after = output_span_ids(&env.c.path("out.jsonl"));
    assert_eq!(seen_after, vec![1], "before the wait: {seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_gzip_bomb_is_413_and_memory_stays_flat() {
    let env = Env::start();
    let bomb = gzip_bomb(200 * MIB);
    assert!(
        bomb.len() < 512 * 1024,
        "the bomb should be small on the wire: {} bytes",
        bomb.len()
    );
    // Warm up the connection handling and allocator with one ordinary request.
    let r = env
        .post(
            &[PROTO, ("content-encoding", "gzip")],
            gzip(&spans_request(1, 1, 10, 0).encode_to_vec()),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let rss_before = env.c.rss_bytes();
    assert!(rss_before > 0);
    for _ in 0..4 {
        let r = env
            .post(&[PROTO, ("content-encoding", "gzip")], bomb.clone())
            .await;
        assert_eq!(r.status, 413, "{r:?}");
        let s = rpc_status(&r.body);
        assert_eq!(s.code, Code::ResourceExhausted as i32, "{s:?}");
    }
    // A zstd bomb is stopped the same way.
    let zbomb = zstd::encode_all(std::io::repeat(0).take(200 * MIB as u64), 1).unwrap();
    assert!(zbomb.len() < 512 * 1024, "{} bytes", zbomb.len());
    for _ in 0..2 {
        let r = env
            .post(&[PROTO, ("content-encoding", "zstd")], zbomb.clone())
            .await;
        assert_eq!(r.status, 413, "{r:?}");
    }
    env.assert_logged(&["transport=\"http\"", "exceeds max_request_body_size"]);
    // The peak (VmHWM) catches a buffer that was inflated and freed again in between.
    let peak = env.c.peak_rss_bytes();
    let rss_after = env.c.rss_bytes();
    let limit = rss_before + 30 * MIB as u64;
    assert!(
        peak < limit && rss_after < limit,
        "memory grew: rss {} MiB before, {} MiB after, peak {} MiB",
        rss_before / MIB as u64,
        rss_after / MIB as u64,
        peak / MIB as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_gzip_and_zstd_bodies_are_accepted() {
    let env = Env::start();
    let r = env
        .post(
            &[PROTO, ("content-encoding", "gzip")],
            gzip(&spans_request(2, 100, 3, 50).encode_to_vec()),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(content_type(&r), "application/x-protobuf");
    let z = zstd::encode_all(&spans_request(2, 200, 3, 50).encode_to_vec()[..], 3).unwrap();
    let r = env.post(&[PROTO, ("content-encoding", "zstd")], z).await;
    assert_eq!(r.status, 200, "{r:?}");
    // JSON can be compressed too.
    let json = serde_json::to_vec(&spans_request(2, 300, 2, 0)).unwrap();
    let r = env
        .post(&[JSON, ("content-encoding", "gzip")], gzip(&json))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let expected = [100, 101, 102, 200, 201, 202, 300, 301];
    env.wait_for_spans(&expected);
    std::thread::sleep(Duration::from_millis(200));
    let mut seen = output_span_ids(&env.c.path("out.jsonl"));
    seen.sort();
    assert_eq!(seen, expected, "each span exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_get_is_405() {
    let env = Env::start();
    let r = http_request("GET", &env.traces_url(), &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(r.status, 405, "{r:?}");
    let allow = r
        .headers
        .get(http::header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(allow.contains("POST"), "405 without Allow: POST: {r:?}");
    // An unknown path is 404, not 405.
    let r = http_request(
        "POST",
        &format!("http://127.0.0.1:{}/v1/nope", env.http),
        &[PROTO],
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_with_hex_ids_is_accepted() {
    let env = Env::start();
    let body = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-client"}}]},"scopeSpans":[{"scope":{"name":"hand-written"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173","name":"json-span","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000","attributes":[{"key":"http.status","value":{"intValue":"200"}}]}]}]}]}"#;
    let r = env
        .post(
            &[("content-type", "application/json; charset=utf-8")],
            body.to_vec(),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(content_type(&r), "application/json");
    let path = env.c.path("out.jsonl");
    assert!(
        wait_until(Duration::from_secs(10), || !output_span_ids(&path)
            .is_empty()),
        "no output:\n{}",
        env.c.log()
    );
    let rs = wasmcol_tests::read_json_lines(&path);
    let spans = wasmcol_tests::all_spans(&rs);
    assert_eq!(spans.len(), 1);
    let s = spans[0];
    assert_eq!(hex::encode(&s.trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(hex::encode(&s.span_id), "eee19b7ec3c1b174");
    assert_eq!(hex::encode(&s.parent_span_id), "eee19b7ec3c1b173");
    assert_eq!(s.name, "json-span");
    assert_eq!(s.kind, 2);
    assert_eq!(s.start_time_unix_nano, 1_544_712_660_000_000_000);
    // And the file holds the ids as hex too, as OTLP/JSON requires.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("\"5b8efff798038103d269b633813fc60c\""),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// OTLP/gRPC

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_truncated_message_is_invalid_argument() {
    let env = Env::start();
    let full = spans_request(1, 1, 5, 0).encode_to_vec();
    let err = env
        .grpc_raw(full[..full.len() - 3].to_vec())
        .await
        .expect_err("a truncated message must be refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    env.assert_logged(&["grpc", "decode"]);
    // The same bytes untruncated go through the raw path fine.
    env.grpc_raw(full)
        .await
        .expect("the whole message is valid");
    env.wait_for_spans(&[1, 2, 3, 4, 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_garbage_message_is_invalid_argument() {
    let env = Env::start();
    let err = env
        .grpc_raw(b"\xff\xff\xff\xff this is not protobuf \x00\x01".to_vec())
        .await
        .expect_err("garbage must be refused");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    env.assert_logged(&["grpc", "decode"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_empty_span_flood_is_refused_for_its_decoded_size() {
    let env = Env::start();
    // 400,000 empty spans: 800 KB on the wire (under `max_recv_msg_size_mib: 1`), about
    // 100 MB once decoded (over 8 x 1 MiB).
    let message = wasmcol_tests::empty_spans_request(400_000);
    let err = env.grpc_raw(message).await.expect_err("refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("400000 spans"), "{err:?}");
    assert!(err.message().contains("max_recv_msg_size_mib"), "{err:?}");
    // Retrying the same request cannot help: no RetryInfo.
    use tonic_types::StatusExt as _;
    assert!(err.get_details_retry_info().is_none(), "{err:?}");
    // Served as before.
    env.grpc_client()
        .await
        .export(spans_request(1, 7, 2, 0))
        .await
        .expect("a normal request after the refusal");
    env.wait_for_spans(&[7, 8]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_oversize_message_is_resource_exhausted() {
    let env = Env::start();
    let mut client = env.grpc_client().await;
    // Under `max_recv_msg_size_mib: 1`: accepted.
    client
        .export(spans_request(1, 1, 1, 900 * 1024))
        .await
        .expect("a message under the limit is accepted");
    let err = client
        .export(spans_request(1, 2, 1, 1536 * 1024))
        .await
        .expect_err("a message over the limit must be refused");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    env.assert_logged(&["grpc", "too large"]);
    // The connection is still usable afterwards.
    let mut client = env.grpc_client().await;
    client
        .export(spans_request(1, 3, 1, 0))
        .await
        .expect("small message after the refusal");
    env.wait_for_spans(&[1, 3]);
    assert!(!output_span_ids(&env.c.path("out.jsonl")).contains(&2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_gzip_request_is_accepted() {
    let env = Env::start();
    let mut client = env
        .grpc_client()
        .await
        .send_compressed(CompressionEncoding::Gzip);
    client
        .export(spans_request(3, 10, 20, 200))
        .await
        .expect("gzip-compressed export");
    let mut client = env
        .grpc_client()
        .await
        .send_compressed(CompressionEncoding::Zstd);
    client
        .export(spans_request(3, 30, 5, 0))
        .await
        .expect("zstd-compressed export");
    let expected: Vec<u64> = (10..30).chain(30..35).collect();
    env.wait_for_spans(&expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_gzip_bomb_is_resource_exhausted() {
    let env = Env::start();
    // 2 MiB of zeros in a string attribute compress to a few KiB, but inflate past the limit.
    let mut client = env
        .grpc_client()
        .await
        .send_compressed(CompressionEncoding::Gzip);
    let err = client
        .export(spans_request(1, 1, 1, 2 * MIB))
        .await
        .expect_err("the inflated message is over the limit");
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    env.assert_logged(&["grpc", "size limit"]);
}

// ---------------------------------------------------------------------------------------------
// Telemetry and health

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_accepted_spans() {
    let env = Env::start();
    let mut client = env.grpc_client().await;
    let mut sent = 0u64;
    for i in 0..7u64 {
        let n = (i + 1) as usize;
        client
            .export(spans_request(4, i * 100 + 1, n, 0))
            .await
            .expect("export");
        sent += n as u64;
    }
    // A refused request does not count as accepted.
    let r = env.post(&[PROTO], b"\xff\xff\xff".to_vec()).await;
    assert_eq!(r.status, 400);
    let r = env
        .post(&[PROTO], spans_request(4, 5000, 3, 0).encode_to_vec())
        .await;
    assert_eq!(r.status, 200);

    let text = scrape_metrics(env.metrics).await;
    assert_eq!(
        metric_value(
            &text,
            r#"wasmcol_receiver_accepted_spans_total{receiver="otlp",transport="grpc"}"#
        ),
        Some(sent as f64),
        "{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            r#"wasmcol_receiver_accepted_spans_total{receiver="otlp",transport="http"}"#
        ),
        Some(3.0),
        "{text}"
    );
    let rss = metric_value(&text, "wasmcol_process_memory_rss_bytes").unwrap_or_else(|| {
        panic!("no wasmcol_process_memory_rss_bytes in:\n{text}");
    });
    let actual = env.c.rss_bytes() as f64;
    assert!(
        rss > 1e6 && (rss - actual).abs() < 64.0 * MIB as f64,
        "reported rss {rss}, /proc says {actual}"
    );
    assert!(
        text.contains("# TYPE wasmcol_receiver_accepted_spans counter"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_is_200_while_running() {
    let health = free_port();
    let env = Env::start_with(
        &format!("extensions:\n  health_check:\n    endpoint: 127.0.0.1:{health}\n"),
        "  extensions: [health_check]",
    );
    let r = http_request(
        "GET",
        &format!("http://127.0.0.1:{health}/"),
        &[],
        Vec::new(),
    )
    .await
    .expect("health check answers");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        String::from_utf8_lossy(&r.body).contains("available"),
        "{r:?}"
    );
    // Receiving data does not change it.
    let r = env
        .post(&[PROTO], spans_request(1, 1, 1, 0).encode_to_vec())
        .await;
    assert_eq!(r.status, 200);
    let r = http_request(
        "GET",
        &format!("http://127.0.0.1:{health}/"),
        &[],
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
}
