//! The CEL type of a schema node, with the sizes the estimator reads (apiserver's `DeclType`).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::Value;

use super::MAX_REQUEST_SIZE_BYTES;

const MIN_STRING_SIZE: u64 = 2;
const MIN_BOOL_SIZE: u64 = 4;
const MIN_NUMBER_SIZE: u64 = 1;
const MAX_DURATION_SIZE: u64 = 32;
const DATE_SIZE: u64 = 12;
const MAX_DATETIME_SIZE: u64 = 32;
const MIN_DURATION_SIZE: u64 = 3;
const MIN_DATETIME_SIZE: u64 = 21;
/// A request less the two bytes that open and close a string, list or map: what an unbounded one may hold.
const MAX_CONTENT: u64 = MAX_REQUEST_SIZE_BYTES - 2;

/// A schema node's CEL type and sizes (apiserver's `DeclType`).
pub(super) struct Decl {
    pub(super) kind: Kind,
    /// `MaxElements`: a string's bytes, a list's items, a map's entries; 0 for objects and scalars.
    pub(super) max_elements: u64,
    /// `MinSerializedSize`: the fewest bytes a value takes in JSON.
    pub(super) min_size: u64,
}

pub(super) enum Kind {
    Object(BTreeMap<String, Decl>),
    List(Box<Decl>),
    /// A map's values; its keys are [`MAP_KEY`].
    Map(Box<Decl>),
    String,
    Bytes,
    Int,
    Double,
    Bool,
    Duration,
    Timestamp,
    Dyn,
}

/// A map's key type: apiserver's `StringType`, whose `MaxElements` is 0.
pub(super) static MAP_KEY: Decl = Decl { kind: Kind::String, max_elements: 0, min_size: MIN_STRING_SIZE };

fn decl(kind: Kind, max_elements: u64, min_size: u64) -> Decl {
    Decl { kind, max_elements, min_size }
}

/// `SchemaDeclType`: `None` where the API server exposes no CEL type.
pub(super) fn decl_of(schema: &Value, resource_root: bool) -> Option<Decl> {
    if flag(schema, "x-kubernetes-int-or-string") {
        let max = max_length(schema).map_or(MAX_CONTENT, |n| n.saturating_mul(4));
        return Some(decl(Kind::Dyn, max, 1));
    }
    let schema = if resource_root { with_type_and_object_meta(schema) } else { Cow::Borrowed(schema) };
    match schema.get("type").and_then(Value::as_str)? {
        "array" => array_decl(&schema),
        "object" => object_decl(&schema),
        "string" => Some(string_decl(&schema)),
        "boolean" => Some(decl(Kind::Bool, 0, MIN_BOOL_SIZE)),
        "number" => Some(decl(Kind::Double, 0, MIN_NUMBER_SIZE)),
        "integer" => Some(decl(Kind::Int, 0, MIN_NUMBER_SIZE)),
        _ => None,
    }
}

fn array_decl(schema: &Value) -> Option<Decl> {
    let items = schema.get("items")?;
    let item = decl_of(items, embedded(items))?;
    let max = bound(schema, "maxItems").unwrap_or(MAX_CONTENT / item.min_size.saturating_add(1));
    Some(decl(Kind::List(Box::new(item)), max, 2))
}

fn object_decl(schema: &Value) -> Option<Decl> {
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        let value = decl_of(values, embedded(values))?;
        let max = bound(schema, "maxProperties").unwrap_or(MAX_CONTENT / value.min_size.saturating_add(6));
        return Some(decl(Kind::Map(Box::new(value)), max, 2));
    }
    let required: Vec<&str> =
        schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let mut fields = BTreeMap::new();
    let mut min_size = 2;
    for (name, property) in schema.get("properties").and_then(Value::as_object).into_iter().flatten() {
        let Some(field) = decl_of(property, embedded(property)) else { continue };
        if required.contains(&name.as_str()) && property.get("default").is_none() {
            min_size += name.len() as u64 + field.min_size + 4;
        }
        fields.insert(name.clone(), field);
    }
    Some(decl(Kind::Object(fields), 0, min_size))
}

