use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue};

use super::grpc::GrpcSender;
use crate::component::nested;
use crate::component::{BuildContext, Exporter, ExporterConfig, Problem, Validate};
use crate::config::Duration;
use crate::config::opaque::Opaque;
use crate::config::tls::client::ClientTlsConfig;
use crate::exporters::sending_queue::{QueueConfig, RetryConfig, SendingQueue};
use crate::net::Compression;
use crate::otlp::OtlpSignal;

/// `exporters.otlp`: OTLP over gRPC.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpExporterConfig {
    /// The OTLP/gRPC server: `host:port` (TLS unless `tls.insecure`), `https://host:port`
    /// (TLS) or `http://host:port` (plaintext).
    #[serde(default)]
    pub endpoint: String,
    /// Transport security, as the Collector's: TLS verified against the system's roots
    /// unless set otherwise; `insecure: true` for plaintext.
    #[serde(default)]
    pub tls: ClientTlsConfig,
    /// `gzip` (default), `zstd` or `none`.
    #[serde(default)]
    pub compression: Compression,
    /// gRPC metadata sent with every request (`authorization: Bearer ...`); values are
    /// secrets, never printed.
    #[serde(default)]
    pub headers: BTreeMap<String, Opaque>,
    /// Bound on each attempt, also sent to the server as the gRPC deadline; `0` = none.
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
    Duration::from_secs(5)
}

impl OtlpExporterConfig {
    /// The `host:port` to connect to and whether TLS is used, or why `endpoint` is unusable.
    /// As the Collector: `https://` is TLS, `http://` plaintext, a bare `host:port` follows
    /// `tls.insecure`.
    pub fn authority(&self) -> Result<(String, bool), String> {
        let endpoint = self.endpoint.trim();
        if endpoint.is_empty() {
            return Err(
                "missing: set it to the host:port of an OTLP/gRPC server, e.g. gateway:4317".into(),
            );
        }
        let (rest, tls) = if let Some(rest) = endpoint.strip_prefix("https://") {
            (rest, true)
        } else if let Some(rest) = endpoint.strip_prefix("http://") {
            (rest, false)
        } else if let Some((scheme, _)) = endpoint.split_once("://") {
            return Err(format!(
                "unsupported scheme {scheme:?} in {endpoint:?}: expected host:port, \
                 https://host:port or http://host:port"
            ));
        } else {
            (endpoint, !self.tls.insecure)
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') {
            return Err(format!(
                "expected host:port without a path, got {endpoint:?} (gRPC needs no path)"
            ));
        }
        crate::net::check_endpoint(rest)?;
        Ok((rest.to_string(), tls))
    }
}

/// Problems with gRPC metadata names and values.
fn metadata_problems(headers: &BTreeMap<String, Opaque>) -> Vec<Problem> {
    let mut p = Vec::new();
    for (name, value) in headers {
        let path = format!("headers.{name}");
        if name.to_ascii_lowercase().ends_with("-bin") {
            p.push(Problem::new(
                path,
                format!("binary metadata ({name:?} ends in -bin) is not supported"),
            ));
            continue;
        }
        if AsciiMetadataKey::from_bytes(name.as_bytes()).is_err() {
            p.push(Problem::new(
                path.clone(),
                format!("{name:?} is not a valid metadata name"),
            ));
        }
        // gRPC allows only printable ASCII in text metadata; tonic would pass other bytes on.
        let value = value.expose();
        let printable = value.bytes().all(|b| (0x20..0x7f).contains(&b));
        if !printable || AsciiMetadataValue::try_from(value).is_err() {
            // The value is not shown: it may be a credential.
            p.push(Problem::new(
                path,
                "the value is not valid metadata (printable ASCII only)",
            ));
        }
    }
    p
}

impl Validate for OtlpExporterConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        match self.authority() {
            Err(e) => p.push(Problem::new("endpoint", e)),
            Ok((_, true)) => p.extend(nested("tls", self.tls.problems())),
            Ok((_, false)) => {}
        }
        p.extend(metadata_problems(&self.headers));
        p.extend(self.auth.iter().flat_map(|a| a.validate("auth")));
        p.extend(nested("sending_queue", self.sending_queue.validate()));
        p.extend(nested("retry_on_failure", self.retry_on_failure.validate()));
        p
    }
}

impl ExporterConfig for OtlpExporterConfig {
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

impl OtlpExporterConfig {
    fn build<S: OtlpSignal>(&self, ctx: &BuildContext) -> anyhow::Result<Arc<dyn Exporter<S>>> {
        let (authority, tls) = self
            .authority()
            .map_err(|e| anyhow::anyhow!("exporters.{}: endpoint: {e}", ctx.id))?;
        if self.auth.is_some() {
            crate::net::warn_plaintext_credentials(
                &format!("exporters.{}", ctx.id),
                "auth",
                tls,
                [authority.as_str()],
            );
        }
        let tls = tls
            .then(|| {
                self.tls
                    .build(&format!("exporters.{}.tls", ctx.id), &["h2"])
            })
            .transpose()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let sender = GrpcSender::<S>::new(
            &authority,
            tls.map(Arc::new),
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
