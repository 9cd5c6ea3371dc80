//! Small Arrow helpers shared by steps and the executor.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch, StringArray, make_array};
use arrow_buffer::NullBuffer;
use arrow_schema::{Field, Schema};

use crate::error::StepError;
use crate::{INTERNAL_PREFIX, ROW_REF_COLUMN};

/// Returns `input` with column `name` set to `values` (replaced in place, or appended).
///
/// # Errors
/// When `values` does not have one entry per row.
pub fn with_column(input: &RecordBatch, name: &str, values: ArrayRef) -> Result<RecordBatch, StepError> {
    let schema = input.schema();
    let field = Arc::new(Field::new(name, values.data_type().clone(), true));
    let mut fields: Vec<Arc<Field>> = schema.fields().iter().cloned().collect();
    let mut columns = input.columns().to_vec();
    match schema.index_of(name) {
        Ok(i) => {
            fields[i] = field;
            columns[i] = values;
        }
        Err(_) => {
            fields.push(field);
            columns.push(values);
        }
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// Schema metadata key under which the plan tells a step which columns a later step or the sink
/// reads (a JSON list of top-level names); absent means all of them.
pub const NEEDED_AFTER_KEY: &str = "weir.needed_after";

/// `batch` marked with the columns read after the step it is given to (see [`repeat_rows`]). Only
/// the schema changes; the data is shared.
///
/// # Errors
/// Only on an Arrow invariant violation.
pub fn mark_needed_after(batch: &RecordBatch, needed: &[String]) -> Result<RecordBatch, StepError> {
    let mut metadata = batch.schema().metadata().clone();
    metadata.insert(NEEDED_AFTER_KEY.to_string(), serde_json::Value::from(needed.to_vec()).to_string());
    let schema = Schema::new(batch.schema().fields().clone()).with_metadata(metadata);
    Ok(batch.clone().with_schema(Arc::new(schema))?)
}

/// The columns read after the current step, as [`mark_needed_after`] recorded them; `None` when
/// not recorded (every column is needed).
pub fn needed_after(batch: &RecordBatch) -> Option<Vec<String>> {
    let text = batch.schema_ref().metadata().get(NEEDED_AFTER_KEY)?.clone();
    serde_json::from_str(&text).ok()
}

/// Whether column `name` is kept under `needed`: listed there, or internal (`_weir_*`).
pub(crate) fn is_needed(needed: &[String], name: &str) -> bool {
    name.starts_with(INTERNAL_PREFIX) || needed.iter().any(|n| n == name)
}

/// `batch` with only the columns in `needed` and the internal ones, in their order, without the
/// plan's marks.
///
/// # Errors
/// Only on an Arrow invariant violation.
pub fn keep_needed(batch: &RecordBatch, needed: &[String]) -> Result<RecordBatch, StepError> {
    let schema = batch.schema();
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .filter(|(field, _)| is_needed(needed, field.name()))
        .map(|(field, column)| (field.as_ref().clone(), column.clone()))
        .unzip();
    let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)?)
}

/// Returns `input` without the rows at `rows` (sorted or not).
///
/// # Errors
/// Only on an Arrow invariant violation.
pub fn drop_rows(input: &RecordBatch, rows: &[usize]) -> Result<RecordBatch, StepError> {
    if rows.is_empty() {
        return Ok(input.clone());
    }
    let mut keep = vec![true; input.num_rows()];
    for &r in rows {
        if let Some(k) = keep.get_mut(r) {
            *k = false;
        }
    }
    Ok(arrow_select::filter::filter_record_batch(input, &BooleanArray::from(keep))?)
}

/// The column called `name`.
///
/// # Errors
/// [`StepError::Column`] when there is none.
pub fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, StepError> {
    batch.column_by_name(name).ok_or_else(|| {
        let have: Vec<&str> = batch
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .filter(|n| !n.starts_with(INTERNAL_PREFIX))
            .collect();
        StepError::column(name, format!("no such column (have: {})", have.join(", ")))
    })
}