fn string_decl(schema: &Value) -> Decl {
    match schema.get("format").and_then(Value::as_str) {
        Some("byte") => decl(Kind::Bytes, max_length(schema).unwrap_or(MAX_CONTENT), MIN_STRING_SIZE),
        Some("duration") => decl(Kind::Duration, MAX_DURATION_SIZE, MIN_DURATION_SIZE),
        Some("date") => decl(Kind::Timestamp, DATE_SIZE, DATE_SIZE),
        Some("date-time") => decl(Kind::Timestamp, MAX_DATETIME_SIZE, MIN_DATETIME_SIZE),
        _ => decl(Kind::String, string_max_bytes(schema), MIN_STRING_SIZE),
    }
}

/// `maxLength` in code points is up to 4 bytes each; an enum is as long as its longest value (in bytes).
fn string_max_bytes(schema: &Value) -> u64 {
    if let Some(n) = max_length(schema) {
        return n.saturating_mul(4);
    }
    match schema.get("enum").and_then(Value::as_array).filter(|values| !values.is_empty()) {
        Some(values) => values.iter().filter_map(Value::as_str).map(|v| v.len() as u64).max().unwrap_or(0),
        None => MAX_CONTENT,
    }
}

fn max_length(schema: &Value) -> Option<u64> {
    bound(schema, "maxLength")
}

pub(super) fn bound(schema: &Value, key: &str) -> Option<u64> {
    schema.get(key).and_then(Value::as_i64).map(|n| n.max(0).unsigned_abs())
}

pub(super) fn embedded(schema: &Value) -> bool {
    flag(schema, "x-kubernetes-embedded-resource")
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

/// `WithTypeAndObjectMeta`: unless the schema declares `kind`, `apiVersion`, `metadata.name` and
/// `metadata.generateName` as strings, a resource root gets them as plain (unbounded) strings, and its
/// `metadata` has no other field.
fn with_type_and_object_meta(schema: &Value) -> Cow<'_, Value> {
    let typed = |path: &[&str], ty: &str| {
        let node = path.iter().try_fold(schema, |node, name| node.get("properties")?.get(name));
        node.and_then(|n| n.get("type")).and_then(Value::as_str) == Some(ty)
    };
    if typed(&["kind"], "string")
        && typed(&["apiVersion"], "string")
        && typed(&["metadata"], "object")
        && typed(&["metadata", "name"], "string")
        && typed(&["metadata", "generateName"], "string")
    {
        return Cow::Borrowed(schema);
    }
    let mut schema = schema.clone();
    let string = serde_json::json!({"type": "string"});
    let metadata = serde_json::json!({"type": "object", "properties": {"name": string, "generateName": string}});
    if let Some(object) = schema.as_object_mut() {
        let properties = object.entry("properties").or_insert_with(|| Value::Object(Default::default()));
        if let Some(properties) = properties.as_object_mut() {
            properties.insert("kind".into(), string.clone());
            properties.insert("apiVersion".into(), string);
            properties.insert("metadata".into(), metadata);
        }
    }
    Cow::Owned(schema)
}

/// The size range of a string (bytes), list (items) or map (entries): cel-go's `SizeEstimate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Size {
    pub(super) min: u64,
    pub(super) max: u64,
}

pub(super) const UNKNOWN: Size = Size { min: 0, max: u64::MAX };

impl Size {
    pub(super) fn fixed(n: u64) -> Self {
        Size { min: n, max: n }
    }

    pub(super) fn add(self, other: Size) -> Self {
        Size { min: self.min.saturating_add(other.min), max: self.max.saturating_add(other.max) }
    }

    pub(super) fn mul(self, other: Size) -> Self {
        Size { min: self.min.saturating_mul(other.min), max: self.max.saturating_mul(other.max) }
    }

    pub(super) fn union(self, other: Size) -> Self {
        Size { min: self.min.min(other.min), max: self.max.max(other.max) }
    }
}
