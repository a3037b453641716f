//! `wasmcol plugin new` and the plugin SDK's tutorial (`plugin-sdk/README.md`): the scaffold
//! creates exactly the crate the tutorial shows; that crate passes its own tests and builds
//! with the documented command; the tutorial's configuration validates and runs it in a
//! collector, with the effect on spans and the metrics the tutorial shows; and the tutorial's
//! Rust blocks pass as doctests.
//!
//! The scaffolded crate builds in `target/scaffold`, so its dependencies compile once and
//! later runs only rebuild the crate itself.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use wasmcol_tests::{
    Collector, all_spans, binary, free_port, http_request, read_json_lines, scrape_metrics,
    wait_until, workspace_root,
};

/// The tutorial's plugin.
const NAME: &str = "slow-spans";
/// Commands the tutorial shows and this file runs, verbatim.
const NEW: &str = "wasmcol plugin new slow-spans";
const TEST: &str = "cargo test";
const BUILD: &str = "cargo build --release --target wasm32-wasip2";
const VALIDATE: &str = "wasmcol validate --config collector.yaml";

fn readme() -> String {
    std::fs::read_to_string(workspace_root().join("plugin-sdk/README.md"))
        .expect("read the SDK README")
}

/// The fenced code blocks of `markdown` whose info string is `info` (`rust`, `yaml`, ...),
/// each with its final newline.
fn blocks(markdown: &str, info: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut current: Option<(bool, String)> = None;
    for line in markdown.lines() {
        match &mut current {
            None => {
                if let Some(rest) = line.strip_prefix("```") {
                    current = Some((rest.trim() == info, String::new()));
                }
            }
            Some((wanted, text)) => {
                if line == "```" {
                    if *wanted {
                        found.push(std::mem::take(text));
                    }
                    current = None;
                } else {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    found
}

/// Runs `cmd`, failing the test with its output unless it succeeds.
fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `wasmcol plugin new NAME --dir DIR`.
fn plugin_new(dir: &Path, name: &str, extra: &[&str]) -> Output {
    Command::new(binary("wasmcol"))
        .args(["plugin", "new", name, "--dir"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("run wasmcol plugin new")
}

/// cargo, with the scaffold's shared target directory.
fn cargo(dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(dir)
        .env("CARGO_TARGET_DIR", workspace_root().join("target/scaffold"))
        .env_remove("CARGO_BUILD_TARGET");
    cmd
}

#[test]
fn the_tutorial_shows_the_scaffolded_crate() {
    let tmp = tempfile::tempdir().unwrap();
    let out = plugin_new(tmp.path(), NAME, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let krate = tmp.path().join(NAME);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("Created the plugin crate {}", krate.display())),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("  {BUILD}\n")), "{stdout}");

    // The tutorial's two Rust blocks are the generated src/lib.rs, top and bottom.
    let text = readme();
    let lib = std::fs::read_to_string(krate.join("src/lib.rs")).unwrap();
    let plugin = blocks(&text, "rust")
        .into_iter()
        .next()
        .expect("the plugin block");
    let tests = blocks(&text, "rust,ignore");
    assert_eq!(tests.len(), 1, "only the test module is not a doctest");
    assert_eq!(
        lib,
        format!("{plugin}\n{}", tests[0]),
        "the README's src/lib.rs is not the template's"
    );

    // Its shell blocks show the commands the other tests run.
    let shell = blocks(&text, "sh").concat();
    for command in [NEW, TEST, BUILD, VALIDATE] {
        assert!(
            shell.lines().any(|l| l.starts_with(command)),
            "{command:?} is not in the README"
        );
    }

    let toml = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    let sdk = std::fs::canonicalize(workspace_root().join("plugin-sdk")).unwrap();
    for want in [
        "name = \"slow-spans\"".to_string(),
        "crate-type = [\"cdylib\", \"rlib\"]".to_string(),
        format!("wasmcol-plugin-sdk = {{ path = \"{}\" }}", sdk.display()),
        "\n[workspace]\n".to_string(),
    ] {
        assert!(toml.contains(&want), "{want} is not in\n{toml}");
    }
    let own_readme = std::fs::read_to_string(krate.join("README.md")).unwrap();
    assert!(
        own_readme.contains(&format!(
            "{BUILD}    # → target/wasm32-wasip2/release/slow_spans.wasm"
        )),
        "{own_readme}"
    );
    assert_eq!(
        std::fs::read_to_string(krate.join(".gitignore")).unwrap(),
        "/target\n"
    );
}

#[test]
fn plugin_new_refuses_bad_names_and_existing_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let fails = |name: &str, extra: &[&str]| {
        let out = plugin_new(tmp.path(), name, extra);
        assert_eq!(out.status.code(), Some(1), "{name}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert_eq!(
        fails("2fast", &[]),
        "error: invalid plugin name \"2fast\": it starts with '2'; a plugin name is a crate name: \
         ASCII letters, digits, `-` and `_`, starting with a letter, at most 64 characters\n"
    );
    assert!(
        fails("my plugin", &[])
            .starts_with("error: invalid plugin name \"my plugin\": ' ' is not allowed;")
    );
    assert!(fails("serde", &[]).contains("the name of a crate the plugin uses"));

    let taken = tmp.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("keep.txt"), "mine").unwrap();
    assert_eq!(
        fails("taken", &[]),
        format!(
            "error: {} already exists; pick another name or --dir, or remove it first\n",
            taken.display()
        )
    );
    assert_eq!(std::fs::read_dir(&taken).unwrap().count(), 1);
    assert_eq!(
        std::fs::read_to_string(taken.join("keep.txt")).unwrap(),
        "mine"
    );

    let err = fails("fresh", &["--sdk", "/nonexistent/plugin-sdk"]);
    assert!(
        err.starts_with("error: no plugin SDK at /nonexistent/plugin-sdk: "),
        "{err}"
    );
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["taken"], "nothing else was created");
}

fn string(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

/// A resource of `service` with spans (name, duration in ms).
fn resource(service: &str, spans: &[(&str, u64)]) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![string("service.name", service)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans: spans
                .iter()
                .enumerate()
                .map(|(i, (name, ms))| Span {
                    trace_id: vec![9; 16],
                    span_id: vec![i as u8 + 1; 8],
                    name: name.to_string(),
                    start_time_unix_nano: 1_700_000_000_000_000_000,
                    end_time_unix_nano: 1_700_000_000_000_000_000 + ms * 1_000_000,
                    attributes: vec![string("keep", "me")],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `yaml` with each `from` replaced by `to`; every `from` must occur.
fn substitute(yaml: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = yaml.to_string();
    for (from, to) in pairs {
        assert!(
            out.contains(from),
            "{from:?} is not in the tutorial's configuration:\n{yaml}"
        );
        out = out.replace(from, to);
    }
    out
}

/// `wasmcol validate --config collector.yaml` in `dir` on `yaml`.
fn validate(dir: &Path, yaml: &str) -> Output {
    std::fs::write(dir.join("collector.yaml"), yaml).unwrap();
    let (command, args) = VALIDATE.split_once(' ').unwrap();
    assert_eq!(command, "wasmcol");
    Command::new(binary("wasmcol"))
        .args(args.split(' '))
        .current_dir(dir)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_tutorial_plugin_builds_validates_and_runs() {
    let started = Instant::now();
    let lap = |what: &str| eprintln!("{what}: {:.1}s", started.elapsed().as_secs_f64());
    let tmp = tempfile::tempdir().unwrap();
    let out = plugin_new(tmp.path(), NAME, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let krate = tmp.path().join(NAME);
    // The workspace's lock: the dependency versions the SDK is tested with, no index update.
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        krate.join("Cargo.lock"),
    )
    .unwrap();

    let test = run_ok(cargo(&krate).args(TEST.split(' ').skip(1)));
    let stdout = String::from_utf8_lossy(&test.stdout);
    assert!(
        stdout.contains("test result: ok. 2 passed; 0 failed"),
        "{stdout}"
    );
    lap("cargo test (the scaffolded crate)");

    // The tutorial's Rust blocks, as doctests: CI runs nextest, which skips doctests.
    let doc = run_ok(cargo(&workspace_root()).args([
        "test",
        "--doc",
        "-p",
        "wasmcol-plugin-sdk",
        "--",
        "readme",
    ]));
    let stdout = String::from_utf8_lossy(&doc.stdout);
    let passed: usize = stdout
        .lines()
        .filter_map(|l| {
            l.strip_prefix("test result: ok. ")?
                .split(' ')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert_eq!(
        passed,
        blocks(&readme(), "rust").len(),
        "every README block ran:\n{stdout}"
    );
    lap("cargo test --doc (the README)");

    run_ok(cargo(&krate).args(BUILD.split(' ').skip(1)));
    let built = workspace_root().join("target/scaffold/wasm32-wasip2/release/slow_spans.wasm");
    // Where the tutorial's relative `plugin:` path expects it (the default target directory).
    let wasm = krate.join("target/wasm32-wasip2/release/slow_spans.wasm");
    std::fs::create_dir_all(wasm.parent().unwrap()).unwrap();
    std::fs::copy(&built, &wasm).unwrap();
    lap("cargo build --release --target wasm32-wasip2");

    // The tutorial's configuration validates as it is; with `threshold_ms: fast` the plugin
    // rejects it with the message the tutorial shows.
    let text = readme();
    let yaml = blocks(&text, "yaml")
        .into_iter()
        .next()
        .expect("the configuration block");
    let out = validate(&krate, &yaml);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "collector.yaml: valid\n"
    );
    let out = validate(
        &krate,
        &substitute(&yaml, &[("threshold_ms: 500", "threshold_ms: fast")]),
    );
    assert_eq!(out.status.code(), Some(1));
    let shown = blocks(&text, "text")
        .into_iter()
        .find(|b| b.contains("rejected its configuration"))
        .expect("the rejected-configuration block");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim_end(),
        shown.trim_end()
    );

    // The generated README's snippet, in a pipeline.
    let own = std::fs::read_to_string(krate.join("README.md")).unwrap();
    let fragment = blocks(&own, "yaml")
        .into_iter()
        .next()
        .expect("a YAML block in the crate's README");
    let full = format!(
        "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{}\n{fragment}\
         exporters:\n  nop:\nservice:\n  pipelines:\n    traces:\n      receivers: [otlp]\n      \
         processors: [wasm/{NAME}]\n      exporters: [nop]\n",
        free_port()
    );
    let out = validate(&krate, &full);
    assert!(
        out.status.success(),
        "{full}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Run: the tutorial's configuration with this test's ports and paths.
    let (http, metrics) = (free_port(), free_port());
    let config = substitute(
        &yaml,
        &[
            ("localhost:4318", &format!("127.0.0.1:{http}")),
            ("localhost:8888", &format!("127.0.0.1:{metrics}")),
            (
                "path: slow-spans.jsonl",
                "path: \"{dir}/out.jsonl\"\n    flush_interval: 20ms",
            ),
            (
                "plugin: target/wasm32-wasip2/release/slow_spans.wasm",
                &format!("plugin: \"{}\"", wasm.display()),
            ),
        ],
    );
    let c = Collector::start(&config, http);
    let body = ExportTraceServiceRequest {
        resource_spans: vec![
            resource("checkout", &[("fast", 1), ("slow", 750)]),
            resource("batch-jobs", &[("nightly", 750)]),
        ],
    }
    .encode_to_vec();
    let reply = http_request(
        "POST",
        &format!("http://127.0.0.1:{http}/v1/traces"),
        &[("content-type", "application/x-protobuf")],
        body,
    )
    .await
    .expect("the collector answers");
    assert_eq!(reply.status, 200, "{}", c.log());
    let out = c.path("out.jsonl");
    let spans = || -> Vec<Span> {
        if !out.exists() {
            return Vec::new();
        }
        all_spans(&read_json_lines(&out))
            .into_iter()
            .cloned()
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(10), || spans().len() == 3),
        "{}",
        c.log()
    );
    for span in spans() {
        let mut want = vec![string("keep", "me")];
        if span.name == "slow" {
            want.push(KeyValue {
                key: "slow".into(),
                value: Some(AnyValue {
                    value: Some(Value::BoolValue(true)),
                }),
                ..Default::default()
            });
        }
        assert_eq!(span.attributes, want, "span {}", span.name);
    }

    // /metrics shows what the tutorial says it shows.
    let scraped = scrape_metrics(metrics).await;
    let shown = blocks(&text, "text")
        .into_iter()
        .find(|b| b.contains("wasmcol_plugin_calls_total"))
        .expect("the metrics block");
    for line in shown.lines() {
        assert!(
            scraped.lines().any(|l| l == line),
            "{line} is not on /metrics:\n{scraped}"
        );
    }
    lap("validate and run");
}
