//! How fast a worker may ask: an adaptive cap on requests in flight (halved when the server says
//! it is overloaded, grown back by one per round of successes), and token buckets for the job's
//! requests and tokens a minute, of which this worker holds its share ([`weir_core::share`]).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use weir_core::share::Share;

/// After a cut, further overload signals within this time are the same burst: no second cut.
const CUT_COOLDOWN: Duration = Duration::from_secs(1);

/// Requests in flight, at most a limit that adapts between 1 and a maximum: additive increase
/// (one more per `limit` successes), multiplicative decrease (halved on a 429 or 503, at most
/// once per second).
#[derive(Debug)]
pub struct AdaptiveLimit {
    max: usize,
    state: Mutex<LimitState>,
    freed: Notify,
}

#[derive(Debug)]
struct LimitState {
    limit: f64,
    in_flight: usize,
    last_cut: Option<Instant>,
}

impl AdaptiveLimit {
    /// Starts at `max` in flight (at least 1).
    pub fn new(max: usize) -> Arc<Self> {
        let max = max.max(1);
        Arc::new(Self {
            max,
            state: Mutex::new(LimitState { limit: max as f64, in_flight: 0, last_cut: None }),
            freed: Notify::new(),
        })
    }

    fn state(&self) -> MutexGuard<'_, LimitState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current limit, whole requests.
    pub fn limit(&self) -> usize {
        self.state().limit as usize
    }

    /// Waits until fewer than the limit are in flight, and holds a place until the permit drops.
    ///
    /// # Cancellation
    /// Dropping the future before it resolves takes no place.
    pub async fn acquire(self: &Arc<Self>) -> InFlight {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut state = self.state();
                if state.in_flight < state.limit as usize {
                    state.in_flight += 1;
                    return InFlight { limit: self.clone() };
                }
            }
            freed.await;
        }
    }

    fn succeeded(&self) {
        let mut state = self.state();
        state.limit = (state.limit + 1.0 / state.limit).min(self.max as f64);
        drop(state);
        self.freed.notify_waiters();
    }

    fn overloaded(&self) {
        let mut state = self.state();
        let now = Instant::now();
        if state.last_cut.is_none_or(|at| now.duration_since(at) >= CUT_COOLDOWN) {
            state.limit = (state.limit / 2.0).max(1.0);
            state.last_cut = Some(now);
        }
    }
}

/// A place among the requests in flight; dropping it frees the place.
#[derive(Debug)]
pub struct InFlight {
    limit: Arc<AdaptiveLimit>,
}

impl InFlight {
    /// The request got an answer: the limit grows.
    pub fn succeeded(&self) {
        self.limit.succeeded();
    }

    /// The server said it is overloaded (429, 503): the limit shrinks.
    pub fn overloaded(&self) {
        self.limit.overloaded();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.limit.state().in_flight -= 1;
        self.limit.freed.notify_waiters();
    }
}

/// A token bucket of a per-minute allowance, of which this worker holds `1 / workers`. It holds at
/// most ten seconds' worth, and starts with one second's worth (workers that have not yet heard
/// how many share the limit cannot overshoot it by much together).
#[derive(Debug)]
pub struct Bucket {
    per_minute: f64,
    share: Arc<Share>,
    state: Mutex<BucketState>,
}

#[derive(Debug)]
struct BucketState {
    available: f64,
    updated: Instant,
}

/// The most a bucket holds: this many seconds of its rate.
const BURST_SECONDS: f64 = 10.0;

impl Bucket {
    pub fn new(per_minute: u32, share: Arc<Share>) -> Self {
        let bucket = Self {
            per_minute: f64::from(per_minute.max(1)),
            share,
            state: Mutex::new(BucketState { available: 0.0, updated: Instant::now() }),
        };
        bucket.state().available = bucket.rate().max(1.0);
        bucket
    }

    fn state(&self) -> MutexGuard<'_, BucketState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// This worker's rate, per second.
    fn rate(&self) -> f64 {
        self.per_minute / 60.0 / f64::from(self.share.workers())
    }

