//! Bot commands as typed values: parsing only, no I/O, so every form and every mistake is
//! unit-tested. A mistake carries what is wrong in English and Korean; the handler adds the
//! command's usage.

use rust_decimal::Decimal;
use tickwatch_schema::rule::{Condition, Trigger};
use tickwatch_schema::wire::{EventKind, Grade, Interval, SignalKind};

use crate::services::users::{Language, Preference};

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start,
    Help,
    Register,
    Unregister,
    Alert(AlertArgs),
    Alerts,
    DelAlert(i64),
    Pause(i64),
    /// `/edit <id> <what> <value…>`: one change to an alert.
    Edit(i64, RuleChange),
    /// A rule, or (admins, no argument) notifications globally.
    Resume(Option<i64>),
    Subscribe(SubscribeArgs),
    Unsubscribe(UnsubscribeArgs),
    Signals(Option<String>),
    Stats,
    Price(String),
    Settings(SettingsArgs),
    ApiKey {
        revoke: bool,
    },
    /// `/relay`: a new TradingView relay URL (`/relay rotate` says so explicitly).
    Relay,
    /// `/web`: a one-time sign-in link to the web dashboard; `/web signout` ends every
    /// browser session.
    Web {
        sign_out: bool,
    },
    Halt,
    Broadcast(String),
    /// `/paper …`: paper strategies.
    Paper(PaperArgs),
}

/// What `/paper` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaperArgs {
    /// `/paper`: every strategy with its equity.
    List,
    /// `/paper new`: a new strategy, guided by buttons.
    New,
    /// `/paper <id>`: one strategy's account, statistics and positions.
    Show(i64),
    Pause(i64),
    Resume(i64),
    Delete(i64),
}

/// What `/edit` changes in a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleChange {
    Threshold(Decimal),
    Channel(Decimal, Decimal),
    Pct(Decimal),
    /// The moving rule's window, in seconds.
    Window(u64),
    /// Fire once.
    Once,
    /// Fire every time, this many seconds apart at least.
    Every(u64),
    /// At most once per bar of the interval.
    Bar(Interval),
    /// Evaluated at the close of each bar of the interval.
    BarClose(Interval),
    /// An expression rule's new clauses.
    Expression(String),
    /// Expire this many seconds from now; `None`: never.
    Expires(Option<u64>),
}

/// `/alert <symbol> <condition> <value…> [once|every <cooldown>|bar <interval>|close <interval>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertArgs {
    /// As typed: `BTCUSDT`, `삼성전자`, `upbit:KRW-BTC`.
    pub symbol: String,
    pub condition: Condition,
    pub values: AlertValues,
    pub trigger: Trigger,
    pub cooldown_s: u64,
    pub interval: Option<Interval>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertValues {
    Price(Decimal),
    Channel {
        low: Decimal,
        high: Decimal,
    },
    Moving {
        pct: Decimal,
        window_s: u64,
    },
    /// `moving_up` / `moving_down`: a move of `amount` in price units within the window.
    MovingBy {
        amount: Decimal,
        window_s: u64,
    },
    /// Indicator and multi-condition clauses, as typed (checked with the rule).
    Expression(String),
}

