//! The fault suite: the whole system — every role as its own `tickwatch consume <role>`
//! process, the real RabbitMQ (a vhost of its own) and PostgreSQL (a database of its own),
//! a fake Telegram — under a known workload, with one fault injected mid-stream per run.
//! Each run reports what the users would see: notifications expected, delivered, lost,
//! duplicated, out of order, what went to the DLQs (by reason) and how long after the
//! fault the first message reached Telegram.
//!
//! The workload: `users` users with a `crossing_up` rule (every time, no hysteresis) on
//! each of `symbols` symbols, and `crossings` price crossings spread over the run, each
//! firing one notification per user; plus `signal_users` users subscribed to every signal
//! kind (grade B or better) of the real BTCUSDT minute bars of the demo file, whose
//! expected signals come from the same pure engine the signals role runs. Every message
//! text is unique, so a duplicate is the same text twice in a chat.
//!
//! `tickwatch-tests`'s `chaos` binary (`scripts/chaos.sh`) runs every fault and prints the
//! table; the root package's `faults` test runs two of them in CI.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection};
use tickwatch_alerts::template::{Lang, Locale, render_signal};
use tickwatch_broker::{Broker, BrokerConfig, OutgoingMessage, Publisher, Topology, dlq};
use tickwatch_schema::db::entity::subscription;
use tickwatch_schema::db::{new_rule_row, new_user_row, now_ms};
use tickwatch_schema::names::{Exchange, Names, WorkQueue};
use tickwatch_schema::rule::{Condition, RuleSpec, Trigger};
use tickwatch_schema::wire::{Candle, Grade, SignalKind, Tick};
use tickwatch_signals::{SignalEngine, SignalsConfig};
use tokio::process::{Child, Command};

use crate::db::TestDb;
use crate::{FakeTelegram, Reply, Scope, wait_until};

/// One fault, injected once per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// No fault: the baseline.
    None,
    KillAlerts,
    KillNotifier,
    KillSignals,
    /// Every connection of the vhost closed from the broker's side, twice.
    CloseConnections,
    /// `rabbitmqctl stop_app; start_app`: disturbs every user of the broker.
    BrokerRestart,
    /// The database refuses connections and its backends are terminated, for 20 s.
    DatabaseOutage,
    /// Telegram answers 500 for a while, then 429 once to every chat.
    TelegramErrors,
    /// Malformed, wrong-schema, oversized and invalid messages into every exchange.
    PoisonFlood,
    /// Two instances each of alerts and signals over 8 shards; kill -9 of one of each,
    /// restarted once the survivors own every shard.
    ScaleOut,
    /// alerts, signals and recorder each kill -9 themselves in the middle of a batch's
    /// database transaction (a crash point), and are restarted.
    CrashMidWrite,
    /// The same, after a batch's commit and before its outputs are published and its
    /// deliveries acknowledged.
    CrashAfterWrite,
}

impl Fault {
    pub const ALL: [Fault; 12] = [
        Fault::None,
        Fault::KillAlerts,
        Fault::KillNotifier,
        Fault::KillSignals,
        Fault::CloseConnections,
        Fault::BrokerRestart,
        Fault::DatabaseOutage,
        Fault::TelegramErrors,
        Fault::PoisonFlood,
        Fault::ScaleOut,
        Fault::CrashMidWrite,
        Fault::CrashAfterWrite,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::None => "none",
            Fault::KillAlerts => "kill-alerts",
            Fault::KillNotifier => "kill-notifier",
            Fault::KillSignals => "kill-signals",
            Fault::CloseConnections => "close-connections",
            Fault::BrokerRestart => "broker-restart",
            Fault::DatabaseOutage => "database-outage",
            Fault::TelegramErrors => "telegram-errors",
            Fault::PoisonFlood => "poison-flood",
            Fault::ScaleOut => "scale-out",
            Fault::CrashMidWrite => "crash-mid-write",
            Fault::CrashAfterWrite => "crash-after-write",
        }
    }

    /// What the table says the fault was.
    pub fn description(self) -> &'static str {
        match self {
            Fault::None => "none (baseline)",
            Fault::KillAlerts => "kill -9 alerts (restarted after 1 s)",
            Fault::KillNotifier => "kill -9 notifier (restarted after 1 s)",
            Fault::KillSignals => "kill -9 signals (restarted after 1 s)",
            Fault::CloseConnections => "all connections of the vhost closed, twice",
            Fault::BrokerRestart => "rabbitmqctl stop_app; start_app (5 s down)",
            Fault::DatabaseOutage => "PostgreSQL refuses the database for 20 s",
            Fault::TelegramErrors => "Telegram 500 for 8 s, then 429 (2 s) to every chat",
            Fault::PoisonFlood => "poison flood",
            Fault::ScaleOut => {
                "2 × alerts and signals on 8 shards: kill -9 one of each, restart it"
            }
            Fault::CrashMidWrite => {
                "kill -9 of alerts, signals, recorder inside a batch's transaction (restarted)"
            }
            Fault::CrashAfterWrite => {
                "kill -9 of alerts, signals, recorder after a batch's commit, before its acks (restarted)"
            }
        }
    }

    pub fn parse(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The crash points a crash fault arms (`TICKWATCH_CRASH_AT` of the role's first
    /// start): each role dies the n-th time it passes its point, a few seconds into the
    /// workload (alerts write only for batches that fire).
    fn crash_points(self) -> Vec<(&'static str, String)> {
        let point = match self {
            Fault::CrashMidWrite => "batch.mid-write",
            Fault::CrashAfterWrite => "batch.written",
            _ => return Vec::new(),
        };
        [("alerts", 3), ("signals", 20), ("recorder", 30)]
            .into_iter()
            .map(|(role, nth)| (role, format!("{role}.{point}:{nth}")))
            .collect()
    }
}

/// What every run publishes.
#[derive(Debug, Clone)]
pub struct Workload {
    pub users: usize,
    pub symbols: usize,
    /// Price crossings over the run (each fires one notification per user).
    pub crossings: usize,
    pub signal_users: usize,
    /// Minute bars of the demo file fed to the signals role.
    pub candles: usize,
    /// How long publishing the workload takes.
    pub duration: Duration,
    /// When the fault is injected, from the start of publishing.
    pub fault_at: Duration,
    /// Poison messages of the flood.
    pub poison: usize,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            users: 20,
            symbols: 10,
            crossings: 40,
            signal_users: 5,
            candles: 300,
            duration: Duration::from_secs(20),
            fault_at: Duration::from_secs(6),
            poison: 1_000,
        }
    }
}

