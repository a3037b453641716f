//! Host bindings generated from the plugin SDK's WIT package, the one definition of the ABI.
#![allow(missing_docs)]

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit",
    world: "plugin",
});
