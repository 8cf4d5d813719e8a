//! [`PaperEngine`]: signals and candles in, simulated trades out. Pure: no I/O, no clock.
//!
//! # How a trade is simulated (long only, one position per strategy and symbol)
//!
//! - **Entry.** A followed signal on a symbol the strategy holds no position in (and has no
//!   entry pending for) buys at the open of the symbol's next candle of the signal's
//!   interval (the first one opening at or after the signal's time). A signal carrying
//!   `exit = next_open` (the closing-price setup, 종가 매매) buys at the signal's price —
//!   its bar's close — and sells at the next candle's open, as its convention says.
//! - **Size.** A fixed amount, or a percentage of equity (cash plus the open positions at
//!   their last close), never more than the cash after the buy's commission; whole shares
//!   on KRX, eight decimals elsewhere. An entry that buys nothing is skipped.
//! - **Fills.** Buys fill `slippage` above the reference price, rounded up to the venue's
//!   tick; sells `slippage` below, rounded down. Commission on both sides, the sell tax on
//!   sells.
//! - **Exits**, checked on every candle from the entry candle on, in this order:
//!   1. a sell due at this open — the signal's `exit = next_open`, or a bearish signal of
//!      the symbol the candle before (`exit_on_opposite`): at the open;
//!   2. a gap: a candle opening at or below the stop sells at its open, one opening at or
//!      above the take-profit sells at its open. The stop is the higher of the stop-loss
//!      (`entry × (1 − sl)`) and the trailing stop (`highest high before this candle ×
//!      (1 − trail)`); the take-profit is `entry × (1 + tp)`;
//!   3. within the candle's range: the stop if its low reaches it, else the take-profit if
//!      its high reaches it, each at its level (a range holding both takes the stop: the
//!      conservative reading of a bar);
//!   4. `max_bars`: at the close of the position's Nth candle.
//!
//!   The trailing stop moves with each candle's high after that candle is checked.
//!
//! A redelivered signal (same id) or candle (not newer than the symbol's last) changes
//! nothing, so a replay gives the same trades. A preliminary signal (`details.preliminary`,
//! the scan of a forming candle) is never followed: its closed candle's signal is.
//!
//! The live role keeps each strategy's [`Account`] in the database and restores it with
//! [`PaperEngine::set_strategy`]; [`PaperEngine::entry_at`] reads what a candle or a
//! signal changed.

use std::collections::{BTreeMap, HashSet};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tickwatch_schema::wire::{Candle, Interval, Signal, SignalDirection};

use crate::error::Result;
use crate::strategy::{Sizing, Strategy};
use crate::ticks;

/// Why a position was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    StopLoss,
    TrailingStop,
    TakeProfit,
    MaxBars,
    OppositeSignal,
    /// The signal's own `exit = next_open`.
    NextOpen,
}

/// A finished simulated trade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    pub strategy_id: i64,
    pub venue: String,
    pub symbol: String,
    /// The signal it followed, and its interval and time.
    pub signal_id: String,
    pub signal_kind: String,
    pub interval: Interval,
    pub signal_ts: i64,
    pub quantity: Decimal,
    /// When and at what price it bought and sold (epoch ms of the fill: a candle's open,
    /// or a close's last millisecond).
    pub entry_ts: i64,
    pub entry_price: Decimal,
    pub exit_ts: i64,
    pub exit_price: Decimal,
    pub exit_reason: ExitReason,
    /// Commission and tax, both sides.
    pub fees: Decimal,
    /// What it made after fees, and as a share of what it cost (percent).
    pub pnl: Decimal,
    pub return_pct: Decimal,
    /// Candles the position was held over.
    pub bars: u32,
}

/// What the engine says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaperOutput {
    Opened {
        strategy_id: i64,
        venue: String,
        symbol: String,
        quantity: Decimal,
        price: Decimal,
        ts: i64,
        signal_id: String,
    },
    Closed(Trade),
    /// A followed signal that bought nothing (too little cash for one unit).
    Skipped {
        strategy_id: i64,
        venue: String,
        symbol: String,
        signal_id: String,
        kind: String,
        interval: Interval,
        signal_ts: i64,
        reason: String,
    },
}

/// A strategy's account as the live role stores it: its cash and the entries it holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Account {
    pub cash: Decimal,
    pub entries: Vec<Entry>,
}

/// An entry a strategy holds on a symbol: pending (waiting for the next open) or open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub venue: String,
    pub symbol: String,
    pub signal_id: String,
    pub kind: String,
    pub interval: Interval,
    /// The followed signal's time.
    pub signal_ts: i64,
    /// `None`: pending.
    pub open: Option<OpenPosition>,
}

