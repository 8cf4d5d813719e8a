//! Indicator and multi-condition alert rules: the `expression` of a rule whose condition is
//! `expression`, as users type it in the bot and the API —
//! `rsi(14,1h) < 30 and close(1d) > sma(200,1d)` — parsed into [`Clause`]s.
//!
//! Grammar (case-insensitive, spaces free):
//!
//! ```text
//! expression := clause ( "and" clause ){0,4}            (also "AND", "&&")
//! clause     := operand op operand
//! op         := ">" | "<" | "x>" | "x<" | "x" | "inside" | "outside"
//!               (or greater_than, less_than, crossing_up, crossing_down, crossing)
//! operand    := number
//!             | close | open | high | low | volume | price     ["(" interval ")"]
//!             | rsi(n, i) | sma(n, i) | ema(n, i) | atr(n, i) | volume_sma(n, i)
//!             | macd(f, s, g, i) | macd_signal(f, s, g, i) | macd_hist(f, s, g, i)
//!             | bb_upper(n, k, i) | bb_middle(n, k, i) | bb_lower(n, k, i)
//!             | bb(n, k, i)                                  (the band: inside/outside)
//! ```
//!
//! An operand's interval may be left out when the rule has an `interval`. `inside` and
//! `outside` take a band (`bb(…)`) on the right; the other operators take no band.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::error::{Error, Result};
use crate::wire::Interval;

/// The most clauses one rule may join.
pub const MAX_CLAUSES: usize = 5;
/// The longest period an indicator may ask for.
pub const MAX_PERIOD: u32 = 1_000;
/// The most bars a smoothed indicator warms up on (it needs its first value at most,
/// which is below this).
const MAX_WARM_UP: usize = 5_000;

/// A value of a bar series, computed at each closed bar of its interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Series {
    Close,
    Open,
    High,
    Low,
    Volume,
    Rsi(u32),
    Sma(u32),
    Ema(u32),
    Atr(u32),
    VolumeSma(u32),
    MacdLine(u32, u32, u32),
    MacdSignal(u32, u32, u32),
    MacdHist(u32, u32, u32),
    /// Bollinger bands: period and width `k` in hundredths (2.5 → 250), so the key is exact.
    BbUpper(u32, u32),
    BbMiddle(u32, u32),
    BbLower(u32, u32),
}

impl Series {
    /// How many closed bars the series needs before it has a value (TA-Lib's lookback
    /// plus one).
    pub fn bars_to_first_value(self) -> usize {
        let n = |p: u32| p as usize;
        match self {
            Series::Close | Series::Open | Series::High | Series::Low | Series::Volume => 1,
            Series::Rsi(p) | Series::Atr(p) => n(p) + 1,
            Series::Sma(p) | Series::Ema(p) | Series::VolumeSma(p) => n(p),
            Series::MacdLine(_, s, g) | Series::MacdSignal(_, s, g) | Series::MacdHist(_, s, g) => {
                n(s) + n(g) - 1
            }
            Series::BbUpper(p, _) | Series::BbMiddle(p, _) | Series::BbLower(p, _) => n(p),
        }
    }

    /// How many bars to warm it up on: enough for its first value, and for the smoothed
    /// ones (RSI, EMA, ATR, MACD) several times their period, as charting platforms load.
    pub fn warm_up_bars(self) -> usize {
        let first = self.bars_to_first_value();
        match self {
            Series::Rsi(_)
            | Series::Ema(_)
            | Series::Atr(_)
            | Series::MacdLine(..)
            | Series::MacdSignal(..)
            | Series::MacdHist(..) => (first * 5).max(first + 100).min(MAX_WARM_UP),
            _ => first,
        }
    }
}

impl fmt::Display for Series {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = |hundredths: u32| Decimal::new(i64::from(hundredths), 2).normalize();
        match *self {
            Series::Close => write!(f, "close"),
            Series::Open => write!(f, "open"),
            Series::High => write!(f, "high"),
            Series::Low => write!(f, "low"),
            Series::Volume => write!(f, "volume"),
            Series::Rsi(p) => write!(f, "rsi({p}"),
            Series::Sma(p) => write!(f, "sma({p}"),
            Series::Ema(p) => write!(f, "ema({p}"),
            Series::Atr(p) => write!(f, "atr({p}"),
            Series::VolumeSma(p) => write!(f, "volume_sma({p}"),
            Series::MacdLine(a, b, c) => write!(f, "macd({a},{b},{c}"),
            Series::MacdSignal(a, b, c) => write!(f, "macd_signal({a},{b},{c}"),
            Series::MacdHist(a, b, c) => write!(f, "macd_hist({a},{b},{c}"),
            Series::BbUpper(p, w) => write!(f, "bb_upper({p},{}", k(w)),
            Series::BbMiddle(p, w) => write!(f, "bb_middle({p},{}", k(w)),
            Series::BbLower(p, w) => write!(f, "bb_lower({p},{}", k(w)),
        }
    }
}

