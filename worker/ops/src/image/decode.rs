//! `image.decode`: encoded bytes (JPEG, PNG, WebP, GIF, BMP, TIFF) to an image column.
//!
//! Dimensions are read from the header and checked against `maxPixels` before any pixel buffer
//! is allocated, so a "decompression bomb" costs nothing but its header.

use std::io::Cursor;
use std::sync::Arc;

use arrow_array::{Array, BinaryArray, LargeBinaryArray, RecordBatch};
use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use rayon::prelude::*;
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{Step, StepError, StepOutput};
use weir_crds::{ImageDecode, ImageMode};

use super::{Image, image_array, split_results};
use crate::BuildError;

/// Default `maxPixels`: 100 megapixels (e.g. 10000 x 10000).
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

/// The runnable `image.decode` step.
#[derive(Debug, Clone)]
pub struct DecodeImages {
    pub input: String,
    pub output: String,
    pub mode: ImageMode,
    pub max_pixels: u64,
}

/// Builds `image.decode` from its config.
///
/// # Errors
/// Never for a config that passed validation; kept for uniformity with the other steps.
pub fn build(config: &ImageDecode) -> Result<Arc<dyn Step>, BuildError> {
    Ok(Arc::new(ComputeStep(DecodeImages {
        input: config.input.clone(),
        output: config.output.clone(),
        mode: config.mode.unwrap_or_default(),
        max_pixels: config.max_pixels.unwrap_or(DEFAULT_MAX_PIXELS),
    })))
}

impl Kernel for DecodeImages {
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let bytes = binary_rows(input, &self.input)?;
        let results: Vec<_> = bytes.par_iter().map(|b| b.map(|b| self.decode(b))).collect();
        let (images, failures) = split_results(results);
        StepOutput::with_column(input, &self.output, image_array(&images), failures)
    }
}

impl DecodeImages {
    /// Decodes one encoded image; the error says what is wrong with the bytes.
    pub fn decode(&self, bytes: &[u8]) -> Result<Image, String> {
        if bytes.is_empty() {
            return Err("empty input (0 bytes)".into());
        }
        let reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| format!("cannot read image header: {e}"))?;
        let Some(format) = reader.format() else {
            return Err(format!(
                "not a recognised image format ({} bytes, starting {})",
                bytes.len(),
                hex_prefix(bytes)
            ));
        };
        let mut decoder = reader.into_decoder().map_err(|e| format!("{format:?}: corrupt header: {e}"))?;
        let (width, height) = decoder.dimensions();
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(format!(
                "{format:?} image is {width}x{height} ({pixels} pixels), over the limit of {} pixels (maxPixels)",
                self.max_pixels
            ));
        }
        if let Some(problem) = truncation(format, bytes) {
            return Err(format!("{format:?}: truncated: {problem}"));
        }
        let mut limits = Limits::default();
        limits.max_alloc = Some(pixels.saturating_mul(16).max(64 << 20));
        decoder.set_limits(limits).map_err(|e| format!("{format:?}: {e}"))?;
        let decoded = DynamicImage::from_decoder(decoder).map_err(|e| format!("{format:?}: cannot decode: {e}"))?;
        Ok(convert(decoded, self.mode))
    }
}

fn convert(image: DynamicImage, mode: ImageMode) -> Image {
    let (width, height) = (image.width(), image.height());
    let data = match mode {
        ImageMode::Rgb => image.into_rgb8().into_raw(),
        ImageMode::Rgba => image.into_rgba8().into_raw(),
        ImageMode::L => image.into_luma8().into_raw(),
    };
    Image { width, height, channels: mode.channels(), data }
}

/// Why `bytes` look cut short, if they do. Decoders fill the missing part of a truncated JPEG or
/// PNG with grey and report success, so the end marker (or declared size) is checked first.
fn truncation(format: image::ImageFormat, bytes: &[u8]) -> Option<String> {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    let declared = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    let n = bytes.len();
    match format {
        image::ImageFormat::Jpeg if !jpeg_reaches_end_marker(bytes) => {
            Some(format!("no end-of-image marker in its {n} bytes"))
        }
        image::ImageFormat::Png if !tail.windows(4).any(|w| w == b"IEND") => {
            Some(format!("no IEND chunk in its {n} bytes"))
        }
        image::ImageFormat::WebP => {
            declared(4).filter(|d| d + 8 > n).map(|d| format!("RIFF header declares {} bytes, file has {n}", d + 8))
        }
        image::ImageFormat::Bmp => {
            declared(2).filter(|d| *d > n).map(|d| format!("header declares {d} bytes, file has {n}"))
        }
        _ => None,
    }
}

