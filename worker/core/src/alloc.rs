//! Per-thread allocation peaks: how much memory a kernel call held at once, when the binary installs [`TrackingAllocator`].

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::OnceLock;

/// The system allocator, counting each thread's live bytes and their peak, so the executor can
/// charge a kernel's working memory (a decoder's planes and scratch buffers, not only its output)
/// to the budget. A binary opts in with `#[global_allocator] static A: TrackingAllocator =
/// TrackingAllocator;`; without it, [`measure_peak`] measures nothing.
///
/// Counting costs two thread-local additions per allocation; memory freed on another thread than
/// it was allocated on is counted there, which can only lower a thread's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackingAllocator;

thread_local! {
    /// Bytes this thread allocated minus bytes it freed.
    static LIVE: Cell<i64> = const { Cell::new(0) };
    /// The most `LIVE` has been since the current measurement began.
    static PEAK: Cell<i64> = const { Cell::new(0) };
}

fn note(delta: i64) {
    // `try_with`: the cells have no destructor, but a thread's last frees may run after its
    // thread-locals are gone.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| {
            if now > peak.get() {
                peak.set(now);
            }
        });
    });
}

// SAFETY: every call is passed to `System` unchanged; only counters are updated besides.
unsafe impl GlobalAlloc for TrackingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is `System`'s.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            note(layout.size() as i64);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            note(layout.size() as i64);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            note(new_size as i64 - layout.size() as i64);
        }
        new
    }
}

/// Whether this process allocates through [`TrackingAllocator`].
pub fn tracking() -> bool {
    static TRACKING: OnceLock<bool> = OnceLock::new();
    *TRACKING.get_or_init(|| {
        let before = LIVE.with(Cell::get);
        let probe = std::hint::black_box(Box::new([0u8; 64]));
        let after = LIVE.with(Cell::get);
        drop(probe);
        after != before
    })
}

/// Runs `f` and returns, with its result, the most bytes it held at once beyond what this thread
/// held when it began (what it returns included); `None` when allocations are not tracked.
/// Memory `f` hands to other threads to allocate is not seen.
pub fn measure_peak<T>(f: impl FnOnce() -> T) -> (T, Option<u64>) {
    if !tracking() {
        return (f(), None);
    }
    let start = LIVE.with(Cell::get);
    let outer = PEAK.with(|peak| peak.replace(start));
    let value = f();
    let peak = PEAK.with(|peak| {
        let inner = peak.get();
        peak.set(inner.max(outer));
        inner
    });
    (value, Some((peak - start).max(0) as u64))
}

/// The peaks of work a kernel hands to other threads (a rayon `par_iter` over its rows), which
/// [`measure_peak`] on the kernel's own thread does not see. Work that runs on the creating thread
/// is left to that outer measurement, so nothing is counted twice; work on other threads counts
/// as the sum of its peaks (an upper bound when they overlap).
#[derive(Debug)]
pub struct OffThreadPeaks {
    caller: std::thread::ThreadId,
    total: std::sync::atomic::AtomicU64,
}

impl Default for OffThreadPeaks {
    fn default() -> Self {
        Self::new()
    }
}

impl OffThreadPeaks {
    /// Peaks of work handed off from the current thread.
    pub fn new() -> Self {
        Self { caller: std::thread::current().id(), total: std::sync::atomic::AtomicU64::new(0) }
    }

    /// Runs `f`, adding its peak when it runs on another thread than the creating one.
    pub fn measure<T>(&self, f: impl FnOnce() -> T) -> T {
        if std::thread::current().id() == self.caller {
            return f();
        }
        let (value, peak) = measure_peak(f);
        self.total.fetch_add(peak.unwrap_or(0), std::sync::atomic::Ordering::Relaxed);
        value
    }

    /// The sum of the peaks measured on other threads; `None` when allocations are not tracked.
    pub fn total(&self) -> Option<u64> {
        tracking().then(|| self.total.load(std::sync::atomic::Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_the_tracking_allocator_nothing_is_measured() {
        // The test binary uses the default allocator.
        let (value, peak) = measure_peak(|| vec![1u8; 1 << 20].len());
        assert_eq!(value, 1 << 20);
        assert_eq!(peak, None);
    }
}
