//! The decoded reference for `wasmcol_plugin_sdk::wire::edit::apply_logs`: the same edits
//! checked and applied to the decoded batch (`Vec<ResourceLogs>`), written plainly. The
//! differential tests (`edit_logs_tests.rs`) hold the byte-level applier to it.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs};
use wasmcol_plugin_sdk::edit::{Edit, Target};

/// An edit that passed every check, ready to apply.
#[derive(Debug)]
pub struct Checked {
    edits: Vec<Ready>,
}

#[derive(Debug)]
enum Ready {
    Set(Place, String, AnyValue),
    Remove(Place, String),
    Body(Pos, AnyValue),
    Drop(Pos),
}

#[derive(Debug, Clone, Copy)]
struct Pos {
    resource: usize,
    scope: usize,
    record: usize,
}

#[derive(Debug, Clone, Copy)]
enum Place {
    Resource(usize),
    Scope(usize, usize),
    Record(Pos),
}

fn scopes(data: &[ResourceLogs]) -> Vec<(usize, usize)> {
    data.iter()
        .enumerate()
        .flat_map(|(r, rl)| (0..rl.scope_logs.len()).map(move |s| (r, s)))
        .collect()
}

fn records(data: &[ResourceLogs]) -> Vec<Pos> {
    let mut v = Vec::new();
    for (r, rl) in data.iter().enumerate() {
        for (s, sl) in rl.scope_logs.iter().enumerate() {
            v.extend((0..sl.log_records.len()).map(|p| Pos {
                resource: r,
                scope: s,
                record: p,
            }));
        }
    }
    v
}

fn record(data: &[ResourceLogs], i: u32) -> Result<Pos, String> {
    let all = records(data);
    all.get(i as usize).copied().ok_or_else(|| {
        format!(
            "log record index {i} is out of range (the batch has {})",
            all.len()
        )
    })
}

/// Checks every edit against `data` without changing anything.
pub fn prepare(data: &[ResourceLogs], edits: Vec<Edit>) -> Result<Checked, String> {
    let mut ready = Vec::with_capacity(edits.len());
    for edit in edits {
        let r = match edit {
            Edit::SetAttribute { target, key, value } => {
                Ready::Set(resolve(data, target)?, key, value.into_any_value())
            }
            Edit::RemoveAttribute { target, key } => Ready::Remove(resolve(data, target)?, key),
            Edit::SetBody { record: i, value } => {
                Ready::Body(record(data, i)?, value.into_any_value())
            }
            Edit::DropLogRecord { record: i } => Ready::Drop(record(data, i)?),
            Edit::SetSpanName { .. } => {
                return Err("set-span-name does not apply to a logs batch".into());
            }
            Edit::SetEventName { .. } => {
                return Err("set-event-name does not apply to a logs batch".into());
            }
            Edit::SetStatus { .. } => {
                return Err("set-status does not apply to a logs batch".into());
            }
            Edit::DropSpan { .. } => return Err("drop-span does not apply to a logs batch".into()),
            Edit::DropDataPoint { .. } => {
                return Err("drop-data-point does not apply to a logs batch".into());
            }
            Edit::DropMetric { .. } => {
                return Err("drop-metric does not apply to a logs batch".into());
            }
        };
        ready.push(r);
    }
    Ok(Checked { edits: ready })
}

fn resolve(data: &[ResourceLogs], t: Target) -> Result<Place, String> {
    Ok(match t {
        Target::Resource(r) => {
            if (r as usize) >= data.len() {
                return Err(format!(
                    "resource index {r} is out of range (the batch has {})",
                    data.len()
                ));
            }
            Place::Resource(r as usize)
        }
        Target::Scope(s) => {
            let all = scopes(data);
            let (r, s) = all.get(s as usize).copied().ok_or_else(|| {
                format!(
                    "scope index {s} is out of range (the batch has {})",
                    all.len()
                )
            })?;
            Place::Scope(r, s)
        }
        Target::LogRecord(i) => Place::Record(record(data, i)?),
        Target::Span(_) | Target::Event(..) | Target::Link(..) | Target::DataPoint(_) => {
            return Err(format!("target {t:?} does not apply to a logs batch"));
        }
    })
}

fn record_mut(data: &mut [ResourceLogs], p: Pos) -> &mut LogRecord {
    &mut data[p.resource].scope_logs[p.scope].log_records[p.record]
}

/// Applies checked edits. Dropped records are removed last, and scopes and resources left
/// without records go with them.
pub fn apply(data: &mut Vec<ResourceLogs>, checked: Checked) {
    let mut dropped: Vec<Pos> = Vec::new();
    for edit in checked.edits {
        match edit {
            Ready::Set(place, key, value) => {
                let attrs = attributes_at(data, place);
                match attrs.iter_mut().find(|kv| kv.key == key) {
                    Some(kv) => kv.value = Some(value),
                    None => attrs.push(KeyValue {
                        key,
                        value: Some(value),
                        ..Default::default()
                    }),
                }
            }
            Ready::Remove(place, key) => attributes_at(data, place).retain(|kv| kv.key != key),
            Ready::Body(p, value) => record_mut(data, p).body = Some(value),
            Ready::Drop(p) => dropped.push(p),
        }
    }
    if dropped.is_empty() {
        return;
    }
    dropped.sort_by_key(|p| std::cmp::Reverse((p.resource, p.scope, p.record)));
    dropped.dedup_by_key(|p| (p.resource, p.scope, p.record));
    for p in dropped {
        data[p.resource].scope_logs[p.scope]
            .log_records
            .remove(p.record);
    }
    for rl in data.iter_mut() {
        rl.scope_logs.retain(|sl| !sl.log_records.is_empty());
    }
    data.retain(|rl| !rl.scope_logs.is_empty());
}

fn attributes_at(data: &mut [ResourceLogs], place: Place) -> &mut Vec<KeyValue> {
    match place {
        Place::Resource(r) => {
            &mut data[r]
                .resource
                .get_or_insert_with(Default::default)
                .attributes
        }
        Place::Scope(r, s) => {
            &mut data[r].scope_logs[s]
                .scope
                .get_or_insert_with(Default::default)
                .attributes
        }
        Place::Record(p) => &mut record_mut(data, p).attributes,
    }
}
