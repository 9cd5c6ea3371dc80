//! MTCNN face detection (Zhang et al., 2016), as facenet-pytorch runs it: P-Net proposes
//! windows over an image pyramid, R-Net and O-Net refine them on 24x24 and 48x48 crops.

mod boxes;
mod nets;

use candle_core::{Device, Tensor};
use weir_crds::ModelSpec;
use weir_ops::image::ImageView;

use self::boxes::{Candidate, Overlap, area_resize, crop_window, proposals, regress, square, suppress};
use self::nets::{PNet, RefineNet};
use crate::weights::Weights;
use crate::{ModelError, device};

/// Pyramid step between scales.
const PYRAMID_FACTOR: f32 = 0.709;
/// P-Net and R-Net score thresholds (O-Net's is the caller's minimum score).
const PROPOSAL_THRESHOLDS: [f32; 2] = [0.6, 0.7];
/// Crops refined per forward pass.
const CROPS_PER_PASS: usize = 256;

/// One detected face.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// `[x1, y1, x2, y2]` in pixels; may reach past the image's edges.
    pub bbox: [f32; 4],
    pub score: f32,
}

/// What to look for.
#[derive(Debug, Clone, Copy)]
pub struct DetectOptions {
    /// Smallest face side searched for, in pixels.
    pub min_size: u32,
    /// O-Net score a detection needs.
    pub min_score: f32,
    pub max_detections: usize,
}

/// The three networks, loaded once and shared.
pub struct Mtcnn {
    pnet: PNet,
    rnet: RefineNet,
    onet: RefineNet,
    device: Device,
}

