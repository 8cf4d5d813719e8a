//! Numeric helpers: tolerant comparisons and crossings, and rounding for details. (The
//! decimal → f64 conversion is [`tickwatch_schema::decimal::to_f64`], re-exported here as
//! `dec_to_f64`: the alerts engine uses the same one.)
//!
//! Signals are decisions on floating-point values, and the same decision must come out of
//! a series processed from its first bar and of one warmed up from its last few hundred
//! (their running sums differ in the last bits). Every threshold test therefore goes
//! through a relative dead band of [`TOL`]: values within it of the threshold count as
//! "on the line", which never flips a state.

use tickwatch_schema::decimal::POW10;
pub use tickwatch_schema::decimal::to_f64 as dec_to_f64;

/// Relative dead band of every comparison a signal makes (1e-9 of the larger operand or
/// of the price scale). Far above the ulp-level drift of running sums (~1e-14), far below
/// anything a trader would call a difference.
pub const TOL: f64 = 1e-9;

/// `x` rounded to 6 significant digits, for the `details` of a signal: enough to read, and
/// short enough that ulp-level differences between two runs do not show.
///
/// The same bits as `(x * 10^d).round() / 10^d` with `d = 5 - floor(log10(|x|))`, but
/// the decimal exponent comes from the binary one and a table of exact powers of ten
/// (`log10` only near a power of ten, where its rounding decides), and the rounding is
/// done without a library call.
pub fn round_sig(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return if x.is_finite() { 0.0 } else { x };
    }
    let digits = 6 - 1 - floor_log10(x.abs());
    let pow = |d: i32| {
        POW10
            .get(d as usize)
            .copied()
            .unwrap_or_else(|| 10f64.powi(d))
    };
    if digits >= 0 {
        let f = pow(digits.min(300));
        round_half_away(x * f) / f
    } else {
        let f = pow(-digits);
        round_half_away(x / f) * f
    }
}

/// `a.log10().floor()` for a positive finite `a`.
fn floor_log10(a: f64) -> i32 {
    // Within 1e-12 (relative) of a power of ten, `log10` may round onto the integer: ask
    // it. Elsewhere its result is at least 4e-13 from an integer, far beyond its error.
    const NEAR: f64 = 1e-12;
    if (1e-22..1e22).contains(&a) {
        // `b` carries `a`'s decimal digits in [1, 1e22] (rounded once if `a` < 1).
        let (b, offset) = if a >= 1.0 { (a, 0) } else { (a * 1e22, -22) };
        // floor(log10(2^e2)) or one less; then one step up if needed.
        let e2 = ((b.to_bits() >> 52) & 0x7ff) as i32 - 1023;
        let mut e = ((e2 * 1233) >> 12).clamp(0, 22);
        if e < 22 && b >= POW10[e as usize + 1] {
            e += 1;
        }
        let lo = POW10[e as usize];
        let near_lo = b < lo * (1.0 + NEAR);
        let near_hi = e < 22 && b > POW10[e as usize + 1] * (1.0 - NEAR);
        if b >= lo && !near_lo && !near_hi {
            return e + offset;
        }
    }
    a.log10().floor() as i32
}

/// `v.round()` (half away from zero, sign of zero kept) without a library call.
#[inline]
fn round_half_away(v: f64) -> f64 {
    // At 2^52 and beyond every f64 is an integer (and NaN, ±inf stay as they are).
    // (`is_nan` too: NaN compares false with everything.)
    if v.is_nan() || v.abs() >= 4_503_599_627_370_496.0 {
        return v;
    }
    let t = (v as i64) as f64; // truncated, exactly
    let r = if v - t >= 0.5 {
        t + 1.0
    } else if v - t <= -0.5 {
        t - 1.0
    } else {
        t
    };
    r.copysign(v)
}

/// Clamps `x` to 0..=1 (NaN counts as 0).
pub fn clamp01(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

/// A score (0–100) from a sum of weighted parts.
pub fn score(x: f64) -> u8 {
    if x.is_nan() {
        return 0;
    }
    x.round().clamp(0.0, 100.0) as u8
}

/// Which side of `b` the value `a` is on: +1 above, -1 below, 0 within the dead band
/// `TOL * scale` (on the line).
pub fn side_of(a: f64, b: f64, scale: f64) -> i8 {
    let band = TOL * scale.abs();
    if a > b + band {
        1
    } else if a < b - band {
        -1
    } else {
        0
    }
}

/// `a >= b`, where "equal within the dead band" counts as meeting the threshold (so a
/// volume exactly twice its average meets "≥ 2×" in every run).
pub fn at_least(a: f64, b: f64) -> bool {
    a >= b - TOL * a.abs().max(b.abs())
}

/// `a <= b` with the same dead band.
pub fn at_most(a: f64, b: f64) -> bool {
    a <= b + TOL * a.abs().max(b.abs())
}

/// A crossing detector with hysteresis: remembers the last side that was clearly above or
/// below, and reports a cross only when the value lands clearly on the other side. Values
/// on the line (within [`TOL`]) change nothing, so noise around an equality never fires.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cross {
    last: i8,
}

