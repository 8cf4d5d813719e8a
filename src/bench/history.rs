//! `tickwatch bench history`: `tickwatch history load` of N symbols' daily history (the
//! signals engine's warm-up, ~800 days each) from a local fake of Binance's klines endpoint,
//! through the real path — fetch, parse, one transaction per series into the database,
//! the notice to the signals queue. Run twice in one go: unpaced (tickwatch's own cost)
//! and at the configured pace (what a user waits for, less the venue's network time).

use std::time::{Duration, Instant};

use axum::extract::Query;
use tickwatch_broker::Publisher;
use tickwatch_producers::history::HistoryVenue;
use tickwatch_schema::wire::Interval;

use super::symbols::percentile;
use super::{BenchDb, DrainDb, throwaway_broker};
use crate::config::Config;
use crate::history::Loader;

const DAY: i64 = 86_400_000;

/// `GET /api/v3/klines`: a deterministic random walk per symbol, up to `limit` daily
/// klines opening in `[startTime, endTime]`.
async fn klines(
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> axum::Json<Vec<serde_json::Value>> {
    let num = |k: &str| q.get(k).and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
    let (start, end, limit) = (num("startTime"), num("endTime"), num("limit").max(1));
    let seed = q
        .get("symbol")
        .map(|s| {
            s.bytes()
                .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        })
        .unwrap_or(7);
    let first = start.div_euclid(DAY) * DAY + if start.rem_euclid(DAY) == 0 { 0 } else { DAY };
    let rows = (0..limit)
        .map(|i| first + i * DAY)
        .take_while(|t| *t <= end)
        .map(|t| {
            let day = (t / DAY) as u64;
            let wiggle = (seed.wrapping_mul(day + 1) % 2_000) as f64 / 100.0;
            let close = 100.0 + wiggle;
            serde_json::json!([
                t,
                format!("{:.2}", close - 0.5),
                format!("{:.2}", close + 1.0),
                format!("{:.2}", close - 1.0),
                format!("{close:.2}"),
                "1234.5",
                t + DAY - 1,
                "0",
                100,
                "0",
                "0",
                "0"
            ])
        })
        .collect();
    axum::Json(rows)
}

/// One pass: every symbol loaded, timed per series.
async fn pass(
    loader: &mut Loader,
    symbols: &[String],
    bars: usize,
) -> anyhow::Result<(Duration, Vec<Duration>, usize)> {
    let started = Instant::now();
    let mut each = Vec::with_capacity(symbols.len());
    let mut stored = 0;
    for symbol in symbols {
        let t = Instant::now();
        let load = loader
            .load(HistoryVenue::Binance, symbol, Interval::D1, bars, true)
            .await?;
        stored += load.stored;
        each.push(t.elapsed());
    }
    each.sort();
    Ok((started.elapsed(), each, stored))
}

pub async fn run(
    config: &Config,
    symbols: usize,
    database: DrainDb,
    pg_url: &str,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let rest_url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            axum::Router::new().route("/api/v3/klines", axum::routing::get(klines)),
        )
        .await
    });
    let db = BenchDb::create(database, pg_url).await?;
    let (broker, topology) = throwaway_broker(config).await?;
    topology.apply(&broker).await?;
    let publisher = Publisher::start(&broker, "bench:history");
    let names: Vec<String> = (0..symbols).map(|i| format!("BENCH{i:04}USDT")).collect();

    let mut paced = config.clone();
    paced.producers.binance.rest_url = rest_url.clone();
    let mut unpaced = paced.clone();
    unpaced.history.pace.binance = Duration::ZERO;
    let result = async {
        let mut loader = Loader::new(&unpaced, db.conn.clone(), publisher.clone())?;
        let bars = loader.bars_for(Interval::D1);
        let own = pass(&mut loader, &names, bars).await?;
        let mut loader = Loader::new(&paced, db.conn.clone(), publisher.clone())?;
        let at_pace = pass(&mut loader, &names, bars).await?;
        anyhow::Ok((bars, own, at_pace))
    }
    .await;
    publisher.close().await;
    let _ = topology.delete(&broker).await;
    broker.close();
    db.remove().await;
    server.abort();
    let (bars, own, at_pace) = result?;

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    crate::say!(
        "history load of {symbols} symbols × {bars} daily bars (Binance klines from a local fake; {database:?}):"
    );
    crate::say!("| run | total | per symbol p50 | p99 | candles stored/s |");
    crate::say!("|---|---|---|---|---|");
    for (name, (total, each, stored)) in [
        ("unpaced (tickwatch's own cost)", &own),
        (
            "at history.pace.binance (what a user waits, less network time)",
            &at_pace,
        ),
    ] {
        crate::say!(
            "| {name} | {:.1} s | {:.1} ms | {:.1} ms | {:.0} |",
            total.as_secs_f64(),
            ms(percentile(each, 0.5)),
            ms(percentile(each, 0.99)),
            *stored as f64 / total.as_secs_f64()
        );
    }
    let pages = |page: usize| bars.div_ceil(page);
    let pace = &config.history.pace;
    crate::say!(
        "requests a symbol: Binance {} (1,000 a page), Upbit {} (200), KIS {} (100, and one token a load); at the configured pace {symbols} symbols wait at least {:.0} s, {:.0} s and {:.0} s",
        pages(1000),
        pages(200),
        pages(100),
        symbols as f64 * pages(1000) as f64 * pace.binance.as_secs_f64(),
        symbols as f64 * pages(200) as f64 * pace.upbit.as_secs_f64(),
        symbols as f64 * pages(100) as f64 * pace.krx.as_secs_f64()
    );
    Ok(())
}
