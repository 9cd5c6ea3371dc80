//! Opening a local media file with FFmpeg: one-time setup, the `file` protocol only, the stream a
//! step wants, and its decoder (single-threaded, see the crate docs).

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use ffmpeg::format::context::Input;
use ffmpeg::media::Type;
use ffmpeg::{Dictionary, Rational, codec, decoder};
use ffmpeg_next as ffmpeg;

use weir_ffmpeg_loader::LoadError;

use crate::MediaError;
use crate::container::check_iso_bmff;

/// `AV_TIME_BASE`: the unit of container-level times (microseconds).
pub const TIME_BASE: f64 = 1_000_000.0;

static INIT: OnceLock<Result<(), InitError>> = OnceLock::new();

/// Why FFmpeg could not start.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum InitError {
    /// Its shared libraries could not be loaded ([`weir_ffmpeg_loader`]).
    #[error(transparent)]
    Load(&'static LoadError),
    #[error("{0}")]
    Init(ffmpeg::Error),
}

/// Loads FFmpeg's libraries (the process does not load them at start: [`weir_ffmpeg_loader`]) and
/// initialises FFmpeg, once per process, and silences its log: its lines name no file and would
/// interleave across threads, and every failure reaches the user as a row failure instead. Every
/// step that reads media calls this when it is built, before any other FFmpeg call.
///
/// # Errors
/// When FFmpeg cannot be loaded or initialised (the same error on every call).
pub fn init() -> Result<(), InitError> {
    *INIT.get_or_init(|| {
        weir_ffmpeg_loader::load().map_err(InitError::Load)?;
        ffmpeg::init().map_err(InitError::Init)?;
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
        Ok(())
    })
}

/// Opens `path` for demuxing. The path is handed to FFmpeg as a `file:` URL with every other
/// protocol refused, so a playlist or concat file in the data cannot make FFmpeg reach the network
/// or other files through other protocols.
///
/// # Errors
/// [`MediaError::NotFound`], [`MediaError::Empty`], [`MediaError::Truncated`] (ISO-BMFF),
/// [`MediaError::NotMedia`] for anything FFmpeg cannot read, [`MediaError::BadPath`],
/// [`MediaError::Io`].
pub fn open(path: &Path) -> Result<Input, MediaError> {
    init().map_err(MediaError::Unavailable)?;
    let mut file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => MediaError::NotFound,
        _ => MediaError::Io { context: "opening the file", source: e },
    })?;
    let metadata = file.metadata().map_err(MediaError::io("reading the file's size"))?;
    if !metadata.is_file() {
        return Err(MediaError::BadPath(format!("{} is not a regular file", path.display())));
    }
    let size = metadata.len();
    if size == 0 {
        return Err(MediaError::Empty);
    }
    check_iso_bmff(&mut file, size)?;
    let mut options = Dictionary::new();
    options.set("protocol_whitelist", "file");
    ffmpeg::format::input_with_dictionary(&file_url(path)?, options).map_err(|source| MediaError::NotMedia {
        size,
        prefix: hex_prefix(&mut file),
        source,
    })
}

/// `file:<absolute path>`; FFmpeg's `from_path` panics on non-UTF-8 and NUL, so both are refused.
fn file_url(path: &Path) -> Result<String, MediaError> {
    let absolute = std::path::absolute(path).map_err(MediaError::io("resolving the path"))?;
    match absolute.to_str() {
        Some(s) if !s.contains('\0') => Ok(format!("file:{s}")),
        _ => Err(MediaError::BadPath(format!(
            "path {} is not UTF-8 or contains NUL; FFmpeg cannot open it",
            absolute.display()
        ))),
    }
}

/// The first bytes of `file`, in hex, for messages about files that are not media.
fn hex_prefix(file: &mut File) -> String {
    use std::io::Seek;
    let mut head = [0u8; 8];
    let n = file.seek(std::io::SeekFrom::Start(0)).and_then(|_| file.read(&mut head)).unwrap_or(0);
    head[..n].iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// What the headers say about one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamInfo {
    pub index: usize,
    pub codec: String,
    pub time_base: Rational,
    /// First timestamp, in `time_base` units, when known.
    pub start: Option<i64>,
    /// In seconds: the stream's duration, else the container's.
    pub duration: Option<f64>,
    /// Frame count from the header (video) when it says.
    pub frames: Option<u64>,
    /// Average frame rate (video) when known.
    pub fps: Option<f64>,
    pub width: u32,
    pub height: u32,
    pub sample_rate: u32,
    pub channels: u32,
    /// Bits per second (the stream's, else the container's); 0 when unknown.
    pub bit_rate: u64,
}

impl StreamInfo {
    /// Seconds from the stream's start of timestamp `ts` (in `time_base` units).
    pub fn seconds(&self, ts: i64) -> f64 {
        (ts - self.start.unwrap_or(0)) as f64 * f64::from(self.time_base)
    }
}

