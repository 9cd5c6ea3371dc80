//! The live progress display: an overall bar and one line per step, redrawn from the stats.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use weir_core::PipelineStats;

/// A running progress display; stops drawing when finished or dropped.
pub struct ProgressDisplay {
    ticker: tokio::task::JoinHandle<()>,
    bars: Vec<ProgressBar>,
    overall: ProgressBar,
    stats: Arc<PipelineStats>,
}

impl ProgressDisplay {
    /// Starts drawing to stderr (nothing is drawn when stderr is not a terminal).
    pub fn start(stats: Arc<PipelineStats>) -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8));
        let overall_style =
            ProgressStyle::with_template("{prefix:>18} [{bar:32.cyan/blue}] {pos}/{len} units  {msg}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        let overall = multi.add(ProgressBar::new(0).with_style(overall_style).with_prefix("job"));
        let step_style =
            ProgressStyle::with_template("{prefix:>18} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar());
        let bars: Vec<ProgressBar> = stats
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let label =
                    if i == 0 || i + 1 == stats.stages.len() { s.name.clone() } else { format!("{i}. {}", s.name) };
                multi.add(ProgressBar::new(0).with_style(step_style.clone()).with_prefix(label))
            })
            .collect();
        let ticker = {
            let (stats, bars, overall) = (stats.clone(), bars.clone(), overall.clone());
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                loop {
                    redraw(&stats, &bars, &overall, started.elapsed());
                    tokio::time::sleep(Duration::from_millis(125)).await;
                }
            })
        };
        Self { ticker, bars, overall, stats }
    }

    /// Draws the final state and stops.
    pub fn finish(self, elapsed: Duration) {
        redraw(&self.stats, &self.bars, &self.overall, elapsed);
        self.ticker.abort();
        for bar in self.bars.iter().chain([&self.overall]) {
            bar.abandon();
        }
    }
}

impl Drop for ProgressDisplay {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

fn redraw(stats: &PipelineStats, bars: &[ProgressBar], overall: &ProgressBar, elapsed: Duration) {
    let (done, total) = stats.units();
    overall.set_length(total);
    overall.set_position(done);
    let snapshot = stats.snapshot();
    let secs = elapsed.as_secs_f64().max(1e-3);
    let source_rows = snapshot.first().map_or(0, |s| s.rows_out);
    overall.set_message(format!("{source_rows}/{} rows read", stats.rows_total()));
    for (bar, s) in bars.iter().zip(&snapshot) {
        let util = s.busy.as_secs_f64() / (secs * s.concurrency.max(1) as f64) * 100.0;
        let failed = if s.rows_failed > 0 { format!("  {} failed", s.rows_failed) } else { String::new() };
        bar.set_message(format!(
            "{:>9} rows {:>9.1}/s  busy {:>3.0}%  waiting in {:>6.1}s out {:>6.1}s{failed}",
            s.rows_out,
            s.rows_out as f64 / secs,
            util.min(999.0),
            s.blocked_in.as_secs_f64(),
            s.blocked_out.as_secs_f64()
        ));
    }
}
