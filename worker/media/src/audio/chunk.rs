//! `audio.chunk`: decoded audio cut into fixed windows, one row each (the window's audio in
//! `output`, `<output>_index` and `<output>_offset` in seconds); other columns repeat. Windows of
//! `windowSeconds` start every `windowSeconds - overlapSeconds`; the last, partial window is kept.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, UInt32Array};
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{RowFailure, Step, StepError, StepOutput};
use weir_crds::AudioChunk;
use weir_ops::BuildError;

use super::{Audio, AudioColumn, AudioView, audio_array};
use weir_core::repeat::{RowBound, repeat_rows};

/// Default window: 30 s, what Whisper takes.
pub const DEFAULT_WINDOW_SECONDS: f64 = 30.0;

/// The runnable `audio.chunk` step.
#[derive(Debug, Clone)]
pub struct ChunkAudio {
    pub input: String,
    pub output: String,
    pub window_seconds: f64,
    pub overlap_seconds: f64,
    pub bound: RowBound,
}

/// Builds `audio.chunk`.
///
/// # Errors
/// When the window is not positive or the overlap not smaller than it.
pub fn build(config: &AudioChunk) -> Result<Arc<dyn Step>, BuildError> {
    let window_seconds = config.window_seconds.unwrap_or(DEFAULT_WINDOW_SECONDS);
    let overlap_seconds = config.overlap_seconds.unwrap_or(0.0);
    if !window_seconds.is_finite() || window_seconds <= 0.0 {
        return Err(BuildError::new("windowSeconds", format!("must be positive, found {window_seconds}")));
    }
    if !(0.0..window_seconds).contains(&overlap_seconds) {
        return Err(BuildError::new(
            "overlapSeconds",
            format!("must be at least 0 and smaller than windowSeconds ({window_seconds}), found {overlap_seconds}"),
        ));
    }
    Ok(Arc::new(ComputeStep(ChunkAudio {
        input: config.input.clone(),
        output: config.output.clone(),
        window_seconds,
        overlap_seconds,
        bound: RowBound::new(config.max_rows_per_input, config.max_bytes_per_input),
    })))
}

/// One window: where it starts, in frames (samples per channel), and how many frames it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: usize,
    pub len: usize,
}

/// The windows over `frames` frames: `window` long, starting every `hop`, the last one partial.
pub fn windows(frames: usize, window: usize, hop: usize) -> Vec<Window> {
    let (window, hop) = (window.max(1), hop.max(1));
    let mut out = Vec::new();
    let mut start = 0;
    while start < frames {
        let len = window.min(frames - start);
        out.push(Window { start, len });
        if start + len >= frames {
            break;
        }
        start += hop;
    }
    out
}

impl ChunkAudio {
    /// The windows of one row, as audio and offset in seconds.
    fn chunk(&self, audio: AudioView<'_>) -> Result<Vec<(Audio, f64)>, String> {
        audio.validate()?;
        let rate = f64::from(audio.sample_rate);
        let channels = audio.channels as usize;
        let window = (self.window_seconds * rate).round() as usize;
        let hop = ((self.window_seconds - self.overlap_seconds) * rate).round() as usize;
        let frames = audio.samples.len() / channels;
        Ok(windows(frames, window, hop)
            .into_iter()
            .map(|w| {
                let samples = audio.samples[w.start * channels..(w.start + w.len) * channels].to_vec();
                let chunk = Audio { samples, sample_rate: audio.sample_rate, channels: audio.channels };
                (chunk, w.start as f64 / rate)
            })
            .collect())
    }
}

