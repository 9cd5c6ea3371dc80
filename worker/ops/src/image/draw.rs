//! `image.draw`: detections (lists of `{bbox, score, label}`, as `image.detect` makes) drawn onto
//! images as box outlines with `label score` captions in an 8x8 bitmap font, clipped to the image.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, Float64Array, ListArray, RecordBatch, StringArray};
use arrow_buffer::NullBuffer;
use arrow_schema::DataType;
use font8x8::legacy::BASIC_LEGACY;
use rayon::prelude::*;
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{Step, StepError, StepOutput};
use weir_crds::ImageDraw;

use super::crop::bboxes;
use super::{ImageColumn, split_results};
use crate::BuildError;

/// Outline width when the manifest does not say.
pub const DEFAULT_LINE_WIDTH: u32 = 2;
/// Widest outline the CRD allows.
const MAX_LINE_WIDTH: u32 = 64;
/// Glyph side in pixels (font8x8).
const GLYPH: i64 = 8;
/// Pixels between a caption's background edge and its text.
const PAD: i64 = 1;
/// Coordinates are clamped to ±this before drawing: far past any image (widths are `u32`), so
/// clipping is unchanged, and near enough to zero that sums of them cannot overflow an `i64`.
const FAR: f64 = (1u64 << 40) as f64;

/// An RGB colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub [u8; 3]);

const BLACK: Rgb = Rgb([0, 0, 0]);
const WHITE: Rgb = Rgb([255, 255, 255]);

/// Box colours when the manifest sets none, one per label (matplotlib's `tab10`).
const PALETTE: [Rgb; 10] = [
    Rgb([31, 119, 180]),
    Rgb([255, 127, 14]),
    Rgb([44, 160, 44]),
    Rgb([214, 39, 40]),
    Rgb([148, 103, 189]),
    Rgb([140, 86, 75]),
    Rgb([227, 119, 194]),
    Rgb([127, 127, 127]),
    Rgb([188, 189, 34]),
    Rgb([23, 190, 207]),
];

impl Rgb {
    /// Parses `#rrggbb` (hexadecimal digits of either case); `None` for anything else.
    pub fn parse(text: &str) -> Option<Rgb> {
        let hex = text.strip_prefix('#').filter(|h| h.len() == 6 && h.bytes().all(|b| b.is_ascii_hexdigit()))?;
        let channel = |i: usize| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok();
        Some(Rgb([channel(0)?, channel(2)?, channel(4)?]))
    }

    /// The palette's colour for `label`: the same label gets the same colour in every row and
    /// every run (FNV-1a of its bytes; std's hasher may change between Rust releases).
    pub fn for_label(label: &str) -> Rgb {
        let hash =
            label.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        PALETTE[(hash % PALETTE.len() as u64) as usize]
    }

    /// Luma as `image.decode`'s `L` mode computes it (Rec. 709 weights).
    fn luma(self) -> u8 {
        let [r, g, b] = self.0.map(u32::from);
        ((2126 * r + 7152 * g + 722 * b) / 10_000) as u8
    }

    /// Black or white, whichever reads better on this colour.
    fn ink(self) -> Rgb {
        if self.luma() >= 128 { BLACK } else { WHITE }
    }

    /// This colour as the first `channels` bytes of a pixel: luma for `L`, opaque for `RGBA`.
    fn pixel(self, channels: usize) -> [u8; 4] {
        let [r, g, b] = self.0;
        if channels == 1 { [self.luma(); 4] } else { [r, g, b, 255] }
    }
}

/// How detections are drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Style {
    /// Outline width in pixels, inside the box.
    pub line_width: u32,
    /// Whether each box gets a `label score` caption.
    pub labels: bool,
    /// Detections scoring below this are skipped (with a null or NaN score too, unless it is 0).
    pub min_score: f64,
    /// One colour for every box; `None`: each label's ([`Rgb::for_label`]).
    pub color: Option<Rgb>,
}

/// The runnable `image.draw` step.
#[derive(Debug, Clone)]
pub struct DrawDetections {
    pub input: String,
    pub detections: String,
    pub output: String,
    pub style: Style,
}

