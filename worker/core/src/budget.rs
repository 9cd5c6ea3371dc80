//! A pod-wide memory budget in bytes; every morsel in flight holds a [`Reservation`] against it.
//!
//! Only admission waits: the source asks for a morsel's projected peak before reading it, and
//! later stages adjust their reservation without waiting. Because downstream never blocks on
//! memory, and a morsel larger than the whole budget is admitted once no other morsel is in flight
//! (buffers that only more input can flush, such as the sink's open row group, are *parked* and
//! do not count as in flight), the pipeline cannot deadlock on the budget; the sum of reservations
//! stays within the limit up to the error of the peak projection and one oversized morsel.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

#[derive(Debug)]
struct State {
    used: u64,
    /// Of `used`, bytes held by buffers that flush only when more input arrives.
    parked: u64,
    peak: u64,
}

#[derive(Debug)]
struct Inner {
    limit: u64,
    state: Mutex<State>,
    released: Notify,
}

/// A shared byte budget. Cloning shares it.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Self {
        let state = Mutex::new(State { used: 0, parked: 0, peak: 0 });
        Self { inner: Arc::new(Inner { limit: limit.max(1), state, released: Notify::new() }) }
    }

    pub fn limit(&self) -> u64 {
        self.inner.limit
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.state().used
    }

    /// The most bytes ever reserved at once.
    pub fn peak(&self) -> u64 {
        self.state().peak
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another thread panicked mid-update of two integers.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `bytes` fit, then reserves them. A request that does not fit is granted once
    /// nothing but parked buffers is reserved ([`MemoryBudget::park`]), so one oversized morsel
    /// runs alone rather than never.
    ///
    /// # Cancellation
    /// Dropping the future before it completes reserves nothing.
    pub async fn acquire(&self, bytes: u64) -> Reservation {
        loop {
            let notified = self.inner.released.notified();
            if let Some(r) = self.try_acquire(bytes) {
                return r;
            }
            notified.await;
        }
    }

    /// Waits until nothing but parked buffers is reserved, then reserves `bytes` (past the limit
    /// if need be), so the morsel it is for runs alone.
    ///
    /// # Cancellation
    /// Dropping the future before it completes reserves nothing.
    pub async fn acquire_alone(&self, bytes: u64) -> Reservation {
        loop {
            let notified = self.inner.released.notified();
            if let Some(r) = self.reserve_if(bytes, |state, _| state.used == state.parked) {
                return r;
            }
            notified.await;
        }
    }

    /// Reserves `bytes` if they fit now.
    pub fn try_acquire(&self, bytes: u64) -> Option<Reservation> {
        self.reserve_if(bytes, |state, limit| state.used + bytes <= limit || state.used == state.parked)
    }

    /// Reserves `bytes` when `allowed` holds for the budget's state and limit.
    fn reserve_if(&self, bytes: u64, allowed: impl FnOnce(&State, u64) -> bool) -> Option<Reservation> {
        let mut state = self.state();
        if allowed(&state, self.inner.limit) {
            state.used += bytes;
            state.peak = state.peak.max(state.used);
            return Some(Reservation { budget: self.clone(), bytes, parked: false });
        }
        None
    }

    /// Reserves `bytes` without waiting, even past the limit (for memory that already exists).
    pub fn force(&self, bytes: u64) -> Reservation {
        self.grow(bytes, false);
        Reservation { budget: self.clone(), bytes, parked: false }
    }

    /// As [`MemoryBudget::force`], for a buffer that is flushed only when more input arrives (the
    /// sink's open row group): it counts against the limit, but does not keep an oversized morsel
    /// from being admitted alone, since that morsel is what lets it flush.
    pub fn park(&self, bytes: u64) -> Reservation {
        self.grow(bytes, true);
        Reservation { budget: self.clone(), bytes, parked: true }
    }

    fn grow(&self, bytes: u64, parked: bool) {
        let mut state = self.state();
        state.used += bytes;
        if parked {
            state.parked += bytes;
        }
        state.peak = state.peak.max(state.used);
    }

    fn release(&self, bytes: u64, parked: bool) {
        if bytes == 0 {
            return;
        }
        let mut state = self.state();
        state.used = state.used.saturating_sub(bytes);
        if parked {
            state.parked = state.parked.saturating_sub(bytes);
        }
        drop(state);
        self.inner.released.notify_waiters();
    }
}

