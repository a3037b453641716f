//! Recording a kept span's sampling probability in its W3C `tracestate`, as OpenTelemetry's
//! "TraceState: Probability Sampling" specifies: the `th` sub-key of the `ot` entry holds the
//! rejection threshold `(1 - p) * 2^56` as up to 14 lowercase hex digits, trailing zeros removed
//! (`ot=th:0` is p = 1, `ot=th:8` is p = 0.5, `ot=th:c` is p = 0.25). Backends read it to
//! count each kept span as `1 / p` spans.
//!
//! Precision follows the spec's recommendation of 4 significant hex digits, counted after the
//! leading `f` digits of small probabilities (0.1 is `e666`, 0.01 is `fd70a`, 1e-6 is
//! `ffffef39`), so the encoded probability is within a relative 2^-13 (0.012%) of the requested one.
//! Probabilities within ~1e-5 of 1 round to `th:0`, as the spec's algorithm does.

/// 2^56: thresholds and randomness values are 56-bit numbers.
const MAX_THRESHOLD: u64 = 1 << 56;

/// Hex digits in a full 56-bit threshold.
const THRESHOLD_HEX_DIGITS: u32 = 14;

/// Significant hex digits written, as the spec recommends for SDKs.
const PRECISION_HEX_DIGITS: u32 = 4;

/// W3C Trace Context: a `tracestate` holds at most 32 list members.
const MAX_LIST_MEMBERS: usize = 32;

/// The OpenTelemetry vendor key.
const OT_KEY: &str = "ot";

/// Returns `tracestate` with the `ot` entry's `th` set for a span kept with `probability`.
///
/// - If the span already carries a valid `th` (it was sampled upstream with probability `p0`),
///   the written probability is `p0 * probability`: the spec's "proportional downstream
///   sampler" rule, since the span now stands for `1 / (p0 * p)` spans. The result never has a
///   lower threshold than the incoming one (rounding cannot raise the probability). A missing
///   or malformed `th` is taken as p0 = 1.
/// - `th` is replaced in place within the `ot` entry, or put first in it; the entry's other
///   sub-keys (`rv:` and any others) are kept in order.
/// - The `ot` entry moves to the front of the list, as W3C requires of a modified entry; other
///   members keep their order. Empty members and whitespace around members are dropped. If
///   that would exceed 32 members, the rightmost are dropped.
///
/// `probability` is clamped into `[2^-56, 1]`, the range the spec defines (a kept span was kept
/// with some positive probability); NaN counts as 1, keeping the upstream threshold as it is.
pub fn with_threshold(tracestate: &str, probability: f64) -> String {
    let upstream = ot_sub_key(tracestate, "th").and_then(parse_threshold);
    let threshold = effective_threshold(upstream, probability);
    with_sub_keys(tracestate, &[("th", &encode_threshold(threshold))])
}

/// The value of sub-key `key` of the `ot` entry of `tracestate`, if any.
pub fn ot_sub_key<'a>(tracestate: &'a str, key: &str) -> Option<&'a str> {
    let ot_value = tracestate
        .split(',')
        .map(|member| member.trim_matches([' ', '\t']))
        .find_map(ot_entry_value)?;
    sub_key(ot_value, key)
}

/// Returns `tracestate` with each `(key, value)` set as a sub-key of the `ot` entry, with the
/// list rules of [`with_threshold`]: the `ot` entry goes first, its other sub-keys keep their
/// order, empty members are dropped and the list stays within 32 members.
pub fn with_sub_keys(tracestate: &str, pairs: &[(&str, &str)]) -> String {
    let members: Vec<&str> = tracestate
        .split(',')
        .map(|member| member.trim_matches([' ', '\t']))
        .filter(|member| !member.is_empty())
        .collect();
    // Keys are unique in a valid tracestate; of duplicate `ot` entries the first counts.
    let mut ot_value = members
        .iter()
        .find_map(|member| ot_entry_value(member))
        .unwrap_or("")
        .to_owned();
    // Set in reverse so that new sub-keys, each put first, end up in the order given.
    for (key, value) in pairs.iter().rev() {
        ot_value = with_sub_key(&ot_value, key, value);
    }
    let mut out = String::with_capacity(tracestate.len() + 20);
    out.push_str(OT_KEY);
    out.push('=');
    out.push_str(&ot_value);
    let others = members
        .iter()
        .filter(|member| ot_entry_value(member).is_none());
    for member in others.take(MAX_LIST_MEMBERS - 1) {
        out.push(',');
        out.push_str(member);
    }
    out
}

/// The value of a list member if its key is `ot`.
fn ot_entry_value(member: &str) -> Option<&str> {
    member
        .split_once('=')
        .and_then(|(key, value)| (key == OT_KEY).then_some(value))
}

/// The value of the first `key:` sub-key in an `ot` entry's value.
fn sub_key<'a>(ot_value: &'a str, key: &str) -> Option<&'a str> {
    ot_value
        .split(';')
        .find_map(|pair| pair.split_once(':').filter(|(k, _)| *k == key))
        .map(|(_, value)| value)
}