/// An open position's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPosition {
    pub quantity: Decimal,
    pub entry_ts: i64,
    pub entry_price: Decimal,
    pub entry_fee: Decimal,
    /// The highest high since the entry.
    pub highest: Decimal,
    pub bars: u32,
    pub exit_next_open: Option<ExitReason>,
    /// The symbol's last close (what the position is valued at).
    pub mark: Decimal,
}

#[derive(Debug, Clone)]
struct Pending {
    signal_id: String,
    kind: String,
    interval: Interval,
    after_ts: i64,
}

#[derive(Debug, Clone)]
struct Position {
    signal_id: String,
    kind: String,
    interval: Interval,
    signal_ts: i64,
    quantity: Decimal,
    entry_ts: i64,
    entry_price: Decimal,
    entry_fee: Decimal,
    highest: Decimal,
    bars: u32,
    /// Sell at the next candle's open (a `next_open` signal, or a bearish one).
    exit_next_open: Option<ExitReason>,
}

#[derive(Debug, Clone)]
struct Book {
    strategy: Strategy,
    cash: Decimal,
    pending: BTreeMap<(String, String), Pending>,
    positions: BTreeMap<(String, String), Position>,
}

/// Every strategy's cash, pending entries and positions, driven by signals and candles.
#[derive(Debug, Clone, Default)]
pub struct PaperEngine {
    books: Vec<Book>,
    last_close: BTreeMap<(String, String), Decimal>,
    last_candle: BTreeMap<(String, String, Interval), i64>,
    seen_signals: HashSet<String>,
}

impl PaperEngine {
    /// An engine running `strategies` (each validated), from their starting balances.
    pub fn new(strategies: Vec<Strategy>) -> Result<Self> {
        let mut engine = PaperEngine::default();
        for strategy in strategies {
            if engine.books.iter().any(|b| b.strategy.id == strategy.id) {
                return Err(crate::error::Error::invalid(
                    "id",
                    format!("two strategies have the id {}", strategy.id),
                ));
            }
            engine.set_strategy(strategy, None)?;
        }
        Ok(engine)
    }

    /// Adds a strategy — from `account` when given (a restart), else from its starting
    /// balance — or changes the rules of one it runs (its account stays as it is).
    pub fn set_strategy(&mut self, strategy: Strategy, account: Option<Account>) -> Result<()> {
        strategy.validate()?;
        if let Some(book) = self.books.iter_mut().find(|b| b.strategy.id == strategy.id) {
            book.strategy = strategy;
            return Ok(());
        }
        let mut book = Book {
            cash: strategy.starting_balance,
            strategy,
            pending: BTreeMap::new(),
            positions: BTreeMap::new(),
        };
        if let Some(account) = account {
            book.cash = account.cash;
            for entry in account.entries {
                let key = (entry.venue, entry.symbol);
                // One entry per symbol: an open position wins over a pending entry, and a
                // second of a kind is left out (the store never holds one).
                if book.positions.contains_key(&key)
                    || (entry.open.is_none() && book.pending.contains_key(&key))
                {
                    continue;
                }
                match entry.open {
                    None => {
                        book.pending.insert(
                            key,
                            Pending {
                                signal_id: entry.signal_id,
                                kind: entry.kind,
                                interval: entry.interval,
                                after_ts: entry.signal_ts,
                            },
                        );
                    }
                    Some(open) => {
                        book.pending.remove(&key);
                        self.last_close.entry(key.clone()).or_insert(open.mark);
                        book.positions.insert(
                            key,
                            Position {
                                signal_id: entry.signal_id,
                                kind: entry.kind,
                                interval: entry.interval,
                                signal_ts: entry.signal_ts,
                                quantity: open.quantity,
                                entry_ts: open.entry_ts,
                                entry_price: open.entry_price,
                                entry_fee: open.entry_fee,
                                highest: open.highest,
                                bars: open.bars,
                                exit_next_open: open.exit_next_open,
                            },
                        );
                    }
                }
            }
        }
        self.books.push(book);
        Ok(())
    }

    /// Stops running a strategy (its open positions are dropped with it).
    pub fn remove_strategy(&mut self, strategy_id: i64) {
        self.books.retain(|b| b.strategy.id != strategy_id);
    }

