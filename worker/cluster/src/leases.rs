//! The coordinator's table of work units and their leases: pure state, driven by the caller's clock.
//!
//! A unit is pending, leased to one worker until its lease expires, or committed. Expired and
//! failed attempts go back to pending with a growing back-off; attempt numbers are unique within
//! the coordinator's epoch, and epochs are unique across coordinator restarts, so two attempts of a
//! unit never write the same files.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

/// Attempt numbers of epoch `e` are `e * ATTEMPTS_PER_EPOCH + n`.
pub const ATTEMPTS_PER_EPOCH: u32 = 1000;
/// Delay before a failed unit is leased again, doubled per failure up to [`MAX_RETRY_DELAY`].
const RETRY_DELAY: Duration = Duration::from_millis(250);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);
/// How soon a worker with nothing to do asks again: a unit may come back (failed, handed back or
/// expired) or the job may end at any moment, and an idle worker's question is cheap.
const IDLE_RETRY: Duration = Duration::from_millis(500);
/// How soon a worker refused a read-ahead unit asks again (it also asks as soon as a unit of its
/// own finishes).
const READ_AHEAD_RETRY: Duration = Duration::from_millis(250);

/// One unit's scheduling state.
#[derive(Debug, Clone, PartialEq)]
enum UnitState {
    Pending { not_before: Option<Instant> },
    Leased { attempt: u32, worker: String, expires: Instant },
    Committed,
}

#[derive(Debug, Clone)]
struct Entry {
    state: UnitState,
    /// The unit's place in the order units are leased in.
    rank: usize,
    /// Attempts handed out in this epoch.
    issued: u32,
    /// Attempts that failed (not handed back, not expired with a shutdown).
    failures: u32,
}

/// Why a lease was granted or not.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseDecision {
    Granted {
        unit: u64,
        attempt: u32,
    },
    /// Nothing pending now; the earliest back-off ends after this long (or a lease may expire).
    Wait(Duration),
    /// Every unit is committed.
    AllCommitted,
    /// The worker is being drained: no more units for it.
    Drained,
    /// `unit` has had every attempt number of this epoch: leasing it again would repeat one, so
    /// the job must fail (a unit leased [`ATTEMPTS_PER_EPOCH`] times has failed far more often
    /// than any error policy allows).
    Exhausted {
        unit: u64,
    },
}

/// A failed attempt the caller should act on.
#[derive(Debug, Clone, PartialEq)]
pub enum FailureVerdict {
    /// Pending again.
    Retry,
    /// The unit failed `max_failures` times: the job fails.
    GiveUp { failures: u32 },
    /// Not the current lease (stale report): ignored.
    Stale,
}

/// Units by id, with their leases.
#[derive(Debug)]
pub struct UnitTable {
    units: HashMap<u64, Entry>,
    /// Pending units as `(rank, id)`: leased in the order the table was given them.
    pending: BTreeSet<(usize, u64)>,
    epoch: u32,
    ttl: Duration,
    max_failures: u32,
}

impl UnitTable {
    /// A table of `ids`, all pending except `committed`, handing out attempts of `epoch`; pending
    /// units are leased in the order of `ids` (a unit pending again keeps its place).
    pub fn new(ids: impl IntoIterator<Item = u64>, committed: &BTreeSet<u64>, epoch: u32, ttl: Duration) -> Self {
        let mut units = HashMap::new();
        let mut pending = BTreeSet::new();
        for (rank, id) in ids.into_iter().enumerate() {
            let state = if committed.contains(&id) {
                UnitState::Committed
            } else {
                pending.insert((rank, id));
                UnitState::Pending { not_before: None }
            };
            units.insert(id, Entry { state, rank, issued: 0, failures: 0 });
        }
        Self { units, pending, epoch, ttl, max_failures: 4 }
    }

