//! `tickwatch bench symbols`: the search users type into (the bot's free text,
//! `/v1/symbols`) over a universe of thousands of symbols with Korean and English names,
//! as the API and the bot run it: from the list in memory (every search but a process's
//! first, which reads the table). Goal: under 10 ms a search.

use std::time::{Duration, Instant};

use tickwatch_gateway::Services;
use tickwatch_gateway::services::universe::Listed;

use crate::config::Config;

/// Hangul syllables to build names from (a KRX-like universe: 2–5 syllable names).
const SYLLABLES: [&str; 24] = [
    "삼", "성", "전", "자", "현", "대", "기", "아", "카", "오", "엘", "지", "에", "코", "프", "로",
    "비", "엠", "한", "화", "솔", "루", "션", "바",
];

fn universe(count: usize) -> Vec<Listed> {
    (0..count)
        .map(|i| {
            let mut name = String::new();
            let mut n = i;
            for _ in 0..(2 + i % 4) {
                name.push_str(SYLLABLES[n % SYLLABLES.len()]);
                n = n / SYLLABLES.len() + 7;
            }
            name.push_str(&format!("{}", i % 10));
            Listed {
                venue: "krx".into(),
                symbol: format!("{:06}", 100_000 + i),
                aliases: vec![name.clone(), format!("company {i}")],
                name,
                market: "krx".into(),
            }
        })
        .collect()
}

/// The `p` quantile (0..=1) of sorted durations.
pub(super) fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

pub async fn run(config: &Config, count: usize, rounds: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("tickwatch-bench-symbols-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut config = config.clone();
    config.database.url = format!("sqlite://{}?mode=rwc", dir.join("symbols.db").display());
    let db = crate::app::database(&config, crate::app::Migrations::Apply).await?;
    let services = Services::new(db, None);

    let started = Instant::now();
    let report = services.import_symbols("krx", universe(count)).await?;
    let import = started.elapsed();
    let again = Instant::now();
    services.import_symbols("krx", universe(count)).await?;
    let reimport = again.elapsed();
    crate::say!(
        "import of {} symbols: {:.0} ms ({} added); the same list again: {:.0} ms",
        report.listed,
        import.as_secs_f64() * 1000.0,
        report.added,
        reimport.as_secs_f64() * 1000.0
    );

    let queries = [
        "삼성",
        "100042",
        "현대",
        "company 4217",
        "프로비",
        "zzz",
        "005930",
        "에코",
    ];
    let mut warm = Vec::new();
    for _ in 0..rounds {
        for query in queries {
            let t = Instant::now();
            std::hint::black_box(services.search_symbols(query, 10).await?);
            warm.push(t.elapsed());
        }
    }
    warm.sort();
    // The first search of a process reads the table; later ones never wait for it (an
    // old list is answered from while a background read replaces it).
    let mut cold = Vec::new();
    for _ in 0..rounds.min(50) {
        let fresh = Services::new(services.db().clone(), None);
        let t = Instant::now();
        std::hint::black_box(fresh.search_symbols("삼성", 10).await?);
        cold.push(t.elapsed());
    }
    cold.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    crate::say!("| search over {count} symbols | p50 | p99 | goal |");
    crate::say!("|---|---|---|---|");
    crate::say!(
        "| from memory ({} searches) | {:.2} ms | {:.2} ms | < 10 ms |",
        warm.len(),
        ms(percentile(&warm, 0.5)),
        ms(percentile(&warm, 0.99))
    );
    crate::say!(
        "| first search of a process (reads the table; {} runs) | {:.2} ms | {:.2} ms | once |",
        cold.len(),
        ms(percentile(&cold, 0.5)),
        ms(percentile(&cold, 0.99))
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