    /// Whether a candle or signal of this symbol can matter: a strategy may follow its
    /// signals, or holds an entry on it.
    pub fn interested(&self, venue: &str, symbol: &str) -> bool {
        let key = (venue.to_string(), symbol.to_string());
        self.books.iter().any(|b| {
            let s = &b.strategy;
            (s.venues.is_empty() || s.venues.iter().any(|v| v == venue))
                && (s.symbols.is_empty() || s.symbols.iter().any(|x| x == symbol))
                || b.pending.contains_key(&key)
                || b.positions.contains_key(&key)
        })
    }

    /// The entry (pending or open) a strategy holds on a symbol, if any.
    pub fn entry_at(&self, strategy_id: i64, venue: &str, symbol: &str) -> Option<Entry> {
        let book = self.books.iter().find(|b| b.strategy.id == strategy_id)?;
        let key = (venue.to_string(), symbol.to_string());
        if let Some(p) = book.positions.get(&key) {
            return Some(Entry {
                venue: key.0.clone(),
                symbol: key.1.clone(),
                signal_id: p.signal_id.clone(),
                kind: p.kind.clone(),
                interval: p.interval,
                signal_ts: p.signal_ts,
                open: Some(OpenPosition {
                    quantity: p.quantity,
                    entry_ts: p.entry_ts,
                    entry_price: p.entry_price,
                    entry_fee: p.entry_fee,
                    highest: p.highest,
                    bars: p.bars,
                    exit_next_open: p.exit_next_open,
                    mark: self.last_close.get(&key).copied().unwrap_or(p.entry_price),
                }),
            });
        }
        book.pending.get(&key).map(|p| Entry {
            venue: key.0.clone(),
            symbol: key.1.clone(),
            signal_id: p.signal_id.clone(),
            kind: p.kind.clone(),
            interval: p.interval,
            signal_ts: p.after_ts,
            open: None,
        })
    }

    /// The strategies holding an entry on a symbol.
    pub fn holders(&self, venue: &str, symbol: &str) -> Vec<i64> {
        let key = (venue.to_string(), symbol.to_string());
        self.books
            .iter()
            .filter(|b| b.pending.contains_key(&key) || b.positions.contains_key(&key))
            .map(|b| b.strategy.id)
            .collect()
    }

    /// A strategy's cash.
    pub fn cash(&self, strategy_id: i64) -> Option<Decimal> {
        self.books
            .iter()
            .find(|b| b.strategy.id == strategy_id)
            .map(|b| b.cash)
    }

    /// A strategy's equity: cash plus its positions at their symbols' last close.
    pub fn equity(&self, strategy_id: i64) -> Option<Decimal> {
        let book = self.books.iter().find(|b| b.strategy.id == strategy_id)?;
        Some(book.cash + self.holdings(book))
    }

    /// How many positions a strategy holds.
    pub fn open_positions(&self, strategy_id: i64) -> usize {
        self.books
            .iter()
            .find(|b| b.strategy.id == strategy_id)
            .map_or(0, |b| b.positions.len())
    }

    /// The value of a book's positions, when its sizing needs it (a share of equity).
    fn holdings_for_sizing(&self, index: usize) -> Decimal {
        match self.books.get(index) {
            Some(book) if matches!(book.strategy.sizing, Sizing::PctEquity(_)) => {
                self.holdings(book)
            }
            _ => Decimal::ZERO,
        }
    }

    fn holdings(&self, book: &Book) -> Decimal {
        book.positions
            .iter()
            .map(|(key, p)| p.quantity * self.last_close.get(key).copied().unwrap_or(p.entry_price))
            .sum()
    }

    /// A signal: opens (or schedules) entries of the strategies that follow it, and marks
    /// positions for a bearish exit.
    pub fn on_signal(&mut self, signal: &Signal) -> Vec<PaperOutput> {
        self.on_signal_seen(signal, signal.ts)
    }

