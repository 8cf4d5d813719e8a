//! Engine tests: every condition and trigger mode with its edges, versioned updates racing
//! with ticks, redelivery, candles, subscriptions, restarts (restored last firings, priming
//! with the last evaluated prices), and the indexed engine against the naive evaluator on
//! random scenarios.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use rust_decimal::Decimal;
use tickwatch_schema::expr::Series;
use tickwatch_schema::rule::{AlertRule, Condition, RuleSpec, Subscription, Trigger};
use tickwatch_schema::wire::{
    AlertTriggered, Candle, Control, Grade, Interval, Signal, SignalKind, Tick, deterministic_id,
};
use uuid::Uuid;

use super::*;
use crate::bench::SplitMix;
use crate::firing::Direction;

const T0: i64 = 1_763_762_400_000;
const SEC: i64 = 1_000;

fn d(text: &str) -> Decimal {
    text.parse().expect("a test decimal")
}

fn engine_with(hysteresis: &str) -> AlertEngine {
    AlertEngine::new(AlertsConfig {
        hysteresis_pct: d(hysteresis),
        ..AlertsConfig::default()
    })
    .expect("a valid configuration")
}

/// No hysteresis: TradingView behaviour.
fn plain() -> AlertEngine {
    engine_with("0")
}

fn spec(condition: Condition) -> RuleSpec {
    let mut s = RuleSpec::price("binance", "BTCUSDT", condition, d("100"));
    if condition.is_channel() {
        s.threshold = None;
        s.low = Some(d("100"));
        s.high = Some(d("110"));
    }
    if condition.is_moving_pct() {
        s.threshold = None;
        s.pct = Some(d("5"));
        s.window_s = Some(60);
    }
    if condition.is_moving_amount() {
        s.threshold = Some(d("5"));
        s.window_s = Some(60);
    }
    s
}

fn every_time(mut s: RuleSpec) -> RuleSpec {
    s.trigger = Trigger::EveryTime;
    s
}

fn rule(id: i64, spec: RuleSpec) -> AlertRule {
    AlertRule {
        id,
        user_id: 7,
        spec,
        active: true,
        version: 1,
        created_at: T0,
        last_fired_at: None,
    }
}

fn versioned(id: i64, version: i64, spec: RuleSpec) -> AlertRule {
    AlertRule {
        version,
        ..rule(id, spec)
    }
}

fn upsert(rule: AlertRule) -> Control {
    Control::RuleUpserted { rule }
}

fn add(e: &mut AlertEngine, r: AlertRule) {
    let applied = e.apply(&upsert(r));
    assert!(
        matches!(
            applied,
            Applied::RuleAdded { .. } | Applied::RuleReplaced { .. }
        ),
        "{applied:?}"
    );
}

fn tick_at(price: &str, ts: i64) -> Tick {
    Tick {
        venue: "binance".into(),
        symbol: "BTCUSDT".into(),
        price: d(price),
        qty: Decimal::ONE,
        ts,
        trade_id: None,
    }
}

/// Feeds prices one second apart from `start`; returns the firings at each.
fn feed_firings(e: &mut AlertEngine, start: i64, prices: &[&str]) -> Vec<Vec<Firing>> {
    prices
        .iter()
        .zip(0_i64..)
        .map(|(p, i)| e.process_tick(&tick_at(p, start + i * SEC)))
        .collect()
}

/// The indexes of the prices at which something fired.
fn fired_at(e: &mut AlertEngine, start: i64, prices: &[&str]) -> Vec<usize> {
    feed_firings(e, start, prices)
        .iter()
        .enumerate()
        .filter(|(_, f)| !f.is_empty())
        .map(|(i, _)| i)
        .collect()
}

fn only(firings: &[Firing]) -> &Firing {
    assert_eq!(firings.len(), 1, "{firings:?}");
    &firings[0]
}

// ---- conditions -------------------------------------------------------------------------

#[test]
fn crossing_up_fires_from_below_to_at_or_above() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::CrossingUp))));
    let out = feed_firings(
        &mut e,
        T0,
        &["99", "100", "101", "100", "99.5", "100", "100"],
    );
    let at: Vec<usize> = (0..out.len()).filter(|&i| !out[i].is_empty()).collect();
    // 99 → 100 reaches the threshold (q < t ≤ p); from exactly 100 upwards is no cross.
    assert_eq!(at, vec![1, 5]);
    let f = only(&out[1]);
    assert_eq!(f.rule_id, 1);
    assert_eq!(f.user_id, 7);
    assert_eq!(f.condition, Condition::CrossingUp);
    assert_eq!(f.direction, Direction::Up);
    assert_eq!(f.threshold, d("100"));
    assert_eq!(f.price, d("100"));
    assert_eq!(f.ts, T0 + SEC);
    assert_eq!(&*f.venue, "binance");
    assert_eq!(&*f.symbol, "BTCUSDT");
    assert!(!f.disable_rule);
}

#[test]
fn crossing_down_fires_from_above_to_at_or_below() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::CrossingDown))));
    assert_eq!(
        fired_at(&mut e, T0, &["101", "100", "99", "100.5", "100"]),
        vec![1, 4]
    );
}

#[test]
fn crossing_fires_both_ways_like_tradingview_without_hysteresis() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::Crossing))));
    let out = feed_firings(&mut e, T0, &["99", "100", "101", "100", "99", "101", "99"]);
    let dirs: Vec<(usize, Direction)> = out
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.first().map(|f| (i, f.direction)))
        .collect();
    assert_eq!(
        dirs,
        vec![
            (1, Direction::Up),
            (3, Direction::Down),
            (5, Direction::Up),
            (6, Direction::Down)
        ]
    );
}

#[test]
fn the_first_price_after_a_rule_is_created_is_not_a_cross() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::CrossingUp))));
    // First price exactly at the threshold, then above: neither is a cross.
    assert_eq!(fired_at(&mut e, T0, &["100", "101"]), Vec::<usize>::new());

    // A rule added while the symbol already has a price: the move that spans its creation
    // does not count either.
    let mut e = plain();
    let mut far = every_time(spec(Condition::CrossingDown));
    far.threshold = Some(d("50"));
    add(&mut e, rule(9, far));
    assert!(e.process_tick(&tick_at("90", T0)).is_empty());
    add(&mut e, rule(1, every_time(spec(Condition::CrossingUp))));
    assert!(e.process_tick(&tick_at("110", T0 + SEC)).is_empty());
    assert_eq!(fired_at(&mut e, T0 + 2 * SEC, &["90", "110"]), vec![1]);
}

#[test]
fn greater_than_fires_on_the_first_true_evaluation_then_after_rearming() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::GreaterThan))));
    // Strictly greater: exactly 100 is false (and re-arms).
    assert_eq!(
        fired_at(&mut e, T0, &["101", "102", "100", "100.5", "99", "101"]),
        vec![0, 3, 5]
    );
}

#[test]
fn less_than_is_the_mirror() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::LessThan))));
    assert_eq!(
        fired_at(&mut e, T0, &["99", "100", "99.5", "101", "98"]),
        vec![0, 2, 4]
    );
}

#[test]
fn entering_channel_edges_and_a_gap_over_the_channel() {
    let mut e = plain();
    add(
        &mut e,
        rule(1, every_time(spec(Condition::EnteringChannel))),
    );
    let out = feed_firings(&mut e, T0, &["95", "100", "105", "111", "110", "95", "120"]);
    let fired: Vec<(usize, Decimal, Direction)> = out
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.first().map(|f| (i, f.threshold, f.direction)))
        .collect();
    assert_eq!(
        fired,
        vec![
            // Into [100, 110] at its inclusive low edge.
            (1, d("100"), Direction::Up),
            // Back in from above at the inclusive high edge.
            (4, d("110"), Direction::Down),
            // 95 → 120 jumps over the whole channel: the path entered it (at the low bound).
            (6, d("100"), Direction::Up),
        ]
    );
    let f = out[1].first().expect("a firing");
    assert_eq!((f.low, f.high), (Some(d("100")), Some(d("110"))));
}

#[test]
fn exiting_channel_edges_and_gaps() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::ExitingChannel))));
    let out = feed_firings(
        &mut e,
        T0,
        &["105", "110", "110.5", "109", "99.99", "120", "95"],
    );
    let fired: Vec<(usize, Decimal)> = out
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.first().map(|f| (i, f.threshold)))
        .collect();
    // Exactly 110 is still inside; 120 after 99.99 and 95 after 120 jump over the channel.
    assert_eq!(
        fired,
        vec![(2, d("110")), (4, d("100")), (5, d("110")), (6, d("100"))]
    );
}

#[test]
fn a_gap_over_a_channel_fires_both_entering_and_exiting() {
    let mut e = plain();
    add(&mut e, rule(1, spec(Condition::EnteringChannel)));
    add(&mut e, rule(2, spec(Condition::ExitingChannel)));
    let out = feed_firings(&mut e, T0, &["95", "120"]);
    let fired: Vec<(i64, Decimal)> = out[1].iter().map(|f| (f.rule_id, f.threshold)).collect();
    assert_eq!(fired, vec![(1, d("100")), (2, d("110"))]);
}

#[test]
fn moving_up_measures_against_the_price_one_window_ago() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::MovingUpPct))));
    let mut at = |price: &str, s: i64| e.process_tick(&tick_at(price, T0 + s * SEC));
    assert!(at("100", 0).is_empty());
    assert!(at("103", 30).is_empty());
    // Reference at T0+0 (the newest price at or before now − 60 s): +4 %.
    assert!(at("104", 60).is_empty());
    // +5 % exactly fires (moved up by 5 % or more).
    let f = at("105", 61);
    let f = only(&f);
    assert_eq!(f.change_pct, Some(d("5")));
    assert_eq!(
        (f.pct, f.window_s, f.threshold),
        (Some(d("5")), Some(60), d("5"))
    );
    // Reference now 103 (T0+30): +2.9 % re-arms; then against 106 (T0+90): +5.66 % fires.
    assert!(at("106", 90).is_empty());
    assert_eq!(at("112", 150).len(), 1);
}

#[test]
fn moving_down_and_a_new_rule_reading_an_existing_history() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::MovingDownPct))));
    assert!(e.process_tick(&tick_at("100", T0)).is_empty());
    assert!(e.process_tick(&tick_at("96", T0 + 30 * SEC)).is_empty());
    let f = e.process_tick(&tick_at("95", T0 + 61 * SEC));
    assert_eq!(only(&f).change_pct, Some(d("-5")));
    assert_eq!(only(&f).direction, Direction::Down);

    // A rule joining a window that already has history is a state rule: it fires on its
    // first evaluation if true. Reference at T0+31 s is 96 (T0+30 s): +4.06 % ≥ 4 %.
    let mut up = spec(Condition::MovingUpPct);
    up.pct = Some(d("4"));
    add(&mut e, rule(2, up));
    let f = e.process_tick(&tick_at("99.9", T0 + 91 * SEC));
    assert_eq!(only(&f).rule_id, 2);
}

#[test]
fn inside_channel_is_a_state_that_rearms_once_outside() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::InsideChannel))));
    let out = feed_firings(
        &mut e,
        T0,
        &["105", "107", "111", "110", "95", "99.99", "100", "120"],
    );
    let fired: Vec<(usize, Decimal, Direction)> = out
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.first().map(|f| (i, f.threshold, f.direction)))
        .collect();
    // True at once (a state); 107 is still inside (no re-arm); out at 111 and back in at
    // exactly 110 (inclusive); out at 95, in at exactly 100. Reported at the nearer bound.
    assert_eq!(
        fired,
        vec![
            (0, d("110"), Direction::Down),
            (3, d("110"), Direction::Down),
            (6, d("100"), Direction::Up),
        ]
    );
    let f = out[0].first().expect("a firing");
    assert_eq!((f.low, f.high), (Some(d("100")), Some(d("110"))));
}

