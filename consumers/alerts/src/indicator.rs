//! The indicators of expression rules (`rsi(14,1h) < 30 and close(1d) > sma(200,1d)`): per
//! symbol and interval an [`IndicatorSeries`] of closed bars, with one calculator per
//! distinct indicator and parameters that some rule reads — shared by every rule reading it,
//! dropped when the last one goes — and [`ExprRule`], the clauses of one rule with what
//! they read at its previous evaluation (for crossings).
//!
//! The calculators are the signals engine's (`tickwatch_signals::indicators`), so the
//! values are TA-Lib's bit for bit over the bars they were fed. A series keeps the bars its
//! calculators need to warm up: a calculator added later, or a series given older bars from
//! the store (after a restart, or for a new rule), is replayed over them.

use std::collections::VecDeque;

use tickwatch_schema::expr::{Clause, Op, Operand, Series};
use tickwatch_schema::wire::{Candle, Interval};
use tickwatch_signals::indicators::{Atr, BandsValue, Bollinger, Ema, Macd, MacdValue, Rsi, Sma};

use tickwatch_schema::decimal::to_f64;

/// A closed bar as the calculators read it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bar {
    pub open_ts: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

impl Bar {
    pub fn of(candle: &Candle) -> Bar {
        Bar {
            open_ts: candle.open_ts,
            open: to_f64(candle.open),
            high: to_f64(candle.high),
            low: to_f64(candle.low),
            close: to_f64(candle.close),
            volume: to_f64(candle.volume),
        }
    }
}

/// One calculator: an indicator with its parameters (MACD's three outputs share one, as do
/// the three Bollinger bands).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum CalcKey {
    Bar,
    Rsi(u32),
    Sma(u32),
    Ema(u32),
    Atr(u32),
    VolumeSma(u32),
    Macd(u32, u32, u32),
    Bollinger(u32, u32),
}

impl CalcKey {
    fn of(series: Series) -> CalcKey {
        match series {
            Series::Close | Series::Open | Series::High | Series::Low | Series::Volume => {
                CalcKey::Bar
            }
            Series::Rsi(p) => CalcKey::Rsi(p),
            Series::Sma(p) => CalcKey::Sma(p),
            Series::Ema(p) => CalcKey::Ema(p),
            Series::Atr(p) => CalcKey::Atr(p),
            Series::VolumeSma(p) => CalcKey::VolumeSma(p),
            Series::MacdLine(a, b, c) | Series::MacdSignal(a, b, c) | Series::MacdHist(a, b, c) => {
                CalcKey::Macd(a, b, c)
            }
            Series::BbUpper(p, k) | Series::BbMiddle(p, k) | Series::BbLower(p, k) => {
                CalcKey::Bollinger(p, k)
            }
        }
    }

    fn calc(self) -> Calc {
        let n = |p: u32| p as usize;
        match self {
            CalcKey::Bar => Calc::Bar(None),
            CalcKey::Rsi(p) => Calc::Rsi(Rsi::new(n(p))),
            CalcKey::Sma(p) => Calc::Sma(Sma::new(n(p))),
            CalcKey::Ema(p) => Calc::Ema(Ema::new(n(p))),
            CalcKey::Atr(p) => Calc::Atr(Atr::new(n(p))),
            CalcKey::VolumeSma(p) => Calc::VolumeSma(Sma::new(n(p))),
            // Equal periods: both averages are the same one, so TA-Lib's MACD is 0 from the
            // first value on (the calculator itself wants the slow period longer).
            CalcKey::Macd(a, b, c) if a == b => Calc::Zero {
                seen: 0,
                first: n(b) + n(c) - 1,
            },
            CalcKey::Macd(a, b, c) => Calc::Macd(Macd::new(n(a), n(b), n(c))),
            CalcKey::Bollinger(p, k) => Calc::Bollinger(Bollinger::new(n(p), f64::from(k) / 100.0)),
        }
    }
}

