//! Synthetic ticks for demos and load tests: geometric Brownian motion per symbol, seeded.
//!
//! The stream is a pure function of the configuration: the same seed gives the same symbols,
//! prices, quantities, trade ids and, given `start_ts`, the same timestamps (tick `i` is at
//! `start_ts + i / rate`; without `start_ts` the wall clock at start is used, so only the
//! times move). The generator is SplitMix64 written here, not a library RNG, so a dependency
//! update cannot change the stream. Symbols take turns (`SYN001`, `SYN002`, …); each step is
//! `P · exp((μ − σ²/2)·Δt + σ·√Δt·Z)` with Δt the time between two ticks of the symbol in
//! years, σ and μ annualised; prices are rounded to `price_scale` decimals (never below one
//! unit of that scale), quantities are exponential with mean `mean_qty`.
//!
//! [`run`] paces the stream at `rate` ticks per second (in bursts every 10 ms at high rates),
//! builds candles from it when `candles.intervals` is not empty, and goes through the outbox
//! like the exchange feeds, so a slow broker shows up as counted drops.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use serde::{Deserialize, Serialize};
use tickwatch_schema::wire::Tick;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::candles::{CandleBuilder, CandleConfig};
use crate::config::{self, BufferConfig};
use crate::error::{Error, Result};
use crate::feed::now_ms;
use crate::metrics::{self, Metrics, MetricsSnapshot};
use crate::outbox::{Item, Pipeline};
use crate::sink::MarketSink;

const YEAR_SECONDS: f64 = 365.25 * 86_400.0;

/// The `[synthetic]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyntheticConfig {
    pub venue: String,
    /// How many symbols; they are named `<prefix>001`, `<prefix>002`, …
    pub symbols: usize,
    pub prefix: String,
    pub seed: u64,
    /// Ticks per second, over all symbols.
    pub rate: f64,
    /// The first symbol's start price; the others start at up to 10× that, by the seed.
    pub start_price: Decimal,
    /// Annualised volatility σ (0.8 = 80 %, crypto-like).
    pub volatility: f64,
    /// Annualised drift μ.
    pub drift: f64,
    pub price_scale: u32,
    pub mean_qty: f64,
    pub qty_scale: u32,
    /// Timestamp (epoch ms) of the first tick; the wall clock at start when absent.
    pub start_ts: Option<i64>,
    /// Stop after this many ticks (a load test); run until shutdown when absent.
    pub max_ticks: Option<u64>,
    /// Candles built from the stream (the stream starts with the builder, so its first
    /// buckets are published too).
    pub candles: CandleConfig,
    pub buffer: BufferConfig,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            venue: "synthetic".into(),
            symbols: 3,
            prefix: "SYN".into(),
            seed: 42,
            rate: 20.0,
            start_price: Decimal::from(1000),
            volatility: 0.8,
            drift: 0.0,
            price_scale: 2,
            mean_qty: 0.5,
            qty_scale: 4,
            start_ts: None,
            max_ticks: None,
            candles: CandleConfig {
                emit_first_bucket: true,
                ..CandleConfig::default()
            },
            buffer: BufferConfig::default(),
        }
    }
}

