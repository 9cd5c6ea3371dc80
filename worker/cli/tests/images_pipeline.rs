//! `weir run` end to end on generated images: every good row exactly once, every bad row recorded.

mod common;

use std::collections::BTreeSet;

use common::*;
use weir_testkit::images::{BAD_FILES, JpegSet, write_bad_files, write_jpeg_set};

const STEPS: &str = "  steps:
    - {op: download, input: uri, output: bytes}
    - {op: image.decode, input: bytes, output: image}
    - {op: image.resize, input: image, output: image, width: 64, height: 48}
    - {op: image.encode, input: image, output: thumb, quality: 80}
    - {op: select, columns: [uri, thumb]}
";

fn spec(images: &std::path::Path, out: &std::path::Path, policy: &str) -> String {
    format!(
        "  source: {{files: {{uri: \"{}\", filesPerUnit: 7}}}}\n{STEPS}  sink: {{parquet: {{uri: \"{}\"}}}}\n  errorPolicy: {policy}\n",
        images.display(),
        out.display()
    )
}

fn fixtures(dir: &std::path::Path, good: usize) -> (Vec<String>, Vec<String>) {
    let set = JpegSet { count: good, min_side: 60, max_side: 200, quality: 85, seed: 5 };
    let good = write_jpeg_set(dir, set).expect("images").iter().map(|p| file_uri(p)).collect();
    let bad = write_bad_files(dir).expect("bad files").iter().map(|p| file_uri(p)).collect();
    (good, bad)
}

#[test]
fn every_good_image_lands_once_and_every_bad_one_is_recorded() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (images, out) = (tmp.path().join("images"), tmp.path().join("out"));
    let (good, bad) = fixtures(&images, 40);
    let manifest = write_manifest(tmp.path(), "skip", &spec(&images, &out, "{onRowError: skip, maxErrorRatio: 0.2}"));
    let result = run(&manifest, &["--memory-limit", "64MiB"]);
    assert!(result.status.success(), "stderr: {}", text(&result.stderr));
    assert!(text(&result.stdout).contains("45 rows in, 40 out, 5 failed"), "{}", text(&result.stdout));

    let rows = read_parquet_dir(&out);
    let uris = strings(&rows, "uri");
    assert_eq!(uris.len(), 40, "each good row exactly once");
    assert_eq!(uris.iter().cloned().collect::<BTreeSet<_>>(), good.into_iter().collect::<BTreeSet<_>>());
    for thumb in binaries(&rows, "thumb") {
        let img = image::load_from_memory(&thumb).expect("thumbnail decodes");
        assert_eq!((img.width(), img.height()), (64, 48));
    }
    let schema = rows[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["uri", "thumb"], "internal columns are never written");

    let errors = read_parquet_dir(&out.join("_errors"));
    let failed: Vec<(String, String)> =
        strings(&errors, "row_ref").into_iter().zip(strings(&errors, "message")).collect();
    assert_eq!(failed.iter().map(|(r, _)| r.clone()).collect::<BTreeSet<_>>(), bad.into_iter().collect());
    let message = |name: &str| failed.iter().find(|(r, _)| r.ends_with(name)).map(|(_, m)| m.clone()).expect(name);
    assert_eq!(message("empty.jpg"), "empty input (0 bytes)");
    assert!(message("bomb.png").contains("50000x50000 (2500000000 pixels), over the limit"), "{failed:?}");
    assert!(message("truncated.jpg").starts_with("Jpeg: truncated: no end-of-image marker"), "{failed:?}");
    assert!(message("notes.jpg").starts_with("not a recognised image format"), "{failed:?}");
    assert!(message("corrupt.jpg").starts_with("Jpeg: "), "{failed:?}");
    assert_eq!(strings(&errors, "step"), vec!["image.decode"; BAD_FILES.len()]);

    let success: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("_SUCCESS")).expect("_SUCCESS")).expect("json");
    assert_eq!(
        (success["rowsIn"].as_u64(), success["rowsOut"].as_u64(), success["rowsFailed"].as_u64()),
        (Some(45), Some(40), Some(5))
    );
    let profile = std::fs::read_to_string(out.join("_weir/profile.md")).expect("profile");
    assert!(profile.contains("| 2. image.decode | 45 | 40 | 5 |"), "{profile}");

    let again = run(&manifest, &[]);
    assert!(again.status.success());
    assert!(text(&again.stdout).contains("is already complete"), "{}", text(&again.stdout));
}

