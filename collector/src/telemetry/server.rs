//! The HTTP endpoint that serves `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use super::Metrics;

async fn render_metrics(State(m): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
}

/// Serves Prometheus text at `http://ADDRESS/metrics` until `stop` is cancelled.
pub async fn serve_metrics(
    address: &str,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = crate::net::bind(address, "service.telemetry.metrics").await?;
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(metrics);
    Ok(crate::serve::spawn(
        listener,
        crate::serve::Listener::new(
            crate::serve::Protocol::Http1(crate::serve::Http1Limits::INTERNAL),
            crate::serve::INTERNAL_MAX_CONNECTIONS,
        ),
        app,
        stop,
        "service.telemetry.metrics".into(),
    ))
}
