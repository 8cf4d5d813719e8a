//! A backtest: history files through the signals engine and the [`PaperEngine`] — the live
//! role's own two engines, in the order the broker delivers them live: each candle to the
//! paper engine (fills at its open, exits in its range), then to the signals engine, whose
//! signals go to the paper engine (entries at the next candle), a candle's signals in the
//! order of their kinds.

use tickwatch_schema::wire::Candle;
use tickwatch_signals::{Output, SignalEngine, SignalsConfig};

use crate::engine::{PaperEngine, PaperOutput, Trade};
use crate::error::{Error, Result};
use crate::strategy::Strategy;

/// What a backtest gives: every trade, in exit order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backtest {
    pub trades: Vec<Trade>,
    /// Signals the strategies followed but could not buy (no cash).
    pub skipped: usize,
    /// Candles replayed and signals seen.
    pub candles: usize,
    pub signals: usize,
}

/// Runs `strategies` over `candles` (several symbols may be interleaved; each symbol's in
/// time order). The signals engine runs with `signals` (its kinds: every kind the
/// strategies follow, plus the bearish ones for their exits).
pub fn run(
    strategies: Vec<Strategy>,
    candles: &[Candle],
    signals: &SignalsConfig,
) -> Result<Backtest> {
    let mut config = signals.clone();
    let mut kinds: Vec<_> = strategies.iter().flat_map(|s| s.kinds.clone()).collect();
    if strategies.iter().any(|s| s.exit_on_opposite) {
        kinds.extend(
            tickwatch_schema::wire::SignalKind::ALL
                .iter()
                .copied()
                .filter(|k| k.direction() == tickwatch_schema::wire::SignalDirection::Bearish),
        );
    }
    kinds.sort_unstable();
    kinds.dedup();
    config.enabled = kinds;
    let mut signal_engine =
        SignalEngine::new(config).map_err(|e| Error::invalid("signals", e.to_string()))?;
    let mut paper = PaperEngine::new(strategies)?;
    let mut result = Backtest::default();
    let take = |outputs: Vec<PaperOutput>, result: &mut Backtest| {
        for output in outputs {
            match output {
                PaperOutput::Closed(trade) => result.trades.push(trade),
                PaperOutput::Skipped { .. } => result.skipped += 1,
                PaperOutput::Opened { .. } => {}
            }
        }
    };
    for candle in candles {
        result.candles += 1;
        take(paper.on_candle(candle), &mut result);
        let mut signals: Vec<_> = signal_engine
            .process(candle)
            .into_iter()
            .filter_map(|output| match output {
                Output::Signal(signal) => Some(signal),
                _ => None,
            })
            .collect();
        // A candle's signals in one order, the live role's (it reads them from the store).
        signals.sort_by_key(|s| s.kind);
        for signal in signals {
            result.signals += 1;
            take(paper.on_signal(&signal), &mut result);
        }
    }
    Ok(result)
}
