//! A plugin that misbehaves on purpose. `config.mode` picks how; it misbehaves only on
//! batches holding a span named `trigger`, and tags the spans of every other batch with
//! `hostile.instance_calls` (how many batches this instance has seen), so a test can tell a
//! fresh instance processed the next batch.
//!
//! - `noop`: touches nothing (the no-op plugin of the benchmarks)
//! - `decode`: decodes the batch and changes nothing (measures decoding in the guest)
//! - `replace`: returns the batch as a full replacement (measures the escape hatch)
//! - `loop`: never returns
//! - `sleep`: sleeps 20 s (`std::thread::sleep`, a blocking WASI wait in host code)
//! - `edits`: answers with 200,000 attribute edits with distinct keys on one span (cheap to
//!   make, a lot of work for the host)
//! - `alias`: answers with 10,000 attribute edits whose values all point at one 1 MiB string
//!   in its memory (10 GiB once lifted string by string, from 1 MiB of guest memory)
//! - `alloc`: keeps allocating 64 MiB blocks, up to 4 GiB
//! - `recurse`: recurses without end
//! - `panic`: panics
//! - `log-flood`: writes 10,000 error lines, each with line breaks, a terminal escape
//!   sequence and a forged log line in it, then succeeds (tagging the spans as usual)
//! - `error`: returns an error
//! - `bad-index`: returns an edit for a span that does not exist
//! - `bad-utf8`: returns an attribute key that is not UTF-8
//! - `bad-replacement`: returns a replacement batch that is not valid protobuf
//! - `oversize`: returns a 16 MiB attribute value
//! - `nested`: sets an attribute whose value is an `AnyValue` nested 100 deep (an array in
//!   an array ..., 100 values down to a string), sent `encoded`
//! - `nested-replace`: returns a replacement batch whose span holds such a value
//! - `reject`: rejects its configuration
//! - `every:N`: panics on every N-th batch, otherwise does nothing
//! - `hoard:N`: keeps N MiB more memory on every batch (never misbehaves otherwise), to
//!   test recycling at the memory high-water mark
//!
//! On logs the trigger is a log record whose body is the string `trigger`; other batches'
//! records are tagged with `hostile.instance_calls`. `loop`, `sleep`, `alloc`, `recurse`,
//! `panic`, `error`, `every:N` and `bad-replacement` misbehave as on spans; `bad-index` drops
//! a record past the end, `oversize` sets a 16 MiB body, and `wrong-signal` answers a logs
//! batch with a span edit. Other modes fail with an error on a triggered logs batch.

use std::hint::black_box;

use serde::Deserialize;
use wasmcol_plugin_sdk::prelude::*;
use wasmcol_plugin_sdk::proto::common::{AnyValue, ArrayValue, KeyValue, any_value};

#[derive(Deserialize)]
struct Config {
    mode: String,
}

/// The misbehaving plugin.
pub struct Hostile {
    mode: String,
    calls: u64,
    hoard: Vec<Vec<u8>>,
}

impl Plugin for Hostile {
    fn new(config: PluginConfig) -> Result<Self, String> {
        let c: Config = config.parse()?;
        if c.mode == "reject" {
            return Err("mode `reject`: this plugin refuses every configuration".into());
        }
        Ok(Hostile {
            mode: c.mode,
            calls: 0,
            hoard: Vec::new(),
        })
    }

