#!/usr/bin/env python3
"""Builds the fixture files of the signals engine's tests from the real history files.

    pip install TA-Lib==0.8.2 numpy      # the PyPI wheels ship TA-Lib's C library
    python3 scripts/talib_fixtures.py [--data ../shared/data]

Writes, under consumers/signals/tests/fixtures/:

- indicators/<name>.csv: a window of real bars (the input text copied verbatim) plus
  TA-Lib's own output for each indicator the engine computes, one column each; an empty
  cell where TA-Lib gives no value (NaN). TA-Lib runs on the window alone, so a test
  feeding the same bars from the first row must reproduce every value.
- indicators_alt/<name>.csv: the same windows with TA-Lib's output at other parameters
  than the signals engine's defaults (the periods users give expression alerts, such as
  `rsi(7,1h)` or `macd(5,35,5,4h)`), one column each, named with the parameters.
- windows/<name>.csv: plain slices of the history files (no TA-Lib) on which a signal
  must fire, or must not; the Rust tests say why each window qualifies.
- README.md: what was generated, from which files, with which TA-Lib.

The fixtures are committed, so the tests need neither TA-Lib nor the data folder. Rerun
this script only to regenerate them; it is deterministic.
"""

import argparse
import csv
import math
import os
import sys

import numpy as np
import talib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "consumers", "signals", "tests", "fixtures")

# (fixture name, source file, first ts (inclusive, ISO prefix), number of rows, why)
INDICATOR_WINDOWS = [
    ("005930_halt", "005930_1d.csv", "2017-10-10", 400,
     "KRX daily around the 2018-04-30..05-03 trading halt: flat zero-volume bars "
     "(RSI changes of zero, Bollinger re-centring on a flat stretch)"),
    ("aapl_early", "AAPL_1d.csv", "1980-12-12", 400,
     "AAPL's first bars: split-adjusted prices around 0.1 (tiny variances), "
     "one zero-volume day (1981-08-10)"),
    ("btcusdt_1m", "BTCUSDT_1m.csv", "2023-03-02T19:00", 400,
     "Binance.US minutes with zero-volume flat minutes (21:13, 22:10, ...)"),
    ("btcusdt_4h", "BTCUSDT_4h.csv", "2018-01-20", 400,
     "4h bars across the 2018-02-08/09 exchange outage (7 missing bars)"),
    ("spy_2015", "SPY_1d.csv", "2014-11-03", 400,
     "SPY through the Aug-2015 sell-off, incl. the two rows with low > min(open, close)"),
    ("247540_trend", "247540_1d.csv", "2019-09-02", 400,
     "EcoPro BM (KOSDAQ), a strong trend with integer KRW prices"),
]

# Plain windows for the signal tests: (file name, source, first ts, rows, why).
SIGNAL_WINDOWS = [
    ("btc_1d_2023.csv", "BTCUSDT_1d.csv", "2022-10-01", 435,
     "BTC's 2023 stage-2 advance: VCP setup 2023-11-30, breakout 2023-12-04; golden cross, new highs"),
    ("btc_1d_2022.csv", "BTCUSDT_1d.csv", "2021-11-10", 417,
     "BTC's 2022 bear market: no VCP, no 52-week high, no MA cross, no closing-price setup"),
    ("spy_2008.csv", "SPY_1d.csv", "2007-12-31", 300,
     "SPY in the 2008 crash: nothing overbought, no volume surge, no high, no setup"),
    ("spy_2008_crash.csv", "SPY_1d.csv", "2008-05-23", 120,
     "SPY from May to November 2008: no close above the upper band"),
    ("spy_2009_rally.csv", "SPY_1d.csv", "2009-03-11", 300,
     "SPY's rally off the March-2009 low: RSI never leaves oversold (never gets there)"),
    ("spy_2009_2010.csv", "SPY_1d.csv", "2009-08-03", 300,
     "SPY Aug 2009 - Oct 2010: band width never at a 120-bar low"),
    ("spy_2017.csv", "SPY_1d.csv", "2016-12-06", 90,
     "SPY's steady early-2017 advance: no bullish MACD cross after the first value"),
    ("aapl_2013.csv", "AAPL_1d.csv", "2013-04-08", 90,
     "AAPL April - August 2013: no bearish MACD cross after the first value"),
    ("btc_4h_2020q4.csv", "BTCUSDT_4h.csv", "2020-10-04T12", 300,
     "BTC 4h in the Q4-2020 rally: no close below the lower band"),
    ("btc_1m_2023-03-13.csv", "BTCUSDT_1m.csv", "2023-03-12T22:00", 360,
     "BTC minutes into the SVB-rescue rally: opening-range breakout 2023-03-13 00:40"),
    ("btc_1m_2023-03-07.csv", "BTCUSDT_1m.csv", "2023-03-06T22:00", 360,
     "BTC minutes on 2023-03-07: the first close above the opening range has no volume"),
    ("btc_1d_2020_2022.csv", "BTCUSDT_1d.csv", "2020-01-01", 1100,
     "three years of BTC days for the restart (warm-up) test: longer than the daily warm-up"),
    ("btc_4h_2019.csv", "BTCUSDT_4h.csv", "2019-06-01", 1100,
     "BTC 4h bars for the intraday restart test (incl. the 2019-08-15 missing bar)"),
]