/// Builds `image.draw` from its config.
///
/// # Errors
/// When `color` is not `#rrggbb` or `lineWidth` is outside 1..=64 (the CRD refuses both first).
pub fn build(config: &ImageDraw) -> Result<Arc<dyn Step>, BuildError> {
    let color = match &config.color {
        Some(text) => Some(Rgb::parse(text).ok_or_else(|| {
            BuildError::new(
                "color",
                format!("must be `#rrggbb`, six hexadecimal digits (`#ff0000` is red), found `{text}`"),
            )
        })?),
        None => None,
    };
    let line_width = config.line_width.unwrap_or(DEFAULT_LINE_WIDTH);
    if !(1..=MAX_LINE_WIDTH).contains(&line_width) {
        return Err(BuildError::new("lineWidth", format!("must be 1 to {MAX_LINE_WIDTH} pixels, found {line_width}")));
    }
    let style = Style {
        line_width,
        labels: config.labels.unwrap_or(true),
        min_score: f64::from(config.min_score.unwrap_or(0.0)),
        color,
    };
    Ok(Arc::new(ComputeStep(DrawDetections {
        input: config.input.clone(),
        detections: config.detections.clone(),
        output: config.output.clone(),
        style,
    })))
}

impl Kernel for DrawDetections {
    /// Copies the morsel's pixels once and draws on the copy, row by row in parallel. Drawing
    /// allocates next to nothing (a caption's text), so no other thread's peak is measured.
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let images = ImageColumn::from_batch(input, &self.input)?;
        let lists = DetectionLists::new(&weir_core::batch::column_path(input, &self.detections)?, &self.detections)?;
        let mut pixels = images.copy_pixels()?;
        let results: Vec<Option<Result<(), String>>> = pixels
            .rows_mut()
            .into_par_iter()
            .enumerate()
            .map(|(row, data)| {
                let img = images.get(row)?;
                Some(Canvas::new(img.width, img.height, img.channels, data).and_then(|mut canvas| {
                    let kept = lists.kept(row, self.style.min_score)?;
                    canvas.draw(&kept, &self.style);
                    Ok(())
                }))
            })
            .collect();
        let (_, failures) = split_results(results);
        let failed: Vec<usize> = failures.iter().map(|f| f.row).collect();
        StepOutput::with_column(input, &self.output, images.with_pixels(pixels, &failed)?, failures)
    }
}

/// One detection to draw.
#[derive(Debug, Clone, PartialEq)]
struct Detection<'a> {
    /// `[x1, y1, x2, y2]`, finite, `x1 <= x2`, `y1 <= y2`.
    bbox: [f64; 4],
    score: Option<f64>,
    label: Option<&'a str>,
}

impl Detection<'_> {
    /// `label score`, or whichever of the two the detection has.
    fn caption(&self) -> Option<String> {
        match (self.label.filter(|l| !l.is_empty()), self.score) {
            (Some(label), Some(score)) => Some(format!("{label} {score:.2}")),
            (Some(label), None) => Some(label.to_string()),
            (None, Some(score)) => Some(format!("{score:.2}")),
            (None, None) => None,
        }
    }

    fn color(&self, style: &Style) -> Rgb {
        style.color.unwrap_or_else(|| Rgb::for_label(self.label.unwrap_or_default()))
    }
}

/// The detections of each row, read from a list column of `{bbox, score, label}` structs (`score`
/// and `label` may be missing; `bbox` a list or fixed-size list of 4 floats).
struct DetectionLists {
    name: String,
    lists: ListArray,
    /// Offset of the lists' first detection in the arrays below, which hold only this morsel's.
    base: usize,
    /// Null detections, which draw nothing.
    nulls: Option<NullBuffer>,
    boxes: Vec<Option<[f64; 4]>>,
    scores: Option<Float64Array>,
    labels: Option<StringArray>,
}

