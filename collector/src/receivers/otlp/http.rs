//! OTLP/HTTP transport: `POST /v1/traces`, `/v1/logs`, `/v1/metrics` with protobuf or JSON
//! bodies.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prost::Message;
use tokio_util::sync::CancellationToken;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use super::config::{CorsConfig, HttpConfig};
use super::{DEFAULT_RETRY_AFTER, Ingest};
use crate::compute;
use crate::otlp::OtlpSignal;
use crate::otlp::compression::{DecompressError, Encoding, decompress};
use crate::otlp::intake::{self, Accepted, Refusal};
use crate::pipeline::{ConsumeError, Logs, Metrics, Traces};

#[derive(Clone)]
struct AppState {
    ingest: Ingest,
    limit: usize,
}

/// Why a body became no batch, as the handler answers it.
enum Failure {
    /// 413.
    TooLarge(String),
    /// 400.
    Malformed(String),
}

fn body_too_large(limit: usize) -> String {
    format!("request body exceeds max_request_body_size ({limit} bytes)")
}

#[derive(Clone, Copy, PartialEq)]
enum Format {
    Proto,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Proto => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }
}

/// The `google.rpc.Status` the OTLP spec puts in error response bodies.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

fn error(format: Format, status: StatusCode, grpc_code: tonic::Code, message: String) -> Response {
    let body = match format {
        Format::Proto => RpcStatus {
            code: grpc_code as i32,
            message,
        }
        .encode_to_vec(),
        Format::Json => serde_json::json!({ "code": grpc_code as i32, "message": message })
            .to_string()
            .into_bytes(),
    };
    (
        status,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}

async fn export<S: OtlpSignal>(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ingest = &state.ingest;
    // Before the body is read: a refused client's body is never taken in.
    let who = match &ingest.auth {
        None => None,
        Some(guard) => match guard.check(&headers).await {
            Ok(who) => Some(who),
            Err(r) => {
                let proto = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.contains("protobuf"));
                let mut resp = error(
                    if proto { Format::Proto } else { Format::Json },
                    StatusCode::UNAUTHORIZED,
                    tonic::Code::Unauthenticated,
                    r.message,
                );
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, guard.challenge());
                return resp;
            }
        },
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let format = match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Format::Proto,
        "application/json" => Format::Json,
        _ => {
            let reason = format!(
                "unsupported content type {content_type:?}: use application/x-protobuf or application/json"
            );
            ingest.malformed("http", &reason);
            return error(
                Format::Json,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                tonic::Code::InvalidArgument,
                reason,
            );
        }
    };
    let encoding = match Encoding::from_header(
        headers
            .get(header::CONTENT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    ) {
        Ok(e) => e,
        Err(reason) => {
            ingest.malformed("http", &reason);
            return error(
                format,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                tonic::Code::InvalidArgument,
                reason,
            );
        }
    };
    let too_large = |reason: String| {
        ingest.malformed("http", &reason);
        error(
            format,
            StatusCode::PAYLOAD_TOO_LARGE,
            tonic::Code::ResourceExhausted,
            reason,
        )
    };
    let limit = state.limit;
    // The wire body is capped at the same limit: a compressed body is never larger than its
    // content in any legitimate request.
    let raw: Bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => return too_large(body_too_large(limit)),
    };
    let budget = ingest.budget;
    let effort = compute::body_effort(raw.len(), encoding != Encoding::Identity);
    let decoded = compute::run(effort, move || -> Result<Accepted<S>, Failure> {
        let plain = match encoding {
            Encoding::Identity => raw,
            enc => match decompress(enc, &raw, limit) {
                Ok(b) => Bytes::from(b),
                Err(DecompressError::TooLarge { limit }) => {
                    return Err(Failure::TooLarge(body_too_large(limit)));
                }
                Err(DecompressError::Corrupt(e)) => {
                    return Err(Failure::Malformed(format!(
                        "cannot decompress the {enc:?} body: {e}"
                    )));
                }
            },
        };
        let accepted = match format {
            Format::Proto => intake::protobuf::<S>(plain, budget),
            Format::Json => intake::json::<S>(&plain, budget),
        };
        accepted.map_err(|refusal| match refusal {
            Refusal::Malformed(m) => {
                Failure::Malformed(format!("cannot decode the request body: {m}"))
            }
            Refusal::OverBudget(m) => Failure::TooLarge(m),
        })
    })
    .await;
    let accepted = match decoded {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(Failure::TooLarge(reason))) => {
            ingest.transport_metrics().over_budget.inc();
            return too_large(reason);
        }
        Ok(Err(Failure::Malformed(reason))) => {
            ingest.malformed("http", &reason);
            return error(
                format,
                StatusCode::BAD_REQUEST,
                tonic::Code::InvalidArgument,
                reason,
            );
        }
        Err(panicked) => {
            return error(
                format,
                StatusCode::INTERNAL_SERVER_ERROR,
                tonic::Code::Internal,
                panicked.to_string(),
            );
        }
    };
    let response = ingest.response(&accepted);
    let partial = accepted.partial_success().map(|m| (accepted.invalid, m));
    let batch = ingest.with_metadata(accepted.batch, &headers, who.as_ref());
    match ingest.ingest(batch).await {
        Ok(()) => {
            let body = match format {
                Format::Proto => response.encode_to_vec(),
                Format::Json => match partial {
                    None => b"{}".to_vec(),
                    Some((rejected, message)) => {
                        let mut partial = serde_json::Map::new();
                        // An int64: a string in proto3's JSON mapping.
                        partial.insert(S::REJECTED_JSON.into(), rejected.to_string().into());
                        partial.insert("errorMessage".into(), message.into());
                        serde_json::json!({ "partialSuccess": partial })
                            .to_string()
                            .into_bytes()
                    }
                },
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, format.content_type())],
                body,
            )
                .into_response()
        }
        Err(ConsumeError::Retryable {
            reason,
            retry_after,
        }) => {
            let secs = retry_after.unwrap_or(DEFAULT_RETRY_AFTER).as_secs().max(1);
            let mut resp = error(
                format,
                StatusCode::SERVICE_UNAVAILABLE,
                tonic::Code::Unavailable,
                reason,
            );
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                secs.to_string().parse().expect("digits"),
            );
            resp
        }
        Err(ConsumeError::Permanent { reason }) => error(
            format,
            StatusCode::BAD_REQUEST,
            tonic::Code::InvalidArgument,
            reason,
        ),
    }
}

