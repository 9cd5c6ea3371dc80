//! Checking a finished job's output against its checkpoint: every committed file present, unchanged
//! and holding the rows its record says, no part file that no record names, and a manifest and
//! success marker that agree with the records.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaDataReader;
use serde_json::Value;
use weir_checkpoint::{CheckpointError, CheckpointStore, CommittedFile, JobManifest, UnitCommit};
use weir_io::parquet_io::ObjectReader;
use weir_io::sink::ERRORS_DIR;
use weir_io::{StoreError, StoreRegistry};

use crate::coordinator::SUCCESS_MARKER;

/// How many files are checked at once: enough to hide object-store latency over thousands of
/// files, few enough not to exhaust a connection pool.
const CHECK_CONCURRENCY: usize = 16;

/// The manifest's name under the checkpoint prefix (see [`CheckpointStore::manifest`]).
const MANIFEST_NAME: &str = "manifest.json";

/// What is wrong with one file, or with the manifest or marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The object does not exist.
    Missing,
    /// The object's size differs from the record's.
    Size { recorded: u64, found: u64 },
    /// The object's entity tag differs from the record's (it was replaced); only reported when
    /// both the record and the store have one.
    ETag { recorded: String, found: String },
    /// The Parquet footer's row count differs from the record's.
    Rows { recorded: u64, found: u64 },
    /// The Parquet footer does not parse.
    Unreadable(String),
    /// The record's URI cannot be resolved to a store.
    BadUri(String),
    /// A `part-*.parquet` in the output that no record names.
    Uncommitted,
    /// The success marker is not a JSON object.
    BadMarker(String),
    /// A field of the success marker (absent or not a number: `None`) disagrees with the manifest.
    MarkerField { field: &'static str, marker: Option<u64>, manifest: u64 },
    /// The marker's `rowsVerified` (`None`: not a number) is not the rows found in the output files.
    RowsVerified { marker: Option<u64>, found: u64 },
    /// A manifest total is not the sum of its unit records.
    Totals { field: &'static str, manifest: u64, records: u64 },
    /// The manifest holds another number of unit records than the job has units.
    UnitCount { records: u64, total: u64 },
    /// The manifest holds more than one record of the unit.
    DuplicateUnit,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let number = |n: &Option<u64>| n.map_or_else(|| "absent (or not a number)".to_string(), |n| n.to_string());
        match self {
            Self::Missing => write!(f, "missing"),
            Self::Size { recorded, found } => write!(f, "is {found} bytes, its record says {recorded}"),
            Self::ETag { recorded, found } => {
                write!(f, "entity tag is {found:?}, its record says {recorded:?} (replaced since published)")
            }
            Self::Rows { recorded, found } => write!(f, "footer holds {found} rows, its record says {recorded}"),
            Self::Unreadable(message) => write!(f, "unreadable Parquet footer: {message}"),
            Self::BadUri(message) => write!(f, "not a usable URI: {message}"),
            Self::Uncommitted => write!(f, "uncommitted: a part file that no unit record names"),
            Self::BadMarker(message) => write!(f, "not a JSON success marker: {message}"),
            Self::MarkerField { field, marker, manifest } => {
                write!(f, "`{field}` is {}, the manifest says {manifest}", number(marker))
            }
            Self::RowsVerified { marker, found } => {
                write!(f, "`rowsVerified` is {}, the output files' footers hold {found}", number(marker))
            }
            Self::Totals { field, manifest, records } => {
                write!(f, "`{field}` is {manifest}, its unit records sum to {records}")
            }
            Self::UnitCount { records, total } => write!(f, "{records} unit records for a job of {total} units"),
            Self::DuplicateUnit => write!(f, "the unit has more than one record"),
        }
    }
}

