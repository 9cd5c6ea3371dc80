//! `video.frames`: decode a video and keep sampled frames, one row each: an image in `output`
//! (weir-ops' image layout), `<output>_index` (the frame's number in the video) and
//! `<output>_timestamp` (seconds from the stream's start, pts × time base). Other columns repeat.
//!
//! Decoding streams packet by packet: the decoder holds its few reference frames, and only the
//! sampled frames, already converted (and resized, in the same swscale pass), are kept. `start`
//! seeks (to the key frame before it) instead of decoding the beginning; `end` and `maxFrames` stop
//! decoding early; `keyframesOnly` never sends other packets to the decoder, which also discards
//! non-key frames.
//!
//! Between sampling instants (and before `start` when the file cannot seek) the decoder is told to
//! discard frames that no other frame refers to (`AVDISCARD_NONREF`, as `ffmpeg -skip_frame noref`):
//! such a frame would be skipped anyway, and no kept frame's pixels depend on it. In H.264 as
//! encoders usually write it, about four frames in ten are such B-frames, and 1 fps sampling
//! decodes that much less.
//!
//! The index counts frames (discarded ones included) when the video is read from its first frame;
//! after a seek or with `keyframesOnly` it is `round(timestamp × fps)`, exact for constant frame
//! rates.
//!
//! # Memory
//! The kept frames leave in parts of about [`PART_BYTES`] ([`weir_core::StepOutput::more`]): the
//! decode pauses while downstream has not taken the last part, so however long the video, the
//! step holds the decoder's frames and a part or two. A video that fails half-way (a decoder error
//! deep into the file) keeps the frames already handed on, and its row is recorded as failed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, Float64Array, RecordBatch, StructArray, UInt8Array, UInt32Array, UInt64Array,
};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use ffmpeg::Discard;
use ffmpeg::Packet;
use ffmpeg::codec::decoder::Opened;
use ffmpeg::format::context::Input;
use ffmpeg::media::Type;
use ffmpeg::util::frame::Video as VideoFrame;
use ffmpeg_next as ffmpeg;
use weir_core::{RowFailure, Step, StepError, StepOutput};
use weir_crds::{ImageMode, VideoFrames};
use weir_io::StoreRegistry;
use weir_ops::BuildError;
use weir_ops::image::{ImageView, image_fields};

use super::sampler::{Decision, Sampler};
use super::scale::FrameConverter;
use crate::MediaError;
use crate::demux::{DecodeHandler, Flow, StreamDecode, decode};
use crate::open::{StreamInfo, TIME_BASE, find_stream, init, open, video_decoder};
use crate::step::{MediaKernel, MediaStep};
use weir_core::repeat::{RowBound, repeat_rows};

pub const DEFAULT_MAX_FRAMES: u32 = 10_000;
/// Default `maxPixels`: 100 megapixels, as `image.decode`.
pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;

/// What `video.frames` keeps and how it converts it.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameOptions {
    pub start: f64,
    pub end: Option<f64>,
    pub fps: Option<f64>,
    pub max_frames: u32,
    pub keyframes_only: bool,
    /// Output size; `None` keeps the video's.
    pub size: Option<(u32, u32)>,
    pub mode: ImageMode,
    pub max_pixels: u64,
    /// FFmpeg frame threads of the decoder; 1 decodes on the calling thread alone.
    pub decoder_threads: usize,
    /// Let the decoder discard non-reference frames that sampling would skip (the same frames
    /// come out either way; `false` decodes every frame, as a reference to compare with).
    pub discard_unsampled: bool,
}

impl Default for FrameOptions {
    fn default() -> Self {
        Self {
            start: 0.0,
            end: None,
            fps: None,
            max_frames: DEFAULT_MAX_FRAMES,
            keyframes_only: false,
            size: None,
            mode: ImageMode::Rgb,
            max_pixels: DEFAULT_MAX_PIXELS,
            decoder_threads: 1,
            discard_unsampled: true,
        }
    }
}

/// One kept frame: its image's shape and where it is in the video.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameInfo {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    /// The frame's number in the video.
    pub index: u64,
    /// Seconds from the stream's start.
    pub timestamp: f64,
}

