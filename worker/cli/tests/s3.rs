//! `weir run` against a real S3-compatible server (moto): source listing, download and the Parquet
//! sink all go through object_store's S3 client.
//!
//! `scripts/test.sh` installs moto into a virtualenv and sets `WEIR_MOTO_SERVER`; without it this
//! test fails and says how to get one.

mod common;

use std::process::Command;

use common::*;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use weir_testkit::images::{encode_jpeg, gradient};
use weir_testkit::moto::Moto;

/// `weir run --no-progress MANIFEST` against `moto`'s endpoint with its test credentials.
fn weir_run(moto: &Moto, manifest: &std::path::Path) -> Command {
    let mut command = weir_s3(moto.endpoint());
    command.args(["run", "--no-progress"]).arg(manifest);
    command
}

#[test]
fn a_job_reads_and_writes_s3() {
    let moto = Moto::start();
    moto.create_bucket("weir");
    let store = s3_store(moto.endpoint(), "weir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        for i in 0..12u64 {
            let jpeg = encode_jpeg(&gradient(100 + i as u32, 80, i), 85);
            store.put(&Path::from(format!("images/img-{i:02}.jpg")), PutPayload::from(jpeg)).await.expect("put");
        }
        store.put(&Path::from("images/empty.jpg"), PutPayload::from(Vec::<u8>::new())).await.expect("put");
    });

    let tmp = tempfile::tempdir().expect("tmp");
    let manifest = write_manifest(
        tmp.path(),
        "s3",
        "  source: {files: {uri: \"s3://weir/images/\", glob: \"*.jpg\", filesPerUnit: 5}}
  steps:
    - {op: download, input: uri, output: bytes}
    - {op: image.decode, input: bytes, output: image}
    - {op: image.resize, input: image, output: image, fit: longer-side, size: 50}
    - {op: image.encode, input: image, output: thumb, format: png}
    - {op: select, columns: [uri, thumb]}
  sink: {parquet: {uri: \"s3://weir/out/\"}}
  errorPolicy: {onRowError: skip}
",
    );
    let result = weir_run(&moto, &manifest).output().expect("spawn weir");
    assert!(result.status.success(), "stderr: {}", text(&result.stderr));
    assert!(text(&result.stdout).contains("13 rows in, 12 out, 1 failed"), "{}", text(&result.stdout));

    runtime.block_on(async {
        let mut parts: Vec<String> = Vec::new();
        let mut listing = store.list(Some(&Path::from("out")));
        use futures::StreamExt;
        while let Some(meta) = listing.next().await {
            parts.push(meta.expect("list").location.to_string());
        }
        parts.sort();
        assert!(parts.contains(&"out/_SUCCESS".to_string()), "{parts:?}");
        assert!(parts.contains(&"out/_errors/part-000000-0.parquet".to_string()), "{parts:?}");
        let mut rows = 0;
        for part in parts.iter().filter(|p| p.starts_with("out/part-")) {
            let bytes = store.get(&Path::from(part.as_str())).await.expect("get").bytes().await.expect("bytes");
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).expect("parquet").build().expect("reader");
            for batch in reader {
                let batch = batch.expect("batch");
                for thumb in binaries(std::slice::from_ref(&batch), "thumb") {
                    let img = image::load_from_memory(&thumb).expect("png");
                    assert_eq!(img.width(), 50);
                }
                rows += batch.num_rows();
            }
        }
        assert_eq!(rows, 12);
    });
}

/// Model weights named by an `s3://` URI are downloaded once into the local model cache and
/// reused by the next run while the object is unchanged.
#[test]
fn model_weights_in_s3_are_cached_on_local_disk() {
    let minilm =
        std::path::PathBuf::from(std::env::var("WEIR_MINILM_DIR").unwrap_or_else(|_| {
            panic!("WEIR_MINILM_DIR is not set: run scripts/test.sh, which fetches all-MiniLM-L6-v2")
        }));
    let moto = Moto::start();
    moto.create_bucket("weir");
    let store = s3_store(moto.endpoint(), "weir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        for file in ["model.safetensors", "tokenizer.json", "config.json"] {
            let bytes = std::fs::read(minilm.join(file)).expect("model file");
            store.put(&Path::from(format!("models/minilm/{file}")), PutPayload::from(bytes)).await.expect("put");
        }
        for (i, sentence) in
            ["A man is eating food.", "A cat sleeps on the sofa.", "Rivers flow to the sea."].iter().enumerate()
        {
            store
                .put(&Path::from(format!("texts/t{i}.txt")), PutPayload::from(sentence.to_string()))
                .await
                .expect("put");
        }
    });
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("model-cache");
    let run_once = |name: &str| {
        let manifest = write_manifest(
            tmp.path(),
            name,
            &format!(
                "  source: {{files: {{uri: \"s3://weir/texts/\", glob: \"*.txt\"}}}}
  steps:
    - {{op: download, input: uri, output: bytes}}
    - {{op: document.text, input: bytes, output: text}}
    - {{op: text.embed, input: text, output: embedding, model: {{arch: bert, uri: \"s3://weir/models/minilm/model.safetensors\"}}}}
    - {{op: select, columns: [uri, embedding]}}
  sink: {{parquet: {{uri: \"{}/{name}/\"}}}}
",
                tmp.path().display()
            ),
        );
        let result = weir_run(&moto, &manifest).env("WEIR_MODEL_CACHE", &cache).output().expect("spawn weir");
        assert!(result.status.success(), "stderr: {}", text(&result.stderr));
        assert!(text(&result.stdout).contains("3 rows in, 3 out, 0 failed"), "{}", text(&result.stdout));
    };
    run_once("first");
    let cached: Vec<_> = std::fs::read_dir(&cache).expect("cache dir").filter_map(|e| e.ok()).collect();
    assert_eq!(cached.len(), 1, "only the weights are cached: {cached:?}");
    let weights = std::fs::metadata(minilm.join("model.safetensors")).expect("weights").len();
    let first = cached[0].metadata().expect("meta");
    assert_eq!(first.len(), weights);
    run_once("second");
    let again = std::fs::metadata(cached[0].path()).expect("still cached");
    assert_eq!(again.modified().ok(), first.modified().ok(), "the second run reused the cached copy");
    let batches = read_parquet_dir(&tmp.path().join("second"));
    let dims: Vec<usize> = batches
        .iter()
        .map(|b| b.column_by_name("embedding").expect("embedding").data_type().clone())
        .map(|t| match t {
            arrow_schema::DataType::FixedSizeList(_, n) => n as usize,
            other => panic!("embedding is {other}"),
        })
        .collect();
    assert!(dims.iter().all(|&d| d == 384), "{dims:?}");
}
