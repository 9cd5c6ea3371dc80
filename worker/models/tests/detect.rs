//! MTCNN with real weights: facenet-pytorch's three legacy checkpoints, merged into one file by
//! the converter, find the faces in scikit-image's sample photos and nothing in a cup of coffee.

mod common;

use weir_crds::{ModelArch, ModelSpec};
use weir_models::convert::convert;
use weir_models::vision::mtcnn::{DetectOptions, Detection, Mtcnn};
use weir_models::weights::Weights;
use weir_ops::image::ImageView;

use common::{asset, models_dir};

const OPTIONS: DetectOptions = DetectOptions { min_size: 20, min_score: 0.9, max_detections: 10 };

fn mtcnn(dir: &std::path::Path) -> Mtcnn {
    let fetched = models_dir().join("mtcnn");
    let out = dir.join("mtcnn.safetensors");
    let inputs = ["pnet.pt", "rnet.pt", "onet.pt"].map(|f| fetched.join(f));
    let converted = convert(&[&inputs[0], &inputs[1], &inputs[2]], &out).expect("convert");
    assert_eq!(converted.tensors, 50, "10 P-Net, 14 R-Net and 26 O-Net tensors");
    let spec = ModelSpec::new(ModelArch::Mtcnn, out.display().to_string());
    Mtcnn::load(&spec, &Weights::parse(&asset(&out)).expect("parse")).expect("load")
}

fn detect(model: &Mtcnn, name: &str) -> Vec<Detection> {
    let path = models_dir().join("photos").join(name);
    let img = image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8();
    let view = ImageView { width: img.width(), height: img.height(), channels: 3, data: img.as_raw() };
    let found = model.detect(view, &OPTIONS).expect("detect");
    println!("{name}: {found:?}");
    found
}

/// Whether `b` lies within `tolerance` pixels of `expected` on every edge.
fn near(b: [f32; 4], expected: [f32; 4], tolerance: f32) -> bool {
    b.iter().zip(expected).all(|(v, e)| (v - e).abs() <= tolerance)
}

#[test]
fn mtcnn_finds_the_astronauts_and_the_cameramans_faces_and_none_in_coffee() {
    let dir = tempfile::tempdir().expect("tmp");
    let model = mtcnn(dir.path());
    // Eileen Collins' face in astronaut.png, the cameraman's in camera.png (512x512 each).
    for (name, face) in [("astronaut.png", [181.0, 62.0, 268.0, 172.0]), ("camera.png", [199.0, 119.0, 254.0, 192.0])] {
        let found = detect(&model, name);
        assert_eq!(found.len(), 1, "{name}: {found:?}");
        assert!(found[0].score > 0.99, "{name}: {found:?}");
        assert!(near(found[0].bbox, face, 12.0), "{name}: {found:?}");
    }
    assert!(detect(&model, "coffee.png").is_empty());
}

#[test]
fn images_too_small_to_hold_a_face_have_none_and_empty_images_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let model = mtcnn(dir.path());
    let tiny = vec![128u8; 10 * 10 * 3];
    let view = ImageView { width: 10, height: 10, channels: 3, data: &tiny };
    assert_eq!(model.detect(view, &OPTIONS), Ok(Vec::new()));
    let empty = ImageView { width: 0, height: 0, channels: 3, data: &[] };
    assert!(model.detect(empty, &OPTIONS).expect_err("empty").contains("0x0"));
}

#[test]
fn classifier_weights_are_refused_with_the_missing_tensor_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("effnet.safetensors");
    convert(&[&models_dir().join("efficientnet-lite0/efficientnet-lite0-57934424.pth")], &out).expect("convert");
    let spec = ModelSpec::new(ModelArch::Mtcnn, out.display().to_string());
    let error = Mtcnn::load(&spec, &Weights::parse(&asset(&out)).expect("parse")).err().expect("refused").to_string();
    assert!(error.contains("tensor `pnet.conv1.weight` (shape [10, 3, 3, 3]) is missing"), "{error}");
}

/// Through the step, whose CPU path searches a batch's images side by side: each row gets its own
/// image's faces in the rows' order, a null image stays a null row, and an empty image is a row
/// error naming its row, which leaves the output while every other row stays.
#[test]
fn the_detect_step_searches_a_batch_side_by_side_and_keeps_each_rows_faces() {
    use arrow_array::{Array, Float32Array, ListArray, RecordBatch, StructArray};
    use weir_core::step::Kernel;
    use weir_crds::ImageDetect;
    use weir_models::ModelAssets;
    use weir_ops::image::{Image, image_array};

    let dir = tempfile::tempdir().expect("tmp");
    let model = mtcnn(dir.path());
    let weights = dir.path().join("mtcnn.safetensors");
    let config: ImageDetect = serde_json::from_value(serde_json::json!({
        "input": "image", "output": "faces", "minScore": 0.9,
        "model": {"arch": "mtcnn", "uri": weights.display().to_string()}
    }))
    .expect("config");
    let step = weir_models::steps::detect::kernel(&config, &ModelAssets::new(asset(&weights))).expect("build");
    let photo = |name: &str| {
        let img = image::open(models_dir().join("photos").join(name)).expect("photo").to_rgb8();
        Some(Image { width: img.width(), height: img.height(), channels: 3, data: img.into_raw() })
    };
    let names = ["camera.png", "coffee.png", "astronaut.png", "camera.png", "astronaut.png"];
    let mut images: Vec<Option<Image>> = names.iter().map(|name| photo(name)).collect();
    images.insert(2, None);
    images.insert(4, Some(Image { width: 0, height: 0, channels: 3, data: Vec::new() }));
    let batch = RecordBatch::try_from_iter([("image", image_array(&images))]).expect("batch");
    let out = step.apply(&batch).expect("apply");

    assert_eq!(out.failures.len(), 1, "{:?}", out.failures);
    assert_eq!(out.failures[0].row, 4, "the empty image's row");
    assert!(out.failures[0].message.contains("0x0"), "{}", out.failures[0].message);
    let faces = out.batch.column_by_name("faces").expect("faces");
    let faces = faces.as_any().downcast_ref::<ListArray>().expect("list");
    assert_eq!(faces.len(), 6, "seven rows, the failed one gone");
    // camera, coffee, null, astronaut, camera, astronaut: each row holds its own image's faces,
    // as the model finds them one image at a time.
    let expected = [
        Some("camera.png"),
        Some("coffee.png"),
        None,
        Some("astronaut.png"),
        Some("camera.png"),
        Some("astronaut.png"),
    ];
    for (row, name) in expected.into_iter().enumerate() {
        let Some(name) = name else {
            assert!(faces.is_null(row), "row {row} is null");
            continue;
        };
        let alone: Vec<f32> = detect(&model, name).iter().map(|d| d.score).collect();
        let found = faces.value(row);
        let found = found.as_any().downcast_ref::<StructArray>().expect("struct");
        let scores = found.column_by_name("score").expect("score");
        let scores = scores.as_any().downcast_ref::<Float32Array>().expect("f32");
        assert_eq!(scores.values().to_vec(), alone, "row {row} ({name})");
    }
}
