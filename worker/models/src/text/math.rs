//! Element-wise functions of the BERT encoder, written without branches so that loops over them
//! vectorise: the exact GELU and the exponential of the softmax.

/// The exact GELU, `x Φ(x) = x (1 + erf(x / √2)) / 2`, as `BertModel`'s `gelu_erf` (within a few
/// units in the last place).
#[inline(always)]
pub(super) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `erf(x)` without branches (so that loops over it vectorise): fdlibm's rational form below
/// 0.84375, Abramowitz and Stegun's 7.1.26 above (absolute error under 1.5e-7).
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let z = x * x;
    let p = 1.283_791_7e-1 + z * (-3.250_421e-1 + z * (-2.848_175e-2 + z * (-5.770_270_3e-3 + z * -2.376_301_7e-5)));
    let q =
        1.0 + z * (3.979_172e-1 + z * (6.502_225e-2 + z * (5.081_306e-3 + z * (1.324_947_4e-4 + z * -3.960_228_3e-6))));
    let small = x + x * (p / q);
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152 + t * 1.061_405_4))));
    let large = (1.0 - poly * exp_non_positive(-z)).copysign(x);
    if a < 0.843_75 { small } else { large }
}

/// `e^x` for `x ≤ 0` without branches (Cephes' `expf`: a degree-5 polynomial on the reduced
/// argument, scaled by a power of two built from its bits); `e^-87` below -87.
#[inline(always)]
pub(super) fn exp_non_positive(x: f32) -> f32 {
    // Adding and subtracting 1.5 × 2²³ rounds to the nearest integer without `floor`, which
    // is a library call where the target lacks SSE4.1 (and stops the loop vectorising).
    const ROUND: f32 = 12_582_912.0;
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p =
        ((((1.987_569_1e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5;
    let e = p * r * r + r + 1.0;
    // n is in [-126, 0]: 2^n is a normal float; |r| ≤ ln 2 / 2.
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn the_gelu_matches_candles_exact_one() -> candle_core::Result<()> {
        let xs: Vec<f32> =
            (-40_000..=40_000).map(|i| i as f32 * 2.5e-4).chain([-30.0, -12.0, 15.0, 1e-20, -1e-30]).collect();
        let reference = Tensor::new(xs.as_slice(), &Device::Cpu)?.gelu_erf()?.to_vec1::<f32>()?;
        // Relative to max(1, |x|): erf's 1.5e-7 times |x| / 2, and f32 rounding on both sides.
        let (worst, at) = xs
            .iter()
            .zip(reference)
            .map(|(x, want)| ((gelu(*x) - want).abs() / x.abs().max(1.0), *x))
            .fold((0f32, 0f32), |a, b| if b.0 > a.0 { b } else { a });
        println!("largest GELU difference {worst:.2e} (relative to max(1, |x|)), at x = {at}");
        assert!(worst <= 4e-7, "gelu({at}) differs from candle's by {worst:e} (relative to max(1, |x|))");
        Ok(())
    }

    #[test]
    fn the_exponential_is_accurate_where_softmax_uses_it() {
        for i in 0..=86_000 {
            let x = -(i as f32) * 1e-3;
            let (ours, want) = (exp_non_positive(x), x.exp());
            assert!((ours - want).abs() <= 3e-7 * want.max(f32::MIN_POSITIVE), "exp({x}) = {ours}, want {want}");
        }
        assert_eq!(exp_non_positive(-200.0), exp_non_positive(-87.0));
    }
}
