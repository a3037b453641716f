//! `tls` of every exporter: [`ClientTlsConfig`], the OpenTelemetry Collector's `configtls`
//! client settings, and [`ClientTls`], what it builds: a rustls client configuration that is
//! rebuilt when the certificate files change, the name to verify the server against, and
//! [`ClientTls::connect`] / [`HttpsConnector`] to open connections with it.
//!
//! ```yaml
//! tls:
//!   ca_file: /certs/ca.pem          # trust this CA (instead of the system's roots)
//!   cert_file: /certs/client.pem    # client certificate, for mutual TLS
//!   key_file: /certs/client-key.pem
//!   server_name_override: gateway.internal
//!   min_version: "1.2"
//!   reload_interval: 30s            # how often the files are checked for a change
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Reloading, certificates, private_key, protocol_versions, provider, roots};
use crate::component::Problem;
use crate::config::Duration;
use crate::config::opaque::Opaque;

/// `tls` of a client (an exporter): how the server is trusted and how the client proves who it
/// is, with the OpenTelemetry Collector's option names. Every field may be omitted: an empty
/// block means TLS verified against the system's root certificates.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsConfig {
    /// Connect without TLS (plaintext). Where the endpoint's scheme says (`https://`,
    /// `http://`), the scheme wins.
    #[serde(default)]
    pub insecure: bool,
    /// Accept any server certificate and name: the connection is encrypted but not
    /// authenticated (for tests only; a warning is logged at start).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// PEM file with the CA certificates that signed the server's certificate; they replace
    /// the system's roots unless `include_system_ca_certs_pool` is set.
    #[serde(default)]
    pub ca_file: String,
    /// The same as inline PEM text, instead of `ca_file`.
    #[serde(default)]
    pub ca_pem: String,
    /// PEM client certificate (chain) for servers that require mutual TLS; needs `key_file`
    /// or `key_pem`.
    #[serde(default)]
    pub cert_file: String,
    /// The client certificate as inline PEM text, instead of `cert_file`.
    #[serde(default)]
    pub cert_pem: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the client certificate.
    #[serde(default)]
    pub key_file: String,
    /// The private key as inline PEM text (a secret: never printed), instead of `key_file`.
    #[serde(default)]
    pub key_pem: Opaque,
    /// The name the server's certificate must carry (and the SNI sent), instead of the
    /// endpoint's host.
    #[serde(default)]
    pub server_name_override: String,
    /// The lowest TLS version accepted: `"1.2"` (default) or `"1.3"`.
    #[serde(default = "default_min_version")]
    pub min_version: String,
    /// The highest TLS version offered: `"1.2"` or `"1.3"`; empty = the highest supported.
    #[serde(default)]
    pub max_version: String,
    /// TLS 1.2 cipher suites allowed, by their Go names
    /// (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`); empty = all of rustls's safe ones.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// Trust the system's root certificates in addition to `ca_file` / `ca_pem`.
    #[serde(default)]
    pub include_system_ca_certs_pool: bool,
    /// How often the certificate files are checked for a change (modification time, size,
    /// inode); a change is used by the next connection. `0` never reloads. Default 30s.
    #[serde(default = "default_reload_interval")]
    pub reload_interval: Duration,
}

fn default_min_version() -> String {
    super::DEFAULT_MIN_VERSION.to_string()
}

fn default_reload_interval() -> Duration {
    Duration::from_secs(30)
}

impl Default for ClientTlsConfig {
    fn default() -> Self {
        Self {
            insecure: false,
            insecure_skip_verify: false,
            ca_file: String::new(),
            ca_pem: String::new(),
            cert_file: String::new(),
            cert_pem: String::new(),
            key_file: String::new(),
            key_pem: Opaque::default(),
            server_name_override: String::new(),
            min_version: default_min_version(),
            max_version: String::new(),
            cipher_suites: Vec::new(),
            include_system_ca_certs_pool: false,
            reload_interval: default_reload_interval(),
        }
    }
}

impl ClientTlsConfig {
    /// A plaintext configuration (`insecure: true`).
    pub fn insecure() -> Self {
        Self {
            insecure: true,
            ..Self::default()
        }
    }

