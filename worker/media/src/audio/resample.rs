//! `audio.resample`: an audio column to another sample rate (and optionally channel count), with
//! swresample.

use std::sync::Arc;

use arrow_array::RecordBatch;
use rayon::prelude::*;
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{RowFailure, Step, StepError, StepOutput};
use weir_crds::AudioResample;
use weir_ops::BuildError;

use super::convert::convert_samples;
use super::{Audio, AudioColumn, AudioView, audio_array};
use crate::open::init;

/// The runnable `audio.resample` step.
#[derive(Debug, Clone)]
pub struct ResampleAudio {
    pub input: String,
    pub output: String,
    pub sample_rate: u32,
    /// `None` keeps each row's channel count.
    pub channels: Option<u16>,
}

/// Builds `audio.resample`.
///
/// # Errors
/// When `sampleRate` is 0, `channels` is out of range, or FFmpeg cannot start.
pub fn build(config: &AudioResample) -> Result<Arc<dyn Step>, BuildError> {
    init().map_err(|e| BuildError::new("op", format!("FFmpeg cannot start: {e}")))?;
    if config.sample_rate == 0 {
        return Err(BuildError::new("sampleRate", "must be positive"));
    }
    let channels = config
        .channels
        .map(|c| u16::try_from(c).ok().filter(|c| (1..=8).contains(c)))
        .map(|c| c.ok_or_else(|| BuildError::new("channels", "must be between 1 and 8")))
        .transpose()?;
    Ok(Arc::new(ComputeStep(ResampleAudio {
        input: config.input.clone(),
        output: config.output.clone(),
        sample_rate: config.sample_rate,
        channels,
    })))
}

impl ResampleAudio {
    /// Resamples one row; the message says what is wrong with it.
    pub fn resample(&self, audio: AudioView<'_>) -> Result<Audio, String> {
        audio.validate()?;
        let in_channels = u16::try_from(audio.channels).map_err(|_| format!("{} channels", audio.channels))?;
        let channels = self.channels.unwrap_or(in_channels);
        let unchanged = channels == in_channels && self.sample_rate == audio.sample_rate;
        let samples = if unchanged {
            audio.samples.to_vec()
        } else {
            convert_samples(audio.samples, in_channels, audio.sample_rate, channels, self.sample_rate)
                .map_err(|e| e.to_string())?
        };
        Ok(Audio { samples, sample_rate: self.sample_rate, channels: u32::from(channels) })
    }
}

impl Kernel for ResampleAudio {
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let column = AudioColumn::from_batch(input, &self.input)?;
        let results: Vec<Option<Result<Audio, String>>> =
            (0..column.len()).into_par_iter().map(|i| column.get(i).map(|a| self.resample(a))).collect();
        let mut failures = Vec::new();
        let values = results
            .into_iter()
            .enumerate()
            .map(|(row, r)| {
                r?.map_err(|message| failures.push(RowFailure::new(row, format!("row {row}: {message}")))).ok()
            })
            .collect();
        StepOutput::with_column(input, &self.output, audio_array(values)?, failures)
    }
}

#[cfg(test)]
mod tests {
    use weir_testkit::media::{AudioFormat, ToneSpec, tone_amplitude, write_tone};

    use super::*;
    use crate::audio::decode::{DecodeOptions, decode_audio};
    use crate::testing::rms;

    fn resampler(sample_rate: u32, channels: Option<u16>) -> ResampleAudio {
        ResampleAudio { input: "audio".into(), output: "audio16k".into(), sample_rate, channels }
    }

    fn view(audio: &Audio) -> AudioView<'_> {
        AudioView { samples: &audio.samples, sample_rate: audio.sample_rate, channels: audio.channels }
    }

    #[test]
    fn a_1khz_sine_from_44100_to_16000_keeps_its_length_and_level() {
        let dir = tempfile::tempdir().expect("tmp");
        let spec =
            ToneSpec { seconds: 4.0, frequency: 1000, sample_rate: 44100, channels: 1, format: AudioFormat::Wav };
        let decoded =
            decode_audio(&write_tone(&dir.path().join("a.wav"), spec), DecodeOptions::default()).expect("wav");
        assert_eq!(decoded.samples.len(), 4 * 44100);
        let out = resampler(16000, None).resample(view(&decoded)).expect("resample");
        assert_eq!((out.sample_rate, out.channels), (16000, 1));
        assert!((out.samples.len() as f64 / 64000.0 - 1.0).abs() < 0.01, "{} samples", out.samples.len());
        let level = rms(&out.samples) / (tone_amplitude(1) * std::f64::consts::FRAC_1_SQRT_2);
        assert!((level - 1.0).abs() < 0.01, "RMS is 0.707 x amplitude: {level}");
    }

    #[test]
    fn stereo_mixes_to_the_average_and_mono_spreads_to_both_channels() {
        let stereo = Audio { samples: [0.5f32, 0.1].repeat(8000), sample_rate: 8000, channels: 2 };
        let mono = resampler(8000, Some(1)).resample(view(&stereo)).expect("mix down");
        assert_eq!(mono.channels, 1);
        let middle = &mono.samples[1000..7000];
        assert!(middle.iter().all(|s| (s - 0.3).abs() < 1e-3), "{:?}", &middle[..4]);
        let unchanged = resampler(8000, None).resample(view(&stereo)).expect("same shape");
        assert_eq!(unchanged, stereo);
    }

    #[test]
    fn rows_that_cannot_be_audio_fail_alone() {
        let step = resampler(16000, None);
        let bad = Audio { samples: vec![0.0; 3], sample_rate: 8000, channels: 2 };
        let good = Audio { samples: vec![0.0; 800], sample_rate: 8000, channels: 1 };
        let array = crate::audio::audio_array(vec![Some(bad), None, Some(good)]).expect("array");
        let input = RecordBatch::try_from_iter([("audio", array)]).expect("batch");
        let out = step.apply(&input).expect("apply");
        assert_eq!(
            out.failures,
            [RowFailure::new(0, "row 0: 3 samples is not a whole number of frames of 2 channels")]
        );
        let column = AudioColumn::from_batch(&out.batch, "audio16k").expect("column");
        assert_eq!(column.len(), 2);
        assert!(column.get(0).is_none());
        assert!((column.get(1).expect("resampled").samples.len() as i64 - 1600).abs() <= 16);
    }
}
