//! `audio.decode`: any audio FFmpeg reads (WAV, FLAC, MP3, AAC/M4A, Opus/Ogg, the audio of a
//! video) to interleaved f32 PCM, resampled and mixed while decoding when `sampleRate` or
//! `channels` is set.
//!
//! `maxSeconds` is checked twice: against the header's duration before decoding, and against the
//! samples decoded so far, because headers lie (a file claiming 10 s may hold 10 hours).

use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use ffmpeg::media::Type;
use ffmpeg::util::frame::Audio as AudioFrame;
use ffmpeg_next as ffmpeg;
use weir_core::{RowFailure, Step, StepError, StepOutput};
use weir_crds::AudioDecode;
use weir_io::StoreRegistry;
use weir_ops::BuildError;

use super::convert::{Converter, PcmFormat};
use super::{Audio, audio_array};
use crate::MediaError;
use crate::demux::{Flow, StreamDecode, decode};
use crate::open::{StreamInfo, audio_decoder, find_stream, init, open};
use crate::step::{MediaKernel, MediaStep};

pub const DEFAULT_MAX_SECONDS: u32 = 3600;
/// Samples reserved up front at most (64 MiB); past that the buffer grows in place.
const MAX_RESERVED_SAMPLES: usize = 1 << 24;

/// What `audio.decode` produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Output rate; `None` keeps the file's.
    pub sample_rate: Option<u32>,
    /// Output channels; `None` keeps the file's.
    pub channels: Option<u16>,
    pub max_seconds: u32,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        Self { sample_rate: None, channels: None, max_seconds: DEFAULT_MAX_SECONDS }
    }
}

/// The runnable `audio.decode` kernel.
#[derive(Debug, Clone)]
pub struct DecodeAudio {
    pub input: String,
    pub output: String,
    pub options: DecodeOptions,
}

/// Builds `audio.decode`.
///
/// # Errors
/// When `channels` is out of range or FFmpeg cannot start.
pub fn build(config: &AudioDecode, stores: Arc<StoreRegistry>) -> Result<Arc<dyn Step>, BuildError> {
    init().map_err(|e| BuildError::new("op", format!("FFmpeg cannot start: {e}")))?;
    let channels = config
        .channels
        .map(|c| u16::try_from(c).ok().filter(|c| (1..=8).contains(c)))
        .map(|c| c.ok_or_else(|| BuildError::new("channels", "must be between 1 and 8")))
        .transpose()?;
    let options = DecodeOptions {
        sample_rate: config.sample_rate,
        channels,
        max_seconds: config.max_seconds.unwrap_or(DEFAULT_MAX_SECONDS),
    };
    let kernel = DecodeAudio { input: config.input.clone(), output: config.output.clone(), options };
    Ok(Arc::new(MediaStep::new(kernel, stores)))
}

impl MediaKernel for DecodeAudio {
    type Value = Audio;

    fn input(&self) -> &str {
        &self.input
    }

    fn read(&self, path: &Path) -> Result<Audio, MediaError> {
        decode_audio(path, self.options)
    }

    fn assemble(
        &self,
        input: &RecordBatch,
        values: Vec<Option<Audio>>,
        failures: Vec<RowFailure>,
    ) -> Result<StepOutput, StepError> {
        StepOutput::with_column(input, &self.output, audio_array(values)?, failures)
    }
}

/// Decodes the audio at `path`.
///
/// # Errors
/// Any [`MediaError`] about the file: not media, no audio stream, longer than `maxSeconds`,
/// undecodable.
pub fn decode_audio(path: &Path, options: DecodeOptions) -> Result<Audio, MediaError> {
    let mut input = open(path)?;
    let info = find_stream(&input, Type::Audio)?;
    let max = f64::from(options.max_seconds);
    if let Some(seconds) = info.duration.filter(|d| *d > max) {
        return Err(MediaError::TooLongByHeader { seconds, max: options.max_seconds });
    }
    let mut decoder = audio_decoder(&input, &info)?;
    let mut pcm = Pcm::new(&info, options);
    let stream = StreamDecode { stream: info.index, kind: "audio", keyframes_only: false, decoder: &mut decoder };
    decode(&mut input, stream, &mut AudioFrame::empty(), |frame: &mut AudioFrame| pcm.push(frame))?;
    pcm.finish()
}