impl SyntheticConfig {
    pub fn validate(&self) -> Result<()> {
        config::validate_venue("synthetic.venue", &self.venue)?;
        if !(1..=100_000).contains(&self.symbols) {
            return Err(Error::config(
                "synthetic.symbols",
                "must be between 1 and 100000",
            ));
        }
        tickwatch_schema::wire::validate_symbol(&format!("{}{:03}", self.prefix, self.symbols))
            .map_err(|e| Error::config("synthetic.prefix", e))?;
        if !(self.rate.is_finite() && self.rate > 0.0 && self.rate <= 1_000_000.0) {
            return Err(Error::config(
                "synthetic.rate",
                "must be above 0 and at most 1000000 ticks/s",
            ));
        }
        if self.start_price <= Decimal::ZERO {
            return Err(Error::config("synthetic.start_price", "must be above zero"));
        }
        if !(self.volatility.is_finite() && (0.0..=20.0).contains(&self.volatility)) {
            return Err(Error::config(
                "synthetic.volatility",
                "must be between 0 and 20",
            ));
        }
        if !(self.drift.is_finite() && self.drift.abs() <= 10.0) {
            return Err(Error::config(
                "synthetic.drift",
                "must be between -10 and 10",
            ));
        }
        if self.price_scale > 12 || self.qty_scale > 12 {
            return Err(Error::config(
                "synthetic.price_scale",
                "scales must be at most 12",
            ));
        }
        if !(self.mean_qty.is_finite() && self.mean_qty > 0.0) {
            return Err(Error::config("synthetic.mean_qty", "must be above zero"));
        }
        if let Some(ts) = self.start_ts {
            tickwatch_schema::wire::validate_ts("ts", ts)
                .map_err(|e| Error::config("synthetic.start_ts", e))?;
        }
        self.candles.validate("synthetic.candles")?;
        self.buffer.validate("synthetic.buffer")
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and fixed forever.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1): never 0, so its logarithm is finite.
    fn next_open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller; the second value is discarded for simplicity).
    fn next_normal(&mut self) -> f64 {
        let (u1, u2) = (self.next_open01(), self.next_open01());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// The endless, deterministic tick stream.
#[derive(Debug, Clone)]
pub struct SyntheticStream {
    rng: SplitMix64,
    venue: String,
    symbols: Vec<String>,
    prices: Vec<f64>,
    counts: Vec<u64>,
    index: u64,
    start_ts: i64,
    rate: f64,
    step_drift: f64,
    step_sigma: f64,
    price_scale: u32,
    mean_qty: f64,
    qty_scale: u32,
}

impl SyntheticStream {
    /// `start_ts` is used when the config has none.
    pub fn new(config: &SyntheticConfig, start_ts: i64) -> Self {
        let mut rng = SplitMix64(config.seed);
        let base = config.start_price.to_f64().unwrap_or(1000.0);
        let prices = (0..config.symbols)
            .map(|i| {
                if i == 0 {
                    base
                } else {
                    base * (1.0 + 9.0 * rng.next_open01())
                }
            })
            .collect();
        let dt = config.symbols as f64 / config.rate / YEAR_SECONDS;
        SyntheticStream {
            rng,
            venue: config.venue.clone(),
            symbols: (1..=config.symbols)
                .map(|i| format!("{}{i:03}", config.prefix))
                .collect(),
            prices,
            counts: vec![0; config.symbols],
            index: 0,
            start_ts: config.start_ts.unwrap_or(start_ts),
            rate: config.rate,
            step_drift: (config.drift - config.volatility.powi(2) / 2.0) * dt,
            step_sigma: config.volatility * dt.sqrt(),
            price_scale: config.price_scale,
            mean_qty: config.mean_qty,
            qty_scale: config.qty_scale,
        }
    }

    /// The market time of the next tick.
    pub fn next_ts(&self) -> i64 {
        self.start_ts + (self.index as f64 * 1000.0 / self.rate) as i64
    }
}

fn rounded(value: f64, scale: u32) -> Decimal {
    let unit = Decimal::new(1, scale);
    Decimal::from_f64(value)
        .map(|d| d.round_dp(scale))
        .filter(|d| *d >= unit)
        .unwrap_or(unit)
}

impl Iterator for SyntheticStream {
    type Item = Tick;

    fn next(&mut self) -> Option<Tick> {
        let n = self.symbols.len();
        let s = (self.index % n as u64) as usize;
        let ts = self.next_ts();
        let z = self.rng.next_normal();
        let price = self.prices[s] * (self.step_drift + self.step_sigma * z).exp();
        // Keep the walk away from zero and infinity whatever the parameters.
        self.prices[s] = price.clamp(1e-9, 1e15);
        let qty = -self.rng.next_open01().ln() * self.mean_qty;
        self.counts[s] += 1;
        self.index += 1;
        Some(Tick {
            venue: self.venue.clone(),
            symbol: self.symbols[s].clone(),
            price: rounded(self.prices[s], self.price_scale),
            qty: rounded(qty, self.qty_scale),
            ts,
            trade_id: Some(self.counts[s].to_string()),
        })
    }
}

/// Runs the generator at the configured rate until `shutdown` (or `max_ticks`), then flushes.
pub async fn run(
    config: SyntheticConfig,
    sink: Arc<dyn MarketSink>,
    shutdown: CancellationToken,
) -> Result<MetricsSnapshot> {
    run_with_metrics(config, sink, Arc::new(Metrics::default()), shutdown).await
}

/// [`run`], counting into `metrics`.
pub async fn run_with_metrics(
    config: SyntheticConfig,
    sink: Arc<dyn MarketSink>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<MetricsSnapshot> {
    config.validate()?;
    tracing::info!(
        symbols = config.symbols,
        rate = config.rate,
        seed = config.seed,
        "synthetic source starting"
    );
    let pipeline = Pipeline::start("synthetic", sink, config.buffer.clone(), metrics.clone());
    let mut stream = SyntheticStream::new(&config, now_ms());
    let mut builder = CandleBuilder::new(&config.candles);
    let market_start = stream.next_ts();
    let limit = config.max_ticks.unwrap_or(u64::MAX);
    let period = Duration::from_secs_f64((1.0 / config.rate).clamp(0.01, 1.0));
    let mut pace = tokio::time::interval(period);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut emitted = 0u64;
    let mut out = Vec::new();
    while emitted < limit {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = pace.tick() => {}
        }
        let due = ((started.elapsed().as_secs_f64() * config.rate) as u64 + 1).min(limit);
        while emitted < due {
            let Some(tick) = stream.next() else { break };
            emitted += 1;
            metrics::inc(&metrics.frames);
            match builder.on_tick(&tick) {
                Ok(closed) => out.extend(closed.into_iter().map(Item::Candle)),
                Err(_) => metrics::inc(&metrics.late_ticks),
            }
            out.push(Item::Tick(tick));
        }
        // Market time runs with the wall clock from the first tick.
        let market_now = market_start + started.elapsed().as_millis() as i64;
        out.extend(builder.on_time(market_now).into_iter().map(Item::Candle));
        pipeline.outbox.push_all(out.drain(..));
    }
    pipeline.finish().await;
    Ok(metrics.snapshot())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let config = SyntheticConfig {
            start_ts: Some(1_700_000_000_000),
            ..SyntheticConfig::default()
        };
        config.validate().expect("valid");
        let a: Vec<Tick> = SyntheticStream::new(&config, 0).take(1000).collect();
        let b: Vec<Tick> = SyntheticStream::new(&config, 0).take(1000).collect();
        assert_eq!(a, b);
        let other = SyntheticConfig {
            seed: 7,
            ..config.clone()
        };
        let c: Vec<Tick> = SyntheticStream::new(&other, 0).take(1000).collect();
        assert_ne!(a, c);
        assert_eq!(
            a.iter()
                .take(4)
                .map(|t| t.symbol.as_str())
                .collect::<Vec<_>>(),
            ["SYN001", "SYN002", "SYN003", "SYN001"]
        );
        assert_eq!(a[0].ts, 1_700_000_000_000);
        assert_eq!(a[20].ts, 1_700_000_001_000); // 20 ticks/s
        for t in &a {
            tickwatch_schema::wire::Message::validate(t).expect("valid tick");
            assert!(t.price.scale() <= 2 && t.qty.scale() <= 4);
        }
        // Pinned, so a change of the generator is noticed.
        assert_eq!(a[0].price.to_string(), "999.95");
    }

    #[test]
    fn gbm_moves_like_its_volatility() {
        // One year of daily steps for one symbol: the sample σ of log returns ≈ 0.8/√365.
        let config = SyntheticConfig {
            symbols: 1,
            rate: 1.0 / 86_400.0,
            price_scale: 8,
            start_ts: Some(1_700_000_000_000),
            ..SyntheticConfig::default()
        };
        let prices: Vec<f64> = SyntheticStream::new(&config, 0)
            .take(3650)
            .map(|t| t.price.to_f64().expect("f64"))
            .collect();
        let returns: Vec<f64> = prices.windows(2).map(|w| (w[1] / w[0]).ln()).collect();
        let mean = returns.iter().sum::<f64>() / returns.len() as f64;
        let var = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / returns.len() as f64;
        let expected = 0.8 / 365.25_f64.sqrt();
        assert!(
            (var.sqrt() / expected - 1.0).abs() < 0.1,
            "σ {} vs {expected}",
            var.sqrt()
        );
    }
}
