//! JPEG decoding with libjpeg-turbo (its TurboJPEG API): the pixels Pillow, torchvision and OpenCV
//! decode (the same library, its accurate integer IDCT and fancy upsampling), and DCT-scaled
//! decoding at 1/2, 1/4 or 1/8 of the size, as Pillow's `Image.draft`.
//!
//! Each image gets its own [`Decompressor`] (header, then pixels), so calls on different threads
//! share nothing: the library keeps its last error message in thread-local storage, read here on
//! the calling thread right after the failed call.

use std::ffi::{CStr, c_int, c_ulong};

use turbojpeg_sys as tj;
use weir_crds::ImageMode;

/// What a JPEG's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JpegHeader {
    pub width: u32,
    pub height: u32,
    /// CMYK or YCCK: libjpeg-turbo cannot turn these into RGB or grey.
    pub is_cmyk: bool,
}

/// The DCT scalings a draft may use, largest reduction first (Pillow's `draft` uses the same).
const DRAFT_DENOMINATORS: [u32; 3] = [8, 4, 2];

/// One TurboJPEG decompressor, destroyed on drop.
pub(crate) struct Decompressor(tj::tjhandle);

impl Decompressor {
    /// # Errors
    /// When the library cannot allocate its state.
    pub(crate) fn new() -> Result<Self, String> {
        // SAFETY: no arguments; a null handle is the library's failure signal, checked here.
        let handle = unsafe { tj::tjInitDecompress() };
        if handle.is_null() {
            return Err(format!("cannot start libjpeg-turbo: {}", last_error(handle)));
        }
        Ok(Self(handle))
    }

    /// The header of the JPEG in `bytes`.
    ///
    /// # Errors
    /// When the header is corrupt, with libjpeg-turbo's reason.
    pub(crate) fn header(&self, bytes: &[u8]) -> Result<JpegHeader, String> {
        let (mut width, mut height, mut subsampling, mut colorspace) = (0, 0, 0, 0);
        // SAFETY: `bytes` is valid for its length; the out-pointers are live locals.
        let status = unsafe {
            tj::tjDecompressHeader3(
                self.0,
                bytes.as_ptr(),
                bytes.len() as c_ulong,
                &mut width,
                &mut height,
                &mut subsampling,
                &mut colorspace,
            )
        };
        if status != 0 {
            return Err(format!("corrupt header: {}", last_error(self.0)));
        }
        let side = |v: c_int| u32::try_from(v).map_err(|_| format!("corrupt header: size {v}"));
        let is_cmyk = matches!(colorspace as u32, tj::TJCS_TJCS_CMYK | tj::TJCS_TJCS_YCCK);
        Ok(JpegHeader { width: side(width)?, height: side(height)?, is_cmyk })
    }

    /// Decodes the JPEG in `bytes` to `mode`'s interleaved pixels at `size`, which is the full size
    /// its header gives or one [`draft_size`] made of it.
    ///
    /// A warning from the library (extraneous bytes, a corrupt marker it skipped) leaves the image as
    /// decoded, as Pillow does; data that ends early is an error, since the library fills the rest
    /// with grey.
    ///
    /// # Errors
    /// `cannot decode: <the library's reason>`, or `truncated: <its message>` when the data ends
    /// early.
    pub(crate) fn decode(&self, bytes: &[u8], mode: ImageMode, (width, height): (u32, u32)) -> Result<Vec<u8>, String> {
        let format = match mode {
            ImageMode::Rgb => tj::TJPF_TJPF_RGB,
            ImageMode::Rgba => tj::TJPF_TJPF_RGBA,
            ImageMode::L => tj::TJPF_TJPF_GRAY,
        };
        let channels = usize::from(mode.channels());
        let pitch = width as usize * channels;
        let mut pixels = vec![0u8; pitch * height as usize];
        let too_large = || format!("a {width}x{height} image is too large to decode");
        let (w, h, p) = (
            c_int::try_from(width).map_err(|_| too_large())?,
            c_int::try_from(height).map_err(|_| too_large())?,
            c_int::try_from(pitch).map_err(|_| too_large())?,
        );
        // SAFETY: `pixels` holds `pitch * height` bytes, what a `width` x `height` image of this
        // pixel format takes; `width` and `height` are a size the library scales to (full or 1/d),
        // so it writes no more.
        let status = unsafe {
            tj::tjDecompress2(
                self.0,
                bytes.as_ptr(),
                bytes.len() as c_ulong,
                pixels.as_mut_ptr(),
                w,
                p,
                h,
                format as c_int,
                tj::TJFLAG_ACCURATEDCT as c_int,
            )
        };
        if status != 0 {
            // SAFETY: the handle is live; the call only reads its error state.
            let is_warning = unsafe { tj::tjGetErrorCode(self.0) } == tj::TJERR_TJERR_WARNING as c_int;
            let message = last_error(self.0);
            if !is_warning {
                return Err(format!("cannot decode: {message}"));
            }
            // libjpeg's two messages for data that runs out: no end marker, or a marker mid-scan.
            if message.to_ascii_lowercase().contains("premature end of") {
                return Err(format!("truncated: {message}"));
            }
        }
        Ok(pixels)
    }
}

impl Drop for Decompressor {
    fn drop(&mut self) {
        // SAFETY: the handle came from tjInitDecompress and is destroyed once, here.
        unsafe { tj::tjDestroy(self.0) };
    }
}

/// The library's message for the last failure on this thread (or of `handle`).
fn last_error(handle: tj::tjhandle) -> String {
    // SAFETY: tjGetErrorStr2 accepts any handle, null included, and returns a NUL-terminated
    // string that lives in the handle or in thread-local storage until the next call.
    let text = unsafe { CStr::from_ptr(tj::tjGetErrorStr2(handle)) };
    text.to_string_lossy().trim().to_string()
}

/// The size a JPEG of `width` x `height` decodes to under a draft of at least `draft` (width,
/// height): the largest DCT reduction (1/8, 1/4, 1/2) that keeps both sides at least the draft's,
/// or the full size.
pub(crate) fn draft_size((width, height): (u32, u32), draft: Option<(u32, u32)>) -> (u32, u32) {
    let Some((min_width, min_height)) = draft else { return (width, height) };
    DRAFT_DENOMINATORS
        .iter()
        .map(|d| (width.div_ceil(*d), height.div_ceil(*d)))
        .find(|(w, h)| *w >= min_width && *h >= min_height)
        .unwrap_or((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_takes_the_largest_reduction_that_keeps_both_sides() {
        assert_eq!(draft_size((800, 600), Some((224, 224))), (400, 300));
        assert_eq!(draft_size((2000, 1800), Some((224, 224))), (250, 225));
        assert_eq!(draft_size((447, 900), Some((224, 224))), (224, 450));
        assert_eq!(draft_size((446, 900), Some((224, 224))), (446, 900));
        assert_eq!(draft_size((449, 449), Some((224, 224))), (225, 225));
        assert_eq!(draft_size((4000, 3000), Some((100, 100))), (500, 375));
        assert_eq!(draft_size((800, 600), None), (800, 600));
    }
}
