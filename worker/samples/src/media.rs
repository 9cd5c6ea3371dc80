//! Real video and audio fixtures made with the `ffmpeg` command (lavfi test sources), and
//! deliberately broken media files.
//!
//! Every function panics with a clear message when `ffmpeg` is not installed or fails: these are
//! test fixtures, and a test cannot go on without them.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Video codecs the fixtures can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    /// H.264 (libx264, `ultrafast`), in MP4.
    H264,
    /// MPEG-4 Part 2, in MP4 (no external encoder needed).
    Mpeg4,
    /// H.264 as encoders usually write it (libx264 `veryfast`): three B-frames between
    /// references, the middle one itself a reference (B-pyramid), the other two not.
    H264BFrames,
    /// MPEG-4 Part 2 with two B-frames between references (none of them a reference).
    Mpeg4BFrames,
}

/// A generated test-pattern video (`testsrc2`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoSpec {
    pub seconds: f64,
    pub fps: u32,
    pub width: u32,
    pub height: u32,
    pub codec: VideoCodec,
    /// Frames between key frames (a fixed GOP, no scene-cut key frames).
    pub gop: u32,
    /// Put the MP4 index (`moov`) before the media data, as `-movflags +faststart` does.
    pub faststart: bool,
    /// Add a 440 Hz tone as an AAC audio stream.
    pub with_audio: bool,
}

impl VideoSpec {
    /// A short, small H.264 clip: `seconds` at `fps`, 160x120, key frame every `fps` frames.
    pub fn small(seconds: f64, fps: u32) -> Self {
        Self {
            seconds,
            fps,
            width: 160,
            height: 120,
            codec: VideoCodec::H264,
            gop: fps,
            faststart: false,
            with_audio: false,
        }
    }
}

/// Audio containers the fixtures can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    /// PCM 16-bit in WAV.
    Wav,
    Flac,
    /// MP3 (libmp3lame).
    Mp3,
    /// AAC in an MP4 (M4A) container.
    M4a,
    /// Opus in Ogg (always 48 kHz inside; libopus resamples).
    Opus,
}

impl AudioFormat {
    pub const ALL: [AudioFormat; 5] =
        [AudioFormat::Wav, AudioFormat::Flac, AudioFormat::Mp3, AudioFormat::M4a, AudioFormat::Opus];

    pub fn extension(self) -> &'static str {
        match self {
            AudioFormat::Wav => "wav",
            AudioFormat::Flac => "flac",
            AudioFormat::Mp3 => "mp3",
            AudioFormat::M4a => "m4a",
            AudioFormat::Opus => "opus",
        }
    }

    fn codec_args(self) -> &'static [&'static str] {
        match self {
            AudioFormat::Wav => &["-c:a", "pcm_s16le"],
            AudioFormat::Flac => &["-c:a", "flac"],
            AudioFormat::Mp3 => &["-c:a", "libmp3lame", "-b:a", "128k"],
            AudioFormat::M4a => &["-c:a", "aac", "-b:a", "128k"],
            AudioFormat::Opus => &["-c:a", "libopus", "-b:a", "96k", "-f", "ogg"],
        }
    }
}

/// A generated sine tone (`sine`; lavfi's amplitude is 1/8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToneSpec {
    pub seconds: f64,
    pub frequency: u32,
    pub sample_rate: u32,
    pub channels: u32,
    pub format: AudioFormat,
}

/// The amplitude of lavfi's `sine` source.
pub const SINE_AMPLITUDE: f64 = 0.125;

/// The amplitude of each channel of a [`write_tone`] file: the mono sine, spread over two channels
/// by FFmpeg's upmix at 1/√2 each.
pub fn tone_amplitude(channels: u32) -> f64 {
    if channels == 1 { SINE_AMPLITUDE } else { SINE_AMPLITUDE * std::f64::consts::FRAC_1_SQRT_2 }
}

/// Runs `ffmpeg` quietly with `args`, overwriting outputs.
///
/// # Panics
/// When `ffmpeg` is not installed or exits with an error.
pub fn ffmpeg(args: &[&str]) {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `ffmpeg` ({e}): the media tests generate their fixtures with the ffmpeg CLI; install it (Debian: apt-get install ffmpeg)")
        });
    assert!(output.status.success(), "ffmpeg {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_else(|| panic!("fixture path {} is not UTF-8", path.display()))
}

