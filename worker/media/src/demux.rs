//! The packet → decoder → frame loop shared by the video and audio decoders: reads one stream's
//! packets, feeds the decoder, and hands each decoded frame on until told to stop.
//!
//! A corrupt packet is skipped, as FFmpeg's own tools do; a long run of them, or a file in which
//! nothing decodes, is an error.

use std::ops::DerefMut;

use ffmpeg::codec::decoder::Opened;
use ffmpeg::format::context::Input;
use ffmpeg::{Frame, Packet};
use ffmpeg_next as ffmpeg;

use crate::MediaError;

/// Demuxer or decoder errors in a row after which a file is given up on.
const MAX_CONSECUTIVE_ERRORS: u32 = 100;

/// What a frame handler wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// Nothing more is wanted: stop reading the file.
    Stop,
}

/// What a decode does with the stream's packets and frames.
///
/// A closure over frames is a handler that looks at no packet.
pub trait DecodeHandler<F> {
    /// Called with each packet of the stream just before the decoder gets it: the handler may set
    /// the decoder's options for that packet (which frames to discard, say).
    fn before_packet(&mut self, _packet: &Packet, _decoder: &mut Opened) {}

    /// Takes a decoded frame.
    ///
    /// # Errors
    /// Whatever the handler finds wrong with the frame; the decode stops with it.
    fn on_frame(&mut self, frame: &mut F) -> Result<Flow, MediaError>;
}

impl<F, C: FnMut(&mut F) -> Result<Flow, MediaError>> DecodeHandler<F> for C {
    fn on_frame(&mut self, frame: &mut F) -> Result<Flow, MediaError> {
        self(frame)
    }
}

/// One stream's decode: which stream, which packets to send, and the decoder.
pub struct StreamDecode<'a> {
    pub stream: usize,
    /// `"video"` or `"audio"`, for messages.
    pub kind: &'static str,
    /// Send only key-frame packets.
    pub keyframes_only: bool,
    pub decoder: &'a mut Opened,
}

/// Decodes the stream until its end or until the handler says [`Flow::Stop`]; returns the number
/// of frames decoded.
///
/// # Errors
/// A read error, a run of [`MAX_CONSECUTIVE_ERRORS`] corrupt packets, a stream in which nothing
/// decodes, or whatever the handler returns.
pub fn decode<F: DerefMut<Target = Frame>>(
    input: &mut Input,
    mut d: StreamDecode<'_>,
    frame: &mut F,
    mut handler: impl DecodeHandler<F>,
) -> Result<u64, MediaError> {
    let mut errors = DecodeErrors::default();
    let mut decoded = 0;
    loop {
        // A fresh packet per read: av_read_frame overwrites a packet without releasing what it
        // held, so reusing one would leak every packet's data.
        let mut packet = Packet::empty();
        match packet.read(input) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(e @ ffmpeg::Error::InvalidData) => {
                errors.note(e, d.kind)?;
                continue;
            }
            Err(source) => return Err(MediaError::Read { frames: decoded, source }),
        }
        if packet.stream() != d.stream || (d.keyframes_only && !packet.is_key()) {
            continue;
        }
        handler.before_packet(&packet, d.decoder);
        if let Err(e) = d.decoder.send_packet(&packet) {
            errors.note(e, d.kind)?;
            continue;
        }
        if drain(&mut d, frame, &mut handler, &mut errors, &mut decoded)? == Flow::Stop {
            return Ok(decoded);
        }
    }
    // An error here only means the decoder was already flushed.
    let _ = d.decoder.send_eof();
    drain(&mut d, frame, &mut handler, &mut errors, &mut decoded)?;
    errors.check_any_decoded(decoded, d.kind)?;
    Ok(decoded)
}

/// Receives the frames the decoder has ready.
fn drain<F: DerefMut<Target = Frame>>(
    d: &mut StreamDecode<'_>,
    frame: &mut F,
    handler: &mut impl DecodeHandler<F>,
    errors: &mut DecodeErrors,
    decoded: &mut u64,
) -> Result<Flow, MediaError> {
    loop {
        match d.decoder.receive_frame(frame) {
            Ok(()) => {
                errors.consecutive = 0;
                *decoded += 1;
                if handler.on_frame(frame)? == Flow::Stop {
                    return Ok(Flow::Stop);
                }
            }
            Err(ffmpeg::Error::Eof | ffmpeg::Error::Other { errno: ffmpeg::util::error::EAGAIN }) => {
                return Ok(Flow::Continue);
            }
            Err(e) => {
                errors.note(e, d.kind)?;
                return Ok(Flow::Continue);
            }
        }
    }
}

/// Decode errors seen so far.
#[derive(Default)]
struct DecodeErrors {
    consecutive: u32,
    last: Option<ffmpeg::Error>,
}

impl DecodeErrors {
    /// Notes an error; `Err` once there have been too many in a row.
    fn note(&mut self, error: ffmpeg::Error, kind: &'static str) -> Result<(), MediaError> {
        self.consecutive += 1;
        self.last = Some(error);
        if self.consecutive >= MAX_CONSECUTIVE_ERRORS {
            return Err(MediaError::Undecodable { stream: kind, source: error });
        }
        Ok(())
    }

    /// `Err` when nothing decoded and something failed.
    fn check_any_decoded(&self, decoded: u64, kind: &'static str) -> Result<(), MediaError> {
        match self.last {
            Some(source) if decoded == 0 => Err(MediaError::Undecodable { stream: kind, source }),
            _ => Ok(()),
        }
    }
}
