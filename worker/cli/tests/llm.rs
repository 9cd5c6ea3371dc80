//! `weir run` end to end through `llm.prompt`, against weir-testkit's OpenAI-compatible server on
//! 127.0.0.1: photos decoded and sent with each row's question, the key read from the
//! environment its Secret names, a rate-limited row retried, a refused row kept in `_errors`,
//! and the answers kept beside the checkpoint.

mod common;

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use base64::Engine;
use common::*;
use weir_testkit::images::{encode_png, gradient};
use weir_testkit::openai::OpenAiServer;

fn write_source(path: &Path, uris: &[String], captions: &[&str]) {
    let uri: ArrayRef = Arc::new(StringArray::from(uris.to_vec()));
    let caption: ArrayRef = Arc::new(StringArray::from(captions.to_vec()));
    write_parquet(path, &RecordBatch::try_from_iter([("uri", uri), ("caption", caption)]).expect("batch"));
}

/// Files under `dir`, at any depth, whose path contains `part`.
fn files_under(dir: &Path, part: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().contains(part) {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn photos_and_questions_are_asked_with_the_key_and_refusals_and_retries_are_handled() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = runtime.block_on(OpenAiServer::start()).expect("server");
    let tmp = tempfile::tempdir().expect("tmp");
    let (images, out) = (tmp.path().join("images"), tmp.path().join("out"));
    std::fs::create_dir_all(&images).expect("mkdir");
    let uris: Vec<String> = (0..3)
        .map(|seed| {
            let path = images.join(format!("dog-{seed}.png"));
            std::fs::write(&path, encode_png(&gradient(640, 480, seed))).expect("write png");
            file_uri(&path)
        })
        .collect();
    let input = tmp.path().join("in/input.parquet");
    write_source(&input, &uris, &["What breed is this?", "[400] refused", "[429 x1 after=1] And this one?"]);
    let manifest = write_manifest(
        tmp.path(),
        "ask",
        &format!(
            "  source: {{parquet: {{uri: \"{}\", columns: [uri, caption]}}}}
  steps:
    - {{op: download, input: uri, output: bytes}}
    - {{op: image.decode, input: bytes, output: image}}
    - op: llm.prompt
      endpoint: {{baseUrl: \"{}\", model: smol, apiKeySecret: {{name: llm, key: key}}}}
      messages:
        - {{role: system, content: You name dog breeds.}}
        - {{role: user, content: \"{{caption}}\"}}
      images: [image]
      maxImageSide: 320
      output: breed
    - {{op: select, columns: [uri, breed, breed_usage]}}
  sink: {{parquet: {{uri: \"{}\"}}}}
  errorPolicy: {{onRowError: skip, maxErrorRatio: 0.5}}
",
            tmp.path().join("in").display(),
            server.base_url(),
            out.display()
        ),
    );

    // Without the key in its environment the job does not start, and nothing is sent.
    let missing = weir()
        .arg("run")
        .arg(&manifest)
        .arg("--no-progress")
        .env_remove("WEIR_SECRET_LLM__KEY")
        .output()
        .expect("weir");
    assert!(!missing.status.success());
    let stderr = text(&missing.stderr);
    assert!(
        stderr.contains("spec.steps[2] (llm.prompt).endpoint.apiKeySecret: WEIR_SECRET_LLM__KEY is not set"),
        "{stderr}"
    );
    assert_eq!(server.requests(), 0);

    let result = weir()
        .arg("run")
        .arg(&manifest)
        .arg("--no-progress")
        .env("WEIR_SECRET_LLM__KEY", "sk-e2e")
        .output()
        .expect("weir");
    assert!(result.status.success(), "stderr: {}", text(&result.stderr));
    assert!(!text(&result.stderr).contains("sk-e2e"), "the key is never logged");

    let written = read_parquet_dir(&out);
    assert_eq!(strings(&written, "uri"), [uris[0].clone(), uris[2].clone()]);
    let breeds = strings(&written, "breed");
    // The 640x480 photo went as a JPEG scaled to 320 pixels on its longer side.
    assert!(breeds[0].starts_with("echo: What breed is this? images=1 [image/jpeg "), "{breeds:?}");
    assert!(breeds[1].starts_with("echo: [429 x1 after=1] And this one? images=1"), "{breeds:?}");
    let sent = &server.bodies()[0]["messages"][1]["content"][1]["image_url"]["url"];
    let jpeg = sent.as_str().and_then(|u| u.strip_prefix("data:image/jpeg;base64,")).expect("a JPEG data URL");
    let decoded = image::load_from_memory(&base64::engine::general_purpose::STANDARD.decode(jpeg).expect("base64"))
        .expect("the sent image decodes");
    assert_eq!((decoded.width(), decoded.height()), (320, 240));

    assert_eq!(server.requests(), 4, "three rows, one of them refused once with 429");
    assert!(server.authorizations().iter().all(|a| a.as_deref() == Some("Bearer sk-e2e")));

    let errors = read_parquet_dir(&out.join("_errors"));
    assert_eq!(strings(&errors, "step"), ["llm.prompt"]);
    assert!(strings(&errors, "message")[0].contains("answered 400 Bad Request"), "{:?}", strings(&errors, "message"));

    let kept = files_under(&out.join("_weir/llm/breed"), ".jsonl");
    let lines: usize = kept.iter().map(|f| std::fs::read_to_string(f).expect("read").lines().count()).sum();
    assert_eq!(lines, 2, "the two answers are kept with the checkpoint: {kept:?}");
}
