//! The CPU pool that step kernels run on, so they never block the async runtime.

use std::sync::Arc;

use tokio::sync::oneshot;

/// A fixed-size thread pool for CPU-heavy kernels. Cloning shares it.
#[derive(Clone)]
pub struct ComputePool {
    pool: Arc<rayon::ThreadPool>,
}

impl std::fmt::Debug for ComputePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComputePool").field("threads", &self.pool.current_num_threads()).finish()
    }
}

impl ComputePool {
    /// A pool of `threads` workers (0: one per available core).
    ///
    /// # Errors
    /// When the OS refuses to start threads.
    pub fn new(threads: usize) -> Result<Self, rayon::ThreadPoolBuildError> {
        let threads = if threads == 0 { available_cores() } else { threads };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("weir-compute-{i}"))
            .build()?;
        Ok(Self { pool: Arc::new(pool) })
    }

    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs `f` on the pool and waits for its result.
    ///
    /// # Cancellation
    /// Dropping the returned future discards the result; a kernel already running finishes first.
    /// A kernel that panics yields `None`.
    pub fn run<T, F>(&self, f: F) -> impl Future<Output = Option<T>> + Send + 'static
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.pool.spawn(move || {
            let _ = tx.send(f());
        });
        async move { rx.await.ok() }
    }
}

/// Cores this process may use.
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
