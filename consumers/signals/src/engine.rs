//! The signals engine: candles in, signals and signal outcomes out. Pure — no I/O, no
//! clock, no randomness — so the broker adapter, `tickwatch scan`, the tests and the
//! benchmark all run the same code.
//!
//! **Series.** State is kept per (venue, symbol, interval); only `closed` candles count.
//!
//! **Idempotency.** Per series the engine remembers the last candle's `open_ts` and what
//! it produced (as plain data, rebuilt into outputs on demand). A candle with that same
//! `open_ts` (a redelivery after a crash) returns exactly those outputs again, ids
//! included; an older candle returns nothing and changes nothing. Signal ids are
//! [`deterministic_id`]s of the signal's time (`ts`, the end of its candle), venue,
//! symbol, interval and kind, so the same candle always yields the same id. (The id's
//! hash covers only the key and kind, so it is computed once per series and kind and the
//! time written into its first six bytes, exactly as `deterministic_id` does.)
//!
//! **Halted bars.** A flat zero-volume bar (open = high = low = close, volume 0) is a
//! trading halt or a bar with no trade at all. It carries no information, and feeding it
//! to the indicators would manufacture signals when trading resumes (volume averages
//! dragged down → false surges; band widths collapsed → false squeezes). The engine
//! therefore skips it entirely: no indicator, counter or outcome moves, nothing fires; it
//! only advances the series' last `open_ts`. The engine's indicators are thus TA-Lib's on
//! the series without its halted bars (`tickwatch indicators` instead prints TA-Lib's
//! values over every bar of the file, for checking against TA-Lib).
//!
//! **Outcomes.** Each signal's forward return, `close(t + h) / close(t) - 1` for h = 1, 5
//! and 20 bars of its series, is emitted as an [`Output::Outcome`] on the bar it becomes
//! known.
//!
//! **Warm-up.** [`SignalEngine::warmup_bars`] candles per series, replayed into a fresh
//! engine, reproduce the outputs of an engine that saw the whole history: by then every
//! exponential average has converged to the last bit, every window is full, and any
//! signal whose outcomes are still pending has been re-derived with the same id.

use rustc_hash::FxHashMap;
use tickwatch_schema::wire::{Candle, Interval, Signal, SignalKind, deterministic_id};
use uuid::Uuid;

use crate::config::GradeConfig;
use crate::config::SignalsConfig;
use crate::error::Error;
use crate::hit::{Hit, Template};
use crate::num::dec_to_f64;
use crate::series::{Bar, HORIZONS, Kinds, Pending, Series};

/// What the engine emits for a candle.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A signal fired on this candle.
    Signal(Signal),
    /// The forward return of an earlier signal, `horizon_bars` bars of its series later:
    /// `close_now / close_at_signal - 1`.
    Outcome {
        signal_id: Uuid,
        kind: SignalKind,
        horizon_bars: u32,
        ret: f64,
    },
}

impl Output {
    /// The outcome's (kind, horizon, return), for [`crate::stats::outcome_stats`].
    pub fn as_outcome(&self) -> Option<(SignalKind, u32, f64)> {
        match self {
            Output::Outcome {
                kind,
                horizon_bars,
                ret,
                ..
            } => Some((*kind, *horizon_bars, *ret)),
            Output::Signal(_) => None,
        }
    }

    pub fn as_signal(&self) -> Option<&Signal> {
        match self {
            Output::Signal(s) => Some(s),
            Output::Outcome { .. } => None,
        }
    }
}

/// An outcome a series remembers from its last candle.
#[derive(Debug, Clone, Copy)]
struct Outcome {
    signal_id: Uuid,
    kind: SignalKind,
    horizon_bars: u32,
    ret: f64,
}

/// Per-series bookkeeping around the signal state.
#[derive(Debug)]
struct Slot {
    state: Series,
    interval: Interval,
    last_ts: Option<i64>,
    /// The last candle's close (the price of its signals).
    last_price: rust_decimal::Decimal,
    /// What the last candle produced, as plain data rebuilt into the same [`Output`]s
    /// (ids included) on demand: its outcomes, then its hits.
    last_outcomes: Vec<Outcome>,
    last_hits: Vec<Hit>,
    venue: String,
    symbol: String,
    /// `deterministic_id(0, …)` per kind, computed once: the id's hash covers only the
    /// key and kind, its first six bytes are the time.
    ids: Box<[Option<Uuid>; KINDS]>,
}

