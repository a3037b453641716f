//! Authentication of requests, as the OpenTelemetry Collector's `configauth`: authenticator
//! extensions (`bearertokenauth`, `basicauth`, `oidc`) that receivers and exporters name with
//! `auth: { authenticator: <id> }`.
//!
//! A *server* authenticator checks the headers of each incoming request before its body is
//! read, and says who sent it (a subject and groups) or why it is refused. A *client*
//! authenticator gives the headers to add to each outgoing request. An extension may be both
//! (`bearertokenauth`, `basicauth`).
//!
//! The subject of an authenticated request travels with its batch as request metadata
//! [`SUBJECT_KEY`] (and [`GROUPS_KEY`], one value per group), for `processors.batch`'s
//! `metadata_keys` and the kafka exporter's `topic_from_metadata_key`. Clients cannot set
//! these keys themselves: request headers named `auth.*` are never kept as metadata, and neither
//! is the header that carried the credential.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;

use crate::component::{ComponentId, Lifecycle, Problem};

/// The metadata key holding the authenticated subject.
pub const SUBJECT_KEY: &str = "auth.subject";
/// The metadata key holding the authenticated subject's groups (one value per group).
pub const GROUPS_KEY: &str = "auth.groups";
/// The prefix of metadata keys only authentication may set.
pub const RESERVED_PREFIX: &str = "auth.";

/// `auth:` on a receiver's protocol or an exporter: the authenticator extension to use.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The id of an authenticator extension (`bearertokenauth/in`), which must be listed in
    /// `service.extensions`.
    pub authenticator: String,
}

/// Who sent a request, as an authenticator established it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Authenticated {
    /// The subject (a user name, the `sub` claim, the authenticator's id).
    pub subject: String,
    /// The groups the subject belongs to (empty when the authenticator knows none).
    pub groups: Vec<String>,
}

/// Why a request was refused. `reason` is one of a few fixed words (a metric label);
/// `message` explains, never quoting the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// `missing`, `malformed`, `invalid`, `expired` or `not_yet_valid`.
    pub reason: &'static str,
    /// What was wrong, for the log and the client.
    pub message: String,
}

impl Refused {
    /// No credential in the request.
    pub fn missing(header: &HeaderName) -> Self {
        Self {
            reason: "missing",
            message: format!("no credentials in the {header} header"),
        }
    }
    /// A credential that is not in the expected form.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self {
            reason: "malformed",
            message: message.into(),
        }
    }
    /// A well-formed credential that is not accepted.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            reason: "invalid",
            message: message.into(),
        }
    }
}

/// Checks incoming requests (the server side of an authenticator).
#[async_trait]
pub trait ServerAuthenticator: Send + Sync {
    /// Who sent a request with these headers, or why it is refused.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Authenticated, Refused>;
    /// The header the credential is read from; it is never kept as request metadata.
    fn header(&self) -> &HeaderName;
    /// The `WWW-Authenticate` value of an HTTP 401 (`Bearer realm="wasmcol"`).
    fn challenge(&self) -> HeaderValue;
}

/// Adds credentials to outgoing requests (the client side of an authenticator).
pub trait ClientAuthenticator: Send + Sync {
    /// The headers to add to the next request, with their current values (a token file
    /// rewritten on disk is picked up here).
    fn headers(&self) -> Vec<(HeaderName, HeaderValue)>;
}

/// Which side of a connection an authenticator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Checks requests a receiver gets.
    Server,
    /// Adds credentials to requests an exporter sends.
    Client,
}

impl Side {
    fn noun(self) -> &'static str {
        match self {
            Side::Server => "server (receiver)",
            Side::Client => "client (exporter)",
        }
    }
}

/// What one authenticator extension offers, once built.
#[derive(Clone, Default)]
pub struct Authenticator {
    /// For receivers.
    pub server: Option<Arc<dyn ServerAuthenticator>>,
    /// For exporters.
    pub client: Option<Arc<dyn ClientAuthenticator>>,
}

/// The authenticators enabled in `service.extensions`, by id.
pub type Authenticators = Arc<BTreeMap<ComponentId, Authenticator>>;