#[test]
fn outside_channel_fires_on_each_side_and_rearms_back_inside() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::OutsideChannel))));
    let out = feed_firings(
        &mut e,
        T0,
        &["99", "98", "100", "105", "110.01", "112", "109", "95"],
    );
    let fired: Vec<(usize, Decimal, Direction)> = out
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.first().map(|f| (i, f.threshold, f.direction)))
        .collect();
    assert_eq!(
        fired,
        vec![
            (0, d("100"), Direction::Down),
            (4, d("110"), Direction::Up),
            (7, d("100"), Direction::Down),
        ]
    );
}

#[test]
fn moving_up_and_down_measure_an_amount_in_price_units() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::MovingUp))));
    add(&mut e, rule(2, every_time(spec(Condition::MovingDown))));
    let mut at = |price: &str, s: i64| e.process_tick(&tick_at(price, T0 + s * SEC));
    assert!(at("100", 0).is_empty());
    assert!(at("103", 30).is_empty());
    // +4 against T0's 100: under the amount of 5.
    assert!(at("104", 60).is_empty());
    // +5 exactly fires (moved up by 5 or more).
    let f = at("105", 61);
    let f = only(&f);
    assert_eq!((f.rule_id, f.change, f.change_pct), (1, Some(d("5")), None));
    assert_eq!((f.pct, f.window_s, f.threshold), (None, Some(60), d("5")));
    // Against 105 (T0+61): −5.5 fires the fall.
    let f = at("99.5", 125);
    let f = only(&f);
    assert_eq!((f.rule_id, f.change), (2, Some(d("-5.5"))));
    assert_eq!(f.direction, Direction::Down);
}

#[test]
fn amount_and_percentage_rules_of_one_window_are_measured_apart() {
    // At a price of 1 000, a move of 5 is 0.5 %: the 5 % rule must not take it for 5.
    let mut e = plain();
    let mut pct = every_time(spec(Condition::MovingUpPct));
    pct.window_s = Some(60);
    add(&mut e, rule(1, pct));
    add(&mut e, rule(2, every_time(spec(Condition::MovingUp))));
    assert!(e.process_tick(&tick_at("1000", T0)).is_empty());
    let f = e.process_tick(&tick_at("1005", T0 + 10 * SEC));
    assert_eq!(only(&f).rule_id, 2);
    let f = e.process_tick(&tick_at("1050", T0 + 20 * SEC));
    assert_eq!(only(&f).rule_id, 1);
}

// ---- trigger modes ----------------------------------------------------------------------

#[test]
fn once_fires_once_and_disables_the_rule() {
    let mut e = plain();
    add(&mut e, rule(1, spec(Condition::CrossingUp)));
    let out = feed_firings(&mut e, T0, &["99", "100"]);
    let f = only(&out[1]);
    assert!(f.disable_rule);
    assert_eq!(f.rule_version, 1);
    assert!(!e.has_rule(1));
    assert_eq!(e.rule_count(), 0);
    // The tombstone keeps the version: a replayed upsert of it cannot resurrect the rule.
    assert_eq!(e.rule_version(1), Some(1));
    assert!(matches!(
        e.apply(&upsert(rule(1, spec(Condition::CrossingUp)))),
        Applied::Stale {
            id: 1,
            held: 1,
            got: 1
        }
    ));
    assert_eq!(
        fired_at(&mut e, T0 + 10 * SEC, &["99", "100"]),
        Vec::<usize>::new()
    );
}

#[test]
fn once_per_bar_fires_at_most_once_per_bucket() {
    let mut e = plain();
    let mut s = spec(Condition::CrossingUp);
    s.trigger = Trigger::OncePerBar;
    s.interval = Some(Interval::M1);
    add(&mut e, rule(1, s));
    // T0 is a minute boundary. The cross at +30 s is in the same bar as the one at +10 s.
    let ticks = [
        ("99", 0),
        ("100", 10),
        ("99", 20),
        ("100", 30),
        ("99", 40),
        ("100", 61),
    ];
    let fired: Vec<i64> = ticks
        .iter()
        .filter(|(p, s)| !e.process_tick(&tick_at(p, T0 + s * SEC)).is_empty())
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(fired, vec![10, 61]);
}

#[test]
fn bars_follow_the_candles_calendar() {
    // A weekly bar starts on Monday 00:00 UTC, as the weekly candle does: Wednesday's and
    // Sunday's firings share a bar, Monday's is a new one.
    let wednesday = 1_677_672_000_000; // 2023-03-01 12:00 UTC
    let day = 86_400 * SEC;
    let mut e = plain();
    let mut s = spec(Condition::Crossing);
    s.trigger = Trigger::OncePerBar;
    s.interval = Some(Interval::W1);
    add(&mut e, rule(1, s));
    let ticks = [
        ("99", wednesday),
        ("101", wednesday + SEC),
        ("99", wednesday + 4 * day),
        ("101", wednesday + 4 * day + SEC),
        ("99", wednesday + 5 * day - 12 * 3_600 * SEC + SEC),
    ];
    let fired: Vec<usize> = ticks
        .iter()
        .enumerate()
        .filter(|(_, (p, ts))| !e.process_tick(&tick_at(p, *ts)).is_empty())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        fired,
        vec![1, 4],
        "Sunday is Wednesday's week; Monday starts one"
    );

    // A KRX day is the Seoul day: 14:59 UTC and 15:00 UTC are two days.
    let mut k = plain();
    let mut s = RuleSpec::price("krx", "005930", Condition::Crossing, d("70000"));
    s.trigger = Trigger::OncePerBar;
    s.interval = Some(Interval::D1);
    add(&mut k, rule(2, s));
    let seoul_midnight = 1_677_596_400_000; // 2023-03-01 00:00 KST
    let krx = |price: &str, ts: i64| Tick {
        venue: "krx".into(),
        symbol: "005930".into(),
        ..tick_at(price, ts)
    };
    assert!(
        k.process_tick(&krx("69900", seoul_midnight - 120 * SEC))
            .is_empty()
    );
    assert_eq!(
        k.process_tick(&krx("70100", seoul_midnight - 60 * SEC))
            .len(),
        1
    );
    assert_eq!(k.process_tick(&krx("69900", seoul_midnight)).len(), 1);
}

#[test]
fn a_state_rule_held_back_by_its_bar_fires_when_the_next_bar_opens_if_still_true() {
    let mut e = plain();
    let mut s = spec(Condition::GreaterThan);
    s.trigger = Trigger::OncePerBar;
    s.interval = Some(Interval::M1);
    add(&mut e, rule(1, s));
    let ticks = [
        ("101", 0),
        ("99", 10),
        ("101", 20),
        ("101.5", 59),
        ("101.2", 60),
        ("101.3", 61),
    ];
    let fired: Vec<i64> = ticks
        .iter()
        .filter(|(p, s)| !e.process_tick(&tick_at(p, T0 + s * SEC)).is_empty())
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(fired, vec![0, 60]);
}

#[test]
fn every_time_respects_the_cooldown() {
    let mut e = plain();
    let mut s = every_time(spec(Condition::CrossingUp));
    s.cooldown_s = 60;
    add(&mut e, rule(1, s));
    // The cross at +3 s is inside the cooldown and is dropped; +61 s is exactly its end.
    let ticks = [
        ("99", 0),
        ("100", 1),
        ("99", 2),
        ("100", 3),
        ("99", 60),
        ("100", 61),
    ];
    let fired: Vec<i64> = ticks
        .iter()
        .filter(|(p, s)| !e.process_tick(&tick_at(p, T0 + s * SEC)).is_empty())
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(fired, vec![1, 61]);

    // A state rule still true when the cooldown ends fires then.
    let mut e = plain();
    let mut s = every_time(spec(Condition::GreaterThan));
    s.cooldown_s = 60;
    add(&mut e, rule(1, s));
    let ticks = [
        ("101", 0),
        ("99", 10),
        ("101", 20),
        ("102", 30),
        ("101", 60),
    ];
    let fired: Vec<i64> = ticks
        .iter()
        .filter(|(p, s)| !e.process_tick(&tick_at(p, T0 + s * SEC)).is_empty())
        .map(|(_, s)| *s)
        .collect();
    assert_eq!(fired, vec![0, 60]);
}

#[test]
fn an_expired_rule_never_fires_and_is_dropped() {
    let mut e = plain();
    let mut s = every_time(spec(Condition::CrossingUp));
    s.expires_at = Some(T0 + 10 * SEC);
    add(&mut e, rule(1, s));
    let ticks = [("99", 0), ("100", 5), ("99", 6), ("100", 10)];
    let fired: Vec<i64> = ticks
        .iter()
        .filter(|(p, s)| !e.process_tick(&tick_at(p, T0 + s * SEC)).is_empty())
        .map(|(_, s)| *s)
        .collect();
    // At exactly `expires_at` the rule no longer fires.
    assert_eq!(fired, vec![5]);
    assert!(!e.has_rule(1));
    assert_eq!(e.take_expired(), vec![1]);
    assert_eq!(e.rule_version(1), Some(1));

    // A symbol that stops trading: the adapter's clock expires its rules.
    let mut s = spec(Condition::CrossingUp);
    s.symbol = "ETHUSDT".into();
    s.expires_at = Some(T0 + 5 * SEC);
    add(&mut e, rule(2, s));
    assert!(e.expire(T0 + 4 * SEC).is_empty());
    assert_eq!(e.expire(T0 + 5 * SEC), vec![2]);
    assert_eq!(e.rule_count(), 0);
}

#[test]
fn hysteresis_stops_a_wobble_from_flooding() {
    let wobble = [
        "99", "100.01", "99.99", "100.01", "99.95", "100.02", "99.9", "100.01",
    ];
    // Without hysteresis every wobble across 100 fires.
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::CrossingUp))));
    assert_eq!(fired_at(&mut e, T0, &wobble), vec![1, 3, 5, 7]);
    // With the default 0.1 %, the rule re-arms only at 99.9 (at or below).
    let mut e = engine_with("0.1");
    add(&mut e, rule(1, every_time(spec(Condition::CrossingUp))));
    assert_eq!(fired_at(&mut e, T0, &wobble), vec![1, 7]);
    // A rule's own band wins over the default.
    let mut e = engine_with("0.1");
    let mut s = every_time(spec(Condition::CrossingUp));
    s.hysteresis_pct = Some(d("1"));
    add(&mut e, rule(1, s));
    assert_eq!(
        fired_at(&mut e, T0, &["99", "100", "99.5", "100", "99", "100"]),
        vec![1, 5]
    );
}

#[test]
fn hysteresis_on_a_two_way_crossing() {
    let mut e = engine_with("0.1");
    add(&mut e, rule(1, every_time(spec(Condition::Crossing))));
    let out = feed_firings(
        &mut e,
        T0,
        &["99", "100.01", "99.99", "100.01", "99.99", "101", "99"],
    );
    let fired: Vec<(usize, Direction)> = out
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.first().map(|f| (i, f.direction)))
        .collect();
    // One firing for the wobble inside ±0.1 %; a crossing that lands beyond the band is
    // real and re-arms at once, so the way back down fires too.
    assert_eq!(
        fired,
        vec![(1, Direction::Up), (5, Direction::Up), (6, Direction::Down)]
    );
}

