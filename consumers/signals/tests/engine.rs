//! The engine's rules: idempotency, ordering, restarts, outcomes, configuration, and the
//! library side of the two CLI commands.

mod common;

use common::{candles, daily};
use tickwatch_schema::wire::{Candle, Interval, Signal, SignalKind};
use tickwatch_signals::{
    Error, INDICATORS_HEADER, Output, SignalEngine, SignalsConfig, format_scan, outcome_stats,
    scan, write_indicators,
};

fn engine() -> SignalEngine {
    SignalEngine::new(SignalsConfig::default()).expect("default config is valid")
}

fn run(engine: &mut SignalEngine, bars: &[Candle]) -> Vec<Vec<Output>> {
    bars.iter().map(|c| engine.process(c)).collect()
}

#[test]
fn a_redelivered_candle_returns_the_same_outputs_and_an_older_one_nothing() {
    let bars = daily("indicators/spy_2015.csv", "nyse", "SPY");
    let mut straight = engine();
    let expected = run(&mut straight, &bars);

    let mut e = engine();
    let mut redelivered = 0;
    for (i, c) in bars.iter().enumerate() {
        let first = e.process(c);
        assert_eq!(first, expected[i], "bar {i}");
        // A crash before the ack: the broker delivers the same candle again.
        let again = e.process(c);
        assert_eq!(
            again, first,
            "bar {i}: a redelivery must re-emit the same outputs"
        );
        redelivered += usize::from(!first.is_empty());
        if i > 0 {
            // A stale candle changes nothing and says nothing.
            assert!(e.process(&bars[i - 1]).is_empty());
            assert_eq!(e.process(c), first);
        }
    }
    assert!(
        redelivered > 50,
        "the window produces outputs to re-emit ({redelivered})"
    );
}

#[test]
fn open_candles_are_ignored_and_series_are_separate() {
    let bars = daily("indicators/spy_2015.csv", "nyse", "SPY");
    let mut e = engine();
    let mut open = bars[0].clone();
    open.closed = false;
    assert!(e.process(&open).is_empty());
    assert_eq!(e.series_count(), 0, "an open candle creates no state");

    // The same bars under two symbols and two intervals interleaved give each series
    // exactly what it gives alone.
    let alone = run(&mut engine(), &bars);
    let mut e = engine();
    for (i, c) in bars.iter().enumerate() {
        let mut other = c.clone();
        other.symbol = "SPY2".into();
        let mut weekly = c.clone();
        weekly.interval = Interval::W1;
        let out = e.process(c);
        e.process(&other);
        e.process(&weekly);
        assert_eq!(out, alone[i]);
    }
    assert_eq!(e.series_count(), 3);
}

#[test]
fn signal_ids_are_deterministic_and_outcomes_follow_at_1_5_20_bars() {
    let bars = daily("indicators/spy_2015.csv", "nyse", "SPY");
    let outputs: Vec<Output> = run(&mut engine(), &bars).into_iter().flatten().collect();
    let again: Vec<Output> = run(&mut engine(), &bars).into_iter().flatten().collect();
    assert_eq!(outputs, again);

    let signals: Vec<_> = outputs.iter().filter_map(Output::as_signal).collect();
    let ids: std::collections::HashSet<_> = signals.iter().map(|s| s.id).collect();
    assert_eq!(ids.len(), signals.len(), "ids are unique");
    // Each signal's outcomes come exactly at 1, 5 and 20 bars (when the window is long
    // enough), with the return from its close.
    let closes: Vec<f64> = bars
        .iter()
        .map(|c| c.close.to_string().parse().expect("close"))
        .collect();
    let index_of = |ts: i64| {
        bars.iter()
            .position(|c| c.open_ts + 86_400_000 == ts)
            .expect("bar")
    };
    for s in &signals {
        let i = index_of(s.ts);
        let outcomes: Vec<(u32, f64)> = outputs
            .iter()
            .filter_map(|o| match o {
                Output::Outcome {
                    signal_id,
                    kind,
                    horizon_bars,
                    ret,
                } if *signal_id == s.id => {
                    assert_eq!(*kind, s.kind);
                    Some((*horizon_bars, *ret))
                }
                _ => None,
            })
            .collect();
        let want: Vec<u32> = [1, 5, 20]
            .into_iter()
            .filter(|h| i + (*h as usize) < bars.len())
            .collect();
        assert_eq!(
            outcomes.iter().map(|o| o.0).collect::<Vec<_>>(),
            want,
            "{s:?}"
        );
        for (h, ret) in outcomes {
            let expected = closes[i + h as usize] / closes[i] - 1.0;
            assert!((ret - expected).abs() < 1e-12, "{ret} vs {expected}");
        }
    }
    let stats = outcome_stats(outputs.iter().filter_map(Output::as_outcome));
    let golden = stats
        .iter()
        .find(|s| s.kind == SignalKind::GoldenCross && s.horizon_bars == 20)
        .expect("golden cross stats");
    assert!(golden.count >= 1 && (0.0..=1.0).contains(&golden.hit_rate));
}

