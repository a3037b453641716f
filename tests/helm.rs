//! The Helm chart (`deploy/helm/wasmcol`) and its examples (`deploy/helm/examples`), judged
//! offline by the tools a cluster's gatekeepers use: rendered and linted by Helm's own Go SDK
//! (PyPI's helm-python-sdk, through `deploy/helm/render.py`; no helm binary, no cluster), every
//! manifest validated against Kubernetes 1.37's schemas with unknown fields refused
//! (`kubernetes-validate --strict`), scanned by checkov with no failed check, and the
//! ConfigMap's collector configuration accepted by `wasmcol validate`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use wasmcol_tests::{binary, python, workspace_root};

const MODES: [&str; 3] = ["daemonset", "deployment", "statefulset"];
const EXAMPLES: [&str; 2] = ["daemonset-agent", "gateway-kafka"];

/// Checks the chart skips, each with its reason in the chart (templates/_helpers.tpl,
/// `wasmcol.checkovSkips`): image digest and pull policy (no digest until the image is
/// pushed; gone when `image.digest` is set) and host ports (a daemonset's node agent).
const SKIPPABLE: [&str; 3] = ["CKV_K8S_43", "CKV_K8S_15", "CKV_K8S_26"];

fn venv_tool(name: &str) -> PathBuf {
    let tool = workspace_root().join(".venv/bin").join(name);
    assert!(
        tool.exists(),
        "{} is missing: tests/run.sh installs tests/python/requirements.txt into .venv",
        tool.display()
    );
    tool
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One rendering: the manifests as written (a multi-document YAML file) and as parsed.
struct Rendered {
    file: PathBuf,
    manifests: Vec<Value>,
}

impl Rendered {
    fn kinds(&self) -> Vec<&str> {
        self.manifests
            .iter()
            .map(|m| m["kind"].as_str().unwrap())
            .collect()
    }

    fn get(&self, kind: &str) -> &Value {
        self.manifests
            .iter()
            .find(|m| m["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {:?}", self.kinds()))
    }

    fn workload(&self) -> &Value {
        self.manifests
            .iter()
            .find(|m| {
                ["DaemonSet", "Deployment", "StatefulSet"].contains(&m["kind"].as_str().unwrap())
            })
            .unwrap_or_else(|| panic!("no workload in {:?}", self.kinds()))
    }

    fn config(&self) -> String {
        self.get("ConfigMap")["data"]["config.yaml"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// `deploy/helm/render.py ARGS OUT`: its output, unchecked.
fn render_raw(args: &[&str], out: &Path) -> Output {
    Command::new(python())
        .arg(workspace_root().join("deploy/helm/render.py"))
        .args(args)
        .arg(out)
        .output()
        .expect("python")
}

/// Renders and lints (strict: a warning fails too); panics on any problem.
fn render(args: &[&str], out: &Path) -> Rendered {
    let o = render_raw(args, out);
    assert!(o.status.success(), "render.py {args:?}: {}", text(&o));
    let report: Value = serde_json::from_slice(&o.stdout).expect("render.py prints JSON");
    assert_eq!(report["lint"]["total_charts_linted"], 1, "{report}");
    assert_eq!(report["lint"]["errors"], Value::Array(vec![]), "{report}");
    Rendered {
        file: out.to_path_buf(),
        manifests: report["manifests"].as_array().unwrap().clone(),
    }
}

fn render_mode(mode: &str, dir: &Path) -> Rendered {
    render(
        &["--set", &format!("mode={mode}")],
        &dir.join(format!("{mode}.yaml")),
    )
}

fn render_example(name: &str, dir: &Path) -> Rendered {
    let values = workspace_root().join(format!("deploy/helm/examples/{name}.yaml"));
    render(
        &["-f", values.to_str().unwrap()],
        &dir.join(format!("{name}.yaml")),
    )
}

/// `wasmcol validate` on a configuration as the pod would see it: the container's literal
/// `extraEnvs` set, and each `${file:PATH}` (a Secret mounted by `extraVolumes`) pointed at a
/// stand-in file with a placeholder secret.
fn assert_config_valid(config: &str, env: &[(String, String)], what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config.to_string();
    let paths: Vec<String> = config
        .match_indices("${file:")
        .map(|(i, _)| {
            let path = &config[i + 7..];
            path[..path.find('}').expect("closing brace")].to_string()
        })
        .collect();
    for path in paths {
        let stand_in = dir.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(stand_in.parent().unwrap()).unwrap();
        std::fs::write(&stand_in, "placeholder-secret").unwrap();
        config = config.replace(
            &format!("${{file:{path}}}"),
            &format!("${{file:{}}}", stand_in.display()),
        );
    }
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, &config).unwrap();
    let out = Command::new(binary("wasmcol"))
        .args(["validate", "--config"])
        .arg(&file)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: wasmcol validate refused the rendered config:\n{}\n{config}",
        text(&out)
    );
}

fn literal_env(container: &Value) -> Vec<(String, String)> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| Some((e["name"].as_str()?.into(), e["value"].as_str()?.into())))
        .collect()
}

