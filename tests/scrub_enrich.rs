//! The built-in plugins end to end: spans from the real OpenTelemetry Python SDK
//! (`tests/python/send_secrets.py`) go through `wasm/enrich` (a CSV table, inline rows, the
//! environment table) and then `wasm/scrub` (`builtin:pii-scrub`, every detector on, a hash
//! key from `${env:...}`) into the file exporter.
//!
//! Checked: no secret the SDK sent appears anywhere in the output file; every span, field by
//! field, is what the SDK sent with exactly the intended edits (redactions and enrichment) and
//! nothing else; hashed values are the same token for the same input, in one run and across
//! two collector runs, and different tokens for different inputs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value as Json, json};
use wasmcol_tests::sdk::output_json;
use wasmcol_tests::{
    Collector, all_spans, binary, free_port, python, read_json_lines, wait_until, workspace_root,
};

/// The variable the scrub config reads its HMAC key from.
const KEY_VAR: &str = "WASMCOL_TEST_PII_KEY";
const HASH_KEY: &str = "e2e-pii-key-3f9a1c07";
/// Spans `send_secrets.py` sends: five for `checkout`, one for `search`.
const SPANS: usize = 6;

const TEAMS_CSV: &str = "service,team,owner,oncall\n\
                         checkout,payments,ann,#payments\n\
                         search,discovery,bob,#search\n";

/// The downward-API style environment the collector runs with, and what `enrich` takes
/// from it for every resource.
const ENV: &[(&str, &str)] = &[
    ("HOSTNAME", "node-a.cluster.internal"),
    ("K8S_POD_NAME", "checkout-7d9f8c6b5-x2kqp"),
    ("K8S_NAMESPACE_NAME", "shop"),
    ("K8S_NODE_NAME", "worker-3"),
    ("POD_UID", "3f1c2a9e-8b7d-4c6e-9a1f-2b3c4d5e6f70"),
    ("POD_IP", "10.1.2.3"),
];
const FROM_ENV: &[(&str, &str)] = &[
    ("host.name", "node-a.cluster.internal"),
    ("k8s.pod.name", "checkout-7d9f8c6b5-x2kqp"),
    ("k8s.namespace.name", "shop"),
    ("k8s.node.name", "worker-3"),
    ("k8s.pod.uid", "3f1c2a9e-8b7d-4c6e-9a1f-2b3c4d5e6f70"),
    // An IP address, which the `ip` detector would mask: `ignored_keys` keeps it.
    ("k8s.pod.ip", "10.1.2.3"),
];

/// OTLP/HTTP → wasm/enrich → wasm/scrub → file. `@CSV@` is the teams table.
const CONFIG: &str = r#"
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:@HTTP@
processors:
  wasm/enrich:
    plugin: builtin:enrich
    tables:
      teams: { file: "@CSV@", key: service }
      tiers: { rows: { checkout: { tier: 1 } } }
    config:
      resource:
        - lookup: { table: teams, key: service.name, columns: { team.name: team, team.owner: owner } }
        - lookup: { table: tiers, key: service.name, columns: [tier] }
        - environment: { key: host.name, mode: insert }
        - environment: { key: k8s.pod.name }
        - environment: { key: k8s.pod.uid }
        - environment: { key: k8s.pod.ip }
        - environment: { key: k8s.namespace.name }
        - environment: { key: k8s.node.name }
      span:
        - extract:
            from: url.full
            pattern: "^https?://[^/]+(?P<http.route>/[^?#]*)"
            mode: insert
        # Copies a secret: wasm/scrub runs after, so the copy is hashed too.
        - copy: { from: enduser.email, to: enduser.id }
        - set: { attribute: deployment.environment.name, value: test, mode: insert }
  wasm/scrub:
    plugin: builtin:pii-scrub
    on_error: drop
    config:
      ignored_keys: [service.name, k8s.pod.ip]
      blocked_keys:
        - { pattern: "^http\\.request\\.header\\.cookie$", action: remove }
      blocked_values:
        - { pattern: "customer-[0-9]{6}", action: hash }
      detectors:
        credit_card: { action: mask, keep_suffix: 4 }
        email: hash
        ssn: true
        ip: true
        jwt: true
        bearer_token: true
        api_key: true
        iban: true
        phone: true
      hash:
        key: ${env:WASMCOL_TEST_PII_KEY}
        prefix: "hmac:"
      span_names: true
      status_messages: true
