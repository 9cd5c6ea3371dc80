//! Model steps through `weir run`: a wrong or unconverted weights file fails the job before any
//! row runs, with the step, the field and the tensor named.

mod common;

use std::path::PathBuf;

use common::*;

fn models() -> PathBuf {
    std::env::var_os("WEIR_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("WEIR_MODELS is not set: run scripts/test.sh, which fetches the model files"))
}

fn classify_with(weights: &std::path::Path, tmp: &std::path::Path) -> std::process::Output {
    let photos = models().join("photos");
    let manifest = write_manifest(
        tmp,
        "classify",
        &format!(
            "  source: {{files: {{uri: \"{}/\", glob: \"coffee.png\"}}}}
  steps:
    - {{op: download, input: uri, output: bytes}}
    - {{op: image.decode, input: bytes, output: image}}
    - {{op: image.classify, input: image, output: label, model: {{arch: efficientnet-lite0, uri: \"{}\"}}}}
  sink: {{parquet: {{uri: \"{}/out/\"}}}}
",
            photos.display(),
            weights.display(),
            tmp.display()
        ),
    );
    run(&manifest, &[])
}

#[test]
fn weights_of_another_architecture_fail_the_job_naming_the_tensor() {
    let tmp = tempfile::tempdir().expect("tmp");
    let minilm = models().join("all-MiniLM-L6-v2/model.safetensors");
    let out = classify_with(&minilm, tmp.path());
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("spec.steps[2] (image.classify).model.uri")
            && stderr.contains("tensor `_conv_stem.weight` (shape [32, 3, 3, 3]) is missing"),
        "{stderr}"
    );
    assert!(!tmp.path().join("out/_SUCCESS").exists());
}

#[test]
fn an_unconverted_pytorch_checkpoint_is_refused_with_the_command_that_converts_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pth = models().join("efficientnet-lite0/efficientnet-lite0-57934424.pth");
    let out = classify_with(&pth, tmp.path());
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("is a PyTorch checkpoint, not safetensors: convert it with `weir model convert"),
        "{stderr}"
    );

    let converted = tmp.path().join("effnet.safetensors");
    let convert = weir().args(["model", "convert"]).arg(&pth).arg(&converted).output().expect("convert");
    assert!(convert.status.success(), "{}", text(&convert.stderr));
    assert!(text(&convert.stdout).contains("wrote 296 tensors"), "{}", text(&convert.stdout));
    let out = classify_with(&converted, tmp.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("1 rows in, 1 out, 0 failed"), "{}", text(&out.stdout));
}
