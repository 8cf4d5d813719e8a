//! The rule-book benchmark behind `tickwatch bench alerts`.
//!
//! Builds a book of `rules` active rules over `symbols` symbols, replays `ticks` ticks (a
//! random walk per symbol), and measures in the same run:
//! - ticks per second of the indexed engine ([`AlertEngine::process_tick`]);
//! - ticks per second of the naive loop ([`AlertEngine::process_tick_naive`], which asks
//!   every rule of the symbol) over the first `naive_ticks` ticks, on a second engine built
//!   from the same seed, next to the indexed engine's rate on that same prefix; the two must
//!   fire the same ids;
//! - resident memory per rule: `VmRSS` from `/proc/self/status` before and after building
//!   the book (the only I/O of this crate; `None` where `/proc` is missing), and the bytes
//!   the engine accounts for itself.
//!
//! The rule mix is what a user base sets: about 60 % crossings, 15 % state conditions, 10 %
//! channels, 15 % moving-percentage rules; thresholds log-uniform between 0.2 % and 25 %
//! from the price; 40 % `once`, 20 % `once_per_bar`, 40 % `every_time` with 0–5 min
//! cooldowns; a tenth with their own hysteresis, an expiry, or a template. Prices carry 7
//! significant digits and follow a random walk: the simulated market trades
//! `market_ticks_per_s` times a second over all symbols (default 10 000, a busy venue), so a
//! symbol ticks every `symbols / market_ticks_per_s` seconds on average (0.1 s), visiting
//! the symbols in a new random order each round; each tick moves the price by a normal step
//! scaled to `daily_volatility_pct` (default 3 %) over that time. Ticks carry trade ids. The
//! first round (one tick per symbol, which primes every rule) is a warm-up, not timed.

use std::fmt;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tickwatch_schema::rule::{AlertRule, Condition, RuleSpec, Trigger};
use tickwatch_schema::wire::{Interval, Tick};

use crate::config::AlertsConfig;
use crate::engine::AlertEngine;
use crate::error::Result;

/// What to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    pub rules: usize,
    pub symbols: usize,
    /// Ticks replayed through the indexed engine.
    pub ticks: usize,
    /// Ticks replayed through the naive loop (it is slow: keep it a small prefix).
    pub naive_ticks: usize,
    /// Trades per second of the simulated market, all symbols together: sets the time
    /// between two ticks of a symbol, and so how much each tick moves the price.
    pub market_ticks_per_s: u32,
    /// Daily volatility of every symbol, in percent.
    pub daily_volatility_pct: f64,
    pub seed: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            rules: 1_000_000,
            symbols: 1_000,
            ticks: 5_000_000,
            naive_ticks: 50_000,
            market_ticks_per_s: 10_000,
            daily_volatility_pct: 3.0,
            seed: 42,
        }
    }
}

/// The measurements.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub rules: usize,
    pub symbols: usize,
    pub market_ticks_per_s: u32,
    pub daily_volatility_pct: f64,
    pub build: Duration,
    /// Resident memory added by building the book, per rule (`None` without `/proc`).
    pub rss_bytes_per_rule: Option<f64>,
    /// The same after the replay (histories, caches and queues filled).
    pub rss_bytes_per_rule_after_replay: Option<f64>,
    /// Heap bytes the engine accounts for, per rule, after the build.
    pub accounted_bytes_per_rule: f64,
    pub ticks: usize,
    /// Ticks per second of CPU time (`/proc/thread-self/schedstat`; wall-clock where that
    /// is missing). The rates below are CPU rates too.
    pub indexed_ticks_per_s: f64,
    /// Ticks per wall-clock second (lower on a busy machine).
    pub indexed_wall_ticks_per_s: f64,
    pub firings: usize,
    /// Rules the indexed engine evaluated per tick, on average (the naive loop: all of the
    /// symbol's).
    pub evaluations_per_tick: f64,
    /// Share of ticks that took the fast path (nothing to evaluate, proven from the hot
    /// record alone).
    pub quiet_share: f64,
    pub naive_ticks: usize,
    pub naive_ticks_per_s: f64,
    /// The indexed engine's rate on the naive loop's prefix.
    pub indexed_prefix_ticks_per_s: f64,
    /// `indexed_prefix_ticks_per_s / naive_ticks_per_s`.
    pub speedup: f64,
    /// Both engines fired the same ids on the prefix.
    pub naive_agrees: bool,
}

