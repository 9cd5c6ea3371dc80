//! The tracking allocator measures a call's peak working memory, its scratch included.

use weir_core::alloc::{TrackingAllocator, measure_peak, tracking};

#[global_allocator]
static ALLOCATOR: TrackingAllocator = TrackingAllocator;

#[test]
fn a_calls_scratch_memory_counts_in_its_peak_though_it_returns_less() {
    assert!(tracking());
    let (output, peak) = measure_peak(|| {
        let scratch = std::hint::black_box(vec![1u8; 10 << 20]);
        let output = vec![scratch[0]; 1 << 20];
        drop(scratch);
        output
    });
    assert_eq!(output.len(), 1 << 20);
    let peak = peak.expect("tracked");
    assert!(peak >= 11 << 20, "scratch and output were held at once: {peak}");
    assert!(peak < 16 << 20, "{peak}");
}

#[test]
fn a_nested_measurement_does_not_lower_the_outer_peak() {
    let (inner, outer) = measure_peak(|| {
        let big = std::hint::black_box(vec![0u8; 8 << 20]);
        drop(big);
        measure_peak(|| std::hint::black_box(vec![0u8; 1 << 20]).len()).1
    });
    assert!(inner.expect("tracked") >= 1 << 20);
    assert!(outer.expect("tracked") >= 8 << 20, "the outer call's 8 MiB still counts");
}

#[test]
fn memory_held_before_the_call_is_not_charged_to_it() {
    let held = std::hint::black_box(vec![0u8; 32 << 20]);
    let (_, peak) = measure_peak(|| std::hint::black_box(vec![0u8; 1 << 20]).len());
    assert!(peak.expect("tracked") < 2 << 20);
    drop(held);
}