impl DetectionLists {
    /// # Errors
    /// [`StepError::Column`] when `column` is not a list of structs with a `bbox` field of floats
    /// (and `score` numbers, `label` text, where present).
    fn new(column: &ArrayRef, name: &str) -> Result<Self, StepError> {
        let wrong = || {
            StepError::column(
                name,
                format!(
                    "expected a list of {{bbox, score, label}} (image.detect's output), found {}",
                    column.data_type()
                ),
            )
        };
        let lists = column.as_list_opt::<i32>().ok_or_else(wrong)?.clone();
        let offsets = lists.value_offsets();
        let base = offsets.first().map_or(0, |o| *o as usize);
        let end = offsets.last().map_or(0, |o| *o as usize);
        let values = lists.values().slice(base, end - base);
        let items = values.as_struct_opt().ok_or_else(wrong)?;
        let field = |f: &str, ty: &DataType| -> Result<Option<ArrayRef>, StepError> {
            let Some(child) = items.column_by_name(f) else { return Ok(None) };
            let cast = arrow_cast::cast(child, ty);
            cast.map(Some).map_err(|e| StepError::column(name, format!("detection field `{f}`: {e}")))
        };
        let bbox = items.column_by_name("bbox").ok_or_else(|| {
            let fields: Vec<&str> = items.fields().iter().map(|f| f.name().as_str()).collect();
            StepError::column(name, format!("the detections have no `bbox` field (fields: {})", fields.join(", ")))
        })?;
        Ok(Self {
            name: name.to_string(),
            base,
            nulls: items.nulls().cloned(),
            boxes: bboxes(bbox, name)?,
            scores: field("score", &DataType::Float64)?.map(|s| s.as_primitive::<Float64Type>().clone()),
            labels: field("label", &DataType::Utf8)?.map(|l| l.as_string::<i32>().clone()),
            lists,
        })
    }

    /// The detections of `row` that score at least `min_score`, in list order; none for a null
    /// list.
    ///
    /// # Errors
    /// A kept detection whose bbox is null, not 4 numbers, not finite, or has `x2 < x1` or
    /// `y2 < y1`: the message names the detection by its index in the row's list.
    fn kept(&self, row: usize, min_score: f64) -> Result<Vec<Detection<'_>>, String> {
        if row >= self.lists.len() || self.lists.is_null(row) {
            return Ok(Vec::new());
        }
        let offsets = self.lists.value_offsets();
        let (start, end) = (offsets[row] as usize - self.base, offsets[row + 1] as usize - self.base);
        let mut kept = Vec::new();
        for (index, at) in (start..end).enumerate() {
            if self.nulls.as_ref().is_some_and(|n| n.is_null(at)) {
                continue;
            }
            let score = self.scores.as_ref().filter(|s| s.is_valid(at)).map(|s| s.value(at));
            if min_score > 0.0 && !score.is_some_and(|s| s >= min_score) {
                continue;
            }
            let bbox = checked_bbox(self.boxes.get(at).copied().flatten(), index, &self.name)?;
            let label = self.labels.as_ref().filter(|l| l.is_valid(at)).map(|l| l.value(at));
            kept.push(Detection { bbox, score, label });
        }
        Ok(kept)
    }
}

/// `bbox` when it is 4 finite numbers with `x1 <= x2` and `y1 <= y2`.
///
/// # Errors
/// Otherwise, naming detection `index` of `column`.
fn checked_bbox(bbox: Option<[f64; 4]>, index: usize, column: &str) -> Result<[f64; 4], String> {
    let which = format!("detection {index} in `{column}`");
    let Some(bbox @ [x1, y1, x2, y2]) = bbox else {
        return Err(format!("{which}: bbox is null or not 4 numbers [x1, y1, x2, y2]"));
    };
    let shown = format!("[{x1}, {y1}, {x2}, {y2}]");
    if !bbox.iter().all(|v| v.is_finite()) {
        Err(format!("{which}: bbox {shown} is not finite"))
    } else if x2 < x1 {
        Err(format!("{which}: bbox {shown} has x2 < x1"))
    } else if y2 < y1 {
        Err(format!("{which}: bbox {shown} has y2 < y1"))
    } else {
        Ok(bbox)
    }
}

/// The pixels `[left, right) x [top, bottom)`, possibly reaching past the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rect {
    left: i64,
    top: i64,
    right: i64,
    bottom: i64,
}

