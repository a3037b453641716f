//! The `config:` section of `builtin:pii-scrub`, and its validation into a ready [`Engine`].

use std::collections::HashSet;
use std::fmt;

use hmac::{Hmac, Mac};
use regex::{Regex, RegexSet};
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor, value::MapAccessDeserializer};
use sha2::Sha256;

use crate::detectors::{Check, DETECTORS};
use crate::scrub::{Engine, Redactor, Treatment, UrlRule, ValueRule};

/// The plugin's configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Fail-closed mode: when present, every attribute whose key is neither listed here nor in
    /// `ignored_keys` is removed (span, resource, scope, event and link attributes).
    #[serde(default)]
    pub allowed_keys: Option<Vec<String>>,
    /// Regexes on attribute keys (unanchored): the whole value of a matching key is redacted,
    /// whatever it holds. Each is a regex or `{pattern, action, keep_prefix, keep_suffix}`.
    #[serde(default)]
    pub blocked_keys: Vec<Rule>,
    /// Keys left exactly as they are: never removed, scanned or sanitized.
    #[serde(default)]
    pub ignored_keys: Vec<String>,
    /// Regexes on values (unanchored): each match is redacted. When the pattern has a capture
    /// group, only the first group is. Same forms as `blocked_keys`.
    #[serde(default)]
    pub blocked_values: Vec<Rule>,
    /// Regexes (unanchored): a matched secret, or a blocked key's value, that one of these
    /// matches is left alone.
    #[serde(default)]
    pub allowed_values: Vec<String>,
    /// The built-in value detectors, each `off`, `true`/`false`, an action, or
    /// `{action, keep_prefix, keep_suffix}`.
    #[serde(default)]
    pub detectors: Detectors,
    /// The action of every rule that does not name its own.
    #[serde(default = "default_action")]
    pub action: Action,
    /// How `mask` writes its replacement.
    #[serde(default)]
    pub mask: MaskConfig,
    /// How `hash` computes its token.
    #[serde(default)]
    pub hash: HashConfig,
    /// Structure-aware clean-up of URLs and SQL statements.
    #[serde(default)]
    pub sanitize: Sanitizers,
    /// Also scrub span and event names (detectors and `blocked_values`).
    #[serde(default)]
    pub span_names: bool,
    /// Also scrub span status messages (detectors and `blocked_values`).
    #[serde(default)]
    pub status_messages: bool,
    /// Add `redaction.masked.count`/`.keys` and `redaction.redacted.count`/`.keys` to each
    /// span and resource that had something redacted.
    #[serde(default)]
    pub summary: bool,
}

fn default_action() -> Action {
    Action::Mask
}

/// What to do with a value a rule matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Replace each character with the mask character, keeping the configured prefix and
    /// suffix.
    Mask,
    /// Replace with a keyed hash token (HMAC-SHA256): the same value always gives the same
    /// token, so values can still be counted and joined.
    Hash,
    /// Remove the attribute holding the value (in names and status messages: cut the match
    /// out).
    Remove,
}

impl Action {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "mask" => Some(Action::Mask),
            "hash" => Some(Action::Hash),
            "remove" => Some(Action::Remove),
            _ => None,
        }
    }
}

/// A rule's own action and mask settings; unset fields fall back to `action` and `mask`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct How {
    /// The action (default: the top-level `action`).
    #[serde(default)]
    pub action: Option<Action>,
    /// Characters kept in clear at the start when masking (default: `mask.keep_prefix`).
    #[serde(default)]
    pub keep_prefix: Option<usize>,
    /// Characters kept in clear at the end when masking (default: `mask.keep_suffix`).
    #[serde(default)]
    pub keep_suffix: Option<usize>,
}

