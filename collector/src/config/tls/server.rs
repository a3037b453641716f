//! `tls` of a listener (the OTLP receivers), in the OpenTelemetry Collector's `configtls`
//! server shape, and the rustls server configuration built from it.
//!
//! ```yaml
//! tls:
//!   cert_file: /etc/certs/tls.crt
//!   key_file: /etc/certs/tls.key
//!   client_ca_file: /etc/certs/ca.crt   # mutual TLS: clients must show a certificate it signed
//!   min_version: "1.2"
//!   reload_interval: 30s
//! ```
//!
//! [`ServerTlsConfig::problems`] reads every file the options name, so `wasmcol validate`
//! reports a missing file, a certificate that is no PEM, a key that does not match its
//! certificate. [`ServerTlsConfig::build`] makes a [`Reloading`] rustls configuration that
//! follows the files as they are replaced on disk.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use serde::Deserialize;

use super::{Reloading, certificates, private_key, protocol_versions, provider, roots};
use crate::component::Problem;
use crate::config::Duration;
use crate::config::opaque::Opaque;

/// The default `reload_interval`.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

/// `tls` of a server (a receiver's listener): its certificate, and for mutual TLS the CA
/// that client certificates must chain to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// The server's certificate chain, a PEM file (leaf first). This or `cert_pem`.
    #[serde(default)]
    pub cert_file: String,
    /// The server's certificate chain as inline PEM text. This or `cert_file`.
    #[serde(default)]
    pub cert_pem: Opaque,
    /// The server certificate's private key, a PEM file (PKCS#8, PKCS#1 or SEC1). This or
    /// `key_pem`.
    #[serde(default)]
    pub key_file: String,
    /// The private key as inline PEM text. This or `key_file`.
    #[serde(default)]
    pub key_pem: Opaque,
    /// Mutual TLS: a PEM file of CA certificates. When set, every client must present a
    /// certificate that chains to one of them (and is valid now), or the handshake fails.
    #[serde(default)]
    pub client_ca_file: String,
    /// Re-read `client_ca_file` when it changes (checked every `reload_interval`, or every
    /// 30s when that is `0`); otherwise it is read once at start.
    #[serde(default)]
    pub client_ca_file_reload: bool,
    /// Accepted for compatibility with the Collector's configs, read and checked, but not
    /// used by a server (as in the Collector, whose servers verify clients against
    /// `client_ca_file` only). Set `client_ca_file` to require client certificates.
    #[serde(default)]
    pub ca_file: String,
    /// Inline PEM form of `ca_file`; likewise checked and not used by a server.
    #[serde(default)]
    pub ca_pem: Opaque,
    /// Also trust the system's root certificates for client certificates (with
    /// `client_ca_file`).
    #[serde(default)]
    pub include_system_ca_certs_pool: bool,
    /// Lowest TLS version accepted: `"1.2"` (default) or `"1.3"`. `"1.0"` and `"1.1"` are
    /// refused as insecure.
    #[serde(default)]
    pub min_version: String,
    /// Highest TLS version accepted: `"1.2"` or `"1.3"`; empty for the highest supported.
    #[serde(default)]
    pub max_version: String,
    /// TLS 1.2 cipher suites allowed, by Go's names (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`);
    /// empty for rustls' safe defaults. TLS 1.3 suites are not configurable, as in Go.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// How often `cert_file` and `key_file` are checked for a change (modification time,
    /// size, inode); a change is used by the next connection, without a restart. A file
    /// half-written at the check keeps the previous certificate until the next check. `0`
    /// never reloads.
    #[serde(default = "default_reload_interval")]
    pub reload_interval: Duration,
}

fn default_reload_interval() -> Duration {
    DEFAULT_RELOAD_INTERVAL
}

impl Default for ServerTlsConfig {
    fn default() -> Self {
        Self {
            cert_file: String::new(),
            cert_pem: Opaque::default(),
            key_file: String::new(),
            key_pem: Opaque::default(),
            client_ca_file: String::new(),
            client_ca_file_reload: false,
            ca_file: String::new(),
            ca_pem: Opaque::default(),
            include_system_ca_certs_pool: false,
            min_version: String::new(),
            max_version: String::new(),
            cipher_suites: Vec::new(),
            reload_interval: DEFAULT_RELOAD_INTERVAL,
        }
    }
}

