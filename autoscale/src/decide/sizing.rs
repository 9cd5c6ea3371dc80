//! Rule 2: the replicas each pool's utilisation calls for, before any gate or window.

use std::collections::BTreeMap;

use super::{Policy, PoolState};
use crate::signals::{PoolSignals, Signals};

/// What the signals call for in one pool, clamped to its bounds, and why in a few words.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Recommendation {
    pub replicas: u32,
    pub why: String,
}

/// One recommendation per pool of `pools`, in its order.
///
/// Each pool is sized for the target at today's throughput, `current · u / target`, outside the
/// band and held inside it. When the busiest pool (the bottleneck) is above the band its true
/// demand is unknown: it is sent to its `max`, and every other pool is judged at the throughput
/// that growth would bring: its utilisation then, `u · max_B / current_B`, held inside the band
/// and sized for the target outside it.
pub(super) fn recommend(
    policy: &Policy,
    signals: &Signals,
    pools: &BTreeMap<String, PoolState>,
) -> Vec<Recommendation> {
    let utilization = |name: &str| signals.pools.get(name).map_or(0.0, PoolSignals::utilization);
    let target = policy.target_utilization;
    // Above 1 a pool is saturated (busy past its slots means queued work), whatever the target.
    let (low, high) = (target - policy.band, (target + policy.band).min(1.0));
    let mut bottleneck: Option<(&str, f64)> = None;
    for name in pools.keys() {
        let u = utilization(name);
        if bottleneck.is_none_or(|(_, busiest)| u > busiest) {
            bottleneck = Some((name, u));
        }
    }
    let saturated = bottleneck.filter(|(_, u)| *u > high);
    let growth =
        saturated.and_then(|(name, _)| pools.get(name)).map_or(1.0, |b| f64::from(b.max) / f64::from(b.current.max(1)));
    pools
        .iter()
        .map(|(name, state)| {
            let u = utilization(name);
            let n = f64::from(state.current);
            let (wanted, why) = match saturated {
                Some((b, _)) if b == name => {
                    (f64::from(state.max), format!("utilisation {u:.2} > {high:.2} (bottleneck)"))
                }
                Some((b, bu)) => {
                    // Judged at the throughput the bottleneck's growth brings, band and all.
                    let projected = u * growth;
                    let why = format!(
                        "utilisation {u:.2}, {projected:.2} once the bottleneck {b} ({bu:.2} > {high:.2}) grows ×{growth:.2}"
                    );
                    if (low..=high).contains(&projected) { (n, why) } else { (n * projected / target, why) }
                }
                None if u > high => (n * u / target, format!("utilisation {u:.2} > {high:.2}")),
                None if u < low => (n * u / target, format!("utilisation {u:.2} < {low:.2}")),
                None => (n, format!("utilisation {u:.2} within {low:.2}..{high:.2}")),
            };
            Recommendation { replicas: clamp(wanted, state), why }
        })
        .collect()
}

/// `wanted` rounded up into `[max(min, 1), max]`; a hair of float noise is not a replica.
fn clamp(wanted: f64, state: &PoolState) -> u32 {
    let low = state.min.max(1);
    let high = state.max.max(low);
    let up = (wanted - 1e-9).ceil();
    if up.is_nan() || up < f64::from(low) {
        low
    } else if up > f64::from(high) {
        high
    } else {
        up as u32
    }
}