impl Report {
    /// Whether the goals are met: ≥ 1 M ticks/s, ≥ 100× the naive loop, ≤ 200 bytes
    /// per rule, and the same firings as the naive loop.
    pub fn meets_goals(&self) -> bool {
        self.indexed_ticks_per_s >= 1_000_000.0
            && self.speedup >= 100.0
            && self.rss_bytes_per_rule.is_none_or(|b| b <= 200.0)
            && self.naive_agrees
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = |b: Option<f64>| b.map_or("n/a".to_string(), |b| format!("{b:.0} B"));
        writeln!(
            f,
            "alert rule book: {} rules over {} symbols, built in {:.2} s; market of {} trades/s, {} % daily volatility",
            self.rules,
            self.symbols,
            self.build.as_secs_f64(),
            self.market_ticks_per_s,
            self.daily_volatility_pct
        )?;
        writeln!(
            f,
            "  memory per rule:  {} resident after build, {} after replay, {:.0} B accounted",
            bytes(self.rss_bytes_per_rule),
            bytes(self.rss_bytes_per_rule_after_replay),
            self.accounted_bytes_per_rule
        )?;
        writeln!(
            f,
            "  indexed engine:   {:.0} ticks/s on CPU ({:.0} wall-clock) over {} ticks ({} firings, {:.2} rules evaluated per tick, {:.0} % of ticks on the fast path)",
            self.indexed_ticks_per_s,
            self.indexed_wall_ticks_per_s,
            self.ticks,
            self.firings,
            self.evaluations_per_tick,
            self.quiet_share * 100.0
        )?;
        writeln!(
            f,
            "  naive loop:       {:.0} ticks/s over the first {} ticks (indexed on the same: {:.0} ticks/s)",
            self.naive_ticks_per_s, self.naive_ticks, self.indexed_prefix_ticks_per_s
        )?;
        writeln!(
            f,
            "  speed-up:         {:.0}x; same firings as the naive loop: {}",
            self.speedup,
            if self.naive_agrees { "yes" } else { "NO" }
        )?;
        write!(
            f,
            "  goals (>= 1M ticks/s, >= 100x, <= 200 B/rule): {}",
            if self.meets_goals() { "met" } else { "NOT met" }
        )
    }
}

/// A small deterministic generator (SplitMix64): the benchmark and the tests must replay the
/// same scenario from a seed, whatever version of `rand` the workspace has.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// About normal with mean 0 and deviation 1 (a sum of uniforms).
    pub fn normal(&mut self) -> f64 {
        (0..4).map(|_| self.unit()).sum::<f64>() * 3.0_f64.sqrt() - 2.0 * 3.0_f64.sqrt()
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        let n = u64::try_from(items.len()).ok()?;
        items
            .get(usize::try_from(self.below(n)).unwrap_or(0))
            .copied()
    }
}

/// Benchmark time starts here (2025-11-21T22:00:00Z).
const START_TS: i64 = 1_763_762_400_000;
const VENUE: &str = "bench";

#[derive(Debug, Clone)]
struct Market {
    symbol: String,
    /// The price is `mantissa × 10^-scale`.
    start: i64,
    scale: u32,
}

fn markets(seed: u64, symbols: usize) -> Vec<Market> {
    let mut rng = SplitMix::new(seed ^ 0x6d61_726b_6574);
    (0..symbols)
        .map(|i| Market {
            symbol: format!("S{i:05}"),
            start: 1_000_000 + i64::try_from(rng.below(9_000_000)).unwrap_or(0),
            scale: u32::try_from(rng.below(9)).unwrap_or(2),
        })
        .collect()
}

/// The rules, generated one at a time so building the book needs no copy of them.
#[derive(Debug)]
struct RuleStream {
    rng: SplitMix,
    markets: Vec<Market>,
    next: usize,
    count: usize,
}

impl RuleStream {
    fn new(seed: u64, markets: Vec<Market>, count: usize) -> Self {
        RuleStream {
            rng: SplitMix::new(seed ^ 0x7275_6c65),
            markets,
            next: 0,
            count,
        }
    }