#[derive(Debug, Clone)]
enum Calc {
    Bar(Option<Bar>),
    Rsi(Rsi),
    Sma(Sma),
    Ema(Ema),
    Atr(Atr),
    VolumeSma(Sma),
    Macd(Macd),
    Bollinger(Bollinger),
    /// A series that is 0 from its `first` bar on.
    Zero {
        seen: usize,
        first: usize,
    },
}

impl Calc {
    fn update(&mut self, bar: &Bar) {
        match self {
            Calc::Bar(last) => *last = Some(*bar),
            Calc::Rsi(c) => drop(c.update(bar.close)),
            Calc::Sma(c) => drop(c.update(bar.close)),
            Calc::Ema(c) => drop(c.update(bar.close)),
            Calc::Atr(c) => drop(c.update(bar.high, bar.low, bar.close)),
            Calc::VolumeSma(c) => drop(c.update(bar.volume)),
            Calc::Macd(c) => drop(c.update(bar.close)),
            Calc::Bollinger(c) => drop(c.update(bar.close)),
            Calc::Zero { seen, .. } => *seen += 1,
        }
    }

    fn value(&self, series: Series) -> Option<f64> {
        let macd = |v: Option<MacdValue>| v;
        let bands = |v: Option<BandsValue>| v;
        match (self, series) {
            (Calc::Bar(bar), _) => bar.map(|b| match series {
                Series::Open => b.open,
                Series::High => b.high,
                Series::Low => b.low,
                Series::Volume => b.volume,
                _ => b.close,
            }),
            (Calc::Rsi(c), _) => c.value(),
            (Calc::Sma(c), _) | (Calc::VolumeSma(c), _) => c.value(),
            (Calc::Ema(c), _) => c.value(),
            (Calc::Atr(c), _) => c.value(),
            (Calc::Macd(c), Series::MacdSignal(..)) => macd(c.value()).map(|v| v.signal),
            (Calc::Macd(c), Series::MacdHist(..)) => macd(c.value()).map(|v| v.hist),
            (Calc::Macd(c), _) => macd(c.value()).map(|v| v.macd),
            (Calc::Bollinger(c), Series::BbUpper(..)) => bands(c.value()).map(|v| v.upper),
            (Calc::Bollinger(c), Series::BbLower(..)) => bands(c.value()).map(|v| v.lower),
            (Calc::Bollinger(c), _) => bands(c.value()).map(|v| v.middle),
            (Calc::Zero { seen, first }, _) => (*seen >= *first).then_some(0.0),
        }
    }
}

/// A calculator and how many rule operands read it.
#[derive(Debug, Clone)]
struct CalcSlot {
    key: CalcKey,
    calc: Calc,
    warm_up: usize,
    users: usize,
}

/// The closed bars of one symbol and interval that expression rules read, and the
/// calculators on them.
#[derive(Debug, Clone)]
pub(crate) struct IndicatorSeries {
    pub interval: Interval,
    /// The newest bars, oldest first, as many as the calculators warm up on.
    bars: VecDeque<Bar>,
    calcs: Vec<CalcSlot>,
    /// How many bars the store was asked for (see `AlertEngine::history_wanted`).
    pub asked: usize,
}

impl IndicatorSeries {
    pub fn new(interval: Interval) -> Self {
        IndicatorSeries {
            interval,
            bars: VecDeque::new(),
            calcs: Vec::new(),
            asked: 0,
        }
    }

    /// Starts reading `series` (a new calculator is replayed over the bars held).
    pub fn acquire(&mut self, series: Series) {
        let key = CalcKey::of(series);
        if let Some(slot) = self.calcs.iter_mut().find(|c| c.key == key) {
            slot.users += 1;
            slot.warm_up = slot.warm_up.max(series.warm_up_bars());
            return;
        }
        let mut calc = key.calc();
        for bar in &self.bars {
            calc.update(bar);
        }
        self.calcs.push(CalcSlot {
            key,
            calc,
            warm_up: series.warm_up_bars(),
            users: 1,
        });
    }

