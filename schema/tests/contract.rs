//! The wire contract v1 against the design's own examples, and every kind of bad input.

use proptest::prelude::*;
use rust_decimal::Decimal;
use tickwatch_schema::Error;
use tickwatch_schema::rule::Condition;
use tickwatch_schema::wire::{
    self, AlertTriggered, Candle, Channel, Control, EventKind, Grade, Interval, Message,
    Notification, ParseMode, Signal, SignalKind, Tick,
};

fn dec(s: &str) -> Decimal {
    s.parse().expect("decimal")
}

// The design's examples, with the elided ids ("0193…") filled in.
const TICK: &str = r#"{"venue":"binance","symbol":"BTCUSDT","price":"64321.12","qty":"0.013",
 "ts":1763762400123,"trade_id":"3287612"}"#;
const CANDLE: &str = r#"{"venue":"binance","symbol":"BTCUSDT","interval":"1m","open_ts":1763762400000,
 "open":"64300.00","high":"64350.10","low":"64280.00","close":"64321.12",
 "volume":"12.3456","trades":431,"closed":true}"#;
const SIGNAL: &str = r#"{"id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","kind":"rsi_oversold","venue":"binance","symbol":"BTCUSDT",
 "interval":"1m","ts":1763762460000,"price":"64321.12","score":72,"grade":"B",
 "details":{"rsi":27.4}}"#;
const ALERT: &str = r#"{"id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c","rule_id":42,"user_id":7,"venue":"binance","symbol":"BTCUSDT",
 "condition":"crossing_up","threshold":"65000","price":"65000.50",
 "ts":1763762460000}"#;
const NOTIFICATION: &str = r#"{"id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5d","channel":"telegram","chat_id":123456789,"text":"BTCUSDT crossed 65000",
 "parse_mode":"MarkdownV2","dedupe_key":"alert:0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"}"#;

fn round_trip<M: Message + PartialEq + std::fmt::Debug>(json: &str) -> M {
    let decoded: M = wire::decode(json.as_bytes()).expect("decodes");
    let encoded = wire::encode(&decoded).expect("encodes");
    let again: M = wire::decode(&encoded.body).expect("decodes again");
    assert_eq!(again, decoded);
    let original: serde_json::Value = serde_json::from_str(json).expect("json");
    let reencoded: serde_json::Value = serde_json::from_slice(&encoded.body).expect("json");
    for (key, value) in original.as_object().expect("object") {
        assert_eq!(
            &reencoded[key], value,
            "field {key} is written as the design shows it"
        );
    }
    decoded
}

#[test]
fn the_designs_examples_decode_to_typed_values_and_round_trip() {
    let tick: Tick = round_trip(TICK);
    assert_eq!(tick.price, dec("64321.12"));
    assert_eq!(tick.trade_id.as_deref(), Some("3287612"));
    assert_eq!(tick.routing_key(), "tick.binance.BTCUSDT");

    let candle: Candle = round_trip(CANDLE);
    assert_eq!(candle.interval, Interval::M1);
    assert_eq!(candle.open, dec("64300.00"));
    assert_eq!(candle.open.to_string(), "64300.00", "the scale is kept");
    assert_eq!(candle.trades, Some(431));
    assert_eq!(candle.routing_key(), "candle.binance.BTCUSDT.1m");

    let signal: Signal = round_trip(SIGNAL);
    assert_eq!(
        (signal.kind, signal.grade, signal.score),
        (SignalKind::RsiOversold, Grade::B, 72)
    );
    assert_eq!(signal.details["rsi"], 27.4);
    assert_eq!(signal.routing_key(), "signal.rsi_oversold.binance.BTCUSDT");

    let alert: AlertTriggered = round_trip(ALERT);
    assert_eq!(alert.condition, Condition::CrossingUp);
    assert_eq!((alert.rule_id, alert.user_id), (42, 7));
    assert_eq!(alert.routing_key(), "alert.binance.BTCUSDT");

    let notification: Notification = round_trip(NOTIFICATION);
    assert_eq!(notification.channel, Channel::Telegram);
    assert_eq!(notification.parse_mode, Some(ParseMode::MarkdownV2));
    assert_eq!(
        notification.kind,
        EventKind::Alert,
        "absent kind defaults to alert"
    );
    assert_eq!(notification.routing_key(), "telegram");
}

#[test]
fn encoding_stamps_the_metadata() {
    let tick: Tick = wire::decode(TICK.as_bytes()).expect("tick");
    let encoded = wire::encode(&tick).expect("encode");
    assert_eq!(encoded.meta.kind.as_str(), "tick");
    assert_eq!(encoded.meta.schema_version, 1);
    assert_eq!(encoded.meta.message_id.get_version_num(), 7, "UUID v7");
    assert_eq!(encoded.meta.routing_key, "tick.binance.BTCUSDT");
}

#[test]
fn unknown_fields_are_ignored_on_read() {
    let with_extra = TICK.replace("\"venue\"", "\"future_field\":[1,2],\"venue\"");
    let tick: Tick = wire::decode(with_extra.as_bytes()).expect("still a tick");
    assert_eq!(tick.symbol, "BTCUSDT");
}

