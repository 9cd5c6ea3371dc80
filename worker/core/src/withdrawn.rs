//! Attempts withdrawn while they run: the executor stops working on them at the next morsel.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::unit::WorkUnit;

/// Unit attempts whose results are no longer wanted (their lease was revoked, the job ended),
/// shared by whoever withdraws them and every pipeline that runs them. Cloning shares the set. A
/// step that answers [`StepError::Withdrawn`](crate::StepError::Withdrawn) withdraws its
/// morsel's attempt too.
///
/// # Guarantees
/// Once an attempt is withdrawn, a pipeline that runs it (see [`PipelineOptions::withdrawn`])
/// reads no more of its input, starts no step on its morsels, stops taking the further parts of a
/// step's output for it (dropping the step's stream, which cancels a remote exchange), and writes
/// none of its rows or errors; the unit still reaches the sink's `finish_unit`, so whoever runs
/// the pipeline learns it ended and can discard what it staged. Morsels already inside a step
/// finish that step first: a step is never interrupted mid-call.
///
/// [`PipelineOptions::withdrawn`]: crate::PipelineOptions::withdrawn
#[derive(Debug, Clone, Default)]
pub struct WithdrawnUnits(Arc<Mutex<HashSet<(u64, u32)>>>);

impl WithdrawnUnits {
    fn set(&self) -> MutexGuard<'_, HashSet<(u64, u32)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Withdraws attempt `attempt` of unit `unit` (other attempts of the unit are unaffected).
    pub fn withdraw(&self, unit: u64, attempt: u32) {
        self.set().insert((unit, attempt));
    }

    /// Whether `unit`'s attempt was withdrawn.
    pub fn contains(&self, unit: &WorkUnit) -> bool {
        self.contains_attempt(unit.id, unit.attempt)
    }

    /// Whether attempt `attempt` of unit `unit` was withdrawn.
    pub fn contains_attempt(&self, unit: u64, attempt: u32) -> bool {
        self.set().contains(&(unit, attempt))
    }

    /// Forgets a withdrawn attempt once it has been dealt with, so the set stays as small as the
    /// attempts in flight.
    pub fn forget(&self, unit: u64, attempt: u32) {
        self.set().remove(&(unit, attempt));
    }

    /// How many attempts are withdrawn and not yet forgotten.
    pub fn len(&self) -> usize {
        self.set().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