/// Where the suite runs.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The `tickwatch` binary the roles run as.
    pub binary: PathBuf,
    pub workload: Workload,
    /// Logs of the roles, one directory per run.
    pub work_dir: PathBuf,
    /// The broker without a vhost: `amqp://guest:guest@127.0.0.1:5672`.
    pub amqp: String,
    /// The demo minute bars (`data/demo/BTCUSDT_1m.csv`).
    pub candles_file: PathBuf,
}

impl Suite {
    /// The local services and the repository's demo file, with `binary`.
    pub fn local(binary: PathBuf) -> Suite {
        Suite {
            binary,
            workload: Workload::default(),
            work_dir: std::env::temp_dir().join("tickwatch-faults"),
            amqp: std::env::var("TICKWATCH_FAULTS_AMQP")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672".into()),
            candles_file: PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../data/demo/BTCUSDT_1m.csv"
            )),
        }
    }
}

/// One run's result, as users and operators would see it.
#[derive(Debug, Clone)]
pub struct Row {
    pub fault: Fault,
    pub expected: usize,
    /// Distinct expected messages that reached their chat.
    pub delivered: usize,
    pub lost: usize,
    /// Extra copies of messages already delivered.
    pub duplicated: usize,
    /// Of those, the ones in the window no system can close: Telegram accepted the
    /// message, and the notifier died before recording it.
    pub unavoidable: usize,
    /// Messages that reached a chat after a later one of the same chat.
    pub out_of_order: usize,
    /// DLQ depth by reason, over every work queue.
    pub dead_lettered: BTreeMap<String, u64>,
    /// From the end of the fault to the first message accepted by Telegram.
    pub first_send_after: Option<Duration>,
    /// ERROR lines the roles logged.
    pub error_lines: usize,
    pub took: Duration,
    pub notes: Vec<String>,
    /// Scale-out: from the kill to the survivors active on every shard, and from the
    /// restart to the shards split evenly again.
    pub takeover: Option<Duration>,
    pub rebalance: Option<Duration>,
    /// Closed candles published, and those the database holds at the end (the recorder
    /// and signals roles store them; a candle is one row however often it is written).
    pub candles_published: usize,
    pub candles_stored: usize,
}

impl Row {
    /// No loss, no duplicate beyond the unavoidable window, in order, every candle stored.
    pub fn is_clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == self.unavoidable
            && self.out_of_order == 0
            && self.candles_stored == self.candles_published
    }
}

/// The rows as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| fault | expected | delivered | lost | duplicated | out of order | dead-lettered | first send after the fault | candles stored | error log lines |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let dead = if r.dead_lettered.is_empty() {
            "0".to_string()
        } else {
            r.dead_lettered
                .iter()
                .map(|(reason, n)| format!("{n} {reason}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let dup = if r.unavoidable > 0 {
            format!("{} ({} unavoidable)", r.duplicated, r.unavoidable)
        } else {
            r.duplicated.to_string()
        };
        let first = r
            .first_send_after
            .map_or("—".to_string(), |d| format!("{:.1} s", d.as_secs_f64()));
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {}/{} | {} |\n",
            r.fault.description(),
            r.expected,
            r.delivered,
            r.lost,
            dup,
            r.out_of_order,
            dead,
            first,
            r.candles_stored,
            r.candles_published,
            r.error_lines
        ));
    }
    out
}

/// Why a run could not be made (not a finding about tickwatch: a broken test setup).
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    #[error("setting up: {0}")]
    Setup(String),
}

impl SuiteError {
    pub fn is_retryable(&self) -> bool {
        false
    }
}

fn setup<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> SuiteError + '_ {
    move |e| SuiteError::Setup(format!("{what}: {e}"))
}

const ROLES: [&str; 5] = ["recorder", "signals", "alerts", "notifier", "paper"];
/// The roles the scale-out run starts twice, and their shards.
const SCALED: [&str; 2] = ["alerts", "signals"];
const SHARDS: usize = 8;

/// The name of a role's second instance.
fn second(role: &str) -> String {
    format!("{role}#2")
}

/// How long shards took to move in the scale-out run.
#[derive(Debug, Default)]
struct Handover {
    takeover: Option<Duration>,
    rebalance: Option<Duration>,
}

/// Active shards per instance when two share them evenly, and when one has them all.
const EVEN: [usize; 2] = [SHARDS / 2, SHARDS / 2];
const ALL: [usize; 1] = [SHARDS];

