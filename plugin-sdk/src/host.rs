//! Services the collector provides: logging, counters, a clock and lookup tables. In a native
//! build (plugin unit tests) they are backed by in-process state that
//! [`crate::testing::Harness`] sets up and inspects.

/// Log levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

/// A row of a lookup table: column name → value.
pub type Row = Vec<(String, String)>;

/// Writes `message` to the collector's log, tagged with the processor id.
pub fn log(level: Level, message: &str) {
    imp::log(level, message)
}

/// Logs at info level.
pub fn info(message: &str) {
    log(Level::Info, message)
}

/// Logs at warn level.
pub fn warn(message: &str) {
    log(Level::Warn, message)
}

/// Adds `delta` to the counter `name` (on `/metrics` as
/// `wasmcol_plugin_counter_total{processor,name}`).
pub fn add_counter(name: &str, delta: u64) {
    if delta > 0 {
        imp::add_counter(name, delta)
    }
}

/// Wall-clock time in nanoseconds since the Unix epoch.
pub fn now_unix_nano() -> u64 {
    imp::now_unix_nano()
}

/// Looks `key` up in table `table` (see the processor's `tables:`, and the built-in
/// `environment` table).
pub fn lookup(table: &str, key: &str) -> Option<Row> {
    imp::lookup(table, key)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{Level, Row};
    use crate::guest::wasmcol::plugin::host;

    pub fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => host::Level::Trace,
            Level::Debug => host::Level::Debug,
            Level::Info => host::Level::Info,
            Level::Warn => host::Level::Warn,
            Level::Error => host::Level::Error,
        };
        host::log(level, message)
    }

    pub fn add_counter(name: &str, delta: u64) {
        host::add_counter(name, delta)
    }

    pub fn now_unix_nano() -> u64 {
        host::now_unix_nano()
    }

    pub fn lookup(table: &str, key: &str) -> Option<Row> {
        host::lookup(table, key)
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod imp {
    use std::cell::RefCell;
    use std::collections::{BTreeMap, HashMap};

    use super::{Level, Row};

    /// What a native run records, and the tables it serves.
    #[derive(Default)]
    pub struct NativeHost {
        pub logs: Vec<(Level, String)>,
        pub counters: BTreeMap<String, u64>,
        pub tables: HashMap<String, HashMap<String, Row>>,
    }

    thread_local! {
        pub static HOST: RefCell<NativeHost> = RefCell::new(NativeHost::default());
    }

    pub fn log(level: Level, message: &str) {
        HOST.with_borrow_mut(|h| h.logs.push((level, message.to_string())))
    }

    pub fn add_counter(name: &str, delta: u64) {
        HOST.with_borrow_mut(|h| *h.counters.entry(name.to_string()).or_default() += delta)
    }

    pub fn now_unix_nano() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    }

    pub fn lookup(table: &str, key: &str) -> Option<Row> {
        HOST.with_borrow(|h| h.tables.get(table)?.get(key).cloned())
    }
}
