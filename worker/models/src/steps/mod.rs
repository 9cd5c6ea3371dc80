//! The runnable model steps; each `build` loads its model once, from assets the caller read.

pub mod detect;
pub mod image;
pub mod labels;
pub mod text_embed;
pub mod transcribe;

use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{ArrayRef, FixedSizeListArray};
use arrow_schema::{DataType, Field};

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
