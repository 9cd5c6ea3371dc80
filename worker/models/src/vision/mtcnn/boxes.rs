//! Box arithmetic of MTCNN's cascade: candidates from P-Net's map, non-maximum suppression,
//! regression, squaring, and area-averaged resampling of crops.

/// A box `[x1, y1, x2, y2]` in image pixels, its face score, and the offsets the network
/// predicted for it (fractions of its width and height).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub bbox: [f32; 4],
    pub score: f32,
    pub offsets: [f32; 4],
}

/// How overlap is measured for suppression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    /// Intersection over union, areas without the `+1` pixel (as torchvision's `nms`).
    Union,
    /// Intersection over the smaller box, areas with the `+1` pixel (MTCNN's last stage).
    Min,
}

/// The candidates P-Net found at one pyramid `scale`: every cell of the `height x width`
/// probability map at or above `threshold` is a 12x12 window at stride 2 of the scaled image.
pub fn proposals(probability: &[f32], offsets: &[f32], width: usize, scale: f32, threshold: f32) -> Vec<Candidate> {
    let plane = probability.len();
    probability
        .iter()
        .enumerate()
        .filter(|(_, p)| **p >= threshold)
        .map(|(i, p)| {
            let (y, x) = ((i / width) as f32, (i % width) as f32);
            let at = |c: usize| offsets.get(c * plane + i).copied().unwrap_or(0.0);
            Candidate {
                bbox: [
                    ((2.0 * x + 1.0) / scale).floor(),
                    ((2.0 * y + 1.0) / scale).floor(),
                    ((2.0 * x + 12.0) / scale).floor(),
                    ((2.0 * y + 12.0) / scale).floor(),
                ],
                score: *p,
                offsets: [at(0), at(1), at(2), at(3)],
            }
        })
        .collect()
}

/// Greedy non-maximum suppression: the best candidates, each suppressing those that overlap it
/// by more than `threshold`; best first.
pub fn suppress(mut candidates: Vec<Candidate>, threshold: f32, overlap: Overlap) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let plus = if overlap == Overlap::Min { 1.0 } else { 0.0 };
    let area = |b: &[f32; 4]| (b[2] - b[0] + plus).max(0.0) * (b[3] - b[1] + plus).max(0.0);
    let mut kept: Vec<Candidate> = Vec::new();
    for candidate in candidates {
        let c = &candidate.bbox;
        let overlaps = kept.iter().any(|k| {
            let b = &k.bbox;
            let w = (c[2].min(b[2]) - c[0].max(b[0]) + plus).max(0.0);
            let h = (c[3].min(b[3]) - c[1].max(b[1]) + plus).max(0.0);
            let inter = w * h;
            let ratio = match overlap {
                Overlap::Union => inter / (area(c) + area(b) - inter),
                Overlap::Min => inter / area(c).min(area(b)),
            };
            ratio > threshold
        });
        if !overlaps {
            kept.push(candidate);
        }
    }
    kept
}

/// Moves each edge by its predicted offset; `plus` is 1 where MTCNN measures sizes inclusively.
pub fn regress(candidate: &Candidate, plus: f32) -> [f32; 4] {
    let [x1, y1, x2, y2] = candidate.bbox;
    let (w, h) = (x2 - x1 + plus, y2 - y1 + plus);
    let o = candidate.offsets;
    [x1 + o[0] * w, y1 + o[1] * h, x2 + o[2] * w, y2 + o[3] * h]
}

/// The square of side `max(width, height)` with the same centre.
pub fn square(b: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    let side = w.max(h);
    let (x1, y1) = (b[0] + w * 0.5 - side * 0.5, b[1] + h * 0.5 - side * 0.5);
    [x1, y1, x1 + side, y1 + side]
}

/// The pixel rows and columns (`[x1, x2) x [y1, y2)`) of a box clipped to the image, as MTCNN
/// crops them (coordinates truncated, 1-based starts); `None` when nothing is left.
pub fn crop_window(b: [f32; 4], width: usize, height: usize) -> Option<(usize, usize, usize, usize)> {
    let x = (b[0].trunc() as i64).max(1);
    let y = (b[1].trunc() as i64).max(1);
    let ex = (b[2].trunc() as i64).min(width as i64);
    let ey = (b[3].trunc() as i64).min(height as i64);
    (ex > x - 1 && ey > y - 1).then(|| ((x - 1) as usize, ex as usize, (y - 1) as usize, ey as usize))
}

