//! Model throughput on the CPU: all-MiniLM-L6-v2 sentences/s at batch 64 (and one short sentence
//! unbatched), EfficientNet-Lite0, ResNet-18 and ResNet-50 images/s at 224x224, MTCNN faces in
//! 512x512 photos, NanoDet's COCO objects in four photos (416x416 input; both detectors one photo
//! at a time and side by side, as `image.detect` runs a batch), and Whisper tiny.en on 30 s
//! windows of espeak-ng speech; each on every core and on one.
//!
//! `cargo bench -p weir-benches --bench models` after `scripts/fetch-models.sh` (options after
//! `--`: `--sentences N` (1024), `--images N` (128), `--batch N` (images per pass, 16), `--only
//! NAME[,NAME]` (of minilm, efficientnet, resnet, mtcnn, nanodet, whisper; default
//! all), `--threads N` (only N threads; default every core, then one)). ResNet
//! weights are random (from `tests/reference/resnet_reference.py`, which needs numpy): speed
//! does not depend on the values.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use weir_crds::{ModelArch, ModelSpec};
use weir_models::ModelAssets;
use weir_models::assets::{Asset, Companion};
use weir_models::speech::{Options, Transcriber};
use weir_models::text::SentenceEmbedder;
use weir_models::vision::VisionModel;
use weir_models::vision::mtcnn::{DetectOptions, Mtcnn};
use weir_models::vision::nanodet::{self, NanoDet};
use weir_models::weights::Weights;

mod harness;