impl FrameInfo {
    fn bytes(&self) -> usize {
        self.width as usize * self.height as usize * usize::from(self.channels)
    }
}

/// The frames kept from one video: their pixels back to back in one buffer (grown in place, then
/// handed to Arrow without a copy, so each pixel is held once), and each frame's shape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampledFrames {
    pub pixels: Vec<u8>,
    pub frames: Vec<FrameInfo>,
}

impl SampledFrames {
    /// Frame `i` as an image view.
    pub fn image(&self, i: usize) -> Option<ImageView<'_>> {
        let info = self.frames.get(i)?;
        let start: usize = self.frames[..i].iter().map(FrameInfo::bytes).sum();
        let data = self.pixels.get(start..start + info.bytes())?;
        Some(ImageView { width: info.width, height: info.height, channels: info.channels, data })
    }
}

/// The runnable `video.frames` kernel.
#[derive(Debug, Clone)]
pub struct SampleFrames {
    pub input: String,
    pub output: String,
    pub options: FrameOptions,
    /// Checked per part of frames: `maxFrames` bounds the rows.
    pub bound: RowBound,
}

/// Builds `video.frames`.
///
/// # Errors
/// When only one of `width`/`height` is given, `end` is not after `start`, or FFmpeg cannot start.
pub fn build(config: &VideoFrames, stores: Arc<StoreRegistry>) -> Result<Arc<dyn Step>, BuildError> {
    init().map_err(|e| BuildError::new("op", format!("FFmpeg cannot start: {e}")))?;
    let size = match (config.width, config.height) {
        (Some(w), Some(h)) => Some((w, h)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(BuildError::new("height", "width and height go together: give both, or neither"));
        }
        (None, Some(_)) => return Err(BuildError::new("width", "width and height go together: give both, or neither")),
    };
    let start = config.start.unwrap_or(0.0);
    if let Some(end) = config.end.filter(|end| *end <= start) {
        return Err(BuildError::new("end", format!("must be after start ({start}), found {end}")));
    }
    if let Some(fps) = config.fps.filter(|f| !f.is_finite() || *f <= 0.0) {
        return Err(BuildError::new("fps", format!("must be positive, found {fps}")));
    }
    let options = FrameOptions {
        start,
        end: config.end,
        fps: config.fps,
        max_frames: config.max_frames.unwrap_or(DEFAULT_MAX_FRAMES),
        keyframes_only: config.keyframes_only.unwrap_or(false),
        size,
        mode: config.mode.unwrap_or_default(),
        max_pixels: config.max_pixels.unwrap_or(DEFAULT_MAX_PIXELS),
        // Set per decode, from the compute pool the step runs on (`read_parts`).
        decoder_threads: 1,
        discard_unsampled: true,
    };
    let bound = RowBound::new(None, config.max_bytes_per_input);
    let kernel = SampleFrames { input: config.input.clone(), output: config.output.clone(), options, bound };
    Ok(Arc::new(MediaStep::new(kernel, stores)))
}

impl MediaKernel for SampleFrames {
    type Value = SampledFrames;

    fn input(&self) -> &str {
        &self.input
    }

    fn read(&self, path: &Path) -> Result<Self::Value, MediaError> {
        sample_frames(path, &self.options)
    }

    fn in_parts(&self) -> bool {
        true
    }

    fn read_parts(
        &self,
        path: &Path,
        threads: usize,
        emit: &mut dyn FnMut(SampledFrames) -> bool,
    ) -> Result<(), MediaError> {
        let options = FrameOptions { decoder_threads: threads, ..self.options.clone() };
        sample_frames_in_parts(path, &options, PART_BYTES, emit).map(|_decoded| ())
    }

