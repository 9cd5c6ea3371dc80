//! Pipeline steps: one serde config struct per `op`, and the step list's structural CRD schema.
//!
//! Adding a step means one struct here or in [`model`] (with `step_config!`), one line in
//! [`StepSpec`] and [`StepSpec::config`], and its runtime `build()` in the worker.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use crate::pool::PoolName;

/// What every step config can say about itself, for planning and validation.
pub trait StepConfig {
    /// Columns this step reads (top-level names).
    fn inputs(&self) -> Vec<&str>;
    /// The column this step adds or replaces, if any.
    fn output(&self) -> Option<&str>;
    /// The pool the step asked for.
    fn pool(&self) -> Option<&PoolName>;
    /// Morsels processed at once, if set.
    fn concurrency(&self) -> Option<u32>;
    /// Columns added besides `output` (a row-multiplying step's position columns).
    fn extra_outputs(&self) -> Vec<String>;
}

/// Declares a step config struct with the fields every step shares (`pool`, `concurrency`).
macro_rules! step_config {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
        #[serde(rename_all = "camelCase", deny_unknown_fields)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: $ty,)*
            /// Pool this step runs on; default the leasing pool (model steps: `gpu` when the job
            /// declares a pool of that name).
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub pool: Option<PoolName>,
            /// Morsels this step works on at once; default one per core.
            #[serde(default, skip_serializing_if = "Option::is_none")]
            #[schemars(range(min = 1, max = 1024))]
            pub concurrency: Option<u32>,
        }
    };
}

/// Implements [`StepConfig`] from the struct's input fields and output expression.
macro_rules! impl_step_config {
    ($name:ident, inputs($s:ident) => $inputs:expr, output($o:ident) => $output:expr) => {
        impl_step_config!($name, inputs($s) => $inputs, output($o) => $output, extra(_e) => Vec::new());
    };
    ($name:ident, inputs($s:ident) => $inputs:expr, output($o:ident) => $output:expr, extra($e:ident) => $extra:expr) => {
        impl StepConfig for $name {
            fn inputs(&self) -> Vec<&str> {
                let $s = self;
                $inputs
            }
            fn output(&self) -> Option<&str> {
                let $o = self;
                $output
            }
            fn pool(&self) -> Option<&PoolName> {
                self.pool.as_ref()
            }
            fn concurrency(&self) -> Option<u32> {
                self.concurrency
            }
            fn extra_outputs(&self) -> Vec<String> {
                let $e = self;
                $extra
            }
        }
    };
}

mod model;
pub use model::*;

step_config!(
    /// Read the object a URI column names (local path, `file://`, `s3://`, `http(s)://`) into bytes.
    Download {
        input: String,
        output: String,
        /// Requests in flight at once per worker; default 32.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 1024))]
        max_connections: Option<u32>,
        /// Retries of a transient failure, with exponential backoff; default 5.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(max = 100))]
        retries: Option<u32>,
        /// Per-request timeout; default 60.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        timeout_seconds: Option<u32>,
    }
);
impl_step_config!(Download, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output));

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
);
impl_step_config!(ImageCrop,
    inputs(s) => std::iter::once(s.input.as_str()).chain(s.bbox_column.as_deref()).collect(),
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
);
impl_step_config!(ImageToTensor, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output));

step_config!(
    /// Keep the rows for which every predicate holds (a null compares as false).
    Filter {
        #[serde(rename = "where")]
        #[schemars(length(min = 1, max = 32))]
        predicates: Vec<Predicate>,
    }
);
impl_step_config!(Filter,
    inputs(s) => s.predicates.iter().map(|p| p.column.split('.').next().unwrap_or_default()).collect(),
    output(_s) => None);

step_config!(
    /// Keep only these columns, in this order.
    Select {
        #[schemars(length(min = 1))]
        columns: Vec<String>,
    }
);
impl_step_config!(Select, inputs(s) => s.columns.iter().map(String::as_str).collect(), output(_s) => None);

