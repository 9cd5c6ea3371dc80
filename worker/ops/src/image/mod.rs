//! Images in Arrow: a struct column `{width: u32, height: u32, channels: u8, data: binary}` of
//! interleaved 8-bit pixels, row-major (channels 1 = L, 3 = RGB, 4 = RGBA).

pub mod chain;
pub mod crop;
pub mod decode;
pub mod draw;
pub mod encode;
pub mod resize;
pub mod tensor;
mod truncation;
mod turbo;

use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, UInt8Builder, UInt32Builder};
use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch, StructArray, UInt8Array, UInt32Array};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Fields};
use weir_core::StepError;
use weir_core::batch::typed_column;

/// A decoded image owned in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: Vec<u8>,
}

impl Image {
    /// A borrowed view of this image.
    pub fn view(&self) -> ImageView<'_> {
        ImageView { width: self.width, height: self.height, channels: self.channels, data: &self.data }
    }
}

/// A borrowed view of one image row.
#[derive(Debug, Clone, Copy)]
pub struct ImageView<'a> {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: &'a [u8],
}

impl ImageView<'_> {
    /// `RGB`, `RGBA` or `L`.
    pub fn mode(&self) -> &'static str {
        match self.channels {
            1 => "L",
            4 => "RGBA",
            _ => "RGB",
        }
    }
}

/// The struct fields of an image column.
pub fn image_fields() -> Fields {
    Fields::from(vec![
        Field::new("width", DataType::UInt32, false),
        Field::new("height", DataType::UInt32, false),
        Field::new("channels", DataType::UInt8, false),
        Field::new("data", DataType::Binary, false),
    ])
}

/// Builds an image column from one optional image per row (`None` for failed rows).
pub fn image_array(images: &[Option<Image>]) -> ArrayRef {
    let n = images.len();
    let mut width = UInt32Builder::with_capacity(n);
    let mut height = UInt32Builder::with_capacity(n);
    let mut channels = UInt8Builder::with_capacity(n);
    let total: usize = images.iter().flatten().map(|i| i.data.len()).sum();
    let mut data = BinaryBuilder::with_capacity(n, total);
    for image in images {
        let (w, h, c, d) = match image {
            Some(i) => (i.width, i.height, i.channels, i.data.as_slice()),
            None => (0, 0, 0, &[][..]),
        };
        width.append_value(w);
        height.append_value(h);
        channels.append_value(c);
        data.append_value(d);
    }
    let nulls = NullBuffer::from(images.iter().map(Option::is_some).collect::<Vec<_>>());
    let columns: Vec<ArrayRef> =
        vec![Arc::new(width.finish()), Arc::new(height.finish()), Arc::new(channels.finish()), Arc::new(data.finish())];
    Arc::new(StructArray::new(image_fields(), columns, Some(nulls)))
}

/// [`image_array`] taking the images: a morsel of one image (a big photo always makes one) keeps
/// its pixel buffer as is, so decoding does not hold the pixels twice.
pub fn image_array_owned(images: Vec<Option<Image>>) -> ArrayRef {
    match <[Option<Image>; 1]>::try_from(images) {
        Ok([Some(image)]) => match i32::try_from(image.data.len()) {
            Ok(len) => {
                let offsets = arrow_buffer::OffsetBuffer::new(arrow_buffer::ScalarBuffer::from(vec![0, len]));
                let data = BinaryArray::new(offsets, arrow_buffer::Buffer::from_vec(image.data), None);
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(UInt32Array::from(vec![image.width])),
                    Arc::new(UInt32Array::from(vec![image.height])),
                    Arc::new(UInt8Array::from(vec![image.channels])),
                    Arc::new(data),
                ];
                Arc::new(StructArray::new(image_fields(), columns, None))
            }
            Err(_) => image_array(&[Some(image)]),
        },
        Ok(one) => image_array(&one),
        Err(images) => image_array(&images),
    }
}

