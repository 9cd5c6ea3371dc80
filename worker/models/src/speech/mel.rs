//! Whisper's input: the log-mel spectrogram of a 30 s window of 16 kHz mono audio, computed as
//! two matrix products (a windowed DFT, then the mel filter bank) so it runs where the model runs.

use candle_core::{D, Device, Tensor};

/// Sample rate Whisper was trained on.
pub const SAMPLE_RATE: u32 = 16_000;
/// Samples in one 30 s window.
pub const WINDOW_SAMPLES: usize = 480_000;
/// Spectrogram frames per window (one every 10 ms).
pub const FRAMES: usize = WINDOW_SAMPLES / HOP;
/// Seconds between frames, and so the resolution of Whisper's timestamp tokens (two frames).
pub const SECONDS_PER_FRAME: f32 = HOP as f32 / SAMPLE_RATE as f32;

const N_FFT: usize = 400;
const HOP: usize = 160;
const BINS: usize = N_FFT / 2 + 1;

/// The transforms of one model's mel size (80, or 128 for large-v3), on its device.
pub struct LogMel {
    /// `[N_FFT, 2 * BINS]`: the Hann-windowed cosine and sine bases side by side.
    basis: Tensor,
    /// `[BINS, n_mels]`: Slaney-normalised triangular filters.
    filters: Tensor,
}

impl LogMel {
    /// The transforms for `n_mels` mel bands on `device`.
    ///
    /// # Errors
    /// When the device cannot hold the (small) matrices.
    pub fn new(n_mels: usize, device: &Device) -> candle_core::Result<Self> {
        let basis = Tensor::from_vec(dft_basis(), (N_FFT, 2 * BINS), device)?;
        let filters = Tensor::from_vec(mel_filters(n_mels), (n_mels, BINS), device)?.t()?.contiguous()?;
        Ok(Self { basis, filters })
    }

    /// The log-mel spectrograms `[windows, n_mels, FRAMES]` of windows of up to
    /// [`WINDOW_SAMPLES`] samples each (shorter ones are padded with silence, as Whisper was
    /// trained), scaled as Whisper expects: `log10`, floored 8 below each window's peak, then
    /// `(x + 4) / 4`.
    ///
    /// # Errors
    /// When a tensor operation fails on the device.
    pub fn compute(&self, windows: &[&[f32]]) -> candle_core::Result<Tensor> {
        let mut frames = Vec::with_capacity(windows.len() * FRAMES * N_FFT);
        for window in windows {
            push_frames(window, &mut frames);
        }
        let frames = Tensor::from_vec(frames, (windows.len() * FRAMES, N_FFT), self.basis.device())?;
        let spectrum = frames.matmul(&self.basis)?;
        let power = spectrum.narrow(1, 0, BINS)?.sqr()?.add(&spectrum.narrow(1, BINS, BINS)?.sqr()?)?;
        let mel = power.matmul(&self.filters)?;
        let log = (mel.clamp(1e-10f32, f32::MAX)?.log()? / std::f64::consts::LN_10)?;
        let log = log.reshape((windows.len(), FRAMES, ()))?.transpose(1, 2)?.contiguous()?;
        let peak = log.flatten_from(1)?.max_keepdim(D::Minus1)?.unsqueeze(2)?;
        let floored = log.broadcast_maximum(&(peak - 8.0)?)?;
        (floored + 4.0)? / 4.0
    }
}

/// Appends the `FRAMES` frames of one window: centred frames (the signal reflected by half a
/// frame at each end, as `torch.stft(center=True)` does), the last frame dropped as Whisper does.
fn push_frames(window: &[f32], out: &mut Vec<f32>) {
    let len = window.len().min(WINDOW_SAMPLES);
    let sample = |i: isize| -> f32 {
        // Index into the window zero-padded to WINDOW_SAMPLES, reflected at both ends.
        let reflected = if i < 0 {
            -i
        } else if i >= WINDOW_SAMPLES as isize {
            2 * (WINDOW_SAMPLES as isize - 1) - i
        } else {
            i
        };
        let i = reflected as usize;
        if i < len { window[i] } else { 0.0 }
    };
    let half = (N_FFT / 2) as isize;
    for frame in 0..FRAMES {
        let start = (frame * HOP) as isize - half;
        out.extend((0..N_FFT as isize).map(|k| sample(start + k)));
    }
}

