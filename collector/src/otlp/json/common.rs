//! The messages every signal shares: resources, scopes, attributes and their values.

use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, EntityRef, InstrumentationScope, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use serde::de::MapAccess;

use super::decode::{
    Field, JsonMessage, Oneof, Path, fields, nested, optional, repeated, scalar, set_oneof, strings,
};
use super::encode::{Obj, write_base64, write_f64, write_i64, write_i64_string, write_str};

fields! {
    ResourceField {
        Attributes = "attributes",
        DroppedAttributesCount = "droppedAttributesCount" | "dropped_attributes_count",
        EntityRefs = "entityRefs" | "entity_refs",
    }
}

impl JsonMessage for Resource {
    const NAME: &'static str = "Resource";
    type Field = ResourceField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ResourceField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            ResourceField::Attributes => self.attributes = repeated(map, path)?,
            ResourceField::DroppedAttributesCount => self.dropped_attributes_count = scalar(map)?,
            ResourceField::EntityRefs => self.entity_refs = repeated(map, path)?,
        }
        Ok(())
    }
}

fields! {
    EntityRefField {
        SchemaUrl = "schemaUrl" | "schema_url",
        Type = "type",
        IdKeys = "idKeys" | "id_keys",
        DescriptionKeys = "descriptionKeys" | "description_keys",
    }
}

impl JsonMessage for EntityRef {
    const NAME: &'static str = "EntityRef";
    type Field = EntityRefField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: EntityRefField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            EntityRefField::SchemaUrl => self.schema_url = scalar(map)?,
            EntityRefField::Type => self.r#type = scalar(map)?,
            EntityRefField::IdKeys => self.id_keys = strings(map, path)?,
            EntityRefField::DescriptionKeys => {
                self.description_keys = strings(map, path)?;
            }
        }
        Ok(())
    }
}

fields! {
    ScopeField {
        Name = "name",
        Version = "version",
        Attributes = "attributes",
        DroppedAttributesCount = "droppedAttributesCount" | "dropped_attributes_count",
    }
}

impl JsonMessage for InstrumentationScope {
    const NAME: &'static str = "InstrumentationScope";
    type Field = ScopeField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ScopeField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            ScopeField::Name => self.name = scalar(map)?,
            ScopeField::Version => self.version = scalar(map)?,
            ScopeField::Attributes => self.attributes = repeated(map, path)?,
            ScopeField::DroppedAttributesCount => self.dropped_attributes_count = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    KeyValueField {
        Key = "key",
        Value = "value",
        KeyStrindex = "keyStrindex" | "key_strindex",
    }
}

impl JsonMessage for KeyValue {
    const NAME: &'static str = "KeyValue";
    type Field = KeyValueField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: KeyValueField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            KeyValueField::Key => self.key = scalar(map)?,
            KeyValueField::Value => self.value = nested(map, path)?,
            KeyValueField::KeyStrindex => self.key_strindex = scalar(map)?,
        }
        Ok(())
    }
}

fields! {
    AnyValueField {
        StringValue = "stringValue" | "string_value",
        BoolValue = "boolValue" | "bool_value",
        IntValue = "intValue" | "int_value",
        DoubleValue = "doubleValue" | "double_value",
        ArrayValue = "arrayValue" | "array_value",
        KvlistValue = "kvlistValue" | "kvlist_value",
        BytesValue = "bytesValue" | "bytes_value",
        StringValueStrindex = "stringValueStrindex" | "string_value_strindex",
    }
}

impl JsonMessage for AnyValue {
    const NAME: &'static str = "AnyValue";
    type Field = AnyValueField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: AnyValueField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        use any_value::Value;

        // The members of a oneof: `null` leaves the oneof unset (as in the
        // proto3 JSON mapping), a value sets it.
        let value = match field {
            AnyValueField::StringValue => optional(map)?.map(Value::StringValue),
            AnyValueField::BoolValue => optional(map)?.map(Value::BoolValue),
            AnyValueField::IntValue => optional(map)?.map(Value::IntValue),
            AnyValueField::DoubleValue => optional(map)?.map(Value::DoubleValue),
            AnyValueField::ArrayValue => nested(map, path)?.map(Value::ArrayValue),
            AnyValueField::KvlistValue => nested(map, path)?.map(Value::KvlistValue),
            AnyValueField::BytesValue => optional(map)?.map(Value::BytesValue),
            AnyValueField::StringValueStrindex => optional(map)?.map(Value::StringValueStrindex),
        };
        set_oneof(&mut self.value, value, field.name(), ANY_VALUE)?;
        Ok(())
    }
}