exporters:
  file:
    path: "{dir}/out.jsonl"
    flush_interval: 20ms
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [wasm/enrich, wasm/scrub]
      exporters: [file]
  telemetry:
    metrics:
      address: 127.0.0.1:@METRICS@
"#;

fn config(http: u16, metrics: u16, csv: &Path) -> String {
    CONFIG
        .replace("@HTTP@", &http.to_string())
        .replace("@METRICS@", &metrics.to_string())
        .replace("@CSV@", &csv.display().to_string())
}

fn stars(n: usize) -> String {
    "*".repeat(n)
}

fn string(s: impl Into<String>) -> Json {
    json!({ "string": s.into() })
}

/// What `wasm/scrub` does to an attribute, by key (the keys of `send_secrets.py` are unique
/// across span, event, link and resource attributes). `{H:name}` stands for the hash token of
/// the secret `name`: `hmac:` and 16 hex digits.
enum Edit {
    Keep,
    Remove,
    To(Json),
}

fn edit(key: &str) -> Edit {
    Edit::To(match key {
        "payment.card" => string(format!("{}1111", stars(15))),
        "payment.card_number" => string(format!("{}4242", stars(12))),
        "payment.note" => string(format!("charged {}0004 twice", stars(15))),
        "payment.amex.message" => string(format!("amex {}0005 ok", stars(13))),
        "payment.iban" => string(stars(27)),
        "card" => string(format!("{}0004", stars(15))),
        "enduser.email" | "enduser.id" => string("{H:jane}"),
        "contact.email" => string("{H:john}"),
        "deployment.owner" => string("{H:owner}"),
        "customer.id" => string("{H:customer}"),
        "customer.phone" => string(stars(16)),
        "customer.note" => string(format!("ssn {} on file", stars(11))),
        "client.address" => string(stars(11)),
        "network.peer.address" => string(stars(12)),
        "http.request.header.authorization" => {
            json!({ "array": [string(format!("Bearer {}", stars(15)))] })
        }
        "http.request.header.cookie" => return Edit::Remove,
        "auth.jwt" => string(stars(132)),
        "github.token" => string(stars(40)),
        "aws.access_key_id" => string(stars(20)),
        "stripe.key" => string(stars(32)),
        "config.dump" => string(format!("password={} retries=3", stars(14))),
        "exception.message" => string(format!(
            "login failed for {{H:jane}} with token={}",
            stars(12)
        )),
        "db.statement" => string("SELECT id, name FROM users WHERE email = ? AND card = ? LIMIT ?"),
        "db.query.text" => string("INSERT INTO payments (user_id, token, amount) VALUES (?, ?, ?)"),
        "link.reason" => string(format!(
            "retry of payment {}1111 for {{H:customer}}",
            stars(12)
        )),
        "process.command_args" => return Edit::Keep, // depends on the service; see `want`
        "mail.recipients" => json!({ "array": [
            string("{H:jane}"), string("not-an-email"), string("{H:team}")
        ] }),
        _ => return Edit::Keep,
    })
}

fn apply_edits(attrs: &mut Json) {
    let attrs = attrs.as_object_mut().expect("attributes are an object");
    let keys: Vec<String> = attrs.keys().cloned().collect();
    for k in keys {
        match edit(&k) {
            Edit::Keep => {}
            Edit::Remove => {
                attrs.remove(&k);
            }
            Edit::To(v) => {
                attrs.insert(k, v);
            }
        }
    }
}