/// Walks the JPEG's segments and entropy-coded data looking for the end-of-image marker. Returns
/// `true` too when the structure is unexpected, leaving the verdict to the decoder.
fn jpeg_reaches_end_marker(b: &[u8]) -> bool {
    let mut i = 2;
    while i + 1 < b.len() {
        if b[i] != 0xFF {
            return true;
        }
        let marker = b[i + 1];
        match marker {
            0xD9 => return true,
            0xFF => i += 1,
            0x01 | 0xD0..=0xD7 => i += 2,
            _ => {
                let Some(len) = b.get(i + 2..i + 4).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]]))) else {
                    return false;
                };
                i += 2 + len;
                if marker == 0xDA {
                    while i + 1 < b.len() && (b[i] != 0xFF || matches!(b[i + 1], 0x00 | 0xD0..=0xD7 | 0xFF)) {
                        i += 1;
                    }
                }
            }
        }
    }
    false
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// The rows of a binary (or large binary) column; `None` for nulls.
///
/// # Errors
/// [`StepError::Column`] when the column is missing or not binary.
pub fn binary_rows<'a>(batch: &'a RecordBatch, name: &str) -> Result<Vec<Option<&'a [u8]>>, StepError> {
    let col = weir_core::batch::column(batch, name)?;
    if let Some(a) = col.as_any().downcast_ref::<BinaryArray>() {
        return Ok(a.iter().collect());
    }
    if let Some(a) = col.as_any().downcast_ref::<LargeBinaryArray>() {
        return Ok(a.iter().collect());
    }
    Err(StepError::column(name, format!("expected binary data, found {}", col.data_type())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_testkit::images::{encode_jpeg, encode_png, gradient, png_header_claiming};

    fn decoder(mode: ImageMode) -> DecodeImages {
        DecodeImages { input: "bytes".into(), output: "image".into(), mode, max_pixels: DEFAULT_MAX_PIXELS }
    }

    #[test]
    fn decodes_jpeg_and_png_to_the_requested_mode() {
        let img = gradient(40, 30, 7);
        let jpeg = decoder(ImageMode::Rgb).decode(&encode_jpeg(&img, 90)).expect("jpeg");
        assert_eq!((jpeg.width, jpeg.height, jpeg.channels, jpeg.data.len()), (40, 30, 3, 40 * 30 * 3));
        let png = decoder(ImageMode::L).decode(&encode_png(&img)).expect("png");
        assert_eq!((png.channels, png.data.len()), (1, 40 * 30));
        let rgba = decoder(ImageMode::Rgba).decode(&encode_png(&img)).expect("png");
        assert_eq!(rgba.data.len(), 40 * 30 * 4);
    }

    #[test]
    fn every_supported_container_decodes() {
        let img = image::DynamicImage::ImageRgb8(gradient(24, 16, 3));
        for format in [
            image::ImageFormat::WebP,
            image::ImageFormat::Gif,
            image::ImageFormat::Bmp,
            image::ImageFormat::Tiff,
            image::ImageFormat::Png,
        ] {
            let mut bytes = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut bytes), format).expect("encode");
            let out = decoder(ImageMode::Rgb).decode(&bytes).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            assert_eq!((out.width, out.height, out.data.len()), (24, 16, 24 * 16 * 3), "{format:?}");
        }
    }

    #[test]
    fn bad_bytes_get_precise_messages() {
        let d = decoder(ImageMode::Rgb);
        assert_eq!(d.decode(b"").expect_err("empty"), "empty input (0 bytes)");
        let text = d.decode(b"hello, world, not an image").expect_err("text");
        assert!(text.starts_with("not a recognised image format (26 bytes, starting 68 65 6c"), "{text}");
        let jpeg = encode_jpeg(&gradient(64, 64, 1), 90);
        let truncated = d.decode(&jpeg[..jpeg.len() / 3]).expect_err("truncated");
        assert_eq!(truncated, format!("Jpeg: truncated: no end-of-image marker in its {} bytes", jpeg.len() / 3));
        let png = encode_png(&gradient(64, 64, 1));
        let cut = d.decode(&png[..png.len() / 2]).err();
        assert_eq!(cut, Some(format!("Png: truncated: no IEND chunk in its {} bytes", png.len() / 2)));
    }

    #[test]
    fn a_decompression_bomb_is_refused_from_its_header() {
        let bomb = png_header_claiming(50_000, 50_000);
        let err = decoder(ImageMode::Rgb).decode(&bomb).expect_err("bomb");
        assert_eq!(err, "Png image is 50000x50000 (2500000000 pixels), over the limit of 100000000 pixels (maxPixels)");
    }
}
