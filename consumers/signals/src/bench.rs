//! Throughput of the pure engine (`tickwatch bench signals`): every indicator and signal
//! on, many symbols interleaved, closed candles per second on one core.
//!
//! The symbols are built from real history: symbol *i* takes one of the source series,
//! starts at its own offset into it, and scales its prices and volumes by its own factor
//! (0.50–1.99), so no two series hold the same numbers and nothing is served from a
//! cache. Candles are fed one bar of every symbol in turn, in batches of [`BATCH`] built
//! before the clock starts for that batch, as a consumer receives them: only
//! [`SignalEngine::process`] is timed. (Building the whole run up front instead would
//! stream hundreds of megabytes of candles through the caches and measure the memory
//! bus rather than the engine.)

use std::path::Path;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tickwatch_schema::wire::Candle;

use crate::config::SignalsConfig;
use crate::engine::{Output, SignalEngine};
use crate::error::Error;

/// Candles built per timed batch.
pub const BATCH: usize = 4_096;

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub symbols: usize,
    pub bars_per_symbol: usize,
    pub signals: SignalsConfig,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            symbols: 1_000,
            bars_per_symbol: 1_000,
            signals: SignalsConfig::default(),
        }
    }
}

/// What came out.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    pub symbols: usize,
    pub series: usize,
    pub candles: u64,
    /// Time spent in `process` only.
    pub seconds: f64,
    pub candles_per_sec: f64,
    pub signals: u64,
    pub outcomes: u64,
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} candles of {} symbols in {:.3} s: {:.0} candles/s on one core ({} signals, {} outcomes)",
            self.candles,
            self.symbols,
            self.seconds,
            self.candles_per_sec,
            self.signals,
            self.outcomes
        )
    }
}

/// Reads every `*.csv` history file of `dir` (sorted by name) as one source series each.
pub fn load_sources(dir: &Path) -> Result<Vec<Vec<Candle>>, Error> {
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    paths.sort();
    let mut sources = Vec::new();
    for path in paths {
        let candles = tickwatch_schema::history::open(&path, None, None, None)?
            .collect::<Result<Vec<_>, _>>()?;
        sources.push(candles);
    }
    Ok(sources)
}

/// One benchmark symbol: a stretch of a source series, scaled.
#[derive(Debug, Clone)]
struct Plan<'a> {
    bars: &'a [Candle],
    factor: Decimal,
    symbol: String,
}

fn plans(sources: &[Vec<Candle>], symbols: usize, bars: usize) -> Vec<Plan<'_>> {
    let usable: Vec<&Vec<Candle>> = sources.iter().filter(|s| !s.is_empty()).collect();
    if usable.is_empty() {
        return Vec::new();
    }
    (0..symbols)
        .map(|i| {
            let src = usable[i % usable.len()];
            let n = bars.min(src.len());
            let room = src.len() - n;
            let start = if room == 0 {
                0
            } else {
                (i * 7_919) % (room + 1)
            };
            Plan {
                bars: &src[start..start + n],
                factor: Decimal::new(50 + ((i * 37) % 150) as i64, 2),
                symbol: format!("B{i:04}"),
            }
        })
        .collect()
}

/// Writes symbol `p`'s version of `src` into `out`, reusing its allocations.
fn fill(out: &mut Candle, src: &Candle, p: &Plan<'_>) {
    out.venue.clone_from(&src.venue);
    out.symbol.clone_from(&p.symbol);
    out.interval = src.interval;
    out.open_ts = src.open_ts;
    out.open = (src.open * p.factor).round_dp(8);
    out.high = (src.high * p.factor).round_dp(8);
    out.low = (src.low * p.factor).round_dp(8);
    out.close = (src.close * p.factor).round_dp(8);
    out.volume = (src.volume * p.factor).round_dp(8);
    out.trades = None;
    out.closed = true;
}

/// The interleaved candles of the benchmark's symbols (see the module documentation):
/// bar 0 of every symbol, then bar 1, and so on; each symbol gets `bars` candles, or its
/// source's length if shorter.
pub fn build_universe(sources: &[Vec<Candle>], symbols: usize, bars: usize) -> Vec<Candle> {
    let plans = plans(sources, symbols, bars);
    let longest = plans.iter().map(|p| p.bars.len()).max().unwrap_or(0);
    let mut out = Vec::new();
    for t in 0..longest {
        for p in &plans {
            if let Some(src) = p.bars.get(t) {
                let mut c = src.clone();
                fill(&mut c, src, p);
                out.push(c);
            }
        }
    }
    out
}

