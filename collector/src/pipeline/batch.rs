//! The unit of data that flows through a pipeline.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::encoding::message;

use super::delivery::Delivery;
use super::metadata::Metadata;
use super::signal::{self, Signal, Traces};
use crate::otlp::wire;

/// A batch of one signal's data (spans, log records or data points: its *items*), plus the
/// delivery tracking that travels with it.
///
/// Data travels in one of two forms:
/// - **encoded**: the OTLP protobuf bytes a receiver got, checked (as strictly as a decoder
///   would) but not decoded. Merging concatenates them, exporters that send protobuf write
///   them as they are, and plugins get them without re-encoding. Most pipelines never decode
///   an item.
/// - **decoded**: prost structures, for stages that read or edit items. An encoded batch is
///   decoded the first time a stage asks for [`Batch::resources`], once, however many stages
///   share it.
///
/// Both are shared copy-on-write: a fan-out to several exporters, or a retry that keeps the
/// batch while trying, only bumps a reference count; a stage that edits items calls
/// [`Batch::resources_mut`], which copies only when the data is shared.
#[derive(Debug)]
pub struct Batch<S: Signal> {
    payload: Payload<S>,
    /// Who must hear when this data has been delivered (empty for receivers that do not care).
    pub delivery: Delivery,
    /// Metadata of the request(s) the data came from (empty unless a receiver was told to
    /// include it); see [`Batch::merge`] for what survives merging.
    pub metadata: Metadata,
}

/// A batch of spans.
pub type TraceBatch = Batch<Traces>;

