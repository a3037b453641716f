//! Host bindings generated from the plugin SDK's WIT package, the one definition of the ABI.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit",
    world: "plugin",
});

/// The tail-sampling policy world. It imports the same `host` interface as processors, so the
/// bindings (and the one linker) are shared.
pub mod policy {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit",
        world: "policy",
        with: {
            "wasmcol:plugin/host": crate::plugin_host::bindings::wasmcol::plugin::host,
        },
    });
}
