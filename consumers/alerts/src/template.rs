//! Message templates: a rule's own text or the default for the user's language, with
//! `{{placeholder}}`s filled from the firing. Output is plain text; the notifier escapes it
//! for Telegram.
//!
//! Placeholders for a firing: `{{symbol}}`, `{{venue}}`, `{{price}}`, `{{threshold}}`,
//! `{{condition}}` (translated, e.g. `crossing_up` → "crossed up" / "상향 돌파"), `{{time}}`
//! (`YYYY-MM-DD HH:MM:SS KST`, in the user's time zone), `{{rule_id}}`, `{{low}}`, `{{high}}`,
//! `{{pct}}`,
//! `{{window}}` (e.g. `5m` / `5분`), `{{change}}` (signed, two decimals, e.g. `+5.12`),
//! `{{direction}}` (`up` / `down`). For a signal: `{{kind}}` (translated), `{{symbol}}`,
//! `{{venue}}`, `{{interval}}`, `{{price}}`, `{{score}}`, `{{grade}}`, `{{time}}`.
//! Prices (`{{price}}`, `{{threshold}}`, `{{low}}`, `{{high}}`) read as the market shows
//! them: `₩74,800`, `64,321.12 USDT` ([`display::format_price`]).
//! A placeholder with no value for this firing (`{{low}}` of a crossing) becomes empty; an
//! unknown one is left as written, so a typo shows instead of vanishing.

use rust_decimal::{Decimal, RoundingStrategy};
use tickwatch_schema::display::{self, Tz, format_price};
use tickwatch_schema::rule::Condition;
use tickwatch_schema::wire::{AlertAction, Button, Signal, SignalKind};

use crate::firing::{Direction, Firing};

/// The user's language (`users.language`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    Ko,
    En,
}

impl Lang {
    /// `ko`, `ko-KR`, `KO` … are Korean; anything else is English.
    pub fn from_code(code: &str) -> Lang {
        let code = code.trim();
        let primary = code.split(['-', '_']).next().unwrap_or(code);
        if primary.eq_ignore_ascii_case("ko") {
            Lang::Ko
        } else {
            Lang::En
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Ko => "ko",
            Lang::En => "en",
        }
    }
}

/// How one user reads a message: their language and time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locale {
    pub lang: Lang,
    pub tz: Tz,
}

impl Locale {
    /// From the user's row: `users.language` and `users.time_zone` (none: Asia/Seoul for
    /// Korean, UTC otherwise).
    pub fn of_user(language: &str, time_zone: Option<&str>) -> Locale {
        Locale {
            lang: Lang::from_code(language),
            tz: display::user_time_zone(language, time_zone),
        }
    }

    /// A language with its default time zone.
    pub fn of(lang: Lang) -> Locale {
        Locale::of_user(lang.code(), None)
    }
}

/// The default template of a condition in a language.
pub fn default_template(lang: Lang, condition: Condition) -> &'static str {
    match (lang, condition) {
        (Lang::En, Condition::Expression) => {
            "🔔 {{symbol}} {{condition}}: {{expression}} — close {{price}} ({{venue}}, {{time}})"
        }
        (Lang::Ko, Condition::Expression) => {
            "🔔 {{symbol}} {{condition}}: {{expression}} — 종가 {{price}} ({{venue}}, {{time}})"
        }
        (Lang::En, c) if c.is_channel() => {
            "🔔 {{symbol}} {{condition}} [{{low}}, {{high}}]: {{price}} ({{venue}}, {{time}})"
        }
        (Lang::En, c) if c.is_moving_pct() => {
            "🔔 {{symbol}} {{condition}} {{change}}% within {{window}} (alert at {{pct}}%): {{price}} ({{venue}}, {{time}})"
        }
        (Lang::En, c) if c.is_moving_amount() => {
            "🔔 {{symbol}} {{condition}} {{change}} within {{window}} (alert at {{threshold}}): {{price}} ({{venue}}, {{time}})"
        }
        (Lang::En, _) => {
            "🔔 {{symbol}} {{condition}} {{threshold}}: {{price}} ({{venue}}, {{time}})"
        }
        (Lang::Ko, c) if c.is_channel() => {
            "🔔 {{symbol}} [{{low}} ~ {{high}}] {{condition}}: 현재가 {{price}} ({{venue}}, {{time}})"
        }
        (Lang::Ko, c) if c.is_moving_pct() => {
            "🔔 {{symbol}} {{window}} 동안 {{change}}% {{condition}} (기준 {{pct}}%): 현재가 {{price}} ({{venue}}, {{time}})"
        }
        (Lang::Ko, c) if c.is_moving_amount() => {
            "🔔 {{symbol}} {{window}} 동안 {{change}} {{condition}} (기준 {{threshold}}): 현재가 {{price}} ({{venue}}, {{time}})"
        }
        (Lang::Ko, _) => {
            "🔔 {{symbol}} {{threshold}} {{condition}}: 현재가 {{price}} ({{venue}}, {{time}})"
        }
    }
}