// ---- ordering, staleness, redelivery ------------------------------------------------------

#[test]
fn stale_ticks_are_ignored() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::CrossingUp))));
    assert!(e.process_tick(&tick_at("99", T0)).is_empty());
    assert!(e.process_tick(&tick_at("99.5", T0 + 10 * SEC)).is_empty());
    assert!(e.process_tick(&tick_at("101", T0 + 5 * SEC)).is_empty());
    assert_eq!(e.process_tick(&tick_at("100", T0 + 11 * SEC)).len(), 1);
}

#[test]
fn a_redelivered_tick_returns_the_same_firing_ids() {
    let mut e = plain();
    add(&mut e, rule(1, spec(Condition::CrossingUp)));
    add(&mut e, rule(2, every_time(spec(Condition::GreaterThan))));
    let traded = |price: &str, ts: i64, id: &str| Tick {
        trade_id: Some(id.into()),
        ..tick_at(price, ts)
    };
    assert_eq!(e.process_tick(&traded("99", T0, "1")).len(), 0);
    let first = e.process_tick(&traded("101", T0 + SEC, "2"));
    assert_eq!(first.len(), 2);
    assert_eq!(
        first[0].id,
        deterministic_id(T0 + SEC, &["alert", "1", "2"]),
        "{first:?}"
    );
    // The `once` rule is gone, yet the redelivery gives the same firings (same ids, and
    // still `disable_rule`).
    let again = e.process_tick(&traded("101", T0 + SEC, "2"));
    assert_eq!(again, first);
    // A different trade at the same millisecond is a new tick, not a redelivery.
    assert!(e.process_tick(&traded("101", T0 + SEC, "3")).is_empty());
    // The first tick redelivered now is older than the last: ignored.
    assert!(e.process_tick(&traded("101", T0 + SEC, "2")).is_empty());

    // Without a trade id the identity is the time and the price.
    let mut e = plain();
    add(&mut e, rule(1, spec(Condition::CrossingUp)));
    e.process_tick(&tick_at("99", T0));
    let first = e.process_tick(&tick_at("100.50", T0 + SEC));
    let ts = (T0 + SEC).to_string();
    assert_eq!(
        only(&first).id,
        deterministic_id(T0 + SEC, &["alert", "1", &ts, "100.5"])
    );
    assert_eq!(e.process_tick(&tick_at("100.50", T0 + SEC)), first);
}

// ---- updates racing with ticks ------------------------------------------------------------

#[test]
fn versions_order_upserts_and_deletes() {
    let mut e = plain();
    let base = every_time(spec(Condition::CrossingUp));
    assert!(matches!(
        e.apply(&upsert(versioned(1, 1, base.clone()))),
        Applied::RuleAdded { rule_id: 1 }
    ));
    assert!(matches!(
        e.apply(&upsert(versioned(1, 1, base.clone()))),
        Applied::Stale { .. }
    ));
    let mut moved = base.clone();
    moved.threshold = Some(d("105"));
    assert!(matches!(
        e.apply(&upsert(versioned(1, 2, moved.clone()))),
        Applied::RuleReplaced { rule_id: 1 }
    ));
    // A late, older upsert does not overwrite the newer rule.
    assert!(matches!(
        e.apply(&upsert(versioned(1, 1, base.clone()))),
        Applied::Stale {
            held: 2,
            got: 1,
            ..
        }
    ));
    // An older delete does not remove it either.
    let delete = |version| Control::RuleDeleted {
        rule_id: 1,
        user_id: 7,
        version,
    };
    assert!(matches!(e.apply(&delete(1)), Applied::Stale { .. }));
    assert!(e.has_rule(1));
    // Delete at version 3, then a stale upsert (v2, v3) cannot resurrect it; v4 can.
    assert!(matches!(
        e.apply(&delete(3)),
        Applied::RuleRemoved {
            rule_id: 1,
            was_live: true
        }
    ));
    assert!(matches!(
        e.apply(&upsert(versioned(1, 2, moved.clone()))),
        Applied::Stale { .. }
    ));
    assert!(matches!(
        e.apply(&upsert(versioned(1, 3, moved.clone()))),
        Applied::Stale { .. }
    ));
    assert!(!e.has_rule(1));
    assert!(matches!(
        e.apply(&upsert(versioned(1, 4, moved.clone()))),
        Applied::RuleAdded { .. }
    ));
    // Deactivating is a removal with a tombstone.
    let mut inactive = versioned(1, 5, moved.clone());
    inactive.active = false;
    assert!(matches!(
        e.apply(&upsert(inactive)),
        Applied::RuleRemoved { was_live: true, .. }
    ));
    assert!(matches!(
        e.apply(&upsert(versioned(1, 5, moved.clone()))),
        Applied::Stale { .. }
    ));
    // A delete for a rule never seen still leaves a tombstone.
    assert!(matches!(
        e.apply(&Control::RuleDeleted {
            rule_id: 99,
            user_id: 7,
            version: 2
        }),
        Applied::RuleRemoved {
            was_live: false,
            ..
        }
    ));
    assert!(matches!(
        e.apply(&upsert(versioned(99, 2, base))),
        Applied::Stale { .. }
    ));
    assert!(matches!(
        e.apply(&Control::Halt { by_chat: None }),
        Applied::NotForAlerts
    ));
}

#[test]
fn an_invalid_update_is_rejected_and_the_held_rule_stays() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::CrossingUp))));
    let mut broken = spec(Condition::CrossingUp);
    broken.threshold = None;
    assert!(matches!(
        e.apply(&upsert(versioned(1, 2, broken))),
        Applied::Rejected { id: 1, .. }
    ));
    assert_eq!(e.rule_version(1), Some(1));
    assert_eq!(fired_at(&mut e, T0, &["99", "100"]), vec![1]);
}

#[test]
fn an_update_between_ticks_starts_the_rule_afresh() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::CrossingUp))));
    assert!(e.process_tick(&tick_at("99", T0)).is_empty());
    let mut moved = every_time(spec(Condition::CrossingUp));
    moved.threshold = Some(d("105"));
    add(&mut e, versioned(1, 2, moved));
    // The old threshold is gone, and the first price after the update is no cross.
    assert!(e.process_tick(&tick_at("106", T0 + SEC)).is_empty());
    assert!(e.process_tick(&tick_at("104", T0 + 2 * SEC)).is_empty());
    let f = e.process_tick(&tick_at("105", T0 + 3 * SEC));
    assert_eq!(only(&f).threshold, d("105"));
    assert_eq!(only(&f).rule_version, 2);
}

#[test]
fn deleting_many_rules_compacts_the_index() {
    let mut e = plain();
    for id in 1..=500 {
        let mut s = every_time(spec(Condition::CrossingUp));
        s.threshold = Some(Decimal::from(100 + id));
        add(&mut e, rule(id, s));
    }
    for id in 1..=400 {
        e.apply(&Control::RuleDeleted {
            rule_id: id,
            user_id: 7,
            version: 2,
        });
    }
    assert_eq!(e.rule_count(), 100);
    for id in 501..=800 {
        let mut s = every_time(spec(Condition::CrossingUp));
        s.threshold = Some(Decimal::from(id - 400));
        add(&mut e, rule(id, s));
    }
    e.process_tick(&tick_at("50", T0));
    let f = e.process_tick(&tick_at("1000", T0 + SEC));
    let mut ids: Vec<i64> = f.iter().map(|f| f.rule_id).collect();
    ids.sort_unstable();
    let want: Vec<i64> = (401..=800).collect();
    assert_eq!(ids, want);
}

// ---- load ---------------------------------------------------------------------------------

#[test]
fn load_reports_and_a_reload_replaces_the_book_but_keeps_runtime_state() {
    let mut e = engine_with("0.1");
    let mut broken = spec(Condition::CrossingUp);
    broken.threshold = None;
    let mut inactive = rule(3, spec(Condition::CrossingUp));
    inactive.active = false;
    let report = e.load(
        vec![
            rule(1, every_time(spec(Condition::CrossingUp))),
            rule(2, broken),
            inactive,
            rule(4, every_time(spec(Condition::CrossingDown))),
        ],
        Vec::new(),
    );
    assert_eq!(report.rules, 2);
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].0, 2);
    assert_eq!(e.rule_version(3), Some(1));
    assert!(!e.has_rule(3));

    // Rule 1 fires and is disarmed (hysteresis 0.1 %).
    assert_eq!(fired_at(&mut e, T0, &["99", "100"]), vec![1]);
    // Reload: rule 1 unchanged, rule 4 gone from the database, rule 5 new.
    let report = e.load(
        vec![
            rule(1, every_time(spec(Condition::CrossingUp))),
            rule(5, every_time(spec(Condition::CrossingDown))),
        ],
        Vec::new(),
    );
    assert_eq!((report.rules, report.stale, report.removed), (2, 1, 1));
    assert!(!e.has_rule(4));
    // Rule 1 kept its state: still disarmed, so the wobble does not fire it.
    let out = feed_firings(&mut e, T0 + 2 * SEC, &["99.95", "100.05"]);
    assert!(out.iter().all(Vec::is_empty), "{out:?}");
}

// ---- restarts -----------------------------------------------------------------------------

/// What the database keeps across a restart: each rule's last firing (the adapter records
/// it with every stored firing).
fn record(last_fired: &mut HashMap<i64, i64>, firings: &[Firing]) {
    for f in firings {
        let at = last_fired.entry(f.rule_id).or_insert(f.ts);
        *at = (*at).max(f.ts);
    }
}

/// A restarted engine: loads the rules `old` still holds, with their last firing as the
/// database has it, and is primed with `old`'s last prices.
fn restarted(
    old: &AlertEngine,
    hysteresis: &str,
    rules: &[AlertRule],
    last_fired: &HashMap<i64, i64>,
) -> AlertEngine {
    let mut new = engine_with(hysteresis);
    let held = rules
        .iter()
        .filter(|r| old.has_rule(r.id))
        .map(|r| AlertRule {
            last_fired_at: last_fired.get(&r.id).copied(),
            ..r.clone()
        });
    new.load(held, Vec::new());
    for (venue, symbol, price, ts) in old.last_prices() {
        new.prime(&venue, &symbol, price, ts);
    }
    new
}

fn traded(price: &str, ts: i64, trade: &str) -> Tick {
    Tick {
        trade_id: Some(trade.into()),
        ..tick_at(price, ts)
    }
}

#[test]
fn last_prices_reports_every_evaluated_symbol() {
    let mut e = plain();
    add(&mut e, rule(1, spec(Condition::CrossingUp)));
    let mut eth = spec(Condition::CrossingUp);
    eth.symbol = "ETHUSDT".into();
    add(&mut e, rule(2, eth));
    assert!(e.last_prices().is_empty());
    e.process_tick(&tick_at("99", T0));
    e.process_tick(&tick_at("99.50", T0 + SEC));
    // A stale tick does not move the last price.
    e.process_tick(&tick_at("98", T0));
    assert_eq!(
        e.last_prices(),
        vec![("binance".into(), "BTCUSDT".into(), d("99.50"), T0 + SEC)]
    );
}