/// The column `name`, or for a dotted name (`face.bbox`) with no column of that exact name, a
/// field of a struct column, nested as deep as the dots say. A field's rows are null wherever an
/// enclosing struct's row is.
///
/// # Errors
/// [`StepError::Column`] when the column or a field is missing, or a dotted parent is no struct.
pub fn column_path(batch: &RecordBatch, name: &str) -> Result<ArrayRef, StepError> {
    if let Some(col) = batch.column_by_name(name) {
        return Ok(col.clone());
    }
    let mut parts = name.split('.');
    let first = parts.next().unwrap_or(name);
    if first.len() == name.len() {
        return column(batch, name).cloned();
    }
    let mut current = column(batch, first).map_err(|e| StepError::column(name, e.to_string()))?.clone();
    let mut path = first.to_string();
    for part in parts {
        let Some(parent) = current.as_struct_opt() else {
            return Err(StepError::column(name, format!("`{path}` is {}, not a struct", current.data_type())));
        };
        let child = parent.column_by_name(part).ok_or_else(|| {
            let fields: Vec<&str> = parent.fields().iter().map(|f| f.name().as_str()).collect();
            StepError::column(name, format!("`{path}` has no field `{part}` (fields: {})", fields.join(", ")))
        })?;
        let nulls = NullBuffer::union(parent.nulls(), child.nulls());
        let data = child.to_data().into_builder().nulls(nulls).build()?;
        current = make_array(data);
        path = format!("{path}.{part}");
    }
    Ok(current)
}

/// Column `name` downcast to `T`.
///
/// # Errors
/// [`StepError::Column`] when missing or of another type; `expected` names the wanted type.
pub fn typed_column<'a, T: 'static>(batch: &'a RecordBatch, name: &str, expected: &str) -> Result<&'a T, StepError> {
    let col = column(batch, name)?;
    col.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| StepError::column(name, format!("expected {expected}, found {}", col.data_type())))
}

/// Bytes the morsel's visible rows occupy (slices count only their share).
pub fn batch_bytes(batch: &RecordBatch) -> u64 {
    batch.columns().iter().map(|c| c.to_data().get_slice_memory_size().unwrap_or(0) as u64).sum()
}

/// The row reference of row `row`, or a positional description when the source added none.
pub fn row_ref(refs: Option<&StringArray>, row: usize) -> String {
    match refs {
        Some(r) if row < r.len() && r.is_valid(row) => r.value(row).to_string(),
        _ => format!("row {row}"),
    }
}

/// The row-reference column of `batch`, if present.
pub fn row_refs(batch: &RecordBatch) -> Option<StringArray> {
    batch.column_by_name(ROW_REF_COLUMN).and_then(|c| c.as_any().downcast_ref::<StringArray>()).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int32Array;

    fn batch() -> RecordBatch {
        let a: ArrayRef = Arc::new(Int32Array::from(vec![1, 2, 3]));
        RecordBatch::try_from_iter([("a", a)]).expect("batch")
    }

    #[test]
    fn a_dotted_name_reads_a_struct_field_null_where_the_struct_is() {
        use arrow_array::{Float32Array, StructArray};
        use arrow_schema::{DataType, Fields};
        let fields = Fields::from(vec![Field::new("score", DataType::Float32, false)]);
        let scores: ArrayRef = Arc::new(Float32Array::from(vec![0.5, 0.0, 0.9]));
        let nulls = NullBuffer::from(vec![true, false, true]);
        let faces: ArrayRef = Arc::new(StructArray::new(fields, vec![scores], Some(nulls)));
        let input = RecordBatch::try_from_iter([("face", faces)]).expect("batch");
        let score = column_path(&input, "face.score").expect("field");
        assert_eq!(score.null_count(), 1);
        assert!(score.is_null(1));
        assert_eq!(score.as_primitive::<arrow_array::types::Float32Type>().value(2), 0.9);
        let missing = column_path(&input, "face.bbox").expect_err("no field").to_string();
        assert!(missing.contains("`face` has no field `bbox` (fields: score)"), "{missing}");
        assert!(column_path(&input, "face.score.x").expect_err("not a struct").to_string().contains("not a struct"));
        assert!(column_path(&input, "body.score").is_err());
    }

    #[test]
    fn with_column_appends_then_replaces() {
        let b = with_column(&batch(), "b", Arc::new(Int32Array::from(vec![4, 5, 6]))).expect("append");
        assert_eq!(b.num_columns(), 2);
        let c = with_column(&b, "a", Arc::new(Int32Array::from(vec![7, 8, 9]))).expect("replace");
        assert_eq!(c.num_columns(), 2);
        let a = c.column(0).as_any().downcast_ref::<Int32Array>().expect("i32");
        assert_eq!(a.values(), &[7, 8, 9]);
    }

    #[test]
    fn drop_rows_removes_exactly_the_failed_rows() {
        let out = drop_rows(&batch(), &[1]).expect("drop");
        let a = out.column(0).as_any().downcast_ref::<Int32Array>().expect("i32");
        assert_eq!(a.values(), &[1, 3]);
    }

    #[test]
    fn a_missing_column_names_the_columns_that_exist() {
        let err = column(&batch(), "x").expect_err("missing");
        assert_eq!(err.to_string(), "column `x`: no such column (have: a)");
    }
}