/// The default template of a subscription hit.
pub fn default_signal_template(lang: Lang) -> &'static str {
    match lang {
        Lang::En => {
            "📈 {{kind}} · {{symbol}} ({{venue}}, {{interval}}) price {{price}} · score {{score}} · grade {{grade}} · {{time}}"
        }
        Lang::Ko => {
            "📈 {{kind}} · {{symbol}} ({{venue}}, {{interval}}) 가격 {{price}} · 점수 {{score}} · 등급 {{grade}} · {{time}}"
        }
    }
}

/// A condition's name as users read it; `crossing` says which way it went.
pub fn condition_label(condition: Condition, direction: Direction, lang: Lang) -> &'static str {
    use Condition::*;
    match (condition, direction, lang) {
        (GreaterThan, _, Lang::En) => "above",
        (GreaterThan, _, Lang::Ko) => "초과",
        (LessThan, _, Lang::En) => "below",
        (LessThan, _, Lang::Ko) => "미만",
        (CrossingUp, _, Lang::En) | (Crossing, Direction::Up, Lang::En) => "crossed up",
        (CrossingUp, _, Lang::Ko) | (Crossing, Direction::Up, Lang::Ko) => "상향 돌파",
        (CrossingDown, _, Lang::En) | (Crossing, Direction::Down, Lang::En) => "crossed down",
        (CrossingDown, _, Lang::Ko) | (Crossing, Direction::Down, Lang::Ko) => "하향 돌파",
        (EnteringChannel, _, Lang::En) => "entered channel",
        (EnteringChannel, _, Lang::Ko) => "채널 진입",
        (ExitingChannel, _, Lang::En) => "exited channel",
        (ExitingChannel, _, Lang::Ko) => "채널 이탈",
        (InsideChannel, _, Lang::En) => "inside channel",
        (InsideChannel, _, Lang::Ko) => "채널 안",
        (OutsideChannel, _, Lang::En) => "outside channel",
        (OutsideChannel, _, Lang::Ko) => "채널 밖",
        (MovingUpPct | MovingUp, _, Lang::En) => "rose",
        (MovingUpPct | MovingUp, _, Lang::Ko) => "상승",
        (MovingDownPct | MovingDown, _, Lang::En) => "fell",
        (MovingDownPct | MovingDown, _, Lang::Ko) => "하락",
        (Expression, _, Lang::En) => "conditions met",
        (Expression, _, Lang::Ko) => "조건 충족",
    }
}

/// A signal kind's name as users read it.
pub fn signal_label(kind: SignalKind, lang: Lang) -> &'static str {
    use SignalKind::*;
    let (en, ko) = match kind {
        RsiOversold => ("RSI oversold", "RSI 과매도"),
        RsiOverbought => ("RSI overbought", "RSI 과매수"),
        MacdBullishCross => ("MACD bullish cross", "MACD 상향 교차"),
        MacdBearishCross => ("MACD bearish cross", "MACD 하향 교차"),
        GoldenCross => ("golden cross", "골든크로스"),
        DeathCross => ("death cross", "데드크로스"),
        BollingerBreakoutUp => ("Bollinger breakout up", "볼린저 상단 돌파"),
        BollingerBreakoutDown => ("Bollinger breakout down", "볼린저 하단 이탈"),
        BollingerSqueeze => ("Bollinger squeeze", "볼린저 스퀴즈"),
        VolumeSurge => ("volume surge", "거래량 급증"),
        New52wHigh => ("new 52-week high", "52주 신고가"),
        VcpSetup => ("VCP setup", "VCP 셋업"),
        VcpBreakout => ("VCP breakout", "VCP 돌파"),
        ClosingPriceSetup => ("closing-price setup", "종가 매매 셋업"),
        GapUp => ("gap up", "갭 상승"),
        OpeningRangeBreakout => ("opening-range breakout", "시가 범위 돌파"),
        VwapReclaim => ("VWAP reclaim", "VWAP 회복"),
    };
    match lang {
        Lang::En => en,
        Lang::Ko => ko,
    }
}

