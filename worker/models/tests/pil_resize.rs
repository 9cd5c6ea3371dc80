//! The model pre-processing's resize gives Pillow's pixels bit for bit: the fixtures are Pillow
//! 13's `Image.resize(BILINEAR)` of one image (docs/research/pil_resize_fixture.py).

use std::path::Path;

use weir_models::vision::pil_resize::resize_like_pil;
use weir_ops::image::ImageView;

fn rgb(name: &str) -> image::RgbImage {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pil-resize").join(name);
    image::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).to_rgb8()
}

#[test]
fn down_up_and_one_axis_resizes_equal_pillows_to_the_bit() {
    let input = rgb("input.png");
    let view = ImageView { width: input.width(), height: input.height(), channels: 3, data: input.as_raw() };
    for (width, height) in [(61, 47), (200, 150), (131, 40)] {
        let ours = resize_like_pil(view, width, height).expect("resize");
        let pillow = rgb(&format!("pil-{width}x{height}.png"));
        let differing = ours.data.iter().zip(pillow.as_raw()).filter(|(a, b)| a != b).count();
        assert_eq!((ours.width, ours.height), (width, height));
        assert_eq!(differing, 0, "{width}x{height}: {differing} of {} values differ from Pillow's", ours.data.len());
    }
}

#[test]
fn an_empty_or_short_image_is_an_error_not_a_panic() {
    let empty = ImageView { width: 0, height: 5, channels: 3, data: &[] };
    assert!(resize_like_pil(empty, 4, 4).is_err());
    let short = ImageView { width: 4, height: 4, channels: 3, data: &[0; 10] };
    assert!(resize_like_pil(short, 2, 2).unwrap_err().contains("fewer than"));
}
