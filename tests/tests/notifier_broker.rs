//! The notifier role end to end: notifications published to the real RabbitMQ, consumed by
//! `tickwatch_notifier::adapter::run`, delivered to the fake Telegram Bot API server, with
//! the delivery records in a fresh database. Every test asserts what the user sees (the
//! messages in the fake's chats) and what stays behind in the broker (queue depths, DLQ).
//!
//! Each test has its own broker prefix (`twt-<tag>-<uuid8>`), database and fake, and
//! removes its broker entities at the end.

use std::time::{Duration, Instant};

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
};
use tickwatch_broker::management::Management;
use tickwatch_broker::{Broker, BrokerConfig, Publisher, Topology, dlq};
use tickwatch_notifier::{MarkdownV2, NotifierConfig, Secret};
use tickwatch_schema::db::SETTING_NOTIFICATIONS_HALTED;
use tickwatch_schema::db::entity::{notification, setting, user};
use tickwatch_schema::names::{Exchange, WorkQueue};
use tickwatch_schema::wire::{Channel, Control, EventKind, Notification, ParseMode};
use tickwatch_tests::db::TestDb;
use tickwatch_tests::{FakeTelegram, Reply, Scope, SentMessage, wait_until};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "123456:TEST-TOKEN";
/// Long enough for the management API's statistics to catch up (they lag a few seconds).
const WAIT: Duration = Duration::from_secs(20);
/// Short retry tiers: attempt 2, 3 and 4 come 150, 300 and 600 ms after a failure.
const RETRY_DELAYS_MS: [u64; 3] = [150, 300, 600];

fn broker_config(tag: &str) -> BrokerConfig {
    BrokerConfig {
        retry_delays_ms: RETRY_DELAYS_MS.to_vec(),
        prefetch: 64,
        ack_batch: 32,
        reconnect_min_ms: 50,
        reconnect_max_ms: 1_000,
        handler_timeout_ms: 30_000,
        // Paused consumers hand their deliveries back after 1.5 s instead of 5 min, so
        // the halt tests see it.
        pause_release_ms: 1_500,
        ..tickwatch_tests::test_broker_config(tag)
    }
}

/// One test's world: a broker prefix with the standard topology, a database, a fake
/// Telegram, a publisher, and the notifier's configuration pointed at the fake.
struct World {
    broker: Broker,
    topology: Topology,
    /// Taken by [`World::cleanup`].
    db: Option<TestDb>,
    fake: FakeTelegram,
    publisher: Publisher,
    config: NotifierConfig,
    /// `<prefix>.notify.telegram.q`
    queue: String,
    cleaned: bool,
}

/// A running `adapter::run`.
struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), tickwatch_notifier::Error>>,
}

impl Running {
    /// Graceful shutdown: cancels and waits for `run` to return.
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the notifier stops within 30 s of shutdown")
            .expect("the notifier task did not panic")
            .expect("the notifier ended cleanly");
    }
}

impl World {
    async fn new(tag: &str) -> World {
        World::with(broker_config(tag), TestDb::sqlite().await.expect("sqlite")).await
    }

    async fn with(config: BrokerConfig, db: TestDb) -> World {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let broker = Broker::connect(config.clone(), &config.prefix)
            .await
            .expect("RabbitMQ on 127.0.0.1:5672");
        let topology = Topology::standard(&config).expect("standard topology");
        topology.apply(&broker).await.expect("topology applied");
        let fake = FakeTelegram::start().await.expect("fake telegram starts");
        let notifier = NotifierConfig {
            telegram_bot_token: Some(Secret::new(TOKEN)),
            telegram_api_url: fake.url(),
            request_timeout_ms: 5_000,
            breaker: tickwatch_notifier::BreakerConfig {
                failure_threshold: 5,
                probe_delay_ms: 300,
                max_probe_delay_ms: 1_000,
            },
            // The fake stamps each arrival when its handler runs; with the whole suite
            // running that lags departures by more than the default 30 ms, and two sends a
            // second apart can land inside one second.
            limits: tickwatch_notifier::RateLimits {
                margin_ms: 150,
                ..Default::default()
            },
            ..NotifierConfig::default()
        };
        let publisher = Publisher::start(&broker, "test");
        let queue = broker.names().queue(WorkQueue::NotifyTelegram);
        World {
            broker,
            topology,
            db: Some(db),
            fake,
            publisher,
            config: notifier,
            queue,
            cleaned: false,
        }
    }

