//! Row-multiplying steps: other columns repeated per output row, bounded per input row and cut into parts.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, BooleanArray, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::StreamExt;

use crate::batch::{is_needed, needed_after};
use crate::budget::format_size;
use crate::error::StepError;
use crate::step::{RowFailure, StepOutput};

/// Default of a step's `maxRowsPerInput`.
pub const DEFAULT_MAX_ROWS_PER_INPUT: u64 = 1_000_000;

/// Default of a step's `maxBytesPerInput`.
pub const DEFAULT_MAX_BYTES_PER_INPUT: u64 = 256 << 20;

/// Repeated bytes one output part holds at most (one part at least one row): far under Arrow's
/// 2 GiB offsets, and small enough that a part is one ordinary morsel downstream.
pub const PART_BYTES: u64 = 64 << 20;

/// What one input row of a row-multiplying step may make; past either bound the row is a row
/// failure naming the bound, never a failure of the morsel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowBound {
    /// Output rows (`maxRowsPerInput`).
    pub max_rows: u64,
    /// Bytes of the input row's other columns copied into all of its output rows
    /// (`maxBytesPerInput`): string and binary values counted exactly, others on average.
    pub max_bytes: u64,
}

impl Default for RowBound {
    fn default() -> Self {
        Self { max_rows: DEFAULT_MAX_ROWS_PER_INPUT, max_bytes: DEFAULT_MAX_BYTES_PER_INPUT }
    }
}

impl RowBound {
    /// The manifest's bounds, each defaulted when absent.
    pub fn new(max_rows: Option<u64>, max_bytes: Option<u64>) -> Self {
        let default = Self::default();
        Self { max_rows: max_rows.unwrap_or(default.max_rows), max_bytes: max_bytes.unwrap_or(default.max_bytes) }
    }
}

/// The output of a row-multiplying step ([`repeat_rows`]): its first part, the input rows
/// refused, and the later parts, made only when read.
pub struct Repeated {
    pub batch: RecordBatch,
    /// Input rows past the [`RowBound`], in input order.
    pub failures: Vec<RowFailure>,
    rest: Option<Parts>,
}

impl std::fmt::Debug for Repeated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repeated")
            .field("batch", &self.batch)
            .field("failures", &self.failures)
            .field("later_parts", &self.rest.as_ref().map_or(0, |p| p.ranges.len()))
            .finish()
    }
}

impl Repeated {
    /// The step's output: the first part with every failure (and `failures`, which must name
    /// rows of the same input), then the later parts as [`StepOutput::more`].
    pub fn into_output(self, mut failures: Vec<RowFailure>) -> StepOutput {
        failures.extend(self.failures);
        failures.sort_by_key(|f| f.row);
        let mut output = StepOutput::new(self.batch, failures);
        if let Some(parts) = self.rest {
            let stream =
                futures::stream::iter(parts.ranges.clone()).map(move |range| parts.make(range).map(StepOutput::ok));
            output.more = Some(Box::pin(stream));
        }
        output
    }
}

/// The output of a row-multiplying step: `input`'s columns repeated per output row (`parents[i]`
/// is the input row of output row `i`, in input order), followed by `added` (one value per output
/// row each). Input columns named like an added column are dropped, and so are those the plan
/// marked as read by no later step nor the sink ([`needed_after`](crate::batch::needed_after)): a
/// document's bytes are not copied into each of its chunks when nothing reads them again.
///
/// An input row past `bound` makes no rows: it is a row failure that says which bound and what to
/// do, never a failure of the morsel. The output comes in parts of at most [`PART_BYTES`] of
/// repeated bytes, so however many rows pass the bound together, no column passes Arrow's 2 GiB
/// offsets; later parts are copied only when read.
///
/// # Errors
/// Only on an Arrow invariant violation (e.g. an `added` column of the wrong length).
pub fn repeat_rows(
    input: &RecordBatch,
    parents: &[u32],
    added: Vec<(String, ArrayRef)>,
    bound: &RowBound,
) -> Result<Repeated, StepError> {
    let schema = input.schema();
    let needed = needed_after(input);
    let kept: Vec<usize> = (0..schema.fields().len())
        .filter(|&c| {
            let name = schema.field(c).name();
            needed.as_ref().is_none_or(|n| is_needed(n, name)) && added.iter().all(|(a, _)| a != name)
        })
        .collect();
    let row_bytes = repeated_bytes_per_row(input, &kept);
    let (parents, added, failures) = refuse_past_bound(&row_bytes, parents, added, bound)?;
    let mut fields: Vec<Field> = kept.iter().map(|&c| schema.field(c).clone()).collect();
    fields.extend(added.iter().map(|(name, column)| Field::new(name, column.data_type().clone(), true)));
    let parts = Parts {
        schema: Arc::new(Schema::new(fields)),
        columns: kept.iter().map(|&c| input.column(c).clone()).collect(),
        added: added.into_iter().map(|(_, column)| column).collect(),
        ranges: part_ranges(&parents, &row_bytes),
        parents: Arc::new(parents),
    };
    let first = parts.ranges.first().cloned().unwrap_or(0..0);
    let batch = parts.make(first)?;
    let rest = (parts.ranges.len() > 1).then(|| Parts { ranges: parts.ranges[1..].to_vec(), ..parts });
    Ok(Repeated { batch, failures, rest })
}