/// Read access to an image column.
pub struct ImageColumn<'a> {
    width: &'a UInt32Array,
    height: &'a UInt32Array,
    channels: &'a UInt8Array,
    data: &'a BinaryArray,
    array: &'a StructArray,
}

impl<'a> ImageColumn<'a> {
    /// The image column `name` of `batch`.
    ///
    /// # Errors
    /// [`StepError::Column`] when the column is missing or not an image column (e.g. bytes that
    /// were never decoded).
    pub fn from_batch(batch: &'a RecordBatch, name: &str) -> Result<Self, StepError> {
        let array: &StructArray = typed_column(batch, name, "an image column (use image.decode first)")?;
        let field = |f: &str| {
            array
                .column_by_name(f)
                .ok_or_else(|| StepError::column(name, "not an image column (use image.decode first)"))
        };
        let not_image = || StepError::column(name, "not an image column (use image.decode first)");
        Ok(Self {
            width: field("width")?.as_any().downcast_ref().ok_or_else(not_image)?,
            height: field("height")?.as_any().downcast_ref().ok_or_else(not_image)?,
            channels: field("channels")?.as_any().downcast_ref().ok_or_else(not_image)?,
            data: field("data")?.as_any().downcast_ref().ok_or_else(not_image)?,
            array,
        })
    }

    pub fn len(&self) -> usize {
        self.array.len()
    }

    pub fn is_empty(&self) -> bool {
        self.array.is_empty()
    }

    /// Row `i`, or `None` when null.
    pub fn get(&self, i: usize) -> Option<ImageView<'a>> {
        if self.array.is_null(i) {
            return None;
        }
        Some(ImageView {
            width: self.width.value(i),
            height: self.height.value(i),
            channels: self.channels.value(i),
            data: self.data.value(i),
        })
    }
}

/// Pixels copied out of an image column to be changed in place: every row's data, row after row,
/// in one buffer (a null row has none); see [`ImageColumn::copy_pixels`].
pub struct Pixels {
    buffer: Vec<u8>,
    /// Row `i`'s bytes are `buffer[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<usize>,
}

impl Pixels {
    /// Each row's bytes, to be changed at once (on several threads).
    pub fn rows_mut(&mut self) -> Vec<&mut [u8]> {
        let mut rows = Vec::with_capacity(self.offsets.len().saturating_sub(1));
        let mut rest = self.buffer.as_mut_slice();
        for pair in self.offsets.windows(2) {
            let (row, tail) = std::mem::take(&mut rest).split_at_mut(pair[1] - pair[0]);
            rows.push(row);
            rest = tail;
        }
        rows
    }
}

impl ImageColumn<'_> {
    /// A copy of every row's pixels, in one buffer: the one copy a step that draws on images
    /// makes, before [`Self::with_pixels`] turns it back into a column.
    ///
    /// # Errors
    /// When the column's offsets reach past its data (a malformed array).
    pub fn copy_pixels(&self) -> Result<Pixels, StepError> {
        let offsets = self.data.value_offsets();
        let first = offsets.first().map_or(0, |o| *o as usize);
        let last = offsets.last().map_or(0, |o| *o as usize);
        let bytes = self
            .data
            .value_data()
            .get(first..last)
            .ok_or_else(|| StepError::Other(format!("image data ends before its offsets ({first}..{last})")))?;
        Ok(Pixels { buffer: bytes.to_vec(), offsets: offsets.iter().map(|o| *o as usize - first).collect() })
    }

    /// This column with `pixels` (from [`Self::copy_pixels`] of this column) as its images' data
    /// and the rows `failed` null: the same type and sizes, widths, heights and channels shared.
    ///
    /// # Errors
    /// When `pixels` does not fit this column (pixels of another column: a bug, not bad data).
    pub fn with_pixels(&self, pixels: Pixels, failed: &[usize]) -> Result<ArrayRef, StepError> {
        let offsets: Vec<i32> = pixels.offsets.iter().map(|o| *o as i32).collect();
        let offsets = arrow_buffer::OffsetBuffer::new(arrow_buffer::ScalarBuffer::from(offsets));
        let buffer = arrow_buffer::Buffer::from_vec(pixels.buffer);
        let data: ArrayRef = Arc::new(BinaryArray::try_new(offsets, buffer, self.data.nulls().cloned())?);
        let mut valid: Vec<bool> = (0..self.array.len()).map(|i| self.array.is_valid(i)).collect();
        for row in failed {
            if let Some(v) = valid.get_mut(*row) {
                *v = false;
            }
        }
        let nulls = NullBuffer::from(valid);
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        let fields = self.array.fields();
        let columns = fields
            .iter()
            .zip(self.array.columns())
            .map(|(field, column)| if field.name() == "data" { data.clone() } else { column.clone() })
            .collect();
        Ok(Arc::new(StructArray::try_new(fields.clone(), columns, nulls)?))
    }
}

