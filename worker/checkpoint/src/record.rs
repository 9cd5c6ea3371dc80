//! What the store holds: unit commit records, the job manifest, and the object names they live under.

use serde::{Deserialize, Serialize};

/// The committed attempt of one work unit, stored as `committed/unit-<unit:010>.json`.
///
/// # Guarantees
/// Once stored, a record never changes: the output of `unit` is exactly `files`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitCommit {
    pub unit: u64,
    /// The attempt that wrote `files`; unique across coordinator restarts (see
    /// [`crate::CheckpointStore::begin_epoch`]).
    pub attempt: u32,
    pub rows_in: u64,
    pub rows_out: u64,
    /// Rows the attempt failed on (written to the `_errors/` part files, or skipped).
    pub errors: u64,
    /// The attempt's published part files, output and error files alike, as the coordinator
    /// found them when it published them.
    pub files: Vec<CommittedFile>,
}

/// One published part file of a committed attempt: where it is and what it was when published,
/// so a reader (finalize, `weir verify`) can tell a missing, cut or replaced file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommittedFile {
    pub uri: String,
    /// Bytes.
    pub size: u64,
    /// The store's entity tag when published (a content hash on S3; `None` where the store has
    /// none): a file replaced since has another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
    /// Rows the attempt reported in it (output rows, or failed rows for an `_errors/` file).
    pub rows: u64,
}

impl UnitCommit {
    /// The URIs of the record's files.
    pub fn uris(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|f| f.uri.as_str())
    }
}

/// What [`crate::CheckpointStore::commit`] decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// This attempt is the unit's committed attempt (now, or already by an earlier identical call).
    Committed,
    /// Another attempt was committed first; it is returned.
    AlreadyCommitted(UnitCommit),
}

/// The whole job's result, written once at the end from the unit records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobManifest {
    pub units_total: u64,
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_failed: u64,
    /// The committed records, by ascending unit id.
    pub units: Vec<UnitCommit>,
}

impl JobManifest {
    /// A manifest of a job of `units_total` units whose committed records are `units`; the row
    /// counts are their sums (saturating, since records come from storage).
    pub fn from_units(units_total: u64, units: impl IntoIterator<Item = UnitCommit>) -> Self {
        let mut units: Vec<UnitCommit> = units.into_iter().collect();
        units.sort_by_key(|u| u.unit);
        let sum = |field: fn(&UnitCommit) -> u64| units.iter().map(field).fold(0u64, u64::saturating_add);
        Self {
            units_total,
            rows_in: sum(|u| u.rows_in),
            rows_out: sum(|u| u.rows_out),
            rows_failed: sum(|u| u.errors),
            units,
        }
    }
}

/// Folder of the per-unit commit records.
pub(crate) const COMMITTED_DIR: &str = "committed";
/// Folder of the claimed epoch markers.
pub(crate) const EPOCHS_DIR: &str = "epochs";
/// Folder of the notes.
pub(crate) const NOTES_DIR: &str = "notes";
/// The plan, in the coordinator's encoding (a protobuf `Plan`): opaque to this crate.
pub(crate) const PLAN: &str = "plan.pb";
pub(crate) const MANIFEST: &str = "manifest.json";

const RECORD_PREFIX: &str = "unit-";
const RECORD_SUFFIX: &str = ".json";

/// `unit-<unit:010>.json`: zero-padded so a listing sorts by unit for every id below 10^10.
pub(crate) fn record_name(unit: u64) -> String {
    format!("{RECORD_PREFIX}{unit:010}{RECORD_SUFFIX}")
}

/// The unit id of a record's file name, or `None` for any other name.
pub(crate) fn parse_record_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(RECORD_PREFIX)?.strip_suffix(RECORD_SUFFIX)?;
    parse_digits(digits)
}

/// `<epoch:010>`.
pub(crate) fn epoch_name(epoch: u32) -> String {
    format!("{epoch:010}")
}

/// The epoch of a marker's file name, or `None` for any other name.
pub(crate) fn parse_epoch_name(name: &str) -> Option<u32> {
    parse_digits(name).and_then(|n| u32::try_from(n).ok())
}

/// Plain ASCII digits only: `u64::from_str` would also take a leading `+`.
fn parse_digits(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The longest note name [`check_note_name`] accepts.
const MAX_NOTE_NAME: usize = 128;

/// A note name is a plain file name: ASCII letters, digits, `.`, `_`, `-`, not starting with `.`.
pub(crate) fn check_note_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_NOTE_NAME {
        return Err("must be 1 to 128 characters");
    }
    if name.starts_with('.') {
        return Err("must not start with `.`");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err("may hold only ASCII letters, digits, `.`, `_` and `-`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(unit: u64, rows_in: u64, rows_out: u64, errors: u64) -> UnitCommit {
        let file = CommittedFile { uri: format!("s3://b/part-{unit}.parquet"), size: 10, e_tag: None, rows: rows_out };
        UnitCommit { unit, attempt: 0, rows_in, rows_out, errors, files: vec![file] }
    }

    #[test]
    fn record_names_are_zero_padded_and_parse_back() {
        assert_eq!(record_name(42), "unit-0000000042.json");
        assert_eq!(parse_record_name(&record_name(42)), Some(42));
        assert_eq!(parse_record_name(&record_name(u64::MAX)), Some(u64::MAX));
    }

    #[test]
    fn other_names_are_not_records() {
        for name in ["unit-.json", "unit-12.txt", "unit-+12.json", "unit-1a.json", "plan.pb", "unit-12.json#1"] {
            assert_eq!(parse_record_name(name), None, "{name}");
        }
    }

    #[test]
    fn epoch_names_parse_back_and_reject_overflow() {
        assert_eq!(epoch_name(7), "0000000007");
        assert_eq!(parse_epoch_name(&epoch_name(u32::MAX)), Some(u32::MAX));
        assert_eq!(parse_epoch_name("4294967296"), None);
        assert_eq!(parse_epoch_name("7.tmp"), None);
    }

    #[test]
    fn records_are_camel_case_json() {
        let json = serde_json::to_value(commit(3, 10, 9, 1)).expect("encode");
        assert_eq!(json["rowsIn"], 10);
        assert_eq!(json["rowsOut"], 9);
        assert_eq!(json["files"][0]["uri"], "s3://b/part-3.parquet");
        assert_eq!(json["files"][0]["size"], 10);
    }

    #[test]
    fn a_manifest_sums_its_units_in_unit_order() {
        let manifest = JobManifest::from_units(3, [commit(2, 5, 4, 1), commit(0, 10, 10, 0)]);
        assert_eq!((manifest.rows_in, manifest.rows_out, manifest.rows_failed), (15, 14, 1));
        assert_eq!(manifest.units.iter().map(|u| u.unit).collect::<Vec<_>>(), [0, 2]);
    }

    #[test]
    fn note_names_are_plain_file_names() {
        assert!(check_note_name("coordinator.json").is_ok());
        for bad in ["", ".hidden", "a/b", "..", "a b", &"x".repeat(129)] {
            assert!(check_note_name(bad).is_err(), "{bad}");
        }
    }
}
