//! `oidc`: checks the JWT (an OpenID Connect ID or access token) each request carries:
//! signature (RS256 or ES256), issuer, audience, expiry and not-before.
//!
//! ```yaml
//! extensions:
//!   oidc:
//!     issuer_url: https://auth.example.com/realms/otel   # must equal the tokens' `iss`
//!     audience: otel-collector                           # must be in the tokens' `aud`
//!     jwks_file: /etc/wasmcol/jwks.json    # or public_key_file: /etc/wasmcol/issuer.pem
//!     username_claim: email                # default sub
//!     groups_claim: groups                 # optional
//!     attribute: authorization             # the header; default authorization
//! ```
//!
//! The signing keys come from a local file: `jwks_file` (a JSON Web Key Set, as an issuer
//! serves at its `jwks_uri`; keys are matched by `kid`) or `public_key_file` (one PEM public
//! key, RSA or P-256). Either is read again when it changes (checked at most every 10
//! seconds). Fetching keys from the issuer over the network (OIDC discovery), as the
//! OpenTelemetry Collector does, is not supported yet: configuring neither file is an error.
//! Expiry and not-before allow 60 seconds of clock skew.
//!
//! The subject of an authenticated request (metadata `auth.subject`) is the
//! `username_claim`; its groups (`auth.groups`) are the `groups_claim` (a string or a list of
//! strings).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::auth::{
    Authenticated, Authenticator, Idle, Refused, ServerAuthenticator, Side, Watched, credential,
};
use crate::component::{BuildContext, ExtensionConfig, Lifecycle, Problem, Validate};
use crate::telemetry::Health;

/// How often the key file is checked for a change.
const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// Clock skew allowed on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 60;

/// `extensions.oidc[/NAME]`, with the OpenTelemetry Collector's option names (and two of its
/// own for where the keys are).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer: tokens whose `iss` claim differs are refused.
    #[serde(default)]
    pub issuer_url: String,
    /// The audience: tokens whose `aud` claim does not hold it are refused.
    #[serde(default)]
    pub audience: String,
    /// The CA of the issuer's TLS certificate, for fetching its keys; not supported yet (keys
    /// come from `jwks_file` or `public_key_file`).
    #[serde(default)]
    pub issuer_ca_path: PathBuf,
    /// The claim that names the subject.
    #[serde(default = "default_username_claim")]
    pub username_claim: String,
    /// The claim that lists the subject's groups; empty: none.
    #[serde(default)]
    pub groups_claim: String,
    /// The header that carries the token, as `Bearer <token>`.
    #[serde(default = "default_attribute")]
    pub attribute: String,
    /// A JSON Web Key Set file with the issuer's signing keys (not a Collector option).
    #[serde(default)]
    pub jwks_file: PathBuf,
    /// A PEM file with the issuer's public key, RSA or P-256 (not a Collector option).
    #[serde(default)]
    pub public_key_file: PathBuf,
}

fn default_username_claim() -> String {
    "sub".into()
}
fn default_attribute() -> String {
    "authorization".into()
}

/// Which signature family a key verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Rsa,
    Ec,
}

/// The signing keys read from the file.
struct Keys(Vec<(Option<String>, Family, DecodingKey)>);

fn parse_jwks(bytes: &[u8]) -> Result<Keys, String> {
    let set: JwkSet =
        serde_json::from_slice(bytes).map_err(|e| format!("not a JSON Web Key Set: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let family = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Family::Rsa,
            AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Family::Ec,
            // Keys of other kinds may sit in the set; they verify nothing here.
            _ => continue,
        };
        let key =
            DecodingKey::from_jwk(jwk).map_err(|e| format!("key {:?}: {e}", jwk.common.key_id))?;
        keys.push((jwk.common.key_id.clone(), family, key));
    }
    if keys.is_empty() {
        return Err("the set holds no RSA or P-256 key".into());
    }
    Ok(Keys(keys))
}

fn parse_pem(bytes: &[u8]) -> Result<Keys, String> {
    let (family, key) = match DecodingKey::from_ec_pem(bytes) {
        Ok(k) => (Family::Ec, k),
        Err(_) => match DecodingKey::from_rsa_pem(bytes) {
            Ok(k) => (Family::Rsa, k),
            Err(e) => return Err(format!("not a PEM RSA or P-256 public key: {e}")),
        },
    };
    Ok(Keys(vec![(None, family, key)]))
}

/// The option naming the key file, the file, and how to read it.
type KeyFile<'a> = (&'static str, &'a PathBuf, fn(&[u8]) -> Result<Keys, String>);

