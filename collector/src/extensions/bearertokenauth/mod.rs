//! `bearertokenauth`: a static bearer token, checked on requests a receiver gets (server side)
//! and sent with requests an exporter makes (client side).
//!
//! ```yaml
//! extensions:
//!   bearertokenauth/in:
//!     tokens: ["${env:TOKEN_A}", "${env:TOKEN_B}"]   # or token: ..., or filename: /run/token
//!     # header: Authorization     # default
//!     # scheme: Bearer            # default; "" sends and expects the bare token
//! receivers:
//!   otlp:
//!     protocols:
//!       http: { auth: { authenticator: bearertokenauth/in } }
//! service:
//!   extensions: [bearertokenauth/in]
//! ```
//!
//! Tokens are compared in constant time (their SHA-256 digests, so neither content nor length
//! leaks through timing). A `filename` holds one token per line (blank lines ignored); it is
//! read again when it changes (checked at most once a second), so a token can be rotated
//! without a restart. The client side sends `token`, the first of `tokens`, or the file's
//! first token. The subject of an authenticated request (metadata `auth.subject`) is the
//! extension's id.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue};
use ring::digest::{SHA256, digest};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::auth::{
    Authenticated, Authenticator, ClientAuthenticator, Idle, Refused, ServerAuthenticator, Side,
    Watched, credential,
};
use crate::component::{BuildContext, ExtensionConfig, Lifecycle, Problem, Validate};
use crate::config::opaque::Opaque;
use crate::telemetry::Health;

/// How often `filename` is checked for a change.
const FILE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// `extensions.bearertokenauth[/NAME]`, with the OpenTelemetry Collector's option names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerTokenAuthConfig {
    /// The header that carries the token.
    #[serde(default = "default_header")]
    pub header: String,
    /// The scheme before the token in the header's value; empty: the value is the bare token.
    #[serde(default = "default_scheme")]
    pub scheme: String,
    /// The one valid token.
    #[serde(default)]
    pub token: Opaque,
    /// Several tokens valid at once (during a rotation, say); the client side sends the first.
    #[serde(default)]
    pub tokens: Vec<Opaque>,
    /// A file holding the tokens, one per line, read again when it changes.
    #[serde(default)]
    pub filename: PathBuf,
}

fn default_header() -> String {
    "Authorization".into()
}
fn default_scheme() -> String {
    "Bearer".into()
}

/// The tokens in a file: one per non-blank line, trimmed.
fn parse_tokens(bytes: &[u8]) -> Result<Vec<Opaque>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "the file is not UTF-8 text".to_string())?;
    let tokens: Vec<Opaque> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(Opaque::new)
        .collect();
    if tokens.is_empty() {
        return Err("the file holds no token".into());
    }
    Ok(tokens)
}

impl BearerTokenAuthConfig {
    fn sources(&self) -> usize {
        usize::from(!self.token.is_empty())
            + usize::from(!self.tokens.is_empty())
            + usize::from(!self.filename.as_os_str().is_empty())
    }
}

impl Validate for BearerTokenAuthConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if HeaderName::from_bytes(self.header.as_bytes()).is_err() {
            p.push(Problem::new(
                "header",
                format!("{:?} is not a valid header name", self.header),
            ));
        }
        if self.scheme.contains(char::is_whitespace) {
            p.push(Problem::new(
                "scheme",
                format!("{:?} must be one word", self.scheme),
            ));
        }
        match self.sources() {
            0 => p.push(Problem::new(
                "token",
                "missing: set token, tokens or filename",
            )),
            1 => {}
            _ => p.push(Problem::new(
                "token",
                "set only one of token, tokens and filename",
            )),
        }
        for (i, t) in self.tokens.iter().enumerate() {
            if t.is_empty() {
                p.push(Problem::new(format!("tokens[{i}]"), "must not be empty"));
            }
        }
        let header_safe =
            |t: &Opaque| HeaderValue::from_str(&format!("{} {}", self.scheme, t.expose())).is_ok();
        if !header_safe(&self.token) || !self.tokens.iter().all(header_safe) {
            p.push(Problem::new(
                "token",
                "a token holds characters a header cannot carry (visible ASCII only)",
            ));
        }
        if !self.filename.as_os_str().is_empty() {
            match std::fs::read(&self.filename) {
                Ok(b) => {
                    if let Err(e) = parse_tokens(&b) {
                        p.push(Problem::new(
                            "filename",
                            format!("{}: {e}", self.filename.display()),
                        ));
                    }
                }
                Err(e) => p.push(Problem::new(
                    "filename",
                    format!("{}: {e}", self.filename.display()),
                )),
            }
        }
        p
    }
}