fn main() -> Result<()> {
    let args = harness::Args::from_env();
    let sentences: usize = args.flag("--sentences", 1024)?;
    let images: usize = args.flag("--images", 128)?;
    let batch: usize = args.flag("--batch", 16)?;
    let only: String = args.flag("--only", String::from("all"))?;
    let wanted = |name: &str| only == "all" || only.split(',').any(|o| o.trim() == name);
    let models = models_dir()?;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let counts = match args.flag("--threads", 0usize)? {
        0 => vec![cores, 1],
        threads => vec![threads],
    };
    for threads in counts {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
        println!("--- {threads} thread(s)");
        pool.install(|| -> Result<()> {
            if wanted("minilm") {
                minilm(&models, sentences)?;
            }
            if wanted("efficientnet") {
                vision("EfficientNet-Lite0", &efficientnet(&models)?, images, batch)?;
            }
            if wanted("resnet") {
                for arch in [ModelArch::Resnet18, ModelArch::Resnet50] {
                    vision(arch.name(), &resnet(arch)?, images, batch)?;
                }
            }
            if wanted("mtcnn") {
                mtcnn(&models)?;
            }
            if wanted("nanodet") {
                nanodet(&models)?;
            }
            if wanted("whisper") {
                whisper(&models)?;
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
        weir_models::convert::convert(&[&models.join("efficientnet-lite0/efficientnet-lite0-57934424.pth")], &out)?;
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

/// MTCNN on scikit-image's two 512x512 photos with a face, eight passes each.
fn mtcnn(models: &Path) -> Result<()> {
    let out = std::env::temp_dir().join("weir-bench-mtcnn.safetensors");
    if !out.exists() {
        let nets = ["pnet.pt", "rnet.pt", "onet.pt"].map(|f| models.join("mtcnn").join(f));
        weir_models::convert::convert(&[&nets[0], &nets[1], &nets[2]], &out)?;
    }
    let model = Mtcnn::load(&spec(ModelArch::Mtcnn, &out), &Weights::parse(&asset(&out)?)?)?;
    let options = DetectOptions { min_size: 20, min_score: 0.7, max_detections: 100 };
    let (per_image, side_by_side) =
        photo_rates(models, &["astronaut.png", "camera.png"], 8, |view| model.detect(view, &options).map(drop))?;
    println!(
        "MTCNN: 512x512 photos, minSize 20: {:.1} images/s ({:.1} ms/image); side by side {side_by_side:.1} images/s",
        1.0 / per_image,
        per_image * 1e3
    );
    Ok(())
}

/// NanoDet on four photos of 451x300 to 741x500 (each resized to its 416x416 input), one image per
/// pass as the step runs it.
fn nanodet(models: &Path) -> Result<()> {
    let out = std::env::temp_dir().join("weir-bench-nanodet.safetensors");
    if !out.exists() {
        weir_models::convert::convert(&[&models.join("nanodet/nanodet.json")], &out)?;
    }
    let model = NanoDet::load(&spec(ModelArch::NanoDet, &out), &Weights::parse(&asset(&out)?)?)?;
    let options = nanodet::Options { min_score: 0.35, iou_threshold: 0.6, max_detections: 100, classes: Vec::new() };
    let photos = ["astronaut.png", "coffee.png", "chelsea.png", "motorcycle_left.png"];
    let (per_image, side_by_side) = photo_rates(models, &photos, 4, |view| model.detect(view, &options).map(drop))?;
    println!(
        "NanoDet: COCO objects, 416x416 input: {:.1} images/s ({:.1} ms/image); side by side {side_by_side:.1} images/s",
        1.0 / per_image,
        per_image * 1e3
    );
    Ok(())
}

/// How fast `detect` searches the sample `photos` (each `passes` times): the mean seconds per photo
/// one at a time, and photos per second when they are searched side by side on every compute
/// thread, as `image.detect` searches a batch's images on the CPU.
fn photo_rates(
    models: &Path,
    photos: &[&str],
    passes: usize,
    detect: impl Fn(weir_ops::image::ImageView<'_>) -> Result<(), String> + Sync,
) -> Result<(f64, f64)> {
    use rayon::prelude::*;
    let photos: Vec<image::RgbImage> = photos
        .iter()
        .map(|name| Ok(image::open(models.join("photos").join(name))?.to_rgb8()))
        .collect::<Result<_>>()?;
    fn view(img: &image::RgbImage) -> weir_ops::image::ImageView<'_> {
        weir_ops::image::ImageView { width: img.width(), height: img.height(), channels: 3, data: img.as_raw() }
    }
    let searches = passes * photos.len();
    let started = Instant::now();
    for i in 0..searches {
        detect(view(&photos[i % photos.len()])).map_err(anyhow::Error::msg)?;
    }
    let one_at_a_time = started.elapsed().as_secs_f64() / searches as f64;
    let started = Instant::now();
    (0..searches)
        .into_par_iter()
        .try_for_each(|i| detect(view(&photos[i % photos.len()])))
        .map_err(anyhow::Error::msg)?;
    let side_by_side = searches as f64 / started.elapsed().as_secs_f64();
    Ok((one_at_a_time, side_by_side))
}

/// Whisper tiny.en on four 30 s windows of espeak-ng speech, batched 4 at a time.
fn whisper(models: &Path) -> Result<()> {
    let package = models.join("whisper-tiny.en");
    let out = std::env::temp_dir().join("weir-bench-whisper-tiny.en.safetensors");
    if !out.exists() {
        weir_models::convert::convert(&[&package.join("model.bin")], &out)?;
    }
    let assets = ModelAssets::new(asset(&out)?).with(Companion::Tokenizer, asset(&package.join("tokenizer.json"))?);
    let options = Options { language: None, timestamps: true };
    let model = Transcriber::load(&spec(ModelArch::Whisper, &out), &assets, &options)?;
    let window = spoken_window()?;
    let clips = vec![window.as_slice(); 4];
    model.transcribe(&clips[..1], &options, 1)?;
    let started = Instant::now();
    let transcripts = model.transcribe(&clips, &options, 4)?;
    let seconds = started.elapsed().as_secs_f64();
    let words = transcripts.iter().map(|t| t.text.split_whitespace().count()).sum::<usize>();
    println!(
        "Whisper tiny.en: 4 x 30 s of speech ({words} words) at batch 4: {:.1} s, {:.0}x real time",
        seconds,
        120.0 / seconds
    );
    Ok(())
}

/// 30 s of 16 kHz mono speech: espeak-ng reading a paragraph.
fn spoken_window() -> Result<Vec<f32>> {
    let text = "The river carries silt past the old mills. Engineers measured the flow every spring and wrote \
        long reports about the weather, the water and the fish. In the afternoon the children played in the \
        park while it rained, and in the evening everybody went home to read the reports again.";
    Ok(weir_testkit::speech::speak_16k_mono(text, 150, Some(30))?)
}