/// One side of a clause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operand {
    Const(Decimal),
    Series(Series, Interval),
    /// Bollinger bands as a band (period, `k` in hundredths), for `inside` / `outside`.
    Band(u32, u32, Interval),
}

impl Operand {
    /// The series it reads, with their intervals (a band reads its two bounds).
    pub fn series(&self) -> Vec<(Series, Interval)> {
        match *self {
            Operand::Const(_) => Vec::new(),
            Operand::Series(s, i) => vec![(s, i)],
            Operand::Band(p, k, i) => vec![(Series::BbUpper(p, k), i), (Series::BbLower(p, k), i)],
        }
    }
}

impl fmt::Display for Operand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Operand::Const(c) => write!(f, "{}", c.normalize()),
            Operand::Series(s, i) => match s {
                Series::Close | Series::Open | Series::High | Series::Low | Series::Volume => {
                    write!(f, "{s}({i})")
                }
                _ => write!(f, "{s},{i})"),
            },
            Operand::Band(p, k, i) => write!(
                f,
                "bb({p},{},{i})",
                Decimal::new(i64::from(k), 2).normalize()
            ),
        }
    }
}

/// How a clause compares its two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    GreaterThan,
    LessThan,
    /// Left was below right at the previous evaluation and is at or above it now.
    CrossingUp,
    /// Left was above right and is at or below it now.
    CrossingDown,
    /// Either crossing.
    Crossing,
    /// Left within the band (inclusive).
    Inside,
    /// Left beyond the band.
    Outside,
}

impl Op {
    fn parse(text: &str) -> Option<Op> {
        Some(match text.to_ascii_lowercase().as_str() {
            ">" | "gt" | "greater_than" | "above" => Op::GreaterThan,
            "<" | "lt" | "less_than" | "below" => Op::LessThan,
            "x>" | "crossing_up" | "cross_up" | "crosses_up" => Op::CrossingUp,
            "x<" | "crossing_down" | "cross_down" | "crosses_down" => Op::CrossingDown,
            "x" | "crossing" | "cross" | "crosses" => Op::Crossing,
            "inside" | "inside_channel" => Op::Inside,
            "outside" | "outside_channel" => Op::Outside,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::GreaterThan => ">",
            Op::LessThan => "<",
            Op::CrossingUp => "x>",
            Op::CrossingDown => "x<",
            Op::Crossing => "x",
            Op::Inside => "inside",
            Op::Outside => "outside",
        }
    }

    /// Whether the operator needs the sides' previous values.
    pub fn is_crossing(self) -> bool {
        matches!(self, Op::CrossingUp | Op::CrossingDown | Op::Crossing)
    }
}

/// `left op right`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Clause {
    pub left: Operand,
    pub op: Op,
    pub right: Operand,
}

impl fmt::Display for Clause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.left, self.op.as_str(), self.right)
    }
}

/// A parsed expression: one to [`MAX_CLAUSES`] clauses, all of which must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression {
    pub clauses: Vec<Clause>,
}

impl Expression {
    /// Parses `text`; an operand without an interval takes `default_interval` (the rule's
    /// `interval`), and is an error without one. Errors say what was expected where.
    pub fn parse(text: &str, default_interval: Option<Interval>) -> Result<Expression> {
        let lowered = text.replace("&&", " and ");
        let tokens = tokenize(&lowered);
        // Without the rule's interval, an operand without one takes the expression's, when
        // all the intervals written agree (`rsi(14,1h) < 30 and volume > 0`).
        let mut written: Vec<Interval> =
            tokens.iter().filter_map(|t| explicit_interval(t)).collect();
        written.sort_unstable();
        written.dedup();
        let default_interval = default_interval.or(match written.as_slice() {
            [only] => Some(*only),
            _ => None,
        });
        let mut clauses = Vec::new();
        for part in tokens.split(|t| t.eq_ignore_ascii_case("and")) {
            clauses.push(parse_clause(part, default_interval)?);
        }
        if clauses.len() > MAX_CLAUSES {
            return Err(invalid(format!(
                "has {} conditions; at most {MAX_CLAUSES} may be joined with `and`",
                clauses.len()
            )));
        }
        let expression = Expression { clauses };
        expression.validate()?;
        Ok(expression)
    }