impl AuthConfig {
    /// The extension id this names.
    pub fn id(&self) -> Result<ComponentId, String> {
        ComponentId::parse(&self.authenticator)
    }

    /// Problems with the id itself; `path` is that of the `auth` option.
    pub fn validate(&self, path: &str) -> Vec<Problem> {
        match self.id() {
            Ok(_) => Vec::new(),
            Err(e) => vec![Problem::new(format!("{path}.authenticator"), e)],
        }
    }

    /// The server side of the named authenticator, from those built.
    pub fn server(&self, built: &Authenticators) -> anyhow::Result<Arc<dyn ServerAuthenticator>> {
        let id = self.id().map_err(anyhow::Error::msg)?;
        built
            .get(&id)
            .and_then(|a| a.server.clone())
            .ok_or_else(|| {
                anyhow::anyhow!("auth.authenticator: {id} is not an enabled server authenticator")
            })
    }

    /// The client side of the named authenticator, from those built.
    pub fn client(&self, built: &Authenticators) -> anyhow::Result<Arc<dyn ClientAuthenticator>> {
        let id = self.id().map_err(anyhow::Error::msg)?;
        built
            .get(&id)
            .and_then(|a| a.client.clone())
            .ok_or_else(|| {
                anyhow::anyhow!("auth.authenticator: {id} is not an enabled client authenticator")
            })
    }
}

/// Checks one `auth.authenticator` value: the extension exists, is enabled, and serves
/// `side`. `defined` gives, for each defined extension, the sides it serves (empty for
/// extensions that do not authenticate). `None` when all is well, else what is wrong.
pub fn check_reference(
    name: &str,
    side: Side,
    defined: &dyn Fn(&ComponentId) -> Option<Vec<Side>>,
    enabled: &[String],
) -> Option<String> {
    let id = match ComponentId::parse(name) {
        Ok(id) => id,
        Err(e) => return Some(e),
    };
    let Some(sides) = defined(&id) else {
        return Some(format!(
            "extension \"{id}\" is not defined in the extensions section"
        ));
    };
    if !enabled.iter().any(|e| *e == id.to_string()) {
        return Some(format!(
            "extension \"{id}\" is not enabled: add it to service.extensions"
        ));
    }
    if sides.is_empty() {
        return Some(format!(
            "extension \"{id}\" is not an authenticator (use bearertokenauth, basicauth or oidc)"
        ));
    }
    if !sides.contains(&side) {
        let has = sides
            .iter()
            .map(|s| s.noun())
            .collect::<Vec<_>>()
            .join(" and ");
        return Some(format!(
            "extension \"{id}\" is not a {} authenticator: as configured it is a {has} authenticator only",
            side.noun()
        ));
    }
    None
}

/// The request metadata of an authenticated request: `pairs` (the request's headers, when
/// `include_metadata` is on) without the header that carried the credential, plus
/// [`SUBJECT_KEY`] and [`GROUPS_KEY`].
pub fn metadata_with(
    pairs: impl IntoIterator<Item = (String, String)>,
    consumed: &HeaderName,
    who: &Authenticated,
) -> crate::pipeline::Metadata {
    let consumed = consumed.as_str();
    crate::pipeline::Metadata::new(
        pairs
            .into_iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case(consumed) && !is_reserved(k))
            .chain(std::iter::once((
                SUBJECT_KEY.to_string(),
                who.subject.clone(),
            )))
            .chain(
                who.groups
                    .iter()
                    .map(|g| (GROUPS_KEY.to_string(), g.clone())),
            ),
    )
}

/// True for metadata keys only authentication may set (`auth.*`).
pub fn is_reserved(key: &str) -> bool {
    key.len() >= RESERVED_PREFIX.len()
        && key[..RESERVED_PREFIX.len()].eq_ignore_ascii_case(RESERVED_PREFIX)
}

