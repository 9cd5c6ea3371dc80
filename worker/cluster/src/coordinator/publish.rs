//! Publishing a finished attempt: the committer checks that the files an attempt claims are
//! exactly those it would have staged, moves them from the staging folder into the output, and
//! records what it published (size, entity tag, rows).
//!
//! Only the committer publishes (the coordinator, or the embedded runner), and only an attempt it
//! admitted; a worker never writes into the output itself, so a frozen or losing attempt cannot add
//! rows to it.

use object_store::ObjectStoreExt;
use weir_checkpoint::CommittedFile;
use weir_io::sink::PartKind;
use weir_io::{StoreError, StoreRegistry};

/// What an attempt says it produced.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub unit: u64,
    pub attempt: u32,
    pub rows_out: u64,
    pub errors: u64,
    /// The URIs of the files it staged.
    pub files: &'a [String],
}

/// Why an attempt's files were not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(
        "unit {unit} attempt {attempt} claims `{uri}`, which is not a file it may write (its files are {expected})"
    )]
    Foreign { unit: u64, attempt: u32, uri: String, expected: String },
    #[error("unit {unit} attempt {attempt} names `{uri}` twice")]
    Duplicate { unit: u64, attempt: u32, uri: String },
    #[error("unit {unit} attempt {attempt} reports {rows} {what} rows but {problem}")]
    Inconsistent { unit: u64, attempt: u32, rows: u64, what: &'static str, problem: &'static str },
    #[error("unit {unit} attempt {attempt}: its staged file `{uri}` does not exist")]
    NotStaged { unit: u64, attempt: u32, uri: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("publishing `{uri}`: {source}")]
    Io { uri: String, source: object_store::Error },
}

impl PublishError {
    /// Whether trying again may succeed (a storage error); every other error is the claim's fault.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Io { .. })
    }
}

/// Checks `claim` against the files its unit and attempt may write under `sink_uri`, and moves
/// them into the output.
///
/// # Guarantees
/// - Nothing outside the attempt's own two staged files is ever read, moved or recorded, whatever
///   the claim names.
/// - Idempotent: a retry after a lost reply (or a committer killed half-way) finds the files
///   already published and records them again.
///
/// # Errors
/// [`PublishError`]: the claim's own faults (foreign or repeated files, counts without files, a
/// file not staged), or a storage error ([`PublishError::is_transient`]).
pub async fn publish(
    stores: &StoreRegistry,
    sink_uri: &str,
    claim: &Claim<'_>,
) -> Result<Vec<CommittedFile>, PublishError> {
    let (unit, attempt) = (claim.unit, claim.attempt);
    let output = stores.resolve(sink_uri)?;
    let staged_uri = |kind: PartKind| output.uri_of(&kind.staged(&output.path, unit, attempt));
    let mut kinds: Vec<PartKind> = Vec::with_capacity(2);
    for uri in claim.files {
        let Some(kind) = PartKind::ALL.into_iter().find(|&k| staged_uri(k) == *uri) else {
            let expected = PartKind::ALL.map(|k| format!("`{}`", staged_uri(k))).join(" and ");
            return Err(PublishError::Foreign { unit, attempt, uri: uri.clone(), expected });
        };
        if kinds.contains(&kind) {
            return Err(PublishError::Duplicate { unit, attempt, uri: uri.clone() });
        }
        kinds.push(kind);
    }
    let inconsistent = |rows, what, problem| PublishError::Inconsistent { unit, attempt, rows, what, problem };
    match (claim.rows_out, kinds.contains(&PartKind::Output)) {
        (rows @ 1.., false) => return Err(inconsistent(rows, "output", "no output file")),
        (0, true) => return Err(inconsistent(0, "output", "an output file")),
        _ => {}
    }
    match (claim.errors, kinds.contains(&PartKind::Errors)) {
        (rows @ 1.., false) => return Err(inconsistent(rows, "failed", "no errors file")),
        (0, true) => return Err(inconsistent(0, "failed", "an errors file")),
        _ => {}
    }
    let mut files = Vec::with_capacity(kinds.len());
    for kind in kinds {
        let staged = kind.staged(&output.path, unit, attempt);
        let published = kind.published(&output.path, unit, attempt);
        let published_uri = output.uri_of(&published);
        let io = |source| PublishError::Io { uri: published_uri.clone(), source };
        match output.store.rename(&staged, &published).await {
            Ok(()) => {}
            // Published by an earlier call for this attempt, or never staged.
            Err(object_store::Error::NotFound { .. }) => {
                if matches!(output.store.head(&published).await, Err(object_store::Error::NotFound { .. })) {
                    return Err(PublishError::NotStaged { unit, attempt, uri: staged_uri(kind) });
                }
            }
            Err(e) => return Err(io(e)),
        }
        let meta = output.store.head(&published).await.map_err(io)?;
        let rows = match kind {
            PartKind::Output => claim.rows_out,
            PartKind::Errors => claim.errors,
        };
        files.push(CommittedFile { uri: published_uri, size: meta.size, e_tag: meta.e_tag, rows });
    }
    Ok(files)
}

/// Deletes the published files of an attempt that lost its commit (best effort: finalize sweeps
/// whatever is left before the success marker).
pub async fn unpublish(stores: &StoreRegistry, files: &[CommittedFile]) {
    let uris: Vec<String> = files.iter().map(|f| f.uri.clone()).collect();
    stores.delete_quietly(&uris).await;
}
