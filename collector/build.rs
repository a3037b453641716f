//! Compiles every plugin crate under `plugins/` to wasm32-wasip2 and writes the table that
//! embeds them, so `builtin:NAME` works with no files beside the binary.

use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest
        .parent()
        .expect("collector/ is inside the workspace")
        .to_path_buf();
    let plugins_dir = workspace.join("plugins");
    println!("cargo:rerun-if-changed={}", plugins_dir.display());

    // The plugins to embed are listed in this crate's Cargo.toml:
    //   [package.metadata.wasmcol]
    //   builtin-plugins = ["pii-scrub", ...]      # directories under plugins/
    // (builtin name = directory name, package name, directory)
    println!(
        "cargo:rerun-if-changed={}",
        manifest.join("Cargo.toml").display()
    );
    let own = std::fs::read_to_string(manifest.join("Cargo.toml")).expect("read Cargo.toml");
    let mut plugins: Vec<(String, String, PathBuf)> = Vec::new();
    for name in builtin_list(&own) {
        let dir = plugins_dir.join(&name);
        let toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_else(|e| {
            panic!(
                "builtin plugin {name:?}: cannot read {}: {e}",
                dir.join("Cargo.toml").display()
            )
        });
        let package = wasmcol_plugin_build::package_name(&toml)
            .unwrap_or_else(|| panic!("{}: no [package] name", dir.join("Cargo.toml").display()));
        plugins.push((name, package, dir));
    }
    plugins.sort();

    let packages: Vec<(&str, &Path)> = plugins
        .iter()
        .map(|(_, p, d)| (p.as_str(), d.as_path()))
        .collect();
    let wasm = match wasmcol_plugin_build::build(&workspace, &packages) {
        Ok(w) => w,
        Err(e) => {
            println!("cargo:warning={e}");
            panic!("{e}");
        }
    };
    let mut table = String::from(
        "/// Built-in plugins: (name, description, component bytes).\npub static BUILTIN: &[(&str, &str, &[u8])] = &[\n",
    );
    for ((name, _, dir), path) in plugins.iter().zip(&wasm) {
        let toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap_or_default();
        let description =
            wasmcol_plugin_build::package_field(&toml, "description").unwrap_or_default();
        table.push_str(&format!(
            "    ({name:?}, {description:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    table.push_str("];\n");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("builtin_plugins.rs");
    std::fs::write(out, table).expect("write builtin_plugins.rs");
}

/// The `builtin-plugins = [...]` list of `[package.metadata.wasmcol]`.
fn builtin_list(toml: &str) -> Vec<String> {
    let mut in_section = false;
    let mut collecting = false;
    let mut text = String::new();
    for line in toml.lines() {
        let line = line.trim();
        if line.starts_with('[') && !collecting {
            in_section = line == "[package.metadata.wasmcol]";
            continue;
        }
        if in_section && line.starts_with("builtin-plugins") {
            collecting = true;
        }
        if collecting {
            text.push_str(line);
            if line.contains(']') {
                break;
            }
        }
    }
    let Some(list) = text.split_once('[').map(|(_, l)| l.trim_end_matches(']')) else {
        return Vec::new();
    };
    list.split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}