fn container(rendered: &Rendered) -> &Value {
    let containers = rendered.workload()["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1);
    &containers[0]
}

#[test]
fn every_mode_renders_lints_and_runs_hardened_with_health_probes() {
    let dir = tempfile::tempdir().unwrap();
    for (mode, kind) in MODES.iter().zip(["DaemonSet", "Deployment", "StatefulSet"]) {
        let r = render_mode(mode, dir.path());
        let w = r.workload();
        assert_eq!(w["kind"], kind, "{mode}");
        let pod = &w["spec"]["template"]["spec"];
        let c = container(&r);

        // Hardened: non-root 10001, read-only root, no capabilities, RuntimeDefault seccomp.
        let psc = &pod["securityContext"];
        assert_eq!(psc["runAsNonRoot"], true, "{mode}");
        assert_eq!(psc["runAsUser"], 10001, "{mode}");
        assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault", "{mode}");
        let sc = &c["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{mode}");
        assert_eq!(sc["runAsUser"], 10001, "{mode}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{mode}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{mode}");
        assert_eq!(
            sc["capabilities"]["drop"],
            serde_json::json!(["ALL"]),
            "{mode}"
        );
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{mode}");
        assert_eq!(pod["automountServiceAccountToken"], false, "{mode}");
        assert_eq!(
            r.get("ServiceAccount")["automountServiceAccountToken"],
            false
        );

        // The image's entrypoint with the chart's config.
        assert_eq!(c["image"], "wasmcol:0.1.0", "{mode}");
        assert_eq!(
            c["args"],
            serde_json::json!(["--config", "/conf/config.yaml"])
        );

        // Probes on the health_check port; readiness drops the pod at the first 503
        // (starting, reloading, draining), liveness waits out a drain.
        let health = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "health")
            .expect("health port");
        assert_eq!(health["containerPort"], 13133);
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            assert_eq!(c[probe]["httpGet"]["port"], "health", "{mode} {probe}");
            assert_eq!(c[probe]["httpGet"]["path"], "/", "{mode} {probe}");
        }
        assert_ne!(c["livenessProbe"], c["readinessProbe"], "{mode}");
        assert_eq!(c["readinessProbe"]["failureThreshold"], 1);
        let live = &c["livenessProbe"];
        let tolerated =
            live["periodSeconds"].as_i64().unwrap() * live["failureThreshold"].as_i64().unwrap();
        assert!(
            tolerated >= pod["terminationGracePeriodSeconds"].as_i64().unwrap(),
            "{mode}: liveness gives up ({tolerated} s) before a drain may end"
        );

        // Writable working directory and /tmp on emptyDirs; config from the ConfigMap.
        let mounts = c["volumeMounts"].as_array().unwrap();
        let volumes = pod["volumes"].as_array().unwrap();
        for (path, kind) in [
            ("/var/lib/wasmcol", "emptyDir"),
            ("/tmp", "emptyDir"),
            ("/conf", "configMap"),
        ] {
            let m = mounts
                .iter()
                .find(|m| m["mountPath"] == path)
                .unwrap_or_else(|| panic!("{mode}: nothing at {path}"));
            let v = volumes.iter().find(|v| v["name"] == m["name"]).unwrap();
            assert!(v.get(kind).is_some(), "{mode}: {path} is not a {kind}: {v}");
        }

        // Resources set (memory_limiter takes percentages of the limit).
        assert!(c["resources"]["limits"]["memory"].is_string(), "{mode}");
        assert!(c["resources"]["requests"]["cpu"].is_string(), "{mode}");

        // Ports: hostPort on the node agent only; the Service for the gateways.
        let otlp = c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "otlp")
            .unwrap();
        assert_eq!(otlp["containerPort"], 4317);
        assert_eq!(
            otlp.get("hostPort").is_some(),
            *mode == "daemonset",
            "{mode}"
        );
        assert_eq!(
            r.kinds().contains(&"Service"),
            *mode != "daemonset",
            "{mode}"
        );
        assert!(r.kinds().contains(&"NetworkPolicy"), "{mode}");

        // The config change checksum, and the config itself as wasmcol reads it.
        let checksum = w["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
            .as_str()
            .unwrap();
        assert_eq!(checksum.len(), 64, "{mode}");
        let config = r.config();
        assert!(config.contains("health_check"), "{config}");
        assert_config_valid(&config, &literal_env(c), mode);
    }
}

