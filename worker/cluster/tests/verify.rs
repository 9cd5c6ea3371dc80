//! `verify` on a local output with real Parquet part files: a good output passes, and a deleted,
//! cut, replaced, planted or over-counted file is named.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use object_store::ObjectStoreExt;
use parquet::arrow::ArrowWriter;
use weir_checkpoint::{CheckpointStore, CommittedFile, JobManifest, UnitCommit};
use weir_cluster::verify::{Problem, Verification, VerifyError, check_files, uncommitted_parts, verify_output};
use weir_io::StoreRegistry;

/// Writes a Parquet file of `rows` rows of one string column.
fn write_parquet(path: &Path, rows: usize) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let column: ArrayRef = Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("row {i}"))));
    let batch = RecordBatch::try_from_iter([("uri", column)]).expect("batch");
    let file = std::fs::File::create(path).expect("create");
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
}

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

/// A finished job's output under a temporary folder: part files, records, manifest and marker.
struct Output {
    _tmp: tempfile::TempDir,
    out: PathBuf,
    stores: Arc<StoreRegistry>,
    records: Vec<UnitCommit>,
}

impl Output {
    /// Units `0..rows.len()`, unit `i` with `rows[i]` output rows and, for odd `i`, one failed row.
    async fn finished(rows: &[usize]) -> Self {
        let tmp = tempfile::tempdir().expect("tmp");
        let out = tmp.path().join("out");
        let stores = Arc::new(StoreRegistry::default());
        let mut records = Vec::new();
        for (unit, &n) in rows.iter().enumerate() {
            let unit = unit as u64;
            let errors = unit % 2;
            let mut files = vec![committed(&stores, &out.join(format!("part-{unit:06}-0.parquet")), n).await];
            if errors > 0 {
                files.push(committed(&stores, &out.join(format!("_errors/part-{unit:06}-0.parquet")), 1).await);
            }
            records.push(UnitCommit {
                unit,
                attempt: 0,
                rows_in: n as u64 + errors,
                rows_out: n as u64,
                errors,
                files,
            });
        }
        let output = Self { _tmp: tmp, out, stores, records };
        output.write_manifest(&JobManifest::from_units(rows.len() as u64, output.records.clone())).await;
        let manifest = JobManifest::from_units(rows.len() as u64, output.records.clone());
        let marker = serde_json::json!({
            "rowsIn": manifest.rows_in,
            "rowsOut": manifest.rows_out,
            "rowsVerified": manifest.rows_out,
            "rowsFailed": manifest.rows_failed,
            "units": manifest.units.len(),
            "files": manifest.units.iter().flat_map(UnitCommit::uris).collect::<Vec<_>>(),
        });
        std::fs::write(output.out.join("_SUCCESS"), marker.to_string()).expect("marker");
        output
    }

    async fn write_manifest(&self, manifest: &JobManifest) {
        let location = self.stores.resolve(&self.checkpoint_uri()).expect("checkpoint");
        CheckpointStore::new(location.store, location.path).write_manifest(manifest).await.expect("manifest");
    }

    fn output_uri(&self) -> String {
        uri(&self.out)
    }

    fn checkpoint_uri(&self) -> String {
        format!("{}/_weir/", self.output_uri())
    }

    fn part(&self, unit: u64) -> PathBuf {
        self.out.join(format!("part-{unit:06}-0.parquet"))
    }

    async fn verify(&self) -> Verification {
        verify_output(&self.stores, &self.output_uri(), &self.checkpoint_uri()).await.expect("verify")
    }
}

/// Writes `rows` rows at `path` and records the file as the store finds it.
async fn committed(stores: &StoreRegistry, path: &Path, rows: usize) -> CommittedFile {
    write_parquet(path, rows);
    let location = stores.resolve(&uri(path)).expect("resolve");
    let meta = location.store.head(&location.path).await.expect("head");
    CommittedFile { uri: uri(path), size: meta.size, e_tag: meta.e_tag, rows: rows as u64 }
}

/// The problems found in `path`'s file.
fn problems_of(verification: &Verification, path: &Path) -> Vec<Problem> {
    let uri = uri(path);
    verification.findings.iter().filter(|f| f.uri == uri).map(|f| f.problem.clone()).collect()
}

#[tokio::test]
async fn a_good_output_passes_and_counts_its_rows() {
    let output = Output::finished(&[5, 3, 4]).await;
    let verification = output.verify().await;
    assert!(verification.is_ok(), "{:?}", verification.findings);
    assert_eq!(
        (verification.files, verification.rows_out_verified, verification.rows_failed_verified),
        (4, 12, 1),
        "three output files and one errors file"
    );
}

#[tokio::test]
async fn a_deleted_file_is_missing() {
    let output = Output::finished(&[5, 3]).await;
    std::fs::remove_file(output.part(1)).expect("delete");
    let verification = output.verify().await;
    assert_eq!(problems_of(&verification, &output.part(1)), [Problem::Missing]);
    let finding = verification.findings.iter().find(|f| f.problem == Problem::Missing).expect("finding");
    assert_eq!(finding.unit, Some(1));
    assert_eq!(finding.to_string(), format!("unit 1: {}: missing", uri(&output.part(1))));
    assert!(
        verification.findings.iter().any(|f| matches!(f.problem, Problem::RowsVerified { found: 5, .. })),
        "the marker's rowsVerified no longer matches: {:?}",
        verification.findings
    );
}

