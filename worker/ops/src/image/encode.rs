//! `image.encode`: an image column to JPEG (SIMD encoder) or PNG bytes.

use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, RecordBatch};
use image::ImageEncoder;
use rayon::prelude::*;
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{Step, StepError, StepOutput};
use weir_crds::{ImageEncode, ImageFormat};

use super::{ImageColumn, ImageView, image_error_cause, split_results};
use crate::BuildError;

/// Default JPEG quality.
pub const DEFAULT_QUALITY: u8 = 85;

/// The runnable `image.encode` step.
#[derive(Debug, Clone)]
pub struct EncodeImages {
    pub input: String,
    pub output: String,
    pub format: ImageFormat,
    pub quality: u8,
}

/// Builds `image.encode` from its config.
///
/// # Errors
/// As [`EncodeImages::from_config`].
pub fn build(config: &ImageEncode) -> Result<Arc<dyn Step>, BuildError> {
    Ok(Arc::new(ComputeStep(EncodeImages::from_config(config)?)))
}

impl EncodeImages {
    /// The step `config` describes, its defaults filled in.
    ///
    /// # Errors
    /// When `quality` is outside 1-100.
    pub fn from_config(config: &ImageEncode) -> Result<Self, BuildError> {
        let quality = config.quality.unwrap_or(DEFAULT_QUALITY);
        if !(1..=100).contains(&quality) {
            return Err(BuildError::new("quality", format!("must be 1-100, found {quality}")));
        }
        Ok(Self {
            input: config.input.clone(),
            output: config.output.clone(),
            format: config.format.unwrap_or_default(),
            quality,
        })
    }

    /// Encodes one image in this step's format.
    ///
    /// # Errors
    /// As [`encode`].
    pub fn encode_one(&self, img: ImageView<'_>) -> Result<Vec<u8>, String> {
        encode(img, self.format, self.quality)
    }
}

impl Kernel for EncodeImages {
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let images = ImageColumn::from_batch(input, &self.input)?;
        let results: Vec<_> =
            (0..images.len()).into_par_iter().map(|i| images.get(i).map(|img| self.encode_one(img))).collect();
        let (encoded, failures) = split_results(results);
        let array: ArrayRef = Arc::new(BinaryArray::from_iter(encoded));
        StepOutput::with_column(input, &self.output, array, failures)
    }
}

/// Encodes one image.
///
/// # Errors
/// When the encoder refuses the image (e.g. a JPEG side over 65535 pixels).
pub fn encode(img: ImageView<'_>, format: ImageFormat, quality: u8) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(img.data.len() / 8);
    match format {
        ImageFormat::Jpeg => {
            let color = match img.channels {
                1 => jpeg_encoder::ColorType::Luma,
                3 => jpeg_encoder::ColorType::Rgb,
                4 => jpeg_encoder::ColorType::Rgba,
                c => return Err(format!("cannot encode {c} channels as JPEG")),
            };
            let (w, h) = (u16::try_from(img.width), u16::try_from(img.height));
            let (Ok(w), Ok(h)) = (w, h) else {
                return Err(format!("JPEG sides are at most 65535 pixels, image is {}x{}", img.width, img.height));
            };
            jpeg_encoder::Encoder::new(&mut out, quality)
                .encode(img.data, w, h, color)
                .map_err(|e| format!("cannot encode as JPEG: {e}"))?;
        }
        ImageFormat::Png => {
            let color = match img.channels {
                1 => image::ExtendedColorType::L8,
                3 => image::ExtendedColorType::Rgb8,
                4 => image::ExtendedColorType::Rgba8,
                c => return Err(format!("cannot encode {c} channels as PNG")),
            };
            image::codecs::png::PngEncoder::new(&mut out)
                .write_image(img.data, img.width, img.height, color)
                .map_err(|e| format!("cannot encode as PNG: {}", image_error_cause(&e)))?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_and_png_round_trip_through_the_decoder() {
        let data = [120u8, 60, 200].repeat(32 * 16);
        let view = ImageView { width: 32, height: 16, channels: 3, data: &data };
        let jpeg = encode(view, ImageFormat::Jpeg, 90).expect("jpeg");
        let back = image::load_from_memory(&jpeg).expect("decode").into_rgb8();
        assert_eq!(back.dimensions(), (32, 16));
        assert!(back.pixels().all(|p| { p.0.iter().zip([120u8, 60, 200]).all(|(a, b)| a.abs_diff(b) <= 4) }));
        let png = encode(view, ImageFormat::Png, 0).expect("png");
        assert_eq!(image::load_from_memory(&png).expect("decode").into_rgb8().into_raw(), data);
    }
}
