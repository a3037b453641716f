//! Unit tests: each detector, action, sanitizer and key rule, through the native harness (so
//! the host's own edit checks and application run too).

use serde_json::{Value as Json, json};
use wasmcol_plugin_sdk::prelude::*;
use wasmcol_plugin_sdk::proto::common::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value as V,
};
use wasmcol_plugin_sdk::proto::trace::{ResourceSpans, Span, Status, span::Event, span::Link};
use wasmcol_plugin_sdk::testing::{Harness, counter, kv, resource_spans, span, string_value};

use crate::PiiScrub;

fn harness(config: Json) -> Harness<PiiScrub> {
    Harness::<PiiScrub>::new(config).unwrap()
}

fn config_error(config: Json) -> String {
    Harness::<PiiScrub>::new(config)
        .err()
        .expect("the configuration should be rejected")
}

/// Runs one span with these attributes through `config`; returns the span as passed on.
fn scrub_span(config: Json, attrs: Vec<KeyValue>) -> Span {
    let mut s = span("op", &[]);
    s.attributes = attrs;
    let out = harness(config)
        .process(vec![resource_spans("svc", vec![s])])
        .unwrap();
    out[0].scope_spans[0].spans[0].clone()
}

/// The string value of one attribute after scrubbing `value` under `key`.
fn scrub_one(config: Json, key: &str, value: &str) -> Option<String> {
    let s = scrub_span(config, vec![kv(key, value.into())]);
    get(&s.attributes, key).map(|v| text(v).to_string())
}

fn scrub(value: &str) -> String {
    scrub_one(json!({}), "message", value).expect("the attribute should stay")
}

fn get<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
}

