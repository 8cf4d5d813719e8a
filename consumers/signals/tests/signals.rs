//! Each signal kind on real data: a window where it must fire and one where it must not.
//!
//! The windows are slices of the files in `shared/data`, copied into `tests/fixtures` by
//! `scripts/talib_fixtures.py` (its README lists where each comes from). Every run starts
//! from the window's first bar with the default configuration, so a kind can only fire
//! once its indicators have warmed up inside the window.

mod common;

use common::{candles, daily, fired, times};
use tickwatch_schema::wire::{Grade, Interval, SignalKind as K};
use tickwatch_signals::{SignalEngine, SignalsConfig};

fn spy_2015() -> Vec<tickwatch_schema::wire::Candle> {
    daily("indicators/spy_2015.csv", "nyse", "SPY")
}

fn assert_fires(bars: &[tickwatch_schema::wire::Candle], kind: K) -> Vec<String> {
    let got = times(&fired(bars, kind));
    assert!(!got.is_empty(), "{kind} did not fire");
    got
}

fn assert_silent(bars: &[tickwatch_schema::wire::Candle], kind: K) {
    let got = times(&fired(bars, kind));
    assert!(got.is_empty(), "{kind} fired on {got:?}");
}

#[test]
fn rsi_leaving_oversold() {
    // SPY's Aug-2015 sell-off pushed RSI below 30; it came back above on 2015-08-26.
    let got = assert_fires(&spy_2015(), K::RsiOversold);
    assert!(got.contains(&"2015-08-26".to_string()), "{got:?}");
    // Off the March-2009 low SPY rallied for a year without RSI ever dropping below 30.
    assert_silent(
        &daily("windows/spy_2009_rally.csv", "nyse", "SPY"),
        K::RsiOversold,
    );
}

#[test]
fn rsi_leaving_overbought() {
    assert_fires(&spy_2015(), K::RsiOverbought);
    // Through the 2008 crash RSI never got above 70.
    assert_silent(
        &daily("windows/spy_2008.csv", "nyse", "SPY"),
        K::RsiOverbought,
    );
}

#[test]
fn macd_crosses() {
    assert_fires(&spy_2015(), K::MacdBullishCross);
    assert_fires(&spy_2015(), K::MacdBearishCross);
    // Early 2017: the MACD line stayed above (or fell below once without coming back over)
    // its signal line after its first value.
    assert_silent(
        &daily("windows/spy_2017.csv", "nyse", "SPY"),
        K::MacdBullishCross,
    );
    // AAPL April–August 2013: the line never turned down through its signal.
    assert_silent(
        &daily("windows/aapl_2013.csv", "nasdaq", "AAPL"),
        K::MacdBearishCross,
    );
}

#[test]
fn golden_and_death_crosses() {
    // SPY's SMA 50 fell below its SMA 200 in the 2015 correction and crossed back in 2016.
    let death = assert_fires(&spy_2015(), K::DeathCross);
    let golden = assert_fires(&spy_2015(), K::GoldenCross);
    assert!(death[0] < golden[golden.len() - 1], "{death:?} {golden:?}");
    // BTC in 2023: after the September death cross, the SMA 50 crossed back above the
    // SMA 200 on 2023-10-30 (the window's SMA 200 starts in April 2023).
    let btc = daily("windows/btc_1d_2023.csv", "binance", "BTCUSDT");
    assert_eq!(times(&fired(&btc, K::GoldenCross)), ["2023-10-30"]);
    assert_eq!(fired(&btc, K::DeathCross).len(), 1);
    // In the 2022 bear market the SMA 50 stayed under the SMA 200 all year.
    let bear = daily("windows/btc_1d_2022.csv", "binance", "BTCUSDT");
    assert_silent(&bear, K::GoldenCross);
    assert_silent(&bear, K::DeathCross);
}

#[test]
fn bollinger_breakouts() {
    assert_fires(&spy_2015(), K::BollingerBreakoutUp);
    assert_fires(&spy_2015(), K::BollingerBreakoutDown);
    // May–November 2008: SPY only fell; no close above the upper band.
    assert_silent(
        &daily("windows/spy_2008_crash.csv", "nyse", "SPY"),
        K::BollingerBreakoutUp,
    );
    // BTC's Q4-2020 rally on 4h bars: no close below the lower band.
    let q4 = candles(
        "windows/btc_4h_2020q4.csv",
        "binance",
        "BTCUSDT",
        Interval::H4,
    );
    assert_silent(&q4, K::BollingerBreakoutDown);
}

#[test]
fn bollinger_squeeze() {
    assert_fires(&spy_2015(), K::BollingerSqueeze);
    // Aug 2009 – Oct 2010 (incl. the flash crash): the width never sank to a 120-bar low.
    assert_silent(
        &daily("windows/spy_2009_2010.csv", "nyse", "SPY"),
        K::BollingerSqueeze,
    );
}

