//! PCM conversion with swresample: any sample format, layout and rate in; interleaved f32 at a
//! target rate and channel count out.
//!
//! Channel mixing uses swresample's standard matrix normalised so that no output exceeds full
//! scale (`rematrix_maxval` 1): stereo to mono is the average of the two channels.

use ffmpeg::format::Sample;
use ffmpeg::format::sample::Type as SampleType;
use ffmpeg::software::resampling;
use ffmpeg::util::frame::Audio as AudioFrame;
use ffmpeg::{ChannelLayout, Dictionary};
use ffmpeg_next as ffmpeg;

use crate::MediaError;

/// Output frames allowed beyond the exact rate ratio per call, so that swresample's buffer drains.
const SLACK: usize = 256;
/// Frames per chunk when converting samples already in memory.
const CHUNK: usize = 8192;

const F32: Sample = Sample::F32(SampleType::Packed);

/// The shape of PCM: sample format, channel layout and rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcmFormat {
    pub sample: Sample,
    pub layout: ChannelLayout,
    pub rate: u32,
}

impl PcmFormat {
    /// The shape of a decoded frame; an unset layout becomes the standard one for its channels.
    ///
    /// # Errors
    /// When the frame has no channels, no rate, or a channel count with no standard layout.
    pub fn of(frame: &AudioFrame) -> Result<Self, MediaError> {
        let channels = frame.channels();
        if channels == 0 || frame.rate() == 0 {
            return Err(MediaError::BadAudio(format!("decoded {channels} channels at {} Hz", frame.rate())));
        }
        let own = frame.channel_layout();
        let layout = if !own.is_empty() && own.channels() == i32::from(channels) { own } else { layout(channels)? };
        Ok(Self { sample: frame.format(), layout, rate: frame.rate() })
    }
}

/// A swresample context from one input shape to interleaved f32.
pub struct Converter {
    swr: resampling::Context,
    input: PcmFormat,
    out_channels: u16,
    out_rate: u32,
}

/// The channel layout FFmpeg assumes for `channels` channels.
fn layout(channels: u16) -> Result<ChannelLayout, MediaError> {
    let layout = ChannelLayout::default(i32::from(channels));
    if layout.is_empty() || layout.channels() != i32::from(channels) {
        return Err(MediaError::BadAudio(format!("no standard channel layout for {channels} channels")));
    }
    Ok(layout)
}

impl Converter {
    /// A converter from `input` to `out_channels` channels at `out_rate`.
    ///
    /// # Errors
    /// When swresample refuses the shapes (e.g. no layout for the channel count).
    pub fn new(input: PcmFormat, out_channels: u16, out_rate: u32) -> Result<Self, MediaError> {
        let mut options = Dictionary::new();
        options.set("rematrix_maxval", "1.0");
        let swr = resampling::Context::get_with(
            input.sample,
            input.layout,
            input.rate,
            F32,
            layout(out_channels)?,
            out_rate,
            options,
        )
        .map_err(MediaError::ffmpeg("setting up the resampler"))?;
        Ok(Self { swr, input, out_channels, out_rate })
    }

    pub fn input(&self) -> PcmFormat {
        self.input
    }

    /// Converts `frame` (whose shape must be [`Converter::input`]), appending to `out`.
    ///
    /// # Errors
    /// When swresample fails.
    pub fn push(&mut self, frame: &mut AudioFrame, out: &mut Vec<f32>) -> Result<(), MediaError> {
        // Decoders may leave the layout unset; swresample compares it with the configured one.
        frame.set_channel_layout(self.input.layout);
        let capacity = frame.samples() * self.out_rate as usize / self.input.rate.max(1) as usize + SLACK;
        self.convert(Some(frame), capacity, out)
    }

    /// Drains what swresample still buffers (the filter's tail), appending to `out`.
    ///
    /// # Errors
    /// When swresample fails.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<(), MediaError> {
        loop {
            let before = out.len();
            self.convert(None, CHUNK, out)?;
            if out.len() == before {
                return Ok(());
            }
        }
    }

    fn convert(&mut self, input: Option<&AudioFrame>, capacity: usize, out: &mut Vec<f32>) -> Result<(), MediaError> {
        let mut converted = AudioFrame::new(F32, capacity, layout(self.out_channels)?);
        if converted.planes() == 0 {
            let source = ffmpeg::Error::Other { errno: ffmpeg::util::error::ENOMEM };
            return Err(MediaError::Ffmpeg { context: "allocating audio", source });
        }
        match input {
            Some(frame) => self.swr.run(frame, &mut converted),
            None => self.swr.flush(&mut converted),
        }
        .map_err(MediaError::ffmpeg("resampling"))?;
        let values = converted.samples() * usize::from(self.out_channels);
        let bytes = &converted.data(0)[..values * 4];
        out.extend(bytes.chunks_exact(4).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])));
        Ok(())
    }
}

/// Converts interleaved f32 `samples` of `input` shape to `out_channels` at `out_rate`.
///
/// # Errors
/// When swresample refuses the shapes.
pub fn convert_samples(
    samples: &[f32],
    channels: u16,
    rate: u32,
    out_channels: u16,
    out_rate: u32,
) -> Result<Vec<f32>, MediaError> {
    if channels == 0 || rate == 0 {
        return Err(MediaError::BadAudio(format!("{channels} channels at {rate} Hz")));
    }
    let input = PcmFormat { sample: F32, layout: layout(channels)?, rate };
    let mut converter = Converter::new(input, out_channels, out_rate)?;
    let ratio = f64::from(out_rate) / f64::from(rate.max(1)) * f64::from(out_channels) / f64::from(channels.max(1));
    let mut out = Vec::with_capacity((samples.len() as f64 * ratio) as usize + SLACK);
    for chunk in samples.chunks(CHUNK * usize::from(channels)) {
        let mut frame = AudioFrame::new(F32, chunk.len() / usize::from(channels), layout(channels)?);
        frame.set_rate(rate);
        if frame.planes() == 0 {
            let source = ffmpeg::Error::Other { errno: ffmpeg::util::error::ENOMEM };
            return Err(MediaError::Ffmpeg { context: "allocating audio", source });
        }
        let data = frame.data_mut(0);
        for (dst, s) in data.chunks_exact_mut(4).zip(chunk) {
            dst.copy_from_slice(&s.to_ne_bytes());
        }
        converter.push(&mut frame, &mut out)?;
    }
    converter.finish(&mut out)?;
    Ok(out)
}
