//! `image.detect`: an image column to a list of `{bbox: [x1, y1, x2, y2], score, label}` per
//! image, best first (MTCNN faces, labelled `face`; NanoDet's COCO classes).

use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, StringBuilder};
use arrow_array::{ArrayRef, Float32Array, RecordBatch};
use arrow_schema::{DataType, Field, Fields};
use rayon::prelude::*;
use weir_core::batch::{drop_rows, with_column};
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{BuildError, RowFailure, Step, StepError, StepOutput};
use weir_crds::{COCO_CLASSES, ImageDetect, ModelArch};
use weir_ops::image::ImageColumn;

use super::struct_list_column;
use crate::vision::mtcnn::{DetectOptions, Mtcnn};
use crate::vision::nanodet::{self, NanoDet};
use crate::weights::Weights;
use crate::{ModelAssets, device};

/// Detection score kept when the manifest does not say (MTCNN's last-stage threshold).
pub const DEFAULT_MIN_SCORE: f32 = 0.7;
/// NanoDet's class score kept when the manifest does not say (NanoDet's demo threshold).
pub const DEFAULT_NANODET_MIN_SCORE: f32 = 0.35;
/// NanoDet's suppression overlap when the manifest does not say (its test config's).
pub const DEFAULT_IOU_THRESHOLD: f32 = 0.6;
/// Smallest face side searched for when the manifest does not say.
pub const DEFAULT_MIN_SIZE: u32 = 20;
/// Detections kept per image when the manifest does not say.
pub const DEFAULT_MAX_DETECTIONS: usize = 100;
/// The label MTCNN's detections carry.
const FACE: &str = "face";

/// One detection as the output column holds it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Found {
    pub bbox: [f32; 4],
    pub score: f32,
    pub label: &'static str,
}

/// A loaded detector with its options.
enum Detector {
    Mtcnn(Box<Mtcnn>, DetectOptions),
    NanoDet(NanoDet, nanodet::Options),
}

impl Detector {
    fn detect(&self, img: weir_ops::image::ImageView<'_>) -> Result<Vec<Found>, String> {
        match self {
            Detector::Mtcnn(model, options) => Ok(model
                .detect(img, options)?
                .into_iter()
                .map(|d| Found { bbox: d.bbox, score: d.score, label: FACE })
                .collect()),
            Detector::NanoDet(model, options) => Ok(model
                .detect(img, options)?
                .into_iter()
                .map(|d| Found { bbox: d.bbox, score: d.score, label: d.label() })
                .collect()),
        }
    }

    fn device(&self) -> &candle_core::Device {
        match self {
            Detector::Mtcnn(model, _) => model.device(),
            Detector::NanoDet(model, _) => model.device(),
        }
    }
}

/// The runnable `image.detect` step.
pub struct DetectObjects {
    input: String,
    output: String,
    detector: Detector,
}

/// Loads the detector `config` names from `assets`.
///
/// # Errors
/// [`BuildError`] naming `model.*`: a missing or misshapen tensor, or an unavailable device.
pub fn build(config: &ImageDetect, assets: &ModelAssets) -> Result<Arc<dyn Step>, BuildError> {
    Ok(Arc::new(ComputeStep(kernel(config, assets)?)))
}

/// The `image.detect` kernel, for callers that run it directly.
///
/// # Errors
/// As [`build`].
pub fn kernel(config: &ImageDetect, assets: &ModelAssets) -> Result<DetectObjects, BuildError> {
    let weights = Weights::parse(&assets.weights)?;
    let max_detections = config.max_detections.map_or(DEFAULT_MAX_DETECTIONS, |m| m as usize);
    if let Some((field, message)) = config.problems().into_iter().next() {
        return Err(BuildError::new(&field, message));
    }
    let detector = match config.model.arch {
        ModelArch::NanoDet => {
            let classes = config.classes.iter().flatten();
            let options = nanodet::Options {
                min_score: config.min_score.unwrap_or(DEFAULT_NANODET_MIN_SCORE),
                iou_threshold: config.iou_threshold.unwrap_or(DEFAULT_IOU_THRESHOLD),
                max_detections,
                classes: classes.filter_map(|c| COCO_CLASSES.iter().position(|k| k == c)).collect(),
            };
            Detector::NanoDet(NanoDet::load(&config.model, &weights)?, options)
        }
        _ => {
            let options = DetectOptions {
                min_size: config.min_size.unwrap_or(DEFAULT_MIN_SIZE),
                min_score: config.min_score.unwrap_or(DEFAULT_MIN_SCORE),
                max_detections,
            };
            Detector::Mtcnn(Box::new(Mtcnn::load(&config.model, &weights)?), options)
        }
    };
    Ok(DetectObjects { input: config.input.clone(), output: config.output.clone(), detector })
}

impl Kernel for DetectObjects {
    fn concurrency(&self) -> Option<usize> {
        device::batches_in_flight(self.detector.device())
    }

    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let column = ImageColumn::from_batch(input, &self.input)?;
        // A null image stays a null row; an image that cannot be searched is a row error.
        let search = |row: usize| column.get(row).map(|img| self.detector.detect(img)).transpose();
        // One image's search leaves CPU cores idle (MTCNN's small networks over a pyramid, each
        // detector's box arithmetic), so on the CPU the batch's images are searched side by side;
        // the results keep the rows' order.
        let searched: Vec<_> = if self.detector.device().is_cpu() {
            (0..column.len()).into_par_iter().map(search).collect()
        } else {
            (0..column.len()).map(search).collect()
        };
        let mut failures = Vec::new();
        let rows: Vec<Option<Vec<Found>>> = searched
            .into_iter()
            .enumerate()
            .map(|(row, found)| {
                found.unwrap_or_else(|message| {
                    failures.push(RowFailure::new(row, message));
                    None
                })
            })
            .collect();
        let batch = with_column(input, &self.output, detections_column(&rows))?;
        let failed: Vec<usize> = failures.iter().map(|f| f.row).collect();
        Ok(StepOutput::new(drop_rows(&batch, &failed)?, failures))
    }
}

fn detection_fields() -> Fields {
    let coordinate = Arc::new(Field::new("item", DataType::Float32, false));
    Fields::from(vec![
        Field::new("bbox", DataType::FixedSizeList(coordinate, 4), false),
        Field::new("score", DataType::Float32, false),
        Field::new("label", DataType::Utf8, false),
    ])
}

/// `list<struct{bbox: fixed_size_list<f32, 4>, score, label}>`, null for null and failed rows.
fn detections_column(rows: &[Option<Vec<Found>>]) -> ArrayRef {
    let all: Vec<&Found> = rows.iter().flatten().flatten().collect();
    let coordinate = Arc::new(Field::new("item", DataType::Float32, false));
    let mut boxes = FixedSizeListBuilder::new(Float32Builder::with_capacity(all.len() * 4), 4).with_field(coordinate);
    let mut labels = StringBuilder::new();
    for d in &all {
        boxes.values().append_slice(&d.bbox);
        boxes.append(true);
        labels.append_value(d.label);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(boxes.finish()),
        Arc::new(Float32Array::from_iter_values(all.iter().map(|d| d.score))),
        Arc::new(labels.finish()),
    ];
    let lengths: Vec<Option<usize>> = rows.iter().map(|r| r.as_ref().map(Vec::len)).collect();
    struct_list_column(detection_fields(), columns, &lengths)
}
