//! Rate limiting for log lines that a remote peer or bad data can trigger over and over
//! (malformed requests, undecodable Kafka messages, failing sends, a full disk, a failing plugin).
//!
//! Each call site of [`log_limited!`](crate::telemetry::log_limited) owns one [`LogLimiter`]:
//! the first [`BURST`] lines of a [`INTERVAL`] window are logged as usual, the rest are only
//! counted, and once the window is over one line says how many were left out:
//! `malformed request refused (1995 similar messages suppressed)` with a `suppressed` field.
//! That line comes with the next line of the site, or from a background thread within about a
//! second of the window's end when the flood has stopped, so every suppressed line is accounted
//! for. The limit is per call site, not per message text: lines that differ only in their
//! fields (a peer address, an offset) count as similar.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::Level;

/// Lines a call site may log per [`INTERVAL`] before the rest are counted instead.
pub const BURST: u32 = 5;

/// The window over which [`BURST`] applies.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// How often the background thread looks for windows that ended with lines suppressed.
const SWEEP: Duration = Duration::from_secs(1);

/// The limiter of one log call site; a `static` made by [`log_limited!`](crate::telemetry::log_limited).
pub struct LogLimiter {
    level: Level,
    message: &'static str,
    burst: u32,
    interval: Duration,
    state: Mutex<Window>,
}

#[derive(Default)]
struct Window {
    /// When the current window started; `None` before the first line and after a report.
    start: Option<Instant>,
    /// Lines logged in the current window.
    logged: u32,
    /// Lines counted, not logged, since the last report.
    suppressed: u64,
    /// Whether the background thread knows this limiter.
    registered: bool,
}

/// What a call site does with one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Log the line.
    pub log: bool,
    /// Before it, report this many suppressed lines (the previous window's).
    pub report: u64,
}

impl LogLimiter {
    /// A limiter for the call site logging `message` at `level`, with the default
    /// [`BURST`] per [`INTERVAL`].
    pub const fn new(level: Level, message: &'static str) -> Self {
        Self::with_limits(level, message, BURST, INTERVAL)
    }

    /// A limiter allowing `burst` lines per `interval`.
    pub const fn with_limits(
        level: Level,
        message: &'static str,
        burst: u32,
        interval: Duration,
    ) -> Self {
        Self {
            level,
            message,
            burst,
            interval,
            state: Mutex::new(Window {
                start: None,
                logged: 0,
                suppressed: 0,
                registered: false,
            }),
        }
    }

    /// Decides about one line at `now`: whether to log it, and how many suppressed lines of
    /// an ended window to report first.
    pub fn decide(&self, now: Instant) -> Verdict {
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut report = 0;
        if w.start
            .is_none_or(|s| now.duration_since(s) >= self.interval)
        {
            report = std::mem::take(&mut w.suppressed);
            w.start = Some(now);
            w.logged = 0;
        }
        let log = w.logged < self.burst;
        if log {
            w.logged += 1;
        } else {
            w.suppressed += 1;
        }
        Verdict { log, report }
    }

    /// Takes the suppressed count of a window that ended by `now` (for the background report).
    pub fn take_ended(&self, now: Instant) -> u64 {
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match w.start {
            Some(s) if now.duration_since(s) >= self.interval && w.suppressed > 0 => {
                w.start = None;
                w.logged = 0;
                std::mem::take(&mut w.suppressed)
            }
            _ => 0,
        }
    }

    /// Decides about one line now, writes the report line if one is due, and makes sure a
    /// window that ends with lines suppressed gets reported even if the site falls silent.
    /// Returns whether the caller should log its line.
    pub fn allow(&'static self) -> bool {
        let v = self.decide(Instant::now());
        if v.report > 0 {
            self.report(v.report);
        }
        if !v.log {
            self.register();
        }
        v.log
    }

    /// Writes the line saying that `n` lines of this site were suppressed.
    pub fn report(&self, n: u64) {
        let msg = self.message;
        if self.level == Level::ERROR {
            tracing::error!(suppressed = n, "{msg} ({n} similar messages suppressed)");
        } else if self.level == Level::WARN {
            tracing::warn!(suppressed = n, "{msg} ({n} similar messages suppressed)");
        } else {
            tracing::info!(suppressed = n, "{msg} ({n} similar messages suppressed)");
        }
    }