#[test]
fn a_restart_primed_with_the_last_prices_fires_the_crossing_in_between() {
    let rules = vec![
        rule(1, every_time(spec(Condition::CrossingUp))),
        rule(2, spec(Condition::EnteringChannel)),
        rule(3, every_time(spec(Condition::CrossingDown))),
    ];
    let mut a = engine_with("0.1");
    a.load(rules.clone(), Vec::new());
    let mut last_fired = HashMap::new();
    for (i, p) in ["99", "99.5"].iter().enumerate() {
        let out = a.process_tick(&traded(p, T0 + i as i64 * SEC, &format!("t{i}")));
        record(&mut last_fired, &out);
    }
    let mut b = restarted(&a, "0.1", &rules, &last_fired);
    // Without the prime, the first price after the restart would be no cross.
    let mut unprimed = engine_with("0.1");
    unprimed.load(rules.clone(), Vec::new());

    let next = traded("100.5", T0 + 2 * SEC, "t2");
    let in_a = a.process_tick(&next);
    let in_b = b.process_tick(&next);
    assert!(unprimed.process_tick(&next).is_empty());
    assert_eq!(seen(in_a.clone()).len(), 2, "{in_a:?}");
    assert_eq!(in_b, in_a, "the same firings, with the same ids");
    assert_eq!(
        in_b[0].id,
        deterministic_id(T0 + 2 * SEC, &["alert", "1", "t2"])
    );
    // And they go on alike: down through 100 fires rule 3 in both.
    let next = traded("99", T0 + 3 * SEC, "t3");
    let in_a = a.process_tick(&next);
    assert_eq!(only(&in_a).rule_id, 3);
    assert_eq!(b.process_tick(&next), in_a);
}

#[test]
fn a_restored_cooldown_holds_after_a_restart() {
    let mut s = every_time(spec(Condition::CrossingUp));
    s.cooldown_s = 60;
    let rules = vec![rule(1, s)];
    let mut a = plain();
    a.load(rules.clone(), Vec::new());
    let mut last_fired = HashMap::new();
    for (p, at) in [("99", 0), ("100", 1), ("99", 5)] {
        record(&mut last_fired, &a.process_tick(&tick_at(p, T0 + at * SEC)));
    }
    assert_eq!(last_fired.get(&1), Some(&(T0 + SEC)));
    let mut b = restarted(&a, "0", &rules, &last_fired);
    // Fired at +1 s, cooldown 60 s: the cross at +10 s is dropped, the one at +61 s fires.
    let ticks = [("100", 10), ("99", 20), ("100", 61)];
    for (p, at) in ticks {
        let t = tick_at(p, T0 + at * SEC);
        let (x, y) = (a.process_tick(&t), b.process_tick(&t));
        assert_eq!(x, y, "at +{at} s");
        assert_eq!(y.is_empty(), at != 61, "at +{at} s: {y:?}");
    }

    // Restored without a prime too: the gate counts from the database's last firing.
    let mut s = every_time(spec(Condition::CrossingUp));
    s.cooldown_s = 60;
    let mut c = plain();
    c.load(
        vec![AlertRule {
            last_fired_at: Some(T0 + SEC),
            ..rule(1, s)
        }],
        Vec::new(),
    );
    let ticks = [("99", 5), ("100", 10), ("99", 20), ("100", 61)];
    let fired: Vec<i64> = ticks
        .iter()
        .filter(|(p, at)| !c.process_tick(&tick_at(p, T0 + at * SEC)).is_empty())
        .map(|(_, at)| *at)
        .collect();
    assert_eq!(fired, vec![61]);

    // A state condition true again within the cooldown fires when it ends, as it would have.
    let mut s = every_time(spec(Condition::GreaterThan));
    s.cooldown_s = 60;
    let rules = vec![rule(1, s)];
    let mut a = plain();
    a.load(rules.clone(), Vec::new());
    let mut last_fired = HashMap::new();
    for (p, at) in [("101", 1), ("99", 5)] {
        record(&mut last_fired, &a.process_tick(&tick_at(p, T0 + at * SEC)));
    }
    let mut b = restarted(&a, "0", &rules, &last_fired);
    for (p, at) in [("101", 10), ("101.5", 30), ("101", 61)] {
        let t = tick_at(p, T0 + at * SEC);
        let (x, y) = (a.process_tick(&t), b.process_tick(&t));
        assert_eq!(x, y, "at +{at} s");
        assert_eq!(y.is_empty(), at != 61, "at +{at} s: {y:?}");
    }
}

#[test]
fn a_restored_bar_holds_after_a_restart() {
    let bar = |condition| {
        let mut s = spec(condition);
        s.trigger = Trigger::OncePerBar;
        s.interval = Some(Interval::M1);
        s
    };
    // Fired at +10 s in the bar [T0, T0 + 60 s): that bar is done, the next one is not.
    for condition in [Condition::CrossingUp, Condition::GreaterThan] {
        let rules = vec![rule(1, bar(condition))];
        let mut a = plain();
        a.load(rules.clone(), Vec::new());
        let mut last_fired = HashMap::new();
        for (p, at) in [("99", 0), ("100.5", 10), ("99", 20)] {
            record(&mut last_fired, &a.process_tick(&tick_at(p, T0 + at * SEC)));
        }
        assert_eq!(last_fired.get(&1), Some(&(T0 + 10 * SEC)), "{condition}");
        let mut b = restarted(&a, "0", &rules, &last_fired);
        let ticks = [("100.5", 30), ("99", 40), ("100.5", 61)];
        for (p, at) in ticks {
            let t = tick_at(p, T0 + at * SEC);
            let (x, y) = (a.process_tick(&t), b.process_tick(&t));
            assert_eq!(x, y, "{condition} at +{at} s");
            assert_eq!(y.is_empty(), at != 61, "{condition} at +{at} s: {y:?}");
        }
    }
}

#[test]
fn an_old_prime_is_ignored_and_a_newer_one_fires_nothing() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::CrossingUp))));
    add(&mut e, rule(2, every_time(spec(Condition::GreaterThan))));
    assert!(e.process_tick(&tick_at("99", T0 + 10 * SEC)).is_empty());
    // Older, or at the same time as the last evaluated price: ignored.
    e.prime("binance", "BTCUSDT", d("98"), T0 + 5 * SEC);
    e.prime("binance", "BTCUSDT", d("98"), T0 + 10 * SEC);
    assert_eq!(e.last_prices()[0].2, d("99"));
    assert_eq!(e.process_tick(&tick_at("100", T0 + 11 * SEC)).len(), 1);

    // Newer: taken as evaluated — the crossing up to it and the true state are not fired
    // on the prime; the state condition fires at the next real price, the crossing (which
    // the prime spanned) does not.
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::CrossingUp))));
    add(&mut e, rule(2, every_time(spec(Condition::GreaterThan))));
    assert!(e.process_tick(&tick_at("99", T0)).is_empty());
    e.prime("binance", "BTCUSDT", d("101"), T0 + SEC);
    assert_eq!(e.last_prices()[0].2, d("101"));
    let out = e.process_tick(&tick_at("101.5", T0 + 2 * SEC));
    assert_eq!(only(&out).rule_id, 2);
    // A trade-less tick equal to the prime is its redelivery; it was reported before.
    let mut e = plain();
    add(&mut e, rule(2, every_time(spec(Condition::GreaterThan))));
    e.prime("binance", "BTCUSDT", d("101"), T0);
    assert!(e.process_tick(&tick_at("101", T0)).is_empty());
    assert_eq!(e.process_tick(&tick_at("101", T0 + SEC)).len(), 1);
}

#[test]
fn priming_a_symbol_without_rules_is_harmless() {
    let mut e = plain();
    e.prime("binance", "BTCUSDT", d("100"), T0);
    add(&mut e, rule(1, every_time(spec(Condition::CrossingUp))));
    e.prime("binance", "ETHUSDT", d("100"), T0);
    e.prime("binance", "BTCUSDT", d("0"), T0);
    e.prime("binance", "BTCUSDT", d("-5"), T0);
    e.prime(
        "a-venue-name-longer-than-the-contract-allows",
        "BTCUSDT",
        d("1"),
        T0,
    );
    assert!(e.last_prices().is_empty());
    assert_eq!(e.rule_count(), 1);
    // The rule was created after the first prime: its first price is no cross.
    assert_eq!(fired_at(&mut e, T0, &["101", "99", "100"]), vec![2]);
}

#[test]
fn a_rule_changed_after_the_prime_is_a_new_rule() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::CrossingUp))));
    add(&mut e, rule(2, every_time(spec(Condition::CrossingUp))));
    e.prime("binance", "BTCUSDT", d("99"), T0);
    // A new version of rule 1 and a new rule 3 after the prime: neither saw 99.
    let mut moved = every_time(spec(Condition::CrossingUp));
    moved.threshold = Some(d("100.5"));
    add(&mut e, versioned(1, 2, moved));
    add(&mut e, rule(3, every_time(spec(Condition::CrossingUp))));
    let out = e.process_tick(&tick_at("101", T0 + SEC));
    assert_eq!(only(&out).rule_id, 2, "only the primed rule crossed");
    let out = feed_firings(&mut e, T0 + 2 * SEC, &["99", "101"]);
    let ids: Vec<i64> = seen(out[1].clone()).iter().map(|f| f.0).collect();
    assert_eq!(ids, vec![1, 2, 3]);
}

#[test]
fn a_restart_does_not_repeat_a_firing_the_database_already_has() {
    // A state condition that fired and stayed true: it was disarmed, and it stays so —
    // whether it fired at the saved price or earlier (then, had it been armed, its trigger
    // mode would have let it fire at the saved price).
    for fired_at_offset in [0, -100] {
        let mut e = engine_with("0.1");
        e.load(
            vec![AlertRule {
                last_fired_at: Some(T0 + fired_at_offset * SEC),
                ..rule(1, every_time(spec(Condition::GreaterThan)))
            }],
            Vec::new(),
        );
        e.prime("binance", "BTCUSDT", d("101"), T0);
        assert_eq!(
            fired_at(
                &mut e,
                T0 + SEC,
                &["101.5", "100.5", "99.95", "99.9", "101"]
            ),
            vec![4],
            "fired at {fired_at_offset} s"
        );
    }
    // A crossing that fired after the saved price (the save lags the database): the move
    // from the saved price spans it, so it is not reported again; the rule re-arms once
    // beyond the band and then fires as usual.
    let mut e = engine_with("0.1");
    e.load(
        vec![AlertRule {
            last_fired_at: Some(T0 + 5 * SEC),
            ..rule(1, every_time(spec(Condition::CrossingUp)))
        }],
        Vec::new(),
    );
    e.prime("binance", "BTCUSDT", d("99"), T0);
    assert_eq!(
        fired_at(
            &mut e,
            T0 + 10 * SEC,
            &["101", "99.95", "100.2", "99.9", "100"]
        ),
        vec![4]
    );
    // The same when the first price after the restart is already back under the band.
    let mut e = engine_with("0.1");
    e.load(
        vec![AlertRule {
            last_fired_at: Some(T0 + 5 * SEC),
            ..rule(1, every_time(spec(Condition::CrossingUp)))
        }],
        Vec::new(),
    );
    e.prime("binance", "BTCUSDT", d("99"), T0);
    assert_eq!(fired_at(&mut e, T0 + 10 * SEC, &["99.5", "100"]), vec![1]);
}

