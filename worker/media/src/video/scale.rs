//! Decoded frame → image: pixel format conversion and resizing in one swscale pass, with the
//! frame's colour matrix (BT.601, BT.709, BT.2020) and range honoured.

use ffmpeg::format::Pixel;
use ffmpeg::software::scaling;
use ffmpeg::util::color;
use ffmpeg::util::frame::Video as VideoFrame;
use ffmpeg_next as ffmpeg;
use weir_crds::ImageMode;

use crate::MediaError;

/// Converts frames to packed 8-bit images of one mode and (optionally) one size. The swscale
/// context is rebuilt only when the input format or size changes.
pub struct FrameConverter {
    mode: ImageMode,
    size: Option<(u32, u32)>,
    scaler: Option<scaling::Context>,
    out: VideoFrame,
}

impl FrameConverter {
    pub fn new(mode: ImageMode, size: Option<(u32, u32)>) -> Self {
        Self { mode, size, scaler: None, out: VideoFrame::empty() }
    }

    fn pixel(&self) -> Pixel {
        match self.mode {
            ImageMode::Rgb => Pixel::RGB24,
            ImageMode::Rgba => Pixel::RGBA,
            ImageMode::L => Pixel::GRAY8,
        }
    }

    /// Converts `frame`, appending its packed pixels to `out`; returns the image's width, height
    /// and channels.
    ///
    /// # Errors
    /// When swscale cannot convert the frame's pixel format.
    pub fn convert_into(&mut self, frame: &VideoFrame, out: &mut Vec<u8>) -> Result<(u32, u32, u8), MediaError> {
        let (width, height) = self.size.unwrap_or((frame.width(), frame.height()));
        let input =
            scaling::context::Definition { format: frame.format(), width: frame.width(), height: frame.height() };
        let pixel = self.pixel();
        let scaler = match &mut self.scaler {
            Some(s) if *s.input() == input => s,
            slot => {
                let flags = scaling::Flags::BICUBIC;
                let mut scaler =
                    scaling::Context::get(input.format, input.width, input.height, pixel, width, height, flags)
                        .map_err(MediaError::ffmpeg("setting up pixel conversion"))?;
                set_colorspace(&mut scaler, frame);
                self.out = VideoFrame::new(pixel, width, height);
                if self.out.planes() == 0 {
                    return Err(MediaError::Ffmpeg {
                        context: "allocating a frame",
                        source: ffmpeg::Error::Other { errno: ffmpeg::util::error::ENOMEM },
                    });
                }
                slot.insert(scaler)
            }
        };
        scaler.run(frame, &mut self.out).map_err(MediaError::ffmpeg("converting a frame"))?;
        let channels = self.mode.channels();
        append_packed(&self.out, channels, out);
        Ok((width, height, channels))
    }
}

/// Appends a converted frame's rows to `out`, without the padding frames put at row ends.
fn append_packed(frame: &VideoFrame, channels: u8, out: &mut Vec<u8>) {
    let row = frame.width() as usize * usize::from(channels);
    let stride = frame.stride(0);
    let plane = frame.data(0);
    for y in 0..frame.height() as usize {
        out.extend_from_slice(&plane[y * stride..y * stride + row]);
    }
}

/// Tells swscale the frame's YUV matrix and range; untagged frames keep swscale's default (BT.601).
fn set_colorspace(scaler: &mut scaling::Context, frame: &VideoFrame) {
    let matrix = match frame.color_space() {
        color::Space::BT709 => ffmpeg::ffi::SWS_CS_ITU709,
        color::Space::BT2020NCL | color::Space::BT2020CL => ffmpeg::ffi::SWS_CS_BT2020,
        color::Space::SMPTE240M => ffmpeg::ffi::SWS_CS_SMPTE240M,
        color::Space::FCC => ffmpeg::ffi::SWS_CS_FCC,
        _ => ffmpeg::ffi::SWS_CS_DEFAULT,
    };
    let full_range = i32::from(frame.color_range() == color::Range::JPEG);
    // SAFETY: the context pointer is live (owned by `scaler`); sws_getCoefficients returns a
    // pointer to a static table for any colour space constant; brightness, contrast and saturation
    // are swscale's neutral values (0, 1.0 and 1.0 in 16.16 fixed point). ffmpeg-next 9 has no safe
    // wrapper for sws_setColorspaceDetails. A failure (non-YUV input) leaves the defaults.
    unsafe {
        let coefficients = ffmpeg::ffi::sws_getCoefficients(matrix);
        ffmpeg::ffi::sws_setColorspaceDetails(
            scaler.as_mut_ptr(),
            coefficients,
            full_range,
            coefficients,
            1,
            0,
            1 << 16,
            1 << 16,
        );
    }
}