/// What a [`Cross`] saw on one bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crossing {
    None,
    Up,
    Down,
}

impl Cross {
    /// Feeds `a` against the level `b`; `scale` sets the dead band.
    pub fn update(&mut self, a: f64, b: f64, scale: f64) -> Crossing {
        let s = side_of(a, b, scale);
        if s == 0 {
            return Crossing::None;
        }
        let was = self.last;
        self.last = s;
        match (was, s) {
            (-1, 1) => Crossing::Up,
            (1, -1) => Crossing::Down,
            _ => Crossing::None,
        }
    }

    /// The last clear side: +1 above, -1 below, 0 never seen.
    pub fn last(&self) -> i8 {
        self.last
    }

    /// Forgets the side (a new session starts).
    pub fn reset(&mut self) {
        self.last = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crossings_ignore_noise_on_the_line() {
        let mut c = Cross::default();
        assert_eq!(c.update(1.0, 2.0, 2.0), Crossing::None);
        assert_eq!(c.update(2.0 + 1e-12, 2.0, 2.0), Crossing::None);
        assert_eq!(c.update(2.0 - 1e-12, 2.0, 2.0), Crossing::None);
        assert_eq!(c.update(2.1, 2.0, 2.0), Crossing::Up);
        assert_eq!(c.update(2.2, 2.0, 2.0), Crossing::None);
        assert_eq!(c.update(1.9, 2.0, 2.0), Crossing::Down);
        assert!(at_least(200.0, 2.0 * 100.000_000_000_01));
        assert_eq!(round_sig(31.234_567_89), 31.2346);
        assert_eq!(round_sig(0.000_123_456_78), 0.000_123_457);
        assert_eq!(score(72.5), 73);
    }

    /// The reference: what `round_sig` computed with `log10`, `floor` and `round`.
    fn round_sig_reference(x: f64) -> f64 {
        if x == 0.0 || !x.is_finite() {
            return if x.is_finite() { 0.0 } else { x };
        }
        let digits = 6 - 1 - x.abs().log10().floor() as i32;
        let pow = |d: i32| {
            POW10
                .get(d as usize)
                .copied()
                .unwrap_or_else(|| 10f64.powi(d))
        };
        if digits >= 0 {
            let f = pow(digits.min(300));
            (x * f).round() / f
        } else {
            let f = pow(-digits);
            (x / f).round() * f
        }
    }

    #[test]
    fn round_sig_matches_its_reference() {
        let check = |x: f64| {
            for v in [x, -x] {
                assert_eq!(
                    round_sig(v).to_bits(),
                    round_sig_reference(v).to_bits(),
                    "{v:e}"
                );
            }
        };
        // Around every power of ten, ulp by ulp, and halfway cases.
        for e in -330..=310 {
            let p: f64 = format!("1e{e}").parse().expect("f64");
            for m in [
                1.0,
                1.000005,
                1.0000049999999,
                9.999995,
                9.9999949999,
                2.5,
                5.0,
            ] {
                let y = p * m;
                let mut z = y;
                for _ in 0..50 {
                    check(z);
                    z = f64::from_bits(z.to_bits() + 1);
                }
                let mut z = y;
                for _ in 0..50 {
                    check(z);
                    z = f64::from_bits(z.to_bits().saturating_sub(1));
                }
            }
        }
        // A pseudo-random sweep over the whole range of magnitudes.
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2_000_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let bits = s & !(1 << 63);
            let x = f64::from_bits(bits);
            if x.is_finite() {
                check(x);
            }
            let y = (s >> 11) as f64 / (1u64 << 53) as f64 * 10f64.powi((s % 40) as i32 - 20);
            check(y);
        }
        for x in [
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            0.5,
            1.5,
            2.5,
            0.049_999_95,
        ] {
            check(x);
        }
    }
}