    /// Every problem with these settings, paths relative to the `tls` block. The files are
    /// read, so `wasmcol validate` reports a wrong path or a bad PEM as start-up would.
    /// Callers check only a block that will be used (not one whose connection is plaintext).
    pub fn problems(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        for (file, pem, file_opt, pem_opt) in [
            (&self.ca_file, &self.ca_pem, "ca_file", "ca_pem"),
            (&self.cert_file, &self.cert_pem, "cert_file", "cert_pem"),
            (
                &self.key_file,
                &self.key_pem.expose().to_string(),
                "key_file",
                "key_pem",
            ),
        ] {
            if !file.is_empty() && !pem.is_empty() {
                p.push(Problem::new(
                    pem_opt,
                    format!("set together with {file_opt} ({file:?}): set one of them"),
                ));
            }
        }
        let has_cert = !self.cert_file.is_empty() || !self.cert_pem.is_empty();
        let has_key = !self.key_file.is_empty() || !self.key_pem.is_empty();
        if has_cert != has_key {
            let (set, missing) = if has_cert {
                ("a client certificate", "key_file (or key_pem)")
            } else {
                ("a private key", "cert_file (or cert_pem)")
            };
            p.push(Problem::new(
                if has_cert { "key_file" } else { "cert_file" },
                format!("missing: {set} is given, so set {missing} too"),
            ));
        }
        if let Err(e) = protocol_versions(&self.min_version, &self.max_version, "") {
            push_prefixed(&mut p, e);
        }
        if let Err(e) = provider(&self.cipher_suites, "") {
            push_prefixed(&mut p, e);
        }
        // Each file on its own, so every bad one is reported.
        let pick = |file: &str, pem: &str, file_opt: &'static str, pem_opt: &'static str| {
            if !pem.is_empty() {
                Some(pem_opt)
            } else if !file.is_empty() {
                Some(file_opt)
            } else {
                None
            }
        };
        if let Some(opt) = pick(&self.ca_file, &self.ca_pem, "ca_file", "ca_pem")
            && let Err(e) = certificates(&self.ca_file, &self.ca_pem, opt)
        {
            push_prefixed(&mut p, e);
        }
        if let Some(opt) = pick(&self.cert_file, &self.cert_pem, "cert_file", "cert_pem")
            && let Err(e) = certificates(&self.cert_file, &self.cert_pem, opt)
        {
            push_prefixed(&mut p, e);
        }
        if let Some(opt) = pick(&self.key_file, self.key_pem.expose(), "key_file", "key_pem")
            && let Err(e) = private_key(&self.key_file, self.key_pem.expose(), opt)
        {
            push_prefixed(&mut p, e);
        }
        // Then the whole, as the build makes it: a key that is not the certificate's, no roots.
        if p.is_empty()
            && let Err(e) = self.rustls_config(&[])
        {
            push_prefixed(&mut p, e);
        }
        p
    }

    /// The files the configuration reads (watched for changes).
    fn files(&self) -> Vec<std::path::PathBuf> {
        [&self.ca_file, &self.cert_file, &self.key_file]
            .into_iter()
            .filter(|f| !f.is_empty())
            .map(std::path::PathBuf::from)
            .collect()
    }

    /// Builds the rustls client configuration from the files as they are now, offering
    /// `alpn` (e.g. `h2` for gRPC). Errors name the option (without the `tls.` prefix).
    pub fn rustls_config(&self, alpn: &[&str]) -> Result<rustls::ClientConfig, String> {
        let versions = protocol_versions(&self.min_version, &self.max_version, "")?;
        let provider = provider(&self.cipher_suites, "")?;
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| format!("cipher_suites: no suite left for the TLS versions: {e}"))?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        } else {
            let option = if self.ca_pem.is_empty() {
                "ca_file"
            } else {
                "ca_pem"
            };
            builder.with_root_certificates(roots(
                &self.ca_file,
                &self.ca_pem,
                self.include_system_ca_certs_pool,
                option,
            )?)
        };
        let has_cert = !self.cert_file.is_empty() || !self.cert_pem.is_empty();
        let mut config = if has_cert {
            let cert_opt = if self.cert_pem.is_empty() {
                "cert_file"
            } else {
                "cert_pem"
            };
            let key_opt = if self.key_pem.is_empty() {
                "key_file"
            } else {
                "key_pem"
            };
            let chain = certificates(&self.cert_file, &self.cert_pem, cert_opt)?;
            let key = private_key(&self.key_file, self.key_pem.expose(), key_opt)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("{key_opt}: not the key of {cert_opt}, or unusable: {e}"))?
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Ok(config)
    }

    /// The running form: the configuration, reloaded when its files change. `what` names it
    /// in logs (`exporters.otlp.tls`). An error names the option.
    pub fn build(&self, what: &str, alpn: &[&'static str]) -> Result<ClientTls, String> {
        let me = self.clone();
        let alpn = alpn.to_vec();
        let config = Reloading::new(what, self.files(), self.reload_interval.get(), move || {
            me.rustls_config(&alpn)
        })
        .map_err(|e| format!("{what}.{e}"))?;
        let server_name = match self.server_name_override.trim() {
            "" => None,
            name => Some(ServerName::try_from(name.to_string()).map_err(|e| {
                format!(
                    "{what}.server_name_override: {name:?} is not a DNS name or IP address: {e}"
                )
            })?),
        };
        if self.insecure_skip_verify {
            tracing::warn!(
                "{what}.insecure_skip_verify is set: the server's certificate is not verified, \
                 so anyone on the path can read and change what is sent"
            );
        }
        Ok(ClientTls {
            what: what.to_string(),
            config,
            server_name,
        })
    }
}