/// What later parts are made of: the input's kept columns, the added columns and each part's
/// range of output rows.
struct Parts {
    schema: SchemaRef,
    columns: Vec<ArrayRef>,
    added: Vec<ArrayRef>,
    parents: Arc<Vec<u32>>,
    ranges: Vec<Range<usize>>,
}

impl Parts {
    fn make(&self, range: Range<usize>) -> Result<RecordBatch, StepError> {
        let indices = UInt32Array::from(self.parents[range.clone()].to_vec());
        let mut columns = Vec::with_capacity(self.columns.len() + self.added.len());
        for column in &self.columns {
            columns.push(arrow_select::take::take(column, &indices, None)?);
        }
        for column in &self.added {
            columns.push(column.slice(range.start, range.len()));
        }
        let options = RecordBatchOptions::new().with_row_count(Some(range.len()));
        Ok(RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?)
    }
}

/// Consecutive ranges of output rows, each repeating at most [`PART_BYTES`] (and at least one
/// row); one empty range when there are no rows.
fn part_ranges(parents: &[u32], row_bytes: &[u64]) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, &p) in parents.iter().enumerate() {
        let b = row_bytes.get(p as usize).copied().unwrap_or(0);
        if i > start && bytes + b > PART_BYTES {
            ranges.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += b;
    }
    if start < parents.len() || ranges.is_empty() {
        ranges.push(start..parents.len());
    }
    ranges
}

/// Bytes of the `kept` columns in each input row.
fn repeated_bytes_per_row(input: &RecordBatch, kept: &[usize]) -> Vec<u64> {
    let mut row_bytes = vec![0u64; input.num_rows()];
    for &c in kept {
        for (row, bytes) in row_bytes.iter_mut().zip(value_sizes(input.column(c))) {
            *row += bytes;
        }
    }
    row_bytes
}

/// `parents` and `added` without the output rows of input rows past `bound`, and a failure for
/// each such input row.
#[allow(clippy::type_complexity)]
fn refuse_past_bound(
    row_bytes: &[u64],
    parents: &[u32],
    added: Vec<(String, ArrayRef)>,
    bound: &RowBound,
) -> Result<(Vec<u32>, Vec<(String, ArrayRef)>, Vec<RowFailure>), StepError> {
    let mut children = vec![0u64; row_bytes.len()];
    for &p in parents {
        if let Some(n) = children.get_mut(p as usize) {
            *n += 1;
        }
    }
    let mut refused = Vec::new();
    let mut failures = Vec::new();
    for (row, (&rows, &bytes)) in children.iter().zip(row_bytes).enumerate() {
        if let Some(message) = past_bound(rows, bytes, bound) {
            refused.push(row);
            failures.push(RowFailure::new(row, message));
        }
    }
    if refused.is_empty() {
        return Ok((parents.to_vec(), added, failures));
    }
    let kept = |p: &u32| refused.binary_search(&(*p as usize)).is_err();
    let keep = BooleanArray::from(parents.iter().map(kept).collect::<Vec<_>>());
    let parents = parents.iter().copied().filter(kept).collect();
    let added = added
        .into_iter()
        .map(|(name, column)| Ok((name, arrow_select::filter::filter(&column, &keep)?)))
        .collect::<Result<_, StepError>>()?;
    Ok((parents, added, failures))
}

