//! Helpers shared by the CLI's end-to-end tests: run the real `weir` binary, read its Parquet output.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub fn weir() -> Command {
    Command::new(env!("CARGO_BIN_EXE_weir"))
}

/// A new job secret made by `weir secret create` under `dir`; give it to hand-run coordinators and
/// workers as `WEIR_JOB_SECRET_DIR`.
pub fn job_secret(dir: &Path) -> PathBuf {
    let secret = dir.join("secret");
    let made = weir().args(["secret", "create"]).arg(&secret).output().expect("weir secret create");
    assert!(made.status.success(), "weir secret create: {}", text(&made.stderr));
    secret
}

/// `weir` with an S3 endpoint and moto's test credentials in its environment.
pub fn weir_s3(endpoint: &str) -> Command {
    let mut command = weir();
    command
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1");
    command
}

/// An S3 client for `bucket` at `endpoint`, with moto's test credentials.
pub fn s3_store(endpoint: &str, bucket: &str) -> std::sync::Arc<dyn object_store::ObjectStore> {
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_allow_http(true)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .expect("s3 store");
    std::sync::Arc::new(store)
}

/// The steps of the distributed tests' job: decode, resize to 64x64, PNG; `uri` and `png` out.
pub const IMAGE_STEPS: &str = "  steps:
    - {op: download, input: uri, output: bytes}
    - {op: image.decode, input: bytes, output: image, mode: RGB}
    - {op: image.resize, input: image, output: image, width: 64, height: 64}
    - {op: image.encode, input: image, output: png, format: png}
    - {op: select, columns: [uri, png]}
";

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
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
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

/// Values of column `name` across `batches`, each read by `value(column, row)`.
fn column_values<T>(batches: &[RecordBatch], name: &str, value: impl Fn(&arrow_array::ArrayRef, usize) -> T) -> Vec<T> {
    batches
        .iter()
        .flat_map(|b| {
            let col = b.column_by_name(name).unwrap_or_else(|| panic!("no column {name}"));
            (0..col.len()).map(|i| value(col, i)).collect::<Vec<_>>()
        })
        .collect()
}

/// Values of string column `name` across `batches`.
pub fn strings(batches: &[RecordBatch], name: &str) -> Vec<String> {
    use arrow_array::cast::AsArray;
    column_values(batches, name, |col, i| col.as_string::<i32>().value(i).to_string())
}

/// Values of binary column `name` across `batches`.
pub fn binaries(batches: &[RecordBatch], name: &str) -> Vec<Vec<u8>> {
    use arrow_array::cast::AsArray;
    column_values(batches, name, |col, i| col.as_binary::<i32>().value(i).to_vec())
}

pub fn file_uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// A minimal HTTP/1.1 file server on a loopback port serving `root`, for download tests. It answers
/// GET and HEAD (404 for missing files) and stops with the test process.
pub fn serve_http(root: PathBuf) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let root = root.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    return;
                }
                let mut header = String::new();
                while reader.read_line(&mut header).map(|n| n > 2).unwrap_or(false) {
                    header.clear();
                }
                let mut parts = line.split_whitespace();
                let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
                let mut out = stream;
                match std::fs::read(root.join(path.trim_start_matches('/'))) {
                    Ok(body) => {
                        let _ = write!(
                            out,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        );
                        if method == "GET" {
                            let _ = out.write_all(&body);
                        }
                    }
                    Err(_) => {
                        let _ = write!(out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// Writes a Parquet file with a `uri` column and a `tags` list column (row i has i % 3 tags).
pub fn write_uri_parquet(path: &Path, uris: &[String]) {
    use std::sync::Arc;

    use arrow_array::builder::{ListBuilder, StringBuilder};
    use arrow_array::{ArrayRef, StringArray};

    let mut tags = ListBuilder::new(StringBuilder::new());
    for i in 0..uris.len() {
        for t in 0..(i % 3) {
            tags.values().append_value(format!("tag{t}"));
        }
        tags.append(true);
    }
    let uri: ArrayRef = Arc::new(StringArray::from(uris.to_vec()));
    let batch =
        RecordBatch::try_from_iter([("uri", uri), ("tags", Arc::new(tags.finish()) as ArrayRef)]).expect("batch");
    write_parquet(path, &batch);
}

/// Writes `batch` as one Parquet file at `path`, making its folder.
pub fn write_parquet(path: &Path, batch: &RecordBatch) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    let file = std::fs::File::create(path).expect("create");
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    writer.write(batch).expect("write");
    writer.close().expect("close");
}