/// A key or value rule: a regex, or a map with `pattern` and the fields of [`How`].
#[derive(Debug, Clone)]
pub struct Rule {
    /// The regex.
    pub pattern: String,
    /// What to do with a match.
    pub how: How,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleMap {
    pattern: String,
    #[serde(default)]
    action: Option<Action>,
    #[serde(default)]
    keep_prefix: Option<usize>,
    #[serde(default)]
    keep_suffix: Option<usize>,
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Rule;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a regex, or a map with `pattern` and optional `action`, `keep_prefix`, `keep_suffix`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Rule, E> {
                Ok(Rule {
                    pattern: s.to_string(),
                    how: How::default(),
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Rule, A::Error> {
                let m = RuleMap::deserialize(MapAccessDeserializer::new(map))?;
                Ok(Rule {
                    pattern: m.pattern,
                    how: How {
                        action: m.action,
                        keep_prefix: m.keep_prefix,
                        keep_suffix: m.keep_suffix,
                    },
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// One detector's setting: `None` is off.
#[derive(Debug, Clone, Default)]
pub struct Detector(pub Option<How>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectorMap {
    action: Action,
    #[serde(default)]
    keep_prefix: Option<usize>,
    #[serde(default)]
    keep_suffix: Option<usize>,
}

impl<'de> Deserialize<'de> for Detector {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Detector;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false, off, mask, hash, remove, or a map with `action` and optional `keep_prefix`, `keep_suffix`")
            }
            fn visit_bool<E: de::Error>(self, on: bool) -> Result<Detector, E> {
                Ok(Detector(on.then(How::default)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Detector, E> {
                if s == "off" {
                    return Ok(Detector(None));
                }
                let action = Action::parse(s).ok_or_else(|| {
                    E::invalid_value(de::Unexpected::Str(s), &"off, mask, hash or remove")
                })?;
                Ok(Detector(Some(How {
                    action: Some(action),
                    ..How::default()
                })))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Detector, A::Error> {
                let m = DetectorMap::deserialize(MapAccessDeserializer::new(map))?;
                Ok(Detector(Some(How {
                    action: Some(m.action),
                    keep_prefix: m.keep_prefix,
                    keep_suffix: m.keep_suffix,
                })))
            }
        }
        d.deserialize_any(V)
    }
}

fn on() -> Detector {
    Detector(Some(How::default()))
}

/// The built-in detectors. Field names are the detector names used in logs and docs.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Detectors {
    /// Payment card numbers (13–19 digits, spaces or dashes allowed) with a known issuer
    /// prefix and a valid Luhn check digit. Default on.
    pub credit_card: Detector,
    /// E-mail addresses. Default on.
    pub email: Detector,
    /// US social security numbers written `123-45-6789`, with valid area and group. Default on.
    pub ssn: Detector,
    /// IPv4 and IPv6 addresses. Default off: addresses are often needed to operate a service.
    pub ip: Detector,
    /// JSON Web Tokens. Default on.
    pub jwt: Detector,
    /// The credential after `Bearer` or `Basic`. Default on.
    pub bearer_token: Detector,
    /// Common API-key shapes (AWS, GitHub, GitLab, Slack, Stripe, Google, OpenAI-style
    /// `sk-`, npm, PEM private keys) and the value in `password=…`, `api_key: …`,
    /// `secret=…`, `token=…` text. Default on.
    pub api_key: Detector,
    /// International bank account numbers with a valid mod-97 check. Default on.
    pub iban: Detector,
    /// Phone numbers: `+` and 7–15 digits, or North American `(212) 555-0100` forms.
    /// Default off: digit runs in ordinary telemetry look like phone numbers too often.
    pub phone: Detector,
}

impl Default for Detectors {
    fn default() -> Self {
        Self {
            credit_card: on(),
            email: on(),
            ssn: on(),
            ip: Detector(None),
            jwt: on(),
            bearer_token: on(),
            api_key: on(),
            iban: on(),
            phone: Detector(None),
        }
    }
}

impl Detectors {
    fn get(&self, name: &str) -> &Detector {
        match name {
            "credit_card" => &self.credit_card,
            "email" => &self.email,
            "ssn" => &self.ssn,
            "ip" => &self.ip,
            "jwt" => &self.jwt,
            "bearer_token" => &self.bearer_token,
            "api_key" => &self.api_key,
            "iban" => &self.iban,
            "phone" => &self.phone,
            other => unreachable!("detector {other} has no setting"),
        }
    }
}

/// Mask settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MaskConfig {
    /// The character written over each masked character. Default `*`.
    pub char: char,
    /// Characters kept in clear at the start. Default 0.
    pub keep_prefix: usize,
    /// Characters kept in clear at the end. Default 0.
    pub keep_suffix: usize,
}

impl Default for MaskConfig {
    fn default() -> Self {
        Self {
            char: '*',
            keep_prefix: 0,
            keep_suffix: 0,
        }
    }
}

/// Hash settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HashConfig {
    /// The HMAC-SHA256 key, typically `${env:PII_HASH_KEY}`. Required when any rule hashes.
    pub key: Option<String>,
    /// Hex characters of the digest kept in the token, 8 to 64. Default 16.
    pub length: usize,
    /// Text written before the hex digest. Default empty.
    pub prefix: String,
}

impl Default for HashConfig {
    fn default() -> Self {
        Self {
            key: None,
            length: 16,
            prefix: String::new(),
        }
    }
}

/// The sanitizers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sanitizers {
    /// URL query parameters and passwords in URLs.
    pub url: UrlSanitizer,
    /// SQL literals.
    pub sql: SqlSanitizer,
}

/// Redacts named query parameters (and `user:password@`) in URL attributes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UrlSanitizer {
    /// Default true.
    pub enabled: bool,
    /// Attributes holding URLs or query strings.
    pub keys: Vec<String>,
    /// Parameter names whose values are redacted (compared ignoring ASCII case).
    pub params: Vec<String>,
    /// What to do with a parameter's value (`remove` drops the parameter). Default: the
    /// top-level `action`.
    pub action: Option<Action>,
    /// Also redact the password in `scheme://user:password@host`. Default true.
    pub userinfo: bool,
}

impl Default for UrlSanitizer {
    fn default() -> Self {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Self {
            enabled: true,
            keys: strings(&[
                "url.full",
                "http.url",
                "url.query",
                "http.target",
                "url.original",
            ]),
            params: strings(&[
                "access_token",
                "api_key",
                "apikey",
                "auth",
                "client_secret",
                "code",
                "id_token",
                "key",
                "password",
                "passwd",
                "refresh_token",
                "secret",
                "session",
                "sessionid",
                "sig",
                "signature",
                "token",
                "x-amz-credential",
                "x-amz-security-token",
                "x-amz-signature",
            ]),
            action: None,
            userinfo: true,
        }
    }
}

/// Replaces literals (strings, numbers) in SQL statements with `?`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqlSanitizer {
    /// Default true.
    pub enabled: bool,
    /// Attributes holding SQL statements.
    pub keys: Vec<String>,
}

impl Default for SqlSanitizer {
    fn default() -> Self {
        Self {
            enabled: true,
            keys: vec!["db.statement".to_string(), "db.query.text".to_string()],
        }
    }
}

/// A regex compile error on one line, naming the option.
fn regex_error(option: &str, pattern: &str, e: &regex::Error) -> String {
    format!("{option}: invalid regex {pattern:?}: {}", one_line(e))
}

/// The regex crate's syntax errors draw a caret diagram over several lines; keep the reason.
pub(crate) fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text.lines().last().unwrap_or_default();
    last.strip_prefix("error: ").unwrap_or(last).to_string()
}

impl Config {
    /// Checks everything (gathering every problem) and builds the engine.
    pub fn build(self) -> Result<Engine, String> {
        let mut errors = Vec::new();
        let mut hashing_option: Option<String> = None;
        let global = Treatment {
            action: self.action,
            keep_prefix: self.mask.keep_prefix,
            keep_suffix: self.mask.keep_suffix,
        };
        let mut resolve = |how: &How, option: String| {
            let t = Treatment {
                action: how.action.unwrap_or(global.action),
                keep_prefix: how.keep_prefix.unwrap_or(global.keep_prefix),
                keep_suffix: how.keep_suffix.unwrap_or(global.keep_suffix),
            };
            if t.action == Action::Hash && hashing_option.is_none() {
                hashing_option = Some(option);
            }
            t
        };

        let mut blocked_keys = Vec::new();
        for (i, rule) in self.blocked_keys.iter().enumerate() {
            let option = format!("config.blocked_keys[{i}]");
            match Regex::new(&rule.pattern) {
                Ok(_) => blocked_keys.push(resolve(&rule.how, option)),
                Err(e) => errors.push(regex_error(&option, &rule.pattern, &e)),
            }
        }

        let mut value_rules = Vec::new();
        let mut value_patterns = Vec::new();
        for d in DETECTORS {
            let Some(how) = &self.detectors.get(d.name).0 else {
                continue;
            };
            let treatment = resolve(how, format!("config.detectors.{}", d.name));
            match Regex::new(d.pattern) {
                Ok(regex) => {
                    value_rules.push(ValueRule::new(d.name, regex, d.check, treatment));
                    value_patterns.push(d.pattern.to_string());
                }
                Err(e) => errors.push(regex_error(&format!("detector {}", d.name), d.pattern, &e)),
            }
        }
        for (i, rule) in self.blocked_values.iter().enumerate() {
            let option = format!("config.blocked_values[{i}]");
            match Regex::new(&rule.pattern) {
                Ok(regex) => {
                    let treatment = resolve(&rule.how, option);
                    value_rules.push(ValueRule::new(
                        "blocked_values",
                        regex,
                        Check::None,
                        treatment,
                    ));
                    value_patterns.push(rule.pattern.clone());
                }
                Err(e) => errors.push(regex_error(&option, &rule.pattern, &e)),
            }
        }
        for (i, pattern) in self.allowed_values.iter().enumerate() {
            if let Err(e) = Regex::new(pattern) {
                errors.push(regex_error(
                    &format!("config.allowed_values[{i}]"),
                    pattern,
                    &e,
                ));
            }
        }

        let url_treatment = if self.sanitize.url.enabled {
            let how = How {
                action: self.sanitize.url.action,
                ..How::default()
            };
            resolve(&how, "config.sanitize.url.action".to_string())
        } else {
            global
        };

        if !(8..=64).contains(&self.hash.length) {
            errors.push(format!(
                "config.hash.length: must be between 8 and 64 hex characters, got {}",
                self.hash.length
            ));
        }
        let key = self.hash.key.as_deref().unwrap_or_default();
        let hmac = if key.is_empty() {
            if let Some(option) = &hashing_option {
                errors.push(format!(
                    "config.hash.key: required (and not empty) because {option} uses the hash action; set it from a secret, e.g. ${{env:PII_HASH_KEY}}"
                ));
            }
            None
        } else {
            Some(
                Hmac::<Sha256>::new_from_slice(key.as_bytes())
                    .map_err(|e| format!("config.hash.key: {e}"))?,
            )
        };

        if !errors.is_empty() {
            return Err(errors.join("; "));
        }

        let set = |patterns: &[String], option: &str| {
            RegexSet::new(patterns).map_err(|e| format!("{option}: {}", one_line(&e)))
        };
        let blocked_key_patterns: Vec<String> = self
            .blocked_keys
            .iter()
            .map(|r| r.pattern.clone())
            .collect();
        let allowed_values = if self.allowed_values.is_empty() {
            None
        } else {
            Some(set(&self.allowed_values, "config.allowed_values")?)
        };
        let card_in_ints = value_rules
            .iter()
            .find(|r| r.check == Check::Card)
            .map(|r| r.treatment);
        let lower = |v: &[String]| v.iter().map(|s| s.to_ascii_lowercase()).collect::<Vec<_>>();
        let set_of = |v: &[String]| v.iter().cloned().collect::<HashSet<_>>();

        Ok(Engine {
            allowed_keys: self.allowed_keys.as_deref().map(set_of),
            ignored_keys: set_of(&self.ignored_keys),
            blocked_key_set: set(&blocked_key_patterns, "config.blocked_keys")?,
            blocked_keys,
            url: self.sanitize.url.enabled.then(|| UrlRule {
                keys: set_of(&self.sanitize.url.keys),
                params: lower(&self.sanitize.url.params),
                treatment: url_treatment,
                userinfo: self.sanitize.url.userinfo,
            }),
            sql_keys: if self.sanitize.sql.enabled {
                set_of(&self.sanitize.sql.keys)
            } else {
                HashSet::new()
            },
            value_set: set(&value_patterns, "config.blocked_values")?,
            value_rules,
            allowed_values,
            card_in_ints,
            redactor: Redactor::new(self.mask.char, hmac, self.hash.length, self.hash.prefix),
            span_names: self.span_names,
            status_messages: self.status_messages,
            summary: self.summary,
        })
    }
}
