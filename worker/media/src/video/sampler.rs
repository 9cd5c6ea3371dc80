//! Which decoded frames to keep: the `start`/`end` window, `fps` sampling and `maxFrames`. Pure
//! logic over presentation timestamps, so it is tested without any video.

/// Timestamps this close count as equal (container time bases round).
const EPSILON: f64 = 1e-6;

/// What to do with a decoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not wanted; decode on.
    Skip,
    /// Keep it; `last` when no later frame can be wanted (stop decoding).
    Take { last: bool },
    /// Past the end: stop decoding, without keeping this frame.
    Stop,
}

/// Picks frames by timestamp, in presentation order.
#[derive(Debug, Clone)]
pub struct Sampler {
    start: f64,
    end: Option<f64>,
    /// Seconds between sampling instants (`1/fps`); `None` keeps every frame.
    interval: Option<f64>,
    /// The next sampling instant.
    next: f64,
    taken: u32,
    max_frames: u32,
}

impl Sampler {
    /// Frames in `[start, end)`, at most `max_frames` of them; with `fps`, the first frame at or after
    /// each instant `start + k/fps`.
    pub fn new(start: f64, end: Option<f64>, fps: Option<f64>, max_frames: u32) -> Self {
        let interval = fps.filter(|f| *f > 0.0).map(|f| 1.0 / f);
        Self { start, end, interval, next: start, taken: 0, max_frames }
    }

    /// Where to start decoding: the window's start.
    pub fn start(&self) -> f64 {
        self.start
    }

    /// Whether a frame at `t` seconds would be skipped if it came now. The sampling instant only
    /// moves on, so a frame skipped now is skipped whenever it comes: a decoder may discard it
    /// unseen.
    pub fn skips(&self, t: f64) -> bool {
        !self.stops_at(t) && t + EPSILON < self.next
    }

    fn stops_at(&self, t: f64) -> bool {
        self.taken >= self.max_frames || self.end.is_some_and(|end| t >= end - EPSILON)
    }

    /// Decides for a frame at `t` seconds.
    pub fn decide(&mut self, t: f64) -> Decision {
        if self.stops_at(t) {
            return Decision::Stop;
        }
        if self.skips(t) {
            return Decision::Skip;
        }
        if let Some(interval) = self.interval {
            // The next instant after `t`: one frame covers every instant it is the first after.
            let k = ((t + EPSILON - self.start) / interval).floor() + 1.0;
            self.next = self.start + k * interval;
        }
        self.taken += 1;
        let past_end = self.end.is_some_and(|end| self.next >= end - EPSILON && self.interval.is_some());
        Decision::Take { last: self.taken >= self.max_frames || past_end }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timestamps of the frames kept from a `seconds`-long video at `rate` frames per second.
    fn kept(sampler: &mut Sampler, rate: f64, seconds: f64) -> Vec<f64> {
        let mut out = Vec::new();
        for i in 0..(rate * seconds).round() as u32 {
            let t = f64::from(i) / rate;
            match sampler.decide(t) {
                Decision::Skip => {}
                Decision::Take { last } => {
                    out.push(t);
                    if last {
                        break;
                    }
                }
                Decision::Stop => break,
            }
        }
        out
    }

    #[test]
    fn every_frame_is_kept_by_default() {
        assert_eq!(kept(&mut Sampler::new(0.0, None, None, 10_000), 25.0, 5.0).len(), 125);
    }

    #[test]
    fn fps_sampling_takes_the_first_frame_at_or_after_each_instant() {
        assert_eq!(kept(&mut Sampler::new(0.0, None, Some(1.0), 10_000), 25.0, 5.0), [0.0, 1.0, 2.0, 3.0, 4.0]);
        // 3 fps from 25 fps: instants 0, 1/3, 2/3 fall between frames; the next frame is taken.
        assert_eq!(kept(&mut Sampler::new(0.0, None, Some(3.0), 10_000), 25.0, 1.0), [0.0, 0.36, 0.68]);
        // Sampling faster than the video never repeats a frame.
        assert_eq!(kept(&mut Sampler::new(0.0, None, Some(10.0), 10_000), 2.0, 2.0), [0.0, 0.5, 1.0, 1.5]);
    }

    #[test]
    fn start_end_and_max_frames_bound_the_frames() {
        assert_eq!(kept(&mut Sampler::new(1.0, Some(3.0), Some(1.0), 10_000), 25.0, 5.0), [1.0, 2.0]);
        let window = kept(&mut Sampler::new(2.0, Some(2.2), None, 10_000), 25.0, 5.0);
        assert_eq!(window, [2.0, 2.04, 2.08, 2.12, 2.16]);
        assert_eq!(kept(&mut Sampler::new(0.0, None, None, 7), 25.0, 5.0).len(), 7);
    }

    #[test]
    fn a_frame_skipped_now_is_skipped_later() {
        let mut s = Sampler::new(1.0, None, Some(1.0), 100);
        assert!(s.skips(0.5), "before the start");
        assert!(!s.skips(1.0));
        assert_eq!(s.decide(1.04), Decision::Take { last: false });
        for t in [1.0, 1.5, 1.96] {
            assert!(s.skips(t), "{t} s: between instants");
            assert_eq!(s.decide(t), Decision::Skip);
        }
        assert!(!s.skips(2.0), "the next instant");
        let mut ended = Sampler::new(0.0, Some(1.0), None, 100);
        assert!(!ended.skips(1.5), "past the end is a stop, not a skip");
        assert_eq!(ended.decide(1.5), Decision::Stop);
    }

    #[test]
    fn the_last_wanted_frame_says_so() {
        let mut s = Sampler::new(0.0, Some(2.0), Some(1.0), 100);
        assert_eq!(s.decide(0.0), Decision::Take { last: false });
        assert_eq!(s.decide(1.0), Decision::Take { last: true }, "the next instant (2 s) is past the end");
        let mut s = Sampler::new(0.0, None, None, 1);
        assert_eq!(s.decide(0.0), Decision::Take { last: true });
    }
}