/// A window as people say it: `90s`, `5m`, `4h`, `2d` (`90초`, `5분`, `4시간`, `2일`).
pub fn format_window(seconds: u32, lang: Lang) -> String {
    let (value, unit) = match seconds {
        s if s > 0 && s % 86_400 == 0 => (s / 86_400, 3),
        s if s > 0 && s % 3_600 == 0 => (s / 3_600, 2),
        s if s > 0 && s % 60 == 0 => (s / 60, 1),
        s => (s, 0),
    };
    let unit = match (lang, unit) {
        (Lang::En, 0) => "s",
        (Lang::En, 1) => "m",
        (Lang::En, 2) => "h",
        (Lang::En, _) => "d",
        (Lang::Ko, 0) => "초",
        (Lang::Ko, 1) => "분",
        (Lang::Ko, 2) => "시간",
        (Lang::Ko, _) => "일",
    };
    format!("{value}{unit}")
}

fn signed_two_places(value: Decimal) -> String {
    let rounded = value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    if rounded.is_sign_negative() && !rounded.is_zero() {
        format!("{rounded:.2}")
    } else {
        format!("+{:.2}", rounded.abs())
    }
}

/// The buttons under an alert's notification: pause the rule, delete it, snooze it for an
/// hour (a `once` rule that fired is already off: delete only). The bot answers their
/// [`AlertAction`] data and edits the buttons in place.
pub fn alert_buttons(lang: Lang, rule_id: i64, once: bool) -> Vec<Vec<Button>> {
    let button = |en: &str, ko: &str, action: AlertAction| Button {
        text: match lang {
            Lang::En => en.to_string(),
            Lang::Ko => ko.to_string(),
        },
        data: action.data(rule_id),
    };
    let delete = button("🗑 Delete", "🗑 삭제", AlertAction::Delete);
    if once {
        return vec![vec![delete]];
    }
    vec![vec![
        button("⏸ Pause", "⏸ 일시정지", AlertAction::Pause),
        delete,
        button("😴 1h", "😴 1시간", AlertAction::Snooze),
    ]]
}

/// Fills `template` from a firing.
pub fn render(template: &str, locale: Locale, firing: &Firing) -> String {
    let lang = locale.lang;
    let price = |v: Decimal| format_price(v, &firing.venue, &firing.symbol);
    let opt = |v: Option<Decimal>| Some(v.map(price).unwrap_or_default());
    substitute(template, |name| match name {
        "symbol" => Some(firing.symbol.to_string()),
        "venue" => Some(firing.venue.to_string()),
        "price" => Some(price(firing.price)),
        "threshold" => Some(price(firing.threshold)),
        "condition" => Some(condition_label(firing.condition, firing.direction, lang).into()),
        "direction" => Some(firing.direction.as_str().into()),
        "time" => Some(display::format_time(firing.ts, locale.tz)),
        "rule_id" => Some(firing.rule_id.to_string()),
        "expression" => Some(firing.expression.as_deref().unwrap_or_default().to_string()),
        "low" => opt(firing.low),
        "high" => opt(firing.high),
        "pct" => Some(firing.pct.map(|p| p.to_string()).unwrap_or_default()),
        "window" => Some(
            firing
                .window_s
                .map(|w| format_window(w, lang))
                .unwrap_or_default(),
        ),
        "change" => Some(match (firing.change_pct, firing.change) {
            (Some(pct), _) => signed_two_places(pct),
            (None, Some(amount)) if amount.is_sign_negative() => format!("-{}", price(-amount)),
            (None, Some(amount)) => format!("+{}", price(amount)),
            (None, None) => String::new(),
        }),
        _ => None,
    })
}

