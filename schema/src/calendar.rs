//! The bar calendar every role shares: a venue's trading day and the bucket of an interval
//! that holds a time. Candles are built on it, and an alert's "once per bar" counts its bars
//! on it too, so the two agree.
//!
//! Buckets follow the venue's trading day: UTC for crypto venues, Asia/Seoul (UTC+9, no
//! daylight saving) for `krx`, so a KRX 1d bucket is one Seoul day. Weekly buckets start on
//! Monday, as the exchanges' do. Shorter buckets are laid on the same local grid.

use crate::wire::Interval;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// Whether a venue name is the Korea Exchange (`krx`, or one of its markets).
pub fn is_krx(venue: &str) -> bool {
    matches!(venue, "krx" | "kospi" | "kosdaq")
}

/// How far east of UTC a venue's trading day starts, in milliseconds.
pub fn utc_offset_ms(venue: &str) -> i64 {
    // Korea has no daylight saving, so a fixed offset is exact.
    if is_krx(venue) { 9 * HOUR_MS } else { 0 }
}

/// The start (epoch ms) of the `interval` bucket holding `ts`, for a trading day that starts
/// `offset_ms` east of UTC.
pub fn bucket_start(ts: i64, interval: Interval, offset_ms: i64) -> i64 {
    let len = interval.as_ms();
    // 1970-01-05 was the first Monday after the epoch.
    let anchor = if interval == Interval::W1 {
        4 * DAY_MS
    } else {
        0
    };
    let local = ts.saturating_add(offset_ms).saturating_sub(anchor);
    local.div_euclid(len) * len + anchor - offset_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday_and_krx_days_at_seoul_midnight() {
        // 2023-03-01 (a Wednesday) 12:00 UTC: the week began on Monday 27 February.
        let ts = 1_677_672_000_000;
        assert_eq!(bucket_start(ts, Interval::W1, 0), 1_677_456_000_000);
        // 21:00 KST on 1 March is in the Seoul day that began at 15:00 UTC on 28 February.
        assert_eq!(
            bucket_start(ts, Interval::D1, utc_offset_ms("krx")),
            1_677_596_400_000
        );
        assert_eq!(bucket_start(ts, Interval::D1, 0), 1_677_628_800_000);
    }
}
