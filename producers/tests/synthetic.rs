//! The synthetic source end to end: paced, finite with `max_ticks`, and the same stream as
//! the pure generator for the same seed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tickwatch_producers::MemorySink;
use tickwatch_producers::synthetic::{self, SyntheticConfig, SyntheticStream};
use tickwatch_schema::wire::Tick;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_seeded_run_publishes_the_generators_stream_at_its_rate() {
    let config = SyntheticConfig {
        symbols: 4,
        seed: 2024,
        rate: 400.0,
        start_ts: Some(1_763_762_400_000),
        max_ticks: Some(200),
        ..SyntheticConfig::default()
    };
    let sink = Arc::new(MemorySink::new());
    let started = Instant::now();
    let m = tokio::time::timeout(
        Duration::from_secs(10),
        synthetic::run(config.clone(), sink.clone(), CancellationToken::new()),
    )
    .await
    .expect("finishes by itself")
    .expect("runs");
    // 200 ticks at 400/s: about half a second.
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    let expected: Vec<Tick> = SyntheticStream::new(&config, 0).take(200).collect();
    assert_eq!(sink.ticks(), expected);
    assert_eq!(m.ticks_published, 200);
}

#[tokio::test]
async fn shutdown_stops_an_endless_run() {
    let sink = Arc::new(MemorySink::new());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(synthetic::run(
        SyntheticConfig {
            rate: 1000.0,
            ..SyntheticConfig::default()
        },
        sink.clone(),
        shutdown.clone(),
    ));
    assert!(sink.wait_for(50, 0, Duration::from_secs(5)).await);
    shutdown.cancel();
    let m = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("stops")
        .expect("no panic")
        .expect("ran");
    assert_eq!(m.ticks_published as usize, sink.ticks().len());
    assert_eq!(m.dropped_shutdown + m.dropped_overflow, 0);
}
