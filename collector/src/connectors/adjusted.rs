//! A span's adjusted count: how many spans it stands for after sampling, read from the
//! OpenTelemetry sampling threshold in its W3C `tracestate` (`ot=th:HEX`).
//!
//! A sampler that keeps a span when its 56-bit randomness is at least the threshold `T`
//! keeps a fraction `(2^56 - T) / 2^56` of spans; each kept one therefore stands for
//! `2^56 / (2^56 - T)` spans. `th` is `T` written as up to 14 hex digits with trailing zeros
//! left out (`th:8` is `0x80000000000000`, one span in two kept; `th:0` keeps everything).

/// 2^56, the range of the sampling randomness and threshold.
const RANGE: f64 = 72_057_594_037_927_936.0;

/// The adjusted count of a span with this `tracestate`: 1 without a valid `ot=th`.
pub fn adjusted_count(trace_state: &str) -> f64 {
    threshold(trace_state).map_or(1.0, |t| RANGE / (RANGE - t as f64))
}

/// The threshold `th` in the `ot` entry, if valid (1 to 14 hex digits).
fn threshold(trace_state: &str) -> Option<u64> {
    let ot = trace_state
        .split(',')
        .map(str::trim)
        .find_map(|entry| entry.strip_prefix("ot="))?;
    let th = ot.split(';').find_map(|field| field.strip_prefix("th:"))?;
    if th.is_empty() || th.len() > 14 || !th.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let value = u64::from_str_radix(th, 16).ok()?;
    Some(value << (4 * (14 - th.len())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_give_the_inverse_of_the_kept_fraction() {
        assert_eq!(adjusted_count(""), 1.0);
        assert_eq!(adjusted_count("ot=th:0"), 1.0);
        assert_eq!(adjusted_count("ot=th:8"), 2.0);
        assert_eq!(adjusted_count("ot=th:c"), 4.0);
        // 10%: T = 0.9 * 2^56, rounded to the 14 digits a sampler writes.
        let ten_percent = adjusted_count("ot=th:e6666666666666");
        assert!((ten_percent - 10.0).abs() < 1e-9, "{ten_percent}");
        // Other vendors' entries and other `ot` fields are skipped.
        assert_eq!(adjusted_count("vendor=x:1, ot=rv:abcdef;th:8"), 2.0);
    }

    #[test]
    fn malformed_thresholds_count_once() {
        for bad in [
            "ot=th:",
            "ot=th:xyz",
            "ot=th:123456789012345",
            "th:8",
            "other=th:8",
        ] {
            assert_eq!(adjusted_count(bad), 1.0, "{bad}");
        }
    }
}
