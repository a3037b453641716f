//! Connection settings shared by the Kafka exporter and receiver: brokers, TLS, SASL, and
//! extra librdkafka properties. They are passed through to librdkafka as its own properties
//! (`security.protocol`, `ssl.*`, `sasl.*`), so every broker librdkafka can talk to works.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::component::Problem;
use crate::config::opaque::Opaque;

/// `tls`: encrypt connections to the brokers. Absent = plaintext.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTlsConfig {
    /// Connect without TLS although the block is present (the OpenTelemetry Collector's
    /// `insecure`).
    #[serde(default)]
    pub insecure: bool,
    /// PEM file with the CA certificates that signed the brokers' certificates; empty = the
    /// system's CA store.
    #[serde(default)]
    pub ca_file: String,
    /// PEM client certificate, for brokers that require mutual TLS.
    #[serde(default)]
    pub cert_file: String,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: String,
    /// Accept any broker certificate (for tests only: it defeats TLS's protection).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// SASL mechanisms librdkafka supports without extra system libraries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    /// Username and password in clear (use with TLS).
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// `auth.sasl`: authenticate with a username and password.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaslConfig {
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub mechanism: SaslMechanism,
    /// The SASL username.
    pub username: String,
    /// The SASL password (use `${env:VAR}` or `${file:path}` rather than writing it in the
    /// file); never printed.
    pub password: Opaque,
}

/// Warns once, naming `component`, when a client made from `config` would send a SASL PLAIN
/// password unencrypted to a broker off this machine. It reads the final librdkafka settings, so
/// `librdkafka_options` that change the protocol count too.
pub fn warn_plaintext_sasl(component: &str, config: &ClientConfig) -> bool {
    let is = |key, want: &str| {
        config
            .get(key)
            .is_some_and(|v| v.eq_ignore_ascii_case(want))
    };
    if !is("sasl.mechanisms", "PLAIN") {
        return false;
    }
    let brokers = config.get("bootstrap.servers").unwrap_or_default();
    crate::net::warn_plaintext_credentials(
        component,
        "auth.sasl",
        !is("security.protocol", "sasl_plaintext"),
        brokers.split(',').map(str::trim),
    )
}

/// `auth`: how the client proves who it is.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// SASL authentication; absent = none.
    #[serde(default)]
    pub sasl: Option<SaslConfig>,
}

/// The connection settings both Kafka components have (each config declares the same fields,
/// since serde cannot combine `flatten` with `deny_unknown_fields`, and hands them over here).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientSettings<'a> {
    /// Bootstrap brokers, `host:port` each.
    pub brokers: &'a [String],
    /// The client id sent to the brokers.
    pub client_id: &'a str,
    /// Transport security; `None` = plaintext.
    pub tls: Option<&'a KafkaTlsConfig>,
    /// Authentication.
    pub auth: Option<&'a AuthConfig>,
    /// Extra librdkafka properties, applied last.
    pub librdkafka_options: Option<&'a BTreeMap<String, String>>,
}

/// Default `brokers`.
pub fn default_brokers() -> Vec<String> {
    vec!["localhost:9092".to_string()]
}

/// Default `client_id`.
pub fn default_client_id() -> String {
    "wasmcol".to_string()
}

