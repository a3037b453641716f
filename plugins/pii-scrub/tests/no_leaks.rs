//! Property test: random batches with secrets embedded at random places (attribute values,
//! nested arrays and maps, event and link attributes, resource attributes, span and event
//! names, status messages) never leak through, under each action; every attribute, name and
//! message without a secret comes out exactly as it went in. Runs through the native harness,
//! so the host's edit checks and application are part of what is tested.

use std::cell::RefCell;

use pii_scrub_plugin::PiiScrub;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;
use wasmcol_plugin_sdk::proto::common::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value::Value as V,
};
use wasmcol_plugin_sdk::proto::resource::Resource;
use wasmcol_plugin_sdk::proto::trace::{
    ResourceSpans, ScopeSpans, Span, Status, span::Event, span::Link,
};
use wasmcol_plugin_sdk::testing::Harness;

/// A generated piece of text and the secret it carries, if any.
#[derive(Debug, Clone)]
struct Text {
    text: String,
    secret: Option<String>,
}

/// Words that, followed by the right text, are themselves a secret's context.
const CONTEXT_WORDS: &[&str] = &[
    "basic", "bearer", "passwd", "password", "secret", "token", "apikey",
];

fn word() -> impl Strategy<Value = String> {
    "[a-z]{1,8}".prop_filter("a detector context word", |w| {
        !CONTEXT_WORDS.contains(&w.as_str())
    })
}

/// Ordinary text: lower-case words and punctuation, nothing a detector should touch.
fn filler() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            word(),
            select(vec![" ", ", ", "; ", " (", ") ", ": ", " / "]),
        ),
        0..6,
    )
    .prop_map(|parts| {
        parts
            .into_iter()
            .map(|(w, sep)| format!("{w}{sep}"))
            .collect()
    })
}

fn luhn_completed(mut digits: Vec<u8>) -> Vec<u8> {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 0 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    digits.push(((10 - sum % 10) % 10) as u8);
    digits
}

fn card() -> impl Strategy<Value = (String, String)> {
    (
        select(vec![
            ("4", 16),
            ("51", 16),
            ("55", 16),
            ("37", 15),
            ("6011", 16),
            ("2221", 16),
        ]),
        prop::collection::vec(0u8..10, 18),
        select(vec!["", " ", "-"]),
    )
        .prop_map(|((prefix, len), random, sep)| {
            let mut digits: Vec<u8> = prefix.bytes().map(|b| b - b'0').collect();
            digits.extend(&random[..len - 1 - digits.len()]);
            let digits = luhn_completed(digits);
            let mut s = String::new();
            for (i, d) in digits.iter().enumerate() {
                if i > 0 && i % 4 == 0 {
                    s.push_str(sep);
                }
                s.push(char::from(b'0' + d));
            }
            (s.clone(), s)
        })
}

fn iban() -> impl Strategy<Value = (String, String)> {
    (prop::collection::vec(0u8..10, 18), any::<bool>()).prop_map(|(bban, spaced)| {
        let bban: String = bban.iter().map(|d| char::from(b'0' + d)).collect();
        // Check digits: 98 - (BBAN + "DE00" as digits) mod 97, with D = 13, E = 14.
        let rem = format!("{bban}131400")
            .bytes()
            .fold(0u32, |r, b| (r * 10 + u32::from(b - b'0')) % 97);
        let compact = format!("DE{:02}{bban}", 98 - rem);
        let s = if spaced {
            compact
                .as_bytes()
                .chunks(4)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            compact
        };
        (s.clone(), s)
    })
}

fn ipv6() -> impl Strategy<Value = (String, String)> {
    (
        0x1000u16..0xa000,
        prop::collection::vec(any::<u16>(), 7),
        0usize..4,
        any::<bool>(),
    )
        .prop_map(|(first, rest, gap, compress)| {
            let groups: Vec<String> = std::iter::once(first)
                .chain(rest)
                .map(|g| format!("{g:x}"))
                .collect();
            let s = if compress {
                format!(
                    "{}::{}",
                    groups[..gap + 1].join(":"),
                    groups[gap + 3..].join(":")
                )
            } else {
                groups.join(":")
            };
            (s.clone(), s)
        })
}

