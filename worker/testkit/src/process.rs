//! Measuring child processes: exit status and peak resident memory, for memory tests and benches.

use std::process::Child;

/// How a reaped child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Exited normally with status 0.
    pub success: bool,
    /// Peak resident set size, in bytes.
    pub peak_rss: u64,
}

/// Waits for `child` and reports its exit and peak RSS (the child is reaped here).
///
/// # Errors
/// When `wait4` fails (the child was already reaped, or is not ours).
pub fn wait_peak_rss(child: Child) -> std::io::Result<Finished> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it and the status for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid {
        return Err(std::io::Error::last_os_error());
    }
    let success = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Ok(Finished { success, peak_rss: usage.ru_maxrss.max(0) as u64 * 1024 })
}
