//! Resident memory and CPU time of this process, read from `/proc`.

/// One reading of the process's resource use.
#[derive(Debug, Clone, Copy)]
pub struct ProcessSample {
    /// Resident set size.
    pub rss_bytes: u64,
    /// User + system CPU time since start.
    pub cpu_seconds: f64,
}

/// Reads the statistics of process `pid` (`"self"` for this one) from `/proc/PID/stat`;
/// `None` where there is no procfs.
pub fn read_sample(pid: &str) -> Option<ProcessSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields resume after its closing parenthesis.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    // Field numbers from proc(5), minus 3 for pid, comm and the offset of this slice.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let rss_pages: u64 = fields.get(21)?.parse().ok()?;
    const TICKS_PER_SECOND: f64 = 100.0; // USER_HZ is 100 on every Linux target we ship.
    Some(ProcessSample {
        rss_bytes: rss_pages * rustix::param::page_size() as u64,
        cpu_seconds: (utime + stime) / TICKS_PER_SECOND,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_stats() {
        let s = read_sample("self").expect("procfs on Linux");
        assert!(s.rss_bytes > 1024 * 1024, "rss {}", s.rss_bytes);
        assert!(s.cpu_seconds >= 0.0);
    }
}