    fn assemble(
        &self,
        input: &RecordBatch,
        values: Vec<Option<SampledFrames>>,
        failures: Vec<RowFailure>,
    ) -> Result<StepOutput, StepError> {
        let mut parents = Vec::new();
        let mut frames = Vec::new();
        let mut pixels: Option<Vec<u8>> = None;
        for (row, sampled) in values.into_iter().enumerate() {
            let Some(sampled) = sampled else { continue };
            parents.extend(std::iter::repeat_n(row as u32, sampled.frames.len()));
            frames.extend(sampled.frames);
            // The first video's buffer is reused; later ones are appended and freed one by one.
            match &mut pixels {
                None => pixels = Some(sampled.pixels),
                Some(all) => all.extend_from_slice(&sampled.pixels),
            }
        }
        let image = image_column(&frames, pixels.unwrap_or_default())?;
        let added = vec![
            (self.output.clone(), image),
            (
                format!("{}_index", self.output),
                Arc::new(UInt64Array::from_iter_values(frames.iter().map(|f| f.index))) as ArrayRef,
            ),
            (
                format!("{}_timestamp", self.output),
                Arc::new(Float64Array::from_iter_values(frames.iter().map(|f| f.timestamp))) as ArrayRef,
            ),
        ];
        Ok(repeat_rows(input, &parents, added, &self.bound)?.into_output(failures))
    }
}

/// An image column (weir-ops' layout) over `pixels`, taken without a copy.
///
/// # Errors
/// When the morsel's frames exceed Arrow's 2 GiB binary limit.
fn image_column(frames: &[FrameInfo], pixels: Vec<u8>) -> Result<ArrayRef, StepError> {
    let too_big = || {
        StepError::Other(format!(
            "{} bytes of frames in one morsel, over Arrow's 2 GiB binary limit: sample fewer (fps, maxFrames) or smaller (width, height) frames, or use smaller work units",
            pixels.len()
        ))
    };
    let mut ends = Vec::with_capacity(frames.len() + 1);
    ends.push(0i32);
    let mut end = 0usize;
    for frame in frames {
        end += frame.bytes();
        ends.push(i32::try_from(end).map_err(|_| too_big())?);
    }
    let offsets = OffsetBuffer::new(ScalarBuffer::from(ends));
    let data = BinaryArray::try_new(offsets, Buffer::from_vec(pixels), None)?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from_iter_values(frames.iter().map(|f| f.width))),
        Arc::new(UInt32Array::from_iter_values(frames.iter().map(|f| f.height))),
        Arc::new(UInt8Array::from_iter_values(frames.iter().map(|f| f.channels))),
        Arc::new(data),
    ];
    Ok(Arc::new(StructArray::try_new(image_fields(), columns, None)?))
}

/// Decodes the video at `path` and returns the frames `options` keep.
///
/// # Errors
/// Any [`MediaError`] about the file: not a video, no video stream, over `maxPixels`, truncated,
/// undecodable.
pub fn sample_frames(path: &Path, options: &FrameOptions) -> Result<SampledFrames, MediaError> {
    sample_frames_counted(path, options, usize::MAX).map(|(_decoded, all)| all)
}

/// [`sample_frames`] in parts of about `part_bytes` put back together, with the number of frames
/// the decoder produced.
fn sample_frames_counted(
    path: &Path,
    options: &FrameOptions,
    part_bytes: usize,
) -> Result<(u64, SampledFrames), MediaError> {
    let mut all = SampledFrames::default();
    let decoded = sample_frames_in_parts(path, options, part_bytes, &mut |part| {
        all.pixels.extend_from_slice(&part.pixels);
        all.frames.extend(part.frames);
        true
    })?;
    Ok((decoded, all))
}

/// Pixels of kept frames handed on at once by `video.frames`: a part is about this big, so a
/// long video is never held whole.
pub const PART_BYTES: usize = 16 << 20;

