//! The limits every plugin instance runs under, and what happens to data when a call fails.

use serde::Deserialize;
use wasmtime::ResourceLimiter;

use crate::config::{ByteSize, Duration};

/// What happens to a batch when the plugin fails on it (trap, timeout, error, bad output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// Pass the batch on unchanged.
    #[default]
    Pass,
    /// Drop the batch (counted as dropped spans).
    Drop,
    /// Refuse the batch with a retryable error (gRPC UNAVAILABLE, HTTP 503, a Kafka offset
    /// left uncommitted): nothing unprocessed leaves the processor and nothing is lost while
    /// the sender retries. The right choice for a plugin whose job is to remove data.
    Refuse,
}

impl OnError {
    /// The option's spelling in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Pass => "pass",
            OnError::Drop => "drop",
            OnError::Refuse => "refuse",
        }
    }
}

/// Resource limits of each plugin instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory budget per instance, in MiB: its linear memory and tables together. A growth
    /// past it traps the call.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// Deadline for one call (one batch). Enforced by epoch interruption.
    #[serde(default = "default_call_timeout")]
    pub call_timeout: Duration,
    /// Largest answer a plugin may return for one batch (edits or a replacement batch).
    #[serde(default = "default_max_output")]
    pub max_output_bytes: ByteSize,
    /// Most edits a plugin may answer with for one batch. A longer list is refused before
    /// any edit is applied (counted as `invalid_output`; the batch is retried in halves, then
    /// handled as `on_error` says).
    #[serde(default = "default_max_edits")]
    pub max_edits: usize,
    /// Linear memory above which an instance is replaced after a call (memory never shrinks
    /// inside an instance). Default: half of `memory_mib`.
    #[serde(default)]
    pub recycle_memory_mib: Option<u64>,
}

fn default_memory_mib() -> u64 {
    128
}
fn default_call_timeout() -> Duration {
    Duration(std::time::Duration::from_millis(500))
}
fn default_max_output() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_max_edits() -> usize {
    100_000
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mib: default_memory_mib(),
            call_timeout: default_call_timeout(),
            max_output_bytes: default_max_output(),
            max_edits: default_max_edits(),
            recycle_memory_mib: None,
        }
    }
}

impl Limits {
    /// The memory cap in bytes.
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mib as usize) << 20
    }

    /// Linear memory past which an instance is recycled, in bytes.
    pub fn recycle_bytes(&self) -> usize {
        (self.recycle_memory_mib.unwrap_or(self.memory_mib / 2) as usize) << 20
    }
}

/// Linear memories one instance may have. Plugins built for `wasm32-wasip2` have one; a
/// second would be a second budget, so instantiating one fails.
pub const MAX_MEMORIES: usize = 1;
/// Tables one instance may have: the module's function table and the component's shim table,
/// with room for one more.
pub const MAX_TABLES: usize = 4;
/// Elements one table may hold. Compilers size a module's function table once (a plugin of
/// ~2 MB has ~700 entries); growing one towards 2^28 elements is refused here, long before it
/// reaches the memory budget.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 16;
/// Core instances one plugin instance may have (a component has three or four).
pub const MAX_INSTANCES: usize = 16;
/// Host bytes one table element costs (a function reference), counted against the budget.
pub const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// The instance's one memory budget: every linear memory and every table growth is counted
/// against `limits.memory_mib`, so neither a second memory nor `table.grow` goes around it.
/// It also keeps what the host needs to know: the linear memory in use (to recycle instances
/// past a high-water mark) and whether the budget was hit (to name the failure).
pub struct Limiter {
    budget: usize,
    /// Bytes of linear memory, summed over the instance's memories.
    pub memory_bytes: usize,
    /// Host bytes held by the instance's tables.
    pub table_bytes: usize,
    /// Set when a growth was refused.
    pub hit_limit: bool,
}

