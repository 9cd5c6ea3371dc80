//! Answers that must follow a JSON Schema: the answer read as JSON and checked against the
//! schema's shape ([`JsonShape`]), and the checked answers of a morsel as one Arrow struct column.

use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, ListArray, StringArray, StructArray};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields};
use serde_json::Value;
use weir_crds::{JsonField, JsonShape};

/// The Arrow type of values of `shape`; every field nullable (an optional property may be absent).
pub fn data_type(shape: &JsonShape) -> DataType {
    match shape {
        JsonShape::String { .. } => DataType::Utf8,
        JsonShape::Integer => DataType::Int64,
        JsonShape::Number => DataType::Float64,
        JsonShape::Boolean => DataType::Boolean,
        JsonShape::List(item) => DataType::List(Arc::new(Field::new("item", data_type(item), true))),
        JsonShape::Object(fields) => DataType::Struct(struct_fields(fields)),
    }
}

fn struct_fields(fields: &[JsonField]) -> Fields {
    fields.iter().map(|f| Field::new(&f.name, data_type(&f.shape), true)).collect()
}

/// The JSON value an answer's text holds, with a Markdown code fence around it allowed.
///
/// # Errors
/// Why the text is not JSON that follows `shape`: which property, and what is wrong.
pub fn read_answer(text: &str, shape: &JsonShape) -> Result<Value, String> {
    let trimmed = strip_fence(text.trim());
    let value: Value = serde_json::from_str(trimmed).map_err(|e| format!("it is not JSON ({e})"))?;
    check(&value, shape, "")?;
    Ok(value)
}

fn strip_fence(text: &str) -> &str {
    let Some(rest) = text.strip_prefix("```") else { return text };
    let body = rest.split_once('\n').map_or(rest, |(_, body)| body);
    body.trim_end().strip_suffix("```").unwrap_or(body).trim()
}

/// Whether `value` fits `shape`; `path` names where (`box.w`).
fn check(value: &Value, shape: &JsonShape, path: &str) -> Result<(), String> {
    let at = if path.is_empty() { "the answer".to_string() } else { format!("`{path}`") };
    let ok = match (shape, value) {
        (_, Value::Null) if !path.is_empty() => true,
        (JsonShape::String { allowed }, Value::String(s)) => match allowed {
            Some(allowed) if !allowed.contains(s) => {
                return Err(format!("{at} is \"{s}\", not one of: {}", allowed.join(", ")));
            }
            _ => true,
        },
        (JsonShape::Integer, Value::Number(n)) => integer(n).is_some(),
        (JsonShape::Number, Value::Number(_)) | (JsonShape::Boolean, Value::Bool(_)) => true,
        (JsonShape::List(item), Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                check(v, item, &format!("{path}[{i}]"))?;
            }
            true
        }
        (JsonShape::Object(fields), Value::Object(map)) => {
            for field in fields {
                let inner = if path.is_empty() { field.name.clone() } else { format!("{path}.{}", field.name) };
                match map.get(&field.name) {
                    None | Some(Value::Null) if field.required => {
                        return Err(format!("`{inner}` is required but missing"));
                    }
                    None => {}
                    Some(v) => check(v, &field.shape, &inner)?,
                }
            }
            true
        }
        _ => false,
    };
    if ok { Ok(()) } else { Err(format!("{at} should be {}, not {}", expected(shape), short(value))) }
}

/// An integer, also when written `3.0`.
fn integer(n: &serde_json::Number) -> Option<i64> {
    n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64))
}

fn expected(shape: &JsonShape) -> &'static str {
    match shape {
        JsonShape::String { .. } => "a string",
        JsonShape::Integer => "an integer",
        JsonShape::Number => "a number",
        JsonShape::Boolean => "true or false",
        JsonShape::List(_) => "a list",
        JsonShape::Object(_) => "an object",
    }
}

fn short(value: &Value) -> String {
    crate::request::shorten(&value.to_string()).chars().take(60).collect()
}

