//! Consecutive image steps run as one pass per image, for the planner to use where the columns
//! between them are read by nothing else (`image.decode` -> `image.resize` -> `image.encode`).
//!
//! Each step alone makes a whole column before the next reads it: every decoded photo of a morsel
//! is copied into an Arrow column, out of the cache, and read back by the resize. A chain takes one
//! image at a time through every step on one thread, so the decoded pixels are still in the cache
//! when they are resized, and the columns in between are never made. Its rows, values and failures
//! are those of the steps run one after another.

use std::sync::Arc;

use arrow_array::{ArrayRef, BinaryArray, RecordBatch};
use rayon::prelude::*;
use weir_core::alloc::OffThreadPeaks;
use weir_core::batch::{row_ref, row_refs};
use weir_core::step::{FailureOrigin, Kernel};
use weir_core::{RowFailure, StepError, StepOutput};
use weir_crds::StepSpec;

use super::crop::{CropImages, Region};
use super::decode::{DecodeImages, binary_rows};
use super::encode::EncodeImages;
use super::resize::ResizeImages;
use super::{Image, ImageColumn, ImageView, image_array_owned};
use crate::BuildError;

/// One step of a chain.
#[derive(Debug, Clone)]
pub enum Link {
    /// Encoded bytes to an image; only first.
    Decode(DecodeImages),
    Resize(ResizeImages),
    /// A fixed or centred box (a bounding-box column is another column's rows: not a link).
    Crop(CropImages),
    /// An image to encoded bytes; only last.
    Encode(EncodeImages),
}

/// The job's step a link stands for, which its rows' failures name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStep {
    /// Position in `spec.steps`.
    pub index: usize,
    /// Its `op`.
    pub op: &'static str,
}

/// Image steps run one image at a time, as one step.
///
/// # Guarantees
/// The output column (the last link's), the rows dropped and each failure's message are those of
/// the links run as separate steps, one after another; a failure names the step (position and op)
/// and the row reference where the row failed, as the executor names a step's own failures. Null
/// input rows stay null and are not failures. Only the last link's column is added: the columns
/// the other links would have made are not in the output (the planner chains only steps whose
/// columns nothing else reads).
#[derive(Debug, Clone)]
pub struct ImageChain {
    links: Vec<(Link, LinkStep)>,
}

impl ImageChain {
    /// A chain of `links`, run in order.
    ///
    /// # Errors
    /// When there are fewer than two links, a decode is not first or an encode not last, a link
    /// does not read the column the one before it makes, or a crop takes its boxes from a column.
    pub fn new(links: Vec<(Link, LinkStep)>) -> Result<Self, BuildError> {
        if links.len() < 2 {
            return Err(BuildError::new("input", "a chain of image steps has at least two steps"));
        }
        let last = links.len() - 1;
        for (position, (link, step)) in links.iter().enumerate() {
            let misplaced = match link {
                Link::Decode(_) => position != 0,
                Link::Encode(_) => position != last,
                Link::Crop(crop) => matches!(crop.region, Region::BboxColumn(_)),
                Link::Resize(_) => false,
            };
            if misplaced {
                return Err(BuildError::new(
                    "input",
                    format!("spec.steps[{}] ({}) cannot run at position {position} of a chain", step.index, step.op),
                ));
            }
        }
        for pair in links.windows(2) {
            let ((before, _), (after, step)) = (&pair[0], &pair[1]);
            if after.input() != before.output() {
                return Err(BuildError::new(
                    "input",
                    format!(
                        "spec.steps[{}] ({}) reads `{}`, not `{}` made by the step before it",
                        step.index,
                        step.op,
                        after.input(),
                        before.output()
                    ),
                ));
            }
        }
        Ok(Self { links })
    }

    /// Takes one row through every link; on failure, the link that failed and its message.
    fn run<'a>(&self, row: Value<'a>) -> Result<Value<'a>, (usize, String)> {
        let mut value = row;
        for (position, (link, _)) in self.links.iter().enumerate() {
            value = link.apply(value).map_err(|message| (position, message))?;
        }
        Ok(value)
    }
}

impl Link {
    /// The link `step` runs as in a chain; `None` for a step that cannot be one (not an image
    /// step, or a crop whose boxes are another column's rows).
    ///
    /// # Errors
    /// The step's own [`BuildError`] when its config is unusable.
    pub fn for_step(step: &StepSpec) -> Option<Result<Self, BuildError>> {
        match step {
            StepSpec::ImageDecode(c) => Some(Ok(Link::Decode(DecodeImages::from_config(c)))),
            StepSpec::ImageResize(c) => Some(ResizeImages::from_config(c).map(Link::Resize)),
            StepSpec::ImageCrop(c) if c.bbox_column.is_none() => Some(CropImages::from_config(c).map(Link::Crop)),
            StepSpec::ImageEncode(c) => Some(EncodeImages::from_config(c).map(Link::Encode)),
            _ => None,
        }
    }

