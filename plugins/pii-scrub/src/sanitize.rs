//! Structure-aware sanitizers: URL query parameters and credentials, SQL literals. Each returns
//! `None` when it changed nothing, so untouched values cost no allocation.
//!
//! Searches for a delimiter go through `memchr`, which looks at 16 bytes at a time in the
//! sandbox (simd128) where `str::find` looks at four.

use memchr::{memchr, memchr_iter, memchr3, memmem, memrchr};

/// What to do with a URL secret.
pub enum UrlSecret<'a> {
    /// Write a replacement for the value into the output.
    Replace(&'a mut dyn FnMut(&str, &mut String)),
    /// Drop the parameter (or the `:password`).
    Drop,
}

/// Redacts the values of query parameters named in `params` (lower-case, compared ignoring
/// ASCII case) and, with `userinfo`, the password in `scheme://user:password@host`. A value
/// without `://` or `?` that holds `=` is taken as a bare query string (`url.query`).
pub fn url(
    s: &str,
    params: &[String],
    userinfo: bool,
    mut secret: UrlSecret<'_>,
) -> Option<String> {
    let mut out = String::new();
    let mut pos = 0;
    let mut changed = false;
    let drop = matches!(secret, UrlSecret::Drop);
    let mut redact = |out: &mut String, value: &str| match &mut secret {
        UrlSecret::Replace(f) => f(value, out),
        UrlSecret::Drop => {}
    };

    let b = s.as_bytes();
    let scheme_end = scheme_end(b);
    if let (true, Some(i)) = (userinfo, scheme_end) {
        let auth = i + 3;
        let auth_end = memchr3(b'/', b'?', b'#', &b[auth..]).map_or(s.len(), |j| auth + j);
        if let Some(at) = memrchr(b'@', &b[auth..auth_end])
            && let Some(colon) = memchr(b':', &b[auth..auth + at])
            && colon + 1 < at
        {
            let (pw_start, pw_end) = (auth + colon + 1, auth + at);
            out.push_str(&s[pos..if drop { pw_start - 1 } else { pw_start }]);
            redact(&mut out, &s[pw_start..pw_end]);
            pos = pw_end;
            changed = true;
        }
    }

    let (q_start, q_end) = if let Some(q) = memchr(b'?', b) {
        (
            q + 1,
            memchr(b'#', &b[q + 1..]).map_or(s.len(), |h| q + 1 + h),
        )
    } else if scheme_end.is_none() && !s.starts_with('/') && memchr(b'=', b).is_some() {
        (0, memchr(b'#', b).unwrap_or(s.len()))
    } else {
        (s.len(), s.len())
    };
    let mut p = q_start;
    while p < q_end {
        let amp = memchr(b'&', &b[p..q_end]).map_or(q_end, |k| p + k);
        let pair = &s[p..amp];
        if let Some(eq) = memchr(b'=', pair.as_bytes()) {
            let (name, value) = (&pair[..eq], &pair[eq + 1..]);
            if !value.is_empty() && params.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                if drop {
                    out.push_str(&s[pos..p]);
                    if amp == q_end && out.ends_with('&') {
                        out.pop();
                    }
                    pos = if amp < q_end { amp + 1 } else { amp };
                } else {
                    out.push_str(&s[pos..p + eq + 1]);
                    redact(&mut out, value);
                    pos = amp;
                }
                changed = true;
            }
        }
        p = amp + 1;
    }
    if !changed {
        return None;
    }
    out.push_str(&s[pos..]);
    Some(out)
}