/// A problem from a message of the form `path: what is wrong` (how the shared TLS helpers
/// word theirs).
fn problem(message: String) -> Problem {
    match message.split_once(": ") {
        Some((path, m)) if !path.contains(' ') => Problem::new(path, m),
        _ => Problem::new("", message),
    }
}

impl ServerTlsConfig {
    /// Every problem with these options, reading the files they name; `prefix` is their
    /// path (`protocols.grpc.tls.`), with which each problem's path starts.
    pub fn problems(&self, prefix: &str) -> Vec<Problem> {
        let mut p = Vec::new();
        let sources = self.sources(prefix);
        let sources_ok = sources.is_empty();
        p.extend(sources.into_iter().map(problem));
        if sources_ok && let Err(e) = self.certified_key(prefix) {
            p.push(problem(e));
        }
        if let Err(e) = protocol_versions(&self.min_version, &self.max_version, prefix) {
            p.push(problem(e));
        }
        match provider(&self.cipher_suites, prefix) {
            Ok(provider) => {
                if let Err(e) = self.client_verifier(prefix, provider) {
                    p.push(problem(e));
                }
            }
            Err(e) => p.push(problem(e)),
        }
        if !self.ca_file.is_empty() || !self.ca_pem.is_empty() {
            if !self.ca_file.is_empty() && !self.ca_pem.is_empty() {
                p.push(Problem::new(
                    format!("{prefix}ca_pem"),
                    format!(
                        "give ca_file or ca_pem, not both (ca_file: {:?})",
                        self.ca_file
                    ),
                ));
            } else if let Err(e) = roots(
                &self.ca_file,
                self.ca_pem.expose(),
                false,
                &format!("{prefix}ca_file"),
            ) {
                p.push(problem(e));
            }
        }
        if self.client_ca_file.is_empty() && self.client_ca_file_reload {
            p.push(Problem::new(
                format!("{prefix}client_ca_file_reload"),
                "has no effect without client_ca_file, got true",
            ));
        }
        p
    }

    /// The certificate and the key each given exactly once (file or inline PEM).
    fn sources(&self, prefix: &str) -> Vec<String> {
        let mut p = Vec::new();
        for (what, file_opt, file, pem_opt, pem) in [
            (
                "certificate",
                "cert_file",
                &self.cert_file,
                "cert_pem",
                &self.cert_pem,
            ),
            (
                "private key",
                "key_file",
                &self.key_file,
                "key_pem",
                &self.key_pem,
            ),
        ] {
            match (file.is_empty(), pem.is_empty()) {
                (false, false) => p.push(format!(
                    "{prefix}{pem_opt}: give {file_opt} or {pem_opt}, not both ({file_opt}: {file:?})"
                )),
                (true, true) => p.push(format!(
                    "{prefix}{file_opt}: a server needs its {what}: set {file_opt} or {pem_opt}"
                )),
                _ => {}
            }
        }
        p
    }

