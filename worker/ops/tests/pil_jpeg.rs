//! `image.decode` turns JPEGs into the pixels Pillow decodes, bit for bit (fixtures made by
//! Pillow 13 with `docs/research/pil_jpeg_fixture.py`), full size and under a draft.

use std::path::Path;

use weir_crds::ImageMode;
use weir_ops::image::Image;
use weir_ops::image::decode::{DEFAULT_MAX_PIXELS, DecodeImages};

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pil-jpeg").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn decoder(draft: Option<(u32, u32)>) -> DecodeImages {
    DecodeImages {
        input: "bytes".into(),
        output: "image".into(),
        mode: ImageMode::Rgb,
        max_pixels: DEFAULT_MAX_PIXELS,
        apply_orientation: true,
        draft,
    }
}

/// Pillow's decode of a fixture, stored losslessly as PNG.
fn pillow(name: &str) -> Image {
    let decoded = image::load_from_memory(&fixture(name)).expect("fixture PNG").into_rgb8();
    Image { width: decoded.width(), height: decoded.height(), channels: 3, data: decoded.into_raw() }
}

fn assert_same_pixels(got: &Image, want: &Image, what: &str) {
    assert_eq!((got.width, got.height, got.channels), (want.width, want.height, want.channels), "{what}: size");
    let differing = got.data.iter().zip(&want.data).filter(|(g, w)| g != w).count();
    assert_eq!(differing, 0, "{what}: {differing} of {} values differ from Pillow's", want.data.len());
}

#[test]
fn jpegs_decode_to_pillows_pixels() {
    for name in ["odd-420", "progressive-422"] {
        let got = decoder(None).decode(&fixture(&format!("{name}.jpg"))).expect(name);
        assert_same_pixels(&got, &pillow(&format!("{name}.png")), name);
    }
}

#[test]
fn a_draft_decodes_at_pillows_reduced_size_and_pixels() {
    let got = decoder(Some((50, 40))).decode(&fixture("draft.jpg")).expect("draft");
    assert_same_pixels(&got, &pillow("draft-50x40.png"), "draft 50x40");
    let full = decoder(None).decode(&fixture("draft.jpg")).expect("full");
    assert_eq!((full.width, full.height), (203, 151));
    // A draft larger than half the image leaves the full size.
    let near = decoder(Some((102, 76))).decode(&fixture("draft.jpg")).expect("near");
    assert_eq!((near.width, near.height), (102, 76));
    let over = decoder(Some((103, 76))).decode(&fixture("draft.jpg")).expect("over");
    assert_eq!((over.width, over.height), (203, 151));
}

#[test]
fn a_cmyk_jpeg_decodes_to_rgb() {
    let got = decoder(None).decode(&fixture("cmyk.jpg")).expect("cmyk");
    assert_eq!((got.width, got.height, got.data.len()), (24, 16, 24 * 16 * 3));
    // Pillow's own CMYK conversion differs from the image crate's by a few levels.
    let want = pillow("cmyk.png");
    let mean = got.data.iter().zip(&want.data).map(|(a, b)| f64::from(a.abs_diff(*b))).sum::<f64>() / 1152.0;
    assert!(mean < 8.0, "mean difference {mean}");
}
