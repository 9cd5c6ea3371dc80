//! Audio in Arrow: a struct column `{samples: list<f32>, sampleRate: u32, channels: u32}` of
//! interleaved PCM in [-1, 1], and one module per audio step.

pub mod chunk;
pub mod convert;
pub mod decode;
pub mod metadata;
pub mod resample;

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{Array, ArrayRef, Float32Array, ListArray, RecordBatch, StructArray, UInt32Array};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Fields};
use weir_core::StepError;
use weir_core::batch::typed_column;

/// Decoded audio owned in memory.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// Interleaved: frame `i` is `samples[i * channels..(i + 1) * channels]`.
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    pub channels: u32,
}

impl Audio {
    /// Length in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.channels.max(1)) / f64::from(self.sample_rate.max(1))
    }
}

/// A borrowed view of one audio row.
#[derive(Debug, Clone, Copy)]
pub struct AudioView<'a> {
    pub samples: &'a [f32],
    pub sample_rate: u32,
    pub channels: u32,
}

impl AudioView<'_> {
    /// `Err` with a message when the row cannot be audio (no channels, no rate, ragged samples).
    pub fn validate(&self) -> Result<(), String> {
        if self.channels == 0 || self.sample_rate == 0 {
            return Err(format!("sampleRate {} and channels {} must be positive", self.sample_rate, self.channels));
        }
        if !self.samples.len().is_multiple_of(self.channels as usize) {
            return Err(format!(
                "{} samples is not a whole number of frames of {} channels",
                self.samples.len(),
                self.channels
            ));
        }
        Ok(())
    }
}

fn sample_field() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Float32, false))
}

/// The struct fields of an audio column.
pub fn audio_fields() -> Fields {
    Fields::from(vec![
        Field::new("samples", DataType::List(sample_field()), false),
        Field::new("sampleRate", DataType::UInt32, false),
        Field::new("channels", DataType::UInt32, false),
    ])
}

/// An audio column from one optional audio per row (`None` for null or failed rows), consuming
/// the samples as it goes.
///
/// # Errors
/// When the rows hold more than `i32::MAX` samples in all (split the input into smaller units).
pub fn audio_array(values: Vec<Option<Audio>>) -> Result<ArrayRef, StepError> {
    let total: usize = values.iter().flatten().map(|a| a.samples.len()).sum();
    if i32::try_from(total).is_err() {
        return Err(StepError::Other(format!(
            "{total} audio samples in one morsel, over Arrow's list limit of {}; use smaller work units",
            i32::MAX
        )));
    }
    let nulls = NullBuffer::from(values.iter().map(Option::is_some).collect::<Vec<_>>());
    let (mut rates, mut channels) = (Vec::with_capacity(values.len()), Vec::with_capacity(values.len()));
    let mut offsets = Vec::with_capacity(values.len() + 1);
    offsets.push(0i32);
    let mut samples = Vec::with_capacity(total);
    for value in values {
        let audio = value.unwrap_or(Audio { samples: Vec::new(), sample_rate: 0, channels: 0 });
        samples.extend_from_slice(&audio.samples);
        offsets.push(samples.len() as i32);
        rates.push(audio.sample_rate);
        channels.push(audio.channels);
    }
    let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
    let list = ListArray::new(sample_field(), offsets, Arc::new(Float32Array::from(samples)), None);
    let columns: Vec<ArrayRef> =
        vec![Arc::new(list), Arc::new(UInt32Array::from(rates)), Arc::new(UInt32Array::from(channels))];
    Ok(Arc::new(StructArray::new(audio_fields(), columns, Some(nulls))))
}

/// Read access to an audio column.
pub struct AudioColumn<'a> {
    array: &'a StructArray,
    samples: &'a ListArray,
    values: &'a Float32Array,
    rates: &'a UInt32Array,
    channels: &'a UInt32Array,
}

impl<'a> AudioColumn<'a> {
    /// The audio column `name` of `batch`.
    ///
    /// # Errors
    /// [`StepError::Column`] when the column is missing or not an audio column.
    pub fn from_batch(batch: &'a RecordBatch, name: &str) -> Result<Self, StepError> {
        let hint = "an audio column {samples, sampleRate, channels} (use audio.decode first)";
        let array: &StructArray = typed_column(batch, name, hint)?;
        let not_audio = || StepError::column(name, format!("not {hint}"));
        let field = |f: &str| array.column_by_name(f).ok_or_else(not_audio);
        let samples = field("samples")?.as_list_opt::<i32>().ok_or_else(not_audio)?;
        Ok(Self {
            array,
            samples,
            values: samples.values().as_primitive_opt().ok_or_else(not_audio)?,
            rates: field("sampleRate")?.as_primitive_opt::<UInt32Type>().ok_or_else(not_audio)?,
            channels: field("channels")?.as_primitive_opt::<UInt32Type>().ok_or_else(not_audio)?,
        })
    }

    pub fn len(&self) -> usize {
        self.array.len()
    }

    pub fn is_empty(&self) -> bool {
        self.array.is_empty()
    }

    /// Row `i`, or `None` when null.
    pub fn get(&self, i: usize) -> Option<AudioView<'a>> {
        if self.array.is_null(i) || self.samples.is_null(i) {
            return None;
        }
        let offsets = self.samples.value_offsets();
        let (start, end) = (offsets[i] as usize, offsets[i + 1] as usize);
        Some(AudioView {
            samples: &self.values.values()[start..end],
            sample_rate: self.rates.value(i),
            channels: self.channels.value(i),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_audio_type_is_the_audio_column_steps_make() {
        assert!(weir_ops::column_types::declares(weir_crds::steps::AUDIO_TYPE, &audio_fields()));
    }

    #[test]
    fn audio_rows_round_trip_through_the_column() {
        let a = Audio { samples: vec![0.5, -0.5, 0.25, -0.25], sample_rate: 8000, channels: 2 };
        let b = Audio { samples: vec![0.1, 0.2, 0.3], sample_rate: 16000, channels: 1 };
        let array = audio_array(vec![Some(a.clone()), None, Some(b.clone())]).expect("array");
        let batch = RecordBatch::try_from_iter([("audio", array)]).expect("batch");
        let column = AudioColumn::from_batch(&batch, "audio").expect("column");
        let got = |i: usize| column.get(i).map(|v| (v.samples.to_vec(), v.sample_rate, v.channels));
        assert_eq!(got(0), Some((a.samples, 8000, 2)));
        assert_eq!(got(1), None);
        assert_eq!(got(2), Some((b.samples, 16000, 1)));
    }

    #[test]
    fn a_column_that_is_not_audio_is_refused() {
        let batch =
            RecordBatch::try_from_iter([("audio", Arc::new(UInt32Array::from(vec![1])) as ArrayRef)]).expect("batch");
        let err = AudioColumn::from_batch(&batch, "audio").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("use audio.decode first")));
    }
}