/// Writes a `testsrc2` video to `path` (MP4).
pub fn write_video(path: &Path, spec: VideoSpec) -> PathBuf {
    let source = format!("testsrc2=size={}x{}:rate={}:duration={}", spec.width, spec.height, spec.fps, spec.seconds);
    let gop = spec.gop.to_string();
    let mut args = vec!["-f", "lavfi", "-i", &source];
    let tone = format!("sine=frequency=440:sample_rate=44100:duration={}", spec.seconds);
    if spec.with_audio {
        args.extend(["-f", "lavfi", "-i", &tone, "-c:a", "aac", "-shortest"]);
    }
    match spec.codec {
        VideoCodec::H264 => args.extend(["-c:v", "libx264", "-preset", "ultrafast", "-x264-params", "scenecut=0"]),
        VideoCodec::Mpeg4 => args.extend(["-c:v", "mpeg4", "-q:v", "5"]),
        VideoCodec::H264BFrames => {
            args.extend(["-c:v", "libx264", "-preset", "veryfast", "-x264-params", "scenecut=0"])
        }
        VideoCodec::Mpeg4BFrames => args.extend(["-c:v", "mpeg4", "-q:v", "5", "-bf", "2"]),
    }
    args.extend(["-g", &gop, "-keyint_min", &gop, "-pix_fmt", "yuv420p"]);
    if spec.faststart {
        args.extend(["-movflags", "+faststart"]);
    }
    args.push(path_str(path));
    ffmpeg(&args);
    path.to_path_buf()
}

/// Writes a sine tone to `path` in `spec.format`.
pub fn write_tone(path: &Path, spec: ToneSpec) -> PathBuf {
    let source =
        format!("sine=frequency={}:sample_rate={}:duration={}", spec.frequency, spec.sample_rate, spec.seconds);
    let channels = spec.channels.to_string();
    let mut args = vec!["-f", "lavfi", "-i", &source, "-ac", &channels];
    args.extend(spec.format.codec_args());
    args.push(path_str(path));
    ffmpeg(&args);
    path.to_path_buf()
}

/// A small H.264 MP4 cut to its first 60 %: the index (`moov`, written last) is gone.
pub fn write_truncated_mp4(path: &Path) -> PathBuf {
    truncate_copy(&write_video(&path.with_extension("whole.mp4"), VideoSpec::small(2.0, 25)), path, 0.6)
}

/// A small H.264 MP4 with its index first (`faststart`) whose media data is cut to 60 %.
pub fn write_truncated_faststart_mp4(path: &Path) -> PathBuf {
    let whole = VideoSpec { faststart: true, ..VideoSpec::small(2.0, 25) };
    truncate_copy(&write_video(&path.with_extension("whole.mp4"), whole), path, 0.6)
}

fn truncate_copy(whole: &Path, path: &Path, keep: f64) -> PathBuf {
    let bytes = std::fs::read(whole).unwrap_or_else(|e| panic!("read {}: {e}", whole.display()));
    let cut = (bytes.len() as f64 * keep) as usize;
    std::fs::write(path, &bytes[..cut]).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let _ = std::fs::remove_file(whole);
    path.to_path_buf()
}

/// An audio-only file (AAC in M4A, 1 s): a video step must refuse it.
pub fn write_audio_only(path: &Path) -> PathBuf {
    write_tone(
        path,
        ToneSpec { seconds: 1.0, frequency: 440, sample_rate: 44100, channels: 1, format: AudioFormat::M4a },
    )
}

/// A video-only file (no audio stream): an audio step must refuse it.
pub fn write_video_only(path: &Path) -> PathBuf {
    write_video(path, VideoSpec::small(1.0, 10))
}

/// A zero-byte file.
pub fn write_empty(path: &Path) -> PathBuf {
    std::fs::write(path, b"").unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.to_path_buf()
}

/// A file of text that is no media container at all.
pub fn write_garbage(path: &Path) -> PathBuf {
    let text = "This is a plain text file, not a video. ".repeat(100);
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.to_path_buf()
}

/// An M4A whose header lies: `seconds` of a 16 kHz mono tone whose `mvhd` and `mdhd` durations are
/// patched to claim one eighth of that.
pub fn write_lying_m4a(path: &Path, seconds: f64) -> PathBuf {
    let tone = ToneSpec { seconds, frequency: 440, sample_rate: 16000, channels: 1, format: AudioFormat::M4a };
    write_tone(path, tone);
    let mut bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    for name in [b"mvhd", b"mdhd"] {
        let at = bytes.windows(4).position(|w| w == name).unwrap_or_else(|| panic!("no {name:?} box"));
        assert_eq!(bytes[at + 4], 0, "version 0 {name:?} box expected");
        let field = at + 20..at + 24;
        let duration = u32::from_be_bytes(bytes[field.clone()].try_into().expect("4 bytes"));
        bytes[field].copy_from_slice(&(duration / 8).to_be_bytes());
    }
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path.to_path_buf()
}

/// A 1 s, 64x48 H.264 video of one solid colour (`color` as FFmpeg names it: `red`, `0x336699`).
pub fn write_solid_video(path: &Path, color: &str) -> PathBuf {
    let source = format!("color=c={color}:size=64x48:rate=10:duration=1");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &source,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        path_str(path),
    ]);
    path.to_path_buf()
}