    fn conn(&self) -> &DatabaseConnection {
        &self
            .db
            .as_ref()
            .expect("the database is open until cleanup")
            .conn
    }

    fn dlq(&self) -> String {
        format!("{}.dlq", self.queue)
    }

    /// Starts the notifier role on `broker` (the world's own, or another one).
    fn start_on(&self, broker: &Broker) -> Running {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let (broker, db, config, shutdown) = (
                broker.clone(),
                self.conn().clone(),
                self.config.clone(),
                shutdown.clone(),
            );
            async move { tickwatch_notifier::adapter::run(&broker, db, &config, shutdown).await }
        });
        Running { shutdown, task }
    }

    fn start(&self) -> Running {
        self.start_on(&self.broker)
    }

    async fn publish(&self, notification: &Notification) {
        self.publisher
            .publish(Exchange::Notify, notification)
            .await
            .expect("notification published and confirmed");
    }

    async fn publish_all(&self, notifications: &[Notification]) {
        let mut confirms = Vec::with_capacity(notifications.len());
        for n in notifications {
            confirms.push(
                self.publisher
                    .send(Exchange::Notify, n)
                    .await
                    .expect("enqueued"),
            );
        }
        for confirm in confirms {
            confirm.wait().await.expect("confirmed");
        }
    }

    async fn control(&self, control: Control) {
        self.publisher
            .publish(Exchange::Control, &control)
            .await
            .expect("control message published");
    }

    fn management(&self) -> Management {
        Management::new(self.broker.config()).expect("management API")
    }

    /// (ready, unacked) of a queue, per the management API.
    async fn depth(&self, queue: &str) -> (u64, u64) {
        let q = self
            .management()
            .queue(queue)
            .await
            .expect("management API answers")
            .expect("queue exists");
        let n = |k: &str| q.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        (n("messages_ready"), n("messages_unacknowledged"))
    }

    /// Polls until the `(ready, unacked)` of `queue` satisfy `done` and returns them; the
    /// last seen after [`WAIT`].
    async fn wait_queue(&self, queue: &str, done: impl Fn(u64, u64) -> bool) -> (u64, u64) {
        let deadline = Instant::now() + WAIT;
        loop {
            let depth = self.depth(queue).await;
            if done(depth.0, depth.1) || Instant::now() > deadline {
                return depth;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// [`World::wait_queue`] until `queue` holds `total` messages, ready or unacked.
    async fn wait_total(&self, queue: &str, total: u64) -> (u64, u64) {
        self.wait_queue(queue, |ready, unacked| ready + unacked == total)
            .await
    }

    /// Polls until `queue` is `(ready, unacked)`; whether it got there within [`WAIT`].
    async fn wait_depth(&self, queue: &str, expected: (u64, u64)) -> bool {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.depth(queue).await == expected {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        false
    }

    /// Messages in the retry tiers right now (they come back to the queue by themselves).
    async fn in_retry_tiers(&self) -> u64 {
        let mut total = 0;
        for tier in 1..=RETRY_DELAYS_MS.len() {
            let (ready, unacked) = self.depth(&format!("{}.retry.{tier}", self.queue)).await;
            total += ready + unacked;
        }
        total
    }

    /// Waits until the notifier's private control queue is bound to the control fan-out,
    /// so a `Halt` / `Resume` published now reaches it (a fan-out without a bound queue
    /// drops the message).
    async fn wait_control_bound(&self) {
        let exchange = self.broker.names().exchange(Exchange::Control);
        let prefix = format!("{}.control.", self.broker.config().prefix);
        let bound = wait_until(WAIT, || async {
            self.management()
                .bindings(&prefix)
                .await
                .expect("management API answers")
                .iter()
                .any(|b| {
                    b.get("source").and_then(|v| v.as_str()) == Some(exchange.as_str())
                        && b.get("destination")
                            .and_then(|v| v.as_str())
                            .is_some_and(|d| d.starts_with(&prefix))
                })
        })
        .await;
        assert!(bound, "the notifier's control queue is bound");
    }

    async fn row(&self, key: &str) -> Option<notification::Model> {
        notification::Entity::find()
            .filter(notification::Column::DedupeKey.eq(key))
            .one(self.conn())
            .await
            .expect("query notifications")
    }

    /// Waits until the row of `key` has `status`, and returns it. The fake records a
    /// message before it answers, and the notifier records `sent` after the answer.
    async fn wait_status(&self, key: &str, status: &str) -> notification::Model {
        let reached = wait_until(WAIT, || async {
            self.row(key).await.is_some_and(|r| r.status == status)
        })
        .await;
        let row = self.row(key).await.expect("notification recorded");
        assert!(reached, "{key} never became {status}: {row:?}");
        row
    }

    async fn user(&self, chat_id: i64) -> user::Model {
        user::Entity::find()
            .filter(user::Column::TelegramChatId.eq(chat_id))
            .one(self.conn())
            .await
            .expect("query users")
            .expect("user exists")
    }

    async fn add_user(&self, chat_id: i64) {
        tickwatch_schema::db::new_user_row(format!("user{chat_id}"), Some(chat_id), "en", 0)
            .insert(self.conn())
            .await
            .expect("user inserted");
    }

    /// What the gateway's `/halt` and `/resume` persist.
    async fn set_halted_in_db(&self, halted: bool) {
        let row = setting::ActiveModel {
            key: Set(SETTING_NOTIFICATIONS_HALTED.to_string()),
            value: Set(halted.to_string()),
            updated_at: Set(tickwatch_schema::db::now_ms()),
        };
        let existing = setting::Entity::find_by_id(SETTING_NOTIFICATIONS_HALTED.to_string())
            .one(self.conn())
            .await
            .expect("query settings");
        if existing.is_some() {
            row.update(self.conn()).await.expect("setting updated");
        } else {
            row.insert(self.conn()).await.expect("setting inserted");
        }
    }

    /// The visible texts each chat received, in arrival order.
    fn texts(&self, chat_id: i64) -> Vec<String> {
        visible(&self.fake.delivered_to(chat_id))
    }

    /// Every `sendMessage` call to `chat_id`, accepted or not.
    fn calls_to(&self, chat_id: i64) -> Vec<SentMessage> {
        self.fake
            .sent()
            .into_iter()
            .filter(|m| m.chat_id == chat_id)
            .collect()
    }

    async fn cleanup(mut self) {
        self.publisher.close().await;
        let _ = self.topology.delete(&self.broker).await;
        self.broker.close();
        self.cleaned = true;
        if let Some(db) = self.db.take() {
            db.close().await.expect("test database removed");
        }
    }
}

/// A test that failed before [`World::cleanup`] still removes its queues and exchanges
/// (and, through `TestDb`'s own drop, its database). This runs inside the test's runtime,
/// which cannot be blocked on, so a helper thread with its own runtime and connection does
/// the deleting.
impl Drop for World {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        let (config, topology) = (self.broker.config().clone(), self.topology.clone());
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async {
                if let Ok(broker) = Broker::connect(config.clone(), &config.prefix).await {
                    let _ = topology.delete(&broker).await;
                    broker.close();
                }
            });
        })
        .join();
    }
}