    /// Checks the clauses fit together.
    pub fn validate(&self) -> Result<()> {
        if self.clauses.is_empty() {
            return Err(invalid("is empty; e.g. `rsi(14,1h) < 30`"));
        }
        for clause in &self.clauses {
            let bands = [clause.left, clause.right]
                .iter()
                .filter(|o| matches!(o, Operand::Band(..)))
                .count();
            match clause.op {
                Op::Inside | Op::Outside
                    if !matches!(clause.right, Operand::Band(..)) || bands != 1 =>
                {
                    return Err(invalid(format!(
                        "`{clause}`: `{}` takes a band on the right, e.g. `close outside bb(20,2,4h)`",
                        clause.op.as_str()
                    )));
                }
                Op::Inside | Op::Outside => {}
                _ if bands > 0 => {
                    return Err(invalid(format!(
                        "`{clause}`: a band (`bb(…)`) goes only with inside or outside; use bb_upper, bb_middle or bb_lower to compare"
                    )));
                }
                _ => {}
            }
            if matches!(clause.left, Operand::Const(_)) && matches!(clause.right, Operand::Const(_))
            {
                return Err(invalid(format!(
                    "`{clause}` compares two numbers; one side must be a price or an indicator"
                )));
            }
        }
        Ok(())
    }

    /// Every series the expression reads, without duplicates.
    pub fn series(&self) -> Vec<(Series, Interval)> {
        let mut all: Vec<(Series, Interval)> = Vec::new();
        for clause in &self.clauses {
            for s in clause
                .left
                .series()
                .into_iter()
                .chain(clause.right.series())
            {
                if !all.contains(&s) {
                    all.push(s);
                }
            }
        }
        all
    }

    /// The interval at whose candle close the rule is evaluated: the shortest it reads.
    pub fn interval(&self) -> Option<Interval> {
        self.series().into_iter().map(|(_, i)| i).min()
    }
}

impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, clause) in self.clauses.iter().enumerate() {
            if i > 0 {
                f.write_str(" and ")?;
            }
            write!(f, "{clause}")?;
        }
        Ok(())
    }
}

impl FromStr for Expression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Expression::parse(s, None)
    }
}

fn invalid(reason: impl fmt::Display) -> Error {
    Error::invalid("expression", reason)
}

/// Splits into operands and operators: a call such as `rsi(14, 1h)` stays one token, spaces
/// inside its parentheses removed; `<` and `>` split from what touches them.
fn tokenize(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    let flush = |current: &mut String, tokens: &mut Vec<String>| {
        if !current.is_empty() {
            tokens.push(std::mem::take(current));
        }
    };
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '(' => {
                depth += 1;
                current.push(c);
            }
            ')' => {
                depth = depth.saturating_sub(1);
                current.push(c);
            }
            c if c.is_whitespace() && depth > 0 => {}
            c if c.is_whitespace() => flush(&mut current, &mut tokens),
            '<' | '>' if depth == 0 => {
                // `x>` / `x<` are operators; a lone `<` or `>` too.
                if current.eq_ignore_ascii_case("x") {
                    current.push(c);
                    flush(&mut current, &mut tokens);
                } else {
                    flush(&mut current, &mut tokens);
                    tokens.push(c.to_string());
                }
            }
            _ => current.push(c),
        }
        i += 1;
    }
    flush(&mut current, &mut tokens);
    tokens
}

fn parse_clause(tokens: &[String], default_interval: Option<Interval>) -> Result<Clause> {
    let [left, op, right] = tokens else {
        let shown = tokens.join(" ");
        return Err(invalid(format!(
            "`{shown}` is not `<left> <operator> <right>`, e.g. `rsi(14,1h) < 30` or `close x> sma(200,1d)`"
        )));
    };
    let op = Op::parse(op).ok_or_else(|| {
        invalid(format!(
            "`{op}` is not an operator; use >, <, x>, x<, x, inside or outside"
        ))
    })?;
    // A side without an interval takes the other side's (`close x> sma(200,1d)` reads the
    // daily close), else the rule's.
    let (left_interval, right_interval) = (explicit_interval(left), explicit_interval(right));
    Ok(Clause {
        left: parse_operand(left, right_interval.or(default_interval))?,
        op,
        right: parse_operand(right, left_interval.or(default_interval))?,
    })
}

/// The interval an operand names itself: the last argument of its call, if one.
fn explicit_interval(text: &str) -> Option<Interval> {
    let inner = text.split_once('(')?.1.strip_suffix(')')?;
    inner.rsplit(',').next()?.trim().parse().ok()
}

