//! `image.resize`: SIMD resampling (fast_image_resize) to an exact size or by shorter/longer side.

use std::sync::Arc;

use arrow_array::RecordBatch;
use fast_image_resize::images::{Image as FirImage, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{Step, StepError, StepOutput};
use weir_crds::{ImageResize, ResizeFilter, ResizeFit};

use super::{Image, ImageView, image_array, map_images};
use crate::BuildError;

/// The target of a resize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Exact { width: u32, height: u32 },
    ShorterSide(u32),
    LongerSide(u32),
}

impl Target {
    /// Output size for a `width` x `height` input (never zero).
    pub fn size_for(self, width: u32, height: u32) -> (u32, u32) {
        let fit = |target: u32, along: u32, other: u32| {
            let other_out = (f64::from(other) * f64::from(target) / f64::from(along.max(1))).round() as u32;
            other_out.max(1)
        };
        match self {
            Target::Exact { width, height } => (width, height),
            Target::ShorterSide(s) if width <= height => (s, fit(s, width, height)),
            Target::ShorterSide(s) => (fit(s, height, width), s),
            Target::LongerSide(s) if width >= height => (s, fit(s, width, height)),
            Target::LongerSide(s) => (fit(s, height, width), s),
        }
    }
}

/// The runnable `image.resize` step.
#[derive(Debug, Clone)]
pub struct ResizeImages {
    pub input: String,
    pub output: String,
    pub target: Target,
    pub filter: ResizeFilter,
}

/// Builds `image.resize` from its config.
///
/// # Errors
/// As [`ResizeImages::from_config`].
pub fn build(config: &ImageResize) -> Result<Arc<dyn Step>, BuildError> {
    Ok(Arc::new(ComputeStep(ResizeImages::from_config(config)?)))
}

impl ResizeImages {
    /// The step `config` describes, its defaults filled in.
    ///
    /// # Errors
    /// When the fit's required fields are missing.
    pub fn from_config(config: &ImageResize) -> Result<Self, BuildError> {
        let side =
            || config.size.ok_or_else(|| BuildError::new("size", "required for fit shorter-side and longer-side"));
        let target = match config.fit.unwrap_or_default() {
            ResizeFit::Exact => match (config.width, config.height) {
                (Some(width), Some(height)) => Target::Exact { width, height },
                _ => {
                    return Err(BuildError::new("width", "fit exact needs both width and height"));
                }
            },
            ResizeFit::ShorterSide => Target::ShorterSide(side()?),
            ResizeFit::LongerSide => Target::LongerSide(side()?),
        };
        Ok(Self {
            input: config.input.clone(),
            output: config.output.clone(),
            target,
            filter: config.filter.unwrap_or_default(),
        })
    }

    /// Resizes one image to this step's target.
    ///
    /// # Errors
    /// As [`resize`].
    pub fn resize_one(&self, img: ImageView<'_>) -> Result<Image, String> {
        let (w, h) = self.target.size_for(img.width, img.height);
        resize(img, w, h, self.filter)
    }
}

impl Kernel for ResizeImages {
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let peaks = weir_core::alloc::OffThreadPeaks::new();
        let (images, failures) = map_images(input, &self.input, &peaks, |img| self.resize_one(img))?;
        let mut output = StepOutput::with_column(input, &self.output, image_array(&images), failures)?;
        output.peak_alloc = peaks.total();
        Ok(output)
    }
}

/// Resizes one image to `width` x `height`.
///
/// # Errors
/// A message when the image's buffer does not match its declared size.
pub fn resize(img: ImageView<'_>, width: u32, height: u32, filter: ResizeFilter) -> Result<Image, String> {
    let pixel_type = match img.channels {
        1 => PixelType::U8,
        3 => PixelType::U8x3,
        4 => PixelType::U8x4,
        c => return Err(format!("cannot resize an image with {c} channels")),
    };
    if (img.width, img.height) == (width, height) {
        return Ok(Image { width, height, channels: img.channels, data: img.data.to_vec() });
    }
    let src = ImageRef::new(img.width, img.height, img.data, pixel_type)
        .map_err(|e| format!("{}x{} {} image: {e}", img.width, img.height, img.mode()))?;
    let mut dst = FirImage::new(width, height, pixel_type);
    let alg = match filter {
        ResizeFilter::Nearest => ResizeAlg::Nearest,
        ResizeFilter::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
        ResizeFilter::CatmullRom => ResizeAlg::Convolution(FilterType::CatmullRom),
        ResizeFilter::Lanczos3 => ResizeAlg::Convolution(FilterType::Lanczos3),
    };
    let options = ResizeOptions::new().resize_alg(alg).use_alpha(false);
    Resizer::new().resize(&src, &mut dst, &options).map_err(|e| format!("resize failed: {e}"))?;
    Ok(Image { width, height, channels: img.channels, data: dst.into_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_fits_keep_the_aspect_ratio() {
        assert_eq!(Target::ShorterSide(224).size_for(800, 400), (448, 224));
        assert_eq!(Target::ShorterSide(224).size_for(300, 600), (224, 448));
        assert_eq!(Target::LongerSide(100).size_for(800, 400), (100, 50));
        assert_eq!(Target::LongerSide(100).size_for(1, 1000), (1, 100));
        assert_eq!(Target::Exact { width: 7, height: 9 }.size_for(100, 100), (7, 9));
    }

    #[test]
    fn resizing_a_flat_image_keeps_its_colour() {
        let data = [10u8, 200, 30].repeat(50 * 40);
        let view = ImageView { width: 50, height: 40, channels: 3, data: &data };
        let out = resize(view, 20, 10, ResizeFilter::Lanczos3).expect("resize");
        assert_eq!((out.width, out.height, out.data.len()), (20, 10, 600));
        assert!(out.data.chunks(3).all(|p| p == [10, 200, 30]));
    }

    #[test]
    fn a_short_buffer_is_a_row_error() {
        let view = ImageView { width: 50, height: 40, channels: 3, data: &[0u8; 10] };
        let err = resize(view, 20, 10, ResizeFilter::Bilinear).expect_err("short");
        assert!(err.starts_with("50x40 RGB image: "), "{err}");
    }
}