fn visible(messages: &[SentMessage]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.visible_text.clone().unwrap_or_default())
        .collect()
}

/// A plain-text MarkdownV2 notification (the text has no reserved characters).
fn notification(chat_id: i64, text: &str) -> Notification {
    let id = uuid::Uuid::now_v7();
    Notification {
        id,
        channel: Channel::Telegram,
        chat_id,
        text: text.to_string(),
        parse_mode: Some(ParseMode::MarkdownV2),
        dedupe_key: format!("test:{id}"),
        kind: EventKind::Alert,
        origin_ts: None,
        buttons: Vec::new(),
        chart: None,
    }
}

/// Several chats, several messages each, published interleaved: every chat gets all of
/// its messages, once each, in the order they were published, at most one a second.
async fn delivers_in_order_per_chat(world: World) {
    const CHATS: i64 = 5;
    const PER_CHAT: usize = 4;
    let notifications: Vec<Notification> = (0..PER_CHAT)
        .flat_map(|seq| (0..CHATS).map(move |chat| notification(100 + chat, &format!("m{seq}"))))
        .collect();
    world.publish_all(&notifications).await;
    let running = world.start();
    assert!(
        world
            .fake
            .wait_for_delivered(notifications.len(), WAIT)
            .await,
        "all {} delivered, got {}",
        notifications.len(),
        world.fake.delivered().len()
    );
    let expected: Vec<String> = (0..PER_CHAT).map(|seq| format!("m{seq}")).collect();
    for chat in 0..CHATS {
        assert_eq!(world.texts(100 + chat), expected, "chat {}", 100 + chat);
    }
    let rates = world.fake.rates();
    assert!(rates.max_per_chat_per_sec <= 1, "{rates:?}");
    for n in &notifications {
        assert_eq!(world.wait_status(&n.dedupe_key, "sent").await.attempts, 1);
    }
    assert!(
        world.wait_depth(&world.queue, (0, 0)).await,
        "everything acked"
    );
    assert_eq!(world.depth(&world.dlq()).await, (0, 0));
    running.stop().await;
    world.cleanup().await;
}