impl Rect {
    /// The pixels a bbox covers: its coordinates rounded (as `image.crop` rounds them), `x2` and
    /// `y2` exclusive.
    fn of_bbox(bbox: [f64; 4]) -> Rect {
        let [left, top, right, bottom] = bbox.map(|v| v.round().clamp(-FAR, FAR) as i64);
        Rect { left, top, right, bottom }
    }

    fn pixel(x: i64, y: i64) -> Rect {
        Rect { left: x, top: y, right: x + 1, bottom: y + 1 }
    }
}

/// One image's pixels, drawn on in place; everything drawn is clipped to the image.
struct Canvas<'a> {
    width: i64,
    height: i64,
    channels: usize,
    data: &'a mut [u8],
}

impl<'a> Canvas<'a> {
    /// # Errors
    /// When the image is not `L`, `RGB` or `RGBA`, or its data is not `width x height x channels`
    /// bytes.
    fn new(width: u32, height: u32, channels: u8, data: &'a mut [u8]) -> Result<Self, String> {
        if !matches!(channels, 1 | 3 | 4) {
            return Err(format!("cannot draw on an image with {channels} channels (L, RGB or RGBA)"));
        }
        if data.len() as u64 != u64::from(width) * u64::from(height) * u64::from(channels) {
            return Err(format!("image buffer of {} bytes does not hold {width}x{height}x{channels}", data.len()));
        }
        Ok(Self { width: i64::from(width), height: i64::from(height), channels: usize::from(channels), data })
    }