const ANY_VALUE: Oneof<any_value::Value> = Oneof {
    message: "AnyValue",
    oneof: "value",
    member_name: any_value_field_name,
};

/// The JSON name of the oneof member `value` is in.
fn any_value_field_name(value: &any_value::Value) -> &'static str {
    use any_value::Value;
    match value {
        Value::StringValue(_) => "stringValue",
        Value::BoolValue(_) => "boolValue",
        Value::IntValue(_) => "intValue",
        Value::DoubleValue(_) => "doubleValue",
        Value::ArrayValue(_) => "arrayValue",
        Value::KvlistValue(_) => "kvlistValue",
        Value::BytesValue(_) => "bytesValue",
        Value::StringValueStrindex(_) => "stringValueStrindex",
    }
}

fields! { ValuesField { Values = "values" } }

impl JsonMessage for ArrayValue {
    const NAME: &'static str = "ArrayValue";
    type Field = ValuesField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ValuesField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            ValuesField::Values => self.values = repeated(map, path)?,
        }
        Ok(())
    }
}

impl JsonMessage for KeyValueList {
    const NAME: &'static str = "KeyValueList";
    type Field = ValuesField;

    fn decode_field<'de, A: MapAccess<'de>>(
        &mut self,
        field: ValuesField,
        map: &mut A,
        path: &mut Path,
    ) -> Result<(), A::Error> {
        match field {
            ValuesField::Values => self.values = repeated(map, path)?,
        }
        Ok(())
    }
}

pub(super) fn write_resource(out: &mut Vec<u8>, resource: &Resource) {
    let mut o = Obj::start(out);
    o.list("attributes", &resource.attributes, write_key_value);
    o.u32("droppedAttributesCount", resource.dropped_attributes_count);
    o.list("entityRefs", &resource.entity_refs, write_entity_ref);
    o.end();
}

fn write_entity_ref(out: &mut Vec<u8>, entity: &EntityRef) {
    let mut o = Obj::start(out);
    o.string("schemaUrl", &entity.schema_url);
    o.string("type", &entity.r#type);
    o.strings("idKeys", &entity.id_keys);
    o.strings("descriptionKeys", &entity.description_keys);
    o.end();
}

pub(super) fn write_scope(out: &mut Vec<u8>, scope: &InstrumentationScope) {
    let mut o = Obj::start(out);
    o.string("name", &scope.name);
    o.string("version", &scope.version);
    o.list("attributes", &scope.attributes, write_key_value);
    o.u32("droppedAttributesCount", scope.dropped_attributes_count);
    o.end();
}

pub(super) fn write_key_value(out: &mut Vec<u8>, kv: &KeyValue) {
    let mut o = Obj::start(out);
    o.string("key", &kv.key);
    o.message("value", kv.value.as_ref(), write_any_value);
    o.i32("keyStrindex", kv.key_strindex);
    o.end();
}

pub(super) fn write_any_value(out: &mut Vec<u8>, value: &AnyValue) {
    use any_value::Value;

    let mut o = Obj::start(out);
    // A oneof member is written whenever it is set, default value or not:
    // `{"intValue":"0"}` and `{}` are different values.
    match &value.value {
        None => {}
        Some(Value::StringValue(s)) => write_str(o.key("stringValue"), s),
        Some(Value::BoolValue(b)) => {
            let text: &[u8] = if *b { b"true" } else { b"false" };
            o.key("boolValue").extend_from_slice(text);
        }
        Some(Value::IntValue(i)) => write_i64_string(o.key("intValue"), *i),
        Some(Value::DoubleValue(d)) => write_f64(o.key("doubleValue"), *d),
        Some(Value::ArrayValue(array)) => {
            let mut inner = Obj::start(o.key("arrayValue"));
            inner.list("values", &array.values, write_any_value);
            inner.end();
        }
        Some(Value::KvlistValue(list)) => {
            let mut inner = Obj::start(o.key("kvlistValue"));
            inner.list("values", &list.values, write_key_value);
            inner.end();
        }
        Some(Value::BytesValue(bytes)) => write_base64(o.key("bytesValue"), bytes),
        Some(Value::StringValueStrindex(i)) => write_i64(o.key("stringValueStrindex"), (*i).into()),
    }
    o.end();
}
