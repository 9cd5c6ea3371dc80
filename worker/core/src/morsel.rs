//! Morsel sizing: learns how many bytes a source row becomes at each stage, to size morsels and reservations.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// Learns how many bytes a source row becomes at each stage (the source, then each step), and
/// how many a step holds at once while it works (its input, its output and its scratch memory,
/// such as a decoder's planes), so that a morsel's largest size stays near a target and its
/// reservation covers what it will need.
///
/// # Guarantees
/// - A stage not yet observed counts as [`UNSEEN_ROW_BYTES`] per row, so the first morsels are small.
/// - [`MorselPlanner::morsel_rows`] is always within `1..=max_rows`.
/// - Peaks are at least one byte per row, so a reservation is never zero for a non-empty morsel.
///
/// Updates are relaxed atomics: concurrent stages may see slightly stale estimates.
pub(crate) struct MorselPlanner {
    /// Per stage (source, steps...), bytes per source row as f64 bits; 0 until observed.
    bytes_per_row: Vec<AtomicU64>,
    /// Per stage, bytes per source row held while the stage works, as f64 bits; 0 until observed.
    working_per_row: Vec<AtomicU64>,
    /// Per stage, whether it has handled rows (a part of a step's output counts, though it has no
    /// source rows to size it by).
    seen: Vec<AtomicBool>,
    target_bytes: u64,
    max_rows: usize,
}

/// Assumed bytes per row at a stage not yet observed: large, so the first morsels are small.
pub(crate) const UNSEEN_ROW_BYTES: f64 = 4.0 * 1024.0 * 1024.0;

impl MorselPlanner {
    /// A planner of `stages` stages aiming at morsels of `target_bytes` at their largest, and at
    /// most `max_rows` source rows (at least 1).
    pub(crate) fn new(stages: usize, target_bytes: u64, max_rows: usize) -> Self {
        Self {
            bytes_per_row: (0..stages).map(|_| AtomicU64::new(0)).collect(),
            working_per_row: (0..stages).map(|_| AtomicU64::new(0)).collect(),
            seen: (0..stages).map(|_| AtomicBool::new(false)).collect(),
            target_bytes,
            max_rows: max_rows.max(1),
        }
    }

    /// Records that `source_rows` source rows became `bytes` at `stage`. The first sample is taken
    /// as is, later ones are smoothed (a fifth of the weight to the new sample). A sample of no
    /// rows, or of a stage the planner does not have, is ignored.
    pub(crate) fn observe(&self, stage: usize, bytes: u64, source_rows: usize) {
        if let Some(seen) = self.seen.get(stage) {
            seen.store(true, Relaxed);
        }
        smooth(self.bytes_per_row.get(stage), bytes, source_rows);
    }

    /// Records that a stage held `bytes` at once while it made `source_rows` source rows' output
    /// (smoothed as [`MorselPlanner::observe`]).
    pub(crate) fn observe_working(&self, stage: usize, bytes: u64, source_rows: usize) {
        smooth(self.working_per_row.get(stage), bytes, source_rows);
    }

    /// Whether every stage has been observed at least once (with or without source rows). Until
    /// then estimates are guesses, so the source admits one morsel at a time.
    pub(crate) fn calibrated(&self) -> bool {
        self.seen.iter().all(|s| s.load(Relaxed))
    }

    /// The largest bytes per source row expected at `from` or any later stage (1 past the last).
    pub(crate) fn peak_row_bytes(&self, from: usize) -> f64 {
        let from = from.min(self.bytes_per_row.len());
        let working = self.working_per_row[from..].iter().map(|w| f64::from_bits(w.load(Relaxed)));
        self.bytes_per_row[from..]
            .iter()
            .map(|b| match f64::from_bits(b.load(Relaxed)) {
                0.0 => UNSEEN_ROW_BYTES,
                x => x,
            })
            .chain(working)
            .fold(1.0, f64::max)
    }

    /// Source rows for the next morsel: as many as keep its largest stage within the target.
    /// One row until every stage has handled rows ([`MorselPlanner::calibrated`]): a guess may be
    /// far too low (a 5000x5000 photo decodes to 75 MB), and the first morsel runs alone anyway.
    pub(crate) fn morsel_rows(&self) -> usize {
        if !self.calibrated() {
            return 1;
        }
        ((self.target_bytes as f64 / self.peak_row_bytes(0)) as usize).clamp(1, self.max_rows)
    }

    /// Bytes a morsel of `source_rows` is expected to need at its largest, from stage `from` on.
    pub(crate) fn remaining_peak(&self, from: usize, source_rows: usize) -> u64 {
        (self.peak_row_bytes(from) * source_rows as f64) as u64
    }
}

