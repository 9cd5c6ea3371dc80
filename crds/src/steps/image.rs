//! Image steps: decode, resize, crop, draw, encode and to_tensor, and the enums they share (kernels in
//! `weir-ops::image`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PoolName, StepConfig};

step_config!(
    /// Decode JPEG, PNG, WebP, GIF (first frame), BMP or TIFF bytes into an image.
    ImageDecode {
        input: String,
        output: String,
        /// Pixel layout of the decoded image; default RGB.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<ImageMode>,
        /// Refuse images with more pixels than this before allocating; default 100,000,000.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        max_pixels: Option<u64>,
        /// Turn the image upright as its EXIF Orientation tag says (rotate and/or mirror), as
        /// photo viewers do; default true. `maxPixels` applies to the stored size (the pixel
        /// count is the same either way).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        apply_orientation: Option<bool>,
        /// Decode JPEGs at a reduced size, as Pillow's `Image.draft` does: libjpeg-turbo scales
        /// the DCT by 1/8, 1/4 or 1/2, the largest reduction that keeps the (upright) image at
        /// least this size, which costs a fraction of a full decode. Set it to the size a
        /// following `image.resize` makes; the resized pixels then differ from a full decode's
        /// by about one grey level. Other formats decode at full size.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        draft: Option<DraftSize>,
    }
);
impl_step_config!(ImageDecode, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output));

step_config!(
    /// Resize an image column.
    ImageResize {
        input: String,
        output: String,
        /// Target width (fit `exact`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 65535))]
        width: Option<u32>,
        /// Target height (fit `exact`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 65535))]
        height: Option<u32>,
        /// Target length of the shorter or longer side (fits `shorter-side`, `longer-side`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 65535))]
        size: Option<u32>,
        /// How the target is reached; default `exact`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fit: Option<ResizeFit>,
        /// Resampling filter; default bilinear.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<ResizeFilter>,
    }
    rules {
        "(has(self.fit) && self.fit != 'exact') ? has(self.size) : (has(self.width) && has(self.height))"
            => "needs width and height for fit exact, size for shorter-side or longer-side",
    }
);
impl_step_config!(ImageResize, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output));

step_config!(
    /// Crop an image column: a fixed box, a centred box, or a per-row bounding box column.
    ImageCrop {
        input: String,
        output: String,
        /// Fixed box in pixels.
        #[serde(rename = "box", default, skip_serializing_if = "Option::is_none")]
        crop_box: Option<CropBox>,
        /// Centred box of this size.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        center: Option<CropSize>,
        /// Column holding `[x1, y1, x2, y2]` in pixels per row; a dotted name reads a struct
        /// field (`face.bbox`, after exploding `image.detect`'s output into `face`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bbox_column: Option<String>,
    }
    rules {
        "[has(self.box), has(self.center), has(self.bboxColumn)].filter(b, b).size() == 1"
            => "needs exactly one of box, center or bboxColumn",
    }
);
impl_step_config!(ImageCrop,
    inputs(s) => std::iter::once(s.input.as_str()).chain(s.bbox_column.as_deref()).collect(),
    output(s) => Some(&s.output));

step_config!(
    /// Draw detections onto an image column: each detection's box outlined inside its edges and,
    /// unless `labels` is false, `label score` written above it, all clipped to the image.
    ImageDraw {
        input: String,
        /// List column of `{bbox: [x1, y1, x2, y2], score, label}` per row, in the image's pixels
        /// (`image.detect`'s output); a null list draws nothing.
        detections: String,
        output: String,
        /// Outline width in pixels, inside the box; default 2.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 64))]
        line_width: Option<u32>,
        /// Write `label score` (`face 0.93`) above each box; default true.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        labels: Option<bool>,
        /// Detections scoring below this are not drawn; default 0 (all).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 0.0, max = 1.0))]
        min_score: Option<f32>,
        /// One colour for every box, `"#rrggbb"` (quoted: YAML reads an unquoted `#` as a
        /// comment); default a colour per label from a fixed palette (a label has the same
        /// colour in every row and every job).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(max = 32))]
        color: Option<String>,
    }
    rules {
        "!has(self.color) || self.color.matches('^#[0-9a-fA-F]{6}$')"
            => "needs color as `#rrggbb`, six hexadecimal digits (`#ff0000` is red)",
    }
);
impl_step_config!(ImageDraw,
    inputs(s) => vec![s.input.as_str(), s.detections.as_str()],
    output(s) => Some(&s.output));

step_config!(
    /// Encode an image column to JPEG or PNG bytes.
    ImageEncode {
        input: String,
        output: String,
        /// Default jpeg.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<ImageFormat>,
        /// JPEG quality 1-100; default 85.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 100))]
        quality: Option<u8>,
    }
);
impl_step_config!(ImageEncode, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output));

step_config!(
    /// Turn an image column into an f32 tensor (pixels / 255, then `(x - mean) / std` per channel).
    ImageToTensor {
        input: String,
        output: String,
        /// Per-channel mean, e.g. ImageNet's `[0.485, 0.456, 0.406]`; default 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(min = 1, max = 4))]
        mean: Option<Vec<f32>>,
        /// Per-channel standard deviation, e.g. `[0.229, 0.224, 0.225]`; default 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(min = 1, max = 4))]
        std: Option<Vec<f32>>,
        /// Default `chw`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        layout: Option<TensorLayout>,
    }
    rules {
        "!has(self.mean) || !has(self.std) || size(self.mean) == size(self.std)"
            => "needs mean and std of the same length",
    }
);
impl_step_config!(ImageToTensor, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output));

/// Pixel layout.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum ImageMode {
    #[default]
    #[serde(rename = "RGB")]
    Rgb,
    #[serde(rename = "RGBA")]
    Rgba,
    /// 8-bit grey.
    L,
}

impl ImageMode {
    /// Bytes per pixel.
    pub fn channels(self) -> u8 {
        match self {
            ImageMode::Rgb => 3,
            ImageMode::Rgba => 4,
            ImageMode::L => 1,
        }
    }
}

/// How `image.resize` reaches its target.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeFit {
    /// Exactly `width` x `height` (aspect ratio not kept).
    #[default]
    Exact,
    /// Shorter side becomes `size`, aspect ratio kept.
    ShorterSide,
    /// Longer side becomes `size`, aspect ratio kept.
    LongerSide,
}

/// Resampling filter.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeFilter {
    Nearest,
    #[default]
    Bilinear,
    CatmullRom,
    Lanczos3,
}

/// Encoded image format.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    #[default]
    Jpeg,
    Png,
}

/// Tensor memory layout.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum TensorLayout {
    #[default]
    Chw,
    Hwc,
}

/// A fixed crop box in pixels: its top-left corner (`left`, `top`) and size. (Not `x`/`y`: YAML
/// 1.1, as kubectl reads manifests, takes an unquoted `y` for a boolean.)
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CropBox {
    /// Columns from the left edge to the box.
    pub left: u32,
    /// Rows from the top edge to the box.
    pub top: u32,
    #[schemars(range(min = 1))]
    pub width: u32,
    #[schemars(range(min = 1))]
    pub height: u32,
}

/// The least size, in pixels, a draft decode keeps.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DraftSize {
    #[schemars(range(min = 1, max = 65535))]
    pub width: u32,
    #[schemars(range(min = 1, max = 65535))]
    pub height: u32,
}

/// A crop size in pixels.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CropSize {
    #[schemars(range(min = 1))]
    pub width: u32,
    #[schemars(range(min = 1))]
    pub height: u32,
}
