//! The checkpoint store's one error type, split into transient and fatal by [`CheckpointError::is_transient`].

/// Why a checkpoint operation failed.
///
/// Every variant names the object key it was working on, so a message alone locates the problem.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The object store refused or failed a request.
    #[error("checkpoint object `{key}`: {source}")]
    Store { key: String, source: object_store::Error },
    /// A stored record or manifest is not what this crate writes.
    #[error("checkpoint object `{key}` is corrupt: {message}")]
    Corrupt { key: String, message: String },
    /// A record could not be encoded as JSON.
    #[error("cannot encode checkpoint object `{key}`: {source}")]
    Encode { key: String, source: serde_json::Error },
    /// A note name that is not a plain file name (see [`crate::CheckpointStore::put_note`]).
    #[error("note name `{name}` is not allowed: {message}")]
    BadNoteName { name: String, message: &'static str },
    /// Every epoch number up to `u32::MAX` is taken.
    #[error("no epoch numbers left under `{key}`")]
    EpochsExhausted { key: String },
    /// A create-if-absent put kept reporting "exists" while reads kept finding nothing (S3 answers
    /// `409 ConditionalRequestConflict` while a competing conditional put is in flight).
    #[error("checkpoint object `{key}` stayed contended after {rounds} create-or-read rounds")]
    Contended { key: String, rounds: usize },
}

impl CheckpointError {
    /// Worth retrying (network, timeouts, 5xx, contention), as opposed to corrupt data, refused
    /// access or a caller's mistake.
    ///
    /// # Guarantees
    /// Retrying any [`crate::CheckpointStore`] method after a transient error is safe: every method
    /// is idempotent (see the crate docs).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Store { source, .. } => is_transient_store_error(source),
            Self::Contended { .. } => true,
            Self::Corrupt { .. } | Self::Encode { .. } | Self::BadNoteName { .. } | Self::EpochsExhausted { .. } => {
                false
            }
        }
    }

    pub(crate) fn store(key: &object_store::path::Path, source: object_store::Error) -> Self {
        Self::Store { key: key.to_string(), source }
    }
}

/// object_store reports network failures, timeouts and 5xx answers (after its own retries) as
/// `Generic`; every other variant is a definite answer (not found, refused, unsupported, ...).
fn is_transient_store_error(error: &object_store::Error) -> bool {
    matches!(error, object_store::Error::Generic { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_error(source: object_store::Error) -> CheckpointError {
        CheckpointError::Store { key: "k".into(), source }
    }

    #[test]
    fn network_failures_are_transient_and_refusals_are_not() {
        let generic = object_store::Error::Generic { store: "S3", source: "connection reset".into() };
        let denied = object_store::Error::PermissionDenied { path: "k".into(), source: "403".into() };
        assert!(store_error(generic).is_transient());
        assert!(!store_error(denied).is_transient());
        assert!(!CheckpointError::Corrupt { key: "k".into(), message: "bad".into() }.is_transient());
        assert!(CheckpointError::Contended { key: "k".into(), rounds: 5 }.is_transient());
    }

    #[test]
    fn messages_name_the_key() {
        let error = CheckpointError::Corrupt { key: "job/_weir/plan.json".into(), message: "eof".into() };
        assert_eq!(error.to_string(), "checkpoint object `job/_weir/plan.json` is corrupt: eof");
    }
}