#[test]
fn an_upsert_keeps_the_later_of_its_last_firing_and_the_engines() {
    let mut e = plain();
    let mut s = every_time(spec(Condition::CrossingUp));
    s.cooldown_s = 60;
    add(&mut e, rule(1, s.clone()));
    assert_eq!(fired_at(&mut e, T0, &["99", "100"]), vec![1]);
    // An update built from a row read before that firing was recorded.
    add(
        &mut e,
        AlertRule {
            last_fired_at: Some(T0 - 600 * SEC),
            ..versioned(1, 2, s.clone())
        },
    );
    assert_eq!(
        fired_at(&mut e, T0 + 2 * SEC, &["99", "99", "100"]),
        Vec::<usize>::new(),
        "still inside the cooldown of the firing at +1 s"
    );
    // An update carrying no last firing starts afresh, as before.
    add(&mut e, versioned(1, 3, s));
    assert_eq!(fired_at(&mut e, T0 + 10 * SEC, &["99", "100"]), vec![1]);
}

/// Engine A runs a random scenario; at a random point it "restarts": engine B loads the
/// rules A still holds with their last firings (as the database would have them) and is
/// primed with A's last prices. From then on both get the same ticks and must fire the
/// same firings, ids included. Exact equality holds where the state the database does not
/// keep (the re-arm state) cannot matter or is restored exactly: no hysteresis, no moving
/// windows (their history is not kept either), and state conditions only as `once` or
/// `every_time` without cooldown.
fn restart_check(seed: u64, rules: usize, before: usize, after: usize) -> usize {
    let mut rng = SplitMix::new(seed);
    let initial: Vec<AlertRule> = (1..=rules as i64)
        .map(|id| {
            let mut r = random_rule(&mut rng, id, 1);
            r.last_fired_at = None;
            r.spec.hysteresis_pct = None;
            if r.spec.condition.is_moving() {
                r.spec.condition = Condition::Crossing;
                r.spec.threshold = r
                    .spec
                    .pct
                    .or(r.spec.threshold)
                    .map(|p| p * Decimal::from(100));
                r.spec.pct = None;
                r.spec.window_s = None;
            }
            let state = r.spec.condition.is_state();
            if state && r.spec.trigger != Trigger::Once {
                r.spec.trigger = Trigger::EveryTime;
                r.spec.interval = None;
                r.spec.cooldown_s = 0;
            }
            r
        })
        .collect();
    let mut a = plain();
    a.load(initial.clone(), Vec::new());
    let mut last_fired = HashMap::new();
    let mut prices = [Decimal::from(100); 3];
    let mut ts = [T0; 3];
    let mut next_tick = |rng: &mut SplitMix, step: usize| {
        let s = rng.below(3) as usize;
        let jump = if rng.chance(0.05) { 20 } else { 1 };
        let delta = Decimal::new((rng.below(9) as i64 - 4) * 25 * jump, 2);
        prices[s] = (prices[s] + delta).max(Decimal::ONE);
        ts[s] += if rng.chance(0.03) {
            -2_000
        } else {
            rng.below(3_000) as i64
        };
        Tick {
            venue: "test".into(),
            symbol: SYMBOLS[s].into(),
            price: prices[s],
            qty: Decimal::ONE,
            ts: ts[s],
            trade_id: rng.chance(0.5).then(|| format!("{step}")),
        }
    };
    for step in 0..before {
        let tick = next_tick(&mut rng, step);
        record(&mut last_fired, &a.process_tick(&tick));
    }
    let mut b = restarted(&a, "0", &initial, &last_fired);
    assert_eq!(b.rule_count(), a.rule_count(), "seed {seed}");
    let mut fired = 0;
    for step in before..before + after {
        let tick = next_tick(&mut rng, step);
        let (x, y) = (seen(a.process_tick(&tick)), seen(b.process_tick(&tick)));
        assert_eq!(x, y, "seed {seed} step {step} tick {tick:?}");
        fired += x.len();
    }
    fired
}

#[test]
fn a_restarted_engine_fires_as_the_old_one_would_have() {
    let mut total = 0;
    for seed in 0..150 {
        total += restart_check(seed, 60, 1 + seed as usize % 300, 300);
    }
    assert!(
        total > 500,
        "the scenarios should fire a lot, fired {total}"
    );
}

// ---- candles ------------------------------------------------------------------------------

fn candle(interval: Interval, open_ts: i64, close: &str, closed: bool) -> Candle {
    Candle {
        venue: "binance".into(),
        symbol: "BTCUSDT".into(),
        interval,
        open_ts,
        open: d(close),
        high: d(close),
        low: d(close),
        close: d(close),
        volume: Decimal::ONE,
        trades: None,
        closed,
    }
}

fn bar_close(condition: Condition, interval: Interval) -> RuleSpec {
    let mut s = spec(condition);
    s.trigger = Trigger::OncePerBarClose;
    s.interval = Some(interval);
    s
}

const HOUR: i64 = 3_600 * SEC;

#[test]
fn a_bar_close_rule_is_evaluated_at_its_intervals_close_only() {
    let mut e = plain();
    add(
        &mut e,
        rule(1, bar_close(Condition::CrossingUp, Interval::H1)),
    );
    // Ticks cross 100 and back: a bar-close rule does not look at them.
    assert!(fired_at(&mut e, T0, &["99", "101", "99.5"]).is_empty());
    assert!(
        e.process_candle(&candle(Interval::H1, T0, "99", true))
            .is_empty()
    );
    // The forming candle and other intervals' closes are not its bar close.
    assert!(
        e.process_candle(&candle(Interval::H1, T0 + HOUR, "101", false))
            .is_empty()
    );
    assert!(
        e.process_candle(&candle(Interval::M1, T0 + HOUR, "101", true))
            .is_empty()
    );
    let fired = e.process_candle(&candle(Interval::H1, T0 + HOUR, "101", true));
    let f = only(&fired);
    assert_eq!((f.rule_id, f.price, f.threshold), (1, d("101"), d("100")));
    assert_eq!(f.ts, T0 + 2 * HOUR - 1, "at the bar's last millisecond");
    assert_eq!(f.trigger, Trigger::OncePerBarClose);
    // A redelivered candle gives the same firing; an older one nothing.
    assert_eq!(
        e.process_candle(&candle(Interval::H1, T0 + HOUR, "101", true)),
        fired
    );
    assert!(
        e.process_candle(&candle(Interval::H1, T0, "99", true))
            .is_empty()
    );
    // The next close above is no new crossing; a close below and one above again is.
    assert!(
        e.process_candle(&candle(Interval::H1, T0 + 2 * HOUR, "102", true))
            .is_empty()
    );
    assert!(
        e.process_candle(&candle(Interval::H1, T0 + 3 * HOUR, "98", true))
            .is_empty()
    );
    assert_eq!(
        e.process_candle(&candle(Interval::H1, T0 + 4 * HOUR, "100", true))
            .len(),
        1
    );
}

#[test]
fn bar_close_states_channels_and_moves_use_the_closes() {
    let mut e = plain();
    add(
        &mut e,
        rule(1, bar_close(Condition::GreaterThan, Interval::H1)),
    );
    add(
        &mut e,
        rule(2, bar_close(Condition::OutsideChannel, Interval::H1)),
    );
    let mut up = bar_close(Condition::MovingUp, Interval::H1);
    up.window_s = Some(7_200);
    add(&mut e, rule(3, up));
    let closes = ["100", "99", "103", "106", "104"];
    let fired: Vec<Vec<i64>> = closes
        .iter()
        .zip(0_i64..)
        .map(|(c, i)| {
            e.process_candle(&candle(Interval::H1, T0 + i * HOUR, c, true))
                .iter()
                .map(|f| f.rule_id)
                .collect()
        })
        .collect();
    assert_eq!(
        fired,
        vec![
            // 100: not above 100, inside [100, 110]; no close to move from.
            vec![],
            // 99: outside (below 100).
            vec![2],
            // 103: above 100 (re-armed at 99); +3 over two bars from 100.
            vec![1],
            // 106: +7 against 99 two bars earlier.
            vec![3],
            // 104: +1 against 103: the move re-arms.
            vec![],
        ]
    );
}

#[test]
fn a_restart_takes_the_previous_close_from_the_store() {
    let rules = vec![rule(1, bar_close(Condition::CrossingUp, Interval::H1))];
    let mut e = plain();
    e.load(rules, Vec::new());
    let next = candle(Interval::H1, T0 + 2 * HOUR, "101", true);
    assert_eq!(e.history_wanted(&next), vec![(Interval::H1, 1)]);
    // What the store holds: earlier closes, and (the recorder being ahead) this one.
    let stored = [
        candle(Interval::H1, T0, "97", true),
        candle(Interval::H1, T0 + HOUR, "99", true),
        candle(Interval::H1, T0 + 2 * HOUR, "101", true),
    ];
    e.prime_history("binance", "BTCUSDT", Interval::H1, &stored, 1);
    assert!(e.history_wanted(&next).is_empty(), "asked once");
    let fired = e.process_candle(&next);
    assert_eq!(only(&fired).price, d("101"), "99 → 101 crossed 100");

    // A rule that fired at that close before the restart does not fire it again.
    let mut again = plain();
    again.load(
        vec![AlertRule {
            last_fired_at: Some(T0 + 3 * HOUR - 1),
            ..rule(1, bar_close(Condition::CrossingUp, Interval::H1))
        }],
        Vec::new(),
    );
    again.prime_history("binance", "BTCUSDT", Interval::H1, &stored[1..2], 1);
    assert!(again.process_candle(&next).is_empty());
    let later = candle(Interval::H1, T0 + 3 * HOUR, "102", true);
    assert!(again.process_candle(&later).is_empty());
}

#[test]
fn candles_price_only_silent_symbols_at_their_smallest_interval() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::CrossingUp))));
    let minute = 60 * SEC;
    assert!(
        e.process_candle(&candle(Interval::M1, T0, "99", true))
            .is_empty()
    );
    // An open candle is not a price.
    assert!(
        e.process_candle(&candle(Interval::M1, T0 + minute, "101", false))
            .is_empty()
    );
    let f = e.process_candle(&candle(Interval::M1, T0 + minute, "101", true));
    assert_eq!(
        only(&f).ts,
        T0 + 2 * minute - 1,
        "the close is at the bar's last ms"
    );
    // A larger interval repeats the same closes: ignored.
    assert!(
        e.process_candle(&candle(Interval::M5, T0, "99", true))
            .is_empty()
    );
    assert!(
        e.process_candle(&candle(Interval::M1, T0 + 2 * minute, "99", true))
            .is_empty()
    );
    assert!(
        e.process_candle(&candle(Interval::M5, T0 + 5 * minute, "101", true))
            .is_empty()
    );
    // Once ticks flow, candles within the silence window are ignored.
    assert!(
        e.process_tick(&tick_at("99", T0 + 3 * minute + SEC))
            .is_empty()
    );
    assert!(
        e.process_candle(&candle(Interval::M1, T0 + 3 * minute, "101", true))
            .is_empty()
    );
    // Ticks stop: a candle closing more than 60 s after the last tick counts again.
    let f = e.process_candle(&candle(Interval::M1, T0 + 5 * minute, "101", true));
    assert_eq!(f.len(), 1);
}

// ---- subscriptions ------------------------------------------------------------------------

fn subscription(id: i64, kind: SignalKind, symbol: Option<&str>, min: Grade) -> Subscription {
    Subscription {
        id,
        user_id: 100 + id,
        kind,
        symbol: symbol.map(Into::into),
        min_grade: min,
        active: true,
        version: 1,
    }
}

fn signal(kind: SignalKind, symbol: &str, grade: Grade) -> Signal {
    Signal {
        id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001),
        kind,
        venue: "binance".into(),
        symbol: symbol.into(),
        interval: Interval::M1,
        ts: T0,
        price: d("64321.12"),
        score: 72,
        grade,
        details: Default::default(),
    }
}

