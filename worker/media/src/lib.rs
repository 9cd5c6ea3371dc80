//! Weir's video and audio steps, on FFmpeg (through `ffmpeg-next`): video metadata and frame
//! sampling; audio metadata, decode, resample and chunking.
//!
//! # Layout
//! - [`source`]: where a row's media comes from (a URI or bytes) and how it becomes a local file.
//! - [`open`]: one-time FFmpeg setup, opening a file, picking a stream, opening its decoder.
//! - [`container`]: a structural check that catches truncated MP4/MOV/M4A files up front.
//! - [`demux`]: the packet → decoder → frame loop shared by the video and audio decoders.
//! - [`step`]: [`step::MediaStep`], the async shell shared by the steps that read media files.
//! - [`video`]: `video.metadata` and `video.frames`.
//! - [`audio`]: the Arrow audio column, `audio.metadata`, `audio.decode`, `audio.resample` and
//!   `audio.chunk`.
//! - [`error`]: [`MediaError`], what can be wrong with one media file.
//!
//! Each step module has a `build(config, ...) -> Result<Arc<dyn Step>, BuildError>` taking the
//! step's config struct from `weir-crds`. A bad file is always a row failure naming its URI (or
//! row), never a panic or a failed job.
//!
//! # Threads
//! The worker runs several decodes at once (a step's concurrency, one per core by default, and
//! for `video.frames` a few more files decoding ahead while a long one's frames go out in order).
//! Audio decoders are single-threaded: the files are many and cheap, and FFmpeg's threads would
//! only oversubscribe the cores and add buffers. `video.frames` decoders use FFmpeg's frame
//! threads, as many as the compute pool has: a file's frames go out in order, so the costliest
//! file of a morsel is a decode the step waits on, and on one thread it kept one core busy while
//! the other idled (measured in the README); with several in flight, the threads share the cores
//! at the cost of a frame buffer per thread.

pub mod audio;
pub mod container;
pub mod demux;
pub mod error;
pub mod open;
pub mod source;
pub mod step;
pub mod video;

pub use error::MediaError;

#[cfg(test)]
mod testing;
