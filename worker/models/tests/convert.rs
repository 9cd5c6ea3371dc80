//! `weir model convert` on both checkpoint formats `torch.save` writes (zip and legacy), made
//! without torch by `tests/reference/torch_checkpoint_writer.py`: names, dtypes, shapes and
//! values survive, strided views included, and a wrapped state dict is unwrapped even with
//! other tensors beside it.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use weir_models::convert::{convert, read_checkpoint};

fn write_checkpoints(dir: &Path) -> HashMap<String, Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/torch_checkpoint_writer.py");
    let python = std::env::var_os("WEIR_PYTHON").unwrap_or_else(|| "python3".into());
    let status = std::process::Command::new(python).arg(script).arg(dir).status().expect("run the writer");
    assert!(status.success(), "torch_checkpoint_writer.py failed");
    serde_json::from_slice(&std::fs::read(dir.join("expected.json")).expect("expected.json")).expect("json")
}

fn values(tensor: &Tensor) -> Vec<f64> {
    tensor.flatten_all().and_then(|t| t.to_dtype(DType::F64)).and_then(|t| t.to_vec1()).expect("values")
}

fn check(tensors: &HashMap<String, Tensor>, expected: &HashMap<String, Value>, file: &str) {
    assert_eq!(tensors.len(), expected.len(), "{file}: {:?}", tensors.keys().collect::<Vec<_>>());
    for (name, want) in expected {
        let tensor = tensors.get(name).unwrap_or_else(|| panic!("{file}: `{name}` missing"));
        let dtype = match want["dtype"].as_str() {
            Some("F32") => DType::F32,
            Some("F64") => DType::F64,
            Some("I64") => DType::I64,
            other => panic!("unexpected dtype {other:?}"),
        };
        assert_eq!(tensor.dtype(), dtype, "{file}: `{name}` dtype");
        let shape: Vec<usize> = serde_json::from_value(want["shape"].clone()).expect("shape");
        assert_eq!(tensor.dims(), shape.as_slice(), "{file}: `{name}` shape");
        let want: Vec<f64> = serde_json::from_value(want["values"].clone()).expect("values");
        let got = values(tensor);
        assert_eq!(got.len(), want.len(), "{file}: `{name}` length");
        // serde_json's decimal parsing may be a unit in the last place off.
        let close = got.iter().zip(&want).all(|(g, w)| (g - w).abs() <= 1e-12 * w.abs().max(1.0));
        assert!(close, "{file}: `{name}` values {got:?}, expected {want:?}");
    }
}

#[test]
fn zip_legacy_and_wrapped_checkpoints_convert_to_the_same_tensors() {
    let dir = tempfile::tempdir().expect("tmp");
    let expected = write_checkpoints(dir.path());
    for file in ["zip.pth", "legacy.pth", "wrapped.pth", "wrapped-legacy.pth"] {
        let read: HashMap<String, Tensor> =
            read_checkpoint(&dir.path().join(file)).unwrap_or_else(|e| panic!("{file}: {e}")).into_iter().collect();
        check(&read, &expected, file);
        let out = dir.path().join(format!("{file}.safetensors"));
        let converted = convert(&[&dir.path().join(file)], &out).expect("convert");
        assert_eq!(converted.tensors, expected.len());
        let written = candle_core::safetensors::load(&out, &Device::Cpu).expect("safetensors");
        check(&written, &expected, &format!("{file}.safetensors"));
    }
}

#[test]
fn damaged_and_foreign_files_are_refused_with_the_file_named() {
    let dir = tempfile::tempdir().expect("tmp");
    write_checkpoints(dir.path());
    let legacy = std::fs::read(dir.path().join("legacy.pth")).expect("legacy");
    let cut = dir.path().join("cut.pth");
    std::fs::write(&cut, &legacy[..legacy.len() - 20]).expect("write");
    let err = read_checkpoint(&cut).expect_err("truncated").to_string();
    assert!(err.contains("cut.pth") && err.contains("truncated"), "{err}");

    let text = dir.path().join("notes.pth");
    std::fs::write(&text, "not a checkpoint").expect("write");
    let err = read_checkpoint(&text).expect_err("foreign").to_string();
    assert!(
        err.ends_with("is not a PyTorch checkpoint (zip or legacy pickle), a CTranslate2 model nor a TF.js model.json"),
        "{err}"
    );
}
