//! Bilinear resizing exactly as Pillow does it, for a model's input: the pixels its training
//! pipeline (torchvision on PIL) produced, not a neighbour of them.
//!
//! Pillow's `Image.resize(size, BILINEAR)` convolves each axis with a triangle filter widened by
//! the downscale factor, coefficients in 22-bit fixed point, the horizontal pass first and its
//! result rounded to 8 bits (`libImaging/Resample.c`). Our general `image.resize` (fast_image_resize)
//! differs by a grey level here and there, which is enough to flip a classifier's near-ties.

use weir_ops::image::{Image, ImageView};

/// Pillow's fixed-point precision for 8-bit images (`32 - 8 - 2`).
const PRECISION_BITS: u32 = 22;

/// One output sample's taps: the first input index and the fixed-point weights.
struct Taps {
    first: usize,
    weights: Vec<i32>,
}

/// Pillow's `precompute_coeffs` for the bilinear filter (support 1), then
/// `normalize_coeffs_8bpc`.
fn taps(in_size: usize, out_size: usize) -> Vec<Taps> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale;
    let reciprocal = 1.0 / filter_scale;
    (0..out_size)
        .map(|out| {
            let centre = (out as f64 + 0.5) * scale;
            let first = ((centre - support + 0.5) as i64).max(0) as usize;
            let end = ((centre + support + 0.5) as i64).clamp(0, in_size as i64) as usize;
            let raw: Vec<f64> = (first..end)
                .map(|x| {
                    let t = ((x as f64 - centre + 0.5) * reciprocal).abs();
                    if t < 1.0 { 1.0 - t } else { 0.0 }
                })
                .collect();
            let total: f64 = raw.iter().sum();
            let one = f64::from(1u32 << PRECISION_BITS);
            let weights = raw
                .iter()
                .map(|w| {
                    let w = if total != 0.0 { w / total } else { 0.0 };
                    if w < 0.0 { (-0.5 + w * one) as i32 } else { (0.5 + w * one) as i32 }
                })
                .collect();
            Taps { first, weights }
        })
        .collect()
}

/// One tap sum, rounded and clipped to 8 bits as Pillow's `clip8` does.
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's horizontal pass over rows of `width` pixels of `C` channels.
fn horizontal_pass<const C: usize>(data: &[u8], width: usize, across: &[Taps], out: &mut [u8]) {
    let half = 1i32 << (PRECISION_BITS - 1);
    for (row_in, row_out) in data.chunks_exact(width * C).zip(out.chunks_exact_mut(across.len() * C)) {
        for (tap, pixel_out) in across.iter().zip(row_out.chunks_exact_mut(C)) {
            let mut sums = [half; C];
            for (weight, pixel_in) in tap.weights.iter().zip(row_in[tap.first * C..].chunks_exact(C)) {
                for (sum, value) in sums.iter_mut().zip(pixel_in) {
                    *sum += i32::from(*value) * weight;
                }
            }
            for (value, sum) in pixel_out.iter_mut().zip(sums) {
                *value = clip8(sum);
            }
        }
    }
}

/// `img` resized to `width` x `height` as Pillow's `Image.resize((width, height), BILINEAR)`
/// gives it, bit for bit.
///
/// # Errors
/// A message when the image's buffer is shorter than its size says, either size is zero, or it
/// has other than 1, 3 or 4 channels.
pub fn resize_like_pil(img: ImageView<'_>, width: u32, height: u32) -> Result<Image, String> {
    let (w, h, c) = (img.width as usize, img.height as usize, usize::from(img.channels));
    if w == 0 || h == 0 || width == 0 || height == 0 || c == 0 {
        return Err(format!("cannot resize {w}x{h} to {width}x{height}"));
    }
    if img.data.len() < w * h * c {
        return Err(format!("image buffer holds {} bytes, fewer than its {w}x{h}x{c} size", img.data.len()));
    }
    let (out_w, out_h) = (width as usize, height as usize);
    // Sums fit in i32: the weights of a sample add up to 2^22, a value is at most 255.
    let half = 1i32 << (PRECISION_BITS - 1);
    // Pillow skips a pass whose size does not change.
    let horizontal = if out_w == w {
        img.data[..w * h * c].to_vec()
    } else {
        let across = taps(w, out_w);
        let mut out = vec![0u8; out_w * h * c];
        match c {
            1 => horizontal_pass::<1>(&img.data[..w * h], w, &across, &mut out),
            3 => horizontal_pass::<3>(&img.data[..w * h * 3], w, &across, &mut out),
            4 => horizontal_pass::<4>(&img.data[..w * h * 4], w, &across, &mut out),
            _ => return Err(format!("cannot resize an image of {c} channels")),
        }
        out
    };
    if out_h == h {
        return Ok(Image { width, height, channels: img.channels, data: horizontal });
    }
    let down = taps(h, out_h);
    let stride = out_w * c;
    let mut data = vec![0u8; out_h * stride];
    let mut sums = vec![0i32; stride];
    for (tap, row_out) in down.iter().zip(data.chunks_exact_mut(stride)) {
        sums.fill(half);
        // Whole rows at a time, so the multiply-adds run across the row in vector registers.
        let rows_in = horizontal[tap.first * stride..].chunks_exact(stride);
        for (weight, row_in) in tap.weights.iter().zip(rows_in) {
            for (sum, value) in sums.iter_mut().zip(row_in) {
                *sum += i32::from(*value) * weight;
            }
        }
        for (value, sum) in row_out.iter_mut().zip(&sums) {
            *value = clip8(*sum);
        }
    }
    Ok(Image { width, height, channels: img.channels, data })
}
