//! Validating and reading protobuf-encoded OTLP requests without decoding them.
//!
//! A receiver that passes on what a client sent has no need for prost's heap structures (an
//! allocation per id, string, attribute and list). It does need two things: to know that prost
//! would accept the bytes, and to know how many items they hold. [`validate`] (traces),
//! [`validate_logs`] and [`validate_metrics`] find both in one pass that allocates nothing.
//! [`TracesView`] then reads fields straight out of validated trace bytes.
//!
//! [`validate`] accepts exactly the inputs that
//! `opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode` (prost
//! 0.14, opentelemetry-proto 0.33) accepts, [`validate_logs`] those of
//! `ExportLogsServiceRequest::decode` and [`validate_metrics`] those of
//! `ExportMetricsServiceRequest::decode`. The bytes will be decoded again downstream, and
//! every place that decodes them must agree. When it rejects an input, its error message matches
//! prost's. To get that, it copies prost's rules one for one:
//!
//! - A varint is at most ten bytes, and the tenth byte may not overflow a `u64`. A key must fit
//!   in 32 bits, have wire type 0 to 5 and a nonzero field number.
//! - A known field must have its declared wire type. Strings must be UTF-8. Enums take any
//!   varint. A repeated numeric field (only metrics have them) takes its elements one by one or
//!   packed in a length-delimited run, which is read like a nested message but spends no budget;
//!   other numeric fields never take packed encoding.
//! - A singular message field given twice merges, and a oneof member given again merges into
//!   the one set before, while another member replaces it: counts follow what prost ends up
//!   with (`Metric.data`).
//! - A nested message is read the way prost's `merge_loop` reads one: fields are read against the
//!   whole buffer, and the message's end is checked only between fields. A field that runs past
//!   the end of its message therefore fails where prost fails and with the same error, which is
//!   often "delimited length exceeded" instead of "buffer underflow".
//! - The recursion budget works like prost's `DecodeContext`: 100 at the top level. Each nested
//!   message and each level of an unknown group spends one, and skipping any unknown field
//!   needs budget left.
//! - Unknown fields, groups included, are skipped the way `prost::encoding::skip_field` skips
//!   them.
//!
//! The schema includes the fields that opentelemetry-proto 0.33 adds and receivers never read:
//! `KeyValue.key_strindex`, `AnyValue.string_value_strindex`, `Resource.entity_refs`. They must
//! still be validated, because a bad value in them makes prost fail.
//!
//! The views read fields with the plugin SDK's reader (`wasmcol_plugin_sdk::wire`), the one the
//! byte-level edit applier there (`wasmcol_plugin_sdk::wire::edit`) uses on validated batches.
//! Stages that assemble messages from bytes they hold write fields with [`write_bytes_field`].

mod cursor;
mod error;
mod logs;
mod metrics;
mod traces;
mod views;
mod write;

#[cfg(test)]
mod tests;

pub use cursor::valid_id;
pub use error::{ErrorKind, WireError};
pub use logs::{ValidatedLogs, validate_logs};
pub use metrics::{ValidatedMetrics, validate_metrics};
pub use traces::{Validated, validate};
pub use views::{
    ResourceSpansView, ScopeSpansView, SpanView, TracesView, numeric_attribute,
    resource_string_attribute,
};
/// The field reader the plugin SDK's byte-level edit applier (`wasmcol_plugin_sdk::wire::edit`)
/// walks batches with: one reader for the views here, the host and the SDK.
pub use wasmcol_plugin_sdk::wire::{RawField, key_value_key, raw_fields, raw_fields_numbered};
pub use write::write_bytes_field;