/// Runs the benchmark on the given source series.
pub fn bench(sources: &[Vec<Candle>], cfg: &BenchConfig) -> Result<BenchReport, Error> {
    let plans = plans(sources, cfg.symbols, cfg.bars_per_symbol);
    let longest = plans.iter().map(|p| p.bars.len()).max().unwrap_or(0);
    let Some(template) = plans.first().and_then(|p| p.bars.first()) else {
        return Err(Error::Bench("no candles to run on".into()));
    };
    let mut engine = SignalEngine::new(cfg.signals.clone())?;
    let mut batch: Vec<Candle> = vec![template.clone(); BATCH];
    let (mut signals, mut outcomes, mut candles) = (0u64, 0u64, 0u64);
    let mut elapsed = Duration::ZERO;
    let mut next = (0usize, 0usize); // (bar, symbol)
    loop {
        let mut n = 0;
        while n < BATCH && next.0 < longest {
            let (t, s) = next;
            if let Some(src) = plans[s].bars.get(t) {
                fill(&mut batch[n], src, &plans[s]);
                n += 1;
            }
            next = if s + 1 == plans.len() {
                (t + 1, 0)
            } else {
                (t, s + 1)
            };
        }
        if n == 0 {
            break;
        }
        let started = Instant::now();
        for c in &batch[..n] {
            for o in engine.process(c) {
                match o {
                    Output::Signal(_) => signals += 1,
                    Output::Outcome { .. } => outcomes += 1,
                }
            }
        }
        elapsed += started.elapsed();
        candles += n as u64;
    }
    let seconds = elapsed.as_secs_f64();
    Ok(BenchReport {
        symbols: cfg.symbols,
        series: engine.series_count(),
        candles,
        seconds,
        candles_per_sec: candles as f64 / seconds.max(1e-9),
        signals,
        outcomes,
    })
}

/// A fingerprint of every output the engine gives for `universe` (a candle now and then
/// processed twice in a row, as a redelivery would, to cover replay): a change to the
/// engine that leaves its results unchanged leaves this unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub candles: usize,
    pub signals: u64,
    pub outcomes: u64,
    /// FNV-1a over each signal's JSON and each outcome's fields, in order.
    pub hash: u64,
}

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} candles, {} signals, {} outcomes, digest {:016x}",
            self.candles, self.signals, self.outcomes, self.hash
        )
    }
}

/// The [`Digest`] of the default engine's outputs over `universe`.
///
/// # Panics
/// If a replayed candle gives different outputs: the engine's idempotency is broken.
pub fn digest(universe: &[Candle]) -> Result<Digest, Error> {
    let mut engine = SignalEngine::new(SignalsConfig::default())?;
    let mut fnv = Fnv(0xcbf2_9ce4_8422_2325);
    let (mut signals, mut outcomes) = (0u64, 0u64);
    for (i, c) in universe.iter().enumerate() {
        let out = engine.process(c);
        if i % 97 == 0 {
            assert_eq!(engine.process(c), out, "replay differs");
        }
        for o in &out {
            match o {
                Output::Signal(s) => {
                    signals += 1;
                    fnv.write(serde_json::to_string(s).unwrap_or_default().as_bytes());
                }
                Output::Outcome {
                    signal_id,
                    kind,
                    horizon_bars,
                    ret,
                } => {
                    outcomes += 1;
                    fnv.write(signal_id.as_bytes());
                    fnv.write(kind.as_str().as_bytes());
                    fnv.write(&horizon_bars.to_ne_bytes());
                    fnv.write(&ret.to_bits().to_ne_bytes());
                }
            }
        }
        fnv.write(&[0xff]);
    }
    Ok(Digest {
        candles: universe.len(),
        signals,
        outcomes,
        hash: fnv.0,
    })
}

/// FNV-1a, 64 bits: stable across Rust versions, unlike `DefaultHasher`.
struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// [`load_sources`] then [`bench`]: what `tickwatch bench signals` runs on the data folder.
pub fn bench_dir(dir: &Path, cfg: &BenchConfig) -> Result<BenchReport, Error> {
    bench(&load_sources(dir)?, cfg)
}
