//! The `builtin:pii-scrub` example in `plugins/README.md` is a valid configuration and does
//! what the README says.

use pii_scrub_plugin::PiiScrub;
use wasmcol_plugin_sdk::prelude::*;
use wasmcol_plugin_sdk::testing::{Harness, kv, resource_spans, span};

const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));

/// The `config:` of every processor in the README's YAML blocks that uses `plugin`.
fn configs(plugin: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for block in README.split("```yaml\n").skip(1) {
        let yaml = &block[..block.find("```").expect("an unterminated code block")];
        let doc: serde_json::Value = serde_yaml_ng::from_str(yaml).expect("README YAML parses");
        let Some(processors) = doc.get("processors").and_then(|p| p.as_object()) else {
            continue;
        };
        for p in processors.values() {
            if p["plugin"] == plugin {
                out.push(p["config"].clone());
            }
        }
    }
    out
}

#[test]
fn the_readme_example_scrubs_as_documented() {
    let configs = configs("builtin:pii-scrub");
    assert_eq!(configs.len(), 1);
    let mut h = Harness::<PiiScrub>::new(configs[0].clone()).unwrap();
    let mut s = span(
        "op",
        &[
            ("db.password", "hunter2".into()),
            ("http.request.header.cookie", "sid=1".into()),
            ("card", "4111 1111 1111 1111".into()),
            ("who", "alice@shop.test and ops@example.com".into()),
            ("http.route", "/u/bob@shop.test".into()),
        ],
    );
    s.attributes
        .push(kv("url.full", "https://h/p?sig=abc&x=1".into()));
    let out = h
        .process(vec![resource_spans("checkout", vec![s])])
        .unwrap();
    let attrs = &out[0].scope_spans[0].spans[0].attributes;
    let get = |k: &str| {
        attrs
            .iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.as_ref())
            .and_then(as_str)
    };
    assert_eq!(get("db.password"), Some("*******"));
    assert_eq!(get("http.request.header.cookie"), None);
    assert_eq!(get("card"), Some("***************1111"));
    let who = get("who").unwrap();
    assert!(
        !who.contains("alice@shop.test") && who.ends_with(" and ops@example.com"),
        "{who}"
    );
    assert_eq!(get("http.route"), Some("/u/bob@shop.test"), "ignored key");
    assert_eq!(get("url.full"), Some("https://h/p?sig=***&x=1"));
    assert_eq!(
        get("redaction.redacted.keys"),
        Some("http.request.header.cookie")
    );
}