impl Kernel for ChunkAudio {
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let column = AudioColumn::from_batch(input, &self.input)?;
        let (mut parents, mut index, mut offset, mut chunks) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut failures = Vec::new();
        for row in 0..column.len() {
            let Some(audio) = column.get(row) else { continue };
            match self.chunk(audio) {
                Ok(windows) => {
                    for (i, (chunk, start)) in windows.into_iter().enumerate() {
                        parents.push(row as u32);
                        index.push(i as u32);
                        offset.push(start);
                        chunks.push(Some(chunk));
                    }
                }
                Err(message) => failures.push(RowFailure::new(row, format!("row {row}: {message}"))),
            }
        }
        let added = vec![
            (self.output.clone(), audio_array(chunks)?),
            (format!("{}_index", self.output), Arc::new(UInt32Array::from(index)) as ArrayRef),
            (format!("{}_offset", self.output), Arc::new(Float64Array::from(offset)) as ArrayRef),
        ];
        Ok(repeat_rows(input, &parents, added, &self.bound)?.into_output(failures))
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, UInt32Type};
    use arrow_array::{Array, StringArray};

    use super::*;

    #[test]
    fn windows_cover_the_audio_and_keep_the_last_partial_one() {
        let w = |start, len| Window { start, len };
        assert_eq!(windows(100, 30, 30), [w(0, 30), w(30, 30), w(60, 30), w(90, 10)]);
        assert_eq!(windows(90, 30, 30), [w(0, 30), w(30, 30), w(60, 30)], "no empty window after an exact fit");
        assert_eq!(windows(70, 30, 20), [w(0, 30), w(20, 30), w(40, 30)], "overlap: the last window reaches the end");
        assert_eq!(windows(10, 30, 30), [w(0, 10)]);
        assert!(windows(0, 30, 30).is_empty());
    }

    fn step(window_seconds: f64, overlap_seconds: f64) -> ChunkAudio {
        ChunkAudio {
            input: "audio".into(),
            output: "chunk".into(),
            window_seconds,
            overlap_seconds,
            bound: RowBound::default(),
        }
    }

    #[test]
    fn each_window_becomes_a_row_with_its_index_and_offset() {
        // Row 0: 2.75 s of stereo at 4 Hz (11 frames); row 1: null; row 2: 1 s mono.
        let stereo = Audio { samples: (0..22).map(|i| i as f32).collect(), sample_rate: 4, channels: 2 };
        let mono = Audio { samples: vec![0.5; 4], sample_rate: 4, channels: 1 };
        let audio = audio_array(vec![Some(stereo), None, Some(mono)]).expect("audio");
        let doc: ArrayRef = Arc::new(StringArray::from(vec!["a", "b", "c"]));
        let input = RecordBatch::try_from_iter([("doc", doc), ("audio", audio)]).expect("batch");
        let out = step(1.0, 0.5).apply(&input).expect("chunk").batch;
        let docs: Vec<&str> = out.column_by_name("doc").expect("doc").as_string::<i32>().iter().flatten().collect();
        assert_eq!(docs, ["a", "a", "a", "a", "a", "c"]);
        let index = out.column_by_name("chunk_index").expect("index").as_primitive::<UInt32Type>();
        assert_eq!(index.values().to_vec(), [0, 1, 2, 3, 4, 0]);
        let offset = out.column_by_name("chunk_offset").expect("offset").as_primitive::<Float64Type>();
        assert_eq!(offset.values().to_vec(), [0.0, 0.5, 1.0, 1.5, 2.0, 0.0]);
        let chunks = AudioColumn::from_batch(&out, "chunk").expect("chunks");
        let third = chunks.get(2).expect("third window");
        assert_eq!(third.samples, (8..16).map(|i| i as f32).collect::<Vec<_>>(), "frames 4..8, interleaved");
        assert_eq!(chunks.get(4).expect("last").samples, [16.0, 17.0, 18.0, 19.0, 20.0, 21.0], "partial: 3 frames");
        assert_eq!(out.num_rows(), chunks.len());
        assert!(out.column_by_name("audio").is_some_and(|c| c.len() == 6), "the input column repeats");
    }

    #[test]
    fn a_ragged_row_fails_alone() {
        let bad = Audio { samples: vec![0.0; 3], sample_rate: 4, channels: 2 };
        let good = Audio { samples: vec![0.0; 8], sample_rate: 4, channels: 1 };
        let input = RecordBatch::try_from_iter([("audio", audio_array(vec![Some(bad), Some(good)]).expect("a"))])
            .expect("batch");
        let out = step(1.0, 0.0).apply(&input).expect("chunk");
        assert_eq!(
            out.failures,
            [RowFailure::new(0, "row 0: 3 samples is not a whole number of frames of 2 channels")]
        );
        assert_eq!(out.batch.num_rows(), 2);
    }

    #[test]
    fn overlap_must_be_smaller_than_the_window() {
        let config = |window, overlap| AudioChunk {
            input: "a".into(),
            output: "c".into(),
            window_seconds: Some(window),
            overlap_seconds: Some(overlap),
            max_rows_per_input: None,
            max_bytes_per_input: None,
            pool: None,
            concurrency: None,
        };
        assert!(build(&config(30.0, 5.0)).is_ok());
        let err = build(&config(30.0, 30.0)).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("overlapSeconds: must be at least 0 and smaller than windowSeconds (30), found 30")
        );
    }
}
