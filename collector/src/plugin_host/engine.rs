//! The one wasmtime engine of the process: compilation settings, the on-disk cache of
//! compiled plugins, the epoch clock that enforces call deadlines, and the linker holding
//! everything a plugin may import.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Cache, CacheConfig, Config, Engine, OptLevel, ProfilingStrategy};

use super::bindings::Plugin as Bindings;
use super::host::{BoundedPoll, BoundedPollView, HostState};

/// How often the epoch advances. A call's deadline is a whole number of ticks plus one, so a
/// runaway plugin is stopped between its `call_timeout` and one tick after it.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The engine and the linker every plugin instance is made with.
pub struct PluginEngine {
    /// The engine (compilation settings, cache, epoch).
    pub engine: Engine,
    /// WASI (without files, network or environment) and the `wasmcol:plugin/host` imports.
    pub linker: Linker<HostState>,
}

static ENGINE: OnceLock<Result<PluginEngine, String>> = OnceLock::new();

/// The process's plugin engine, created on first use.
pub fn get() -> Result<&'static PluginEngine, String> {
    ENGINE.get_or_init(create).as_ref().map_err(Clone::clone)
}

fn create() -> Result<PluginEngine, String> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.cranelift_opt_level(OptLevel::Speed);
    if let Some(strategy) = profiler()? {
        config.profiler(strategy);
    }
    let cache_dir = cache_dir();
    if let Some(dir) = &cache_dir {
        let mut cc = CacheConfig::new();
        cc.with_directory(dir);
        match Cache::new(cc) {
            Ok(cache) => {
                config.cache(Some(cache));
            }
            Err(e) => {
                tracing::warn!(dir = %dir.display(), "plugin cache disabled: {e:#}");
            }
        }
    }
    let engine =
        Engine::new(&config).map_err(|e| format!("cannot create the plugin engine: {e:#}"))?;

    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("wasmcol-epoch".into())
        .spawn(move || {
            // The epoch follows the clock, not the number of wake-ups: on a busy machine this
            // thread wakes late, and the ticks it missed are made up at once, so a deadline
            // does not stretch with the load.
            let start = std::time::Instant::now();
            let mut ticks = 0u128;
            while let Some(engine) = ticker.upgrade() {
                let due = start.elapsed().as_nanos() / EPOCH_TICK.as_nanos();
                while ticks < due {
                    engine.increment_epoch();
                    ticks += 1;
                }
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map_err(|e| format!("cannot start the plugin clock: {e}"))?;

    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
        .map_err(|e| format!("cannot link WASI: {e:#}"))?;
    // Blocking waits (sleep, poll, clock subscriptions) end at the call's deadline.
    linker.allow_shadowing(true);
    wasmtime_wasi::p2::bindings::sync::io::poll::add_to_linker::<HostState, BoundedPoll>(
        &mut linker,
        |s| BoundedPollView::of(s),
    )
    .map_err(|e| format!("cannot link the bounded WASI poll: {e:#}"))?;
    linker.allow_shadowing(false);
    Bindings::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
        .map_err(|e| format!("cannot link the host interface: {e:#}"))?;
    match &cache_dir {
        Some(dir) => tracing::debug!(dir = %dir.display(), "compiled plugins are cached"),
        None => tracing::debug!("the plugin cache is off"),
    }
    Ok(PluginEngine { engine, linker })
}

/// `WASMCOL_PLUGIN_CACHE` (a directory, or `off`), else `$XDG_CACHE_HOME/wasmcol/plugins`,
/// else `~/.cache/wasmcol/plugins`.
fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("WASMCOL_PLUGIN_CACHE") {
        Some(v) if v == "off" => return None,
        Some(v) if !v.is_empty() => return Some(PathBuf::from(v)),
        _ => {}
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("wasmcol").join("plugins"))
}

/// `WASMCOL_PLUGIN_PROFILER=perfmap` writes `/tmp/perf-<pid>.map`, so `perf` names plugin
/// functions (as wasmtime's `--profile=perfmap` does); unset or empty, nothing is written.
fn profiler() -> Result<Option<ProfilingStrategy>, String> {
    let Some(v) = std::env::var_os("WASMCOL_PLUGIN_PROFILER").filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    match v.to_str() {
        Some("perfmap") => Ok(Some(ProfilingStrategy::PerfMap)),
        _ => Err(format!(
            "WASMCOL_PLUGIN_PROFILER: {v:?} is not a profiler (the one supported is `perfmap`)"
        )),
    }
}
