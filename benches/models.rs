//! Model throughput on the CPU: all-MiniLM-L6-v2 sentences/s at batch 64 (and one short sentence
//! unbatched), EfficientNet-Lite0, ResNet-18 and ResNet-50 images/s at 224x224, each on every
//! core and on one.
//!
//! `cargo bench -p weir-benches --bench models` after `scripts/fetch-models.sh` (options after
//! `--`: `--sentences N` (1024), `--images N` (128), `--batch N` (images per pass, 16)). ResNet
//! weights are random (from `tests/reference/resnet_reference.py`, which needs numpy): speed
//! does not depend on the values.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use weir_crds::{ModelArch, ModelSpec};
use weir_models::ModelAssets;
use weir_models::assets::{Asset, Companion};
use weir_models::text::SentenceEmbedder;
use weir_models::vision::VisionModel;
use weir_models::weights::Weights;

mod harness;

fn main() -> Result<()> {
    let args = harness::Args::from_env();
    let sentences: usize = args.flag("--sentences", 1024)?;
    let images: usize = args.flag("--images", 128)?;
    let batch: usize = args.flag("--batch", 16)?;
    let models = models_dir()?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    for threads in [cores, 1] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
        println!("--- {threads} thread(s)");
        pool.install(|| -> Result<()> {
            minilm(&models, sentences)?;
            let effnet = efficientnet(&models)?;
            vision("EfficientNet-Lite0", &effnet, images, batch)?;
            for arch in [ModelArch::Resnet18, ModelArch::Resnet50] {
                vision(arch.name(), &resnet(arch)?, images, batch)?;
            }
            Ok(())
        })?;
    }
    Ok(())
}

fn models_dir() -> Result<PathBuf> {
    let dir = std::env::var_os("WEIR_MODELS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/weir/models")))
        .context("set WEIR_MODELS")?;
    if !dir.join("efficientnet-lite0").exists() {
        bail!("{} lacks the model files: run scripts/fetch-models.sh", dir.display());
    }
    Ok(dir)
}

fn asset(path: &Path) -> Result<Asset> {
    Asset::read(path).with_context(|| path.display().to_string())
}

fn spec(arch: ModelArch, uri: &Path) -> ModelSpec {
    ModelSpec::new(arch, uri.display().to_string())
}

/// Sentences of 6 to 40 words, like captions and short paragraphs.
fn sentences(count: usize) -> Vec<String> {
    const WORDS: [&str; 16] = [
        "the",
        "river",
        "carries",
        "silt",
        "past",
        "old",
        "mills",
        "where",
        "engineers",
        "measured",
        "flow",
        "every",
        "spring",
        "and",
        "wrote",
        "reports",
    ];
    (0..count)
        .map(|i| (0..6 + (i * 7) % 35).map(|w| WORDS[(i + w * 3) % WORDS.len()]).collect::<Vec<_>>().join(" "))
        .collect()
}

fn minilm(models: &Path, count: usize) -> Result<()> {
    let dir = models.join("all-MiniLM-L6-v2");
    let weights = dir.join("model.safetensors");
    let assets = ModelAssets::new(asset(&weights)?)
        .with(Companion::Tokenizer, asset(&dir.join("tokenizer.json"))?)
        .with(Companion::Config, asset(&dir.join("config.json"))?);
    let model = SentenceEmbedder::load(&spec(ModelArch::Bert, &weights), &assets, None, true)?;
    let texts = sentences(count);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    model.embed(&refs[..64.min(count)], 64)?;
    let started = Instant::now();
    model.embed(&refs, 64)?;
    let seconds = started.elapsed().as_secs_f64();
    let one = ["A man is eating food."];
    let started = Instant::now();
    for _ in 0..20 {
        model.embed(&one, 1)?;
    }
    let single = started.elapsed().as_secs_f64() / 20.0;
    println!(
        "all-MiniLM-L6-v2: {count} sentences (6-40 words) at batch 64: {:.0} sentences/s; one short sentence unbatched: {:.1} ms",
        count as f64 / seconds,
        single * 1e3
    );
    Ok(())
}

fn efficientnet(models: &Path) -> Result<VisionModel> {
    let out = std::env::temp_dir().join("weir-bench-efficientnet-lite0.safetensors");
    if !out.exists() {
        weir_models::convert::convert(&models.join("efficientnet-lite0/efficientnet-lite0-57934424.pth"), &out)?;
    }
    let weights = Weights::parse(&asset(&out)?)?;
    Ok(VisionModel::load(&spec(ModelArch::EfficientNetLite0, &out), &weights)?)
}

fn resnet(arch: ModelArch) -> Result<VisionModel> {
    let dir = std::env::temp_dir().join(format!("weir-bench-{}", arch.name()));
    let weights_path = dir.join("weights.safetensors");
    if !weights_path.exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/reference/resnet_reference.py");
        let python = std::env::var_os("WEIR_PYTHON").unwrap_or_else(|| "python3".into());
        let status = std::process::Command::new(python)
            .arg(script)
            .args([arch.name(), &dir.display().to_string(), "--classes", "1000", "--size", "32", "--batch", "1"])
            .status()?;
        if !status.success() {
            bail!("generating {} weights failed (needs numpy; set WEIR_PYTHON)", arch.name());
        }
    }
    let weights = Weights::parse(&asset(&weights_path)?)?;
    Ok(VisionModel::load(&spec(arch, &weights_path), &weights)?)
}

fn vision(name: &str, model: &VisionModel, count: usize, batch: usize) -> Result<()> {
    let input: Vec<f32> = (0..model.input().elements()).map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5).collect();
    let inputs: Vec<&[f32]> = vec![input.as_slice(); batch];
    let tensor = model.batch(&inputs)?;
    model.probabilities(&model.features(&tensor)?)?;
    let started = Instant::now();
    let passes = count.div_ceil(batch);
    for _ in 0..passes {
        model.probabilities(&model.features(&tensor)?)?.to_vec2::<f32>()?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let done = passes * batch;
    println!(
        "{name}: {done} images 224x224 at batch {batch}: {:.1} images/s ({:.1} ms/image)",
        done as f64 / seconds,
        seconds * 1e3 / done as f64
    );
    Ok(())
}
