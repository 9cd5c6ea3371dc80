//! Video and audio benchmarks on generated media. Video: 640x360 H.264 clips (with B-frames) ->
//! `video.frames` at 1 fps, 224x224 -> Parquet, in the clips' frames per second (decoded or
//! discarded), next to the `ffmpeg` CLI decoding every frame of the same clips on one thread (the
//! decoder floor). Audio: 44.1 kHz stereo MP3 clips -> `audio.decode` to 16 kHz mono -> Parquet,
//! in clips/s.
//!
//! `cargo bench -p weir-benches --bench media` (options after `--`: `--clips N` (8 videos),
//! `--seconds S` (30 per video), `--audio-clips N` (300), `--threads N`, `--memory-limit 512MiB`).

mod harness;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use harness::{Args, data_dir, dir_bytes, run_measured};
use weir::size::format_size;
use weir_testkit::media::{AudioFormat, ToneSpec, VideoCodec, VideoSpec, write_tone, write_video};

const VIDEO_FPS: u32 = 25;
const AUDIO_SECONDS: f64 = 5.0;

fn main() -> Result<()> {
    let args = Args::from_env();
    if let Some(child) = args.child() {
        return harness::child(child);
    }
    let threads: usize = args.flag("--threads", 0)?;
    let memory: String = args.flag("--memory-limit", "512MiB".to_string())?;
    video(&args, threads, &memory)?;
    audio(&args, threads, &memory)
}

fn video(args: &Args, threads: usize, memory: &str) -> Result<()> {
    let clips: usize = args.flag("--clips", 8)?;
    let seconds: u32 = args.flag("--seconds", 30)?;
    // B-frames, as encoders usually write H.264 (the name changed with them: older sets had none).
    let data = data_dir(&format!("video-b-{clips}x{seconds}s"), |dir| {
        for i in 0..clips {
            let spec = VideoSpec {
                seconds: f64::from(seconds),
                fps: VIDEO_FPS,
                width: 640,
                height: 360,
                codec: VideoCodec::H264BFrames,
                gop: 250,
                faststart: false,
                with_audio: false,
            };
            write_video(&dir.join(format!("clip-{i:03}.mp4")), spec);
        }
        Ok(())
    })?;
    let frames = clips as f64 * f64::from(seconds * VIDEO_FPS);
    let floor = ffmpeg_decode_seconds(&data)?;
    let run = run_measured(&video_manifest(&data.display().to_string()), threads, memory)?;
    println!(
        "video: {clips} clips of {seconds} s, 640x360 H.264 (B-frames) at {VIDEO_FPS} fps ({} total), video.frames fps 1 -> 224x224 -> Parquet",
        format_size(dir_bytes(&data)?)
    );
    println!(
        "video: {:.0} source frames/s ({:.0} output frames/s, {:.2} s wall), peak RSS {}",
        frames / run.seconds,
        clips as f64 * f64::from(seconds) / run.seconds,
        run.seconds,
        format_size(run.peak_rss)
    );
    println!("video: ffmpeg CLI, decode only, one thread: {:.0} frames/s (the decoder floor per core)", frames / floor);
    Ok(())
}

/// Seconds the `ffmpeg` CLI takes to decode every clip in `dir` on one thread, discarding frames.
fn ffmpeg_decode_seconds(dir: &Path) -> Result<f64> {
    let started = Instant::now();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "mp4") {
            let status = Command::new("ffmpeg")
                .args(["-hide_banner", "-loglevel", "error", "-threads", "1", "-i"])
                .arg(&path)
                .args(["-f", "null", "-"])
                .status()
                .context("running ffmpeg")?;
            if !status.success() {
                bail!("ffmpeg failed on {}", path.display());
            }
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

fn audio(args: &Args, threads: usize, memory: &str) -> Result<()> {
    let clips: usize = args.flag("--audio-clips", 300)?;
    let data = data_dir(&format!("audio-{clips}"), |dir| {
        for i in 0..clips {
            let spec = ToneSpec {
                seconds: AUDIO_SECONDS,
                frequency: 220 + (i as u32 % 40) * 20,
                sample_rate: 44100,
                channels: 2,
                format: AudioFormat::Mp3,
            };
            write_tone(&dir.join(format!("clip-{i:04}.mp3")), spec);
        }
        Ok(())
    })?;
    let run = run_measured(&audio_manifest(&data.display().to_string()), threads, memory)?;
    println!(
        "audio: {clips} MP3 clips of {AUDIO_SECONDS} s, 44.1 kHz stereo ({} total), audio.decode -> 16 kHz mono -> Parquet",
        format_size(dir_bytes(&data)?)
    );
    println!(
        "audio: {:.0} clips/s ({:.0} s of audio per second, {:.2} s wall), peak RSS {}",
        clips as f64 / run.seconds,
        clips as f64 * AUDIO_SECONDS / run.seconds,
        run.seconds,
        format_size(run.peak_rss)
    );
    Ok(())
}

fn video_manifest(data: &str) -> String {
    format!(
        "apiVersion: weir.dev/v1alpha1
kind: MultimodalJob
metadata: {{name: bench-video}}
spec:
  source: {{files: {{uri: \"{data}/\", glob: \"*.mp4\", filesPerUnit: 2}}}}
  steps:
    - {{op: video.frames, input: uri, output: frame, fps: 1, width: 224, height: 224}}
    - {{op: select, columns: [uri, frame_index, frame_timestamp, frame]}}
  sink: {{parquet: {{uri: \"{{out}}/\"}}}}
"
    )
}

fn audio_manifest(data: &str) -> String {
    format!(
        "apiVersion: weir.dev/v1alpha1
kind: MultimodalJob
metadata: {{name: bench-audio}}
spec:
  source: {{files: {{uri: \"{data}/\", glob: \"*.mp3\", filesPerUnit: 50}}}}
  steps:
    - {{op: audio.decode, input: uri, output: audio, sampleRate: 16000, channels: 1}}
    - {{op: select, columns: [uri, audio]}}
  sink: {{parquet: {{uri: \"{{out}}/\"}}}}
"
    )
}