/// The value of `header` after `scheme` and one space (`Bearer abc` → `abc`); the scheme is
/// matched without regard to case, as RFC 9110 says. An empty `scheme` takes the whole value.
pub fn credential<'a>(
    headers: &'a HeaderMap,
    header: &HeaderName,
    scheme: &str,
) -> Result<&'a str, Refused> {
    let value = headers
        .get(header)
        .ok_or_else(|| Refused::missing(header))?;
    let value = value
        .to_str()
        .map_err(|_| Refused::malformed(format!("the {header} header is not visible ASCII")))?
        .trim();
    if scheme.is_empty() {
        return Ok(value);
    }
    match value.split_once(' ') {
        Some((s, rest)) if s.eq_ignore_ascii_case(scheme) && !rest.trim().is_empty() => {
            Ok(rest.trim())
        }
        _ => Err(Refused::malformed(format!(
            "the {header} header does not hold \"{scheme} <credentials>\""
        ))),
    }
}

/// A receiver transport's authentication: its authenticator, and the failures it counts
/// (`wasmcol_receiver_auth_failures_total{receiver,transport,reason}`).
#[derive(Clone)]
pub struct Guard {
    authenticator: Arc<dyn ServerAuthenticator>,
    metrics: Arc<crate::telemetry::Metrics>,
    receiver: String,
    transport: &'static str,
}

impl Guard {
    /// The guard of `transport` (`grpc`, `http`) of the receiver `ctx` builds, using the
    /// authenticator `config` names.
    pub fn new(
        config: &AuthConfig,
        ctx: &crate::component::BuildContext,
        transport: &'static str,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            authenticator: config.server(&ctx.authenticators)?,
            metrics: ctx.metrics.clone(),
            receiver: ctx.id.to_string(),
            transport,
        })
    }

    /// Who sent a request with these headers; a refusal is counted and logged (without the
    /// credential).
    pub async fn check(&self, headers: &HeaderMap) -> Result<Authenticated, Refused> {
        let result = self.authenticator.authenticate(headers).await;
        if let Err(r) = &result {
            self.metrics
                .receiver_auth_failures(&self.receiver, self.transport, r.reason)
                .inc();
            crate::telemetry::log_limited!(info, "request refused: authentication failed", receiver = %self.receiver, transport = self.transport, reason = r.reason, message = %r.message);
        }
        result
    }

    /// The `WWW-Authenticate` value of an HTTP 401.
    pub fn challenge(&self) -> HeaderValue {
        self.authenticator.challenge()
    }

    /// The request metadata of a request `who` sent: `pairs` (its headers, when kept) less the
    /// credential's header, plus the subject and groups.
    pub fn metadata(
        &self,
        pairs: impl IntoIterator<Item = (String, String)>,
        who: &Authenticated,
    ) -> crate::pipeline::Metadata {
        metadata_with(pairs, self.authenticator.header(), who)
    }
}

/// The running side of an authenticator extension: it has nothing to start or stop (files are
/// re-read on use, see [`Watched`]).
pub struct Idle;

#[async_trait]
impl Lifecycle for Idle {}

/// Turns a file's bytes into a value, or says why it cannot.
type Parse<T> = Box<dyn Fn(&[u8]) -> Result<T, String> + Send + Sync>;

/// A value read from a file, read again when the file changes (modification time, size or
/// inode differ), checked at most once per `interval` when the value is asked for. A file
/// that cannot be read or parsed keeps the previous value, with a warning.
pub struct Watched<T> {
    what: String,
    path: PathBuf,
    interval: Duration,
    parse: Parse<T>,
    state: Mutex<WatchState<T>>,
}

struct WatchState<T> {
    value: Arc<T>,
    stamp: Option<(Option<SystemTime>, u64, u64)>,
    checked: Instant,
}

fn stamp(path: &std::path::Path) -> Option<(Option<SystemTime>, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok(), m.len(), m.ino()))
}

