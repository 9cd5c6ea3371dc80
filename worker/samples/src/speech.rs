//! Speech fixtures: sentences spoken by espeak-ng (Debian's speech synthesiser), as WAV files or
//! as the 16 kHz mono samples Whisper hears (ffmpeg resamples).

use std::io;
use std::path::Path;
use std::process::{Command, Stdio};

/// espeak-ng speaking `text` in US English at `words_per_minute`.
fn espeak(text: &str, words_per_minute: u32) -> Command {
    let mut espeak = Command::new("espeak-ng");
    espeak.args(["-v", "en-us", "-s", &words_per_minute.to_string()]);
    espeak.arg(text);
    espeak
}

fn missing(tool: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("running {tool} (apt install {tool}): {e}"))
}

/// Writes `text`, spoken in US English, to the WAV file `wav` (22.05 kHz mono).
///
/// # Errors
/// When espeak-ng is missing or fails.
pub fn speak_to_wav(text: &str, words_per_minute: u32, wav: &Path) -> io::Result<()> {
    let status = espeak(text, words_per_minute).arg("-w").arg(wav).status().map_err(|e| missing("espeak-ng", e))?;
    if !status.success() {
        return Err(io::Error::other(format!("espeak-ng exited with {status}")));
    }
    Ok(())
}

/// `text` spoken in US English, as 16 kHz mono f32 samples, cut at `max_seconds` if given.
///
/// # Errors
/// When espeak-ng or ffmpeg is missing or fails.
pub fn speak_16k_mono(text: &str, words_per_minute: u32, max_seconds: Option<u32>) -> io::Result<Vec<f32>> {
    let mut speaker = espeak(text, words_per_minute)
        .arg("--stdout")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| missing("espeak-ng", e))?;
    let wav = speaker.stdout.take().ok_or_else(|| io::Error::other("espeak-ng gave no output pipe"))?;
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg.args(["-v", "error", "-i", "pipe:0", "-ar", "16000", "-ac", "1"]);
    if let Some(seconds) = max_seconds {
        ffmpeg.args(["-t", &seconds.to_string()]);
    }
    let out = ffmpeg.args(["-f", "f32le", "-"]).stdin(wav).stderr(Stdio::inherit()).output();
    let spoke = speaker.wait()?;
    let out = out.map_err(|e| missing("ffmpeg", e))?;
    if !spoke.success() || !out.status.success() {
        return Err(io::Error::other(format!("espeak-ng ({spoke}) or ffmpeg ({}) failed", out.status)));
    }
    Ok(out.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}
