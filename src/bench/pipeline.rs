//! `tickwatch bench pipeline`: the whole pipeline through the real broker. Every role runs
//! in this process, as `tickwatch run` runs them, on a fresh database, with 100,000 active
//! rules on 1,000 symbols; a producer publishes ticks of those symbols and closed minute
//! candles (the signals role's path), a few of the ticks crossing a rule. Three figures,
//! each beside its reference measured in the same run:
//!
//! - (a) the sustained input rate: the highest offered rate the producer keeps up and after
//!   which no work queue holds more than a second's worth — against the raw broker's
//!   one-queue publish+consume ceiling (raw lapin);
//! - (b) tick → `Notification` published, at half that rate, seen by a tap on the notify
//!   exchange — against a raw publish→consume hop at the same rate;
//! - (c) tick → the fake Telegram's receipt, through the notifier with no rate limits.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use tickwatch_broker::bench::{Tap, due, raw_ceiling, raw_hop, ready};
use tickwatch_broker::{Broker, Confirm, Publisher};
use tickwatch_schema::names::{Exchange, WorkQueue, routing};
use tickwatch_schema::wire::{AlertTriggered, Candle, Interval, Notification, Tick};
use tokio_util::sync::CancellationToken;

use super::{BenchDb, DrainDb, seed_alert_rules, throwaway_broker};
use crate::app::{Role, Roles, start_role};
use crate::config::Config;

/// What `bench pipeline` runs.
#[derive(Debug, Clone)]
pub struct PipelinePlan {
    pub database: DrainDb,
    pub pg_url: String,
    pub symbols: usize,
    pub rules_per_symbol: usize,
    pub users: usize,
    /// How long each offered rate is held while the sustained rate is searched.
    pub step: Duration,
    /// How long the latency phase publishes.
    pub latency_phase: Duration,
    /// A symbol's tick crosses a rule once in this many of its ticks.
    pub fire_every: usize,
    /// A closed minute candle after this many ticks.
    pub candle_every: usize,
    /// The roles that run (all four by default; alerts and the notifier are needed for the
    /// latency figures). The queues of those left out are not consumed and not counted.
    pub roles: Vec<Role>,
}

impl Default for PipelinePlan {
    fn default() -> Self {
        PipelinePlan {
            database: DrainDb::Sqlite,
            pg_url: "postgres://postgres@127.0.0.1/test".into(),
            symbols: 1_000,
            rules_per_symbol: 100,
            users: 1_000,
            step: Duration::from_secs(8),
            latency_phase: Duration::from_secs(20),
            fire_every: 50,
            candle_every: 50,
            roles: vec![Role::Recorder, Role::Signals, Role::Alerts, Role::Notifier],
        }
    }
}

/// p50, p99 and p99.9 of some latencies, and how many there were.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
}

