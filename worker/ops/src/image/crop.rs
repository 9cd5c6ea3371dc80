//! `image.crop`: a fixed box, a centred box, or a per-row `[x1, y1, x2, y2]` bounding box.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use rayon::prelude::*;
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{Step, StepError, StepOutput};
use weir_crds::ImageCrop;

use super::{Image, ImageColumn, ImageView, image_array, split_results};
use crate::BuildError;

/// Where to crop.
#[derive(Debug, Clone, PartialEq)]
pub enum Region {
    Fixed {
        x: u32,
        y: u32,
        width: u32,
        height: u32,
    },
    Center {
        width: u32,
        height: u32,
    },
    /// Column of `[x1, y1, x2, y2]` pixel coordinates (list or fixed-size list of floats).
    BboxColumn(String),
}

/// The runnable `image.crop` step.
#[derive(Debug, Clone)]
pub struct CropImages {
    pub input: String,
    pub output: String,
    pub region: Region,
}

/// Builds `image.crop` from its config.
///
/// # Errors
/// As [`CropImages::from_config`].
pub fn build(config: &ImageCrop) -> Result<Arc<dyn Step>, BuildError> {
    Ok(Arc::new(ComputeStep(CropImages::from_config(config)?)))
}

impl Kernel for CropImages {
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let images = ImageColumn::from_batch(input, &self.input)?;
        let boxes = match &self.region {
            Region::BboxColumn(name) => Some(bboxes(&weir_core::batch::column_path(input, name)?, name)?),
            _ => None,
        };
        let results: Vec<_> = (0..images.len())
            .into_par_iter()
            .map(|i| {
                let img = images.get(i)?;
                Some(self.rect(img, boxes.as_ref().map(|b| b[i])).and_then(|r| crop(img, r)))
            })
            .collect();
        let (out, failures) = split_results(results);
        StepOutput::with_column(input, &self.output, image_array(&out), failures)
    }
}

/// `(x, y, width, height)` in pixels.
type Rect = (u32, u32, u32, u32);

impl CropImages {
    /// The step `config` describes.
    ///
    /// # Errors
    /// Unless exactly one of `box`, `center`, `bboxColumn` is set.
    pub fn from_config(config: &ImageCrop) -> Result<Self, BuildError> {
        let region = match (&config.crop_box, &config.center, &config.bbox_column) {
            (Some(b), None, None) => Region::Fixed { x: b.left, y: b.top, width: b.width, height: b.height },
            (None, Some(c), None) => Region::Center { width: c.width, height: c.height },
            (None, None, Some(col)) => Region::BboxColumn(col.clone()),
            _ => {
                return Err(BuildError::new("box", "set exactly one of box, center or bboxColumn"));
            }
        };
        Ok(Self { input: config.input.clone(), output: config.output.clone(), region })
    }

    /// Crops one image to this step's fixed or centred box.
    ///
    /// # Errors
    /// When the box is not inside the image, or the region is a bounding-box column (whose boxes
    /// are rows of another column: use the step itself).
    pub fn crop_one(&self, img: ImageView<'_>) -> Result<Image, String> {
        self.rect(img, None).and_then(|rect| crop(img, rect))
    }

    fn rect(&self, img: ImageView<'_>, bbox: Option<Option<[f64; 4]>>) -> Result<Rect, String> {
        match (&self.region, bbox) {
            (Region::Fixed { x, y, width, height }, _) => Ok((*x, *y, *width, *height)),
            (Region::Center { width, height }, _) => {
                let (w, h) = ((*width).min(img.width), (*height).min(img.height));
                Ok(((img.width - w) / 2, (img.height - h) / 2, w, h))
            }
            (Region::BboxColumn(name), Some(Some([x1, y1, x2, y2]))) => {
                let clamp = |v: f64, max: u32| v.round().clamp(0.0, f64::from(max)) as u32;
                let (x1, y1, x2, y2) =
                    (clamp(x1, img.width), clamp(y1, img.height), clamp(x2, img.width), clamp(y2, img.height));
                if x2 <= x1 || y2 <= y1 {
                    return Err(format!(
                        "bounding box in `{name}` is empty inside the {}x{} image",
                        img.width, img.height
                    ));
                }
                Ok((x1, y1, x2 - x1, y2 - y1))
            }
            (Region::BboxColumn(name), _) => Err(format!("`{name}` is null or not 4 numbers [x1, y1, x2, y2]")),
        }
    }
}

