//! The library side of `tickwatch indicators <csv>` and `tickwatch scan <csv>`: the binary
//! opens the history file ([`tickwatch_schema::history::open`]) and calls these.

use std::fmt::Write as _;
use std::io::Write;

use tickwatch_schema::history::format_ts;
use tickwatch_schema::wire::{Candle, Signal, SignalKind};

use crate::config::SignalsConfig;
use crate::engine::SignalEngine;
use crate::error::Error;
use crate::indicators::IndicatorSet;
use crate::num::dec_to_f64;

/// The header `tickwatch indicators` writes.
pub const INDICATORS_HEADER: &str =
    "ts,sma20,ema20,rsi14,macd,macd_signal,macd_hist,bb_upper,bb_mid,bb_lower,atr14";

/// Writes the standard indicators (SMA 20, EMA 20, RSI 14, MACD 12/26/9, Bollinger 20/2,
/// ATR 14) for every bar of a history file as CSV: `ts` as the history files spell it, an
/// empty cell where an indicator has no value yet. Every bar counts, halted ones included,
/// so the columns are exactly TA-Lib's on the file. Returns the number of rows written.
pub fn write_indicators<I, W>(candles: I, out: W) -> Result<usize, Error>
where
    I: IntoIterator<Item = Result<Candle, tickwatch_schema::Error>>,
    W: Write,
{
    let mut out = std::io::BufWriter::new(out);
    writeln!(out, "{INDICATORS_HEADER}")?;
    let mut set = IndicatorSet::default();
    let mut rows = 0;
    let mut line = String::with_capacity(256);
    for candle in candles {
        let c = candle?;
        let v = set.update(dec_to_f64(c.high), dec_to_f64(c.low), dec_to_f64(c.close));
        line.clear();
        line.push_str(&format_ts(c.open_ts));
        let macd = v.macd;
        let bb = v.bb;
        for value in [
            v.sma,
            v.ema,
            v.rsi,
            macd.map(|m| m.macd),
            macd.map(|m| m.signal),
            macd.map(|m| m.hist),
            bb.map(|b| b.upper),
            bb.map(|b| b.middle),
            bb.map(|b| b.lower),
            v.atr,
        ] {
            line.push(',');
            if let Some(x) = value {
                let _ = write!(line, "{x}");
            }
        }
        line.push('\n');
        out.write_all(line.as_bytes())?;
        rows += 1;
    }
    out.flush()?;
    Ok(rows)
}

/// Runs the engine over a history file and returns the signals it finds, in order.
/// `kinds` limits the run to those kinds; empty means the configuration's enabled kinds.
pub fn scan<I>(
    candles: I,
    config: &SignalsConfig,
    kinds: &[SignalKind],
) -> Result<Vec<Signal>, Error>
where
    I: IntoIterator<Item = Result<Candle, tickwatch_schema::Error>>,
{
    let mut config = config.clone();
    if !kinds.is_empty() {
        config.enabled = kinds.to_vec();
    }
    let mut engine = SignalEngine::new(config)?;
    let mut signals = Vec::new();
    for candle in candles {
        for output in engine.process(&candle?) {
            if let crate::engine::Output::Signal(s) = output {
                signals.push(s);
            }
        }
    }
    Ok(signals)
}

/// The human output of `tickwatch scan`: one line per signal (the bar it fired on, kind,
/// price, score and grade, key details), then a count per kind.
pub fn format_scan(signals: &[Signal]) -> String {
    let mut s = String::new();
    for sig in signals {
        let bar_ts = sig.ts - sig.interval.as_ms();
        let when = if sig.interval.is_daily_or_longer() {
            format_ts(bar_ts)[..10].to_string()
        } else {
            format_ts(bar_ts)
        };
        let details: Vec<String> = sig
            .details
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(t) => format!("{k}={t}"),
                other => format!("{k}={other}"),
            })
            .collect();
        let _ = writeln!(
            s,
            "{when}  {:<20} {:>14}  score {:>3} {}  {}",
            sig.kind.as_str(),
            sig.price.to_string(),
            sig.score,
            sig.grade,
            details.join(" ")
        );
    }
    let mut counts: Vec<(SignalKind, usize)> = Vec::new();
    for sig in signals {
        match counts.iter_mut().find(|(k, _)| *k == sig.kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((sig.kind, 1)),
        }
    }
    counts.sort();
    let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        s,
        "{} signal{}{}{}",
        signals.len(),
        if signals.len() == 1 { "" } else { "s" },
        if summary.is_empty() { "" } else { ": " },
        summary.join(", ")
    );
    s
}
