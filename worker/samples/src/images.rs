//! Photo-like test images, their encodings, and deliberately bad image files.

use std::io::Write;
use std::path::{Path, PathBuf};

use image::{ImageEncoder, RgbImage};

/// A small deterministic PRNG (xorshift64*), so fixtures need no extra crate.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next_u64() % u64::from(hi - lo + 1)) as u32
    }
}

/// A photo-like RGB image: smooth gradients, a few soft shapes and grain, so that JPEG sizes are
/// close to real photos (~0.3 bytes per pixel at quality 90).
pub fn gradient(width: u32, height: u32, seed: u64) -> RgbImage {
    let mut rng = Rng::new(seed);
    let base: [f32; 3] = [rng.range(30, 220) as f32, rng.range(30, 220) as f32, rng.range(30, 220) as f32];
    let blobs: Vec<(f32, f32, f32, [f32; 3])> = (0..4)
        .map(|_| {
            let (cx, cy) = (rng.range(0, width) as f32, rng.range(0, height) as f32);
            let r = rng.range(width.min(height) / 8 + 1, width.max(height) / 2 + 2) as f32;
            (cx, cy, r, [rng.range(0, 255) as f32, rng.range(0, 255) as f32, rng.range(0, 255) as f32])
        })
        .collect();
    let mut grain = Rng::new(seed ^ 0xA5A5);
    RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let mut px = [base[0] * (0.6 + 0.4 * fx), base[1] * (0.6 + 0.4 * fy), base[2] * (1.0 - 0.3 * fx * fy)];
        for (cx, cy, r, color) in &blobs {
            let d = ((x as f32 - cx).powi(2) + (y as f32 - cy).powi(2)).sqrt() / r;
            let w = (1.0 - d).clamp(0.0, 1.0);
            for c in 0..3 {
                px[c] = px[c] * (1.0 - w) + color[c] * w;
            }
        }
        let noise = (grain.next_u64() % 29) as f32 - 14.0;
        image::Rgb(px.map(|v| (v + noise).clamp(0.0, 255.0) as u8))
    })
}

/// JPEG bytes of `img`.
pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let encoder = jpeg_encoder::Encoder::new(&mut out, quality);
    // Encoding into a Vec cannot fail for valid dimensions, which `img` has by construction.
    let _ = encoder.encode(img.as_raw(), img.width() as u16, img.height() as u16, jpeg_encoder::ColorType::Rgb);
    out
}

/// PNG bytes of `img`.
pub fn encode_png(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = image::codecs::png::PngEncoder::new(&mut out).write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    );
    out
}

/// A PNG whose header claims `width` x `height` but whose data is a few bytes: a decompression bomb
/// as far as any decoder that trusts the header is concerned.
pub fn png_header_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut out = vec![0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    push_chunk(&mut out, b"IHDR", &ihdr);
    push_chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00]);
    push_chunk(&mut out, b"IEND", &[]);
    out
}

fn push_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// Options of [`write_jpeg_set`].
#[derive(Debug, Clone, Copy)]
pub struct JpegSet {
    pub count: usize,
    pub min_side: u32,
    pub max_side: u32,
    pub quality: u8,
    pub seed: u64,
}

impl Default for JpegSet {
    /// The benchmark's set: 300-800 px sides, quality 85 (~85 KB each).
    fn default() -> Self {
        Self { count: 2000, min_side: 300, max_side: 800, quality: 85, seed: 42 }
    }
}

/// Writes `set.count` JPEGs named `img-00000.jpg`... into `dir`; returns their paths.
///
/// # Errors
/// I/O errors creating the directory or files.
pub fn write_jpeg_set(dir: &Path, set: JpegSet) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng::new(set.seed);
    let mut paths = Vec::with_capacity(set.count);
    for i in 0..set.count {
        let (w, h) = (rng.range(set.min_side, set.max_side), rng.range(set.min_side, set.max_side));
        let path = dir.join(format!("img-{i:05}.jpg"));
        std::fs::write(&path, encode_jpeg(&gradient(w, h, set.seed.wrapping_add(i as u64)), set.quality))?;
        paths.push(path);
    }
    Ok(paths)
}

/// The kinds of bad file [`write_bad_files`] writes, with their file names.
pub const BAD_FILES: &[&str] = &["corrupt.jpg", "truncated.jpg", "empty.jpg", "notes.jpg", "bomb.png"];

/// Writes one file of each kind in [`BAD_FILES`] into `dir`: random bytes with a JPEG magic, a
/// JPEG cut off at a third, a zero-byte file, text, and a PNG claiming 50000x50000 pixels.
///
/// # Errors
/// I/O errors.
pub fn write_bad_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut rng = Rng::new(7);
    let mut corrupt = vec![0xFF, 0xD8, 0xFF, 0xE0];
    corrupt.extend((0..4000).map(|_| rng.next_u64() as u8));
    let jpeg = encode_jpeg(&gradient(320, 240, 3), 90);
    let contents: [Vec<u8>; 5] = [
        corrupt,
        jpeg[..jpeg.len() / 3].to_vec(),
        Vec::new(),
        b"this is a text file, not an image\n".to_vec(),
        png_header_claiming(50_000, 50_000),
    ];
    let mut paths = Vec::new();
    for (name, bytes) in BAD_FILES.iter().zip(contents) {
        let path = dir.join(name);
        std::fs::File::create(&path)?.write_all(&bytes)?;
        paths.push(path);
    }
    Ok(paths)
}