/// One problem found, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The unit whose record the finding is about; `None` for a file no record names and for the
    /// manifest's or marker's own problems.
    pub unit: Option<u64>,
    /// The file (part file, manifest or marker).
    pub uri: String,
    pub problem: Problem,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.unit {
            Some(unit) => write!(f, "unit {unit}: {}: {}", self.uri, self.problem),
            None => write!(f, "{}: {}", self.uri, self.problem),
        }
    }
}

/// Why a check could not be completed (as opposed to a [`Finding`], a problem it found).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The output or checkpoint URI cannot be resolved, or its store cannot be built.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A request to the store failed.
    #[error("reading `{uri}`: {source}")]
    Read { uri: String, source: object_store::Error },
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The checkpoint holds no manifest: the job has not finished (or the checkpoint is elsewhere).
    #[error("no manifest at `{uri}`: the job has not finished, or its checkpoint is elsewhere")]
    NoManifest { uri: String },
}

impl VerifyError {
    /// Whether the same check may succeed if retried (a storage outage), as opposed to a bad URI,
    /// a corrupt checkpoint or an unfinished job.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Read { source, .. } => weir_io::store::is_transient(source),
            Self::Checkpoint(e) => e.is_transient(),
            Self::Store(_) | Self::NoManifest { .. } => false,
        }
    }
}

/// The result of [`verify_output`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Files the unit records name.
    pub files: usize,
    /// Rows in the footers of the output part files.
    pub rows_out_verified: u64,
    /// Rows in the footers of the `_errors/` part files.
    pub rows_failed_verified: u64,
    /// Every problem found, empty for a good output.
    pub findings: Vec<Finding>,
}