step_config!(
    /// Rename columns (`old: new`).
    Rename {
        mapping: BTreeMap<String, String>,
    }
);
impl_step_config!(Rename, inputs(s) => s.mapping.keys().map(String::as_str).collect(), output(_s) => None);

step_config!(
    /// One row per element of a list column; the other columns repeat. Empty and null lists drop the row.
    Explode {
        input: String,
        /// The element column; default the input's name (the list column is replaced).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
    }
);
impl_step_config!(Explode,
    inputs(s) => vec![s.input.as_str()],
    output(s) => Some(s.output.as_deref().unwrap_or(&s.input)));

step_config!(
    /// Normalise text: Unicode whitespace collapsed to single spaces, trimmed, optionally lower-cased.
    TextNormalize {
        input: String,
        output: String,
        /// Lower-case the text; default false.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lowercase: Option<bool>,
    }
);
impl_step_config!(TextNormalize, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output));

step_config!(
    /// Split text into overlapping chunks, one row each (the chunk in `output`, plus
    /// `<output>_index` and `<output>_start`, a character offset), preferring to break at
    /// paragraphs, then lines, sentences and words.
    TextChunk {
        input: String,
        output: String,
        /// Most characters per chunk; default 2048.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 65535))]
        size: Option<u32>,
        /// Characters shared by consecutive chunks, at most; default 200.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        overlap: Option<u32>,
    }
);
impl_step_config!(TextChunk, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output),
    extra(s) => vec![format!("{}_index", s.output), format!("{}_start", s.output)]);

step_config!(
    /// Read a video's container and stream headers: `{durationSeconds, fps, width, height, codec, frames}`.
    /// The input is a URI column (any store) or a bytes column.
    VideoMetadata {
        input: String,
        output: String,
    }
);
impl_step_config!(VideoMetadata, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output));

step_config!(
    /// Decode a video into frames, one row each (an image in `output`, plus `<output>_index`, the
    /// frame's number in the video, and `<output>_timestamp`, in seconds). Decoding streams: only a
    /// few decoded frames are held at once, however long the video.
    VideoFrames {
        input: String,
        output: String,
        /// Frames per second to sample (e.g. 1); default every frame.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 0.001, max = 1000.0))]
        fps: Option<f64>,
        /// Only key frames (fast: the decoder skips the others); default false.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keyframes_only: Option<bool>,
        /// First second to decode; default 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 0.0))]
        start: Option<f64>,
        /// Second to stop at (exclusive); default the end.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 0.0))]
        end: Option<f64>,
        /// Most frames per video; default 10,000. Longer videos are cut, not failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        max_frames: Option<u32>,
        /// Output width (with `height`); default the video's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 65535))]
        width: Option<u32>,
        /// Output height (with `width`); default the video's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 65535))]
        height: Option<u32>,
        /// Pixel layout of the frames; default RGB.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<ImageMode>,
        /// Refuse videos whose frames have more pixels than this; default 100,000,000.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        max_pixels: Option<u64>,
    }
);
impl_step_config!(VideoFrames, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output),
    extra(s) => vec![format!("{}_index", s.output), format!("{}_timestamp", s.output)]);

step_config!(
    /// Decode audio (WAV, FLAC, MP3, AAC/M4A, Opus/Ogg: anything FFmpeg reads) to f32 PCM:
    /// `{samples: list<f32> (interleaved), sampleRate, channels}`. The input is a URI or bytes column.
    AudioDecode {
        input: String,
        output: String,
        /// Resample to this rate while decoding; default the file's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1000, max = 384000))]
        sample_rate: Option<u32>,
        /// Mix to this many channels while decoding (1 = mono); default the file's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 8))]
        channels: Option<u32>,
        /// Refuse audio longer than this, by header or by decoded samples; default 3600.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        max_seconds: Option<u32>,
    }
);
impl_step_config!(AudioDecode, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output));

step_config!(
    /// Resample decoded audio (e.g. to 16 kHz mono for speech models).
    AudioResample {
        input: String,
        output: String,
        #[schemars(range(min = 1000, max = 384000))]
        sample_rate: u32,
        /// Mix to this many channels (1 = mono); default unchanged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 8))]
        channels: Option<u32>,
    }
);
impl_step_config!(AudioResample, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output));

