//! `image.decode`: encoded bytes (JPEG, PNG, WebP, GIF, BMP, TIFF) to an image column.
//!
//! JPEGs are decoded by libjpeg-turbo (the `turbo` module), so their pixels are those Pillow and
//! torchvision decode, which models were trained and evaluated on; `draft` decodes them at a
//! reduced size. CMYK JPEGs and the other formats go through the `image` crate.
//!
//! Dimensions are read from the header and checked against `maxPixels` before any pixel buffer
//! is allocated, so a "decompression bomb" costs nothing but its header; bytes that look cut short
//! are refused before decoding too (see the `truncation` module), because decoders fill
//! a missing part with grey and report success. The EXIF Orientation tag (JPEG, PNG, WebP, TIFF)
//! is applied unless `applyOrientation` is false.

use std::io::Cursor;
use std::sync::Arc;

use arrow_array::{Array, BinaryArray, LargeBinaryArray, RecordBatch};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use rayon::prelude::*;
use weir_core::alloc::OffThreadPeaks;
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{Step, StepError, StepOutput};
use weir_crds::{ImageDecode, ImageMode};

use super::truncation::truncation;
use super::turbo;
use super::{Image, image_array_owned, image_error_cause, split_results};
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
    /// Turn images upright as their EXIF Orientation tag says.
    pub apply_orientation: bool,
    /// Decode JPEGs at the largest DCT reduction that keeps the upright image at least this
    /// (width, height); `None` decodes at full size.
    pub draft: Option<(u32, u32)>,
}

/// Builds `image.decode` from its config.
///
/// # Errors
/// Never for a config that passed validation; kept for uniformity with the other steps.
pub fn build(config: &ImageDecode) -> Result<Arc<dyn Step>, BuildError> {
    Ok(Arc::new(ComputeStep(DecodeImages::from_config(config))))
}

impl Kernel for DecodeImages {
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let bytes = binary_rows(input, &self.input)?;
        let peaks = OffThreadPeaks::new();
        let results: Vec<_> = bytes.par_iter().map(|b| b.map(|b| peaks.measure(|| self.decode(b)))).collect();
        let (images, failures) = split_results(results);
        let mut output = StepOutput::with_column(input, &self.output, image_array_owned(images), failures)?;
        output.peak_alloc = peaks.total();
        Ok(output)
    }
}

impl DecodeImages {
    /// The step `config` describes, its defaults filled in.
    pub fn from_config(config: &ImageDecode) -> Self {
        Self {
            input: config.input.clone(),
            output: config.output.clone(),
            mode: config.mode.unwrap_or_default(),
            max_pixels: config.max_pixels.unwrap_or(DEFAULT_MAX_PIXELS),
            apply_orientation: config.apply_orientation.unwrap_or(true),
            draft: config.draft.map(|d| (d.width, d.height)),
        }
    }

    /// Decodes one encoded image, turned upright when `apply_orientation` is set (so a photo
    /// stored 200x100 with Orientation 6 comes out 100x200).
    ///
    /// # Errors
    /// A message saying what is wrong with the bytes: empty, not an image, a corrupt header, over
    /// `max_pixels` (checked on the stored size, before any pixel buffer is allocated), truncated
    /// (see the `truncation` module), or data the decoder rejects.
    pub fn decode(&self, bytes: &[u8]) -> Result<Image, String> {
        let (format, mut decoder) = open(bytes)?;
        let pixels = self.check_size(format, decoder.dimensions())?;
        if let Some(problem) = truncation(format, bytes) {
            return Err(format!("{format:?}: truncated: {problem}"));
        }
        let orientation = if self.apply_orientation {
            decoder
                .orientation()
                .map_err(|e| format!("{format:?}: cannot read the EXIF orientation: {}", image_error_cause(&e)))?
        } else {
            Orientation::NoTransforms
        };
        if format == ImageFormat::Jpeg
            && let Some(decoded) = self.decode_jpeg(bytes, orientation)?
        {
            return Ok(decoded);
        }
        let mut limits = Limits::default();
        limits.max_alloc = Some(pixels.saturating_mul(16).max(64 << 20));
        decoder.set_limits(limits).map_err(|e| format!("{format:?}: {}", image_error_cause(&e)))?;
        let mut decoded = DynamicImage::from_decoder(decoder)
            .map_err(|e| format!("{format:?}: cannot decode: {}", image_error_cause(&e)))?;
        decoded.apply_orientation(orientation);
        Ok(convert(decoded, self.mode))
    }