#[tokio::test]
async fn delivers_to_several_chats_in_order_per_chat() {
    delivers_in_order_per_chat(World::new("nt-order").await).await;
}

#[tokio::test]
async fn delivers_in_order_per_chat_with_postgres() {
    let db = TestDb::postgres()
        .await
        .expect("local PostgreSQL (trust auth)");
    delivers_in_order_per_chat(World::with(broker_config("nt-order-pg"), db).await).await;
}

/// The same notification published again (an upstream retry, a DLQ replay of something
/// already delivered) reaches the user once.
#[tokio::test]
async fn a_republished_dedupe_key_is_delivered_once() {
    let world = World::new("nt-dedupe").await;
    let running = world.start();
    let first = notification(200, "once");
    world.publish(&first).await;
    assert!(world.fake.wait_for_delivered(1, WAIT).await);
    // Same dedupe key, new AMQP message (a fresh message id from the publisher).
    world.publish(&first).await;
    world.publish(&first).await;
    // One chat's messages are handled in order: once the marker arrives, both copies of
    // `first` were handled before it.
    world.publish(&notification(200, "marker")).await;
    assert!(world.fake.wait_for_delivered(2, WAIT).await);
    assert_eq!(world.texts(200), ["once", "marker"]);
    assert_eq!(world.calls_to(200).len(), 2, "no second sendMessage");
    assert_eq!(
        world.wait_status(&first.dedupe_key, "sent").await.attempts,
        1
    );
    assert!(world.wait_depth(&world.queue, (0, 0)).await);
    running.stop().await;
    world.cleanup().await;
}

/// A notifier dies after Telegram accepted a message but before the broker got the ack:
/// the broker redelivers it to the next notifier, which sees the key is sent and does not
/// send it again.
#[tokio::test]
async fn a_message_redelivered_after_a_crash_is_not_sent_again() {
    let world = World::new("nt-crash").await;
    // The crashing notifier holds its acks for a minute, so the delivery is still unacked
    // when it dies.
    let crash_role = format!("{}-crash", world.broker.config().prefix);
    let slow_acks = BrokerConfig {
        ack_batch: 64,
        ack_flush_ms: 60_000,
        ..world.broker.config().clone()
    };
    let crashing = Broker::connect(slow_acks, &crash_role)
        .await
        .expect("second broker handle");
    let running = world.start_on(&crashing);
    let first = notification(300, "only once");
    world.publish(&first).await;
    assert!(world.fake.wait_for_delivered(1, WAIT).await);
    assert!(
        world.wait_depth(&world.queue, (0, 1)).await,
        "delivered to Telegram, not yet acked"
    );

    // The crash: the process is gone (no graceful shutdown), its connections with it.
    running.task.abort();
    running.shutdown.cancel();
    assert!(tickwatch_tests::broker::kill_connections(crashing.config(), &crash_role).await >= 1);
    crashing.close();
    assert!(
        world.wait_depth(&world.queue, (1, 0)).await,
        "the unacked delivery is back in the queue"
    );

    let running = world.start();
    world.publish(&notification(300, "after restart")).await;
    assert!(world.fake.wait_for_delivered(2, WAIT).await);
    assert_eq!(world.texts(300), ["only once", "after restart"]);
    assert_eq!(world.calls_to(300).len(), 2, "the redelivery sent nothing");
    assert!(world.wait_depth(&world.queue, (0, 0)).await);
    running.stop().await;
    world.cleanup().await;
}