step_config!(
    /// Read an audio file's headers: `{durationSeconds, sampleRate, channels, codec, bitRate}`.
    /// The input is a URI or bytes column.
    AudioMetadata {
        input: String,
        output: String,
    }
);
impl_step_config!(AudioMetadata, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output));

step_config!(
    /// Split decoded audio into fixed windows, one row each (audio in `output`, plus
    /// `<output>_index` and `<output>_offset`, the window's start in seconds).
    AudioChunk {
        input: String,
        output: String,
        /// Window length; default 30 (Whisper's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 0.01))]
        window_seconds: Option<f64>,
        /// Seconds shared by consecutive windows; default 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 0.0))]
        overlap_seconds: Option<f64>,
    }
);
impl_step_config!(AudioChunk, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output),
    extra(s) => vec![format!("{}_index", s.output), format!("{}_offset", s.output)]);

step_config!(
    /// Extract text from documents, one row per page (text in `output`, plus `<output>_page`,
    /// counting from 1): PDF per page; plain text, Markdown and HTML (tags stripped) as one page.
    /// A page with no text layer (a scan) gives a null text. The input is a bytes or text column.
    DocumentText {
        input: String,
        output: String,
        /// Default `auto` (by content).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        document_type: Option<DocumentType>,
        /// Most pages per document; default 1000. Longer documents are cut, not failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        max_pages: Option<u32>,
    }
);
impl_step_config!(DocumentText, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output),
    extra(s) => vec![format!("{}_page", s.output)]);

step_config!(
    /// Tokenize text with a Hugging Face `tokenizer.json` (path or object-store URI):
    /// `{ids: list<u32>, attentionMask: list<u8>}`.
    TextTokenize {
        input: String,
        output: String,
        /// Path or URI of `tokenizer.json`.
        tokenizer: String,
        /// Truncate to this many tokens; default the tokenizer's own setting.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        max_length: Option<u32>,
        /// Pad every row to `maxLength`; default false.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pad_to_max_length: Option<bool>,
        /// Add the model's special tokens (`[CLS]`, `[SEP]`); default true.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        add_special_tokens: Option<bool>,
    }
);
impl_step_config!(TextTokenize, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output));

step_config!(
    /// Compare a vector column (a list of floats) with a literal `vector` or another column
    /// (`other`); the result is a float64 per row. Used by `vector.cosine_similarity`, `vector.dot`
    /// and `vector.l2` (Euclidean distance).
    VectorCompare {
        input: String,
        output: String,
        /// The column to compare with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        other: Option<String>,
        /// The literal vector to compare with.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(length(min = 1))]
        vector: Option<Vec<f32>>,
    }
);
impl_step_config!(VectorCompare,
    inputs(s) => std::iter::once(s.input.as_str()).chain(s.other.as_deref()).collect(),
    output(s) => Some(&s.output));

step_config!(
    /// Write each row of a bytes column to an object under `uri`, named from the row's source
    /// reference (so a retried unit rewrites the same objects), and output the object's URI.
    Upload {
        input: String,
        output: String,
        /// Prefix to write under (`s3://bucket/frames/`, `file:///data/out/`).
        uri: String,
        /// File name extension, e.g. `jpg`; default none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extension: Option<String>,
        /// Requests in flight at once per worker; default 32.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1, max = 1024))]
        max_connections: Option<u32>,
        /// Retries of a transient failure, with exponential backoff; default 5.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(max = 100))]
        retries: Option<u32>,
    }
);
impl_step_config!(Upload, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output));

/// How `document.text` reads its input.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum DocumentType {
    /// PDF by its `%PDF` header, HTML by a leading tag, otherwise plain text.
    #[default]
    Auto,
    Pdf,
    Text,
    Markdown,
    Html,
}

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

/// A crop size in pixels.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CropSize {
    #[schemars(range(min = 1))]
    pub width: u32,
    #[schemars(range(min = 1))]
    pub height: u32,
}

