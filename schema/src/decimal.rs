//! The one decimal → `f64` conversion: prices and volumes travel as exact decimals, and the
//! engines (signals' indicators, the alert book's level index) compute in `f64`.

use std::io::Write as _;

use rust_decimal::Decimal;

/// Powers of ten that are exact in f64 (10^22 is the largest).
pub const POW10: [f64; 23] = [
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
#[inline]
pub fn to_f64(d: Decimal) -> f64 {
    let u = d.unpack();
    let scale = u.scale as usize;
    if u.hi == 0 && u.mid < (1 << 21) && scale < POW10.len() {
        // The mantissa is below 2^53: exact as i64 and as f64 (no i128 on the way).
        let m = (i64::from(u.mid) << 32) | i64::from(u.lo);
        return if u.negative { -m } else { m } as f64 / POW10[scale];
    }
    to_f64_by_text(d)
}

/// The slow path of [`to_f64`], out of line so that the fast one inlines small.
#[cold]
#[inline(never)]
fn to_f64_by_text(d: Decimal) -> f64 {
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
    d.mantissa() as f64 / 10f64.powi(d.scale() as i32)
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
            let d = crate::history::parse_decimal(text).expect("decimal");
            let want: f64 = text.parse().expect("f64");
            assert_eq!(to_f64(d).to_bits(), want.to_bits(), "{text}");
        }
    }
}
