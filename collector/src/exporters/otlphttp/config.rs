use std::collections::BTreeMap;
use std::sync::Arc;

use http::Uri;
use http::header::{HeaderName, HeaderValue};
use serde::Deserialize;

use super::client::HttpSender;
use crate::component::nested;
use crate::component::{BuildContext, Exporter, ExporterConfig, Problem, Validate};
use crate::config::Duration;
use crate::config::opaque::Opaque;
use crate::config::tls::client::ClientTlsConfig;
use crate::exporters::sending_queue::{QueueConfig, RetryConfig, SendingQueue};
use crate::net::Compression;
use crate::otlp::OtlpSignal;
use crate::pipeline::SignalKind;

/// How request bodies are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Protobuf (`application/x-protobuf`), the OTLP/HTTP default.
    #[default]
    Proto,
    /// OTLP/JSON (`application/json`).
    Json,
}

/// `exporters.otlphttp`: OTLP over HTTP/1.1.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpHttpExporterConfig {
    /// Base URL, `http://host:port` or `https://host:port` (TLS); traces are posted to
    /// `ENDPOINT/v1/traces`, logs to `ENDPOINT/v1/logs`, metrics to `ENDPOINT/v1/metrics`.
    #[serde(default)]
    pub endpoint: String,
    /// Full URL for traces; overrides `endpoint`.
    #[serde(default)]
    pub traces_endpoint: String,
    /// Full URL for logs; overrides `endpoint`.
    #[serde(default)]
    pub logs_endpoint: String,
    /// Full URL for metrics; overrides `endpoint`.
    #[serde(default)]
    pub metrics_endpoint: String,
    /// TLS settings for an `https://` URL (unused for `http://`).
    #[serde(default)]
    pub tls: ClientTlsConfig,
    /// `proto` (default) or `json`.
    #[serde(default)]
    pub encoding: Encoding,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// HTTP headers sent with every request (`authorization: Bearer ...`); values are
    /// secrets, never printed.
    #[serde(default)]
    pub headers: BTreeMap<String, Opaque>,
    /// Bound on each attempt (connect, send, answer); `0` = none. The OpenTelemetry
    /// Collector's otlphttp default, 30s.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// The queue between the pipeline and the senders.
    #[serde(default)]
    pub sending_queue: QueueConfig,
    /// Retries of retryable failures.
    #[serde(default)]
    pub retry_on_failure: RetryConfig,
    /// Add an authenticator extension's credentials to every request.
    #[serde(default)]
    pub auth: Option<crate::auth::AuthConfig>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Parses an `http://` or `https://` URL, explaining what is wrong with anything else.