/// `column op value`, e.g. `{column: image.width, op: ge, value: 224}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Predicate {
    /// A column, or a struct field as `column.field`.
    pub column: String,
    pub op: CmpOp,
    /// A scalar (a list for `in`); cast to the column's type. Not used by `isNull`/`notNull`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub value: Option<Value>,
}

/// A comparison.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    IsNull,
    NotNull,
    Contains,
    StartsWith,
    EndsWith,
}

fn any_value(_: &mut SchemaGenerator) -> Schema {
    json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// One pipeline step; `op` selects which.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "op")]
pub enum StepSpec {
    #[serde(rename = "download")]
    Download(Download),
    #[serde(rename = "image.decode")]
    ImageDecode(ImageDecode),
    #[serde(rename = "image.resize")]
    ImageResize(ImageResize),
    #[serde(rename = "image.crop")]
    ImageCrop(ImageCrop),
    #[serde(rename = "image.encode")]
    ImageEncode(ImageEncode),
    #[serde(rename = "image.to_tensor")]
    ImageToTensor(ImageToTensor),
    #[serde(rename = "filter")]
    Filter(Filter),
    #[serde(rename = "select")]
    Select(Select),
    #[serde(rename = "rename")]
    Rename(Rename),
    #[serde(rename = "explode")]
    Explode(Explode),
    #[serde(rename = "text.normalize")]
    TextNormalize(TextNormalize),
    #[serde(rename = "text.chunk")]
    TextChunk(TextChunk),
    #[serde(rename = "video.metadata")]
    VideoMetadata(VideoMetadata),
    #[serde(rename = "video.frames")]
    VideoFrames(VideoFrames),
    #[serde(rename = "audio.decode")]
    AudioDecode(AudioDecode),
    #[serde(rename = "audio.resample")]
    AudioResample(AudioResample),
    #[serde(rename = "audio.metadata")]
    AudioMetadata(AudioMetadata),
    #[serde(rename = "audio.chunk")]
    AudioChunk(AudioChunk),
    #[serde(rename = "document.text")]
    DocumentText(DocumentText),
    #[serde(rename = "text.tokenize")]
    TextTokenize(TextTokenize),
    #[serde(rename = "vector.cosine_similarity")]
    VectorCosine(VectorCompare),
    #[serde(rename = "vector.dot")]
    VectorDot(VectorCompare),
    #[serde(rename = "vector.l2")]
    VectorL2(VectorCompare),
    #[serde(rename = "upload")]
    Upload(Upload),
    #[serde(rename = "text.embed")]
    TextEmbed(TextEmbed),
    #[serde(rename = "image.embed")]
    ImageEmbed(ImageEmbed),
    #[serde(rename = "image.classify")]
    ImageClassify(ImageClassify),
    #[serde(rename = "image.detect")]
    ImageDetect(ImageDetect),
    #[serde(rename = "audio.transcribe")]
    AudioTranscribe(AudioTranscribe),
}

impl StepSpec {
    /// The step's config, seen through what all steps share.
    pub fn config(&self) -> &dyn StepConfig {
        match self {
            StepSpec::Download(c) => c,
            StepSpec::ImageDecode(c) => c,
            StepSpec::ImageResize(c) => c,
            StepSpec::ImageCrop(c) => c,
            StepSpec::ImageEncode(c) => c,
            StepSpec::ImageToTensor(c) => c,
            StepSpec::Filter(c) => c,
            StepSpec::Select(c) => c,
            StepSpec::Rename(c) => c,
            StepSpec::Explode(c) => c,
            StepSpec::TextNormalize(c) => c,
            StepSpec::TextChunk(c) => c,
            StepSpec::VideoMetadata(c) => c,
            StepSpec::VideoFrames(c) => c,
            StepSpec::AudioDecode(c) => c,
            StepSpec::AudioResample(c) => c,
            StepSpec::AudioMetadata(c) => c,
            StepSpec::AudioChunk(c) => c,
            StepSpec::DocumentText(c) => c,
            StepSpec::TextTokenize(c) => c,
            StepSpec::VectorCosine(c) => c,
            StepSpec::VectorDot(c) => c,
            StepSpec::VectorL2(c) => c,
            StepSpec::Upload(c) => c,
            StepSpec::TextEmbed(c) => c,
            StepSpec::ImageEmbed(c) => c,
            StepSpec::ImageClassify(c) => c,
            StepSpec::ImageDetect(c) => c,
            StepSpec::AudioTranscribe(c) => c,
        }
    }

    /// Whether the step runs a model (and so defaults to a declared `gpu` pool).
    pub fn is_model_step(&self) -> bool {
        matches!(
            self,
            StepSpec::TextEmbed(_)
                | StepSpec::ImageEmbed(_)
                | StepSpec::ImageClassify(_)
                | StepSpec::ImageDetect(_)
                | StepSpec::AudioTranscribe(_)
        )
    }

    /// The `op` name as written in manifests.
    pub fn op(&self) -> &'static str {
        match self {
            StepSpec::Download(_) => "download",
            StepSpec::ImageDecode(_) => "image.decode",
            StepSpec::ImageResize(_) => "image.resize",
            StepSpec::ImageCrop(_) => "image.crop",
            StepSpec::ImageEncode(_) => "image.encode",
            StepSpec::ImageToTensor(_) => "image.to_tensor",
            StepSpec::Filter(_) => "filter",
            StepSpec::Select(_) => "select",
            StepSpec::Rename(_) => "rename",
            StepSpec::Explode(_) => "explode",
            StepSpec::TextNormalize(_) => "text.normalize",
            StepSpec::TextChunk(_) => "text.chunk",
            StepSpec::VideoMetadata(_) => "video.metadata",
            StepSpec::VideoFrames(_) => "video.frames",
            StepSpec::AudioDecode(_) => "audio.decode",
            StepSpec::AudioResample(_) => "audio.resample",
            StepSpec::AudioMetadata(_) => "audio.metadata",
            StepSpec::AudioChunk(_) => "audio.chunk",
            StepSpec::DocumentText(_) => "document.text",
            StepSpec::TextTokenize(_) => "text.tokenize",
            StepSpec::VectorCosine(_) => "vector.cosine_similarity",
            StepSpec::VectorDot(_) => "vector.dot",
            StepSpec::VectorL2(_) => "vector.l2",
            StepSpec::Upload(_) => "upload",
            StepSpec::TextEmbed(_) => "text.embed",
            StepSpec::ImageEmbed(_) => "image.embed",
            StepSpec::ImageClassify(_) => "image.classify",
            StepSpec::ImageDetect(_) => "image.detect",
            StepSpec::AudioTranscribe(_) => "audio.transcribe",
        }
    }
}

