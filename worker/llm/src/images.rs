//! Images sent with a prompt, as data URLs: an image column's pixels encoded, or encoded bytes
//! sent as they are when small enough, otherwise decoded, scaled down and encoded again.

use std::io::Cursor;

use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use base64::Engine;
use weir_core::StepError;
use weir_crds::{ImageFormat, ResizeFilter};
use weir_ops::image::decode::{DecodeImages, binary_rows};
use weir_ops::image::encode::encode;
use weir_ops::image::resize::{Target, resize};
use weir_ops::image::{ImageColumn, ImageView};

/// JPEG quality of the images we encode.
const QUALITY: u8 = 90;

/// The data URL of each row of image column `name` (`None` where the row is null), or a row's
/// problem; images larger than `max_side` on their longer side are scaled down.
///
/// # Errors
/// The column is missing or neither an image column nor bytes.
pub fn data_urls(
    batch: &RecordBatch,
    name: &str,
    max_side: u32,
    decoder: &DecodeImages,
) -> Result<Vec<Option<Result<String, String>>>, StepError> {
    let column = weir_core::batch::column(batch, name)?;
    match column.data_type() {
        DataType::Struct(_) => {
            let images = ImageColumn::from_batch(batch, name)?;
            Ok((0..images.len()).map(|i| images.get(i).map(|view| from_pixels(view, max_side))).collect())
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            let rows = binary_rows(batch, name)?;
            Ok(rows.into_iter().map(|bytes| bytes.map(|b| from_bytes(b, max_side, decoder))).collect())
        }
        other => Err(StepError::column(name, format!("expected an image column or JPEG/PNG bytes, found {other}"))),
    }
}

fn from_pixels(view: ImageView<'_>, max_side: u32) -> Result<String, String> {
    if view.width.max(view.height) > max_side {
        let (width, height) = Target::LongerSide(max_side).size_for(view.width, view.height);
        let smaller = resize(view, width, height, ResizeFilter::default())?;
        return from_pixels(smaller.view(), max_side);
    }
    // JPEG has no alpha channel: an RGBA image goes as PNG.
    let (format, media) =
        if view.channels == 4 { (ImageFormat::Png, "image/png") } else { (ImageFormat::Jpeg, "image/jpeg") };
    Ok(data_url(media, &encode(view, format, QUALITY)?))
}

fn from_bytes(bytes: &[u8], max_side: u32, decoder: &DecodeImages) -> Result<String, String> {
    let media = media_type(bytes).ok_or("the bytes are not a JPEG, PNG, WebP or GIF image")?;
    let reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read the image header: {e}"))?;
    let (width, height) = reader.into_dimensions().map_err(|e| format!("cannot read the image header: {e}"))?;
    if width.max(height) <= max_side {
        return Ok(data_url(media, bytes));
    }
    let decoded = decoder.decode(bytes)?;
    from_pixels(decoded.view(), max_side)
}

/// The media type of encoded image bytes that every vision API takes (JPEG, PNG, WebP, GIF),
/// from their signature (the image crate's `guess_format`).
fn media_type(bytes: &[u8]) -> Option<&'static str> {
    use image::ImageFormat::{Gif, Jpeg, Png, WebP};
    match image::guess_format(bytes).ok()? {
        Jpeg => Some("image/jpeg"),
        Png => Some("image/png"),
        WebP => Some("image/webp"),
        Gif => Some("image/gif"),
        _ => None,
    }
}

fn data_url(media: &str, bytes: &[u8]) -> String {
    format!("data:{media};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, BinaryArray};
    use weir_crds::ImageMode;
    use weir_ops::image::{Image, image_array};

    use super::*;

    fn decoder() -> DecodeImages {
        DecodeImages {
            input: "b".into(),
            output: "i".into(),
            mode: ImageMode::Rgb,
            max_pixels: 1 << 24,
            apply_orientation: true,
            draft: None,
        }
    }

    fn decoded(url: &str) -> image::DynamicImage {
        let (_, data) = url.split_once(";base64,").expect("a data URL");
        let bytes = base64::engine::general_purpose::STANDARD.decode(data).expect("base64");
        image::load_from_memory(&bytes).expect("an image")
    }

    #[test]
    fn small_encoded_images_go_as_they_are_and_large_ones_are_scaled_down() {
        let pixels = Image { width: 300, height: 100, channels: 3, data: vec![200; 300 * 100 * 3] };
        let png = encode(pixels.view(), ImageFormat::Png, 90).expect("png");
        let bytes: ArrayRef = Arc::new(BinaryArray::from_iter([Some(png.as_slice()), None, Some(b"junk".as_slice())]));
        let batch = RecordBatch::try_from_iter([("b", bytes)]).expect("batch");

        let same = data_urls(&batch, "b", 512, &decoder()).expect("urls");
        let url = same[0].clone().expect("a row").expect("an image");
        assert!(url.starts_with("data:image/png;base64,"));
        assert_eq!(decoded(&url).width(), 300);
        assert!(same[1].is_none());
        assert_eq!(same[2].clone().expect("a row"), Err("the bytes are not a JPEG, PNG, WebP or GIF image".into()));

        let scaled = data_urls(&batch, "b", 150, &decoder()).expect("urls");
        let url = scaled[0].clone().expect("a row").expect("an image");
        assert!(url.starts_with("data:image/jpeg;base64,"));
        let image = decoded(&url);
        assert_eq!((image.width(), image.height()), (150, 50));
    }

    #[test]
    fn an_image_column_is_encoded_and_a_text_column_is_refused() {
        let pixels = Image { width: 20, height: 10, channels: 3, data: vec![10; 20 * 10 * 3] };
        let images = image_array(&[Some(pixels)]);
        let text: ArrayRef = Arc::new(arrow_array::StringArray::from(vec!["x"]));
        let batch = RecordBatch::try_from_iter([("image", images), ("text", text)]).expect("batch");
        let url = data_urls(&batch, "image", 512, &decoder()).expect("urls")[0].clone().expect("row").expect("image");
        assert_eq!(decoded(&url).width(), 20);
        let scaled = data_urls(&batch, "image", 10, &decoder()).expect("urls")[0].clone().expect("row").expect("image");
        assert!(scaled.starts_with("data:image/jpeg;base64,"));
        let image = decoded(&scaled);
        assert_eq!((image.width(), image.height()), (10, 5), "scaled to 10 pixels on its longer side");
        assert!(data_urls(&batch, "text", 512, &decoder()).is_err());
    }
}
