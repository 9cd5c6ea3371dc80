//! PDF text extraction (`document.text`): any bytes give pages or an error message, never a panic
//! that escapes, a hang, or a page decompressed past `PAGE_CONTENT_LIMIT`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_ops::document::pdf::pages;

fuzz_target!(|data: &[u8]| {
    let _ = pages(data, 5);
});