/// Runs `bars` straight through, and again with a fresh engine fed only the
/// `warmup` bars before `live`; returns both engines' outputs from `live` on.
fn restart(bars: &[Candle], live: usize, warmup: usize) -> (Vec<Vec<Output>>, Vec<Vec<Output>>) {
    let mut straight = engine();
    let all = run(&mut straight, bars);
    let mut warm = engine();
    run(&mut warm, &bars[live - warmup..live]);
    (all[live..].to_vec(), run(&mut warm, &bars[live..]))
}

fn check_restart(bars: &[Candle], interval: Interval) {
    let warmup = engine().warmup_bars_for(interval);
    assert!(
        bars.len() > warmup + 200,
        "the fixture must be longer than the warm-up"
    );
    let mut checked = 0;
    for live in [warmup, warmup + 97, bars.len() - 150] {
        let (straight, warmed) = restart(bars, live, warmup);
        for (i, (a, b)) in straight.iter().zip(&warmed).enumerate() {
            assert_eq!(a, b, "restart at bar {live}: outputs differ {i} bars later");
        }
        checked += straight.iter().map(Vec::len).sum::<usize>();
    }
    assert!(
        checked > 100,
        "the live stretches hold signals and outcomes ({checked})"
    );
    // And the warm-up is needed: 60 bars are not enough to reproduce them.
    let live = bars.len() - 150;
    let (straight, short) = restart(bars, live, 60);
    assert_ne!(straight, short, "a short warm-up should not suffice");
}

#[test]
fn warm_up_reproduces_daily_outputs() {
    let bars = daily("windows/btc_1d_2020_2022.csv", "binance", "BTCUSDT");
    check_restart(&bars, Interval::D1);
}

#[test]
fn warm_up_reproduces_intraday_outputs() {
    let bars = candles(
        "windows/btc_4h_2019.csv",
        "binance",
        "BTCUSDT",
        Interval::H4,
    );
    check_restart(&bars, Interval::H4);
}

#[test]
fn warm_up_reproduces_minute_outputs_on_the_full_file() {
    // Minutes need two whole sessions (2,881 bars): too long for a fixture, so this
    // runs on the shared data.
    let path =
        tickwatch_schema::history::data_file("BTCUSDT_1m.csv").unwrap_or_else(|e| panic!("{e}"));
    let reader = tickwatch_schema::history::open(&path, None, None, None).expect("history file");
    let bars: Vec<Candle> = reader.take(9_000).map(|c| c.expect("bar")).collect();
    check_restart(&bars, Interval::M1);
}

#[test]
fn warm_up_lengths() {
    let e = engine();
    assert_eq!(e.warmup_bars_for(Interval::D1), 797);
    assert_eq!(e.warmup_bars_for(Interval::H4), 797);
    assert_eq!(e.warmup_bars_for(Interval::M1), 2 * 1440 + 1 + 20);
    assert_eq!(e.warmup_bars(), 2 * 1440 + 1 + 20);
}

#[test]
fn configuration_validates_and_names_the_bad_key() {
    assert!(SignalsConfig::default().validate().is_ok());
    let bad = |edit: fn(&mut SignalsConfig), key: &str| {
        let mut c = SignalsConfig::default();
        edit(&mut c);
        match c.validate() {
            Err(Error::Config { key: k, .. }) => assert_eq!(k, key),
            other => panic!("{key}: {other:?}"),
        }
        assert!(SignalEngine::new(c).is_err());
    };
    bad(|c| c.rsi.oversold = 80.0, "rsi.oversold");
    bad(|c| c.rsi.period = 1, "rsi.period");
    bad(|c| c.macd.fast = 30, "macd.fast");
    bad(|c| c.grades.b = 90, "grades");
    bad(|c| c.vcp.min_contractions = 1, "vcp.min_contractions");
    bad(
        |c| c.vcp.max_contraction_ratio = f64::NAN,
        "vcp.max_contraction_ratio",
    );
    bad(|c| c.closing.max_gain_pct = 1.0, "closing.max_gain_pct");
    bad(|c| c.intraday.orb_minutes = 0, "intraday.orb_minutes");
    bad(
        |c| {
            c.sessions.utc_offset_minutes.insert("nyse".into(), 2_000);
        },
        "sessions.utc_offset_minutes.nyse",
    );

    // TOML names only what it changes; unknown keys are refused.
    let c: SignalsConfig = toml::from_str(
        "enabled = [\"vcp_setup\", \"gap_up\"]\n[rsi]\noversold = 25.0\n[grades]\na = 90\n",
    )
    .expect("partial config");
    assert_eq!(c.enabled, [SignalKind::VcpSetup, SignalKind::GapUp]);
    assert_eq!(
        (c.rsi.oversold, c.rsi.overbought, c.grades.a, c.grades.b),
        (25.0, 70.0, 90, 65)
    );
    assert!(c.validate().is_ok());
    assert!(toml::from_str::<SignalsConfig>("[rsi]\noversld = 25.0\n").is_err());
    let round_trip: SignalsConfig =
        toml::from_str(&toml::to_string(&SignalsConfig::default()).expect("serialise"))
            .expect("parse");
    assert_eq!(round_trip, SignalsConfig::default());
}