#[test]
fn subscriptions_match_by_kind_symbol_and_grade() {
    let mut e = plain();
    let mut inactive = subscription(5, SignalKind::RsiOversold, None, Grade::D);
    inactive.active = false;
    let report = e.load(
        Vec::new(),
        vec![
            subscription(1, SignalKind::RsiOversold, Some("BTCUSDT"), Grade::B),
            subscription(2, SignalKind::RsiOversold, None, Grade::A),
            subscription(3, SignalKind::RsiOversold, Some("ETHUSDT"), Grade::D),
            subscription(4, SignalKind::GoldenCross, None, Grade::D),
            inactive,
        ],
    );
    assert_eq!(report.subscriptions, 4);
    fn hit_ids(e: &AlertEngine, s: &Signal) -> Vec<i64> {
        e.process_signal(s)
            .iter()
            .map(|h| h.subscription_id)
            .collect()
    }
    assert_eq!(
        hit_ids(&e, &signal(SignalKind::RsiOversold, "BTCUSDT", Grade::B)),
        vec![1]
    );
    assert_eq!(
        hit_ids(&e, &signal(SignalKind::RsiOversold, "BTCUSDT", Grade::A)),
        vec![1, 2]
    );
    assert_eq!(
        hit_ids(&e, &signal(SignalKind::RsiOversold, "BTCUSDT", Grade::C)),
        Vec::<i64>::new()
    );
    assert_eq!(
        hit_ids(&e, &signal(SignalKind::RsiOversold, "ETHUSDT", Grade::C)),
        vec![3]
    );
    assert_eq!(
        hit_ids(&e, &signal(SignalKind::GoldenCross, "XRPUSDT", Grade::D)),
        vec![4]
    );
    assert_eq!(
        hit_ids(&e, &signal(SignalKind::VolumeSurge, "BTCUSDT", Grade::A)),
        Vec::<i64>::new()
    );

    let s = signal(SignalKind::RsiOversold, "BTCUSDT", Grade::A);
    let hits = e.process_signal(&s);
    assert_eq!(hits[0].user_id, 101);
    assert_eq!(
        hits[0].id,
        deterministic_id(T0, &["signal-sub", "1", &s.id.to_string()])
    );
    assert_eq!(e.process_signal(&s), hits, "a redelivered signal: same ids");

    // Versioned like rules.
    assert!(matches!(
        e.apply(&Control::SubscriptionDeleted {
            subscription_id: 1,
            version: 2
        }),
        Applied::SubscriptionRemoved { was_live: true, .. }
    ));
    assert!(matches!(
        e.apply(&Control::SubscriptionUpserted {
            subscription: subscription(1, SignalKind::RsiOversold, Some("BTCUSDT"), Grade::B)
        }),
        Applied::Stale { .. }
    ));
    assert_eq!(
        hit_ids(&e, &signal(SignalKind::RsiOversold, "BTCUSDT", Grade::A)),
        vec![2]
    );
    let mut moved = subscription(2, SignalKind::RsiOversold, None, Grade::C);
    moved.version = 2;
    assert!(matches!(
        e.apply(&Control::SubscriptionUpserted {
            subscription: moved
        }),
        Applied::SubscriptionReplaced { .. }
    ));
    assert_eq!(
        hit_ids(&e, &signal(SignalKind::RsiOversold, "BTCUSDT", Grade::C)),
        vec![2]
    );
    assert_eq!(e.subscription_count(), 3);
}

// ---- wire ---------------------------------------------------------------------------------

#[test]
fn a_firing_becomes_the_wire_alert() {
    let mut e = plain();
    add(&mut e, rule(42, spec(Condition::CrossingUp)));
    let out = feed_firings(&mut e, T0, &["99", "100.5"]);
    let f = only(&out[1]);
    let wire = AlertTriggered::from(f);
    assert_eq!(wire.id, f.id);
    assert_eq!(wire.rule_id, 42);
    assert_eq!(wire.user_id, 7);
    assert_eq!(wire.condition, Condition::CrossingUp);
    assert_eq!(wire.threshold, d("100"));
    assert_eq!(wire.price, d("100.5"));
    assert_eq!(wire.ts, T0 + SEC);
    tickwatch_schema::wire::encode(&wire).expect("the wire message validates");
    assert_eq!(f.dedupe_key(), format!("alert:{}", f.id));
}

// ---- indexed == naive ---------------------------------------------------------------------

const SYMBOLS: [&str; 3] = ["AAA", "BBB", "CCC"];

/// A random rule on a coarse grid around 100, so prices often sit exactly on thresholds.
fn random_rule(rng: &mut SplitMix, id: i64, version: i64) -> AlertRule {
    let conditions = Condition::ALL;
    let condition = rng.pick(conditions).unwrap_or(Condition::Crossing);
    let grid = |rng: &mut SplitMix| Decimal::new(9_000 + 50 * rng.below(41) as i64, 2);
    let symbol = rng.pick(&SYMBOLS).unwrap_or("AAA");
    let mut s = RuleSpec::price("test", symbol, condition, grid(rng));
    if condition.is_channel() {
        s.threshold = None;
        let (a, b) = (grid(rng), grid(rng));
        let (low, high) = if a < b { (a, b) } else { (b, a + Decimal::ONE) };
        s.low = Some(low);
        s.high = Some(high);
    }
    if condition.is_moving_pct() {
        s.threshold = None;
        s.pct = rng.pick(&[Decimal::new(5, 1), Decimal::ONE, Decimal::from(2)]);
        s.window_s = rng.pick(&[2_u64, 5, 10, 60]);
    }
    if condition.is_moving_amount() {
        s.threshold = rng.pick(&[Decimal::new(5, 1), Decimal::ONE, Decimal::from(2)]);
        s.window_s = rng.pick(&[2_u64, 5, 10, 60]);
    }
    match rng.below(7) {
        0 | 1 => s.trigger = Trigger::Once,
        2 => {
            s.trigger = Trigger::OncePerBar;
            s.interval = Some(Interval::M1);
        }
        3 => {
            // Evaluated on candles only: prices must leave it alone in both engines.
            s.trigger = Trigger::OncePerBarClose;
            s.interval = Some(Interval::M1);
        }
        _ => {
            s.trigger = Trigger::EveryTime;
            s.cooldown_s = rng.pick(&[0_u64, 0, 1, 3, 10]).unwrap_or(0);
        }
    }
    if rng.chance(0.4) {
        s.hysteresis_pct = rng.pick(&[Decimal::ZERO, Decimal::new(5, 1), Decimal::ONE]);
    }
    if rng.chance(0.2) {
        s.expires_at = Some(T0 + 1_000 * rng.below(200) as i64);
    }
    let mut r = versioned(id, version, s);
    if rng.chance(0.3) {
        // On the whole-second grid of the primes, so a last firing at, before and after
        // the primed time all occur.
        r.last_fired_at = Some(T0 + 1_000 * (rng.below(41) as i64 - 20));
    }
    r
}

/// Primes both engines alike (the naive one through the naive evaluator).
fn prime_both(
    indexed: &mut AlertEngine,
    naive: &mut AlertEngine,
    symbol: &str,
    p: Decimal,
    ts: i64,
) {
    indexed.prime("test", symbol, p, ts);
    naive.prime_in("test", symbol, p, ts, Mode::Naive);
}

type Seen = Vec<(i64, Uuid, Direction, Decimal, Decimal)>;

fn seen(mut firings: Vec<Firing>) -> Seen {
    firings.sort_by_key(|f| f.rule_id);
    firings
        .into_iter()
        .map(|f| (f.rule_id, f.id, f.direction, f.threshold, f.price))
        .collect()
}

/// Drives an indexed and a naive engine through the same random scenario and compares every
/// output. Returns the number of firings, so callers can check the scenario did something.
fn cross_check(seed: u64, rules: usize, steps: usize) -> usize {
    cross_check_moves(seed, rules, steps, 25).0
}

/// The same with price steps of up to 4 × `step_cents` (and jumps 20 times that); returns
/// the firings and how many prices took the indexed engine's fast path.
fn cross_check_moves(seed: u64, rules: usize, steps: usize, step_cents: i64) -> (usize, u64) {
    let mut rng = SplitMix::new(seed);
    let hysteresis = rng.pick(&["0", "0.1", "0.5"]).unwrap_or("0");
    let mut indexed = engine_with(hysteresis);
    let mut naive = engine_with(hysteresis);
    let initial: Vec<AlertRule> = (1..=rules as i64)
        .map(|id| random_rule(&mut rng, id, 1))
        .collect();
    indexed.load(initial.clone(), Vec::new());
    naive.load(initial, Vec::new());
    let mut prices = [Decimal::from(100); 3];
    let mut ts = [T0; 3];
    // A restart: most symbols primed with a last price (on the rules' grid), at a time
    // before, at or after their rules' last firings.
    for (s, symbol) in SYMBOLS.iter().enumerate() {
        if rng.chance(0.7) {
            prices[s] = Decimal::new(9_000 + 50 * rng.below(41) as i64, 2);
            ts[s] = T0 + 1_000 * (rng.below(41) as i64 - 20);
            prime_both(&mut indexed, &mut naive, symbol, prices[s], ts[s]);
        }
    }
    let mut last_tick: Option<Tick> = None;
    let mut next_id = rules as i64 + 1;
    let mut fired = 0;
    for step in 0..steps {
        // Now and then a prime in the middle of things: older than the last price (ignored)
        // or newer (the rules settle at it).
        if rng.chance(0.01) {
            let s = rng.below(3) as usize;
            let p = (prices[s] + Decimal::new(rng.below(9) as i64 - 4, 0)).max(Decimal::ONE);
            let at = ts[s] + rng.below(6_000) as i64 - 3_000;
            prime_both(&mut indexed, &mut naive, SYMBOLS[s], p, at);
            assert_eq!(
                indexed.last_prices(),
                naive.last_prices(),
                "seed {seed} step {step}"
            );
        }
        // Now and then a control message, applied to both.
        if rng.chance(0.03) {
            let id = 1 + rng.below(next_id as u64) as i64;
            let version = indexed.rule_version(id).unwrap_or(0) + rng.below(3) as i64 - 1;
            let control = if rng.chance(0.3) {
                Control::RuleDeleted {
                    rule_id: id,
                    user_id: 7,
                    version,
                }
            } else {
                upsert(random_rule(&mut rng, id, version))
            };
            let (a, b) = (indexed.apply(&control), naive.apply(&control));
            assert_eq!(
                format!("{a:?}"),
                format!("{b:?}"),
                "seed {seed} step {step}"
            );
            next_id += 1;
        }
        let tick = if rng.chance(0.05) && last_tick.is_some() {
            // A redelivery of the previous tick.
            last_tick.clone().expect("checked")
        } else {
            let s = rng.below(3) as usize;
            let jump = if rng.chance(0.05) { 20 } else { 1 };
            let step = Decimal::new((rng.below(9) as i64 - 4) * step_cents * jump, 2);
            prices[s] = (prices[s] + step).max(Decimal::ONE);
            // Equal times happen (several trades in one ms); sometimes a stale one.
            ts[s] += if rng.chance(0.03) {
                -2_000
            } else {
                rng.below(3_000) as i64
            };
            Tick {
                venue: "test".into(),
                symbol: SYMBOLS[s].into(),
                price: prices[s],
                qty: Decimal::ONE,
                ts: ts[s],
                trade_id: rng.chance(0.5).then(|| format!("{step}")),
            }
        };
        let a = seen(indexed.process_tick(&tick));
        let b = seen(naive.process_tick_naive(&tick));
        assert_eq!(a, b, "seed {seed} step {step} tick {tick:?}");
        fired += a.len();
        assert_eq!(
            indexed.rule_count(),
            naive.rule_count(),
            "seed {seed} step {step}"
        );
        let (mut x, mut y) = (indexed.take_expired(), naive.take_expired());
        x.sort_unstable();
        y.sort_unstable();
        assert_eq!(x, y, "seed {seed} step {step}");
        last_tick = Some(tick);
    }
    assert_eq!(
        naive.quiet_prices(),
        0,
        "the naive loop never takes the fast path"
    );
    (fired, indexed.quiet_prices())
}