/// How long until, for every scaled role, the instances are the active consumers of
/// `split` shards each (within 30 s; `None` past that).
async fn time_to_split(
    management: &ManagementApi,
    vhost: &str,
    names: &Names,
    split: &[usize],
) -> Option<Duration> {
    let begun = Instant::now();
    let reached = wait_until(Duration::from_secs(30), || async {
        for role in SCALED {
            let active = management
                .active_by_instance(vhost, &role_queue(names, role))
                .await;
            if active.values().copied().collect::<Vec<_>>() != split {
                return false;
            }
        }
        true
    })
    .await;
    reached.then(|| begun.elapsed())
}

fn role_queue(names: &Names, role: &str) -> String {
    let queue = WorkQueue::ALL
        .into_iter()
        .find(|q| q.role() == role)
        .unwrap_or(WorkQueue::Alerts);
    names.queue(queue)
}
const TOKEN: &str = "424242:FAULT-SUITE";
const VENUE: &str = "binance";
const LOW: i64 = 100;

/// Runs the workload with `fault` once, on a fresh vhost and database.
pub async fn run(suite: &Suite, fault: Fault) -> Result<Row, SuiteError> {
    let started = Instant::now();
    let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let vhost = format!("tw-faults-{id}");
    let management = ManagementApi::new(&suite.amqp).map_err(setup("management API"))?;
    management.create_vhost(&vhost).await?;
    let result = run_on(suite, fault, &vhost, &management, started).await;
    let _ = management.delete_vhost(&vhost).await;
    result
}