fn check_url(value: &str) -> Result<Uri, String> {
    let uri: Uri = value
        .parse()
        .map_err(|e| format!("not a URL: {value:?} ({e}); expected http://host:port"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(format!(
                "unsupported scheme {other:?} in {value:?}: expected http://host:port"
            ));
        }
        None => {
            return Err(format!(
                "expected a URL such as http://{value}, got {value:?} (the scheme is required)"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!(
            "expected http://host:port, got {value:?} (no host)"
        ));
    }
    Ok(uri)
}

impl OtlpHttpExporterConfig {
    /// The URL traces are posted to, or the option and what is wrong with it.
    pub fn traces_url(&self) -> Result<Uri, Problem> {
        self.url(SignalKind::Traces)
    }

    /// The option that sets `signal`'s full URL, and its value.
    fn signal_endpoint(&self, signal: SignalKind) -> (&'static str, &str) {
        match signal {
            SignalKind::Traces => ("traces_endpoint", self.traces_endpoint.trim()),
            SignalKind::Logs => ("logs_endpoint", self.logs_endpoint.trim()),
            SignalKind::Metrics => ("metrics_endpoint", self.metrics_endpoint.trim()),
        }
    }

    /// The URL `signal` is posted to, or the option and what is wrong with it.
    pub fn url(&self, signal: SignalKind) -> Result<Uri, Problem> {
        let (option, full) = self.signal_endpoint(signal);
        if !full.is_empty() {
            return check_url(full).map_err(|e| Problem::new(option, e));
        }
        let base = self.endpoint.trim();
        if base.is_empty() {
            return Err(Problem::new(
                "endpoint",
                format!(
                    "missing: set endpoint (http://host:4318; {signal} go to /v1/{signal}) or \
                     {option} (the full URL)"
                ),
            ));
        }
        check_url(base).map_err(|e| Problem::new("endpoint", e))?;
        let full = format!("{}/v1/{signal}", base.trim_end_matches('/'));
        check_url(&full).map_err(|e| Problem::new("endpoint", e))
    }
}

impl Validate for OtlpHttpExporterConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        // The pipelines using the exporter are not known here: every URL that is set must be
        // valid, and traces need one (the others are checked when their exporter is built).
        let urls = SignalKind::ALL.map(|signal| (signal, self.url(signal)));
        let mut https = false;
        for (signal, url) in &urls {
            match url {
                Ok(url) => https |= url.scheme_str() == Some("https"),
                Err(problem)
                    if *signal == SignalKind::Traces
                        || !self.signal_endpoint(*signal).1.is_empty() =>
                {
                    p.push(problem.clone())
                }
                Err(_) => {}
            }
        }
        if https {
            p.extend(nested("tls", self.tls.problems()));
        }
        // A base endpoint overridden by traces_endpoint is unused, but a typo there is still
        // worth reporting.
        let base = self.endpoint.trim();
        if !self.traces_endpoint.trim().is_empty()
            && !base.is_empty()
            && let Err(e) = check_url(base)
        {
            p.push(Problem::new("endpoint", e));
        }
        for (name, value) in &self.headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                p.push(Problem::new(
                    format!("headers.{name}"),
                    format!("{name:?} is not a valid HTTP header name"),
                ));
            }
            if HeaderValue::from_str(value.expose()).is_err() {
                // The value is not shown: it may be a credential.
                p.push(Problem::new(
                    format!("headers.{name}"),
                    "the value is not a valid HTTP header value",
                ));
            }
        }
        p.extend(self.auth.iter().flat_map(|a| a.validate("auth")));
        p.extend(nested("sending_queue", self.sending_queue.validate()));
        p.extend(nested("retry_on_failure", self.retry_on_failure.validate()));
        p
    }
}

impl ExporterConfig for OtlpHttpExporterConfig {
    fn storage(&self) -> Option<crate::component::ComponentId> {
        self.sending_queue.storage_id()
    }

    fn authenticators(&self) -> Vec<(String, String)> {
        let a = self.auth.iter();
        a.map(|a| ("auth.authenticator".into(), a.authenticator.clone()))
            .collect()
    }

    crate::component::exports_every_signal!(build);
}

impl OtlpHttpExporterConfig {
    fn build<S: OtlpSignal>(&self, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter<S>>> {
        let url = self
            .url(S::KIND)
            .map_err(|p| anyhow::anyhow!("exporters.{}.{}: {}", ctx.id, p.path, p.message))?;
        let https = url.scheme_str() == Some("https");
        if self.auth.is_some() {
            let authority = url.authority().map(|a| a.as_str()).unwrap_or_default();
            crate::net::warn_plaintext_credentials(
                &format!("exporters.{}", ctx.id),
                "auth",
                https,
                [authority],
            );
        }
        let tls = https
            .then(|| {
                self.tls
                    .build(&format!("exporters.{}.tls", ctx.id), &["http/1.1"])
            })
            .transpose()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let sender = HttpSender::<S>::new(
            url,
            tls.map(Arc::new),
            self.encoding,
            self.compression,
            &self.headers,
            self.timeout.get(),
        )
        .map_err(|e| anyhow::anyhow!("exporters.{}: {e}", ctx.id))?
        .with_auth(
            self.auth
                .as_ref()
                .map(|a| a.client(&ctx.authenticators))
                .transpose()?,
        );
        Ok(Arc::new(SendingQueue::new(
            ctx,
            sender,
            &self.sending_queue,
            &self.retry_on_failure,
            self.timeout,
        )))
    }
}