/// Why an input row making `rows` rows, each repeating `bytes`, is past `bound`.
fn past_bound(rows: u64, bytes: u64, bound: &RowBound) -> Option<String> {
    if rows > bound.max_rows {
        return Some(format!(
            "this row makes {rows} rows, over the step's maxRowsPerInput ({}): raise it, or make fewer rows of one input",
            bound.max_rows
        ));
    }
    let total = rows.saturating_mul(bytes);
    (total > bound.max_bytes).then(|| {
        format!(
            "this row makes {rows} rows, each repeating {} of its other columns ({} in all, over the step's maxBytesPerInput of {}): \
             drop the columns no later step needs (a `select` before this step, or the sink's `columns`), or raise maxBytesPerInput",
            format_size(bytes),
            format_size(total),
            format_size(bound.max_bytes)
        )
    })
}

/// Bytes of each value of `column`: exact for strings and binaries, else the column's buffers
/// spread evenly over its rows.
fn value_sizes(column: &ArrayRef) -> Vec<u64> {
    let lengths = |offsets: Vec<i64>| offsets.windows(2).map(|w| (w[1] - w[0]).max(0) as u64).collect();
    match column.data_type() {
        DataType::Utf8 => lengths(column.as_string::<i32>().offsets().iter().map(|o| *o as i64).collect()),
        DataType::LargeUtf8 => lengths(column.as_string::<i64>().offsets().to_vec()),
        DataType::Binary => lengths(column.as_binary::<i32>().offsets().iter().map(|o| *o as i64).collect()),
        DataType::LargeBinary => lengths(column.as_binary::<i64>().offsets().to_vec()),
        _ => {
            let rows = column.len().max(1) as u64;
            vec![column.get_buffer_memory_size() as u64 / rows; column.len()]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ROW_REF_COLUMN;
    use crate::batch::{keep_needed, mark_needed_after};
    use arrow_array::{Array, StringArray};

    fn document() -> RecordBatch {
        let uri: ArrayRef = Arc::new(StringArray::from(vec!["a.txt", "b.txt"]));
        let text: ArrayRef = Arc::new(StringArray::from(vec!["x".repeat(1 << 20), "short".to_string()]));
        let refs: ArrayRef = Arc::new(StringArray::from(vec!["a.txt", "b.txt"]));
        RecordBatch::try_from_iter([("uri", uri), ("text", text), (ROW_REF_COLUMN, refs)]).expect("batch")
    }

    fn names(batch: &RecordBatch) -> Vec<String> {
        batch.schema().fields().iter().map(|f| f.name().clone()).collect()
    }

    fn chunks(n: usize) -> Vec<(String, ArrayRef)> {
        vec![("chunk".into(), Arc::new(StringArray::from_iter_values((0..n).map(|i| i.to_string()))) as ArrayRef)]
    }

    #[test]
    fn a_row_multiplying_step_repeats_only_the_columns_read_after_it() {
        let marked = mark_needed_after(&document(), &["uri".to_string(), "chunk".to_string()]).expect("mark");
        let repeated = repeat_rows(&marked, &[0, 0, 1], chunks(3), &RowBound::default()).expect("repeat");
        assert_eq!(names(&repeated.batch), ["uri", ROW_REF_COLUMN, "chunk"], "the dead text is not repeated");
        assert!(repeated.failures.is_empty());
        let kept = keep_needed(&marked, &["text".to_string()]).expect("keep");
        assert_eq!(names(&kept), ["text", ROW_REF_COLUMN], "internal columns are always kept");
        assert!(kept.schema().metadata().is_empty(), "the plan's marks never reach the sink");
    }

    #[test]
    fn an_input_row_repeated_past_the_byte_bound_is_a_row_failure_and_the_others_are_kept() {
        let children = (DEFAULT_MAX_BYTES_PER_INPUT >> 20) as usize + 1;
        let mut parents = vec![0u32; children];
        parents.extend([1, 1]);
        let repeated = repeat_rows(&document(), &parents, chunks(parents.len()), &RowBound::default()).expect("repeat");
        assert_eq!(repeated.batch.num_rows(), 2, "only b.txt's rows");
        assert_eq!(repeated.batch.column_by_name("chunk").map(|c| c.len()), Some(2));
        assert_eq!(repeated.failures.len(), 1);
        assert_eq!(repeated.failures[0].row, 0);
        let message = &repeated.failures[0].message;
        assert!(message.contains("makes 257 rows") && message.contains("maxBytesPerInput of 256.0 MiB"), "{message}");
    }

    #[test]
    fn an_input_row_past_the_row_bound_is_a_row_failure_naming_the_field() {
        let bound = RowBound::new(Some(2), None);
        let repeated = repeat_rows(&document(), &[0, 1, 1, 1], chunks(4), &bound).expect("repeat");
        assert_eq!(repeated.batch.num_rows(), 1, "a.txt's one row");
        assert_eq!(repeated.failures.len(), 1);
        assert_eq!(repeated.failures[0].row, 1);
        assert!(repeated.failures[0].message.contains("makes 3 rows, over the step's maxRowsPerInput (2)"));
    }

    #[tokio::test]
    async fn rows_that_together_pass_two_gib_come_in_parts_each_under_the_part_size() {
        // Twelve 1 MiB documents of 200 chunks each: 2.3 GiB repeated in all, 200 MiB per document
        // (under the bound), which one Arrow string column could not hold.
        let docs = 12;
        let text: ArrayRef = Arc::new(StringArray::from_iter_values((0..docs).map(|_| "y".repeat(1 << 20))));
        let input = RecordBatch::try_from_iter([("text", text)]).expect("batch");
        let parents: Vec<u32> = (0..docs as u32).flat_map(|d| std::iter::repeat_n(d, 200)).collect();
        let repeated = repeat_rows(&input, &parents, chunks(parents.len()), &RowBound::default()).expect("repeat");
        assert!(repeated.failures.is_empty());
        let output = repeated.into_output(Vec::new());
        let mut parts = vec![output.batch];
        let mut more = output.more.expect("later parts");
        let mut chunk_values = Vec::new();
        loop {
            // Each part is read and dropped before the next is made: 64 MiB at a time, not 2.3 GiB.
            let Some(part) = parts.pop() else { break };
            assert!(crate::batch::batch_bytes(&part) <= PART_BYTES + (1 << 20), "{}", crate::batch::batch_bytes(&part));
            let c = part.column_by_name("chunk").expect("chunk").as_string::<i32>().clone();
            chunk_values.extend((0..c.len()).map(|i| c.value(i).to_string()));
            if let Some(next) = more.next().await {
                parts.push(next.expect("part").batch);
            }
        }
        assert_eq!(
            chunk_values,
            (0..parents.len()).map(|i| i.to_string()).collect::<Vec<_>>(),
            "every row once, in order"
        );
    }

    #[test]
    fn part_ranges_cover_every_row_once_and_never_split_below_one_row() {
        assert_eq!(part_ranges(&[], &[]), vec![0..0]);
        assert_eq!(part_ranges(&[0, 0, 1], &[1, 1]), vec![0..3]);
        let big = PART_BYTES + 1;
        assert_eq!(part_ranges(&[0, 0, 1], &[big, 1]), vec![0..1, 1..2, 2..3]);
    }

    #[tokio::test]
    async fn the_later_parts_are_the_steps_more_output_and_failures_ride_on_the_first() {
        let text: ArrayRef = Arc::new(StringArray::from_iter_values((0..3).map(|_| "z".repeat(40 << 20))));
        let input = RecordBatch::try_from_iter([("text", text)]).expect("batch");
        let parents = vec![0, 0, 1, 2, 2, 2, 2, 2, 2, 2];
        let bound = RowBound::new(Some(6), None);
        let repeated = repeat_rows(&input, &parents, chunks(parents.len()), &bound).expect("repeat");
        let output = repeated.into_output(vec![RowFailure::new(1, "earlier")]);
        assert_eq!(output.failures.iter().map(|f| f.row).collect::<Vec<_>>(), [1, 2]);
        let mut rows = output.batch.num_rows();
        let mut more = output.more.expect("parts");
        while let Some(part) = more.next().await {
            let part = part.expect("part");
            assert!(part.failures.is_empty() && part.more.is_none());
            rows += part.batch.num_rows();
        }
        assert_eq!(rows, 3, "rows 0 and 1; row 2 refused");
    }
}
