//! The fault suite over every fault (or those named), one run each, printing the table.
//!
//! `chaos --binary target/release/tickwatch [--faults kill-alerts,poison-flood] [--out FILE]`
//! (`scripts/chaos.sh` builds the release binary and runs this). `broker-restart` stops and
//! starts the local RabbitMQ application: run it on a machine where nothing else uses it.

use std::path::PathBuf;
use std::time::Instant;

use tickwatch_tests::faults::{self, Fault, Suite};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let mut binary = None;
    let mut only: Option<Vec<Fault>> = None;
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--binary" => binary = args.next().map(PathBuf::from),
            "--out" => out = args.next().map(PathBuf::from),
            "--faults" => {
                let names = args.next().unwrap_or_default();
                let mut list = Vec::new();
                for name in names.split(',').filter(|n| !n.is_empty()) {
                    match Fault::parse(name) {
                        Some(f) => list.push(f),
                        None => {
                            eprintln!(
                                "chaos: unknown fault `{name}`; the faults are {}",
                                Fault::ALL.map(Fault::name).join(", ")
                            );
                            return std::process::ExitCode::from(2);
                        }
                    }
                }
                only = Some(list);
            }
            "-h" | "--help" => {
                println!(
                    "chaos --binary PATH [--faults a,b] [--out FILE]\nfaults: {}",
                    Fault::ALL.map(Fault::name).join(", ")
                );
                return std::process::ExitCode::SUCCESS;
            }
            other => {
                eprintln!("chaos: unexpected argument `{other}` (see --help)");
                return std::process::ExitCode::from(2);
            }
        }
    }
    let Some(binary) = binary else {
        eprintln!("chaos: --binary PATH (the tickwatch binary the roles run as) is required");
        return std::process::ExitCode::from(2);
    };
    let suite = Suite::local(binary);
    let started = Instant::now();
    let mut rows = Vec::new();
    for fault in only.unwrap_or_else(|| Fault::ALL.to_vec()) {
        eprintln!("chaos: {} …", fault.description());
        match faults::run(&suite, fault).await {
            Ok(row) => {
                eprintln!(
                    "chaos: {} done in {:.0} s: {} of {} delivered, {} lost, {} duplicated{}",
                    fault.name(),
                    row.took.as_secs_f64(),
                    row.delivered,
                    row.expected,
                    row.lost,
                    row.duplicated,
                    if row.notes.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", row.notes.join("; "))
                    }
                );
                rows.push(row);
            }
            Err(e) => {
                eprintln!("chaos: {}: {e}", fault.name());
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let table = faults::table(&rows);
    println!("{table}");
    eprintln!(
        "chaos: {} runs in {:.0} s",
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(out) = out
        && let Err(e) = std::fs::write(&out, &table)
    {
        eprintln!("chaos: writing {}: {e}", out.display());
    }
    if rows.iter().all(faults::Row::is_clean) {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::FAILURE
    }
}
