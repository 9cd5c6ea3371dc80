//! Rewrites of the generated OpenAPI schema so a real API server takes it exactly as we mean it.
//!
//! schemars speaks JSON Schema, not Kubernetes: it writes formats the API server does not know
//! (`uint32`), puts `null` into the enums of optional fields, leaves strings and maps unbounded
//! (which makes CEL rules look expensive to the cost estimator) and repeats the Kubernetes core
//! types' long descriptions. Each function here fixes one of those, in place.

use serde_json::{Map, Value};

/// Longest column name a step may read or write.
pub const MAX_COLUMN_NAME: u64 = 128;
/// Longest URI or path in a spec (S3 keys are at most 1024 bytes, plus scheme, bucket, prefix).
pub const MAX_URI: u64 = 2048;
/// Most columns a `select` or a sink may name.
pub const MAX_COLUMNS: u64 = 256;
/// Most entries of a `rename` mapping.
pub const MAX_MAPPING: u64 = 64;
/// Most annotations of a created ServiceAccount, and the longest value (an IAM role ARN is ~100).
pub const MAX_ANNOTATIONS: u64 = 32;
pub const MAX_ANNOTATION_VALUE: u64 = 4096;
/// Longest literal vector of the `vector.*` steps (embedding sizes are well below).
pub const MAX_VECTOR: u64 = 8192;
/// Longest other free-form string (globs, endpoints, names).
pub const MAX_STRING: u64 = 1024;

/// The bound each named field gets, when the generated schema has none.
enum Bound {
    Column,
    Uri,
    Columns,
    Mapping,
    Annotations,
    Vector,
    Text,
}

fn bound_of(field: &str) -> Option<Bound> {
    Some(match field {
        "input" | "output" | "other" | "bboxColumn" | "column" | "detections" => Bound::Column,
        "uri" | "url" | "tokenizer" | "config" | "labels" | "endpoint" => Bound::Uri,
        "columns" => Bound::Columns,
        "mapping" => Bound::Mapping,
        "annotations" => Bound::Annotations,
        "vector" => Bound::Vector,
        "glob" | "extension" | "region" | "name" | "image" | "priorityClassName" => Bound::Text,
        _ => return None,
    })
}

/// Puts a `maxLength`, `maxItems` or `maxProperties` on every field named in [`bound_of`] that
/// lacks one, at any depth of `schema` except inside the Kubernetes core types of a pool.
pub fn bound_fields(schema: &mut Value) {
    let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        descend(schema, bound_fields);
        return;
    };
    for (name, prop) in props.iter_mut() {
        if is_kubernetes_type(name) {
            continue;
        }
        if let Some(bound) = bound_of(name) {
            apply(bound, prop);
        }
        bound_fields(prop);
    }
}

/// Pool fields whose schema is a Kubernetes core type: bounded by the API server's own rules.
fn is_kubernetes_type(field: &str) -> bool {
    matches!(field, "affinity" | "resources" | "tolerations" | "env" | "nodeSelector" | "metadata")
}

fn apply(bound: Bound, prop: &mut Value) {
    // An optional field's type is `[type, "null"]` in schemars' own schemas.
    let is = |ty: &str, prop: &Value| match prop.get("type") {
        Some(Value::String(t)) => t == ty,
        Some(Value::Array(types)) => types.iter().any(|t| t == ty),
        _ => false,
    };
    match bound {
        Bound::Column if is("string", prop) => set_default(prop, "maxLength", MAX_COLUMN_NAME),
        Bound::Uri if is("string", prop) => set_default(prop, "maxLength", MAX_URI),
        Bound::Text if is("string", prop) => set_default(prop, "maxLength", MAX_STRING),
        Bound::Columns if is("array", prop) => {
            set_default(prop, "maxItems", MAX_COLUMNS);
            if let Some(items) = prop.get_mut("items") {
                set_default(items, "maxLength", MAX_COLUMN_NAME);
            }
        }
        Bound::Mapping if is("object", prop) => {
            set_default(prop, "maxProperties", MAX_MAPPING);
            if let Some(values) = prop.get_mut("additionalProperties").filter(|v| v.is_object()) {
                set_default(values, "maxLength", MAX_COLUMN_NAME);
            }
        }
        Bound::Annotations if is("object", prop) => {
            set_default(prop, "maxProperties", MAX_ANNOTATIONS);
            if let Some(values) = prop.get_mut("additionalProperties").filter(|v| v.is_object()) {
                set_default(values, "maxLength", MAX_ANNOTATION_VALUE);
            }
        }
        Bound::Vector if is("array", prop) => set_default(prop, "maxItems", MAX_VECTOR),
        _ => {}
    }
}