const KINDS: usize = SignalKind::ALL.len();

impl Slot {
    /// The id of a `kind` signal at `ts`: exactly `deterministic_id(ts, [venue, symbol,
    /// interval, kind])`.
    fn signal_id(&mut self, ts: i64, kind: SignalKind) -> Uuid {
        let k = kind as usize;
        let base = match self.ids[k] {
            Some(id) => id,
            None => {
                let id = deterministic_id(
                    0,
                    &[
                        &self.venue,
                        &self.symbol,
                        self.interval.as_str(),
                        kind.as_str(),
                    ],
                );
                self.ids[k] = Some(id);
                id
            }
        };
        let mut bytes = *base.as_bytes();
        bytes[..6].copy_from_slice(&(ts.max(0) as u64).to_be_bytes()[2..]);
        Uuid::from_bytes(bytes)
    }

    fn signal(&mut self, hit: &Hit, grades: &GradeConfig, templates: &mut Templates) -> Signal {
        let ts = self.last_ts.unwrap_or(0) + self.interval.as_ms();
        Signal {
            id: self.signal_id(ts, hit.kind),
            kind: hit.kind,
            venue: self.venue.clone(),
            symbol: self.symbol.clone(),
            interval: self.interval,
            ts,
            price: self.last_price,
            score: hit.score,
            grade: grades.grade(hit.score),
            details: hit.details_json_with(&mut templates[hit.kind as usize]),
        }
    }

    /// The last candle's outputs: its outcomes, then its signals.
    fn replay(&mut self, grades: &GradeConfig, templates: &mut Templates) -> Vec<Output> {
        let mut out = Vec::with_capacity(self.last_outcomes.len() + self.last_hits.len());
        out.extend(self.last_outcomes.iter().map(|o| Output::Outcome {
            signal_id: o.signal_id,
            kind: o.kind,
            horizon_bars: o.horizon_bars,
            ret: o.ret,
        }));
        let hits = std::mem::take(&mut self.last_hits);
        out.extend(
            hits.iter()
                .map(|h| Output::Signal(self.signal(h, grades, templates))),
        );
        self.last_hits = hits;
        out
    }
}

/// [`HORIZONS`] as a set of bits.
const HORIZON_SET: u64 = {
    let mut set = 0u64;
    let mut i = 0;
    while i < HORIZONS.len() {
        set |= 1 << HORIZONS[i];
        i += 1;
    }
    set
};

/// The signals engine. See the module documentation for its rules.
#[derive(Debug)]
pub struct SignalEngine {
    config: SignalsConfig,
    kinds: Kinds,
    slots: Vec<Slot>,
    /// Slot numbers by symbol: a symbol has a handful of series (venues × intervals),
    /// found by one hash lookup without building a key.
    by_symbol: FxHashMap<String, Vec<usize>>,
    /// The shape of each kind's `details` map.
    templates: Templates,
}

/// One `details` template per kind, by `SignalKind as usize`.
type Templates = [Option<Template>; KINDS];

impl SignalEngine {
    /// Fails if the configuration does not validate.
    pub fn new(config: SignalsConfig) -> Result<Self, Error> {
        config.validate()?;
        Ok(SignalEngine {
            kinds: Kinds::from_config(&config),
            config,
            slots: Vec::new(),
            by_symbol: FxHashMap::default(),
            templates: std::array::from_fn(|_| None),
        })
    }

    pub fn config(&self) -> &SignalsConfig {
        &self.config
    }

    /// Whether the engine is already past this candle: an older bar of its series.
    /// Processing it gives nothing; what it gave (signals, outcomes) came out before.
    pub fn is_past(&self, candle: &Candle) -> bool {
        self.last_open_ts(&candle.venue, &candle.symbol, candle.interval)
            .is_some_and(|last| candle.open_ts < last)
    }

    /// The open time of the last candle processed for a series, if any.
    pub fn last_open_ts(&self, venue: &str, symbol: &str, interval: Interval) -> Option<i64> {
        self.find_series(venue, symbol, interval)
            .and_then(|i| self.slots[i].last_ts)
    }