impl OidcConfig {
    fn key_file(&self) -> Option<KeyFile<'_>> {
        if !self.jwks_file.as_os_str().is_empty() {
            Some(("jwks_file", &self.jwks_file, parse_jwks))
        } else if !self.public_key_file.as_os_str().is_empty() {
            Some(("public_key_file", &self.public_key_file, parse_pem))
        } else {
            None
        }
    }
}

impl Validate for OidcConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.issuer_url.is_empty() {
            p.push(Problem::new(
                "issuer_url",
                "missing: set it to the tokens' issuer (their iss claim)",
            ));
        }
        if self.audience.is_empty() {
            p.push(Problem::new(
                "audience",
                "missing: set it to the audience tokens must name (their aud claim)",
            ));
        }
        if !self.issuer_ca_path.as_os_str().is_empty() {
            p.push(Problem::new(
                "issuer_ca_path",
                "not supported yet: keys are not fetched from the issuer; set jwks_file or public_key_file",
            ));
        }
        if HeaderName::from_bytes(self.attribute.as_bytes()).is_err() {
            p.push(Problem::new(
                "attribute",
                format!("{:?} is not a valid header name", self.attribute),
            ));
        }
        if self.username_claim.is_empty() {
            p.push(Problem::new("username_claim", "must not be empty"));
        }
        if !self.jwks_file.as_os_str().is_empty() && !self.public_key_file.as_os_str().is_empty() {
            p.push(Problem::new(
                "public_key_file",
                "set only one of jwks_file and public_key_file",
            ));
        }
        match self.key_file() {
            None => p.push(Problem::new(
                "jwks_file",
                format!(
                    "missing: fetching keys from the issuer {:?} (OIDC discovery) is not supported yet; \
                     set jwks_file (a JSON Web Key Set) or public_key_file (a PEM public key)",
                    self.issuer_url
                ),
            )),
            Some((option, path, parse)) => {
                if let Err(e) = std::fs::read(path)
                    .map_err(|e| e.to_string())
                    .and_then(|b| parse(&b))
                {
                    p.push(Problem::new(option, format!("{}: {e}", path.display())));
                }
            }
        }
        p
    }
}

impl ExtensionConfig for OidcConfig {
    fn build(&self, _ctx: &BuildContext, _health: Health) -> anyhow::Result<Arc<dyn Lifecycle>> {
        Ok(Arc::new(Idle))
    }

    fn authenticator_sides(&self) -> Vec<Side> {
        vec![Side::Server]
    }

    fn authenticator(&self, ctx: &BuildContext) -> anyhow::Result<Option<Authenticator>> {
        Ok(Some(Authenticator {
            server: Some(Arc::new(Oidc::new(
                self,
                &ctx.id.to_string(),
                FILE_CHECK_INTERVAL,
            )?)),
            client: None,
        }))
    }
}

/// The server side of one `oidc` extension.
pub struct Oidc {
    header: HeaderName,
    issuer: String,
    audience: String,
    username_claim: String,
    groups_claim: String,
    keys: Watched<Keys>,
}

impl Oidc {
    /// Built from a validated config; `interval` bounds how often the key file is checked.
    pub fn new(cfg: &OidcConfig, id: &str, interval: Duration) -> anyhow::Result<Self> {
        let (option, path, parse) = cfg
            .key_file()
            .ok_or_else(|| anyhow::anyhow!("extensions.{id}: set jwks_file or public_key_file"))?;
        Ok(Self {
            header: HeaderName::from_bytes(cfg.attribute.as_bytes())?,
            issuer: cfg.issuer_url.clone(),
            audience: cfg.audience.clone(),
            username_claim: cfg.username_claim.clone(),
            groups_claim: cfg.groups_claim.clone(),
            keys: Watched::new(
                format!("extensions.{id}.{option}"),
                path.clone(),
                interval,
                parse,
            )
            .map_err(anyhow::Error::msg)?,
        })
    }