COLUMNS = [
    "sma20", "ema20", "rsi14", "macd", "macd_signal", "macd_hist",
    "bb_upper", "bb_mid", "bb_lower", "atr14", "vol_sma20", "sma50", "sma200",
    "max252", "min252",
]


# Other parameters than the defaults: (column, function of (o, h, l, c, v)).
ALT_COLUMNS = [
    ("sma7", lambda o, h, l, c, v: talib.SMA(c, 7)),
    ("ema9", lambda o, h, l, c, v: talib.EMA(c, 9)),
    ("ema50", lambda o, h, l, c, v: talib.EMA(c, 50)),
    ("rsi7", lambda o, h, l, c, v: talib.RSI(c, 7)),
    ("rsi21", lambda o, h, l, c, v: talib.RSI(c, 21)),
    ("macd_5_35_5", lambda o, h, l, c, v: talib.MACD(c, 5, 35, 5)[0]),
    ("macd_signal_5_35_5", lambda o, h, l, c, v: talib.MACD(c, 5, 35, 5)[1]),
    ("macd_hist_5_35_5", lambda o, h, l, c, v: talib.MACD(c, 5, 35, 5)[2]),
    ("bb_upper_10_1.5", lambda o, h, l, c, v: talib.BBANDS(c, 10, 1.5, 1.5, 0)[0]),
    ("bb_mid_10_1.5", lambda o, h, l, c, v: talib.BBANDS(c, 10, 1.5, 1.5, 0)[1]),
    ("bb_lower_10_1.5", lambda o, h, l, c, v: talib.BBANDS(c, 10, 1.5, 1.5, 0)[2]),
    ("atr7", lambda o, h, l, c, v: talib.ATR(h, l, c, 7)),
    ("vol_sma5", lambda o, h, l, c, v: talib.SMA(v, 5)),
]