    /// Decodes a JPEG with libjpeg-turbo, at the draft's reduced size when one applies; `None`
    /// for a CMYK or YCCK JPEG, which the `image` crate's decoder turns into RGB instead.
    ///
    /// # Errors
    /// A message naming the format and libjpeg-turbo's reason.
    fn decode_jpeg(&self, bytes: &[u8], orientation: Orientation) -> Result<Option<Image>, String> {
        let decompressor = turbo::Decompressor::new().map_err(|e| format!("Jpeg: {e}"))?;
        let header = decompressor.header(bytes).map_err(|e| format!("Jpeg: {e}"))?;
        // libjpeg-turbo reads the header itself: its size, not only the image crate's, must be
        // within `maxPixels` before a buffer is sized from it.
        self.check_size(ImageFormat::Jpeg, (header.width, header.height))?;
        if header.is_cmyk {
            return Ok(None);
        }
        // The draft bounds the upright image; the decoder scales the stored one.
        let draft = self.draft.map(|(w, h)| if swaps_sides(orientation) { (h, w) } else { (w, h) });
        let (width, height) = turbo::draft_size((header.width, header.height), draft);
        let data = decompressor.decode(bytes, self.mode, (width, height)).map_err(|e| format!("Jpeg: {e}"))?;
        let image = Image { width, height, channels: self.mode.channels(), data };
        if orientation == Orientation::NoTransforms {
            return Ok(Some(image));
        }
        let mut upright = dynamic_image(image).ok_or("Jpeg: decoded pixels do not fill the image")?;
        upright.apply_orientation(orientation);
        Ok(Some(convert(upright, self.mode)))
    }

    /// The stored size's pixel count.
    ///
    /// # Errors
    /// When it is over `max_pixels`. Orientation only swaps the sides, so checking the stored size
    /// also bounds the upright image.
    fn check_size(&self, format: ImageFormat, (width, height): (u32, u32)) -> Result<u64, String> {
        let pixels = u64::from(width) * u64::from(height);
        if pixels > self.max_pixels {
            return Err(format!(
                "{format:?} image is {width}x{height} ({pixels} pixels), over the limit of {} pixels (maxPixels)",
                self.max_pixels
            ));
        }
        Ok(pixels)
    }
}

/// The format of `bytes` and a decoder that has read its header.
///
/// # Errors
/// When `bytes` are empty, of no known format, or their header is corrupt.
fn open(bytes: &[u8]) -> Result<(ImageFormat, impl ImageDecoder + '_), String> {
    if bytes.is_empty() {
        return Err("empty input (0 bytes)".into());
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read image header: {e}"))?;
    let Some(format) = reader.format() else {
        return Err(format!("not a recognised image format ({} bytes, starting {})", bytes.len(), hex_prefix(bytes)));
    };
    let decoder =
        reader.into_decoder().map_err(|e| format!("{format:?}: corrupt header: {}", image_error_cause(&e)))?;
    Ok((format, decoder))
}

/// Whether `orientation` turns the image a quarter, so that its width becomes its height.
fn swaps_sides(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    )
}