/// Decoded PCM so far, converted as it arrives.
struct Pcm<'a> {
    info: &'a StreamInfo,
    options: DecodeOptions,
    /// Output shape, fixed by the first frame (or the options).
    out: Option<(u16, u32)>,
    converter: Option<Converter>,
    samples: Vec<f32>,
}

impl<'a> Pcm<'a> {
    fn new(info: &'a StreamInfo, options: DecodeOptions) -> Self {
        let seconds = info.duration.unwrap_or(0.0).min(f64::from(options.max_seconds));
        let rate = options.sample_rate.unwrap_or(info.sample_rate);
        let channels = options.channels.map_or(info.channels, u32::from);
        // Reserved from the header to spare the early regrowths, capped: headers lie.
        let expected = (seconds * f64::from(rate) * f64::from(channels)) as usize;
        let samples = Vec::with_capacity(expected.min(MAX_RESERVED_SAMPLES) + 4096);
        Self { info, options, out: None, converter: None, samples }
    }

    /// Converts one decoded frame; the converter is rebuilt when the stream's shape changes.
    fn push(&mut self, frame: &mut AudioFrame) -> Result<Flow, MediaError> {
        let format = PcmFormat::of(frame)?;
        let (channels, rate) = *self.out.get_or_insert((
            self.options.channels.unwrap_or(frame.channels()),
            self.options.sample_rate.unwrap_or(format.rate),
        ));
        let converter = match &mut self.converter {
            Some(c) if c.input() == format => c,
            slot => {
                if let Some(mut old) = slot.take() {
                    old.finish(&mut self.samples)?;
                }
                slot.insert(Converter::new(format, channels, rate)?)
            }
        };
        converter.push(frame, &mut self.samples)?;
        self.check_length()?;
        Ok(Flow::Continue)
    }

