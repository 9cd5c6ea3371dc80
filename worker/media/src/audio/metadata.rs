//! `audio.metadata`: an audio file's headers as `{durationSeconds, sampleRate, channels, codec,
//! bitRate}`, read without decoding.

use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{Float64Builder, StringBuilder, UInt32Builder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch, StructArray};
use arrow_buffer::NullBuffer;
use arrow_schema::{DataType, Field, Fields};
use ffmpeg_next::media::Type;
use weir_core::{RowFailure, Step, StepError, StepOutput};
use weir_crds::AudioMetadata;
use weir_io::StoreRegistry;
use weir_ops::BuildError;

use crate::MediaError;
use crate::open::{find_stream, init, open};
use crate::step::{MediaKernel, MediaStep};

/// What the headers say about an audio stream.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    /// The stream's duration, else the container's; 0 when neither says.
    pub duration_seconds: f64,
    pub sample_rate: u32,
    pub channels: u32,
    /// FFmpeg's codec name, e.g. `mp3`, `aac`, `pcm_s16le`.
    pub codec: String,
    /// Bits per second (the stream's, else the container's); 0 when unknown.
    pub bit_rate: u64,
}

/// Reads the headers of the audio at `path`.
///
/// # Errors
/// When the file is not media or has no audio stream.
pub fn read_audio_info(path: &Path) -> Result<AudioInfo, MediaError> {
    let input = open(path)?;
    let info = find_stream(&input, Type::Audio)?;
    Ok(AudioInfo {
        duration_seconds: info.duration.unwrap_or(0.0),
        sample_rate: info.sample_rate,
        channels: info.channels,
        codec: info.codec,
        bit_rate: info.bit_rate,
    })
}

/// The struct fields of an `audio.metadata` column.
pub fn audio_info_fields() -> Fields {
    Fields::from(vec![
        Field::new("durationSeconds", DataType::Float64, false),
        Field::new("sampleRate", DataType::UInt32, false),
        Field::new("channels", DataType::UInt32, false),
        Field::new("codec", DataType::Utf8, false),
        Field::new("bitRate", DataType::UInt64, false),
    ])
}

fn audio_info_array(values: &[Option<AudioInfo>]) -> ArrayRef {
    let n = values.len();
    let mut duration = Float64Builder::with_capacity(n);
    let (mut rate, mut channels) = (UInt32Builder::with_capacity(n), UInt32Builder::with_capacity(n));
    let (mut codec, mut bit_rate) = (StringBuilder::new(), UInt64Builder::with_capacity(n));
    let unknown = AudioInfo { duration_seconds: 0.0, sample_rate: 0, channels: 0, codec: String::new(), bit_rate: 0 };
    for value in values {
        let v = value.as_ref().unwrap_or(&unknown);
        duration.append_value(v.duration_seconds);
        rate.append_value(v.sample_rate);
        channels.append_value(v.channels);
        codec.append_value(&v.codec);
        bit_rate.append_value(v.bit_rate);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(duration.finish()),
        Arc::new(rate.finish()),
        Arc::new(channels.finish()),
        Arc::new(codec.finish()),
        Arc::new(bit_rate.finish()),
    ];
    let nulls = NullBuffer::from(values.iter().map(Option::is_some).collect::<Vec<_>>());
    Arc::new(StructArray::new(audio_info_fields(), columns, Some(nulls)))
}

/// The runnable `audio.metadata` kernel.
#[derive(Debug, Clone)]
pub struct ReadAudioInfo {
    pub input: String,
    pub output: String,
}

/// Builds `audio.metadata`.
///
/// # Errors
/// When FFmpeg cannot start.
pub fn build(config: &AudioMetadata, stores: Arc<StoreRegistry>) -> Result<Arc<dyn Step>, BuildError> {
    init().map_err(|e| BuildError::new("op", format!("FFmpeg cannot start: {e}")))?;
    let kernel = ReadAudioInfo { input: config.input.clone(), output: config.output.clone() };
    Ok(Arc::new(MediaStep::new(kernel, stores)))
}

impl MediaKernel for ReadAudioInfo {
    type Value = AudioInfo;

    fn input(&self) -> &str {
        &self.input
    }

    fn read(&self, path: &Path) -> Result<AudioInfo, MediaError> {
        read_audio_info(path)
    }

    fn assemble(
        &self,
        input: &RecordBatch,
        values: Vec<Option<AudioInfo>>,
        failures: Vec<RowFailure>,
    ) -> Result<StepOutput, StepError> {
        StepOutput::with_column(input, &self.output, audio_info_array(&values), failures)
    }
}

#[cfg(test)]
mod tests {
    use weir_testkit::media::{AudioFormat, ToneSpec, write_tone, write_video_only};

    use super::*;

    #[test]
    fn the_declared_audio_info_type_is_the_column_audio_metadata_makes() {
        assert!(weir_ops::column_types::declares(weir_crds::steps::AUDIO_INFO_TYPE, &audio_info_fields()));
    }

    fn tone(format: AudioFormat, sample_rate: u32, channels: u32) -> ToneSpec {
        ToneSpec { seconds: 2.0, frequency: 440, sample_rate, channels, format }
    }

    #[test]
    fn headers_give_rate_channels_codec_and_bit_rate() {
        let dir = tempfile::tempdir().expect("tmp");
        let wav =
            read_audio_info(&write_tone(&dir.path().join("a.wav"), tone(AudioFormat::Wav, 44100, 2))).expect("wav");
        assert_eq!(
            wav,
            AudioInfo {
                duration_seconds: 2.0,
                sample_rate: 44100,
                channels: 2,
                codec: "pcm_s16le".into(),
                bit_rate: 1_411_200
            }
        );
        let mp3 =
            read_audio_info(&write_tone(&dir.path().join("a.mp3"), tone(AudioFormat::Mp3, 22050, 1))).expect("mp3");
        assert_eq!((mp3.sample_rate, mp3.channels, mp3.codec.as_str(), mp3.bit_rate), (22050, 1, "mp3", 128_000));
        assert!((mp3.duration_seconds - 2.0).abs() < 0.1, "{mp3:?}");
        let opus =
            read_audio_info(&write_tone(&dir.path().join("a.opus"), tone(AudioFormat::Opus, 48000, 2))).expect("opus");
        assert_eq!((opus.sample_rate, opus.channels, opus.codec.as_str()), (48000, 2, "opus"));
        let err = read_audio_info(&write_video_only(&dir.path().join("v.mp4"))).expect_err("no audio");
        assert_eq!(err.to_string(), "no audio stream (the file has video)");
    }
}
