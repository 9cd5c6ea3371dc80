//! `filter`: keep the rows for which every predicate holds; a null never satisfies a predicate.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, Scalar, StringArray};
use arrow_schema::DataType;
use serde_json::Value;
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{Step, StepError, StepOutput, batch};
use weir_crds::{CmpOp, Filter, Predicate};

use crate::BuildError;

/// The runnable `filter` step.
#[derive(Debug, Clone)]
pub struct FilterRows {
    pub predicates: Vec<Predicate>,
}

/// Builds `filter`.
///
/// # Errors
/// When a predicate lacks the value its operator needs.
pub fn build(config: &Filter) -> Result<Arc<dyn Step>, BuildError> {
    for (i, p) in config.predicates.iter().enumerate() {
        let field = format!("where[{i}].value");
        match (p.op, &p.value) {
            (CmpOp::IsNull | CmpOp::NotNull, _) => {}
            (CmpOp::In, Some(Value::Array(_))) => {}
            (CmpOp::In, _) => return Err(BuildError::new(&field, "`in` needs a list of values")),
            (_, None | Some(Value::Null)) => {
                return Err(BuildError::new(&field, format!("`{:?}` needs a value", p.op)));
            }
            (_, Some(Value::Array(_) | Value::Object(_))) => {
                return Err(BuildError::new(&field, "must be a single value (a string, number or boolean)"));
            }
            _ => {}
        }
    }
    Ok(Arc::new(ComputeStep(FilterRows { predicates: config.predicates.clone() })))
}

impl Kernel for FilterRows {
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let mut keep = vec![true; input.num_rows()];
        for p in &self.predicates {
            let mask = evaluate(p, input)?;
            for (k, m) in keep.iter_mut().zip(mask.iter()) {
                *k &= m.unwrap_or(false);
            }
        }
        let out = arrow_select::filter::filter_record_batch(input, &BooleanArray::from(keep))?;
        Ok(StepOutput::ok(out))
    }
}

/// The column or struct field a predicate names (`image.width`).
fn resolve(batch: &RecordBatch, path: &str) -> Result<ArrayRef, StepError> {
    let mut parts = path.split('.');
    let head = parts.next().unwrap_or_default();
    let mut array = batch::column(batch, head)?.clone();
    for part in parts {
        let DataType::Struct(_) = array.data_type() else {
            return Err(StepError::column(
                path,
                format!("`{part}` is not a field: {} is not a struct", array.data_type()),
            ));
        };
        let child = array.as_struct().column_by_name(part).cloned();
        array = child.ok_or_else(|| StepError::column(path, format!("struct has no field `{part}`")))?;
    }
    Ok(array)
}

fn evaluate(p: &Predicate, input: &RecordBatch) -> Result<BooleanArray, StepError> {
    let col = resolve(input, &p.column)?;
    let value = p.value.as_ref();
    Ok(match p.op {
        CmpOp::IsNull => (0..col.len()).map(|i| Some(col.is_null(i))).collect(),
        CmpOp::NotNull => (0..col.len()).map(|i| Some(col.is_valid(i))).collect(),
        CmpOp::Contains | CmpOp::StartsWith | CmpOp::EndsWith => string_match(p, &col, value)?,
        CmpOp::In => {
            let mut any = vec![false; col.len()];
            for v in value.and_then(Value::as_array).into_iter().flatten() {
                let eq = arrow_ord::cmp::eq(&col, &scalar(&p.column, v, col.data_type())?)?;
                for (a, m) in any.iter_mut().zip(eq.iter()) {
                    *a |= m.unwrap_or(false);
                }
            }
            (0..col.len()).map(|i| if col.is_null(i) { None } else { Some(any[i]) }).collect()
        }
        op => {
            let s = scalar(&p.column, value.unwrap_or(&Value::Null), col.data_type())?;
            match op {
                CmpOp::Eq => arrow_ord::cmp::eq(&col, &s)?,
                CmpOp::Ne => arrow_ord::cmp::neq(&col, &s)?,
                CmpOp::Lt => arrow_ord::cmp::lt(&col, &s)?,
                CmpOp::Le => arrow_ord::cmp::lt_eq(&col, &s)?,
                CmpOp::Gt => arrow_ord::cmp::gt(&col, &s)?,
                _ => arrow_ord::cmp::gt_eq(&col, &s)?,
            }
        }
    })
}

