//! Host bindings generated from the plugin SDK's WIT packages, the one definition of the ABI:
//! `wasmcol:plugin@0.3.0` (`plugin-sdk/wit`), and the `plugin` worlds of
//! `wasmcol:plugin@0.2.0` (`plugin-sdk/wit/0.2.0`) and `@0.1.0` (`plugin-sdk/wit/0.1.0`) so
//! that processor plugins built for them still run (0.2.0 on traces and logs: it has no
//! metrics; 0.1.0 on traces: it has no logs either).
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

/// The trace analyser world. It imports the same `host` interface as processors, and its
/// findings' attribute values are the processors' `value`s, so both bindings are shared.
pub mod analyser {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit",
        world: "analyser",
        with: {
            "wasmcol:plugin/host": crate::plugin_host::bindings::wasmcol::plugin::host,
            "wasmcol:plugin/types": crate::plugin_host::bindings::wasmcol::plugin::types,
        },
    });
}

/// The processor world of `wasmcol:plugin@0.1.0`. Its `host` interface is the same as
/// 0.2.0's, and the host implements both with the same functions.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit/0.1.0",
        world: "plugin",
    });
}

/// The processor world of `wasmcol:plugin@0.2.0`. Its `host` interface is the same as
/// 0.3.0's, and the host implements both with the same functions.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../plugin-sdk/wit/0.2.0",
        world: "plugin",
    });

    /// The tail-sampling policy world of 0.2.0 (its `sampler` interface is 0.3.0's).
    pub mod policy {
        wasmtime::component::bindgen!({
            path: "../plugin-sdk/wit/0.2.0",
            world: "policy",
            with: {
                "wasmcol:plugin/host": crate::plugin_host::bindings::v0_2::wasmcol::plugin::host,
            },
        });
    }
}

/// The `wasmcol:plugin` package version a component was built against, from the names of
/// what it imports and exports (`wasmcol:plugin/host@0.1.0`, ...); `None` when it names none.
pub fn package_version(
    component: &wasmtime::component::Component,
    engine: &wasmtime::Engine,
) -> Option<String> {
    let ty = component.component_type();
    let names: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .chain(ty.exports(engine).map(|(name, _)| name.to_string()))
        .collect();
    names.iter().find_map(|name| {
        name.strip_prefix("wasmcol:plugin/")
            .and_then(|rest| rest.split_once('@'))
            .map(|(_, version)| version.to_string())
    })
}

/// The version this host's processor and policy bindings are generated from.
pub const CURRENT_VERSION: &str = "0.3.0";
/// Older processor versions the host still runs: 0.2.0 (traces and logs)...
pub const V0_2_VERSION: &str = "0.2.0";
/// ... and 0.1.0 (traces).
pub const V0_1_VERSION: &str = "0.1.0";