/// Each op's name and schema, in declaration order (the CRD schema is built from this), with the
/// bounds of [`crate::schema::bound_fields`].
fn op_schemas(generator: &mut SchemaGenerator) -> Vec<(&'static str, Schema)> {
    let mut ops = unbounded_op_schemas(generator);
    for (_, schema) in &mut ops {
        let mut value = schema.clone().to_value();
        crate::schema::bound_fields(&mut value);
        if let Ok(bounded) = Schema::try_from(value) {
            *schema = bounded;
        }
    }
    ops
}

fn unbounded_op_schemas(generator: &mut SchemaGenerator) -> Vec<(&'static str, Schema)> {
    vec![
        ("download", Download::json_schema(generator)),
        ("image.decode", ImageDecode::json_schema(generator)),
        ("image.resize", ImageResize::json_schema(generator)),
        ("image.crop", ImageCrop::json_schema(generator)),
        ("image.encode", ImageEncode::json_schema(generator)),
        ("image.to_tensor", ImageToTensor::json_schema(generator)),
        ("filter", Filter::json_schema(generator)),
        ("select", Select::json_schema(generator)),
        ("rename", Rename::json_schema(generator)),
        ("explode", Explode::json_schema(generator)),
        ("text.normalize", TextNormalize::json_schema(generator)),
        ("text.chunk", TextChunk::json_schema(generator)),
        ("video.metadata", VideoMetadata::json_schema(generator)),
        ("video.frames", VideoFrames::json_schema(generator)),
        ("audio.decode", AudioDecode::json_schema(generator)),
        ("audio.resample", AudioResample::json_schema(generator)),
        ("audio.metadata", AudioMetadata::json_schema(generator)),
        ("audio.chunk", AudioChunk::json_schema(generator)),
        ("document.text", DocumentText::json_schema(generator)),
        ("text.tokenize", TextTokenize::json_schema(generator)),
        ("vector.cosine_similarity", VectorCompare::json_schema(generator)),
        ("vector.dot", VectorCompare::json_schema(generator)),
        ("vector.l2", VectorCompare::json_schema(generator)),
        ("upload", Upload::json_schema(generator)),
        ("text.embed", TextEmbed::json_schema(generator)),
        ("image.embed", ImageEmbed::json_schema(generator)),
        ("image.classify", ImageClassify::json_schema(generator)),
        ("image.detect", ImageDetect::json_schema(generator)),
        ("audio.transcribe", AudioTranscribe::json_schema(generator)),
    ]
}

