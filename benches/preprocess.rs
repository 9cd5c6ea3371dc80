//! Image preprocessing benchmark: decode -> resize 224x224 -> JPEG encode -> Parquet on 2,000
//! generated photo-like JPEGs (300-800 px sides). Prints images/s and the peak RSS of the run.
//!
//! `cargo bench -p weir-benches --bench preprocess` (options after `--`: `--images N`,
//! `--threads N`, `--memory-limit 512MiB`, `--linearity K`: also run on K times the images and
//! print how far the time is from linear and both peaks; `--floor`: also time the kernels alone
//! (decode, resize, encode on the bytes already in memory, on all cores) and print the pipeline's
//! time against that floor; `--draft`: decode with `draft: {width: 224, height: 224}`, in the
//! pipeline and the floor alike). Data sets are generated once under the target dir.

mod harness;

use anyhow::Result;
use harness::{Args, data_dir, dir_bytes, run_measured};
use weir::size::format_size;
use weir_testkit::images::{JpegSet, write_jpeg_set};

fn main() -> Result<()> {
    let args = Args::from_env();
    if let Some(child) = args.child() {
        return harness::child(child);
    }
    let images: usize = args.flag("--images", 2000)?;
    let threads: usize = args.flag("--threads", 0)?;
    let memory: String = args.flag("--memory-limit", "256MiB".to_string())?;
    let linearity: usize = args.flag("--linearity", 1)?;
    let floor = args.has("--floor");
    let draft = args.has("--draft").then_some(weir_crds::DraftSize { width: 224, height: 224 });
    let data = jpeg_set(images)?;
    let bytes = dir_bytes(&data)?;
    let run = run_measured(&manifest_text(&data.display().to_string(), draft), threads, &memory)?;
    println!(
        "preprocess: {images} JPEGs ({} total, {} avg), decode{} -> resize 224x224 -> JPEG q85 -> Parquet",
        format_size(bytes),
        format_size(bytes / images as u64),
        if draft.is_some() { " (draft 224x224)" } else { "" }
    );
    println!(
        "preprocess: {:.0} images/s  ({:.2} s wall, process start included), peak RSS {}",
        images as f64 / run.seconds,
        run.seconds,
        format_size(run.peak_rss)
    );
    if floor {
        let seconds = kernel_floor(&data, threads, draft)?;
        println!(
            "floor: decode -> resize -> encode alone, bytes in memory: {:.2} s ({:.0} images/s); the pipeline takes {:.2}x the floor",
            seconds,
            images as f64 / seconds,
            run.seconds / seconds
        );
    }
    if linearity > 1 {
        let more = images * linearity;
        let large = run_measured(&manifest_text(&jpeg_set(more)?.display().to_string(), draft), threads, &memory)?;
        println!(
            "linearity: {images} -> {more} images: {:.2} s -> {:.2} s wall, {:.3}x the linear time \
             ({:.0} -> {:.0} images/s); peak RSS {} -> {}",
            run.seconds,
            large.seconds,
            large.seconds / (run.seconds * linearity as f64),
            images as f64 / run.seconds,
            more as f64 / large.seconds,
            format_size(run.peak_rss),
            format_size(large.peak_rss)
        );
    }
    Ok(())
}

/// Seconds to decode, resize to 224x224 (bilinear) and encode (JPEG q85) every JPEG under `dir`,
/// read into memory first, on a pool of `threads` (0: all cores): the same kernels the pipeline
/// runs, without files, morsels, Arrow or Parquet.
fn kernel_floor(dir: &std::path::Path, threads: usize, draft: Option<weir_crds::DraftSize>) -> Result<f64> {
    use rayon::prelude::*;
    use weir_ops::image::decode::DecodeImages;
    let mut files: Vec<Vec<u8>> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "jpg") {
            files.push(std::fs::read(path)?);
        }
    }
    let config = weir_crds::ImageDecode {
        input: "bytes".into(),
        output: "image".into(),
        mode: None,
        max_pixels: None,
        apply_orientation: None,
        draft,
        concurrency: None,
        pool: None,
    };
    let decoder = DecodeImages::from_config(&config);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
    let started = std::time::Instant::now();
    pool.install(|| {
        files.par_iter().try_for_each(|bytes| -> Result<(), String> {
            let image = decoder.decode(bytes)?;
            let small = weir_ops::image::resize::resize(image.view(), 224, 224, weir_crds::ResizeFilter::Bilinear)?;
            weir_ops::image::encode::encode(small.view(), weir_crds::ImageFormat::Jpeg, 85).map(drop)
        })
    })
    .map_err(anyhow::Error::msg)?;
    Ok(started.elapsed().as_secs_f64())
}

/// `count` generated photo-like JPEGs (300-800 px, quality 85), made once.
fn jpeg_set(count: usize) -> Result<std::path::PathBuf> {
    data_dir(&format!("jpeg-{count}"), |dir| {
        write_jpeg_set(dir, JpegSet { count, quality: 85, ..JpegSet::default() })?;
        Ok(())
    })
}

fn manifest_text(data: &str, draft: Option<weir_crds::DraftSize>) -> String {
    let draft = draft.map(|d| format!(", draft: {{width: {}, height: {}}}", d.width, d.height)).unwrap_or_default();
    format!(
        "apiVersion: weir.dev/v1alpha1
kind: MultimodalJob
metadata: {{name: bench-preprocess}}
spec:
  source: {{files: {{uri: \"{data}/\", glob: \"*.jpg\", filesPerUnit: 250}}}}
  steps:
    - {{op: download, input: uri, output: bytes}}
    - {{op: image.decode, input: bytes, output: image{draft}}}
    - {{op: image.resize, input: image, output: image, width: 224, height: 224}}
    - {{op: image.encode, input: image, output: thumbnail, quality: 85}}
    - {{op: select, columns: [uri, thumbnail]}}
  sink: {{parquet: {{uri: \"{{out}}/\"}}}}
"
    )
}
