//! `video.metadata`: a video's headers as `{durationSeconds, fps, width, height, codec, frames}`,
//! read without decoding a frame.

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder, UInt32Builder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch, StructArray};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Fields};
use ffmpeg_next::media::Type;
use weir_core::{RowFailure, Step, StepError, StepOutput};
use weir_crds::VideoMetadata;
use weir_io::StoreRegistry;
use weir_ops::BuildError;

use crate::MediaError;
use crate::open::{find_stream, init, open};
use crate::step::{MediaKernel, MediaStep};

/// What the headers say about a video.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    /// The video stream's duration, else the container's; 0 when neither says.
    pub duration_seconds: f64,
    /// Average frame rate; 0 when unknown.
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    /// FFmpeg's codec name, e.g. `h264`.
    pub codec: String,
    /// From the stream header, else estimated as `round(duration × fps)`.
    pub frames: u64,
}

/// Reads the headers of the video at `path`.
///
/// # Errors
/// When the file is not media or has no video stream.
pub fn read_video_info(path: &Path) -> Result<VideoInfo, MediaError> {
    let input = open(path)?;
    let info = find_stream(&input, Type::Video)?;
    let duration_seconds = info.duration.unwrap_or(0.0);
    let fps = info.fps.unwrap_or(0.0);
    Ok(VideoInfo {
        duration_seconds,
        fps,
        width: info.width,
        height: info.height,
        frames: info.frames.unwrap_or_else(|| (duration_seconds * fps).round() as u64),
        codec: info.codec,
    })
}

/// The struct fields of a `video.metadata` column.
pub fn video_info_fields() -> Fields {
    Fields::from(vec![
        Field::new("durationSeconds", DataType::Float64, false),
        Field::new("fps", DataType::Float64, false),
        Field::new("width", DataType::UInt32, false),
        Field::new("height", DataType::UInt32, false),
        Field::new("codec", DataType::Utf8, false),
        Field::new("frames", DataType::UInt64, false),
    ])
}

fn video_info_array(values: &[Option<VideoInfo>]) -> ArrayRef {
    let n = values.len();
    let (mut duration, mut fps) = (Float64Builder::with_capacity(n), Float64Builder::with_capacity(n));
    let (mut width, mut height) = (UInt32Builder::with_capacity(n), UInt32Builder::with_capacity(n));
    let (mut codec, mut frames) = (StringBuilder::new(), UInt64Builder::with_capacity(n));
    let unknown = VideoInfo { duration_seconds: 0.0, fps: 0.0, width: 0, height: 0, codec: String::new(), frames: 0 };
    for value in values {
        let v = value.as_ref().unwrap_or(&unknown);
        duration.append_value(v.duration_seconds);
        fps.append_value(v.fps);
        width.append_value(v.width);
        height.append_value(v.height);
        codec.append_value(&v.codec);
        frames.append_value(v.frames);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(duration.finish()),
        Arc::new(fps.finish()),
        Arc::new(width.finish()),
        Arc::new(height.finish()),
        Arc::new(codec.finish()),
        Arc::new(frames.finish()),
    ];
    let nulls = NullBuffer::from(values.iter().map(Option::is_some).collect::<Vec<_>>());
    Arc::new(StructArray::new(video_info_fields(), columns, Some(nulls)))
}

/// The runnable `video.metadata` kernel.
#[derive(Debug, Clone)]
pub struct ReadVideoInfo {
    pub input: String,
    pub output: String,
}

/// Builds `video.metadata`.
///
/// # Errors
/// When FFmpeg cannot start.
pub fn build(config: &VideoMetadata, stores: Arc<StoreRegistry>) -> Result<Arc<dyn Step>, BuildError> {
    init().map_err(|e| BuildError::new("op", format!("FFmpeg cannot start: {e}")))?;
    let kernel = ReadVideoInfo { input: config.input.clone(), output: config.output.clone() };
    Ok(Arc::new(MediaStep::new(kernel, stores)))
}

impl MediaKernel for ReadVideoInfo {
    type Value = VideoInfo;

    fn input(&self) -> &str {
        &self.input
    }

    fn read(&self, path: &Path) -> Result<VideoInfo, MediaError> {
        read_video_info(path)
    }

    fn assemble(
        &self,
        input: &RecordBatch,
        values: Vec<Option<VideoInfo>>,
        failures: Vec<RowFailure>,
    ) -> Result<StepOutput, StepError> {
        StepOutput::with_column(input, &self.output, video_info_array(&values), failures)
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;
    use arrow_array::cast::AsArray;
    use weir_testkit::media::{VideoCodec, VideoSpec, write_audio_only, write_video};

    use super::*;

    #[test]
    fn the_declared_video_info_type_is_the_column_video_metadata_makes() {
        assert!(weir_ops::column_types::declares(weir_crds::steps::VIDEO_INFO_TYPE, &video_info_fields()));
    }
    use crate::testing::{run, uri_batch};

    #[test]
    fn headers_give_what_was_encoded() {
        let dir = tempfile::tempdir().expect("tmp");
        let h264 = VideoSpec { width: 320, height: 240, ..VideoSpec::small(5.0, 25) };
        let info = read_video_info(&write_video(&dir.path().join("a.mp4"), h264)).expect("h264");
        assert_eq!(
            (info.fps, info.width, info.height, info.codec.as_str(), info.frames),
            (25.0, 320, 240, "h264", 125)
        );
        assert!((info.duration_seconds - 5.0).abs() < 0.05, "{info:?}");
        let mpeg4 = VideoSpec { codec: VideoCodec::Mpeg4, with_audio: true, ..VideoSpec::small(2.0, 10) };
        let info = read_video_info(&write_video(&dir.path().join("b.mp4"), mpeg4)).expect("mpeg4");
        assert_eq!((info.fps, info.codec.as_str(), info.frames), (10.0, "mpeg4", 20));
    }

    #[test]
    fn a_row_per_input_row_with_nulls_and_failures() {
        let dir = tempfile::tempdir().expect("tmp");
        let video = write_video(&dir.path().join("a.mp4"), VideoSpec::small(1.0, 10));
        let audio = write_audio_only(&dir.path().join("b.m4a"));
        let kernel = ReadVideoInfo { input: "uri".into(), output: "meta".into() };
        let step = Arc::new(MediaStep::new(kernel, Arc::new(StoreRegistry::default())));
        let out = run(step, uri_batch(&[Some(&video), None, Some(&audio)]));
        assert_eq!(out.failures.len(), 1);
        assert_eq!(
            out.failures[0].message,
            format!("file://{}: no video stream (the file has audio)", audio.display())
        );
        let meta = out.batch.column_by_name("meta").expect("meta").as_struct();
        assert_eq!(meta.len(), 2);
        assert!(meta.is_valid(0) && meta.is_null(1), "a null input gives a null output");
        let codec = meta.column_by_name("codec").expect("codec").as_string::<i32>();
        assert_eq!(codec.value(0), "h264");
    }
}
