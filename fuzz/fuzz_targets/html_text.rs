//! HTML to text (`document.text`): any text, tags and entities unclosed, gives text in time linear
//! in its length, never a panic (a slice off a character boundary above all).
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_ops::document::html::{decode_entities, to_text};

fuzz_target!(|data: &[u8]| {
    let html = String::from_utf8_lossy(data);
    let _ = to_text(&html);
    let _ = decode_entities(&html);
});
