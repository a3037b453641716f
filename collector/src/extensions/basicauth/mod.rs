//! `basicauth`: HTTP Basic authentication. Server side: users and bcrypt password hashes in
//! htpasswd form; client side: a user name and password sent with every request.
//!
//! ```yaml
//! extensions:
//!   basicauth/in:
//!     htpasswd:
//!       file: /etc/wasmcol/htpasswd       # htpasswd -B -c /etc/wasmcol/htpasswd alice
//!       inline: |
//!         bob:$2y$10$...
//!   basicauth/out:
//!     client_auth:
//!       username: agent
//!       password: ${env:GATEWAY_PASSWORD}
//! ```
//!
//! Only bcrypt hashes (`$2y$`, `$2b$`, `$2a$`: what `htpasswd -B` writes) are accepted; MD5
//! (`$apr1$`), SHA-1 (`{SHA}`), crypt and plain-text entries are refused when the configuration
//! is loaded. Entries in `inline` win over those of the same user in `file`. The subject of an
//! authenticated request (metadata `auth.subject`) is the user name; an unknown user name costs
//! the same bcrypt check as a wrong password, so timing does not reveal users. A bcrypt check costs
//! milliseconds of CPU, so it runs off the network threads, and credentials once verified are
//! remembered (by their SHA-256 digest, never in clear) until the set of remembered ones
//! grows past 1024.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::auth::{
    Authenticated, Authenticator, ClientAuthenticator, Idle, Refused, ServerAuthenticator, Side,
    credential,
};
use crate::component::{BuildContext, ExtensionConfig, Lifecycle, Problem, Validate};
use crate::config::opaque::Opaque;
use crate::telemetry::Health;

/// Verified credentials remembered at most.
const REMEMBERED: usize = 1024;

/// `extensions.basicauth[/NAME]`, with the OpenTelemetry Collector's option names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthConfig {
    /// The users a receiver accepts (server side).
    #[serde(default)]
    pub htpasswd: Option<HtpasswdConfig>,
    /// The credentials an exporter sends (client side).
    #[serde(default)]
    pub client_auth: Option<ClientAuthConfig>,
}

/// `basicauth.htpasswd`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HtpasswdConfig {
    /// An htpasswd file (`user:hash` per line), read at start-up.
    #[serde(default)]
    pub file: PathBuf,
    /// htpasswd lines written in the configuration; they win over `file`'s.
    #[serde(default)]
    pub inline: String,
}

/// `basicauth.client_auth`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientAuthConfig {
    /// The user name sent.
    pub username: String,
    /// The password sent.
    #[serde(default)]
    pub password: Opaque,
}

/// The kind of a hash that is not bcrypt, for the message refusing it.
fn hash_kind(hash: &str) -> Option<&'static str> {
    if ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
        None
    } else if hash.starts_with("$apr1$") {
        Some("an MD5 ($apr1$)")
    } else if hash.starts_with("{SHA}") {
        Some("a SHA-1 ({SHA})")
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        Some("a SHA-crypt ($5$/$6$)")
    } else if hash.starts_with('$') {
        Some("an unknown ($...$)")
    } else {
        Some("a crypt(3) or plain-text")
    }
}

/// `user → bcrypt hash` from htpasswd text; errors name the line (never the hash).
fn parse_htpasswd(text: &str, what: &str) -> Result<BTreeMap<String, String>, Vec<String>> {
    let mut users = BTreeMap::new();
    let mut errors = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            errors.push(format!("{what} line {}: expected user:hash", n + 1));
            continue;
        };
        if let Some(kind) = hash_kind(hash) {
            errors.push(format!(
                "{what} line {}: user {user:?} has {kind} hash; only bcrypt is supported \
                 (create entries with htpasswd -B)",
                n + 1
            ));
            continue;
        }
        if !well_formed_bcrypt(hash) {
            errors.push(format!(
                "{what} line {}: user {user:?}: not a well-formed bcrypt hash",
                n + 1
            ));
            continue;
        }
        users.insert(user.to_string(), hash.to_string());
    }
    if errors.is_empty() {
        Ok(users)
    } else {
        Err(errors)
    }
}

/// A bcrypt hash of the right length with a sane cost (`$2y$10$` + 53 characters).
fn well_formed_bcrypt(hash: &str) -> bool {
    hash.len() == 60
        && hash
            .get(4..6)
            .and_then(|c| c.parse::<u32>().ok())
            .is_some_and(|cost| (4..=31).contains(&cost))
        && hash.as_bytes()[6] == b'$'
}