#[test]
fn indexed_engine_equals_naive_evaluator_on_random_scenarios() {
    let mut total = 0;
    for seed in 0..150 {
        total += cross_check(seed, 60, 400);
    }
    assert!(
        total > 1_000,
        "the scenarios should fire a lot, fired {total}"
    );
}

#[test]
fn the_fast_path_changes_nothing() {
    // Small moves between sparse levels: most prices take the fast path, and the results
    // must still be the naive loop's.
    let (mut fired, mut quiet) = (0, 0);
    for seed in 500..600 {
        let (f, q) = cross_check_moves(seed, 8, 600, 1);
        fired += f;
        quiet += q;
    }
    assert!(fired > 50, "fired {fired}");
    assert!(quiet > 20_000, "fast path taken {quiet} times");
}

#[test]
fn indexed_engine_equals_naive_evaluator_with_many_rules_per_symbol() {
    for seed in 1_000..1_010 {
        assert!(cross_check(seed, 1_500, 600) > 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The same check with proptest shrinking the scenario when it fails.
    #[test]
    fn indexed_equals_naive_proptest(
        thresholds in prop::collection::vec(
            (0usize..9, 90i64..110, 0u8..3, prop::option::of(-3i64..3)),
            1..40,
        ),
        primed in prop::option::of((90i64..110, 0i64..3)),
        moves in prop::collection::vec((-8i64..=8, 0i64..4), 1..200),
    ) {
        let mut indexed = plain();
        let mut naive = plain();
        let rules: Vec<AlertRule> = thresholds
            .iter()
            .zip(1_i64..)
            .map(|(&(c, t, trig, fired), id)| {
                let condition = Condition::ALL[c];
                let mut s = spec(condition);
                if condition.is_channel() {
                    s.low = Some(Decimal::from(t));
                    s.high = Some(Decimal::from(t + 3));
                } else if condition.is_moving_pct() {
                    s.window_s = Some(5);
                    s.pct = Some(Decimal::ONE);
                } else if condition.is_moving_amount() {
                    s.window_s = Some(5);
                    s.threshold = Some(Decimal::ONE);
                } else {
                    s.threshold = Some(Decimal::from(t));
                }
                s.trigger = [Trigger::Once, Trigger::EveryTime, Trigger::OncePerBar][usize::from(trig)];
                if s.trigger == Trigger::OncePerBar {
                    s.interval = Some(Interval::M1);
                }
                AlertRule {
                    last_fired_at: fired.map(|k| T0 + k * 700),
                    ..rule(id, s)
                }
            })
            .collect();
        indexed.load(rules.clone(), Vec::new());
        naive.load(rules, Vec::new());
        let mut price = Decimal::from(100);
        let mut ts = T0;
        if let Some((p, k)) = primed {
            price = Decimal::from(p);
            ts = T0 + k * 700;
            indexed.prime("binance", "BTCUSDT", price, ts);
            naive.prime_in("binance", "BTCUSDT", price, ts, Mode::Naive);
        }
        for (step, dt) in moves {
            price = (price + Decimal::new(step, 1) * Decimal::from(5)).max(Decimal::ONE);
            ts += dt * 700;
            let tick = tick_at(&price.to_string(), ts);
            prop_assert_eq!(seen(indexed.process_tick(&tick)), seen(naive.process_tick_naive(&tick)));
        }
    }
}

#[test]
fn the_engine_and_its_outputs_can_move_between_threads() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<AlertEngine>();
    send_sync::<Firing>();
    send_sync::<SubscriptionHit>();
}

/// Twenty `crossing_up` rules (every time, no hysteresis) at 101.0, 101.1, … 102.9: a
/// rise from 100 to 121.0001 crosses them all.
fn twenty_crossing_rules() -> Vec<AlertRule> {
    (0..20)
        .map(|i| {
            let mut s = every_time(spec(Condition::CrossingUp));
            s.threshold = Some(d("101") + Decimal::new(i, 1));
            s.hysteresis_pct = Some(Decimal::ZERO);
            rule(i + 1, s)
        })
        .collect()
}

/// The fault suite's kill -9 of the alerts role: a crossing stored and published, the
/// process killed before its ack; the restarted engine (rules with their last firing from
/// the database, primed with the last saved price — from before that crossing, or the
/// crossing's own price when the save came between the publish and the ack) gets the
/// crossing again, then the fall, then the next crossing — which must fire.
#[test]
fn a_crossing_after_a_redelivered_one_fires_after_a_restart() {
    for saved_after_the_crossing in [false, true] {
        let rules = twenty_crossing_rules();
        let mut a = plain();
        a.load(rules.clone(), Vec::new());
        let mut last_fired = HashMap::new();
        assert!(a.process_tick(&tick_at("100", T0)).is_empty());
        let first = a.process_tick(&tick_at("121.0001", T0 + SEC));
        assert_eq!(first.len(), 20);
        record(&mut last_fired, &first);
        assert!(a.process_tick(&tick_at("100", T0 + SEC + 1)).is_empty());
        let mut saved = a.last_prices();
        let killed_in = a.process_tick(&tick_at("121.0011", T0 + 10 * SEC));
        assert_eq!(killed_in.len(), 20);
        record(&mut last_fired, &killed_in);
        if saved_after_the_crossing {
            saved = a.last_prices();
        }

        let mut b = plain();
        b.load(
            rules.iter().map(|r| AlertRule {
                last_fired_at: last_fired.get(&r.id).copied(),
                ..r.clone()
            }),
            Vec::new(),
        );
        for (venue, symbol, price, ts) in saved {
            b.prime(&venue, &symbol, price, ts);
        }
        // Stored already: the adapter publishes what is stored and unpublished on the
        // symbol's first message after the restart, before anything newer.
        let again = b.process_tick(&tick_at("121.0011", T0 + 10 * SEC));
        assert!(again.is_empty() || seen(again) == seen(killed_in.clone()));
        assert!(
            b.process_tick(&tick_at("100", T0 + 10 * SEC + 1))
                .is_empty()
        );
        let next = b.process_tick(&tick_at("121.0021", T0 + 20 * SEC));
        assert_eq!(
            next.len(),
            20,
            "saved after the crossing: {saved_after_the_crossing}; the next crossing fires: {next:?}"
        );
    }
}

/// The same restart, when the old process had finished (and acknowledged) the crossing and
/// the fall before it died: nothing is redelivered, and the next crossing must fire.
#[test]
fn the_first_crossing_after_a_clean_restart_fires() {
    let rules = twenty_crossing_rules();
    let mut a = plain();
    a.load(rules.clone(), Vec::new());
    let mut last_fired = HashMap::new();
    assert!(a.process_tick(&tick_at("100", T0)).is_empty());
    record(
        &mut last_fired,
        &a.process_tick(&tick_at("121.0001", T0 + SEC)),
    );
    assert!(a.process_tick(&tick_at("100", T0 + SEC + 1)).is_empty());
    let mut b = restarted(&a, "0", &rules, &last_fired);
    let next = b.process_tick(&tick_at("121.0011", T0 + 10 * SEC));
    assert_eq!(next.len(), 20, "the next crossing fires: {next:?}");
}

/// Scale-out: instance A evaluated a symbol, instance B carried it on after a handover, and
/// the symbol comes back to A. Reset to what B stored, A goes on exactly as B would have;
/// without the reset it would fire B's crossing a second time.
#[test]
fn a_symbol_handed_back_is_reset_to_the_stored_state_and_goes_on_as_the_other_instance() {
    let rules = vec![
        rule(1, every_time(spec(Condition::CrossingUp))),
        rule(2, spec(Condition::EnteringChannel)),
        rule(3, every_time(spec(Condition::CrossingDown))),
        rule(4, spec(Condition::GreaterThan)),
    ];
    let mut a = engine_with("0.1");
    a.load(rules.clone(), Vec::new());
    let mut last_fired = HashMap::new();
    for (i, p) in ["99", "99.5"].iter().enumerate() {
        let out = a.process_tick(&traded(p, T0 + i as i64 * SEC, &format!("a{i}")));
        record(&mut last_fired, &out);
    }
    // B takes over (a restart's state: the stored rules and price), and crosses up.
    let mut b = restarted(&a, "0.1", &rules, &last_fired);
    for (i, p) in ["100.5", "101", "104"].iter().enumerate() {
        let out = b.process_tick(&traded(p, T0 + (2 + i as i64) * SEC, &format!("b{i}")));
        record(&mut last_fired, &out);
    }
    assert!(!last_fired.is_empty());
    let mut stale = restarted(&a, "0.1", &rules, &HashMap::new());
    // What the database holds: the rules still active (a `once` rule B fired is not).
    let stored: Vec<AlertRule> = rules
        .iter()
        .filter(|r| b.has_rule(r.id))
        .map(|r| AlertRule {
            last_fired_at: last_fired.get(&r.id).copied(),
            ..r.clone()
        })
        .collect();
    let (price, ts) = b.last_price("binance", "BTCUSDT").expect("B's last price");
    let rejected = a.reset_symbol("binance", "BTCUSDT", &stored, Some((price, ts)));
    assert!(rejected.is_empty(), "{rejected:?}");
    assert_eq!(a.last_price("binance", "BTCUSDT"), Some((price, ts)));
    assert_eq!(a.rule_count(), b.rule_count());

    let next = ["104.5", "99", "98", "100.2", "105", "103"];
    for (i, p) in next.iter().enumerate() {
        let tick = traded(p, T0 + (10 + i as i64) * SEC, &format!("n{i}"));
        let in_a = a.process_tick(&tick);
        let in_b = b.process_tick(&tick);
        assert_eq!(in_a, in_b, "tick {p}: A after the reset goes on as B");
        if i == 0 {
            // A stale A would take 99.5 → 104.5 for a crossing B already fired.
            assert!(!stale.process_tick(&tick).is_empty());
        }
    }
}

// ---- expression rules (indicators, several conditions) -----------------------------------

/// The 4h fixture bars with TA-Lib's columns: `(candle, column → value)`.
fn talib_4h() -> Vec<(Candle, HashMap<String, f64>)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../signals/tests/fixtures/indicators/btcusdt_4h.csv");
    let text = std::fs::read_to_string(path).expect("the fixture");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|line| {
            let cells: Vec<&str> = line.split(',').collect();
            let open_ts = chrono::DateTime::parse_from_rfc3339(cells[0])
                .expect("a time")
                .timestamp_millis();
            let candle = Candle {
                venue: "binance".into(),
                symbol: "BTCUSDT".into(),
                interval: Interval::H4,
                open_ts,
                open: d(cells[1]),
                high: d(cells[2]),
                low: d(cells[3]),
                close: d(cells[4]),
                volume: d(cells[5]),
                trades: None,
                closed: true,
            };
            let values = header[6..]
                .iter()
                .zip(&cells[6..])
                .filter(|(_, c)| !c.is_empty())
                .map(|(h, c)| (h.to_string(), c.parse::<f64>().expect("value")))
                .collect();
            (candle, values)
        })
        .collect()
}