    /// A price `r` away from the market's start, `r` log-uniform in [0.2 %, 25 %].
    fn offset(&mut self, market: &Market, up: bool) -> Decimal {
        let r = 0.002 * (125.0_f64).powf(self.rng.unit());
        let factor = if up { 1.0 + r } else { 1.0 - r };
        Decimal::new(
            ((market.start as f64) * factor).round().max(1.0) as i64,
            market.scale,
        )
    }

    fn spec(&mut self, market: &Market) -> RuleSpec {
        let roll = self.rng.unit();
        let up = self.rng.chance(0.5);
        let condition = match roll {
            r if r < 0.22 => Condition::CrossingUp,
            r if r < 0.44 => Condition::CrossingDown,
            r if r < 0.60 => Condition::Crossing,
            r if r < 0.675 => Condition::GreaterThan,
            r if r < 0.75 => Condition::LessThan,
            r if r < 0.80 => Condition::EnteringChannel,
            r if r < 0.85 => Condition::ExitingChannel,
            r if r < 0.925 => Condition::MovingUpPct,
            _ => Condition::MovingDownPct,
        };
        let mut spec = RuleSpec::price(VENUE, &market.symbol, condition, Decimal::ONE);
        match condition {
            Condition::CrossingUp | Condition::GreaterThan => {
                spec.threshold = Some(self.offset(market, true));
            }
            Condition::CrossingDown | Condition::LessThan => {
                spec.threshold = Some(self.offset(market, false));
            }
            Condition::Crossing => spec.threshold = Some(self.offset(market, up)),
            Condition::EnteringChannel
            | Condition::ExitingChannel
            | Condition::InsideChannel
            | Condition::OutsideChannel => {
                spec.threshold = None;
                let other_side = self.rng.chance(0.5);
                let (x, y) = (self.offset(market, up), self.offset(market, other_side));
                let (low, high) = if x < y { (x, y) } else { (y, x) };
                let high = if high == low {
                    high + Decimal::new(1, market.scale)
                } else {
                    high
                };
                spec.low = Some(low);
                spec.high = Some(high);
            }
            Condition::MovingUpPct | Condition::MovingDownPct => {
                spec.threshold = None;
                let pct = self.rng.pick(&[5_i64, 10, 20, 30, 50]).unwrap_or(10);
                spec.pct = Some(Decimal::new(pct, 1));
                spec.window_s = self.rng.pick(&[60_u64, 300, 900, 3_600]);
            }
            // Not in the mix (it stays the one the published figures were measured on).
            Condition::Expression => {
                spec.threshold = None;
                spec.expression = Some("rsi(14,1m) < 30".into());
            }
            Condition::MovingUp | Condition::MovingDown => {
                spec.threshold = Some(self.offset(market, true) - self.offset(market, false));
                spec.window_s = self.rng.pick(&[60_u64, 300, 900, 3_600]);
            }
        }
        let trigger = self.rng.unit();
        if trigger < 0.4 {
            spec.trigger = Trigger::Once;
        } else if trigger < 0.6 {
            spec.trigger = Trigger::OncePerBar;
            spec.interval =
                self.rng
                    .pick(&[Interval::M1, Interval::M5, Interval::M15, Interval::H1]);
        } else {
            spec.trigger = Trigger::EveryTime;
            spec.cooldown_s = self.rng.pick(&[0_u64, 0, 60, 300]).unwrap_or(0);
        }
        if self.rng.chance(0.1) {
            spec.hysteresis_pct = self.rng.pick(&[
                Decimal::ZERO,
                Decimal::new(5, 2),
                Decimal::new(2, 1),
                Decimal::new(5, 1),
            ]);
        }
        if self.rng.chance(0.1) {
            let hours = 1 + i64::try_from(self.rng.below(24 * 30)).unwrap_or(0);
            spec.expires_at = Some(START_TS + hours * 3_600_000);
        }
        if self.rng.chance(0.05) {
            spec.template = Some("{{symbol}} {{condition}} {{threshold}} at {{price}}".into());
        }
        spec
    }
}

impl Iterator for RuleStream {
    type Item = AlertRule;

    fn next(&mut self) -> Option<AlertRule> {
        if self.next >= self.count || self.markets.is_empty() {
            return None;
        }
        let index = self.next;
        self.next += 1;
        // Spread rules evenly: rule i belongs to symbol i mod n.
        let market = self.markets.get(index % self.markets.len())?.clone();
        let spec = self.spec(&market);
        let id = i64::try_from(index).unwrap_or(i64::MAX - 1) + 1;
        Some(AlertRule {
            id,
            user_id: 1 + id % 50_000,
            spec,
            active: true,
            version: 1,
            created_at: START_TS,
            last_fired_at: None,
        })
    }
}