/// `ot_value` with sub-key `key` set to `value`: replaced where it was (dropping any
/// duplicates), or put first.
fn with_sub_key(ot_value: &str, key: &str, value: &str) -> String {
    let new_pair = format!("{key}:{value}");
    let mut pairs: Vec<&str> = Vec::new();
    let mut placed = false;
    for pair in ot_value.split(';').filter(|pair| !pair.is_empty()) {
        if pair.split_once(':').is_some_and(|(k, _)| k == key) {
            if !placed {
                pairs.push(&new_pair);
                placed = true;
            }
        } else {
            pairs.push(pair);
        }
    }
    if !placed {
        pairs.insert(0, &new_pair);
    }
    pairs.join(";")
}

/// A `th` value (1 to 14 hex digits, implicitly padded with trailing zeros) as a 56-bit
/// threshold.
pub fn parse_threshold(th: &str) -> Option<u64> {
    let digits = u32::try_from(th.len()).ok()?;
    if !(1..=THRESHOLD_HEX_DIGITS).contains(&digits) || !th.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let value = u64::from_str_radix(th, 16).ok()?;
    Some(value << (4 * (THRESHOLD_HEX_DIGITS - digits)))
}

/// The threshold to write for a span kept with `probability` after an upstream `th`.
fn effective_threshold(upstream: Option<u64>, probability: f64) -> u64 {
    let probability = if probability.is_nan() {
        1.0
    } else {
        probability
    };
    let upstream_probability = upstream.map_or(1.0, threshold_to_probability);
    let threshold = probability_to_threshold(upstream_probability * probability);
    upstream.map_or(threshold, |up| threshold.max(up))
}

fn threshold_to_probability(threshold: u64) -> f64 {
    (MAX_THRESHOLD - threshold.min(MAX_THRESHOLD)) as f64 / MAX_THRESHOLD as f64
}

/// `(1 - p) * 2^56`, rounded to [`PRECISION_HEX_DIGITS`] significant hex digits past the
/// leading `f`s, for `p` clamped into `[2^-56, 1]`.
fn probability_to_threshold(probability: f64) -> u64 {
    if probability >= 1.0 {
        return 0;
    }
    // The accepted share of 2^56 values; exact in f64 down to 2^-56 (a power-of-two scaling).
    let accepted = (probability * MAX_THRESHOLD as f64)
        .round()
        .clamp(1.0, MAX_THRESHOLD as f64);
    let accepted = accepted as u64;
    let exact = MAX_THRESHOLD - accepted;
    // Each 4 leading zero bits of `accepted` below bit 56 is a leading `f` of the threshold,
    // which carries no information about p: keep 4 digits after those.
    let leading_fs = accepted.leading_zeros().saturating_sub(64 - 56) / 4;
    let digits = (PRECISION_HEX_DIGITS + leading_fs).min(THRESHOLD_HEX_DIGITS);
    let unit = 1u64 << (4 * (THRESHOLD_HEX_DIGITS - digits));
    let rounded = (exact + unit / 2) / unit * unit;
    // Rounding cannot reach 2^56 (the digits kept cover `accepted`), but a threshold must stay
    // below it.
    rounded.min(MAX_THRESHOLD - 1)
}