async fn run_on(
    suite: &Suite,
    fault: Fault,
    vhost: &str,
    management: &ManagementApi,
    started: Instant,
) -> Result<Row, SuiteError> {
    let w = &suite.workload;
    let db = TestDb::postgres().await.map_err(setup("PostgreSQL"))?;
    let scale_out = fault == Fault::ScaleOut;
    let broker_config = BrokerConfig {
        url: format!("{}/{vhost}", suite.amqp),
        shards: if scale_out {
            SCALED.iter().map(|r| (r.to_string(), SHARDS)).collect()
        } else {
            BTreeMap::new()
        },
        ..BrokerConfig::default()
    };
    let broker = Broker::connect(broker_config.clone(), "faults")
        .await
        .map_err(setup("RabbitMQ"))?;
    let topology = Topology::standard(&broker_config).map_err(setup("topology"))?;
    topology.apply(&broker).await.map_err(setup("topology"))?;
    let fake = FakeTelegram::start()
        .await
        .map_err(setup("fake Telegram"))?;

    let alert_chats = seed_rules(&db.conn, w).await?;
    let signal_chats = seed_subscriptions(&db.conn, w).await?;
    let candles = read_candles(&suite.candles_file, w.candles)?;
    let mut expected = expected_alerts(w);
    expected.extend(expected_signals(&candles, &signal_chats)?);

    let log_dir = suite.work_dir.join(format!("{}-{vhost}", fault.name()));
    std::fs::create_dir_all(&log_dir).map_err(setup("log directory"))?;
    let mut deployment = Deployment {
        binary: suite.binary.clone(),
        log_dir: log_dir.clone(),
        env: vec![
            ("AMQP_URL".into(), broker_config.url.clone()),
            ("DATABASE_URL".into(), db.url.clone()),
            // Up to eight processes a run, while other tests use the same server.
            ("TICKWATCH_DATABASE__POOL_SIZE".into(), "4".into()),
            ("TELEGRAM_BOT_TOKEN".into(), TOKEN.into()),
            ("TELEGRAM_API_URL".into(), fake.url()),
            ("TICKWATCH_ADMIN_ADDR".into(), "127.0.0.1:0".into()),
            // The fake imposes no limits; relaxed ones keep a run to a minute (the
            // limits themselves are tested elsewhere).
            (
                "TICKWATCH_NOTIFIER__LIMITS__CHAT_INTERVAL_MS".into(),
                "200".into(),
            ),
            (
                "TICKWATCH_NOTIFIER__LIMITS__GLOBAL_PER_SECOND".into(),
                "100".into(),
            ),
            (
                "RUST_LOG".into(),
                std::env::var("TICKWATCH_FAULTS_RUST_LOG").unwrap_or_else(|_| "info".into()),
            ),
            ("NO_COLOR".into(), "1".into()),
        ],
        roles: HashMap::new(),
        starts: 0,
    };
    if scale_out {
        for role in SCALED {
            deployment.env.push((
                format!("TICKWATCH_BROKER__SHARDS__{}", role.to_uppercase()),
                SHARDS.to_string(),
            ));
        }
    }
    let crash_points = fault.crash_points();
    for role in ROLES {
        let armed: Vec<(String, String)> = crash_points
            .iter()
            .filter(|(r, _)| *r == role)
            .map(|(_, point)| (tickwatch_broker::crash::ENV.to_string(), point.clone()))
            .collect();
        deployment.spawn_with(role, role, &armed)?;
    }
    if scale_out {
        for role in SCALED {
            deployment.spawn(&second(role), role)?;
        }
    }
    let names = broker.names().clone();
    let work_queues: Vec<String> = WorkQueue::ALL
        .iter()
        .flat_map(|q| topology.work_queues_of(&names.queue(*q)))
        .map(|spec| spec.name)
        .collect();
    if !wait_until(Duration::from_secs(60), || async {
        management.consumers_on(vhost, &work_queues).await
    })
    .await
    {
        deployment.stop_all().await;
        return Err(SuiteError::Setup(format!(
            "the roles did not start consuming within 60 s; logs in {}",
            log_dir.display()
        )));
    }

    let mut notes = Vec::new();
    if scale_out {
        let Some(took) = time_to_split(management, vhost, &names, &EVEN).await else {
            deployment.stop_all().await;
            return Err(SuiteError::Setup(format!(
                "two instances did not split the shards 4/4 within 30 s; logs in {}",
                log_dir.display()
            )));
        };
        notes.push(format!(
            "split 4/4 {:.1} s after every queue had a consumer",
            took.as_secs_f64()
        ));
    }
    let publisher = Publisher::start(&broker, "faults");
    let mut fault_window = (Instant::now(), Instant::now());
    let mut handover = Handover::default();
    {
        let publishing = publish_workload(&publisher, w, &candles);
        tokio::pin!(publishing);
        let fault_after = tokio::time::sleep(w.fault_at);
        tokio::pin!(fault_after);
        let mut injected = false;
        loop {
            tokio::select! {
                result = &mut publishing => {
                    result?;
                    break;
                }
                _ = &mut fault_after, if !injected => {
                    injected = true;
                    let begun = Instant::now();
                    inject(fault, &mut deployment, &fake, management, vhost, &publisher, &broker, &db, w, &mut notes, &mut handover).await?;
                    fault_window = (begun, Instant::now());
                }
            }
        }
        if !injected {
            let begun = Instant::now();
            inject(
                fault,
                &mut deployment,
                &fake,
                management,
                vhost,
                &publisher,
                &broker,
                &db,
                w,
                &mut notes,
                &mut handover,
            )
            .await?;
            fault_window = (begun, Instant::now());
        }
    }
    if fault == Fault::None {
        fault_window = (started, started);
    }

    // Done when everything expected arrived and nothing is left anywhere in the broker;
    // bounded in case something was lost.
    let expected_texts: HashSet<(i64, String)> = expected.iter().cloned().collect();
    let all_queues: Vec<String> = work_queues
        .iter()
        .flat_map(|q| {
            std::iter::once(q.clone()).chain((1..=3).map(move |tier| format!("{q}.retry.{tier}")))
        })
        .collect();
    let settled = wait_until(Duration::from_secs(180), || async {
        delivered_distinct(&fake, &expected_texts) >= expected_texts.len()
            && management.all_empty(vhost, &all_queues).await
    })
    .await;
    if !settled {
        notes.push("did not settle within 180 s".into());
    }
    // Late copies (a redelivery still on its way) would show within a few seconds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    publisher.close().await;
    deployment.stop_all().await;

    let dead = dlq::list(&broker, &topology)
        .await
        .map_err(setup("DLQ list"))?;
    let mut dead_lettered = BTreeMap::new();
    for summary in dead {
        for (reason, n) in summary.by_reason {
            *dead_lettered.entry(reason).or_insert(0) += n;
        }
    }
    broker.close();

    let delivered_messages = fake.delivered();
    let mut seen: HashMap<(i64, String), usize> = HashMap::new();
    let mut last_index: HashMap<i64, usize> = HashMap::new();
    let order: HashMap<(i64, String), usize> = expected
        .iter()
        .enumerate()
        .map(|(i, key)| (key.clone(), i))
        .collect();
    let mut out_of_order = 0;
    let mut unexpected = 0;
    let mut first_send_after = None;
    let mut duplicates_at = Vec::new();
    for m in &delivered_messages {
        let key = (m.chat_id, m.visible_text.clone().unwrap_or_default());
        if fault != Fault::None && first_send_after.is_none() && m.at >= fault_window.1 {
            first_send_after = Some(m.at - fault_window.1);
        }
        let copies = seen.entry(key.clone()).or_insert(0);
        *copies += 1;
        if *copies > 1 {
            duplicates_at.push(m.at);
            continue;
        }
        match order.get(&key) {
            Some(&index) => {
                if let Some(&last) = last_index.get(&m.chat_id)
                    && index < last
                {
                    out_of_order += 1;
                }
                last_index.insert(m.chat_id, index);
            }
            None => unexpected += 1,
        }
    }
    if unexpected > 0 {
        notes.push(format!("{unexpected} unexpected messages"));
    }
    let delivered = delivered_distinct(&fake, &expected_texts);
    let duplicated = duplicates_at.len();
    // A kill -9 of the notifier can leave one message per in-flight chat sent but not
    // recorded; their second copies come after the restart.
    let unavoidable = if fault == Fault::KillNotifier {
        duplicates_at
            .iter()
            .filter(|at| **at >= fault_window.1)
            .count()
            .min(64)
    } else {
        0
    };
    let error_lines = count_error_lines(&log_dir);
    let candles_stored = stored_candles(&db.conn, &candles).await?;
    if candles_stored != candles.len() {
        notes.push(format!(
            "{} of {} closed candles stored",
            candles_stored,
            candles.len()
        ));
    }
    drop(alert_chats);
    if std::env::var_os("TICKWATCH_FAULTS_KEEP").is_some() {
        // For a post-mortem: the database stays (and its URL is noted).
        notes.push(format!("database kept: {}", db.url));
        std::mem::forget(db);
    } else {
        let _ = db.close().await;
    }
    Ok(Row {
        fault,
        expected: expected_texts.len(),
        delivered,
        lost: expected_texts.len() - delivered.min(expected_texts.len()),
        duplicated,
        unavoidable,
        out_of_order,
        dead_lettered,
        first_send_after,
        error_lines,
        took: started.elapsed(),
        notes,
        takeover: handover.takeover,
        rebalance: handover.rebalance,
        candles_published: candles.len(),
        candles_stored,
    })
}

