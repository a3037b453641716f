use serde::Deserialize;

use crate::component::{Problem, Validate};
use crate::config::tls::server::ServerTlsConfig;

/// `extensions.health_check`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// `host:port` to listen on.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// URL path answering the probe.
    #[serde(default = "default_path")]
    pub path: String,
    /// Serve HTTPS (see the OTLP receiver's `tls`); probes then use `scheme: HTTPS`.
    #[serde(default)]
    pub tls: Option<ServerTlsConfig>,
}

fn default_endpoint() -> String {
    "localhost:13133".into()
}
fn default_path() -> String {
    "/".into()
}

impl Validate for HealthCheckConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if let Err(m) = crate::net::check_endpoint(&self.endpoint) {
            p.push(Problem::new("endpoint", m));
        }
        if !self.path.starts_with('/') {
            p.push(Problem::new(
                "path",
                format!("must start with '/', got {:?}", self.path),
            ));
        }
        if let Some(tls) = &self.tls {
            p.extend(tls.problems("tls."));
        }
        p
    }
}
