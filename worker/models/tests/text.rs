//! all-MiniLM-L6-v2 from its PyPI package: the published similarity, batching that does not
//! change results, and load errors that name the tensor.

mod common;

use bytes::Bytes;
use weir_crds::{ModelArch, ModelSpec};
use weir_models::ModelAssets;
use weir_models::assets::{Asset, Companion};
use weir_models::text::SentenceEmbedder;

use common::{asset, models_dir};

fn minilm_assets() -> (ModelSpec, ModelAssets) {
    let dir = models_dir().join("all-MiniLM-L6-v2");
    let weights = dir.join("model.safetensors");
    let spec = ModelSpec::new(ModelArch::Bert, weights.display().to_string());
    let assets = ModelAssets::new(asset(&weights))
        .with(Companion::Tokenizer, asset(&dir.join("tokenizer.json")))
        .with(Companion::Config, asset(&dir.join("config.json")));
    (spec, assets)
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

#[test]
fn minilm_reproduces_the_published_similarity() {
    let (spec, assets) = minilm_assets();
    let model = SentenceEmbedder::load(&spec, &assets, None, true).expect("load");
    assert_eq!(model.dimensions(), 384);
    let texts = ["A man is eating food.", "A man is eating a piece of bread."];
    let vectors: Vec<Vec<f32>> = model.embed(&texts, 64).expect("embed").into_iter().map(|r| r.expect("row")).collect();
    let similarity = cosine(&vectors[0], &vectors[1]);
    println!("cosine similarity: {similarity:.4}");
    assert!((similarity - 0.7553).abs() <= 0.001, "similarity {similarity}, published 0.7553");
    let norm: f32 = vectors[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "normalised vectors have length 1, got {norm}");
}

#[test]
fn batching_and_bucketing_do_not_change_a_texts_vector() {
    let (spec, assets) = minilm_assets();
    let model = SentenceEmbedder::load(&spec, &assets, None, true).expect("load");
    let long = "word ".repeat(400);
    let texts = ["short", long.as_str(), "a sentence of medium length about rivers", ""];
    let together = model.embed(&texts, 3).expect("together");
    for (i, text) in texts.iter().enumerate() {
        let alone = model.embed(&[text], 1).expect("alone").remove(0).expect("row");
        let batched = together[i].as_ref().expect("row");
        let diff = alone.iter().zip(batched).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-4, "text {i} differs by {diff} when batched with others");
    }
}

#[test]
fn a_missing_or_misshapen_tensor_fails_the_load_and_is_named() {
    let (spec, assets) = minilm_assets();
    let mut tensors =
        candle_core::safetensors::load_buffer(&assets.weights.bytes, &candle_core::Device::Cpu).expect("weights");
    let name = "encoder.layer.3.attention.self.query.weight";
    tensors.remove(name).expect("present");
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("broken.safetensors");
    candle_core::safetensors::save(&tensors, &path).expect("save");
    let broken = ModelAssets { weights: asset(&path), ..assets.clone() };
    let err = SentenceEmbedder::load(&spec, &broken, None, true).err().expect("refused").to_string();
    assert!(err.contains(name) && err.contains("broken.safetensors"), "{err}");

    let err = SentenceEmbedder::load(
        &spec,
        &ModelAssets { weights: Asset { uri: "empty".into(), bytes: Bytes::new() }, ..assets.clone() },
        None,
        true,
    )
    .err()
    .expect("refused")
    .to_string();
    assert_eq!(err, "weights `empty`: is empty (0 bytes)");
}