    /// The column the link reads.
    pub fn input(&self) -> &str {
        self.columns().0
    }

    /// The column the link makes.
    pub fn output(&self) -> &str {
        self.columns().1
    }

    /// The columns the link reads and makes.
    fn columns(&self) -> (&str, &str) {
        match self {
            Link::Decode(d) => (&d.input, &d.output),
            Link::Resize(r) => (&r.input, &r.output),
            Link::Crop(c) => (&c.input, &c.output),
            Link::Encode(e) => (&e.input, &e.output),
        }
    }

    /// One row through this link, with the step's own message on failure.
    fn apply<'a>(&self, value: Value<'a>) -> Result<Value<'a>, String> {
        match (self, &value) {
            (Link::Decode(d), Value::Encoded(bytes)) => d.decode(bytes).map(Value::Image),
            (Link::Resize(r), _) => r.resize_one(value.image()?).map(Value::Image),
            (Link::Crop(c), _) => c.crop_one(value.image()?).map(Value::Image),
            (Link::Encode(e), _) => e.encode_one(value.image()?).map(Value::EncodedOwned),
            (Link::Decode(_), _) => Err("image.decode reads encoded bytes, not an image".into()),
        }
    }
}

/// A row between links.
enum Value<'a> {
    /// Bytes of the input column.
    Encoded(&'a [u8]),
    /// An image of the input column.
    Input(ImageView<'a>),
    Image(Image),
    EncodedOwned(Vec<u8>),
}

impl Value<'_> {
    /// The image this value holds.
    ///
    /// # Errors
    /// When it holds encoded bytes (a chain [`ImageChain::new`] refuses).
    fn image(&self) -> Result<ImageView<'_>, String> {
        match self {
            Value::Input(view) => Ok(*view),
            Value::Image(image) => Ok(image.view()),
            Value::Encoded(_) | Value::EncodedOwned(_) => Err("expected an image, found encoded bytes".into()),
        }
    }
}

impl Kernel for ImageChain {
    fn apply(&self, input: &RecordBatch) -> Result<StepOutput, StepError> {
        let (first, last) = match (self.links.first(), self.links.last()) {
            (Some((first, _)), Some((last, _))) => (first, last),
            _ => return Err(StepError::Other("an image chain without steps".into())),
        };
        let rows: Vec<Option<Value<'_>>> = match first {
            Link::Decode(_) => binary_rows(input, first.input())?.into_iter().map(|b| b.map(Value::Encoded)).collect(),
            _ => {
                let images = ImageColumn::from_batch(input, first.input())?;
                (0..images.len()).map(|i| images.get(i).map(Value::Input)).collect()
            }
        };
        let peaks = OffThreadPeaks::new();
        let results: Vec<Option<Result<Value<'_>, (usize, String)>>> =
            rows.into_par_iter().map(|row| row.map(|value| peaks.measure(|| self.run(value)))).collect();
        let refs = row_refs(input);
        let mut failures = Vec::new();
        let mut values = Vec::with_capacity(results.len());
        for (row, result) in results.into_iter().enumerate() {
            values.push(match result {
                Some(Ok(value)) => Some(value),
                Some(Err((position, message))) => {
                    let step = &self.links[position].1;
                    let origin = FailureOrigin {
                        step_index: step.index,
                        step: step.op.to_string(),
                        row_ref: row_ref(refs.as_ref(), row),
                    };
                    failures.push((position, RowFailure { row, message, origin: Some(origin) }));
                    None
                }
                None => None,
            });
        }
        // In the order the steps one after another report them (step by step, rows in order
        // within a step): under `onRowError: fail` the job stops on the first, and names it.
        failures.sort_by_key(|(position, failure)| (*position, failure.row));
        let failures = failures.into_iter().map(|(_, failure)| failure).collect();
        let column = output_column(last, values)?;
        let mut output = StepOutput::with_column(input, last.output(), column, failures)?;
        output.peak_alloc = peaks.total();
        Ok(output)
    }
}

