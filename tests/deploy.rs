//! What ships for deployment, checked with the tools that judge it: the systemd unit
//! (`deploy/systemd/wasmcol.service`) as systemd 252+ reads it (`systemd-analyze verify`) and
//! its sandbox's exposure score (`systemd-analyze security --offline`).

use std::process::Command;

use wasmcol_tests::{binary, workspace_root};

/// The unit as shipped, with `ExecStart` pointing at the binary built here (verify checks
/// that the executable exists).
fn unit_for_this_build(dir: &std::path::Path) -> std::path::PathBuf {
    let shipped = std::fs::read_to_string(workspace_root().join("deploy/systemd/wasmcol.service"))
        .expect("deploy/systemd/wasmcol.service");
    assert!(
        shipped.contains("ExecStart=/usr/local/bin/wasmcol --config /etc/wasmcol/config.yaml\n"),
        "the documented command line changed: update README \"Running under systemd\""
    );
    let unit = shipped.replace(
        "/usr/local/bin/wasmcol",
        binary("wasmcol").to_str().expect("UTF-8 path"),
    );
    let path = dir.join("wasmcol.service");
    std::fs::write(&path, unit).unwrap();
    path
}

fn systemd_analyze(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("systemd-analyze (Debian package systemd; tests/run.sh installs it)")
}

#[test]
fn the_systemd_unit_is_valid_and_hardened() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let unit = unit.to_str().unwrap();

    let verify = systemd_analyze(&["verify", "--man=no", unit], dir.path());
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );

    // Exposure 0.0 (locked down) to 10.0 (unprotected); --threshold is in tenths. At most
    // 1.5: what is left open is the network the collector serves and the executable memory
    // the plugin runtime needs.
    let security = systemd_analyze(
        &[
            "security",
            "--offline=true",
            "--threshold=15",
            "--no-pager",
            unit,
        ],
        dir.path(),
    );
    let report = String::from_utf8_lossy(&security.stdout);
    assert!(
        security.status.success(),
        "exposure above 1.5:\n{report}{}",
        String::from_utf8_lossy(&security.stderr)
    );
    let overall = report
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure in:\n{report}"));
    println!("{overall}");

    let text = std::fs::read_to_string(unit).unwrap();
    // The cgroup limit the memory_limiter's percentages are taken of.
    assert!(text.contains("\nMemoryMax="), "no MemoryMax in the unit");
    // wasmtime maps compiled code writable, then executable: W^X enforcement would kill it.
    assert!(
        !text.contains("\nMemoryDenyWriteExecute="),
        "MemoryDenyWriteExecute breaks the plugin runtime"
    );
}
