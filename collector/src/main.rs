//! The `wasmcol` command.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use wasmcol::Config;
use wasmcol::config::LogsConfig;
use wasmcol::service::Stopped;

/// With the `mimalloc` feature (gateway builds), mimalloc serves every allocation; without it,
/// the system's allocator.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An OpenTelemetry Collector distribution extended by sandboxed WebAssembly plugins.
#[derive(Parser)]
#[command(name = "wasmcol", version, about)]
struct Cli {
    /// Configuration (the OpenTelemetry Collector's YAML shape): a file path, `file:PATH`,
    /// `env:VAR` or `yaml:TEXT`. Repeat it to merge several in order (mappings merge, lists
    /// are replaced). Default: configs/default.yaml.
    #[arg(long, short, global = true)]
    config: Vec<String>,
    /// Sets one option after the sources merge: `KEY=VALUE`, KEY dotted
    /// (`processors.batch.timeout=2s`) or `::`-separated when a key holds a dot.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Reloads the configuration when the content of a `--config` file changes (read every
    /// 500 ms, acted on once it has settled), as SIGHUP does. Follows symbolic links anew on
    /// each read, so a Kubernetes ConfigMap's atomic swap is seen.
    #[arg(long = "watch-config")]
    watch_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Checks a configuration and lists every problem (exit status 1 if there are any), and
    /// every option accepted in another spelling or accepted and ignored.
    Validate,
    /// Prints the configuration as resolved from every source, `--set` and `${...}`, with
    /// secrets (passwords, tokens, keys, headers) redacted.
    PrintConfig,
    /// Lists the built-in receivers, processors, exporters and extensions.
    Components,
    /// Plugin development: `wasmcol plugin new NAME` creates a plugin crate.
    #[command(subcommand)]
    Plugin(wasmcol::scaffold::PluginCommand),
}

fn main() -> ExitCode {
    let mut cli = Cli::parse();
    if cli.config.is_empty() {
        cli.config.push("configs/default.yaml".into());
    }
    match cli.command {
        Some(Command::Plugin(command)) => wasmcol::scaffold::run(command),
        Some(Command::Components) => {
            print!("{}", wasmcol::components::describe());
            ExitCode::SUCCESS
        }
        Some(Command::PrintConfig) => match Config::print_sources(&cli.config, &cli.set) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Some(Command::Validate) => match Config::load_sources(&cli.config, &cli.set) {
            Ok(config) => {
                let name = cli.config.join(" + ");
                for note in &config.notes {
                    let file = note.note.file.as_deref().unwrap_or(&name);
                    match note.note.line {
                        Some(line) => eprintln!("{file}:{line}: {note}"),
                        None => eprintln!("{name}: {note}"),
                    }
                }
                println!("{name}: valid");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprint!("{e}");
                ExitCode::FAILURE
            }
        },
        None => run(wasmcol::reload::Sources {
            sources: cli.config,
            sets: cli.set,
            watch: cli.watch_config,
        }),
    }
}

/// Raises the soft limit on open files to the hard limit: every connection, queue file and
/// plugin takes descriptors, and distributions often leave the soft limit at 1024.
fn raise_open_files_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let show = |n: Option<u64>| n.map_or("unlimited".to_string(), |n| n.to_string());
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        tracing::debug!(open_files = %show(limit.current), "open-files limit already at its hard limit");
        return;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::info!(
            from = %show(limit.current),
            to = %show(limit.maximum),
            "raised the open-files limit"
        ),
        Err(e) => tracing::warn!(
            limit = %show(limit.current),
            error = %e,
            "cannot raise the open-files limit"
        ),
    }
}

/// How long, after the drain, tasks and blocking work get to end before the process exits.
const RUNTIME_STOP_WAIT: Duration = Duration::from_millis(200);

fn run(sources: wasmcol::reload::Sources) -> ExitCode {
    let config = match Config::load_sources(&sources.sources, &sources.sets) {
        Ok(c) => c,
        Err(e) => {
            wasmcol::telemetry::init_logging(&LogsConfig::default());
            eprint!("{e}");
            return ExitCode::FAILURE;
        }
    };
    wasmcol::telemetry::init_logging(&config.service.telemetry.logs);
    for note in &config.notes {
        match note.level {
            wasmcol::config::compat::Level::Info => tracing::info!("config: {}", note.note),
            wasmcol::config::compat::Level::Warning => tracing::warn!("config: {}", note.note),
        }
    }
    raise_open_files_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wasmcol")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(wasmcol::service::run(config, sources));
    // Whatever still runs was given up by the drain (or by a second stop signal). Tasks get a
    // moment to be dropped, but a blocking task stuck in a system call is not waited for: that
    // would hold the process past shutdown_timeout (dropping the runtime waits for ever).
    match outcome {
        Ok(Stopped::Forced(_)) => runtime.shutdown_background(),
        _ => runtime.shutdown_timeout(RUNTIME_STOP_WAIT),
    }
    // Lines held back by rate-limited log sites are accounted for before the process ends.
    wasmcol::telemetry::flush_suppressed();
    match outcome {
        Ok(Stopped::Drained) => ExitCode::SUCCESS,
        Ok(Stopped::Forced(signal)) => ExitCode::from(128u8.saturating_add(signal as u8)),
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}
