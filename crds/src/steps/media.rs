//! Video and audio steps that need no model: metadata, frames, decode, resample and chunk (kernels in
//! `weir-media`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ColumnType, ImageMode, PoolName, StepConfig, StructField};

/// `video.metadata`'s output: weir-media's `video::metadata::video_info_fields()`.
pub const VIDEO_INFO_TYPE: ColumnType = ColumnType::Struct(&[
    StructField { name: "durationSeconds", ty: ColumnType::Float64 },
    StructField { name: "fps", ty: ColumnType::Float64 },
    StructField { name: "width", ty: ColumnType::UInt32 },
    StructField { name: "height", ty: ColumnType::UInt32 },
    StructField { name: "codec", ty: ColumnType::Utf8 },
    StructField { name: "frames", ty: ColumnType::UInt64 },
]);

/// Decoded audio, made by `audio.decode`, `audio.resample` and `audio.chunk`: weir-media's
/// `audio::audio_fields()`.
pub const AUDIO_TYPE: ColumnType = ColumnType::Struct(&[
    StructField { name: "samples", ty: ColumnType::List(&ColumnType::Float32) },
    StructField { name: "sampleRate", ty: ColumnType::UInt32 },
    StructField { name: "channels", ty: ColumnType::UInt32 },
]);

/// `audio.metadata`'s output: weir-media's `audio::metadata::audio_info_fields()`.
pub const AUDIO_INFO_TYPE: ColumnType = ColumnType::Struct(&[
    StructField { name: "durationSeconds", ty: ColumnType::Float64 },
    StructField { name: "sampleRate", ty: ColumnType::UInt32 },
    StructField { name: "channels", ty: ColumnType::UInt32 },
    StructField { name: "codec", ty: ColumnType::Utf8 },
    StructField { name: "bitRate", ty: ColumnType::UInt64 },
]);

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
        /// Most bytes of an input row's other columns copied into the rows it makes, in bytes;
        /// default 268435456 (256 MiB). An input row that would copy more is a row error that says
        /// so; drop the columns no later step reads to stay under it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        max_bytes_per_input: Option<u64>,
    }
    rules {
        "has(self.width) == has(self.height)"
            => "needs both width and height, or neither",
        "!has(self.start) || !has(self.end) || self.start < self.end"
            => "needs start before end",
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
        /// Most rows one input row may make; default 1,000,000. An input row that would make more
        /// is a row error, not cut.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        max_rows_per_input: Option<u64>,
        /// Most bytes of an input row's other columns copied into the rows it makes, in bytes;
        /// default 268435456 (256 MiB). An input row that would copy more is a row error that says
        /// so; drop the columns no later step reads to stay under it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schemars(range(min = 1))]
        max_bytes_per_input: Option<u64>,
    }
);
impl_step_config!(AudioChunk, inputs(s) => vec![s.input.as_str()], output(s) => Some(&s.output),
    extra(s) => vec![format!("{}_index", s.output), format!("{}_offset", s.output)]);