    /// [`on_signal`](Self::on_signal) for a signal that came out at `seen_at` (what a
    /// strategy's `since_ts` is compared with: live, when the signals role stored it — a
    /// replay of old candles gives signals with old times, and a strategy created today
    /// follows them).
    pub fn on_signal_seen(&mut self, signal: &Signal, seen_at: i64) -> Vec<PaperOutput> {
        if is_preliminary(signal) || !self.seen_signals.insert(signal.id.to_string()) {
            return Vec::new();
        }
        let key = (signal.venue.clone(), signal.symbol.clone());
        let mut out = Vec::new();
        for index in 0..self.books.len() {
            let holding = self.holdings_for_sizing(index);
            let book = &mut self.books[index];
            if signal.kind.direction() == SignalDirection::Bearish {
                if book.strategy.exit_on_opposite
                    && let Some(position) = book.positions.get_mut(&key)
                    && position.exit_next_open.is_none()
                {
                    position.exit_next_open = Some(ExitReason::OppositeSignal);
                }
                continue;
            }
            if !book.strategy.follows(signal, seen_at)
                || book.positions.contains_key(&key)
                || book.pending.contains_key(&key)
            {
                continue;
            }
            let next_open =
                signal.details.get("exit").and_then(|v| v.as_str()) == Some("next_open");
            let entry = Pending {
                signal_id: signal.id.to_string(),
                kind: signal.kind.to_string(),
                interval: signal.interval,
                after_ts: signal.ts,
            };
            if next_open {
                // Bought at the signal's close, sold at the next open.
                let ts = signal.ts.saturating_sub(1);
                let opened = enter(book, holding, &key, entry, signal.price, ts, true);
                out.push(opened);
                continue;
            }
            book.pending.insert(key.clone(), entry);
        }
        out
    }

    /// A closed candle: fills pending entries at its open, then checks every position of
    /// its symbol and interval for an exit.
    pub fn on_candle(&mut self, candle: &Candle) -> Vec<PaperOutput> {
        if !candle.closed {
            return Vec::new();
        }
        let series = (candle.venue.clone(), candle.symbol.clone(), candle.interval);
        if self
            .last_candle
            .get(&series)
            .is_some_and(|&last| candle.open_ts <= last)
        {
            return Vec::new();
        }
        self.last_candle.insert(series, candle.open_ts);
        let key = (candle.venue.clone(), candle.symbol.clone());
        let mut out = Vec::new();
        for index in 0..self.books.len() {
            let book = &mut self.books[index];
            // A position from an earlier candle first: it may sell at this open.
            if book
                .positions
                .get(&key)
                .is_some_and(|p| p.interval == candle.interval)
                && let Some(trade) = check_exit(book, &key, candle)
            {
                out.push(PaperOutput::Closed(trade));
            }
            let due = book
                .pending
                .get(&key)
                .is_some_and(|p| p.interval == candle.interval && candle.open_ts >= p.after_ts);
            if due {
                let holding = self.holdings_for_sizing(index);
                let book = &mut self.books[index];
                let Some(pending) = book.pending.remove(&key) else {
                    continue;
                };
                let opened = enter(
                    book,
                    holding,
                    &key,
                    pending,
                    candle.open,
                    candle.open_ts,
                    false,
                );
                let entered = matches!(opened, PaperOutput::Opened { .. });
                out.push(opened);
                // The entry candle's own range after the open.
                if entered && let Some(trade) = check_exit(book, &key, candle) {
                    out.push(PaperOutput::Closed(trade));
                }
            }
        }
        self.last_close.insert(key, candle.close);
        out
    }
}

/// Buys for `entry` at `reference` (time `ts`) and opens the position — to be sold at the
/// next open when `exit_next_open` — or says why it bought nothing.
fn enter(
    book: &mut Book,
    holding: Decimal,
    key: &(String, String),
    entry: Pending,
    reference: Decimal,
    ts: i64,
    exit_next_open: bool,
) -> PaperOutput {
    let Some((quantity, price, fee)) = buy(book, holding, &key.0, reference) else {
        return PaperOutput::Skipped {
            strategy_id: book.strategy.id,
            venue: key.0.clone(),
            symbol: key.1.clone(),
            signal_id: entry.signal_id,
            kind: entry.kind,
            interval: entry.interval,
            signal_ts: entry.after_ts,
            reason: "too little cash for one unit".into(),
        };
    };
    book.positions.insert(
        key.clone(),
        Position {
            signal_id: entry.signal_id.clone(),
            kind: entry.kind,
            interval: entry.interval,
            signal_ts: entry.after_ts,
            quantity,
            entry_ts: ts,
            entry_price: price,
            entry_fee: fee,
            highest: price,
            bars: 0,
            exit_next_open: exit_next_open.then_some(ExitReason::NextOpen),
        },
    );
    PaperOutput::Opened {
        strategy_id: book.strategy.id,
        venue: key.0.clone(),
        symbol: key.1.clone(),
        quantity,
        price,
        ts,
        signal_id: entry.signal_id,
    }
}

fn is_preliminary(signal: &Signal) -> bool {
    signal.details.get("preliminary").and_then(|v| v.as_bool()) == Some(true)
}

fn pct(x: Decimal) -> Decimal {
    x / Decimal::ONE_HUNDRED
}

