use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::{Instant, advance};

use super::*;
use crate::signals::{JobSignals, PoolSignals, Signals, StepSignals};

/// A pool with one step of 10 slots at utilisation `u`, backpressure `bp` and `rows` rows/s.
fn pool(u: f64, bp: f64, rows: f64) -> PoolSignals {
    let step =
        StepSignals { step: "s".into(), rows_per_second: rows, busy: u * 10.0, blocked_output: bp * 10.0, slots: 10.0 };
    PoolSignals { steps: vec![step], workers_reporting: 1, ready_seconds: None }
}

/// Plenty of work left: 1000 units at 1 unit/s.
fn job() -> JobSignals {
    JobSignals { units_total: 1000.0, units_committed: 0.0, units_leased: 10.0, commit_rate: 1.0 }
}

fn signals(pools: &[(&str, PoolSignals)]) -> Signals {
    Signals { pools: pools.iter().map(|(n, p)| (n.to_string(), p.clone())).collect(), job: job() }
}

fn state(min: u32, max: u32, current: u32) -> PoolState {
    PoolState { min, max, current, ready: current }
}

fn states(pools: &[(&str, PoolState)]) -> BTreeMap<String, PoolState> {
    pools.iter().map(|(n, s)| (n.to_string(), *s)).collect()
}

fn round(scaler: &mut Autoscaler, signals: &Signals, pools: &BTreeMap<String, PoolState>) -> Vec<Decision> {
    scaler.decide(Instant::now(), Ok(signals), pools, "cpu")
}

/// One pool `cpu` at utilisation `u`, one round.
fn one(scaler: &mut Autoscaler, u: f64, s: PoolState) -> Decision {
    round(scaler, &signals(&[("cpu", pool(u, 0.0, 10.0))]), &states(&[("cpu", s)])).remove(0)
}

#[tokio::test(start_paused = true)]
async fn inside_the_band_holds_above_grows_and_below_waits_for_the_window() {
    // (case, utilisation, min, max, current, action, recommended, desired, reason contains)
    let cases = [
        ("inside", 0.70, 1, 10, 4, Action::Hold, 4, 4, "within 0.50..0.90: holding at 4"),
        ("inside, near the top", 0.88, 1, 10, 4, Action::Hold, 4, 4, "within"),
        ("inside, near the bottom", 0.52, 1, 10, 4, Action::Hold, 4, 4, "within"),
        ("above", 0.95, 1, 6, 4, Action::Up, 6, 6, "utilisation 0.95 > 0.90 (bottleneck): 4 → 6"),
        ("below", 0.35, 1, 10, 4, Action::Hold, 2, 4, "utilisation 0.35 < 0.50: 2 after 300s below (0s so far)"),
        ("below, not under min", 0.05, 3, 10, 4, Action::Hold, 3, 4, "< 0.50"),
    ];
    for (case, u, min, max, current, action, recommended, desired, reason) in cases {
        let d = one(&mut Autoscaler::new(Policy::default()), u, state(min, max, current));
        assert_eq!((d.action, d.recommended, d.desired), (action, recommended, desired), "{case}: {d:?}");
        assert!(d.reason.starts_with("cpu: ") && d.reason.contains(reason), "{case}: {}", d.reason);
    }
}

#[tokio::test(start_paused = true)]
async fn below_the_band_shrinks_only_once_the_window_is_full() {
    let mut scaler = Autoscaler::new(Policy::default());
    let s = state(1, 10, 4);
    assert_eq!(one(&mut scaler, 0.35, s).desired, 4);
    advance(Duration::from_secs(299)).await;
    assert_eq!(one(&mut scaler, 0.35, s).desired, 4, "one second short of the window");
    advance(Duration::from_secs(1)).await;
    let d = one(&mut scaler, 0.35, s);
    assert_eq!((d.action, d.desired), (Action::Down, 2), "{d:?}");
    assert!(d.reason.contains("for 300s: 4 → 2"), "{}", d.reason);
}

#[tokio::test(start_paused = true)]
async fn a_recommendation_at_or_above_current_restarts_the_window() {
    let mut scaler = Autoscaler::new(Policy::default());
    let s = state(1, 10, 4);
    one(&mut scaler, 0.35, s);
    advance(Duration::from_secs(150)).await;
    assert_eq!(one(&mut scaler, 0.7, s).action, Action::Hold);
    advance(Duration::from_secs(150)).await;
    assert_eq!(one(&mut scaler, 0.35, s).action, Action::Hold, "the window restarted at 150s");
    advance(Duration::from_secs(299)).await;
    assert_eq!(one(&mut scaler, 0.35, s).action, Action::Hold);
    advance(Duration::from_secs(1)).await;
    assert_eq!(one(&mut scaler, 0.35, s).action, Action::Down);
}

