//! `weir run` end to end through `image.draw`: a Parquet source of PNG URIs with a detections
//! column, decoded, drawn on and encoded as PNG again; the pixels show the boxes and captions, a
//! null list leaves its image as it was, and a NaN box is a row error naming the detection.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, ListBuilder, StringBuilder, StructBuilder};
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Fields};
use common::*;
use weir_testkit::images::{encode_png, gradient};

/// One row's detections: `([x1, y1, x2, y2], score, label)` each.
type Detections = Vec<([f32; 4], f32, &'static str)>;

/// `list<struct{bbox: fixed_size_list<f32, 4>, score: f32, label: utf8}>`, image.detect's layout.
fn detections_column(rows: &[Option<Detections>]) -> ArrayRef {
    let coordinate = Arc::new(Field::new("item", DataType::Float32, false));
    let fields = Fields::from(vec![
        Field::new("bbox", DataType::FixedSizeList(coordinate.clone(), 4), false),
        Field::new("score", DataType::Float32, false),
        Field::new("label", DataType::Utf8, false),
    ]);
    let items = StructBuilder::new(
        fields,
        vec![
            Box::new(FixedSizeListBuilder::new(Float32Builder::new(), 4).with_field(coordinate)),
            Box::new(Float32Builder::new()),
            Box::new(StringBuilder::new()),
        ],
    );
    let mut lists = ListBuilder::new(items);
    for row in rows {
        for (bbox, score, label) in row.iter().flatten() {
            let item = lists.values();
            let boxes = item.field_builder::<FixedSizeListBuilder<Float32Builder>>(0).expect("bbox builder");
            boxes.values().append_slice(bbox);
            boxes.append(true);
            item.field_builder::<Float32Builder>(1).expect("score builder").append_value(*score);
            item.field_builder::<StringBuilder>(2).expect("label builder").append_value(label);
            item.append(true);
        }
        lists.append(row.is_some());
    }
    Arc::new(lists.finish())
}

fn write_source(path: &Path, uris: &[String], rows: &[Option<Detections>]) {
    let uri: ArrayRef = Arc::new(StringArray::from(uris.to_vec()));
    write_parquet(
        path,
        &RecordBatch::try_from_iter([("uri", uri), ("detections", detections_column(rows))]).expect("batch"),
    );
}

#[test]
fn detections_are_drawn_onto_the_pixels_and_a_nan_box_is_a_row_error() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (images, out) = (tmp.path().join("images"), tmp.path().join("out"));
    std::fs::create_dir_all(&images).expect("mkdir");
    let (width, height) = (96, 64);
    let uris: Vec<String> = (0..3)
        .map(|seed| {
            let path = images.join(format!("img-{seed}.png"));
            std::fs::write(&path, encode_png(&gradient(width, height, seed))).expect("write png");
            file_uri(&path)
        })
        .collect();
    let rows = [
        Some(vec![([10.0, 20.0, 50.0, 60.0], 0.9, "cat"), ([60.0, 5.0, 90.0, 30.0], 0.2, "dog")]),
        None,
        Some(vec![([f32::NAN, 1.0, 2.0, 3.0], 0.9, "cat")]),
    ];
    let input = tmp.path().join("in/input.parquet");
    write_source(&input, &uris, &rows);
    let manifest = write_manifest(
        tmp.path(),
        "draw",
        &format!(
            "  source: {{parquet: {{uri: \"{}\", columns: [uri, detections]}}}}
  steps:
    - {{op: download, input: uri, output: bytes}}
    - {{op: image.decode, input: bytes, output: image}}
    - {{op: image.draw, input: image, detections: detections, output: drawn, color: \"#ff0000\", lineWidth: 3, minScore: 0.5}}
    - {{op: image.encode, input: drawn, output: png, format: png}}
    - {{op: select, columns: [uri, png]}}
  sink: {{parquet: {{uri: \"{}\"}}}}
  errorPolicy: {{onRowError: skip, maxErrorRatio: 0.5}}
",
            tmp.path().join("in").display(),
            out.display()
        ),
    );
    let result = run(&manifest, &[]);
    assert!(result.status.success(), "stderr: {}", text(&result.stderr));

    let written = read_parquet_dir(&out);
    let drawn: BTreeMap<String, image::RgbImage> = strings(&written, "uri")
        .into_iter()
        .zip(binaries(&written, "png"))
        .map(|(uri, png)| (uri, image::load_from_memory(&png).expect("png").to_rgb8()))
        .collect();
    assert_eq!(drawn.keys().collect::<Vec<_>>(), [&uris[0], &uris[1]]);

    let (boxed, original) = (&drawn[&uris[0]], gradient(width, height, 0));
    let red = image::Rgb([255, 0, 0]);
    for x in 10..13 {
        assert_eq!(boxed.get_pixel(x, 40), &red, "column {x} of the 3-pixel left line");
    }
    for x in [9, 13, 30] {
        assert_eq!(boxed.get_pixel(x, 40), original.get_pixel(x, 40), "column {x}, beside the line, is untouched");
    }
    // "cat 0.90" above the box: 8 glyphs and a pixel of padding each side, in rows 10-19.
    let caption: BTreeSet<[u8; 3]> =
        (10..20).flat_map(|y| (10..76).map(move |x| (x, y))).map(|(x, y)| boxed.get_pixel(x, y).0).collect();
    assert_eq!(caption, BTreeSet::from([[255, 0, 0], [255, 255, 255]]), "white text on the box's red");
    for (x, y) in [(60, 25), (89, 25), (75, 29)] {
        assert_eq!(boxed.get_pixel(x, y), original.get_pixel(x, y), "the 0.2 box is below minScore");
    }
    assert_eq!(drawn[&uris[1]], gradient(width, height, 1), "a null list leaves the image as it was");

    let errors = read_parquet_dir(&out.join("_errors"));
    assert_eq!(strings(&errors, "row_ref"), [format!("{}#row=2", file_uri(&input))]);
    assert_eq!(strings(&errors, "step"), ["image.draw"]);
    assert_eq!(strings(&errors, "message"), ["detection 0 in `detections`: bbox [NaN, 1, 2, 3] is not finite"]);
}