/// How many of the published candles the database holds.
async fn stored_candles(db: &DatabaseConnection, candles: &[Candle]) -> Result<usize, SuiteError> {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    use tickwatch_schema::db::entity::candle;
    let Some(first) = candles.first() else {
        return Ok(0);
    };
    let count = candle::Entity::find()
        .filter(candle::Column::Venue.eq(first.venue.as_str()))
        .filter(candle::Column::Symbol.eq(first.symbol.as_str()))
        .filter(candle::Column::Interval.eq(first.interval.as_str()))
        .filter(candle::Column::OpenTs.is_in(candles.iter().map(|c| c.open_ts)))
        .count(db)
        .await
        .map_err(setup("counting stored candles"))?;
    Ok(count as usize)
}

fn delivered_distinct(fake: &FakeTelegram, expected: &HashSet<(i64, String)>) -> usize {
    fake.delivered()
        .into_iter()
        .map(|m| (m.chat_id, m.visible_text.unwrap_or_default()))
        .filter(|key| expected.contains(key))
        .collect::<HashSet<_>>()
        .len()
}

#[allow(clippy::too_many_arguments)]
async fn inject(
    fault: Fault,
    deployment: &mut Deployment,
    fake: &FakeTelegram,
    management: &ManagementApi,
    vhost: &str,
    publisher: &Publisher,
    broker: &Broker,
    db: &TestDb,
    w: &Workload,
    notes: &mut Vec<String>,
    handover: &mut Handover,
) -> Result<(), SuiteError> {
    match fault {
        Fault::None => {}
        Fault::ScaleOut => {
            let names = broker.names().clone();
            for role in SCALED {
                deployment.kill9(&second(role)).await;
            }
            handover.takeover = time_to_split(management, vhost, &names, &ALL).await;
            notes.push(match handover.takeover {
                Some(took) => format!(
                    "kill -9 → the survivors active on all {SHARDS} shards in {:.1} s",
                    took.as_secs_f64()
                ),
                None => "the survivors did not take every shard within 30 s".into(),
            });
            for role in SCALED {
                deployment.spawn(&second(role), role)?;
            }
            handover.rebalance = time_to_split(management, vhost, &names, &EVEN).await;
            notes.push(match handover.rebalance {
                Some(took) => format!("restart → 4/4 again in {:.1} s", took.as_secs_f64()),
                None => "the shards were not split 4/4 again within 30 s".into(),
            });
        }
        Fault::KillAlerts | Fault::KillNotifier | Fault::KillSignals => {
            let role = match fault {
                Fault::KillAlerts => "alerts",
                Fault::KillNotifier => "notifier",
                _ => "signals",
            };
            deployment.kill9(role).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            deployment.spawn(role, role)?;
        }
        Fault::CloseConnections => {
            for round in 0..2 {
                if round > 0 {
                    // Again once every role is back (the broker lists their connections).
                    wait_until(Duration::from_secs(30), || async {
                        management.connection_count(vhost).await >= ROLES.len()
                    })
                    .await;
                }
                let closed = management.close_connections(vhost).await?;
                notes.push(format!("{closed} connections closed"));
            }
        }
        Fault::BrokerRestart => {
            rabbitmqctl("stop_app").await?;
            tokio::time::sleep(Duration::from_secs(5)).await;
            rabbitmqctl("start_app").await?;
            // RabbitMQ 3.10 sometimes comes back from start_app without the supervisor of
            // quorum queues' at-least-once dead-lettering; every later run would then fail
            // to declare its queues. Restart the application again until it is there.
            for _ in 0..3 {
                if dead_letter_supervisor_running().await? {
                    break;
                }
                notes.push("broker came back without rabbit_fifo_dlx_sup: restarted again".into());
                rabbitmqctl("stop_app").await?;
                rabbitmqctl("start_app").await?;
            }
        }
        Fault::DatabaseOutage => {
            let name = database_name(&db.url);
            let admin = tickwatch_schema::db::connect(crate::db::DEFAULT_PG_ADMIN_URL)
                .await
                .map_err(setup("PostgreSQL admin"))?;
            let exec = |sql: String| {
                let admin = admin.clone();
                async move { admin.execute_unprepared(&sql).await.map(drop) }
            };
            exec(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
                .await
                .map_err(setup("refusing connections"))?;
            exec(format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ))
            .await
            .map_err(setup("terminating backends"))?;
            tokio::time::sleep(Duration::from_secs(20)).await;
            exec(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true"))
                .await
                .map_err(setup("allowing connections"))?;
            let _ = admin.close().await;
        }
        Fault::TelegramErrors => {
            fake.set_persistent(Scope::Global, Some(Reply::ServerError));
            tokio::time::sleep(Duration::from_secs(8)).await;
            fake.set_persistent(Scope::Global, None);
            for user in 0..w.users {
                fake.script(Scope::Chat(alert_chat(user)), [Reply::RetryAfter(2)]);
            }
        }
        Fault::PoisonFlood => {
            let sent = publish_poison(publisher, broker, w.poison).await?;
            notes.push(format!("{sent} poison messages"));
        }
        Fault::CrashMidWrite | Fault::CrashAfterWrite => {
            for (role, point) in fault.crash_points() {
                match deployment.exit_of(role, Duration::from_secs(60)).await {
                    Some(status) => notes.push(format!("{role} died at {point} ({status})")),
                    None => {
                        return Err(SuiteError::Setup(format!(
                            "{role} did not reach its crash point {point} within 60 s"
                        )));
                    }
                }
                deployment.spawn(role, role)?;
            }
        }
    }
    Ok(())
}

async fn rabbitmqctl(command: &str) -> Result<(), SuiteError> {
    let status = Command::new("rabbitmqctl")
        .arg(command)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map_err(setup("rabbitmqctl"))?;
    if status.success() {
        Ok(())
    } else {
        Err(SuiteError::Setup(format!(
            "rabbitmqctl {command}: {status}"
        )))
    }
}

/// Whether the broker runs `rabbit_fifo_dlx_sup` (`whereis` answers a pid, not `undefined`).
async fn dead_letter_supervisor_running() -> Result<bool, SuiteError> {
    let output = Command::new("rabbitmqctl")
        .args(["eval", "whereis(rabbit_fifo_dlx_sup)."])
        .stderr(Stdio::null())
        .output()
        .await
        .map_err(setup("rabbitmqctl eval"))?;
    Ok(output.status.success() && String::from_utf8_lossy(&output.stdout).contains('<'))
}

fn database_name(url: &str) -> String {
    url.rsplit('/')
        .next()
        .unwrap_or_default()
        .split('?')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn alert_chat(user: usize) -> i64 {
    1_000 + user as i64
}

fn signal_chat(user: usize) -> i64 {
    2_000 + user as i64
}

fn symbol(index: usize) -> String {
    format!("FAULT{index}")
}

/// The price of crossing `k`: above every threshold, and unique, so every message is.
fn crossing_price(k: usize) -> Decimal {
    Decimal::from(121) + Decimal::new(k as i64 + 1, 4)
}

async fn insert_user(db: &DatabaseConnection, chat: i64) -> Result<i64, SuiteError> {
    let row = new_user_row(format!("faults{chat}"), Some(chat), "en", now_ms())
        .insert(db)
        .await
        .map_err(setup("inserting a user"))?;
    Ok(row.id)
}

/// Users with one rule per symbol; their chat ids.
async fn seed_rules(db: &DatabaseConnection, w: &Workload) -> Result<Vec<i64>, SuiteError> {
    let mut chats = Vec::new();
    for u in 0..w.users {
        let chat = alert_chat(u);
        let user_id = insert_user(db, chat).await?;
        for s in 0..w.symbols {
            // Thresholds between the low price and every crossing price.
            let threshold = Decimal::from(LOW + 1) + Decimal::new(u as i64, 1);
            let mut spec = RuleSpec::price(VENUE, &symbol(s), Condition::CrossingUp, threshold);
            spec.trigger = Trigger::EveryTime;
            spec.hysteresis_pct = Some(Decimal::ZERO);
            spec.template = Some("fault {{symbol}} {{price}}".into());
            new_rule_row(user_id, &spec, true, now_ms())
                .insert(db)
                .await
                .map_err(setup("inserting a rule"))?;
        }
        chats.push(chat);
    }
    Ok(chats)
}

/// Users subscribed to every signal kind (grade B or better); their chat ids.
async fn seed_subscriptions(db: &DatabaseConnection, w: &Workload) -> Result<Vec<i64>, SuiteError> {
    let mut chats = Vec::new();
    for u in 0..w.signal_users {
        let chat = signal_chat(u);
        let user_id = insert_user(db, chat).await?;
        for kind in SignalKind::ALL {
            subscription::ActiveModel {
                user_id: Set(user_id),
                kind: Set(kind.as_str().to_string()),
                symbol: Set(None),
                min_grade: Set(Grade::B.as_str().to_string()),
                active: Set(true),
                version: Set(1),
                created_at: Set(now_ms()),
                ..Default::default()
            }
            .insert(db)
            .await
            .map_err(setup("inserting a subscription"))?;
        }
        chats.push(chat);
    }
    Ok(chats)
}

fn read_candles(path: &Path, count: usize) -> Result<Vec<Candle>, SuiteError> {
    let reader = tickwatch_schema::history::open(path, Some(VENUE), Some("BTCUSDT"), None)
        .map_err(setup("the demo file"))?;
    reader
        .take(count)
        .collect::<Result<Vec<_>, _>>()
        .map_err(setup("the demo file"))
}

/// Every alert notification, in publish order, as (chat, visible text).
fn expected_alerts(w: &Workload) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for k in 0..w.crossings {
        for u in 0..w.users {
            out.push((
                alert_chat(u),
                format!("fault {} {}", symbol(k % w.symbols), crossing_price(k)),
            ));
        }
    }
    out
}

/// Every signal notification: the pure engine over the same candles.
fn expected_signals(candles: &[Candle], chats: &[i64]) -> Result<Vec<(i64, String)>, SuiteError> {
    let mut engine = SignalEngine::new(SignalsConfig::default()).map_err(setup("signals"))?;
    let mut out = Vec::new();
    for candle in candles {
        for output in engine.process(candle) {
            let Some(signal) = output.as_signal() else {
                continue;
            };
            if !signal.grade.meets(Grade::B) {
                continue;
            }
            let text = render_signal(None, Locale::of(Lang::En), signal);
            for chat in chats {
                out.push((*chat, text.clone()));
            }
        }
    }
    Ok(out)
}

/// The crossings and candles, spread over `duration`; then waits for every confirm.
async fn publish_workload(
    publisher: &Publisher,
    w: &Workload,
    candles: &[Candle],
) -> Result<(), SuiteError> {
    let ts = now_ms();
    // Every symbol starts below every threshold.
    for s in 0..w.symbols {
        publish_tick(publisher, &symbol(s), Decimal::from(LOW), ts).await?;
    }
    let steps = w.crossings.max(candles.len()).max(1);
    let pause = w.duration / steps as u32;
    let per_step_candles = candles.len() as f64 / steps as f64;
    let per_step_crossings = w.crossings as f64 / steps as f64;
    let (mut next_candle, mut next_crossing) = (0usize, 0usize);
    for step in 0..steps {
        let candles_due = ((step + 1) as f64 * per_step_candles).round() as usize;
        while next_candle < candles_due.min(candles.len()) {
            publisher
                .publish(Exchange::Market, &candles[next_candle])
                .await
                .map_err(setup("publishing a candle"))?;
            next_candle += 1;
        }
        let crossings_due = ((step + 1) as f64 * per_step_crossings).round() as usize;
        while next_crossing < crossings_due.min(w.crossings) {
            let s = symbol(next_crossing % w.symbols);
            let now = now_ms();
            publish_tick(publisher, &s, crossing_price(next_crossing), now).await?;
            publish_tick(publisher, &s, Decimal::from(LOW), now + 1).await?;
            next_crossing += 1;
        }
        tokio::time::sleep(pause).await;
    }
    Ok(())
}

async fn publish_tick(
    publisher: &Publisher,
    symbol: &str,
    price: Decimal,
    ts: i64,
) -> Result<(), SuiteError> {
    let tick = Tick {
        venue: VENUE.into(),
        symbol: symbol.into(),
        price,
        qty: Decimal::ONE,
        ts,
        trade_id: None,
    };
    // Publishing survives the faults: a confirm lost to a broker restart is retried.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match publisher.publish(Exchange::Market, &tick).await {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, "publishing a tick failed; again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(SuiteError::Setup(format!("publishing a tick: {e}"))),
        }
    }
}

