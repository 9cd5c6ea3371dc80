//! The shipped example manifests run end to end (through the library, on generated data).

use std::path::Path;

use weir::{RunOptions, run_job};
use weir_testkit::images::{JpegSet, write_bad_files, write_jpeg_set};

fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/examples").join(name);
    std::fs::read_to_string(path).expect("example manifest")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_local_example_runs_on_generated_images() {
    // 5 bad files of 105 stay under the example's maxErrorRatio of 0.05.
    let tmp = tempfile::tempdir().expect("tmp");
    let images = tmp.path().join("images");
    write_jpeg_set(&images, JpegSet { count: 100, min_side: 100, max_side: 300, ..JpegSet::default() })
        .expect("images");
    write_bad_files(&images).expect("bad files");
    let out = tmp.path().join("out");
    let text = example("images-local.yaml")
        .replace("\"data/images/\"", &format!("\"{}/\"", images.display()))
        .replace("\"data/out/images-local/\"", &format!("\"{}/\"", out.display()));
    let job = weir_crds::parse_manifest(&text, "images-local.yaml").expect("valid example");

    let report = run_job(&job, RunOptions { memory_limit: Some(64 << 20), ..Default::default() }).await.expect("run");
    let s = &report.summary;
    assert_eq!((s.rows_in, s.rows_out, s.rows_failed), (105, 100, 5));
    assert!(s.peak_reserved <= 64 << 20, "peak reservation {} over the budget", s.peak_reserved);
    let names: Vec<&str> = report.stages.iter().map(|st| st.name.as_str()).collect();
    assert_eq!(names, ["source", "download", "image.decode", "image.resize", "image.encode", "select", "sink"]);
    assert!(out.join("_SUCCESS").exists());
}
