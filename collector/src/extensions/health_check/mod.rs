//! `health_check`: an HTTP endpoint for liveness/readiness probes.

mod config;

pub use config::HealthCheckConfig;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::component::{BuildContext, ExtensionConfig, Lifecycle};
use crate::telemetry::{Health, HealthState};

impl ExtensionConfig for HealthCheckConfig {
    fn build(&self, _ctx: &BuildContext, health: Health) -> anyhow::Result<Arc<dyn Lifecycle>> {
        Ok(Arc::new(HealthCheck {
            config: self.clone(),
            health,
            stop: CancellationToken::new(),
            task: Mutex::new(None),
        }))
    }
}

struct HealthCheck {
    config: HealthCheckConfig,
    health: Health,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

async fn status(State(health): State<Health>) -> (StatusCode, &'static str) {
    match health.get() {
        HealthState::Ready => (StatusCode::OK, "{\"status\":\"Server available\"}"),
        HealthState::Starting => (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"status\":\"Server starting\"}",
        ),
        HealthState::Stopping => (
            StatusCode::SERVICE_UNAVAILABLE,
            "{\"status\":\"Server stopping\"}",
        ),
    }
}

#[async_trait]
impl Lifecycle for HealthCheck {
    async fn start(&self) -> anyhow::Result<()> {
        let mut listener_config = crate::serve::Listener::new(
            crate::serve::Protocol::Http1(crate::serve::Http1Limits::INTERNAL),
            crate::serve::INTERNAL_MAX_CONNECTIONS,
        );
        if let Some(tls) = &self.config.tls {
            let config = tls
                .build("extensions.health_check.tls", &["http/1.1"])
                .map_err(anyhow::Error::msg)?;
            // Failed handshakes are logged; probes are not counted as a receiver's.
            listener_config = listener_config.with_tls(Arc::new(config), &Default::default());
        }
        let listener = crate::net::bind(&self.config.endpoint, "health_check").await?;
        let app = Router::new()
            .route(&self.config.path, get(status))
            .with_state(self.health.clone());
        let task = crate::serve::spawn(
            listener,
            listener_config,
            app,
            self.stop.clone(),
            "health_check".into(),
        );
        *self.task.lock().expect("health task lock") = Some(task);
        Ok(())
    }

    async fn shutdown(&self) {
        self.stop.cancel();
        let task = self.task.lock().expect("health task lock").take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}