    fn process(&mut self, batch: &mut Batch) -> Result<(), String> {
        self.calls += 1;
        match self.mode.as_str() {
            "noop" => return Ok(()),
            "decode" => {
                std::hint::black_box(batch.span_count());
                return Ok(());
            }
            "replace" => {
                let data = batch.resource_spans().to_vec();
                batch.replace(data);
                return Ok(());
            }
            _ => {}
        }
        if let Some(mib) = self.mode.strip_prefix("hoard:") {
            let mib: usize = mib
                .parse()
                .map_err(|_| format!("bad mode {:?}", self.mode))?;
            self.hoard.push(vec![1u8; mib << 20]);
        }
        let triggered = batch
            .resource_spans()
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .any(|s| s.name == "trigger");
        if !triggered && !self.mode.starts_with("every:") || self.mode.starts_with("hoard:") {
            let calls = self.calls as i64;
            batch.for_each_span(|s| s.set_attribute("hostile.instance_calls", calls));
            return Ok(());
        }
        match self.mode.as_str() {
            "log-flood" => {
                for i in 0..10_000 {
                    host::log(
                        Level::Error,
                        &format!(
                            "flood {i}\n2026-01-01T00:00:00Z ERROR forged line\r\n\u{1b}[2J{}",
                            "x".repeat(i % 8192)
                        ),
                    );
                }
                let calls = self.calls as i64;
                batch.for_each_span(|s| s.set_attribute("hostile.instance_calls", calls));
            }
            "loop" => {
                let mut x = 0u64;
                loop {
                    x = black_box(x.wrapping_add(1));
                }
            }
            "sleep" => std::thread::sleep(std::time::Duration::from_secs(20)),
            "edits" => {
                for i in 0..200_000u32 {
                    batch.push_edit(wasmcol_plugin_sdk::Edit::SetAttribute {
                        target: wasmcol_plugin_sdk::edit::Target::Span(0),
                        key: format!("k{i}"),
                        value: wasmcol_plugin_sdk::Value::Int(i as i64),
                    });
                }
            }
            "alias" => {
                let big = "x".repeat(1 << 20).into_bytes();
                let mut big = std::mem::ManuallyDrop::new(big);
                let (ptr, len, cap) = (big.as_mut_ptr(), big.len(), big.capacity());
                for i in 0..10_000u32 {
                    #[allow(unsafe_code)]
                    // SAFETY: deliberately unsound: every value aliases one buffer, which is
                    // never freed here. The strings only travel to the host, which must
                    // refuse the answer before copying them all; the instance is then
                    // discarded, so its allocator never sees them again.
                    let value = unsafe { String::from_raw_parts(ptr, len, cap) };
                    batch.push_edit(wasmcol_plugin_sdk::Edit::SetAttribute {
                        target: wasmcol_plugin_sdk::edit::Target::Span(0),
                        key: format!("k{i}"),
                        value: wasmcol_plugin_sdk::Value::Str(value),
                    });
                }
            }
            "alloc" => {
                let mut blocks = Vec::new();
                for i in 0..64 {
                    let mut b = vec![0u8; 64 << 20];
                    b[i] = 1;
                    blocks.push(b);
                }
                black_box(&blocks);
            }
            "recurse" => {
                black_box(recurse(black_box(1)));
            }
            "panic" => panic!("hostile plugin: panicking on purpose"),
            "error" => return Err("hostile plugin: failing on purpose".into()),
            "bad-index" => {
                let past_end = batch.span_count() as u32 + 1_000_000;
                batch.push_edit(wasmcol_plugin_sdk::Edit::SetSpanName {
                    span: past_end,
                    name: "renamed".into(),
                });
            }
            "bad-utf8" => {
                #[allow(unsafe_code)]
                // SAFETY: deliberately not UTF-8; the string is only copied out to the host,
                // which must reject it. Nothing in this plugin reads it as text.
                let key = unsafe { String::from_utf8_unchecked(vec![0xff, 0xfe, 0x41]) };
                batch.for_each_span(|s| s.set_attribute(key.clone(), "x"));
            }
            "bad-replacement" => batch.replace_encoded(vec![0x0a, 0xff, 0xff, 0xff]),
            "nested" => batch.push_edit(wasmcol_plugin_sdk::Edit::SetAttribute {
                target: wasmcol_plugin_sdk::edit::Target::Span(0),
                key: "nested".into(),
                value: wasmcol_plugin_sdk::Value::Any(nested(100)),
            }),
            "nested-replace" => {
                let mut data = batch.resource_spans().to_vec();
                for span in data
                    .iter_mut()
                    .flat_map(|rs| &mut rs.scope_spans)
                    .flat_map(|ss| &mut ss.spans)
                {
                    span.attributes.push(KeyValue {
                        key: "nested".into(),
                        value: Some(nested(100)),
                        ..Default::default()
                    });
                }
                batch.replace(data);
            }
            "oversize" => {
                let big = "x".repeat(16 << 20);
                batch.for_each_span(|s| s.set_attribute("big", big.clone()));
            }
            m if m.starts_with("every:") => {
                let n: u64 = m[6..].parse().map_err(|_| format!("bad mode {m:?}"))?;
                if self.calls.is_multiple_of(n) {
                    panic!("hostile plugin: call {} fails", self.calls);
                }
            }
            other => return Err(format!("unknown mode {other:?}")),
        }
        Ok(())
    }

    fn process_logs(&mut self, batch: &mut LogBatch) -> Result<(), String> {
        self.process_logs_inner(batch)
    }
}

impl Hostile {
    fn process_logs_inner(&mut self, batch: &mut LogBatch) -> Result<(), String> {
        self.calls += 1;
        if self.mode == "noop" {
            return Ok(());
        }
        let triggered = batch
            .resource_logs()
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records)
            .any(|r| r.body.as_ref().and_then(as_str) == Some("trigger"));
        if !triggered && !self.mode.starts_with("every:") {
            let calls = self.calls as i64;
            batch.for_each_log_record(|r| r.set_attribute("hostile.instance_calls", calls));
            return Ok(());
        }
        match self.mode.as_str() {
            "loop" => {
                let mut x = 0u64;
                loop {
                    x = black_box(x.wrapping_add(1));
                }
            }
            "sleep" => std::thread::sleep(std::time::Duration::from_secs(20)),
            "alloc" => {
                let mut blocks = Vec::new();
                for i in 0..64 {
                    let mut b = vec![0u8; 64 << 20];
                    b[i] = 1;
                    blocks.push(b);
                }
                black_box(&blocks);
            }
            "recurse" => {
                black_box(recurse(black_box(1)));
            }
            "panic" => panic!("hostile plugin: panicking on purpose"),
            "bad-index" => {
                let past_end = batch.record_count() as u32 + 1_000_000;
                batch.push_edit(wasmcol_plugin_sdk::Edit::DropLogRecord { record: past_end });
            }
            "wrong-signal" => batch.push_edit(wasmcol_plugin_sdk::Edit::DropSpan { span: 0 }),
            "bad-replacement" => batch.replace_encoded(vec![0x0a, 0xff, 0xff, 0xff]),
            "oversize" => {
                let big = "x".repeat(16 << 20);
                batch.for_each_log_record(|r| r.set_body(big.clone()));
            }
            m if m.starts_with("every:") => {
                let n: u64 = m[6..].parse().map_err(|_| format!("bad mode {m:?}"))?;
                if self.calls.is_multiple_of(n) {
                    panic!("hostile plugin: call {} fails", self.calls);
                }
            }
            _ => return Err("hostile plugin: failing on purpose".into()),
        }
        Ok(())
    }
}

/// An `AnyValue` `depth` values deep: arrays of one element down to a string.
fn nested(depth: usize) -> AnyValue {
    let mut v = AnyValue {
        value: Some(any_value::Value::StringValue("bottom".into())),
    };
    for _ in 1..depth {
        v = AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![v] })),
        };
    }
    v
}

#[allow(unconditional_recursion)]
fn recurse(n: u64) -> u64 {
    let buf = black_box([n; 64]);
    recurse(buf[3] + 1) + buf[7]
}

export_plugin!(Hostile);
