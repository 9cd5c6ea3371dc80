//! The memory budget against the process's peak RSS, where rows are large: big photos (decode ->
//! 224x224 thumbnail -> JPEG) and full-resolution video frames (every frame of a large video ->
//! 224x224 -> JPEG), each under several `--memory-limit`s. Prints, per run, the budget, the peak
//! RSS of the whole run and their ratio, beside the size of one decoded row, which no budget can
//! make smaller.
//!
//! `cargo bench -p weir-benches --bench memory` (options after `--`: `--photos N` (20),
//! `--photo-side PX` (5000), `--frame-side PX` (8192), `--frames N` (6), `--budgets 64MiB,128MiB,256MiB`,
//! `--threads N` (0: one per core)).

mod harness;

use anyhow::{Context, Result};
use harness::{Args, data_dir, run_measured};
use weir::size::{format_size, parse_size};
use weir_testkit::media::ffmpeg;

fn main() -> Result<()> {
    let args = Args::from_env();
    if let Some(child) = args.child() {
        return harness::child(child);
    }
    let threads: usize = args.flag("--threads", 0)?;
    let budgets: String = args.flag("--budgets", "64MiB,128MiB,256MiB".to_string())?;
    let budgets: Vec<&str> = budgets.split(',').collect();
    photos(&args, threads, &budgets)?;
    frames(&args, threads, &budgets)
}

fn photos(args: &Args, threads: usize, budgets: &[&str]) -> Result<()> {
    let count: usize = args.flag("--photos", 20)?;
    let side: u32 = args.flag("--photo-side", 5000)?;
    let data = data_dir(&format!("memory-photos-{count}x{side}"), |dir| {
        for i in 0..count {
            // testsrc2 moves with time, so each photo differs.
            let source = format!("testsrc2=size={side}x{side}:rate=1");
            let out = dir.join(format!("photo-{i:03}.jpg"));
            let out = out.to_str().context("a non-UTF-8 data directory")?;
            ffmpeg(&["-f", "lavfi", "-i", &source, "-ss", &i.to_string(), "-frames:v", "1", "-q:v", "3", out]);
        }
        Ok(())
    })?;
    let row = u64::from(side) * u64::from(side) * 3;
    println!(
        "photos: {count} JPEGs of {side}x{side} (one decoded: {}), image.decode -> 224x224 -> JPEG -> Parquet",
        format_size(row)
    );
    let manifest = format!(
        "{HEAD}  source: {{files: {{uri: \"{}/\", glob: \"*.jpg\", filesPerUnit: 4}}}}\n  steps:\n    - {{op: download, input: uri, output: bytes}}\n    - {{op: image.decode, input: bytes, output: image}}\n{TAIL}",
        data.display()
    );
    measure("photos", &manifest, threads, budgets, row)
}

fn frames(args: &Args, threads: usize, budgets: &[&str]) -> Result<()> {
    let side: u32 = args.flag("--frame-side", 8192)?;
    let count: u32 = args.flag("--frames", 6)?;
    let data = data_dir(&format!("memory-frames-{count}x{side}"), |dir| {
        let source = format!("testsrc2=size={side}x{side}:rate=2");
        let frames = count.to_string();
        let out = dir.join("video.mp4");
        let out = out.to_str().context("a non-UTF-8 data directory")?;
        let encode = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", out];
        ffmpeg(&[&["-f", "lavfi", "-i", &source, "-frames:v", &frames][..], &encode[..]].concat());
        Ok(())
    })?;
    let row = u64::from(side) * u64::from(side) * 3;
    println!(
        "frames: one H.264 video of {count} frames at {side}x{side} (one RGB frame: {}), every frame -> 224x224 -> JPEG -> Parquet",
        format_size(row)
    );
    let manifest = format!(
        "{HEAD}  source: {{files: {{uri: \"{}/\", glob: \"*.mp4\"}}}}\n  steps:\n    - {{op: video.frames, input: uri, output: image}}\n{TAIL}",
        data.display()
    );
    measure("frames", &manifest, threads, budgets, row)
}

const HEAD: &str = "apiVersion: weir.dev/v1alpha1\nkind: MultimodalJob\nmetadata: {name: memory-bench}\nspec:\n";
const TAIL: &str = "    - {op: image.resize, input: image, output: thumb, width: 224, height: 224}\n    - {op: image.encode, input: thumb, output: jpeg, format: jpeg, quality: 75}\n    - {op: select, columns: [uri, jpeg]}\n  sink: {parquet: {uri: \"{out}\"}}\n";

/// Runs `manifest` under each budget and prints its peak RSS against the budget and one row.
fn measure(label: &str, manifest: &str, threads: usize, budgets: &[&str], row: u64) -> Result<()> {
    for budget in budgets {
        let limit = parse_size(budget).map_err(anyhow::Error::msg)?;
        let run = run_measured(manifest, threads, budget)?;
        println!(
            "{label}: --memory-limit {:>9}  peak RSS {:>9} = {:.1}x the budget, {:.1}x max(budget, one row)  ({:.2} s)",
            format_size(limit),
            format_size(run.peak_rss),
            run.peak_rss as f64 / limit as f64,
            run.peak_rss as f64 / limit.max(row) as f64,
            run.seconds
        );
    }
    Ok(())
}
