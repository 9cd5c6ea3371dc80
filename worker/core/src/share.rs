//! How many workers of this worker's pool split the job's per-minute limits (`llm.prompt`'s
//! `requestsPerMinute`, `tokensPerMinute`): each takes an equal part.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

/// The number of workers sharing a limit; at least 1.
#[derive(Debug)]
pub struct Share {
    workers: AtomicU32,
}

impl Share {
    /// One worker: all of the limit.
    pub fn new() -> Arc<Self> {
        Arc::new(Self { workers: AtomicU32::new(1) })
    }

    /// Sets the workers sharing the limit now (0 reads as 1).
    pub fn set_workers(&self, workers: u32) {
        self.workers.store(workers.max(1), Ordering::Relaxed);
    }

    pub fn workers(&self) -> u32 {
        self.workers.load(Ordering::Relaxed).max(1)
    }
}

/// This process's share: a worker runs one job in one pool, and its coordinator says at each
/// heartbeat how many live workers the pool has. It stays 1 until then (an embedded run has one
/// worker).
pub fn pool_share() -> &'static Arc<Share> {
    static SHARE: OnceLock<Arc<Share>> = OnceLock::new();
    SHARE.get_or_init(Share::new)
}
