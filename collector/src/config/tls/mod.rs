//! TLS for every server and client of the collector, in the OpenTelemetry Collector's
//! `configtls` shape: [`server::ServerTlsConfig`] for listeners (the OTLP receivers, the
//! metrics and health endpoints), [`client::ClientTlsConfig`] for exporters.
//!
//! This module holds what both sides share: PEM material given as a file or inline, the
//! protocol versions, the cipher suites, the root certificates, and [`Reloading`], which
//! re-reads certificate files when they change, so a certificate rotated on disk (by
//! cert-manager, say) is used by the next connection without a restart.
//!
//! rustls does the TLS, with the `ring` provider; it speaks TLS 1.2 and 1.3 only, so 1.0 and
//! 1.1 are refused at configuration time.

pub mod client;
pub mod server;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use rustls::SupportedProtocolVersion;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The versions a `min_version` / `max_version` may name, lowest first.
const VERSIONS: [(&str, &SupportedProtocolVersion); 2] = [
    ("1.2", &rustls::version::TLS12),
    ("1.3", &rustls::version::TLS13),
];

/// The default `min_version`, as the Collector's.
pub const DEFAULT_MIN_VERSION: &str = "1.2";

/// The protocol versions between `min` and `max` (each `"1.2"`, `"1.3"`, or empty for the
/// default: 1.2 and no upper bound). `prefix` is the option's path for messages.
pub fn protocol_versions(
    min: &str,
    max: &str,
    prefix: &str,
) -> Result<Vec<&'static SupportedProtocolVersion>, String> {
    let index = |name: &str, value: &str| -> Result<usize, String> {
        match value {
            "1.0" | "1.1" => Err(format!(
                "{prefix}{name}: TLS {value} is not supported (it is insecure): use \"1.2\" or \"1.3\""
            )),
            _ => VERSIONS
                .iter()
                .position(|(v, _)| *v == value)
                .ok_or_else(|| {
                    format!("{prefix}{name}: unknown TLS version {value:?}: use \"1.2\" or \"1.3\"")
                }),
        }
    };
    let lo = index(
        "min_version",
        if min.is_empty() {
            DEFAULT_MIN_VERSION
        } else {
            min
        },
    )?;
    let hi = if max.is_empty() {
        VERSIONS.len() - 1
    } else {
        index("max_version", max)?
    };
    if hi < lo {
        return Err(format!(
            "{prefix}max_version: {max:?} is below min_version {:?}",
            if min.is_empty() {
                DEFAULT_MIN_VERSION
            } else {
                min
            }
        ));
    }
    Ok(VERSIONS[lo..=hi].iter().map(|(_, v)| *v).collect())
}

/// The `ring` provider, its TLS 1.2 cipher suites restricted to `names` when any are given
/// (Go's names, `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`, as the Collector takes them). As in
/// Go, TLS 1.3's suites are not configurable and always offered.
pub fn provider(names: &[String], prefix: &str) -> Result<Arc<CryptoProvider>, String> {
    let mut provider = rustls::crypto::ring::default_provider();
    if names.is_empty() {
        return Ok(Arc::new(provider));
    }
    let name_of =
        |s: &rustls::SupportedCipherSuite| s.suite().as_str().unwrap_or_default().to_string();
    let tls12: Vec<String> = provider
        .cipher_suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS12)
        .map(name_of)
        .collect();
    for n in names {
        let is_tls13 = provider.cipher_suites.iter().any(|s| {
            s.version() == &rustls::version::TLS13 && name_of(s) == n.replacen("TLS_", "TLS13_", 1)
        });
        if !tls12.contains(n) && !is_tls13 {
            return Err(format!(
                "{prefix}cipher_suites: unknown or unsupported cipher suite {n:?}; supported: {}",
                tls12.join(", ")
            ));
        }
    }
    provider
        .cipher_suites
        .retain(|s| s.version() == &rustls::version::TLS13 || names.contains(&name_of(s)));
    Ok(Arc::new(provider))
}

/// The certificates of a PEM file (`file`) or of inline PEM text (`pem`); exactly one should
/// be given, which the caller checks. `option` names the file option for messages.
pub fn certificates(
    file: &str,
    pem: &str,
    option: &str,
) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = if pem.is_empty() {
        CertificateDer::pem_file_iter(file)
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(|e| pem_error(option, file, "certificate", &e))?
    } else {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(option, "(inline)", "certificate", &e))?
    };
    if certs.is_empty() {
        let from = if pem.is_empty() {
            format!("{file:?}")
        } else {
            "the inline PEM".into()
        };
        return Err(format!(
            "{option}: no PEM certificate (BEGIN CERTIFICATE) in {from}"
        ));
    }
    Ok(certs)
}

/// The private key of a PEM file or inline PEM text (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(file: &str, pem: &str, option: &str) -> Result<PrivateKeyDer<'static>, String> {
    if pem.is_empty() {
        PrivateKeyDer::from_pem_file(file).map_err(|e| pem_error(option, file, "private key", &e))
    } else {
        PrivateKeyDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| pem_error(option, "(inline)", "private key", &e))
    }
}

/// A PEM error, naming the option and the file and what was looked for.
fn pem_error(option: &str, path: &str, what: &str, e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(io) => format!("{option}: cannot read {path:?}: {io}"),
        Error::NoItemsFound => format!("{option}: no PEM {what} in {path:?}"),
        other => format!("{option}: {path:?} is not a valid PEM {what}: {other}"),
    }
}

