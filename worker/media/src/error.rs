//! [`MediaError`]: what can be wrong with one media file; its message is what the user reads in
//! the job's errors output, after the URI (or row) it concerns.

use ffmpeg_next as ffmpeg;

/// Why one row's media could not be read. Never fatal to the job: the step turns it into a
/// [`weir_core::RowFailure`] whose message is `<uri or row>: <this error>`.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("not found")]
    NotFound,
    #[error("empty file (0 bytes)")]
    Empty,
    #[error("not a readable audio or video file ({size} bytes, starting {prefix}): {source}")]
    NotMedia { size: u64, prefix: String, source: ffmpeg::Error },
    #[error("truncated {container}: {detail}")]
    Truncated { container: String, detail: String },
    #[error("no {wanted} stream (the file has {found})")]
    NoStream { wanted: &'static str, found: String },
    #[error("no decoder for codec `{codec}` in this FFmpeg build")]
    NoDecoder { codec: String },
    #[error("{what} is {width}x{height} ({pixels} pixels), over the limit of {max} pixels (maxPixels)")]
    TooManyPixels { what: &'static str, width: u32, height: u32, pixels: u64, max: u64 },
    #[error(
        "{frames} frames take {bytes} bytes, over the 2 GiB one row's frames can hold: sample fewer (fps, maxFrames) or smaller (width, height) frames"
    )]
    FramesTooLarge { frames: usize, bytes: usize },
    #[error("audio is {seconds:.1} s long by its header, over the limit of {max} s (maxSeconds)")]
    TooLongByHeader { seconds: f64, max: u32 },
    #[error("decoded audio passed the limit of {max} s (maxSeconds), though the header says {header}")]
    TooLongDecoded { max: u32, header: String },
    #[error("no decodable {stream} data: {source}")]
    Undecodable { stream: &'static str, source: ffmpeg::Error },
    #[error("read error after {frames} decoded frames: {source}")]
    Read { frames: u64, source: ffmpeg::Error },
    #[error("{context}: {source}")]
    Ffmpeg { context: &'static str, source: ffmpeg::Error },
    #[error("{context}: {source}")]
    Io { context: &'static str, source: std::io::Error },
    #[error("{0}")]
    Fetch(String),
    #[error("invalid audio: {0}")]
    BadAudio(String),
    /// A local path FFmpeg cannot open (a directory, or not UTF-8).
    #[error("{0}")]
    BadPath(String),
    #[error("FFmpeg cannot start: {0}")]
    Unavailable(crate::open::InitError),
    #[error("internal error: the decoder panicked on this file")]
    Panicked,
}

impl MediaError {
    /// An [`MediaError::Ffmpeg`] builder for `map_err`.
    pub fn ffmpeg(context: &'static str) -> impl FnOnce(ffmpeg::Error) -> Self {
        move |source| MediaError::Ffmpeg { context, source }
    }

    /// An [`MediaError::Io`] builder for `map_err`.
    pub fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| MediaError::Io { context, source }
    }
}