    fn capacity(&self) -> f64 {
        (self.rate() * BURST_SECONDS).max(1.0)
    }

    fn refill(&self, state: &mut BucketState) {
        let now = Instant::now();
        let elapsed = now.duration_since(state.updated).as_secs_f64();
        state.available = (state.available + elapsed * self.rate()).min(self.capacity());
        state.updated = now;
    }

    /// Waits until `amount` is available (an amount over the capacity waits for a full bucket),
    /// then takes it.
    ///
    /// # Cancellation
    /// Dropping the future takes nothing.
    pub async fn take(&self, amount: f64) {
        loop {
            let wait = {
                let mut state = self.state();
                self.refill(&mut state);
                let needed = amount.min(self.capacity());
                if state.available >= needed {
                    state.available -= amount;
                    return;
                }
                // Waited in slices of at most a second: the rate may change meanwhile (the share).
                Duration::from_secs_f64(((needed - state.available) / self.rate()).clamp(0.001, 1.0))
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Corrects an earlier `take` by `delta` (positive: more was used than taken), at most a full
    /// bucket either way (a server's count cannot stall the worker for longer than ten seconds).
    pub fn charge(&self, delta: f64) {
        let mut state = self.state();
        self.refill(&mut state);
        let capacity = self.capacity();
        state.available -= delta.clamp(-capacity, capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_limit_halves_on_overload_once_per_burst_and_grows_back() {
        let limit = AdaptiveLimit::new(16);
        let first = limit.acquire().await;
        first.overloaded();
        first.overloaded();
        assert_eq!(limit.limit(), 8, "two signals of one burst cut once");
        tokio::time::advance(CUT_COOLDOWN).await;
        first.overloaded();
        assert_eq!(limit.limit(), 4);
        for _ in 0..4 {
            first.succeeded();
        }
        assert_eq!(limit.limit(), 4, "one round of four successes adds about one");
        for _ in 0..200 {
            first.succeeded();
        }
        assert_eq!(limit.limit(), 16, "never above the maximum");
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_waits_for_a_free_place() {
        let limit = AdaptiveLimit::new(2);
        let a = limit.acquire().await;
        let _b = limit.acquire().await;
        let third = tokio::spawn({
            let limit = limit.clone();
            async move {
                let _c = limit.acquire().await;
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!third.is_finished(), "two in flight: the third waits");
        drop(a);
        third.await.expect("the third got a place once one was freed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_starts_with_a_second_fills_to_ten_then_keeps_its_rate() {
        let share = Share::new();
        let bucket = Bucket::new(60, share.clone());
        let start = Instant::now();
        bucket.take(1.0).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "one second's worth at once");
        bucket.take(1.0).await;
        assert!(start.elapsed() >= Duration::from_millis(999), "then one a second: {:?}", start.elapsed());
        tokio::time::advance(Duration::from_secs(60)).await;
        let idle = Instant::now();
        for _ in 0..10 {
            bucket.take(1.0).await;
        }
        assert_eq!(idle.elapsed(), Duration::ZERO, "after a long pause, at most ten seconds' worth at once");
        bucket.take(1.0).await;
        assert!(idle.elapsed() >= Duration::from_millis(999), "{:?}", idle.elapsed());
        share.set_workers(2);
        let before = Instant::now();
        bucket.take(1.0).await;
        assert!(before.elapsed() >= Duration::from_millis(1999), "half the rate: {:?}", before.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_charge_after_the_answer_delays_the_next_take_at_most_a_bucket() {
        let bucket = Bucket::new(600, Share::new());
        bucket.take(10.0).await;
        bucket.charge(50.0);
        let start = Instant::now();
        bucket.take(1.0).await;
        assert!(start.elapsed() >= Duration::from_secs(5), "{:?}", start.elapsed());
        bucket.charge(f64::from(u32::MAX) * 2.0);
        let capped = Instant::now();
        bucket.take(1.0).await;
        assert!(capped.elapsed() <= Duration::from_secs(11), "a huge count costs one bucket: {:?}", capped.elapsed());
    }
}
