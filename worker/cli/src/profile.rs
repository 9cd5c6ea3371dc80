//! The end-of-run profile: per step rows, failures, busy and blocked time, and throughput.

use std::fmt::Write as _;
use std::time::Duration;

use weir_core::StepStatsSnapshot;

use crate::size::format_size;

/// One rendered row of the profile.
struct Row {
    cells: [String; 10],
}

const HEADER: [&str; 10] =
    ["step", "rows in", "rows out", "errors", "busy", "blocked in", "blocked out", "utilisation", "rows/s", "data out"];

fn rows(stages: &[StepStatsSnapshot], wall: Duration) -> Vec<Row> {
    let wall_s = wall.as_secs_f64().max(1e-9);
    stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let name = if i == 0 || i + 1 == stages.len() { s.name.clone() } else { format!("{i}. {}", s.name) };
            let util = s.busy.as_secs_f64() / (wall_s * s.concurrency.max(1) as f64);
            Row {
                cells: [
                    name,
                    s.rows_in.to_string(),
                    s.rows_out.to_string(),
                    s.rows_failed.to_string(),
                    secs(s.busy),
                    secs(s.blocked_in),
                    secs(s.blocked_out),
                    format!("{:.0}%", util * 100.0),
                    format!("{:.1}", s.rows_out as f64 / wall_s),
                    format_size(s.bytes_out),
                ],
            }
        })
        .collect()
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// The profile as a fixed-width table for a terminal.
pub fn render_text(stages: &[StepStatsSnapshot], wall: Duration) -> String {
    let rows = rows(stages, wall);
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|c| rows.iter().map(|r| r.cells[c].len()).chain([HEADER[c].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[&str]| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(c, v)| if c == 0 { format!("{v:<w$}", w = widths[c]) } else { format!("{v:>w$}", w = widths[c]) })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(&HEADER);
    for r in &rows {
        out.push('\n');
        out.push_str(&line(&r.cells.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    out
}

/// Facts about the run that head the Markdown report.
pub struct ReportHeader<'a> {
    pub job: &'a str,
    pub wall: Duration,
    pub rows_in: u64,
    pub rows_out: u64,
    pub rows_failed: u64,
    pub memory_limit: u64,
    pub memory_peak: u64,
    pub output: &'a str,
}

/// The profile as a Markdown report.
pub fn render_markdown(header: &ReportHeader<'_>, stages: &[StepStatsSnapshot]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Weir run profile: {}\n", header.job);
    let _ = writeln!(md, "- wall time: {:.2}s", header.wall.as_secs_f64());
    let _ = writeln!(md, "- rows: {} in, {} out, {} failed", header.rows_in, header.rows_out, header.rows_failed);
    let _ = writeln!(
        md,
        "- memory budget: {} limit, {} peak reserved",
        format_size(header.memory_limit),
        format_size(header.memory_peak)
    );
    let _ = writeln!(md, "- output: `{}`\n", header.output);
    let _ = writeln!(md, "| {} |", HEADER.join(" | "));
    let _ = writeln!(md, "|{}", ":--|".to_string() + &"--:|".repeat(HEADER.len() - 1));
    for r in rows(stages, header.wall) {
        let _ = writeln!(md, "| {} |", r.cells.join(" | "));
    }
    let _ = writeln!(
        md,
        "\n*busy*: time in the step's kernel, summed over concurrent morsels; *blocked in*: idle for lack of input; \
         *blocked out*: waiting for room downstream (backpressure); *utilisation*: busy / (wall x concurrency)."
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(name: &str, rows: u64, busy_ms: u64) -> StepStatsSnapshot {
        StepStatsSnapshot {
            name: name.into(),
            rows_in: rows,
            rows_out: rows,
            busy: Duration::from_millis(busy_ms),
            concurrency: 2,
            ..Default::default()
        }
    }

    #[test]
    fn the_table_numbers_steps_and_computes_utilisation() {
        let stages = [stage("source", 10, 0), stage("image.decode", 10, 1000), stage("sink", 10, 0)];
        let text = render_text(&stages, Duration::from_secs(1));
        assert!(text.lines().nth(2).expect("decode line").starts_with("1. image.decode"), "{text}");
        assert!(text.contains("50%"), "{text}");
        let header = ReportHeader {
            job: "j",
            wall: Duration::from_secs(1),
            rows_in: 10,
            rows_out: 10,
            rows_failed: 0,
            memory_limit: 1 << 20,
            memory_peak: 1 << 19,
            output: "out/",
        };
        let md = render_markdown(&header, &stages);
        assert!(md.contains("| 1. image.decode | 10 | 10 | 0 | 1.00s |"), "{md}");
    }
}