def read_rows(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = [c.strip().lower() for c in rows[0]]
    if header[:6] != ["ts", "open", "high", "low", "close", "volume"]:
        sys.exit(f"{path}: unexpected header {rows[0]}")
    return [r[:6] for r in rows[1:] if r]


def window(rows, first_ts, count, name):
    start = next((i for i, r in enumerate(rows) if r[0] >= first_ts), None)
    if start is None or start + count > len(rows):
        sys.exit(f"{name}: window from {first_ts} ({count} rows) is not in the file")
    return rows[start:start + count]


def synthetic_flat():
    """60 bars: 30 unchanged closes (TA-Lib: RSI 0, standard deviation 0), then moves."""
    rows = []
    day = 86_400_000
    t0 = 1_700_000_000_000 - 1_700_000_000_000 % day
    price = 100.0
    for i in range(60):
        if i >= 30:
            price += [1.5, -0.5, 0.75, -1.25, 2.0][i % 5]
        p = f"{price:.2f}"
        hi = f"{price + (0.5 if i >= 30 else 0):.2f}"
        lo = f"{price - (0.5 if i >= 30 else 0):.2f}"
        rows.append([str(t0 + i * day), p, hi, lo, p, "1000"])
    return rows


def fmt(x):
    return "" if math.isnan(x) else repr(float(x))


def indicators(rows):
    o, h, l, c, v = (np.array([float(r[i]) for r in rows]) for i in range(1, 6))
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    upper, mid, lower = talib.BBANDS(c, 20, 2.0, 2.0, 0)
    cols = {
        "sma20": talib.SMA(c, 20),
        "ema20": talib.EMA(c, 20),
        "rsi14": talib.RSI(c, 14),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
        "bb_upper": upper,
        "bb_mid": mid,
        "bb_lower": lower,
        "atr14": talib.ATR(h, l, c, 14),
        "vol_sma20": talib.SMA(v, 20),
        "sma50": talib.SMA(c, 50),
        "sma200": talib.SMA(c, 200),
        "max252": talib.MAX(h, 252),
        "min252": talib.MIN(l, 252),
    }
    return [cols[name] for name in COLUMNS]


def write_csv(path, header, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"),
                    help="folder of the history CSV files")
    args = ap.parse_args()

    notes = []
    for name, source, first, count, why in INDICATOR_WINDOWS:
        rows = window(read_rows(os.path.join(args.data, source)), first, count, name)
        notes.append((f"indicators/{name}.csv", source, rows[0][0], rows[-1][0], len(rows), why))
        emit_indicators(name, rows)
    rows = synthetic_flat()
    emit_indicators("synthetic_flat", rows)
    notes.append(("indicators/synthetic_flat.csv", "(generated)", rows[0][0], rows[-1][0], len(rows),
                  "30 unchanged closes, then moves: TA-Lib's RSI 0 and standard deviation 0 "
                  "for a window with no price change (no real file has 15 equal closes in a row)"))

    for name, source, first, count, why in SIGNAL_WINDOWS:
        rows = window(read_rows(os.path.join(args.data, source)), first, count, name)
        path = f"windows/{name}"
        write_csv(os.path.join(OUT, path), ["ts", "open", "high", "low", "close", "volume"], rows)
        notes.append((path, source, rows[0][0], rows[-1][0], len(rows), why))

    with open(os.path.join(OUT, "README.md"), "w") as f:
        f.write("# Test fixtures (generated by scripts/talib_fixtures.py; do not edit)\n\n")
        f.write(f"TA-Lib (Python) {talib.__version__}, C library "
                f"{talib.__ta_version__.decode() if isinstance(talib.__ta_version__, bytes) else talib.__ta_version__}, "
                f"numpy {np.__version__}.\n\n")
        f.write("Input columns are copied verbatim from the history files in `shared/data` "
                "(see its SOURCES.md); indicator columns are TA-Lib's output on the window "
                "alone, written with Python's `repr` (round-trip exact); empty = no value.\n\n")
        f.write("`indicators_alt/` holds the same windows as `indicators/`, with TA-Lib's "
                "output at other parameters (the column names give them).\n\n")
        f.write("| file | source | first | last | rows | why |\n|---|---|---|---|---|---|\n")
        for path, source, first, last, n, why in notes:
            f.write(f"| {path} | {source} | {first} | {last} | {n} | {why} |\n")


def emit_indicators(name, rows):
    values = indicators(rows)
    out = []
    for i, r in enumerate(rows):
        out.append(list(r) + [fmt(col[i]) for col in values])
    write_csv(os.path.join(OUT, "indicators", f"{name}.csv"),
              ["ts", "open", "high", "low", "close", "volume"] + COLUMNS, out)
    o, h, l, c, v = (np.array([float(r[i]) for r in rows]) for i in range(1, 6))
    alt = [f(o, h, l, c, v) for _, f in ALT_COLUMNS]
    out = [list(r) + [fmt(col[i]) for col in alt] for i, r in enumerate(rows)]
    write_csv(os.path.join(OUT, "indicators_alt", f"{name}.csv"),
              ["ts", "open", "high", "low", "close", "volume"] + [n for n, _ in ALT_COLUMNS], out)


if __name__ == "__main__":
    main()