#[tokio::test]
async fn a_cut_file_has_another_size_and_no_readable_footer() {
    let output = Output::finished(&[5]).await;
    let path = output.part(0);
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("cut");
    let problems = problems_of(&output.verify().await, &path);
    let half = (bytes.len() / 2) as u64;
    assert_eq!(problems[0], Problem::Size { recorded: bytes.len() as u64, found: half }, "{problems:?}");
    assert!(problems.iter().any(|p| matches!(p, Problem::Unreadable(_))), "{problems:?}");
}

#[tokio::test]
async fn a_replaced_file_has_another_size_entity_tag_and_row_count() {
    let output = Output::finished(&[50]).await;
    write_parquet(&output.part(0), 2);
    let problems = problems_of(&output.verify().await, &output.part(0));
    assert!(matches!(problems[0], Problem::Size { .. }), "{problems:?}");
    assert!(problems.iter().any(|p| matches!(p, Problem::ETag { .. })), "{problems:?}");
    assert_eq!(problems.last(), Some(&Problem::Rows { recorded: 50, found: 2 }));
}

#[tokio::test]
async fn a_planted_copy_under_another_attempts_name_is_uncommitted() {
    let output = Output::finished(&[5, 3]).await;
    let planted = output.out.join("part-000001-7.parquet");
    let planted_error = output.out.join("_errors/part-000001-7.parquet");
    std::fs::copy(output.part(1), &planted).expect("copy");
    std::fs::copy(output.out.join("_errors/part-000001-0.parquet"), &planted_error).expect("copy");
    let staged = output.out.join("_weir/staging/part-000000-9.parquet");
    write_parquet(&staged, 1);

    let verification = output.verify().await;
    let uris: Vec<(Option<u64>, &str)> = verification.findings.iter().map(|f| (f.unit, f.uri.as_str())).collect();
    let expected = [(None, uri(&planted_error)), (None, uri(&planted))];
    assert_eq!(uris, expected.iter().map(|(u, s)| (*u, s.as_str())).collect::<Vec<_>>(), "staging is not looked at");
    assert!(verification.findings.iter().all(|f| f.problem == Problem::Uncommitted));
    let found = uncommitted_parts(&output.stores, &output.output_uri(), &output.records).await.expect("list");
    assert_eq!(found, verification.findings);
}

#[tokio::test]
async fn a_record_claiming_more_rows_than_its_file_holds_is_named() {
    let mut output = Output::finished(&[5, 3]).await;
    output.records[0].files[0].rows = 6;
    let findings = check_files(&output.stores, &output.records).await.expect("check");
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!((findings[0].unit, &findings[0].problem), (Some(0), &Problem::Rows { recorded: 6, found: 5 }));
}

#[tokio::test]
async fn findings_are_sorted_by_unit_then_file() {
    let output = Output::finished(&[1, 1, 1, 1]).await;
    for unit in [3, 0, 2] {
        std::fs::remove_file(output.part(unit)).expect("delete");
    }
    std::fs::remove_file(output.out.join("_errors/part-000003-0.parquet")).expect("delete");
    let findings = check_files(&output.stores, &output.records).await.expect("check");
    let order: Vec<(Option<u64>, String)> = findings.into_iter().map(|f| (f.unit, f.uri)).collect();
    let expected = vec![
        (Some(0), uri(&output.part(0))),
        (Some(2), uri(&output.part(2))),
        (Some(3), uri(&output.out.join("_errors/part-000003-0.parquet"))),
        (Some(3), uri(&output.part(3))),
    ];
    assert_eq!(order, expected);
}

#[tokio::test]
async fn a_manifest_that_disagrees_with_its_records_or_marker_is_named() {
    let output = Output::finished(&[5, 3]).await;
    let mut manifest = JobManifest::from_units(3, output.records.clone());
    manifest.rows_out += 1;
    output.write_manifest(&manifest).await;
    let problems: Vec<Problem> = output.verify().await.findings.into_iter().map(|f| f.problem).collect();
    assert_eq!(
        problems,
        [
            Problem::UnitCount { records: 2, total: 3 },
            Problem::Totals { field: "rowsOut", manifest: 9, records: 8 },
            Problem::MarkerField { field: "rowsOut", marker: Some(8), manifest: 9 },
        ]
    );
}

#[tokio::test]
async fn a_missing_marker_is_a_finding_and_a_missing_manifest_an_error() {
    let output = Output::finished(&[5]).await;
    std::fs::remove_file(output.out.join("_SUCCESS")).expect("delete");
    let verification = output.verify().await;
    assert_eq!(problems_of(&verification, &output.out.join("_SUCCESS")), [Problem::Missing]);

    std::fs::remove_file(output.out.join("_weir/manifest.json")).expect("delete");
    let err = verify_output(&output.stores, &output.output_uri(), &output.checkpoint_uri()).await.expect_err("none");
    assert!(matches!(err, VerifyError::NoManifest { .. }), "{err}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("the job has not finished"), "{err}");
}
