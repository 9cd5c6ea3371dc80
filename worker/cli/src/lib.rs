//! The `weir` command's library: plan a `MultimodalJob` into a pipeline and run it in this process.
//!
//! # Layout
//! - [`cluster`]: the distributed roles: coordinator, worker, local supervisor, status.
//! - [`examples`]: the inputs of the example manifests (`weir generate media|documents`).
//! - [`plan`]: the step registry (config to runnable step) and source/sink wiring.
//! - [`run`]: the embedded runner behind `weir run`.
//! - [`progress`]: the live per-step progress display.
//! - [`profile`]: the end-of-run per-step profile (terminal table and Markdown report).
//! - [`size`]: parsing of byte sizes such as `512MiB` and durations such as `30s`.

pub mod cluster;
pub mod examples;
pub mod plan;
pub mod profile;
pub mod progress;
pub mod run;
pub mod size;

pub use run::{RunOptions, RunReport, run_job};

/// An error and its causes on one line, each cause once: a cause whose text the message already
/// holds (an error that prints its source itself) is not repeated.
pub fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(current) = cause {
        let more = current.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = current.source();
    }
    text
}

/// Returns large buffers (decoded images) to the OS as soon as they are freed, so resident memory
/// follows the memory budget instead of glibc's grown heap arenas. Call first thing in `main`.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; callers run it before starting threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("step #2 `text.chunk` failed on unit 0: {source}")]
    struct Step {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("running the job")]
    struct Job(#[source] Step);

    #[test]
    fn each_cause_is_said_once() {
        let error = Job(Step { source: std::io::Error::other("Offset overflow error: 2148960000") });
        assert_eq!(
            error_text(&error),
            "running the job: step #2 `text.chunk` failed on unit 0: Offset overflow error: 2148960000"
        );
    }
}
