//! Turns the FFmpeg version flags `ffmpeg-sys-next` reports (`DEP_FFMPEG_FFMPEG_7_0=true`) into
//! `cfg(feature = "ffmpeg_7_0")`, as `ffmpeg-next` does, so entries can follow the version.

fn main() {
    for (name, value) in std::env::vars() {
        let Some(flag) = name.strip_prefix("DEP_FFMPEG_") else { continue };
        let flag = flag.to_lowercase();
        println!(r#"cargo::rustc-check-cfg=cfg(feature, values("{flag}"))"#);
        if value == "true" {
            println!(r#"cargo::rustc-cfg=feature="{flag}""#);
        }
    }
}
