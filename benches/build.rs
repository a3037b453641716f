//! Builds the test plugins (`tests/plugins/*`) to wasm32-wasip2 for the plugin benchmarks,
//! which find them through `env!("WASMCOL_TEST_PLUGIN_<NAME>")`.

fn main() {
    let manifest =
        std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest.parent().expect("benches/ is inside the workspace");
    wasmcol_plugin_build::build_and_export(
        workspace,
        &["tests/plugins/hostile", "tests/plugins/tagger"],
    );
}