fn text(v: &AnyValue) -> &str {
    as_str(v).unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fn array(values: Vec<AnyValue>) -> AnyValue {
    AnyValue {
        value: Some(V::ArrayValue(ArrayValue { values })),
    }
}

fn map(entries: Vec<KeyValue>) -> AnyValue {
    AnyValue {
        value: Some(V::KvlistValue(KeyValueList { values: entries })),
    }
}

fn stars(n: usize) -> String {
    "*".repeat(n)
}

fn any(value: AnyValue) -> Value {
    Value::Any(value)
}

// ---- configuration ----

#[test]
fn a_bad_regex_is_a_startup_error_naming_the_rule() {
    let err = config_error(json!({"blocked_values": ["a", "b", "("]}));
    assert!(
        err.starts_with(r#"config.blocked_values[2]: invalid regex "(": "#),
        "{err}"
    );
    let err = config_error(json!({"blocked_keys": [{"pattern": "[z-a]", "action": "remove"}]}));
    assert!(
        err.starts_with(r#"config.blocked_keys[0]: invalid regex "[z-a]": "#),
        "{err}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = config_error(json!({
        "blocked_values": ["("],
        "allowed_values": ["["],
        "detectors": {"email": "hash"},
        "hash": {"length": 4},
    }));
    for part in [
        "config.blocked_values[0]: invalid regex",
        "config.allowed_values[0]: invalid regex",
        "config.hash.length: must be between 8 and 64",
        "config.hash.key: required (and not empty) because config.detectors.email uses the hash action",
    ] {
        assert!(err.contains(part), "missing {part:?} in {err}");
    }
}

#[test]
fn unknown_options_and_bad_values_name_the_option() {
    let err = config_error(json!({"alowed_keys": []}));
    assert!(
        err.starts_with("config.alowed_keys: unknown field"),
        "{err}"
    );
    let err = config_error(json!({"detectors": {"email": "scramble"}}));
    assert!(
        err.starts_with("config.detectors.email: invalid value"),
        "{err}"
    );
    let err = config_error(json!({"detectors": {"passport": true}}));
    assert!(
        err.starts_with("config.detectors.passport: unknown field"),
        "{err}"
    );
    let err = config_error(json!({"blocked_keys": [{"pattern": "x", "action": "burn"}]}));
    assert!(
        err.starts_with("config.blocked_keys[0].action: unknown variant"),
        "{err}"
    );
    let err = config_error(json!({"sanitize": {"url": {"parameters": []}}}));
    assert!(
        err.starts_with("config.sanitize.url.parameters: unknown field"),
        "{err}"
    );
}

// ---- detectors ----

#[test]
fn credit_cards_are_masked_when_the_luhn_check_passes() {
    assert_eq!(
        scrub("card 4111111111111111 ok"),
        "card **************** ok"
    );
    assert_eq!(
        scrub("card 4111 1111 1111 1111."),
        format!("card {}.", stars(19))
    );
    assert_eq!(
        scrub("amex 3782-822463-10005"),
        format!("amex {}", stars(17))
    );
    assert_eq!(scrub("5500000000000004"), "****************");
}

#[test]
fn luhn_failures_and_unknown_issuers_are_not_cards() {
    // Order ids and timestamps: wrong check digit, or a valid one without a card prefix.
    for v in [
        "order 4111111111111112",
        "order 1234567812345678",
        "id 1234567812345670",
        "ts 1700000000000000000",
        "zero 0000000000000000",
    ] {
        assert_eq!(scrub(v), v);
    }
}

#[test]
fn a_card_is_found_among_other_numbers() {
    assert_eq!(
        scrub("qty 12 4111 1111 1111 1111 x"),
        format!("qty 12 {} x", stars(19))
    );
    assert_eq!(
        scrub("2024-01-15 4111-1111-1111-1111"),
        format!("2024-01-15 {}", stars(19))
    );
}

#[test]
fn card_numbers_stored_as_integers_are_masked() {
    let s = scrub_span(
        json!({}),
        vec![
            kv("card", Value::Int(4_111_111_111_111_111)),
            kv("big", Value::Int(4_111_111_111_111_112)),
        ],
    );
    assert_eq!(
        get(&s.attributes, "card"),
        Some(&string_value("****************"))
    );
    assert_eq!(
        get(&s.attributes, "big"),
        Some(&Value::Int(4_111_111_111_111_112).into_any_value())
    );
}

#[test]
fn emails_are_masked() {
    // `'` is not part of the local part the detector knows, so the address starts after it.
    assert_eq!(
        scrub("from alice.o'hara@example.co.uk"),
        format!("from alice.o'{}", stars(18))
    );
    assert_eq!(
        scrub("to: bob+tag@mail.example.com;"),
        format!("to: {};", stars(24))
    );
    assert_eq!(scrub("not an email: a@b"), "not an email: a@b");
}

#[test]
fn ssns_are_masked_when_area_and_group_are_valid() {
    assert_eq!(scrub("ssn 123-45-6789"), "ssn ***********");
    for v in [
        "000-12-3456",
        "666-12-3456",
        "912-34-5678",
        "123-00-4567",
        "123-45-0000",
        "1123-45-6789",
    ] {
        assert_eq!(scrub(v), v);
    }
}

#[test]
fn ip_addresses_are_masked_only_when_switched_on() {
    let v = "client 10.1.2.3 via fe80::1ff:fe23:4567:890a";
    assert_eq!(scrub(v), v);
    let on = json!({"detectors": {"ip": true}});
    assert_eq!(
        scrub_one(on.clone(), "m", v).unwrap(),
        format!("client {} via {}", stars(8), stars(24))
    );
    assert_eq!(
        scrub_one(on.clone(), "m", "loopback ::1").unwrap(),
        "loopback ***"
    );
    for v in [
        "version 1.2.3.4.5",
        "std::fmt::Display",
        "at 12:30:45",
        "999.1.1.1",
        "abc::def",
    ] {
        assert_eq!(scrub_one(on.clone(), "m", v).unwrap(), v);
    }
}

#[test]
fn jwts_bearer_tokens_and_api_keys_are_masked() {
    let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    assert_eq!(
        scrub(&format!("t={jwt}")),
        format!("t={}", "*".repeat(jwt.len()))
    );
    assert_eq!(
        scrub("Authorization: Bearer abc.DEF-123_xyz"),
        format!("Authorization: Bearer {}", stars(15))
    );
    assert_eq!(
        scrub("basic dXNlcjpwYXNzd29yZA=="),
        format!("basic {}", stars(20))
    );
    assert_eq!(
        scrub("key AKIAIOSFODNN7EXAMPLE end"),
        format!("key {} end", stars(20))
    );
    let ghp = format!("ghp_{}", "a1B2c3D4e5".repeat(4));
    assert_eq!(scrub(&ghp), "*".repeat(ghp.len()));
    assert_eq!(
        scrub("login password=hunter22 user=x"),
        "login password=******** user=x"
    );
    assert_eq!(
        scrub(r#"{"api_key": "k-123456"}"#),
        r#"{"api_key": "********"}"#
    );
    assert_eq!(scrub("bearer of bad news"), "bearer of bad news");
}

#[test]
fn ibans_are_masked_when_the_check_digits_are_right() {
    assert_eq!(
        scrub("pay GB82 WEST 1234 5698 7654 32 NOW"),
        format!("pay {} NOW", stars(27))
    );
    assert_eq!(scrub("DE89370400440532013000"), stars(22));
    assert_eq!(
        scrub("GB82 WEST 1234 5698 7654 33"),
        "GB82 WEST 1234 5698 7654 33"
    );
}

#[test]
fn phone_numbers_are_masked_only_when_switched_on() {
    let v = "call +44 20 7946 0958 or (212) 555-0100";
    assert_eq!(scrub(v), v);
    let on = json!({"detectors": {"phone": "mask"}});
    assert_eq!(
        scrub_one(on.clone(), "m", v).unwrap(),
        format!("call {} or {}", stars(16), stars(14))
    );
    assert_eq!(
        scrub_one(on, "m", "build 2024.1.15").unwrap(),
        "build 2024.1.15"
    );
}

#[test]
fn detectors_can_be_switched_off() {
    let off = json!({"detectors": {"email": false, "credit_card": "off"}});
    let v = "a@example.com 4111111111111111";
    assert_eq!(scrub_one(off, "m", v).unwrap(), v);
}

#[test]
fn values_without_secrets_are_not_edited_at_all() {
    let mut plugin = harness(json!({"detectors": {"ip": true, "phone": true}, "summary": true}));
    let input = vec![resource_spans(
        "checkout",
        vec![span(
            "GET /cart",
            &[("http.route", "/cart/{id}".into()), ("n", Value::Int(42))],
        )],
    )];
    let mut batch = Batch::new(input.clone());
    plugin.plugin().process(&mut batch).unwrap();
    assert!(batch.edits().is_empty(), "{:?}", batch.edits());
    assert_eq!(plugin.process(input.clone()).unwrap(), input);
}

// ---- user rules ----

#[test]
fn blocked_values_redact_matches_or_their_first_group() {
    let c = json!({"blocked_values": ["tenant-[0-9]+", {"pattern": "pin=([0-9]{4})", "action": "mask"}]});
    assert_eq!(
        scrub_one(c, "m", "tenant-42 pin=1234 pin=12").unwrap(),
        "********* pin=**** pin=12"
    );
}

#[test]
fn allowed_values_are_exceptions() {
    let c = json!({"allowed_values": ["@example\\.com$"], "blocked_keys": ["^owner$"]});
    let s = scrub_span(
        c,
        vec![
            kv("a", "ops@example.com".into()),
            kv("b", "eve@evil.test".into()),
            kv("owner", "team@example.com".into()),
        ],
    );
    assert_eq!(text(get(&s.attributes, "a").unwrap()), "ops@example.com");
    assert_eq!(text(get(&s.attributes, "b").unwrap()), "*************");
    assert_eq!(
        text(get(&s.attributes, "owner").unwrap()),
        "team@example.com"
    );
}

#[test]
fn blocked_keys_redact_whole_values_with_their_own_action() {
    let c = json!({
        "blocked_keys": ["(?i)password", {"pattern": "^session$", "action": "remove"}],
        "hash": {"key": "k"},
    });
    let s = scrub_span(
        c,
        vec![
            kv("db.password", "hunter2".into()),
            kv("PASSWORD_LEN", Value::Int(7)),
            kv("session", "abc".into()),
            kv("keep", "plain".into()),
        ],
    );
    assert_eq!(text(get(&s.attributes, "db.password").unwrap()), "*******");
    assert_eq!(text(get(&s.attributes, "PASSWORD_LEN").unwrap()), "*");
    assert_eq!(get(&s.attributes, "session"), None);
    assert_eq!(text(get(&s.attributes, "keep").unwrap()), "plain");
}

#[test]
fn allowed_keys_is_fail_closed_everywhere() {
    let c = json!({"allowed_keys": ["http.method"], "ignored_keys": ["service.name"]});
    let mut s = span(
        "op",
        &[("http.method", "GET".into()), ("user.id", "u1".into())],
    );
    s.events.push(Event {
        name: "e".into(),
        attributes: vec![kv("http.method", "GET".into()), kv("payload", "x".into())],
        ..Default::default()
    });
    s.links.push(Link {
        attributes: vec![kv("other", "y".into())],
        ..Default::default()
    });
    let mut rs = resource_spans("checkout", vec![s]);
    rs.resource
        .as_mut()
        .unwrap()
        .attributes
        .push(kv("host.name", "h1".into()));
    let out = harness(c).process(vec![rs]).unwrap();
    let keys = |attrs: &[KeyValue]| attrs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();
    assert_eq!(
        keys(&out[0].resource.as_ref().unwrap().attributes),
        ["service.name"]
    );
    let s = &out[0].scope_spans[0].spans[0];
    assert_eq!(keys(&s.attributes), ["http.method"]);
    assert_eq!(keys(&s.events[0].attributes), ["http.method"]);
    assert!(s.links[0].attributes.is_empty());
}

#[test]
fn ignored_keys_are_neither_scanned_nor_removed() {
    let c = json!({"ignored_keys": ["enduser.email"], "blocked_keys": ["email"]});
    let s = scrub_span(
        c,
        vec![
            kv("enduser.email", "a@example.com".into()),
            kv("x", "a@example.com".into()),
        ],
    );
    assert_eq!(
        text(get(&s.attributes, "enduser.email").unwrap()),
        "a@example.com"
    );
    assert_eq!(text(get(&s.attributes, "x").unwrap()), "*************");
}

// ---- actions ----

#[test]
fn mask_keeps_the_configured_prefix_and_suffix() {
    let c = json!({"mask": {"char": "#", "keep_suffix": 4}, "detectors": {"email": {"action": "mask", "keep_prefix": 2, "keep_suffix": 0}}});
    assert_eq!(
        scrub_one(c.clone(), "m", "4111111111111111").unwrap(),
        "############1111"
    );
    assert_eq!(
        scrub_one(c.clone(), "m", "al@example.com").unwrap(),
        "al############"
    );
    // Never more than half in clear.
    let c = json!({"blocked_keys": [{"pattern": "pin", "keep_suffix": 4}]});
    assert_eq!(scrub_one(c, "pin", "123456").unwrap(), "******");
    // Characters, not bytes, are kept and masked.
    let c = json!({"mask": {"char": "•"}, "blocked_keys": [{"pattern": "name", "keep_prefix": 2, "keep_suffix": 1}]});
    assert_eq!(
        scrub_one(c.clone(), "name", "Ñandú Müller").unwrap(),
        "Ña•••••••••r"
    );
    assert_eq!(
        scrub_one(c.clone(), "name", "Jane Doe").unwrap(),
        "Ja•••••e"
    );
    let long = "x".repeat(150);
    let want = format!("xx{}x", "•".repeat(147));
    assert_eq!(scrub_one(c, "name", &long).unwrap(), want);
}

fn hashed(key: &str, value: &str) -> String {
    let c = json!({"action": "hash", "hash": {"key": key, "length": 20, "prefix": "h:"}});
    scrub_one(c, "m", value).unwrap()
}

#[test]
fn hash_is_stable_per_key_and_differs_between_keys() {
    let a = hashed("k1", "mail alice@example.com");
    assert_eq!(a, hashed("k1", "mail alice@example.com"));
    assert!(
        a.starts_with("mail h:") && a.len() == "mail h:".len() + 20,
        "{a}"
    );
    assert!(
        a["mail h:".len()..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{a}"
    );
    assert_ne!(a, hashed("k2", "mail alice@example.com"));
    assert_ne!(a, hashed("k1", "mail bob@example.com"));
    // HMAC-SHA256("k1", "alice@example.com"), first 20 hex characters.
    assert_eq!(a, "mail h:e97a3c597641b2b99fc8");
}

#[test]
fn remove_drops_the_attribute_holding_the_secret() {
    let c = json!({"detectors": {"ssn": "remove"}});
    let s = scrub_span(
        c,
        vec![
            kv("note", "ssn 123-45-6789".into()),
            kv("ok", "fine".into()),
        ],
    );
    assert_eq!(get(&s.attributes, "note"), None);
    assert_eq!(text(get(&s.attributes, "ok").unwrap()), "fine");
}

// ---- where ----

#[test]
fn nested_arrays_and_maps_are_scrubbed() {
    let inner = map(vec![
        kv("to", "carol@example.com".into()),
        kv("password", "s3cret!".into()),
        kv("n", Value::Int(1)),
    ]);
    let value = array(vec![
        string_value("plain"),
        string_value("dave@example.com"),
        inner,
    ]);
    let c = json!({"blocked_keys": ["^password$"], "detectors": {"ssn": "remove"}});
    let s = scrub_span(
        c,
        vec![
            kv("list", any(value)),
            kv(
                "ssns",
                any(array(vec![string_value("123-45-6789"), string_value("ok")])),
            ),
        ],
    );
    let expected = array(vec![
        string_value("plain"),
        string_value("****************"),
        map(vec![
            kv("to", "*****************".into()),
            kv("password", "*******".into()),
            kv("n", Value::Int(1)),
        ]),
    ]);
    assert_eq!(get(&s.attributes, "list"), Some(&expected));
    assert_eq!(
        get(&s.attributes, "ssns"),
        Some(&array(vec![string_value("ok")]))
    );
}

#[test]
fn resource_event_and_link_attributes_are_scrubbed() {
    let mut s = span("op", &[]);
    s.events.push(Event {
        name: "log".into(),
        attributes: vec![kv("msg", "to a@example.com".into())],
        ..Default::default()
    });
    s.links.push(Link {
        attributes: vec![kv("who", "b@example.com".into())],
        ..Default::default()
    });
    let mut rs = resource_spans("svc", vec![s]);
    rs.resource
        .as_mut()
        .unwrap()
        .attributes
        .push(kv("owner", "c@example.com".into()));
    let out = harness(json!({})).process(vec![rs]).unwrap();
    let res = &out[0].resource.as_ref().unwrap().attributes;
    assert_eq!(text(get(res, "owner").unwrap()), "*************");
    let s = &out[0].scope_spans[0].spans[0];
    assert_eq!(
        text(get(&s.events[0].attributes, "msg").unwrap()),
        "to *************"
    );
    assert_eq!(
        text(get(&s.links[0].attributes, "who").unwrap()),
        "*************"
    );
}

fn named_span() -> Vec<ResourceSpans> {
    let mut s = span("mail a@example.com", &[]);
    s.status = Some(Status {
        message: "rejected card 4111111111111111".into(),
        code: 2,
    });
    s.events.push(Event {
        name: "sent to b@example.com".into(),
        ..Default::default()
    });
    vec![resource_spans("svc", vec![s])]
}

#[test]
fn span_names_and_status_messages_are_opt_in() {
    let input = named_span();
    assert_eq!(harness(json!({})).process(input.clone()).unwrap(), input);

    let c = json!({"span_names": true, "status_messages": true, "detectors": {"email": "remove"}});
    let out = harness(c).process(input).unwrap();
    let s = &out[0].scope_spans[0].spans[0];
    assert_eq!(s.name, "mail ");
    assert_eq!(s.events[0].name, "sent to ");
    let status = s.status.as_ref().unwrap();
    assert_eq!(
        (status.code, status.message.as_str()),
        (2, "rejected card ****************")
    );
}

// ---- sanitizers ----

#[test]
fn url_query_parameters_and_passwords_are_redacted() {
    let url = "https://bob:pa55@shop.example/cart?item=3&Token=abc123&sig=zz#top";
    assert_eq!(
        scrub_one(json!({}), "url.full", url).unwrap(),
        "https://bob:****@shop.example/cart?item=3&Token=******&sig=**#top"
    );
    let c = json!({"sanitize": {"url": {"action": "remove", "params": ["token"]}}});
    assert_eq!(
        scrub_one(c.clone(), "http.url", "http://h/p?token=1&a=2").unwrap(),
        "http://h/p?a=2"
    );
    assert_eq!(
        scrub_one(c.clone(), "http.url", "http://h/p?a=2&token=1").unwrap(),
        "http://h/p?a=2"
    );
    assert_eq!(scrub_one(c, "url.query", "a=1&token=x").unwrap(), "a=1");
    // Only the configured keys are sanitized; elsewhere only the detectors look.
    let signed = "https://shop.example/cart?item=3&sig=zz";
    assert_eq!(scrub_one(json!({}), "link", signed).unwrap(), signed);
    assert_eq!(
        scrub_one(json!({}), "url.full", signed).unwrap(),
        "https://shop.example/cart?item=3&sig=**"
    );
    let plain = "https://shop.example/cart?item=3";
    assert_eq!(scrub_one(json!({}), "url.full", plain).unwrap(), plain);
}

#[test]
fn keys_are_classified_wherever_they_stand() {
    // The same positions hold other keys from span to span, and the same key moves: each
    // value is treated by its own key.
    let mut h = harness(json!({"blocked_keys": ["^secret$"]}));
    let sql = "SELECT 1";
    let orders = [
        vec![
            kv("db.statement", sql.into()),
            kv("secret", "abcdefgh".into()),
        ],
        vec![
            kv("secret", "abcdefgh".into()),
            kv("db.statement", sql.into()),
        ],
        vec![kv("note", sql.into()), kv("db.statement", sql.into())],
    ];
    let spans: Vec<Span> = orders
        .iter()
        .map(|attrs| {
            let mut s = span("op", &[]);
            s.attributes = attrs.clone();
            s
        })
        .collect();
    for round in 0..2 {
        let out = h
            .process(vec![resource_spans("svc", spans.clone())])
            .unwrap();
        for (i, s) in out[0].scope_spans[0].spans.iter().enumerate() {
            let attrs = &s.attributes;
            assert_eq!(
                text(get(attrs, "db.statement").unwrap()),
                "SELECT ?",
                "{round}/{i}"
            );
            if i < 2 {
                assert_eq!(text(get(attrs, "secret").unwrap()), stars(8), "{round}/{i}");
            } else {
                assert_eq!(text(get(attrs, "note").unwrap()), sql, "{round}/{i}");
            }
        }
    }
}

#[test]
fn sql_literals_become_placeholders() {
    let cases = [
        (
            "SELECT * FROM users WHERE email = 'a@b.c' AND age > 30 AND t1.id IN (1, 2.5, -3e-2)",
            "SELECT * FROM users WHERE email = ? AND age > ? AND t1.id IN (?, ?, -?)",
        ),
        (
            "UPDATE t SET name = 'O''Brien', v = x'FF' WHERE id = $1",
            "UPDATE t SET name = ?, v = ? WHERE id = $1",
        ),
        (
            "SELECT \"col1\", `c2` FROM t2 -- note 'x'\nWHERE a = .5",
            "SELECT \"col1\", `c2` FROM t2 -- note 'x'\nWHERE a = ?",
        ),
        (
            "SELECT $$secret$$, $t$x$t$ /* 'kept' */",
            "SELECT ?, ? /* 'kept' */",
        ),
        ("SELECT E'it\\'s', N'n'", "SELECT ?, ?"),
    ];
    for (input, want) in cases {
        assert_eq!(
            scrub_one(json!({}), "db.statement", input).unwrap(),
            want,
            "{input}"
        );
    }
    let plain = "SELECT a FROM b WHERE c = ?";
    assert_eq!(scrub_one(json!({}), "db.query.text", plain).unwrap(), plain);
    let off = json!({"sanitize": {"sql": {"enabled": false}}});
    assert_eq!(
        scrub_one(off, "db.statement", "SELECT 1").unwrap(),
        "SELECT 1"
    );
}

// ---- summary and counters ----

#[test]
fn summary_attributes_are_off_by_default() {
    let s = scrub_span(json!({}), vec![kv("m", "a@example.com".into())]);
    assert!(
        s.attributes
            .iter()
            .all(|kv| !kv.key.starts_with("redaction."))
    );
}

#[test]
fn summary_attributes_count_and_name_what_was_redacted() {
    let c = json!({"summary": true, "blocked_keys": [{"pattern": "^secret$", "action": "remove"}]});
    let mut rs = resource_spans(
        "svc",
        vec![
            span(
                "op",
                &[
                    ("b", "x@example.com y@example.com".into()),
                    ("a", "4111111111111111".into()),
                    ("secret", "s".into()),
                    ("plain", "p".into()),
                ],
            ),
            span("clean", &[("plain", "p".into())]),
        ],
    );
    rs.resource
        .as_mut()
        .unwrap()
        .attributes
        .push(kv("owner", "z@example.com".into()));
    let out = harness(c).process(vec![rs]).unwrap();
    let s = &out[0].scope_spans[0].spans[0];
    assert_eq!(
        get(&s.attributes, "redaction.masked.count"),
        Some(&Value::Int(3).into_any_value())
    );
    assert_eq!(
        text(get(&s.attributes, "redaction.masked.keys").unwrap()),
        "a,b"
    );
    assert_eq!(
        get(&s.attributes, "redaction.redacted.count"),
        Some(&Value::Int(1).into_any_value())
    );
    assert_eq!(
        text(get(&s.attributes, "redaction.redacted.keys").unwrap()),
        "secret"
    );
    let clean = &out[0].scope_spans[0].spans[1];
    assert_eq!(clean.attributes.len(), 1);
    let res = &out[0].resource.as_ref().unwrap().attributes;
    assert_eq!(text(get(res, "redaction.masked.keys").unwrap()), "owner");
    assert_eq!(counter("values_masked"), 4);
    assert_eq!(counter("values_removed"), 1);
}

// ----- Logs -------------------------------------------------------------------------------------

mod logs {
    use wasmcol_plugin_sdk::proto::logs::{LogRecord, ResourceLogs};
    use wasmcol_plugin_sdk::testing::{log_record, resource_logs};

    use super::*;

    const CARD: &str = "4111 1111 1111 1111";
    const EMAIL: &str = "jane.doe@example.com";
    const BEARER: &str = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl";

    fn map(entries: Vec<(&str, AnyValue)>) -> AnyValue {
        AnyValue {
            value: Some(V::KvlistValue(KeyValueList {
                values: entries
                    .into_iter()
                    .map(|(k, v)| KeyValue {
                        key: k.into(),
                        value: Some(v),
                        ..Default::default()
                    })
                    .collect(),
            })),
        }
    }

    fn scrub_logs(config: Json, records: Vec<LogRecord>) -> Vec<ResourceLogs> {
        let mut input = resource_logs("svc", records);
        input
            .resource
            .as_mut()
            .unwrap()
            .attributes
            .push(kv("owner", EMAIL.into()));
        harness(config).process_logs(vec![input]).unwrap()
    }

    /// Everything printable in `out`, to look for a secret anywhere.
    fn all_text(out: &[ResourceLogs]) -> String {
        format!("{out:?}")
    }

    #[test]
    fn string_bodies_map_bodies_and_attributes_are_scrubbed_and_the_rest_stays() {
        let records = vec![
            log_record(
                Some(format!("payment with card {CARD} by {EMAIL}").into()),
                &[("auth", BEARER.into()), ("order", "A-17".into())],
            ),
            log_record(
                Some(Value::Any(map(vec![
                    ("user", string_value(EMAIL)),
                    (
                        "items",
                        array(vec![string_value(CARD), string_value("socks")]),
                    ),
                    (
                        "count",
                        AnyValue {
                            value: Some(V::IntValue(3)),
                        },
                    ),
                ]))),
                &[],
            ),
            log_record(Some("nothing to see".into()), &[]),
        ];
        let out = scrub_logs(json!({}), records.clone());
        let text = all_text(&out);
        for secret in ["4111", "jane.doe", "eyJhbGciOiJIUzI1NiJ9"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let got = &out[0].scope_logs[0].log_records;
        assert_eq!(got.len(), 3);
        let body = text_of(&got[0]);
        assert!(body.starts_with("payment with card "), "{body}");
        assert!(body.contains(" by "), "{body}");
        assert_eq!(
            get(&got[0].attributes, "order"),
            Some(&string_value("A-17"))
        );
        // Only the body and attributes changed: ids, times and severity are as they came.
        for (g, r) in got.iter().zip(&records) {
            assert_eq!(g.trace_id, r.trace_id);
            assert_eq!(g.span_id, r.span_id);
            assert_eq!(g.time_unix_nano, r.time_unix_nano);
            assert_eq!(g.severity_text, r.severity_text);
        }
        assert_eq!(got[2], records[2]);
        let Some(V::KvlistValue(m)) = got[1].body.as_ref().and_then(|b| b.value.clone()) else {
            panic!("the map body stays a map: {:?}", got[1].body);
        };
        let count = m.values.iter().find(|kv| kv.key == "count").unwrap();
        assert_eq!(count.value.as_ref().unwrap().value, Some(V::IntValue(3)));
        assert!(format!("{m:?}").contains("socks"));
        assert!(counter("values_masked") > 0);
    }

    #[test]
    fn blocked_keys_and_remove_apply_to_log_attributes_and_map_bodies() {
        let config = json!({ "blocked_keys": [{ "pattern": "^password$", "action": "remove" }] });
        let out = scrub_logs(
            config,
            vec![log_record(
                Some(Value::Any(map(vec![
                    ("password", string_value("hunter2")),
                    ("ok", string_value("fine")),
                ]))),
                &[("password", "hunter2".into())],
            )],
        );
        let text = all_text(&out);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("fine"), "{text}");
    }

    fn text_of(r: &LogRecord) -> String {
        super::text(r.body.as_ref().unwrap()).to_string()
    }
}

mod metrics {
    use wasmcol_plugin_sdk::proto::metrics::{ResourceMetrics, metric};
    use wasmcol_plugin_sdk::testing::{every_metric_type, resource_metrics};

    use super::*;

    const CARD: &str = "4111 1111 1111 1111";
    const EMAIL: &str = "jane.doe@example.com";
    const BEARER: &str = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl";

    fn input() -> Vec<ResourceMetrics> {
        let mut rm = resource_metrics(
            "svc",
            every_metric_type(&[
                &[
                    ("user", EMAIL.into()),
                    ("card", format!("card {CARD}").into()),
                    ("route", "/cart".into()),
                ],
                &[("auth", BEARER.into()), ("route", "/pay".into())],
            ]),
        );
        rm.resource
            .as_mut()
            .unwrap()
            .attributes
            .push(kv("owner", EMAIL.into()));
        let scope = rm.scope_metrics[0]
            .scope
            .get_or_insert_with(Default::default);
        scope.attributes.push(kv("contact", EMAIL.into()));
        vec![rm]
    }

    /// The attributes of every data point, in batch order.
    fn point_attributes(out: &[ResourceMetrics]) -> Vec<Vec<KeyValue>> {
        let mut all = Vec::new();
        for m in out
            .iter()
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
        {
            match m.data.as_ref().unwrap() {
                metric::Data::Gauge(g) => {
                    all.extend(g.data_points.iter().map(|p| p.attributes.clone()))
                }
                metric::Data::Sum(s) => {
                    all.extend(s.data_points.iter().map(|p| p.attributes.clone()))
                }
                metric::Data::Histogram(h) => {
                    all.extend(h.data_points.iter().map(|p| p.attributes.clone()))
                }
                metric::Data::ExponentialHistogram(h) => {
                    all.extend(h.data_points.iter().map(|p| p.attributes.clone()))
                }
                metric::Data::Summary(s) => {
                    all.extend(s.data_points.iter().map(|p| p.attributes.clone()))
                }
            }
        }
        all
    }

    #[test]
    fn point_resource_and_scope_attributes_of_every_type_are_scrubbed_and_the_rest_stays() {
        let out = harness(json!({})).process_metrics(input()).unwrap();
        let all = format!("{out:?}");
        for secret in ["4111", "jane.doe", "eyJhbGciOiJIUzI1NiJ9"] {
            assert!(!all.contains(secret), "{secret} leaked: {all}");
        }
        let points = point_attributes(&out);
        assert_eq!(points.len(), 10, "every point of every type stays");
        for (i, attrs) in points.iter().enumerate() {
            let route = if i % 2 == 0 { "/cart" } else { "/pay" };
            assert_eq!(get(attrs, "route"), Some(&string_value(route)));
            if i % 2 == 0 {
                assert_eq!(text(get(attrs, "user").unwrap()), "********************");
                assert!(text(get(attrs, "card").unwrap()).starts_with("card "));
            } else {
                assert!(text(get(attrs, "auth").unwrap()).starts_with("Bearer "));
            }
        }
        // Only attributes changed: the points' values, the metrics' names and types are as
        // they came.
        let before = input();
        let (a, b) = (
            &out[0].scope_metrics[0].metrics,
            &before[0].scope_metrics[0].metrics,
        );
        assert_eq!(a.len(), b.len());
        for (a, b) in a.iter().zip(b) {
            assert_eq!(
                (&a.name, &a.unit, &a.description),
                (&b.name, &b.unit, &b.description)
            );
            assert_eq!(
                std::mem::discriminant(a.data.as_ref().unwrap()),
                std::mem::discriminant(b.data.as_ref().unwrap())
            );
        }
        assert!(counter("values_masked") > 0);
    }

    #[test]
    fn key_rules_and_summaries_apply_to_points() {
        let config = json!({
            "blocked_keys": [{ "pattern": "^route$", "action": "remove" }],
            "summary": true,
        });
        let out = harness(config).process_metrics(input()).unwrap();
        for attrs in point_attributes(&out) {
            assert!(get(&attrs, "route").is_none(), "{attrs:?}");
            assert!(
                get(&attrs, "redaction.redacted.count").is_some(),
                "{attrs:?}"
            );
        }
    }

    #[test]
    fn clean_metrics_are_not_edited() {
        let clean = vec![resource_metrics(
            "svc",
            every_metric_type(&[&[("route", "/cart".into())]]),
        )];
        let mut batch =
            MetricBatch::from_encoded(wasmcol_plugin_sdk::edit::encode_metrics_batch(&clean));
        let mut plugin = PiiScrub::new(PluginConfig::new(json!({}))).unwrap();
        plugin.process_metrics(&mut batch).unwrap();
        assert!(batch.edits().is_empty(), "{:?}", batch.edits());
    }
}