/// `all` or one symbol (as typed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    All,
    Symbol(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeArgs {
    pub kind: SignalKind,
    pub target: Target,
    pub min_grade: Option<Grade>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnsubscribeArgs {
    Id(i64),
    All,
    Kind {
        kind: SignalKind,
        /// `None`: that kind on any symbol.
        target: Option<Target>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsArgs {
    Show,
    Preference(EventKind, Preference),
    Language(Language),
    /// `None`: the language's zone again (Asia/Seoul for Korean, UTC for English).
    TimeZone(Option<tickwatch_schema::display::Tz>),
    /// Charts with alert and signal notifications: on or off.
    Charts(bool),
    /// The daily digest at a local time (`HH:MM`), or off (`None`).
    Digest(Option<String>),
}

/// What is wrong with a command, in both languages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub en: String,
    pub ko: String,
}

impl Problem {
    fn new(en: impl Into<String>, ko: impl Into<String>) -> Self {
        Problem {
            en: en.into(),
            ko: ko.into(),
        }
    }

    pub fn text(&self, lang: Language) -> &str {
        match lang {
            Language::En => &self.en,
            Language::Ko => &self.ko,
        }
    }
}

/// A command that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// `/foo`: no such command.
    Unknown(String),
    /// A known command used wrongly; `command` names it for its usage line.
    Usage {
        command: &'static str,
        problem: Problem,
    },
}

type Parsed<T> = Result<T, ParseError>;

fn usage(command: &'static str, problem: Problem) -> ParseError {
    ParseError::Usage { command, problem }
}

fn missing(command: &'static str, en: &str, ko: &str) -> ParseError {
    usage(
        command,
        Problem::new(format!("{en} is missing"), format!("{ko}이(가) 빠졌습니다")),
    )
}

/// Parses a message: `None` if it is not a command for this bot (plain text, or a
/// command addressed to another bot in a group).
pub fn parse(text: &str, bot_username: &str) -> Option<Parsed<Command>> {
    let text = text.trim();
    let rest = text.strip_prefix('/')?;
    let (head, args) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim()),
        None => (rest, ""),
    };
    let name = match head.split_once('@') {
        Some((_, to)) if !to.eq_ignore_ascii_case(bot_username) => return None,
        Some((name, _)) => name,
        None => head,
    };
    let tokens: Vec<&str> = args.split_whitespace().collect();
    let lowered = name.to_ascii_lowercase();
    Some(match lowered.as_str() {
        "start" => Ok(Command::Start),
        "help" => Ok(Command::Help),
        "register" => Ok(Command::Register),
        "unregister" => Ok(Command::Unregister),
        "alert" => parse_alert(&tokens).map(Command::Alert),
        "alerts" => Ok(Command::Alerts),
        "delalert" => rule_id("delalert", &tokens).map(Command::DelAlert),
        "pause" => rule_id("pause", &tokens).map(Command::Pause),
        "edit" => parse_edit(&tokens),
        "resume" if tokens.is_empty() => Ok(Command::Resume(None)),
        "resume" => rule_id("resume", &tokens).map(|id| Command::Resume(Some(id))),
        "subscribe" => parse_subscribe(&tokens).map(Command::Subscribe),
        "unsubscribe" => parse_unsubscribe(&tokens).map(Command::Unsubscribe),
        "signals" => Ok(Command::Signals(
            (!args.is_empty()).then(|| args.to_string()),
        )),
        "stats" => Ok(Command::Stats),
        "price" if args.is_empty() => Err(missing("price", "The symbol", "종목")),
        "price" => Ok(Command::Price(args.to_string())),
        "settings" => parse_settings(&tokens).map(Command::Settings),
        "apikey" => match tokens.as_slice() {
            [] => Ok(Command::ApiKey { revoke: false }),
            [t] if t.eq_ignore_ascii_case("revoke") => Ok(Command::ApiKey { revoke: true }),
            [other, ..] => Err(usage(
                "apikey",
                Problem::new(
                    format!("`{other}` is not an option; use /apikey or /apikey revoke"),
                    format!("`{other}`은(는) 옵션이 아닙니다. /apikey 또는 /apikey revoke"),
                ),
            )),
        },
        "relay" => match tokens.as_slice() {
            [] => Ok(Command::Relay),
            [t] if ["rotate", "new", "새로"].contains(&t.to_lowercase().as_str()) => {
                Ok(Command::Relay)
            }
            [other, ..] => Err(usage(
                "relay",
                Problem::new(
                    format!("`{other}` is not an option; use /relay"),
                    format!("`{other}`은(는) 옵션이 아닙니다. /relay 를 쓰세요"),
                ),
            )),
        },
        "web" | "웹" => match tokens.as_slice() {
            [] => Ok(Command::Web { sign_out: false }),
            [t] if ["signout", "logout", "로그아웃"].contains(&t.to_lowercase().as_str()) => {
                Ok(Command::Web { sign_out: true })
            }
            [other, ..] => Err(usage(
                "web",
                Problem::new(
                    format!("`{other}` is not an option; use /web or /web signout"),
                    format!("`{other}`은(는) 옵션이 아닙니다. /web 또는 /web signout"),
                ),
            )),
        },
        "halt" => Ok(Command::Halt),
        "broadcast" if args.is_empty() => Err(missing("broadcast", "The message", "메시지")),
        "broadcast" => Ok(Command::Broadcast(args.to_string())),
        "paper" | "모의매매" => parse_paper(&tokens).map(Command::Paper),
        _ => Err(ParseError::Unknown(name.to_string())),
    })
}

fn parse_paper(tokens: &[&str]) -> Parsed<PaperArgs> {
    let id = |text: &str| {
        text.trim_start_matches('#')
            .parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .ok_or_else(|| {
                usage(
                    "paper",
                    Problem::new(
                        format!("`{text}` is not a strategy number (see /paper)"),
                        format!("`{text}`은(는) 전략 번호가 아닙니다 (/paper 참고)"),
                    ),
                )
            })
    };
    let lowered: Vec<String> = tokens.iter().map(|t| t.to_lowercase()).collect();
    let words: Vec<&str> = lowered.iter().map(String::as_str).collect();
    match words.as_slice() {
        [] => Ok(PaperArgs::List),
        ["new" | "새로" | "만들기"] => Ok(PaperArgs::New),
        ["pause" | "중지", n] => id(n).map(PaperArgs::Pause),
        ["resume" | "재개", n] => id(n).map(PaperArgs::Resume),
        ["delete" | "del" | "삭제", n] => id(n).map(PaperArgs::Delete),
        [n] => id(n).map(PaperArgs::Show),
        [first, ..] => Err(usage(
            "paper",
            Problem::new(
                format!("`{first}` is not a /paper form"),
                format!("`{first}`은(는) /paper 형식이 아닙니다"),
            ),
        )),
    }
}

fn rule_id(command: &'static str, tokens: &[&str]) -> Parsed<i64> {
    match tokens {
        [] => Err(missing(command, "The alert id", "알림 번호")),
        [one] => {
            let digits = one.trim_start_matches('#');
            digits
                .parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| {
                    usage(
                        command,
                        Problem::new(
                            format!("`{one}` is not an alert id (a number from /alerts)"),
                            format!("`{one}`은(는) 알림 번호가 아닙니다 (/alerts의 번호)"),
                        ),
                    )
                })
        }
        [_, extra, ..] => Err(usage(
            command,
            Problem::new(
                format!("one alert id only; unexpected `{extra}`"),
                format!("알림 번호는 하나만 쓰세요; `{extra}`은(는) 필요 없습니다"),
            ),
        )),
    }
}