#[test]
fn volume_surge() {
    // 2015-08-24, the "flash crash" Monday, traded far above 3× the 20-day average.
    let got = assert_fires(&spy_2015(), K::VolumeSurge);
    assert!(got.contains(&"2015-08-24".to_string()), "{got:?}");
    assert_silent(
        &daily("windows/spy_2008.csv", "nyse", "SPY"),
        K::VolumeSurge,
    );
}

#[test]
fn new_52_week_high() {
    let got = assert_fires(
        &daily("windows/btc_1d_2023.csv", "binance", "BTCUSDT"),
        K::New52wHigh,
    );
    assert!(got.iter().all(|d| d.as_str() >= "2023-06-01"), "{got:?}");
    // A year after the Nov-2021 top, BTC was far below every earlier high.
    assert_silent(
        &daily("windows/btc_1d_2022.csv", "binance", "BTCUSDT"),
        K::New52wHigh,
    );
    assert_silent(&daily("windows/spy_2008.csv", "nyse", "SPY"), K::New52wHigh);
}

#[test]
fn vcp_setup_and_breakout() {
    // Why this window qualifies: by November 2023 BTC was in a stage-2 uptrend — the
    // close (37,724 on 2023-11-30) above its SMA 50/150/200 (34.3k/30.1k/29.5k), each
    // above its value 20 bars before, 52 % above the low of the last 252 bars (24,800)
    // and 1.9 % under their high (38,450). Through November it built a 21-bar base of
    // three successively shallower pullbacks (8.4 % → 6.2 % → 4.4 %), volume in the last
    // one at 0.72× the 50-day average. The setup fires on 2023-11-30, when the last swing
    // low is confirmed, with the pivot at that pullback's high (38,414). On 2023-12-04
    // BTC closed at 41,991 on 2.1× its 50-day volume: the breakout.
    let bars = daily("windows/btc_1d_2023.csv", "binance", "BTCUSDT");
    let setups = fired(&bars, K::VcpSetup);
    assert_eq!(times(&setups), ["2023-11-30"]);
    let d = &setups[0].details;
    assert_eq!(d["contractions"], 3);
    assert_eq!(d["pivot"], 38414.0);
    assert_eq!(
        d["depths_pct"],
        serde_json::json!([8.3541, 6.18217, 4.44369])
    );
    assert!(
        setups[0].score >= 65 && setups[0].grade <= Grade::B,
        "{:?}",
        setups[0]
    );
    assert_eq!(times(&fired(&bars, K::VcpBreakout)), ["2023-12-04"]);

    // The 2022 bear market never meets the trend template: no base, no breakout.
    let bear = daily("windows/btc_1d_2022.csv", "binance", "BTCUSDT");
    assert_silent(&bear, K::VcpSetup);
    assert_silent(&bear, K::VcpBreakout);
    let crash = daily("windows/spy_2008.csv", "nyse", "SPY");
    assert_silent(&crash, K::VcpSetup);
}

#[test]
fn closing_price_setup() {
    // Why this window qualifies: on 2020-02-03 EcoPro BM (KOSDAQ) closed +21 % at 64,000
    // on about 12× its 20-day volume, at 85 % of the day's range and above its SMA 20
    // — the textbook 종가 베팅 candidate (buy the close, sell the next morning). It also
    // stays below the 29 % cap, so the close was not locked at the daily limit.
    let bars = daily("indicators/247540_trend.csv", "krx", "247540");
    let got = fired(&bars, K::ClosingPriceSetup);
    let feb3 = got
        .iter()
        .find(|s| common::bar_time(s) == "2020-02-03")
        .expect("2020-02-03 setup");
    assert_eq!(feb3.grade, Grade::A);
    assert_eq!(feb3.details["exit"], "next_open");
    // The 2022 crypto bear market and the 2008 crash have no such day.
    assert_silent(
        &daily("windows/btc_1d_2022.csv", "binance", "BTCUSDT"),
        K::ClosingPriceSetup,
    );
    assert_silent(
        &daily("windows/spy_2008.csv", "nyse", "SPY"),
        K::ClosingPriceSetup,
    );
}

#[test]
fn gap_up() {
    // Daily bars: EcoPro BM gapped up on heavy volume repeatedly in its 2020 run.
    assert_fires(
        &daily("indicators/247540_trend.csv", "krx", "247540"),
        K::GapUp,
    );
    // Crypto trades round the clock: a session's first bar opens where the last closed,
    // on minutes, 4h bars and days alike.
    let minutes = candles(
        "indicators/btcusdt_1m.csv",
        "binance",
        "BTCUSDT",
        Interval::M1,
    );
    assert_silent(&minutes, K::GapUp);
    assert_silent(
        &candles(
            "indicators/btcusdt_4h.csv",
            "binance",
            "BTCUSDT",
            Interval::H4,
        ),
        K::GapUp,
    );
    assert_silent(
        &daily("windows/btc_1d_2022.csv", "binance", "BTCUSDT"),
        K::GapUp,
    );
}

