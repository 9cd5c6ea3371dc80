//! Helpers shared by the CLI's end-to-end tests: run the real `weir` binary, read its Parquet output.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

/// Writes `body` (the part under `spec:`) as a manifest in `dir`.
pub fn write_manifest(dir: &Path, name: &str, spec: &str) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    let text = format!("apiVersion: weir.dev/v1alpha1\nkind: MultimodalJob\nmetadata: {{name: {name}}}\nspec:\n{spec}");
    std::fs::write(&path, text).expect("write manifest");
    path
}

/// Runs `weir run` on `manifest` with extra args, returning its output.
pub fn run(manifest: &Path, extra: &[&str]) -> Output {
    weir().arg("run").arg(manifest).arg("--no-progress").args(extra).output().expect("spawn weir")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every row of every Parquet file directly under `dir`, in file-name order.
pub fn read_parquet_dir(dir: &Path) -> Vec<RecordBatch> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "parquet"));
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            let file = std::fs::File::open(f).expect("open parquet");
            let reader = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet").build().expect("reader");
            reader.map(|b| b.expect("batch")).collect::<Vec<_>>()
        })
        .collect()
}

/// Values of string column `name` across `batches`.
pub fn strings(batches: &[RecordBatch], name: &str) -> Vec<String> {
    use arrow_array::cast::AsArray;
    batches
        .iter()
        .flat_map(|b| {
            let col = b.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
            col.as_string::<i32>().iter().map(|s| s.unwrap_or_default().to_string()).collect::<Vec<_>>()
        })
        .collect()
}

/// Values of binary column `name` across `batches`.
pub fn binaries(batches: &[RecordBatch], name: &str) -> Vec<Vec<u8>> {
    use arrow_array::cast::AsArray;
    batches
        .iter()
        .flat_map(|b| {
            let col = b.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
            col.as_binary::<i32>().iter().map(|s| s.unwrap_or_default().to_vec()).collect::<Vec<_>>()
        })
        .collect()
}

pub fn file_uri(path: &Path) -> String {
    format!("file://{}", path.display())
}
