//! A Parquet source of URIs (local files and an HTTP server) through download, filter, crop, to-tensor and explode: missing objects
//! and unreachable hosts are row errors that name the URI.

mod common;

use arrow_array::cast::AsArray;
use common::*;
use weir_testkit::images::{JpegSet, write_jpeg_set};

#[test]
fn parquet_rows_flow_through_crop_tensor_and_explode_with_precise_download_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let images = tmp.path().join("images");
    let set = JpegSet { count: 6, min_side: 120, max_side: 160, quality: 85, seed: 9 };
    let mut uris: Vec<String> = write_jpeg_set(&images, set).expect("images").iter().map(|p| file_uri(p)).collect();
    let server = serve_http(images.clone());
    uris[4] = format!("{server}/img-00004.jpg");
    let missing = file_uri(&images.join("missing.jpg"));
    let unreachable = "http://127.0.0.1:9/nothing.jpg".to_string();
    uris.insert(2, missing.clone());
    uris.push(unreachable.clone());
    std::fs::create_dir_all(tmp.path().join("in")).expect("mkdir");
    write_uri_parquet(&tmp.path().join("in/input.parquet"), &uris);
    let out = tmp.path().join("out");
    let manifest = write_manifest(
        tmp.path(),
        "parquet",
        &format!(
            "  source: {{parquet: {{uri: \"{}\", columns: [uri, tags]}}}}
  steps:
    - {{op: download, input: uri, output: bytes, retries: 1, timeoutSeconds: 1}}
    - {{op: image.decode, input: bytes, output: image, mode: L}}
    - {{op: filter, where: [{{column: image.width, op: ge, value: 100}}]}}
    - {{op: image.crop, input: image, output: face, center: {{width: 32, height: 16}}}}
    - {{op: image.to_tensor, input: face, output: tensor, mean: [0.5], std: [0.25]}}
    - {{op: explode, input: tags, output: tag}}
    - {{op: select, columns: [uri, tag, tensor]}}
  sink: {{parquet: {{uri: \"{}\"}}}}
  errorPolicy: {{onRowError: skip}}
",
            tmp.path().join("in").display(),
            out.display()
        ),
    );
    let result = run(&manifest, &[]);
    assert!(result.status.success(), "stderr: {}", text(&result.stderr));

    let rows = read_parquet_dir(&out);
    let tags = strings(&rows, "tag");
    // Image i has i % 3 tags; the missing and unreachable rows are gone.
    let expected: usize =
        (0..uris.len()).filter(|&i| uris[i] != missing && uris[i] != unreachable).map(|i| i % 3).sum();
    assert_eq!(tags.len(), expected);
    assert!(strings(&rows, "uri").contains(&uris[5]), "the image served over HTTP was downloaded");
    for batch in &rows {
        let tensors = batch.column_by_name("tensor").expect("tensor").as_fixed_size_list();
        assert_eq!(tensors.value_length(), 16 * 32);
    }

    let errors = read_parquet_dir(&out.join("_errors"));
    let refs = strings(&errors, "row_ref");
    let messages = strings(&errors, "message");
    let input = common::file_uri(&tmp.path().join("in/input.parquet"));
    assert_eq!(refs, [format!("{input}#row=2"), format!("{input}#row=7")]);
    assert_eq!(messages[0], format!("not found: {missing}"));
    assert!(messages[1].starts_with(&format!("{unreachable}: ")), "{messages:?}");
    assert!(messages[1].ends_with("(gave up after 2 attempts)"), "{messages:?}");
}
