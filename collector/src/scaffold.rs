//! `wasmcol plugin new NAME`: creates a plugin crate that builds to a `wasm` processor plugin
//! and passes its own native test. The files come from `plugin-sdk/template/`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `wasmcol plugin ...`.
#[derive(Debug, clap::Subcommand)]
pub enum PluginCommand {
    /// Creates a plugin crate NAME/: a working example plugin with a native test, ready for
    /// `cargo test` and `cargo build --release --target wasm32-wasip2`.
    New(NewArgs),
}

/// `wasmcol plugin new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The crate name (letters, digits, `-` and `_`, starting with a letter); also the
    /// directory created.
    pub name: String,
    /// The directory to create the crate in.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The plugin SDK (`plugin-sdk/` of a wasmcol checkout) the crate depends on. Default:
    /// the one this binary was built from.
    #[arg(long)]
    pub sdk: Option<PathBuf>,
}

/// Runs a `plugin` subcommand, printing what it did or what went wrong.
pub fn run(command: PluginCommand) -> ExitCode {
    match command {
        PluginCommand::New(args) => match new_plugin(&args) {
            Ok(dir) => {
                let shown = dir.display();
                println!("Created the plugin crate {shown}. Next:");
                println!("  cd {shown}");
                println!("  cargo test                                      # native tests");
                println!("  rustup target add wasm32-wasip2                 # once");
                println!("  cargo build --release --target wasm32-wasip2");
                println!(
                    "The plugin is then target/wasm32-wasip2/release/{}.wasm; README.md shows its configuration.",
                    lib_name(&args.name)
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// The SDK this binary was built from.
pub fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk")
}

/// Creates the crate `args.dir/args.name` and returns its path. Nothing is written when the
/// name, the SDK or the destination is wrong.
pub fn new_plugin(args: &NewArgs) -> Result<PathBuf, String> {
    check_name(&args.name)?;
    let sdk = args.sdk.clone().unwrap_or_else(default_sdk);
    let sdk = check_sdk(&sdk, args.sdk.is_none())?;
    let root = args.dir.join(&args.name);
    if root.exists() || root.is_symlink() {
        return Err(format!(
            "{} already exists; pick another name or --dir, or remove it first",
            root.display()
        ));
    }
    std::fs::create_dir_all(&args.dir)
        .map_err(|e| format!("cannot create {}: {e}", args.dir.display()))?;
    // create_dir (not _all) fails if something appeared there meanwhile: never overwrite.
    std::fs::create_dir(&root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    for (path, text) in render(&args.name, &sdk) {
        let file = root.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&file, text).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    }
    Ok(root)
}

/// The crate's files (path inside the crate, contents) for plugin `name` depending on the
/// SDK at `sdk`.
pub fn render(name: &str, sdk: &Path) -> Vec<(&'static str, String)> {
    const FILES: [(&str, &str); 5] = [
        (
            "Cargo.toml",
            include_str!("../../plugin-sdk/template/Cargo.toml.tmpl"),
        ),
        (
            "src/lib.rs",
            include_str!("../../plugin-sdk/template/lib.rs.tmpl"),
        ),
        (
            "README.md",
            include_str!("../../plugin-sdk/template/README.md.tmpl"),
        ),
        (
            ".gitignore",
            include_str!("../../plugin-sdk/template/gitignore.tmpl"),
        ),
        (
            ".cargo/config.toml",
            include_str!("../../plugin-sdk/template/cargo-config.toml.tmpl"),
        ),
    ];
    let sdk_text = sdk.display().to_string();
    FILES
        .iter()
        .map(|(path, template)| {
            // The SDK path lands in a TOML basic string in Cargo.toml, as plain text elsewhere.
            let sdk = if *path == "Cargo.toml" {
                toml_escape(&sdk_text)
            } else {
                sdk_text.clone()
            };
            let text = template
                .replace("{{name}}", name)
                .replace("{{crate}}", &lib_name(name))
                .replace("{{Type}}", &type_name(name))
                .replace("{{sdk}}", &sdk);
            (*path, text)
        })
        .collect()
}

/// The Rust name of the library: what `use` and the `.wasm` file are called.
pub fn lib_name(name: &str) -> String {
    name.replace('-', "_")
}

/// Names a plugin type must not take: the template's own and what it imports.
#[rustfmt::skip]
const TAKEN_TYPE_NAMES: &[&str] = &[
    "Batch", "Deserialize", "HashMap", "Harness", "Level", "Plugin", "PluginConfig",
    "ResourceMut", "ScopeMut", "SpanMut", "StatusCode", "Value",
];

/// The plugin type's name: `slow-spans` → `SlowSpans`.
pub fn type_name(name: &str) -> String {
    let camel: String = name
        .split(['-', '_'])
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect();
    if TAKEN_TYPE_NAMES.contains(&camel.as_str()) {
        camel + "Plugin"
    } else {
        camel
    }
}

/// Rust keywords, which cargo refuses as package names.
#[rustfmt::skip]
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub",
    "ref", "return", "self", "static", "struct", "super", "trait", "true", "try", "type",
    "typeof", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Crates the plugin links to: a package of the same name would shadow them.
const CRATES: &[&str] = &[
    "alloc",
    "core",
    "proc_macro",
    "serde",
    "serde_json",
    "std",
    "test",
    "wasmcol_plugin_sdk",
];

/// Checks `name` against the rules for crate names.
pub fn check_name(name: &str) -> Result<(), String> {
    let rules = "a plugin name is a crate name: ASCII letters, digits, `-` and `_`, starting with a letter, at most 64 characters";
    let bad = |why: String| Err(format!("invalid plugin name {name:?}: {why}; {rules}"));
    let Some(first) = name.chars().next() else {
        return bad("it is empty".into());
    };
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return bad(format!("{c:?} is not allowed"));
    }
    if !first.is_ascii_alphabetic() {
        return bad(format!("it starts with {first:?}"));
    }
    if name.len() > 64 {
        return bad(format!("it is {} characters long", name.len()));
    }
    let lib = lib_name(name);
    if KEYWORDS.contains(&lib.as_str()) {
        return bad("it is a Rust keyword".into());
    }
    if CRATES.contains(&lib.as_str()) {
        return bad(format!(
            "it is the name of a crate the plugin uses ({})",
            CRATES.join(", ")
        ));
    }
    Ok(())
}

/// Checks that `sdk` holds the plugin SDK and returns its absolute path.
fn check_sdk(sdk: &Path, is_default: bool) -> Result<PathBuf, String> {
    let manifest = sdk.join("Cargo.toml");
    let hint = if is_default {
        "this binary was built there but the checkout is gone or moved; pass --sdk PATH (the plugin-sdk/ directory of a wasmcol checkout)"
    } else {
        "pass the plugin-sdk/ directory of a wasmcol checkout"
    };
    let text = std::fs::read_to_string(&manifest).map_err(|e| {
        format!(
            "no plugin SDK at {}: cannot read {}: {e}; {hint}",
            sdk.display(),
            manifest.display()
        )
    })?;
    if !text.contains("name = \"wasmcol-plugin-sdk\"") {
        return Err(format!(
            "{} is not the plugin SDK (its package is not wasmcol-plugin-sdk); {hint}",
            manifest.display()
        ));
    }
    std::fs::canonicalize(sdk).map_err(|e| format!("cannot resolve {}: {e}", sdk.display()))
}

fn toml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_crate_rules() {
        for ok in ["slow-spans", "a", "my_plugin2", "Tagger"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "it is empty"),
            ("2fast", "it starts with '2'"),
            ("-x", "it starts with '-'"),
            ("my plugin", "' ' is not allowed"),
            ("café", "'é' is not allowed"),
            ("a/b", "'/' is not allowed"),
            ("fn", "it is a Rust keyword"),
            (
                "wasmcol-plugin-sdk",
                "it is the name of a crate the plugin uses",
            ),
        ] {
            let err = check_name(bad).unwrap_err();
            assert!(
                err.starts_with(&format!("invalid plugin name {bad:?}: {why}")),
                "{err}"
            );
        }
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn type_names_are_camel_case_and_never_clash() {
        assert_eq!(type_name("slow-spans"), "SlowSpans");
        assert_eq!(type_name("my_plugin_2"), "MyPlugin2");
        assert_eq!(type_name("a--b"), "AB");
        assert_eq!(type_name("plugin"), "PluginPlugin");
        assert_eq!(type_name("batch"), "BatchPlugin");
        assert_eq!(lib_name("slow-spans"), "slow_spans");
    }

    #[test]
    fn every_placeholder_is_filled() {
        for (path, text) in render("slow-spans", Path::new("/sdk \"x\"\\y")) {
            assert!(!text.contains("{{"), "{path}: {text}");
        }
        let files = render("slow-spans", Path::new("/opt/wasmcol/plugin-sdk"));
        let text = |p: &str| &files.iter().find(|(path, _)| *path == p).unwrap().1;
        assert!(
            text("Cargo.toml")
                .contains("wasmcol-plugin-sdk = { path = \"/opt/wasmcol/plugin-sdk\" }")
        );
        assert!(text("src/lib.rs").contains("export_plugin!(SlowSpans);"));
        assert!(text(".cargo/config.toml").contains("[target.wasm32-wasip2]"));
        assert!(text("README.md").contains("plugin: target/wasm32-wasip2/release/slow_spans.wasm"));
        assert_eq!(toml_escape("a\"b\\c"), "a\\\"b\\\\c");
    }

    #[test]
    fn refuses_an_existing_directory_and_a_missing_sdk() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("taken")).unwrap();
        let args = |name: &str, sdk: Option<PathBuf>| NewArgs {
            name: name.into(),
            dir: dir.path().to_path_buf(),
            sdk,
        };
        let err = new_plugin(&args("taken", None)).unwrap_err();
        assert!(
            err.ends_with("taken already exists; pick another name or --dir, or remove it first"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("taken")).unwrap().count(),
            0
        );

        let err = new_plugin(&args("fresh", Some(dir.path().into()))).unwrap_err();
        assert!(err.starts_with("no plugin SDK at "), "{err}");
        assert!(!dir.path().join("fresh").exists());

        let made = new_plugin(&args("fresh", None)).unwrap();
        let toml = std::fs::read_to_string(made.join("Cargo.toml")).unwrap();
        let sdk = std::fs::canonicalize(default_sdk()).unwrap();
        assert!(
            toml.contains(&format!("path = \"{}\"", sdk.display())),
            "{toml}"
        );
    }
}
