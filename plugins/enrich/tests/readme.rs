//! The `builtin:enrich` example in `plugins/README.md` is a valid configuration and does what
//! the README says, with its inline table served as the host would serve it.

use enrich_plugin::Enrich;
use wasmcol_plugin_sdk::prelude::*;
use wasmcol_plugin_sdk::testing::{Harness, resource_spans, set_table, span};

const README: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"));

/// Every processor in the README's YAML blocks that uses `plugin`.
fn processors(plugin: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for block in README.split("```yaml\n").skip(1) {
        let yaml = &block[..block.find("```").expect("an unterminated code block")];
        let doc: serde_json::Value = serde_yaml_ng::from_str(yaml).expect("README YAML parses");
        let Some(processors) = doc.get("processors").and_then(|p| p.as_object()) else {
            continue;
        };
        out.extend(
            processors
                .values()
                .filter(|p| p["plugin"] == plugin)
                .cloned(),
        );
    }
    out
}

#[test]
fn the_readme_example_enriches_as_documented() {
    let processors = processors("builtin:enrich");
    assert_eq!(processors.len(), 1);
    let p = &processors[0];
    for (name, table) in p["tables"].as_object().unwrap() {
        let Some(rows) = table.get("rows").and_then(|r| r.as_object()) else {
            continue;
        };
        let rows = rows.iter().map(|(key, cols)| {
            let cols = cols.as_object().unwrap();
            let row = cols
                .iter()
                .map(|(c, v)| (c.clone(), v.as_str().unwrap().to_string()));
            (key.clone(), row.collect())
        });
        set_table(name, rows);
    }
    set_table(
        "environment",
        [(
            "host.name".to_string(),
            vec![("value".to_string(), "node-7".to_string())],
        )],
    );

    let mut h = Harness::<Enrich>::new(p["config"].clone()).unwrap();
    let s = span(
        "op",
        &[
            ("url.full", "https://shop.test/cart/add?sku=1".into()),
            ("http.method", "POST".into()),
        ],
    );
    let out = h
        .process(vec![resource_spans("checkout", vec![s])])
        .unwrap();
    let r = &out[0].resource.as_ref().unwrap().attributes;
    let rget = |k: &str| {
        r.iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.as_ref())
            .and_then(as_str)
    };
    assert_eq!(rget("team"), Some("payments"));
    assert_eq!(rget("tier"), Some("1"));
    assert_eq!(rget("host.name"), Some("node-7"));
    assert_eq!(rget("k8s.pod.name"), None, "not known to the host");
    let a = &out[0].scope_spans[0].spans[0].attributes;
    let get = |k: &str| {
        a.iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| kv.value.clone())
    };
    assert_eq!(
        get("http.route").as_ref().and_then(as_str),
        Some("/cart/add")
    );
    assert_eq!(
        get("http.request.method").as_ref().and_then(as_str),
        Some("POST")
    );
    assert_eq!(get("http.method"), None);
    assert_eq!(
        get("deployment.environment.name").as_ref().and_then(as_str),
        Some("production")
    );
    assert_eq!(
        get("slo.critical"),
        Some(Value::Bool(true).into_any_value())
    );
}