/// `image` as the `image` crate's type; `None` when its data does not fill its size.
fn dynamic_image(image: Image) -> Option<DynamicImage> {
    let Image { width, height, channels, data } = image;
    match channels {
        1 => image::GrayImage::from_raw(width, height, data).map(DynamicImage::ImageLuma8),
        4 => image::RgbaImage::from_raw(width, height, data).map(DynamicImage::ImageRgba8),
        _ => image::RgbImage::from_raw(width, height, data).map(DynamicImage::ImageRgb8),
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
        DecodeImages {
            input: "bytes".into(),
            output: "image".into(),
            mode,
            max_pixels: DEFAULT_MAX_PIXELS,
            apply_orientation: true,
            draft: None,
        }
    }

    /// An APP1 segment holding an EXIF block (big-endian TIFF) whose IFD0 has one entry: the
    /// Orientation tag (0x0112, one SHORT) set to `value`.
    fn exif_orientation_segment(value: u16) -> Vec<u8> {
        let mut body = b"Exif\0\0MM\0\x2A".to_vec();
        body.extend_from_slice(&8u32.to_be_bytes()); // IFD0 right after the TIFF header
        body.extend_from_slice(&1u16.to_be_bytes()); // one entry
        body.extend_from_slice(&0x0112u16.to_be_bytes());
        body.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        body.extend_from_slice(&1u32.to_be_bytes()); // one value
        body.extend_from_slice(&value.to_be_bytes());
        body.extend_from_slice(&[0, 0]); // value padded to 4 bytes
        body.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
        let len = u16::try_from(body.len() + 2).expect("small segment");
        [&[0xFF, 0xE1][..], &len.to_be_bytes(), &body].concat()
    }

    /// `jpeg` with `segment` inserted right after its SOI marker.
    fn insert_after_soi(jpeg: &[u8], segment: &[u8]) -> Vec<u8> {
        [&jpeg[..2], segment, &jpeg[2..]].concat()
    }

    /// A 200x100 JPEG in quadrants: red top-left, blue top-right, green bottom-left, white
    /// bottom-right.
    fn quadrants_jpeg() -> Vec<u8> {
        let img = image::RgbImage::from_fn(200, 100, |x, y| match (x < 100, y < 50) {
            (true, true) => image::Rgb([255, 0, 0]),
            (false, true) => image::Rgb([0, 0, 255]),
            (true, false) => image::Rgb([0, 255, 0]),
            (false, false) => image::Rgb([255, 255, 255]),
        });
        encode_jpeg(&img, 95)
    }

    fn pixel(img: &Image, x: u32, y: u32) -> [u8; 3] {
        let at = ((y * img.width + x) * 3) as usize;
        [img.data[at], img.data[at + 1], img.data[at + 2]]
    }

    fn near(got: [u8; 3], want: [u8; 3]) -> bool {
        got.iter().zip(want).all(|(g, w)| g.abs_diff(w) < 40)
    }

    /// `jpeg` with its frame header's declared size replaced by `width` x `height`.
    fn declare_size(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
        let mut out = jpeg.to_vec();
        let mut i = 2;
        while !matches!(out[i + 1], 0xC0 | 0xC2) {
            i += 2 + usize::from(u16::from_be_bytes([out[i + 2], out[i + 3]]));
        }
        out[i + 5..i + 7].copy_from_slice(&height.to_be_bytes());
        out[i + 7..i + 9].copy_from_slice(&width.to_be_bytes());
        out
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

    #[test]
    fn exif_orientation_6_turns_a_landscape_jpeg_upright() {
        let bytes = insert_after_soi(&quadrants_jpeg(), &exif_orientation_segment(6));
        let out = decoder(ImageMode::Rgb).decode(&bytes).expect("decode");
        assert_eq!((out.width, out.height), (100, 200));
        // Orientation 6: turn 90 degrees clockwise, so the stored top edge becomes the right edge.
        assert!(near(pixel(&out, 75, 50), [255, 0, 0]), "top-right {:?}", pixel(&out, 75, 50));
        assert!(near(pixel(&out, 25, 50), [0, 255, 0]), "top-left {:?}", pixel(&out, 25, 50));
        assert!(near(pixel(&out, 75, 150), [0, 0, 255]), "bottom-right {:?}", pixel(&out, 75, 150));
        assert!(near(pixel(&out, 25, 150), [255, 255, 255]), "bottom-left {:?}", pixel(&out, 25, 150));
    }

    #[test]
    fn apply_orientation_false_keeps_the_stored_layout() {
        let bytes = insert_after_soi(&quadrants_jpeg(), &exif_orientation_segment(6));
        let stored = DecodeImages { apply_orientation: false, ..decoder(ImageMode::Rgb) };
        let out = stored.decode(&bytes).expect("decode");
        assert_eq!((out.width, out.height), (200, 100));
        assert!(near(pixel(&out, 50, 25), [255, 0, 0]), "top-left {:?}", pixel(&out, 50, 25));
    }

    #[test]
    fn apply_orientation_defaults_to_true() {
        let config: ImageDecode =
            serde_json::from_value(serde_json::json!({"input": "bytes", "output": "image"})).expect("config");
        assert!(DecodeImages::from_config(&config).apply_orientation);
        let off: ImageDecode =
            serde_json::from_value(serde_json::json!({"input": "b", "output": "i", "applyOrientation": false}))
                .expect("config");
        assert!(!DecodeImages::from_config(&off).apply_orientation);
    }

    #[test]
    fn the_pixel_limit_holds_for_a_rotated_image() {
        let bytes = insert_after_soi(&quadrants_jpeg(), &exif_orientation_segment(6));
        let small = DecodeImages { max_pixels: 19_999, ..decoder(ImageMode::Rgb) };
        let err = small.decode(&bytes).expect_err("over the limit");
        assert_eq!(err, "Jpeg image is 200x100 (20000 pixels), over the limit of 19999 pixels (maxPixels)");
        let exact = DecodeImages { max_pixels: 20_000, ..decoder(ImageMode::Rgb) };
        assert_eq!(exact.decode(&bytes).map(|i| (i.width, i.height)), Ok((100, 200)));
    }

    #[test]
    fn a_jpeg_declaring_more_than_its_data_holds_is_a_row_failure() {
        let good = encode_jpeg(&gradient(64, 48, 2), 90);
        let padded = declare_size(&encode_jpeg(&gradient(640, 480, 5), 90), 9000, 9000);
        let cut = &good[..good.len() / 2];
        let rows: Vec<Option<&[u8]>> = vec![Some(&good), Some(&padded), Some(cut), None, Some(&good)];
        let input = RecordBatch::try_from_iter([("bytes", Arc::new(BinaryArray::from(rows)) as arrow_array::ArrayRef)])
            .expect("batch");
        let out = decoder(ImageMode::Rgb).apply(&input).expect("apply");
        let failed: Vec<(usize, &str)> = out.failures.iter().map(|f| (f.row, f.message.as_str())).collect();
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert_eq!(failed[0].0, 1);
        assert!(
            failed[0].1.starts_with("Jpeg: truncated: data ends before the declared 9000x9000 image: "),
            "{failed:?}"
        );
        assert_eq!(
            failed[1],
            (2, format!("Jpeg: truncated: no end-of-image marker in its {} bytes", cut.len()).as_str())
        );
        let images = super::super::ImageColumn::from_batch(&out.batch, "image").expect("image column");
        let sizes: Vec<Option<(u32, u32)>> =
            (0..images.len()).map(|i| images.get(i).map(|v| (v.width, v.height))).collect();
        // Failed rows leave the output (they are in `failures`); the null input stays a null image.
        assert_eq!(sizes, [Some((64, 48)), None, Some((64, 48))]);
    }

    #[test]
    fn a_draft_bounds_the_upright_image() {
        let bytes = insert_after_soi(&quadrants_jpeg(), &exif_orientation_segment(6));
        // Stored 200x100, upright 100x200: a 50x100 draft allows half the size on both sides.
        let drafted = DecodeImages { draft: Some((50, 100)), ..decoder(ImageMode::Rgb) };
        let out = drafted.decode(&bytes).expect("decode");
        assert_eq!((out.width, out.height), (50, 100));
        assert!(near(pixel(&out, 37, 25), [255, 0, 0]), "top-right {:?}", pixel(&out, 37, 25));
        let wider = DecodeImages { draft: Some((51, 100)), ..decoder(ImageMode::Rgb) };
        assert_eq!(wider.decode(&bytes).map(|i| (i.width, i.height)), Ok((100, 200)));
    }

    #[test]
    fn a_jpeg_whose_data_ends_early_before_its_end_marker_is_truncated() {
        let jpeg = encode_jpeg(&gradient(256, 256, 3), 90);
        // Cut the entropy-coded data at two thirds and close the file properly: the marker walk
        // finds an end-of-image marker and enough data for the declared size, the decoder does not.
        let cut = [&jpeg[..jpeg.len() * 2 / 3], &[0xFF, 0xD9][..]].concat();
        let err = decoder(ImageMode::Rgb).decode(&cut).expect_err("ends early");
        assert_eq!(err, "Jpeg: truncated: Corrupt JPEG data: premature end of data segment");
    }

    #[test]
    fn a_decode_failure_states_its_format_and_cause_once() {
        let mut png = encode_png(&gradient(64, 64, 4));
        let idat = png.windows(4).position(|w| w == b"IDAT").expect("IDAT chunk");
        for b in &mut png[idat + 8..idat + 40] {
            *b ^= 0x5A;
        }
        let err = decoder(ImageMode::Rgb).decode(&png).expect_err("corrupt IDAT");
        assert!(err.starts_with("Png: cannot decode: "), "{err}");
        assert_eq!(err.matches("Png").count(), 1, "{err}");
        assert_eq!(err.to_lowercase().matches("decod").count(), 1, "{err}");
    }
}
