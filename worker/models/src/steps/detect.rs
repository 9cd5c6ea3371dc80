//! `image.detect`: an image column to a list of `{bbox: [x1, y1, x2, y2], score, label}` per
//! image, best first (MTCNN faces, labelled `face`).

use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, StringBuilder};
use arrow_array::{ArrayRef, Float32Array, RecordBatch};
use arrow_schema::{DataType, Field, Fields};
use weir_core::batch::{drop_rows, with_column};
use weir_core::step::{ComputeStep, Kernel};
use weir_core::{BuildError, RowFailure, Step, StepError, StepOutput};
use weir_crds::ImageDetect;
use weir_ops::image::ImageColumn;

use super::struct_list_column;
use crate::vision::mtcnn::{DetectOptions, Detection, Mtcnn};
use crate::weights::Weights;
use crate::{ModelAssets, device};

/// Detection score kept when the manifest does not say (MTCNN's last-stage threshold).
pub const DEFAULT_MIN_SCORE: f32 = 0.7;
/// Smallest face side searched for when the manifest does not say.
pub const DEFAULT_MIN_SIZE: u32 = 20;
/// Detections kept per image when the manifest does not say.
pub const DEFAULT_MAX_DETECTIONS: usize = 100;
/// The label MTCNN's detections carry.
const FACE: &str = "face";

/// The runnable `image.detect` step.
pub struct DetectObjects {
    input: String,
    output: String,
    detector: Mtcnn,
    options: DetectOptions,
    in_flight: usize,
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
    let detector = Mtcnn::load(&config.model, &Weights::parse(&assets.weights)?)?;
    let in_flight = device::batches_in_flight(detector.device());
    let options = DetectOptions {
        min_size: config.min_size.unwrap_or(DEFAULT_MIN_SIZE),
        min_score: config.min_score.unwrap_or(DEFAULT_MIN_SCORE),
        max_detections: config.max_detections.map_or(DEFAULT_MAX_DETECTIONS, |m| m as usize),
    };
    Ok(DetectObjects { input: config.input.clone(), output: config.output.clone(), detector, options, in_flight })
}

impl Kernel for DetectObjects {
    fn concurrency(&self) -> Option<usize> {
        Some(self.in_flight)
    }

    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let column = ImageColumn::from_batch(input, &self.input)?;
        let mut failures = Vec::new();
        let mut rows: Vec<Option<Vec<Detection>>> = Vec::with_capacity(column.len());
        for row in 0..column.len() {
            // A null image stays a null row; an image that cannot be searched is a row error.
            let found = column.get(row).map(|img| self.detector.detect(img, &self.options)).transpose();
            rows.push(found.unwrap_or_else(|message| {
                failures.push(RowFailure::new(row, message));
                None
            }));
        }
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
fn detections_column(rows: &[Option<Vec<Detection>>]) -> ArrayRef {
    let all: Vec<&Detection> = rows.iter().flatten().flatten().collect();
    let coordinate = Arc::new(Field::new("item", DataType::Float32, false));
    let mut boxes = FixedSizeListBuilder::new(Float32Builder::with_capacity(all.len() * 4), 4).with_field(coordinate);
    let mut labels = StringBuilder::new();
    for d in &all {
        boxes.values().append_slice(&d.bbox);
        boxes.append(true);
        labels.append_value(FACE);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(boxes.finish()),
        Arc::new(Float32Array::from_iter_values(all.iter().map(|d| d.score))),
        Arc::new(labels.finish()),
    ];
    let lengths: Vec<Option<usize>> = rows.iter().map(|r| r.as_ref().map(Vec::len)).collect();
    struct_list_column(detection_fields(), columns, &lengths)
}