    fn register(&'static self) {
        {
            let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if w.registered {
                return;
            }
            w.registered = true;
        }
        let sites = SITES.get_or_init(|| {
            // One thread for the whole process; it only runs once some site has suppressed lines.
            let spawned = std::thread::Builder::new()
                .name("log-limit".into())
                .spawn(|| {
                    loop {
                        std::thread::sleep(SWEEP);
                        flush_ended(Instant::now());
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the thread reporting suppressed log lines");
            }
            Mutex::new(Vec::new())
        });
        sites.lock().unwrap_or_else(|e| e.into_inner()).push(self);
    }
}

/// Call sites that have suppressed lines at least once.
static SITES: OnceLock<Mutex<Vec<&'static LogLimiter>>> = OnceLock::new();

/// Reports every window ended by `now` that suppressed lines.
fn flush_ended(now: Instant) {
    let Some(sites) = SITES.get() else { return };
    let sites: Vec<&'static LogLimiter> = sites.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for site in sites {
        let n = site.take_ended(now);
        if n > 0 {
            site.report(n);
        }
    }
}

/// Reports what every call site suppressed so far, window ended or not (at shutdown).
pub fn flush_suppressed() {
    flush_ended(Instant::now() + INTERVAL * 1000);
}

/// Logs like `tracing::warn!` (or `error`, `info`), at most [`BURST`] lines per [`INTERVAL`]
/// from this call site, then one line with the count of the lines left out. The message is a
/// string literal after the level, then the fields:
/// `log_limited!(warn, "malformed request refused", receiver = %id, %reason)`.
/// A message with formatting arguments takes a fixed text for the count line first, then
/// `;` and the arguments of `tracing::warn!` as they were:
/// `log_limited!(warn, "plugin log"; processor = %id, "plugin: {message}")`.
macro_rules! log_limited {
    ($mac:ident, $key:literal; $($args:tt)+) => {{
        static LIMITER: $crate::telemetry::LogLimiter = $crate::telemetry::LogLimiter::new(
            $crate::telemetry::log_limited!(@level $mac),
            $key,
        );
        if LIMITER.allow() {
            ::tracing::$mac!($($args)+);
        }
    }};
    (@level error) => { ::tracing::Level::ERROR };
    (@level warn) => { ::tracing::Level::WARN };
    (@level info) => { ::tracing::Level::INFO };
    (error, $msg:literal $(, $($fields:tt)+)?) => {
        $crate::telemetry::log_limited!(@site error, ERROR, $msg $(, $($fields)+)?)
    };
    (warn, $msg:literal $(, $($fields:tt)+)?) => {
        $crate::telemetry::log_limited!(@site warn, WARN, $msg $(, $($fields)+)?)
    };
    (info, $msg:literal $(, $($fields:tt)+)?) => {
        $crate::telemetry::log_limited!(@site info, INFO, $msg $(, $($fields)+)?)
    };
    (@site $mac:ident, $level:ident, $msg:literal $(, $($fields:tt)+)?) => {{
        static LIMITER: $crate::telemetry::LogLimiter =
            $crate::telemetry::LogLimiter::new(::tracing::Level::$level, $msg);
        if LIMITER.allow() {
            ::tracing::$mac!($($($fields)+,)? $msg);
        }
    }};
}
pub(crate) use log_limited;

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32) -> LogLimiter {
        LogLimiter::with_limits(Level::WARN, "m", burst, Duration::from_secs(10))
    }

    #[test]
    fn logs_a_burst_then_counts_and_reports_at_the_next_window() {
        let l = limiter(3);
        let t0 = Instant::now();
        let logged: Vec<bool> = (0..10)
            .map(|i| l.decide(t0 + Duration::from_millis(i)).log)
            .collect();
        assert_eq!(
            logged,
            [
                true, true, true, false, false, false, false, false, false, false
            ]
        );
        let v = l.decide(t0 + Duration::from_secs(10));
        assert_eq!(
            v,
            Verdict {
                log: true,
                report: 7
            }
        );
        // Nothing left to report afterwards.
        assert_eq!(l.take_ended(t0 + Duration::from_secs(30)), 0);
    }

    #[test]
    fn a_silent_site_is_reported_once_its_window_ends() {
        let l = limiter(2);
        let t0 = Instant::now();
        for i in 0..100 {
            l.decide(t0 + Duration::from_millis(i));
        }
        assert_eq!(
            l.take_ended(t0 + Duration::from_secs(9)),
            0,
            "window still open"
        );
        assert_eq!(l.take_ended(t0 + Duration::from_secs(10)), 98);
        assert_eq!(l.take_ended(t0 + Duration::from_secs(11)), 0);
        // A new window starts with the next line, logged and with nothing to report.
        assert_eq!(
            l.decide(t0 + Duration::from_secs(12)),
            Verdict {
                log: true,
                report: 0
            }
        );
    }

    #[test]
    fn every_line_is_either_logged_or_reported() {
        let l = limiter(5);
        let t0 = Instant::now();
        let (mut logged, mut reported) = (0u64, 0u64);
        // 20,000 lines over 100 s: 10 windows.
        for i in 0..20_000u64 {
            let v = l.decide(t0 + Duration::from_millis(i * 5));
            logged += u64::from(v.log);
            reported += v.report;
        }
        reported += l.take_ended(t0 + Duration::from_secs(1000));
        assert_eq!(logged + reported, 20_000);
        assert!(logged <= 5 * 11, "logged {logged}");
    }

    #[test]
    fn quiet_sites_are_not_limited() {
        let l = limiter(5);
        let t0 = Instant::now();
        for i in 0..50 {
            // One line every 3 s: never more than 4 per window.
            assert!(l.decide(t0 + Duration::from_secs(3 * i)).log);
        }
    }

    #[test]
    fn the_macro_compiles_with_and_without_fields() {
        let reason = "bad";
        for _ in 0..20 {
            log_limited!(warn, "test line", %reason, n = 1);
            log_limited!(error, "test line without fields");
            log_limited!(info, "test info", reason);
            log_limited!(warn, "formatted"; n = 2, "formatted {reason}");
        }
    }
}
