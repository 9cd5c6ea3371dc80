//! The ISO-BMFF box walk that refuses truncated MP4/MOV/M4A files before FFmpeg opens them: any
//! bytes give a verdict, never a panic, an overflow or a walk past `MAX_BOXES`.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use weir_media::container::check_iso_bmff;

fuzz_target!(|data: &[u8]| {
    let _ = check_iso_bmff(&mut Cursor::new(data), data.len() as u64);
});
