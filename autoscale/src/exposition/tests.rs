use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::signals::JobSignals;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn comments_are_skipped_and_escapes_undone() {
    let text = "# HELP weir_step_rows_total Rows into and \\\\ out of each step.\n\
                # TYPE weir_step_rows_total counter\n\
                \n\
                weir_step_rows_total{direction=\"in\",step=\"a \\\"quoted\\\" \\\\ step\\nline two\",} 15\n\
                up 1\n";
    let samples = parse(text).expect("parses");
    assert_eq!(
        samples,
        vec![
            (
                "weir_step_rows_total".to_string(),
                labels(&[("direction", "in"), ("step", "a \"quoted\" \\ step\nline two")]),
                15.0
            ),
            ("up".to_string(), BTreeMap::new(), 1.0),
        ]
    );
}

#[test]
fn special_values_and_timestamps_are_read() {
    let text = "a NaN\nb +Inf\nc -Inf 1700000000000\nd{x=\"1\"} 2.5e-3 -12\n e { x = \"2\" } 7\n";
    let samples = parse(text).expect("parses");
    let values: Vec<f64> = samples.iter().map(|(_, _, v)| *v).collect();
    assert!(values[0].is_nan());
    assert_eq!(&values[1..], &[f64::INFINITY, f64::NEG_INFINITY, 0.0025, 7.0]);
    assert_eq!(samples[4].1, labels(&[("x", "2")]));
}