impl<T> Watched<T> {
    /// Reads the file once; an error here is a start-up error. `what` names the option in
    /// messages (`extensions.bearertokenauth.filename`).
    pub fn new(
        what: impl Into<String>,
        path: PathBuf,
        interval: Duration,
        parse: impl Fn(&[u8]) -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<Self, String> {
        let what = what.into();
        let st = stamp(&path);
        let bytes = std::fs::read(&path).map_err(|e| format!("{what}: {}: {e}", path.display()))?;
        let value = Arc::new(parse(&bytes).map_err(|e| format!("{what}: {e}"))?);
        Ok(Self {
            what,
            path,
            interval,
            parse: Box::new(parse),
            state: Mutex::new(WatchState {
                value,
                stamp: st,
                checked: Instant::now(),
            }),
        })
    }

    /// The value now, read again first if the file changed.
    pub fn current(&self) -> Arc<T> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() < self.interval {
            return state.value.clone();
        }
        state.checked = Instant::now();
        let st = stamp(&self.path);
        if st == state.stamp {
            return state.value.clone();
        }
        let read = std::fs::read(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|b| (self.parse)(&b));
        match read {
            Ok(v) => {
                tracing::info!(what = %self.what, file = %self.path.display(), "file changed on disk; using its new content");
                state.value = Arc::new(v);
                state.stamp = st;
            }
            Err(e) => {
                crate::telemetry::log_limited!(warn, "file changed on disk but cannot be used; keeping its previous content", what = %self.what, error = %e);
            }
        }
        state.value.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_need_their_scheme() {
        let mut h = HeaderMap::new();
        let auth = http::header::AUTHORIZATION;
        assert_eq!(
            credential(&h, &auth, "Bearer").unwrap_err().reason,
            "missing"
        );
        h.insert(&auth, "bearer  abc ".parse().unwrap());
        assert_eq!(credential(&h, &auth, "Bearer").unwrap(), "abc");
        h.insert(&auth, "Basic abc".parse().unwrap());
        assert_eq!(
            credential(&h, &auth, "Bearer").unwrap_err().reason,
            "malformed"
        );
        assert_eq!(credential(&h, &auth, "").unwrap(), "Basic abc");
    }

    #[test]
    fn metadata_cannot_be_spoofed_and_drops_the_credential() {
        let who = Authenticated {
            subject: "alice".into(),
            groups: vec!["ops".into(), "dev".into()],
        };
        let pairs = [
            ("authorization", "Bearer secret"),
            ("auth.subject", "mallory"),
            ("Auth.Groups", "admin"),
            ("x-tenant", "acme"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let m = metadata_with(pairs, &http::header::AUTHORIZATION, &who);
        assert_eq!(m.get(SUBJECT_KEY), Some("alice"));
        assert_eq!(m.get_all(GROUPS_KEY).collect::<Vec<_>>(), ["ops", "dev"]);
        assert_eq!(m.get("x-tenant"), Some("acme"));
        assert_eq!(m.get("authorization"), None);
        assert!(!format!("{m:?}").contains("secret"));
        assert!(!format!("{m:?}").contains("mallory"));
    }

    #[test]
    fn references_are_checked() {
        let defined = |id: &ComponentId| match id.to_string().as_str() {
            "bearertokenauth" => Some(vec![Side::Server, Side::Client]),
            "oidc" => Some(vec![Side::Server]),
            "file_storage" => Some(vec![]),
            _ => None,
        };
        let enabled: Vec<String> = ["bearertokenauth", "oidc", "file_storage"]
            .map(String::from)
            .to_vec();
        let check = |name: &str, side| check_reference(name, side, &defined, &enabled);
        assert_eq!(check("bearertokenauth", Side::Client), None);
        assert!(check("nope", Side::Server).unwrap().contains("not defined"));
        assert!(
            check("oidc", Side::Client)
                .unwrap()
                .contains("not a client")
        );
        assert!(
            check("file_storage", Side::Server)
                .unwrap()
                .contains("not an authenticator")
        );
        let off = check_reference("oidc", Side::Server, &defined, &[]);
        assert!(off.unwrap().contains("add it to service.extensions"));
    }

    #[test]
    fn watched_files_are_read_again_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "one").unwrap();
        let w = Watched::new("t", path.clone(), Duration::ZERO, |b| {
            Ok(String::from_utf8_lossy(b).into_owned())
        })
        .unwrap();
        assert_eq!(*w.current(), "one");
        std::fs::write(&path, "second").unwrap();
        assert_eq!(*w.current(), "second");
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            *w.current(),
            "second",
            "a vanished file keeps the last value"
        );
    }
}
