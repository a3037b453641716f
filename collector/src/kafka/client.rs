//! Connection settings shared by the Kafka exporter and receiver: brokers, TLS, SASL, and
//! extra librdkafka properties. They are passed through to librdkafka as its own properties
//! (`security.protocol`, `ssl.*`, `sasl.*`), so every broker librdkafka can talk to works.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::Deserialize;

use crate::component::Problem;
use crate::component::nested;
use crate::config::opaque::Opaque;
use crate::config::tls::client::ClientTlsConfig;

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
    /// Transport security; `None` (or `insecure: true`) = plaintext.
    pub tls: Option<&'a ClientTlsConfig>,
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
    /// Problems with these settings; the TLS files are read, as the client will read them.
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
        if let Some(tls) = self.tls.filter(|t| !t.insecure) {
            p.extend(nested("tls", tls.problems()));
            p.extend(nested("tls", librdkafka_cannot(tls)));
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
            for (property, value) in [
                ("ssl.ca.location", &t.ca_file),
                ("ssl.ca.pem", &t.ca_pem),
                ("ssl.certificate.location", &t.cert_file),
                ("ssl.certificate.pem", &t.cert_pem),
                ("ssl.key.location", &t.key_file),
                ("ssl.key.pem", &t.key_pem.expose().to_string()),
            ] {
                if !value.is_empty() {
                    c.set(property, value);
                }
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

/// The `tls` options librdkafka has no property for, each a problem saying so.
/// (`reload_interval` is not one: librdkafka reads the files when the client starts, which the
/// README says.)
fn librdkafka_cannot(tls: &ClientTlsConfig) -> Vec<Problem> {
    let mut p = Vec::new();
    if !tls.server_name_override.is_empty() {
        p.push(Problem::new(
            "server_name_override",
            format!(
                "{:?}: not supported for Kafka (librdkafka verifies each broker's advertised \
                 host name); remove it, or set insecure_skip_verify for tests",
                tls.server_name_override
            ),
        ));
    }
    if !tls.cipher_suites.is_empty() {
        p.push(Problem::new(
            "cipher_suites",
            format!(
                "{:?}: not supported for Kafka; set librdkafka_options: {{ ssl.cipher.suites: ... }} \
                 with OpenSSL's names instead",
                tls.cipher_suites
            ),
        ));
    }
    if tls.min_version != crate::config::tls::DEFAULT_MIN_VERSION && !tls.min_version.is_empty() {
        p.push(Problem::new(
            "min_version",
            format!(
                "{:?}: not supported for Kafka (librdkafka has no such property; OpenSSL's \
                 minimum, TLS 1.2, applies); remove it",
                tls.min_version
            ),
        ));
    }
    if !tls.max_version.is_empty() {
        p.push(Problem::new(
            "max_version",
            format!(
                "{:?}: not supported for Kafka (librdkafka has no such property); remove it",
                tls.max_version
            ),
        ));
    }
    if tls.include_system_ca_certs_pool && !(tls.ca_file.is_empty() && tls.ca_pem.is_empty()) {
        p.push(Problem::new(
            "include_system_ca_certs_pool",
            "not supported for Kafka together with ca_file or ca_pem (librdkafka trusts one or \
             the other): put the system's CA certificates into ca_file, or remove ca_file",
        ));
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_and_sasl_become_librdkafka_properties() {
        let brokers = default_brokers();
        let tls = ClientTlsConfig {
            ca_file: "/ca.pem".into(),
            key_pem: crate::config::opaque::Opaque::new("-----BEGIN PRIVATE KEY-----"),
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
        assert_eq!(c.get("ssl.key.pem"), Some("-----BEGIN PRIVATE KEY-----"));
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

#[cfg(test)]
mod tls_tests {
    use super::*;

    #[test]
    fn tls_options_librdkafka_cannot_honour_are_problems() {
        let brokers = default_brokers();
        let tls: ClientTlsConfig = serde_yaml_ng::from_str(
            "{ insecure_skip_verify: true, server_name_override: kafka.internal, \
             cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256], min_version: \"1.3\" }",
        )
        .unwrap();
        let s = ClientSettings {
            brokers: &brokers,
            client_id: "wasmcol",
            tls: Some(&tls),
            ..Default::default()
        };
        let paths: Vec<String> = s.problems().into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            vec![
                "tls.server_name_override",
                "tls.cipher_suites",
                "tls.min_version"
            ]
        );
        // A file that is not there is found at validation, not at the first connection.
        let tls = ClientTlsConfig {
            ca_file: "/no/ca.pem".into(),
            ..Default::default()
        };
        let s = ClientSettings {
            brokers: &brokers,
            client_id: "wasmcol",
            tls: Some(&tls),
            ..Default::default()
        };
        let p = s.problems();
        assert_eq!(p[0].path, "tls.ca_file");
        assert!(p[0].message.contains("/no/ca.pem"), "{p:?}");
        // insecure: plaintext, and nothing is read.
        let tls = ClientTlsConfig {
            insecure: true,
            ..tls
        };
        let s = ClientSettings {
            brokers: &brokers,
            client_id: "wasmcol",
            tls: Some(&tls),
            ..Default::default()
        };
        assert!(s.problems().is_empty());
        assert_eq!(
            s.client_config().get("security.protocol"),
            Some("plaintext")
        );
    }
}