/// Rules no single op's struct can state, checked by the API server and by `weir validate`.
const CROSS_FIELD_RULES: &[(&str, &str)] = &[
    (
        "self.op != 'image.resize' || ((has(self.fit) && self.fit != 'exact') ? has(self.size) : (has(self.width) && has(self.height)))",
        "image.resize needs width and height for fit exact, size for shorter-side or longer-side",
    ),
    (
        "self.op != 'image.crop' || [has(self.box), has(self.center), has(self.bboxColumn)].filter(b, b).size() == 1",
        "image.crop needs exactly one of box, center or bboxColumn",
    ),
    (
        "self.op != 'text.chunk' || !has(self.overlap) || self.overlap < (has(self.size) ? self.size : 2048)",
        "text.chunk needs overlap smaller than size",
    ),
    (
        "self.op != 'image.to_tensor' || !has(self.mean) || !has(self.std) || size(self.mean) == size(self.std)",
        "image.to_tensor needs mean and std of the same length",
    ),
    (
        "self.op != 'video.frames' || has(self.width) == has(self.height)",
        "video.frames needs both width and height, or neither",
    ),
    (
        "self.op != 'video.frames' || !has(self.start) || !has(self.end) || self.start < self.end",
        "video.frames needs start before end",
    ),
    (
        "!self.op.startsWith('vector.') || has(self.other) != has(self.vector)",
        "vector steps need exactly one of other (a column) or vector (a literal)",
    ),
    ("self.op != 'text.embed' || self.model.arch == 'bert'", "text.embed needs a text model (model.arch bert)"),
    (
        "!(self.op in ['image.embed', 'image.classify']) || self.model.arch in ['efficientnet-lite0', 'resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152']",
        "image.embed and image.classify need an image model (model.arch efficientnet-lite0 or resnet18/34/50/101/152)",
    ),
    ("self.op != 'image.detect' || self.model.arch == 'mtcnn'", "image.detect needs a detector (model.arch mtcnn)"),
    (
        "self.op != 'audio.transcribe' || self.model.arch == 'whisper'",
        "audio.transcribe needs a speech model (model.arch whisper)",
    ),
];