/// Applies `f` to every non-null image of column `input` (in parallel), producing an image column
/// and the rows that failed, with the memory of calls on other threads added to `peaks`. Null
/// input rows stay null and are not failures.
pub(crate) fn map_images<F>(
    batch: &RecordBatch,
    input: &str,
    peaks: &weir_core::alloc::OffThreadPeaks,
    f: F,
) -> Result<(Vec<Option<Image>>, Vec<weir_core::RowFailure>), StepError>
where
    F: Fn(ImageView<'_>) -> Result<Image, String> + Sync,
{
    use rayon::prelude::*;
    let column = ImageColumn::from_batch(batch, input)?;
    let results: Vec<Option<Result<Image, String>>> =
        (0..column.len()).into_par_iter().map(|i| column.get(i).map(|image| peaks.measure(|| f(image)))).collect();
    Ok(split_results(results))
}

/// The cause inside an `image` crate error. A decoding or encoding error's own text repeats the
/// format and the action ("Format error decoding Png: ...") that the messages built from it
/// already state, so those give their underlying error alone.
pub(crate) fn image_error_cause(error: &image::ImageError) -> String {
    use std::error::Error as _;
    match error {
        image::ImageError::Decoding(_) | image::ImageError::Encoding(_) => {
            error.source().map_or_else(|| error.to_string(), ToString::to_string)
        }
        other => other.to_string(),
    }
}

/// Splits per-row results into values and failures.
pub(crate) fn split_results<T>(
    results: Vec<Option<Result<T, String>>>,
) -> (Vec<Option<T>>, Vec<weir_core::RowFailure>) {
    let mut failures = Vec::new();
    let values = results
        .into_iter()
        .enumerate()
        .map(|(row, r)| match r {
            Some(Ok(v)) => Some(v),
            Some(Err(message)) => {
                failures.push(weir_core::RowFailure::new(row, message));
                None
            }
            None => None,
        })
        .collect();
    (values, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(side: u32, value: u8) -> Image {
        Image { width: side, height: side, channels: 3, data: vec![value; (side * side * 3) as usize] }
    }

    #[test]
    fn one_owned_image_keeps_its_buffer_and_reads_as_the_copied_layout() {
        let one = image(64, 7);
        assert_eq!(image_array_owned(vec![Some(one.clone())]).to_data(), image_array(&[Some(one.clone())]).to_data());
        let pixels = one.data.as_ptr();
        let owned = image_array_owned(vec![Some(one)]);
        let data = owned.as_any().downcast_ref::<StructArray>().expect("struct").column(3).clone();
        let data = data.as_any().downcast_ref::<BinaryArray>().expect("binary");
        assert_eq!(data.values().as_ptr(), pixels, "the decoded buffer, not a copy");
    }

    #[test]
    fn several_or_missing_images_are_copied_as_before() {
        let images = vec![Some(image(4, 1)), None, Some(image(2, 2))];
        assert_eq!(image_array_owned(images.clone()).to_data(), image_array(&images).to_data());
        assert_eq!(image_array_owned(vec![None]).to_data(), image_array(&[None]).to_data());
    }
}