    /// Stops reading `series`; its calculator goes with its last reader.
    pub fn release(&mut self, series: Series) {
        let key = CalcKey::of(series);
        if let Some(at) = self.calcs.iter().position(|c| c.key == key) {
            self.calcs[at].users -= 1;
            if self.calcs[at].users == 0 {
                self.calcs.swap_remove(at);
            }
        }
        self.trim();
    }

    /// How many calculators it runs.
    pub fn calculators(&self) -> usize {
        self.calcs.len()
    }

    pub fn is_unused(&self) -> bool {
        self.calcs.is_empty()
    }

    /// How many bars the calculators warm up on.
    pub fn bars_needed(&self) -> usize {
        self.calcs.iter().map(|c| c.warm_up).max().unwrap_or(0)
    }

    pub fn bars_held(&self) -> usize {
        self.bars.len()
    }

    pub fn last_open(&self) -> Option<i64> {
        self.bars.back().map(|b| b.open_ts)
    }

    /// Feeds a closed bar; a bar not newer than the last is ignored (a redelivery, or late).
    pub fn push(&mut self, bar: Bar) -> bool {
        if self.last_open().is_some_and(|last| bar.open_ts <= last) {
            return false;
        }
        for slot in &mut self.calcs {
            slot.calc.update(&bar);
        }
        self.bars.push_back(bar);
        self.trim();
        true
    }

    /// Takes stored bars from before or among those held (deduplicated by open time) and
    /// recomputes every calculator over the merged bars.
    pub fn add_history(&mut self, stored: &[Bar]) {
        // The bars held first: after a stable sort the dedup keeps them.
        let mut merged: Vec<Bar> = self.bars.iter().chain(stored).copied().collect();
        merged.sort_by_key(|b| b.open_ts);
        merged.dedup_by_key(|b| b.open_ts);
        self.bars = merged.into();
        for slot in &mut self.calcs {
            slot.calc = slot.key.calc();
            for bar in &self.bars {
                slot.calc.update(bar);
            }
        }
        self.trim();
    }

    /// The current value of `series` (its last closed bar's), if it has one yet.
    pub fn value(&self, series: Series) -> Option<f64> {
        let key = CalcKey::of(series);
        let slot = self.calcs.iter().find(|c| c.key == key)?;
        slot.calc.value(series).filter(|v| v.is_finite())
    }

    fn trim(&mut self) {
        let keep = self.bars_needed();
        let before = self.bars.len();
        while self.bars.len() > keep {
            self.bars.pop_front();
        }
        // Bars dropped (a calculator went): one coming back asks the store again. A store
        // that had fewer than asked is not asked again meanwhile.
        if self.bars.len() < before {
            self.asked = self.asked.min(self.bars.len());
        }
    }

    pub fn heap_bytes(&self) -> usize {
        self.bars.capacity() * std::mem::size_of::<Bar>()
            + self.calcs.capacity() * std::mem::size_of::<CalcSlot>()
    }
}

/// The current value of `series` on `interval` among a symbol's indicator series.
pub(crate) fn read(
    indicators: &[IndicatorSeries],
    series: Series,
    interval: Interval,
) -> Option<f64> {
    indicators
        .iter()
        .find(|x| x.interval == interval)
        .and_then(|x| x.value(series))
}

/// What an operand reads now: a value, or a band.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Reading {
    Value(f64),
    Band { lower: f64, upper: f64 },
}

/// The clauses of one expression rule, and what each side read at the rule's previous
/// evaluation (crossings compare the two).
#[derive(Debug, Clone)]
pub(crate) struct ExprRule {
    pub clauses: Vec<Clause>,
    pub previous: Vec<Option<(f64, f64)>>,
}

impl ExprRule {
    pub fn new(clauses: Vec<Clause>) -> Self {
        ExprRule {
            previous: vec![None; clauses.len()],
            clauses,
        }
    }