/// The replayed ticks, produced in chunks outside the timed loop.
#[derive(Debug)]
struct TickStream {
    rng: SplitMix,
    /// Mean time between two ticks of a symbol, and the price step's deviation over it.
    spacing_ms: f64,
    sigma: f64,
    markets: Vec<Market>,
    prices: Vec<i64>,
    times: Vec<i64>,
    order: Vec<usize>,
    cursor: usize,
    trade: u64,
}

impl TickStream {
    fn new(config: &BenchConfig, markets: Vec<Market>) -> Self {
        let prices = markets.iter().map(|m| m.start).collect();
        let times = vec![START_TS; markets.len()];
        let order = (0..markets.len()).collect();
        let spacing_ms =
            1_000.0 * markets.len() as f64 / f64::from(config.market_ticks_per_s.max(1));
        let sigma = config.daily_volatility_pct / 100.0 * (spacing_ms / 86_400_000.0).sqrt();
        TickStream {
            rng: SplitMix::new(config.seed ^ 0x7469_636b),
            spacing_ms,
            sigma,
            markets,
            prices,
            times,
            order,
            cursor: 0,
            trade: 0,
        }
    }

    fn chunk(&mut self, n: usize) -> Vec<Tick> {
        let mut out = Vec::with_capacity(n);
        let count = self.markets.len();
        if count == 0 {
            return out;
        }
        while out.len() < n {
            if self.cursor == 0 {
                // A new round visits the symbols in a new order, as a real feed would.
                for i in (1..count).rev() {
                    let j = usize::try_from(self.rng.below(i as u64 + 1)).unwrap_or(0);
                    self.order.swap(i, j);
                }
            }
            let Some(&s) = self.order.get(self.cursor) else {
                break;
            };
            self.cursor = (self.cursor + 1) % count;
            let (Some(market), Some(price), Some(ts)) = (
                self.markets.get(s),
                self.prices.get_mut(s),
                self.times.get_mut(s),
            ) else {
                break;
            };
            let step = (self.rng.normal() * self.sigma * *price as f64).round() as i64;
            *price = (*price + step).max(1);
            // Uniform in [0.2, 1.8] × the mean spacing, at least a millisecond.
            let dt = self.spacing_ms * (0.2 + 1.6 * self.rng.unit());
            *ts += (dt.round() as i64).max(1);
            self.trade += 1;
            out.push(Tick {
                venue: VENUE.to_string(),
                symbol: market.symbol.clone(),
                price: Decimal::new(*price, market.scale),
                qty: Decimal::ONE,
                ts: *ts,
                trade_id: Some(self.trade.to_string()),
            });
        }
        out
    }
}

/// This thread's time on a CPU, in nanoseconds (`/proc/thread-self/schedstat`), so that a
/// busy machine's run queue does not count as engine time.
fn cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

/// Wall-clock and on-CPU time of the timed sections.
#[derive(Debug, Default, Clone, Copy)]
struct Spent {
    wall: Duration,
    cpu: Option<Duration>,
}

impl Spent {
    fn time<T>(&mut self, work: impl FnOnce() -> T) -> T {
        let (cpu_before, started) = (cpu_ns(), Instant::now());
        let out = work();
        self.wall += started.elapsed();
        self.cpu = match (self.cpu, cpu_before, cpu_ns()) {
            (Some(total), Some(before), Some(after)) => {
                Some(total + Duration::from_nanos(after.saturating_sub(before)))
            }
            _ => None,
        };
        out
    }

    fn add(&mut self, other: Spent) {
        self.wall += other.wall;
        self.cpu = self.cpu.zip(other.cpu).map(|(a, b)| a + b);
    }

    /// Ticks per second on the CPU when known, else per wall-clock second.
    fn rate(&self, n: usize) -> (f64, f64) {
        let per = |d: Duration| n as f64 / d.as_secs_f64().max(1e-9);
        (per(self.wall), self.cpu.map_or(per(self.wall), per))
    }
}

impl Spent {
    fn new() -> Self {
        Spent {
            wall: Duration::ZERO,
            cpu: cpu_ns().map(|_| Duration::ZERO),
        }
    }
}

fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn per_rule(before: Option<u64>, after: Option<u64>, rules: usize) -> Option<f64> {
    let (before, after) = (before?, after?);
    Some(after.saturating_sub(before) as f64 / rules.max(1) as f64)
}

const CHUNK: usize = 100_000;

/// Runs the benchmark (seconds to a minute in a release build; far longer in debug).
pub fn run(config: &BenchConfig) -> Result<Report> {
    let markets = markets(config.seed, config.symbols);

    let rss_before = resident_bytes();
    let started = Instant::now();
    let mut engine = AlertEngine::new(AlertsConfig::default())?;
    engine.load(
        RuleStream::new(config.seed, markets.clone(), config.rules),
        Vec::new(),
    );
    let build = started.elapsed();
    let rss_built = resident_bytes();
    let rules = engine.rule_count();
    let accounted = engine.memory_bytes() as f64 / rules.max(1) as f64;

    // Warm-up: one tick per symbol primes every rule (the first price after a load is no
    // cross); not timed, for neither engine.
    let mut ticks = TickStream::new(config, markets.clone());
    let warm_up = ticks.chunk(config.symbols);
    for tick in &warm_up {
        engine.process_tick(tick);
    }
    let evaluations_before = engine.evaluations();
    let quiet_before = engine.quiet_prices();

    // The indexed engine over every tick; the prefix's firing ids kept for the cross-check.
    let naive_ticks = config.naive_ticks.min(config.ticks);
    let mut rest_spent = Spent::new();
    let mut prefix_spent = Spent::new();
    let mut firings = 0;
    let mut prefix_ids = Vec::new();
    let mut done = 0;
    while done < config.ticks {
        let chunk = ticks.chunk(CHUNK.min(config.ticks - done));
        if chunk.is_empty() {
            break;
        }
        let in_prefix = naive_ticks.saturating_sub(done).min(chunk.len());
        let (prefix, rest) = chunk.split_at(in_prefix);
        if !prefix.is_empty() {
            prefix_spent.time(|| {
                for tick in prefix {
                    let fired = engine.process_tick(tick);
                    firings += fired.len();
                    prefix_ids.extend(fired.iter().map(|f| f.id));
                }
            });
        }
        rest_spent.time(|| {
            for tick in rest {
                firings += engine.process_tick(tick).len();
            }
        });
        done += chunk.len();
    }
    let mut spent = rest_spent;
    spent.add(prefix_spent);
    let rss_replayed = resident_bytes();
    let evaluations_per_tick =
        (engine.evaluations() - evaluations_before) as f64 / done.max(1) as f64;
    let quiet_share = (engine.quiet_prices() - quiet_before) as f64 / done.max(1) as f64;
    drop(engine);

    // The naive loop over the prefix, on an identical second book.
    let mut naive = AlertEngine::new(AlertsConfig::default())?;
    naive.load(
        RuleStream::new(config.seed, markets.clone(), config.rules),
        Vec::new(),
    );
    let mut ticks = TickStream::new(config, markets);
    for tick in &ticks.chunk(config.symbols) {
        naive.process_tick_naive(tick);
    }
    let mut naive_spent = Spent::new();
    let mut naive_ids = Vec::new();
    let mut naive_done = 0;
    while naive_done < naive_ticks {
        let chunk = ticks.chunk(CHUNK.min(naive_ticks - naive_done));
        if chunk.is_empty() {
            break;
        }
        naive_spent.time(|| {
            for tick in &chunk {
                let fired = naive.process_tick_naive(tick);
                naive_ids.extend(fired.iter().map(|f| f.id));
            }
        });
        naive_done += chunk.len();
    }
    prefix_ids.sort_unstable();
    naive_ids.sort_unstable();

    let (indexed_wall, indexed_cpu) = spent.rate(done);
    let (_, indexed_prefix_ticks_per_s) = prefix_spent.rate(naive_done);
    let (_, naive_ticks_per_s) = naive_spent.rate(naive_done);
    Ok(Report {
        rules,
        symbols: config.symbols,
        market_ticks_per_s: config.market_ticks_per_s,
        daily_volatility_pct: config.daily_volatility_pct,
        build,
        rss_bytes_per_rule: per_rule(rss_before, rss_built, rules),
        rss_bytes_per_rule_after_replay: per_rule(rss_before, rss_replayed, rules),
        accounted_bytes_per_rule: accounted,
        ticks: done,
        indexed_ticks_per_s: indexed_cpu,
        indexed_wall_ticks_per_s: indexed_wall,
        firings,
        evaluations_per_tick,
        quiet_share,
        naive_ticks: naive_done,
        naive_ticks_per_s,
        indexed_prefix_ticks_per_s,
        speedup: indexed_prefix_ticks_per_s / naive_ticks_per_s.max(1e-9),
        naive_agrees: prefix_ids == naive_ids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_run_agrees_with_the_naive_loop() {
        let report = run(&BenchConfig {
            rules: 20_000,
            symbols: 20,
            ticks: 20_000,
            naive_ticks: 5_000,
            // A wild market, so that a short run fires plenty.
            market_ticks_per_s: 20,
            daily_volatility_pct: 20.0,
            seed: 7,
        })
        .expect("bench runs");
        assert_eq!(report.rules, 20_000);
        assert!(report.naive_agrees, "{report}");
        assert!(report.firings > 0, "{report}");
    }

    /// The full benchmark; run with
    /// `cargo test --release -p tickwatch-alerts -- --ignored --nocapture full_benchmark`.
    #[test]
    #[ignore = "a release-build benchmark; run explicitly"]
    fn full_benchmark() {
        // Sizes can be overridden for quick experiments, e.g. TICKWATCH_BENCH_TICKS=500000.
        let env = |key: &str, default: usize| {
            std::env::var(key)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let defaults = BenchConfig::default();
        let config = BenchConfig {
            rules: env("TICKWATCH_BENCH_RULES", defaults.rules),
            symbols: env("TICKWATCH_BENCH_SYMBOLS", defaults.symbols),
            ticks: env("TICKWATCH_BENCH_TICKS", defaults.ticks),
            naive_ticks: env("TICKWATCH_BENCH_NAIVE_TICKS", defaults.naive_ticks),
            market_ticks_per_s: u32::try_from(env(
                "TICKWATCH_BENCH_MARKET_RATE",
                defaults.market_ticks_per_s as usize,
            ))
            .unwrap_or(defaults.market_ticks_per_s),
            daily_volatility_pct: std::env::var("TICKWATCH_BENCH_VOLATILITY")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(defaults.daily_volatility_pct),
            seed: defaults.seed,
        };
        let report = run(&config).expect("bench runs");
        println!("{report}");
        assert!(report.naive_agrees, "{report}");
    }
}

/// `tickwatch bench expressions`: indicator and multi-condition rules evaluated at a 1m
/// close — every symbol's candle of one minute, through the pure engine on one core.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpressionBenchConfig {
    pub rules: usize,
    pub symbols: usize,
    /// Bars each symbol is warmed up on before the measured closes.
    pub warm_up_bars: usize,
    /// Minutes measured (each one closes a candle of every symbol).
    pub closes: usize,
    pub seed: u64,
}

impl Default for ExpressionBenchConfig {
    fn default() -> Self {
        ExpressionBenchConfig {
            rules: 100_000,
            symbols: 1_000,
            warm_up_bars: 300,
            closes: 60,
            seed: 42,
        }
    }
}

/// What [`run_expressions`] measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpressionReport {
    pub rules: usize,
    pub symbols: usize,
    /// Calculators the engine keeps (distinct symbol, interval, indicator and parameters).
    pub calculators: usize,
    pub build: Duration,
    pub closes: usize,
    /// Time to evaluate one minute's closes of every symbol: median and worst.
    pub close_p50: Duration,
    pub close_max: Duration,
    pub firings: usize,
}

impl ExpressionReport {
    /// The goal: a 1m close of every symbol in ≤ 100 ms.
    pub fn meets_goal(&self) -> bool {
        self.close_max <= Duration::from_millis(100)
    }
}

impl fmt::Display for ExpressionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "  {} expression rules over {} symbols, {} shared calculators; built in {:.2?}",
            self.rules, self.symbols, self.calculators, self.build
        )?;
        writeln!(
            f,
            "  a 1m close of every symbol: p50 {:.2?}, worst {:.2?} over {} closes ({} firings)",
            self.close_p50, self.close_max, self.closes, self.firings
        )?;
        write!(
            f,
            "  goal (≤ 100 ms per close of all symbols): {}",
            if self.meets_goal() { "met" } else { "NOT met" }
        )
    }
}

