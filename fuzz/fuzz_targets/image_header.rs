//! `image.decode` on arbitrary bytes: the header read, the pixel limit checked before any pixel
//! buffer is allocated, the truncation checks, then the decode. Every input is an image of at most
//! `maxPixels` pixels or an error message, never a panic or a buffer sized from a forged header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_crds::ImageMode;
use weir_ops::image::decode::{DEFAULT_MAX_PIXELS, DecodeImages};

// The first byte picks the output mode, whether EXIF orientation is applied and whether JPEGs are
// decoded under a 16x16 draft; the rest is the encoded image, so the committed seeds start with
// one such byte.
fuzz_target!(|data: &[u8]| {
    let Some((&config, bytes)) = data.split_first() else { return };
    let mode = [ImageMode::Rgb, ImageMode::Rgba, ImageMode::L][usize::from(config % 3)];
    let step = DecodeImages {
        input: "bytes".into(),
        output: "image".into(),
        mode,
        max_pixels: DEFAULT_MAX_PIXELS,
        apply_orientation: config & 0x80 == 0,
        draft: (config & 0x40 != 0).then_some((16, 16)),
    };
    if let Ok(image) = step.decode(bytes) {
        let pixels = u64::from(image.width) * u64::from(image.height);
        assert!(pixels <= DEFAULT_MAX_PIXELS, "{}x{} is over maxPixels", image.width, image.height);
        assert_eq!(image.data.len() as u64, pixels * u64::from(image.channels), "buffer does not match its size");
    }
});
