//! `weir verify` end to end: a finished `weir run` verifies OK; a planted copy of a part file and a
//! deleted committed file are named and fail it; an unfinished output cannot be verified.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use weir_testkit::images::{BAD_FILES, JpegSet, write_bad_files, write_jpeg_set};

const GOOD: usize = 12;

fn spec(images: &Path, out: &Path) -> String {
    format!(
        "  source: {{files: {{uri: \"{}\", filesPerUnit: 5}}}}
  steps:
    - {{op: download, input: uri, output: bytes}}
    - {{op: image.decode, input: bytes, output: image}}
    - {{op: image.resize, input: image, output: image, width: 16, height: 16}}
    - {{op: image.encode, input: image, output: thumb, format: png}}
    - {{op: select, columns: [uri, thumb]}}
  sink: {{parquet: {{uri: \"{}\"}}}}
  errorPolicy: {{onRowError: skip, maxErrorRatio: 0.5}}
",
        images.display(),
        out.display()
    )
}

/// Runs a small job of good and bad images into `<tmp>/out` and returns that folder.
fn finished_job(tmp: &Path) -> PathBuf {
    let (images, out) = (tmp.join("images"), tmp.join("out"));
    write_jpeg_set(&images, JpegSet { count: GOOD, min_side: 40, max_side: 80, quality: 80, seed: 3 }).expect("images");
    write_bad_files(&images).expect("bad files");
    let manifest = write_manifest(tmp, "verify", &spec(&images, &out));
    let result = run(&manifest, &[]);
    assert!(result.status.success(), "stderr: {}", text(&result.stderr));
    out
}

fn verify(out: &Path) -> Output {
    weir().arg("verify").arg(out).output().expect("spawn weir")
}

/// The part files directly under `dir`, by name.
fn parts(dir: &Path) -> Vec<PathBuf> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("part-")))
        .collect();
    parts.sort();
    parts
}

#[test]
fn a_finished_job_verifies_and_a_planted_or_deleted_file_fails_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let out = finished_job(tmp.path());

    let ok = verify(&out);
    let stdout = text(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "stdout: {stdout}\nstderr: {}", text(&ok.stderr));
    let verdict = format!("{GOOD} rows out, {} rows failed: OK", BAD_FILES.len());
    assert!(stdout.starts_with("verified: ") && stdout.trim_end().ends_with(&verdict), "{stdout}");

    let committed = parts(&out);
    let first = committed.first().expect("a part file");
    let planted = out.join("part-000000-99.parquet");
    std::fs::copy(first, &planted).expect("plant");
    let found = verify(&out);
    let stdout = text(&found.stdout);
    assert_eq!(found.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("{}: uncommitted", file_uri(&planted))), "{stdout}");
    assert!(stdout.trim_end().ends_with(": 1 problem"), "{stdout}");
    std::fs::remove_file(&planted).expect("unplant");

    let deleted = committed.last().expect("a part file");
    std::fs::remove_file(deleted).expect("delete");
    let found = verify(&out);
    let stdout = text(&found.stdout);
    assert_eq!(found.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!("{}: missing", file_uri(deleted))), "{stdout}");
}

#[test]
fn an_unfinished_output_cannot_be_verified() {
    let tmp = tempfile::tempdir().expect("tmp");
    let result = verify(tmp.path());
    assert_eq!(result.status.code(), Some(2));
    let stderr = text(&result.stderr);
    assert!(stderr.contains("no manifest at") && stderr.contains("the job has not finished"), "{stderr}");
}
