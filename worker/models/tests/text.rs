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

/// Our CPU encoder gives candle's `BertModel`'s hidden states on the real weights, padding
/// included: rows of 3, 9 and 1 real tokens, padded to 9.
#[test]
fn our_cpu_encoder_matches_candles_bert_model() {
    use candle_core::{DType, Device, Tensor};
    use candle_transformers::models::bert::{BertModel, Config};
    use weir_models::text::encoder::CpuBert;
    use weir_models::weights::Weights;

    let dir = models_dir().join("all-MiniLM-L6-v2");
    let config: Config =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).expect("config")).expect("config.json");
    let weights = || {
        Weights::parse(&asset(&dir.join("model.safetensors")))
            .expect("weights")
            .into_var_builder(DType::F32, &Device::Cpu)
    };
    let ours = CpuBert::load(weights(), &config).expect("our encoder");
    let candles = BertModel::load(weights(), &config).expect("candle's encoder");
    let (lengths, longest) = ([3usize, 9, 1], 9);
    let mut ids = vec![0u32; lengths.len() * longest];
    let mut mask = vec![0u32; lengths.len() * longest];
    for (row, &length) in lengths.iter().enumerate() {
        for t in 0..length {
            ids[row * longest + t] = 101 + ((row * 37 + t * 1013) % 20_000) as u32;
            mask[row * longest + t] = 1;
        }
    }
    let shape = (lengths.len(), longest);
    let id_tensor = Tensor::from_vec(ids.clone(), shape, &Device::Cpu).expect("ids");
    let mask = Tensor::from_vec(mask, shape, &Device::Cpu).expect("mask");
    let want =
        candles.forward(&id_tensor, &id_tensor.zeros_like().expect("zeros"), Some(&mask)).expect("candle's pass");
    let got = ours.forward(&ids, &lengths).expect("our pass");
    assert_eq!(got.dims(), want.dims());
    let scale = want.abs().and_then(|a| a.max_all()).and_then(|m| m.to_scalar::<f32>()).expect("scale");
    let diff = (got - want).and_then(|d| d.abs()).and_then(|d| d.max_all()).and_then(|m| m.to_scalar::<f32>());
    let diff = diff.expect("diff");
    println!("hidden states: max |diff| {diff:.3e} of max |value| {scale:.3e}");
    assert!(diff <= 1e-5 * scale.max(1.0), "our encoder differs from candle's by {diff} (values up to {scale})");
}