fn with_context(
    prefix: &'static str,
    core: impl Strategy<Value = String>,
) -> impl Strategy<Value = (String, String)> {
    core.prop_map(move |c| (format!("{prefix}{c}"), c))
}

fn plain(s: impl Strategy<Value = String>) -> impl Strategy<Value = (String, String)> {
    s.prop_map(|s| (s.clone(), s))
}

/// (text embedded, the part that must not survive).
fn secret() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        card(),
        plain("[a-z]{1,8}(\\.[a-z0-9]{1,5})?@[a-z]{2,8}\\.(com|org|io|de)"),
        plain(
            (1u32..900, 1u32..100, 1u32..10000)
                .prop_filter("not an SSN area", |(a, _, _)| *a != 666)
                .prop_map(|(a, g, s)| format!("{a:03}-{g:02}-{s:04}"))
        ),
        plain(any::<[u8; 4]>().prop_map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3]))),
        ipv6(),
        plain("eyJ[A-Za-z0-9_-]{10,30}\\.eyJ[A-Za-z0-9_-]{10,30}\\.[A-Za-z0-9_-]{16,43}"),
        with_context("Bearer ", "[A-Za-z0-9]{4}[0-9][A-Za-z0-9._~+/=-]{8,30}"),
        plain("AKIA[A-Z0-9]{16}"),
        plain("ghp_[A-Za-z0-9]{36}"),
        plain("sk_live_[A-Za-z0-9]{24}"),
        with_context("password=", "[A-Za-z]{3,8}[0-9]{2,4}[A-Za-z!#%]{1,4}"),
        iban(),
        plain(
            (1u32..100, 100u32..1000, 100u32..1000, 100u32..1000)
                .prop_map(|(c, a, b, d)| format!("+{c} {a} {b} {d}"))
        ),
    ]
}

fn text() -> impl Strategy<Value = Text> {
    (
        filler(),
        prop::option::weighted(
            0.3,
            (
                select(vec!["", "(", ": ", "\n"]),
                secret(),
                select(vec!["", " ", ") ", ", ", ". ", ": "]),
            ),
        ),
        filler(),
    )
        .prop_map(|(before, secret, after)| match secret {
            None => Text {
                text: format!("{before}{after}"),
                secret: None,
            },
            Some((open, (embedded, core), close)) => {
                let pad = if before.is_empty() || before.ends_with(' ') {
                    ""
                } else {
                    " "
                };
                let tail = if close.is_empty() && !after.is_empty() {
                    " "
                } else {
                    close
                };
                Text {
                    text: format!("{before}{pad}{open}{embedded}{tail}{after}"),
                    secret: Some(core),
                }
            }
        })
}

fn string(s: String) -> AnyValue {
    AnyValue {
        value: Some(V::StringValue(s)),
    }
}

/// An attribute value and the secrets inside it.
fn value() -> impl Strategy<Value = (AnyValue, Vec<String>)> {
    let one = text().prop_map(|t| (string(t.text), t.secret.into_iter().collect()));
    let many = || prop::collection::vec(text(), 1..4);
    prop_oneof![
        4 => one,
        1 => many().prop_map(|ts| {
            let secrets = ts.iter().filter_map(|t| t.secret.clone()).collect();
            let values = ts.into_iter().map(|t| string(t.text)).collect();
            (AnyValue { value: Some(V::ArrayValue(ArrayValue { values })) }, secrets)
        }),
        1 => many().prop_map(|ts| {
            let secrets = ts.iter().filter_map(|t| t.secret.clone()).collect();
            let values = ts
                .into_iter()
                .enumerate()
                .map(|(i, t)| KeyValue { key: format!("m{i}"), value: Some(string(t.text)), ..Default::default() })
                .collect();
            (AnyValue { value: Some(V::KvlistValue(KeyValueList { values })) }, secrets)
        }),
        1 => (-1_000_000_000i64..1_000_000_000).prop_map(|i| (AnyValue { value: Some(V::IntValue(i)) }, vec![])),
    ]
}