    /// Every outline, then every caption (so no later box covers an earlier caption).
    fn draw(&mut self, detections: &[Detection<'_>], style: &Style) {
        for d in detections {
            self.outline(Rect::of_bbox(d.bbox), i64::from(style.line_width), d.color(style));
        }
        if style.labels {
            for d in detections {
                if let Some(text) = d.caption() {
                    self.caption(Rect::of_bbox(d.bbox), &text, d.color(style));
                }
            }
        }
    }

    /// Sets the pixels of `rect` that lie in the image to `color`.
    fn fill(&mut self, rect: Rect, color: Rgb) {
        let (x0, x1) = (rect.left.clamp(0, self.width) as usize, rect.right.clamp(0, self.width) as usize);
        let (y0, y1) = (rect.top.clamp(0, self.height) as usize, rect.bottom.clamp(0, self.height) as usize);
        if x0 >= x1 {
            return;
        }
        let (c, stride) = (self.channels, self.width as usize * self.channels);
        let pixel = color.pixel(c);
        for y in y0..y1 {
            for px in self.data[y * stride + x0 * c..y * stride + x1 * c].chunks_exact_mut(c) {
                px.copy_from_slice(&pixel[..c]);
            }
        }
    }

    /// Outlines `rect` with lines `width` pixels wide inside its edges (a box narrower than two
    /// lines is filled).
    fn outline(&mut self, rect: Rect, width: i64, color: Rgb) {
        let top = Rect { bottom: (rect.top + width).min(rect.bottom), ..rect };
        let bottom = Rect { top: (rect.bottom - width).max(rect.top), ..rect };
        let left = Rect { right: (rect.left + width).min(rect.right), ..rect };
        let right = Rect { left: (rect.right - width).max(rect.left), ..rect };
        for band in [top, bottom, left, right] {
            self.fill(band, color);
        }
    }

    /// Whether any pixel of `rect` lies in the image.
    fn shows(&self, rect: Rect) -> bool {
        rect.left < rect.right.min(self.width)
            && rect.top < rect.bottom.min(self.height)
            && rect.right > 0
            && rect.bottom > 0
    }

    /// Writes `text` on a `background` box just above `target`'s top-left corner (inside its top
    /// when there is no room above), moved into the image; the text black or white, whichever
    /// reads better. Nothing for a target wholly outside the image.
    fn caption(&mut self, target: Rect, text: &str, background: Rgb) {
        if !self.shows(target) {
            return;
        }
        let fits = (self.width / GLYPH + 1) as usize;
        let text: Vec<char> = text.chars().take(fits).collect();
        let (w, h) = (text.len() as i64 * GLYPH + 2 * PAD, GLYPH + 2 * PAD);
        let left = target.left.clamp(0, (self.width - w).max(0));
        let top = if target.top >= h { target.top - h } else { target.top };
        let top = top.clamp(0, (self.height - h).max(0));
        self.fill(Rect { left, top, right: left + w, bottom: top + h }, background);
        let ink = background.ink();
        for (i, ch) in text.iter().enumerate() {
            let glyph = BASIC_LEGACY.get(*ch as usize).unwrap_or(&BASIC_LEGACY[usize::from(b'?')]);
            let x = left + PAD + i as i64 * GLYPH;
            for (dy, bits) in (0..).zip(glyph) {
                // Bit 0 is the glyph's leftmost pixel.
                for dx in (0..GLYPH).filter(|dx| bits >> dx & 1 == 1) {
                    self.fill(Rect::pixel(x + dx, top + PAD + dy), ink);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Image, image_array};
    use arrow_array::{Float32Array, StructArray};
    use arrow_buffer::OffsetBuffer;
    use arrow_schema::{Field, Fields};

    const RED: Rgb = Rgb([255, 0, 0]);
    const YELLOW: Rgb = Rgb([255, 255, 0]);
    /// The untouched background of the test images.
    const GREY: [u8; 3] = [7, 7, 7];

    fn style(line_width: u32, labels: bool, color: Option<Rgb>) -> Style {
        Style { line_width, labels, min_score: 0.0, color }
    }

    fn blank(width: u32, height: u32, channels: u8) -> Image {
        Image { width, height, channels, data: vec![7; (width * height * u32::from(channels)) as usize] }
    }

    /// Draws `detections` (checked as the step checks them) onto a copy of `img`.
    fn drawn(img: &Image, detections: &[([f64; 4], Option<f64>, Option<&str>)], style: &Style) -> Image {
        let mut out = img.clone();
        let kept: Vec<Detection<'_>> = detections
            .iter()
            .enumerate()
            .map(|(i, (bbox, score, label))| Detection {
                bbox: checked_bbox(Some(*bbox), i, "d").expect("a good bbox"),
                score: *score,
                label: *label,
            })
            .collect();
        let mut canvas = Canvas::new(out.width, out.height, out.channels, &mut out.data).expect("canvas");
        canvas.draw(&kept, style);
        out
    }

    fn at(img: &Image, x: u32, y: u32) -> &[u8] {
        let c = usize::from(img.channels);
        let i = (y * img.width + x) as usize * c;
        &img.data[i..i + c]
    }

    #[test]
    fn a_box_is_outlined_inside_its_edges_and_nothing_else_changes() {
        let img = blank(40, 30, 3);
        let out = drawn(&img, &[([5.0, 5.0, 25.0, 20.0], None, None)], &style(2, false, Some(RED)));
        // Columns 5-6 and 23-24, rows 5-6 and 18-19 are the box's lines.
        for (x, y) in [(5, 10), (6, 10), (23, 10), (24, 10), (10, 5), (10, 6), (10, 18), (10, 19), (5, 5), (24, 19)] {
            assert_eq!(at(&out, x, y), RED.0, "({x}, {y}) is on the outline");
        }
        // Just inside the lines, and just outside the box.
        for (x, y) in [(7, 10), (22, 10), (10, 7), (10, 17), (4, 10), (25, 10), (10, 4), (10, 20), (15, 12)] {
            assert_eq!(at(&out, x, y), GREY, "({x}, {y}) is untouched");
        }
        let changed = img.data.chunks(3).zip(out.data.chunks(3)).filter(|(a, b)| a != b).count();
        assert_eq!(changed, 2 * (20 * 2) + 2 * (11 * 2), "only the outline's pixels change");
    }

    #[test]
    fn a_box_across_the_border_is_clipped_to_the_image() {
        let img = blank(40, 30, 3);
        let red = style(2, false, Some(RED));
        let out = drawn(&img, &[([-10.0, 5.0, 10.0, 15.0], None, None)], &red);
        assert_eq!(at(&out, 0, 10), GREY, "its left edge lies outside the image");
        assert_eq!(at(&out, 9, 10), RED.0, "its right edge");
        assert_eq!(at(&out, 0, 5), RED.0, "its top edge, from the image's border");
        let out = drawn(&img, &[([30.0, 20.0, 100.0, 100.0], None, None)], &red);
        assert_eq!(at(&out, 30, 25), RED.0);
        assert_eq!(at(&out, 39, 20), RED.0, "its top edge, to the image's border");
        assert_eq!(at(&out, 39, 29), GREY, "its right and bottom edges lie outside the image");
    }

    #[test]
    fn a_box_outside_the_image_draws_nothing_not_even_its_caption() {
        let img = blank(40, 30, 3);
        let outside = [
            ([50.0, 5.0, 60.0, 15.0], Some(0.9), Some("cat")),
            ([-20.0, -20.0, -5.0, -5.0], Some(0.9), Some("cat")),
            ([5.0, 30.0, 15.0, 45.0], Some(0.9), Some("cat")),
        ];
        assert_eq!(drawn(&img, &outside, &style(3, true, None)), img);
    }

    #[test]
    fn a_caption_sits_above_the_box_on_its_colour_with_contrasting_text() {
        let img = blank(100, 40, 3);
        let out = drawn(&img, &[([5.0, 15.0, 60.0, 35.0], Some(0.93), Some("cat"))], &style(1, true, Some(RED)));
        // "cat 0.93": 8 glyphs of 8 pixels and a pixel of padding each side, in rows 5-14.
        let mut seen = std::collections::BTreeSet::new();
        for y in 5..15 {
            for x in 5..71 {
                seen.insert(at(&out, x, y).to_vec());
            }
        }
        assert_eq!(seen, [RED.0.to_vec(), WHITE.0.to_vec()].into_iter().collect(), "red behind white text");
        assert_eq!(at(&out, 71, 10), GREY, "right of the caption");
        assert_eq!(at(&out, 5, 4), GREY, "above the caption");
        let on_yellow = drawn(&img, &[([5.0, 15.0, 60.0, 35.0], None, Some("cat"))], &style(1, true, Some(YELLOW)));
        let text =
            (5..15).flat_map(|y| (5..31).map(move |x| (x, y))).filter(|(x, y)| at(&on_yellow, *x, *y) == BLACK.0);
        assert!(text.count() > 20, "black text on yellow");
    }

    #[test]
    fn a_caption_without_room_above_goes_inside_the_box_and_stays_in_the_image() {
        let img = blank(40, 30, 3);
        let out = drawn(&img, &[([35.0, 0.0, 40.0, 20.0], None, Some("a"))], &style(1, true, Some(RED)));
        // "a" with its padding is 10x10: in rows 0-9, moved left to end at the image's edge.
        assert_eq!(at(&out, 30, 5), RED.0, "left of the box, moved into the image");
        assert_eq!(at(&out, 31, 9), RED.0, "its bottom padding, inside the box");
        assert_eq!(at(&out, 29, 5), GREY);
        assert_eq!(at(&out, 37, 12), GREY, "below the caption, inside the box");
    }

    #[test]
    fn grey_and_rgba_images_get_the_colour_in_their_layout() {
        let boxed = [([0.0, 0.0, 10.0, 10.0], None, None)];
        let grey = drawn(&blank(20, 20, 1), &boxed, &style(1, false, Some(RED)));
        assert_eq!(at(&grey, 0, 5), [54], "red's luma, as image.decode's L mode makes it");
        assert_eq!(at(&grey, 5, 5), [7]);
        let rgba = drawn(&blank(20, 20, 4), &boxed, &style(1, false, Some(RED)));
        assert_eq!(at(&rgba, 0, 5), [255, 0, 0, 255], "opaque");
        assert_eq!(at(&rgba, 5, 5), [7, 7, 7, 7]);
    }

    #[test]
    fn without_a_colour_each_label_keeps_one_palette_colour() {
        let img = blank(40, 30, 3);
        let both = [([0.0, 0.0, 10.0, 10.0], None, Some("face")), ([20.0, 0.0, 30.0, 10.0], None, Some("face"))];
        let out = drawn(&img, &both, &style(1, false, None));
        assert_eq!(at(&out, 0, 5), Rgb::for_label("face").0);
        assert_eq!(at(&out, 20, 5), Rgb::for_label("face").0);
        // Fixed across runs and releases (FNV-1a of `face` is 0xef23_5979_1696_c97c, 6 mod 10): a
        // change here recolours every image drawn without a colour.
        assert_eq!(Rgb::for_label("face"), Rgb([227, 119, 194]));
        let colours: std::collections::BTreeSet<[u8; 3]> =
            ["person", "car", "dog", "cat", "face"].iter().map(|l| Rgb::for_label(l).0).collect();
        assert!(colours.len() > 2, "labels spread over the palette: {colours:?}");
    }

    #[test]
    fn colours_parse_from_hex_and_nothing_else() {
        assert_eq!(Rgb::parse("#ff8000"), Some(Rgb([255, 128, 0])));
        assert_eq!(Rgb::parse("#FF8000"), Some(Rgb([255, 128, 0])));
        for bad in ["ff8000", "#ff800", "#ff80000", "#gg0000", "#+f+f+f", "red", "#ff80é"] {
            assert_eq!(Rgb::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_bad_colour_or_line_width_fails_the_build_naming_the_field() {
        let config = |extra: serde_json::Value| -> ImageDraw {
            let mut step = serde_json::json!({"input": "i", "detections": "d", "output": "o"});
            step.as_object_mut().expect("object").extend(extra.as_object().cloned().unwrap_or_default());
            serde_json::from_value(step).expect("config")
        };
        let err = build(&config(serde_json::json!({"color": "red"}))).err().expect("bad colour");
        assert_eq!(err.to_string(), "color: must be `#rrggbb`, six hexadecimal digits (`#ff0000` is red), found `red`");
        let err = build(&config(serde_json::json!({"lineWidth": 0}))).err().expect("zero width");
        assert_eq!(err.to_string(), "lineWidth: must be 1 to 64 pixels, found 0");
        assert!(build(&config(serde_json::json!({"color": "#00ff00", "lineWidth": 64}))).is_ok());
    }

    /// A detection of the test columns: bbox, score, label.
    type Row = Vec<([f32; 4], f32, &'static str)>;

    /// `list<struct{bbox: fixed_size_list<f32, 4>, score: f32, label: utf8}>`, as image.detect makes.
    fn detections(rows: &[Option<Row>]) -> ArrayRef {
        let all: Vec<&([f32; 4], f32, &str)> = rows.iter().flatten().flatten().collect();
        let coordinate = Arc::new(Field::new("item", DataType::Float32, false));
        let coordinates = Float32Array::from_iter_values(all.iter().flat_map(|d| d.0));
        let bbox = arrow_array::FixedSizeListArray::new(coordinate.clone(), 4, Arc::new(coordinates), None);
        let fields = Fields::from(vec![
            Field::new("bbox", DataType::FixedSizeList(coordinate, 4), false),
            Field::new("score", DataType::Float32, false),
            Field::new("label", DataType::Utf8, false),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(bbox),
            Arc::new(Float32Array::from_iter_values(all.iter().map(|d| d.1))),
            Arc::new(StringArray::from_iter_values(all.iter().map(|d| d.2))),
        ];
        let items = StructArray::new(fields.clone(), columns, None);
        let offsets = OffsetBuffer::from_lengths(rows.iter().map(|r| r.as_ref().map_or(0, Vec::len)));
        let nulls = NullBuffer::from(rows.iter().map(Option::is_some).collect::<Vec<_>>());
        let item = Arc::new(Field::new("item", DataType::Struct(fields), true));
        Arc::new(ListArray::new(item, offsets, Arc::new(items), Some(nulls)))
    }

    fn step(min_score: f64) -> DrawDetections {
        DrawDetections {
            input: "image".into(),
            detections: "d".into(),
            output: "drawn".into(),
            style: Style { line_width: 1, labels: false, min_score, color: Some(RED) },
        }
    }

    fn batch(images: Vec<Option<Image>>, rows: &[Option<Row>]) -> RecordBatch {
        RecordBatch::try_from_iter([("image", image_array(&images)), ("d", detections(rows))]).expect("batch")
    }

    fn output_images(out: &StepOutput) -> Vec<Option<Image>> {
        let column = ImageColumn::from_batch(&out.batch, "drawn").expect("image column");
        (0..column.len())
            .map(|i| {
                column.get(i).map(|v| Image {
                    width: v.width,
                    height: v.height,
                    channels: v.channels,
                    data: v.data.to_vec(),
                })
            })
            .collect()
    }

    #[test]
    fn a_null_list_leaves_the_image_as_it_was_and_a_null_image_stays_null() {
        let img = blank(30, 20, 3);
        let rows = [None, Some(vec![([2.0, 2.0, 12.0, 12.0], 0.9, "cat")]), Some(vec![])];
        let out = step(0.0).apply(&batch(vec![Some(img.clone()), None, Some(img.clone())], &rows)).expect("apply");
        assert!(out.failures.is_empty(), "{:?}", out.failures);
        assert_eq!(output_images(&out), [Some(img.clone()), None, Some(img)]);
    }

    #[test]
    fn detections_below_min_score_are_skipped() {
        let img = blank(30, 20, 3);
        let rows = [Some(vec![([2.0, 2.0, 12.0, 12.0], 0.9, "cat"), ([15.0, 2.0, 25.0, 12.0], 0.3, "dog")])];
        let out = step(0.5).apply(&batch(vec![Some(img)], &rows)).expect("apply");
        let drawn = output_images(&out).remove(0).expect("image");
        assert_eq!(at(&drawn, 2, 7), RED.0, "0.9 is drawn");
        assert_eq!(at(&drawn, 15, 7), GREY, "0.3 is not");
    }

    #[test]
    fn a_bad_bbox_is_a_row_error_naming_the_detection_and_other_rows_go_on() {
        let img = blank(30, 20, 3);
        let rows = [
            Some(vec![([2.0, 2.0, 12.0, 12.0], 0.9, "cat"), ([f32::NAN, 2.0, 12.0, 12.0], 0.9, "dog")]),
            Some(vec![([2.0, 2.0, 12.0, 12.0], 0.9, "cat")]),
            Some(vec![([12.0, 2.0, 2.0, 12.0], 0.9, "cat")]),
        ];
        let out = step(0.0).apply(&batch(vec![Some(img.clone()), Some(img.clone()), Some(img)], &rows)).expect("apply");
        let failures: Vec<(usize, &str)> = out.failures.iter().map(|f| (f.row, f.message.as_str())).collect();
        assert_eq!(
            failures,
            [
                (0, "detection 1 in `d`: bbox [NaN, 2, 12, 12] is not finite"),
                (2, "detection 0 in `d`: bbox [12, 2, 2, 12] has x2 < x1"),
            ]
        );
        assert_eq!(out.batch.num_rows(), 1, "the good row is kept");
        assert_eq!(at(&output_images(&out)[0].clone().expect("image"), 2, 7), RED.0);
    }

    #[test]
    fn a_sliced_morsel_draws_each_row_its_own_detections() {
        let (a, b) = (blank(30, 20, 3), blank(16, 16, 3));
        let rows = [
            Some(vec![([0.0, 0.0, 30.0, 20.0], 0.9, "cat")]),
            Some(vec![([4.0, 4.0, 8.0, 8.0], 0.9, "cat")]),
            Some(vec![([1.0, 1.0, 3.0, 3.0], 0.9, "cat")]),
        ];
        let whole = batch(vec![Some(a), Some(b.clone()), Some(b)], &rows);
        let out = step(0.0).apply(&whole.slice(1, 2)).expect("apply");
        let images = output_images(&out);
        let (first, second) = (images[0].clone().expect("first"), images[1].clone().expect("second"));
        assert_eq!((at(&first, 4, 5), at(&first, 1, 1)), (&RED.0[..], &GREY[..]));
        assert_eq!((at(&second, 1, 1), at(&second, 4, 5)), (&RED.0[..], &GREY[..]));
    }

    #[test]
    fn a_column_that_is_not_detections_is_named() {
        let img = blank(4, 4, 3);
        let input = RecordBatch::try_from_iter([
            ("image", image_array(&[Some(img)])),
            ("d", Arc::new(Float32Array::from(vec![1.0])) as ArrayRef),
        ])
        .expect("batch");
        let err = step(0.0).apply(&input).expect_err("not a list");
        assert_eq!(
            err.to_string(),
            "column `d`: expected a list of {bbox, score, label} (image.detect's output), found Float32"
        );
    }
}