/// The firing's text: its rule's template, or the default of its condition in the user's
/// language.
pub fn render_firing(locale: Locale, firing: &Firing) -> String {
    let template = firing
        .template
        .as_deref()
        .unwrap_or_else(|| default_template(locale.lang, firing.condition));
    render(template, locale, firing)
}

/// Fills a subscription template (or the default one) from a signal. A preliminary signal
/// (the 종가 scan of a day's candle before the close) says so on a first line, so the final
/// one after the close reads as its confirmation, not a repeat.
pub fn render_signal(template: Option<&str>, locale: Locale, signal: &Signal) -> String {
    let lang = locale.lang;
    let template = template.unwrap_or_else(|| default_signal_template(lang));
    let preliminary = signal.details.get("preliminary") == Some(&serde_json::Value::Bool(true));
    let note = match (preliminary, lang) {
        (false, _) => "",
        (true, Lang::Ko) => "⏳ 장 마감 전 예비 신호 (마감 후 확정 신호가 따로 옵니다)\n",
        (true, Lang::En) => {
            "⏳ Preliminary, before the close (the confirmed signal follows after it)\n"
        }
    };
    let body = substitute(template, |name| match name {
        "kind" => Some(signal_label(signal.kind, lang).into()),
        "symbol" => Some(signal.symbol.clone()),
        "venue" => Some(signal.venue.clone()),
        "interval" => Some(signal.interval.to_string()),
        "price" => Some(format_price(signal.price, &signal.venue, &signal.symbol)),
        "score" => Some(signal.score.to_string()),
        "grade" => Some(signal.grade.to_string()),
        "time" => Some(display::format_time(signal.ts, locale.tz)),
        _ => None,
    });
    format!("{note}{body}")
}

