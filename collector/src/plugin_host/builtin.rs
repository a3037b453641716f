//! Plugins shipped inside the binary, addressed as `builtin:NAME`. The build script compiles
//! every crate under `plugins/` to wasm32-wasip2 and embeds the result here.

include!(concat!(env!("OUT_DIR"), "/builtin_plugins.rs"));

/// The component bytes of built-in plugin `name`.
pub fn get(name: &str) -> Option<&'static [u8]> {
    BUILTIN
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, b)| *b)
}

/// Names of the built-in plugins.
pub fn names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _, _)| *n).collect()
}

/// (name, description) of each built-in plugin.
pub fn describe() -> Vec<(&'static str, &'static str)> {
    BUILTIN.iter().map(|(n, d, _)| (*n, *d)).collect()
}
