//! The built-in value detectors: a candidate regex each, and a check that confirms a candidate
//! (Luhn for cards, mod-97 for IBANs, address parsing for IPs) so that look-alikes such as
//! order ids or version numbers stay as they are.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A detector: its configuration name, candidate pattern and confirming check.
pub struct Def {
    /// The name under `detectors:`.
    pub name: &'static str,
    /// The candidate regex. When it has a capture group, only group 1 is the secret.
    pub pattern: &'static str,
    /// What confirms a candidate.
    pub check: Check,
}

/// Every detector, in the order they are tried.
pub const DETECTORS: &[Def] = &[
    Def {
        name: "credit_card",
        pattern: r"(?-u:\b)[0-9](?:[ -]?[0-9]){12,}(?-u:\b)",
        check: Check::Card,
    },
    Def {
        name: "email",
        pattern: r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        check: Check::None,
    },
    Def {
        name: "ssn",
        pattern: r"(?-u:\b)[0-9]{3}-[0-9]{2}-[0-9]{4}(?-u:\b)",
        check: Check::Ssn,
    },
    Def {
        name: "ip",
        pattern: r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)|[0-9A-Fa-f]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:]*(?:[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})?",
        check: Check::Ip,
    },
    Def {
        name: "jwt",
        pattern: r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*",
        check: Check::None,
    },
    Def {
        name: "bearer_token",
        pattern: r"(?i)(?-u:\b)(?:bearer|basic)[ \t]+([A-Za-z0-9._~+/=-]{8,})",
        check: Check::None,
    },
    Def {
        name: "api_key",
        pattern: concat!(
            r"(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}",
            r"|gh[pousr]_[A-Za-z0-9]{36,}",
            r"|github_pat_[A-Za-z0-9_]{22,}",
            r"|glpat-[A-Za-z0-9_-]{20,}",
            r"|xox[abposr]-[A-Za-z0-9-]{10,}",
            r"|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
            r"|sk-[A-Za-z0-9_-]{20,}",
            r"|AIza[0-9A-Za-z_-]{35}",
            r"|npm_[A-Za-z0-9]{36}",
            r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
            r#"|(?i:api[_-]?key|apikey|client[_-]?secret|secret|password|passwd|access[_-]?token|auth[_-]?token|token)["']?[ \t]*[:=][ \t]*["']?([^\s"'&,;]{4,})"#,
        ),
        check: Check::None,
    },
    Def {
        name: "iban",
        pattern: r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}(?-u:\b)",
        check: Check::Iban,
    },
    Def {
        name: "phone",
        pattern: r"\+[1-9](?:[ .-]?\(?[0-9]\)?){6,14}|\(?(?-u:\b)[2-9][0-9]{2}\)?[ .-]?[2-9][0-9]{2}[ .-][0-9]{4}(?-u:\b)",
        check: Check::Phone,
    },
];

/// A confirmed secret: a byte range of the text and the rule that found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Start (bytes).
    pub start: usize,
    /// End (bytes, exclusive).
    pub end: usize,
    /// Index of the value rule.
    pub rule: usize,
}

/// What confirms a candidate match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The pattern is enough.
    None,
    /// A payment card: issuer prefix, length and Luhn, tried on every run of digit groups.
    Card,
    /// A US SSN with a valid area, group and serial.
    Ssn,
    /// An IPv4 or IPv6 address that parses and is not part of a longer token.
    Ip,
    /// An IBAN with a valid mod-97 check.
    Iban,
    /// A phone number with a plausible digit count.
    Phone,
}

impl Check {
    /// Records the secrets the candidate `s[start..end]` holds, if any.
    pub fn accept(self, s: &str, start: usize, end: usize, rule: usize, hits: &mut Vec<Hit>) {
        let text = &s[start..end];
        let end = match self {
            Check::None => Some(end),
            Check::Card => return cards(s, start, end, rule, hits),
            Check::Iban => return ibans(s, start, end, rule, hits),
            Check::Ssn => ssn(text).then_some(end),
            Check::Ip => ip(s, start, end),
            Check::Phone => phone(s, start, end).then_some(end),
        };
        if let Some(end) = end {
            hits.push(Hit { start, end, rule });
        }
    }
}

/// Finds card numbers in a run of digit groups (`4111 1111 1111 1111`, possibly with other
/// numbers around it): from each group, the longest run of whole groups that is a card.
fn cards(s: &str, start: usize, end: usize, rule: usize, hits: &mut Vec<Hit>) {
    let mut groups = Vec::new();
    let mut group_start = None;
    for (i, b) in s.as_bytes()[start..end].iter().enumerate() {
        match (b.is_ascii_digit(), group_start) {
            (true, None) => group_start = Some(start + i),
            (false, Some(g)) => {
                groups.push((g, start + i));
                group_start = None;
            }
            _ => {}
        }
    }
    if let Some(g) = group_start {
        groups.push((g, end));
    }
    let mut i = 0;
    while i < groups.len() {
        let mut digits = 0;
        let mut found = None;
        for j in i..groups.len() {
            digits += groups[j].1 - groups[j].0;
            if digits > 19 {
                break;
            }
            if digits >= 13
                && is_card(
                    s[groups[i].0..groups[j].1]
                        .bytes()
                        .filter(u8::is_ascii_digit),
                )
            {
                found = Some(j);
            }
        }
        match found {
            Some(j) => {
                hits.push(Hit {
                    start: groups[i].0,
                    end: groups[j].1,
                    rule,
                });
                i = j + 1;
            }
            None => i += 1,
        }
    }
}