/// Telegram answers 500 three times, then accepts: the message is retried in place (its
/// chat's later messages wait behind it) with growing pauses and reaches the user once.
#[tokio::test]
async fn server_errors_three_times_then_delivered_once_in_place() {
    let world = World::new("nt-500x3").await;
    world.fake.script(
        Scope::Chat(400),
        [Reply::ServerError, Reply::ServerError, Reply::ServerError],
    );
    let running = world.start();
    let n = notification(400, "eventually");
    world.publish(&n).await;
    assert!(world.fake.wait_for_delivered(1, WAIT).await);
    assert_eq!(world.texts(400), ["eventually"]);
    let calls = world.calls_to(400);
    let statuses: Vec<u16> = calls.iter().map(|m| m.status).collect();
    assert_eq!(statuses, [500, 500, 500, 200]);
    // Each retry waited out its pause (500 ms, 1 s, 2 s), spending no attempt.
    for (gap, pause) in calls.windows(2).zip([500, 1_000, 2_000]) {
        let waited = gap[1].at - gap[0].at;
        assert!(
            waited >= Duration::from_millis(pause),
            "{waited:?} < pause {pause} ms"
        );
    }
    assert_eq!(world.wait_status(&n.dedupe_key, "sent").await.attempts, 1);
    assert_eq!(world.in_retry_tiers().await, 0);
    assert!(world.wait_depth(&world.queue, (0, 0)).await);
    assert_eq!(world.depth(&world.dlq()).await, (0, 0));
    running.stop().await;
    world.cleanup().await;
}

/// Telegram answers 500 every time: after the last tier the message is in the DLQ with
/// reason `exhausted` and the error; once Telegram recovers, a DLQ replay delivers it.
/// (No in-place hold here, so that each attempt is one call.)
#[tokio::test]
async fn server_errors_forever_end_in_the_dlq_and_a_replay_delivers() {
    let mut world = World::new("nt-dlq").await;
    world.config.transient_hold_s = 0;
    world
        .fake
        .set_persistent(Scope::Chat(500), Some(Reply::ServerError));
    let running = world.start();
    let n = notification(500, "after the replay");
    world.publish(&n).await;
    assert!(
        world.wait_depth(&world.dlq(), (1, 0)).await,
        "dead-lettered after the last tier"
    );
    let dead = dlq::show(&world.broker, &world.dlq(), 10)
        .await
        .expect("DLQ readable");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "exhausted");
    let error = dead[0].error.clone().unwrap_or_default();
    assert!(error.contains("500"), "the error is kept: {error}");
    assert_eq!(dead[0].attempts, Some(4));
    assert_eq!(dead[0].original_routing_key.as_deref(), Some("telegram"));
    assert_eq!(world.calls_to(500).len(), 4, "one call per attempt");
    assert!(world.texts(500).is_empty(), "the user got nothing yet");
    let row = world.row(&n.dedupe_key).await.expect("recorded");
    assert_eq!(row.status, "pending");
    assert!(row.last_error.unwrap_or_default().contains("500"));

    // Telegram recovers; the operator replays the DLQ.
    world.fake.set_persistent(Scope::Chat(500), None);
    let report = dlq::replay(&world.broker, &world.dlq(), 10, None, None)
        .await
        .expect("replay");
    assert_eq!(report.replayed, 1, "{report:?}");
    assert!(world.fake.wait_for_delivered(1, WAIT).await);
    assert_eq!(world.texts(500), ["after the replay"]);
    world.wait_status(&n.dedupe_key, "sent").await;
    assert!(world.wait_depth(&world.dlq(), (0, 0)).await);
    assert!(world.wait_depth(&world.queue, (0, 0)).await);
    running.stop().await;
    world.cleanup().await;
}