/// `[N_FFT, 2 * BINS]`: periodic Hann window times `cos` and `-sin` of each bin's frequency.
fn dft_basis() -> Vec<f32> {
    let mut basis = vec![0f32; N_FFT * 2 * BINS];
    for k in 0..N_FFT {
        let hann = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * k as f64 / N_FFT as f64).cos();
        for f in 0..BINS {
            let angle = 2.0 * std::f64::consts::PI * ((k * f) % N_FFT) as f64 / N_FFT as f64;
            basis[k * 2 * BINS + f] = (hann * angle.cos()) as f32;
            basis[k * 2 * BINS + BINS + f] = (-hann * angle.sin()) as f32;
        }
    }
    basis
}

/// `[n_mels, BINS]`: the triangular mel filters librosa builds by default (Slaney's mel scale,
/// area-normalised), which Whisper was trained with.
pub fn mel_filters(n_mels: usize) -> Vec<f32> {
    let nyquist = f64::from(SAMPLE_RATE) / 2.0;
    let top = hz_to_mel(nyquist);
    let edges: Vec<f64> = (0..n_mels + 2).map(|i| mel_to_hz(top * i as f64 / (n_mels + 1) as f64)).collect();
    let mut filters = vec![0f32; n_mels * BINS];
    for m in 0..n_mels {
        let (low, centre, high) = (edges[m], edges[m + 1], edges[m + 2]);
        let norm = 2.0 / (high - low);
        for bin in 0..BINS {
            let hz = nyquist * bin as f64 / (BINS - 1) as f64;
            let rising = (hz - low) / (centre - low);
            let falling = (high - hz) / (high - centre);
            filters[m * BINS + bin] = (rising.min(falling).max(0.0) * norm) as f32;
        }
    }
    filters
}

/// Slaney's mel scale: linear below 1 kHz, logarithmic above.
fn hz_to_mel(hz: f64) -> f64 {
    const LINEAR: f64 = 200.0 / 3.0;
    let log_step = 6.4f64.ln() / 27.0;
    if hz < 1000.0 { hz / LINEAR } else { 1000.0 / LINEAR + (hz / 1000.0).ln() / log_step }
}

fn mel_to_hz(mel: f64) -> f64 {
    const LINEAR: f64 = 200.0 / 3.0;
    let log_step = 6.4f64.ln() / 27.0;
    let knee = 1000.0 / LINEAR;
    if mel < knee { mel * LINEAR } else { 1000.0 * ((mel - knee) * log_step).exp() }
}

/// The spectrogram as f32 values on the CPU, for tests.
#[cfg(test)]
fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(candle_core::DType::F32).and_then(|t| t.flatten_all()?.to_vec1()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mel_scale_round_trips_and_bends_at_one_kilohertz() {
        for hz in [0.0, 440.0, 1000.0, 4000.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-6);
        }
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-9);
    }

    #[test]
    fn filters_match_whispers_own_at_known_points() {
        // From `mel_80` in openai-whisper's assets/mel_filters.npz (librosa-built).
        let f = mel_filters(80);
        let peak = |m: usize| {
            let row = &f[m * BINS..(m + 1) * BINS];
            row.iter().enumerate().fold((0, 0f32), |best, (i, w)| if *w > best.1 { (i, *w) } else { best })
        };
        assert!((f[1] - 0.024_862_59).abs() < 1e-7, "{}", f[1]);
        assert!((peak(40).1 - 0.014_735_566).abs() < 1e-7, "{:?}", peak(40));
        assert_eq!(peak(25).0, 24);
        let (bin, weight) = peak(79);
        assert_eq!(bin, 192);
        assert!((weight - 0.003_164_712).abs() < 1e-7, "{weight}");
    }

    #[test]
    fn a_tone_lights_the_band_of_its_frequency() -> candle_core::Result<()> {
        let tone: Vec<f32> = (0..SAMPLE_RATE as usize)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin())
            .collect();
        let mel = LogMel::new(80, &Device::Cpu)?.compute(&[&tone])?;
        assert_eq!(mel.dims(), &[1, 80, FRAMES]);
        let column: Vec<f32> = values(&mel.narrow(2, 50, 1)?);
        let loudest = column.iter().enumerate().fold(0, |best, (i, v)| if *v > column[best] { i } else { best });
        // 1 kHz is mel 15 on Slaney's scale; 80 bands span 0..mel(8 kHz) = 45.2, so band ~25.
        assert!((24..=26).contains(&loudest), "loudest band {loudest}");
        // Past the tone's end the window is silence: the floor, 8 below the peak, scaled.
        let silent = values(&mel.narrow(2, 2000, 1)?);
        let peak = values(&mel).into_iter().fold(f32::MIN, f32::max);
        assert!(silent.iter().all(|v| (v - (peak - 2.0)).abs() < 1e-4));
        Ok(())
    }
}