#[test]
fn disabled_kinds_do_not_fire() {
    let bars = daily("indicators/spy_2015.csv", "nyse", "SPY");
    let all = scan(bars.iter().cloned().map(Ok), &SignalsConfig::default(), &[]).expect("scan");
    let only = scan(
        bars.iter().cloned().map(Ok),
        &SignalsConfig::default(),
        &[SignalKind::GoldenCross, SignalKind::DeathCross],
    )
    .expect("scan");
    assert!(all.len() > only.len());
    assert!(
        only.iter()
            .all(|s| matches!(s.kind, SignalKind::GoldenCross | SignalKind::DeathCross))
    );
    let expected: Vec<_> = all
        .into_iter()
        .filter(|s| matches!(s.kind, SignalKind::GoldenCross | SignalKind::DeathCross))
        .collect();
    assert_eq!(only, expected);
}

#[test]
fn write_indicators_matches_the_fixture_columns() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/indicators/spy_2015.csv");
    let text = std::fs::read_to_string(&path).expect("fixture");
    let reader = tickwatch_schema::history::HistoryReader::new(
        text.as_bytes(),
        "spy",
        "nyse",
        "SPY",
        Interval::D1,
    )
    .expect("header");
    let mut out = Vec::new();
    let rows = write_indicators(reader, &mut out).expect("write");
    let out = String::from_utf8(out).expect("utf-8");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some(INDICATORS_HEADER));
    assert_eq!(rows, 400);
    // The fixture's first 16 columns minus the inputs are the same quantities, in the
    // same order (ts, sma20 … atr14), formatted round-trip exact.
    for (ours, fixture) in lines.zip(text.lines().skip(1)) {
        let f: Vec<&str> = fixture.split(',').collect();
        let o: Vec<&str> = ours.split(',').collect();
        assert_eq!(o.len(), 11);
        assert_eq!(o[0], f[0]);
        for (a, b) in o[1..].iter().zip(&f[6..16]) {
            let (a, b) = (a.parse::<f64>().ok(), b.parse::<f64>().ok());
            assert_eq!(a, b, "{ours}");
        }
    }
}

#[test]
fn scan_output_reads_well() {
    let bars = daily("windows/btc_1d_2023.csv", "binance", "BTCUSDT");
    let signals = scan(
        bars.into_iter().map(Ok),
        &SignalsConfig::default(),
        &[SignalKind::VcpSetup, SignalKind::VcpBreakout],
    )
    .expect("scan");
    let text = format_scan(&signals);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("2023-11-30  vcp_setup"), "{text}");
    assert!(
        lines[0].contains("37723.96") && lines[0].contains("pivot=38414"),
        "{text}"
    );
    assert!(lines[1].starts_with("2023-12-04  vcp_breakout"), "{text}");
    assert_eq!(lines[2], "2 signals: vcp_setup 1, vcp_breakout 1");
}

#[test]
fn signal_ids_are_deterministic_ids_of_time_key_and_kind() {
    let bars = daily("indicators/spy_2015.csv", "nyse", "SPY");
    let signals = scan(bars.into_iter().map(Ok), &SignalsConfig::default(), &[]).expect("scan");
    assert!(signals.len() > 50);
    for s in &signals {
        let want = tickwatch_schema::wire::deterministic_id(
            s.ts,
            &[&s.venue, &s.symbol, s.interval.as_str(), s.kind.as_str()],
        );
        assert_eq!(s.id, want, "{s:?}");
        // `ts` is the end of the candle that produced the signal.
        assert_eq!((s.ts - 86_400_000) % 86_400_000, 0);
    }
}

