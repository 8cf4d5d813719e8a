//! tickwatch: the application that wires the crates together, behind the thin `tickwatch`
//! binary (`src/main.rs`).
//!
//! - [`config`]: the effective configuration (defaults, TOML file, environment), validated.
//! - [`logging`]: human or JSON logs, optionally to a daily-rotated file.
//! - [`ops`]: the operator commands — migrations, topology, dead-letter queues.
//! - [`bench`]: `tickwatch bench …`, each benchmark against its reference in one run.
//! - [`admin`]: `/healthz`, `/readyz` and `/metrics`, served by every process.
//! - [`demo`]: the demo user `tickwatch run` creates on its first start.
//! - [`history`]: `tickwatch history load` and the history load of a symbol's first alert.
//! - [`events`]: readiness and the producers' counters as metrics (names written once).
//! - [`app`]: the roles (consumers, producers) and `tickwatch run`, which starts them all.

pub mod admin;
pub mod app;
pub mod bench;
pub mod config;
pub mod demo;
pub mod events;
pub mod history;
pub mod logging;
pub mod ops;

pub use config::Config;

/// Writes command output to stdout; a closed pipe (`tickwatch … | head`) ends the output
/// quietly instead of panicking like `println!`.
pub fn say(text: impl AsRef<str>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out
        .write_all(text.as_ref().as_bytes())
        .and_then(|_| out.write_all(b"\n"));
}

/// `say!` is `println!` through [`say`].
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::say(format!($($arg)*)) };
}