impl JsonSchema for StepSpec {
    fn schema_name() -> Cow<'static, str> {
        "StepSpec".into()
    }

    /// Kubernetes wants one structural object, not a `oneOf` per op: properties of all ops are
    /// merged, and CEL rules say which fields each op requires and which ops each field belongs
    /// to. Every rule reads a few fields of one step and no lists, so each costs the same
    /// whatever the pipeline.
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let ops = op_schemas(generator);
        let mut properties = Map::new();
        let mut rules = Vec::new();
        for (op, schema) in &ops {
            for (name, prop) in own_properties(schema) {
                properties.entry(name).or_insert(prop);
            }
            let required: Vec<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !required.is_empty() {
                let has = required.iter().map(|f| format!("has(self.{f})")).collect::<Vec<_>>().join(" && ");
                rules.push(json_rule(
                    &format!("self.op != '{op}' || ({has})"),
                    &format!("{op} requires {}", required.join(", ")),
                ));
            }
        }
        rules.extend(field_owner_rules(&ops, &properties));
        for (rule, message) in CROSS_FIELD_RULES {
            rules.push(json_rule(rule, message));
        }
        let op_names: Vec<Value> = ops.iter().map(|(op, _)| Value::from(*op)).collect();
        properties.insert(
            "op".into(),
            serde_json::json!({"type": "string", "description": "Which step this is.", "enum": op_names}),
        );
        json_schema!({
            "type": "object",
            "description": "One pipeline step: `op` selects which; the other fields are that op's parameters.",
            "required": ["op"],
            "properties": properties,
            "x-kubernetes-validations": rules,
        })
    }
}

fn json_rule(rule: &str, message: &str) -> Value {
    serde_json::json!({"rule": rule, "message": message})
}

fn own_properties(schema: &Schema) -> Map<String, Value> {
    schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default()
}

/// For each field that not every op has, a rule that refuses it on the other ops
/// (`!has(self.width) || self.op in ['image.resize', 'video.frames']`).
fn field_owner_rules(ops: &[(&str, Schema)], fields: &Map<String, Value>) -> Vec<Value> {
    let mut rules = Vec::new();
    for field in fields.keys() {
        let owners: Vec<&str> =
            ops.iter().filter(|(_, s)| own_properties(s).contains_key(field)).map(|(op, _)| *op).collect();
        if owners.len() == ops.len() {
            continue;
        }
        let list = owners.iter().map(|op| format!("'{op}'")).collect::<Vec<_>>().join(", ");
        rules.push(json_rule(
            &format!("!has(self.{field}) || self.op in [{list}]"),
            &format!("{field} is a field of {} only", owners.join(", ")),
        ));
    }
    rules
}

/// The schema of one op's fields (as it appears in manifests), for precise validation messages.
pub fn op_schema(op: &str) -> Option<Value> {
    let mut generator =
        schemars::generate::SchemaSettings::openapi3().with(|s| s.inline_subschemas = true).into_generator();
    op_schemas(&mut generator).into_iter().find(|(name, _)| *name == op).map(|(_, schema)| schema.to_value())
}

/// Every op name, in declaration order.
pub fn op_names() -> Vec<&'static str> {
    let mut generator = SchemaGenerator::default();
    op_schemas(&mut generator).into_iter().map(|(name, _)| name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CRD merges every op's fields into one object, so a field two ops share must mean the
    /// same thing to the API server.
    #[test]
    fn fields_shared_by_ops_have_one_schema() {
        let mut generator = SchemaGenerator::default();
        let mut seen: BTreeMap<String, (&str, Value)> = BTreeMap::new();
        for (op, schema) in op_schemas(&mut generator) {
            let props = schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
            for (name, mut prop) in props {
                if let Some(obj) = prop.as_object_mut() {
                    obj.remove("description");
                    if let Some(Value::Array(types)) = obj.get_mut("type") {
                        types.retain(|t| t != "null");
                    }
                    if let Some(Value::Array(types)) = obj.get("type")
                        && types.len() == 1
                    {
                        let only = types[0].clone();
                        obj.insert("type".into(), only);
                    }
                    if let Some(Value::Array(any)) = obj.get("anyOf") {
                        let kept: Vec<Value> =
                            any.iter().filter(|v| v.get("type") != Some(&Value::from("null"))).cloned().collect();
                        if let [one] = kept.as_slice() {
                            let one = one.clone();
                            obj.remove("anyOf");
                            obj.extend(one.as_object().cloned().unwrap_or_default());
                        }
                    }
                }
                match seen.get(&name) {
                    Some((first, earlier)) => {
                        assert_eq!(earlier, &prop, "field `{name}` of {op} differs from {first}'s")
                    }
                    None => {
                        seen.insert(name, (op, prop));
                    }
                }
            }
        }
    }
}