/// `min_version: TLS 1.1 ...` → a problem at `min_version`.
fn push_prefixed(p: &mut Vec<Problem>, e: String) {
    match e.split_once(": ") {
        Some((path, message)) if !path.contains(' ') => p.push(Problem::new(path, message)),
        _ => p.push(Problem::new("", e)),
    }
}

/// A built client TLS configuration; see the module docs.
#[derive(Debug)]
pub struct ClientTls {
    what: String,
    config: Reloading<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl ClientTls {
    /// The rustls configuration to use for a new connection (rebuilt if the files changed).
    pub fn current(&self) -> Arc<rustls::ClientConfig> {
        self.config.current()
    }

    /// The name the server's certificate is verified against: `server_name_override`, or
    /// `host` (a DNS name or an IP address; brackets around an IPv6 address are removed).
    pub fn server_name(&self, host: &str) -> io::Result<ServerName<'static>> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_string()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: {host:?} is not a name TLS can verify ({e}): set server_name_override",
                    self.what
                ),
            )
        })
    }

    /// A TLS handshake with the server at `host` over `io` (a connected TCP stream). A failure
    /// says what to do about it: a plaintext server, an untrusted certificate, a refused
    /// client certificate.
    pub async fn connect<IO>(
        &self,
        host: &str,
        io: IO,
    ) -> io::Result<tokio_rustls::client::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name = self.server_name(host)?;
        let connector = tokio_rustls::TlsConnector::from(self.current());
        connector
            .connect(name, io)
            .await
            .map_err(|e| handshake_error(&self.what, host, e))
    }

    /// A hyper connector: TCP from `http`, then TLS for `https://` URIs (plaintext for
    /// `http://` ones).
    pub fn connector(self: &Arc<Self>, mut http: HttpConnector) -> HttpsConnector {
        // HttpConnector connects `http://` URIs only unless told otherwise; TLS is ours.
        http.enforce_http(false);
        HttpsConnector {
            http,
            tls: Some(self.clone()),
        }
    }
}

/// A handshake error with a hint at the likely cause and what to change.
#[derive(Debug)]
pub struct HandshakeError {
    message: String,
    source: io::Error,
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HandshakeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

fn handshake_error(what: &str, host: &str, e: io::Error) -> io::Error {
    use rustls::AlertDescription as A;
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let hint = match rustls_error {
        // Bytes that are no TLS record: an HTTP/2 or HTTP/1 answer from a plaintext server.
        Some(rustls::Error::InvalidMessage(_)) => format!(
            "the server does not speak TLS (a plaintext server?): set {what}.insecure: true \
             (or an http:// endpoint) to connect without TLS, or enable TLS on the server"
        ),
        Some(rustls::Error::InvalidCertificate(_)) => format!(
            "the server's certificate is not trusted: set {what}.ca_file to the CA that signed \
             it (or {what}.server_name_override to the name it carries)"
        ),
        Some(rustls::Error::AlertReceived(
            A::BadCertificate | A::CertificateUnknown | A::UnknownCA | A::CertificateRequired,
        )) => format!(
            "the server refused the client certificate: check {what}.cert_file and \
             {what}.key_file (signed by a CA the server trusts, not expired)"
        ),
        Some(rustls::Error::AlertReceived(A::ProtocolVersion | A::HandshakeFailure)) => format!(
            "no TLS version or cipher suite in common: check {what}.min_version, \
             {what}.max_version and {what}.cipher_suites"
        ),
        _ if e.kind() == io::ErrorKind::UnexpectedEof
            || e.kind() == io::ErrorKind::ConnectionReset =>
        {
            format!(
                "the server closed the connection during the handshake (a plaintext server, or \
                 one that wants a client certificate?): set {what}.insecure: true for a \
                 plaintext server, or {what}.cert_file/key_file"
            )
        }
        _ => String::new(),
    };
    let message = if hint.is_empty() {
        format!("TLS handshake with {host} failed: {e}")
    } else {
        format!("TLS handshake with {host} failed: {e}; {hint}")
    };
    io::Error::new(e.kind(), HandshakeError { message, source: e })
}

/// A hyper (and tonic) connector: TCP, then TLS with the current configuration for `https://`
/// URIs, so a certificate rotated on disk is used by the next connection.
#[derive(Clone)]
pub struct HttpsConnector {
    http: HttpConnector,
    tls: Option<Arc<ClientTls>>,
}

impl HttpsConnector {
    /// Plaintext only: an `https://` URI is refused (by `http`, which enforces `http://`).
    pub fn plaintext(http: HttpConnector) -> Self {
        Self { http, tls: None }
    }
}

/// What [`HttpsConnector`] connects: a TCP stream, with TLS or not.
pub type MaybeTls = hyper_rustls::MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>;

impl tower::Service<Uri> for HttpsConnector {
    type Response = MaybeTls;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<MaybeTls>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tower::Service::<Uri>::poll_ready(&mut self.http, cx).map_err(io::Error::other)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().unwrap_or_default().to_string();
        let tls = self.tls.clone();
        let connect = tower::Service::call(&mut self.http, uri);
        Box::pin(async move {
            let tcp = connect.await.map_err(|e| {
                io::Error::other(format!(
                    "cannot connect to {host}: {}",
                    crate::net::error_chain(&e)
                ))
            })?;
            if !https {
                return Ok(hyper_rustls::MaybeHttpsStream::Http(tcp));
            }
            let Some(tls) = tls else {
                return Err(io::Error::other(format!(
                    "https:// to {host} without a tls configuration"
                )));
            };
            let stream = tls.connect(&host, TokioIo::new(tcp)).await?;
            Ok(hyper_rustls::MaybeHttpsStream::from(stream))
        })
    }
}

