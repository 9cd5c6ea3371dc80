//! Turning decoded images into a model's input: resize, centre crop, normalise to planar f32.

use weir_ops::image::ImageView;
use weir_ops::image::crop::crop;

use super::pil_resize::resize_like_pil;

/// What an image model expects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputSpec {
    /// Side of the square input.
    pub size: u32,
    /// Shorter side the image is resized to before the centre crop (the usual 224/0.875).
    pub resize_to: u32,
    /// Per-channel mean and standard deviation of RGB values scaled to 0..1.
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

/// The ImageNet statistics torchvision models are trained with.
pub const IMAGENET: InputSpec =
    InputSpec { size: 224, resize_to: 256, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

impl InputSpec {
    /// Elements of one prepared image (`3 * size * size`).
    pub fn elements(&self) -> usize {
        3 * self.size as usize * self.size as usize
    }

    /// One image as normalised planar RGB (`3 x size x size`). An image of exactly the input
    /// size is used as it is; any other is centre-cropped as if resized to `resize_to` on its
    /// shorter side first, then resized (bilinear, as Pillow does it). Grey images are repeated to three channels and alpha is dropped.
    ///
    /// # Errors
    /// A message when the image's buffer does not match its size or it has no pixels.
    pub fn prepare(&self, img: ImageView<'_>) -> Result<Vec<f32>, String> {
        if img.width == 0 || img.height == 0 {
            return Err(format!("image is {}x{}: nothing to classify", img.width, img.height));
        }
        let owned;
        let square = if (img.width, img.height) == (self.size, self.size) {
            img
        } else {
            // The centre square that survives "shorter side to resize_to, then crop size", cut
            // first: resizing only it costs less and cannot blow up on extreme aspect ratios.
            let shorter = img.width.min(img.height);
            let side = ((u64::from(shorter) * u64::from(self.size)) / u64::from(self.resize_to.max(self.size))).max(1);
            let side = side as u32;
            let centre = crop(img, ((img.width - side) / 2, (img.height - side) / 2, side, side))?;
            // Pillow's bilinear, bit for bit: the pixels the model's PIL-based training and
            // reference pipelines give it (our general resize differs by a grey level here and
            // there, which flips near-ties).
            owned = resize_like_pil(centre.view(), self.size, self.size)?;
            owned.view()
        };
        let c = usize::from(square.channels);
        let plane = self.size as usize * self.size as usize;
        if square.data.len() < plane * c || c == 0 {
            return Err(format!("image buffer holds {} bytes, fewer than its size says", square.data.len()));
        }
        let mut out = vec![0f32; 3 * plane];
        for (i, pixel) in square.data.chunks_exact(c).take(plane).enumerate() {
            for ch in 0..3 {
                let value = f32::from(pixel[if c >= 3 { ch } else { 0 }]) / 255.0;
                out[ch * plane + i] = (value - self.mean[ch]) / self.std[ch];
            }
        }
        Ok(out)
    }
}