/// Malformed JSON, wrong schema versions, wrong types, 1 MB bodies, invalid UTF-8,
/// NaN / zero / negative prices, into the market and notify exchanges.
async fn publish_poison(
    publisher: &Publisher,
    broker: &Broker,
    count: usize,
) -> Result<usize, SuiteError> {
    use tickwatch_broker::headers;
    use tickwatch_broker::publisher::{Headers, json_properties};
    let names = broker.names();
    let market = names.exchange(Exchange::Market);
    let notify = names.exchange(Exchange::Notify);
    let huge = format!(
        r#"{{"venue":"binance","symbol":"{}","price":"1","qty":"1","ts":1763762400123}}"#,
        "X".repeat(1 << 20)
    );
    let kinds: Vec<(String, &str, Vec<u8>, i64)> = vec![
        (market.clone(), "tick", b"{not json".to_vec(), 1),
        (
            market.clone(),
            "tick",
            br#"{"venue":"binance","symbol":"FAULT0","price":"1","qty":"1","ts":1763762400123}"#
                .to_vec(),
            99,
        ),
        (
            market.clone(),
            "tick",
            br#"{"venue":"binance","symbol":"FAULT0","price":64000,"qty":[],"ts":"x"}"#.to_vec(),
            1,
        ),
        (market.clone(), "tick", huge.into_bytes(), 1),
        (market.clone(), "tick", vec![0xff, 0xfe, b'{', 0x80], 1),
        (
            market.clone(),
            "tick",
            br#"{"venue":"binance","symbol":"FAULT0","price":"NaN","qty":"1","ts":1763762400123}"#
                .to_vec(),
            1,
        ),
        (
            market.clone(),
            "tick",
            br#"{"venue":"binance","symbol":"FAULT0","price":"0","qty":"1","ts":1763762400123}"#
                .to_vec(),
            1,
        ),
        (
            market.clone(),
            "tick",
            br#"{"venue":"binance","symbol":"FAULT0","price":"-5","qty":"1","ts":1763762400123}"#
                .to_vec(),
            1,
        ),
        (
            notify.clone(),
            "notification",
            br#"{"id":"nope","channel":"telegram","chat_id":"x","text":""}"#.to_vec(),
            1,
        ),
        (notify.clone(), "notification", b"[]".to_vec(), 1),
    ];
    let mut confirms = Vec::with_capacity(count);
    for i in 0..count {
        let (exchange, kind, body, schema) = &kinds[i % kinds.len()];
        let mut table = Headers::default();
        headers::set_i64(&mut table, "tw-schema", *schema);
        let routing_key = if kind == &"tick" {
            "tick.binance.FAULT0".to_string()
        } else {
            "telegram".to_string()
        };
        confirms.push(
            publisher
                .send_raw(OutgoingMessage {
                    exchange: exchange.clone(),
                    routing_key,
                    body: body.clone(),
                    properties: json_properties(kind, table),
                    mandatory: true,
                })
                .await
                .map_err(setup("publishing poison"))?,
        );
    }
    for confirm in confirms {
        confirm.wait().await.map_err(setup("poison confirm"))?;
    }
    Ok(count)
}

