//! Text steps: normalisation, chunking and tokenization.

pub mod chunk;
pub mod normalize;
pub mod tokenize;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use arrow_schema::DataType;
use weir_core::StepError;

/// The rows of a string (or large string) column; `None` for nulls.
///
/// # Errors
/// [`StepError::Column`] when the column is missing or not a string column.
pub fn string_rows<'a>(batch: &'a RecordBatch, name: &str) -> Result<Vec<Option<&'a str>>, StepError> {
    let col = weir_core::batch::column(batch, name)?;
    match col.data_type() {
        DataType::Utf8 => Ok(col.as_string::<i32>().iter().collect()),
        DataType::LargeUtf8 => Ok(col.as_string::<i64>().iter().collect()),
        DataType::Utf8View => Ok(col.as_string_view().iter().collect()),
        other => Err(StepError::column(name, format!("expected text, found {other}"))),
    }
}
