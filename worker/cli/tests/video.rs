//! `weir run` end to end on generated video and audio: a long video samples in bounded memory,
//! and audio in every container decodes and chunks while a bad file is recorded, not fatal.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;
use weir_testkit::media::{AudioFormat, ToneSpec, VideoCodec, VideoSpec, write_garbage, write_tone, write_video};
use weir_testkit::process::wait_peak_rss;

/// Peak resident memory of a finished child, in bytes, and whether it succeeded.
fn run_measuring_peak_rss(cmd: &mut std::process::Command) -> (bool, u64) {
    let child = cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().expect("spawn");
    let finished = wait_peak_rss(child).expect("wait4");
    (finished.success, finished.peak_rss)
}

fn u64s(batches: &[arrow_array::RecordBatch], name: &str) -> Vec<u64> {
    use arrow_array::cast::AsArray;
    batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(name).expect(name).as_primitive::<arrow_array::types::UInt64Type>().values().to_vec()
        })
        .collect()
}

#[test]
fn a_ten_minute_720p_video_streams_its_3000_frames_in_bounded_memory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let videos = tmp.path().join("videos");
    std::fs::create_dir_all(&videos).expect("mkdir");
    let spec = VideoSpec {
        seconds: 600.0,
        fps: 5,
        width: 1280,
        height: 720,
        codec: VideoCodec::H264,
        gop: 50,
        faststart: false,
        with_audio: false,
    };
    let started = std::time::Instant::now();
    write_video(&videos.join("long.mp4"), spec);
    eprintln!("generated 10 min of 720p in {:.1} s", started.elapsed().as_secs_f64());
    let out = tmp.path().join("out");
    let spec = format!(
        "  source: {{files: {{uri: \"{}\"}}}}
  steps:
    - {{op: video.frames, input: uri, output: frame, width: 224, height: 224}}
    - {{op: image.encode, input: frame, output: jpeg, quality: 85}}
    - {{op: select, columns: [uri, frame_index, frame_timestamp, jpeg]}}
  sink: {{parquet: {{uri: \"{}\"}}}}
",
        videos.display(),
        out.display()
    );
    let manifest = write_manifest(tmp.path(), "long-video", &spec);
    let started = std::time::Instant::now();
    let (ok, peak) = run_measuring_peak_rss(weir().args(["run", "--no-progress", "--threads", "2"]).arg(&manifest));
    eprintln!("weir run took {:.1} s", started.elapsed().as_secs_f64());
    assert!(ok, "the run failed");
    let rows = read_parquet_dir(&out);
    let index = u64s(&rows, "frame_index");
    assert_eq!(index, (0..3000).collect::<Vec<_>>(), "every frame of 600 s at 5 fps, in order");
    let thumb = image::load_from_memory(&binaries(&rows, "jpeg")[2999]).expect("the last frame decodes");
    assert_eq!((thumb.width(), thumb.height()), (224, 224));
    // The kept frames alone are 3,000 x 224 x 224 x 3 = 450 MB, and decoding passes 150 MB of
    // packets and 3,000 decoded 720p frames of 1.4 MB: holding any of it whole would not fit. The
    // frames leave the step in parts of 16 MiB that wait for downstream, so what is held is the
    // binary (~35 MiB for a debug build), a 720p decoder, and a few parts on their way to the sink.
    let limit = 192u64 << 20;
    eprintln!("peak RSS streaming 3000 frames from 10 min of 720p: {} MiB", peak >> 20);
    assert!(peak < limit, "peak RSS {} MiB exceeds {} MiB", peak >> 20, limit >> 20);
}

fn tone(format: AudioFormat) -> ToneSpec {
    ToneSpec { seconds: 2.5, frequency: 440, sample_rate: 44100, channels: 2, format }
}

fn audio_spec(audio: &Path, out: &Path) -> String {
    format!(
        "  source: {{files: {{uri: \"{}\", filesPerUnit: 3}}}}
  steps:
    - {{op: audio.decode, input: uri, output: audio, sampleRate: 16000, channels: 1}}
    - {{op: audio.chunk, input: audio, output: chunk, windowSeconds: 1}}
    - {{op: select, columns: [uri, chunk, chunk_index, chunk_offset]}}
  sink: {{parquet: {{uri: \"{}\"}}}}
  errorPolicy: {{onRowError: skip, maxErrorRatio: 0.5}}
",
        audio.display(),
        out.display()
    )
}

#[test]
fn audio_in_every_container_decodes_and_chunks_and_a_bad_file_is_recorded() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (audio, out) = (tmp.path().join("audio"), tmp.path().join("out"));
    std::fs::create_dir_all(&audio).expect("mkdir");
    let good: BTreeSet<String> = AudioFormat::ALL
        .iter()
        .map(|f| file_uri(&write_tone(&audio.join(format!("tone.{}", f.extension())), tone(*f))))
        .collect();
    let bad = file_uri(&write_garbage(&audio.join("notes.mp3")));
    let manifest = write_manifest(tmp.path(), "audio", &audio_spec(&audio, &out));
    let result = run(&manifest, &[]);
    assert!(result.status.success(), "stderr: {}", text(&result.stderr));

    let rows = read_parquet_dir(&out);
    let uris = strings(&rows, "uri");
    assert_eq!(uris.len(), 15, "three windows (1 s, 1 s, 0.5 s) from each of five files: {uris:?}");
    assert_eq!(uris.iter().cloned().collect::<BTreeSet<_>>(), good);
    let offsets: Vec<f64> = rows
        .iter()
        .flat_map(|b| {
            use arrow_array::cast::AsArray;
            b.column_by_name("chunk_offset")
                .expect("offset")
                .as_primitive::<arrow_array::types::Float64Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(offsets.iter().filter(|o| **o == 2.0).count(), 5, "{offsets:?}");

    let errors = read_parquet_dir(&out.join("_errors"));
    assert_eq!(strings(&errors, "row_ref"), std::slice::from_ref(&bad));
    assert_eq!(strings(&errors, "step"), ["audio.decode"]);
    let message = &strings(&errors, "message")[0];
    assert!(
        message.starts_with(&format!("{bad}: not a readable audio or video file (4000 bytes, starting 54 68 69 73")),
        "{message}"
    );
}

#[test]
fn a_video_served_over_http_is_read_through_a_temporary_file() {
    use arrow_array::cast::AsArray;
    let tmp = tempfile::tempdir().expect("tmp");
    let served = tmp.path().join("served");
    std::fs::create_dir_all(&served).expect("mkdir");
    write_video(&served.join("clip.mp4"), VideoSpec::small(2.0, 10));
    let base = serve_http(served);
    let (clip, missing) = (format!("{base}/clip.mp4"), format!("{base}/missing.mp4"));
    write_uri_parquet(&tmp.path().join("in/input.parquet"), &[clip.clone(), missing.clone()]);
    let out = tmp.path().join("out");
    let source = format!("parquet: {{uri: \"{}\"}}", tmp.path().join("in").display());
    let spec = metadata_spec(&source, &out, "  errorPolicy: {onRowError: skip, maxErrorRatio: 0.5}\n");
    let result = run(&write_manifest(tmp.path(), "http", &spec), &[]);
    assert!(result.status.success(), "stderr: {}", text(&result.stderr));
    let rows = read_parquet_dir(&out);
    assert_eq!(strings(&rows, "uri"), std::slice::from_ref(&clip));
    let meta = rows[0].column_by_name("meta").expect("meta").as_struct();
    let frames = meta.column_by_name("frames").expect("frames").as_primitive::<arrow_array::types::UInt64Type>();
    assert_eq!(frames.value(0), 20);
    let errors = read_parquet_dir(&out.join("_errors"));
    assert_eq!(strings(&errors, "message"), [format!("{missing}: not found")]);
}

/// A job's spec: `video.metadata` of every row of `source` (a source's YAML), `[uri, meta]` into
/// Parquet at `out`, then `extra` lines.
fn metadata_spec(source: &str, out: &Path, extra: &str) -> String {
    format!(
        "  source: {{{source}}}
  steps:
    - {{op: video.metadata, input: uri, output: meta}}
    - {{op: select, columns: [uri, meta]}}
  sink: {{parquet: {{uri: \"{}\"}}}}
{extra}",
        out.display()
    )
}

/// The libraries the dynamic loader reports loading for `cmd` (glibc's `LD_DEBUG=files`), and the
/// command's output.
fn loaded_libraries(cmd: &mut std::process::Command) -> (std::process::Output, String) {
    let output = cmd.env("LD_DEBUG", "files").output().expect("spawn weir");
    let loaded = text(&output.stderr).lines().filter(|line| line.contains("file=")).collect::<Vec<_>>().join("\n");
    (output, loaded)
}

#[test]
fn ffmpeg_is_loaded_by_a_job_that_reads_video_and_not_at_start() {
    let (output, loaded) = loaded_libraries(weir().arg("--version"));
    assert!(output.status.success());
    assert!(loaded.contains("libturbojpeg"), "LD_DEBUG reports the libraries loaded: {loaded}");
    assert!(
        !loaded.contains("libavcodec") && !loaded.contains("libavutil"),
        "weir loads FFmpeg at start: an FFmpeg function is called that weir-ffmpeg-loader does not define \
         (list them: readelf --dyn-syms -W <weir> | grep -E '@LIB(AV|SW)'), so the linker took it from the library:\n{loaded}"
    );

    let tmp = tempfile::tempdir().expect("tmp");
    let clips = tmp.path().join("clips");
    std::fs::create_dir_all(&clips).expect("mkdir");
    write_video(&clips.join("clip.mp4"), VideoSpec::small(2.0, 10));
    let out = tmp.path().join("out");
    let spec = metadata_spec(&format!("files: {{uri: \"{}\"}}", clips.display()), &out, "");
    let manifest = write_manifest(tmp.path(), "video", &spec);
    let (output, loaded) = loaded_libraries(weir().arg("run").arg(&manifest).arg("--no-progress"));
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    assert!(loaded.contains("file=libavformat.so") && loaded.contains("dynamically loaded"), "{loaded}");
    assert_eq!(read_parquet_dir(&out).iter().map(|b| b.num_rows()).sum::<usize>(), 1);
}