fn parse_operand(text: &str, default_interval: Option<Interval>) -> Result<Operand> {
    let lowered = text.to_ascii_lowercase();
    if let Ok(value) = lowered.replace(',', "").parse::<Decimal>() {
        return Ok(Operand::Const(value));
    }
    let (name, args) = match lowered.split_once('(') {
        Some((name, rest)) => {
            let inner = rest
                .strip_suffix(')')
                .ok_or_else(|| invalid(format!("`{text}`: a `)` is missing")))?;
            let args: Vec<&str> = inner.split(',').filter(|a| !a.is_empty()).collect();
            (name.to_string(), args)
        }
        None => (lowered.clone(), Vec::new()),
    };
    // The interval is the last argument when it parses as one.
    let (args, interval) = match args.last().map(|a| a.parse::<Interval>()) {
        Some(Ok(interval)) => (&args[..args.len() - 1], Some(interval)),
        _ => (&args[..], default_interval),
    };
    let interval = interval.ok_or_else(|| {
        invalid(format!(
            "`{text}` needs an interval, e.g. `{name}({}1h)`, or give the rule an `interval`",
            if args.is_empty() {
                String::new()
            } else {
                format!("{},", args.join(","))
            }
        ))
    })?;
    let period = |i: usize, what: &str| -> Result<u32> {
        let arg = args.get(i).ok_or_else(|| {
            invalid(format!(
                "`{text}`: the {what} is missing, e.g. `{name}(14,1h)`"
            ))
        })?;
        match arg.parse::<u32>() {
            Ok(p) if (1..=MAX_PERIOD).contains(&p) => Ok(p),
            _ => Err(invalid(format!(
                "`{text}`: the {what} `{arg}` is not a whole number from 1 to {MAX_PERIOD}"
            ))),
        }
    };
    let width = |i: usize| -> Result<u32> {
        let arg = args.get(i).ok_or_else(|| {
            invalid(format!(
                "`{text}`: the width k is missing, e.g. `{name}(20,2,4h)`"
            ))
        })?;
        let k = arg.parse::<Decimal>().ok().filter(|k| {
            *k > Decimal::ZERO
                && *k <= Decimal::from(10)
                && (*k * Decimal::from(100)).fract().is_zero()
        });
        let k = k.ok_or_else(|| {
            invalid(format!(
                "`{text}`: the width k `{arg}` is not a number in (0, 10] with at most two decimals"
            ))
        })?;
        (k * Decimal::from(100))
            .trunc()
            .to_u32()
            .ok_or_else(|| invalid(format!("`{text}`: the width k is too large")))
    };
    let arity = |n: usize| -> Result<()> {
        if args.len() == n {
            Ok(())
        } else {
            Err(invalid(format!(
                "`{text}` takes {n} number(s) before the interval, not {}",
                args.len()
            )))
        }
    };
    let series = |s: Series| Ok(Operand::Series(s, interval));
    match name.as_str() {
        "close" | "price" => arity(0).and_then(|()| series(Series::Close)),
        "open" => arity(0).and_then(|()| series(Series::Open)),
        "high" => arity(0).and_then(|()| series(Series::High)),
        "low" => arity(0).and_then(|()| series(Series::Low)),
        "volume" | "vol" => arity(0).and_then(|()| series(Series::Volume)),
        "rsi" => {
            arity(1)?;
            let p = period(0, "period")?;
            if p < 2 {
                return Err(invalid(format!(
                    "`{text}`: RSI needs a period of at least 2"
                )));
            }
            series(Series::Rsi(p))
        }
        "sma" | "ma" => arity(1).and_then(|()| series(Series::Sma(period(0, "period")?))),
        "ema" => arity(1).and_then(|()| series(Series::Ema(period(0, "period")?))),
        "atr" => arity(1).and_then(|()| series(Series::Atr(period(0, "period")?))),
        "volume_sma" | "vol_sma" | "vsma" => {
            arity(1).and_then(|()| series(Series::VolumeSma(period(0, "period")?)))
        }
        "macd" | "macd_signal" | "macd_hist" => {
            arity(3)?;
            let (fast, slow, signal) = (
                period(0, "fast period")?,
                period(1, "slow period")?,
                period(2, "signal period")?,
            );
            // TA-Lib swaps a fast period longer than the slow one; so does this.
            let (fast, slow) = (fast.min(slow), fast.max(slow));
            series(match name.as_str() {
                "macd" => Series::MacdLine(fast, slow, signal),
                "macd_signal" => Series::MacdSignal(fast, slow, signal),
                _ => Series::MacdHist(fast, slow, signal),
            })
        }
        "bb" | "bb_upper" | "bb_middle" | "bb_lower" => {
            arity(2)?;
            let (p, k) = (period(0, "period")?, width(1)?);
            if p < 2 {
                return Err(invalid(format!(
                    "`{text}`: Bollinger bands need a period of at least 2"
                )));
            }
            match name.as_str() {
                "bb" => Ok(Operand::Band(p, k, interval)),
                "bb_upper" => series(Series::BbUpper(p, k)),
                "bb_middle" => series(Series::BbMiddle(p, k)),
                _ => series(Series::BbLower(p, k)),
            }
        }
        _ => Err(invalid(format!(
            "`{text}` is not a number or an indicator; use close, volume, rsi(n,i), sma(n,i), ema(n,i), macd(f,s,g,i), bb(n,k,i), atr(n,i) or volume_sma(n,i)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(text: &str) -> Decimal {
        text.parse().expect("decimal")
    }

    #[test]
    fn the_issues_examples_parse() {
        let e = Expression::parse("RSI(14, 1h) < 30", None).expect("rsi");
        assert_eq!(
            e.clauses,
            vec![Clause {
                left: Operand::Series(Series::Rsi(14), Interval::H1),
                op: Op::LessThan,
                right: Operand::Const(d("30")),
            }]
        );
        let e = Expression::parse("close x> sma(200,1d)", None).expect("cross");
        assert_eq!(
            e.clauses[0].left,
            Operand::Series(Series::Close, Interval::D1)
        );
        assert_eq!(e.clauses[0].op, Op::CrossingUp);
        let e = Expression::parse("close(4h) outside bb(20, 2, 4h)", None).expect("band");
        assert_eq!(e.clauses[0].right, Operand::Band(20, 200, Interval::H4));
        let e = Expression::parse("rsi(14,1d)<30 AND close(1d)>sma(200,1d)", None).expect("and");
        assert_eq!(e.clauses.len(), 2);
        assert_eq!(e.interval(), Some(Interval::D1));
        assert_eq!(e.to_string(), "rsi(14,1d) < 30 and close(1d) > sma(200,1d)");
        // What it prints parses back to itself.
        assert_eq!(Expression::parse(&e.to_string(), None).expect("again"), e);
        let m = Expression::parse(
            "macd_hist(12,26,9,1h) x> 0 && bb_lower(20,2.5,1h) < close(1h)",
            None,
        )
        .expect("macd");
        assert_eq!(
            m.to_string(),
            "macd_hist(12,26,9,1h) x> 0 and bb_lower(20,2.5,1h) < close(1h)"
        );
        assert_eq!(m.interval(), Some(Interval::H1));
    }

    #[test]
    fn mistakes_say_what_was_expected() {
        for (text, needle) in [
            ("rsi(14) < 30", "needs an interval"),
            ("rsi(0,1h) < 30", "from 1 to 1000"),
            ("rsi(1,1h) < 30", "at least 2"),
            ("rsi(14,1h) ~ 30", "not an operator"),
            ("rsi(14,1h) << 30", "not `<left> <operator> <right>`"),
            ("rsi(14,1h)", "not `<left> <operator> <right>`"),
            ("foo(1,1h) > 3", "not a number or an indicator"),
            ("close(1h) inside 30", "takes a band"),
            (
                "close(1h) > bb(20,2,1h)",
                "goes only with inside or outside",
            ),
            ("1 < 2", "two numbers"),
            ("bb(20,11,1h) < close(1h)", "width k"),
            (
                "close(1m) > 1 and close(1m) > 2 and close(1m) > 3 and close(1m) > 4 and close(1m) > 5 and close(1m) > 6",
                "at most 5",
            ),
        ] {
            let err = Expression::parse(text, None).expect_err(text).to_string();
            assert!(err.contains(needle), "{text}: {err}");
            assert!(err.starts_with("invalid `expression`"), "{err}");
        }
    }

    #[test]
    fn warm_up_covers_the_first_value() {
        for s in [
            Series::Rsi(14),
            Series::Sma(200),
            Series::MacdHist(12, 26, 9),
            Series::BbUpper(20, 200),
            Series::Close,
        ] {
            assert!(s.warm_up_bars() >= s.bars_to_first_value(), "{s:?}");
        }
        assert_eq!(Series::MacdLine(12, 26, 9).bars_to_first_value(), 34);
        assert_eq!(Series::Rsi(14).bars_to_first_value(), 15);
    }
}
