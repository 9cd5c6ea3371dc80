//! The part of JSON Schema that `llm.prompt` turns into an Arrow column: an object of strings,
//! numbers, integers, booleans, lists and objects, each field required or not.

use serde_json::{Map, Value};

/// A JSON value's shape, as far as a column needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonShape {
    String {
        /// The values allowed, when the schema lists them (`enum`).
        allowed: Option<Vec<String>>,
    },
    Integer,
    Number,
    Boolean,
    List(Box<JsonShape>),
    Object(Vec<JsonField>),
}

/// One property of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonField {
    pub name: String,
    pub shape: JsonShape,
    /// Listed in the object's `required`: an answer without it breaks the schema.
    pub required: bool,
}

/// Deepest nesting of lists and objects accepted.
const MAX_DEPTH: usize = 8;

/// The shape `schema` describes; its top level must be an object.
///
/// # Errors
/// `(path, message)`: where in the schema (`properties.size.type`) and what is not supported.
pub fn json_shape(schema: &Value) -> Result<JsonShape, (String, String)> {
    let shape = shape_at(schema, "", 0)?;
    match shape {
        JsonShape::Object(_) => Ok(shape),
        _ => Err((
            "type".into(),
            "the top level must be `type: object` (its properties become the struct's fields)".into(),
        )),
    }
}

fn shape_at(schema: &Value, path: &str, depth: usize) -> Result<JsonShape, (String, String)> {
    let at = |field: &str| if path.is_empty() { field.to_string() } else { format!("{path}.{field}") };
    let Some(map) = schema.as_object() else {
        return Err((path_or_top(path), "a schema must be an object (`{type: string}`)".into()));
    };
    if depth > MAX_DEPTH {
        return Err((path_or_top(path), format!("nested more than {MAX_DEPTH} deep")));
    }
    let ty = type_of(map).map_err(|m| (at("type"), m))?;
    Ok(match ty {
        "string" => JsonShape::String { allowed: allowed_strings(map).map_err(|m| (at("enum"), m))? },
        "integer" => JsonShape::Integer,
        "number" => JsonShape::Number,
        "boolean" => JsonShape::Boolean,
        "array" => {
            let items = map.get("items").ok_or_else(|| (at("items"), "an array needs `items`".to_string()))?;
            JsonShape::List(Box::new(shape_at(items, &at("items"), depth + 1)?))
        }
        "object" => JsonShape::Object(object_fields(map, &at("properties"), depth)?),
        other => {
            return Err((
                at("type"),
                format!("`{other}` is not supported: use string, integer, number, boolean, array or object"),
            ));
        }
    })
}

fn path_or_top(path: &str) -> String {
    if path.is_empty() { "(top level)".into() } else { path.to_string() }
}

/// The `type`; a `["string", "null"]` pair reads as its non-null member (every field is nullable).
fn type_of(map: &Map<String, Value>) -> Result<&str, String> {
    match map.get("type") {
        Some(Value::String(t)) => Ok(t),
        Some(Value::Array(types)) => {
            let named: Vec<&str> = types.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect();
            match named.as_slice() {
                [one] => Ok(one),
                _ => Err("give one type (besides `null`)".into()),
            }
        }
        Some(_) => Err("must be a string such as `string`".into()),
        None if map.contains_key("properties") => Ok("object"),
        None => Err("missing: say `type: string`, `number`, `integer`, `boolean`, `array` or `object`".into()),
    }
}

fn allowed_strings(map: &Map<String, Value>) -> Result<Option<Vec<String>>, String> {
    let Some(values) = map.get("enum") else { return Ok(None) };
    let values = values.as_array().ok_or("must be a list of strings")?;
    values
        .iter()
        .map(|v| v.as_str().map(str::to_string).ok_or_else(|| format!("{v} is not a string")))
        .collect::<Result<_, _>>()
        .map(Some)
}

/// The path of `required` beside the `properties` at `path`.
fn required_path(path: &str) -> String {
    format!("{}required", path.strip_suffix("properties").unwrap_or(path))
}

fn object_fields(map: &Map<String, Value>, path: &str, depth: usize) -> Result<Vec<JsonField>, (String, String)> {
    let properties = match map.get("properties") {
        Some(Value::Object(p)) if !p.is_empty() => p,
        _ => return Err((path.to_string(), "an object needs at least one property".into())),
    };
    let required: Vec<&str> = match map.get("required") {
        None => Vec::new(),
        Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
        Some(_) => return Err((required_path(path), "must be a list of property names".into())),
    };
    if let Some(missing) = required.iter().find(|name| !properties.contains_key(**name)) {
        return Err((required_path(path), format!("`{missing}` is not one of the properties")));
    }
    properties
        .iter()
        .map(|(name, schema)| {
            let shape = shape_at(schema, &format!("{path}.{name}"), depth + 1)?;
            Ok(JsonField { name: name.clone(), shape, required: required.contains(&name.as_str()) })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_object_of_scalars_lists_and_objects_is_read() {
        let schema = json!({"type": "object", "required": ["breed"], "properties": {
            "breed": {"type": "string"},
            "size": {"type": "string", "enum": ["small", "large"]},
            "confidence": {"type": ["number", "null"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "box": {"properties": {"w": {"type": "integer"}, "ok": {"type": "boolean"}}}
        }});
        let JsonShape::Object(fields) = json_shape(&schema).expect("supported") else { panic!("an object") };
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["box", "breed", "confidence", "size", "tags"]);
        assert!(fields[1].required && !fields[0].required);
        assert_eq!(fields[2].shape, JsonShape::Number);
        assert_eq!(fields[3].shape, JsonShape::String { allowed: Some(vec!["small".into(), "large".into()]) });
        assert_eq!(fields[4].shape, JsonShape::List(Box::new(JsonShape::String { allowed: None })));
    }

    #[test]
    fn what_is_not_supported_is_named_by_its_path() {
        let err = |schema: Value| json_shape(&schema).expect_err("refused");
        assert_eq!(err(json!({"type": "string"})).0, "type");
        assert_eq!(
            err(json!({"type": "object", "properties": {"a": {"type": "date"}}})),
            (
                "properties.a.type".into(),
                "`date` is not supported: use string, integer, number, boolean, array or object".into()
            )
        );
        assert_eq!(err(json!({"type": "object", "properties": {"a": {"type": "array"}}})).0, "properties.a.items");
        assert_eq!(
            err(json!({"type": "object", "required": ["b"], "properties": {"a": {"type": "string"}}})),
            ("required".into(), "`b` is not one of the properties".into())
        );
        assert_eq!(err(json!({"type": "object"})).0, "properties");
    }
}