/// Telegram is down for a while: the breaker opens after a few failures and consumption
/// pauses; the messages wait in the queue (none is pushed through the retry tiers into
/// the DLQ); after the outage every message is delivered once.
#[tokio::test]
async fn a_telegram_outage_pauses_consumption_and_loses_nothing() {
    const N: i64 = 40;
    let mut world = World::new("nt-outage").await;
    world.config.breaker.failure_threshold = 3;
    // One delivery at a time: with many in flight, sends of the first wave that were
    // already on their way when the breaker opened landed after the count below was taken
    // and read as extra probes on a loaded machine.
    world.config.concurrency = 1;
    world.fake.set_outage(Some(Reply::ServerError));
    let notifications: Vec<Notification> = (0..N)
        .map(|i| notification(600 + i, &format!("held {i}")))
        .collect();
    world.publish_all(&notifications).await;
    let running = world.start();

    // The breaker opened after three failures; while open nothing is sent, and each
    // half-open lets one real message through as the probe (300, 600, 1,000 ms apart).
    assert!(
        wait_until(WAIT, || async { world.fake.call_count("sendMessage") >= 3 }).await,
        "the first sends failed"
    );
    let sends = world.fake.call_count("sendMessage");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let probes = world.fake.call_count("sendMessage") - sends;
    assert!(
        (1..=4).contains(&probes),
        "{probes} probes in 2 s while Telegram was down"
    );
    assert_eq!(world.fake.call_count("getMe"), 0, "probes are real sends");
    // Failures are held in place (keeping each chat's order), not sent through the retry
    // tiers: every message is in the queue once, none in the tiers or the DLQ.
    assert_eq!(world.in_retry_tiers().await, 0);
    let (ready, unacked) = world
        .wait_queue(&world.queue, |r, u| r + u == N as u64)
        .await;
    assert_eq!(ready + unacked, N as u64, "every message is in the queue");
    assert_eq!(
        world.depth(&world.dlq()).await,
        (0, 0),
        "nothing in the DLQ"
    );
    assert!(world.fake.delivered().is_empty());

    // Telegram is back: the next probe is delivered, closes the breaker, everything flows.
    world.fake.set_outage(None);
    assert!(
        world
            .fake
            .wait_for_delivered(N as usize, Duration::from_secs(30))
            .await,
        "all delivered after the outage, got {}",
        world.fake.delivered().len()
    );
    for (i, n) in notifications.iter().enumerate() {
        assert_eq!(world.texts(n.chat_id), [format!("held {i}")]);
    }
    assert!(world.wait_depth(&world.queue, (0, 0)).await);
    assert_eq!(world.depth(&world.dlq()).await, (0, 0));
    running.stop().await;
    world.cleanup().await;
}

/// Six messages to one chat published by a client that is not tickwatch (no
/// `tw-shard-key` header) — four plain ones, a duplicate and a MarkdownV2 one — with
/// Telegram answering the first send with 429 `retry_after: 2`: they arrive in the order
/// published, the duplicate once, and nothing goes to the chat while the wait lasts.
#[tokio::test]
async fn one_chats_messages_keep_their_order_through_a_429() {
    const CHAT: i64 = 950;
    let world = World::new("nt-429-order").await;
    world.fake.script(Scope::Chat(CHAT), [Reply::RetryAfter(2)]);
    let plain = |i: usize| {
        let mut n = notification(CHAT, &format!("message {i}"));
        n.parse_mode = None;
        n
    };
    let first = plain(0);
    let mut markdown = notification(CHAT, "*bold* and \\-1\\.5%");
    markdown.dedupe_key = format!("{}-md", first.dedupe_key);
    let published = [
        first.clone(),
        plain(1),
        first.clone(), // the duplicate
        markdown,
        plain(2),
        plain(3),
    ];
    let exchange = world.broker.names().exchange(Exchange::Notify);
    for n in &published {
        // As an independent AMQP client publishes: the contract's properties and headers
        // only.
        let mut headers = tickwatch_broker::publisher::Headers::default();
        tickwatch_broker::headers::set_i64(&mut headers, "tw-schema", 1);
        world
            .publisher
            .publish_raw(tickwatch_broker::OutgoingMessage {
                exchange: exchange.clone(),
                routing_key: "telegram".into(),
                body: serde_json::to_vec(n).expect("encodes"),
                properties: tickwatch_broker::publisher::json_properties("notification", headers),
                mandatory: true,
            })
            .await
            .expect("published");
    }
    let running = world.start();
    assert!(
        world.fake.wait_for_delivered(5, WAIT).await,
        "five distinct messages delivered, got {:?}",
        world.texts(CHAT)
    );
    assert_eq!(
        world.texts(CHAT),
        [
            "message 0",
            "message 1",
            "bold and -1.5%",
            "message 2",
            "message 3"
        ],
        "in the order published, the duplicate once"
    );
    let calls = world.calls_to(CHAT);
    assert_eq!(calls[0].status, 429, "the first send was told to wait");
    let wait_over = calls[0].at + Duration::from_secs(2);
    for call in &calls[1..] {
        assert!(
            call.at >= wait_over,
            "a send {:?} after the 429, inside its 2 s wait",
            call.at - calls[0].at
        );
    }
    assert_eq!(world.fake.rates().early_retries, 0);
    assert!(world.fake.rates().max_per_chat_per_sec <= 1);
    assert!(world.wait_depth(&world.queue, (0, 0)).await);
    assert_eq!(world.depth(&world.dlq()).await, (0, 0));
    running.stop().await;
    world.cleanup().await;
}