#[test]
fn a_malformed_line_is_named() {
    // (text, the message contains)
    let cases = [
        ("ok 1\nbroken{a=\"1\" 2\n", "line 2: expected , or } after label a"),
        ("x{a=\"\\t\"} 1", "invalid escape \\t"),
        ("x{a=\"open} 1", "unterminated label value"),
        ("x one", "the value \"one\" is not a number"),
        ("x 1 12.5", "the timestamp \"12.5\" is not an integer"),
        ("x 1 2 3", "unexpected text after the timestamp"),
        ("9x 1", "expected a metric name"),
        ("x", "expected a space before the value"),
    ];
    for (text, message) in cases {
        match parse(text) {
            Err(DataProblem::Malformed(why)) => assert!(why.contains(message), "{text:?}: {why}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

/// A worker of `pool` running step `decode`, its counters at the given values.
fn worker(pool: &str, name: &str, busy: f64, blocked_output: f64, rows_in: f64, slots: f64) -> String {
    let l = format!("job=\"j\",pool=\"{pool}\",step=\"decode\",worker=\"{name}\"");
    format!(
        "# TYPE weir_step_busy_seconds_total counter\n\
         weir_step_busy_seconds_total{{{l}}} {busy}\n\
         weir_step_blocked_seconds_total{{{l},on=\"input\"}} {}\n\
         weir_step_blocked_seconds_total{{{l},on=\"output\"}} {blocked_output}\n\
         weir_step_rows_total{{{l},direction=\"in\"}} {rows_in}\n\
         weir_step_rows_total{{{l},direction=\"out\"}} {}\n\
         weir_step_slots{{{l}}} {slots}\n\
         weir_step_busy_seconds_total{{job=\"other\",pool=\"{pool}\",step=\"decode\",worker=\"{name}\"}} {}\n\
         weir_worker_ready_seconds{{job=\"j\",pool=\"{pool}\",worker=\"{name}\"}} {}\n",
        busy * 7.0,
        rows_in * 3.0,
        busy * 1000.0,
        slots * 10.0
    )
}

fn coordinator(committed: f64) -> String {
    format!(
        "weir_job_units{{job=\"j\",state=\"total\"}} 100\n\
         weir_job_units{{job=\"j\",state=\"committed\"}} {committed}\n\
         weir_job_units{{job=\"j\",state=\"leased\"}} 4\n\
         weir_job_units_committed_total{{job=\"j\"}} {committed}\n\
         weir_job_workers{{job=\"j\",pool=\"cpu\"}} 2\n"
    )
}

fn scrapes(at: Instant, processes: &[(&str, String)]) -> BTreeMap<String, Scrape> {
    processes.iter().map(|(id, text)| (id.to_string(), Scrape::parse(at, text).expect("parses"))).collect()
}

fn before_and_after(
    before: &[(&str, String)],
    after: &[(&str, String)],
) -> (BTreeMap<String, Scrape>, BTreeMap<String, Scrape>) {
    let t0 = Instant::now();
    (scrapes(t0, before), scrapes(t0 + Duration::from_secs(10), after))
}

#[test]
fn counters_become_rates_summed_by_pool_and_step() {
    let (before, after) = before_and_after(
        &[
            ("coordinator", coordinator(10.0)),
            ("w0", worker("cpu", "w0", 0.0, 0.0, 0.0, 2.0)),
            ("w1", worker("cpu", "w1", 5.0, 1.0, 100.0, 2.0)),
        ],
        &[
            ("coordinator", coordinator(30.0)),
            ("w0", worker("cpu", "w0", 12.0, 3.0, 200.0, 2.0)),
            ("w1", worker("cpu", "w1", 17.0, 2.0, 300.0, 2.0)),
        ],
    );
    let signals = signals_from_scrapes(&before, &after, "j", &["cpu"]).expect("signals");
    let cpu = &signals.pools["cpu"];
    let [decode] = cpu.steps.as_slice() else { panic!("one step: {cpu:?}") };
    let figures = [decode.rows_per_second, decode.busy, decode.blocked_output, decode.slots];
    for (got, want) in figures.into_iter().zip([40.0, 2.4, 0.4, 4.0]) {
        assert!((got - want).abs() < 1e-9, "{decode:?}");
    }
    assert_eq!(decode.step, "decode");
    assert_eq!((cpu.workers_reporting, cpu.ready_seconds), (2, Some(20.0)));
    assert_eq!(
        signals.job,
        JobSignals { units_total: 100.0, units_committed: 30.0, units_leased: 4.0, commit_rate: 2.0 }
    );
}

#[test]
fn a_counter_that_went_down_is_a_reset_naming_the_process() {
    let (before, after) = before_and_after(
        &[("coordinator", coordinator(10.0)), ("w0", worker("cpu", "w0", 50.0, 0.0, 0.0, 2.0))],
        &[("coordinator", coordinator(10.0)), ("w0", worker("cpu", "w0", 2.0, 0.0, 0.0, 2.0))],
    );
    match signals_from_scrapes(&before, &after, "j", &["cpu"]) {
        Err(DataProblem::CounterReset(what)) => {
            assert!(what.starts_with("weir_step_busy_seconds_total{job=\"j\""), "{what}");
            assert!(what.ends_with("of process w0 went 50 → 2"), "{what}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_gauge_that_went_down_is_news_not_a_reset() {
    let gone = coordinator(10.0).replace("pool=\"cpu\"} 2", "pool=\"cpu\"} 1").replace("leased\"} 4", "leased\"} 1");
    let (before, after) = before_and_after(
        &[("coordinator", coordinator(10.0)), ("w0", worker("cpu", "w0", 0.0, 0.0, 0.0, 2.0))],
        &[("coordinator", gone), ("w0", worker("cpu", "w0", 5.0, 0.0, 10.0, 2.0))],
    );
    let signals = signals_from_scrapes(&before, &after, "j", &["cpu"]).expect("a drained worker is no restart");
    assert_eq!(signals.job.units_leased, 1.0);
}

#[test]
fn a_new_process_adds_neither_slots_nor_rates_until_its_second_scrape() {
    let (before, after) = before_and_after(
        &[("coordinator", coordinator(10.0)), ("w0", worker("gpu", "w0", 0.0, 0.0, 0.0, 1.0))],
        &[
            ("coordinator", coordinator(10.0)),
            ("w0", worker("gpu", "w0", 9.0, 0.0, 50.0, 1.0)),
            ("w1", worker("gpu", "w1", 500.0, 500.0, 5000.0, 1.0)),
        ],
    );
    let signals = signals_from_scrapes(&before, &after, "j", &["gpu"]).expect("signals");
    let gpu = &signals.pools["gpu"];
    // Its slots without its busy time would read as idle capacity, and shrink the pool.
    assert_eq!((gpu.steps[0].busy, gpu.steps[0].rows_per_second, gpu.steps[0].slots), (0.9, 5.0, 1.0));
    assert_eq!(gpu.utilization(), 0.9);
    assert_eq!(gpu.workers_reporting, 2, "its readiness counts at once");
}

#[test]
fn a_pool_with_no_process_scraped_twice_has_no_samples() {
    let (before, after) = before_and_after(
        &[("coordinator", coordinator(10.0)), ("c0", worker("cpu", "c0", 0.0, 0.0, 0.0, 1.0))],
        &[
            ("coordinator", coordinator(10.0)),
            ("c0", worker("cpu", "c0", 1.0, 0.0, 0.0, 1.0)),
            ("g0", worker("gpu", "g0", 1.0, 0.0, 0.0, 1.0)),
        ],
    );
    let problem = signals_from_scrapes(&before, &after, "j", &["cpu", "gpu"]).unwrap_err();
    assert_eq!(
        problem.to_string(),
        "no samples yet for weir_step_busy_seconds_total of pool gpu (no process of it scraped twice)"
    );
}

#[test]
fn without_the_coordinator_the_round_has_no_job_figures() {
    let (before, after) = before_and_after(
        &[("w0", worker("cpu", "w0", 0.0, 0.0, 0.0, 1.0))],
        &[("w0", worker("cpu", "w0", 1.0, 0.0, 0.0, 1.0))],
    );
    assert_eq!(signals_from_scrapes(&before, &after, "j", &["cpu"]), Err(DataProblem::CoordinatorSilent));
}

#[test]
fn a_nan_counter_is_not_a_number() {
    let (before, after) = before_and_after(
        &[("coordinator", coordinator(10.0)), ("w0", worker("cpu", "w0", 0.0, 0.0, 0.0, 1.0))],
        &[("coordinator", coordinator(10.0)), ("w0", worker("cpu", "w0", f64::NAN, 0.0, 0.0, 1.0))],
    );
    let problem = signals_from_scrapes(&before, &after, "j", &["cpu"]).unwrap_err();
    assert!(matches!(&problem, DataProblem::NotANumber(what) if what.contains("busy")), "{problem}");
}