/// The CORS layer `cors` describes, answering as the Collector's does: preflights (`OPTIONS`)
/// get the allowed method (POST), headers and max age; a request from an allowed origin gets
/// that origin back in `Access-Control-Allow-Origin` (never `*`, since credentials are allowed
/// as in the Collector), one from another origin gets no CORS headers, so the browser blocks
/// it. `None` when no origin is allowed.
fn cors_layer(cors: &CorsConfig) -> Option<CorsLayer> {
    if cors.allowed_origins.is_empty() {
        return None;
    }
    // Origins compare case-insensitively (scheme and host are).
    let origins: Vec<String> = cors
        .allowed_origins
        .iter()
        .map(|o| o.to_ascii_lowercase())
        .collect();
    let allow_origin = AllowOrigin::predicate(move |origin, _| {
        origin
            .to_str()
            .is_ok_and(|o| crate::config::wildcard::any_matches(&origins, &o.to_ascii_lowercase()))
    });
    let allow_headers = if cors.allowed_headers.iter().any(|h| h == "*") {
        AllowHeaders::mirror_request()
    } else {
        let mut names = vec![
            header::ACCEPT,
            header::ACCEPT_LANGUAGE,
            header::CONTENT_TYPE,
            header::CONTENT_LANGUAGE,
        ];
        if cors.allowed_headers.is_empty() {
            names.push(header::HeaderName::from_static("x-requested-with"));
        }
        // Validated with the config.
        names.extend(
            cors.allowed_headers
                .iter()
                .filter_map(|h| header::HeaderName::from_bytes(h.as_bytes()).ok()),
        );
        AllowHeaders::list(names)
    };
    let mut layer = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([axum::http::Method::POST])
        .allow_headers(allow_headers)
        .allow_credentials(true);
    if cors.max_age > 0 {
        layer = layer.max_age(std::time::Duration::from_secs(cors.max_age));
    }
    Some(layer)
}

/// Binds and serves until `stop` is cancelled; returns the server task, which ends once
/// requests in progress are answered or cut (see [`crate::serve`]).
pub async fn serve(
    cfg: &HttpConfig,
    ingest: Ingest,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener =
        crate::net::bind(&cfg.endpoint, &format!("receivers.{} http", ingest.id)).await?;
    let mut paths = Vec::new();
    let mut app = Router::new();
    if ingest.takes::<Traces>() {
        paths.push(cfg.traces_url_path.as_str());
        app = app.route(&cfg.traces_url_path, post(export::<Traces>));
    }
    if ingest.takes::<Logs>() {
        paths.push(cfg.logs_url_path.as_str());
        app = app.route(&cfg.logs_url_path, post(export::<Logs>));
    }
    if ingest.takes::<Metrics>() {
        paths.push(cfg.metrics_url_path.as_str());
        app = app.route(&cfg.metrics_url_path, post(export::<Metrics>));
    }
    tracing::info!(receiver = %ingest.id, endpoint = %cfg.endpoint, ?paths, tls = cfg.tls.is_some(), "OTLP/HTTP listening");
    let id = ingest.id.clone();
    let transport = ingest.transport_metrics();
    let listener_config = cfg
        .tls_listener(&ingest.id, &transport.tls_handshake_failures)?
        .counted(
            &transport.open_connections,
            &transport.connection_limit_reached,
        );
    let state = AppState {
        ingest,
        limit: cfg.max_request_body_size.bytes() as usize,
    };
    // We enforce our own limit (before and after decompression).
    let mut app = app.layer(DefaultBodyLimit::disable());
    if let Some(cors) = cfg.cors.as_ref().and_then(cors_layer) {
        app = app.layer(cors);
    }
    let app = app.with_state(state);
    Ok(crate::serve::spawn(
        listener,
        listener_config,
        app,
        stop,
        format!("receivers.{id} http"),
    ))
}