/// A price as people type it: `65000`, `65,000`, `$65000`, `70000원`.
pub fn parse_price(text: &str) -> Option<Decimal> {
    let cleaned: String = text
        .trim()
        .trim_start_matches('$')
        .trim_end_matches('원')
        .chars()
        .filter(|c| *c != ',' && *c != '_')
        .collect();
    cleaned.parse::<Decimal>().ok()
}

/// A duration: `90` (seconds), `30s`, `10m`, `1h`, `1d`.
pub fn parse_duration(text: &str) -> Option<u64> {
    let text = text.trim().to_ascii_lowercase();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text.as_str(), ""),
    };
    let n: u64 = digits.parse().ok()?;
    let scale = match unit {
        "" | "s" | "sec" => 1,
        "m" | "min" => 60,
        "h" | "hr" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(scale)
}

fn bad_price(text: &str) -> ParseError {
    usage(
        "alert",
        Problem::new(
            format!("`{text}` is not a price (e.g. 65000 or 0.52)"),
            format!("`{text}`은(는) 가격이 아닙니다 (예: 65000, 0.52)"),
        ),
    )
}

fn parse_alert(tokens: &[&str]) -> Parsed<AlertArgs> {
    if tokens.is_empty() {
        return Err(missing("alert", "The symbol", "종목"));
    }
    // The symbol may be several words (`samsung electronics`): it ends where the first
    // condition begins — or the first operand of an expression (`rsi(14,1h) < 30`).
    let first_condition = (1..tokens.len()).find(|&i| Condition::parse_loose(tokens[i]).is_ok());
    let first_operand = (1..tokens.len()).find(|&i| starts_operand(tokens[i]));
    if let Some(at) = first_operand.filter(|&o| first_condition.is_none_or(|c| o < c)) {
        return parse_expression_alert(tokens[..at].join(" "), &tokens[at..]);
    }
    let Some(at) = first_condition else {
        return Err(match tokens.get(1) {
            None => missing(
                "alert",
                "The condition (>, <, crossing_up, …)",
                "조건 (>, <, crossing_up 등)",
            ),
            Some(bad) => usage(
                "alert",
                Problem::new(
                    format!(
                        "`{bad}` is not a condition; use >, <, cross, cross_up, cross_down, enter, exit, inside, outside, up, down, up%, down% or a full name such as crossing_down"
                    ),
                    format!(
                        "`{bad}`은(는) 조건이 아닙니다. >, <, cross, cross_up, cross_down, enter, exit, inside, outside, up, down, up%, down% 또는 crossing_down 같은 이름을 쓰세요"
                    ),
                ),
            ),
        });
    };
    let symbol = tokens[..at].join(" ");
    let condition = Condition::parse_loose(tokens[at]).map_err(|_| bad_price(tokens[at]))?;
    let mut rest = tokens[at + 1..].iter().copied().peekable();
    let values = if condition.is_channel() {
        let first = rest
            .next()
            .ok_or_else(|| missing("alert", "The channel (low high)", "채널 (하한 상한)"))?;
        // `60000-62000`, `60000~62000` or `60000 62000`.
        if let Some((lo, hi)) = first
            .split_once(['-', '~'])
            .filter(|(lo, _)| !lo.is_empty())
        {
            AlertValues::Channel {
                low: parse_price(lo).ok_or_else(|| bad_price(lo))?,
                high: parse_price(hi).ok_or_else(|| bad_price(hi))?,
            }
        } else {
            let second = rest
                .next()
                .ok_or_else(|| missing("alert", "The channel's high", "채널 상한"))?;
            AlertValues::Channel {
                low: parse_price(first).ok_or_else(|| bad_price(first))?,
                high: parse_price(second).ok_or_else(|| bad_price(second))?,
            }
        }
    } else if condition.is_moving() {
        let amount = condition.is_moving_amount();
        let value_text = rest.next().ok_or_else(|| {
            if amount {
                missing("alert", "The amount of the move", "변동 폭")
            } else {
                missing("alert", "The percentage", "퍼센트")
            }
        })?;
        let value = if amount {
            parse_price(value_text).ok_or_else(|| bad_price(value_text))?
        } else {
            parse_price(value_text.trim_end_matches('%')).ok_or_else(|| {
                usage(
                    "alert",
                    Problem::new(
                        format!("`{value_text}` is not a percentage (e.g. 5 or 2.5%)"),
                        format!("`{value_text}`은(는) 퍼센트가 아닙니다 (예: 5, 2.5%)"),
                    ),
                )
            })?
        };
        if rest.peek().is_some_and(|t| t.eq_ignore_ascii_case("in")) {
            rest.next();
        }
        let window_text = rest
            .next()
            .ok_or_else(|| missing("alert", "The window (e.g. 1h)", "기간 (예: 1h)"))?;
        let window_s = parse_duration(window_text).ok_or_else(|| bad_duration(window_text))?;
        if amount {
            AlertValues::MovingBy {
                amount: value,
                window_s,
            }
        } else {
            AlertValues::Moving {
                pct: value,
                window_s,
            }
        }
    } else {
        let price_text = rest
            .next()
            .ok_or_else(|| missing("alert", "The price", "가격"))?;
        AlertValues::Price(parse_price(price_text).ok_or_else(|| bad_price(price_text))?)
    };
    let (trigger, cooldown_s, interval) = parse_how_often(rest)?;
    Ok(AlertArgs {
        symbol,
        condition,
        values,
        trigger,
        cooldown_s,
        interval,
    })
}