/// The rules: a mix of what users set (oversold RSI, price over an average, MACD
/// crossings, Bollinger breakouts, volume surges, two conditions), at a few parameters.
fn expression_text(rng: &mut SplitMix) -> String {
    let period = rng.pick(&[7_u32, 14, 21]).unwrap_or(14);
    let level = rng.pick(&[25_u32, 30, 35, 65, 70]).unwrap_or(30);
    let average = rng.pick(&[20_u32, 50, 100]).unwrap_or(50);
    match rng.below(6) {
        0 => format!("rsi({period},1m) < {level}"),
        1 => format!("close x> sma({average},1m)"),
        2 => "macd_hist(12,26,9,1m) x> 0".to_string(),
        3 => "close outside bb(20,2,1m)".to_string(),
        4 => "volume > volume_sma(20,1m)".to_string(),
        _ => format!("rsi({period},1m) < {level} and close > ema({average},1m)"),
    }
}

/// Runs the expression benchmark.
pub fn run_expressions(config: &ExpressionBenchConfig) -> Result<ExpressionReport> {
    use tickwatch_schema::wire::Candle;

    let mut rng = SplitMix::new(config.seed);
    let symbols: Vec<String> = (0..config.symbols.max(1))
        .map(|i| format!("SYM{i:05}"))
        .collect();
    let started = Instant::now();
    let rules: Vec<AlertRule> = (0..config.rules)
        .map(|i| {
            let symbol = &symbols[i % symbols.len()];
            let mut spec = RuleSpec::expression(VENUE, symbol, &expression_text(&mut rng));
            spec.trigger = Trigger::EveryTime;
            AlertRule {
                id: i as i64 + 1,
                user_id: 1,
                spec,
                active: true,
                version: 1,
                created_at: 0,
                last_fired_at: None,
            }
        })
        .collect();
    let mut engine = AlertEngine::new(AlertsConfig::default())?;
    let report = engine.load(rules, Vec::new());
    if let Some((id, error)) = report.rejected.first() {
        return Err(crate::Error::Capacity {
            rule_id: *id,
            reason: error.to_string(),
        });
    }
    let build = started.elapsed();
    let calculators = engine.indicator_calculators();

    let minute = 60_000_i64;
    let mut prices: Vec<f64> = (0..symbols.len())
        .map(|_| 10.0 + rng.unit() * 1_000.0)
        .collect();
    let mut candle_at = |rng: &mut SplitMix, s: usize, bar: usize| {
        let open = prices[s];
        let close = (open * (1.0 + rng.normal() * 0.002)).max(0.01);
        prices[s] = close;
        let (hi, lo) = (open.max(close) * 1.001, open.min(close) * 0.999);
        let dec = |x: f64| {
            Decimal::from_f64_retain(x)
                .unwrap_or(Decimal::ONE)
                .round_dp(4)
        };
        Candle {
            venue: VENUE.into(),
            symbol: symbols[s].clone(),
            interval: Interval::M1,
            open_ts: 1_700_000_000_000 + bar as i64 * minute,
            open: dec(open),
            high: dec(hi),
            low: dec(lo),
            close: dec(close),
            volume: dec(100.0 + rng.unit() * 100.0),
            trades: None,
            closed: true,
        }
    };
    for bar in 0..config.warm_up_bars {
        for s in 0..symbols.len() {
            let candle = candle_at(&mut rng, s, bar);
            engine.process_candle(&candle);
        }
    }
    let mut times = Vec::with_capacity(config.closes);
    let mut firings = 0;
    for close in 0..config.closes {
        let candles: Vec<Candle> = (0..symbols.len())
            .map(|s| candle_at(&mut rng, s, config.warm_up_bars + close))
            .collect();
        let started = Instant::now();
        for candle in &candles {
            firings += engine.process_candle(candle).len();
        }
        times.push(started.elapsed());
    }
    times.sort_unstable();
    Ok(ExpressionReport {
        rules: config.rules,
        symbols: symbols.len(),
        calculators,
        build,
        closes: times.len(),
        close_p50: times.get(times.len() / 2).copied().unwrap_or_default(),
        close_max: times.last().copied().unwrap_or_default(),
        firings,
    })
}
