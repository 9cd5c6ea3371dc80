//! `image.to_tensor`: an image column to a fixed-shape f32 tensor column (Arrow's
//! `arrow.fixed_shape_tensor` extension over a fixed-size list), normalised per channel.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, RecordBatch};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field};
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{RowFailure, Step, StepError, StepOutput};
use weir_crds::{ImageToTensor, TensorLayout};

use super::{ImageColumn, ImageView};
use crate::BuildError;

/// The runnable `image.to_tensor` step.
#[derive(Debug)]
pub struct ImagesToTensor {
    pub input: String,
    pub output: String,
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub layout: TensorLayout,
    /// `[c, h, w]` (or `[h, w, c]`) fixed by the first image seen: a column has one shape.
    shape: OnceLock<[usize; 3]>,
}

/// Builds `image.to_tensor` from its config.
///
/// # Errors
/// When `mean` and `std` differ in length or a `std` is zero.
pub fn build(config: &ImageToTensor) -> Result<Arc<dyn Step>, BuildError> {
    let mean = config.mean.clone().unwrap_or_default();
    let std = config.std.clone().unwrap_or_default();
    if !mean.is_empty() && !std.is_empty() && mean.len() != std.len() {
        return Err(BuildError::new("std", format!("has {} values but mean has {}", std.len(), mean.len())));
    }
    if std.contains(&0.0) {
        return Err(BuildError::new("std", "must not contain 0"));
    }
    Ok(Arc::new(ComputeStep(ImagesToTensor {
        input: config.input.clone(),
        output: config.output.clone(),
        mean,
        std,
        layout: config.layout.unwrap_or_default(),
        shape: OnceLock::new(),
    })))
}

impl Kernel for ImagesToTensor {
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let images = ImageColumn::from_batch(input, &self.input)?;
        let first = (0..images.len()).find_map(|i| images.get(i));
        let shape = match (self.shape.get(), first) {
            (Some(s), _) => *s,
            (None, Some(img)) => *self.shape.get_or_init(|| self.shape_of(img)),
            (None, None) => return Ok(StepOutput::ok(input.clone())),
        };
        let size: usize = shape.iter().product();
        let mut values = Vec::with_capacity(size * images.len());
        let mut valid = Vec::with_capacity(images.len());
        let mut failures = Vec::new();
        for i in 0..images.len() {
            let ok = match images.get(i) {
                Some(img) if self.shape_of(img) == shape => self.push_tensor(img, &mut values),
                Some(img) => Err(format!(
                    "image is {}x{}x{} but this column's tensors are {:?}; resize (fit exact) before image.to_tensor",
                    img.channels, img.height, img.width, shape
                )),
                None => Err(String::new()),
            };
            match ok {
                Ok(()) => valid.push(true),
                Err(message) => {
                    values.resize(values.len() + size, 0.0);
                    valid.push(false);
                    if !message.is_empty() {
                        failures.push(RowFailure::new(i, message));
                    }
                }
            }
        }
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let list = FixedSizeListArray::try_new(
            item,
            size as i32,
            Arc::new(Float32Array::from(values)),
            Some(NullBuffer::from(valid)),
        )?;
        let array: ArrayRef = Arc::new(list);
        let mut out = StepOutput::with_column(input, &self.output, array, failures)?;
        out.batch = tag_tensor_field(out.batch, &self.output, shape)?;
        Ok(out)
    }
}

impl ImagesToTensor {
    fn shape_of(&self, img: ImageView<'_>) -> [usize; 3] {
        let (c, h, w) = (usize::from(img.channels), img.height as usize, img.width as usize);
        match self.layout {
            TensorLayout::Chw => [c, h, w],
            TensorLayout::Hwc => [h, w, c],
        }
    }

