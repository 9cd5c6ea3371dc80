//! `audio.transcribe`: a 16 kHz mono audio column to text with Whisper, plus timed segments in
//! `<output>_segments` when asked.

use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, Float32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Fields};
use weir_core::batch::{drop_rows, with_column};
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{BuildError, RowFailure, Step, StepError, StepOutput};
use weir_crds::AudioTranscribe;
use weir_media::audio::{AudioColumn, AudioView};

use super::struct_list_column;
use crate::speech::mel::SAMPLE_RATE;
use crate::speech::{Options, Transcriber, Transcript};
use crate::{ModelAssets, device};

/// 30 s windows per forward pass when the manifest does not say.
pub const DEFAULT_BATCH_SIZE: usize = 8;

/// The runnable `audio.transcribe` step.
pub struct TranscribeAudio {
    input: String,
    output: String,
    transcriber: Transcriber,
    options: Options,
    batch_size: usize,
}

/// Loads the Whisper model and tokenizer `config` names from `assets`.
///
/// # Errors
/// [`BuildError`] naming `model.*` or `language`: weights that are not Whisper's, a missing
/// tokenizer, a language the model does not know, or an unavailable device.
pub fn build(config: &AudioTranscribe, assets: &ModelAssets) -> Result<Arc<dyn Step>, BuildError> {
    Ok(Arc::new(ComputeStep(kernel(config, assets)?)))
}

/// The `audio.transcribe` kernel, for callers that run it directly.
///
/// # Errors
/// As [`build`].
pub fn kernel(config: &AudioTranscribe, assets: &ModelAssets) -> Result<TranscribeAudio, BuildError> {
    let options = Options { language: config.language.clone(), timestamps: config.timestamps.unwrap_or(false) };
    let transcriber = Transcriber::load(&config.model, assets, &options)?;
    Ok(TranscribeAudio {
        input: config.input.clone(),
        output: config.output.clone(),
        transcriber,
        options,
        batch_size: config.batch_size.map_or(DEFAULT_BATCH_SIZE, |b| b as usize),
    })
}

/// Whisper hears 16 kHz mono only; anything else is a row error that says how to fix it.
fn whisper_input(audio: AudioView<'_>) -> Result<&[f32], String> {
    audio.validate()?;
    if audio.sample_rate != SAMPLE_RATE || audio.channels != 1 {
        return Err(format!(
            "Whisper needs 16 kHz mono audio, this is {} Hz with {} channel(s): add `audio.resample` \
             with sampleRate: 16000 and channels: 1 before audio.transcribe",
            audio.sample_rate, audio.channels
        ));
    }
    Ok(audio.samples)
}

impl Kernel for TranscribeAudio {
    fn concurrency(&self) -> Option<usize> {
        device::batches_in_flight(self.transcriber.device())
    }

    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let column = AudioColumn::from_batch(input, &self.input)?;
        let mut failures = Vec::new();
        let mut clips: Vec<(usize, &[f32])> = Vec::new();
        // A null row stays null; audio Whisper cannot hear is a row error.
        for (row, audio) in (0..column.len()).filter_map(|row| Some((row, column.get(row)?))) {
            match whisper_input(audio) {
                Ok(samples) => clips.push((row, samples)),
                Err(message) => failures.push(RowFailure::new(row, message)),
            }
        }
        let samples: Vec<&[f32]> = clips.iter().map(|(_, s)| *s).collect();
        let transcripts = self
            .transcriber
            .transcribe(&samples, &self.options, self.batch_size)
            .map_err(|e| StepError::Other(format!("audio.transcribe: {e}")))?;
        let mut rows: Vec<Option<Transcript>> = vec![None; input.num_rows()];
        for ((row, _), transcript) in clips.iter().zip(transcripts) {
            rows[*row] = Some(transcript);
        }
        let texts: StringArray = rows.iter().map(|t| t.as_ref().map(|t| t.text.as_str())).collect();
        let mut batch = with_column(input, &self.output, Arc::new(texts))?;
        if self.options.timestamps {
            batch = with_column(&batch, &format!("{}_segments", self.output), segments_column(&rows))?;
        }
        let failed: Vec<usize> = failures.iter().map(|f| f.row).collect();
        Ok(StepOutput::new(drop_rows(&batch, &failed)?, failures))
    }
}

fn segment_fields() -> Fields {
    Fields::from(vec![
        Field::new("start", DataType::Float32, false),
        Field::new("end", DataType::Float32, false),
        Field::new("text", DataType::Utf8, false),
    ])
}

/// `list<struct{start, end, text}>`, null for rows without a transcript.
fn segments_column(rows: &[Option<Transcript>]) -> ArrayRef {
    let segments: Vec<_> = rows.iter().flatten().flat_map(|t| &t.segments).collect();
    let mut texts = StringBuilder::new();
    segments.iter().for_each(|s| texts.append_value(&s.text));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Float32Array::from_iter_values(segments.iter().map(|s| s.start))),
        Arc::new(Float32Array::from_iter_values(segments.iter().map(|s| s.end))),
        Arc::new(texts.finish()),
    ];
    let lengths: Vec<Option<usize>> = rows.iter().map(|r| r.as_ref().map(|t| t.segments.len())).collect();
    struct_list_column(segment_fields(), columns, &lengths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_16khz_mono_audio_is_accepted_with_the_fix_named() {
        let samples = [0.0f32; 4];
        let mono = AudioView { samples: &samples, sample_rate: 16_000, channels: 1 };
        assert_eq!(whisper_input(mono).map(<[f32]>::len), Ok(4));
        let stereo = AudioView { samples: &samples, sample_rate: 44_100, channels: 2 };
        let error = whisper_input(stereo).expect_err("stereo");
        assert!(error.contains("44100 Hz with 2 channel(s)") && error.contains("audio.resample"), "{error}");
        let ragged = AudioView { samples: &samples[..3], sample_rate: 16_000, channels: 2 };
        assert!(whisper_input(ragged).expect_err("ragged").contains("whole number of frames"));
    }
}
