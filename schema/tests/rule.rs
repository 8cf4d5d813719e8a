//! The alert rule model's validation, shared by the API and the bot.

use tickwatch_schema::rule::{Condition, RuleSpec, Trigger};

fn spec(json: &str) -> Result<RuleSpec, String> {
    let spec: RuleSpec = serde_json::from_str(json).map_err(|e| e.to_string())?;
    spec.validate().map_err(|e| e.to_string())?;
    Ok(spec)
}

#[test]
fn the_designs_rule_is_accepted() {
    let rule = spec(
        r#"{"venue":"binance","symbol":"BTCUSDT","condition":"crossing_up",
            "threshold":"65000","trigger":"once","cooldown_s":0,"expires_at":null}"#,
    )
    .expect("valid");
    assert_eq!(rule.condition, Condition::CrossingUp);
    assert_eq!(rule.trigger, Trigger::Once);
    assert_eq!(
        rule.threshold.map(|t| t.to_string()).as_deref(),
        Some("65000")
    );
}

#[test]
fn every_mistake_names_its_field() {
    let cases = [
        (
            r#"{"venue":"binance","symbol":"BTCUSDT","condition":"crossing_up"}"#,
            "invalid `threshold`: is required for `crossing_up`",
        ),
        (
            r#"{"venue":"binance","symbol":"BTCUSDT","condition":"above","threshold":"1"}"#,
            "unknown variant `above`, expected one of `greater_than`",
        ),
        (
            r#"{"venue":"binance","symbol":"BTCUSDT","condition":"less_than","threshold":"-5"}"#,
            "invalid `threshold`: -5 is not a price",
        ),
        (
            r#"{"venue":"binance","symbol":"BTCUSDT","condition":"entering_channel","low":"10","high":"5"}"#,
            "invalid `low`: 10 must be at most high 5",
        ),
        (
            r#"{"venue":"binance","symbol":"BTCUSDT","condition":"entering_channel","threshold":"7","low":"1","high":"5"}"#,
            "invalid `threshold`: does not apply to `entering_channel`",
        ),
        (
            r#"{"venue":"binance","symbol":"BTCUSDT","condition":"moving_up_pct","pct":"5"}"#,
            "invalid `window_s`: is required",
        ),
        (
            r#"{"venue":"binance","symbol":"BTCUSDT","condition":"greater_than","threshold":"1","trigger":"once_per_bar"}"#,
            "invalid `interval`: is required for `once_per_bar`",
        ),
        (
            r#"{"venue":"binance","symbol":"BTCUSDT","condition":"greater_than","threshold":"1","trigger":"once_per_bar_close"}"#,
            "invalid `interval`: is required for `once_per_bar_close`",
        ),
        (
            r#"{"venue":"binance","symbol":"BTCUSDT","condition":"greater_than","threshold":"1","interval":"1h"}"#,
            "invalid `interval`: applies only to `once_per_bar` and `once_per_bar_close`, not `once`",
        ),
        (
            r#"{"venue":"binance","symbol":"BTCUSDT","condition":"moving_up","threshold":"500"}"#,
            "invalid `window_s`: is required for `moving_up`",
        ),
        (
            r#"{"venue":"binance","symbol":"BTCUSDT","condition":"moving_down","pct":"5","window_s":60}"#,
            "invalid `threshold`: is required for `moving_down`",
        ),
        (
            r#"{"venue":"binance","symbol":"BTCUSDT","condition":"inside_channel","threshold":"5"}"#,
            "invalid `threshold`: does not apply to `inside_channel`",
        ),
        (
            r#"{"venue":"binance","symbol":"BTCUSDT","condition":"greater_than","threshold":"1","trigger":"every_time","cooldown_s":99999999}"#,
            "invalid `cooldown_s`",
        ),
        (
            r#"{"venue":"binance","symbol":"","condition":"greater_than","threshold":"1"}"#,
            "invalid `symbol`: is empty",
        ),
        (
            r#"{"venue":"binance","symbol":"BTCUSDT","condition":"greater_than","threshold":65000}"#,
            "invalid type: integer `65000`, expected a Decimal",
        ),
    ];
    for (json, expected) in cases {
        let err = spec(json).expect_err(json);
        assert!(
            err.contains(expected),
            "{json}\n  gave: {err}\n  want: {expected}"
        );
    }
}

#[test]
fn an_expiry_in_the_past_is_refused() {
    let rule = spec(
        r#"{"venue":"binance","symbol":"BTCUSDT","condition":"less_than","threshold":"1","expires_at":1763762400000}"#,
    )
    .expect("valid in itself");
    assert!(rule.validate_at(1_763_762_300_000).is_ok());
    let err = rule
        .validate_at(1_763_762_500_000)
        .expect_err("past")
        .to_string();
    assert_eq!(err, "invalid `expires_at`: is in the past");
}

#[test]
fn the_bot_understands_short_conditions() {
    for (text, condition) in [
        (">", Condition::GreaterThan),
        ("<", Condition::LessThan),
        ("cross_up", Condition::CrossingUp),
        ("CROSSING_DOWN", Condition::CrossingDown),
        ("x", Condition::Crossing),
        ("up%", Condition::MovingUpPct),
        ("up", Condition::MovingUp),
        ("moving_down", Condition::MovingDown),
        ("inside", Condition::InsideChannel),
        ("outside", Condition::OutsideChannel),
    ] {
        assert_eq!(Condition::parse_loose(text).expect(text), condition);
    }
    assert!(Condition::parse_loose("sideways").is_err());
}

#[test]
fn channel_bounds_come_in_either_order() {
    let rule: RuleSpec = serde_json::from_str(
        r#"{"venue":"binance","symbol":"BTCUSDT","condition":"entering_channel","low":"10","high":"5"}"#,
    )
    .expect("decodes");
    let rule = rule.normalized();
    rule.validate().expect("valid once in order");
    assert_eq!(
        (
            rule.low.map(|d| d.to_string()),
            rule.high.map(|d| d.to_string())
        ),
        (Some("5".into()), Some("10".into()))
    );
    // A one-price channel is a channel too.
    let mut flat = rule.clone();
    flat.high = flat.low;
    assert!(flat.validate().is_ok());
}

#[test]
fn every_tradingview_operator_and_trigger_is_accepted() {
    for json in [
        r#"{"venue":"binance","symbol":"BTCUSDT","condition":"inside_channel","low":"60000","high":"70000"}"#,
        r#"{"venue":"binance","symbol":"BTCUSDT","condition":"outside_channel","low":"60000","high":"70000","trigger":"every_time","cooldown_s":60}"#,
        r#"{"venue":"binance","symbol":"BTCUSDT","condition":"moving_up","threshold":"500","window_s":3600}"#,
        r#"{"venue":"binance","symbol":"BTCUSDT","condition":"moving_down","threshold":"500","window_s":3600,"trigger":"once_per_bar","interval":"1h"}"#,
        r#"{"venue":"binance","symbol":"BTCUSDT","condition":"crossing_up","threshold":"65000","trigger":"once_per_bar_close","interval":"4h"}"#,
    ] {
        spec(json).expect(json);
    }
}
