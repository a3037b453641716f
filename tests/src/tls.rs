//! Real X.509 material for TLS tests, made with rcgen: a CA, server certificates for
//! `localhost` and `127.0.0.1`, client certificates (good, expired, from another CA), written
//! as PEM files into a directory.
//!
//! ```no_run
//! let pki = wasmcol_tests::tls::Pki::new();
//! let yaml = format!(
//!     "tls: {{ cert_file: {}, key_file: {}, client_ca_file: {} }}",
//!     pki.server.cert.display(), pki.server.key.display(), pki.ca.display()
//! );
//! ```

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};

/// Serial number of [`Pki::server`]'s certificate.
pub const SERVER_SERIAL: u64 = 0x5e_01;
/// Serial number of [`Pki::server2`]'s certificate (the one a rotation brings in).
pub const SERVER2_SERIAL: u64 = 0x5e_02;
/// Common name of [`Pki::server`]'s certificate.
pub const SERVER_CN: &str = "wasmcol test server 1";
/// Common name of [`Pki::server2`]'s certificate.
pub const SERVER2_CN: &str = "wasmcol test server 2";

/// A certificate's PEM file and its private key's PEM file.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// Certificates and keys written as PEM files into [`Pki::dir`].
pub struct Pki {
    /// Kept so the directory lives as long as this value (when [`Pki::new`] made it).
    _temp: Option<tempfile::TempDir>,
    /// Where the files are.
    pub dir: PathBuf,
    /// The CA that signed every certificate below except `other_client`: `ca.crt`.
    pub ca: PathBuf,
    /// A second, unrelated CA: `other-ca.crt`.
    pub other_ca: PathBuf,
    /// A server certificate for `localhost` and `127.0.0.1`, CN [`SERVER_CN`], serial
    /// [`SERVER_SERIAL`]: `server.crt`, `server.key`.
    pub server: Pair,
    /// Another server certificate for the same names from the same CA, CN [`SERVER2_CN`],
    /// serial [`SERVER2_SERIAL`] (for rotation): `server2.crt`, `server2.key`.
    pub server2: Pair,
    /// A client certificate (CN `wasmcol test client`): `client.crt`, `client.key`.
    pub client: Pair,
    /// A client certificate from the CA that expired in 2021: `expired-client.crt`,
    /// `expired-client.key`.
    pub expired_client: Pair,
    /// A client certificate signed by `other_ca`: `other-client.crt`, `other-client.key`.
    pub other_client: Pair,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "wasmcol tests");
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca(cn: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.distinguished_name = name(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA")
}

/// A leaf certificate signed by `issuer`, written to `dir/NAME.crt` and `dir/NAME.key`.
fn leaf(
    dir: &Path,
    file: &str,
    issuer: &CertifiedIssuer<'static, KeyPair>,
    cn: &str,
    serial: u64,
    server: bool,
    expired: bool,
) -> Pair {
    let sans = if server {
        vec!["localhost".to_string(), "127.0.0.1".to_string()]
    } else {
        Vec::new()
    };
    let mut params = CertificateParams::new(sans).expect("leaf params");
    params.distinguished_name = name(cn);
    params.serial_number = Some(SerialNumber::from(serial));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().expect("leaf key");
    let cert = params.signed_by(&key, issuer).expect("sign leaf");
    let pair = Pair {
        cert: dir.join(format!("{file}.crt")),
        key: dir.join(format!("{file}.key")),
    };
    std::fs::write(&pair.cert, cert.pem()).expect("write certificate");
    std::fs::write(&pair.key, key.serialize_pem()).expect("write key");
    pair
}

impl Pki {
    /// Makes everything in a new temporary directory (removed when this is dropped).
    pub fn new() -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut pki = Self::write(temp.path());
        pki._temp = Some(temp);
        pki
    }

    /// Makes everything in `dir` (which must exist).
    pub fn write(dir: &Path) -> Self {
        let authority = ca("wasmcol test CA");
        let other = ca("wasmcol other CA");
        let ca = dir.join("ca.crt");
        let other_ca = dir.join("other-ca.crt");
        std::fs::write(&ca, authority.pem()).expect("write CA");
        std::fs::write(&other_ca, other.pem()).expect("write other CA");
        Self {
            _temp: None,
            dir: dir.to_path_buf(),
            server: leaf(
                dir,
                "server",
                &authority,
                SERVER_CN,
                SERVER_SERIAL,
                true,
                false,
            ),
            server2: leaf(
                dir,
                "server2",
                &authority,
                SERVER2_CN,
                SERVER2_SERIAL,
                true,
                false,
            ),
            client: leaf(
                dir,
                "client",
                &authority,
                "wasmcol test client",
                0xc1,
                false,
                false,
            ),
            expired_client: leaf(
                dir,
                "expired-client",
                &authority,
                "wasmcol expired client",
                0xc2,
                false,
                true,
            ),
            other_client: leaf(
                dir,
                "other-client",
                &other,
                "wasmcol stranger",
                0xc3,
                false,
                false,
            ),
            ca,
            other_ca,
        }
    }
}