/// Bytes held against a [`MemoryBudget`]; released on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: MemoryBudget,
    bytes: u64,
    /// Held by a buffer that flushes only on more input ([`MemoryBudget::park`]).
    parked: bool,
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Changes the reservation to `bytes` without waiting (growing may pass the limit).
    pub fn resize(&mut self, bytes: u64) {
        if bytes > self.bytes {
            self.budget.grow(bytes - self.bytes, self.parked);
        } else {
            self.budget.release(self.bytes - bytes, self.parked);
        }
        self.bytes = bytes;
    }

    /// Moves `bytes` (at most all) out into a new reservation.
    pub fn split(&mut self, bytes: u64) -> Reservation {
        let moved = bytes.min(self.bytes);
        self.bytes -= moved;
        Reservation { budget: self.budget.clone(), bytes: moved, parked: self.parked }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(self.bytes, self.parked);
    }
}

/// `1.5 GiB`-style rendering of a byte count (one decimal past bytes).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// The memory this process may use: the cgroup limit (v2, then v1) or, failing that, physical RAM.
pub fn detect_memory_limit() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<u64>().ok());
    let cgroup = read("/sys/fs/cgroup/memory.max").or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"));
    let physical = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| {
        let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
    });
    match (cgroup, physical) {
        (Some(c), Some(p)) => Some(c.min(p)),
        (c, p) => c.or(p),
    }
}

/// Most a default budget takes: morsels beyond this buy little speed.
const DEFAULT_BUDGET_CAP: u64 = 2 << 30;

/// The budget a worker takes when none is set: a quarter of [`detect_memory_limit`] (the rest is
/// the sink's buffers, decoders and models), at most 2 GiB.
pub fn default_memory_limit() -> u64 {
    detect_memory_limit().map_or(DEFAULT_BUDGET_CAP, |m| (m / 4).min(DEFAULT_BUDGET_CAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_release_on_drop() {
        let budget = MemoryBudget::new(100);
        let a = budget.try_acquire(60).expect("fits");
        assert!(budget.try_acquire(50).is_none());
        drop(a);
        assert!(budget.try_acquire(50).is_some());
        assert_eq!(budget.used(), 0);
        assert_eq!(budget.peak(), 60);
    }

    #[test]
    fn a_parked_buffer_does_not_keep_an_oversized_request_waiting() {
        let budget = MemoryBudget::new(100);
        let mut row_group = budget.park(0);
        row_group.resize(30);
        let alone = budget.try_acquire(500).expect("only a parked buffer is held: admitted alone");
        assert_eq!(budget.used(), 530);
        assert!(budget.try_acquire(500).is_none(), "a morsel in flight: the next waits");
        drop(alone);
        drop(row_group);
        assert_eq!(budget.used(), 0);
        let held = budget.force(30);
        assert!(budget.try_acquire(500).is_none(), "a morsel in flight is not parked");
        drop(held);
    }

    #[tokio::test]
    async fn a_request_alone_waits_for_every_morsel_but_reserves_only_its_own_bytes() {
        let budget = MemoryBudget::new(100);
        let _row_group = budget.park(10);
        let held = budget.try_acquire(20).expect("fits");
        let waiting = budget.acquire_alone(5);
        tokio::pin!(waiting);
        assert!(futures::poll!(waiting.as_mut()).is_pending(), "a morsel is in flight");
        drop(held);
        let alone = waiting.await;
        assert_eq!((alone.bytes(), budget.used()), (5, 15), "its own bytes, not the whole limit");
        assert!(budget.peak() <= 100);
    }

    #[test]
    fn an_oversized_request_is_granted_only_when_alone() {
        let budget = MemoryBudget::new(100);
        let small = budget.try_acquire(1).expect("fits");
        assert!(budget.try_acquire(500).is_none());
        drop(small);
        assert_eq!(budget.try_acquire(500).map(|r| r.bytes()), Some(500));
    }

    #[test]
    fn resize_and_split_keep_the_books_balanced() {
        let budget = MemoryBudget::new(1000);
        let mut r = budget.force(100);
        r.resize(300);
        assert_eq!(budget.used(), 300);
        let part = r.split(120);
        assert_eq!((r.bytes(), part.bytes(), budget.used()), (180, 120, 300));
        drop(part);
        r.resize(10);
        assert_eq!(budget.used(), 10);
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_waits_for_a_release() {
        let budget = MemoryBudget::new(100);
        let held = budget.acquire(80).await;
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.acquire(50).await.bytes() })
        };
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert!(!waiter.is_finished());
        drop(held);
        assert_eq!(waiter.await.expect("join"), 50);
    }
}