/// A root store: the certificates of `ca` (file or inline PEM) and, when `system` is set or
/// no CA was given, the system's root certificates.
pub fn roots(
    ca_file: &str,
    ca_pem: &str,
    system: bool,
    option: &str,
) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    let own = !ca_file.is_empty() || !ca_pem.is_empty();
    if own {
        for cert in certificates(ca_file, ca_pem, option)? {
            roots
                .add(cert)
                .map_err(|e| format!("{option}: a certificate is not usable as a root: {e}"))?;
        }
    }
    if system || !own {
        let native = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(native.certs);
        if added == 0 && !own {
            return Err(format!(
                "{option}: no CA given and no system root certificates found: set {option}"
            ));
        }
    }
    Ok(roots)
}

/// What a file looked like when last read: a change in any of these means it was replaced or
/// rewritten (a Kubernetes secret's symlink swap gives a new inode).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &PathBuf) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt as _;
    // `metadata` follows symlinks, so a swapped link target shows as a change.
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

/// Something built from files (a rustls configuration) that is rebuilt when they change.
///
/// [`Reloading::current`] is called per connection; at most once per `interval` it looks at
/// the files' modification time, size and inode, and if any changed, builds anew. A build that
/// fails (a certificate half-written, a key that does not match) keeps the previous value and
/// logs a warning; the next check tries again. An `interval` of zero never reloads.
pub struct Reloading<T> {
    what: String,
    files: Vec<PathBuf>,
    interval: std::time::Duration,
    build: Box<dyn Fn() -> Result<T, String> + Send + Sync>,
    state: Mutex<State<T>>,
}

struct State<T> {
    current: Arc<T>,
    stamps: Vec<Option<Stamp>>,
    checked: Instant,
}

impl<T> Reloading<T> {
    /// Builds the first value (an error here is a start-up error). `what` names it in logs
    /// (`receivers.otlp.protocols.grpc.tls`); `files` are those `build` reads.
    pub fn new(
        what: impl Into<String>,
        files: Vec<PathBuf>,
        interval: std::time::Duration,
        build: impl Fn() -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Self, String> {
        let stamps = files.iter().map(stamp).collect();
        let current = Arc::new(build()?);
        Ok(Self {
            what: what.into(),
            files,
            interval,
            build: Box::new(build),
            state: Mutex::new(State {
                current,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    /// The value to use now, rebuilt first if the files changed (see the type's docs).
    pub fn current(&self) -> Arc<T> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if self.interval.is_zero()
            || self.files.is_empty()
            || state.checked.elapsed() < self.interval
        {
            return state.current.clone();
        }
        state.checked = Instant::now();
        let stamps: Vec<_> = self.files.iter().map(stamp).collect();
        if stamps == state.stamps {
            return state.current.clone();
        }
        match (self.build)() {
            Ok(value) => {
                tracing::info!(what = %self.what, "TLS certificates changed on disk; new connections use them");
                state.current = Arc::new(value);
                state.stamps = stamps;
            }
            Err(e) => {
                crate::telemetry::log_limited!(warn, "TLS certificates changed on disk but cannot be used; keeping the previous ones", what = %self.what, error = %e);
            }
        }
        state.current.clone()
    }
}

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading")
            .field("what", &self.what)
            .field("files", &self.files)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_default_to_1_2_and_refuse_old_ones() {
        assert_eq!(protocol_versions("", "", "tls.").unwrap().len(), 2);
        assert_eq!(
            protocol_versions("1.3", "", "tls.").unwrap(),
            vec![&rustls::version::TLS13]
        );
        let e = protocol_versions("1.1", "", "tls.").unwrap_err();
        assert!(
            e.starts_with("tls.min_version: TLS 1.1 is not supported"),
            "{e}"
        );
        let e = protocol_versions("1.3", "1.2", "tls.").unwrap_err();
        assert!(e.starts_with("tls.max_version: \"1.2\" is below"), "{e}");
        assert!(protocol_versions("2", "", "tls.").is_err());
    }

    #[test]
    fn cipher_suites_restrict_tls12_only() {
        let p = provider(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()], "tls.").unwrap();
        let tls12 = p
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &rustls::version::TLS12)
            .count();
        assert_eq!(tls12, 1);
        assert!(p.cipher_suites.len() > 1, "TLS 1.3 suites stay");
        let e = provider(&["TLS_RSA_WITH_RC4_128_SHA".into()], "tls.").unwrap_err();
        assert!(e.contains("\"TLS_RSA_WITH_RC4_128_SHA\""), "{e}");
    }

    #[test]
    fn reloading_rebuilds_only_when_files_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "one").unwrap();
        let p = path.clone();
        let r = Reloading::new(
            "test",
            vec![path.clone()],
            std::time::Duration::from_millis(1),
            move || {
                let s = std::fs::read_to_string(&p).map_err(|e| e.to_string())?;
                if s == "bad" { Err("bad".into()) } else { Ok(s) }
            },
        )
        .unwrap();
        assert_eq!(*r.current(), "one");
        std::thread::sleep(std::time::Duration::from_millis(5));
        std::fs::write(&path, "bad").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(
            *r.current(),
            "one",
            "a broken file keeps the previous value"
        );
        // Replaced through a rename, as a Kubernetes secret update does.
        let tmp = dir.path().join("g");
        std::fs::write(&tmp, "two!").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(*r.current(), "two!");
    }
}