fn decode_err<M: Message + std::fmt::Debug>(json: &str) -> Error {
    wire::decode::<M>(json.as_bytes()).expect_err("must be refused")
}

#[test]
fn each_kind_of_bad_input_gets_its_own_clear_error() {
    let e = decode_err::<Tick>(r#"{"venue":"binance","symbol":"#);
    assert!(matches!(e, Error::MalformedJson { .. }), "{e}");
    assert!(e.to_string().starts_with("malformed JSON at line 1"), "{e}");

    let e = decode_err::<Tick>(&TICK.replace(r#""qty":"0.013","#, ""));
    assert!(matches!(&e, Error::MissingField(f) if f == "qty"), "{e}");
    assert_eq!(e.to_string(), "missing required field `qty`");

    let e = decode_err::<Tick>(&TICK.replace(r#""64321.12""#, "64321.12"));
    assert!(
        matches!(e, Error::BadValue(_)),
        "a float price is refused: {e}"
    );

    let e = decode_err::<Tick>(&TICK.replace(r#""64321.12""#, r#""-1""#));
    assert_eq!(
        e.to_string(),
        "invalid `price`: -1 is not a price: it must be above zero"
    );

    let e = decode_err::<Tick>(&TICK.replace(r#""64321.12""#, r#""0""#));
    assert!(e.to_string().contains("must be above zero"), "{e}");

    let e = decode_err::<Tick>(&TICK.replace(r#""BTCUSDT""#, r#""""#));
    assert_eq!(e.to_string(), "invalid `symbol`: is empty");

    let e = decode_err::<Tick>(&TICK.replace(r#""BTCUSDT""#, r#""btcusdt""#));
    assert!(
        e.to_string().contains("write it upper-case: `BTCUSDT`"),
        "{e}"
    );

    let e = decode_err::<Tick>(&TICK.replace("1763762400123", "1763762400"));
    assert!(e.to_string().contains("looks like seconds"), "{e}");

    let e = decode_err::<Tick>(&TICK.replace("1763762400123", "1763762400123000"));
    assert!(e.to_string().contains("after 2100"), "{e}");

    let e = decode_err::<Candle>(&CANDLE.replace(r#""low":"64280.00""#, r#""low":"64400.00""#));
    assert!(
        e.to_string()
            .contains("high 64350.10 is below low 64400.00"),
        "{e}"
    );

    let e = decode_err::<Candle>(&CANDLE.replace(r#""1m""#, r#""7m""#));
    assert!(e.to_string().contains("`7m` is not an interval"), "{e}");

    let e = decode_err::<Signal>(&SIGNAL.replace("\"score\":72", "\"score\":172"));
    assert!(e.to_string().contains("172 is above 100"), "{e}");

    let e = decode_err::<Notification>(&NOTIFICATION.replace("123456789", "0"));
    assert!(e.to_string().contains("chat_id"), "{e}");

    let e = wire::check_schema_version(Some("2")).expect_err("version 2");
    assert_eq!(
        e.to_string(),
        "unsupported schema version `2`: this build reads version 1"
    );
    assert!(wire::check_schema_version(Some("1")).is_ok());
    assert!(wire::check_schema_version(None).is_ok());

    let e = wire::check_kind::<Tick>(Some("candle")).expect_err("wrong type");
    assert_eq!(
        e.to_string(),
        "message type `candle` where `tick` was expected"
    );
}

#[test]
fn control_messages_round_trip() {
    let halt = Control::Halt { by_chat: Some(5) };
    let encoded = wire::encode(&halt).expect("encode");
    assert_eq!(
        String::from_utf8_lossy(&encoded.body),
        r#"{"op":"halt","by_chat":5}"#
    );
    assert_eq!(
        wire::decode::<Control>(&encoded.body).expect("decode"),
        halt
    );
}

#[test]
fn deterministic_ids_are_stable_and_sort_by_time() {
    let a = wire::deterministic_id(1_763_762_400_000, &["alert", "42", "3287612"]);
    assert_eq!(
        a,
        wire::deterministic_id(1_763_762_400_000, &["alert", "42", "3287612"])
    );
    assert_ne!(
        a,
        wire::deterministic_id(1_763_762_400_000, &["alert", "42", "3287613"])
    );
    assert_eq!(a.get_version_num(), 7);
    let later = wire::deterministic_id(1_763_762_400_001, &["alert", "1", "1"]);
    assert!(later > a, "ids order by time");
}

fn symbol() -> impl Strategy<Value = String> {
    "[A-Z0-9]{1,12}"
}

fn venue() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9_-]{0,15}"
}

fn price() -> impl Strategy<Value = Decimal> {
    (1u64..10_000_000_000_000, 0u32..12)
        .prop_map(|(m, s)| Decimal::from_i128_with_scale(m as i128, s))
}

fn ts() -> impl Strategy<Value = i64> {
    wire::MIN_TS_MS..wire::MAX_TS_MS
}

proptest! {
    #[test]
    fn any_valid_tick_survives_encode_then_decode(
        venue in venue(), symbol in symbol(), price in price(), qty in price(), ts in ts(),
        trade_id in proptest::option::of("[0-9a-f]{1,20}"),
    ) {
        let tick = Tick { venue, symbol, price, qty, ts, trade_id };
        let encoded = wire::encode(&tick).expect("valid tick encodes");
        let back: Tick = wire::decode(&encoded.body).expect("decodes");
        prop_assert_eq!(back, tick);
    }

    #[test]
    fn any_valid_candle_survives_encode_then_decode(
        venue in venue(), symbol in symbol(), a in price(), b in price(), c in price(), d in price(),
        volume in price(), open_ts in ts(), trades in proptest::option::of(0u64..1_000_000),
        interval in proptest::sample::select(Interval::ALL.to_vec()), closed in any::<bool>(),
    ) {
        let mut prices = [a, b, c, d];
        prices.sort();
        let candle = Candle {
            venue, symbol, interval, open_ts, open: prices[1], high: prices[3], low: prices[0],
            close: prices[2], volume, trades, closed,
        };
        let encoded = wire::encode(&candle).expect("valid candle encodes");
        let back: Candle = wire::decode(&encoded.body).expect("decodes");
        prop_assert_eq!(back, candle);
    }

    #[test]
    fn any_valid_signal_survives_encode_then_decode(
        id in any::<u128>(), kind in proptest::sample::select(SignalKind::ALL.to_vec()),
        venue in venue(), symbol in symbol(),
        interval in proptest::sample::select(Interval::ALL.to_vec()), ts in ts(),
        price in price(), score in 0u8..=100, grade in proptest::sample::select(Grade::ALL.to_vec()),
        details in proptest::collection::btree_map("[a-z_]{1,12}", -1e12f64..1e12, 0..6),
    ) {
        let signal = Signal {
            id: uuid::Uuid::from_u128(id), kind, venue, symbol, interval, ts, price, score, grade,
            details: details.into_iter().map(|(k, v)| (k, serde_json::json!(v))).collect(),
        };
        let encoded = wire::encode(&signal).expect("valid signal encodes");
        let back: Signal = wire::decode(&encoded.body).expect("decodes");
        prop_assert_eq!(back, signal);
    }

    #[test]
    fn any_valid_alert_survives_encode_then_decode(
        id in any::<u128>(), rule_id in 1i64..i64::MAX, user_id in 1i64..i64::MAX,
        venue in venue(), symbol in symbol(),
        condition in proptest::sample::select(Condition::ALL.to_vec()),
        threshold in price(), price in price(), ts in ts(),
    ) {
        let alert = AlertTriggered {
            id: uuid::Uuid::from_u128(id), rule_id, user_id, venue, symbol, condition,
            threshold, price, ts,
        };
        let encoded = wire::encode(&alert).expect("valid alert encodes");
        let back: AlertTriggered = wire::decode(&encoded.body).expect("decodes");
        prop_assert_eq!(back, alert);
    }

    #[test]
    fn any_valid_notification_survives_encode_then_decode(
        id in any::<u128>(), chat_id in any::<i64>().prop_filter("a chat", |c| *c != 0),
        // Any text, including Markdown's reserved characters and Hangul.
        text in "[ -~가-힣\n]{0,200}[!-~]", dedupe_key in "[ -~]{1,200}",
        parse_mode in proptest::option::of(proptest::sample::select(ParseMode::ALL.to_vec())),
        kind in proptest::sample::select(EventKind::ALL.to_vec()),
        origin_ts in proptest::option::of(ts()),
        buttons in proptest::collection::vec(
            proptest::collection::vec(("[!-~가-힣]{1,20}", "[!-~]{1,64}"), 1..4), 0..3),
    ) {
        let buttons = buttons
            .into_iter()
            .map(|row| row.into_iter().map(|(text, data)| wire::Button { text, data }).collect())
            .collect();
        let notification = Notification {
            id: uuid::Uuid::from_u128(id), channel: Channel::Telegram, chat_id, text, parse_mode,
            dedupe_key, kind, origin_ts, buttons, chart: None,
        };
        let encoded = wire::encode(&notification).expect("valid notification encodes");
        let back: Notification = wire::decode(&encoded.body).expect("decodes");
        prop_assert_eq!(back, notification);
    }

    #[test]
    fn any_control_without_a_rule_survives_encode_then_decode(
        which in 0u8..4, id in any::<i64>(), user_id in any::<i64>(), version in any::<i64>(),
        by_chat in proptest::option::of(any::<i64>()),
    ) {
        let control = match which {
            0 => Control::RuleDeleted { rule_id: id, user_id, version },
            1 => Control::SubscriptionDeleted { subscription_id: id, version },
            2 => Control::Halt { by_chat },
            _ => Control::Resume { by_chat },
        };
        let encoded = wire::encode(&control).expect("control encodes");
        let back: Control = wire::decode(&encoded.body).expect("decodes");
        prop_assert_eq!(back, control);
    }
}
