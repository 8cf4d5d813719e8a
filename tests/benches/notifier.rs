//! Issue 7's benchmark: a burst of notifications for many private chats, published to the
//! real RabbitMQ, consumed by the notifier role (`adapter::run`) and delivered to the fake
//! Telegram, which measures what arrived: all delivered, none twice, the per-chat and
//! overall limits kept, and the total time against the least the limits allow.
//!
//! ```text
//! cargo bench -p tickwatch-tests --bench notifier                  # 10,000 for 1,000 chats
//! NOTIFIER_BENCH_N=1000 NOTIFIER_BENCH_CHATS=100 cargo bench -p tickwatch-tests --bench notifier
//! cargo bench -p tickwatch-tests --bench notifier -- --n 1000 --chats 100
//! ```
//!
//! Other knobs (argument or environment): `--concurrency` / `NOTIFIER_BENCH_CONCURRENCY`
//! (the notifier's deliveries in flight, default its configured 64), `--prefetch` /
//! `NOTIFIER_BENCH_PREFETCH` (the consumer's prefetch, default the broker's 256), `--db
//! postgres` / `NOTIFIER_BENCH_DB` (default SQLite). Needs RabbitMQ (`AMQP_URL`) with the
//! management plugin, and PostgreSQL for `--db postgres`. Exits non-zero when a
//! requirement is missed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use tickwatch_broker::management::Management;
use tickwatch_broker::{Broker, BrokerConfig, Confirm, Publisher, Topology};
use tickwatch_notifier::{NotifierConfig, Secret};
use tickwatch_schema::db::entity::notification;
use tickwatch_schema::names::{Exchange, WorkQueue};
use tickwatch_tests::FakeTelegram;
use tickwatch_tests::bench::{BurstPlan, BurstReport, run_burst};
use tickwatch_tests::db::TestDb;
use tokio_util::sync::CancellationToken;

/// The issue's bar: within 1.1× the minimum the limits allow.
const MAX_RATIO: f64 = 1.1;

#[derive(Debug, Clone)]
struct Options {
    notifications: usize,
    chats: usize,
    concurrency: Option<usize>,
    prefetch: Option<u16>,
    postgres: bool,
}

impl Options {
    /// Arguments win over the environment; cargo's own `--bench` flag is ignored.
    fn parse() -> Result<Options, String> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut values: std::collections::HashMap<String, String> = [
            ("n", "NOTIFIER_BENCH_N"),
            ("chats", "NOTIFIER_BENCH_CHATS"),
            ("concurrency", "NOTIFIER_BENCH_CONCURRENCY"),
            ("prefetch", "NOTIFIER_BENCH_PREFETCH"),
            ("db", "NOTIFIER_BENCH_DB"),
        ]
        .into_iter()
        .filter_map(|(key, var)| env(var).map(|v| (key.to_string(), v)))
        .collect();
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let Some(flag) = arg.strip_prefix("--") else {
                // A positional filter, as cargo passes to benches: not used here.
                continue;
            };
            let (key, value) = match flag.split_once('=') {
                Some((k, v)) => (k.to_string(), Some(v.to_string())),
                None => (flag.to_string(), None),
            };
            if key == "bench" {
                continue;
            }
            if !["n", "chats", "concurrency", "prefetch", "db"].contains(&key.as_str()) {
                return Err(format!("unknown option --{key}"));
            }
            let value = match value {
                Some(v) => v,
                None => args.next().ok_or(format!("--{key} needs a value"))?,
            };
            values.insert(key, value);
        }
        let number = |key: &str, default: usize| -> Result<usize, String> {
            values.get(key).map_or(Ok(default), |v| {
                v.trim()
                    .parse()
                    .map_err(|_| format!("{key}: `{v}` is not a number"))
            })
        };
        let options = Options {
            notifications: number("n", 10_000)?,
            chats: number("chats", 1_000)?,
            concurrency: values
                .get("concurrency")
                .map(|_| number("concurrency", 0))
                .transpose()?,
            prefetch: values
                .get("prefetch")
                .map(|_| number("prefetch", 0))
                .transpose()?
                .map(|p| u16::try_from(p).map_err(|_| "prefetch: at most 65535".to_string()))
                .transpose()?,
            postgres: match values.get("db").map(|v| v.trim().to_ascii_lowercase()) {
                None => false,
                Some(db) if db == "sqlite" => false,
                Some(db) if db == "postgres" || db == "postgresql" => true,
                Some(other) => return Err(format!("db: `{other}` is not sqlite or postgres")),
            },
        };
        if options.notifications == 0 || options.chats == 0 {
            return Err("n and chats must be at least 1".into());
        }
        Ok(options)
    }
}