/// Scale-out: an engine that processed a series, then lost it to another instance, then
/// got it back. Forgotten and warmed up again from the stored candles it goes on as the
/// engine that never stopped; without that it takes the other instance's candles for a gap.
#[test]
fn a_series_handed_back_is_forgotten_warmed_up_and_goes_on_as_the_never_stopped_engine() {
    let bars = daily("windows/btc_1d_2020_2022.csv", "binance", "BTCUSDT");
    let warmup = engine().warmup_bars_for(Interval::D1);
    let (handed_over, back) = (warmup + 50, warmup + 200);
    let mut straight = engine();
    let all = run(&mut straight, &bars);
    let mut this = engine();
    run(&mut this, &bars[..handed_over]);
    assert_eq!(
        this.last_open_ts("binance", "BTCUSDT", Interval::D1),
        Some(bars[handed_over - 1].open_ts)
    );
    // Another instance processed bars[handed_over..back]; they are stored.
    this.forget_series("binance", "BTCUSDT", Interval::D1);
    assert_eq!(this.last_open_ts("binance", "BTCUSDT", Interval::D1), None);
    run(&mut this, &bars[back - warmup..back]);
    let resumed = run(&mut this, &bars[back..]);
    assert_eq!(resumed, all[back..].to_vec());
    // Not forgotten, the engine would go on from its own stale state.
    let mut stale = engine();
    run(&mut stale, &bars[..handed_over]);
    assert_ne!(run(&mut stale, &bars[back..]), all[back..].to_vec());
}

/// The engine's outputs over 300 symbols × 1,000 bars of the real data (every file of the
/// data directory, prices scaled per symbol, one bar of every symbol in turn), pinned: a
/// change meant to leave the engine's results as they are (a refactoring, a speed-up)
/// must leave every signal and outcome byte-identical. A change of behaviour updates the
/// figures here and says why.
#[test]
fn outputs_over_the_real_data_are_pinned() {
    let dir = tickwatch_schema::history::data_dir().unwrap_or_else(|e| panic!("{e}"));
    let sources = tickwatch_signals::bench::load_sources(&dir).expect("history files");
    let universe = tickwatch_signals::bench::build_universe(&sources, 300, 1_000);
    let digest = tickwatch_signals::bench::digest(&universe).expect("digest");
    assert_eq!(
        digest.to_string(),
        "284520 candles, 64555 signals, 191475 outcomes, digest c63fcb20d0206fa3"
    );
}

/// The 종가 scan before the close: previewing each day's candle while it forms gives the
/// closing-price signals the closed candle then gives (same kinds, scores and details but
/// `preliminary`, with ids of their own), and leaves the engine exactly as it was — the
/// outputs of the closed candles are those of an engine that never previewed.
#[test]
fn a_preview_of_the_forming_day_is_the_close_without_touching_the_series() {
    for (file, symbol) in [("005930_1d.csv", "005930"), ("247540_1d.csv", "247540")] {
        let path = tickwatch_schema::history::data_file(file).unwrap_or_else(|e| panic!("{e}"));
        let reader =
            tickwatch_schema::history::open(&path, Some("krx"), Some(symbol), Some(Interval::D1))
                .expect("history file");
        let bars: Vec<Candle> = reader.map(|c| c.expect("bar")).collect();
        let (mut previewed, mut plain) = (engine(), engine());
        let mut previews = 0;
        for bar in &bars {
            let forming = Candle {
                closed: false,
                ..bar.clone()
            };
            let early = previewed.preview(&forming, &[SignalKind::ClosingPriceSetup]);
            assert!(plain.preview(&forming, &[]).is_empty(), "no kinds, nothing");
            let outputs = previewed.process(bar);
            assert_eq!(outputs, plain.process(bar), "{file} {}", bar.open_ts);
            let at_close: Vec<&Signal> = outputs
                .iter()
                .filter_map(|o| match o {
                    Output::Signal(s) if s.kind == SignalKind::ClosingPriceSetup => Some(s),
                    _ => None,
                })
                .collect();
            assert_eq!(early.len(), at_close.len(), "{file} {}", bar.open_ts);
            for (p, s) in early.iter().zip(at_close) {
                assert_ne!(p.id, s.id);
                assert_eq!((p.ts, p.score, p.price), (s.ts, s.score, s.price));
                assert_eq!(p.details["preliminary"], serde_json::Value::Bool(true));
                let mut details = p.details.clone();
                details.remove("preliminary");
                assert_eq!(details, s.details);
                previews += 1;
            }
        }
        assert!(
            previews > 0,
            "{file}: some closing-price signals to preview"
        );
    }
}
