//! Durations as the Collector writes them (Go's `time.ParseDuration`): `10s`, `500ms`, `1m`,
//! `1.5s`, `1m30s`. Written here rather than pulled in: the plugin needs one option's worth.

const UNITS: &[(&str, f64)] = &[
    ("ns", 1.0),
    ("us", 1e3),
    ("µs", 1e3),
    ("ms", 1e6),
    ("s", 1e9),
    ("m", 60e9),
    ("h", 3600e9),
];

/// Parses `text` into nanoseconds: one or more decimal numbers, each followed by a unit (`ns`,
/// `us` or `µs`, `ms`, `s`, `m`, `h`). A bare `0` is zero; other numbers need a unit.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let s = text.trim();
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err("empty duration; write e.g. 10s, 500ms or 1m".to_string());
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(digits);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: expected a number at {rest:?}"))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(format!(
                "invalid duration {text:?}: {number} has no unit (ns, us, ms, s, m or h)"
            ));
        }
        let Some(&(_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!(
                "invalid duration {text:?}: unknown unit {unit:?} (ns, us, ms, s, m or h)"
            ));
        };
        total += value * scale;
        rest = after;
    }
    if !total.is_finite() || total >= u64::MAX as f64 {
        return Err(format!("invalid duration {text:?}: too long"));
    }
    Ok(total.round() as u64)
}
