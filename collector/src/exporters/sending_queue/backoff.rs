//! Exponential backoff with jitter, with the semantics of the Go `cenkalti/backoff` package
//! that the OpenTelemetry Collector uses.

use std::time::Duration;

use super::RetryConfig;

/// The waits between attempts of one batch.
#[derive(Debug)]
pub(super) struct Backoff {
    current: Duration,
    max: Duration,
    multiplier: f64,
    randomization: f64,
}

impl Backoff {
    pub(super) fn new(cfg: &RetryConfig) -> Self {
        Self {
            current: cfg.initial_interval.get(),
            max: cfg.max_interval.get(),
            multiplier: cfg.multiplier,
            randomization: cfg.randomization_factor,
        }
    }

    /// The next wait: the current interval randomised within ± the factor; the interval then
    /// grows by the multiplier up to the maximum.
    pub(super) fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = base.mul_f64(self.multiplier).min(self.max);
        if self.randomization <= 0.0 {
            return base;
        }
        // random() is uniform in [0, 1): map it to [1 - r, 1 + r).
        let factor = 1.0 - self.randomization + 2.0 * self.randomization * rand::random::<f64>();
        base.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Duration as ConfigDuration;

    fn cfg(randomization_factor: f64) -> RetryConfig {
        RetryConfig {
            initial_interval: ConfigDuration::from_secs(1),
            max_interval: ConfigDuration::from_secs(5),
            multiplier: 2.0,
            randomization_factor,
            ..RetryConfig::default()
        }
    }

    #[test]
    fn grows_to_the_maximum() {
        let mut b = Backoff::new(&cfg(0.0));
        let secs: Vec<u64> = (0..5).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 5, 5]);
    }

    #[test]
    fn jitter_stays_within_the_factor() {
        let mut b = Backoff::new(&cfg(0.5));
        for _ in 0..100 {
            let d = b.next_delay();
            assert!(
                d >= Duration::from_millis(500) && d < Duration::from_millis(7500),
                "{d:?}"
            );
        }
    }
}
