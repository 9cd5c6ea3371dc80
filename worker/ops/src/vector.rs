//! `vector.cosine_similarity`, `vector.dot` and `vector.l2` (Euclidean distance): a vector column
//! compared, row by row, with a literal `vector` or another column (`other`), giving a float64.
//!
//! Vectors are lists, large lists or fixed-size lists of float32 or float64; arithmetic is in
//! float64. A null vector on either side gives a null; so does the cosine similarity of a zero
//! vector (it has no direction). Vectors of different lengths, or with null elements, are row
//! failures.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef, Float64Array, OffsetSizeTrait, RecordBatch};
use arrow_schema::DataType;
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{RowFailure, Step, StepError, StepOutput};
use weir_crds::VectorCompare;

use crate::BuildError;

/// What a row's two vectors become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// `a·b / (|a| |b|)`, in [-1, 1]; null when either vector is zero.
    Cosine,
    /// `a·b`.
    Dot,
    /// `|a - b|`.
    L2,
}

/// What the input column is compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Against {
    Literal(Vec<f32>),
    Column(String),
}

/// The runnable vector comparison step.
#[derive(Debug, Clone)]
pub struct CompareVectors {
    pub input: String,
    pub output: String,
    pub against: Against,
    pub metric: Metric,
}

/// Builds one of the vector comparisons.
///
/// # Errors
/// When `vector` and `other` are both set or both missing, or `vector` is empty or not finite.
pub fn build(config: &VectorCompare, metric: Metric) -> Result<Arc<dyn Step>, BuildError> {
    let against = match (&config.vector, &config.other) {
        (Some(_), Some(_)) => return Err(BuildError::new("vector", "set either vector or other, not both")),
        (None, None) => return Err(BuildError::new("vector", "set vector (a literal) or other (a column)")),
        (Some(v), None) if v.is_empty() => return Err(BuildError::new("vector", "must not be empty")),
        (Some(v), None) => match v.iter().position(|x| !x.is_finite()) {
            Some(i) => return Err(BuildError::new("vector", format!("element {i} is not a finite number"))),
            None => Against::Literal(v.clone()),
        },
        (None, Some(c)) => Against::Column(c.clone()),
    };
    Ok(Arc::new(ComputeStep(CompareVectors {
        input: config.input.clone(),
        output: config.output.clone(),
        against,
        metric,
    })))
}

impl Kernel for CompareVectors {
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let left = vector_rows(input, &self.input)?;
        let right = match &self.against {
            Against::Column(name) => vector_rows(input, name)?,
            Against::Literal(v) => vec![Some(Ok(Values::F32(v))); input.num_rows()],
        };
        let other_name = match &self.against {
            Against::Column(name) => name.as_str(),
            Against::Literal(_) => "vector",
        };
        let mut failures = Vec::new();
        let values: Vec<Option<f64>> = left
            .into_iter()
            .zip(right)
            .enumerate()
            .map(|(row, pair)| match pair {
                (Some(Ok(a)), Some(Ok(b))) if a.len() != b.len() => {
                    let message =
                        format!("vector lengths differ: {} has {}, {other_name} has {}", self.input, a.len(), b.len());
                    failures.push(RowFailure::new(row, message));
                    None
                }
                (Some(Ok(a)), Some(Ok(b))) => compare(self.metric, a, b),
                (Some(Err(message)), _) | (_, Some(Err(message))) => {
                    failures.push(RowFailure::new(row, message));
                    None
                }
                _ => None,
            })
            .collect();
        StepOutput::with_column(input, &self.output, Arc::new(Float64Array::from(values)), failures)
    }
}