#[test]
fn mode_is_required_and_validated_by_the_schema() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.yaml");
    for (args, expect) in [
        (vec![], "/mode"),
        (vec!["--set", "mode=sidecar"], "/mode"),
        (
            vec!["--set", "mode=deployment,replicaCont=2"],
            "replicaCont",
        ),
        (
            vec!["--set", "mode=deployment,image.pullPolicy=Sometimes"],
            "pullPolicy",
        ),
    ] {
        let o = render_raw(&args, &out);
        assert_eq!(o.status.code(), Some(2), "{args:?} rendered: {}", text(&o));
        let message = text(&o);
        assert!(
            message.contains(expect),
            "{args:?}: the message does not name {expect}: {message}"
        );
        if expect == "/mode" {
            assert!(
                message.contains("daemonset") && message.contains("statefulset"),
                "{message}"
            );
        }
    }
}

#[test]
fn a_config_change_rolls_the_pods_and_config_merges_over_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let checksum = |r: &Rendered| {
        r.workload()["spec"]["template"]["metadata"]["annotations"]["checksum/config"].clone()
    };
    let base = render(&["--set", "mode=deployment"], &dir.path().join("a.yaml"));
    let again = render(&["--set", "mode=deployment"], &dir.path().join("b.yaml"));
    let changed = render(
        &[
            "--set",
            "mode=deployment",
            "--set",
            "config.processors.batch.timeout=1s",
        ],
        &dir.path().join("c.yaml"),
    );
    assert_eq!(checksum(&base), checksum(&again));
    assert_ne!(checksum(&base), checksum(&changed));
    // Merged: the one option changed, the rest of the defaults still there.
    let config = changed.config();
    assert!(config.contains("timeout: 1s"), "{config}");
    assert!(config.contains("send_batch_size: 8192"), "{config}");
    assert!(config.contains("health_check"), "{config}");
}