fn expression_rule(id: i64, expression: &str, trigger: Trigger) -> AlertRule {
    let mut s = RuleSpec::expression("binance", "BTCUSDT", expression);
    s.trigger = trigger;
    rule(id, s)
}

/// Feeds the fixture through the engine; the open times at which each rule fired.
fn fired_bars(rules: Vec<AlertRule>) -> HashMap<i64, Vec<i64>> {
    let mut e = plain();
    e.load(rules, Vec::new());
    let mut fired: HashMap<i64, Vec<i64>> = HashMap::new();
    for (candle, _) in talib_4h() {
        for f in e.process_candle(&candle) {
            assert_eq!(f.ts, candle.open_ts + Interval::H4.as_ms() - 1);
            fired.entry(f.rule_id).or_default().push(candle.open_ts);
        }
    }
    fired
}

#[test]
fn expression_rules_fire_where_ta_lib_says_their_clauses_hold() {
    let bars = talib_4h();
    let v = |values: &HashMap<String, f64>, k: &str| values.get(k).copied();
    // What TA-Lib's own values say, with the engine's semantics: a state fires when true
    // and re-arms when false; a crossing compares with the previous bar's values.
    let mut expected: HashMap<i64, Vec<i64>> = HashMap::new();
    let (mut armed_1, mut armed_2, mut before) = (true, true, None::<(f64, f64)>);
    for (candle, values) in &bars {
        if let Some(rsi) = v(values, "rsi14") {
            let truth = rsi < 30.0;
            if truth && armed_1 {
                expected.entry(1).or_default().push(candle.open_ts);
            }
            armed_1 = !truth;
        }
        if let (Some(rsi), Some(lower)) = (v(values, "rsi14"), v(values, "bb_lower")) {
            let close = tickwatch_schema::decimal::to_f64(candle.close);
            let truth = rsi < 40.0 && close < lower;
            if truth && armed_2 {
                expected.entry(2).or_default().push(candle.open_ts);
            }
            armed_2 = !truth;
        }
        if let (Some(line), Some(signal)) = (v(values, "macd"), v(values, "macd_signal")) {
            if let Some((pl, ps)) = before
                && pl < ps
                && line >= signal
            {
                expected.entry(3).or_default().push(candle.open_ts);
            }
            before = Some((line, signal));
        }
    }
    assert!(expected.values().all(|f| !f.is_empty()), "{expected:?}");
    let fired = fired_bars(vec![
        expression_rule(1, "rsi(14,4h) < 30", Trigger::EveryTime),
        expression_rule(
            2,
            "rsi(14,4h) < 40 and close(4h) < bb_lower(20,2,4h)",
            Trigger::EveryTime,
        ),
        expression_rule(
            3,
            "macd(12,26,9,4h) x> macd_signal(12,26,9,4h)",
            Trigger::EveryTime,
        ),
    ]);
    assert_eq!(fired, expected);
}

#[test]
fn expression_rules_share_indicators_and_warm_up_from_the_store() {
    let bars = talib_4h();
    let (history, live) = bars.split_at(200);
    let rules = vec![
        expression_rule(1, "rsi(14,4h) < 30", Trigger::EveryTime),
        expression_rule(2, "rsi(14,4h) > 70", Trigger::EveryTime),
    ];
    // One engine sees every bar; another starts at bar 200 with the store's bars.
    let mut whole = plain();
    whole.load(rules.clone(), Vec::new());
    for (candle, _) in history {
        whole.process_candle(candle);
    }
    let mut restarted = plain();
    restarted.load(rules, Vec::new());
    let first = &live[0].0;
    let wanted = restarted.history_wanted(first);
    assert_eq!(wanted, vec![(Interval::H4, Series::Rsi(14).warm_up_bars())]);
    let stored: Vec<Candle> = history.iter().map(|(c, _)| c.clone()).collect();
    restarted.prime_history("binance", "BTCUSDT", Interval::H4, &stored, wanted[0].1);
    assert!(restarted.history_wanted(first).is_empty());
    // Both rules read one RSI(14) calculator.
    for (candle, _) in live {
        let (a, b) = (
            whole.process_candle(candle),
            restarted.process_candle(candle),
        );
        assert_eq!(seen(a.clone()), seen(b), "bar {}", candle.open_ts);
        for f in a {
            let text = f.expression.as_deref().unwrap_or_default();
            assert!(text.starts_with("rsi(14,4h) "), "{text}");
            assert_eq!(f.condition, Condition::Expression);
        }
    }
}

#[test]
fn an_expression_rule_that_fired_is_not_repeated_by_a_restart() {
    // A state still true after a restart fires again only once it was false in between.
    let bars = talib_4h();
    let rules = vec![
        expression_rule(1, "rsi(14,4h) < 45", Trigger::EveryTime),
        // A crossing right after the restart is one, as without it.
        expression_rule(2, "close(4h) x> ema(9,4h)", Trigger::EveryTime),
    ];
    let mut a = plain();
    a.load(rules.clone(), Vec::new());
    let mut last = None;
    let mut split = None;
    let mut last_cross = None;
    for (i, (candle, values)) in bars.iter().enumerate() {
        for f in a.process_candle(candle) {
            match f.rule_id {
                1 => last = Some(f.ts),
                _ => last_cross = Some(f.ts),
            }
        }
        // Restart right after a firing, while still true.
        if last.is_some() && values.get("rsi14").is_some_and(|r| *r < 45.0) && i > 150 {
            split = Some(i);
            break;
        }
    }
    let split = split.expect("a bar where it holds");
    let mut b = plain();
    b.load(
        rules.iter().map(|r| AlertRule {
            last_fired_at: if r.id == 1 { last } else { last_cross },
            ..r.clone()
        }),
        Vec::new(),
    );
    let stored: Vec<Candle> = bars[..=split].iter().map(|(c, _)| c.clone()).collect();
    b.prime_history("binance", "BTCUSDT", Interval::H4, &stored, 1_000);
    let mut crossings = 0;
    for (candle, _) in &bars[split + 1..] {
        let (x, y) = (a.process_candle(candle), b.process_candle(candle));
        crossings += x.iter().filter(|f| f.rule_id == 2).count();
        assert_eq!(seen(x), seen(y), "bar {}", candle.open_ts);
    }
    assert!(crossings > 3, "{crossings}");
}

#[test]
fn a_crossing_on_the_first_close_after_a_restart_fires() {
    let bars = talib_4h();
    let rules = vec![expression_rule(
        1,
        "close(4h) x> ema(9,4h)",
        Trigger::EveryTime,
    )];
    let mut a = plain();
    a.load(rules.clone(), Vec::new());
    let mut firings: Vec<(usize, i64)> = Vec::new();
    for (i, (candle, _)) in bars.iter().enumerate() {
        for f in a.process_candle(candle) {
            firings.push((i, f.ts));
        }
    }
    // Restarts right before each crossing after the first: the restarted engine, warmed up
    // on the stored bars and knowing the last firing, fires it.
    assert!(firings.len() > 5, "{firings:?}");
    for pair in firings.windows(2).skip(1) {
        let [(_, last_ts), (at, ts)] = [pair[0], pair[1]];
        let mut b = plain();
        b.load(
            rules.iter().map(|r| AlertRule {
                last_fired_at: Some(last_ts),
                ..r.clone()
            }),
            Vec::new(),
        );
        let stored: Vec<Candle> = bars[..at].iter().map(|(c, _)| c.clone()).collect();
        b.prime_history("binance", "BTCUSDT", Interval::H4, &stored, 1_000);
        let fired = b.process_candle(&bars[at].0);
        assert_eq!(only(&fired).ts, ts, "the crossing at bar {at}");
    }
}

#[test]
fn the_changed_prices_are_each_moved_symbol_once_until_listed_again() {
    let mut e = plain();
    add(&mut e, rule(1, every_time(spec(Condition::CrossingUp))));
    assert!(e.take_changed_prices().is_empty());
    assert!(e.process_tick(&tick_at("99", T0)).is_empty());
    assert!(e.process_tick(&tick_at("99.5", T0 + 1)).is_empty());
    let changed = e.take_changed_prices();
    assert_eq!(changed, e.last_prices());
    assert_eq!(changed[0].2, d("99.5"));
    assert!(e.take_changed_prices().is_empty(), "given once");
    // The evaluated path lists it too (a crossing), and a redelivery does not.
    assert_eq!(e.process_tick(&tick_at("101", T0 + 2)).len(), 1);
    assert_eq!(e.take_changed_prices()[0].2, d("101"));
    assert!(e.process_tick(&tick_at("101", T0 + 2)).len() <= 1);
    assert!(e.take_changed_prices().is_empty());
    // Listed again (a failed save): given again, at the price of then.
    e.relist_price("binance", "BTCUSDT");
    e.relist_price("binance", "BTCUSDT");
    assert!(e.process_tick(&tick_at("102", T0 + 3)).is_empty());
    assert_eq!(e.take_changed_prices(), e.last_prices());
    // A symbol reset meanwhile (listed, then forgotten, then primed) is given once.
    assert!(e.process_tick(&tick_at("103", T0 + 4)).is_empty());
    let rules = vec![rule(1, every_time(spec(Condition::CrossingUp)))];
    e.reset_symbol("binance", "BTCUSDT", &rules, Some((d("104"), T0 + 5)));
    let changed = e.take_changed_prices();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].2, d("104"));
    // Unknown symbols and symbols without a price are not listed.
    e.relist_price("binance", "NOSUCH");
    assert!(e.take_changed_prices().is_empty());
}

/// The changed prices, taken at any moments and applied to a copy, always give what
/// `last_prices` (the plain reference: every symbol, every time) gives.
#[test]
fn the_changed_prices_keep_a_copy_equal_to_all_the_last_prices() {
    let symbols = ["AAA", "BBB", "CCC", "DDD"];
    let mut e = plain();
    let mut id = 0;
    for symbol in symbols {
        for level in ["95", "100", "105"] {
            id += 1;
            let mut s = every_time(RuleSpec::price(
                "binance",
                symbol,
                Condition::CrossingUp,
                d(level),
            ));
            s.cooldown_s = 0;
            add(&mut e, rule(id, s));
        }
    }
    let mut copy: BTreeMap<(String, String), (Decimal, i64)> = BTreeMap::new();
    let mut rng = SplitMix::new(42);
    let mut next = move |n: u64| rng.below(n);
    for step in 0..5_000_i64 {
        let symbol = symbols[next(symbols.len() as u64) as usize];
        let price = Decimal::new(9_000 + next(2_000) as i64, 2);
        let mut tick = tick_at("1", T0 + step);
        tick.symbol = symbol.into();
        tick.price = price;
        e.process_tick(&tick);
        if next(7) == 0 {
            if next(3) == 0 {
                e.relist_price("binance", symbols[next(symbols.len() as u64) as usize]);
            }
            for (venue, symbol, price, ts) in e.take_changed_prices() {
                copy.insert((venue, symbol), (price, ts));
            }
            let all: BTreeMap<(String, String), (Decimal, i64)> = e
                .last_prices()
                .into_iter()
                .map(|(v, s, p, t)| ((v, s), (p, t)))
                .collect();
            assert_eq!(copy, all, "after step {step}");
        }
    }
}
