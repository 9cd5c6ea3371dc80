//! Whether encoded image bytes are cut short. Decoders fill the missing part of a truncated JPEG
//! or PNG with grey and report success, so the bytes are checked before decoding.
//!
//! A JPEG is checked twice: its end-of-image marker must be reached, and its entropy-coded data
//! must be large enough for the size its frame header declares (every 8x8 block takes at least
//! one Huffman code), which catches a small image's data behind a header that declares a large
//! one. Data that ends only a little early (a few missing rows) needs a full decode to notice:
//! libjpeg-turbo reports it while decoding (the `turbo` module), the other formats' decoders do
//! not.

use image::ImageFormat;

/// Why `bytes` (an image of `format`) look cut short, if they do; `None` when they do not, or
/// when their structure is not understood (the decoder then has the last word).
pub(crate) fn truncation(format: ImageFormat, bytes: &[u8]) -> Option<String> {
    let n = bytes.len();
    let tail = &bytes[n.saturating_sub(4096)..];
    let declared = |at: usize| bytes.get(at..at + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
    match format {
        ImageFormat::Jpeg => jpeg_truncation(bytes),
        ImageFormat::Png if !tail.windows(4).any(|w| w == b"IEND") => Some(format!("no IEND chunk in its {n} bytes")),
        ImageFormat::WebP => {
            declared(4).filter(|d| d + 8 > n).map(|d| format!("RIFF header declares {} bytes, file has {n}", d + 8))
        }
        ImageFormat::Bmp => declared(2).filter(|d| *d > n).map(|d| format!("header declares {d} bytes, file has {n}")),
        _ => None,
    }
}

fn jpeg_truncation(bytes: &[u8]) -> Option<String> {
    let layout = JpegLayout::walk(bytes)?;
    if !layout.reaches_end {
        return Some(format!("no end-of-image marker in its {} bytes", bytes.len()));
    }
    let frame = layout.frame?;
    let needed = frame.min_coded_bits()?.div_ceil(8);
    (layout.coded_bytes < needed).then(|| {
        format!(
            "data ends before the declared {}x{} image: {} bytes of coded data, at least {needed} needed",
            frame.width, frame.height, layout.coded_bytes
        )
    })
}

/// What a walk over a JPEG's markers finds.
#[derive(Debug, Default)]
struct JpegLayout {
    /// The first frame header (an embedded thumbnail's sits inside an APP segment, skipped).
    frame: Option<Frame>,
    /// Entropy-coded bytes of all scans, not counting byte stuffing or restart markers.
    coded_bytes: u64,
    /// Whether the end-of-image marker is reached.
    reaches_end: bool,
}

impl JpegLayout {
    /// Walks the segments and entropy-coded data of `b` (which starts with SOI) to the
    /// end-of-image marker or the end of `b`. `None` when something other than a marker stands
    /// where a marker should.
    fn walk(b: &[u8]) -> Option<Self> {
        let mut layout = Self::default();
        let mut i = 2;
        while i + 1 < b.len() {
            if b[i] != 0xFF {
                return None;
            }
            let marker = b[i + 1];
            match marker {
                0xD9 => {
                    layout.reaches_end = true;
                    break;
                }
                0xFF => i += 1,
                0x01 | 0xD0..=0xD7 => i += 2,
                _ => {
                    let Some(len) = b.get(i + 2..i + 4).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]]))) else {
                        break;
                    };
                    if layout.frame.is_none() && is_frame_header(marker) {
                        layout.frame = b.get(i + 4..i + 2 + len).and_then(|body| Frame::parse(marker, body));
                    }
                    i += 2 + len;
                    if marker == 0xDA {
                        let (end, coded) = entropy_coded(b, i);
                        layout.coded_bytes += coded;
                        i = end;
                    }
                }
            }
        }
        Some(layout)
    }
}

/// SOF0-SOF15, less the three markers in that range that are not frame headers (DHT, JPG, DAC).
fn is_frame_header(marker: u8) -> bool {
    matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC)
}

/// Where the entropy-coded data starting at `i` ends (at the first marker other than a restart
/// marker, or at the end of `b`) and how many data bytes it holds: a stuffed `FF 00` counts one,
/// fill bytes and restart markers none.
fn entropy_coded(b: &[u8], mut i: usize) -> (usize, u64) {
    let mut coded = 0u64;
    loop {
        let run = b.get(i..).map_or(0, |rest| rest.iter().position(|&x| x == 0xFF).unwrap_or(rest.len()));
        coded += run as u64;
        i += run;
        match b.get(i + 1) {
            Some(0x00) => {
                coded += 1;
                i += 2;
            }
            Some(0xFF) => i += 1,
            Some(0xD0..=0xD7) => i += 2,
            _ => return (i, coded),
        }
    }
}