/// Folds a sample of `bytes` for `source_rows` rows into `slot`: the first as is, later ones with
/// a fifth of the weight. A sample of no rows, or for no slot, is ignored.
fn smooth(slot: Option<&AtomicU64>, bytes: u64, source_rows: usize) {
    let Some(slot) = slot.filter(|_| source_rows > 0) else { return };
    let sample = bytes as f64 / source_rows as f64;
    let old = f64::from_bits(slot.load(Relaxed));
    let new = if old == 0.0 { sample } else { old * 0.8 + sample * 0.2 };
    slot.store(new.to_bits(), Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn before_any_observation_morsels_are_sized_for_unseen_rows() {
        let planner = MorselPlanner::new(3, 16 * MIB, 256);
        assert_eq!(planner.peak_row_bytes(0), UNSEEN_ROW_BYTES);
        assert_eq!(planner.morsel_rows(), 1, "one row until every stage has been seen");
        planner.observe(0, 0, 0);
        planner.observe(1, 0, 0);
        planner.observe(2, 0, 0);
        assert_eq!(planner.morsel_rows(), 4, "then the unseen sizes' guess");
        assert_eq!(MorselPlanner::new(3, MIB, 256).morsel_rows(), 1, "never fewer than one row");
    }

    #[test]
    fn morsel_rows_follow_the_largest_observed_stage() {
        let planner = MorselPlanner::new(2, 100_000, 256);
        planner.observe(0, 1_000, 10);
        assert_eq!(planner.morsel_rows(), 1, "the step is still unseen");
        planner.observe(1, 10_000, 10);
        assert_eq!(planner.peak_row_bytes(0), 1_000.0);
        assert_eq!(planner.morsel_rows(), 100);
    }

    #[test]
    fn morsel_rows_never_exceed_max_rows() {
        let planner = MorselPlanner::new(1, 16 * MIB, 8);
        planner.observe(0, 10, 10);
        assert_eq!(planner.morsel_rows(), 8);
        let planner = MorselPlanner::new(1, 16 * MIB, 0);
        planner.observe(0, 10, 10);
        assert_eq!(planner.morsel_rows(), 1, "a max of 0 rows means 1");
    }

    #[test]
    fn later_observations_are_smoothed() {
        let planner = MorselPlanner::new(1, MIB, 256);
        planner.observe(0, 100, 1);
        planner.observe(0, 600, 1);
        assert!((planner.peak_row_bytes(0) - 200.0).abs() < 1e-9, "{}", planner.peak_row_bytes(0));
    }

    #[test]
    fn observations_of_no_rows_or_of_unknown_stages_are_ignored() {
        let planner = MorselPlanner::new(1, MIB, 256);
        planner.observe(0, 100, 0);
        planner.observe(5, 100, 1);
        assert_eq!(planner.peak_row_bytes(0), UNSEEN_ROW_BYTES);
    }

    #[test]
    fn the_remaining_peak_looks_only_at_later_stages() {
        let planner = MorselPlanner::new(3, MIB, 256);
        planner.observe(0, 5_000, 1);
        planner.observe(1, 300, 1);
        planner.observe(2, 200, 1);
        assert_eq!(planner.remaining_peak(0, 10), 50_000);
        assert_eq!(planner.remaining_peak(1, 10), 3_000);
        assert_eq!(planner.remaining_peak(2, 10), 2_000);
        assert_eq!(planner.remaining_peak(3, 10), 10, "past the last stage: one byte per row");
        assert_eq!(planner.remaining_peak(9, 10), 10);
    }

    #[test]
    fn peaks_are_at_least_one_byte_per_row() {
        let planner = MorselPlanner::new(1, MIB, 256);
        planner.observe(0, 1, 4);
        assert_eq!(planner.peak_row_bytes(0), 1.0);
        assert_eq!(planner.remaining_peak(0, 4), 4);
    }

    #[test]
    fn a_steps_working_memory_counts_until_the_step_has_run() {
        // A 5 MB JPEG decodes to 75 MB, and the decoder held 160 MB at once while it did.
        let planner = MorselPlanner::new(3, MIB, 256);
        planner.observe(0, 5_000_000, 1);
        planner.observe(1, 75_000_000, 1);
        planner.observe_working(1, 160_000_000, 1);
        planner.observe(2, 150_000, 1);
        assert_eq!(planner.remaining_peak(0, 2), 320_000_000, "admission covers the decode's peak");
        assert_eq!(planner.remaining_peak(1, 2), 320_000_000);
        assert_eq!(planner.remaining_peak(2, 2), 300_000, "once decoded, only what is left");
    }

    #[test]
    fn calibrated_once_every_stage_has_handled_rows() {
        let planner = MorselPlanner::new(2, MIB, 256);
        assert!(!planner.calibrated());
        planner.observe(0, 100, 1);
        assert!(!planner.calibrated());
        planner.observe(1, 0, 0);
        assert!(planner.calibrated(), "a later part of a step's output (no source rows) counts");
        assert_eq!(planner.peak_row_bytes(1), UNSEEN_ROW_BYTES, "but does not size the stage");
    }
}
