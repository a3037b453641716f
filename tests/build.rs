//! Builds the test plugins (`tests/plugins/*`) to wasm32-wasip2; each test finds its `.wasm`
//! through `env!("WASMCOL_TEST_PLUGIN_<NAME>")`.

fn main() {
    let manifest =
        std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest.parent().expect("tests/ is inside the workspace");
    wasmcol_plugin_build::build_and_export(
        workspace,
        &[
            "tests/plugins/hostile",
            "tests/plugins/tagger",
            "tests/plugins/policy-hostile",
            "tests/plugins/analyser-hostile",
            "tests/plugins/slow-root",
        ],
    );
}