/// The words that say how often an alert fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HowOften {
    Once,
    Every,
    Bar,
    BarClose,
}

fn how_often(word: &str) -> Option<HowOften> {
    Some(match word.to_lowercase().as_str() {
        "once" | "한번" => HowOften::Once,
        "every" | "매번" | "always" => HowOften::Every,
        "bar" | "per_bar" | "once_per_bar" => HowOften::Bar,
        "close" | "bar_close" | "once_per_bar_close" | "종가" | "봉마감" => HowOften::BarClose,
        _ => return None,
    })
}

/// The optional end of `/alert`: `once`, `every [<cooldown>]`, `bar <interval>` or
/// `close <interval>`; nothing may follow.
fn parse_how_often<'a>(
    mut rest: impl Iterator<Item = &'a str>,
) -> Parsed<(Trigger, u64, Option<Interval>)> {
    let (mut trigger, mut cooldown_s, mut interval) = (Trigger::Once, 0, None);
    if let Some(word) = rest.next() {
        match how_often(word) {
            Some(HowOften::Once) => {}
            Some(HowOften::Every) => {
                trigger = Trigger::EveryTime;
                if let Some(cool) = rest.next() {
                    cooldown_s = parse_duration(cool).ok_or_else(|| bad_duration(cool))?;
                }
            }
            Some(bar @ (HowOften::Bar | HowOften::BarClose)) => {
                trigger = if bar == HowOften::Bar {
                    Trigger::OncePerBar
                } else {
                    Trigger::OncePerBarClose
                };
                let text = rest.next().ok_or_else(|| {
                    missing("alert", "The bar interval (e.g. 1h)", "봉 간격 (예: 1h)")
                })?;
                interval = Some(text.parse::<Interval>().map_err(|_| {
                    usage(
                        "alert",
                        Problem::new(
                            format!("`{text}` is not an interval (1m, 5m, 15m, 1h, 4h, 1d …)"),
                            format!(
                                "`{text}`은(는) 봉 간격이 아닙니다 (1m, 5m, 15m, 1h, 4h, 1d 등)"
                            ),
                        ),
                    )
                })?);
            }
            None => {
                return Err(usage(
                    "alert",
                    Problem::new(
                        format!(
                            "`{word}` is not how often: use once, every <cooldown> (e.g. every 10m), bar <interval> or close <interval> (at the bar's close)"
                        ),
                        format!(
                            "`{word}`은(는) 반복 방식이 아닙니다: once, every <쿨다운> (예: every 10m), bar <간격>, close <간격> (봉 마감 시)"
                        ),
                    ),
                ));
            }
        }
    }
    if let Some(extra) = rest.next() {
        return Err(usage(
            "alert",
            Problem::new(
                format!("unexpected `{extra}` at the end"),
                format!("끝의 `{extra}`은(는) 알 수 없는 입력입니다"),
            ),
        ));
    }
    Ok((trigger, cooldown_s, interval))
}

/// Whether a token begins an operand of an expression: a price or volume word, or an
/// indicator call such as `rsi(14,1h)`.
fn starts_operand(token: &str) -> bool {
    let lower = token.to_ascii_lowercase();
    let name = lower.split('(').next().unwrap_or_default();
    let bar_word = matches!(
        name,
        "close" | "open" | "high" | "low" | "volume" | "vol" | "price"
    );
    let indicator = matches!(
        name,
        "rsi"
            | "sma"
            | "ma"
            | "ema"
            | "atr"
            | "volume_sma"
            | "vol_sma"
            | "vsma"
            | "macd"
            | "macd_signal"
            | "macd_hist"
            | "bb"
            | "bb_upper"
            | "bb_middle"
            | "bb_lower"
    );
    bar_word || (indicator && lower.contains('('))
}

/// `/alert <symbol> <expression> [how often]`: the expression runs up to the how-often
/// words at the end (`every 1h`, `close 4h`, `once`); it is checked with the rule.
fn parse_expression_alert(symbol: String, tokens: &[&str]) -> Parsed<AlertArgs> {
    // A call typed with spaces (`rsi(14, 1h)`) is one unit.
    let mut units: Vec<String> = Vec::new();
    let mut depth = 0i32;
    for token in tokens {
        match units.last_mut() {
            Some(last) if depth > 0 => {
                last.push(' ');
                last.push_str(token);
            }
            _ => units.push((*token).to_string()),
        }
        depth += token.matches('(').count() as i32 - token.matches(')').count() as i32;
    }
    let n = units.len();
    let word = |i: usize| units.get(i).and_then(|u| how_often(u));
    let with_argument = n >= 2
        && match word(n - 2) {
            Some(HowOften::Every) => parse_duration(&units[n - 1]).is_some(),
            Some(HowOften::Bar | HowOften::BarClose) => units[n - 1].parse::<Interval>().is_ok(),
            _ => false,
        };
    let alone = n >= 1 && matches!(word(n - 1), Some(HowOften::Once | HowOften::Every));
    let how_often = if with_argument { 2 } else { usize::from(alone) };
    let expression = units[..n - how_often].join(" ");
    let (trigger, cooldown_s, interval) =
        parse_how_often(units[n - how_often..].iter().map(String::as_str))?;
    Ok(AlertArgs {
        symbol,
        condition: Condition::Expression,
        values: AlertValues::Expression(expression),
        trigger,
        cooldown_s,
        interval,
    })
}