// Not derived: `derive` would ask `S: Clone` and `S: Default` of the signal marker.
impl<S: Signal> Clone for Batch<S> {
    fn clone(&self) -> Self {
        Self {
            payload: self.payload.clone(),
            delivery: self.delivery.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

impl<S: Signal> Default for Batch<S> {
    fn default() -> Self {
        Self {
            payload: Payload::default(),
            delivery: Delivery::default(),
            metadata: Metadata::default(),
        }
    }
}

#[derive(Debug)]
enum Payload<S: Signal> {
    Decoded(Arc<Vec<S::Resource>>),
    Encoded(Arc<Encoded<S>>),
}

impl<S: Signal> Clone for Payload<S> {
    fn clone(&self) -> Self {
        match self {
            Payload::Decoded(d) => Payload::Decoded(d.clone()),
            Payload::Encoded(e) => Payload::Encoded(e.clone()),
        }
    }
}

impl<S: Signal> Default for Payload<S> {
    fn default() -> Self {
        Payload::Decoded(Arc::default())
    }
}

/// Checked protobuf: the parts, concatenated, are one export request encoding (a repeated
/// field's encodings concatenate into the encoding of the union).
#[derive(Debug)]
struct Encoded<S: Signal> {
    /// Each part with the number of items it holds, so splits at part boundaries need no
    /// decoding.
    parts: Vec<(Bytes, usize)>,
    items: usize,
    bytes: usize,
    /// Filled the first time a stage reads the items.
    decoded: OnceLock<Arc<Vec<S::Resource>>>,
}

impl<S: Signal> Default for Encoded<S> {
    fn default() -> Self {
        Self {
            parts: Vec::new(),
            items: 0,
            bytes: 0,
            decoded: OnceLock::new(),
        }
    }
}

impl<S: Signal> Clone for Encoded<S> {
    // A clone is made to be changed (merged, split), which makes the decoded cache stale.
    fn clone(&self) -> Self {
        Encoded {
            parts: self.parts.clone(),
            items: self.items,
            bytes: self.bytes,
            decoded: OnceLock::new(),
        }
    }
}

impl<S: Signal> Encoded<S> {
    fn decode(&self) -> Vec<S::Resource> {
        let mut out = Vec::new();
        for (part, _) in &self.parts {
            match S::decode(part.as_ref()) {
                Ok(resources) => out.extend(resources),
                // `S::check` accepted these bytes and accepts exactly what prost does (a
                // differential test holds it to that), so this is a defect, not bad input.
                Err(e) => {
                    tracing::error!(error = %e, signal = %S::KIND, "checked OTLP bytes failed to decode; part lost")
                }
            }
        }
        out
    }

    fn push(&mut self, part: Bytes, items: usize) {
        self.bytes += part.len();
        self.items += items;
        self.parts.push((part, items));
    }
}

impl<S: Signal> Batch<S> {
    /// A batch of decoded data, with no delivery tracking.
    pub fn new(resources: Vec<S::Resource>) -> Self {
        Self {
            payload: Payload::Decoded(Arc::new(resources)),
            delivery: Delivery::default(),
            metadata: Metadata::default(),
        }
    }

    /// A batch of OTLP protobuf bytes (the signal's export request, equally its `*Data`
    /// message), checked but not decoded.
    pub fn from_protobuf(bytes: Bytes) -> Result<Self, wire::WireError> {
        let items = S::check(&bytes)?;
        let mut encoded = Encoded::default();
        if items > 0 {
            encoded.push(bytes, items);
        }
        Ok(Self {
            payload: Payload::Encoded(Arc::new(encoded)),
            delivery: Delivery::default(),
            metadata: Metadata::default(),
        })
    }

    /// A batch of protobuf bytes the caller built itself from checked parts (so checking them
    /// again would be wasted work; debug builds still do), holding `items` items.
    pub fn from_trusted_protobuf(bytes: Bytes, items: usize) -> Self {
        Self::from_trusted_parts([(bytes, items)])
    }

    /// [`Batch::from_trusted_protobuf`] for several requests, each with its item count.
    pub fn from_trusted_parts(parts: impl IntoIterator<Item = (Bytes, usize)>) -> Self {
        let mut encoded = Encoded::default();
        for (bytes, items) in parts {
            debug_assert_eq!(
                S::check(&bytes).ok(),
                Some(items),
                "built protobuf must be valid"
            );
            if items > 0 {
                encoded.push(bytes, items);
            }
        }
        Self {
            payload: Payload::Encoded(Arc::new(encoded)),
            delivery: Delivery::default(),
            metadata: Metadata::default(),
        }
    }

    /// The same batch with delivery tracking attached.
    pub fn with_delivery(mut self, delivery: Delivery) -> Self {
        self.delivery = delivery;
        self
    }

    /// The same batch with request metadata attached.
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// The data, decoding it first (once) if the batch still holds protobuf bytes.
    pub fn resources(&self) -> &[S::Resource] {
        match &self.payload {
            Payload::Decoded(rs) => rs,
            Payload::Encoded(e) => e.decoded.get_or_init(|| Arc::new(e.decode())),
        }
    }

    /// The data as a shared vector (decoded if needed), for senders that keep it.
    pub fn shared_resources(&self) -> Arc<Vec<S::Resource>> {
        match &self.payload {
            Payload::Decoded(rs) => rs.clone(),
            Payload::Encoded(e) => e.decoded.get_or_init(|| Arc::new(e.decode())).clone(),
        }
    }

    /// Mutable access to the data, decoding it first if needed and copying it if another
    /// stage shares it. The batch is decoded from then on.
    pub fn resources_mut(&mut self) -> &mut Vec<S::Resource> {
        if let Payload::Encoded(_) = self.payload {
            self.payload = Payload::Decoded(self.shared_resources());
        }
        match &mut self.payload {
            Payload::Decoded(rs) => Arc::make_mut(rs),
            Payload::Encoded(_) => unreachable!("decoded just above"),
        }
    }

    /// Replaces the data (a stage that rebuilt the batch).
    pub fn set_resources(&mut self, resources: Vec<S::Resource>) {
        self.payload = Payload::Decoded(Arc::new(resources));
    }

    /// Replaces the data with protobuf the caller built from checked parts (see
    /// [`Batch::from_trusted_protobuf`]); delivery tracking and metadata stay.
    pub fn set_trusted_protobuf(&mut self, bytes: Bytes, items: usize) {
        self.payload = Self::from_trusted_protobuf(bytes, items).payload;
    }

    /// Replaces the data with `other`'s; delivery tracking and metadata stay.
    pub fn set_payload_of(&mut self, other: Self) {
        self.payload = other.payload;
    }

    /// Takes the data out, decoding it if needed and copying it only if it is shared.
    pub fn into_resources(mut self) -> Vec<S::Resource> {
        std::mem::take(self.resources_mut())
    }

    /// The protobuf parts (concatenated: one export request) when the batch still holds the
    /// bytes it was received as; `None` once decoded.
    pub fn protobuf_parts(&self) -> Option<impl ExactSizeIterator<Item = &Bytes>> {
        match &self.payload {
            Payload::Encoded(e) => Some(e.parts.iter().map(|(b, _)| b)),
            Payload::Decoded(_) => None,
        }
    }

    /// Length of [`Batch::encode_protobuf`]'s output.
    pub fn protobuf_len(&self) -> usize {
        match &self.payload {
            Payload::Encoded(e) => e.bytes,
            Payload::Decoded(rs) => message::encoded_len_repeated(1, rs),
        }
    }

    /// Appends the batch as one export request (equally, `*Data` message) encoding: the
    /// received bytes as they are, or the decoded data encoded.
    pub fn encode_protobuf(&self, out: &mut Vec<u8>) {
        match &self.payload {
            Payload::Encoded(e) => {
                out.reserve(e.bytes);
                for (part, _) in &e.parts {
                    out.extend_from_slice(part);
                }
            }
            Payload::Decoded(rs) => {
                out.reserve(message::encoded_len_repeated(1, rs));
                message::encode_repeated(1, rs, out);
            }
        }
    }

    /// The batch as one protobuf buffer; free when it holds exactly one received part.
    pub fn to_protobuf(&self) -> Bytes {
        if let Payload::Encoded(e) = &self.payload
            && let [(part, _)] = e.parts.as_slice()
        {
            return part.clone();
        }
        let mut out = Vec::with_capacity(self.protobuf_len());
        self.encode_protobuf(&mut out);
        Bytes::from(out)
    }

    /// Number of items (spans, log records, data points) in the batch.
    pub fn item_count(&self) -> usize {
        match &self.payload {
            Payload::Decoded(rs) => signal::count(rs),
            Payload::Encoded(e) => e.items,
        }
    }

    /// True when the batch holds no item.
    pub fn is_empty(&self) -> bool {
        self.item_count() == 0
    }

    /// Appends `other` (data and delivery tracking) to this batch. Two encoded batches stay
    /// encoded (their bytes are concatenated); otherwise both are decoded.
    ///
    /// Metadata survives only if both sides agree: merging data of different requests (say,
    /// two tenants) leaves the merged batch with none, so nothing downstream routes one
    /// request's data by another's metadata. An empty batch takes `other`'s metadata as is.
    pub fn merge(&mut self, other: Self) {
        if self.is_empty() {
            self.payload = other.payload;
            self.metadata = other.metadata;
        } else {
            if self.metadata != other.metadata {
                self.metadata = Metadata::default();
            }
            match (&mut self.payload, other.payload) {
                (Payload::Encoded(mine), Payload::Encoded(theirs)) => {
                    let mine = Arc::make_mut(mine);
                    // Mutating invalidates a decoded cache `make_mut` did not clone away.
                    mine.decoded = OnceLock::new();
                    for (part, items) in Arc::unwrap_or_clone(theirs).parts {
                        mine.push(part, items);
                    }
                }
                (_, theirs) => {
                    let theirs = Self {
                        payload: theirs,
                        ..Self::default()
                    };
                    let theirs = theirs.into_resources();
                    self.resources_mut().extend(theirs);
                }
            }
        }
        self.delivery.merge(other.delivery);
    }

    /// Splits off and returns the first `n` items; `self` keeps the rest.
    ///
    /// An encoded batch whose parts add up to exactly `n` splits without decoding. Otherwise,
    /// the descriptions (resource, scope, metric) are copied into both halves where a group is
    /// cut, so each half is a valid OTLP payload on its own. Both halves share the delivery
    /// tracking and metadata.
    pub fn split_front(&mut self, n: usize) -> Self {
        let delivery = self.delivery.clone();
        let metadata = self.metadata.clone();
        if n >= self.item_count() {
            return Self {
                payload: std::mem::take(&mut self.payload),
                delivery,
                metadata,
            };
        }
        if let Payload::Encoded(e) = &mut self.payload
            && let Some(cut) = part_boundary(&e.parts, n)
        {
            let e = Arc::make_mut(e);
            e.decoded = OnceLock::new();
            let rest = e.parts.split_off(cut);
            let front = std::mem::replace(&mut e.parts, rest);
            let mut first = Encoded::default();
            for (part, items) in front {
                first.push(part, items);
            }
            e.items -= first.items;
            e.bytes -= first.bytes;
            return Self {
                payload: Payload::Encoded(Arc::new(first)),
                delivery,
                metadata,
            };
        }
        let front = signal::split_front(self.resources_mut(), n);
        Self {
            payload: Payload::Decoded(Arc::new(front)),
            delivery,
            metadata,
        }
    }
}

/// The number of leading parts that hold exactly `n` items, if there is such a cut.
fn part_boundary(parts: &[(Bytes, usize)], n: usize) -> Option<usize> {
    let mut total = 0;
    for (i, (_, items)) in parts.iter().enumerate() {
        if total == n {
            return Some(i);
        }
        total += items;
        if total > n {
            return None;
        }
    }
    None
}

/// Number of spans in a slice of resource spans.
pub fn count_spans(resource_spans: &[ResourceSpans]) -> usize {
    signal::count(resource_spans)
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ScopeSpans, Span};

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
        b.resources()
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .map(|s| s.span_id[0])
            .collect()
    }

    #[test]
    fn split_front_cuts_inside_scopes_and_keeps_order() {
        let mut b = batch(&[&[2, 3], &[4]]);
        assert_eq!(b.item_count(), 9);
        let front = b.split_front(3);
        assert_eq!(ids(&front), vec![1, 2, 3]);
        assert_eq!(ids(&b), vec![4, 5, 6, 7, 8, 9]);
        let front = b.split_front(4);
        assert_eq!(ids(&front), vec![4, 5, 6, 7]);
        assert_eq!(front.resources().len(), 2);
        assert_eq!(ids(&b), vec![8, 9]);
        let front = b.split_front(10);
        assert_eq!(ids(&front), vec![8, 9]);
        assert!(b.is_empty());
    }

    #[test]
    fn merge_appends() {
        let mut a = batch(&[&[1]]);
        a.merge(batch(&[&[2]]));
        assert_eq!(a.item_count(), 3);
        assert_eq!(a.resources().len(), 2);
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
        assert_eq!(a.item_count(), 3);
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

    fn encoded(shape: &[&[usize]]) -> TraceBatch {
        let mut out = Vec::new();
        batch(shape).encode_protobuf(&mut out);
        TraceBatch::from_protobuf(Bytes::from(out)).unwrap()
    }

    fn is_encoded(b: &TraceBatch) -> bool {
        b.protobuf_parts().is_some()
    }

    #[test]
    fn encoded_batches_merge_and_split_at_parts_without_decoding() {
        let mut a = encoded(&[&[2, 3]]);
        a.merge(encoded(&[&[4]]));
        assert!(is_encoded(&a));
        assert_eq!(a.item_count(), 9);
        assert_eq!(a.protobuf_parts().unwrap().len(), 2);

        // A cut between the parts keeps both halves encoded.
        let front = a.split_front(5);
        assert!(is_encoded(&front) && is_encoded(&a));
        assert_eq!((front.item_count(), a.item_count()), (5, 4));
        assert_eq!(ids(&front), vec![1, 2, 3, 4, 5]);

        // The merged bytes are one valid request holding both.
        let mut b = encoded(&[&[1]]);
        b.merge(encoded(&[&[2]]));
        let bytes = b.to_protobuf();
        let again = TraceBatch::from_protobuf(bytes).unwrap();
        assert_eq!(again.resources(), b.resources());
        assert_eq!(again.item_count(), 3);
    }

    #[test]
    fn encoded_batches_decode_when_cut_inside_a_part_or_mixed() {
        let mut a = encoded(&[&[2, 3], &[4]]);
        let front = a.split_front(3);
        assert!(!is_encoded(&a));
        assert_eq!(ids(&front), vec![1, 2, 3]);
        assert_eq!(ids(&a), vec![4, 5, 6, 7, 8, 9]);

        let mut mixed = encoded(&[&[1]]);
        mixed.merge(batch(&[&[2]]));
        assert!(!is_encoded(&mixed));
        assert_eq!(ids(&mixed), vec![1, 1, 2]);
    }

    #[test]
    fn a_single_part_is_handed_on_without_copying() {
        let b = encoded(&[&[3]]);
        let part = b.protobuf_parts().unwrap().next().unwrap().clone();
        assert_eq!(b.to_protobuf().as_ptr(), part.as_ptr());
        assert_eq!(b.protobuf_len(), part.len());
    }

    #[test]
    fn editing_an_encoded_batch_decodes_it_once() {
        let mut b = encoded(&[&[2]]);
        let shared = b.clone();
        b.resources_mut()[0].scope_spans[0].spans.pop();
        assert!(!is_encoded(&b));
        assert_eq!(b.item_count(), 1);
        // The other holder still sees the bytes as received.
        assert_eq!(shared.item_count(), 2);
        assert!(is_encoded(&shared));
        let mut out = Vec::new();
        b.encode_protobuf(&mut out);
        assert_eq!(out.len(), b.protobuf_len());
        assert_eq!(
            TraceBatch::from_protobuf(Bytes::from(out))
                .unwrap()
                .item_count(),
            1
        );
    }

    #[test]
    fn invalid_bytes_are_refused() {
        let mut out = Vec::new();
        batch(&[&[2]]).encode_protobuf(&mut out);
        out.truncate(out.len() - 1);
        assert!(TraceBatch::from_protobuf(Bytes::from(out)).is_err());
    }
}