impl ClientSettings<'_> {
    /// Problems with these settings (no I/O; files are checked when the client starts).
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.brokers.is_empty() {
            p.push(Problem::new(
                "brokers",
                "must list at least one broker (host:port), got an empty list",
            ));
        }
        for (i, b) in self.brokers.iter().enumerate() {
            if let Err(e) = crate::net::check_endpoint(b.trim()) {
                p.push(Problem::new(format!("brokers[{i}]"), e));
            }
        }
        if self.client_id.trim().is_empty() {
            p.push(Problem::new("client_id", "must not be empty"));
        }
        if let Some(tls) = &self.tls
            && tls.cert_file.is_empty() != tls.key_file.is_empty()
        {
            p.push(Problem::new(
                "tls",
                "cert_file and key_file go together: set both or neither",
            ));
        }
        if let Some(sasl) = self.auth.and_then(|a| a.sasl.as_ref())
            && sasl.username.is_empty()
        {
            p.push(Problem::new("auth.sasl.username", "must not be empty"));
        }
        for key in self.librdkafka_options.into_iter().flat_map(|o| o.keys()) {
            if key.trim().is_empty() || key.contains(char::is_whitespace) {
                p.push(Problem::new(
                    format!("librdkafka_options.{key}"),
                    format!("{key:?} is not a librdkafka property name"),
                ));
            }
        }
        p
    }

    /// The librdkafka configuration for these settings.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers.join(","));
        c.set("client.id", self.client_id);
        let tls = self.tls.filter(|t| !t.insecure);
        let sasl = self.auth.and_then(|a| a.sasl.as_ref());
        let protocol = match (tls.is_some(), sasl.is_some()) {
            (false, false) => "plaintext",
            (true, false) => "ssl",
            (false, true) => "sasl_plaintext",
            (true, true) => "sasl_ssl",
        };
        c.set("security.protocol", protocol);
        if let Some(t) = tls {
            if !t.ca_file.is_empty() {
                c.set("ssl.ca.location", &t.ca_file);
            }
            if !t.cert_file.is_empty() {
                c.set("ssl.certificate.location", &t.cert_file);
                c.set("ssl.key.location", &t.key_file);
            }
            if t.insecure_skip_verify {
                c.set("enable.ssl.certificate.verification", "false");
                c.set("ssl.endpoint.identification.algorithm", "none");
            }
        }
        if let Some(s) = sasl {
            c.set("sasl.mechanisms", s.mechanism.as_str());
            c.set("sasl.username", &s.username);
            c.set("sasl.password", s.password.expose());
        }
        for (k, v) in self.librdkafka_options.into_iter().flatten() {
            c.set(k, v);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_and_sasl_become_librdkafka_properties() {
        let brokers = default_brokers();
        let tls = KafkaTlsConfig {
            ca_file: "/ca.pem".into(),
            ..Default::default()
        };
        let auth = AuthConfig {
            sasl: Some(SaslConfig {
                mechanism: SaslMechanism::ScramSha512,
                username: "u".into(),
                password: Opaque::new("p"),
            }),
        };
        let s = ClientSettings {
            brokers: &brokers,
            client_id: "wasmcol",
            tls: Some(&tls),
            auth: Some(&auth),
            librdkafka_options: None,
        };
        let c = s.client_config();
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("ssl.ca.location"), Some("/ca.pem"));
        assert_eq!(c.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.username"), Some("u"));
        let plain = ClientSettings {
            brokers: &brokers,
            client_id: "wasmcol",
            ..Default::default()
        }
        .client_config();
        assert_eq!(plain.get("security.protocol"), Some("plaintext"));
        assert_eq!(plain.get("bootstrap.servers"), Some("localhost:9092"));
    }

    #[test]
    fn sasl_plain_without_tls_to_a_remote_broker_warns() {
        let remote = vec!["localhost:9092".to_string(), "kafka-1:9092".to_string()];
        let auth = |mechanism| AuthConfig {
            sasl: Some(SaslConfig {
                mechanism,
                username: "u".into(),
                password: Opaque::new("p"),
            }),
        };
        let plain = auth(SaslMechanism::Plain);
        let scram = auth(SaslMechanism::ScramSha256);
        let settings = |brokers, auth| ClientSettings {
            brokers,
            client_id: "wasmcol",
            auth: Some(auth),
            ..Default::default()
        };
        let warns =
            |s: ClientSettings<'_>| warn_plaintext_sasl("exporters.kafka", &s.client_config());
        assert!(warns(settings(&remote, &plain)));
        // SCRAM never sends the password itself.
        assert!(!warns(settings(&remote, &scram)));
        assert!(!warns(settings(&remote[..1], &plain)));
        let mut options = BTreeMap::new();
        options.insert("security.protocol".to_string(), "SASL_SSL".to_string());
        let mut tls_by_option = settings(&remote, &plain);
        tls_by_option.librdkafka_options = Some(&options);
        assert!(!warns(tls_by_option));
    }
}
