//! A driver for measuring the engine outside the test harness.
//!
//! ```text
//! cargo run --release -p tickwatch-signals --example engine_driver -- bench  DIR [SYMBOLS] [BARS] [RUNS]
//! cargo run --release -p tickwatch-signals --example engine_driver -- digest DIR [SYMBOLS] [BARS]
//! cargo run --release -p tickwatch-signals --example engine_driver -- profile DIR [SYMBOLS] [BARS]
//! ```
//!
//! - `bench`: `bench::bench` `RUNS` times (default 5), best and median candles/s.
//! - `digest`: every output of the benchmark universe, serialised, hashed — to check
//!   that a change to the engine leaves its results unchanged (compare two digests).
//! - `profile`: builds the universe up front, then feeds it once through one engine
//!   (`drive`); run it under `valgrind --tool=callgrind --toggle-collect='*drive*'` to
//!   count the engine's instructions per candle.

use std::path::Path;

use tickwatch_schema::wire::Candle;
use tickwatch_signals::bench::{BATCH, BenchConfig, bench, build_universe, digest, load_sources};
use tickwatch_signals::{SignalEngine, SignalsConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map_or("bench", String::as_str);
    let dir = args.get(1).cloned().unwrap_or_else(|| {
        tickwatch_schema::history::data_dir()
            .unwrap_or_else(|e| panic!("{e}"))
            .display()
            .to_string()
    });
    let arg = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (symbols, bars) = (arg(2, 1_000), arg(3, 1_000));
    let sources = load_sources(Path::new(&dir)).expect("history files");
    match mode {
        "bench" => {
            let cfg = BenchConfig {
                symbols,
                bars_per_symbol: bars,
                ..BenchConfig::default()
            };
            let mut rates = Vec::new();
            for _ in 0..arg(4, 5) {
                let r = bench(&sources, &cfg).expect("bench");
                println!("{r}");
                rates.push(r.candles_per_sec);
            }
            rates.sort_by(f64::total_cmp);
            println!(
                "best {:.0} candles/s, median {:.0}",
                rates[rates.len() - 1],
                rates[rates.len() / 2]
            );
        }
        "digest" => {
            let universe = build_universe(&sources, symbols, bars);
            println!("{}", digest(&universe).expect("digest"));
        }
        "profile" => {
            // As the benchmark does: candles copied into a reused batch of 4,096 before
            // each timed (here: counted) stretch, so their reads are cache hits.
            let universe = build_universe(&sources, symbols, bars);
            let mut engine = SignalEngine::new(SignalsConfig::default()).expect("engine");
            let mut batch: Vec<Candle> = universe[..BATCH.min(universe.len())].to_vec();
            let mut n = 0;
            for chunk in universe.chunks(BATCH) {
                for (dst, src) in batch.iter_mut().zip(chunk) {
                    dst.venue.clone_from(&src.venue);
                    dst.symbol.clone_from(&src.symbol);
                    dst.interval = src.interval;
                    dst.open_ts = src.open_ts;
                    (dst.open, dst.high, dst.low, dst.close) =
                        (src.open, src.high, src.low, src.close);
                    dst.volume = src.volume;
                    dst.closed = src.closed;
                }
                n += drive(&mut engine, &batch[..chunk.len()]);
            }
            println!("{} candles, {n} outputs", universe.len());
        }
        other => panic!("unknown mode {other}"),
    }
}

#[inline(never)]
fn drive(engine: &mut SignalEngine, candles: &[Candle]) -> usize {
    let mut n = 0;
    for c in candles {
        n += engine.process(c).len();
    }
    n
}