impl Mtcnn {
    /// Loads `pnet.*`, `rnet.*` and `onet.*` from one weights file (`weir model convert pnet.pt
    /// rnet.pt onet.pt mtcnn.safetensors` writes it from facenet-pytorch's files).
    ///
    /// # Errors
    /// [`ModelError`] naming a missing or misshapen tensor, or an unavailable device.
    pub fn load(spec: &ModelSpec, weights: &Weights) -> Result<Self, ModelError> {
        let device = device::select(spec.device)?;
        Ok(Self {
            pnet: PNet::load(weights, &device)?,
            rnet: RefineNet::load_rnet(weights, &device)?,
            onet: RefineNet::load_onet(weights, &device)?,
            device,
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The faces in one image, best first.
    ///
    /// # Errors
    /// A message for an image that cannot be searched (too small for `min_size`'s pyramid is
    /// not an error: it has no faces); a tensor failure is reported the same way.
    pub fn detect(&self, img: ImageView<'_>, options: &DetectOptions) -> Result<Vec<Detection>, String> {
        let (w, h) = (img.width as usize, img.height as usize);
        let pixels = planar_rgb(img)?;
        let run = |e: candle_core::Error| format!("face detection failed: {e}");
        let found = self.propose(&pixels, w, h, options.min_size).map_err(run)?;
        let found = self.refine(&self.rnet, &pixels, w, h, found, 24, PROPOSAL_THRESHOLDS[1]).map_err(run)?;
        let found: Vec<Candidate> = suppress(found, 0.7, Overlap::Union)
            .into_iter()
            .map(|c| Candidate { bbox: square(regress(&c, 1.0)), ..c })
            .collect();
        let found = self.refine(&self.onet, &pixels, w, h, found, 48, options.min_score).map_err(run)?;
        let found: Vec<Candidate> = found.into_iter().map(|c| Candidate { bbox: regress(&c, 1.0), ..c }).collect();
        let mut faces = suppress(found, 0.7, Overlap::Min);
        faces.truncate(options.max_detections);
        Ok(faces.into_iter().map(|c| Detection { bbox: c.bbox, score: c.score }).collect())
    }

    /// Stage one: P-Net over the pyramid, suppressed per scale and then across scales,
    /// regressed and squared.
    fn propose(&self, pixels: &[f32], w: usize, h: usize, min_size: u32) -> candle_core::Result<Vec<Candidate>> {
        let mut scale = 12.0 / min_size.max(12) as f32;
        let mut side = w.min(h) as f32 * scale;
        let mut all = Vec::new();
        while side >= 12.0 {
            let (sh, sw) = ((h as f32 * scale + 1.0) as usize, (w as f32 * scale + 1.0) as usize);
            let level = normalised(area_resize(pixels, 3, h, w, sh, sw));
            let (probability, offsets) = self.pnet.forward(&Tensor::from_vec(level, (1, 3, sh, sw), &self.device)?)?;
            let map_w = probability.dim(1)?;
            let probability = probability.flatten_all()?.to_vec1::<f32>()?;
            let offsets = offsets.flatten_all()?.to_vec1::<f32>()?;
            let found = proposals(&probability, &offsets, map_w, scale, PROPOSAL_THRESHOLDS[0]);
            all.extend(suppress(found, 0.5, Overlap::Union));
            scale *= PYRAMID_FACTOR;
            side *= PYRAMID_FACTOR;
        }
        Ok(suppress(all, 0.7, Overlap::Union)
            .into_iter()
            .map(|c| Candidate { bbox: square(regress(&c, 0.0)), ..c })
            .collect())
    }

    /// Stages two and three: scores each candidate's crop (resampled to `size`) with `net`,
    /// keeping those at or above `threshold` with the new score and offsets.
    #[allow(clippy::too_many_arguments)]
    fn refine(
        &self,
        net: &RefineNet,
        pixels: &[f32],
        w: usize,
        h: usize,
        candidates: Vec<Candidate>,
        size: usize,
        threshold: f32,
    ) -> candle_core::Result<Vec<Candidate>> {
        let crops: Vec<(Candidate, Vec<f32>)> = candidates
            .into_iter()
            .filter_map(|c| crop_window(c.bbox, w, h).map(|window| (c, crop(pixels, w, h, window, size))))
            .collect();
        let mut kept = Vec::new();
        for chunk in crops.chunks(CROPS_PER_PASS) {
            let data: Vec<f32> = chunk.iter().flat_map(|(_, p)| p.iter().copied()).collect();
            let input = Tensor::from_vec(data, (chunk.len(), 3, size, size), &self.device)?;
            let (probability, offsets) = net.forward(&input)?;
            let probability = probability.to_vec1::<f32>()?;
            let offsets = offsets.to_vec2::<f32>()?;
            for (((candidate, _), p), o) in chunk.iter().zip(probability).zip(offsets) {
                if p >= threshold {
                    kept.push(Candidate { bbox: candidate.bbox, score: p, offsets: [o[0], o[1], o[2], o[3]] });
                }
            }
        }
        Ok(kept)
    }
}

/// The image as three f32 planes (R, G, B) of 0-255 values.
fn planar_rgb(img: ImageView<'_>) -> Result<Vec<f32>, String> {
    let (w, h, c) = (img.width as usize, img.height as usize, usize::from(img.channels));
    if w == 0 || h == 0 {
        return Err(format!("image is {w}x{h}: nothing to search"));
    }
    if !matches!(c, 1 | 3 | 4) || img.data.len() != w * h * c {
        return Err(format!("image is not {w}x{h} pixels of 1, 3 or 4 channels"));
    }
    let plane = w * h;
    let mut out = vec![0f32; 3 * plane];
    for (i, px) in img.data.chunks_exact(c).enumerate() {
        for ch in 0..3 {
            out[ch * plane + i] = f32::from(px[if c == 1 { 0 } else { ch }]);
        }
    }
    Ok(out)
}

/// MTCNN's input scaling: `(x - 127.5) / 128`.
fn normalised(mut pixels: Vec<f32>) -> Vec<f32> {
    pixels.iter_mut().for_each(|p| *p = (*p - 127.5) * 0.0078125);
    pixels
}

/// The window `[x1, x2) x [y1, y2)` of the planar image, resampled to `size x size`, normalised.
fn crop(pixels: &[f32], w: usize, h: usize, (x1, x2, y1, y2): (usize, usize, usize, usize), size: usize) -> Vec<f32> {
    let (cw, ch) = (x2 - x1, y2 - y1);
    let mut window = Vec::with_capacity(3 * cw * ch);
    for c in 0..3 {
        for y in y1..y2 {
            let row = (c * h + y) * w;
            window.extend_from_slice(&pixels[row + x1..row + x2]);
        }
    }
    normalised(area_resize(&window, 3, ch, cw, size, size))
}