/// 403 (the user blocked the bot): the user is made inactive, the notification recorded
/// as failed with Telegram's reason, the message acked, and nothing more is sent to them.
#[tokio::test]
async fn a_blocked_user_is_made_inactive_and_the_message_acked() {
    let world = World::new("nt-403").await;
    world.add_user(700).await;
    world.fake.script(Scope::Chat(700), [Reply::Blocked]);
    let running = world.start();
    let n = notification(700, "blocked");
    world.publish(&n).await;
    let row = world.wait_status(&n.dedupe_key, "failed").await;
    assert!(
        row.last_error.unwrap_or_default().contains("blocked"),
        "the reason is kept"
    );
    let user = world.user(700).await;
    assert!(!user.active);
    assert!(user.paused_reason.unwrap_or_default().contains("blocked"));
    // The next notification for them is not even tried.
    let next = notification(700, "not sent");
    world.publish(&next).await;
    let row = world.wait_status(&next.dedupe_key, "failed").await;
    assert!(
        row.last_error.unwrap_or_default().contains("user inactive"),
        "recorded why it was not sent"
    );
    assert_eq!(world.calls_to(700).len(), 1, "only the first was tried");
    assert!(world.texts(700).is_empty());
    assert!(
        world.wait_depth(&world.queue, (0, 0)).await,
        "both acked, no retries"
    );
    assert_eq!(
        world.depth(&world.dlq()).await,
        (0, 0),
        "nothing in the DLQ"
    );
    assert_eq!(world.in_retry_tiers().await, 0);
    running.stop().await;
    world.cleanup().await;
}

/// An admin's halt holds every notification in the queue; resume releases them.
#[tokio::test]
async fn an_admin_halt_holds_messages_until_resume() {
    const N: i64 = 6;
    let world = World::new("nt-halt").await;
    let running = world.start();
    world.wait_control_bound().await;
    world.publish(&notification(800, "before the halt")).await;
    assert!(world.fake.wait_for_delivered(1, WAIT).await);

    // What the gateway's /halt does: persist, then announce.
    world.set_halted_in_db(true).await;
    world.control(Control::Halt { by_chat: Some(1) }).await;
    // The halt has reached the consumer when it reports itself paused.
    assert!(
        tickwatch_tests::wait_until(WAIT, async || {
            world
                .broker
                .health()
                .snapshot()
                .iter()
                .any(|(component, state)| {
                    component.contains("telegram") && state.detail == "paused"
                })
        })
        .await,
        "the notifier pauses: {:?}",
        world.broker.health().snapshot()
    );
    let held: Vec<Notification> = (0..N)
        .map(|i| notification(810 + i, &format!("held {i}")))
        .collect();
    world.publish_all(&held).await;
    // After `pause_release_ms`, handed back to the queue, not held by the consumer: a halt
    // of hours must not run into the broker's consumer timeout. All N ready again is also
    // the proof that none was sent (a sent one is acked and gone).
    assert!(
        world.wait_depth(&world.queue, (N as u64, 0)).await,
        "held in the queue as ready messages"
    );
    assert_eq!(world.fake.delivered().len(), 1, "nothing sent while halted");

    world.set_halted_in_db(false).await;
    world.control(Control::Resume { by_chat: Some(1) }).await;
    assert!(
        world.fake.wait_for_delivered(1 + N as usize, WAIT).await,
        "released by resume"
    );
    for (i, n) in held.iter().enumerate() {
        assert_eq!(world.texts(n.chat_id), [format!("held {i}")]);
    }
    assert!(world.wait_depth(&world.queue, (0, 0)).await);
    running.stop().await;
    world.cleanup().await;
}

/// Operators' messages (kind `system`: Alertmanager's alerts, broadcasts) have a queue of
/// their own: an admin's halt holds the users' notifications, not them — unless the
/// operator chose `halt_holds_system`.
#[tokio::test]
async fn a_halt_lets_system_notifications_through_unless_configured_otherwise() {
    for holds_system in [false, true] {
        let mut world = World::new("nt-sys").await;
        world.config.halt_holds_system = holds_system;
        world.set_halted_in_db(true).await;
        let running = world.start();
        world.wait_control_bound().await;
        world.publish(&notification(700, "an alert, held")).await;
        let mut system = notification(701, "the broker is back");
        system.kind = EventKind::System;
        world.publish(&system).await;
        if holds_system {
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert_eq!(world.fake.call_count("sendMessage"), 0, "both held");
        } else {
            assert!(world.fake.wait_for_delivered(1, WAIT).await, "system sent");
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert_eq!(world.texts(701), ["the broker is back"]);
            assert!(world.texts(700).is_empty(), "the alert waits for /resume");
        }
        world.set_halted_in_db(false).await;
        world.control(Control::Resume { by_chat: Some(1) }).await;
        assert!(world.fake.wait_for_delivered(2, WAIT).await, "released");
        assert_eq!(world.texts(700), ["an alert, held"]);
        assert_eq!(world.texts(701), ["the broker is back"]);
        running.stop().await;
        world.cleanup().await;
    }
}

