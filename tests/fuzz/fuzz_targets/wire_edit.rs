//! `wasmcol_plugin_sdk::wire::edit::apply`: any edits, applied to the bytes of any valid request,
//! give what the decoded reference (`edit_oracle`, the plugin SDK's test oracle) makes of the
//! decoded request (or the same error), and the result validates with the span count `apply`
//! reports.
#![no_main]

use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use prost::Message as _;
use wasmcol_fuzz::edit_oracle;
use wasmcol_fuzz::otlp::{ExportTraceServiceRequest, wire};
use wasmcol_plugin_sdk::Value;
use wasmcol_plugin_sdk::edit::{Edit, StatusCode, Target};
use wasmcol_plugin_sdk::wire::edit as wire_edit;

/// Keys the SDK's requests in the seed corpus carry, so that edits hit existing attributes.
const KEYS: &[&str] = &[
    "service.name",
    "http.request.method",
    "http.response.status_code",
    "db.system",
    "key",
    "link.kind",
    "telemetry.sdk.language",
    "",
];

/// Reads edits from bytes; every byte string is some list of edits.
struct Program<'a>(&'a [u8]);

impl Program<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b
    }

    /// Mostly small indices (within a batch of the corpus), a few far out of range.
    fn index(&mut self) -> u32 {
        match self.byte() {
            b @ 0xF8.. => u32::MAX - u32::from(0xFF - b),
            b => u32::from(b & 0x3F),
        }
    }

    fn string(&mut self) -> String {
        match self.byte() {
            b @ 0x80.. => {
                let n = usize::from(b & 0x1F);
                String::from_utf8_lossy(self.bytes(n)).into_owned()
            }
            b => KEYS[usize::from(b) % KEYS.len()].to_owned(),
        }
    }

    fn target(&mut self) -> Target {
        match self.byte() % 5 {
            0 => Target::Resource(self.index()),
            1 => Target::Scope(self.index()),
            2 => Target::Span(self.index()),
            3 => Target::Event(self.index(), self.index()),
            _ => Target::Link(self.index(), self.index()),
        }
    }

    fn u64(&mut self) -> u64 {
        let mut b = [0; 8];
        let got = self.bytes(8);
        b[..got.len()].copy_from_slice(got);
        u64::from_le_bytes(b)
    }

    fn value(&mut self) -> Value {
        match self.byte() % 9 {
            0 => Value::Str(self.string()),
            1 => Value::Int(self.u64() as i64),
            2 => Value::Double(f64::from_bits(self.u64())),
            3 => Value::Bool(self.byte() & 1 == 1),
            4 => {
                let n = usize::from(self.byte() & 0x1F);
                Value::Bytes(self.bytes(n).to_vec())
            }
            5 => Value::Any(AnyValue { value: None }),
            6 => Value::Any(AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue {
                    values: vec![Value::Str(self.string()).into_any_value(); 2],
                })),
            }),
            7 => Value::Any(AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: vec![KeyValue {
                        key: self.string(),
                        value: Some(Value::Int(7).into_any_value()),
                        ..Default::default()
                    }],
                })),
            }),
            _ => Value::Any(AnyValue {
                value: Some(any_value::Value::StringValueStrindex(self.byte().into())),
            }),
        }
    }

    fn edit(&mut self) -> Edit {
        match self.byte() % 6 {
            0 => Edit::SetAttribute {
                target: self.target(),
                key: self.string(),
                value: self.value(),
            },
            1 => Edit::RemoveAttribute {
                target: self.target(),
                key: self.string(),
            },
            2 => Edit::SetSpanName {
                span: self.index(),
                name: self.string(),
            },
            3 => Edit::SetEventName {
                span: self.index(),
                event: self.index(),
                name: self.string(),
            },
            4 => Edit::SetStatus {
                span: self.index(),
                code: [StatusCode::Unset, StatusCode::Ok, StatusCode::Error]
                    [usize::from(self.byte() % 3)],
                message: self.string(),
            },
            _ => Edit::DropSpan { span: self.index() },
        }
    }

    fn edits(mut self) -> Vec<Edit> {
        let mut edits = Vec::new();
        while !self.0.is_empty() && edits.len() < 64 {
            edits.push(self.edit());
        }
        edits
    }
}

// The input: two bytes of request length (little endian), the request, then the edits.
fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let len = usize::from(u16::from_le_bytes(len)).min(rest.len());
    let (request, program) = rest.split_at(len);
    if wire::validate(request).is_err() {
        return;
    }
    let edits = Program(program).edits();

    let mut expected = ExportTraceServiceRequest::decode(request)
        .expect("validate accepted it")
        .resource_spans;
    let reference = edit_oracle::prepare(&expected, edits.clone()).map(|checked| {
        edit_oracle::apply(&mut expected, checked);
        expected
    });
    match (reference, wire_edit::apply(request, edits.clone())) {
        (Ok(expected), Ok(edited)) => {
            let valid = wire::validate(&edited.bytes)
                .unwrap_or_else(|e| panic!("the edited request does not validate: {e}"));
            assert_eq!(edited.spans, valid.spans);
            let got = ExportTraceServiceRequest::decode(edited.bytes.as_slice())
                .expect("validated")
                .resource_spans;
            // NaN is not equal to itself; its Debug form is.
            if got != expected {
                assert_eq!(
                    format!("{got:?}"),
                    format!("{expected:?}"),
                    "edits {edits:?}"
                );
            }
        }
        (Err(expected), Err(got)) => assert_eq!(got, expected),
        (reference, ours) => panic!("prepare+apply: {reference:?}, wire_edit: {ours:?}"),
    }
});