    /// Every series the rule reads, with their intervals.
    pub fn series(&self) -> Vec<(Series, Interval)> {
        self.clauses
            .iter()
            .flat_map(|c| c.left.series().into_iter().chain(c.right.series()))
            .collect()
    }

    /// Whether every clause holds now, reading the series through `read`; `None` when a
    /// side has no value yet (not enough bars): nothing is decided then. The values read
    /// become the previous ones of the next evaluation.
    pub fn evaluate(&mut self, read: impl Fn(Series, Interval) -> Option<f64>) -> Option<bool> {
        let mut now = Vec::with_capacity(self.clauses.len());
        for clause in &self.clauses {
            let left = reading(&clause.left, &read)?;
            let right = reading(&clause.right, &read)?;
            now.push((left, right));
        }
        let mut all = true;
        for ((clause, (left, right)), before) in self.clauses.iter().zip(&now).zip(&self.previous) {
            let Reading::Value(l) = *left else {
                return None;
            };
            let holds = match (*right, clause.op) {
                (Reading::Band { lower, upper }, Op::Inside) => lower <= l && l <= upper,
                (Reading::Band { lower, upper }, Op::Outside) => l < lower || l > upper,
                (Reading::Value(r), Op::GreaterThan) => l > r,
                (Reading::Value(r), Op::LessThan) => l < r,
                (Reading::Value(r), op) => match before {
                    // Reaching the other side counts, as with prices: `q < t ≤ p`.
                    Some((pl, pr)) => match op {
                        Op::CrossingUp => pl < pr && l >= r,
                        Op::CrossingDown => pl > pr && l <= r,
                        Op::Crossing => (pl < pr && l >= r) || (pl > pr && l <= r),
                        _ => false,
                    },
                    None => false,
                },
                (Reading::Band { .. }, _) => false,
            };
            all &= holds;
        }
        self.previous = now
            .iter()
            .map(|(l, r)| match (l, r) {
                (Reading::Value(l), Reading::Value(r)) => Some((*l, *r)),
                _ => None,
            })
            .collect();
        Some(all)
    }

    /// Whether all clauses held at the previous evaluation, from what they read then; a
    /// crossing is taken as not held (one at that close fired then, and says so by the
    /// rule's last firing). `None` when a side's value is not known (no previous read, or
    /// a band).
    pub fn previous_truth(&self) -> Option<bool> {
        let mut all = true;
        for (clause, before) in self.clauses.iter().zip(&self.previous) {
            let (l, r) = (*before)?;
            all &= match clause.op {
                Op::GreaterThan => l > r,
                Op::LessThan => l < r,
                Op::CrossingUp | Op::CrossingDown | Op::Crossing => false,
                Op::Inside | Op::Outside => return None,
            };
        }
        Some(all)
    }

    /// Takes what the sides read now as what they read at a previous evaluation, where
    /// nothing was recorded yet: after stored bars warmed the series up (a restart), the
    /// first live close can then be a crossing, as it would have been without the restart.
    pub fn seed_previous(&mut self, read: impl Fn(Series, Interval) -> Option<f64>) {
        for (clause, before) in self.clauses.iter().zip(self.previous.iter_mut()) {
            if before.is_none()
                && let (Some(Reading::Value(l)), Some(Reading::Value(r))) =
                    (reading(&clause.left, &read), reading(&clause.right, &read))
            {
                *before = Some((l, r));
            }
        }
    }

    /// The clauses with the values they read at this evaluation, as users read them:
    /// `rsi(14,1h) 28.41 < 30`.
    pub fn describe(&self, read: impl Fn(Series, Interval) -> Option<f64>) -> String {
        self.clauses
            .iter()
            .map(|c| {
                let shown = |o: &Operand| match o {
                    Operand::Const(v) => v.normalize().to_string(),
                    Operand::Series(s, i) => match read(*s, *i) {
                        Some(v) => format!("{o} {}", short(v)),
                        None => o.to_string(),
                    },
                    Operand::Band(..) => match reading(o, &read) {
                        Some(Reading::Band { lower, upper }) => {
                            format!("{o} [{}, {}]", short(lower), short(upper))
                        }
                        _ => o.to_string(),
                    },
                };
                format!("{} {} {}", shown(&c.left), c.op.as_str(), shown(&c.right))
            })
            .collect::<Vec<_>>()
            .join(" · ")
    }
}