/// A frame header: the coding process, the declared size and each component's sampling factors.
#[derive(Debug)]
struct Frame {
    marker: u8,
    width: u32,
    height: u32,
    /// (horizontal, vertical) sampling factor of each component.
    sampling: Vec<(u64, u64)>,
}

impl Frame {
    /// Reads a frame header's body: precision, height, width, component count, then
    /// (id, sampling factors, quantisation table) per component.
    fn parse(marker: u8, body: &[u8]) -> Option<Self> {
        let (head, components) = body.split_first_chunk::<6>()?;
        let [_, h1, h0, w1, w0, count] = *head;
        let sampling: Vec<(u64, u64)> = components
            .chunks_exact(3)
            .take(usize::from(count))
            .map(|c| (u64::from(c[1] >> 4), u64::from(c[1] & 0xF)))
            .collect();
        (sampling.len() == usize::from(count)).then_some(Self {
            marker,
            width: u32::from(u16::from_be_bytes([w1, w0])),
            height: u32::from(u16::from_be_bytes([h1, h0])),
            sampling,
        })
    }

    /// The fewest bits of Huffman-coded data that hold every 8x8 block of every component: each
    /// block takes a DC code of at least one bit and, in a sequential scan, an AC code of at least
    /// one more (a progressive file's first DC scan alone gives the one bit). `None` for
    /// arithmetic-coded, lossless and hierarchical frames, which have no such floor.
    fn min_coded_bits(&self) -> Option<u64> {
        let bits_per_block = match self.marker {
            0xC0 | 0xC1 => 2,
            0xC2 => 1,
            _ => return None,
        };
        let h_max = self.sampling.iter().map(|s| s.0).max().filter(|&h| h > 0)?;
        let v_max = self.sampling.iter().map(|s| s.1).max().filter(|&v| v > 0)?;
        let blocks = |size: u32, factor: u64, max: u64| (u64::from(size) * factor).div_ceil(max).div_ceil(8);
        let total: u64 =
            self.sampling.iter().map(|&(h, v)| blocks(self.width, h, h_max) * blocks(self.height, v, v_max)).sum();
        Some(total * bits_per_block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, a baseline 3-component 4:2:0 frame header declaring `width` x `height`, a scan with
    /// `data` as its entropy-coded bytes, then EOI.
    fn jpeg(width: u16, height: u16, data: &[u8]) -> Vec<u8> {
        let mut b = vec![0xFF, 0xD8, 0xFF, 0xC0, 0, 17, 8];
        b.extend_from_slice(&height.to_be_bytes());
        b.extend_from_slice(&width.to_be_bytes());
        b.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
        b.extend_from_slice(&[0xFF, 0xDA, 0, 12, 3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0]);
        b.extend_from_slice(data);
        b.extend_from_slice(&[0xFF, 0xD9]);
        b
    }

    #[test]
    fn coded_bytes_skip_stuffing_fill_and_restart_markers() {
        let layout = JpegLayout::walk(&jpeg(16, 16, &[1, 2, 0xFF, 0x00, 3, 0xFF, 0xD0, 4, 0xFF, 0xFF])).expect("walk");
        assert!(layout.reaches_end);
        assert_eq!(layout.coded_bytes, 5);
        let frame = layout.frame.expect("frame");
        assert_eq!((frame.width, frame.height, frame.sampling.len()), (16, 16, 3));
    }

    #[test]
    fn the_floor_is_two_bits_per_block_in_a_baseline_frame() {
        // 16x16 at 4:2:0: four luma blocks and one block per chroma component.
        let frame = JpegLayout::walk(&jpeg(16, 16, &[0; 2])).and_then(|l| l.frame).expect("frame");
        assert_eq!(frame.min_coded_bits(), Some(6 * 2));
        assert_eq!(jpeg_truncation(&jpeg(16, 16, &[0; 2])), None);
        let err = jpeg_truncation(&jpeg(800, 800, &[0; 100])).expect("too little data");
        assert_eq!(err, "data ends before the declared 800x800 image: 100 bytes of coded data, at least 3750 needed");
    }

    #[test]
    fn a_missing_end_marker_is_truncation_and_unknown_structure_no_verdict() {
        let full = jpeg(16, 16, &[0; 4]);
        let cut = &full[..full.len() - 2];
        assert_eq!(jpeg_truncation(cut), Some(format!("no end-of-image marker in its {} bytes", cut.len())));
        assert_eq!(jpeg_truncation(&[0xFF, 0xD8, 0x12, 0x34, 0x56]), None);
    }
}