#[test]
fn a_row_failing_inside_chained_image_steps_names_the_step_it_failed_in() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (images, out) = (tmp.path().join("images"), tmp.path().join("out"));
    let set = JpegSet { count: 30, min_side: 40, max_side: 160, quality: 85, seed: 11 };
    let good = write_jpeg_set(&images, set).expect("images");
    let bad = write_bad_files(&images).expect("bad files");
    // Decode, crop, resize and encode run as one chain; a photo under 80 px on a side fails in
    // the crop, the third step of the chain.
    let steps = "  steps:
    - {op: download, input: uri, output: bytes}
    - {op: image.decode, input: bytes, output: image}
    - {op: image.crop, input: image, output: image, box: {left: 0, top: 0, width: 80, height: 80}}
    - {op: image.resize, input: image, output: image, width: 32, height: 32}
    - {op: image.encode, input: image, output: thumb}
";
    let spec = format!(
        "  source: {{files: {{uri: \"{}\", filesPerUnit: 6}}}}\n{steps}  sink: {{parquet: {{uri: \"{}\", columns: [uri, thumb]}}}}\n  errorPolicy: {{onRowError: skip, maxErrorRatio: 1.0}}\n",
        images.display(),
        out.display()
    );
    let result = run(&write_manifest(tmp.path(), "chain", &spec), &[]);
    assert!(result.status.success(), "stderr: {}", text(&result.stderr));

    let side = |path: &std::path::Path| image::image_dimensions(path).expect("dimensions");
    let (fit, small): (Vec<_>, Vec<_>) = good.iter().partition(|p| side(p).0 >= 80 && side(p).1 >= 80);
    assert!(!fit.is_empty() && !small.is_empty(), "the set has photos on both sides of the box");
    let rows = read_parquet_dir(&out);
    let mut uris = strings(&rows, "uri");
    uris.sort();
    let mut expected: Vec<String> = fit.iter().map(|p| file_uri(p)).collect();
    expected.sort();
    assert_eq!(uris, expected, "every photo the box fits, exactly once");
    for thumb in binaries(&rows, "thumb") {
        assert_eq!(image::load_from_memory(&thumb).expect("thumbnail").width(), 32);
    }

    let errors = read_parquet_dir(&out.join("_errors"));
    let indices: Vec<u32> = errors
        .iter()
        .flat_map(|b| {
            let column = b.column_by_name("step_index").expect("step_index");
            column.as_any().downcast_ref::<arrow_array::UInt32Array>().expect("u32").values().to_vec()
        })
        .collect();
    let failed: Vec<(String, (u32, String, String))> = strings(&errors, "row_ref")
        .into_iter()
        .zip(indices.into_iter().zip(strings(&errors, "step")).zip(strings(&errors, "message")))
        .map(|(r, ((i, s), m))| (r, (i, s, m)))
        .collect();
    assert_eq!(failed.len(), small.len() + bad.len(), "{failed:?}");
    for path in &small {
        let (width, height) = side(path);
        let (_, (index, step, message)) =
            failed.iter().find(|(r, _)| *r == file_uri(path)).unwrap_or_else(|| panic!("{path:?} in {failed:?}"));
        assert_eq!((*index, step.as_str()), (2, "image.crop"));
        assert_eq!(message, &format!("crop box x=0 y=0 80x80 does not fit in the {width}x{height} image"));
    }
    for path in &bad {
        let (_, (index, step, _)) = failed.iter().find(|(r, _)| *r == file_uri(path)).expect("a bad file's failure");
        assert_eq!((*index, step.as_str()), (1, "image.decode"));
    }
    let profile = std::fs::read_to_string(out.join("_weir/profile.md")).expect("profile");
    let (all, ok) = (good.len() + bad.len(), fit.len());
    // The chain runs at the decode's place, and counts every failure of the chain there.
    let chain = format!("| 2. image.decode | {all} | {ok} | {} |", all - ok);
    assert!(profile.contains(&chain), "{profile}");
    assert!(profile.contains(&format!("| 3. image.crop | {ok} | {ok} | 0 |")), "{profile}");
}

#[test]
fn the_fail_policy_stops_at_the_first_bad_row_and_names_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (images, out) = (tmp.path().join("images"), tmp.path().join("out"));
    fixtures(&images, 5);
    let manifest = write_manifest(tmp.path(), "fail", &spec(&images, &out, "{onRowError: fail}"));
    let result = run(&manifest, &[]);
    assert!(!result.status.success());
    let stderr = text(&result.stderr);
    let bomb = file_uri(&images.join("bomb.png"));
    assert!(
        stderr.contains(&format!("error: row {bomb} failed in step #1 `image.decode`: Png image is 50000x50000")),
        "{stderr}"
    );
    assert!(!out.join("_SUCCESS").exists());
}

