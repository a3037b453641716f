//! A span's adjusted count: how many spans it stands for after sampling, read from the
//! OpenTelemetry sampling threshold in its W3C `tracestate` (`ot=th:HEX`).
//!
//! A sampler that keeps a span when its 56-bit randomness is at least the threshold `T`
//! keeps a fraction `(2^56 - T) / 2^56` of spans; each kept one therefore stands for
//! `2^56 / (2^56 - T)` spans. `th` is `T` written as up to 14 hex digits with trailing zeros
//! left out (`th:8` is `0x80000000000000`, one span in two kept; `th:0` keeps everything).
//!
//! Spans from samplers of the earlier, power-of-two scheme carry `ot=p:N` instead (a kept
//! span stands for `2^N` spans): read when there is no `th`.

/// 2^56, the range of the sampling randomness and threshold.
const RANGE: f64 = 72_057_594_037_927_936.0;

/// The adjusted count of a span with this `tracestate`: 1 without a valid `ot=th` (or `ot=p`).
pub fn adjusted_count(trace_state: &str) -> f64 {
    if trace_state.is_empty() {
        return 1.0;
    }
    let Some(ot) = trace_state
        .split(',')
        .map(str::trim)
        .find_map(|entry| entry.strip_prefix("ot="))
    else {
        return 1.0;
    };
    if let Some(t) = threshold(ot) {
        return RANGE / (RANGE - t as f64);
    }
    // `p:63` means "not sampled" (adjusted count 0) in that scheme; such a span should not
    // be here, so it counts once, like anything else unreadable.
    match ot
        .split(';')
        .find_map(|field| field.strip_prefix("p:"))
        .and_then(|p| p.parse::<i32>().ok())
    {
        Some(p @ 0..=62) => 2f64.powi(p),
        _ => 1.0,
    }
}

/// The threshold `th` in the `ot` entry's value, if valid (1 to 14 hex digits).
fn threshold(ot: &str) -> Option<u64> {
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
    fn the_earlier_power_of_two_scheme_is_read_without_th() {
        assert_eq!(adjusted_count("ot=p:3;r:10"), 8.0);
        assert_eq!(adjusted_count("ot=p:0"), 1.0);
        assert_eq!(adjusted_count("ot=p:2;th:8"), 2.0);
        assert_eq!(adjusted_count("ot=p:63"), 1.0);
        assert_eq!(adjusted_count("ot=p:x"), 1.0);
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