/// `/edit <id> threshold 66000` · `channel 64000 66000` · `pct 5` · `window 10m` ·
/// `once` · `every 10m` · `bar 1h` · `close 1h` · `expires 1d|never`.
fn parse_edit(tokens: &[&str]) -> Parsed<Command> {
    let wrong = |en: String, ko: String| usage("edit", Problem::new(en, ko));
    let [id, what, values @ ..] = tokens else {
        return Err(missing(
            "edit",
            "The alert id and what to change",
            "알림 번호와 바꿀 항목",
        ));
    };
    let id = rule_id("edit", &[id])?;
    let price = |text: &str| {
        parse_price(text).ok_or_else(|| {
            wrong(
                format!("`{text}` is not a number (e.g. 66000 or 0.52)"),
                format!("`{text}`은(는) 숫자가 아닙니다 (예: 66000, 0.52)"),
            )
        })
    };
    let duration = |text: &str| {
        parse_duration(text).ok_or_else(|| {
            wrong(
                format!("`{text}` is not a duration (e.g. 30s, 10m, 1h, 1d)"),
                format!("`{text}`은(는) 기간이 아닙니다 (예: 30s, 10m, 1h, 1d)"),
            )
        })
    };
    let what = what.to_lowercase();
    let change = match (what.as_str(), values) {
        ("expression" | "expr" | "조건식", [_, ..]) => RuleChange::Expression(values.join(" ")),
        ("threshold" | "price" | "가격" | "기준", [value]) => {
            RuleChange::Threshold(price(value)?)
        }
        ("channel" | "range" | "채널", [low, high]) => {
            RuleChange::Channel(price(low)?, price(high)?)
        }
        ("pct" | "%" | "퍼센트", [value]) => {
            RuleChange::Pct(price(value.trim_end_matches('%'))?)
        }
        ("window" | "기간", [value]) => RuleChange::Window(duration(value)?),
        ("once" | "한번", []) => RuleChange::Once,
        ("every" | "매번", [value]) => RuleChange::Every(duration(value)?),
        ("bar" | "봉" | "close" | "종가" | "봉마감", [value]) => {
            let interval = value.parse::<Interval>().map_err(|_| {
                wrong(
                    format!("`{value}` is not an interval (1m, 5m, 15m, 1h, 4h, 1d …)"),
                    format!("`{value}`은(는) 봉 간격이 아닙니다 (1m, 5m, 15m, 1h, 4h, 1d 등)"),
                )
            })?;
            if matches!(what.as_str(), "bar" | "봉") {
                RuleChange::Bar(interval)
            } else {
                RuleChange::BarClose(interval)
            }
        }
        ("expires" | "만료", [value])
            if ["never", "없음"].contains(&value.to_lowercase().as_str()) =>
        {
            RuleChange::Expires(None)
        }
        ("expires" | "만료", [value]) => RuleChange::Expires(Some(duration(value)?)),
        (
            "threshold" | "price" | "가격" | "기준" | "channel" | "range" | "채널" | "pct" | "%"
            | "퍼센트" | "window" | "기간" | "once" | "한번" | "every" | "매번" | "bar" | "봉"
            | "close" | "종가" | "봉마감" | "expires" | "만료" | "expression" | "expr" | "조건식",
            _,
        ) => {
            return Err(wrong(
                format!(
                    "`{what}` takes other values: e.g. /edit {id} threshold 66000, channel 64000 66000, every 10m, expires never"
                ),
                format!(
                    "`{what}`의 값이 맞지 않습니다: 예) /edit {id} threshold 66000, channel 64000 66000, every 10m, expires never"
                ),
            ));
        }
        _ => {
            return Err(wrong(
                format!(
                    "`{what}` cannot be changed; use threshold, channel, pct, window, once, every, bar, close, expression or expires"
                ),
                format!(
                    "`{what}`은(는) 바꿀 수 없습니다. threshold, channel, pct, window, once, every, bar, close, expression, expires 중 하나를 쓰세요"
                ),
            ));
        }
    };
    Ok(Command::Edit(id, change))
}

fn bad_duration(text: &str) -> ParseError {
    usage(
        "alert",
        Problem::new(
            format!("`{text}` is not a duration (e.g. 30s, 10m, 1h, 1d)"),
            format!("`{text}`은(는) 기간이 아닙니다 (예: 30s, 10m, 1h, 1d)"),
        ),
    )
}