fn count_error_lines(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|text| text.lines().filter(|l| l.contains(" ERROR ")).count())
        .sum()
}

/// Polls `done` every 200 ms until it holds or `timeout` passed.
/// The role processes of one run.
struct Deployment {
    binary: PathBuf,
    log_dir: PathBuf,
    env: Vec<(String, String)>,
    /// By instance name: the role, or `<role>#2` for a second instance.
    roles: HashMap<String, Child>,
    starts: usize,
}

impl Deployment {
    fn spawn(&mut self, name: &str, role: &str) -> Result<(), SuiteError> {
        self.spawn_with(name, role, &[])
    }

    /// [`Deployment::spawn`] with more environment variables for this start only.
    fn spawn_with(
        &mut self,
        name: &str,
        role: &str,
        extra_env: &[(String, String)],
    ) -> Result<(), SuiteError> {
        self.starts += 1;
        let file = format!("{}-{}.log", name.replace('#', "-"), self.starts);
        let log = std::fs::File::create(self.log_dir.join(file)).map_err(setup("a log file"))?;
        let err = log.try_clone().map_err(setup("a log file"))?;
        let child = Command::new(&self.binary)
            .args(["consume", role])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra_env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("TICKWATCH_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .map_err(setup("starting a role"))?;
        self.roles.insert(name.to_string(), child);
        Ok(())
    }

    /// Waits up to `timeout` for the instance to end by itself; its exit status.
    async fn exit_of(&mut self, name: &str, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.roles.get_mut(name)?;
        let status = tokio::time::timeout(timeout, child.wait())
            .await
            .ok()?
            .ok()?;
        self.roles.remove(name);
        Some(status)
    }

    async fn kill9(&mut self, role: &str) {
        if let Some(mut child) = self.roles.remove(role) {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// SIGTERM to every role, then up to 30 s for them to finish.
    async fn stop_all(&mut self) {
        for child in self.roles.values() {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
        }
        for (_, mut child) in self.roles.drain() {
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}

/// The few management API calls the suite needs.
struct ManagementApi {
    base: String,
    user: String,
    pass: String,
    client: reqwest::Client,
}

impl ManagementApi {
    fn new(amqp: &str) -> Result<Self, tickwatch_broker::Error> {
        let config = BrokerConfig {
            url: format!("{amqp}/%2f"),
            ..BrokerConfig::default()
        };
        let (base, user, pass, _) = config.management_base()?;
        Ok(ManagementApi {
            base,
            user,
            pass,
            client: reqwest::Client::new(),
        })
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SuiteError> {
        request
            .basic_auth(&self.user, Some(&self.pass))
            .send()
            .await
            .map_err(setup("management API"))
    }

    async fn create_vhost(&self, vhost: &str) -> Result<(), SuiteError> {
        let url = format!("{}/api/vhosts/{vhost}", self.base);
        self.send(self.client.put(url)).await?;
        let url = format!("{}/api/permissions/{vhost}/{}", self.base, self.user);
        let permissions = serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"});
        let response = self.send(self.client.put(url).json(&permissions)).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(SuiteError::Setup(format!(
                "permissions on {vhost}: HTTP {}",
                response.status()
            )))
        }
    }

    async fn delete_vhost(&self, vhost: &str) -> Result<(), SuiteError> {
        let url = format!("{}/api/vhosts/{vhost}", self.base);
        self.send(self.client.delete(url)).await.map(drop)
    }

    /// The JSON array at `path` of the management API; empty when it cannot be had.
    async fn list(&self, path: &str) -> Vec<serde_json::Value> {
        let url = format!("{}/api/{path}", self.base);
        match self.send(self.client.get(url)).await {
            Ok(response) => response
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        }
    }

    async fn queues(&self, vhost: &str) -> Vec<serde_json::Value> {
        self.list(&format!("queues/{vhost}")).await
    }

    /// For the shards of `queue`: how many each instance is the active consumer of (the
    /// instance from the consumer tag, `tickwatch/<role>/<instance>:…`).
    async fn active_by_instance(&self, vhost: &str, queue: &str) -> BTreeMap<String, usize> {
        let consumers = self.list(&format!("consumers/{vhost}")).await;
        let shard_prefix = format!("{queue}.shard.");
        let mut active = BTreeMap::new();
        for c in consumers {
            let on_shard = c["queue"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&shard_prefix));
            if !on_shard || c["active"].as_bool() != Some(true) {
                continue;
            }
            let instance = c["consumer_tag"]
                .as_str()
                .and_then(|t| t.split(':').next())
                .unwrap_or_default()
                .to_string();
            *active.entry(instance).or_insert(0) += 1;
        }
        active
    }

    /// Whether every one of `queues` has a consumer.
    async fn consumers_on(&self, vhost: &str, queues: &[String]) -> bool {
        let all = self.queues(vhost).await;
        queues.iter().all(|name| {
            all.iter().any(|q| {
                q["name"].as_str() == Some(name.as_str()) && q["consumers"].as_u64() >= Some(1)
            })
        })
    }

    /// Whether every one of `queues` (those that exist) holds no message.
    async fn all_empty(&self, vhost: &str, queues: &[String]) -> bool {
        let all = self.queues(vhost).await;
        if all.is_empty() {
            return false;
        }
        all.iter()
            .filter(|q| {
                q["name"]
                    .as_str()
                    .is_some_and(|n| queues.iter().any(|w| w == n))
            })
            .all(|q| q["messages"].as_u64() == Some(0))
    }

    async fn connections(&self, vhost: &str) -> Vec<serde_json::Value> {
        self.list(&format!("vhosts/{vhost}/connections")).await
    }

    async fn connection_count(&self, vhost: &str) -> usize {
        self.connections(vhost).await.len()
    }

    async fn close_connections(&self, vhost: &str) -> Result<usize, SuiteError> {
        let mut closed = 0;
        for c in self.connections(vhost).await {
            let Some(name) = c["name"].as_str() else {
                continue;
            };
            let url = format!(
                "{}/api/connections/{}",
                self.base,
                tickwatch_broker::management::encode(name)
            );
            if self
                .send(self.client.delete(url).header("X-Reason", "fault suite"))
                .await
                .is_ok()
            {
                closed += 1;
            }
        }
        Ok(closed)
    }
}
