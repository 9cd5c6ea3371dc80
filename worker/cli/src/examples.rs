//! `weir generate media|documents`: example inputs for the example manifests.

use std::path::Path;

use anyhow::{Context, Result};
use weir_samples::docs::{PdfPage, encrypted_pdf, pdf};
use weir_samples::media::{
    AudioFormat, ToneSpec, VideoCodec, VideoSpec, write_empty, write_tone, write_truncated_mp4, write_video,
};

/// Three 640x360 videos with sound, one tone per audio container, and two broken files.
pub fn media(dir: &Path, seconds: u32) -> Result<()> {
    let (videos, audio) = (dir.join("videos"), dir.join("audio"));
    for d in [&videos, &audio] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    for i in 0..3u32 {
        let spec = VideoSpec {
            seconds: f64::from(seconds + 5 * i),
            fps: 25,
            width: 640,
            height: 360,
            codec: VideoCodec::H264,
            gop: 50,
            faststart: i == 1,
            with_audio: true,
        };
        write_video(&videos.join(format!("clip-{i}.mp4")), spec);
    }
    write_truncated_mp4(&videos.join("truncated.mp4"));
    write_empty(&videos.join("empty.mp4"));
    for (i, format) in AudioFormat::ALL.into_iter().enumerate() {
        let spec =
            ToneSpec { seconds: 45.0 + 10.0 * i as f64, frequency: 440, sample_rate: 44100, channels: 2, format };
        write_tone(&audio.join(format!("tone-{i}.{}", format.extension())), spec);
    }
    write_empty(&audio.join("empty.wav"));
    println!(
        "wrote 3 videos + 2 broken ones to {}, 5 audio files + 1 empty one to {}",
        videos.display(),
        audio.display()
    );
    Ok(())
}

/// A few documents of each kind the `document.text` step reads, and two it must refuse.
pub fn documents(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |name: &str, bytes: &[u8]| {
        std::fs::write(dir.join(name), bytes).with_context(|| format!("writing {}", dir.join(name).display()))
    };
    let report = pdf(&[
        PdfPage::Text("Weir quarterly report\nThroughput rose by a third.\nMemory stayed flat."),
        PdfPage::Text("Appendix A\nEvery input row was written exactly once."),
        PdfPage::Drawing,
    ]);
    write("report.pdf", &report)?;
    let long: Vec<String> = (1..=40).map(|i| format!("Chapter {i}\n{}", "A line of prose. ".repeat(20))).collect();
    let pages: Vec<PdfPage<'_>> = long.iter().map(|t| PdfPage::Text(t)).collect();
    write("book.pdf", &pdf(&pages))?;
    write("truncated.pdf", &report[..report.len() / 2])?;
    write("encrypted.pdf", &encrypted_pdf("secret"))?;
    write(
        "page.html",
        b"<!doctype html><html><head><title>Weir</title><style>p{color:red}</style></head>\n<body><h1>Weir</h1><p>Pipelines &amp; models, on <b>Kubernetes</b>.</p><script>var x = 1;</script></body></html>",
    )?;
    write("notes.md", b"# Notes\n\nChunk documents with *text.chunk*, then embed them.\n")?;
    write("readme.txt", b"Plain text is one page.\n")?;
    println!("wrote 5 documents + 2 broken PDFs to {}", dir.display());
    Ok(())
}
