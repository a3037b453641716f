//! The WASM/native time ratio of `builtin:pii-scrub` and `builtin:enrich`, measured in pairs.
//!
//! Each pair runs the `scrub_pipeline_8192` case of `--bench scrub` (the request checked into
//! a batch → the plugin stage → the protobuf sink) once with the `wasm` processor and once with
//! the same plugin compiled natively, back to back, in alternating order. On a shared machine
//! whose speed drifts by ±15% between criterion's groups, the ratio within a pair is what the
//! drift leaves alone; the median over the pairs is the figure to quote. Each run is timed by
//! the wall clock and by the process's CPU clock (all threads: each stage runs on a thread of
//! its own, as the sandbox does in the collector); the CPU time leaves out the time other
//! processes took the cores, so its ratio is the steadier of the two on a busy machine.
//!
//! ```sh
//! cargo bench -p wasmcol-benches --bench scrub_ratio                  # 31 pairs per plugin
//! cargo bench -p wasmcol-benches --bench scrub_ratio -- --pairs 61
//! # one case alone, a fixed number of times (for `perf record`):
//! cargo bench -p wasmcol-benches --bench scrub_ratio -- --only wasm_scrub --iterations 100
//! ```

mod scrub_fixture;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::time::{ClockId, clock_gettime};

use scrub_fixture::{Fixture, SPANS, as_host_runs, serve_tables};
use wasmcol::pipeline::{Consumer, TraceBatch};

/// The four cases, by name.
const CASES: [&str; 4] = ["wasm_scrub", "native_scrub", "wasm_enrich", "native_enrich"];

struct Args {
    pairs: usize,
    warm_up: usize,
    only: Option<(usize, usize)>,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "scrub_ratio: {problem}\nusage: scrub_ratio [--pairs N] [--warm-up N] \
         [--only {} --iterations N]",
        CASES.join("|")
    );
    std::process::exit(2);
}

fn number(flag: &str, value: Option<String>) -> usize {
    value
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| usage(&format!("{flag} takes a positive number")))
}

fn args() -> Args {
    let mut args = Args {
        pairs: 31,
        warm_up: 5,
        only: None,
    };
    let (mut only, mut iterations) = (None, None);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--pairs" => args.pairs = number("--pairs", it.next()),
            "--warm-up" => args.warm_up = number("--warm-up", it.next()),
            "--iterations" => iterations = Some(number("--iterations", it.next())),
            "--only" => {
                let name = it.next().unwrap_or_default();
                only = Some(
                    CASES
                        .iter()
                        .position(|c| *c == name)
                        .unwrap_or_else(|| usage(&format!("no case {name:?}"))),
                );
            }
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    match (only, iterations) {
        (Some(case), Some(n)) => args.only = Some((case, n)),
        (None, None) => {}
        _ => usage("--only and --iterations go together"),
    }
    args
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn quartiles(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 4], v[v.len() * 3 / 4])
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The CPU time of the whole process so far.
fn cpu() -> Duration {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// One run's wall and CPU time, in milliseconds.
#[derive(Clone, Copy)]
struct Times {
    wall: f64,
    cpu: f64,
}

/// Runs the native plugins on a thread of their own, as the `wasm` processor runs the sandbox
/// on its worker thread: both stages hand their batch across threads and back, and neither
/// runs on the thread that times it.
struct NativeWorker {
    jobs: mpsc::Sender<(usize, TraceBatch)>,
    done: mpsc::Receiver<TraceBatch>,
}

impl NativeWorker {
    fn start(mut scrub: pii_scrub_plugin::PiiScrub, mut enrich: enrich_plugin::Enrich) -> Self {
        let (jobs, job_rx) = mpsc::channel::<(usize, TraceBatch)>();
        let (done_tx, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("native-plugin".into())
            .spawn(move || {
                serve_tables();
                for (case, batch) in job_rx {
                    let out = if case == 1 {
                        as_host_runs(&mut scrub, batch)
                    } else {
                        as_host_runs(&mut enrich, batch)
                    };
                    if done_tx.send(out).is_err() {
                        break;
                    }
                }
            })
            .unwrap();
        Self { jobs, done }
    }

    fn process(&self, case: usize, batch: TraceBatch) -> TraceBatch {
        self.jobs.send((case, batch)).unwrap();
        self.done.recv().unwrap()
    }
}

fn main() {
    let args = args();
    let Fixture {
        runtime,
        scrub,
        enrich,
        encoded,
        native_scrub,
        native_enrich,
        ..
    } = Fixture::new();
    let native = NativeWorker::start(native_scrub, native_enrich);
    let run = |case: usize| -> Times {
        for (_, sink) in [&scrub, &enrich] {
            sink.clear();
        }
        let (start, start_cpu) = (Instant::now(), cpu());
        // As in `scrub_pipeline_8192`: the receiver's check is timed with the stage.
        let batch = TraceBatch::from_protobuf(encoded.clone()).unwrap();
        match case {
            0 => runtime.block_on(scrub.0.consume(batch)).unwrap(),
            2 => runtime.block_on(enrich.0.consume(batch)).unwrap(),
            1 | 3 => {
                let out = native.process(case, batch);
                // The native stage hands its batch to the same kind of sink.
                runtime.block_on(scrub.1.consume(out)).unwrap();
            }
            _ => unreachable!(),
        }
        Times {
            wall: ms(start.elapsed()),
            cpu: ms(cpu() - start_cpu),
        }
    };

    if let Some((case, n)) = args.only {
        let times: Vec<Times> = (0..n).map(|_| run(case)).collect();
        println!(
            "{}: median {:.1} ms wall, {:.1} ms CPU over {n} runs",
            CASES[case],
            median(times.iter().map(|t| t.wall).collect()),
            median(times.iter().map(|t| t.cpu).collect()),
        );
        return;
    }

    println!(
        "{} spans per batch; {} warm-up pairs, then {} measured pairs per plugin\n",
        SPANS, args.warm_up, args.pairs
    );
    println!(
        "| plugin | clock | WASM median | native median | WASM/native, median of pairs | quartiles |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for (plugin, wasm, native) in [("pii-scrub", 0, 1), ("enrich", 2, 3)] {
        let mut pairs = Vec::new();
        for i in 0..args.warm_up + args.pairs {
            // Alternate which goes first, so neither always runs on a warmer cache.
            let pair = if i % 2 == 0 {
                let w = run(wasm);
                (w, run(native))
            } else {
                let n = run(native);
                (run(wasm), n)
            };
            if i >= args.warm_up {
                pairs.push(pair);
            }
        }
        for clock in ["CPU", "wall"] {
            let read = |t: Times| if clock == "CPU" { t.cpu } else { t.wall };
            let ratios: Vec<f64> = pairs.iter().map(|&(w, n)| read(w) / read(n)).collect();
            let (q1, q3) = quartiles(ratios.clone());
            println!(
                "| `{plugin}` | {clock} | {:.1} ms | {:.1} ms | **{:.2}×** | {q1:.2}–{q3:.2} |",
                median(pairs.iter().map(|&(w, _)| read(w)).collect()),
                median(pairs.iter().map(|&(_, n)| read(n)).collect()),
                median(ratios)
            );
        }
    }
}
