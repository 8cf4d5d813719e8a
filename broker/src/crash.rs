//! Crash points for the fault suite: with `TICKWATCH_CRASH_AT=<point>:<n>` the process
//! kills itself with SIGKILL the n-th time it passes [`point`]`("<point>")`. A kill -9 from
//! outside hits the middle of a batch's transaction, or the moment after its commit and
//! before its acks, only by luck; these points hit it every time, so the fault suite can
//! prove that nothing is lost or doubled there. Each batched role has two:
//! `<role>.batch.mid-write` (some of the batch's statements executed, nothing committed)
//! and `<role>.batch.written` (committed; outputs not published, deliveries not acked).
//!
//! Unset — always, outside the fault suite — a crash point reads a parsed-once value and
//! returns.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The variable that arms a crash point.
pub const ENV: &str = "TICKWATCH_CRASH_AT";

struct Armed {
    point: String,
    nth: u64,
    passed: AtomicU64,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

fn parse(value: &str) -> Option<Armed> {
    let (point, nth) = value.rsplit_once(':').unwrap_or((value, "1"));
    let nth = nth.trim().parse().ok().filter(|n| *n >= 1)?;
    Some(Armed {
        point: point.trim().to_string(),
        nth,
        passed: AtomicU64::new(0),
    })
}

/// Passes the crash point `name` (e.g. `alerts.batch.mid-write`); the armed one kills
/// the process here.
pub fn point(name: &str) {
    let armed = ARMED.get_or_init(|| {
        let value = std::env::var(ENV).ok()?;
        let armed = parse(&value);
        if armed.is_none() {
            tracing::warn!(
                value,
                "{ENV} is not <point>:<n> (n ≥ 1); no crash point armed"
            );
        }
        armed
    });
    let Some(armed) = armed else {
        return;
    };
    if armed.point != name || armed.passed.fetch_add(1, Ordering::SeqCst) + 1 != armed.nth {
        return;
    }
    tracing::warn!(
        point = name,
        nth = armed.nth,
        "crash point reached: kill -9 of this process ({ENV})"
    );
    // SIGKILL, as an operator's kill -9: no destructor, no goodbye to the broker or the
    // database. abort() is the fallback, should `kill` be missing.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &std::process::id().to_string()])
        .status();
    std::process::abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_point_and_its_count() {
        let armed = parse("alerts.batch.written:3").expect("a point and a count");
        assert_eq!(
            (armed.point.as_str(), armed.nth),
            ("alerts.batch.written", 3)
        );
        assert_eq!(
            parse("signals.batch.mid-write")
                .expect("a point, count 1")
                .nth,
            1
        );
        assert!(parse("x:0").is_none());
        assert!(parse("x:many").is_none());
    }
}
