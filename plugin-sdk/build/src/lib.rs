//! Builds plugin crates of this workspace to `wasm32-wasip2` from a build script, so the
//! plugins are compiled as part of the normal `cargo build` and can be embedded with
//! `include_bytes!`.
//!
//! The inner build uses its own target directory (`target/wasm-plugins`): the outer build
//! holds the lock on the usual one. It always builds in release mode, since plugin speed and
//! size matter even in a debug collector, and it shares the outer build's jobserver.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every plugin is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// Builds `packages` (package names in the workspace at `workspace`) and returns the path of
/// each one's `.wasm` component, in the same order. Tells cargo to re-run the build script
/// when the plugin SDK or the given crate directories change.
pub fn build(workspace: &Path, packages: &[(&str, &Path)]) -> Result<Vec<PathBuf>, String> {
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("plugin-sdk/src").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("plugin-sdk/wit").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("Cargo.lock").display()
    );
    for (_, dir) in packages {
        println!("cargo:rerun-if-changed={}", dir.join("src").display());
        println!(
            "cargo:rerun-if-changed={}",
            dir.join("Cargo.toml").display()
        );
    }
    if packages.is_empty() {
        return Ok(Vec::new());
    }
    check_target()?;
    let target_dir = workspace.join("target/wasm-plugins");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(TARGET)
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    for (name, _) in packages {
        cmd.arg("-p").arg(name);
    }
    // The outer build's flags and profile settings are for the host, not for wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    for (key, _) in std::env::vars() {
        if key.starts_with("CARGO_PROFILE_") || key.starts_with("CARGO_CFG_") {
            cmd.env_remove(key);
        }
    }
    // Plugins are small: whole-program optimisation costs seconds and makes the protobuf
    // decoding and attribute scans every call runs measurably faster. wasmtime runs SIMD
    // (`simd128`) natively, which speeds up UTF-8 checks and copies. A call costs more in the
    // sandbox than natively (each function entry checks the epoch deadline, and there is no
    // register allocation across calls), so LLVM inlines up to 1000 instead of its native
    // 250: `pii-scrub` runs about 7% faster in the sandbox, for modules 1.2× larger
    // (`BENCHMARKS.md`).
    cmd.env("CARGO_PROFILE_RELEASE_LTO", "fat")
        .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1")
        .env(
            "CARGO_TARGET_WASM32_WASIP2_RUSTFLAGS",
            "-C target-feature=+simd128 -C llvm-args=-inline-threshold=1000",
        );
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run cargo to build the plugins: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the plugins {:?} for {TARGET} failed (see the cargo output above)",
            packages.iter().map(|(n, _)| *n).collect::<Vec<_>>()
        ));
    }
    Ok(packages
        .iter()
        .map(|(name, _)| {
            target_dir
                .join(TARGET)
                .join("release")
                .join(format!("{}.wasm", name.replace('-', "_")))
        })
        .collect())
}

/// Fails with the fix when the wasm target's standard library is not installed.
fn check_target() -> Result<(), String> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(TARGET)
        .exists()
    {
        Ok(())
    } else {
        Err(format!(
            "the {TARGET} target is not installed; plugins are built for it. \
             Run `rustup target add {TARGET}` and build again."
        ))
    }
}

/// Builds the plugin crates in `crates` (directories relative to the workspace) and sets
/// `WASMCOL_TEST_PLUGIN_<NAME>` (NAME: the directory name, upper-cased) for the crate being
/// built to each `.wasm` path, for tests and benchmarks to `env!`.
pub fn build_and_export(workspace: &Path, crates: &[&str]) {
    let dirs: Vec<PathBuf> = crates.iter().map(|c| workspace.join(c)).collect();
    let names: Vec<(String, String)> = dirs
        .iter()
        .map(|d| {
            let toml = std::fs::read_to_string(d.join("Cargo.toml"))
                .unwrap_or_else(|e| panic!("{}: {e}", d.join("Cargo.toml").display()));
            let package =
                package_name(&toml).unwrap_or_else(|| panic!("{}: no [package] name", d.display()));
            let env = d
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_uppercase()
                .replace('-', "_");
            (env, package)
        })
        .collect();
    let packages: Vec<(&str, &Path)> = names
        .iter()
        .zip(&dirs)
        .map(|((_, p), d)| (p.as_str(), d.as_path()))
        .collect();
    let wasm = build(workspace, &packages).unwrap_or_else(|e| panic!("{e}"));
    for ((env, _), path) in names.iter().zip(wasm) {
        println!(
            "cargo:rustc-env=WASMCOL_TEST_PLUGIN_{env}={}",
            path.display()
        );
    }
}

/// The `name = "..."` of a manifest's `[package]` section.
pub fn package_name(toml: &str) -> Option<String> {
    package_field(toml, "name")
}

/// A string field (`key = "..."`) of a manifest's `[package]` section.
pub fn package_field(toml: &str, key: &str) -> Option<String> {
    let mut in_package = false;
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package
            && let Some(rest) = line.strip_prefix(key)
            && let Some(v) = rest.trim_start().strip_prefix('=')
        {
            return Some(v.trim().trim_matches('"').to_string());
        }
    }
    None
}