fn parse_kind(command: &'static str, text: &str) -> Parsed<SignalKind> {
    text.parse::<SignalKind>().map_err(|_| {
        let known: Vec<&str> = SignalKind::ALL.iter().map(|k| k.as_str()).collect();
        usage(
            command,
            Problem::new(
                format!(
                    "`{text}` is not a signal kind; use one of {}",
                    known.join(", ")
                ),
                format!(
                    "`{text}`은(는) 신호 종류가 아닙니다. 다음 중 하나: {}",
                    known.join(", ")
                ),
            ),
        )
    })
}

fn is_all(text: &str) -> bool {
    matches!(text.to_lowercase().as_str(), "all" | "*" | "전체")
}

fn parse_subscribe(tokens: &[&str]) -> Parsed<SubscribeArgs> {
    let Some((kind, rest)) = tokens.split_first() else {
        return Err(missing("subscribe", "The signal kind", "신호 종류"));
    };
    let kind = parse_kind("subscribe", kind)?;
    let mut rest = rest.to_vec();
    let min_grade = match rest.last() {
        Some(last) if last.len() == 1 => match last.parse::<Grade>() {
            Ok(grade) => {
                rest.pop();
                Some(grade)
            }
            Err(_) => None,
        },
        _ => None,
    };
    let target = match rest.as_slice() {
        [] => Target::All,
        [one] if is_all(one) => Target::All,
        words => Target::Symbol(words.join(" ")),
    };
    Ok(SubscribeArgs {
        kind,
        target,
        min_grade,
    })
}

fn parse_unsubscribe(tokens: &[&str]) -> Parsed<UnsubscribeArgs> {
    match tokens {
        [] => Err(missing(
            "unsubscribe",
            "What to unsubscribe from (a kind, an id from /subscribe, or all)",
            "해지할 대상 (신호 종류, 구독 번호 또는 all)",
        )),
        [one] if is_all(one) => Ok(UnsubscribeArgs::All),
        [one] if one.trim_start_matches('#').parse::<i64>().is_ok() => one
            .trim_start_matches('#')
            .parse::<i64>()
            .map(UnsubscribeArgs::Id)
            .map_err(|_| missing("unsubscribe", "The id", "번호")),
        [kind, rest @ ..] => {
            let kind = parse_kind("unsubscribe", kind)?;
            let target = match rest {
                [] => None,
                [one] if is_all(one) => Some(Target::All),
                words => Some(Target::Symbol(words.join(" "))),
            };
            Ok(UnsubscribeArgs::Kind { kind, target })
        }
    }
}