fn attributes() -> impl Strategy<Value = (Vec<KeyValue>, Vec<String>)> {
    prop::collection::vec(value(), 0..5).prop_map(|vs| {
        let mut secrets = Vec::new();
        let attrs = vs
            .into_iter()
            .enumerate()
            .map(|(i, (v, s))| {
                secrets.extend(s);
                KeyValue {
                    key: format!("k{i}"),
                    value: Some(v),
                    ..Default::default()
                }
            })
            .collect();
        (attrs, secrets)
    })
}

fn span() -> impl Strategy<Value = (Span, Vec<String>)> {
    (
        text(),
        attributes(),
        prop::collection::vec((text(), attributes()), 0..3),
        prop::collection::vec(attributes(), 0..2),
        text(),
    )
        .prop_map(|(name, (attrs, mut secrets), events, links, status)| {
            secrets.extend(name.secret);
            secrets.extend(status.secret);
            let events = events
                .into_iter()
                .map(|(n, (a, s))| {
                    secrets.extend(n.secret);
                    secrets.extend(s);
                    Event {
                        name: n.text,
                        attributes: a,
                        ..Default::default()
                    }
                })
                .collect();
            let links = links
                .into_iter()
                .map(|(a, s)| {
                    secrets.extend(s);
                    Link {
                        attributes: a,
                        ..Default::default()
                    }
                })
                .collect();
            let span = Span {
                trace_id: vec![1; 16],
                span_id: vec![2; 8],
                name: name.text,
                attributes: attrs,
                events,
                links,
                status: Some(Status {
                    message: status.text,
                    code: 2,
                }),
                ..Default::default()
            };
            (span, secrets)
        })
}

fn batch() -> impl Strategy<Value = (Vec<ResourceSpans>, Vec<String>)> {
    prop::collection::vec((attributes(), prop::collection::vec(span(), 1..4)), 1..3).prop_map(
        |resources| {
            let mut secrets = Vec::new();
            let data = resources
                .into_iter()
                .map(|((attrs, s), spans)| {
                    secrets.extend(s);
                    let spans = spans
                        .into_iter()
                        .map(|(span, s)| {
                            secrets.extend(s);
                            span
                        })
                        .collect();
                    ResourceSpans {
                        resource: Some(Resource {
                            attributes: attrs,
                            ..Default::default()
                        }),
                        scope_spans: vec![ScopeSpans {
                            spans,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }
                })
                .collect();
            (data, secrets)
        },
    )
}

/// Every string in `v` (map keys too).
fn strings<'a>(v: &'a AnyValue, out: &mut Vec<&'a str>) {
    match &v.value {
        Some(V::StringValue(s)) => out.push(s),
        Some(V::ArrayValue(a)) => a.values.iter().for_each(|e| strings(e, out)),
        Some(V::KvlistValue(l)) => {
            for kv in &l.values {
                out.push(&kv.key);
                if let Some(v) = &kv.value {
                    strings(v, out);
                }
            }
        }
        _ => {}
    }
}

fn all_strings(data: &[ResourceSpans]) -> Vec<&str> {
    let mut out = Vec::new();
    fn list<'a>(attrs: &'a [KeyValue], out: &mut Vec<&'a str>) {
        for kv in attrs {
            out.push(&kv.key);
            if let Some(v) = &kv.value {
                strings(v, out);
            }
        }
    }
    for rs in data {
        if let Some(r) = &rs.resource {
            list(&r.attributes, &mut out);
        }
        for s in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
            out.push(&s.name);
            list(&s.attributes, &mut out);
            if let Some(st) = &s.status {
                out.push(&st.message);
            }
            for e in &s.events {
                out.push(&e.name);
                list(&e.attributes, &mut out);
            }
            for l in &s.links {
                list(&l.attributes, &mut out);
            }
        }
    }
    out
}

fn has_secret(v: &AnyValue, secrets: &[String]) -> bool {
    let mut s = Vec::new();
    strings(v, &mut s);
    s.iter()
        .any(|s| secrets.iter().any(|x| s.contains(x.as_str())))
}