/// As [`sample_frames`], handing the kept frames to `emit` in parts of about `part_bytes` as they
/// are decoded; stops when `emit` returns `false`. Returns the number of frames the decoder
/// produced (discarded frames not counted).
///
/// # Errors
/// As [`sample_frames`]; parts already handed on stay handed on.
pub fn sample_frames_in_parts(
    path: &Path,
    options: &FrameOptions,
    part_bytes: usize,
    emit: &mut dyn FnMut(SampledFrames) -> bool,
) -> Result<u64, MediaError> {
    let mut input = open(path)?;
    let info = find_stream(&input, Type::Video)?;
    check_pixels("the video", info.width, info.height, options.max_pixels)?;
    let mut decoder = video_decoder(&input, &info, options.keyframes_only, options.decoder_threads)?;
    let seeked = options.start > 0.0 && seek(&mut input, &info, options.start);
    let mut sampling = Sampling {
        counting: !seeked && !options.keyframes_only,
        sampler: Sampler::new(options.start, options.end, options.fps, options.max_frames),
        converter: FrameConverter::new(options.mode, options.size),
        max_pixels: options.max_pixels,
        fps: info.fps.filter(|f| *f > 0.0),
        info: &info,
        discarding: (options.discard_unsampled && !options.keyframes_only).then(Discarding::default),
        decoded: 0,
        last_t: 0.0,
        kept: SampledFrames::default(),
        part_bytes,
        emit,
    };
    let stream = StreamDecode {
        stream: info.index,
        kind: "video",
        keyframes_only: options.keyframes_only,
        decoder: &mut decoder,
    };
    let decoded = decode(&mut input, stream, &mut VideoFrame::empty(), &mut sampling)?;
    if !sampling.kept.frames.is_empty() {
        (sampling.emit)(std::mem::take(&mut sampling.kept));
    }
    Ok(decoded)
}

/// Refuses frames over `max` pixels (0x0, unknown, passes).
fn check_pixels(what: &'static str, width: u32, height: u32, max: u64) -> Result<(), MediaError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max {
        return Err(MediaError::TooManyPixels { what, width, height, pixels, max });
    }
    Ok(())
}

/// Seeks to the key frame at or before `start` seconds; `false` if the file cannot seek (the
/// sampler then skips the frames before `start` as they decode).
fn seek(input: &mut Input, info: &StreamInfo, start: f64) -> bool {
    let origin = info.start.map_or(0.0, |s| s as f64 * f64::from(info.time_base));
    let target = ((origin + start) * TIME_BASE) as i64;
    input.seek(target, ..target).is_ok()
}

/// The sampling state of one decode.
struct Sampling<'a> {
    info: &'a StreamInfo,
    sampler: Sampler,
    converter: FrameConverter,
    max_pixels: u64,
    fps: Option<f64>,
    /// Whether every frame since the first is decoded or counted as discarded, so that counting
    /// gives the index.
    counting: bool,
    /// Set when the decoder may discard frames sampling would skip.
    discarding: Option<Discarding>,
    decoded: u64,
    last_t: f64,
    /// Frames kept since the last part was handed on.
    kept: SampledFrames,
    part_bytes: usize,
    emit: &'a mut dyn FnMut(SampledFrames) -> bool,
}

/// Which packets went to the decoder with leave to discard their frame, and how many of those
/// frames it did discard.
#[derive(Debug, Default)]
struct Discarding {
    /// Presentation timestamps of packets sent while discarding whose frame has not come out.
    pending: BinaryHeap<Reverse<i64>>,
    /// Frames the decoder discarded before the last frame out.
    discarded: u64,
}

impl Discarding {
    /// Counts the frames discarded before a frame presented at `pts`: frames come out in
    /// presentation order, so a pending timestamp before it is a frame that never will.
    fn frame_out(&mut self, pts: i64) {
        while let Some(Reverse(sent)) = self.pending.peek().copied() {
            if sent > pts {
                break;
            }
            self.pending.pop();
            if sent < pts {
                self.discarded += 1;
            }
        }
    }
}

impl DecodeHandler<VideoFrame> for &mut Sampling<'_> {
    /// Lets the decoder discard the packet's frame when it is not a reference and sampling would
    /// skip it; a packet without a timestamp is always decoded.
    fn before_packet(&mut self, packet: &Packet, decoder: &mut Opened) {
        let Some(discarding) = &mut self.discarding else { return };
        let skipped = packet.pts().filter(|pts| self.sampler.skips(self.info.seconds(*pts)));
        decoder.skip_frame(if skipped.is_some() { Discard::NonReference } else { Discard::Default });
        if let Some(pts) = skipped {
            discarding.pending.push(Reverse(pts));
        }
    }

    fn on_frame(&mut self, frame: &mut VideoFrame) -> Result<Flow, MediaError> {
        Sampling::on_frame(self, frame)
    }
}