/// The span the collector should write for `sent` (a record of `send_secrets.py`).
fn want(sent: &Json) -> Json {
    let mut w = sent.clone();
    apply_edits(&mut w["attributes"]);
    apply_edits(&mut w["resource"]);
    for e in w["events"].as_array_mut().unwrap() {
        apply_edits(&mut e["attributes"]);
    }
    for l in w["links"].as_array_mut().unwrap() {
        apply_edits(&mut l["attributes"]);
    }
    let url_full = sent["attributes"]["url.full"]["string"]
        .as_str()
        .map(str::to_string);
    let had_email = sent["attributes"].get("enduser.email").is_some();
    let service = sent["resource"]["service.name"]["string"]
        .as_str()
        .unwrap()
        .to_string();

    // Names and status messages (`span_names`, `status_messages`).
    match w["name"].as_str().unwrap() {
        "notify jane.doe@example.com" => w["name"] = json!("notify {H:jane}"),
        "POST /checkout" => {
            w["status_message"] = json!(format!("card {}1111 declined", stars(15)));
        }
        _ => {}
    }

    // URLs: the secret query parameters (and the password in the user info) are masked.
    if let Some(url) = &url_full {
        let scrubbed = url
            .replace("s3cr3tT0k3nValue", &stars(16))
            .replace("9f8e7d6c5b4a39281706", &stars(20));
        assert_ne!(&scrubbed, url, "a url.full the test knows: {url}");
        w["attributes"]["url.full"] = string(scrubbed);
    }
    if sent["attributes"].get("http.url").is_some() {
        w["attributes"]["http.url"] = string(format!(
            "https://admin:{}@internal.example.com/admin?sig={}&page=2",
            stars(11),
            stars(16)
        ));
    }

    // Enrichment, resource: the teams CSV, the inline `tiers` rows, the environment.
    let r = w["resource"].as_object_mut().unwrap();
    let (team, owner) = match service.as_str() {
        "checkout" => ("payments", "ann"),
        "search" => ("discovery", "bob"),
        other => panic!("unexpected service {other}"),
    };
    r.insert("team.name".into(), string(team));
    r.insert("team.owner".into(), string(owner));
    if service == "checkout" {
        r.insert("tier".into(), string("1"));
        r.insert(
            "process.command_args".into(),
            json!({ "array": [
                string("java"), string("-jar"), string("app.jar"),
                string(format!("--db-password={}", stars(14)))
            ] }),
        );
    }
    for (k, v) in FROM_ENV {
        r.insert((*k).into(), string(*v));
    }

    // Enrichment, spans.
    let a = w["attributes"].as_object_mut().unwrap();
    a.insert("deployment.environment.name".into(), string("test"));
    if let Some(url) = url_full {
        let path = url.split("://").nth(1).unwrap();
        let route = &path[path.find('/').unwrap()..path.find('?').unwrap()];
        a.insert("http.route".into(), string(route));
    }
    if had_email {
        a.insert("enduser.id".into(), string("{H:jane}"));
    }
    w
}

/// Binds each `{H:name}` in `want` to the token at the same place in `got`.
fn bind(want: &Json, got: &Json, tokens: &mut BTreeMap<String, String>) {
    match (want, got) {
        (Json::Object(w), Json::Object(g)) => {
            for (k, wv) in w {
                if let Some(gv) = g.get(k) {
                    bind(wv, gv, tokens);
                }
            }
        }
        (Json::Array(w), Json::Array(g)) => {
            for (wv, gv) in w.iter().zip(g) {
                bind(wv, gv, tokens);
            }
        }
        (Json::String(w), Json::String(g)) => bind_str(w, g, tokens),
        _ => {}
    }
}

/// `hmac:` and 16 lower-case hex digits.
const TOKEN_LEN: usize = 21;