    fn verify(&self, token: &str) -> Result<serde_json::Map<String, Value>, Refused> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| Refused::malformed(format!("not a JWT: {e}")))?;
        let family = match header.alg {
            Algorithm::RS256 => Family::Rsa,
            Algorithm::ES256 => Family::Ec,
            other => {
                return Err(Refused::invalid(format!(
                    "the token is signed with {other:?}; only RS256 and ES256 are accepted"
                )));
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        let keys = self.keys.current();
        let candidates = keys.0.iter().filter(|(kid, f, _)| {
            *f == family && (header.kid.is_none() || kid.is_none() || *kid == header.kid)
        });
        let mut last = Refused::invalid(format!(
            "no {} key{} to check the signature with",
            if family == Family::Rsa {
                "RSA"
            } else {
                "P-256"
            },
            header
                .kid
                .as_deref()
                .map(|k| format!(" with kid {k:?}"))
                .unwrap_or_default()
        ));
        for (_, _, key) in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => Refused {
                            reason: "expired",
                            message: "the token has expired".into(),
                        },
                        ErrorKind::ImmatureSignature => Refused {
                            reason: "not_yet_valid",
                            message: "the token is not valid yet (nbf)".into(),
                        },
                        ErrorKind::InvalidIssuer => {
                            Refused::invalid("the token's issuer (iss) is not issuer_url")
                        }
                        ErrorKind::InvalidAudience => {
                            Refused::invalid("the token's audience (aud) does not hold audience")
                        }
                        ErrorKind::InvalidSignature => {
                            Refused::invalid("the token's signature does not verify")
                        }
                        ErrorKind::MissingRequiredClaim(c) => {
                            Refused::invalid(format!("the token has no {c} claim"))
                        }
                        _ => Refused::invalid(format!("the token is not valid: {e}")),
                    };
                    // Only a bad signature may mean another key of the set signed it.
                    if !matches!(e.kind(), ErrorKind::InvalidSignature) {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }
}