impl ExtensionConfig for BearerTokenAuthConfig {
    fn build(&self, _ctx: &BuildContext, _health: Health) -> anyhow::Result<Arc<dyn Lifecycle>> {
        Ok(Arc::new(Idle))
    }

    fn authenticator_sides(&self) -> Vec<Side> {
        vec![Side::Server, Side::Client]
    }

    fn authenticator(&self, ctx: &BuildContext) -> anyhow::Result<Option<Authenticator>> {
        let a = Arc::new(BearerToken::new(
            self,
            &ctx.id.to_string(),
            FILE_CHECK_INTERVAL,
        )?);
        Ok(Some(Authenticator {
            server: Some(a.clone()),
            client: Some(a),
        }))
    }
}

/// Where the valid tokens come from.
enum Tokens {
    Fixed(Arc<Vec<Opaque>>),
    File(Watched<Vec<Opaque>>),
}

/// Both sides of one `bearertokenauth` extension.
pub struct BearerToken {
    id: String,
    header: HeaderName,
    scheme: String,
    tokens: Tokens,
}

impl BearerToken {
    /// Built from a validated config; `interval` bounds how often the file is checked.
    pub fn new(cfg: &BearerTokenAuthConfig, id: &str, interval: Duration) -> anyhow::Result<Self> {
        let tokens = if !cfg.filename.as_os_str().is_empty() {
            Tokens::File(
                Watched::new(
                    format!("extensions.{id}.filename"),
                    cfg.filename.clone(),
                    interval,
                    parse_tokens,
                )
                .map_err(anyhow::Error::msg)?,
            )
        } else if !cfg.tokens.is_empty() {
            Tokens::Fixed(Arc::new(cfg.tokens.clone()))
        } else {
            Tokens::Fixed(Arc::new(vec![cfg.token.clone()]))
        };
        Ok(Self {
            id: id.to_string(),
            header: HeaderName::from_bytes(cfg.header.as_bytes())?,
            scheme: cfg.scheme.clone(),
            tokens,
        })
    }

    fn current(&self) -> Arc<Vec<Opaque>> {
        match &self.tokens {
            Tokens::Fixed(t) => t.clone(),
            Tokens::File(w) => w.current(),
        }
    }
}

#[async_trait]
impl ServerAuthenticator for BearerToken {
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Authenticated, Refused> {
        let presented = credential(headers, &self.header, &self.scheme)?;
        let presented = digest(&SHA256, presented.as_bytes());
        // Every token is compared, whichever matches, so timing tells nothing either.
        let mut matched = subtle::Choice::from(0);
        for t in self.current().iter() {
            let valid = digest(&SHA256, t.expose().as_bytes());
            matched |= valid.as_ref().ct_eq(presented.as_ref());
        }
        if bool::from(matched) {
            Ok(Authenticated {
                subject: self.id.clone(),
                groups: Vec::new(),
            })
        } else {
            Err(Refused::invalid("the token is not valid"))
        }
    }

    fn header(&self) -> &HeaderName {
        &self.header
    }

    fn challenge(&self) -> HeaderValue {
        let scheme = if self.scheme.is_empty() {
            "Bearer"
        } else {
            &self.scheme
        };
        HeaderValue::from_str(&format!("{scheme} realm=\"wasmcol\""))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer realm=\"wasmcol\""))
    }
}