impl HtpasswdConfig {
    /// Every user, `file` first, then `inline`.
    fn users(&self) -> Result<BTreeMap<String, String>, Vec<Problem>> {
        let mut users = BTreeMap::new();
        let mut problems = Vec::new();
        if !self.file.as_os_str().is_empty() {
            match std::fs::read_to_string(&self.file) {
                Ok(text) => match parse_htpasswd(&text, &self.file.display().to_string()) {
                    Ok(u) => users.extend(u),
                    Err(e) => {
                        problems.extend(e.into_iter().map(|m| Problem::new("htpasswd.file", m)))
                    }
                },
                Err(e) => problems.push(Problem::new(
                    "htpasswd.file",
                    format!("{}: {e}", self.file.display()),
                )),
            }
        }
        match parse_htpasswd(&self.inline, "inline") {
            Ok(u) => users.extend(u),
            Err(e) => problems.extend(e.into_iter().map(|m| Problem::new("htpasswd.inline", m))),
        }
        if problems.is_empty() && users.is_empty() {
            problems.push(Problem::new(
                "htpasswd",
                "no users: set file or inline to htpasswd entries (user:bcrypt-hash)",
            ));
        }
        if problems.is_empty() {
            Ok(users)
        } else {
            Err(problems)
        }
    }
}

impl Validate for BasicAuthConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.htpasswd.is_none() && self.client_auth.is_none() {
            p.push(Problem::new(
                "",
                "set htpasswd (to check requests a receiver gets) or client_auth (to send credentials with an exporter's requests)",
            ));
        }
        if let Some(h) = &self.htpasswd
            && let Err(e) = h.users()
        {
            p.extend(e);
        }
        if let Some(c) = &self.client_auth
            && (c.username.is_empty() || c.username.contains(':'))
        {
            p.push(Problem::new(
                "client_auth.username",
                format!("must be non-empty and without ':', got {:?}", c.username),
            ));
        }
        p
    }
}

impl ExtensionConfig for BasicAuthConfig {
    fn build(&self, _ctx: &BuildContext, _health: Health) -> anyhow::Result<Arc<dyn Lifecycle>> {
        Ok(Arc::new(Idle))
    }

    fn authenticator_sides(&self) -> Vec<Side> {
        let mut s = Vec::new();
        if self.htpasswd.is_some() {
            s.push(Side::Server);
        }
        if self.client_auth.is_some() {
            s.push(Side::Client);
        }
        s
    }

    fn authenticator(&self, ctx: &BuildContext) -> anyhow::Result<Option<Authenticator>> {
        let server = match &self.htpasswd {
            Some(h) => {
                let users = h.users().map_err(|p| {
                    anyhow::anyhow!("extensions.{}.{}: {}", ctx.id, p[0].path, p[0].message)
                })?;
                Some(Arc::new(BasicServer::new(users)) as Arc<dyn ServerAuthenticator>)
            }
            None => None,
        };
        let client = match &self.client_auth {
            Some(c) => Some(Arc::new(BasicClient::new(c)?) as Arc<dyn ClientAuthenticator>),
            None => None,
        };
        Ok(Some(Authenticator { server, client }))
    }
}

/// The server side: checks `Authorization: Basic ...` against the htpasswd users.
pub struct BasicServer {
    users: Arc<BTreeMap<String, String>>,
    verified: Mutex<HashSet<[u8; 32]>>,
    header: HeaderName,
}

impl BasicServer {
    /// A checker for these users (`user → bcrypt hash`).
    pub fn new(users: BTreeMap<String, String>) -> Self {
        Self {
            users: Arc::new(users),
            verified: Mutex::new(HashSet::new()),
            header: AUTHORIZATION,
        }
    }
}

fn fingerprint(user: &str, password: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(user.as_bytes());
    ctx.update(&[0]);
    ctx.update(password.as_bytes());
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

#[async_trait]
impl ServerAuthenticator for BasicServer {
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Authenticated, Refused> {
        let encoded = credential(headers, &self.header, "Basic")?;
        let decoded = STANDARD
            .decode(encoded)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Refused::malformed("the Basic credentials are not base64 of UTF-8"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| Refused::malformed("the Basic credentials hold no ':'"))?;
        let refused = || Refused::invalid(format!("wrong user name or password (user {user:?})"));
        // An unknown user costs a bcrypt check all the same (against another user's hash), so
        // the answer's timing does not tell which users exist.
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.clone(), true),
            None => match self.users.values().next() {
                Some(h) => (h.clone(), false),
                None => return Err(refused()),
            },
        };
        let print = fingerprint(user, password);
        if known
            && self
                .verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&print)
        {
            return Ok(Authenticated {
                subject: user.to_string(),
                groups: Vec::new(),
            });
        }
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if !ok || !known {
            return Err(refused());
        }
        let mut verified = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if verified.len() >= REMEMBERED {
            verified.clear();
        }
        verified.insert(print);
        Ok(Authenticated {
            subject: user.to_string(),
            groups: Vec::new(),
        })
    }

    fn header(&self) -> &HeaderName {
        &self.header
    }

    fn challenge(&self) -> HeaderValue {
        HeaderValue::from_static("Basic realm=\"wasmcol\"")
    }
}