    fn find_series(&self, venue: &str, symbol: &str, interval: Interval) -> Option<usize> {
        self.by_symbol.get(symbol)?.iter().copied().find(|&i| {
            let slot = &self.slots[i];
            slot.interval == interval && slot.venue == venue
        })
    }

    /// Forgets a series' state, as if the engine had never seen it (another instance has
    /// carried it on since): warm it up again from the stored candles before its next one.
    pub fn forget_series(&mut self, venue: &str, symbol: &str, interval: Interval) {
        let Some(i) = self.find_series(venue, symbol, interval) else {
            return;
        };
        let slot = &mut self.slots[i];
        slot.last_ts = None;
        slot.last_outcomes.clear();
        slot.last_hits.clear();
        *slot.ids = [None; KINDS];
        slot.state = Series::new(&self.config, self.kinds, venue, interval);
    }

    /// Number of series the engine holds state for.
    pub fn series_count(&self) -> usize {
        self.slots.len()
    }

    /// Processes one candle; see the module documentation for what comes out.
    pub fn process(&mut self, candle: &Candle) -> Vec<Output> {
        if !candle.closed {
            return Vec::new();
        }
        let idx = self.slot_index(candle);
        let slot = &mut self.slots[idx];
        match slot.last_ts {
            Some(last) if candle.open_ts == last => {
                return slot.replay(&self.config.grades, &mut self.templates);
            }
            Some(last) if candle.open_ts < last => return Vec::new(),
            _ => {}
        }
        slot.last_ts = Some(candle.open_ts);
        slot.last_price = candle.close;
        slot.last_outcomes.clear();
        slot.last_hits.clear();
        if is_halted(candle) {
            return Vec::new();
        }
        let bar = bar_of(candle);
        // The hits go straight to where a redelivery finds them.
        slot.state.on_bar(&bar, &self.config, &mut slot.last_hits);

        let now = slot.state.bars - 1;
        let series = &mut slot.state;
        if !series.pending.is_empty() {
            for p in &series.pending {
                let horizon = now - p.bar;
                if horizon < 64 && HORIZON_SET >> horizon & 1 != 0 {
                    slot.last_outcomes.push(Outcome {
                        signal_id: p.id,
                        kind: p.kind,
                        horizon_bars: horizon as u32,
                        ret: bar.close / p.close - 1.0,
                    });
                }
            }
            let longest = u64::from(HORIZONS[HORIZONS.len() - 1]);
            while series
                .pending
                .front()
                .is_some_and(|p| now - p.bar >= longest)
            {
                series.pending.pop_front();
            }
        }
        if !slot.last_hits.is_empty() {
            let ts = candle.open_ts + slot.interval.as_ms();
            for i in 0..slot.last_hits.len() {
                let kind = slot.last_hits[i].kind;
                let id = slot.signal_id(ts, kind);
                slot.state.pending.push_back(Pending {
                    id,
                    kind,
                    close: bar.close,
                    bar: now,
                });
            }
        }
        if slot.last_outcomes.is_empty() && slot.last_hits.is_empty() {
            return Vec::new();
        }
        slot.replay(&self.config.grades, &mut self.templates)
    }

    /// Candles per series a restart must replay (the last ones before going live) so
    /// that the first live outputs equal those of an engine that never stopped; the
    /// largest over all intervals. See [`SignalEngine::warmup_bars_for`].
    pub fn warmup_bars(&self) -> usize {
        Interval::ALL
            .iter()
            .map(|i| self.warmup_bars_for(*i))
            .max()
            .unwrap_or(0)
    }

