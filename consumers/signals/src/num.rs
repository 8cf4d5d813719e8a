//! Numeric helpers: exact decimal → f64 conversion, tolerant comparisons and crossings.
//!
//! Signals are decisions on floating-point values, and the same decision must come out of
//! a series processed from its first bar and of one warmed up from its last few hundred
//! (their running sums differ in the last bits). Every threshold test therefore goes
//! through a relative dead band of [`TOL`]: values within it of the threshold count as
//! "on the line", which never flips a state.

use std::io::Write as _;

use rust_decimal::Decimal;

/// Relative dead band of every comparison a signal makes (1e-9 of the larger operand or
/// of the price scale). Far above the ulp-level drift of running sums (~1e-14), far below
/// anything a trader would call a difference.
pub const TOL: f64 = 1e-9;

/// Powers of ten that are exact in f64 (10^22 is the largest).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The f64 nearest to a decimal — the same value Python's `float("…")` or Rust's
/// `"…".parse::<f64>()` gives for its text, so fixtures written by TA-Lib from the same
/// text compare bit for bit.
///
/// Fast path (Clinger): a mantissa below 2^53 and a scale up to 22 are both exact in f64,
/// and one IEEE division of exact operands is correctly rounded. Anything else (rare:
/// 17+ significant digits) goes through the decimal text, without allocating.
pub fn dec_to_f64(d: Decimal) -> f64 {
    let m = d.mantissa();
    let scale = d.scale() as usize;
    if m.unsigned_abs() < (1u128 << 53) && scale < POW10.len() {
        // Through i64: an i128 → f64 conversion is a slow library call.
        return m as i64 as f64 / POW10[scale];
    }
    let mut buf = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    if write!(cursor, "{d}").is_ok() {
        let len = cursor.position() as usize;
        if let Some(v) = std::str::from_utf8(&buf[..len])
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
        {
            return v;
        }
    }
    // Unreachable for rust_decimal's output; keep a value rather than panic.
    m as f64 / 10f64.powi(scale as i32)
}

/// `x` rounded to 6 significant digits, for the `details` of a signal: enough to read, and
/// short enough that ulp-level differences between two runs do not show.
pub fn round_sig(x: f64) -> f64 {
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

/// Clamps `x` to 0..=1 (NaN counts as 0).
pub fn unit(x: f64) -> f64 {
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
pub fn side(a: f64, b: f64, scale: f64) -> i8 {
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
pub fn ge(a: f64, b: f64) -> bool {
    a >= b - TOL * a.abs().max(b.abs())
}

/// `a <= b` with the same dead band.
pub fn le(a: f64, b: f64) -> bool {
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
        let s = side(a, b, scale);
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
    fn decimals_convert_like_text_parsing() {
        for text in [
            "23140.48",
            "0.1",
            "0.128348",
            "1e-05",
            "123456789.12345678",
            "64321.123456789012345678",
            "7",
            "0.000000000000000000000000001",
        ] {
            let d = tickwatch_schema::history::parse_decimal(text).expect("decimal");
            let want: f64 = text.parse().expect("f64");
            assert_eq!(dec_to_f64(d).to_bits(), want.to_bits(), "{text}");
        }
    }

    #[test]
    fn crossings_ignore_noise_on_the_line() {
        let mut c = Cross::default();
        assert_eq!(c.update(1.0, 2.0, 2.0), Crossing::None);
        assert_eq!(c.update(2.0 + 1e-12, 2.0, 2.0), Crossing::None);
        assert_eq!(c.update(2.0 - 1e-12, 2.0, 2.0), Crossing::None);
        assert_eq!(c.update(2.1, 2.0, 2.0), Crossing::Up);
        assert_eq!(c.update(2.2, 2.0, 2.0), Crossing::None);
        assert_eq!(c.update(1.9, 2.0, 2.0), Crossing::Down);
        assert!(ge(200.0, 2.0 * 100.000_000_000_01));
        assert_eq!(round_sig(31.234_567_89), 31.2346);
        assert_eq!(round_sig(0.000_123_456_78), 0.000_123_457);
        assert_eq!(score(72.5), 73);
    }
}