/// A 56-bit threshold as a `th` value: hex, lowercase, trailing zeros removed, `0` for zero.
pub fn encode_threshold(threshold: u64) -> String {
    if threshold == 0 {
        return "0".to_owned();
    }
    let digits = format!("{threshold:014x}");
    digits.trim_end_matches('0').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn th(probability: f64) -> String {
        with_threshold("", probability)
    }

    #[test]
    fn encodes_the_spec_examples() {
        assert_eq!(th(1.0), "ot=th:0");
        assert_eq!(th(0.5), "ot=th:8");
        assert_eq!(th(0.25), "ot=th:c");
        assert_eq!(th(0.125), "ot=th:e");
        assert_eq!(th(0.0625), "ot=th:f");
        assert_eq!(th(0.1), "ot=th:e666");
    }

    #[test]
    fn matches_the_spec_table_at_precision_4() {
        let table = [
            (1.0 / 3.0, "aaab"),
            (0.2, "cccd"),
            (0.01, "fd70a"),
            (0.001, "ffbe77"),
            (0.0001, "fff9724"),
            (0.00001, "ffff583a"),
            (0.000001, "ffffef39"),
        ];
        for (probability, expected) in table {
            assert_eq!(
                th(probability),
                format!("ot=th:{expected}"),
                "p = {probability}"
            );
        }
    }

    #[test]
    fn encoded_probability_is_accurate() {
        for probability in [0.9, 0.77, 0.3, 0.05, 0.0123, 3e-4, 7e-9] {
            let threshold = probability_to_threshold(probability);
            let encoded = threshold_to_probability(threshold);
            let error = (encoded - probability).abs() / probability;
            assert!(error < 2e-4, "p = {probability}: encoded {encoded}");
            assert_eq!(
                parse_threshold(&encode_threshold(threshold)),
                Some(threshold)
            );
        }
    }

    #[test]
    fn clamps_out_of_range_probabilities() {
        assert_eq!(th(1.5), "ot=th:0");
        assert_eq!(th(0.0), "ot=th:ffffffffffffff");
        assert_eq!(th(-1.0), "ot=th:ffffffffffffff");
        assert_eq!(th(1e-30), "ot=th:ffffffffffffff");
        assert_eq!(th(f64::NAN), "ot=th:0");
        assert_eq!(with_threshold("ot=th:c", f64::NAN), "ot=th:c");
        // Near 1 there is no extra precision: the spec's algorithm rounds to 0 too.
        assert_eq!(th(0.999_999), "ot=th:0");
    }

    #[test]
    fn adds_ot_as_the_first_member() {
        assert_eq!(with_threshold("a=1,b=2", 0.5), "ot=th:8,a=1,b=2");
        assert_eq!(
            with_threshold("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7", 0.25),
            "ot=th:c,congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        );
    }

    #[test]
    fn moves_ot_to_the_front_and_keeps_its_other_sub_keys() {
        assert_eq!(
            with_threshold("a=1,ot=rv:abcdef01234567,b=2", 0.5),
            "ot=th:8;rv:abcdef01234567,a=1,b=2"
        );
        assert_eq!(
            with_threshold("a=1,ot=rv:abcdef01234567;th:0;x:y", 0.5),
            "ot=rv:abcdef01234567;th:8;x:y,a=1"
        );
    }

    #[test]
    fn composes_with_an_upstream_threshold() {
        // Upstream 50%, here 50%: 25%.
        assert_eq!(with_threshold("ot=th:8", 0.5), "ot=th:c");
        // Upstream 25%, here 50%: 12.5%.
        assert_eq!(
            with_threshold("ot=th:c;rv:01020304050607", 0.5),
            "ot=th:e;rv:01020304050607"
        );
        // Upstream 10% (`e666`), kept here always: unchanged.
        assert_eq!(with_threshold("ot=th:e666", 1.0), "ot=th:e666");
        // Upstream 10%, here 10%: 1%, within rounding.
        let out = with_threshold("ot=th:e666", 0.1);
        let written = parse_threshold(out.strip_prefix("ot=th:").unwrap()).unwrap();
        let probability = threshold_to_probability(written);
        assert!(
            (probability - 0.01).abs() < 0.01 * 2e-4,
            "{out}: {probability}"
        );
        // Uppercase digits are valid input; output is lowercase.
        assert_eq!(with_threshold("ot=th:C", 1.0), "ot=th:c");
    }

    #[test]
    fn never_lowers_the_upstream_threshold() {
        // Rounding 0.01 * 0.99999 to 4+1 digits would land below the 6-digit `fd70a4`.
        let out = with_threshold("ot=th:fd70a4", 0.99999);
        assert_eq!(out, "ot=th:fd70a4");
    }

    #[test]
    fn replaces_a_malformed_threshold() {
        assert_eq!(with_threshold("ot=th:xyz;rv:00", 0.5), "ot=th:8;rv:00");
        assert_eq!(with_threshold("ot=th:123456789abcdef", 0.5), "ot=th:8");
        assert_eq!(with_threshold("ot=th:", 0.5), "ot=th:8");
        assert_eq!(with_threshold("ot=th:+8", 0.5), "ot=th:8");
    }

    #[test]
    fn drops_duplicate_th_sub_keys_and_ot_entries() {
        assert_eq!(with_threshold("ot=th:8;a:1;th:c", 1.0), "ot=th:8;a:1");
        assert_eq!(with_threshold("ot=th:8,x=1,ot=th:c", 1.0), "ot=th:8,x=1");
    }

    #[test]
    fn drops_empty_members_and_whitespace() {
        assert_eq!(with_threshold(" a=1 ,, \tb=2\t,", 0.5), "ot=th:8,a=1,b=2");
        assert_eq!(with_threshold("ot=", 0.5), "ot=th:8");
    }

    #[test]
    fn sets_several_sub_keys_in_order() {
        assert_eq!(
            with_sub_keys("a=1,ot=x:y", &[("th", "8"), ("rv", "01")]),
            "ot=th:8;rv:01;x:y,a=1"
        );
        assert_eq!(
            with_sub_keys("ot=rv:02;th:c", &[("th", "8")]),
            "ot=rv:02;th:8"
        );
        assert_eq!(ot_sub_key("a=1, ot=rv:02;th:c", "th"), Some("c"));
        assert_eq!(ot_sub_key("a=1", "th"), None);
    }

    #[test]
    fn never_exceeds_32_members() {
        let full: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        let out = with_threshold(&full.join(","), 0.5);
        let members: Vec<&str> = out.split(',').collect();
        assert_eq!(members.len(), 32);
        assert_eq!(members[0], "ot=th:8");
        assert_eq!(members[31], "k30=v");

        // With `ot` already among the 32, nothing is dropped.
        let mut with_ot = full[..31].to_vec();
        with_ot.push("ot=th:8".to_owned());
        let out = with_threshold(&with_ot.join(","), 0.5);
        let members: Vec<&str> = out.split(',').collect();
        assert_eq!(members.len(), 32);
        assert_eq!(members[0], "ot=th:c");
        assert_eq!(members[31], "k30=v");
    }
}
