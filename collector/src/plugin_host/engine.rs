//! The one wasmtime engine of the process: compilation settings, the on-disk cache of
//! compiled plugins, the epoch clock that enforces call deadlines, and the linker holding
//! everything a plugin may import.

use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
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
    let cache_dir = cache_dir().filter(|dir| match trusted(dir) {
        Ok(()) => true,
        Err(why) => {
            // Whoever can write the cache runs native code outside the sandbox: compile
            // every plugin afresh instead.
            tracing::warn!(dir = %dir.display(), "plugin cache not used: {why}");
            false
        }
    });
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
    // Processor plugins built for wasmcol:plugin@0.1.0 import host@0.1.0.
    super::bindings::v0_1::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(
        &mut linker,
        |s| s,
    )
    .map_err(|e| format!("cannot link the 0.1.0 host interface: {e:#}"))?;
    // And those built for wasmcol:plugin@0.2.0 import host@0.2.0.
    super::bindings::v0_2::Plugin::add_to_linker::<HostState, HasSelf<HostState>>(
        &mut linker,
        |s| s,
    )
    .map_err(|e| format!("cannot link the 0.2.0 host interface: {e:#}"))?;
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

/// Most entries of the cache looked at before it is trusted.
const MAX_CACHE_ENTRIES: usize = 100_000;

/// Whether the compiled code in `dir` can be trusted: the cache holds native code that runs
/// outside the sandbox, so nobody but this user (and root) may be able to write it. `dir` is
/// made private (0700) when missing; it must then belong to this user and not be writable by
/// its group or others, every directory above it must belong to this user or root and be
/// writable by nobody else (or be sticky, like `/tmp`), and every entry in it must belong to
/// this user and be writable by nobody else.
pub fn trusted(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("cannot create it: {e}"))?;
    }
    let me = rustix::process::geteuid().as_raw();
    let real = dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve it: {e}"))?;
    let meta = |p: &Path| {
        std::fs::symlink_metadata(p).map_err(|e| format!("cannot inspect {}: {e}", p.display()))
    };
    let owned = |p: &Path, m: &std::fs::Metadata| {
        if m.uid() != me {
            return Err(format!(
                "{} belongs to user {}, not to this user ({me})",
                p.display(),
                m.uid()
            ));
        }
        if m.mode() & 0o022 != 0 {
            return Err(format!(
                "{} is writable by its group or others (mode {:o}); `chmod go-w` it",
                p.display(),
                m.mode() & 0o7777
            ));
        }
        Ok(())
    };
    let top = meta(&real)?;
    if !top.is_dir() {
        return Err(format!("{} is not a directory", real.display()));
    }
    owned(&real, &top)?;
    for above in real.ancestors().skip(1) {
        let m = meta(above)?;
        let by_others = m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0;
        if (m.uid() != me && m.uid() != 0) || by_others {
            return Err(format!(
                "{} (above the cache) can be changed by other users (owner {}, mode {:o})",
                above.display(),
                m.uid(),
                m.mode() & 0o7777
            ));
        }
    }
    let mut todo = vec![real];
    let mut seen = 0usize;
    while let Some(d) = todo.pop() {
        let entries =
            std::fs::read_dir(&d).map_err(|e| format!("cannot read {}: {e}", d.display()))?;
        for entry in entries {
            let path = entry
                .map_err(|e| format!("cannot read {}: {e}", d.display()))?
                .path();
            seen += 1;
            if seen > MAX_CACHE_ENTRIES {
                return Err(format!(
                    "it holds more than {MAX_CACHE_ENTRIES} entries; empty it"
                ));
            }
            let m = meta(&path)?;
            if m.file_type().is_symlink() {
                return Err(format!("{} is a symbolic link", path.display()));
            }
            owned(&path, &m)?;
            if m.is_dir() {
                todo.push(path);
            }
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_new_cache_is_private_and_trusted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wasmcol").join("plugins");
        trusted(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::write(dir.join("artifact"), b"code").unwrap();
        trusted(&dir).unwrap();
    }

    #[test]
    fn a_cache_others_can_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache");
        trusted(&dir).unwrap();
        chmod(&dir, 0o777);
        let err = trusted(&dir).unwrap_err();
        assert!(err.contains("writable by its group or others"), "{err}");

        // A private directory with one entry others can write.
        chmod(&dir, 0o700);
        let sub = dir.join("modules");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("artifact"), b"code").unwrap();
        chmod(&sub.join("artifact"), 0o666);
        let err = trusted(&dir).unwrap_err();
        assert!(err.contains("artifact"), "{err}");
        chmod(&sub.join("artifact"), 0o600);
        trusted(&dir).unwrap();

        // A symbolic link in the cache.
        std::os::unix::fs::symlink("/etc/passwd", sub.join("link")).unwrap();
        let err = trusted(&dir).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
    }

    #[test]
    fn a_cache_under_a_directory_others_can_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        std::fs::create_dir(&open).unwrap();
        chmod(&open, 0o777);
        let err = trusted(&open.join("cache")).unwrap_err();
        assert!(err.contains("above the cache"), "{err}");
        // Sticky, like /tmp: others cannot rename or remove what is ours.
        chmod(&open, 0o1777);
        trusted(&open.join("cache")).unwrap();
    }
}
