//! Paper trading on real history: Samsung Electronics' (005930) and EcoPro BM's (247540)
//! daily candles through the signals engine and the paper engine, against trades computed
//! independently here from the same signals, with the rules of the engine's documentation
//! written out plainly: the entry at the next open, the stop, the take-profit and the
//! bar limit on each candle, KRX's tick grid, commission and sell tax.

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use tickwatch_paper::backtest;
use tickwatch_paper::{ExitReason, PaperEngine, PaperOutput, Sizing, Strategy, summarize, ticks};
use tickwatch_schema::history::{HistoryReader, data_file};
use tickwatch_schema::wire::{Candle, Grade, Interval, Signal, SignalKind};
use tickwatch_signals::{SignalsConfig, scan};

fn d(text: &str) -> Decimal {
    text.parse().expect("decimal")
}

fn daily(file: &str, symbol: &str) -> Vec<Candle> {
    let path = data_file(file).expect("TICKWATCH_DATA_DIR holds the shared data");
    let text = std::fs::read_to_string(&path).expect("history file");
    HistoryReader::new(text.as_bytes(), file, "krx", symbol, Interval::D1)
        .expect("header")
        .map(|c| c.expect("bar"))
        .collect()
}

fn strategy(kind: SignalKind) -> Strategy {
    Strategy {
        id: 1,
        name: "macd".into(),
        kinds: vec![kind],
        min_grade: Grade::D,
        venues: vec!["krx".into()],
        symbols: Vec::new(),
        starting_balance: d("100000000"),
        currency: "KRW".into(),
        sizing: Sizing::Fixed(d("10000000")),
        take_profit_pct: Some(d("8")),
        stop_loss_pct: Some(d("4")),
        trailing_stop_pct: None,
        max_bars: Some(20),
        exit_on_opposite: false,
        fees: None,
        since_ts: 0,
    }
}

/// `(entry index, entry price, exit index, exit price, reason, quantity, fees)`.
type Plain = (usize, Decimal, usize, Decimal, ExitReason, Decimal, Decimal);

/// The trades, computed the plain way from the signals.
fn independent(bars: &[Candle], signals: &[Signal]) -> Vec<Plain> {
    let hundred = d("100");
    let (commission, tax) = (d("0.015") / hundred, d("0.18") / hundred);
    let mut trades = Vec::new();
    let mut free_from = 0; // the first candle whose signal may open a position
    for signal in signals {
        let Some(fired) = bars
            .iter()
            .position(|b| b.open_ts + 86_400_000 == signal.ts)
        else {
            panic!("the bar of {signal:?}");
        };
        if fired < free_from {
            continue; // a position was open (or an entry pending) when it fired
        }
        let Some(entry) = (fired + 1..bars.len()).find(|&i| bars[i].open_ts >= signal.ts) else {
            break; // no candle left to buy at
        };
        let entry_price = ticks::buy_price("krx", bars[entry].open);
        let quantity = (d("10000000") / entry_price).floor();
        let stop = entry_price * (Decimal::ONE - d("4") / hundred);
        let take = entry_price * (Decimal::ONE + d("8") / hundred);
        let mut exit = None;
        for (held, i) in (entry..bars.len()).enumerate() {
            let bar = &bars[i];
            let first = i == entry;
            exit = if !first && bar.open <= stop {
                Some((i, bar.open, ExitReason::StopLoss))
            } else if !first && bar.open >= take {
                Some((i, bar.open, ExitReason::TakeProfit))
            } else if bar.low <= stop {
                Some((i, stop, ExitReason::StopLoss))
            } else if bar.high >= take {
                Some((i, take, ExitReason::TakeProfit))
            } else if held + 1 >= 20 {
                Some((i, bar.close, ExitReason::MaxBars))
            } else {
                None
            };
            if exit.is_some() {
                break;
            }
        }
        let Some((at, reference, reason)) = exit else {
            break; // still open when the history ends
        };
        let exit_price = ticks::sell_price("krx", reference);
        let fees = quantity * entry_price * commission + quantity * exit_price * (commission + tax);
        trades.push((entry, entry_price, at, exit_price, reason, quantity, fees));
        // A signal of the exit candle itself comes after the exit.
        free_from = at;
    }
    trades
}

fn check(file: &str, symbol: &str, kind: SignalKind) -> usize {
    let bars = daily(file, symbol);
    let signals: Vec<Signal> = scan(
        bars.iter().cloned().map(Ok),
        &SignalsConfig::default(),
        &[kind],
    )
    .expect("scan")
    .into_iter()
    .filter(|s| s.kind == kind)
    .collect();
    let expected = independent(&bars, &signals);
    assert!(
        expected.len() >= 10,
        "{symbol}: only {} trades",
        expected.len()
    );
    let result =
        backtest::run(vec![strategy(kind)], &bars, &SignalsConfig::default()).expect("backtest");
    let index = |ts: i64| {
        bars.iter()
            .position(|b| b.open_ts <= ts && ts < b.open_ts + 86_400_000)
            .expect("a bar")
    };
    let got: Vec<Plain> = result
        .trades
        .iter()
        .map(|t| {
            (
                index(t.entry_ts),
                t.entry_price,
                index(t.exit_ts),
                t.exit_price,
                t.exit_reason,
                t.quantity,
                t.fees,
            )
        })
        .collect();
    assert_eq!(got.len(), expected.len(), "{symbol}: trade count");
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "{symbol}: trade {i}");
    }
    let summary = summarize(&result.trades, d("100000000"));
    assert_eq!(summary.trades, expected.len());
    let net: Decimal = expected
        .iter()
        .map(|(_, ep, _, xp, _, q, fees)| (xp - ep) * q - fees)
        .sum();
    assert_eq!(summary.net_profit, net, "{symbol}: net after fees");
    assert!(summary.max_drawdown_pct >= Decimal::ZERO);
    assert!(
        summary
            .exposure_pct
            .to_f64()
            .is_some_and(|e| e > 0.0 && e <= 100.0)
    );
    expected.len()
}

#[test]
fn samsung_macd_crosses_trade_as_computed_by_hand() {
    check("005930_1d.csv", "005930", SignalKind::MacdBullishCross);
}

#[test]
fn ecopro_bollinger_breakouts_trade_as_computed_by_hand() {
    check("247540_1d.csv", "247540", SignalKind::BollingerBreakoutUp);
}

#[test]
fn a_redelivered_signal_or_candle_opens_nothing_twice() {
    let bars = daily("005930_1d.csv", "005930");
    let kind = SignalKind::MacdBullishCross;
    let signals = scan(
        bars.iter().cloned().map(Ok),
        &SignalsConfig::default(),
        &[kind],
    )
    .expect("scan");
    let first = signals.first().expect("a signal").clone();
    let mut engine = PaperEngine::new(vec![strategy(kind)]).expect("engine");
    let fired = bars
        .iter()
        .position(|b| b.open_ts + 86_400_000 == first.ts)
        .expect("its bar");
    for bar in &bars[..=fired] {
        engine.on_candle(bar);
    }
    assert!(
        engine.on_signal(&first).is_empty(),
        "an entry waits for the next open"
    );
    assert!(engine.on_signal(&first).is_empty());
    let opened = engine.on_candle(&bars[fired + 1]);
    assert_eq!(
        opened
            .iter()
            .filter(|o| matches!(o, PaperOutput::Opened { .. }))
            .count(),
        1
    );
    // The same candle again, and the signal again: still one position.
    assert!(engine.on_candle(&bars[fired + 1]).is_empty());
    assert!(engine.on_signal(&first).is_empty());
    assert_eq!(engine.open_positions(1), 1);
}