fn bind_str(mut w: &str, mut g: &str, tokens: &mut BTreeMap<String, String>) {
    while let Some(i) = w.find("{H:") {
        if g.get(..i) != Some(&w[..i]) {
            return; // a mismatch: the comparison that follows shows it
        }
        let end = w.find('}').unwrap();
        let name = &w[i + 3..end];
        let Some(token) = g.get(i..i + TOKEN_LEN) else {
            return;
        };
        let well_formed = token.strip_prefix("hmac:").is_some_and(|hex| {
            hex.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if !well_formed {
            return;
        }
        // The first binding wins; a different token elsewhere fails the comparison.
        tokens
            .entry(name.to_string())
            .or_insert_with(|| token.to_string());
        w = &w[end + 1..];
        g = &g[i + TOKEN_LEN..];
    }
}

fn substitute(v: &mut Json, tokens: &BTreeMap<String, String>) {
    match v {
        Json::Object(o) => o.values_mut().for_each(|v| substitute(v, tokens)),
        Json::Array(a) => a.iter_mut().for_each(|v| substitute(v, tokens)),
        Json::String(s) => {
            for (name, token) in tokens {
                *s = s.replace(&format!("{{H:{name}}}"), token);
            }
        }
        _ => {}
    }
}

/// One collector run: what the SDK sent, the secrets it embedded, the output file's bytes and
/// spans, and the collector's log.
struct Run {
    sent: Vec<Json>,
    secrets: Vec<String>,
    raw: Vec<u8>,
    got: HashMap<String, Json>,
    log: String,
}

fn run_once() -> Run {
    let tables = tempfile::tempdir().unwrap();
    let csv = tables.path().join("teams.csv");
    std::fs::write(&csv, TEAMS_CSV).unwrap();
    let (http, metrics) = (free_port(), free_port());
    let mut env = ENV.to_vec();
    env.push((KEY_VAR, HASH_KEY));
    let mut c = Collector::start_with_env(&config(http, metrics, &csv), http, &env);

    let expected_path = c.path("expected.json");
    let status = Command::new(python())
        .arg(workspace_root().join("tests/python/send_secrets.py"))
        .args(["--endpoint", &format!("127.0.0.1:{http}"), "--expected"])
        .arg(&expected_path)
        .status()
        .expect("run python");
    assert!(status.success(), "the Python sender failed:\n{}", c.log());
    let record: Json =
        serde_json::from_str(&std::fs::read_to_string(&expected_path).unwrap()).unwrap();
    let sent = record["spans"].as_array().unwrap().clone();
    assert_eq!(sent.len(), SPANS);
    let secrets: Vec<String> = record["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();

    let out = c.path("out.jsonl");
    assert!(
        wait_until(Duration::from_secs(30), || out.exists()
            && all_spans(&read_json_lines(&out)).len() >= SPANS),
        "spans did not arrive:\n{}",
        c.log()
    );
    assert_eq!(c.stop(), 0, "{}", c.log());
    let raw = std::fs::read(&out).unwrap();
    let got = output_json(&read_json_lines(&out));
    Run {
        sent,
        secrets,
        raw,
        got,
        log: c.log(),
    }
}

/// Checks one run; returns the hash token of each hashed secret.
fn check(run: &Run) -> BTreeMap<String, String> {
    // 1. No secret anywhere in the file's bytes, as written or as JSON would escape it, and
    //    none in the collector's log.
    assert!(run.secrets.len() >= 25, "{:?}", run.secrets);
    let raw = String::from_utf8_lossy(&run.raw);
    let log = &run.log;
    for secret in run.secrets.iter().map(String::as_str).chain([HASH_KEY]) {
        let escaped = serde_json::to_string(secret).unwrap();
        let escaped = &escaped[1..escaped.len() - 1];
        assert!(
            !raw.contains(secret) && !raw.contains(escaped),
            "secret {secret:?} in the output:\n{raw}"
        );
        assert!(
            !log.contains(secret),
            "secret {secret:?} in the log:\n{log}"
        );
    }

    // 2. Every span exactly as sent, with exactly the intended edits.
    assert_eq!(run.got.len(), SPANS, "{:?}", run.got.keys());
    let mut tokens = BTreeMap::new();
    let mut wants = Vec::new();
    for sent in &run.sent {
        let id = sent["span_id"].as_str().unwrap();
        let got = run
            .got
            .get(id)
            .unwrap_or_else(|| panic!("span {id} ({}) missing", sent["name"]));
        let w = want(sent);
        bind(&w, got, &mut tokens);
        wants.push((id, w));
    }
    for (id, mut w) in wants {
        substitute(&mut w, &tokens);
        assert_eq!(run.got[id], w, "span {id} ({})", w["name"]);
    }

    // 3. One token per secret, a different one for each.
    let names: Vec<&str> = tokens.keys().map(String::as_str).collect();
    assert_eq!(names, ["customer", "jane", "john", "owner", "team"]);
    let mut distinct: Vec<&String> = tokens.values().collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), tokens.len(), "{tokens:?}");
    tokens
}

#[test]
fn sdk_spans_leave_scrubbed_and_enriched_with_stable_hashes() {
    let first = check(&run_once());
    let second = check(&run_once());
    assert_eq!(
        first, second,
        "the same key and value give the same token in every run"
    );
}

/// `wasmcol validate` on the test's config, with and without the hash key in the
/// environment.
#[test]
fn the_config_validates_and_needs_the_hash_key() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("teams.csv");
    std::fs::write(&csv, TEAMS_CSV).unwrap();
    let path = dir.path().join("c.yaml");
    let yaml =
        config(free_port(), free_port(), &csv).replace("{dir}", &dir.path().display().to_string());
    std::fs::write(&path, yaml).unwrap();
    let validate = |key: Option<&str>| {
        let mut cmd = Command::new(binary("wasmcol"));
        cmd.args(["validate", "--config"])
            .arg(&path)
            .env_remove(KEY_VAR);
        if let Some(k) = key {
            cmd.env(KEY_VAR, k);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = validate(Some(HASH_KEY));
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stderr) = validate(None);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("processors.wasm/scrub.config")
            && stderr.contains("config.hash.key: required"),
        "{stderr}"
    );
}