/// Four significant decimals at most, for a message.
fn short(v: f64) -> String {
    let digits = if v.abs() >= 1000.0 { 2 } else { 4 };
    let text = format!("{v:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

fn reading(operand: &Operand, read: &impl Fn(Series, Interval) -> Option<f64>) -> Option<Reading> {
    match *operand {
        Operand::Const(c) => Some(Reading::Value(to_f64(c))),
        Operand::Series(s, i) => read(s, i).map(Reading::Value),
        Operand::Band(p, k, i) => Some(Reading::Band {
            lower: read(Series::BbLower(p, k), i)?,
            upper: read(Series::BbUpper(p, k), i)?,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwatch_schema::expr::Expression;

    fn bar(i: i64, close: f64) -> Bar {
        Bar {
            open_ts: i * 60_000,
            open: close,
            high: close + 1.0,
            low: close - 1.0,
            close,
            volume: 10.0,
        }
    }

    #[test]
    fn a_calculator_added_later_or_rebuilt_from_history_equals_one_fed_from_the_start() {
        let closes: Vec<f64> = (0..300)
            .map(|i| 100.0 + (f64::from(i) * 0.37).sin() * 5.0)
            .collect();
        let mut from_start = IndicatorSeries::new(Interval::M1);
        from_start.acquire(Series::Rsi(14));
        from_start.acquire(Series::MacdHist(12, 26, 9));
        let mut late = IndicatorSeries::new(Interval::M1);
        late.acquire(Series::Rsi(14));
        for (i, c) in closes.iter().enumerate() {
            from_start.push(bar(i as i64, *c));
            late.push(bar(i as i64, *c));
            if i == 150 {
                // Holds 115 bars (RSI's warm-up): MACD replays over those.
                late.acquire(Series::MacdHist(12, 26, 9));
            }
        }
        assert_eq!(
            late.value(Series::Rsi(14)),
            from_start.value(Series::Rsi(14))
        );
        assert!(late.value(Series::MacdHist(12, 26, 9)).is_some());

        // A series given the same bars from the store, in two pieces.
        let mut stored = IndicatorSeries::new(Interval::M1);
        stored.acquire(Series::Rsi(14));
        let bars: Vec<Bar> = closes
            .iter()
            .enumerate()
            .map(|(i, c)| bar(i as i64, *c))
            .collect();
        stored.push(bars[299]);
        stored.add_history(&bars[185..299]);
        let mut direct = IndicatorSeries::new(Interval::M1);
        direct.acquire(Series::Rsi(14));
        for b in &bars[185..] {
            direct.push(*b);
        }
        assert_eq!(stored.value(Series::Rsi(14)), direct.value(Series::Rsi(14)));
        assert_eq!(stored.bars_held(), Series::Rsi(14).warm_up_bars());
        // The last reader gone, nothing is kept.
        stored.release(Series::Rsi(14));
        assert!(stored.is_unused());
        assert_eq!(stored.bars_held(), 0);
    }

    #[test]
    fn clauses_hold_cross_and_wait_for_values() {
        let e = Expression::parse(
            "close(1m) x> sma(3,1m) and close(1m) outside bb(3,1,1m)",
            None,
        )
        .expect("parses");
        let mut rule = ExprRule::new(e.clauses.clone());
        let mut series = IndicatorSeries::new(Interval::M1);
        for (s, _) in rule.series() {
            series.acquire(s);
        }
        let mut results = Vec::new();
        for (i, c) in [10.0, 10.0, 10.0, 9.0, 12.0, 13.0].iter().enumerate() {
            series.push(bar(i as i64, *c));
            results.push(rule.evaluate(|s, _| series.value(s)));
        }
        // No SMA(3) before the third bar; 9 → 12 crosses above the SMA and leaves the band;
        // 13 stays above (no new crossing).
        assert_eq!(
            results,
            vec![
                None,
                None,
                Some(false),
                Some(false),
                Some(true),
                Some(false)
            ]
        );
        let text = rule.describe(|s, _| series.value(s));
        assert!(
            text.starts_with("close(1m) 13 x> sma(3,1m) 11.3333"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod talib {
    //! The values expression rules read, at other parameters than the signals engine's
    //! defaults, against TA-Lib's own output on windows of the real history files
    //! (`consumers/signals/tests/fixtures/indicators_alt`, written by
    //! `scripts/talib_fixtures.py`): bit for bit.

    use std::path::Path;

    use rust_decimal::Decimal;
    use tickwatch_schema::expr::Series;
    use tickwatch_schema::wire::{Candle, Interval};

    use super::{Bar, IndicatorSeries};

    fn series_of(column: &str) -> Series {
        match column {
            "sma7" => Series::Sma(7),
            "ema9" => Series::Ema(9),
            "ema50" => Series::Ema(50),
            "rsi7" => Series::Rsi(7),
            "rsi21" => Series::Rsi(21),
            "macd_5_35_5" => Series::MacdLine(5, 35, 5),
            "macd_signal_5_35_5" => Series::MacdSignal(5, 35, 5),
            "macd_hist_5_35_5" => Series::MacdHist(5, 35, 5),
            "bb_upper_10_1.5" => Series::BbUpper(10, 150),
            "bb_mid_10_1.5" => Series::BbMiddle(10, 150),
            "bb_lower_10_1.5" => Series::BbLower(10, 150),
            "atr7" => Series::Atr(7),
            "vol_sma5" => Series::VolumeSma(5),
            other => panic!("a fixture column without a series: {other}"),
        }
    }

    #[test]
    fn values_at_other_parameters_are_ta_libs_bit_for_bit() {
        let folder =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../signals/tests/fixtures/indicators_alt");
        let mut files: Vec<_> = std::fs::read_dir(&folder)
            .expect("the fixtures")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        assert!(files.len() >= 7, "{files:?}");
        let mut compared = 0;
        for path in files {
            let text = std::fs::read_to_string(&path).expect("fixture");
            let mut lines = text.lines();
            let header: Vec<&str> = lines.next().expect("header").split(',').collect();
            let columns: Vec<Series> = header[6..].iter().map(|c| series_of(c)).collect();
            let mut series = IndicatorSeries::new(Interval::D1);
            for s in &columns {
                series.acquire(*s);
            }
            for (i, line) in lines.filter(|l| !l.is_empty()).enumerate() {
                let cells: Vec<&str> = line.split(',').collect();
                let number = |k: usize| cells[k].parse::<Decimal>().expect("a number");
                let candle = Candle {
                    venue: "test".into(),
                    symbol: "TEST".into(),
                    interval: Interval::D1,
                    open_ts: i as i64,
                    open: number(1),
                    high: number(2),
                    low: number(3),
                    close: number(4),
                    volume: number(5),
                    trades: None,
                    closed: true,
                };
                series.push(Bar::of(&candle));
                for (s, cell) in columns.iter().zip(&cells[6..]) {
                    let ours = series.value(*s);
                    let theirs = (!cell.is_empty()).then(|| cell.parse::<f64>().expect("value"));
                    assert_eq!(
                        ours.map(f64::to_bits),
                        theirs.map(f64::to_bits),
                        "{} row {i} {s:?}: {ours:?} vs TA-Lib {theirs:?}",
                        path.display()
                    );
                    compared += usize::from(theirs.is_some());
                }
            }
        }
        assert!(compared > 30_000, "compared {compared} values");
    }
}