/// Whether the ASCII digits are a payment card number: 13–19 digits, a known issuer prefix
/// for the length, not one repeated digit, and a valid Luhn check digit.
pub fn is_card(digits: impl Iterator<Item = u8>) -> bool {
    let mut d = [0u8; 19];
    let mut n = 0;
    for b in digits {
        if n == d.len() {
            return false;
        }
        d[n] = b - b'0';
        n += 1;
    }
    let d = &d[..n];
    if !(13..=19).contains(&n) || d.iter().all(|&x| x == d[0]) {
        return false;
    }
    let prefix = |k: usize| d[..k].iter().fold(0u32, |acc, &x| acc * 10 + u32::from(x));
    let issuer = match d[0] {
        4 => matches!(n, 13 | 16 | 19),
        5 => ((51..=55).contains(&prefix(2)) && n == 16) || prefix(2) == 50 || prefix(2) >= 56,
        2 => (2221..=2720).contains(&prefix(4)) && n == 16,
        3 => {
            (matches!(prefix(2), 34 | 37) && n == 15)
                || ((3528..=3589).contains(&prefix(4)) && n >= 16)
                || (((300..=305).contains(&prefix(3)) || matches!(prefix(2), 36 | 38 | 39))
                    && n >= 14)
        }
        6 => true,
        _ => false,
    };
    issuer && luhn(d)
}

/// The Luhn check over decimal digits (values 0–9).
pub fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 1 {
                let y = x * 2;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether an integer attribute value is a card number, without formatting it.
pub fn is_card_int(i: i64) -> bool {
    if i < 1_000_000_000_000 {
        return false;
    }
    let mut buf = [0u8; 20];
    let mut n = 0;
    let mut v = i.unsigned_abs();
    while v > 0 {
        buf[n] = b'0' + (v % 10) as u8;
        v /= 10;
        n += 1;
    }
    is_card(buf[..n].iter().rev().copied())
}

fn ssn(text: &str) -> bool {
    let (area, group, serial) = (&text[0..3], &text[4..6], &text[7..11]);
    area != "000" && area != "666" && area < "900" && group != "00" && serial != "0000"
}

fn before(s: &str, start: usize) -> Option<char> {
    s[..start].chars().next_back()
}

fn after(s: &str, end: usize) -> Option<char> {
    s[end..].chars().next()
}

fn is_word(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// The end of the address in the candidate `s[start..end]`, if it is one.
fn ip(s: &str, start: usize, end: usize) -> Option<usize> {
    let text = &s[start..end];
    if text.contains(':') {
        let prev = before(s, start);
        if is_word(prev)
            || matches!(prev, Some('.' | ':'))
            || !text.bytes().any(|b| b.is_ascii_digit())
        {
            return None;
        }
        // The candidate may take in a colon that punctuates the text: `2001:db8::1: refused`.
        let end = if text.parse::<Ipv6Addr>().is_ok() {
            end
        } else if text.ends_with(':') && text[..text.len() - 1].parse::<Ipv6Addr>().is_ok() {
            end - 1
        } else {
            return None;
        };
        (!is_word(after(s, end))).then_some(end)
    } else {
        let rest = &s[end..];
        let dotted_on =
            rest.starts_with('.') && rest[1..].starts_with(|c: char| c.is_ascii_digit());
        (text.parse::<Ipv4Addr>().is_ok() && before(s, start) != Some('.') && !dotted_on)
            .then_some(end)
    }
}

/// Finds IBANs in a candidate that may run on into following upper-case words: the longest
/// prefix made of whole space-separated groups that passes the mod-97 check.
fn ibans(s: &str, start: usize, end: usize, rule: usize, hits: &mut Vec<Hit>) {
    let text = &s[start..end];
    let mut ends: Vec<usize> = text.match_indices(' ').map(|(i, _)| i).collect();
    ends.push(text.len());
    for &e in ends.iter().rev() {
        if iban_ok(&text[..e]) {
            hits.push(Hit {
                start,
                end: start + e,
                rule,
            });
            return;
        }
    }
}

fn iban_ok(text: &str) -> bool {
    let compact = || text.bytes().filter(|&b| b != b' ');
    let len = compact().count();
    if !(15..=34).contains(&len) {
        return false;
    }
    let mut rem = 0u32;
    for b in compact().skip(4).chain(compact().take(4)) {
        rem = match b {
            b'0'..=b'9' => (rem * 10 + u32::from(b - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(b - b'A') + 10) % 97,
            _ => return false,
        };
    }
    rem == 1
}

fn phone(s: &str, start: usize, end: usize) -> bool {
    let text = &s[start..end];
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    let prev = before(s, start);
    let plausible = if text.starts_with('+') {
        (8..=15).contains(&digits)
    } else {
        digits == 10
    };
    plausible && !is_word(prev) && prev != Some('+') && !is_word(after(s, end))
}