/// Resamples a `channels x height x width` plane stack to `out_h x out_w` by averaging the input
/// area each output pixel covers (PyTorch's `interpolate(mode="area")`).
pub fn area_resize(
    pixels: &[f32],
    channels: usize,
    height: usize,
    width: usize,
    out_h: usize,
    out_w: usize,
) -> Vec<f32> {
    let spans = |input: usize, output: usize| -> Vec<(usize, usize)> {
        (0..output).map(|i| (i * input / output, ((i + 1) * input).div_ceil(output))).collect()
    };
    let (cols, rows) = (spans(width, out_w), spans(height, out_h));
    let mut across = vec![0f32; channels * height * out_w];
    for c in 0..channels {
        for y in 0..height {
            let line = &pixels[(c * height + y) * width..(c * height + y + 1) * width];
            for (x, (start, end)) in cols.iter().enumerate() {
                across[(c * height + y) * out_w + x] = line[*start..*end].iter().sum::<f32>() / (end - start) as f32;
            }
        }
    }
    let mut out = vec![0f32; channels * out_h * out_w];
    for c in 0..channels {
        for (y, (start, end)) in rows.iter().enumerate() {
            for x in 0..out_w {
                let sum: f32 = (*start..*end).map(|r| across[(c * height + r) * out_w + x]).sum();
                out[(c * out_h + y) * out_w + x] = sum / (end - start) as f32;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(bbox: [f32; 4], score: f32) -> Candidate {
        Candidate { bbox, score, offsets: [0.0; 4] }
    }

    #[test]
    fn suppression_keeps_the_best_of_overlapping_boxes() {
        let boxes = vec![
            candidate([0.0, 0.0, 10.0, 10.0], 0.8),
            candidate([1.0, 1.0, 11.0, 11.0], 0.9),
            candidate([20.0, 20.0, 30.0, 30.0], 0.7),
        ];
        let kept = suppress(boxes.clone(), 0.5, Overlap::Union);
        assert_eq!(kept.iter().map(|c| c.score).collect::<Vec<_>>(), vec![0.9, 0.7]);
        // A small box inside a big one overlaps it fully by the smaller area.
        let nested = vec![candidate([0.0, 0.0, 100.0, 100.0], 0.9), candidate([10.0, 10.0, 20.0, 20.0], 0.8)];
        assert_eq!(suppress(nested.clone(), 0.7, Overlap::Min).len(), 1);
        assert_eq!(suppress(nested, 0.7, Overlap::Union).len(), 2);
    }

    #[test]
    fn proposals_map_cells_back_to_image_windows() {
        // A 2x2 map at scale 0.5: cell (y=1, x=0) covers pixels 2..26 horizontally.
        let probability = [0.1, 0.2, 0.95, 0.3];
        let offsets = [0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 0.2, 0.0, 0.0, 0.0, 0.3, 0.0, 0.0, 0.0, 0.4, 0.0];
        let found = proposals(&probability, &offsets, 2, 0.5, 0.6);
        assert_eq!(found, vec![Candidate { bbox: [2.0, 6.0, 24.0, 28.0], score: 0.95, offsets: [0.1, 0.2, 0.3, 0.4] }]);
    }

    #[test]
    fn regression_squaring_and_clipping() {
        let c = Candidate { bbox: [10.0, 10.0, 29.0, 39.0], score: 1.0, offsets: [0.1, 0.0, -0.1, 0.0] };
        assert_eq!(regress(&c, 1.0), [12.0, 10.0, 27.0, 39.0]);
        assert_eq!(square([10.0, 10.0, 20.0, 40.0]), [0.0, 10.0, 30.0, 40.0]);
        assert_eq!(crop_window([-5.0, 2.7, 50.0, 8.0], 40, 30), Some((0, 40, 1, 8)));
        assert_eq!(crop_window([45.0, 2.0, 50.0, 8.0], 40, 30), None);
    }

    #[test]
    fn area_resize_averages_the_covered_pixels() {
        let pixels: Vec<f32> = (0..16).map(|v| v as f32).collect();
        assert_eq!(area_resize(&pixels, 1, 4, 4, 2, 2), vec![2.5, 4.5, 10.5, 12.5]);
        // Non-integer ratios take every input pixel an output overlaps (3 -> 2: [0, 2) and [1, 3)).
        assert_eq!(area_resize(&[0.0, 3.0, 6.0], 1, 1, 3, 1, 2), vec![1.5, 4.5]);
    }
}