impl Limiter {
    /// A limiter allowing `budget` bytes of linear memory and tables together.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            memory_bytes: 0,
            table_bytes: 0,
            hit_limit: false,
        }
    }

    /// Bytes counted against the budget.
    pub fn used(&self) -> usize {
        self.memory_bytes + self.table_bytes
    }

    fn refuse(&mut self, what: &str) -> wasmtime::Result<bool> {
        self.hit_limit = true;
        // A refused growth traps instead of returning -1: a plugin past its budget stops.
        Err(wasmtime::Error::msg(format!(
            "{what} refused: the instance would pass its memory budget ({} bytes)",
            self.budget
        )))
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            // Past the memory's own declared maximum: `memory.grow` returns -1, as in any
            // WebAssembly runtime; nothing is allocated.
            return Ok(false);
        }
        let grow = desired.saturating_sub(current);
        if self.used().saturating_add(grow) > self.budget {
            return self.refuse("memory growth");
        }
        self.memory_bytes += grow;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|m| desired > m) {
            // Past the table's own declared maximum: `table.grow` returns -1.
            return Ok(false);
        }
        let grow = desired
            .saturating_sub(current)
            .saturating_mul(TABLE_ELEMENT_BYTES);
        if desired > MAX_TABLE_ELEMENTS || self.used().saturating_add(grow) > self.budget {
            return self.refuse("table growth");
        }
        self.table_bytes += grow;
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use wasm_encoder::{
        CodeSection, Component, ExportKind, ExportSection, Function, FunctionSection,
        InstanceSection, Instruction, MemorySection, MemoryType, Module, ModuleSection, RefType,
        StartSection, TableSection, TableType, TypeSection,
    };
    use wasmtime::component::Component as Compiled;

    use super::super::engine;
    use super::super::host::Services;
    use super::super::instance::{CallError, classify, new_store};
    use super::*;
    use crate::telemetry::Metrics;

    /// A component whose one core module is `module`, instantiated at start-up.
    fn component(module: &Module) -> Vec<u8> {
        let mut c = Component::new();
        c.section(&ModuleSection(module));
        let mut instances = InstanceSection::new();
        instances.instantiate(0, Vec::<(&str, wasm_encoder::ModuleArg)>::new());
        c.section(&instances);
        c.finish()
    }

    fn memory(pages: u64) -> MemoryType {
        MemoryType {
            minimum: pages,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        }
    }

    /// Instantiates `bytes` with the limits of a plugin instance of `memory_mib`.
    fn instantiate(bytes: &[u8], memory_mib: u64) -> Result<(), CallError> {
        let engine = engine::get().unwrap();
        let compiled = Compiled::new(&engine.engine, bytes).unwrap();
        let limits = Limits {
            memory_mib,
            ..Limits::default()
        };
        let services = Arc::new(Services::new(
            "wasm/limits".into(),
            Arc::new(Metrics::new()),
            Default::default(),
        ));
        let (mut store, _) = new_store(services, &limits)?;
        engine
            .linker
            .instantiate(&mut store, &compiled)
            .map(drop)
            .map_err(|e| classify(&store, e))
    }

    #[test]
    fn one_memory_within_the_budget_instantiates() {
        let mut m = Module::new();
        let mut mems = MemorySection::new();
        mems.memory(memory(16)); // 1 MiB
        m.section(&mems);
        instantiate(&component(&m), 8).unwrap();
    }

    #[test]
    fn a_second_memory_is_refused() {
        let mut m = Module::new();
        let mut mems = MemorySection::new();
        mems.memory(memory(1)).memory(memory(1));
        m.section(&mems);
        let err = instantiate(&component(&m), 8).unwrap_err();
        assert!(err.to_string().contains("memory count"), "{err}");
    }

    #[test]
    fn a_memory_past_the_budget_is_a_memory_limit() {
        let mut m = Module::new();
        let mut mems = MemorySection::new();
        mems.memory(memory(9 * 16)); // 9 MiB
        m.section(&mems);
        let err = instantiate(&component(&m), 8).unwrap_err();
        assert!(matches!(err, CallError::MemoryLimit), "{err}");
    }

    /// A module with a memory of `pages` and a table (of at most `maximum` elements), whose
    /// start function grows the table by `grow` elements.
    fn growing_table(pages: u64, grow: i32, maximum: Option<u64>) -> Vec<u8> {
        let mut m = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], []);
        m.section(&types);
        let mut funcs = FunctionSection::new();
        funcs.function(0);
        m.section(&funcs);
        let mut tables = TableSection::new();
        tables.table(TableType {
            element_type: RefType::FUNCREF,
            table64: false,
            minimum: 1,
            maximum,
            shared: false,
        });
        m.section(&tables);
        let mut mems = MemorySection::new();
        mems.memory(memory(pages));
        m.section(&mems);
        let mut exports = ExportSection::new();
        exports.export("grow", ExportKind::Func, 0);
        m.section(&exports);
        m.section(&StartSection { function_index: 0 });
        let mut code = CodeSection::new();
        let mut f = Function::new([]);
        f.instruction(&Instruction::RefNull(wasm_encoder::HeapType::FUNC))
            .instruction(&Instruction::I32Const(grow))
            .instruction(&Instruction::TableGrow(0))
            .instruction(&Instruction::Drop)
            .instruction(&Instruction::End);
        code.function(&f);
        m.section(&code);
        component(&m)
    }

    #[test]
    fn table_grow_to_2_pow_28_is_refused_as_a_memory_limit() {
        let err = instantiate(&growing_table(1, 1 << 28, None), 128).unwrap_err();
        assert!(matches!(err, CallError::MemoryLimit), "{err}");
    }

    #[test]
    fn table_growth_counts_against_the_memory_budget() {
        // 1,000 elements fit beside 1 MiB of linear memory in a 2 MiB budget...
        instantiate(&growing_table(16, 1000, None), 2).unwrap();
        // ...but not beside a memory that already fills it.
        let err = instantiate(&growing_table(32, 1000, None), 2).unwrap_err();
        assert!(matches!(err, CallError::MemoryLimit), "{err}");
    }

    #[test]
    fn growth_past_a_declared_maximum_fails_as_in_any_runtime() {
        // `table.grow` past the table's own maximum returns -1 (the start function drops it):
        // the plugin carries on, nothing was allocated or counted.
        instantiate(&growing_table(1, 100, Some(10)), 8).unwrap();
    }
}