/// The best stream of `kind` in `input` (cover art does not count as video).
///
/// # Errors
/// [`MediaError::NoStream`] naming the kinds of stream the file does have.
pub fn find_stream(input: &Input, kind: Type) -> Result<StreamInfo, MediaError> {
    let stream = input
        .streams()
        .best(kind)
        .filter(|s| !s.disposition().contains(ffmpeg::format::stream::Disposition::ATTACHED_PIC));
    let Some(stream) = stream else {
        return Err(MediaError::NoStream { wanted: kind_name(kind), found: stream_kinds(input) });
    };
    Ok(stream_info(input, &stream))
}

fn kind_name(kind: Type) -> &'static str {
    match kind {
        Type::Video => "video",
        Type::Audio => "audio",
        Type::Subtitle => "subtitle",
        Type::Data => "data",
        Type::Attachment => "attachment",
        _ => "unknown",
    }
}

/// "audio", "video, audio, cover art" or "no streams".
fn stream_kinds(input: &Input) -> String {
    let kinds: Vec<&str> = input
        .streams()
        .map(|s| {
            let attached = s.disposition().contains(ffmpeg::format::stream::Disposition::ATTACHED_PIC);
            if attached { "cover art" } else { kind_name(s.parameters().medium()) }
        })
        .collect();
    if kinds.is_empty() { "no streams".to_string() } else { kinds.join(", ") }
}

fn stream_info(input: &Input, stream: &ffmpeg::format::stream::Stream<'_>) -> StreamInfo {
    let params = stream.parameters();
    // SAFETY: `params` wraps the AVCodecParameters of a stream of `input`, which is open and
    // borrowed for this whole function; we copy plain integer fields that ffmpeg-next 9 exposes no
    // accessor for.
    let (width, height, sample_rate, channels, bit_rate) = unsafe {
        let p = &*params.as_ptr();
        (p.width, p.height, p.sample_rate, p.ch_layout.nb_channels, p.bit_rate)
    };
    let time_base = stream.time_base();
    let valid_ts = |ts: i64| (ts != ffmpeg::ffi::AV_NOPTS_VALUE).then_some(ts);
    let start = valid_ts(stream.start_time());
    let stream_duration = valid_ts(stream.duration()).filter(|d| *d > 0).map(|d| d as f64 * f64::from(time_base));
    let container_duration = valid_ts(input.duration()).filter(|d| *d > 0).map(|d| d as f64 / TIME_BASE);
    let fps = [stream.avg_frame_rate(), stream.rate()]
        .into_iter()
        .find(|r| r.numerator() > 0 && r.denominator() > 0)
        .map(f64::from);
    let positive = |v: i64| u64::try_from(v).ok().filter(|v| *v > 0);
    StreamInfo {
        index: stream.index(),
        codec: params.id().name().to_string(),
        time_base,
        start,
        duration: stream_duration.or(container_duration),
        frames: positive(stream.frames()),
        fps,
        width: u32::try_from(width).unwrap_or(0),
        height: u32::try_from(height).unwrap_or(0),
        sample_rate: u32::try_from(sample_rate).unwrap_or(0),
        channels: u32::try_from(channels).unwrap_or(0),
        bit_rate: positive(bit_rate).or_else(|| positive(input.bit_rate())).unwrap_or(0),
    }
}

/// A decoder context for stream `info.index` of `input`, single-threaded, not yet opened.
fn decoder_for(input: &Input, info: &StreamInfo) -> Result<decoder::Decoder, MediaError> {
    let stream = input
        .stream(info.index)
        .ok_or(MediaError::Ffmpeg { context: "finding the stream", source: ffmpeg::Error::StreamNotFound })?;
    let mut context =
        codec::Context::from_parameters(stream.parameters()).map_err(MediaError::ffmpeg("reading codec parameters"))?;
    context.set_threading(codec::threading::Config::count(1));
    let mut decoder = context.decoder();
    decoder.set_packet_time_base(info.time_base);
    Ok(decoder)
}

fn open_error(info: &StreamInfo) -> impl FnOnce(ffmpeg::Error) -> MediaError + '_ {
    move |source| match source {
        ffmpeg::Error::DecoderNotFound => MediaError::NoDecoder { codec: info.codec.clone() },
        source => MediaError::Ffmpeg { context: "opening the decoder", source },
    }
}

/// An opened video decoder; `keyframes_only` makes it discard every non-key frame.
///
/// # Errors
/// [`MediaError::NoDecoder`] when this FFmpeg cannot decode the codec.
pub fn video_decoder(
    input: &Input,
    info: &StreamInfo,
    keyframes_only: bool,
    threads: usize,
) -> Result<decoder::Video, MediaError> {
    let mut decoder = decoder_for(input, info)?;
    if keyframes_only {
        decoder.skip_frame(ffmpeg::Discard::NonKey);
    }
    if threads > 1 {
        let frames =
            codec::threading::Config { kind: codec::threading::Type::Frame, count: threads, ..Default::default() };
        decoder.set_threading(frames);
    }
    decoder.video().map_err(open_error(info))
}

/// An opened audio decoder.
///
/// # Errors
/// [`MediaError::NoDecoder`] when this FFmpeg cannot decode the codec.
pub fn audio_decoder(input: &Input, info: &StreamInfo) -> Result<decoder::Audio, MediaError> {
    decoder_for(input, info)?.audio().map_err(open_error(info))
}