/// The client side: `Authorization: Basic base64(user:password)`.
pub struct BasicClient {
    value: HeaderValue,
}

impl BasicClient {
    fn new(c: &ClientAuthConfig) -> anyhow::Result<Self> {
        let encoded = STANDARD.encode(format!("{}:{}", c.username, c.password.expose()));
        let mut value = HeaderValue::from_str(&format!("Basic {encoded}"))?;
        value.set_sensitive(true);
        Ok(Self { value })
    }
}

impl ClientAuthenticator for BasicClient {
    fn headers(&self) -> Vec<(HeaderName, HeaderValue)> {
        vec![(AUTHORIZATION, self.value.clone())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<BasicAuthConfig, Vec<Problem>> {
        crate::config::parse_component(serde_yaml_ng::from_str(yaml).unwrap())
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = STANDARD.encode(format!("{user}:{password}"));
        h.insert(AUTHORIZATION, format!("Basic {v}").parse().unwrap());
        h
    }

    #[tokio::test]
    async fn bcrypt_entries_check_passwords() {
        let hash = bcrypt::hash("correct horse", 4).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, format!("# users\nalice:{hash}\n")).unwrap();
        let other = bcrypt::hash("pw2", 4).unwrap();
        let cfg = parse(&format!(
            "htpasswd:\n  file: {}\n  inline: \"bob:{other}\"\nclient_auth: {{ username: bob, password: pw2 }}",
            file.display()
        ))
        .unwrap();
        assert_eq!(cfg.authenticator_sides(), [Side::Server, Side::Client]);
        let users = cfg.htpasswd.as_ref().unwrap().users().unwrap();
        let server = BasicServer::new(users);
        let ok = server
            .authenticate(&basic("alice", "correct horse"))
            .await
            .unwrap();
        assert_eq!(ok.subject, "alice");
        // Remembered: the second check needs no bcrypt, and answers the same.
        assert!(
            server
                .authenticate(&basic("alice", "correct horse"))
                .await
                .is_ok()
        );
        assert!(server.authenticate(&basic("bob", "pw2")).await.is_ok());
        let wrong = server
            .authenticate(&basic("alice", "wrong"))
            .await
            .unwrap_err();
        assert_eq!(wrong.reason, "invalid");
        assert!(!wrong.message.contains("wrong\""), "{}", wrong.message);
        assert!(server.authenticate(&basic("carol", "x")).await.is_err());
        // An unknown user is checked against another user's hash: a match must not let it in.
        let unknown = server.authenticate(&basic("carol", "correct horse")).await;
        assert_eq!(unknown.unwrap_err().reason, "invalid");
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Basic !!!".parse().unwrap());
        assert_eq!(
            server.authenticate(&h).await.unwrap_err().reason,
            "malformed"
        );
        // The client side sends what the server side takes.
        let client = BasicClient::new(cfg.client_auth.as_ref().unwrap()).unwrap();
        let mut h = HeaderMap::new();
        for (k, v) in client.headers() {
            h.insert(k, v);
        }
        assert_eq!(server.authenticate(&h).await.unwrap().subject, "bob");
    }

    #[test]
    fn other_hash_kinds_are_refused_clearly() {
        let e = parse(
            "htpasswd:\n  inline: |\n    alice:$apr1$abc$def\n    bob:{SHA}xyz=\n    carol:plain",
        )
        .unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
        assert_eq!(e[0].path, "htpasswd.inline");
        assert!(
            e[0].message
                .contains("line 1: user \"alice\" has an MD5 ($apr1$) hash; only bcrypt"),
            "{}",
            e[0].message
        );
        assert!(e[1].message.contains("SHA-1"));
        assert!(e[2].message.contains("plain-text"));
        assert!(!e[2].message.contains("plain\""), "the hash is not quoted");
        let e = parse("htpasswd: { file: /nonexistent/htpasswd }").unwrap_err();
        assert_eq!(e[0].path, "htpasswd.file");
        assert!(parse("{}").is_err());
        let cfg = parse("client_auth: { username: u, password: hunter2 }").unwrap();
        assert!(!format!("{cfg:?}").contains("hunter2"));
        assert_eq!(cfg.authenticator_sides(), [Side::Client]);
    }
}