impl ClientAuthenticator for BearerToken {
    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        let tokens = self.current();
        let Some(token) = tokens.first() else {
            return Vec::new();
        };
        let value = if self.scheme.is_empty() {
            token.expose().to_string()
        } else {
            format!("{} {}", self.scheme, token.expose())
        };
        match HeaderValue::from_str(&value) {
            Ok(mut v) => {
                v.set_sensitive(true);
                vec![(self.header.clone(), v)]
            }
            Err(_) => {
                crate::telemetry::log_limited!(warn, "the token holds characters a header cannot carry; sending none", extension = %self.id);
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> BearerTokenAuthConfig {
        crate::config::parse_component(serde_yaml_ng::from_str(yaml).unwrap()).unwrap()
    }

    fn with(header: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_bytes(header.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        h
    }

    #[tokio::test]
    async fn accepts_any_configured_token_and_refuses_others() {
        let cfg = config("tokens: [alpha, beta]");
        let a = BearerToken::new(&cfg, "bearertokenauth/in", FILE_CHECK_INTERVAL).unwrap();
        let ok = a
            .authenticate(&with("authorization", "Bearer beta"))
            .await
            .unwrap();
        assert_eq!(ok.subject, "bearertokenauth/in");
        assert!(
            a.authenticate(&with("authorization", "Bearer alpha"))
                .await
                .is_ok()
        );
        let bad = a.authenticate(&with("authorization", "Bearer gamma")).await;
        assert_eq!(bad.unwrap_err().reason, "invalid");
        let prefix = a.authenticate(&with("authorization", "Bearer alph")).await;
        assert_eq!(prefix.unwrap_err().reason, "invalid");
        let basic = a.authenticate(&with("authorization", "Basic alpha")).await;
        assert_eq!(basic.unwrap_err().reason, "malformed");
        let none = a.authenticate(&HeaderMap::new()).await;
        assert_eq!(none.unwrap_err().reason, "missing");
        // The client side sends the first.
        let h = a.headers();
        assert_eq!(h[0].0, "authorization");
        assert_eq!(h[0].1, "Bearer alpha");
        assert_eq!(a.challenge(), "Bearer realm=\"wasmcol\"");
    }

    #[tokio::test]
    async fn custom_header_and_no_scheme() {
        let cfg = config("token: s3cret\nheader: X-Api-Key\nscheme: \"\"");
        let a = BearerToken::new(&cfg, "bearertokenauth", FILE_CHECK_INTERVAL).unwrap();
        assert!(a.authenticate(&with("x-api-key", "s3cret")).await.is_ok());
        assert_eq!(
            a.authenticate(&with("authorization", "Bearer s3cret"))
                .await
                .unwrap_err()
                .reason,
            "missing"
        );
        assert_eq!(a.headers()[0].1, "s3cret");
    }

    #[tokio::test]
    async fn a_rotated_token_file_is_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "old-token\n").unwrap();
        let cfg = config(&format!("filename: {}", file.display()));
        let a = BearerToken::new(&cfg, "bearertokenauth", Duration::ZERO).unwrap();
        assert!(
            a.authenticate(&with("authorization", "Bearer old-token"))
                .await
                .is_ok()
        );
        std::fs::write(&file, "new-token\nnext-token\n").unwrap();
        assert!(
            a.authenticate(&with("authorization", "Bearer old-token"))
                .await
                .is_err()
        );
        assert!(
            a.authenticate(&with("authorization", "Bearer new-token"))
                .await
                .is_ok()
        );
        assert!(
            a.authenticate(&with("authorization", "Bearer next-token"))
                .await
                .is_ok()
        );
        assert_eq!(a.headers()[0].1, "Bearer new-token");
    }

    #[test]
    fn validation_names_the_option() {
        let p = |yaml: &str| {
            crate::config::parse_component::<BearerTokenAuthConfig>(
                serde_yaml_ng::from_str(yaml).unwrap(),
            )
            .unwrap_err()
        };
        assert_eq!(p("header: x").len(), 1);
        assert_eq!(p("header: x")[0].path, "token");
        assert_eq!(p("token: a\ntokens: [b]")[0].path, "token");
        assert_eq!(p("filename: /nonexistent/token")[0].path, "filename");
        assert_eq!(p("token: a\nheader: \"bad header\"")[0].path, "header");
        // The secret never shows in what the config prints.
        let cfg = config("token: hunter2");
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }
}
