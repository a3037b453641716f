//! The unit of data that flows through a pipeline.

use std::sync::Arc;

use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

use super::delivery::Delivery;
use super::metadata::Metadata;

/// A batch of spans as decoded from OTLP, plus the delivery tracking that travels with it.
///
/// Data is decoded once at the edge (receiver) and shared copy-on-write: a fan-out to several
/// exporters, or a retry that keeps the batch while trying, only bumps a reference count; a
/// stage that edits spans calls [`TraceBatch::resource_spans_mut`], which copies only when the
/// data is shared.
#[derive(Debug, Clone, Default)]
pub struct TraceBatch {
    /// The spans, grouped by resource and scope exactly as OTLP groups them.
    pub resource_spans: Arc<Vec<ResourceSpans>>,
    /// Who must hear when this data has been delivered (empty for receivers that do not care).
    pub delivery: Delivery,
    /// Metadata of the request(s) the spans came from (empty unless a receiver was told to
    /// include it); see [`TraceBatch::merge`] for what survives merging.
    pub metadata: Metadata,
}

impl TraceBatch {
    /// A batch with no delivery tracking.
    pub fn new(resource_spans: Vec<ResourceSpans>) -> Self {
        Self {
            resource_spans: Arc::new(resource_spans),
            delivery: Delivery::default(),
            metadata: Metadata::default(),
        }
    }

    /// The same batch with request metadata attached.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Mutable access to the spans, copying them first if another stage shares them.
    pub fn resource_spans_mut(&mut self) -> &mut Vec<ResourceSpans> {
        Arc::make_mut(&mut self.resource_spans)
    }

    /// Takes the spans out, copying them only if they are shared.
    pub fn into_resource_spans(self) -> Vec<ResourceSpans> {
        Arc::unwrap_or_clone(self.resource_spans)
    }

    /// Number of spans in the batch.
    pub fn span_count(&self) -> usize {
        count_spans(&self.resource_spans)
    }

    /// True when the batch holds no span.
    pub fn is_empty(&self) -> bool {
        self.span_count() == 0
    }

    /// Appends `other` (data and delivery tracking) to this batch.
    ///
    /// Metadata survives only if both sides agree: merging data of different requests (say,
    /// two tenants) leaves the merged batch with none, so nothing downstream routes one
    /// request's spans by another's metadata. An empty batch takes `other`'s metadata as is.
    pub fn merge(&mut self, other: TraceBatch) {
        if self.resource_spans.is_empty() {
            self.resource_spans = other.resource_spans;
            self.metadata = other.metadata;
        } else {
            if self.metadata != other.metadata {
                self.metadata = Metadata::default();
            }
            let theirs = Arc::unwrap_or_clone(other.resource_spans);
            self.resource_spans_mut().extend(theirs);
        }
        self.delivery.merge(other.delivery);
    }

    /// Splits off and returns the first `n` spans; `self` keeps the rest.
    ///
    /// Resource and scope are copied into both halves where a group is cut, so each half is a
    /// valid OTLP payload on its own. Both halves share the delivery tracking and metadata.
    pub fn split_front(&mut self, n: usize) -> TraceBatch {
        let delivery = self.delivery.clone();
        let all = self.resource_spans_mut();
        // Whole resources that fit.
        let mut remaining = n;
        let mut whole = 0;
        for rs in all.iter() {
            let c = count_spans(std::slice::from_ref(rs));
            if c > remaining {
                break;
            }
            remaining -= c;
            whole += 1;
        }
        let mut front: Vec<ResourceSpans> = all.drain(..whole).collect();
        if remaining > 0 && !all.is_empty() {
            // Cut inside the next resource: whole scopes, then part of one scope.
            let rs = &mut all[0];
            let mut whole_scopes = 0;
            for ss in &rs.scope_spans {
                if ss.spans.len() > remaining {
                    break;
                }
                remaining -= ss.spans.len();
                whole_scopes += 1;
            }
            let mut scopes: Vec<ScopeSpans> = rs.scope_spans.drain(..whole_scopes).collect();
            if remaining > 0 {
                let ss = &mut rs.scope_spans[0];
                let rest = ss.spans.split_off(remaining);
                scopes.push(ScopeSpans {
                    scope: ss.scope.clone(),
                    spans: std::mem::replace(&mut ss.spans, rest),
                    schema_url: ss.schema_url.clone(),
                });
            }
            front.push(ResourceSpans {
                resource: rs.resource.clone(),
                scope_spans: scopes,
                schema_url: rs.schema_url.clone(),
            });
        }
        TraceBatch {
            resource_spans: Arc::new(front),
            delivery,
            metadata: self.metadata.clone(),
        }
    }
}