    fn push_tensor(&self, img: ImageView<'_>, out: &mut Vec<f32>) -> Result<(), String> {
        let c = usize::from(img.channels);
        if !self.mean.is_empty() && self.mean.len() != c || !self.std.is_empty() && self.std.len() != c {
            return Err(format!(
                "{} image has {c} channels but mean/std have {}",
                img.mode(),
                self.mean.len().max(self.std.len())
            ));
        }
        let scale: Vec<(f32, f32)> = (0..c)
            .map(|ch| {
                let mean = self.mean.get(ch).copied().unwrap_or(0.0);
                let std = self.std.get(ch).copied().unwrap_or(1.0);
                (1.0 / (255.0 * std), mean / std)
            })
            .collect();
        match self.layout {
            TensorLayout::Hwc => {
                out.extend(img.data.iter().enumerate().map(|(i, &v)| {
                    let (s, m) = scale[i % c];
                    f32::from(v) * s - m
                }));
            }
            TensorLayout::Chw => {
                for (ch, (s, m)) in scale.iter().enumerate() {
                    out.extend(img.data.iter().skip(ch).step_by(c).map(|&v| f32::from(v) * s - m));
                }
            }
        }
        Ok(())
    }
}

/// Marks the column as an `arrow.fixed_shape_tensor` of `shape`.
fn tag_tensor_field(batch_in: RecordBatch, name: &str, shape: [usize; 3]) -> Result<RecordBatch, StepError> {
    let schema = batch_in.schema();
    let index = schema.index_of(name)?;
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let metadata = HashMap::from([
        ("ARROW:extension:name".to_string(), "arrow.fixed_shape_tensor".to_string()),
        ("ARROW:extension:metadata".to_string(), format!("{{\"shape\":[{},{},{}]}}", shape[0], shape[1], shape[2])),
    ]);
    fields[index] = fields[index].clone().with_metadata(metadata);
    let schema = Arc::new(arrow_schema::Schema::new_with_metadata(fields, schema.metadata().clone()));
    batch_in.with_schema(schema).map_err(|e| StepError::column(name, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Image, image_array};

    fn step(layout: TensorLayout) -> ImagesToTensor {
        ImagesToTensor {
            input: "image".into(),
            output: "t".into(),
            mean: vec![0.5, 0.5, 0.5],
            std: vec![0.5, 0.5, 0.5],
            layout,
            shape: OnceLock::new(),
        }
    }

    fn batch_of(images: Vec<Option<Image>>) -> RecordBatch {
        RecordBatch::try_from_iter([("image", image_array(&images))]).expect("batch")
    }

    #[test]
    fn chw_tensors_are_normalised_per_channel() {
        let img = Image { width: 2, height: 1, channels: 3, data: vec![0, 255, 51, 255, 0, 102] };
        let out = step(TensorLayout::Chw).apply(&batch_of(vec![Some(img)])).expect("apply");
        let col = out.batch.column_by_name("t").expect("t");
        let list = col.as_any().downcast_ref::<FixedSizeListArray>().expect("list");
        let v = list.value(0);
        let v = v.as_any().downcast_ref::<Float32Array>().expect("f32");
        let expect = [-1.0, 1.0, 1.0, -1.0, -0.6, -0.2];
        assert!(v.values().iter().zip(expect).all(|(a, b)| (a - b).abs() < 1e-5), "{v:?}");
        let field = out.batch.schema().field_with_name("t").expect("field").clone();
        assert_eq!(field.metadata()["ARROW:extension:metadata"], "{\"shape\":[3,1,2]}");
    }

    #[test]
    fn an_image_of_another_shape_is_a_row_error() {
        let a = Image { width: 2, height: 1, channels: 3, data: vec![0; 6] };
        let b = Image { width: 1, height: 1, channels: 3, data: vec![0; 3] };
        let out = step(TensorLayout::Hwc).apply(&batch_of(vec![Some(a), Some(b)])).expect("apply");
        assert_eq!(out.batch.num_rows(), 1);
        assert_eq!(out.failures.len(), 1);
        assert!(out.failures[0].message.contains("resize (fit exact) before image.to_tensor"));
    }
}
