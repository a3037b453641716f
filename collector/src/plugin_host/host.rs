//! What a plugin instance's store holds, and the host functions plugins may call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use wasmtime::component::{HasData, Resource};
use wasmtime_wasi::p2::bindings::sync::io::poll as wasi_poll;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::wasmcol::plugin::{host, types};
use super::limits::Limiter;
use super::tables::Tables;
use crate::telemetry::Metrics;

/// Longest log line a plugin may write; the rest is cut.
const MAX_LOG_BYTES: usize = 4096;
/// Most distinct counter names one processor's plugin may create.
const MAX_COUNTERS: usize = 64;
/// How much of a plugin's stderr (panic messages) is kept for the log.
const STDERR_CAPACITY: usize = 8192;
/// Most host resources (streams, pollables, clocks' subscriptions) one instance may hold at
/// once: each costs host memory outside the instance's budget, and a plugin needs a handful.
const MAX_HOST_RESOURCES: usize = 1024;

/// Shared by every instance of one `wasm` processor.
pub struct Services {
    /// The processor id, tagging logs and metrics.
    pub id: String,
    /// The process's metrics.
    pub metrics: Arc<Metrics>,
    /// Lookup tables.
    pub tables: Arc<Tables>,
    counters: Mutex<HashMap<String, Counter>>,
}

impl Services {
    /// Services for processor `id`.
    pub fn new(id: String, metrics: Arc<Metrics>, tables: Arc<Tables>) -> Self {
        Self {
            id,
            metrics,
            tables,
            counters: Mutex::new(HashMap::new()),
        }
    }

    fn add_counter(&self, name: &str, delta: u64) {
        let mut counters = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = counters.get(name) {
            c.inc_by(delta);
            return;
        }
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid || counters.len() >= MAX_COUNTERS {
            // Guest-chosen label values: refuse rather than let a plugin blow up cardinality.
            tracing::debug!(processor = %self.id, counter = %name.escape_debug(), "plugin counter refused");
            return;
        }
        let c = self.metrics.plugin_counter(&self.id, name);
        c.inc_by(delta);
        counters.insert(name.to_string(), c);
    }
}

/// The store data of one plugin instance.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory accounting and the cap.
    pub limiter: Limiter,
    services: Arc<Services>,
    stderr: MemoryOutputPipe,
    /// When the call in progress must end; blocking WASI waits give up there.
    pub call_deadline: Instant,
}

impl HostState {
    /// Fresh state for one instance: WASI with no files, network, environment or arguments.
    pub fn new(services: Arc<Services>, memory_budget: usize) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_HOST_RESOURCES);
        Self {
            wasi,
            table,
            limiter: Limiter::new(memory_budget),
            services,
            stderr,
            call_deadline: Instant::now(),
        }
    }

    /// What the plugin wrote to stderr (a panic message, typically), trimmed.
    pub fn stderr(&self) -> String {
        let bytes = self.stderr.contents();
        // One log line: the panic message's own line breaks become "; ".
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) {
        let mut message = message;
        if message.len() > MAX_LOG_BYTES {
            let mut cut = MAX_LOG_BYTES;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push_str("...");
        }
        let id = &self.services.id;
        match level {
            host::Level::Trace => tracing::trace!(processor = %id, "plugin: {message}"),
            host::Level::Debug => tracing::debug!(processor = %id, "plugin: {message}"),
            host::Level::Info => {
                crate::telemetry::log_limited!(info, "plugin log"; processor = %id, "plugin: {message}")
            }
            host::Level::Warn => {
                crate::telemetry::log_limited!(warn, "plugin log"; processor = %id, "plugin: {message}")
            }
            host::Level::Error => {
                crate::telemetry::log_limited!(error, "plugin log"; processor = %id, "plugin: {message}")
            }
        }
    }

    fn add_counter(&mut self, name: String, delta: u64) {
        self.services.add_counter(&name, delta);
    }

    fn now_unix_nano(&mut self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }

    fn lookup(&mut self, table: String, key: String) -> Option<Vec<(String, String)>> {
        self.services.tables.lookup(&table, &key)
    }
}

/// `wasi:io/poll` with every wait bounded by the call's deadline. WASI's own `poll` and
/// `pollable.block` wait in host code, where the epoch deadline cannot reach (a guest's
/// `std::thread::sleep(20 s)` would hold its worker for 20 s); these check readiness until
/// the deadline and then stop the call as a timeout.
pub struct BoundedPoll;

impl HasData for BoundedPoll {
    type Data<'a> = BoundedPollView<'a>;
}

/// What [`BoundedPoll`] works on: the instance's resource table and the call's deadline.
pub struct BoundedPollView<'a> {
    table: &'a mut ResourceTable,
    deadline: Instant,
}

impl<'a> BoundedPollView<'a> {
    /// The view of `state`.
    pub fn of(state: &'a mut HostState) -> Self {
        Self {
            table: &mut state.table,
            deadline: state.call_deadline,
        }
    }

    fn is_ready(&mut self, rep: u32) -> wasmtime::Result<bool> {
        wasi_poll::HostPollable::ready(&mut *self.table, Resource::new_borrow(rep))
    }

    /// Waits (checking every millisecond) until `ready` finds something, or the deadline.
    fn wait<T>(
        &mut self,
        mut ready: impl FnMut(&mut Self) -> wasmtime::Result<Option<T>>,
    ) -> wasmtime::Result<T> {
        loop {
            if let Some(done) = ready(self)? {
                return Ok(done);
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(wasmtime::Trap::Interrupt.into());
            }
            std::thread::sleep(left.min(Duration::from_millis(1)));
        }
    }
}

impl wasi_poll::Host for BoundedPollView<'_> {
    fn poll(
        &mut self,
        pollables: Vec<Resource<wasi_poll::Pollable>>,
    ) -> wasmtime::Result<Vec<u32>> {
        if pollables.is_empty() {
            return Err(wasmtime::Error::msg("empty poll list"));
        }
        let reps: Vec<u32> = pollables.iter().map(Resource::rep).collect();
        self.wait(|view| {
            let mut ready = Vec::new();
            for (i, rep) in reps.iter().enumerate() {
                if view.is_ready(*rep)? {
                    ready.push(i as u32);
                }
            }
            Ok((!ready.is_empty()).then_some(ready))
        })
    }
}

impl wasi_poll::HostPollable for BoundedPollView<'_> {
    fn ready(&mut self, pollable: Resource<wasi_poll::Pollable>) -> wasmtime::Result<bool> {
        wasi_poll::HostPollable::ready(&mut *self.table, pollable)
    }

    fn block(&mut self, pollable: Resource<wasi_poll::Pollable>) -> wasmtime::Result<()> {
        let rep = pollable.rep();
        self.wait(|view| Ok(view.is_ready(rep)?.then_some(())))
    }

    fn drop(&mut self, pollable: Resource<wasi_poll::Pollable>) -> wasmtime::Result<()> {
        wasi_poll::HostPollable::drop(&mut *self.table, pollable)
    }
}