/// Number of spans in a slice of resource spans.
pub fn count_spans(resource_spans: &[ResourceSpans]) -> usize {
    resource_spans
        .iter()
        .flat_map(|rs| rs.scope_spans.iter())
        .map(|ss| ss.spans.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::Span;

    fn batch(shape: &[&[usize]]) -> TraceBatch {
        let mut id = 0u8;
        TraceBatch::new(
            shape
                .iter()
                .map(|scopes| ResourceSpans {
                    scope_spans: scopes
                        .iter()
                        .map(|&n| ScopeSpans {
                            spans: (0..n)
                                .map(|_| {
                                    id += 1;
                                    Span {
                                        span_id: vec![id; 8],
                                        ..Default::default()
                                    }
                                })
                                .collect(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        )
    }

    fn ids(b: &TraceBatch) -> Vec<u8> {
        b.resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| s.span_id[0])
            .collect()
    }

    #[test]
    fn split_front_cuts_inside_scopes_and_keeps_order() {
        let mut b = batch(&[&[2, 3], &[4]]);
        assert_eq!(b.span_count(), 9);
        let front = b.split_front(3);
        assert_eq!(ids(&front), vec![1, 2, 3]);
        assert_eq!(ids(&b), vec![4, 5, 6, 7, 8, 9]);
        let front = b.split_front(4);
        assert_eq!(ids(&front), vec![4, 5, 6, 7]);
        assert_eq!(front.resource_spans.len(), 2);
        assert_eq!(ids(&b), vec![8, 9]);
        let front = b.split_front(10);
        assert_eq!(ids(&front), vec![8, 9]);
        assert!(b.is_empty());
    }

    #[test]
    fn merge_appends() {
        let mut a = batch(&[&[1]]);
        a.merge(batch(&[&[2]]));
        assert_eq!(a.span_count(), 3);
        assert_eq!(a.resource_spans.len(), 2);
    }

    fn tenant(t: &str) -> Metadata {
        Metadata::new([("x-tenant".to_string(), t.to_string())])
    }

    #[test]
    fn merge_keeps_metadata_only_when_equal() {
        let mut a = batch(&[&[1]]).with_metadata(tenant("acme"));
        a.merge(batch(&[&[1]]).with_metadata(tenant("acme")));
        assert_eq!(a.metadata.get("x-tenant"), Some("acme"));
        a.merge(batch(&[&[1]]).with_metadata(tenant("other")));
        assert!(a.metadata.is_empty());
        assert_eq!(a.span_count(), 3);
        // Once lost, it stays lost: a later match does not bring it back.
        a.merge(batch(&[&[1]]).with_metadata(tenant("acme")));
        assert!(a.metadata.is_empty());

        // An empty batch (the batch processor's starting point) takes the other's metadata.
        let mut empty = TraceBatch::default();
        empty.merge(batch(&[&[2]]).with_metadata(tenant("acme")));
        assert_eq!(empty.metadata, tenant("acme"));
        let front = empty.split_front(1);
        assert_eq!(front.metadata, tenant("acme"));
        assert_eq!(empty.metadata, tenant("acme"));
    }
}