impl Percentiles {
    fn of(mut samples: Vec<Duration>) -> Percentiles {
        samples.sort();
        let at = |q: f64| {
            let i = ((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1));
            samples.get(i).copied().unwrap_or_default()
        };
        Percentiles {
            count: samples.len(),
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
        }
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms ({} messages)",
            ms(self.p50),
            ms(self.p99),
            ms(self.p999),
            self.count
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One offered rate of the search.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub offered: f64,
    pub achieved: f64,
    /// Messages ready in the work queues when publishing ended.
    pub backlog: u64,
    pub kept: bool,
}

/// What `bench pipeline` measured.
#[derive(Debug, Clone)]
pub struct PipelineReport {
    pub ceiling: f64,
    pub steps: Vec<Step>,
    pub sustained: f64,
    pub latency_rate: f64,
    pub to_notification: Percentiles,
    pub raw_hop: Percentiles,
    pub to_telegram: Percentiles,
}

/// `tickwatch bench pipeline`.
pub async fn run(config: &Config, plan: &PipelinePlan) -> anyhow::Result<PipelineReport> {
    eprintln!(
        "pipeline: seeding {} rules on {} symbols ({:?}) …",
        plan.symbols * plan.rules_per_symbol,
        plan.symbols,
        plan.database
    );
    let db = BenchDb::create(plan.database, &plan.pg_url).await?;
    seed_alert_rules(&db.conn, plan.symbols, plan.rules_per_symbol, plan.users).await?;
    let (broker, topology) = throwaway_broker(config).await?;
    topology.apply(&broker).await?;
    // The raw references declare and delete their own market exchange: another prefix.
    let (raw, _) = throwaway_broker(config).await?;
    let telegram = FakeTelegram::start().await?;
    let result = measure(config, plan, &db, &broker, &raw, &telegram).await;
    telegram.stop();
    raw.close();
    let _ = topology.delete(&broker).await;
    broker.close();
    db.remove().await;
    let report = result?;
    crate::say!("{}", describe(plan, &report));
    Ok(report)
}

async fn measure(
    config: &Config,
    plan: &PipelinePlan,
    db: &BenchDb,
    broker: &Broker,
    raw: &Broker,
    telegram: &FakeTelegram,
) -> anyhow::Result<PipelineReport> {
    let mut config = config.clone();
    config.notifier.telegram_bot_token = Some(tickwatch_notifier::config::Secret::new(
        "424242:PIPELINE-BENCH",
    ));
    config.notifier.telegram_api_url = telegram.url.clone();
    // The fake has no limits; neither does the notifier here, so its own cost shows.
    config.notifier.limits.global_per_second = 1_000_000;
    config.notifier.limits.chat_interval_ms = 0;
    config.notifier.limits.group_per_minute = 1_000_000;
    config.notifier.limits.margin_ms = 0;

    let stop = CancellationToken::new();
    let mut roles = Roles::new(&stop);
    anyhow::ensure!(
        plan.roles.contains(&Role::Alerts) && plan.roles.contains(&Role::Notifier),
        "the pipeline bench needs the alerts role and the notifier"
    );
    for role in &plan.roles {
        start_role(&mut roles, *role, &config, broker, &db.conn);
    }
    let queues: Vec<String> = WorkQueue::ALL
        .iter()
        .filter(|q| plan.roles.iter().any(|r| r.name() == q.role()))
        .map(|q| broker.names().queue(*q))
        .collect();
    let started = Instant::now();
    while !queues.iter().all(|q| {
        broker
            .health()
            .snapshot()
            .get(&format!("consumer:{q}"))
            .is_some_and(|c| c.up)
    }) {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "the roles did not start consuming within 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let result = phases(plan, broker, raw, telegram, &queues).await;
    stop.cancel();
    roles.wait().await?;
    result
}

async fn phases(
    plan: &PipelinePlan,
    broker: &Broker,
    raw: &Broker,
    telegram: &FakeTelegram,
    queues: &[String],
) -> anyhow::Result<PipelineReport> {
    eprintln!("pipeline: the raw broker's one-queue ceiling …");
    let ceiling = raw_ceiling(raw, 100_000).await?;
    eprintln!("pipeline: raw ceiling {ceiling:.0} msg/s; searching the sustained rate …");

    let publisher = Publisher::start(broker, "bench-pipeline");
    let mut feed = Feed::new(plan);
    let mut steps = Vec::new();
    let (mut good, mut bad): (Option<f64>, Option<f64>) = (None, None);
    let mut rate = (ceiling * 0.2).max(100.0);
    for _ in 0..8 {
        let achieved = offer(&publisher, &mut feed, rate, plan.step, None).await?;
        let backlog = backlog(broker, queues).await?;
        let step = Step {
            offered: rate,
            achieved,
            backlog,
            kept: achieved >= 0.95 * rate && backlog as f64 <= rate,
        };
        eprintln!(
            "  offered {:>7.0} msg/s: published {:>7.0} msg/s, {:>7} waiting after {} s: {}",
            step.offered,
            step.achieved,
            step.backlog,
            plan.step.as_secs(),
            if step.kept { "kept up" } else { "fell behind" }
        );
        steps.push(step);
        drained(broker, queues).await?;
        if step.kept {
            good = Some(rate);
        } else {
            bad = Some(rate);
        }
        rate = match (good, bad) {
            (Some(g), Some(b)) if (b - g) / g < 0.05 => break,
            (Some(g), Some(b)) => (g + b) / 2.0,
            (Some(g), None) => g * 1.4,
            (None, Some(b)) => b * 0.6,
            (None, None) => rate,
        };
        if rate > ceiling * 1.5 {
            break;
        }
    }
    let sustained = good.unwrap_or(0.0);
    anyhow::ensure!(sustained > 0.0, "the pipeline kept up with no offered rate");

    let latency_rate = sustained / 2.0;
    eprintln!("pipeline: latency at {latency_rate:.0} msg/s …");
    let tap = Tap::start(
        broker,
        &[
            (Exchange::Alerts, "#"),
            (Exchange::Notify, routing::TELEGRAM),
        ],
    )
    .await?;
    telegram.take();
    let mut sent_at = HashMap::new();
    offer(
        &publisher,
        &mut feed,
        latency_rate,
        plan.latency_phase,
        Some(&mut sent_at),
    )
    .await?;
    publisher.close().await;
    // Everything fired reaches the tap and the fake.
    let mut tapped = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut notifications = 0;
    while (notifications < sent_at.len() || telegram.count() < sent_at.len())
        && Instant::now() < deadline
    {
        let more = tap.take();
        notifications += more.iter().filter(|t| t.kind == "notification").count();
        tapped.extend(more);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tapped.extend(tap.take());
    tap.close().await;
    let delivered = telegram.take();

    // Firing id → the tick's ts (the key of its publish instant).
    let mut tick_of: HashMap<uuid::Uuid, i64> = HashMap::new();
    let mut published: Vec<(Instant, Notification)> = Vec::new();
    for t in &tapped {
        match t.kind.as_str() {
            "alert" => {
                let alert: AlertTriggered = tickwatch_schema::wire::decode(&t.body)?;
                tick_of.insert(alert.id, alert.ts);
            }
            "notification" => {
                published.push((t.at, tickwatch_schema::wire::decode(&t.body)?));
            }
            _ => {}
        }
    }
    let sent_of = |id: &uuid::Uuid| tick_of.get(id).and_then(|ts| sent_at.get(ts)).copied();
    let to_notification: Vec<Duration> = published
        .iter()
        .filter_map(|(at, n)| Some(*at - sent_of(&n.id)?))
        .collect();
    let by_text: HashMap<(i64, &str), Instant> = published
        .iter()
        .filter_map(|(_, n)| Some(((n.chat_id, n.text.as_str()), sent_of(&n.id)?)))
        .collect();
    let to_telegram: Vec<Duration> = delivered
        .iter()
        .filter_map(|(at, chat, text)| Some(*at - *by_text.get(&(*chat, text.as_str()))?))
        .collect();
    anyhow::ensure!(
        to_notification.len() == sent_at.len() && to_telegram.len() == sent_at.len(),
        "of {} crossings, {} notifications were published and {} reached the fake Telegram",
        sent_at.len(),
        to_notification.len(),
        to_telegram.len()
    );

    eprintln!("pipeline: a raw hop at {latency_rate:.0} msg/s …");
    let hop_messages = (latency_rate * plan.latency_phase.as_secs_f64()) as u64;
    let hop = raw_hop(raw, latency_rate, hop_messages.max(1_000)).await?;
    Ok(PipelineReport {
        ceiling,
        steps,
        sustained,
        latency_rate,
        to_notification: Percentiles::of(to_notification),
        raw_hop: Percentiles::of(hop),
        to_telegram: Percentiles::of(to_telegram),
    })
}

/// Publishes the feed at `rate` for `duration` as a producer does (confirmed, a window of
/// 4,096 in flight); with `firing`, notes each crossing tick's publish instant by its ts.
/// The rate it kept.
async fn offer(
    publisher: &Publisher,
    feed: &mut Feed,
    rate: f64,
    duration: Duration,
    mut firing: Option<&mut HashMap<i64, Instant>>,
) -> anyhow::Result<f64> {
    let mut window: VecDeque<Confirm> = VecDeque::new();
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < duration {
        let due = due(start, rate, sent);
        if due == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        }
        for _ in 0..due.min(1_000) {
            let confirm = match feed.next() {
                Item::Tick(tick, crossing) => {
                    if crossing && let Some(firing) = firing.as_deref_mut() {
                        firing.insert(tick.ts, Instant::now());
                    }
                    publisher.send(Exchange::Market, &tick).await?
                }
                Item::Candle(candle) => publisher.send(Exchange::Market, &candle).await?,
            };
            window.push_back(confirm);
            sent += 1;
            if window.len() >= 4_096
                && let Some(front) = window.pop_front()
            {
                front.wait().await?;
            }
        }
    }
    let elapsed = start.elapsed();
    for confirm in window {
        confirm.wait().await?;
    }
    Ok(sent as f64 / elapsed.as_secs_f64())
}

async fn backlog(broker: &Broker, queues: &[String]) -> anyhow::Result<u64> {
    let mut total = 0;
    for q in queues {
        total += u64::from(ready(broker, q).await?);
    }
    Ok(total)
}

/// Waits until the work queues are empty again (within 5 minutes).
async fn drained(broker: &Broker, queues: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    while backlog(broker, queues).await? > 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the roles did not drain their queues within 5 minutes"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

enum Item {
    /// A tick, and whether it crosses a rule.
    Tick(Tick, bool),
    Candle(Candle),
}

/// The producer's stream: ticks round-robin over the symbols (a symbol's tick crosses its
/// lowest rule, 101, once in `fire_every` of its ticks, at a price no other crossing has,
/// and falls back below with the next), and after every `candle_every` ticks a closed
/// minute candle of one of 100 symbols (real BTCUSDT bars, scaled), in time order.
struct Feed {
    symbols: usize,
    fire_every: usize,
    candle_every: usize,
    bars: Vec<Candle>,
    ticks: usize,
    candles: usize,
    crossings: i64,
    last_ts: i64,
    base_ts: i64,
}

impl Feed {
    fn new(plan: &PipelinePlan) -> Feed {
        let bars: Vec<Candle> = tickwatch_schema::history::HistoryReader::new(
            crate::app::DEMO_BARS,
            "BTCUSDT_1m.csv",
            "binance",
            "BTCUSDT",
            Interval::M1,
        )
        .expect("the demo file has its header")
        .filter_map(Result::ok)
        .collect();
        Feed {
            symbols: plan.symbols.max(1),
            fire_every: plan.fire_every.max(2),
            candle_every: plan.candle_every.max(1),
            bars,
            ticks: 0,
            candles: 0,
            crossings: 0,
            last_ts: 0,
            // Candles start a year back, so they never run past now.
            base_ts: tickwatch_schema::db::now_ms() / 60_000 * 60_000 - 365 * 86_400_000,
        }
    }

    fn next(&mut self) -> Item {
        if self.ticks > 0
            && self.ticks.is_multiple_of(self.candle_every)
            && self.candles < self.ticks
        {
            self.candles = self.ticks;
            return Item::Candle(self.candle());
        }
        let i = self.ticks;
        self.ticks += 1;
        let (s, round) = (i % self.symbols, i / self.symbols);
        let crossing = (round + s) % self.fire_every == 0;
        let price = if crossing {
            self.crossings += 1;
            // 101.5 and a little more each time: every notification's text is unique.
            Decimal::new(1_015_000_000 + self.crossings % 5_000_000, 7)
        } else {
            Decimal::from(100) + Decimal::new((round % 7) as i64, 2)
        };
        // A crossing's ts is its key in the latency map: never two alike.
        let mut ts = tickwatch_schema::db::now_ms();
        if crossing {
            ts = ts.max(self.last_ts + 1);
            self.last_ts = ts;
        }
        Item::Tick(
            Tick {
                venue: "binance".into(),
                symbol: format!("BENCH{s}"),
                price,
                qty: Decimal::ONE,
                ts,
                trade_id: Some(i.to_string()),
            },
            crossing,
        )
    }

    fn candle(&self) -> Candle {
        let k = self.ticks / self.candle_every;
        let (s, bar) = (k % 100, k / 100);
        let mut c = self.bars[(s * 37 + bar) % self.bars.len()].clone();
        let scale = Decimal::new(100 + s as i64, 2);
        c.symbol = format!("BENCH{s}");
        c.open_ts = self.base_ts + bar as i64 * 60_000;
        c.open *= scale;
        c.high *= scale;
        c.low *= scale;
        c.close *= scale;
        c.closed = true;
        c
    }
}

/// Telegram's Bot API as far as the notifier uses it, without limits: every
/// `sendMessage` accepted, and kept with the instant it arrived. (The tests' full fake,
/// `tickwatch_tests::FakeTelegram`, is a dev-dependency the binary cannot use.)
struct FakeTelegram {
    url: String,
    received: Arc<Mutex<Vec<(Instant, i64, String)>>>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeTelegram {
    async fn start() -> anyhow::Result<FakeTelegram> {
        use axum::extract::{Path, State};
        use axum::routing::post;
        type Received = Arc<Mutex<Vec<(Instant, i64, String)>>>;
        async fn method(
            State(received): State<Received>,
            Path((_token, method)): Path<(String, String)>,
            body: axum::body::Bytes,
        ) -> axum::Json<serde_json::Value> {
            let at = Instant::now();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            let chat = body["chat_id"]
                .as_i64()
                .or_else(|| body["chat_id"].as_str().and_then(|c| c.parse().ok()))
                .unwrap_or_default();
            let text = body["text"].as_str().unwrap_or_default().to_string();
            let result = if method == "sendMessage" {
                let mut received = received.lock().unwrap_or_else(|p| p.into_inner());
                received.push((at, chat, text.clone()));
                serde_json::json!({
                    "message_id": received.len(),
                    "date": tickwatch_schema::db::now_ms() / 1000,
                    "chat": {"id": chat, "type": "private", "first_name": "Bench"},
                    "text": text,
                })
            } else {
                serde_json::json!({"id": 424242, "is_bot": true, "first_name": "bench", "username": "bench_bot"})
            };
            axum::Json(serde_json::json!({"ok": true, "result": result}))
        }
        let received: Received = Arc::default();
        let app = axum::Router::new()
            .route("/{token}/{method}", post(method))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(FakeTelegram {
            url,
            received,
            server,
        })
    }

    fn count(&self) -> usize {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    fn take(&self) -> Vec<(Instant, i64, String)> {
        std::mem::take(&mut *self.received.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn stop(&self) {
        self.server.abort();
    }
}

/// The report, with each figure beside its reference and goal.
pub fn describe(plan: &PipelinePlan, r: &PipelineReport) -> String {
    let ratio = r.sustained / r.ceiling;
    let p99_ratio = r.to_notification.p99.as_secs_f64() / r.raw_hop.p99.as_secs_f64().max(1e-9);
    let verdict = |met: bool| if met { "met" } else { "not met" };
    format!(
        "pipeline bench ({:?}): {} rules on {} symbols, roles {:?} in this process; ticks with a closed candle every {} and a crossing once in {} of a symbol's ticks\n\
         (a) sustained input {:.0} msg/s; raw broker one-queue publish+consume ceiling {:.0} msg/s: ratio {:.2} (goal >= 0.7: {})\n\
         (b) tick -> Notification published at {:.0} msg/s: {}\n    raw publish->consume hop at the same rate: {}\n    p99 ratio {:.1} (goal <= 3: {}), p50 {:.1} ms (goal <= 10 ms: {})\n\
         (c) tick -> fake Telegram through the notifier (no limits): {}",
        plan.database,
        plan.symbols * plan.rules_per_symbol,
        plan.symbols,
        plan.roles,
        plan.candle_every,
        plan.fire_every,
        r.sustained,
        r.ceiling,
        ratio,
        verdict(ratio >= 0.7),
        r.latency_rate,
        r.to_notification,
        r.raw_hop,
        p99_ratio,
        verdict(p99_ratio <= 3.0),
        ms(r.to_notification.p50),
        verdict(r.to_notification.p50 <= Duration::from_millis(10)),
        r.to_telegram
    )
}