#[test]
fn more_failures_than_max_error_ratio_fail_the_job() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (images, out) = (tmp.path().join("images"), tmp.path().join("out"));
    fixtures(&images, 15);
    let manifest = write_manifest(tmp.path(), "ratio", &spec(&images, &out, "{onRowError: skip, maxErrorRatio: 0.1}"));
    let result = run(&manifest, &[]);
    assert!(!result.status.success());
    let stderr = text(&result.stderr);
    assert!(stderr.contains("input rows failed (ratio"), "{stderr}");
    assert!(stderr.contains("more than errorPolicy.maxErrorRatio 0.1"), "{stderr}");
    assert!(!out.join("_SUCCESS").exists());
}

#[test]
fn a_manifest_with_typos_is_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().expect("tmp");
    let manifest = write_manifest(
        tmp.path(),
        "typo",
        "  source: {files: {uri: /nonexistent}}\n  steps:\n    - {op: image.resize, input: uri, output: x, widht: 3}\n  sink: {parquet: {uri: /tmp/x}}\n",
    );
    let result = weir().arg("validate").arg(&manifest).output().expect("spawn");
    assert!(!result.status.success());
    let stderr = text(&result.stderr);
    assert!(stderr.contains("1 problem"), "{stderr}");
    assert!(stderr.contains("spec.steps[0].widht: unknown field (did you mean `width`?)"), "{stderr}");
    let run = run(&manifest, &[]);
    assert!(!run.status.success());
    assert!(text(&run.stderr).contains("spec.steps[0].widht: unknown field"), "{}", text(&run.stderr));
}

#[test]
fn ctrl_c_stops_a_stuck_run_and_exits_non_zero() {
    let tmp = tempfile::tempdir().expect("tmp");
    // A host that accepts connections but never answers keeps the download in flight.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let uri = format!("http://{}/never.jpg", silent.local_addr().expect("addr"));
    write_uri_parquet(&tmp.path().join("in/input.parquet"), &[uri]);
    let manifest = write_manifest(
        tmp.path(),
        "stuck",
        &format!(
            "  source: {{parquet: {{uri: \"{}\"}}}}\n  steps:\n    - {{op: download, input: uri, output: bytes, timeoutSeconds: 600}}\n  sink: {{parquet: {{uri: \"{}\"}}}}\n",
            tmp.path().join("in").display(),
            tmp.path().join("out").display()
        ),
    );
    let child = weir()
        .args(["run", "--no-progress"])
        .arg(&manifest)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // SAFETY: sends SIGINT to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) }, 0);
    let started = std::time::Instant::now();
    let output = child.wait_with_output().expect("wait");
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "did not stop promptly");
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("interrupted: the run was stopped before it finished"), "{stderr}");
    assert!(!tmp.path().join("out/_SUCCESS").exists());
}

/// Commit records in the job's checkpoint.
fn commits(out: &std::path::Path) -> usize {
    let dir = out.join("_weir/committed");
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))).count()
    })
}

#[test]
fn a_killed_run_resumes_from_its_committed_units_and_writes_every_row_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (images, out) = (tmp.path().join("images"), tmp.path().join("out"));
    let (good, bad) = fixtures(&images, 300);
    let manifest = write_manifest(tmp.path(), "resume", &spec(&images, &out, "{onRowError: skip, maxErrorRatio: 0.2}"));
    let mut child = weir().args(["run", "--no-progress", "--threads", "1"]).arg(&manifest).spawn().expect("spawn");
    let started = std::time::Instant::now();
    while commits(&out) < 3 {
        assert!(started.elapsed() < std::time::Duration::from_secs(120), "no unit was committed");
        assert!(child.try_wait().expect("poll").is_none(), "the run ended before it could be killed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    assert!(!out.join("_SUCCESS").exists(), "the run finished before it was killed: give it more images");
    let committed = commits(&out);
    eprintln!("killed the run with {committed} units committed");

    let again = run(&manifest, &[]);
    assert!(again.status.success(), "stderr: {}", text(&again.stderr));
    let stdout = text(&again.stdout);
    assert!(stdout.contains(&format!("resumed: {committed} units (")), "{stdout}");
    let uris = strings(&read_parquet_dir(&out), "uri");
    let unique: BTreeSet<String> = uris.iter().cloned().collect();
    assert_eq!(unique.len(), uris.len(), "a row was written twice");
    assert_eq!(unique, good.into_iter().collect::<BTreeSet<_>>(), "every good image exactly once");
    let errors: BTreeSet<String> = strings(&read_parquet_dir(&out.join("_errors")), "row_ref").into_iter().collect();
    assert_eq!(errors, bad.into_iter().collect::<BTreeSet<_>>(), "the errors hold exactly the bad files");
    assert!(out.join("_SUCCESS").exists());
}
