//! Patterns with `*` wildcards, for allow-lists in configs (CORS origins such as
//! `https://*.example.com`, Kafka topics such as `tenant-*`): `*` stands for any run of
//! characters, possibly empty; every other character stands for itself.

/// True when `value` matches `pattern` as a whole.
pub fn matches(pattern: &str, value: &str) -> bool {
    let (p, v) = (pattern.as_bytes(), value.as_bytes());
    let (mut pi, mut vi) = (0, 0);
    // The last `*` seen and the value position it was tried at: on a mismatch, that star
    // takes one more character. Linear in practice, never exponential.
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, vi));
            pi += 1;
        } else if pi < p.len() && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// True when `value` matches any of `patterns`.
pub fn any_matches<S: AsRef<str>>(patterns: &[S], value: &str) -> bool {
    patterns.iter().any(|p| matches(p.as_ref(), value))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn star_matches_any_run() {
        assert!(matches("tenant-*", "tenant-acme"));
        assert!(matches("tenant-*", "tenant-"));
        assert!(!matches("tenant-*", "tenant"));
        assert!(matches("https://*.example.com", "https://app.example.com"));
        assert!(matches("https://*.example.com", "https://a.b.example.com"));
        assert!(!matches("https://*.example.com", "https://example.com"));
        assert!(!matches(
            "https://*.example.com",
            "https://evil.com/.example.com.x"
        ));
        assert!(!matches("https://*.example.com", "http://app.example.com"));
        assert!(matches("*", ""));
        assert!(matches("a*b*c", "aXXbYYbc"));
        assert!(!matches("a*b*c", "aXXbYYb"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exact2"));
        assert!(!matches("exact", "exac"));
    }
}