/// Replaces each `{{name}}` (spaces inside the braces allowed) by `value(name)`; leaves it
/// as written when `value` does not know the name, and leaves an unclosed `{{` alone.
fn substitute(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        match value(name.trim()) {
            Some(v) => out.push_str(&v),
            None => {
                out.push_str("{{");
                out.push_str(name);
                out.push_str("}}");
            }
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tickwatch_schema::rule::Trigger;
    use tickwatch_schema::wire::{Grade, Interval};
    use uuid::Uuid;

    use super::*;

    fn firing(condition: Condition, direction: Direction) -> Firing {
        Firing {
            id: Uuid::nil(),
            rule_id: 42,
            rule_version: 1,
            user_id: 7,
            venue: Arc::from("binance"),
            symbol: Arc::from("BTCUSDT"),
            condition,
            direction,
            threshold: Decimal::from(65_000),
            low: None,
            high: None,
            pct: None,
            window_s: None,
            change_pct: None,
            change: None,
            expression: None,
            price: "65000.50".parse().expect("decimal"),
            ts: 1_763_762_460_000,
            interval: None,
            trigger: Trigger::Once,
            disable_rule: true,
            template: None,
        }
    }

    #[test]
    fn english_and_korean_defaults() {
        let f = firing(Condition::CrossingUp, Direction::Up);
        assert_eq!(
            f.message(Locale::of(Lang::En)),
            "🔔 BTCUSDT crossed up 65,000 USDT: 65,000.50 USDT (binance, 2025-11-21 22:01:00 UTC)"
        );
        assert_eq!(
            f.message(Locale::of(Lang::Ko)),
            "🔔 BTCUSDT 65,000 USDT 상향 돌파: 현재가 65,000.50 USDT (binance, 2025-11-22 07:01:00 KST)"
        );
    }

    #[test]
    fn crossing_names_its_direction_and_every_condition_has_labels() {
        let down = firing(Condition::Crossing, Direction::Down);
        assert!(down.message(Locale::of(Lang::En)).contains("crossed down"));
        assert!(down.message(Locale::of(Lang::Ko)).contains("하향 돌파"));
        for &c in Condition::ALL {
            for d in [Direction::Up, Direction::Down] {
                assert!(!condition_label(c, d, Lang::En).is_empty());
                assert!(!condition_label(c, d, Lang::Ko).is_empty());
            }
        }
        assert_eq!(
            condition_label(Condition::GreaterThan, Direction::Up, Lang::Ko),
            "초과"
        );
    }

    #[test]
    fn channel_and_moving_defaults() {
        let mut ch = firing(Condition::EnteringChannel, Direction::Up);
        ch.low = Some(Decimal::from(64_000));
        ch.high = Some(Decimal::from(66_000));
        ch.threshold = Decimal::from(64_000);
        assert_eq!(
            ch.message(Locale::of(Lang::En)),
            "🔔 BTCUSDT entered channel [64,000 USDT, 66,000 USDT]: 65,000.50 USDT (binance, 2025-11-21 22:01:00 UTC)"
        );
        assert!(
            ch.message(Locale::of(Lang::Ko))
                .contains("[64,000 USDT ~ 66,000 USDT] 채널 진입")
        );
        let mut mv = firing(Condition::MovingDownPct, Direction::Down);
        mv.pct = Some(Decimal::from(5));
        mv.window_s = Some(300);
        mv.change_pct = Some("-5.126".parse().expect("decimal"));
        assert_eq!(
            mv.message(Locale::of(Lang::En)),
            "🔔 BTCUSDT fell -5.13% within 5m (alert at 5%): 65,000.50 USDT (binance, 2025-11-21 22:01:00 UTC)"
        );
        assert!(
            mv.message(Locale::of(Lang::Ko))
                .contains("5분 동안 -5.13% 하락 (기준 5%)")
        );
    }

    #[test]
    fn custom_template_every_placeholder_and_unknown_ones() {
        let mut f = firing(Condition::CrossingUp, Direction::Up);
        f.template = Some(Arc::from(
            "{{symbol}}|{{venue}}|{{price}}|{{threshold}}|{{condition}}|{{time}}|{{rule_id}}|{{low}}|{{high}}|{{pct}}|{{ direction }}|{{nope}}|{{unclosed",
        ));
        assert_eq!(
            f.message(Locale::of(Lang::En)),
            "BTCUSDT|binance|65,000.50 USDT|65,000 USDT|crossed up|2025-11-21 22:01:00 UTC|42||||up|{{nope}}|{{unclosed"
        );
    }

    #[test]
    fn signal_rendering() {
        let signal = Signal {
            id: Uuid::nil(),
            kind: SignalKind::RsiOversold,
            venue: "binance".into(),
            symbol: "BTCUSDT".into(),
            interval: Interval::M1,
            ts: 1_763_762_460_000,
            price: "64321.12".parse().expect("decimal"),
            score: 72,
            grade: Grade::B,
            details: Default::default(),
        };
        assert_eq!(
            render_signal(None, Locale::of(Lang::En), &signal),
            "📈 RSI oversold · BTCUSDT (binance, 1m) price 64,321.12 USDT · score 72 · grade B · 2025-11-21 22:01:00 UTC"
        );
        assert_eq!(
            render_signal(None, Locale::of(Lang::Ko), &signal),
            "📈 RSI 과매도 · BTCUSDT (binance, 1m) 가격 64,321.12 USDT · 점수 72 · 등급 B · 2025-11-22 07:01:00 KST"
        );
        assert_eq!(
            render_signal(
                Some("{{kind}} {{grade}} {{x}}"),
                Locale::of(Lang::Ko),
                &signal
            ),
            "RSI 과매도 B {{x}}"
        );
        let mut early = signal.clone();
        early
            .details
            .insert("preliminary".into(), serde_json::Value::Bool(true));
        let text = render_signal(Some("{{kind}}"), Locale::of(Lang::Ko), &early);
        assert_eq!(
            text,
            "⏳ 장 마감 전 예비 신호 (마감 후 확정 신호가 따로 옵니다)\nRSI 과매도"
        );
    }

    #[test]
    fn languages_and_windows() {
        assert_eq!(Lang::from_code("ko-KR"), Lang::Ko);
        assert_eq!(Lang::from_code("KO"), Lang::Ko);
        assert_eq!(Lang::from_code("en"), Lang::En);
        assert_eq!(Lang::from_code(""), Lang::En);
        assert_eq!(format_window(90, Lang::En), "90s");
        assert_eq!(format_window(300, Lang::Ko), "5분");
        assert_eq!(format_window(7_200, Lang::Ko), "2시간");
        assert_eq!(format_window(86_400, Lang::En), "1d");
        assert_eq!(signed_two_places(Decimal::new(5, 0)), "+5.00");
        assert_eq!(signed_two_places(Decimal::new(-1, 3)), "+0.00");
    }
}