/// The chain's column: images, or encoded bytes after an encode.
fn output_column(last: &Link, values: Vec<Option<Value<'_>>>) -> Result<ArrayRef, StepError> {
    if let Link::Encode(_) = last {
        let encoded = each_as(values, |v| if let Value::EncodedOwned(bytes) = v { Some(bytes) } else { None })?;
        return Ok(Arc::new(BinaryArray::from_iter(encoded)));
    }
    Ok(image_array_owned(each_as(values, |v| if let Value::Image(image) = v { Some(image) } else { None })?))
}

/// Every row's value as the kind `kind` takes (`None` rows stay `None`).
///
/// # Errors
/// When a value is of another kind: a link made another kind of value than its step (a bug).
fn each_as<T>(
    values: Vec<Option<Value<'_>>>,
    kind: impl Fn(Value<'_>) -> Option<T>,
) -> Result<Vec<Option<T>>, StepError> {
    let unexpected = || StepError::Other("an image chain's link made another kind of value than its step".into());
    values.into_iter().map(|v| v.map(|v| kind(v).ok_or_else(unexpected)).transpose()).collect()
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, StringArray};
    use weir_core::ROW_REF_COLUMN;
    use weir_crds::{ImageFormat, ImageMode, ResizeFilter};
    use weir_testkit::images::{encode_jpeg, encode_png, gradient};

    use super::super::decode::DEFAULT_MAX_PIXELS;
    use super::super::resize::Target;
    use super::*;

    fn decode(input: &str, output: &str) -> Link {
        Link::Decode(DecodeImages {
            input: input.into(),
            output: output.into(),
            mode: ImageMode::Rgb,
            max_pixels: DEFAULT_MAX_PIXELS,
            apply_orientation: true,
            draft: Some((200, 150)),
        })
    }

    fn crop(input: &str, output: &str) -> Link {
        let region = Region::Fixed { x: 10, y: 5, width: 100, height: 60 };
        Link::Crop(CropImages { input: input.into(), output: output.into(), region })
    }

    fn resize(input: &str, output: &str) -> Link {
        let target = Target::Exact { width: 24, height: 16 };
        Link::Resize(ResizeImages {
            input: input.into(),
            output: output.into(),
            target,
            filter: ResizeFilter::Bilinear,
        })
    }

    fn encode(input: &str, output: &str) -> Link {
        Link::Encode(EncodeImages {
            input: input.into(),
            output: output.into(),
            format: ImageFormat::Jpeg,
            quality: 80,
        })
    }

    fn at(index: usize, op: &'static str) -> LinkStep {
        LinkStep { index, op }
    }

    /// Photos (one too small for the crop), a PNG, a corrupt JPEG, zero bytes and a null row,
    /// each with its row reference.
    fn input() -> RecordBatch {
        let photo = |w, h, seed| encode_jpeg(&gradient(w, h, seed), 85);
        let mut corrupt = photo(200, 150, 3);
        corrupt.truncate(corrupt.len() / 2);
        let rows: Vec<Option<Vec<u8>>> = vec![
            Some(photo(320, 240, 1)),
            Some(photo(60, 40, 2)),
            Some(corrupt),
            None,
            Some(Vec::new()),
            Some(encode_png(&gradient(150, 90, 4))),
            Some(photo(500, 333, 5)),
        ];
        let refs: Vec<String> = (0..rows.len()).map(|i| format!("file-{i}")).collect();
        let bytes: ArrayRef = Arc::new(BinaryArray::from_iter(rows));
        let refs: ArrayRef = Arc::new(StringArray::from(refs));
        RecordBatch::try_from_iter([("bytes", bytes), (ROW_REF_COLUMN, refs)]).expect("batch")
    }

    /// Failures as `(row reference, step index, op, message)`.
    type Named = Vec<(String, usize, String, String)>;

    /// `links` run as separate steps, one after another, as the executor would: the last output,
    /// and every failure named by the row reference of the input it failed on.
    fn one_after_another(links: &[(Link, LinkStep)], mut batch: RecordBatch) -> (RecordBatch, Named) {
        let mut failures = Vec::new();
        for (link, step) in links {
            let output = match link {
                Link::Decode(k) => k.apply(&batch),
                Link::Resize(k) => k.apply(&batch),
                Link::Crop(k) => k.apply(&batch),
                Link::Encode(k) => k.apply(&batch),
            }
            .expect("step");
            let refs = row_refs(&batch);
            failures.extend(output.failures.iter().map(|f| {
                assert!(f.origin.is_none(), "a step names its own failures by row");
                (row_ref(refs.as_ref(), f.row), step.index, step.op.to_string(), f.message.clone())
            }));
            batch = output.batch;
        }
        (batch, failures)
    }

    fn chained(links: Vec<(Link, LinkStep)>, batch: &RecordBatch) -> (RecordBatch, Named) {
        let output = ImageChain::new(links).expect("chain").apply(batch).expect("chain");
        let failures = output
            .failures
            .iter()
            .map(|f| {
                let origin = f.origin.as_ref().expect("a chain names the step of each failure");
                let refs = row_refs(batch);
                assert_eq!(row_ref(refs.as_ref(), f.row), origin.row_ref, "the row dropped is the row named");
                (origin.row_ref.clone(), origin.step_index, origin.step.clone(), f.message.clone())
            })
            .collect::<Named>();
        (output.batch, failures)
    }

    #[test]
    fn a_chain_makes_the_column_rows_and_failures_of_its_steps_one_after_another() {
        let chains = [
            vec![
                (decode("bytes", "image"), at(1, "image.decode")),
                (crop("image", "image"), at(2, "image.crop")),
                (resize("image", "image"), at(3, "image.resize")),
                (encode("image", "jpeg"), at(4, "image.encode")),
            ],
            vec![(decode("bytes", "image"), at(1, "image.decode")), (resize("image", "small"), at(2, "image.resize"))],
            vec![(decode("bytes", "bytes"), at(1, "image.decode")), (crop("bytes", "bytes"), at(2, "image.crop"))],
        ];
        for links in chains {
            let last = links.last().expect("links").0.output().to_string();
            let (expected, expected_failures) = one_after_another(&links, input());
            let (found, failures) = chained(links, &input());
            let column = |batch: &RecordBatch| batch.column_by_name(&last).expect("output").to_data();
            assert_eq!(column(&found), column(&expected), "{last}: the same values");
            let refs = |batch: &RecordBatch| {
                row_refs(batch).expect("refs").iter().map(|r| r.map(str::to_string)).collect::<Vec<_>>()
            };
            assert_eq!(refs(&found), refs(&expected), "{last}: the same rows");
            assert_eq!(failures, expected_failures, "{last}: the same failures, named by the same steps");
        }
        let (_, failures) = one_after_another(
            &[
                (decode("bytes", "image"), at(1, "image.decode")),
                (crop("image", "image"), at(2, "image.crop")),
                (resize("image", "image"), at(3, "image.resize")),
            ],
            input(),
        );
        let steps: Vec<(&str, &str)> = failures.iter().map(|f| (f.0.as_str(), f.2.as_str())).collect();
        let expected = [("file-2", "image.decode"), ("file-4", "image.decode"), ("file-1", "image.crop")];
        assert_eq!(steps, expected, "the input fails in two steps, listed step by step");
    }

    #[test]
    fn a_chain_of_an_image_column_reads_its_images() {
        let decoded = one_after_another(&[(decode("bytes", "image"), at(0, "image.decode"))], input()).0;
        let links =
            vec![(crop("image", "image"), at(1, "image.crop")), (encode("image", "png"), at(2, "image.encode"))];
        let (expected, expected_failures) = one_after_another(&links, decoded.clone());
        let (found, failures) = chained(links, &decoded);
        assert_eq!(
            found.column_by_name("png").expect("png").to_data(),
            expected.column_by_name("png").expect("png").to_data()
        );
        assert_eq!((failures.len(), failures), (1, expected_failures));
    }

    #[test]
    fn links_out_of_order_or_not_reading_the_last_column_are_refused() {
        let refused = |links: Vec<(Link, LinkStep)>| ImageChain::new(links).expect_err("refused").message;
        assert!(refused(vec![(resize("i", "i"), at(3, "image.resize"))]).contains("at least two"));
        let late_decode =
            refused(vec![(resize("i", "i"), at(3, "image.resize")), (decode("i", "i"), at(4, "image.decode"))]);
        assert!(late_decode.contains("spec.steps[4] (image.decode) cannot run at position 1"), "{late_decode}");
        let early_encode =
            refused(vec![(encode("i", "j"), at(3, "image.encode")), (resize("j", "j"), at(4, "image.resize"))]);
        assert!(early_encode.contains("spec.steps[3] (image.encode) cannot run at position 0"), "{early_encode}");
        let other = refused(vec![(decode("b", "i"), at(1, "image.decode")), (resize("x", "i"), at(2, "image.resize"))]);
        assert!(other.contains("reads `x`, not `i`"), "{other}");
        let boxed =
            Link::Crop(CropImages { input: "i".into(), output: "i".into(), region: Region::BboxColumn("b".into()) });
        assert!(
            refused(vec![(decode("b", "i"), at(1, "image.decode")), (boxed, at(2, "image.crop"))])
                .contains("cannot run")
        );
    }
}
