//! Request metadata: what a receiver knew about the request a batch came from (gRPC metadata,
//! HTTP headers), as the OpenTelemetry Collector's `client.Info.Metadata`.

use std::sync::Arc;

/// Request metadata travelling with a batch: `(key, value)` pairs, keys lower-cased, sorted by
/// key (a key may repeat; its values keep their request order). Cloning only bumps a count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Metadata(Arc<[(String, String)]>);

impl Metadata {
    /// Metadata from pairs; keys are lower-cased (HTTP and gRPC keys are case-insensitive).
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut v: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        // Stable: several values of one key keep their order.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Self(v.into())
    }

    /// The first value of `key` (any case), if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.get_all(key).next()
    }

    /// Every value of `key` (any case), in request order.
    pub fn get_all<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a str> + 'a {
        let key = key.to_ascii_lowercase();
        let start = self.0.partition_point(|(k, _)| *k < key);
        self.0[start..]
            .iter()
            .take_while(move |(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// True when there is no pair.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, &str)]) -> Metadata {
        Metadata::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn keys_are_case_insensitive_and_repeats_keep_order() {
        let m = md(&[("X-Tenant", "acme"), ("b", "1"), ("x-tenant", "other")]);
        assert_eq!(m.get("x-tenant"), Some("acme"));
        assert_eq!(m.get("X-TENANT"), Some("acme"));
        assert_eq!(m.get_all("x-tenant").collect::<Vec<_>>(), ["acme", "other"]);
        assert_eq!(m.get("missing"), None);
        assert_eq!(
            m,
            md(&[("b", "1"), ("x-tenant", "acme"), ("X-TENANT", "other")])
        );
        assert!(Metadata::default().is_empty());
    }
}