/// A literal cast to the column's type.
fn scalar(column: &str, value: &Value, to: &DataType) -> Result<Scalar<ArrayRef>, StepError> {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let literal: ArrayRef = Arc::new(StringArray::from(vec![text.clone()]));
    let cast = arrow_cast::cast(&literal, to).ok().filter(|a| a.is_valid(0));
    let array =
        cast.ok_or_else(|| StepError::column(column, format!("value `{text}` cannot be compared with a {to} column")))?;
    Ok(Scalar::new(array))
}

fn string_match(p: &Predicate, col: &ArrayRef, value: Option<&Value>) -> Result<BooleanArray, StepError> {
    let needle = value
        .and_then(Value::as_str)
        .ok_or_else(|| StepError::column(&p.column, "text matching needs a string value"))?;
    let strings = match col.data_type() {
        DataType::Utf8 => col.as_string::<i32>().iter().collect::<Vec<_>>(),
        DataType::LargeUtf8 => col.as_string::<i64>().iter().collect(),
        other => {
            return Err(StepError::column(&p.column, format!("text matching needs a string column, found {other}")));
        }
    };
    Ok(strings
        .into_iter()
        .map(|s| {
            s.map(|s| match p.op {
                CmpOp::Contains => s.contains(needle),
                CmpOp::StartsWith => s.starts_with(needle),
                _ => s.ends_with(needle),
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, UInt32Array};
    use serde_json::json;

    fn batch() -> RecordBatch {
        let size: ArrayRef = Arc::new(Int64Array::from(vec![Some(10), Some(2000), None, Some(500)]));
        let uri: ArrayRef = Arc::new(StringArray::from(vec!["a.jpg", "b.png", "c.jpg", "d.JPG"]));
        let width: ArrayRef = Arc::new(UInt32Array::from(vec![100, 300, 224, 50]));
        let image = arrow_array::StructArray::from(vec![(
            Arc::new(arrow_schema::Field::new("width", DataType::UInt32, false)),
            width,
        )]);
        RecordBatch::try_from_iter([("size", size), ("uri", uri), ("image", Arc::new(image) as ArrayRef)])
            .expect("batch")
    }

    fn run(predicates: serde_json::Value) -> Vec<String> {
        let filter: Filter = serde_json::from_value(json!({"where": predicates})).expect("config");
        let step = FilterRows { predicates: filter.predicates };
        let out = step.apply(&batch()).expect("filter").batch;
        out.column_by_name("uri").expect("uri").as_string::<i32>().iter().flatten().map(String::from).collect()
    }

    #[test]
    fn predicates_combine_with_and_and_nulls_never_match() {
        assert_eq!(run(json!([{"column": "size", "op": "ge", "value": 500}])), ["b.png", "d.JPG"]);
        assert_eq!(
            run(
                json!([{"column": "size", "op": "ne", "value": 10}, {"column": "uri", "op": "endsWith", "value": ".png"}])
            ),
            ["b.png"]
        );
        assert_eq!(run(json!([{"column": "size", "op": "isNull"}])), ["c.jpg"]);
        assert_eq!(run(json!([{"column": "size", "op": "in", "value": [10, 500]}])), ["a.jpg", "d.JPG"]);
        assert_eq!(run(json!([{"column": "image.width", "op": "ge", "value": "224"}])), ["b.png", "c.jpg"]);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named() {
        let step = FilterRows {
            predicates: vec![Predicate { column: "size".into(), op: CmpOp::Gt, value: Some(json!("big")) }],
        };
        let err = step.apply(&batch()).expect_err("bad value").to_string();
        assert_eq!(err, "column `size`: value `big` cannot be compared with a Int64 column");
    }
}
