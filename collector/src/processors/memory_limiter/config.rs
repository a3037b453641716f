//! Options of `memory_limiter` and their validation.

use serde::Deserialize;

use crate::component::{Problem, Validate};
use crate::config::Duration;

use super::cgroup::Limit;

/// `processors.memory_limiter`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryLimiterConfig {
    /// How often memory use is measured.
    #[serde(default = "default_check_interval")]
    pub check_interval: Duration,
    /// Hard limit on resident memory, in MiB. Either this or `limit_percentage` is required.
    #[serde(default)]
    pub limit_mib: u64,
    /// Headroom below the hard limit where refusing starts, in MiB (default 20% of the limit).
    #[serde(default)]
    pub spike_limit_mib: Option<u64>,
    /// Hard limit as a percentage of the machine's (or cgroup's) memory, instead of `limit_mib`.
    #[serde(default)]
    pub limit_percentage: u64,
    /// Headroom as a percentage of total memory, used with `limit_percentage`.
    #[serde(default)]
    pub spike_limit_percentage: u64,
}

fn default_check_interval() -> Duration {
    Duration::from_secs(1)
}

impl Validate for MemoryLimiterConfig {
    fn validate(&self) -> Vec<Problem> {
        let mut p = Vec::new();
        if self.check_interval.is_zero() {
            p.push(Problem::new("check_interval", "must be greater than 0"));
        }
        match (self.limit_mib, self.limit_percentage) {
            (0, 0) => p.push(Problem::new(
                "limit_mib",
                "set limit_mib or limit_percentage (both are 0)",
            )),
            (m, pct) if m > 0 && pct > 0 => p.push(Problem::new(
                "limit_percentage",
                format!("set only one of limit_mib ({m}) and limit_percentage ({pct})"),
            )),
            _ => {}
        }
        if self.limit_percentage > 100 {
            p.push(Problem::new(
                "limit_percentage",
                format!("must be at most 100, got {}", self.limit_percentage),
            ));
        }
        if let Some(spike) = self.spike_limit_mib
            && self.limit_mib > 0
            && spike >= self.limit_mib
        {
            p.push(Problem::new(
                "spike_limit_mib",
                format!(
                    "must be less than limit_mib ({}), got {spike}",
                    self.limit_mib
                ),
            ));
        }
        if self.limit_percentage > 0 && self.spike_limit_percentage >= self.limit_percentage {
            p.push(Problem::new(
                "spike_limit_percentage",
                format!(
                    "must be less than limit_percentage ({}), got {}",
                    self.limit_percentage, self.spike_limit_percentage
                ),
            ));
        }
        p
    }
}

impl MemoryLimiterConfig {
    /// (hard, soft) limits in bytes; `available` is the memory `limit_percentage` and
    /// `spike_limit_percentage` are percentages of (see [`super::cgroup::available_memory`]).
    pub(super) fn limits(&self, available: Option<&Limit>) -> anyhow::Result<(u64, u64)> {
        const MIB: u64 = 1024 * 1024;
        if self.limit_mib > 0 {
            let spike = self.spike_limit_mib.unwrap_or(self.limit_mib / 5);
            return Ok((self.limit_mib * MIB, (self.limit_mib - spike) * MIB));
        }
        let total = available
            .ok_or_else(|| anyhow::anyhow!("limit_percentage: cannot read the available memory"))?
            .bytes;
        let percent = |p: u64| (total as u128 * p as u128 / 100) as u64;
        let hard = percent(self.limit_percentage);
        let soft = hard - percent(self.spike_limit_percentage);
        Ok((hard, soft))
    }
}