fn main() {
    let options = match Options::parse() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("notifier bench: {e}");
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let passed = runtime.block_on(bench(options));
    if !passed {
        std::process::exit(1);
    }
}

async fn bench(options: Options) -> bool {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let defaults = BrokerConfig::default();
    let broker_config = BrokerConfig {
        url: std::env::var("AMQP_URL").unwrap_or(defaults.url.clone()),
        prefix: format!("twt-bench-{}", &id[..8]),
        prefetch: options.prefetch.unwrap_or(defaults.prefetch),
        ..defaults
    };
    let broker = Broker::connect(broker_config.clone(), &broker_config.prefix)
        .await
        .expect("RabbitMQ reachable (AMQP_URL)");
    let topology = Topology::standard(&broker_config).expect("standard topology");
    topology.apply(&broker).await.expect("topology applied");
    let db = if options.postgres {
        TestDb::postgres().await.expect("local PostgreSQL")
    } else {
        TestDb::sqlite().await.expect("SQLite test database")
    };
    // Shared with the progress task.
    let fake = Arc::new(FakeTelegram::start().await.expect("fake Telegram"));
    let mut config = NotifierConfig {
        telegram_bot_token: Some(Secret::new("123456:BENCH")),
        telegram_api_url: fake.url(),
        ..NotifierConfig::default()
    };
    if let Some(concurrency) = options.concurrency {
        config.concurrency = concurrency;
    }
    let plan = BurstPlan::new(options.notifications, options.chats);
    eprintln!(
        "notifier bench: {} notifications for {} chats through {} (prefetch {}, concurrency {}, {}); \
         the limits allow it in {:.1} s at best",
        plan.notifications,
        plan.chats,
        broker_config.prefix,
        broker_config.prefetch,
        config.concurrency,
        if options.postgres {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        plan.minimum_duration().as_secs_f64(),
    );

    let shutdown = CancellationToken::new();
    let notifier = tokio::spawn({
        let (broker, conn, config, shutdown) = (
            broker.clone(),
            db.conn.clone(),
            config.clone(),
            shutdown.clone(),
        );
        async move { tickwatch_notifier::adapter::run(&broker, conn, &config, shutdown).await }
    });
    let progress = tokio::spawn(progress(fake.clone(), plan.notifications));

    let publisher = Publisher::start(&broker, "bench");
    let confirms: Arc<Mutex<Vec<Confirm>>> = Arc::default();
    // Time for the slowest case the limits allow, plus slack for a slow machine.
    let timeout = plan.minimum_duration().mul_f64(1.5) + Duration::from_secs(60);
    let report = run_burst(&fake, &plan, timeout, |n| {
        let (publisher, confirms) = (publisher.clone(), confirms.clone());
        async move {
            // Hand over without waiting for the confirm: publishing is pipelined, so the
            // burst is in the queue at once, as an alert storm would be.
            let confirm = publisher
                .send(Exchange::Notify, &n)
                .await
                .expect("notification handed to the publisher");
            confirms.lock().expect("confirms").push(confirm);
        }
    })
    .await;
    progress.abort();
    let pending: Vec<Confirm> = std::mem::take(&mut *confirms.lock().expect("confirms"));
    let mut unconfirmed = 0;
    for confirm in pending {
        if confirm.wait().await.is_err() {
            unconfirmed += 1;
        }
    }

    let queue = broker.names().queue(WorkQueue::NotifyTelegram);
    let (queue_left, dlq_left) = leftovers(&broker_config, &queue).await;
    let sent_rows = notification::Entity::find()
        .filter(notification::Column::Status.eq("sent"))
        .count(&db.conn)
        .await
        .unwrap_or_default();

    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(30), notifier).await {
        Ok(Ok(Ok(()))) => {}
        other => eprintln!("notifier did not stop cleanly: {other:?}"),
    }
    publisher.close().await;
    let _ = topology.delete(&broker).await;
    broker.close();
    let _ = db.close().await;

    print_report(&report, unconfirmed, queue_left, dlq_left, sent_rows)
}

