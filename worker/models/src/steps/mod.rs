//! The runnable model steps; each `build` loads its model once, from assets the caller read.

pub mod detect;
pub mod image;
pub mod labels;
pub mod text_embed;
pub mod transcribe;

use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{ArrayRef, FixedSizeListArray, ListArray, StructArray};
use arrow_buffer::{NullBuffer, OffsetBuffer};
use arrow_schema::{DataType, Field, Fields};

/// A `list<struct<fields>>` column: `columns` hold every row's entries back to back, and row `i`
/// has `lengths[i]` of them, or is null when `lengths[i]` is `None`.
pub(crate) fn struct_list_column(fields: Fields, columns: Vec<ArrayRef>, lengths: &[Option<usize>]) -> ArrayRef {
    let values = StructArray::new(fields.clone(), columns, None);
    let nulls = NullBuffer::from(lengths.iter().map(Option::is_some).collect::<Vec<_>>());
    let offsets = OffsetBuffer::from_lengths(lengths.iter().map(|l| l.unwrap_or(0)));
    let item = Arc::new(Field::new("item", DataType::Struct(fields), false));
    Arc::new(ListArray::new(item, offsets, Arc::new(values), Some(nulls)))
}

/// A fixed-size list column of f32 vectors (`None` rows are null).
pub(crate) fn vector_column(vectors: &[Option<Vec<f32>>], dimensions: usize) -> ArrayRef {
    let field = Arc::new(Field::new("item", DataType::Float32, false));
    let values = Float32Builder::with_capacity(vectors.len() * dimensions);
    let mut builder = FixedSizeListBuilder::new(values, dimensions as i32).with_field(field);
    for vector in vectors {
        match vector {
            Some(v) => {
                builder.values().append_slice(v);
                builder.append(true);
            }
            None => {
                builder.values().append_slice(&vec![0.0; dimensions]);
                builder.append(false);
            }
        }
    }
    let array: FixedSizeListArray = builder.finish();
    Arc::new(array)
}