    /// The warm-up of one interval: the longest of (a) the bars after which exponential
    /// and Wilder averages have forgotten their seed to below 1e-18 (about 41.5 × their
    /// time constant), (b) the longest window any signal looks back over, (c) for intraday
    /// intervals, two full sessions and a bar (gap-ups compare with the previous whole
    /// session), plus 20 bars so that signals still awaiting their 20-bar outcome are
    /// re-derived too.
    pub fn warmup_bars_for(&self, interval: Interval) -> usize {
        let c = &self.config;
        let wilder = c.rsi.period.max(c.indicators.atr_period) as f64;
        let ema = |p: usize| (p as f64 + 1.0) / 2.0;
        let macd = ema(c.macd.slow) + ema(c.macd.signal);
        let time_constant = wilder.max(macd).max(ema(c.indicators.ema_period));
        let convergence = (42.0 * time_constant).ceil() as usize;
        let longest_sma = c
            .vcp
            .trend_smas
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .max(c.ma_cross.slow);
        let windows = [
            longest_sma + c.ma_cross.rising_bars,
            c.high_52w.lookback_bars + 120 + c.high_52w.cooldown_bars,
            c.vcp.max_base_bars
                + 2 * c.vcp.swing_bars
                + c.vcp.max_breakout_bars
                + c.vcp.volume_period,
            c.bollinger.period + c.bollinger.squeeze_lookback,
            c.volume.period + 1,
            c.closing.sma_period + 1,
        ];
        let mut bars = windows.iter().copied().fold(convergence, usize::max);
        if interval < Interval::D1 {
            let per_day = (86_400_000 / interval.as_ms()) as usize;
            bars = bars.max(2 * per_day + 1);
        }
        bars + HORIZONS[HORIZONS.len() - 1] as usize
    }

    /// The signals of `kinds` that a forming candle (`closed: false`) would give if it
    /// closed as it stands — the 종가 scan minutes before the close — computed on a copy of
    /// its series, which stays as it was. Nothing without history, for a candle not after
    /// the series' last one, or for a halted bar. Each signal has an id of its own (the
    /// closing candle's signal is another one) and `details.preliminary = true`.
    pub fn preview(&mut self, candle: &Candle, kinds: &[SignalKind]) -> Vec<Signal> {
        let Some(index) = self.find_series(&candle.venue, &candle.symbol, candle.interval) else {
            return Vec::new();
        };
        let slot = &self.slots[index];
        if slot.last_ts.is_none_or(|last| candle.open_ts <= last) || is_halted(candle) {
            return Vec::new();
        }
        let bar = bar_of(candle);
        let mut state = slot.state.clone();
        let mut hits = Vec::new();
        state.on_bar(&bar, &self.config, &mut hits);
        hits.retain(|h| kinds.contains(&h.kind));
        let ts = candle.open_ts + slot.interval.as_ms();
        let (venue, symbol, interval) = (slot.venue.clone(), slot.symbol.clone(), slot.interval);
        hits.iter()
            .map(|hit| {
                let mut details = hit.details_json_with(&mut self.templates[hit.kind as usize]);
                details.insert("preliminary".into(), serde_json::Value::Bool(true));
                Signal {
                    id: deterministic_id(
                        ts,
                        &[
                            &venue,
                            &symbol,
                            interval.as_str(),
                            hit.kind.as_str(),
                            "preliminary",
                        ],
                    ),
                    kind: hit.kind,
                    venue: venue.clone(),
                    symbol: symbol.clone(),
                    interval,
                    ts,
                    price: candle.close,
                    score: hit.score,
                    grade: self.config.grades.grade(hit.score),
                    details,
                }
            })
            .collect()
    }

    fn slot_index(&mut self, candle: &Candle) -> usize {
        if let Some(i) = self.find_series(&candle.venue, &candle.symbol, candle.interval) {
            return i;
        }
        let i = self.slots.len();
        self.slots.push(Slot {
            interval: candle.interval,
            last_ts: None,
            last_price: candle.close,
            last_outcomes: Vec::new(),
            last_hits: Vec::new(),
            state: Series::new(&self.config, self.kinds, &candle.venue, candle.interval),
            venue: candle.venue.clone(),
            symbol: candle.symbol.clone(),
            ids: Box::new([None; KINDS]),
        });
        self.by_symbol
            .entry(candle.symbol.clone())
            .or_default()
            .push(i);
        i
    }
}

/// A candle as the series read it.
fn bar_of(candle: &Candle) -> Bar {
    Bar {
        ts: candle.open_ts,
        open: dec_to_f64(candle.open),
        high: dec_to_f64(candle.high),
        low: dec_to_f64(candle.low),
        close: dec_to_f64(candle.close),
        volume: dec_to_f64(candle.volume),
    }
}

/// Open = high = low = close and no volume: a halted or untraded bar.
pub fn is_halted(c: &Candle) -> bool {
    c.volume.is_zero() && c.open == c.high && c.high == c.low && c.low == c.close
}