    /// The certificate chain and its private key, checked to match.
    fn certified_key(
        &self,
        prefix: &str,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
        let key_option = format!("{prefix}key_file");
        let cert_option = format!("{prefix}cert_file");
        let chain = certificates(&self.cert_file, self.cert_pem.expose(), &cert_option)?;
        let key = private_key(&self.key_file, self.key_pem.expose(), &key_option)?;
        let ring = rustls::crypto::ring::default_provider();
        rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &ring).map_err(
            |e| {
                let cert = if self.cert_file.is_empty() {
                    "cert_pem".to_string()
                } else {
                    format!("cert_file {:?}", self.cert_file)
                };
                let key = if self.key_file.is_empty() {
                    "key_pem".to_string()
                } else {
                    format!("{:?}", self.key_file)
                };
                match e {
                    rustls::Error::InconsistentKeys(_) => format!(
                        "{key_option}: the private key {key} does not match the certificate in {cert}"
                    ),
                    other => format!("{key_option}: the private key {key} cannot be used: {other}"),
                }
            },
        )?;
        Ok((chain, key))
    }

    /// Mutual TLS: the verifier of client certificates (`client_ca_file`), or none.
    fn client_verifier(
        &self,
        prefix: &str,
        provider: Arc<CryptoProvider>,
    ) -> Result<Option<Arc<dyn ClientCertVerifier>>, String> {
        if self.client_ca_file.is_empty() {
            return Ok(None);
        }
        let option = format!("{prefix}client_ca_file");
        let roots = roots(
            &self.client_ca_file,
            "",
            self.include_system_ca_certs_pool,
            &option,
        )?;
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map(Some)
            .map_err(|e| {
                format!(
                    "{option}: {:?} cannot verify clients: {e}",
                    self.client_ca_file
                )
            })
    }

    /// The rustls server configuration these options describe, re-read from the files when
    /// they change (see [`ServerTlsConfig::reload_interval`]); `what` is the options' full
    /// path (`receivers.otlp.protocols.grpc.tls`), which names them in errors and logs, and
    /// `alpn` the application protocols the listener speaks, in order of preference (`h2`
    /// for gRPC, `http/1.1` for an HTTP/1 listener). Errors are start-up errors; a later
    /// reload that fails keeps the previous configuration and logs a warning.
    pub fn build(
        &self,
        what: &str,
        alpn: &[&str],
    ) -> Result<Reloading<rustls::ServerConfig>, String> {
        let prefix = format!("{what}.");
        if let Some(e) = self.sources(&prefix).into_iter().next() {
            return Err(e);
        }
        let versions = protocol_versions(&self.min_version, &self.max_version, &prefix)?;
        let provider = provider(&self.cipher_suites, &prefix)?;
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();

        // What is not reloaded is read once, here, and reused by every rebuild.
        let reload_certs = !self.reload_interval.is_zero();
        let reload_ca = self.client_ca_file_reload;
        let fixed_cert = self.certified_key(&prefix)?;
        let fixed_verifier = self.client_verifier(&prefix, provider.clone())?;

        let mut files = Vec::new();
        if reload_certs {
            files.extend(
                [&self.cert_file, &self.key_file]
                    .into_iter()
                    .filter(|f| !f.is_empty())
                    .map(PathBuf::from),
            );
        }
        if reload_ca && !self.client_ca_file.is_empty() {
            files.push(PathBuf::from(&self.client_ca_file));
        }
        let interval = if reload_certs {
            self.reload_interval
        } else {
            DEFAULT_RELOAD_INTERVAL
        };

        let options = self.clone();
        let build = move || -> Result<rustls::ServerConfig, String> {
            let (chain, key) = if reload_certs {
                options.certified_key(&prefix)?
            } else {
                (fixed_cert.0.clone(), fixed_cert.1.clone_key())
            };
            let verifier = if reload_ca {
                options.client_verifier(&prefix, provider.clone())?
            } else {
                fixed_verifier.clone()
            };
            let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)
                .map_err(|e| format!("{prefix}min_version: {e}"))?;
            let builder = match verifier {
                Some(v) => builder.with_client_cert_verifier(v),
                None => builder.with_no_client_auth(),
            };
            let mut config = builder
                .with_single_cert(chain, key)
                .map_err(|e| format!("{prefix}cert_file: {e}"))?;
            config.alpn_protocols = alpn.clone();
            Ok(config)
        };
        Reloading::new(what, files, interval.get(), build)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and its key, and a second key that is not its.
    struct Material {
        dir: tempfile::TempDir,
    }

    /// PEM of a P-256 self-signed certificate for `localhost` and its PKCS#8 key, and an
    /// unrelated key (made once with openssl; test material only).
    const CERT: &str = include_str!("testdata/server.crt");
    const KEY: &str = include_str!("testdata/server.key");
    const OTHER_KEY: &str = include_str!("testdata/other.key");

    impl Material {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("server.crt"), CERT).unwrap();
            std::fs::write(dir.path().join("server.key"), KEY).unwrap();
            std::fs::write(dir.path().join("other.key"), OTHER_KEY).unwrap();
            Self { dir }
        }
        fn path(&self, name: &str) -> String {
            self.dir.path().join(name).display().to_string()
        }
        fn config(&self) -> ServerTlsConfig {
            ServerTlsConfig {
                cert_file: self.path("server.crt"),
                key_file: self.path("server.key"),
                ..Default::default()
            }
        }
    }

    fn paths(p: &[Problem]) -> Vec<String> {
        p.iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect()
    }

    #[test]
    fn a_good_config_has_no_problems_and_builds() {
        let m = Material::new();
        let mut c = m.config();
        c.client_ca_file = m.path("server.crt");
        assert_eq!(paths(&c.problems("tls.")), Vec::<String>::new());
        let r = c
            .build("receivers.otlp.protocols.grpc.tls", &["h2"])
            .unwrap();
        assert_eq!(r.current().alpn_protocols, vec![b"h2".to_vec()]);
        // Inline PEM works alike.
        let inline = ServerTlsConfig {
            cert_pem: Opaque::new(CERT),
            key_pem: Opaque::new(KEY),
            ..Default::default()
        };
        assert!(inline.problems("tls.").is_empty());
        assert!(inline.build("tls", &["http/1.1"]).is_ok());
    }

    #[test]
    fn problems_name_the_option_and_the_value() {
        let m = Material::new();
        let neither = ServerTlsConfig::default().problems("tls.");
        assert_eq!(
            paths(&neither),
            [
                "tls.cert_file: a server needs its certificate: set cert_file or cert_pem",
                "tls.key_file: a server needs its private key: set key_file or key_pem",
            ]
        );

        let mut both = m.config();
        both.cert_pem = Opaque::new(CERT);
        let p = paths(&both.problems("tls."));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("tls.cert_pem: give cert_file or cert_pem, not both"),
            "{p:?}"
        );
        assert!(!p[0].contains("BEGIN"), "no PEM text in messages: {p:?}");

        let mut mismatch = m.config();
        mismatch.key_file = m.path("other.key");
        let p = paths(&mismatch.problems("tls."));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("tls.key_file: the private key \"")
                && p[0].contains("other.key\" does not match the certificate in cert_file \""),
            "{p:?}"
        );

        let mut missing = m.config();
        missing.cert_file = m.path("nope.crt");
        missing.client_ca_file = m.path("server.key");
        missing.min_version = "1.1".into();
        let p = paths(&missing.problems("tls."));
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].starts_with("tls.cert_file: cannot read \"") && p[0].contains("nope.crt"),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("tls.min_version: TLS 1.1 is not supported"),
            "{p:?}"
        );
        assert!(
            p[2].starts_with("tls.client_ca_file: no PEM certificate"),
            "{p:?}"
        );

        let mut not_pem = m.config();
        not_pem.key_file = m.path("server.crt");
        let p = paths(&not_pem.problems("tls."));
        assert!(
            p[0].starts_with("tls.key_file: no PEM private key in \""),
            "{p:?}"
        );
    }

    #[test]
    fn reloads_the_certificate_when_its_files_change() {
        let m = Material::new();
        let mut c = m.config();
        c.reload_interval = Duration::from_millis(1);
        let r = c.build("tls", &["h2"]).unwrap();
        let first = r.current();
        assert!(
            Arc::ptr_eq(&first, &r.current()),
            "unchanged files, same config"
        );
        // A key that does not match: the previous configuration stays.
        std::thread::sleep(std::time::Duration::from_millis(5));
        let tmp = m.path("tmp.key");
        std::fs::write(&tmp, OTHER_KEY).unwrap();
        std::fs::rename(&tmp, m.path("server.key")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(Arc::ptr_eq(&first, &r.current()));
        // Put back (a new inode): rebuilt.
        std::fs::write(&tmp, KEY).unwrap();
        std::fs::rename(&tmp, m.path("server.key")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(!Arc::ptr_eq(&first, &r.current()));

        // reload_interval 0: never rebuilt.
        c.reload_interval = Duration::from_secs(0);
        let r = c.build("tls", &["h2"]).unwrap();
        let first = r.current();
        std::fs::write(&tmp, KEY).unwrap();
        std::fs::rename(&tmp, m.path("server.key")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(Arc::ptr_eq(&first, &r.current()));
    }
}