    /// Fails the job once a unit has failed this many times (default 4).
    pub fn with_max_failures(mut self, max: u32) -> Self {
        self.max_failures = max.max(1);
        self
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Leases the first pending unit whose back-off is over to `worker`, one of `peers` workers
    /// sharing the units.
    ///
    /// A worker that holds a unit already gets another one (to read it ahead) only while at least
    /// `peers` units are ready: near the end of a job the last units go to workers that would
    /// otherwise sit idle, not into the queue of a busy one.
    pub fn lease(&mut self, worker: &str, peers: usize, now: Instant) -> LeaseDecision {
        let mut ready =
            self.pending.iter().map(|&(_, id)| id).filter(|id| match self.units.get(id).map(|e| &e.state) {
                Some(UnitState::Pending { not_before }) => not_before.is_none_or(|t| t <= now),
                _ => false,
            });
        let Some(id) = ready.next() else {
            return self.wait_decision(now);
        };
        let scarce = 1 + ready.take(peers.saturating_sub(1)).count() < peers;
        if scarce && self.holds_any(worker) {
            return LeaseDecision::Wait(READ_AHEAD_RETRY);
        }
        let epoch = self.epoch;
        let ttl = self.ttl;
        let Some(entry) = self.units.get_mut(&id) else {
            return self.wait_decision(now);
        };
        if entry.issued >= ATTEMPTS_PER_EPOCH {
            return LeaseDecision::Exhausted { unit: id };
        }
        self.pending.remove(&(entry.rank, id));
        let attempt = epoch.saturating_mul(ATTEMPTS_PER_EPOCH).saturating_add(entry.issued);
        entry.issued += 1;
        entry.state = UnitState::Leased { attempt, worker: worker.to_string(), expires: now + ttl };
        LeaseDecision::Granted { unit: id, attempt }
    }

    fn wait_decision(&self, now: Instant) -> LeaseDecision {
        if self.committed() == self.units.len() {
            return LeaseDecision::AllCommitted;
        }
        let earliest = self
            .pending
            .iter()
            .filter_map(|(_, id)| match self.units.get(id).map(|e| &e.state) {
                Some(UnitState::Pending { not_before: Some(t) }) => Some(t.saturating_duration_since(now)),
                _ => None,
            })
            .min();
        LeaseDecision::Wait(earliest.unwrap_or(IDLE_RETRY).clamp(Duration::from_millis(50), Duration::from_secs(2)))
    }

    /// Extends `worker`'s leases on `held`; returns those of `held` it no longer holds.
    pub fn heartbeat(&mut self, worker: &str, held: &[(u64, u32)], now: Instant) -> Vec<(u64, u32)> {
        let ttl = self.ttl;
        held.iter()
            .copied()
            .filter(|&(unit, attempt)| match self.units.get_mut(&unit).map(|e| &mut e.state) {
                Some(UnitState::Leased { attempt: a, worker: w, expires }) if *a == attempt && w == worker => {
                    *expires = now + ttl;
                    false
                }
                // Its completion crossed this heartbeat: nothing to abandon.
                Some(UnitState::Committed) => false,
                _ => true,
            })
            .collect()
    }

    /// Returns expired leases to pending; returns them as `(unit, attempt, worker)`.
    pub fn expire(&mut self, now: Instant) -> Vec<(u64, u32, String)> {
        let mut expired = Vec::new();
        for (&id, entry) in &mut self.units {
            if let UnitState::Leased { attempt, worker, expires } = &entry.state
                && *expires <= now
            {
                expired.push((id, *attempt, worker.clone()));
                entry.state = UnitState::Pending { not_before: None };
                self.pending.insert((entry.rank, id));
            }
        }
        expired.sort();
        expired
    }

    /// The attempt and worker holding `unit`'s current lease, if it is leased.
    pub fn holder(&self, unit: u64) -> Option<(u32, &str)> {
        match self.units.get(&unit).map(|e| &e.state) {
            Some(UnitState::Leased { attempt, worker, .. }) => Some((*attempt, worker.as_str())),
            _ => None,
        }
    }

    /// Makes a committed `unit` pending again (its record was withdrawn: a file it names was found
    /// missing or changed).
    pub fn reopen(&mut self, unit: u64) {
        if let Some(entry) = self.units.get_mut(&unit)
            && entry.state == UnitState::Committed
        {
            entry.state = UnitState::Pending { not_before: None };
            self.pending.insert((entry.rank, unit));
        }
    }

    /// Whether `unit` is committed.
    pub fn is_committed(&self, unit: u64) -> bool {
        matches!(self.units.get(&unit).map(|e| &e.state), Some(UnitState::Committed))
    }

    pub fn contains(&self, unit: u64) -> bool {
        self.units.contains_key(&unit)
    }

    /// Marks `unit` committed (whichever attempt won).
    pub fn mark_committed(&mut self, unit: u64) {
        if let Some(entry) = self.units.get_mut(&unit) {
            entry.state = UnitState::Committed;
            self.pending.remove(&(entry.rank, unit));
        }
    }

    /// Records a failed attempt. A handed-back attempt is pending again at once and not counted.
    pub fn fail(&mut self, unit: u64, attempt: u32, handed_back: bool, now: Instant) -> FailureVerdict {
        let Some(entry) = self.units.get_mut(&unit) else {
            return FailureVerdict::Stale;
        };
        if !matches!(&entry.state, UnitState::Leased { attempt: a, .. } if *a == attempt) {
            return FailureVerdict::Stale;
        }
        if handed_back {
            entry.state = UnitState::Pending { not_before: None };
            self.pending.insert((entry.rank, unit));
            return FailureVerdict::Retry;
        }
        entry.failures += 1;
        if entry.failures >= self.max_failures {
            entry.state = UnitState::Pending { not_before: None };
            return FailureVerdict::GiveUp { failures: entry.failures };
        }
        let delay = RETRY_DELAY.saturating_mul(1 << (entry.failures - 1).min(16)).min(MAX_RETRY_DELAY);
        entry.state = UnitState::Pending { not_before: Some(now + delay) };
        self.pending.insert((entry.rank, unit));
        FailureVerdict::Retry
    }

    pub fn len(&self) -> usize {
        self.units.len()
    }

    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    pub fn committed(&self) -> usize {
        self.units.values().filter(|e| e.state == UnitState::Committed).count()
    }

    pub fn leased(&self) -> usize {
        self.units.values().filter(|e| matches!(e.state, UnitState::Leased { .. })).count()
    }

    fn holds_any(&self, worker: &str) -> bool {
        self.units.values().any(|e| matches!(&e.state, UnitState::Leased { worker: w, .. } if w == worker))
    }

    /// Leases held by `worker`.
    pub fn held_by(&self, worker: &str) -> Vec<(u64, u32)> {
        let mut held: Vec<(u64, u32)> = self
            .units
            .iter()
            .filter_map(|(&id, e)| match &e.state {
                UnitState::Leased { attempt, worker: w, .. } if w == worker => Some((id, *attempt)),
                _ => None,
            })
            .collect();
        held.sort();
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    fn table(n: u64) -> UnitTable {
        UnitTable::new(0..n, &BTreeSet::new(), 0, TTL)
    }

    #[test]
    fn attempt_numbers_never_repeat_within_an_epoch() {
        let now = Instant::now();
        let mut t = UnitTable::new(0..1, &BTreeSet::new(), 3, TTL);
        let mut seen = BTreeSet::new();
        for _ in 0..ATTEMPTS_PER_EPOCH {
            let LeaseDecision::Granted { attempt, .. } = t.lease("w", 1, now) else { panic!("a lease") };
            assert!(seen.insert(attempt), "attempt {attempt} repeated");
            assert_eq!(t.fail(0, attempt, true, now), FailureVerdict::Retry);
        }
        assert_eq!(seen.first().copied(), Some(3 * ATTEMPTS_PER_EPOCH));
        assert_eq!(seen.last().copied(), Some(4 * ATTEMPTS_PER_EPOCH - 1));
        assert_eq!(t.lease("w", 1, now), LeaseDecision::Exhausted { unit: 0 });
    }

    #[test]
    fn a_reopened_unit_is_leased_again() {
        let now = Instant::now();
        let mut t = UnitTable::new(0..2, &BTreeSet::from([1]), 0, TTL);
        assert_eq!(t.holder(0), None);
        assert!(matches!(t.lease("w", 1, now), LeaseDecision::Granted { unit: 0, .. }));
        assert_eq!(t.holder(0), Some((0, "w")));
        t.reopen(1);
        assert!(!t.is_committed(1));
        assert!(matches!(t.lease("v", 1, now), LeaseDecision::Granted { unit: 1, .. }));
    }

    #[test]
    fn units_are_leased_in_id_order_then_the_caller_waits() {
        let now = Instant::now();
        let mut t = table(2);
        assert_eq!(t.lease("a", 1, now), LeaseDecision::Granted { unit: 0, attempt: 0 });
        assert_eq!(t.lease("b", 1, now), LeaseDecision::Granted { unit: 1, attempt: 0 });
        assert!(matches!(t.lease("a", 1, now), LeaseDecision::Wait(_)));
    }

    #[test]
    fn units_are_leased_in_the_order_given_and_one_pending_again_keeps_its_place() {
        let now = Instant::now();
        let mut t = UnitTable::new([2, 0, 1], &BTreeSet::new(), 0, TTL);
        assert_eq!(t.lease("a", 1, now), LeaseDecision::Granted { unit: 2, attempt: 0 });
        assert_eq!(t.fail(2, 0, true, now), FailureVerdict::Retry);
        assert_eq!(t.lease("a", 1, now), LeaseDecision::Granted { unit: 2, attempt: 1 });
        assert_eq!(t.lease("b", 1, now), LeaseDecision::Granted { unit: 0, attempt: 0 });
        assert_eq!(t.expire(now + TTL).len(), 2);
        assert_eq!(t.lease("c", 1, now), LeaseDecision::Granted { unit: 2, attempt: 2 });
        assert_eq!(t.lease("d", 1, now), LeaseDecision::Granted { unit: 0, attempt: 1 });
        assert_eq!(t.lease("e", 1, now), LeaseDecision::Granted { unit: 1, attempt: 0 });
    }

    #[test]
    fn a_busy_worker_reads_ahead_only_while_every_peer_can_get_a_unit() {
        let now = Instant::now();
        let mut t = table(5);
        assert_eq!(t.lease("a", 2, now), LeaseDecision::Granted { unit: 0, attempt: 0 });
        assert_eq!(t.lease("b", 2, now), LeaseDecision::Granted { unit: 1, attempt: 0 });
        assert_eq!(t.lease("a", 2, now), LeaseDecision::Granted { unit: 2, attempt: 0 }, "3 ready for 2 workers");
        assert_eq!(t.lease("b", 2, now), LeaseDecision::Granted { unit: 3, attempt: 0 }, "2 ready for 2 workers");
        t.mark_committed(0);
        assert_eq!(t.lease("a", 2, now), LeaseDecision::Wait(READ_AHEAD_RETRY), "a still holds unit 2");
        t.mark_committed(1);
        assert_eq!(t.lease("b", 2, now), LeaseDecision::Wait(READ_AHEAD_RETRY), "b still holds unit 3");
        t.mark_committed(2);
        assert_eq!(t.lease("a", 2, now), LeaseDecision::Granted { unit: 4, attempt: 0 }, "a is idle now");
    }

    #[test]
    fn committed_units_are_never_leased_again() {
        let now = Instant::now();
        let mut t = UnitTable::new(0..3, &BTreeSet::from([0, 2]), 1, TTL);
        assert_eq!(t.lease("a", 1, now), LeaseDecision::Granted { unit: 1, attempt: 1000 });
        t.mark_committed(1);
        assert_eq!(t.lease("a", 1, now), LeaseDecision::AllCommitted);
    }

    #[test]
    fn an_expired_lease_is_leased_again_with_a_new_attempt() {
        let now = Instant::now();
        let mut t = table(1);
        assert_eq!(t.lease("a", 1, now), LeaseDecision::Granted { unit: 0, attempt: 0 });
        assert!(t.expire(now + TTL / 2).is_empty());
        assert_eq!(t.expire(now + TTL), vec![(0, 0, "a".to_string())]);
        assert_eq!(t.lease("b", 1, now + TTL), LeaseDecision::Granted { unit: 0, attempt: 1 });
        assert_eq!(t.heartbeat("a", &[(0, 0)], now + TTL), vec![(0, 0)], "the old lease is revoked");
    }

    #[test]
    fn heartbeats_keep_a_lease_alive() {
        let now = Instant::now();
        let mut t = table(1);
        t.lease("a", 1, now);
        assert!(t.heartbeat("a", &[(0, 0)], now + TTL / 2).is_empty());
        assert!(t.expire(now + TTL).is_empty(), "extended to 1.5 ttl");
        assert_eq!(t.expire(now + TTL * 2).len(), 1);
    }

    #[test]
    fn failures_back_off_and_give_up_at_the_limit() {
        let now = Instant::now();
        let mut t = table(1).with_max_failures(2);
        t.lease("a", 1, now);
        assert_eq!(t.fail(0, 0, false, now), FailureVerdict::Retry);
        assert!(matches!(t.lease("a", 1, now), LeaseDecision::Wait(_)), "backing off");
        assert_eq!(t.lease("a", 1, now + Duration::from_secs(1)), LeaseDecision::Granted { unit: 0, attempt: 1 });
        assert_eq!(t.fail(0, 0, false, now), FailureVerdict::Stale, "an old attempt's report is ignored");
        assert_eq!(t.fail(0, 1, false, now), FailureVerdict::GiveUp { failures: 2 });
    }

    #[test]
    fn a_handed_back_unit_is_leased_again_at_once_without_counting_a_failure() {
        let now = Instant::now();
        let mut t = table(1).with_max_failures(1);
        t.lease("a", 1, now);
        assert_eq!(t.fail(0, 0, true, now), FailureVerdict::Retry);
        assert_eq!(t.lease("b", 1, now), LeaseDecision::Granted { unit: 0, attempt: 1 });
        assert_eq!(t.held_by("b"), vec![(0, 1)]);
    }
}
