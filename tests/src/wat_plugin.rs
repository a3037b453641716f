//! Processor plugins written in WebAssembly text, for misbehaviour a Rust plugin cannot
//! produce (a second linear memory, `table.grow` on a table of its own). A core module in
//! WAT is embedded with the `plugin` world of `plugin-sdk/wit/0.1.0/plugin.wit` (so these are
//! also the tests of 0.1.0 plugins still running) and encoded into a
//! component, as `wasm32-wasip2` builds are.
//!
//! The core module implements the canonical ABI by hand: it exports `memory`,
//! `cabi_realloc`, and `wasmcol:plugin/processor@0.1.0#init` / `#process`, each taking a
//! pointer and a length and returning a pointer to its result. [`processor`] writes such a
//! module around the few instructions a test cares about.

use anyhow::Context;
use wit_component::{ComponentEncoder, StringEncoding, embed_component_metadata};
use wit_parser::Resolve;

use crate::workspace_root;

/// Encodes the core module `wat` into a plugin component (world `wasmcol:plugin/plugin`) and
/// writes it to a temporary `.wasm` file, deleted when the returned path is dropped.
pub fn component(wat: &str) -> anyhow::Result<tempfile::TempPath> {
    let wit = std::fs::read_to_string(workspace_root().join("plugin-sdk/wit/0.1.0/plugin.wit"))
        .context("plugin-sdk/wit/0.1.0")?;
    component_with_wit(wat, &wit)
}

/// [`component`] against the WIT text `wit` (a `wasmcol:plugin` package of any version, for
/// the tests of versions the host does not run).
pub fn component_with_wit(wat: &str, wit: &str) -> anyhow::Result<tempfile::TempPath> {
    component_of_world(wat, wit, "plugin")
}

/// [`component_with_wit`] for the world `world` of `wit` (`policy` for a policy plugin).
pub fn component_of_world(wat: &str, wit: &str, world: &str) -> anyhow::Result<tempfile::TempPath> {
    let mut module = wat::parse_str(wat).context("the core module's text")?;
    let mut resolve = Resolve::default();
    let package = resolve
        .push_str("plugin.wit", wit)
        .context("the WIT package")?;
    let world = resolve.select_world(&[package], Some(world))?;
    embed_component_metadata(&mut module, &resolve, world, StringEncoding::UTF8)?;
    let bytes = ComponentEncoder::default()
        .validate(true)
        .module(&module)?
        .encode()
        .context("encoding the component")?;
    let file = tempfile::Builder::new()
        .prefix("wat-plugin-")
        .suffix(".wasm")
        .tempfile()?;
    std::fs::write(file.path(), bytes)?;
    Ok(file.into_temp_path())
}

/// A processor plugin's core module. `declarations` are added at module level (memories,
/// tables, globals; the module itself declares none, so one of them must be a memory
/// exported as `memory`). `process` answers `ok(unchanged)` to every batch, but first runs
/// `on_trigger` (instructions leaving nothing on the stack) when the batch holds the bytes
/// `trigger` (a span named so); `on_trigger` may use the locals `$a` and `$b` (`i32`). `init`
/// accepts any configuration.
pub fn processor(declarations: &str, on_trigger: &str) -> String {
    format!(
        r#"(module
  {declarations}
  ;; Bump allocator above a zeroed 1 KiB: bytes 0..16 are the return area, and a zeroed
  ;; return area reads as `ok` (init) and `ok(unchanged)` (process).
  (global $next (mut i32) (i32.const 1024))
  (func (export "cabi_realloc")
        (param $old i32) (param $old_size i32) (param $align i32) (param $size i32)
        (result i32)
    (local $at i32)
    (local.set $at
      (i32.and
        (i32.add (global.get $next) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (global.set $next (i32.add (local.get $at) (local.get $size)))
    (if (i32.gt_u (global.get $next) (i32.shl (memory.size 0) (i32.const 16)))
      (then
        (if (i32.eq
              (memory.grow 0
                (i32.sub
                  (i32.shr_u (i32.add (global.get $next) (i32.const 0xffff)) (i32.const 16))
                  (memory.size 0)))
              (i32.const -1))
          (then unreachable))))
    (local.get $at))
  ;; Whether the `len` bytes at `at` contain "trigger".
  (func $triggered (param $at i32) (param $len i32) (result i32)
    (local $end i32)
    (if (i32.lt_u (local.get $len) (i32.const 7)) (then (return (i32.const 0))))
    (local.set $end (i32.add (local.get $at) (i32.sub (local.get $len) (i32.const 6))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $at) (local.get $end)))
        ;; "trig" and "gger", little-endian
        (if (i32.and
              (i32.eq (i32.load (local.get $at)) (i32.const 0x67697274))
              (i32.eq (i32.load (i32.add (local.get $at) (i32.const 3)))
                      (i32.const 0x72656767)))
          (then (return (i32.const 1))))
        (local.set $at (i32.add (local.get $at) (i32.const 1)))
        (br $next)))
    (i32.const 0))
  (func (export "wasmcol:plugin/processor@0.1.0#init")
        (param $config i32) (param $len i32) (result i32)
    (global.set $next (i32.const 1024))
    (i32.const 0))
  (func (export "wasmcol:plugin/processor@0.1.0#process")
        (param $batch i32) (param $len i32) (result i32)
    (local $a i32) (local $b i32)
    (if (call $triggered (local.get $batch) (local.get $len))
      (then {on_trigger}))
    ;; Nothing allocated is in use once the call returns.
    (global.set $next (i32.const 1024))
    (i32.const 0))
)"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_behaved_processor_encodes() {
        let path = component(&processor(r#"(memory (export "memory") 1)"#, "")).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        // A component, not a core module.
        assert_eq!(
            &bytes[..8],
            &[0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]
        );
    }
}