/// Where the first `://` starts. The scheme's colon is usually the first colon, so this finds
/// it by `memchr`, without the searcher `memmem::find` builds on every call.
fn scheme_end(b: &[u8]) -> Option<usize> {
    memchr_iter(b':', b).find(|&i| b[i + 1..].starts_with(b"//"))
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The position just after the quoted text starting at `start` (a quote character `q`);
/// a doubled quote or a backslash escapes. Unterminated text runs to the end.
fn skip_quoted(b: &[u8], start: usize, q: u8) -> usize {
    let mut j = start + 1;
    while j < b.len() {
        if b[j] == b'\\' && q == b'\'' {
            j += 2;
            continue;
        }
        if b[j] == q {
            if b.get(j + 1) == Some(&q) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// Bytes that may start a literal, a comment or a quoted identifier. Every other byte is
/// copied as it is, and the sanitizer skips runs of them in one tight loop: in the sandbox,
/// each turn of the general loop below costs several times more than a table lookup.
static STARTS: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = matches!(
            c as u8,
            b'-' | b'/' | b'\'' | b'"' | b'`' | b'$' | b'.' | b'0'..=b'9'
        );
        c += 1;
    }
    t
};

/// Replaces SQL literals with `?`: quoted strings (with `E`/`N`/`X`/`B` prefixes),
/// dollar-quoted strings and numbers. Identifiers (also `"quoted"` and `` `quoted` ``),
/// keywords, `$1` placeholders and comments are kept.
#[inline(never)]
pub fn sql(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = String::new();
    let (mut pos, mut i) = (0, 0);
    let mut prev_ident = false;
    let literal = |out: &mut String, pos: &mut usize, start: usize, end: usize| {
        out.push_str(&s[*pos..start]);
        out.push('?');
        *pos = end;
    };
    while i < b.len() {
        let run = b[i..]
            .iter()
            .take_while(|&&c| !STARTS[usize::from(c)])
            .count();
        if run > 0 {
            i += run;
            prev_ident = is_ident(b[i - 1]);
            continue;
        }
        let c = b[i];
        let next = b.get(i + 1).copied();
        match c {
            b'-' if next == Some(b'-') => {
                i = memchr(b'\n', &b[i..]).map_or(b.len(), |n| i + n);
                prev_ident = false;
            }
            b'/' if next == Some(b'*') => {
                i = memmem::find(&b[i + 2..], b"*/").map_or(b.len(), |n| i + 2 + n + 2);
                prev_ident = false;
            }
            b'\'' => {
                let prefixed = i >= 1
                    && matches!(b[i - 1].to_ascii_uppercase(), b'E' | b'N' | b'X' | b'B')
                    && (i < 2 || !is_ident(b[i - 2]));
                let start = if prefixed { i - 1 } else { i };
                let end = skip_quoted(b, i, b'\'');
                literal(&mut out, &mut pos, start, end);
                i = end;
                prev_ident = false;
            }
            b'"' | b'`' => {
                i = skip_quoted(b, i, c);
                prev_ident = false;
            }
            b'$' if next.is_some_and(|n| n.is_ascii_digit()) => {
                i += 1;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                prev_ident = false;
            }
            b'$' if !prev_ident => {
                // `$$…$$` or `$tag$…$tag$`.
                let tag_len = b[i + 1..]
                    .iter()
                    .position(|&x| !(x.is_ascii_alphanumeric() || x == b'_'));
                match tag_len.filter(|&n| b[i + 1 + n] == b'$') {
                    Some(n) => {
                        let tag = &s[i..i + n + 2];
                        let body = i + n + 2;
                        let end = memmem::find(&b[body..], tag.as_bytes())
                            .map_or(b.len(), |k| body + k + tag.len());
                        literal(&mut out, &mut pos, i, end);
                        i = end;
                    }
                    None => i += 1,
                }
                prev_ident = false;
            }
            b'0'..=b'9' | b'.'
                if !prev_ident && (c != b'.' || next.is_some_and(|n| n.is_ascii_digit())) =>
            {
                let start = i;
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'e' | b'E' if matches!(b.get(i + 1), Some(b'+' | b'-')) => i += 2,
                        x if x.is_ascii_alphanumeric() || x == b'.' || x == b'_' => i += 1,
                        _ => break,
                    }
                }
                literal(&mut out, &mut pos, start, i);
                prev_ident = false;
            }
            _ => {
                prev_ident = is_ident(c);
                i += 1;
            }
        }
    }
    if pos == 0 {
        return None;
    }
    out.push_str(&s[pos..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The sanitizer as first written, one byte per turn: the fast path must not change what
    /// it does.
    fn sql_byte_by_byte(s: &str) -> Option<String> {
        let b = s.as_bytes();
        let mut out = String::new();
        let (mut pos, mut i) = (0, 0);
        let mut prev_ident = false;
        let literal = |out: &mut String, pos: &mut usize, start: usize, end: usize| {
            out.push_str(&s[*pos..start]);
            out.push('?');
            *pos = end;
        };
        while i < b.len() {
            let c = b[i];
            let next = b.get(i + 1).copied();
            match c {
                b'-' if next == Some(b'-') => {
                    i = memchr(b'\n', &b[i..]).map_or(b.len(), |n| i + n);
                    prev_ident = false;
                }
                b'/' if next == Some(b'*') => {
                    i = memmem::find(&b[i + 2..], b"*/").map_or(b.len(), |n| i + 2 + n + 2);
                    prev_ident = false;
                }
                b'\'' => {
                    let prefixed = i >= 1
                        && matches!(b[i - 1].to_ascii_uppercase(), b'E' | b'N' | b'X' | b'B')
                        && (i < 2 || !is_ident(b[i - 2]));
                    let start = if prefixed { i - 1 } else { i };
                    let end = skip_quoted(b, i, b'\'');
                    literal(&mut out, &mut pos, start, end);
                    i = end;
                    prev_ident = false;
                }
                b'"' | b'`' => {
                    i = skip_quoted(b, i, c);
                    prev_ident = false;
                }
                b'$' if next.is_some_and(|n| n.is_ascii_digit()) => {
                    i += 1;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    prev_ident = false;
                }
                b'$' if !prev_ident => {
                    // `$$…$$` or `$tag$…$tag$`.
                    let tag_len = b[i + 1..]
                        .iter()
                        .position(|&x| !(x.is_ascii_alphanumeric() || x == b'_'));
                    match tag_len.filter(|&n| b[i + 1 + n] == b'$') {
                        Some(n) => {
                            let tag = &s[i..i + n + 2];
                            let body = i + n + 2;
                            let end = s[body..]
                                .find(tag)
                                .map_or(b.len(), |k| body + k + tag.len());
                            literal(&mut out, &mut pos, i, end);
                            i = end;
                        }
                        None => i += 1,
                    }
                    prev_ident = false;
                }
                b'0'..=b'9' | b'.'
                    if !prev_ident && (c != b'.' || next.is_some_and(|n| n.is_ascii_digit())) =>
                {
                    let start = i;
                    i += 1;
                    while i < b.len() {
                        match b[i] {
                            b'e' | b'E' if matches!(b.get(i + 1), Some(b'+' | b'-')) => i += 2,
                            x if x.is_ascii_alphanumeric() || x == b'.' || x == b'_' => i += 1,
                            _ => break,
                        }
                    }
                    literal(&mut out, &mut pos, start, i);
                    prev_ident = false;
                }
                _ => {
                    prev_ident = is_ident(c);
                    i += 1;
                }
            }
        }
        if pos == 0 {
            return None;
        }
        out.push_str(&s[pos..]);
        Some(out)
    }

    proptest! {
        #[test]
        fn skipping_runs_changes_nothing(s in "([a-zA-Z_ ,()=<>*+;\n]|[0-9.eE+-]|['\"`$/*-]|é|\\\\){0,60}") {
            prop_assert_eq!(sql(&s), sql_byte_by_byte(&s));
        }
    }
}