impl Verification {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Rows found in readable footers, by kind of part file.
#[derive(Debug, Default)]
struct Tally {
    rows_out: u64,
    rows_failed: u64,
}

/// Checks every file of every record: it exists, has the recorded size (and entity tag, where
/// both have one), and its Parquet footer holds the recorded number of rows.
///
/// Reads only object metadata and footers, 16 files at a time.
///
/// # Guarantees
/// Findings are sorted by unit, then URI; a file may have several (a cut file: size, then footer).
///
/// # Errors
/// [`VerifyError`] when a request fails other than by a missing object ([`VerifyError::is_transient`]
/// says whether to retry); a missing or changed file is a [`Finding`], not an error.
pub async fn check_files(stores: &StoreRegistry, records: &[UnitCommit]) -> Result<Vec<Finding>, VerifyError> {
    Ok(inspect_files(stores, records).await?.0)
}

async fn inspect_files(stores: &StoreRegistry, records: &[UnitCommit]) -> Result<(Vec<Finding>, Tally), VerifyError> {
    // A hand-driven `FuturesUnordered` rather than `stream.map(closure).buffer_unordered(n)`: a
    // closure over borrowed files held across an await makes callers' futures fail to be `Send`
    // for every lifetime (rust-lang/rust#102211), so they could not be spawned.
    let files: Vec<(u64, &CommittedFile)> =
        records.iter().flat_map(|record| record.files.iter().map(move |file| (record.unit, file))).collect();
    let mut inspected = Vec::with_capacity(files.len());
    let mut files = files.into_iter();
    let mut running = FuturesUnordered::new();
    loop {
        while running.len() < CHECK_CONCURRENCY
            && let Some((unit, file)) = files.next()
        {
            running.push(inspect(stores, unit, file));
        }
        match running.next().await {
            Some(result) => inspected.push(result?),
            None => break,
        }
    }
    let mut tally = Tally::default();
    let mut findings = Vec::new();
    for file in inspected {
        match file.rows {
            Some(rows) if is_errors_file(&file.uri) => tally.rows_failed = tally.rows_failed.saturating_add(rows),
            Some(rows) => tally.rows_out = tally.rows_out.saturating_add(rows),
            None => {}
        }
        findings.extend(file.problems.into_iter().map(|problem| Finding {
            unit: Some(file.unit),
            uri: file.uri.clone(),
            problem,
        }));
    }
    // A stable sort keeps each file's problems in the order they were found.
    findings.sort_by(|a, b| (a.unit, &a.uri).cmp(&(b.unit, &b.uri)));
    Ok((findings, tally))
}

/// What was found about one committed file.
struct Inspected {
    unit: u64,
    uri: String,
    problems: Vec<Problem>,
    /// The footer's row count, when it parsed.
    rows: Option<u64>,
}

async fn inspect(stores: &StoreRegistry, unit: u64, file: &CommittedFile) -> Result<Inspected, VerifyError> {
    let mut inspected = Inspected { unit, uri: file.uri.clone(), problems: Vec::new(), rows: None };
    let location = match stores.resolve(&file.uri) {
        Ok(location) => location,
        Err(StoreError::BadUri { message, .. }) => {
            inspected.problems.push(Problem::BadUri(message));
            return Ok(inspected);
        }
        Err(e) => return Err(e.into()),
    };
    let read = |source| VerifyError::Read { uri: file.uri.clone(), source };
    let meta = match location.store.head(&location.path).await {
        Ok(meta) => meta,
        Err(object_store::Error::NotFound { .. }) => {
            inspected.problems.push(Problem::Missing);
            return Ok(inspected);
        }
        Err(e) => return Err(read(e)),
    };
    inspected.problems.extend(compare_meta(file, &meta));
    match footer_rows(location.store, location.path, meta.size).await {
        Ok(rows) => {
            inspected.rows = Some(rows);
            if rows != file.rows {
                inspected.problems.push(Problem::Rows { recorded: file.rows, found: rows });
            }
        }
        Err(Footer::Problem(problem)) => inspected.problems.push(problem),
        Err(Footer::Store(e)) => return Err(read(e)),
    }
    Ok(inspected)
}

/// Size and entity-tag differences between a record and the stored object.
fn compare_meta(file: &CommittedFile, meta: &ObjectMeta) -> Vec<Problem> {
    let mut problems = Vec::new();
    if meta.size != file.size {
        problems.push(Problem::Size { recorded: file.size, found: meta.size });
    }
    if let (Some(recorded), Some(found)) = (&file.e_tag, &meta.e_tag)
        && recorded != found
    {
        problems.push(Problem::ETag { recorded: recorded.clone(), found: found.clone() });
    }
    problems
}

/// Why a footer's row count is not known.
enum Footer {
    Problem(Problem),
    Store(object_store::Error),
}

/// The row count in the footer of the `size`-byte Parquet object at `path`.
async fn footer_rows(store: Arc<dyn ObjectStore>, path: Path, size: u64) -> Result<u64, Footer> {
    let mut reader = ObjectReader::new(store, path);
    let metadata = match ParquetMetaDataReader::new().load_and_finish(&mut reader, size).await {
        Ok(metadata) => metadata,
        Err(ParquetError::External(e)) => {
            return Err(match e.downcast::<object_store::Error>() {
                Ok(e) if matches!(*e, object_store::Error::NotFound { .. }) => Footer::Problem(Problem::Missing),
                Ok(e) => Footer::Store(*e),
                Err(e) => Footer::Problem(Problem::Unreadable(e.to_string())),
            });
        }
        Err(e) => return Err(Footer::Problem(Problem::Unreadable(e.to_string()))),
    };
    let rows = metadata.file_metadata().num_rows();
    u64::try_from(rows).map_err(|_| Footer::Problem(Problem::Unreadable(format!("negative row count {rows}"))))
}

/// Whether `uri` is a failed-rows part file (`<out>/_errors/part-...`).
fn is_errors_file(uri: &str) -> bool {
    uri.rsplit('/').nth(1) == Some(ERRORS_DIR)
}

/// Whether a file name is a part file's: `part-*.parquet`.
fn is_part_name(name: &str) -> bool {
    name.starts_with("part-") && name.ends_with(".parquet")
}

/// The part files directly under `<output_uri>/` or `<output_uri>/_errors/` that no record names
/// (a losing attempt's file published by mistake, a planted copy), sorted by URI.
///
/// The staging folder and other folders are not looked at.
///
/// # Errors
/// [`VerifyError`] when the output URI does not resolve or listing fails.
pub async fn uncommitted_parts(
    stores: &StoreRegistry,
    output_uri: &str,
    records: &[UnitCommit],
) -> Result<Vec<Finding>, VerifyError> {
    let output = stores.resolve(output_uri)?;
    // A record URI that does not resolve names no file here; check_files reports it.
    let named: HashSet<Path> =
        records.iter().flat_map(UnitCommit::uris).filter_map(|uri| stores.resolve(uri).ok()).map(|l| l.path).collect();
    let mut found = BTreeSet::new();
    for dir in [output.path.clone(), output.path.clone().join(ERRORS_DIR)] {
        let listing = match output.store.list_with_delimiter(Some(&dir)).await {
            Ok(listing) => listing.objects,
            Err(object_store::Error::NotFound { .. }) => Vec::new(),
            Err(source) => return Err(VerifyError::Read { uri: output.uri_of(&dir), source }),
        };
        found.extend(
            listing
                .into_iter()
                .map(|meta| meta.location)
                .filter(|path| path.filename().is_some_and(is_part_name) && !named.contains(path))
                .map(|path| output.uri_of(&path)),
        );
    }
    Ok(found.into_iter().map(|uri| Finding { unit: None, uri, problem: Problem::Uncommitted }).collect())
}

/// Verifies a finished job's output at `output_uri` against its checkpoint at `checkpoint_uri`:
/// the manifest's records agree with its totals and the job's unit count, the `_SUCCESS` marker
/// exists and agrees with the manifest, every committed file is as recorded ([`check_files`]), and
/// no part file is uncommitted ([`uncommitted_parts`]).
///
/// # Guarantees
/// Reads only: nothing is written or deleted. Findings come in this order: the manifest's, the
/// committed files' (by unit, then URI), the uncommitted part files', then the marker's.
///
/// # Errors
/// [`VerifyError::NoManifest`] when the job has not finished; otherwise storage errors
/// ([`VerifyError::is_transient`] says whether to retry).
pub async fn verify_output(
    stores: &Arc<StoreRegistry>,
    output_uri: &str,
    checkpoint_uri: &str,
) -> Result<Verification, VerifyError> {
    let checkpoint = stores.resolve(checkpoint_uri)?;
    let manifest_uri = format!("{}/{MANIFEST_NAME}", checkpoint_uri.trim_end_matches('/'));
    let Some(manifest) = CheckpointStore::new(checkpoint.store, checkpoint.path).manifest().await? else {
        return Err(VerifyError::NoManifest { uri: manifest_uri });
    };
    let mut findings = check_manifest(&manifest_uri, &manifest);
    let (file_findings, tally) = inspect_files(stores, &manifest.units).await?;
    findings.extend(file_findings);
    findings.extend(uncommitted_parts(stores, output_uri, &manifest.units).await?);
    // The marker last: it is derived from the rest, so its problems usually follow from theirs.
    let marker_uri = format!("{}/{SUCCESS_MARKER}", output_uri.trim_end_matches('/'));
    match read_optional(stores, &marker_uri).await? {
        Some(body) => findings.extend(check_marker(&marker_uri, &body, &manifest, tally.rows_out)),
        None => findings.push(Finding { unit: None, uri: marker_uri, problem: Problem::Missing }),
    }
    Ok(Verification {
        files: manifest.units.iter().map(|u| u.files.len()).sum(),
        rows_out_verified: tally.rows_out,
        rows_failed_verified: tally.rows_failed,
        findings,
    })
}

/// The object at `uri`, or `None` when it does not exist.
async fn read_optional(stores: &StoreRegistry, uri: &str) -> Result<Option<bytes::Bytes>, VerifyError> {
    let location = stores.resolve(uri)?;
    let read = |source| VerifyError::Read { uri: uri.to_string(), source };
    match location.store.get(&location.path).await {
        Ok(got) => got.bytes().await.map(Some).map_err(read),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(read(e)),
    }
}

/// The manifest's own consistency: one record per unit of the job, totals that are the records' sums.
fn check_manifest(uri: &str, manifest: &JobManifest) -> Vec<Finding> {
    let finding = |unit, problem| Finding { unit, uri: uri.to_string(), problem };
    let mut findings = Vec::new();
    let records = manifest.units.len() as u64;
    if records != manifest.units_total {
        findings.push(finding(None, Problem::UnitCount { records, total: manifest.units_total }));
    }
    let sum = |field: fn(&UnitCommit) -> u64| manifest.units.iter().map(field).fold(0u64, u64::saturating_add);
    let totals = [
        ("rowsIn", manifest.rows_in, sum(|u| u.rows_in)),
        ("rowsOut", manifest.rows_out, sum(|u| u.rows_out)),
        ("rowsFailed", manifest.rows_failed, sum(|u| u.errors)),
    ];
    for (field, manifest, records) in totals {
        if manifest != records {
            findings.push(finding(None, Problem::Totals { field, manifest, records }));
        }
    }
    let mut seen = HashSet::new();
    let duplicates: BTreeSet<u64> = manifest.units.iter().map(|u| u.unit).filter(|&unit| !seen.insert(unit)).collect();
    findings.extend(duplicates.into_iter().map(|unit| finding(Some(unit), Problem::DuplicateUnit)));
    findings
}

/// The success marker against the manifest; `rowsVerified`, where the marker has it, against the
/// rows found in the output files' footers.
fn check_marker(uri: &str, body: &[u8], manifest: &JobManifest, rows_verified: u64) -> Vec<Finding> {
    let finding = |problem| Finding { unit: None, uri: uri.to_string(), problem };
    let marker = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(marker)) => marker,
        Ok(_) => return vec![finding(Problem::BadMarker("not an object".into()))],
        Err(e) => return vec![finding(Problem::BadMarker(e.to_string()))],
    };
    let expected = [
        ("rowsIn", manifest.rows_in),
        ("rowsOut", manifest.rows_out),
        ("rowsFailed", manifest.rows_failed),
        ("units", manifest.units.len() as u64),
    ];
    let mut findings: Vec<Finding> = expected
        .into_iter()
        .filter_map(|(field, want)| {
            let found = marker.get(field).and_then(Value::as_u64);
            (found != Some(want)).then(|| finding(Problem::MarkerField { field, marker: found, manifest: want }))
        })
        .collect();
    if let Some(value) = marker.get("rowsVerified") {
        let found = value.as_u64();
        if found != Some(rows_verified) {
            findings.push(finding(Problem::RowsVerified { marker: found, found: rows_verified }));
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(unit: u64, rows_out: u64, errors: u64) -> UnitCommit {
        let file =
            CommittedFile { uri: format!("file:///o/part-{unit:06}-0.parquet"), size: 9, e_tag: None, rows: rows_out };
        UnitCommit { unit, attempt: 0, rows_in: rows_out + errors, rows_out, errors, files: vec![file] }
    }

    fn marker(manifest: &JobManifest, rows_verified: Option<u64>) -> Vec<u8> {
        let mut body = serde_json::json!({
            "rowsIn": manifest.rows_in,
            "rowsOut": manifest.rows_out,
            "rowsFailed": manifest.rows_failed,
            "units": manifest.units.len(),
            "files": [],
        });
        if let Some(rows) = rows_verified {
            body["rowsVerified"] = rows.into();
        }
        serde_json::to_vec(&body).expect("json")
    }

    #[test]
    fn findings_read_as_one_line_naming_unit_file_and_numbers() {
        let size = Finding {
            unit: Some(3),
            uri: "s3://b/o/part-000003-1.parquet".into(),
            problem: Problem::Size { recorded: 1024, found: 512 },
        };
        assert_eq!(size.to_string(), "unit 3: s3://b/o/part-000003-1.parquet: is 512 bytes, its record says 1024");
        let stray = Finding { unit: None, uri: "s3://b/o/part-000003-2.parquet".into(), problem: Problem::Uncommitted };
        assert_eq!(
            stray.to_string(),
            "s3://b/o/part-000003-2.parquet: uncommitted: a part file that no unit record names"
        );
        let rows = Problem::Rows { recorded: 10, found: 7 };
        assert_eq!(rows.to_string(), "footer holds 7 rows, its record says 10");
    }

    #[test]
    fn a_consistent_manifest_and_marker_have_no_findings() {
        let manifest = JobManifest::from_units(2, [record(0, 5, 1), record(1, 4, 0)]);
        assert_eq!(check_manifest("m", &manifest), []);
        assert_eq!(check_marker("s", &marker(&manifest, None), &manifest, 9), []);
        assert_eq!(check_marker("s", &marker(&manifest, Some(9)), &manifest, 9), []);
    }

    #[test]
    fn a_manifest_missing_a_unit_or_holding_one_twice_is_named() {
        let mut manifest = JobManifest::from_units(4, [record(0, 5, 0), record(1, 4, 0)]);
        manifest.units.push(record(1, 4, 0));
        manifest.rows_in = 13;
        let problems: Vec<(Option<u64>, Problem)> =
            check_manifest("m", &manifest).into_iter().map(|f| (f.unit, f.problem)).collect();
        assert_eq!(
            problems,
            [
                (None, Problem::UnitCount { records: 3, total: 4 }),
                (None, Problem::Totals { field: "rowsOut", manifest: 9, records: 13 }),
                (Some(1), Problem::DuplicateUnit),
            ]
        );
    }

    #[test]
    fn a_marker_that_disagrees_with_the_manifest_names_each_field() {
        let manifest = JobManifest::from_units(1, [record(0, 5, 1)]);
        let body = br#"{"rowsIn": 6, "rowsOut": 4, "units": 1, "rowsVerified": 4}"#;
        let problems: Vec<Problem> = check_marker("s", body, &manifest, 5).into_iter().map(|f| f.problem).collect();
        assert_eq!(
            problems,
            [
                Problem::MarkerField { field: "rowsOut", marker: Some(4), manifest: 5 },
                Problem::MarkerField { field: "rowsFailed", marker: None, manifest: 1 },
                Problem::RowsVerified { marker: Some(4), found: 5 },
            ]
        );
        assert!(matches!(check_marker("s", b"done", &manifest, 5)[0].problem, Problem::BadMarker(_)));
    }

    #[test]
    fn errors_files_are_told_from_output_files_by_their_folder() {
        assert!(is_errors_file("s3://b/o/_errors/part-000001-0.parquet"));
        assert!(!is_errors_file("s3://b/_errors/o/part-000001-0.parquet"));
        assert!(is_part_name("part-000001-0.parquet"));
        assert!(!is_part_name("_SUCCESS") && !is_part_name("part-000001-0.parquet.tmp"));
    }

    /// Compiles only while the futures are `Send` for every lifetime, as `tokio::spawn` needs.
    #[test]
    fn verifying_can_run_in_a_spawned_task() {
        fn spawnable<F: Future + Send + 'static>(_: F) {}
        spawnable(async {
            let stores = Arc::new(StoreRegistry::default());
            let records: Vec<UnitCommit> = Vec::new();
            let _ = check_files(&stores, &records).await;
            let _ = uncommitted_parts(&stores, "/o", &records).await;
            let _ = verify_output(&stores, "/o", "/o/_weir").await;
        });
    }
}