/// One row's vector, borrowed from its column.
#[derive(Debug, Clone, Copy)]
pub enum Values<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl Values<'_> {
    pub fn len(&self) -> usize {
        match self {
            Values::F32(v) => v.len(),
            Values::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `metric` of two vectors of the same length; `None` for the cosine of a zero vector.
pub fn compare(metric: Metric, a: Values<'_>, b: Values<'_>) -> Option<f64> {
    match (a, b) {
        (Values::F32(a), Values::F32(b)) => compare_typed(metric, a, b),
        (Values::F32(a), Values::F64(b)) => compare_typed(metric, a, b),
        (Values::F64(a), Values::F32(b)) => compare_typed(metric, a, b),
        (Values::F64(a), Values::F64(b)) => compare_typed(metric, a, b),
    }
}

fn compare_typed<A: Float, B: Float>(metric: Metric, a: &[A], b: &[B]) -> Option<f64> {
    match metric {
        Metric::Dot => Some(sum_lanes(a, b, |x, y| x * y)),
        Metric::L2 => Some(sum_lanes(a, b, |x, y| (x - y) * (x - y)).sqrt()),
        Metric::Cosine => {
            let norms = sum_lanes(a, a, |x, y| x * y).sqrt() * sum_lanes(b, b, |x, y| x * y).sqrt();
            (norms > 0.0).then(|| sum_lanes(a, b, |x, y| x * y) / norms)
        }
    }
}

/// Accumulators kept side by side so the compiler can vectorise the sum (a single float
/// accumulator forces a sequential order).
const LANES: usize = 8;

/// `Σ f(a[i], b[i])` in float64 over vectors of equal length.
fn sum_lanes<A: Float, B: Float>(a: &[A], b: &[B], f: impl Fn(f64, f64) -> f64) -> f64 {
    let (a_chunks, a_tail) = a.as_chunks::<LANES>();
    let (b_chunks, b_tail) = b.as_chunks::<LANES>();
    let mut acc = [0.0f64; LANES];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for k in 0..LANES {
            acc[k] += f(x[k].widen(), y[k].widen());
        }
    }
    let tail: f64 = a_tail.iter().zip(b_tail).map(|(x, y)| f(x.widen(), y.widen())).sum();
    acc.iter().sum::<f64>() + tail
}

/// A float element type of a vector column.
trait Float: Copy {
    fn widen(self) -> f64;
}

impl Float for f32 {
    fn widen(self) -> f64 {
        f64::from(self)
    }
}

impl Float for f64 {
    fn widen(self) -> f64 {
        self
    }
}

/// Each row of a vector column: `None` for null, `Err` for a vector with null elements.
type VectorRows<'a> = Vec<Option<Result<Values<'a>, String>>>;

/// The rows of vector column `name`.
///
/// # Errors
/// [`StepError::Column`] when the column is missing or not a list of float32 or float64.
pub fn vector_rows<'a>(batch: &'a RecordBatch, name: &str) -> Result<VectorRows<'a>, StepError> {
    let col = weir_core::batch::column(batch, name)?;
    let (values, ranges): (&ArrayRef, Vec<Option<Range<usize>>>) = match col.data_type() {
        DataType::List(_) => list_ranges(col.as_list::<i32>()),
        DataType::LargeList(_) => list_ranges(col.as_list::<i64>()),
        DataType::FixedSizeList(_, n) => {
            let list = col.as_fixed_size_list();
            let n = *n as usize;
            let ranges = (0..list.len())
                .map(|i| list.is_valid(i).then(|| list.value_offset_at(i)..list.value_offset_at(i) + n))
                .collect();
            (list.values(), ranges)
        }
        other => return Err(StepError::column(name, format!("expected a list of float32 or float64, found {other}"))),
    };
    let nulls = values.logical_nulls();
    let has_null = |r: &Range<usize>| nulls.as_ref().is_some_and(|n| r.clone().any(|i| n.is_null(i)));
    let row = |r: Range<usize>, v: Values<'a>| match has_null(&r) {
        true => Err(format!("{name} has null elements")),
        false => Ok(v),
    };
    Ok(match values.data_type() {
        DataType::Float32 => {
            let v: &[f32] = values.as_primitive::<Float32Type>().values();
            ranges.into_iter().map(|r| r.map(|r| row(r.clone(), Values::F32(&v[r])))).collect()
        }
        DataType::Float64 => {
            let v: &[f64] = values.as_primitive::<Float64Type>().values();
            ranges.into_iter().map(|r| r.map(|r| row(r.clone(), Values::F64(&v[r])))).collect()
        }
        other => {
            return Err(StepError::column(
                name,
                format!("expected a list of float32 or float64, found a list of {other}"),
            ));
        }
    })
}

