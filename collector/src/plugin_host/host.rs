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
use crate::telemetry::{LogLimiter, Metrics};

/// Longest log line a plugin may write, escaped; the rest is cut.
pub const MAX_LOG_BYTES: usize = 4096;
/// Lines one processor's plugin may log per [`LOG_INTERVAL`]; the rest are counted, and the
/// count logged once the window is over.
pub const LOG_BURST: u32 = 20;
/// The window of [`LOG_BURST`].
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);
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
    log_limit: LogLimiter,
    log_suppressed: Counter,
}

impl Services {
    /// Services for processor `id`.
    pub fn new(id: String, metrics: Arc<Metrics>, tables: Arc<Tables>) -> Self {
        Self {
            log_limit: LogLimiter::with_limits(
                tracing::Level::WARN,
                "plugin log lines suppressed",
                LOG_BURST,
                LOG_INTERVAL,
            ),
            log_suppressed: metrics.plugin_log_suppressed(&id),
            id,
            metrics,
            tables,
            counters: Mutex::new(HashMap::new()),
        }
    }

    /// Writes one line of the plugin's log: rate limited per processor (the lines left out
    /// are counted, and reported with the next line written or when the processor stops),
    /// control characters escaped so a line stays one line, and cut at [`MAX_LOG_BYTES`].
    fn log(&self, level: host::Level, message: &str) {
        let enabled = match level {
            host::Level::Trace => tracing::enabled!(tracing::Level::TRACE),
            host::Level::Debug => tracing::enabled!(tracing::Level::DEBUG),
            host::Level::Info => tracing::enabled!(tracing::Level::INFO),
            host::Level::Warn => tracing::enabled!(tracing::Level::WARN),
            host::Level::Error => tracing::enabled!(tracing::Level::ERROR),
        };
        if !enabled {
            // Lines nobody reads cost nothing and use none of the plugin's allowance.
            return;
        }
        let verdict = self.log_limit.decide(Instant::now());
        if verdict.report > 0 {
            self.report_suppressed(verdict.report);
        }
        if !verdict.log {
            self.log_suppressed.inc();
            return;
        }
        let message = escape_log_line(message, MAX_LOG_BYTES);
        let id = &self.id;
        match level {
            host::Level::Trace => tracing::trace!(processor = %id, "plugin: {message}"),
            host::Level::Debug => tracing::debug!(processor = %id, "plugin: {message}"),
            host::Level::Info => tracing::info!(processor = %id, "plugin: {message}"),
            host::Level::Warn => tracing::warn!(processor = %id, "plugin: {message}"),
            host::Level::Error => tracing::error!(processor = %id, "plugin: {message}"),
        }
    }

    fn report_suppressed(&self, n: u64) {
        tracing::warn!(processor = %self.id, suppressed = n,
            "plugin log lines suppressed ({n} similar messages suppressed)");
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

impl Drop for Services {
    fn drop(&mut self) {
        // The last window's count, once the processor is gone (at shutdown or a reload).
        let n = self.log_limit.take_ended(Instant::now() + LOG_INTERVAL);
        if n > 0 {
            self.report_suppressed(n);
        }
    }
}

/// `message` as one log line of at most `max` bytes: control characters (line breaks, escape
/// sequences, NUL) and the characters that reorder text (bidirectional overrides) are written
/// as `\n`, `\u{1b}` and so on, a backslash as `\\`, so what a plugin logs cannot forge or
/// split lines; past `max`, the rest is cut and the cut bytes counted.
pub fn escape_log_line(message: &str, max: usize) -> String {
    let mut out = String::with_capacity(message.len().min(max) + 32);
    for (i, c) in message.char_indices() {
        let start = out.len();
        let reorders = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() || reorders {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        if out.len() > max {
            out.truncate(start);
            out.push_str(&format!("... ({} bytes cut)", message.len() - i));
            break;
        }
    }
    out
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) {
        self.services.log(level, &message);
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

/// The `host` interface of an older `wasmcol:plugin` version (`v0_1`, `v0_2`): the same
/// functions as the current one's.
macro_rules! older_host {
    ($v:ident) => {
        impl super::bindings::$v::wasmcol::plugin::types::Host for HostState {}

        impl super::bindings::$v::wasmcol::plugin::host::Host for HostState {
            fn log(
                &mut self,
                level: super::bindings::$v::wasmcol::plugin::host::Level,
                message: String,
            ) {
                use super::bindings::$v::wasmcol::plugin::host::Level as L;
                let level = match level {
                    L::Trace => host::Level::Trace,
                    L::Debug => host::Level::Debug,
                    L::Info => host::Level::Info,
                    L::Warn => host::Level::Warn,
                    L::Error => host::Level::Error,
                };
                host::Host::log(self, level, message);
            }

            fn add_counter(&mut self, name: String, delta: u64) {
                host::Host::add_counter(self, name, delta);
            }

            fn now_unix_nano(&mut self) -> u64 {
                host::Host::now_unix_nano(self)
            }

            fn lookup(&mut self, table: String, key: String) -> Option<Vec<(String, String)>> {
                host::Host::lookup(self, table, key)
            }
        }
    };
}

older_host!(v0_1);
older_host!(v0_2);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_line_stays_one_line() {
        let line = escape_log_line("a\nfake=\"line\"\r\n\u{1b}[31mred\u{0}\\n\u{202e}x", 4096);
        assert_eq!(
            line,
            "a\\nfake=\"line\"\\r\\n\\u{1b}[31mred\\u{0}\\\\n\\u{202e}x"
        );
        assert!(!line.chars().any(char::is_control));
    }

    #[test]
    fn a_long_line_is_cut_and_says_how_much() {
        let line = escape_log_line(&"é".repeat(10_000), 4096);
        assert!(line.len() <= 4096 + 32, "{}", line.len());
        assert!(line.ends_with("... (15904 bytes cut)"), "{}", &line[4000..]);
        // Escaping counts against the cap, not the raw length.
        let line = escape_log_line(&"\n".repeat(4096), 4096);
        assert!(
            line.starts_with("\\n\\n") && line.ends_with("(2048 bytes cut)"),
            "{line}"
        );
    }

    #[test]
    fn each_processor_has_its_own_log_allowance_and_counts_what_it_leaves_out() {
        let metrics = Arc::new(Metrics::new());
        let flood = Services::new("wasm/flood".into(), metrics.clone(), Default::default());
        let quiet = Services::new("wasm/quiet".into(), metrics.clone(), Default::default());
        let subscriber = tracing_subscriber::fmt()
            .with_writer(std::io::sink)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..1000 {
                flood.log(host::Level::Error, "line\nforged");
            }
            quiet.log(host::Level::Error, "still heard");
            // Lines nobody would see use none of the allowance.
            for _ in 0..1000 {
                quiet.log(host::Level::Trace, "unseen");
            }
        });
        assert_eq!(
            metrics.plugin_log_suppressed("wasm/flood").get(),
            1000 - u64::from(LOG_BURST)
        );
        assert_eq!(metrics.plugin_log_suppressed("wasm/quiet").get(), 0);
    }
}