/// Buys at `reference` for `book`: `(quantity, fill price, commission)`, cash taken; `None`
/// when it buys nothing.
fn buy(
    book: &mut Book,
    holding: Decimal,
    venue: &str,
    reference: Decimal,
) -> Option<(Decimal, Decimal, Decimal)> {
    let fees = book.strategy.fees_on(venue);
    let price = ticks::buy_price(venue, reference * (Decimal::ONE + pct(fees.slippage_pct)));
    let wanted = match book.strategy.sizing {
        Sizing::Fixed(amount) => amount,
        Sizing::PctEquity(share) => (book.cash + holding) * pct(share),
    };
    // Never more than the cash, commission included.
    let affordable = book.cash / (Decimal::ONE + pct(fees.commission_pct));
    let quantity = ticks::quantity(venue, wanted.min(affordable), price);
    if quantity <= Decimal::ZERO {
        return None;
    }
    let cost = quantity * price;
    let fee = cost * pct(fees.commission_pct);
    book.cash -= cost + fee;
    Some((quantity, price, fee))
}

/// Checks one position against one candle (see the module documentation); sells it when
/// an exit is reached.
fn check_exit(book: &mut Book, key: &(String, String), candle: &Candle) -> Option<Trade> {
    let strategy = &book.strategy;
    let position = book.positions.get_mut(key)?;
    position.bars += 1;
    let exit = if let Some(reason) = position.exit_next_open {
        Some((candle.open, candle.open_ts, reason))
    } else {
        let fixed = strategy.stop_loss_pct.map(|sl| {
            (
                position.entry_price * (Decimal::ONE - pct(sl)),
                ExitReason::StopLoss,
            )
        });
        let trailing = strategy.trailing_stop_pct.map(|tr| {
            (
                position.highest * (Decimal::ONE - pct(tr)),
                ExitReason::TrailingStop,
            )
        });
        let stop = match (fixed, trailing) {
            (Some(f), Some(t)) => Some(if t.0 > f.0 { t } else { f }),
            (f, t) => f.or(t),
        };
        let take = strategy
            .take_profit_pct
            .map(|tp| position.entry_price * (Decimal::ONE + pct(tp)));
        // The open comes first: a gap through either level fills there, whatever the
        // candle's range did later (the entry candle opened at the entry itself).
        let gap = candle.open_ts != position.entry_ts;
        if let Some((level, reason)) = stop
            && gap
            && candle.open <= level
        {
            Some((candle.open, candle.open_ts, reason))
        } else if let Some(level) = take
            && gap
            && candle.open >= level
        {
            Some((candle.open, candle.open_ts, ExitReason::TakeProfit))
        } else if let Some((level, reason)) = stop
            && candle.low <= level
        {
            Some((level, candle.open_ts, reason))
        } else if let Some(level) = take
            && candle.high >= level
        {
            Some((level, candle.open_ts, ExitReason::TakeProfit))
        } else if strategy.max_bars.is_some_and(|n| position.bars >= n) {
            let close_ts = candle.open_ts + candle.interval.as_ms() - 1;
            Some((candle.close, close_ts, ExitReason::MaxBars))
        } else {
            None
        }
    };
    position.highest = position.highest.max(candle.high);
    let (reference, ts, reason) = exit?;
    let position = book.positions.remove(key)?;
    let fees = book.strategy.fees_on(&key.0);
    let price = ticks::sell_price(&key.0, reference * (Decimal::ONE - pct(fees.slippage_pct)));
    let proceeds = position.quantity * price;
    let exit_fee = proceeds * pct(fees.commission_pct + fees.sell_tax_pct);
    book.cash += proceeds - exit_fee;
    let cost = position.quantity * position.entry_price + position.entry_fee;
    let pnl = proceeds - exit_fee - cost;
    Some(Trade {
        strategy_id: book.strategy.id,
        venue: key.0.clone(),
        symbol: key.1.clone(),
        signal_id: position.signal_id,
        signal_kind: position.kind,
        interval: position.interval,
        signal_ts: position.signal_ts,
        quantity: position.quantity,
        entry_ts: position.entry_ts,
        entry_price: position.entry_price,
        exit_ts: ts,
        exit_price: price,
        exit_reason: reason,
        fees: position.entry_fee + exit_fee,
        pnl,
        return_pct: if cost > Decimal::ZERO {
            (pnl / cost * Decimal::ONE_HUNDRED).round_dp(4)
        } else {
            Decimal::ZERO
        },
        bars: position.bars,
    })
}