/// Attributes without secrets must come out identical; ones with secrets must change.
fn check_list(
    input: &[KeyValue],
    output: &[KeyValue],
    secrets: &[String],
    at: &str,
) -> Result<(), TestCaseError> {
    for kv in input {
        let v = kv.value.as_ref().unwrap();
        let out = output
            .iter()
            .find(|o| o.key == kv.key)
            .and_then(|o| o.value.as_ref());
        if has_secret(v, secrets) {
            prop_assert_ne!(
                out,
                Some(v),
                "{} {}: a value with a secret came out unchanged",
                at,
                kv.key
            );
        } else {
            prop_assert_eq!(
                out,
                Some(v),
                "{} {}: a value without secrets changed",
                at,
                kv.key
            );
        }
    }
    Ok(())
}

fn check_text(
    input: &str,
    output: &str,
    secrets: &[String],
    at: &str,
) -> Result<(), TestCaseError> {
    if !secrets.iter().any(|s| input.contains(s.as_str())) {
        prop_assert_eq!(output, input, "{}: text without secrets changed", at);
    }
    Ok(())
}

fn check(
    input: &[ResourceSpans],
    output: &[ResourceSpans],
    secrets: &[String],
) -> Result<(), TestCaseError> {
    for text in all_strings(output) {
        for secret in secrets {
            prop_assert!(
                !text.contains(secret.as_str()),
                "secret {:?} leaked in {:?}",
                secret,
                text
            );
        }
    }
    prop_assert_eq!(input.len(), output.len());
    for (ri, (i, o)) in input.iter().zip(output).enumerate() {
        let attrs = |rs: &ResourceSpans| {
            rs.resource
                .as_ref()
                .map(|r| r.attributes.clone())
                .unwrap_or_default()
        };
        check_list(&attrs(i), &attrs(o), secrets, &format!("resource {ri}"))?;
        let spans = |rs: &ResourceSpans| {
            rs.scope_spans
                .iter()
                .flat_map(|ss| ss.spans.clone())
                .collect::<Vec<_>>()
        };
        let (is, os) = (spans(i), spans(o));
        prop_assert_eq!(is.len(), os.len());
        for (si, (i, o)) in is.iter().zip(&os).enumerate() {
            let at = format!("resource {ri} span {si}");
            check_list(&i.attributes, &o.attributes, secrets, &at)?;
            check_text(&i.name, &o.name, secrets, &format!("{at} name"))?;
            let msg = |s: &Span| {
                s.status
                    .as_ref()
                    .map(|s| s.message.clone())
                    .unwrap_or_default()
            };
            check_text(&msg(i), &msg(o), secrets, &format!("{at} status"))?;
            prop_assert_eq!(i.events.len(), o.events.len());
            for (ei, (ie, oe)) in i.events.iter().zip(&o.events).enumerate() {
                check_list(
                    &ie.attributes,
                    &oe.attributes,
                    secrets,
                    &format!("{at} event {ei}"),
                )?;
                check_text(
                    &ie.name,
                    &oe.name,
                    secrets,
                    &format!("{at} event {ei} name"),
                )?;
            }
            prop_assert_eq!(i.links.len(), o.links.len());
            for (li, (il, ol)) in i.links.iter().zip(&o.links).enumerate() {
                check_list(
                    &il.attributes,
                    &ol.attributes,
                    secrets,
                    &format!("{at} link {li}"),
                )?;
            }
        }
    }
    Ok(())
}

#[test]
fn secrets_never_leak_and_clean_values_stay_unchanged() {
    let harnesses = ["mask", "hash", "remove"].map(|action| {
        RefCell::new(
            Harness::<PiiScrub>::new(json!({
                "action": action,
                "hash": {"key": "property-test-key"},
                "detectors": {"ip": true, "phone": true},
                "span_names": true,
                "status_messages": true,
            }))
            .unwrap(),
        )
    });
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(0..3usize, batch()), |(which, (input, secrets))| {
            let output = harnesses[which]
                .borrow_mut()
                .process(input.clone())
                .map_err(TestCaseError::fail)?;
            check(&input, &output, &secrets)
        })
        .unwrap();
}

#[test]
fn the_generator_plants_secrets() {
    // Guards the property test against a generator that silently stops producing secrets.
    let mut runner = TestRunner::deterministic();
    let mut planted = 0;
    for _ in 0..50 {
        let (_, secrets) = batch().new_tree(&mut runner).unwrap().current();
        planted += secrets.len();
    }
    assert!(planted > 50, "only {planted} secrets in 50 batches");
}