fn parse_settings(tokens: &[&str]) -> Parsed<SettingsArgs> {
    let wrong = |en: String, ko: String| usage("settings", Problem::new(en, ko));
    match tokens {
        [] => Ok(SettingsArgs::Show),
        [key, value] if matches!(key.to_lowercase().as_str(), "digest" | "요약") => {
            match value.to_lowercase().as_str() {
                "off" | "끄기" => Ok(SettingsArgs::Digest(None)),
                "on" | "켜기" => Ok(SettingsArgs::Digest(Some(
                    crate::services::digest::DEFAULT_DIGEST_AT.to_string(),
                ))),
                _ => crate::services::digest::parse_time_of_day(value)
                    .map(|at| SettingsArgs::Digest(Some(at)))
                    .ok_or_else(|| {
                        wrong(
                            format!(
                                "`{value}`: the digest's time is HH:MM (e.g. 18:00), on or off"
                            ),
                            format!("`{value}`: 요약 시각은 HH:MM (예: 18:00), on 또는 off"),
                        )
                    }),
            }
        }
        [key, value] if matches!(key.to_lowercase().as_str(), "charts" | "chart" | "차트") => {
            match value.to_lowercase().as_str() {
                "on" | "켜기" => Ok(SettingsArgs::Charts(true)),
                "off" | "끄기" => Ok(SettingsArgs::Charts(false)),
                _ => Err(wrong(
                    format!("`{value}`: charts are on or off"),
                    format!("`{value}`: 차트는 on 또는 off"),
                )),
            }
        }
        [key, value] if matches!(key.to_lowercase().as_str(), "lang" | "language" | "언어") => {
            value
                .parse::<Language>()
                .map(SettingsArgs::Language)
                .map_err(|_| {
                    wrong(
                        format!("`{value}` is not a language; use en or ko"),
                        format!("`{value}`은(는) 언어가 아닙니다. en 또는 ko"),
                    )
                })
        }
        [key, value]
            if matches!(
                key.to_lowercase().as_str(),
                "tz" | "timezone" | "zone" | "시간대"
            ) =>
        {
            if matches!(value.to_lowercase().as_str(), "auto" | "default" | "기본") {
                return Ok(SettingsArgs::TimeZone(None));
            }
            tickwatch_schema::display::parse_time_zone(value)
                .map(|tz| SettingsArgs::TimeZone(Some(tz)))
                .map_err(|_| {
                    wrong(
                        format!("`{value}` is not a time zone; use a name like Asia/Seoul, UTC or Europe/London (or auto)"),
                        format!("`{value}`은(는) 시간대가 아닙니다. Asia/Seoul, UTC, Europe/London 같은 이름(또는 auto)을 쓰세요"),
                    )
                })
        }
        [kind, value] => {
            let kind = match kind.to_lowercase().as_str() {
                "alert" | "alerts" | "알림" => EventKind::Alert,
                "signal" | "signals" | "신호" => EventKind::Signal,
                "system" | "시스템" => EventKind::System,
                "paper" | "모의매매" => EventKind::Paper,
                _ => {
                    return Err(wrong(
                        format!(
                            "`{kind}` is not a kind of event; use alert, signal, system, paper, lang or tz"
                        ),
                        format!(
                            "`{kind}`은(는) 이벤트 종류가 아닙니다. alert, signal, system, paper, lang 또는 tz"
                        ),
                    ));
                }
            };
            let pref = value.parse::<Preference>().map_err(|_| {
                wrong(
                    format!("`{value}` is not on, silent or off"),
                    format!("`{value}`은(는) on, silent, off 중 하나가 아닙니다"),
                )
            })?;
            Ok(SettingsArgs::Preference(kind, pref))
        }
        _ => Err(wrong(
            "give a kind and a setting, e.g. /settings alert silent".into(),
            "종류와 설정을 함께 쓰세요. 예: /settings alert silent".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono_tz_tokyo() -> tickwatch_schema::display::Tz {
        tickwatch_schema::display::parse_time_zone("Asia/Tokyo").expect("zone")
    }

    fn ok(text: &str) -> Command {
        match parse(text, "tw_bot") {
            Some(Ok(c)) => c,
            other => panic!("{text}: {other:?}"),
        }
    }

    fn err(text: &str) -> ParseError {
        match parse(text, "tw_bot") {
            Some(Err(e)) => e,
            other => panic!("{text}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn alerts_parse_in_every_form() {
        let Command::Alert(a) = ok("/alert BTCUSDT > 65000") else {
            panic!("alert")
        };
        assert_eq!(
            (a.symbol.as_str(), a.condition, a.trigger),
            ("BTCUSDT", Condition::GreaterThan, Trigger::Once)
        );
        assert_eq!(a.values, AlertValues::Price(Decimal::from(65_000)));

        let Command::Alert(a) = ok("/alert 삼성전자 crossing_down 70,000 once") else {
            panic!("alert")
        };
        assert_eq!(
            (a.symbol.as_str(), a.condition),
            ("삼성전자", Condition::CrossingDown)
        );
        assert_eq!(a.values, AlertValues::Price(Decimal::from(70_000)));

        let Command::Alert(a) = ok("/alert@tw_bot samsung electronics cross_up 70000 every 1h")
        else {
            panic!("alert")
        };
        assert_eq!(a.symbol, "samsung electronics");
        assert_eq!((a.trigger, a.cooldown_s), (Trigger::EveryTime, 3_600));

        let Command::Alert(a) = ok("/alert BTCUSDT enter 60000-62000") else {
            panic!("alert")
        };
        assert_eq!(
            a.values,
            AlertValues::Channel {
                low: Decimal::from(60_000),
                high: Decimal::from(62_000)
            }
        );
        let Command::Alert(a) = ok("/alert BTCUSDT up% 5% in 1h bar 15m") else {
            panic!("alert")
        };
        assert_eq!(
            a.values,
            AlertValues::Moving {
                pct: Decimal::from(5),
                window_s: 3_600
            }
        );
        assert_eq!(
            (a.trigger, a.interval),
            (Trigger::OncePerBar, Some(Interval::M15))
        );

        let Command::Alert(a) = ok("/alert BTCUSDT rsi(14, 1h) < 30") else {
            panic!("alert")
        };
        assert_eq!(
            (a.symbol.as_str(), a.condition, a.trigger),
            ("BTCUSDT", Condition::Expression, Trigger::Once)
        );
        assert_eq!(a.values, AlertValues::Expression("rsi(14, 1h) < 30".into()));
        let Command::Alert(a) =
            ok("/alert 삼성전자 close x> sma(200,1d) and rsi(14,1d) < 70 every 1d")
        else {
            panic!("alert")
        };
        assert_eq!(a.symbol, "삼성전자");
        assert_eq!(
            a.values,
            AlertValues::Expression("close x> sma(200,1d) and rsi(14,1d) < 70".into())
        );
        assert_eq!((a.trigger, a.cooldown_s), (Trigger::EveryTime, 86_400));
        let Command::Alert(a) = ok("/alert BTCUSDT close(4h) outside bb(20,2,4h) close 4h") else {
            panic!("alert")
        };
        assert_eq!(
            (a.trigger, a.interval),
            (Trigger::OncePerBarClose, Some(Interval::H4))
        );

        let Command::Alert(a) = ok("/alert BTCUSDT down 2,000 in 1h every 10m") else {
            panic!("alert")
        };
        assert_eq!(a.condition, Condition::MovingDown);
        assert_eq!(
            a.values,
            AlertValues::MovingBy {
                amount: Decimal::from(2_000),
                window_s: 3_600
            }
        );
        let Command::Alert(a) = ok("/alert 삼성전자 outside 70000 75000 close 1d") else {
            panic!("alert")
        };
        assert_eq!(
            (a.symbol.as_str(), a.condition, a.trigger, a.interval),
            (
                "삼성전자",
                Condition::OutsideChannel,
                Trigger::OncePerBarClose,
                Some(Interval::D1)
            )
        );
    }

    #[test]
    fn mistakes_say_what_is_wrong() {
        for (text, needle) in [
            ("/alert", "symbol"),
            ("/alert BTCUSDT", "condition"),
            ("/alert BTCUSDT sideways 5", "not a condition"),
            ("/alert BTCUSDT > abc", "not a price"),
            ("/alert BTCUSDT > 5 twice", "how often"),
            ("/alert BTCUSDT > 5 every soon", "duration"),
            ("/alert BTCUSDT > 5 once more", "unexpected"),
            ("/delalert x", "not an alert id"),
            ("/subscribe nope", "signal kind"),
            ("/settings alert loud", "on, silent or off"),
            ("/settings lang fr", "language"),
        ] {
            match err(text) {
                ParseError::Usage { problem, .. } => {
                    assert!(problem.en.contains(needle), "{text}: {}", problem.en);
                    assert!(!problem.ko.is_empty());
                }
                other => panic!("{text}: {other:?}"),
            }
        }
        assert_eq!(err("/frobnicate"), ParseError::Unknown("frobnicate".into()));
    }

    #[test]
    fn other_commands() {
        assert!(parse("hello", "tw_bot").is_none());
        assert!(
            parse("/start@other_bot", "tw_bot").is_none(),
            "another bot's"
        );
        assert_eq!(ok("/START"), Command::Start);
        assert_eq!(ok("/delalert #12"), Command::DelAlert(12));
        assert_eq!(ok("/resume"), Command::Resume(None));
        assert_eq!(ok("/resume 3"), Command::Resume(Some(3)));
        assert_eq!(
            ok("/subscribe rsi_oversold BTCUSDT B"),
            Command::Subscribe(SubscribeArgs {
                kind: SignalKind::RsiOversold,
                target: Target::Symbol("BTCUSDT".into()),
                min_grade: Some(Grade::B)
            })
        );
        assert_eq!(
            ok("/subscribe golden_cross all"),
            Command::Subscribe(SubscribeArgs {
                kind: SignalKind::GoldenCross,
                target: Target::All,
                min_grade: None
            })
        );
        assert_eq!(
            ok("/unsubscribe all"),
            Command::Unsubscribe(UnsubscribeArgs::All)
        );
        assert_eq!(
            ok("/unsubscribe 4"),
            Command::Unsubscribe(UnsubscribeArgs::Id(4))
        );
        assert_eq!(
            ok("/settings alert silent"),
            Command::Settings(SettingsArgs::Preference(
                EventKind::Alert,
                Preference::Silent
            ))
        );
        assert_eq!(
            ok("/settings lang ko"),
            Command::Settings(SettingsArgs::Language(Language::Ko))
        );
        assert_eq!(
            ok("/settings tz asia/tokyo"),
            Command::Settings(SettingsArgs::TimeZone(Some(chrono_tz_tokyo())))
        );
        assert_eq!(
            ok("/settings 시간대 auto"),
            Command::Settings(SettingsArgs::TimeZone(None))
        );
        let wrong_zone = err("/settings tz Mars/Base");
        assert!(
            format!("{wrong_zone:?}").contains("not a time zone"),
            "{wrong_zone:?}"
        );
        assert_eq!(ok("/price 삼성전자"), Command::Price("삼성전자".into()));
        assert_eq!(
            ok("/broadcast hello\nworld"),
            Command::Broadcast("hello\nworld".into())
        );
        assert_eq!(ok("/apikey revoke"), Command::ApiKey { revoke: true });
        assert_eq!(ok("/relay"), Command::Relay);
        assert_eq!(ok("/web"), Command::Web { sign_out: false });
        assert_eq!(ok("/웹"), Command::Web { sign_out: false });
        assert_eq!(ok("/web signout"), Command::Web { sign_out: true });
        assert_eq!(
            ok("/edit 3 threshold 66,000"),
            Command::Edit(3, RuleChange::Threshold(Decimal::from(66_000)))
        );
        assert_eq!(
            ok("/edit #3 채널 64000 66000"),
            Command::Edit(
                3,
                RuleChange::Channel(Decimal::from(64_000), Decimal::from(66_000))
            )
        );
        assert_eq!(
            ok("/edit 3 every 10m"),
            Command::Edit(3, RuleChange::Every(600))
        );
        assert_eq!(
            ok("/edit 3 expires never"),
            Command::Edit(3, RuleChange::Expires(None))
        );
        assert_eq!(
            ok("/edit 3 bar 1h"),
            Command::Edit(3, RuleChange::Bar(Interval::H1))
        );
        assert_eq!(
            ok("/edit 3 close 4h"),
            Command::Edit(3, RuleChange::BarClose(Interval::H4))
        );
        assert_eq!(
            ok("/edit 3 expression rsi(14, 1h) < 25"),
            Command::Edit(3, RuleChange::Expression("rsi(14, 1h) < 25".into()))
        );
        for bad in [
            "/edit",
            "/edit 3",
            "/edit 3 colour red",
            "/edit 3 channel 1",
            "/edit x threshold 1",
        ] {
            err(bad);
        }
        assert_eq!(ok("/relay rotate"), Command::Relay);
        assert_eq!(parse_duration("90"), Some(90));
        assert_eq!(parse_duration("10m"), Some(600));
        assert_eq!(parse_duration("x"), None);
    }
}