impl Sampling<'_> {
    /// Samples a decoded frame.
    fn on_frame(&mut self, frame: &mut VideoFrame) -> Result<Flow, MediaError> {
        let discarded = match (&mut self.discarding, frame.pts()) {
            (Some(discarding), Some(pts)) => {
                discarding.frame_out(pts);
                discarding.discarded
            }
            (Some(discarding), None) => discarding.discarded,
            (None, _) => 0,
        };
        // The frame's number in the video when every frame was decoded or counted.
        let number = self.decoded + discarded;
        let t = match frame.timestamp().or(frame.pts()) {
            Some(ts) => self.info.seconds(ts),
            None => self.fps.map_or(self.last_t, |fps| number as f64 / fps),
        };
        let index = match self.fps {
            Some(fps) if !self.counting => (t * fps).round().max(0.0) as u64,
            _ => number,
        };
        self.decoded += 1;
        self.last_t = t;
        match self.sampler.decide(t) {
            Decision::Skip => Ok(Flow::Continue),
            Decision::Stop => Ok(Flow::Stop),
            Decision::Take { last } => {
                check_pixels("a decoded frame", frame.width(), frame.height(), self.max_pixels)?;
                let (width, height, channels) = self.converter.convert_into(frame, &mut self.kept.pixels)?;
                self.kept.frames.push(FrameInfo { width, height, channels, index, timestamp: t });
                if i32::try_from(self.kept.pixels.len()).is_err() {
                    let frames = self.kept.frames.len();
                    return Err(MediaError::FramesTooLarge { frames, bytes: self.kept.pixels.len() });
                }
                if self.kept.pixels.len() >= self.part_bytes && !(self.emit)(std::mem::take(&mut self.kept)) {
                    return Ok(Flow::Stop);
                }
                Ok(if last { Flow::Stop } else { Flow::Continue })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, UInt64Type};
    use weir_ops::image::ImageColumn;
    use weir_testkit::media::{
        VideoCodec, VideoSpec, write_audio_only, write_empty, write_garbage, write_solid_video,
        write_truncated_faststart_mp4, write_truncated_mp4, write_video,
    };

    use super::*;
    use crate::testing::{bytes_batch, run, uri_batch};

    fn five_seconds(dir: &Path) -> std::path::PathBuf {
        write_video(&dir.join("clip.mp4"), VideoSpec::small(5.0, 25))
    }

    fn sample(path: &Path, options: FrameOptions) -> SampledFrames {
        sample_frames(path, &options).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn times(sampled: &SampledFrames) -> Vec<f64> {
        sampled.frames.iter().map(|f| (f.timestamp * 1000.0).round() / 1000.0).collect()
    }

    fn indices(sampled: &SampledFrames) -> Vec<u64> {
        sampled.frames.iter().map(|f| f.index).collect()
    }

    #[test]
    fn every_frame_of_five_seconds_at_25_fps_is_decoded_in_order() {
        let dir = tempfile::tempdir().expect("tmp");
        let sampled = sample(&five_seconds(dir.path()), FrameOptions::default());
        assert_eq!(sampled.frames.len(), 125);
        assert_eq!(indices(&sampled), (0..125).collect::<Vec<_>>());
        for (i, f) in sampled.frames.iter().enumerate() {
            assert!((f.timestamp - i as f64 / 25.0).abs() < 1e-6, "frame {i} at {}", f.timestamp);
            assert_eq!((f.width, f.height, f.channels), (160, 120, 3));
        }
        assert_eq!(sampled.pixels.len(), 125 * 160 * 120 * 3);
    }

    /// Frame threads hold frames back while they decode ahead; the end of the file flushes them,
    /// so the same frames come out, in order, with the same pixels.
    #[test]
    fn frame_threads_decode_the_same_frames_as_one_thread() {
        let dir = tempfile::tempdir().expect("tmp");
        let video = five_seconds(dir.path());
        let one = sample(&video, FrameOptions::default());
        let three = sample(&video, FrameOptions { decoder_threads: 3, ..Default::default() });
        assert_eq!(indices(&three), indices(&one));
        assert_eq!(times(&three), times(&one));
        assert!(three.pixels == one.pixels, "the pixels differ");
        let sampled = FrameOptions { fps: Some(1.0), start: 1.5, decoder_threads: 2, ..Default::default() };
        assert_eq!(times(&sample(&video, sampled)), [1.52, 2.52, 3.52, 4.52]);
    }

    /// Frames the decoder produced, and the frames kept, for `options` with and without leave
    /// to discard.
    fn decoded_and_kept(video: &Path, options: &FrameOptions) -> [(u64, SampledFrames); 2] {
        [true, false].map(|discard_unsampled| {
            let options = FrameOptions { discard_unsampled, ..options.clone() };
            sample_frames_counted(video, &options, 1 << 16).unwrap_or_else(|e| panic!("{}: {e}", video.display()))
        })
    }

    /// Discarding non-reference frames between sampling instants keeps exactly the frames a full
    /// decode keeps (same indices, timestamps and pixels), with fewer frames decoded.
    #[test]
    fn discarding_unsampled_frames_keeps_the_same_frames_and_decodes_fewer() {
        let dir = tempfile::tempdir().expect("tmp");
        let h264 = write_video(
            &dir.path().join("b.mp4"),
            VideoSpec { codec: VideoCodec::H264BFrames, gop: 50, ..VideoSpec::small(6.0, 25) },
        );
        let mpeg4 = write_video(
            &dir.path().join("b-m4.mp4"),
            VideoSpec { codec: VideoCodec::Mpeg4BFrames, gop: 30, ..VideoSpec::small(4.0, 30) },
        );
        let sampled = |fps, start, decoder_threads| FrameOptions {
            fps: Some(fps),
            start,
            decoder_threads,
            size: Some((48, 36)),
            ..Default::default()
        };
        for (video, options, total) in [
            (&h264, sampled(1.0, 0.0, 1), 150),
            (&h264, sampled(3.0, 0.0, 1), 150),
            (&h264, sampled(1.0, 0.0, 3), 150),
            (&h264, sampled(2.0, 1.3, 1), 150),
            (&h264, FrameOptions { end: Some(4.5), ..sampled(0.5, 0.0, 2) }, 150),
            (&mpeg4, sampled(1.0, 0.0, 1), 120),
            (&mpeg4, sampled(7.0, 0.5, 2), 120),
        ] {
            let [(fewer, discarding), (all, reference)] = decoded_and_kept(video, &options);
            let case = format!("{} with {options:?}", video.display());
            assert!(!reference.frames.is_empty(), "{case}");
            assert_eq!(discarding.frames, reference.frames, "{case}: indices, timestamps and sizes");
            assert!(discarding.pixels == reference.pixels, "{case}: the pixels differ");
            assert!(fewer < all, "{case}: {fewer} frames decoded with leave to discard, {all} without");
            if options.start == 0.0 && options.end.is_none() {
                assert_eq!(all, total, "{case}");
            }
        }
        // One frame a second from 25: the counted indices are the frames' numbers.
        let [(fewer, discarding), _] = decoded_and_kept(&h264, &sampled(1.0, 0.0, 1));
        assert_eq!(indices(&discarding), [0, 25, 50, 75, 100, 125]);
        assert!(fewer < 110, "{fewer} of 150 frames decoded: fewer than three in ten discarded");
    }

    #[test]
    fn sampling_one_fps_takes_a_frame_at_each_whole_second() {
        let dir = tempfile::tempdir().expect("tmp");
        let frames = sample(&five_seconds(dir.path()), FrameOptions { fps: Some(1.0), ..Default::default() });
        assert_eq!(times(&frames), [0.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(indices(&frames), [0, 25, 50, 75, 100]);
    }

    #[test]
    fn start_seeks_and_end_stops_with_the_right_indices() {
        let dir = tempfile::tempdir().expect("tmp");
        let options = FrameOptions { start: 2.3, end: Some(3.5), ..Default::default() };
        let frames = sample(&five_seconds(dir.path()), options);
        assert_eq!(frames.frames.len(), 30, "frames 2.32 s to 3.48 s: {:?}", times(&frames));
        assert_eq!(indices(&frames), (58..88).collect::<Vec<_>>());
        assert!((frames.frames[0].timestamp - 2.32).abs() < 1e-6);
        let sampled = FrameOptions { start: 1.5, fps: Some(1.0), ..Default::default() };
        assert_eq!(times(&sample(&five_seconds(dir.path()), sampled)), [1.52, 2.52, 3.52, 4.52]);
    }

    #[test]
    fn max_frames_cuts_a_video_short() {
        let dir = tempfile::tempdir().expect("tmp");
        let frames = sample(&five_seconds(dir.path()), FrameOptions { max_frames: 7, ..Default::default() });
        assert_eq!(indices(&frames), (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn keyframes_only_yields_the_start_of_each_gop() {
        let dir = tempfile::tempdir().expect("tmp");
        let gop25 = write_video(&dir.path().join("gop.mp4"), VideoSpec { gop: 25, ..VideoSpec::small(5.0, 25) });
        let frames = sample(&gop25, FrameOptions { keyframes_only: true, ..Default::default() });
        assert_eq!(times(&frames), [0.0, 1.0, 2.0, 3.0, 4.0]);
        assert_eq!(indices(&frames), [0, 25, 50, 75, 100]);
        let mpeg4 = VideoSpec { codec: VideoCodec::Mpeg4, gop: 10, ..VideoSpec::small(2.0, 10) };
        let frames = sample(
            &write_video(&dir.path().join("m4.mp4"), mpeg4),
            FrameOptions { keyframes_only: true, ..Default::default() },
        );
        assert_eq!(indices(&frames), [0, 10]);
    }

    #[test]
    fn frames_are_resized_and_converted_in_one_pass() {
        let dir = tempfile::tempdir().expect("tmp");
        let video = five_seconds(dir.path());
        for (mode, channels) in [(ImageMode::L, 1u8), (ImageMode::Rgba, 4), (ImageMode::Rgb, 3)] {
            let options = FrameOptions { size: Some((64, 48)), mode, max_frames: 2, ..Default::default() };
            let frames = sample(&video, options);
            let f = frames.image(1).expect("second frame");
            assert_eq!((f.width, f.height, f.channels, f.data.len()), (64, 48, channels, 64 * 48 * channels as usize));
        }
    }

    #[test]
    fn colours_come_out_in_rgb_order() {
        let dir = tempfile::tempdir().expect("tmp");
        for (name, rgb) in [("red", [255u8, 0, 0]), ("0x3366CC", [0x33, 0x66, 0xCC])] {
            let video = write_solid_video(&dir.path().join(format!("{name}.mp4")), name);
            let frames = sample(&video, FrameOptions { max_frames: 1, ..Default::default() });
            let centre = (24 * 64 + 32) * 3;
            let pixel = &frames.image(0).expect("frame").data[centre..centre + 3];
            for (got, want) in pixel.iter().zip(rgb) {
                assert!(got.abs_diff(want) <= 6, "{name}: got {pixel:?}, want {rgb:?}");
            }
        }
    }

    #[test]
    fn bad_files_get_precise_messages() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        let err = |path: &Path| sample_frames(path, &FrameOptions::default()).expect_err("bad file").to_string();
        assert_eq!(err(&write_empty(&d.join("empty.mp4"))), "empty file (0 bytes)");
        assert_eq!(err(&d.join("missing.mp4")), "not found");
        assert_eq!(err(d), format!("{} is not a regular file", d.display()));
        let garbage = err(&write_garbage(&d.join("notes.mp4")));
        assert!(
            garbage.starts_with("not a readable audio or video file (4000 bytes, starting 54 68 69 73"),
            "{garbage}"
        );
        let truncated = err(&write_truncated_mp4(&d.join("cut.mp4")));
        assert!(truncated.starts_with("truncated MP4 (brand `isom`): box `mdat` at byte"), "{truncated}");
        let faststart = err(&write_truncated_faststart_mp4(&d.join("cut-fast.mp4")));
        assert!(faststart.starts_with("truncated MP4 (brand `isom`): box `mdat`"), "{faststart}");
        assert_eq!(err(&write_audio_only(&d.join("voice.m4a"))), "no video stream (the file has audio)");
        let big = sample_frames(&five_seconds(d), &FrameOptions { max_pixels: 10_000, ..Default::default() });
        assert_eq!(
            big.expect_err("too big").to_string(),
            "the video is 160x120 (19200 pixels), over the limit of 10000 pixels (maxPixels)"
        );
    }

    fn step(options: FrameOptions, input: &str) -> Arc<dyn Step> {
        let kernel = SampleFrames { input: input.into(), output: "frame".into(), options, bound: RowBound::default() };
        Arc::new(MediaStep::new(kernel, Arc::new(StoreRegistry::default())))
    }

    #[test]
    fn each_sampled_frame_becomes_a_row_and_bad_rows_fail_alone() {
        let dir = tempfile::tempdir().expect("tmp");
        let (good, cut) = (five_seconds(dir.path()), write_truncated_mp4(&dir.path().join("cut.mp4")));
        let empty = write_empty(&dir.path().join("empty.mp4"));
        let input = uri_batch(&[Some(&good), Some(&cut), None, Some(&empty), Some(&good)]);
        let options = FrameOptions { fps: Some(2.0), size: Some((32, 24)), ..Default::default() };
        let out = run(step(options, "uri"), input);
        let messages: Vec<(usize, &str)> = out.failures.iter().map(|f| (f.row, f.message.as_str())).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert_eq!(messages[0].0, 1);
        assert!(messages[0].1.starts_with(&format!("file://{}: truncated MP4", cut.display())), "{messages:?}");
        assert_eq!(messages[1], (3, format!("file://{}: empty file (0 bytes)", empty.display()).as_str()));
        let batch = &out.batch;
        assert_eq!(batch.num_rows(), 20, "10 frames from each good video");
        let docs: Vec<&str> = batch.column_by_name("doc").expect("doc").as_string::<i32>().iter().flatten().collect();
        assert_eq!(docs.iter().filter(|d| **d == "doc0").count(), 10);
        assert_eq!(docs.iter().filter(|d| **d == "doc4").count(), 10);
        let index = batch.column_by_name("frame_index").expect("index").as_primitive::<UInt64Type>();
        assert_eq!(&index.values()[..3], [0, 13, 25]);
        let ts = batch.column_by_name("frame_timestamp").expect("timestamp").as_primitive::<Float64Type>();
        assert_eq!(ts.value(2), 1.0);
        let images = ImageColumn::from_batch(batch, "frame").expect("an image column weir-ops reads");
        let first = images.get(0).expect("image");
        assert_eq!((first.width, first.height, first.channels, first.data.len()), (32, 24, 3, 32 * 24 * 3));
    }

    #[test]
    fn a_bytes_column_is_decoded_through_a_temporary_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let good = five_seconds(dir.path());
        let garbage = write_garbage(&dir.path().join("garbage.bin"));
        let out = run(
            step(FrameOptions { fps: Some(1.0), ..Default::default() }, "bytes"),
            bytes_batch(&[Some(&good), Some(&garbage)]),
        );
        assert_eq!(out.batch.num_rows(), 5);
        assert_eq!(out.failures.len(), 1);
        assert!(
            out.failures[0].message.starts_with("row 1 (4000 bytes): not a readable audio or video file"),
            "{:?}",
            out.failures
        );
    }

    #[test]
    fn a_column_of_another_type_fails_the_morsel() {
        let input =
            RecordBatch::try_from_iter([("uri", Arc::new(UInt64Array::from(vec![1])) as ArrayRef)]).expect("batch");
        let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let ctx = weir_core::StepContext::new(weir_core::ComputePool::new(1).expect("pool"));
        let err = runtime.block_on(step(FrameOptions::default(), "uri").process(input, ctx)).expect_err("wrong type");
        assert_eq!(
            err.to_string(),
            "column `uri`: expected a string column of URIs or a binary column of file bytes, found UInt64"
        );
    }
}