/// `insecure_skip_verify`: any certificate and name are accepted; the handshake's signatures
/// are still checked, so the connection is encrypted, just not authenticated.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Test certificates: a CA, a server certificate for localhost and 127.0.0.1, and a client
/// certificate, as PEM text; [`test_pki::Pki::write`] puts them in files.
#[cfg(test)]
pub(crate) mod test_pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    /// A certificate and its key, as PEM.
    pub struct Pem {
        pub cert: String,
        pub key: String,
    }

    /// One CA and what it signed.
    pub struct Pki {
        pub ca: Pem,
        pub server: Pem,
        pub client: Pem,
    }

    impl Pki {
        /// A new CA named `name`, with a server and a client certificate.
        pub fn new(name: &str) -> Self {
            let ca_key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let ca_cert = params.self_signed(&ca_key).unwrap();
            let ca = Pem {
                cert: ca_cert.pem(),
                key: ca_key.serialize_pem(),
            };
            let issuer = Issuer::new(params, ca_key);
            let leaf = |names: Vec<String>| {
                let key = KeyPair::generate().unwrap();
                let cert = CertificateParams::new(names)
                    .unwrap()
                    .signed_by(&key, &issuer)
                    .unwrap();
                Pem {
                    cert: cert.pem(),
                    key: key.serialize_pem(),
                }
            };
            Self {
                server: leaf(vec!["localhost".into(), "127.0.0.1".into()]),
                client: leaf(vec!["client".into()]),
                ca,
            }
        }

        /// Writes `ca.pem`, `server.pem`, `server-key.pem`, `client.pem`, `client-key.pem`.
        pub fn write(&self, dir: &std::path::Path) {
            for (name, text) in [
                ("ca.pem", &self.ca.cert),
                ("server.pem", &self.server.cert),
                ("server-key.pem", &self.server.key),
                ("client.pem", &self.client.cert),
                ("client-key.pem", &self.client.key),
            ] {
                std::fs::write(dir.join(name), text).unwrap();
            }
        }

        /// A rustls server configuration with the server certificate; with `mutual`, a client
        /// certificate signed by this CA is required.
        pub fn server_config(&self, mutual: bool, alpn: &[&str]) -> rustls::ServerConfig {
            use rustls::pki_types::pem::PemObject as _;
            use rustls::pki_types::{CertificateDer, PrivateKeyDer};
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap();
            let builder = if mutual {
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(CertificateDer::from_pem_slice(self.ca.cert.as_bytes()).unwrap())
                    .unwrap();
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    roots.into(),
                    provider,
                )
                .build()
                .unwrap();
                builder.with_client_cert_verifier(verifier)
            } else {
                builder.with_no_client_auth()
            };
            let mut config = builder
                .with_single_cert(
                    vec![CertificateDer::from_pem_slice(self.server.cert.as_bytes()).unwrap()],
                    PrivateKeyDer::from_pem_slice(self.server.key.as_bytes()).unwrap(),
                )
                .unwrap();
            config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
            config
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<ClientTlsConfig, String> {
        serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())
    }

    /// A certificate and a key that belong together, as PEM.
    fn material() -> (String, String) {
        let pki = test_pki::Pki::new("test CA");
        (pki.client.cert, pki.client.key)
    }

    #[test]
    fn defaults_are_the_collectors() {
        let c = parse("{}").unwrap();
        assert_eq!(c, ClientTlsConfig::default());
        assert_eq!(c.min_version, "1.2");
        assert_eq!(c.reload_interval, Duration::from_secs(30));
        assert!(!c.insecure);
        assert!(parse("{ unknown: 1 }").unwrap_err().contains("unknown"));
    }

    #[test]
    fn problems_name_the_option_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = material();
        let cert_path = dir.path().join("c.pem");
        std::fs::write(&cert_path, &cert).unwrap();
        let problems = |yaml: &str| -> Vec<(String, String)> {
            parse(yaml)
                .unwrap()
                .problems()
                .into_iter()
                .map(|p| (p.path, p.message))
                .collect()
        };
        let p = problems("{ ca_file: /no/such/ca.pem }");
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "ca_file");
        assert!(p[0].1.contains("/no/such/ca.pem"), "{p:?}");
        let p = problems(&format!("{{ cert_file: {} }}", cert_path.display()));
        assert_eq!(p[0].0, "key_file", "{p:?}");
        let p = problems("{ min_version: \"1.1\" }");
        assert_eq!(p[0].0, "min_version", "{p:?}");
        assert!(p[0].1.contains("1.1"), "{p:?}");
        let p = problems("{ cipher_suites: [NOPE] }");
        assert_eq!(p[0].0, "cipher_suites", "{p:?}");
        assert!(p[0].1.contains("NOPE"), "{p:?}");
        // A key that is not the certificate's.
        let (_, other_key) = material();
        let c = ClientTlsConfig {
            cert_pem: cert.clone(),
            key_pem: Opaque::new(other_key),
            ..Default::default()
        };
        let p = c.problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].path, "key_pem", "{p:?}");
        // Inline and file at once.
        let c = ClientTlsConfig {
            ca_file: cert_path.display().to_string(),
            ca_pem: cert.clone(),
            ..Default::default()
        };
        assert_eq!(c.problems()[0].path, "ca_pem");
        // A good pair and CA.
        let c = ClientTlsConfig {
            ca_file: cert_path.display().to_string(),
            cert_pem: cert,
            key_pem: Opaque::new(key.clone()),
            server_name_override: "gateway.internal".into(),
            ..Default::default()
        };
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let built = c.build("tls", &["h2"]).unwrap();
        assert_eq!(built.current().alpn_protocols, vec![b"h2".to_vec()]);
        assert_eq!(
            built.server_name("127.0.0.1").unwrap(),
            ServerName::try_from("gateway.internal").unwrap()
        );
        assert!(
            !format!("{c:?}").contains("PRIVATE KEY"),
            "the inline key never prints"
        );
    }

    #[test]
    fn rotated_files_are_used_by_the_next_connection() {
        let dir = tempfile::tempdir().unwrap();
        test_pki::Pki::new("first CA").write(dir.path());
        let file = |n: &str| dir.path().join(n).display().to_string();
        let c = ClientTlsConfig {
            ca_file: file("ca.pem"),
            cert_file: file("client.pem"),
            key_file: file("client-key.pem"),
            reload_interval: Duration::from_millis(1),
            ..Default::default()
        };
        let built = c.build("tls", &[]).unwrap();
        let first = built.current();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(Arc::ptr_eq(&first, &built.current()), "unchanged files");
        // Rotated: written elsewhere and renamed over, as cert-manager's secrets are.
        let next = tempfile::tempdir_in(dir.path()).unwrap();
        test_pki::Pki::new("second CA").write(next.path());
        for n in ["ca.pem", "client.pem", "client-key.pem"] {
            std::fs::rename(next.path().join(n), dir.path().join(n)).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(
            !Arc::ptr_eq(&first, &built.current()),
            "rebuilt after rotation"
        );
    }

    #[test]
    fn server_name_is_the_host_without_override() {
        let c = ClientTlsConfig {
            insecure_skip_verify: true,
            ..Default::default()
        };
        let t = c.build("tls", &[]).unwrap();
        assert_eq!(
            t.server_name("[::1]").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert!(t.server_name("a b").is_err());
    }
}