    fn check_length(&self) -> Result<(), MediaError> {
        let (channels, rate) = self.out.unwrap_or((1, 1));
        let frames = self.samples.len() as u64 / u64::from(channels.max(1));
        if frames > u64::from(self.options.max_seconds) * u64::from(rate) {
            let header = self.info.duration.map_or("nothing about its length".to_string(), |d| format!("{d:.1} s"));
            return Err(MediaError::TooLongDecoded { max: self.options.max_seconds, header });
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Audio, MediaError> {
        if let Some(converter) = &mut self.converter {
            converter.finish(&mut self.samples)?;
            self.check_length()?;
        }
        let (channels, sample_rate) = self.out.unwrap_or((
            self.options.channels.unwrap_or(u16::try_from(self.info.channels).unwrap_or(0)),
            self.options.sample_rate.unwrap_or(self.info.sample_rate),
        ));
        Ok(Audio { samples: self.samples, sample_rate, channels: u32::from(channels) })
    }
}

#[cfg(test)]
mod tests {
    use weir_testkit::media::{
        AudioFormat, ToneSpec, VideoSpec, tone_amplitude, write_empty, write_lying_m4a, write_tone, write_video,
    };

    use super::*;
    use crate::testing::{rms, run, uri_batch};

    fn tone(format: AudioFormat, seconds: f64, sample_rate: u32, channels: u32) -> ToneSpec {
        ToneSpec { seconds, frequency: 1000, sample_rate, channels, format }
    }

    #[test]
    fn every_container_decodes_to_its_length_and_level() {
        let dir = tempfile::tempdir().expect("tmp");
        for format in AudioFormat::ALL {
            let path = write_tone(&dir.path().join(format!("a.{}", format.extension())), tone(format, 2.0, 44100, 2));
            let audio = decode_audio(&path, DecodeOptions::default()).unwrap_or_else(|e| panic!("{format:?}: {e}"));
            let rate = if format == AudioFormat::Opus { 48000 } else { 44100 };
            assert_eq!((audio.sample_rate, audio.channels), (rate, 2), "{format:?}");
            assert!((audio.seconds() - 2.0).abs() < 0.03, "{format:?}: {} s", audio.seconds());
            let level = rms(&audio.samples) / (tone_amplitude(2) * std::f64::consts::FRAC_1_SQRT_2);
            // LAME loses ~5 % of a pure tone's level (FFmpeg's own decode shows the same).
            assert!((level - 1.0).abs() < 0.07, "{format:?}: RMS {level} of a sine's");
        }
    }

    #[test]
    fn decoding_resamples_and_mixes_down_on_the_way() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = write_tone(&dir.path().join("a.flac"), tone(AudioFormat::Flac, 3.0, 44100, 2));
        let options = DecodeOptions { sample_rate: Some(16000), channels: Some(1), ..Default::default() };
        let audio = decode_audio(&path, options).expect("decode");
        assert_eq!((audio.sample_rate, audio.channels), (16000, 1));
        assert!((audio.samples.len() as f64 / 48000.0 - 1.0).abs() < 0.01, "{} samples", audio.samples.len());
        let level = rms(&audio.samples) / (tone_amplitude(2) * std::f64::consts::FRAC_1_SQRT_2);
        assert!((level - 1.0).abs() < 0.02, "the mono mix is the average of identical channels: {level}");
    }

    #[test]
    fn max_seconds_is_checked_against_the_header_and_the_samples() {
        let dir = tempfile::tempdir().expect("tmp");
        let limit = DecodeOptions { max_seconds: 2, ..Default::default() };
        let long = write_tone(&dir.path().join("long.wav"), tone(AudioFormat::Wav, 3.0, 8000, 1));
        let err = decode_audio(&long, limit).expect_err("too long").to_string();
        assert_eq!(err, "audio is 3.0 s long by its header, over the limit of 2 s (maxSeconds)");
        let liar = write_lying_m4a(&dir.path().join("liar.m4a"), 8.0);
        let err = decode_audio(&liar, limit).expect_err("header lies").to_string();
        assert_eq!(err, "decoded audio passed the limit of 2 s (maxSeconds), though the header says 1.0 s");
        let honest = decode_audio(&liar, DecodeOptions::default()).expect("under the default limit");
        assert!((honest.seconds() - 8.0).abs() < 0.1, "{}", honest.seconds());
    }

    #[test]
    fn the_audio_of_a_video_decodes_and_a_silent_video_fails() {
        let dir = tempfile::tempdir().expect("tmp");
        let with_audio =
            write_video(&dir.path().join("a.mp4"), VideoSpec { with_audio: true, ..VideoSpec::small(1.0, 10) });
        let silent = write_video(&dir.path().join("b.mp4"), VideoSpec::small(1.0, 10));
        let empty = write_empty(&dir.path().join("c.wav"));
        let kernel = DecodeAudio { input: "uri".into(), output: "audio".into(), options: DecodeOptions::default() };
        let step = Arc::new(MediaStep::new(kernel, Arc::new(StoreRegistry::default())));
        let out = run(step, uri_batch(&[Some(&with_audio), Some(&silent), None, Some(&empty)]));
        let failures: Vec<(usize, String)> = out.failures.into_iter().map(|f| (f.row, f.message)).collect();
        assert_eq!(
            failures,
            [
                (1, format!("file://{}: no audio stream (the file has video)", silent.display())),
                (3, format!("file://{}: empty file (0 bytes)", empty.display())),
            ]
        );
        let column = super::super::AudioColumn::from_batch(&out.batch, "audio").expect("audio column");
        assert_eq!(column.len(), 2);
        let first = column.get(0).expect("decoded");
        assert_eq!((first.sample_rate, first.channels), (44100, 1));
        assert!(column.get(1).is_none(), "a null input gives a null output");
    }
}