/// A line every 30 s, so a six-minute run shows it is alive.
async fn progress(fake: Arc<FakeTelegram>, total: usize) {
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let done = fake.delivered().len();
        eprintln!(
            "  {:>6.0} s: {done}/{total} delivered ({:.1}/s)",
            started.elapsed().as_secs_f64(),
            done as f64 / started.elapsed().as_secs_f64()
        );
    }
}

/// Messages left in the work queue and in its DLQ after the burst.
async fn leftovers(config: &BrokerConfig, queue: &str) -> (u64, u64) {
    let Ok(management) = Management::new(config) else {
        return (u64::MAX, u64::MAX);
    };
    let depth = |q: Option<serde_json::Value>| {
        q.and_then(|q| q.get("messages").and_then(|v| v.as_u64()))
            .unwrap_or(u64::MAX)
    };
    // The management API's counts lag a few seconds behind the acks.
    let mut last = (u64::MAX, u64::MAX);
    for _ in 0..40 {
        last = (
            depth(management.queue(queue).await.ok().flatten()),
            depth(
                management
                    .queue(&format!("{queue}.dlq"))
                    .await
                    .ok()
                    .flatten(),
            ),
        );
        if last == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    last
}

fn print_report(
    report: &BurstReport,
    unconfirmed: usize,
    queue_left: u64,
    dlq_left: u64,
    sent_rows: u64,
) -> bool {
    let rates = &report.rates;
    println!("notifier burst through the broker");
    println!("  planned                {}", report.planned);
    println!("  delivered              {}", report.delivered);
    println!("  duplicates             {}", report.duplicates);
    println!("  sendMessage calls      {}", rates.send_calls);
    println!(
        "  max per chat per second {} (chat {:?})",
        rates.max_per_chat_per_sec, rates.busiest_chat
    );
    println!("  max global per second  {}", rates.max_global_per_sec);
    println!("  early 429 retries      {}", rates.early_retries);
    println!(
        "  elapsed                {:.1} s",
        report.elapsed.as_secs_f64()
    );
    println!(
        "  minimum allowed        {:.1} s",
        report.minimum.as_secs_f64()
    );
    println!("  ratio                  {:.3}", report.ratio);
    println!("  rows recorded sent     {sent_rows}");
    println!("  left in queue / DLQ    {queue_left} / {dlq_left}");
    let checks = [
        ("completed before the timeout", report.completed),
        ("all delivered", report.delivered == report.planned),
        ("none twice", report.duplicates == 0),
        ("every publish confirmed", unconfirmed == 0),
        (
            "at most 1 per chat per second",
            rates.max_per_chat_per_sec <= 1,
        ),
        (
            "at most 30 per second overall",
            rates.max_global_per_sec <= 30,
        ),
        (
            "within 1.1x the minimum",
            report.ratio > 0.0 && report.ratio <= MAX_RATIO,
        ),
        (
            "every row recorded sent",
            sent_rows == report.planned as u64,
        ),
        ("queue and DLQ empty", (queue_left, dlq_left) == (0, 0)),
    ];
    let mut passed = true;
    for (what, ok) in checks {
        println!("  [{}] {what}", if ok { "ok" } else { "FAIL" });
        passed &= ok;
    }
    passed
}
