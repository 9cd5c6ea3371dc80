//! What the autoscaler remembers of a pool between rounds: its scale-down window and its guard.

use std::time::Duration;

use tokio::time::Instant;

use super::Policy;

/// One pool's memory.
#[derive(Debug, Default)]
pub(super) struct PoolMemory {
    pub window: Window,
    pub guard: Guard,
}

/// The recommendations below current since the first of them (rule 7).
#[derive(Debug, Default)]
pub(super) struct Window {
    since: Option<Instant>,
    seen: Vec<(Instant, u32)>,
}

impl Window {
    /// Forgets the window: a recommendation at or above current, a scale-down, or the end-game.
    pub fn reset(&mut self) {
        self.since = None;
        self.seen.clear();
    }

    /// Records `recommended`, below `current`. Once recommendations have stayed below `current`
    /// for `length`, returns the highest of the last `length`; until then, how long so far.
    pub fn observe(&mut self, now: Instant, current: u32, recommended: u32, length: Duration) -> Result<u32, Duration> {
        if self.seen.iter().any(|(_, r)| *r >= current) {
            // Current went down since (outside this autoscaler): these are no longer below it.
            self.reset();
        }
        let since = *self.since.get_or_insert(now);
        self.seen.push((now, recommended));
        self.seen.retain(|(at, _)| now.saturating_duration_since(*at) <= length);
        let below_for = now.saturating_duration_since(since);
        if below_for < length {
            return Err(below_for);
        }
        Ok(self.seen.iter().map(|(_, r)| *r).max().unwrap_or(recommended))
    }
}

/// The check of the last scale-up, and the freeze it may have set (rule 8).
#[derive(Debug, Default)]
pub(super) struct Guard {
    pending: Option<ScaleUp>,
    frozen: Option<Freeze>,
}

#[derive(Debug)]
struct ScaleUp {
    from: u32,
    to: u32,
    throughput: f64,
    /// When its workers were first all ready.
    ready_at: Option<Instant>,
}

#[derive(Debug)]
struct Freeze {
    until: Instant,
    why: String,
}

impl Guard {
    /// Remembers a scale-up `from → to` made at `throughput`, to check once it is all ready.
    pub fn scaled_up(&mut self, from: u32, to: u32, throughput: f64) {
        self.pending = Some(ScaleUp { from, to, throughput, ready_at: None });
    }

    /// Drops the scale-up to check: the pool is being scaled down.
    pub fn forget_scale_up(&mut self) {
        self.pending = None;
    }

    /// At the first round `policy.guard_delay` after the last scale-up is all `ready`, compares
    /// `throughput` with the one before it; below `(1 + guard_min_gain)` times that, freezes
    /// scale-ups for `guard_freeze` and returns why, as [`Guard::frozen`] words it.
    pub fn settle(&mut self, now: Instant, ready: u32, throughput: f64, policy: &Policy) -> Option<String> {
        let (min_gain, freeze) = (policy.guard_min_gain, policy.guard_freeze);
        let pending = self.pending.as_mut().filter(|up| ready >= up.to)?;
        let ready_at = *pending.ready_at.get_or_insert(now);
        if now.saturating_duration_since(ready_at) < policy.guard_delay {
            return None;
        }
        let up = self.pending.take()?;
        if throughput >= up.throughput * (1.0 + min_gain) {
            return None;
        }
        let gain = if up.throughput > 0.0 { (throughput / up.throughput - 1.0) * 100.0 } else { 0.0 };
        let change = if gain < 0.0 {
            format!("lowered throughput {:.0}%", -gain)
        } else {
            format!("raised throughput only {gain:.0}%")
        };
        let why = format!(
            "the last scale-up {} → {} {change} ({:.1} → {throughput:.1} rows/s)",
            up.from, up.to, up.throughput
        );
        self.frozen = Some(Freeze { until: now + freeze, why });
        self.frozen(now)
    }

    /// Whether the last scale-up is ready and waits out its delay before it is judged (rule 5:
    /// no second step before the first one's effect is known).
    pub fn judging(&self) -> bool {
        self.pending.as_ref().is_some_and(|up| up.ready_at.is_some())
    }

    /// Why scale-ups are frozen at `now`, if they are.
    pub fn frozen(&self, now: Instant) -> Option<String> {
        let freeze = self.frozen.as_ref().filter(|f| f.until > now)?;
        Some(format!("{}: scale-ups frozen for {}s", freeze.why, (freeze.until - now).as_secs()))
    }
}