#[tokio::test(start_paused = true)]
async fn a_scale_down_goes_to_the_windows_highest_and_at_most_the_fraction() {
    // (case, fraction, current, utilisations at 0 s, 100 s and 300 s, desired)
    let cases = [
        ("the fraction bounds a deep cut", 0.5, 10, [0.07, 0.07, 0.07], 5),
        ("the window's highest bounds it", 0.5, 10, [0.1, 0.4, 0.07], 6),
        ("at least one replica goes", 0.2, 3, [0.1, 0.1, 0.1], 2),
    ];
    for (case, fraction, current, utilisations, desired) in cases {
        let policy = Policy { max_scale_down_fraction: fraction, ..Policy::default() };
        let mut scaler = Autoscaler::new(policy);
        let s = state(1, 20, current);
        let mut last = None;
        for (u, wait) in utilisations.into_iter().zip([0, 100, 200]) {
            advance(Duration::from_secs(wait)).await;
            last = Some(one(&mut scaler, u, s));
        }
        let d = last.expect("three rounds");
        assert_eq!((d.action, d.desired), (Action::Down, desired), "{case}: {d:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_pool_whose_last_scale_up_is_not_ready_is_not_grown_again() {
    let mut scaler = Autoscaler::new(Policy::default());
    let starting = PoolState { min: 1, max: 10, current: 4, ready: 2 };
    let d = one(&mut scaler, 0.95, starting);
    assert_eq!((d.action, d.recommended, d.desired), (Action::Hold, 10, 4), "{d:?}");
    assert_eq!(d.reason, "cpu: 2 of 4 ready (the last scale-up is still starting): not grown (recommended 10)");
    let d = one(&mut scaler, 0.95, state(1, 10, 4));
    assert_eq!((d.action, d.desired), (Action::Up, 8), "{d:?}");
}

#[tokio::test(start_paused = true)]
async fn a_pool_blocked_on_its_output_is_not_grown_but_one_free_is_sized_for_the_bottleneck() {
    // cpu feeds gpu; gpu is saturated at 1 of 3, so it goes to 3 (growth ×3) and cpu is sized for
    // three times today's throughput: ceil(4 · 0.35 · 3 / 0.7) = 6, alone it would shrink.
    // (case, cpu backpressure, cpu action, cpu desired, cpu reason)
    let cases = [
        (
            "blocked",
            0.45,
            Action::Hold,
            4,
            "cpu: blocked on output 45% (downstream is the bottleneck): not grown (recommended 6)",
        ),
        (
            "free",
            0.0,
            Action::Up,
            6,
            "cpu: utilisation 0.35, 1.05 once the bottleneck gpu (0.98 > 0.90) grows ×3.00: 4 → 6",
        ),
    ];
    for (case, backpressure, action, desired, reason) in cases {
        let mut scaler = Autoscaler::new(Policy::default());
        let s = signals(&[("cpu", pool(0.35, backpressure, 40.0)), ("gpu", pool(0.98, 0.0, 10.0))]);
        let pools = states(&[("cpu", state(1, 10, 4)), ("gpu", state(1, 3, 1))]);
        let d = round(&mut scaler, &s, &pools);
        assert_eq!((d[0].action, d[0].recommended, d[0].desired), (action, 6, desired), "{case}: {d:?}");
        assert_eq!(d[0].reason, reason, "{case}");
        assert_eq!((d[1].action, d[1].desired), (Action::Up, 3), "{case}: {d:?}");
        assert_eq!(d[1].reason, "gpu: utilisation 0.98 > 0.90 (bottleneck): 1 → 3", "{case}");
    }
}

#[tokio::test(start_paused = true)]
async fn one_scale_up_adds_at_most_max_of_two_and_current() {
    // (current, max, desired)
    for (current, max, desired) in [(1, 10, 3), (2, 10, 4), (5, 20, 10), (5, 7, 7)] {
        let d = one(&mut Autoscaler::new(Policy::default()), 0.98, state(1, max, current));
        assert_eq!((d.action, d.recommended, d.desired), (Action::Up, max, desired), "{current}/{max}: {d:?}");
        assert_eq!(d.reason.ends_with("(step limit)"), desired < max, "{}", d.reason);
    }
}

#[tokio::test(start_paused = true)]
async fn no_scale_up_when_the_work_ends_before_a_new_worker_is_ready() {
    // (case, committed, ready seconds, action, reason contains)
    let cases = [
        ("ends in 12 s, needs 40 s", 988.0, Some(40.0), Action::Hold, "work ends in 12 s, a new worker needs 40 s"),
        ("ends in 12 s, needs the default 30 s", 988.0, None, Action::Hold, "a new worker needs 30 s"),
        ("ends in 50 s, needs 40 s", 950.0, Some(40.0), Action::Up, "→"),
    ];
    for (case, committed, ready_seconds, action, reason) in cases {
        let mut gpu = pool(0.98, 0.0, 10.0);
        gpu.ready_seconds = ready_seconds;
        let mut s = signals(&[("gpu", gpu)]);
        s.job.units_committed = committed;
        let pools = states(&[("gpu", state(1, 10, 2))]);
        let d = Autoscaler::new(Policy::default()).decide(Instant::now(), Ok(&s), &pools, "cpu").remove(0);
        assert_eq!(d.action, action, "{case}: {d:?}");
        assert!(d.reason.contains(reason), "{case}: {}", d.reason);
        assert_eq!(d.inputs.units_left, 1000.0 - committed, "{case}");
    }
}

#[tokio::test(start_paused = true)]
async fn with_nothing_left_to_lease_the_leasing_pool_shrinks_at_once_to_its_leases() {
    // (case, min, cpu desired)
    for (case, min, desired) in [("to the leases", 1, 3), ("not under min", 5, 5)] {
        let mut s = signals(&[("cpu", pool(0.7, 0.0, 10.0)), ("gpu", pool(0.7, 0.0, 10.0))]);
        s.job = JobSignals { units_total: 100.0, units_committed: 97.5, units_leased: 2.5, commit_rate: 1.0 };
        let pools = states(&[("cpu", state(min, 10, 8)), ("gpu", state(1, 10, 4))]);
        let d = round(&mut Autoscaler::new(Policy::default()), &s, &pools);
        assert_eq!((d[0].action, d[0].desired), (Action::Down, desired), "{case}: {d:?}");
        assert_eq!(
            d[0].reason,
            format!("cpu: nothing left to lease (2.5 units leased): 8 → {desired}, idle leasing workers released")
        );
        assert_eq!((d[1].action, d[1].desired), (Action::Hold, 4), "{case}: only the leasing pool drains");
    }
}

/// gpu scaled 1 → 3 at 10 rows/s, then all 3 ready at `after` rows/s, still saturated.
async fn scale_up_then_measure(scaler: &mut Autoscaler, after: f64) -> Decision {
    let gpu = |rows| signals(&[("gpu", pool(0.98, 0.0, rows))]);
    let first = round(scaler, &gpu(10.0), &states(&[("gpu", state(1, 10, 1))])).remove(0);
    assert_eq!((first.action, first.desired), (Action::Up, 3), "{first:?}");
    advance(Duration::from_secs(30)).await;
    let starting = PoolState { min: 1, max: 10, current: 3, ready: 1 };
    let paced = round(scaler, &gpu(10.0), &states(&[("gpu", starting)])).remove(0);
    assert_eq!(paced.action, Action::Hold, "not ready yet, so not judged yet: {paced:?}");
    advance(Duration::from_secs(30)).await;
    round(scaler, &gpu(after), &states(&[("gpu", state(1, 10, 3))])).remove(0)
}

#[tokio::test(start_paused = true)]
async fn a_scale_up_that_did_not_pay_freezes_scale_ups_for_a_while() {
    let mut scaler = Autoscaler::new(Policy::default());
    let d = scale_up_then_measure(&mut scaler, 10.2).await;
    assert_eq!((d.action, d.desired), (Action::Hold, 3), "{d:?}");
    assert_eq!(
        d.reason,
        "gpu: the last scale-up 1 → 3 raised throughput only 2% (10.0 → 10.2 rows/s): scale-ups frozen for 300s: \
         not grown (recommended 10)"
    );
    let saturated = signals(&[("gpu", pool(0.98, 0.0, 10.2))]);
    let three = states(&[("gpu", state(1, 10, 3))]);
    advance(Duration::from_secs(299)).await;
    let d = round(&mut scaler, &saturated, &three).remove(0);
    assert!(d.action == Action::Hold && d.reason.contains("frozen for 1s"), "{d:?}");
    advance(Duration::from_secs(1)).await;
    let d = round(&mut scaler, &saturated, &three).remove(0);
    assert_eq!((d.action, d.desired), (Action::Up, 6), "the freeze is over: {d:?}");
}

#[tokio::test(start_paused = true)]
async fn scale_downs_are_still_allowed_while_frozen() {
    let mut scaler = Autoscaler::new(Policy { guard_freeze: Duration::from_secs(900), ..Policy::default() });
    let d = scale_up_then_measure(&mut scaler, 10.2).await;
    assert!(d.reason.contains("frozen for 900s"), "{d:?}");
    let idle = signals(&[("gpu", pool(0.1, 0.0, 10.2))]);
    let three = states(&[("gpu", state(1, 10, 3))]);
    assert_eq!(round(&mut scaler, &idle, &three)[0].action, Action::Hold, "the window starts");
    advance(Duration::from_secs(300)).await;
    let d = round(&mut scaler, &idle, &three).remove(0);
    assert_eq!((d.action, d.desired), (Action::Down, 2), "{d:?}");
    let saturated = signals(&[("gpu", pool(0.98, 0.0, 10.2))]);
    let d = round(&mut scaler, &saturated, &states(&[("gpu", state(1, 10, 2))])).remove(0);
    assert!(d.action == Action::Hold && d.reason.contains("frozen for 600s"), "still frozen: {d:?}");
}

#[tokio::test(start_paused = true)]
async fn a_scale_up_that_paid_does_not_freeze() {
    let mut scaler = Autoscaler::new(Policy::default());
    let d = scale_up_then_measure(&mut scaler, 20.0).await;
    assert_eq!((d.action, d.desired), (Action::Up, 6), "{d:?}");
    assert!(!d.reason.contains("frozen"), "{}", d.reason);
}

#[tokio::test(start_paused = true)]
async fn a_freeze_found_while_holding_is_still_reported() {
    let mut scaler = Autoscaler::new(Policy::default());
    round(&mut scaler, &signals(&[("gpu", pool(0.98, 0.0, 10.0))]), &states(&[("gpu", state(1, 10, 1))]));
    advance(Duration::from_secs(60)).await;
    let d = round(&mut scaler, &signals(&[("gpu", pool(0.7, 0.0, 9.0))]), &states(&[("gpu", state(1, 10, 3))]));
    assert_eq!(d[0].action, Action::Hold);
    assert!(
        d[0].reason.ends_with(
            "; the last scale-up 1 → 3 lowered throughput 10% (10.0 → 9.0 rows/s): scale-ups frozen for 300s"
        ),
        "{}",
        d[0].reason
    );
}

#[tokio::test(start_paused = true)]
async fn every_kind_of_bad_data_holds_every_pool_where_it_is() {
    let problems = [
        DataProblem::Unreachable("Prometheus at http://prom:9090 unreachable: connection refused".into()),
        DataProblem::Query { query: "up".into(), message: "bad_data: parse error".into() },
        DataProblem::NoSamples("weir_step_busy_seconds_total of pool gpu".into()),
        DataProblem::NotANumber("NaN for {pool=\"gpu\"}".into()),
        DataProblem::CounterReset("weir_step_busy_seconds_total of process gpu-0 went 10 → 2".into()),
        DataProblem::CoordinatorSilent,
    ];
    let pools = states(&[("cpu", state(1, 10, 4)), ("gpu", state(2, 10, 3))]);
    for problem in problems {
        let mut scaler = Autoscaler::new(Policy::default());
        // A whole window of low recommendations first: bad data must still not shrink.
        let low = signals(&[("cpu", pool(0.1, 0.0, 1.0)), ("gpu", pool(0.1, 0.0, 1.0))]);
        round(&mut scaler, &low, &pools);
        advance(Duration::from_secs(300)).await;
        let decisions = scaler.decide(Instant::now(), Err(&problem), &pools, "cpu");
        for (d, current) in decisions.iter().zip([4, 3]) {
            assert_eq!((d.action, d.recommended, d.desired), (Action::Hold, current, current), "{problem}: {d:?}");
            assert!(d.reason.ends_with(&format!("holding at {current}: {problem}")), "{}", d.reason);
            assert_eq!(d.inputs, Inputs::default(), "{problem}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn signals_that_fail_their_check_hold_every_pool() {
    let pools = states(&[("cpu", state(1, 10, 4)), ("gpu", state(1, 10, 3))]);
    let mut silent = signals(&[("cpu", pool(0.98, 0.0, 1.0)), ("gpu", pool(0.98, 0.0, 1.0))]);
    silent.job.units_total = 0.0;
    let mut nan = signals(&[("cpu", pool(0.98, 0.0, 1.0)), ("gpu", pool(0.98, 0.0, 1.0))]);
    nan.pools.get_mut("gpu").expect("gpu").steps[0].busy = f64::NAN;
    // (case, signals, reason contains)
    let cases = [
        (
            "a pool is missing",
            signals(&[("cpu", pool(0.98, 0.0, 1.0))]),
            "no samples yet for weir_step_slots of pool gpu",
        ),
        ("the coordinator is silent", silent, "no job figures from the coordinator"),
        ("a figure is NaN", nan, "not a finite, non-negative number"),
    ];
    for (case, s, reason) in cases {
        let d = round(&mut Autoscaler::new(Policy::default()), &s, &pools);
        assert!(d.iter().all(|d| d.action == Action::Hold && d.desired == d.current), "{case}: {d:?}");
        assert!(d.iter().all(|d| d.reason.contains(reason)), "{case}: {d:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn the_summary_prints_one_line_per_decision() {
    let s = signals(&[("cpu", pool(0.7, 0.0, 1.0)), ("gpu", pool(0.98, 0.0, 1.0))]);
    let pools = states(&[("cpu", state(1, 10, 4)), ("gpu", state(1, 3, 1))]);
    let text = summary(&round(&mut Autoscaler::new(Policy::default()), &s, &pools));
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[1].starts_with("up   1 → 3  gpu: utilisation 0.98"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn the_guard_waits_its_delay_after_the_new_workers_are_ready_before_judging() {
    let policy = Policy { guard_delay: Duration::from_secs(60), ..Policy::default() };
    let mut scaler = Autoscaler::new(policy);
    round(&mut scaler, &signals(&[("gpu", pool(0.98, 0.0, 10.0))]), &states(&[("gpu", state(1, 10, 1))]));
    // Ready, but the rate window still holds time from before the scale-up: not judged yet.
    let early = signals(&[("gpu", pool(0.98, 0.0, 10.2))]);
    let d = round(&mut scaler, &early, &states(&[("gpu", state(1, 10, 3))])).remove(0);
    assert!(!d.reason.contains("frozen"), "judged too soon: {d:?}");
    advance(Duration::from_secs(30)).await;
    let d = round(&mut scaler, &early, &states(&[("gpu", state(1, 10, 3))])).remove(0);
    assert!(!d.reason.contains("frozen"), "judged too soon: {d:?}");
    advance(Duration::from_secs(30)).await;
    let d = round(&mut scaler, &early, &states(&[("gpu", state(1, 10, 3))])).remove(0);
    assert!(d.reason.contains("raised throughput only 2%") && d.reason.contains("frozen"), "{d:?}");
}

#[tokio::test(start_paused = true)]
async fn a_saturated_pool_grows_even_when_the_target_band_reaches_past_one() {
    let mut scaler = Autoscaler::new(Policy { target_utilization: 0.95, ..Policy::default() });
    let d = round(&mut scaler, &signals(&[("gpu", pool(1.05, 0.0, 10.0))]), &states(&[("gpu", state(1, 3, 1))]));
    assert_eq!((d[0].action, d[0].desired), (Action::Up, 3), "{:?}", d[0]);
    let d = round(&mut scaler, &signals(&[("gpu", pool(0.97, 0.0, 10.0))]), &states(&[("gpu", state(1, 3, 3))]));
    assert_eq!(d[0].action, Action::Hold, "{:?}", d[0]);
}

#[tokio::test(start_paused = true)]
async fn a_pool_that_keeps_up_with_the_bottlenecks_growth_inside_the_band_holds() {
    let mut scaler = Autoscaler::new(Policy::default());
    // cpu at 0.28 would be 0.84 once gpu grows 1 → 3: inside 0.5..0.9, so no cpu worker is added.
    let s = signals(&[("cpu", pool(0.28, 0.0, 40.0)), ("gpu", pool(0.98, 0.0, 10.0))]);
    let d = round(&mut scaler, &s, &states(&[("cpu", state(1, 2, 1)), ("gpu", state(1, 3, 1))]));
    assert_eq!((d[0].action, d[0].desired), (Action::Hold, 1), "{:?}", d[0]);
    assert!(d[0].reason.contains("0.84 once the bottleneck gpu"), "{}", d[0].reason);
    assert_eq!((d[1].action, d[1].desired), (Action::Up, 3), "{:?}", d[1]);
}