#[test]
fn gap_up_on_intraday_sessions() {
    // No intraday file has a session market (the only minute data is 24/7 crypto), so
    // this one builds KRX-like minutes: two sessions 09:00–09:09 KST, the second opening
    // 3 % above the first's last close on 5× its average volume per bar.
    let mut bars = Vec::new();
    let day = 86_400_000;
    let open_utc = 1_700_006_400_000; // 2023-11-15T00:00Z = 09:00 KST
    let mut push = |ts: i64, price: &str, volume: &str| {
        let p = tickwatch_schema::history::parse_decimal(price).expect("price");
        let v = tickwatch_schema::history::parse_decimal(volume).expect("volume");
        bars.push(tickwatch_schema::wire::Candle {
            venue: "krx".into(),
            symbol: "005930".into(),
            interval: Interval::M1,
            open_ts: ts,
            open: p,
            high: p,
            low: p,
            close: p,
            volume: v,
            trades: None,
            closed: true,
        });
    };
    for d in 0..3 {
        for m in 0..10 {
            let price = match (d, m) {
                (2, _) => "103.00",
                _ => "100.00",
            };
            let volume = if d == 2 && m == 0 { "5000" } else { "1000" };
            push(open_utc + d * day + m * 60_000, price, volume);
        }
    }
    let got = fired(&bars, K::GapUp);
    assert_eq!(times(&got), ["2023-11-17T00:00:00Z"]);
    assert_eq!(got[0].details["gap_pct"], 3.0);
    assert_eq!(got[0].details["volume_ratio"], 5.0);
}

#[test]
fn opening_range_breakout() {
    // 2023-03-13, the Monday of the SVB rescue: BTC's 00:00–00:30 UTC range topped at
    // 22,217.7; at 00:40 a minute closed above it on 3.3× the volume of the 20 before.
    let svb = candles(
        "windows/btc_1m_2023-03-13.csv",
        "binance",
        "BTCUSDT",
        Interval::M1,
    );
    assert_eq!(
        times(&fired(&svb, K::OpeningRangeBreakout)),
        ["2023-03-13T00:40:00Z"]
    );
    // On 2023-03-07 the first close above the opening range came on thin volume, which
    // spends the session's breakout.
    let quiet = candles(
        "windows/btc_1m_2023-03-07.csv",
        "binance",
        "BTCUSDT",
        Interval::M1,
    );
    assert_silent(&quiet, K::OpeningRangeBreakout);
    // 4h bars: the session's first bar is the range.
    let four = candles(
        "indicators/btcusdt_4h.csv",
        "binance",
        "BTCUSDT",
        Interval::H4,
    );
    assert_fires(&four, K::OpeningRangeBreakout);
}

#[test]
fn vwap_reclaim() {
    // 2023-03-03: after the midnight dip BTC spent 17 minutes below the new session's
    // VWAP and reclaimed it at 00:20.
    let minutes = candles(
        "indicators/btcusdt_1m.csv",
        "binance",
        "BTCUSDT",
        Interval::M1,
    );
    let got = assert_fires(&minutes, K::VwapReclaim);
    assert_eq!(got[0], "2023-03-03T00:20:00Z");
    // Early 2018 on 4h bars: never five closes below the day's VWAP followed by a close
    // above it.
    let four = candles(
        "indicators/btcusdt_4h.csv",
        "binance",
        "BTCUSDT",
        Interval::H4,
    );
    assert_silent(&four, K::VwapReclaim);
}

#[test]
fn scanners_skip_halted_bars() {
    // 005930 was halted 2018-04-30..05-03 for its 50:1 split (flat bars, no volume). The
    // engine skips them: no signal on them, and the run equals one on the file without
    // them (the halt does not drag the volume average down or close the bands).
    let bars = daily("indicators/005930_halt.csv", "krx", "005930");
    let halted: Vec<_> = bars
        .iter()
        .filter(|c| tickwatch_signals::is_halted(c))
        .collect();
    assert_eq!(halted.len(), 3, "the fixture holds the halt");
    let mut with = SignalEngine::new(SignalsConfig::default()).expect("engine");
    let mut without = SignalEngine::new(SignalsConfig::default()).expect("engine");
    for c in &bars {
        let a = with.process(c);
        if tickwatch_signals::is_halted(c) {
            assert!(a.is_empty(), "output on a halted bar: {a:?}");
        } else {
            assert_eq!(a, without.process(c));
        }
    }
    // The first day after the halt traded 3.02× the average of the 20 trading days
    // before it — a surge, measured against real sessions; counting the three empty
    // days would have inflated it to 3.44×.
    let surges = fired(&bars, K::VolumeSurge);
    let may4 = surges
        .iter()
        .find(|s| common::bar_time(s) == "2018-05-04")
        .expect("surge after the halt");
    assert_eq!(may4.details["volume_ratio"], 3.01794);
}