fn set_default(schema: &mut Value, key: &str, value: u64) {
    if let Some(map) = schema.as_object_mut() {
        map.entry(key).or_insert(Value::from(value));
    }
}

/// Replaces JSON Schema integer formats with the ones Kubernetes knows (`int32`, `int64`),
/// keeping their ranges as `minimum`/`maximum`.
pub fn kubernetes_formats(schema: &mut Value) {
    if let Some(map) = schema.as_object_mut() {
        let replacement = match map.get("format").and_then(Value::as_str) {
            Some("uint8") => Some(("int32", Some(0), Some(u64::from(u8::MAX)))),
            Some("uint16") => Some(("int32", Some(0), Some(u64::from(u16::MAX)))),
            Some("uint32") => Some(("int64", Some(0), Some(u64::from(u32::MAX)))),
            Some("uint64" | "uint") => Some(("int64", Some(0), None)),
            Some("int8" | "int16") => Some(("int32", None, None)),
            _ => None,
        };
        if let Some((format, min, max)) = replacement {
            map.insert("format".into(), Value::from(format));
            if let Some(min) = min {
                map.entry("minimum").or_insert(Value::from(min));
            }
            if let Some(max) = max {
                map.entry("maximum").or_insert(Value::from(max));
            }
        }
    }
    descend(schema, kubernetes_formats);
}

/// Drops `null` from enums: an optional field is already `nullable`, and `kubectl explain`
/// would list `<no value>` as a choice.
pub fn enums_without_null(schema: &mut Value) {
    if let Some(values) = schema.get_mut("enum").and_then(Value::as_array_mut) {
        values.retain(|v| !v.is_null());
    }
    descend(schema, enums_without_null);
}

/// Replaces the descriptions inside the Kubernetes core types of a pool (affinity, resources,
/// tolerations, env) with none: they are the API server's own types, documented by
/// `kubectl explain pod.spec`, and repeating them made the CRD too large for a plain apply.
pub fn terse_kubernetes_types(schema: &mut Value) {
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, prop) in props.iter_mut() {
            if matches!(name.as_str(), "affinity" | "resources" | "tolerations" | "env") {
                descend(prop, strip_descriptions);
            } else {
                terse_kubernetes_types(prop);
            }
        }
        return;
    }
    descend(schema, terse_kubernetes_types);
}

fn strip_descriptions(schema: &mut Value) {
    if let Some(map) = schema.as_object_mut() {
        map.remove("description");
    }
    descend(schema, strip_descriptions);
}

/// Calls `f` on each direct subschema of `schema` (properties, items, additionalProperties,
/// anyOf/oneOf/allOf members).
fn descend(schema: &mut Value, f: fn(&mut Value)) {
    let Some(map) = schema.as_object_mut() else { return };
    for (key, child) in map.iter_mut() {
        match key.as_str() {
            "properties" => child.as_object_mut().into_iter().flat_map(Map::values_mut).for_each(f),
            "items" | "additionalProperties" if child.is_object() => f(child),
            "anyOf" | "oneOf" | "allOf" => child.as_array_mut().into_iter().flatten().for_each(f),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unsigned_formats_become_kubernetes_ones_with_their_range() {
        let mut schema = json!({"properties": {"q": {"type": "integer", "format": "uint8"},
            "n": {"type": "integer", "format": "uint32", "minimum": 1}}});
        kubernetes_formats(&mut schema);
        assert_eq!(
            schema["properties"]["q"],
            json!({"type": "integer", "format": "int32", "minimum": 0, "maximum": 255})
        );
        assert_eq!(schema["properties"]["n"]["minimum"], json!(1));
        assert_eq!(schema["properties"]["n"]["format"], json!("int64"));
    }

    #[test]
    fn named_fields_get_bounds_but_kubernetes_types_are_left_alone() {
        let mut schema = json!({"properties": {
            "input": {"type": "string"},
            "mapping": {"type": "object", "additionalProperties": {"type": "string"}},
            "env": {"type": "array", "items": {"properties": {"name": {"type": "string"}}}},
        }});
        bound_fields(&mut schema);
        assert_eq!(schema["properties"]["input"]["maxLength"], json!(MAX_COLUMN_NAME));
        assert_eq!(schema["properties"]["mapping"]["maxProperties"], json!(MAX_MAPPING));
        assert_eq!(schema["properties"]["mapping"]["additionalProperties"]["maxLength"], json!(MAX_COLUMN_NAME));
        assert!(schema["properties"]["env"]["items"]["properties"]["name"].get("maxLength").is_none());
    }
}