/// The values of a variable-size list and each row's range in them (`None` for nulls).
fn list_ranges<O: OffsetSizeTrait>(list: &arrow_array::GenericListArray<O>) -> (&ArrayRef, Vec<Option<Range<usize>>>) {
    let offsets = list.value_offsets();
    let ranges =
        (0..list.len()).map(|i| list.is_valid(i).then(|| offsets[i].as_usize()..offsets[i + 1].as_usize())).collect();
    (list.values(), ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, Float64Builder, ListBuilder};

    fn f32_list(rows: &[Option<&[f32]>]) -> ArrayRef {
        let mut b = ListBuilder::new(Float32Builder::new());
        for row in rows {
            match row {
                Some(v) => {
                    b.values().append_slice(v);
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        Arc::new(b.finish())
    }

    fn f64_fixed(rows: &[Option<[f64; 2]>]) -> ArrayRef {
        let mut b = FixedSizeListBuilder::new(Float64Builder::new(), 2);
        for row in rows {
            match row {
                Some(v) => {
                    b.values().append_slice(v);
                    b.append(true);
                }
                None => {
                    b.values().append_slice(&[0.0, 0.0]);
                    b.append(false);
                }
            }
        }
        Arc::new(b.finish())
    }

    fn step(metric: Metric, against: Against) -> CompareVectors {
        CompareVectors { input: "v".into(), output: "score".into(), against, metric }
    }

    fn scores(out: &StepOutput) -> Vec<Option<f64>> {
        out.batch.column_by_name("score").expect("score").as_primitive::<Float64Type>().iter().collect()
    }

    #[test]
    fn exact_values_against_a_literal() {
        let v = f32_list(&[Some(&[1.0, 2.0, 2.0]), Some(&[0.0, 0.0, 0.0]), None, Some(&[3.0, 0.0, 4.0])]);
        let input = RecordBatch::try_from_iter([("v", v)]).expect("batch");
        let literal = Against::Literal(vec![3.0, 0.0, 4.0]);
        let dot = step(Metric::Dot, literal.clone()).apply(&input).expect("dot");
        assert_eq!(scores(&dot), [Some(11.0), Some(0.0), None, Some(25.0)]);
        let l2 = step(Metric::L2, literal.clone()).apply(&input).expect("l2");
        assert_eq!(scores(&l2), [Some(12f64.sqrt()), Some(5.0), None, Some(0.0)]);
        let cos = step(Metric::Cosine, literal).apply(&input).expect("cos");
        assert_eq!(scores(&cos), [Some(11.0 / 15.0), None, None, Some(1.0)], "a zero vector has no cosine");
    }

    #[test]
    fn long_vectors_sum_every_lane_and_the_tail() {
        let a: Vec<f32> = (0..37).map(|i| i as f32).collect();
        let b = vec![1.0f64; 37];
        let expected: f64 = (0..37).map(f64::from).sum();
        assert_eq!(compare(Metric::Dot, Values::F32(&a), Values::F64(&b)), Some(expected));
    }

    #[test]
    fn column_against_column_with_mixed_types_nulls_and_mismatches() {
        let v = f32_list(&[Some(&[1.0, 0.0]), Some(&[1.0, 2.0, 3.0]), Some(&[0.0, 1.0]), None]);
        let w = f64_fixed(&[Some([0.0, 1.0]), Some([1.0, 1.0]), None, Some([1.0, 1.0])]);
        let tag: ArrayRef = Arc::new(arrow_array::StringArray::from(vec!["a", "b", "c", "d"]));
        let input = RecordBatch::try_from_iter([("tag", tag), ("v", v), ("w", w)]).expect("batch");
        let out = step(Metric::Cosine, Against::Column("w".into())).apply(&input).expect("cos");
        assert_eq!(scores(&out), [Some(0.0), None, None]);
        assert_eq!(out.failures, [RowFailure::new(1, "vector lengths differ: v has 3, w has 2")]);
        let tags: Vec<&str> =
            out.batch.column_by_name("tag").expect("tag").as_string::<i32>().iter().flatten().collect();
        assert_eq!(tags, ["a", "c", "d"], "the failed row is dropped, the null rows stay");
    }

    #[test]
    fn null_elements_fail_the_row_and_non_float_lists_fail_the_morsel() {
        let mut b = ListBuilder::new(Float32Builder::new());
        b.values().append_value(1.0);
        b.values().append_null();
        b.append(true);
        let input = RecordBatch::try_from_iter([("v", Arc::new(b.finish()) as ArrayRef)]).expect("batch");
        let out = step(Metric::Dot, Against::Literal(vec![1.0, 1.0])).apply(&input).expect("dot");
        assert_eq!(out.failures, [RowFailure::new(0, "v has null elements")]);
        let ints: ArrayRef = Arc::new(arrow_array::Int32Array::from(vec![1]));
        let bad = RecordBatch::try_from_iter([("v", ints)]).expect("batch");
        let err = step(Metric::Dot, Against::Literal(vec![1.0])).apply(&bad).expect_err("ints");
        assert_eq!(err.to_string(), "column `v`: expected a list of float32 or float64, found Int32");
    }

    #[test]
    fn build_wants_exactly_one_of_vector_and_other() {
        let config = |vector: Option<Vec<f32>>, other: Option<&str>| VectorCompare {
            input: "v".into(),
            output: "s".into(),
            other: other.map(str::to_string),
            vector,
            pool: None,
            concurrency: None,
        };
        let err = |c: VectorCompare| build(&c, Metric::Dot).err().map(|e| e.to_string());
        assert_eq!(
            err(config(Some(vec![1.0]), Some("w"))).as_deref(),
            Some("vector: set either vector or other, not both")
        );
        assert_eq!(err(config(None, None)).as_deref(), Some("vector: set vector (a literal) or other (a column)"));
        assert_eq!(
            err(config(Some(vec![1.0, f32::NAN]), None)).as_deref(),
            Some("vector: element 1 is not a finite number")
        );
        assert!(err(config(None, Some("w"))).is_none());
    }
}