/// Copies the `rect` out of `img`.
///
/// # Errors
/// When the rectangle is not inside the image.
pub fn crop(img: ImageView<'_>, (x, y, w, h): Rect) -> Result<Image, String> {
    if u64::from(x) + u64::from(w) > u64::from(img.width) || u64::from(y) + u64::from(h) > u64::from(img.height) {
        return Err(format!("crop box x={x} y={y} {w}x{h} does not fit in the {}x{} image", img.width, img.height));
    }
    let c = usize::from(img.channels);
    let stride = img.width as usize * c;
    let mut data = Vec::with_capacity(w as usize * h as usize * c);
    for row in y as usize..(y + h) as usize {
        let start = row * stride + x as usize * c;
        let line = img.data.get(start..start + w as usize * c).ok_or("image buffer is shorter than its size")?;
        data.extend_from_slice(line);
    }
    Ok(Image { width: w, height: h, channels: img.channels, data })
}

/// One optional `[x1, y1, x2, y2]` per row of a list or fixed-size-list column of floats (`None`
/// for a null row or one of another length).
pub(super) fn bboxes(col: &ArrayRef, name: &str) -> Result<Vec<Option<[f64; 4]>>, StepError> {
    let values_of = |values: &ArrayRef| -> Result<Vec<f64>, StepError> {
        match values.data_type() {
            DataType::Float32 => {
                Ok(values.as_primitive::<Float32Type>().values().iter().map(|v| f64::from(*v)).collect())
            }
            DataType::Float64 => Ok(values.as_primitive::<Float64Type>().values().to_vec()),
            other => Err(StepError::column(name, format!("bounding boxes must be floats, found {other}"))),
        }
    };
    let four = |v: &[f64]| <[f64; 4]>::try_from(v).ok();
    match col.data_type() {
        DataType::FixedSizeList(_, 4) => {
            let list = col.as_fixed_size_list();
            (0..list.len())
                .map(|i| if list.is_null(i) { Ok(None) } else { values_of(&list.value(i)).map(|v| four(&v)) })
                .collect()
        }
        DataType::List(_) => {
            let list = col.as_list::<i32>();
            (0..list.len())
                .map(|i| if list.is_null(i) { Ok(None) } else { values_of(&list.value(i)).map(|v| four(&v)) })
                .collect()
        }
        other => Err(StepError::column(name, format!("expected a list of 4 floats [x1, y1, x2, y2], found {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered(width: u32, height: u32) -> Vec<u8> {
        (0..width * height).map(|i| i as u8).collect()
    }

    #[test]
    fn crop_copies_the_right_pixels() {
        let data = numbered(4, 3);
        let img = ImageView { width: 4, height: 3, channels: 1, data: &data };
        let out = crop(img, (1, 1, 2, 2)).expect("crop");
        assert_eq!(out.data, vec![5, 6, 9, 10]);
    }

    #[test]
    fn a_box_outside_the_image_is_a_row_error() {
        let data = numbered(4, 3);
        let img = ImageView { width: 4, height: 3, channels: 1, data: &data };
        assert_eq!(crop(img, (3, 0, 2, 1)).expect_err("outside"), "crop box x=3 y=0 2x1 does not fit in the 4x3 image");
    }

    #[test]
    fn center_and_bbox_regions_resolve_inside_the_image() {
        let data = numbered(10, 8);
        let img = ImageView { width: 10, height: 8, channels: 1, data: &data };
        let center =
            CropImages { input: "i".into(), output: "o".into(), region: Region::Center { width: 4, height: 20 } };
        assert_eq!(center.rect(img, None), Ok((3, 0, 4, 8)));
        let bbox = CropImages { input: "i".into(), output: "o".into(), region: Region::BboxColumn("b".into()) };
        assert_eq!(bbox.rect(img, Some(Some([-5.0, 1.2, 4.6, 100.0]))), Ok((0, 1, 5, 7)));
        assert!(bbox.rect(img, Some(Some([5.0, 5.0, 5.0, 6.0]))).is_err());
        assert!(bbox.rect(img, Some(None)).is_err());
    }
}