#[async_trait]
impl ServerAuthenticator for Oidc {
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Authenticated, Refused> {
        let token = credential(headers, &self.header, "Bearer")?;
        let claims = self.verify(token)?;
        let subject = match claims.get(&self.username_claim) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(Refused::invalid(format!(
                    "the token has no {:?} claim (username_claim) holding a string",
                    self.username_claim
                )));
            }
        };
        let groups = if self.groups_claim.is_empty() {
            Vec::new()
        } else {
            match claims.get(&self.groups_claim) {
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                _ => Vec::new(),
            }
        };
        Ok(Authenticated { subject, groups })
    }

    fn header(&self) -> &HeaderName {
        &self.header
    }

    fn challenge(&self) -> HeaderValue {
        HeaderValue::from_static("Bearer realm=\"wasmcol\"")
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use jsonwebtoken::{EncodingKey, Header};
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "https://issuer.test";
    const AUDIENCE: &str = "wasmcol";

    /// A P-256 key pair: the signing key and its public key as a JWK.
    fn ec_key(kid: &str) -> (EncodingKey, Value) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        });
        (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
    }

    /// An RSA key pair made with the openssl CLI: (signing key, public key PEM).
    fn rsa_key(dir: &std::path::Path, name: &str) -> (EncodingKey, PathBuf) {
        let private = dir.join(format!("{name}.key"));
        let public = dir.join(format!("{name}.pub"));
        let run = |args: &[&str]| {
            let out = std::process::Command::new("openssl")
                .args(args)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(&["genrsa", "-out", private.to_str().unwrap(), "2048"]);
        run(&[
            "rsa",
            "-in",
            private.to_str().unwrap(),
            "-pubout",
            "-out",
            public.to_str().unwrap(),
        ]);
        let key = EncodingKey::from_rsa_pem(&std::fs::read(&private).unwrap()).unwrap();
        (key, public)
    }

    fn now() -> i64 {
        jsonwebtoken::get_current_timestamp() as i64
    }

    fn claims() -> Value {
        json!({
            "iss": ISSUER, "aud": AUDIENCE, "sub": "user-1", "email": "alice@example.com",
            "groups": ["ops", "dev"], "exp": now() + 600, "nbf": now() - 10,
        })
    }

    fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
        let mut h = Header::new(alg);
        h.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&h, claims, key).unwrap()
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        h
    }

    fn config(extra: &str) -> OidcConfig {
        crate::config::parse_component(
            serde_yaml_ng::from_str(&format!(
                "issuer_url: {ISSUER}\naudience: {AUDIENCE}\n{extra}"
            ))
            .unwrap(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn es256_tokens_from_a_jwks_file() {
        let dir = tempfile::tempdir().unwrap();
        let (key, jwk) = ec_key("k1");
        let (other, other_jwk) = ec_key("k2");
        let (stranger, _) = ec_key("k1");
        let jwks = dir.path().join("jwks.json");
        std::fs::write(&jwks, json!({ "keys": [jwk, other_jwk] }).to_string()).unwrap();
        let cfg = config(&format!(
            "jwks_file: {}\nusername_claim: email\ngroups_claim: groups",
            jwks.display()
        ));
        let oidc = Oidc::new(&cfg, "oidc", FILE_CHECK_INTERVAL).unwrap();
        let check = |token: String| {
            let oidc = &oidc;
            async move { oidc.authenticate(&bearer(&token)).await }
        };

        let who = check(sign(Algorithm::ES256, Some("k1"), &key, &claims()))
            .await
            .unwrap();
        assert_eq!(who.subject, "alice@example.com");
        assert_eq!(who.groups, ["ops", "dev"]);
        assert!(
            check(sign(Algorithm::ES256, Some("k2"), &other, &claims()))
                .await
                .is_ok()
        );
        // No kid: every key of the family is tried.
        assert!(
            check(sign(Algorithm::ES256, None, &other, &claims()))
                .await
                .is_ok()
        );

        let reason = |r: Result<Authenticated, Refused>| r.unwrap_err().reason;
        let wrong_key = check(sign(Algorithm::ES256, Some("k1"), &stranger, &claims())).await;
        assert_eq!(reason(wrong_key), "invalid");
        let mut c = claims();
        c["exp"] = json!(now() - 3600);
        assert_eq!(
            reason(check(sign(Algorithm::ES256, Some("k1"), &key, &c)).await),
            "expired"
        );
        let mut c = claims();
        c["nbf"] = json!(now() + 3600);
        assert_eq!(
            reason(check(sign(Algorithm::ES256, Some("k1"), &key, &c)).await),
            "not_yet_valid"
        );
        let mut c = claims();
        c["aud"] = json!("someone-else");
        let r = check(sign(Algorithm::ES256, Some("k1"), &key, &c))
            .await
            .unwrap_err();
        assert!(r.message.contains("audience"), "{}", r.message);
        let mut c = claims();
        c["iss"] = json!("https://evil.test");
        let r = check(sign(Algorithm::ES256, Some("k1"), &key, &c))
            .await
            .unwrap_err();
        assert!(r.message.contains("issuer"), "{}", r.message);
        let mut c = claims();
        c.as_object_mut().unwrap().remove("email");
        assert!(
            check(sign(Algorithm::ES256, Some("k1"), &key, &c))
                .await
                .is_err()
        );
        // HS256 with the public key as the secret: the classic confusion attack.
        let hs = sign(
            Algorithm::HS256,
            Some("k1"),
            &EncodingKey::from_secret(b"x"),
            &claims(),
        );
        assert_eq!(reason(check(hs).await), "invalid");
        assert_eq!(reason(check("not-a-jwt".into()).await), "malformed");
        assert_eq!(
            reason(oidc.authenticate(&HeaderMap::new()).await),
            "missing"
        );
    }

    #[tokio::test]
    async fn rs256_tokens_from_a_pem_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let (key, public) = rsa_key(dir.path(), "issuer");
        let (stranger, _) = rsa_key(dir.path(), "stranger");
        let cfg = config(&format!("public_key_file: {}", public.display()));
        let oidc = Oidc::new(&cfg, "oidc", FILE_CHECK_INTERVAL).unwrap();
        let who = oidc
            .authenticate(&bearer(&sign(Algorithm::RS256, None, &key, &claims())))
            .await
            .unwrap();
        assert_eq!(who.subject, "user-1");
        assert!(who.groups.is_empty());
        let bad = oidc
            .authenticate(&bearer(&sign(Algorithm::RS256, None, &stranger, &claims())))
            .await
            .unwrap_err();
        assert_eq!(bad.reason, "invalid");
        assert!(bad.message.contains("signature"), "{}", bad.message);
        // An ES256 token against an RSA key: no key of that family.
        let (ec, _) = ec_key("k");
        assert!(
            oidc.authenticate(&bearer(&sign(Algorithm::ES256, None, &ec, &claims())))
                .await
                .is_err()
        );
    }

    #[test]
    fn keys_must_come_from_a_file_for_now() {
        let e = crate::config::parse_component::<OidcConfig>(
            serde_yaml_ng::from_str("issuer_url: https://x\naudience: a").unwrap(),
        )
        .unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].path, "jwks_file");
        assert!(
            e[0].message.contains("not supported yet"),
            "{}",
            e[0].message
        );
        let e = crate::config::parse_component::<OidcConfig>(
            serde_yaml_ng::from_str("jwks_file: /nonexistent").unwrap(),
        )
        .unwrap_err();
        let paths: Vec<_> = e.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["issuer_url", "audience", "jwks_file"]);
    }
}
