//! `explode`: one output row per element of a list column; other columns repeat.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::DataType;
use weir_core::repeat::{RowBound, repeat_rows};
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{Step, StepError, StepOutput, batch};
use weir_crds::Explode;

use crate::BuildError;

/// The runnable `explode` step.
#[derive(Debug, Clone)]
pub struct ExplodeList {
    pub input: String,
    pub output: String,
    pub bound: RowBound,
}

/// Builds `explode`.
///
/// # Errors
/// Never for a validated config.
pub fn build(config: &Explode) -> Result<Arc<dyn Step>, BuildError> {
    let output = config.output.clone().unwrap_or_else(|| config.input.clone());
    let bound = RowBound::new(config.max_rows_per_input, config.max_bytes_per_input);
    Ok(Arc::new(ComputeStep(ExplodeList { input: config.input.clone(), output, bound })))
}

impl Kernel for ExplodeList {
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let col = batch::column(input, &self.input)?;
        let (elements, lengths): (ArrayRef, Vec<usize>) = match col.data_type() {
            DataType::List(_) => list_parts(col.as_list::<i32>()),
            DataType::LargeList(_) => list_parts(col.as_list::<i64>()),
            DataType::FixedSizeList(_, _) => {
                let list = col.as_fixed_size_list();
                let n = list.value_length() as usize;
                let lengths = (0..list.len()).map(|i| if list.is_null(i) { 0 } else { n }).collect();
                let values = list.values().slice(list.offset() * n, list.len() * n);
                let keep: Vec<u32> = (0..list.len())
                    .filter(|i| list.is_valid(*i))
                    .flat_map(|i| (i * n) as u32..((i + 1) * n) as u32)
                    .collect();
                (arrow_select::take::take(&values, &UInt32Array::from(keep), None)?, lengths)
            }
            other => {
                return Err(StepError::column(&self.input, format!("expected a list column, found {other}")));
            }
        };
        let parents: Vec<u32> =
            lengths.iter().enumerate().flat_map(|(row, &n)| std::iter::repeat_n(row as u32, n)).collect();
        // The list column itself is not repeated; a column named like the output is replaced.
        let others: Vec<usize> =
            (0..input.num_columns()).filter(|&c| input.schema().field(c).name() != &self.input).collect();
        let others = input.project(&others)?;
        Ok(repeat_rows(&others, &parents, vec![(self.output.clone(), elements)], &self.bound)?.into_output(Vec::new()))
    }
}

/// The visible elements of a variable-size list and each row's length (nulls count as empty).
fn list_parts<O: arrow_array::OffsetSizeTrait>(list: &arrow_array::GenericListArray<O>) -> (ArrayRef, Vec<usize>) {
    let offsets = list.value_offsets();
    let lengths: Vec<usize> =
        (0..list.len()).map(|i| if list.is_null(i) { 0 } else { (offsets[i + 1] - offsets[i]).as_usize() }).collect();
    let keep: Vec<u32> = (0..list.len())
        .filter(|&i| list.is_valid(i))
        .flat_map(|i| offsets[i].as_usize() as u32..offsets[i + 1].as_usize() as u32)
        .collect();
    let elements = arrow_select::take::take(list.values(), &UInt32Array::from(keep), None)
        .unwrap_or_else(|_| list.values().slice(0, 0));
    (elements, lengths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::types::Int32Type;
    use arrow_array::{Int32Array, ListArray, StringArray};

    #[test]
    fn each_element_becomes_a_row_and_empty_lists_vanish() {
        let lists = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2)]),
            None,
            Some(vec![]),
            Some(vec![Some(3)]),
        ]);
        let names: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "c", "d"]));
        let input = RecordBatch::try_from_iter([("name", names), ("xs", Arc::new(lists) as ArrayRef)]).expect("batch");
        let step = ExplodeList { input: "xs".into(), output: "x".into(), bound: RowBound::default() };
        let out = step.apply(&input).expect("explode").batch;
        let names = out.column_by_name("name").expect("name").as_string::<i32>();
        let xs = out.column_by_name("x").expect("x").as_any().downcast_ref::<Int32Array>().expect("i32");
        assert_eq!(names.iter().flatten().collect::<Vec<_>>(), vec!["a", "a", "d"]);
        assert_eq!(xs.values(), &[1, 2, 3]);
        assert!(out.column_by_name("xs").is_none());
    }

    #[test]
    fn a_list_longer_than_max_rows_per_input_is_a_row_error_and_the_other_rows_explode() {
        let lists = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), Some(2), Some(3)]),
            Some(vec![Some(4), Some(5)]),
        ]);
        let names: ArrayRef = Arc::new(StringArray::from(vec!["long", "short"]));
        let input = RecordBatch::try_from_iter([("name", names), ("xs", Arc::new(lists) as ArrayRef)]).expect("batch");
        let step = ExplodeList { input: "xs".into(), output: "x".into(), bound: RowBound::new(Some(2), None) };
        let out = step.apply(&input).expect("explode");
        let xs = out.batch.column_by_name("x").expect("x").as_any().downcast_ref::<Int32Array>().expect("i32");
        assert_eq!(xs.values(), &[4, 5]);
        assert_eq!(out.failures.len(), 1);
        assert_eq!(out.failures[0].row, 0);
        assert!(out.failures[0].message.contains("maxRowsPerInput (2)"), "{}", out.failures[0].message);
    }
}