/// One Arrow array of `values` (checked by [`read_answer`]; `None` for rows without an answer).
pub fn to_array(shape: &JsonShape, values: &[Option<&Value>]) -> ArrayRef {
    match shape {
        JsonShape::String { .. } => Arc::new(StringArray::from_iter(values.iter().map(|v| v.and_then(Value::as_str)))),
        JsonShape::Integer => {
            Arc::new(Int64Array::from_iter(values.iter().map(|v| v.and_then(|v| v.as_number()).and_then(integer))))
        }
        JsonShape::Number => Arc::new(Float64Array::from_iter(values.iter().map(|v| v.and_then(Value::as_f64)))),
        JsonShape::Boolean => Arc::new(BooleanArray::from_iter(values.iter().map(|v| v.and_then(Value::as_bool)))),
        JsonShape::List(item) => {
            let lists: Vec<Option<&Vec<Value>>> = values.iter().map(|v| v.and_then(Value::as_array)).collect();
            let items: Vec<Option<&Value>> = lists.iter().flatten().flat_map(|l| l.iter()).map(Some).collect();
            let offsets = OffsetBuffer::from_lengths(lists.iter().map(|l| l.map_or(0, |l| l.len())));
            let nulls = NullBuffer::from_iter(lists.iter().map(Option::is_some));
            let field = Arc::new(Field::new("item", data_type(item), true));
            Arc::new(ListArray::new(field, offsets, to_array(item, &items), Some(nulls)))
        }
        JsonShape::Object(fields) => {
            let objects: Vec<Option<&serde_json::Map<String, Value>>> =
                values.iter().map(|v| v.and_then(Value::as_object)).collect();
            let children = fields
                .iter()
                .map(|field| {
                    let column: Vec<Option<&Value>> =
                        objects.iter().map(|o| o.and_then(|o| o.get(&field.name)).filter(|v| !v.is_null())).collect();
                    to_array(&field.shape, &column)
                })
                .collect();
            let nulls = NullBuffer::from_iter(objects.iter().map(Option::is_some));
            Arc::new(StructArray::new(struct_fields(fields), children, Some(nulls)))
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;
    use serde_json::json;
    use weir_crds::json_shape;

    use super::*;

    fn shape() -> JsonShape {
        json_shape(&json!({"type": "object", "required": ["breed"], "properties": {
            "breed": {"type": "string"},
            "size": {"type": "string", "enum": ["small", "large"]},
            "legs": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
        }}))
        .expect("supported")
    }

    #[test]
    fn a_fenced_answer_is_read_and_each_break_is_named() {
        let fenced = "```json\n{\"breed\": \"pug\", \"legs\": 4.0}\n```";
        assert_eq!(read_answer(fenced, &shape()).expect("fits")["breed"], json!("pug"));
        let err = |text: &str| read_answer(text, &shape()).expect_err("breaks");
        assert_eq!(err(r#"{"size": "small"}"#), "`breed` is required but missing");
        assert_eq!(err(r#"{"breed": "pug", "size": "huge"}"#), "`size` is \"huge\", not one of: small, large");
        assert_eq!(err(r#"{"breed": "pug", "legs": 3.5}"#), "`legs` should be an integer, not 3.5");
        assert_eq!(err(r#"{"breed": "pug", "tags": ["a", 1]}"#), "`tags[1]` should be a string, not 1");
        assert_eq!(err("[1]"), "the answer should be an object, not [1]");
        assert!(err("It is a pug.").starts_with("it is not JSON"));
    }

    #[test]
    fn answers_become_a_struct_column_with_nulls_where_absent() {
        let a = json!({"breed": "pug", "legs": 4, "tags": ["small", "flat"]});
        let b = json!({"breed": "husky"});
        let array = to_array(&shape(), &[Some(&a), None, Some(&b)]);
        assert_eq!(array.data_type(), &data_type(&shape()));
        let rows = array.as_struct();
        assert!(rows.is_null(1));
        let breeds = rows.column_by_name("breed").expect("breed").as_string::<i32>();
        assert_eq!((breeds.value(0), breeds.value(2)), ("pug", "husky"));
        let legs = rows.column_by_name("legs").expect("legs").as_primitive::<Int64Type>();
        assert_eq!((legs.value(0), legs.is_null(2)), (4, true));
        let tags = rows.column_by_name("tags").expect("tags").as_list::<i32>();
        assert_eq!(tags.value(0).as_string::<i32>().iter().collect::<Vec<_>>(), [Some("small"), Some("flat")]);
        assert!(tags.is_null(2));
    }
}
