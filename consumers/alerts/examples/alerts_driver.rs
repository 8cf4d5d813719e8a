//! The rule-book benchmark outside the main binary (a release build of this crate alone):
//!
//! ```text
//! cargo run --release -p tickwatch-alerts --example alerts_driver -- [RULES] [SYMBOLS] [TICKS]
//! ```
//!
//! The same run as `tickwatch bench alerts` (defaults: 1,000,000 rules, 1,000 symbols,
//! 5,000,000 ticks).

use tickwatch_alerts::bench::{BenchConfig, run};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number"))
        .collect();
    let defaults = BenchConfig::default();
    let config = BenchConfig {
        rules: args.first().copied().unwrap_or(defaults.rules),
        symbols: args.get(1).copied().unwrap_or(defaults.symbols),
        ticks: args.get(2).copied().unwrap_or(defaults.ticks),
        ..defaults
    };
    println!("{}", run(&config).expect("bench"));
}