/// A notifier that starts while the `settings` row says halted holds the queue too.
#[tokio::test]
async fn a_notifier_started_while_halted_stays_halted() {
    const N: i64 = 4;
    let world = World::new("nt-halted").await;
    world.set_halted_in_db(true).await;
    let held: Vec<Notification> = (0..N)
        .map(|i| notification(900 + i, &format!("held {i}")))
        .collect();
    world.publish_all(&held).await;
    let running = world.start();
    world.wait_control_bound().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(world.fake.call_count("sendMessage"), 0, "nothing sent");
    let (ready, unacked) = world.wait_total(&world.queue, N as u64).await;
    assert_eq!(ready + unacked, N as u64, "held in the queue");

    world.set_halted_in_db(false).await;
    world.control(Control::Resume { by_chat: None }).await;
    assert!(world.fake.wait_for_delivered(N as usize, WAIT).await);
    assert!(world.wait_depth(&world.queue, (0, 0)).await);
    running.stop().await;
    world.cleanup().await;
}

/// A MarkdownV2 text full of reserved characters, built with the escaping builder, passes
/// the fake's strict parser and shows the user exactly the intended text.
#[tokio::test]
async fn nasty_markdown_v2_is_accepted_by_the_strict_checker() {
    let world = World::new("nt-mdv2").await;
    let running = world.start();
    let text = MarkdownV2::new()
        .bold("BRK.B")
        .text(" -1.5% (test) at ")
        .code("412.50")
        .text(" [x] _y_ *z* ~ > # + - = | { } . ! \\")
        .newline()
        .italic("a_b*c")
        .into_string();
    let mut n = notification(1000, &text);
    n.parse_mode = Some(ParseMode::MarkdownV2);
    world.publish(&n).await;
    assert!(world.fake.wait_for_delivered(1, WAIT).await);
    let calls = world.calls_to(1000);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].status, 200, "accepted: {:?}", calls[0].error);
    assert_eq!(
        world.texts(1000),
        ["BRK.B -1.5% (test) at 412.50 [x] _y_ *z* ~ > # + - = | { } . ! \\\na_b*c"]
    );
    assert!(world.wait_depth(&world.queue, (0, 0)).await);
    running.stop().await;
    world.cleanup().await;
}

/// Shutdown in the middle of a burst: whatever was delivered is acked, the rest is back in
/// the queue (nothing unacked), and a restarted notifier delivers the rest: every message
/// once, none lost.
#[tokio::test]
async fn graceful_shutdown_mid_burst_leaves_nothing_unacked_and_loses_nothing() {
    const CHATS: i64 = 40;
    const PER_CHAT: usize = 3;
    let world = World::new("nt-shutdown").await;
    let burst: Vec<Notification> = (0..PER_CHAT)
        .flat_map(|seq| (0..CHATS).map(move |chat| notification(1100 + chat, &format!("m{seq}"))))
        .collect();
    let total = burst.len();
    world.publish_all(&burst).await;
    let running = world.start();
    assert!(world.fake.wait_for_delivered(25, WAIT).await);
    running.stop().await;
    let delivered = world.fake.delivered().len();
    assert!(delivered < total, "stopped mid-burst ({delivered})");
    let (ready, unacked) = world
        .wait_total(&world.queue, (total - delivered) as u64)
        .await;
    assert_eq!(unacked, 0, "nothing unacked after shutdown");
    assert_eq!(
        ready as usize + delivered,
        total,
        "delivered + still queued = published"
    );

    let running = world.start();
    assert!(world.fake.wait_for_delivered(total, WAIT).await);
    let expected: Vec<String> = (0..PER_CHAT).map(|seq| format!("m{seq}")).collect();
    for chat in 0..CHATS {
        assert_eq!(world.texts(1100 + chat), expected, "chat {}", 1100 + chat);
    }
    assert_eq!(world.fake.rates().send_calls, total, "nothing sent twice");
    assert!(world.wait_depth(&world.queue, (0, 0)).await);
    running.stop().await;
    world.cleanup().await;
}