#[test]
fn examples_render_and_their_configs_are_valid() {
    let dir = tempfile::tempdir().unwrap();
    let agent = render_example("daemonset-agent", dir.path());
    assert_eq!(agent.workload()["kind"], "DaemonSet");
    assert_config_valid(&agent.config(), &literal_env(container(&agent)), "agent");
    let config = agent.config();
    assert!(config.contains("${env:GATEWAY_ENDPOINT}"), "{config}");
    assert!(
        !config.contains("file/logs"),
        "the image's file exporters were to be dropped: {config}"
    );

    let gateway = render_example("gateway-kafka", dir.path());
    assert_eq!(gateway.workload()["kind"], "Deployment");
    for kind in ["HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"] {
        assert!(gateway.kinds().contains(&kind), "{:?}", gateway.kinds());
    }
    assert!(
        gateway.workload()["spec"].get("replicas").is_none(),
        "the autoscaler owns replicas"
    );
    let config = gateway.config();
    assert!(
        config.contains("kafka:") && config.contains("clickhouse:"),
        "{config}"
    );
    assert!(
        !config.contains("otlp:"),
        "the OTLP receiver was to be dropped: {config}"
    );
    assert_config_valid(&config, &literal_env(container(&gateway)), "gateway");

    // The operator's sidecar: our image, mode sidecar, a config wasmcol takes.
    let cr = std::fs::read_to_string(
        workspace_root().join("deploy/helm/examples/sidecar-operator.yaml"),
    )
    .unwrap();
    let o = Command::new(python())
        .args([
            "-c",
            "import json, sys, helm_python as h; print(json.dumps(h.values_from_yaml(sys.stdin.read())))",
        ])
        .stdin(std::fs::File::open(workspace_root().join("deploy/helm/examples/sidecar-operator.yaml")).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let cr_json: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(cr_json["apiVersion"], "opentelemetry.io/v1beta1", "{cr}");
    assert_eq!(cr_json["kind"], "OpenTelemetryCollector");
    assert_eq!(cr_json["spec"]["mode"], "sidecar");
    assert!(
        cr_json["spec"]["image"]
            .as_str()
            .unwrap()
            .starts_with("wasmcol:")
    );
    assert_eq!(cr_json["spec"]["securityContext"]["runAsUser"], 10001);
    let sidecar_config = serde_json::to_string_pretty(&cr_json["spec"]["config"]).unwrap();
    // JSON is YAML: wasmcol reads it as such.
    assert_config_valid(&sidecar_config, &[], "sidecar");
}

#[test]
fn manifests_pass_strict_kubernetes_validation_and_checkov() {
    // checkov skips hidden directories, as tempfile's default `.tmpXXXX` would be.
    let dir = tempfile::Builder::new().prefix("helm-").tempdir().unwrap();
    let mut files: Vec<Rendered> = MODES.iter().map(|m| render_mode(m, dir.path())).collect();
    files.extend(EXAMPLES.iter().map(|e| render_example(e, dir.path())));
    // Pinned by digest and with every optional object on.
    let digest = format!("sha256:{}", "ab".repeat(32));
    files.push(render(
        &[
            "--set",
            &format!(
                "mode=statefulset,image.digest={digest},autoscaling.enabled=true,podDisruptionBudget.enabled=true"
            ),
        ],
        &dir.path().join("pinned.yaml"),
    ));

    let validate = |file: &Path| {
        Command::new(venv_tool("kubernetes-validate"))
            .args(["--strict", "--quiet", "--kubernetes-version", "1.37.0"])
            .arg(file)
            .output()
            .unwrap()
    };
    for r in &files {
        let o = validate(&r.file);
        assert!(o.status.success(), "{}: {}", r.file.display(), text(&o));
    }
    // The validator can fail: an unknown field in a pod spec is refused.
    let broken = std::fs::read_to_string(&files[1].file)
        .unwrap()
        .replace("terminationGracePeriodSeconds:", "terminationGracePeriod:");
    let elsewhere = tempfile::tempdir().unwrap();
    let broken_file = elsewhere.path().join("broken.yaml");
    std::fs::write(&broken_file, broken).unwrap();
    assert!(
        !validate(&broken_file).status.success(),
        "strict validation let a typo through"
    );

    let o = Command::new(venv_tool("checkov"))
        .args([
            "--framework",
            "kubernetes",
            "--skip-download",
            "--compact",
            "-o",
            "json",
            "-d",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("checkov printed no JSON ({e}): {}", text(&o)));
    let report = if report.is_array() {
        report[0].clone()
    } else {
        report
    };
    let summary = &report["summary"];
    let failed: Vec<String> = report["results"]["failed_checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {} {}", c["check_id"], c["resource"], c["file_path"]))
        .collect();
    assert!(failed.is_empty(), "checkov failed checks: {failed:#?}");
    assert_eq!(summary["parsing_errors"], 0, "{summary}");
    assert!(summary["passed"].as_u64().unwrap() > 300, "{summary}");
    assert!(
        summary["resource_count"].as_u64().unwrap() >= 30,
        "{summary}"
    );
    for c in report["results"]["skipped_checks"].as_array().unwrap() {
        let id = c["check_id"].as_str().unwrap();
        let reason = c["check_result"]["suppress_comment"].as_str().unwrap_or("");
        assert!(SKIPPABLE.contains(&id), "unexpected skip: {c}");
        assert!(reason.len() > 40, "a skip without its reason: {c}");
        if c["file_path"].as_str().unwrap().ends_with("pinned.yaml") {
            panic!("a digest-pinned image needs no skip: {c}");
        }
    }
}
