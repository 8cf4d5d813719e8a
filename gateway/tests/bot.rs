//! The Telegram bot through the fake Bot API: updates are fed to `getUpdates`, replies
//! are read from the fake's `sendMessage` log.

mod common;

use std::time::Duration;

use rust_decimal::Decimal;
use sea_orm::ActiveValue::Set;
use sea_orm::{EntityTrait, QueryOrder};
use serde_json::{Value, json};
use tickwatch_broker::{Broker, Topology};
use tickwatch_gateway::config::{BotConfig, Secret};
use tickwatch_gateway::{Services, bot};
use tickwatch_notifier::NotifierConfig;
use tickwatch_schema::db::entity::{alert_rule, setting};
use tickwatch_schema::rule::{Condition, RuleSpec};
use tickwatch_tests::db::TestDb;
use tickwatch_tests::{FakeTelegram, wait_until};
use tokio_util::sync::CancellationToken;

use common::{Backend, database};

const ADMIN_CHAT: i64 = 900;

/// A running bot on a fake Telegram with a fresh database.
struct Harness {
    fake: FakeTelegram,
    services: Services,
    db: TestDb,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    async fn start(backend: Backend) -> Harness {
        Harness::start_with(backend, None).await
    }

    /// With a broker (the services publish through it).
    async fn start_with(backend: Backend, broker: Option<Broker>) -> Harness {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let fake = FakeTelegram::start().await.expect("fake telegram");
        let db = database(backend).await;
        let services = Services::new(db.conn.clone(), broker);
        let config = BotConfig {
            token: Some(Secret::new("1:TEST")),
            api_url: fake.url(),
            admin_chats: vec![ADMIN_CHAT],
            poll_timeout_s: 1,
            ..BotConfig::default()
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let (services, shutdown) = (services.clone(), shutdown.clone());
            async move {
                bot::run(config, services, shutdown)
                    .await
                    .expect("the bot runs");
            }
        });
        Harness {
            fake,
            services,
            db,
            shutdown,
            task,
        }
    }

    /// Sends `text` from `chat` and returns the bot's reply to that chat.
    async fn say(&self, chat: i64, text: &str) -> String {
        let before = self.fake.delivered().len();
        self.fake.push_message(chat, chat, text);
        self.reply_after(chat, before).await.text
    }

    async fn reply_after(&self, chat: i64, before: usize) -> Reply {
        assert!(
            self.fake
                .wait_for_delivered(before + 1, Duration::from_secs(10))
                .await,
            "no reply within 10 s"
        );
        let message = self.fake.delivered()[before..]
            .iter()
            .find(|m| m.chat_id == chat)
            .cloned()
            .expect("a reply to that chat");
        Reply {
            text: visible(&message.text),
            markup: message.reply_markup,
        }
    }

    /// Sends and returns the reply with its buttons.
    async fn say_full(&self, chat: i64, text: &str) -> Reply {
        let before = self.fake.delivered().len();
        self.fake.push_message(chat, chat, text);
        self.reply_after(chat, before).await
    }

    /// Presses a button: its answer replaces the button's message (an edit).
    async fn press(&self, chat: i64, data: &str) -> String {
        self.press_full(chat, data).await.text
    }

    async fn press_full(&self, chat: i64, data: &str) -> Reply {
        let before = self.fake.edits().len();
        let sent = self.fake.delivered().len();
        self.fake.push_callback_query(chat, chat, 1, data);
        assert!(
            self.fake
                .wait_for_edits(before + 1, Duration::from_secs(10))
                .await,
            "no edit within 10 s"
        );
        let edit = self.fake.edits()[before].clone();
        assert_eq!(
            (edit.chat_id, edit.message_id),
            (chat, 1),
            "the button's message"
        );
        assert_eq!(
            self.fake.delivered().len(),
            sent,
            "an edit, not a new message"
        );
        Reply {
            text: visible(&edit.text),
            markup: edit.reply_markup,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.task).await;
        self.db.close().await.expect("cleanup");
    }
}

/// What a user sees of an HTML-mode message: tags dropped, entities decoded (the fake
/// passes HTML through unparsed).
fn visible(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

struct Reply {
    text: String,
    markup: Option<Value>,
}

fn buttons(markup: &Option<Value>) -> Vec<String> {
    markup
        .as_ref()
        .and_then(|m| m["inline_keyboard"].as_array())
        .map(|rows| {
            rows.iter()
                .flat_map(|r| r.as_array().cloned().unwrap_or_default())
                .filter_map(|b| b["callback_data"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn rules(db: &TestDb) -> Vec<alert_rule::Model> {
    alert_rule::Entity::find()
        .order_by_asc(alert_rule::Column::Id)
        .all(&db.conn)
        .await
        .expect("rules")
}

async fn register_alert_list_and_delete(backend: Backend) {
    let h = Harness::start(backend).await;
    let chat = 501;

    let welcome = h.say(chat, "/start").await;
    assert!(welcome.contains("/register"), "{welcome}");
    let early = h.say(chat, "/alert BTCUSDT > 65000").await;
    assert!(early.contains("/register first"), "{early}");
    let registered = h.say(chat, "/register").await;
    assert!(registered.contains("Registered"), "{registered}");

    let set = h.say(chat, "/alert BTCUSDT > 65000").await;
    assert!(set.contains("#1"), "{set}");
    let by_korean_name = h
        .say(chat, "/alert 삼성전자 crossing_down 70000 once")
        .await;
    assert!(by_korean_name.contains("#2"), "{by_korean_name}");
    let stored = rules(&h.db).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(
        (
            stored[0].venue.as_str(),
            stored[0].symbol.as_str(),
            stored[0].condition.as_str(),
            stored[0].threshold.as_deref()
        ),
        ("binance", "BTCUSDT", "greater_than", Some("65000"))
    );
    assert_eq!(
        (
            stored[1].venue.as_str(),
            stored[1].symbol.as_str(),
            stored[1].condition.as_str()
        ),
        ("krx", "005930", "crossing_down")
    );

    // Edited in Telegram: the threshold, the trigger; a change that makes no rule is refused.
    let edited = h.say(chat, "/edit 1 threshold 66,000").await;
    assert!(
        edited.contains("Alert #1 changed") && edited.contains("66,000 USDT"),
        "{edited}"
    );
    let every = h.say(chat, "/edit 1 every 10m").await;
    assert!(
        every.contains("every_time") && every.contains("cooldown 600s"),
        "{every}"
    );
    let bad = h.say(chat, "/edit 2 channel 5 1").await;
    assert!(
        bad.contains("channel"),
        "the error says what is wrong: {bad}"
    );
    let nobody = h.say(chat, "/edit 99 threshold 1").await;
    assert!(nobody.contains("No alert rule 99"), "{nobody}");
    let stored = rules(&h.db).await;
    assert_eq!(stored[0].threshold.as_deref(), Some("66000"));
    assert_eq!(stored[0].trigger, "every_time");

    let list = h.say_full(chat, "/alerts").await;
    assert!(
        list.text.contains("#1") && list.text.contains("#2"),
        "{}",
        list.text
    );
    let data = buttons(&list.markup);
    for wanted in ["pause:1", "del:1", "pause:2", "del:2"] {
        assert!(data.iter().any(|d| d == wanted), "{wanted} in {data:?}");
    }
    let paused = h.press(chat, "pause:2").await;
    assert!(paused.contains("paused"), "{paused}");
    assert!(!rules(&h.db).await[1].active);
    let resumed = h.say(chat, "/resume 2").await;
    assert!(resumed.contains("resumed"), "{resumed}");

    let deleted = h.say(chat, "/delalert 1").await;
    assert!(deleted.contains("deleted"), "{deleted}");
    assert_eq!(rules(&h.db).await.len(), 1);
    let missing = h.say(chat, "/delalert 1").await;
    assert!(missing.contains("No alert rule 1"), "{missing}");

    // Another user cannot touch this user's rule.
    let other = 502;
    h.say(other, "/register").await;
    let refused = h.say(other, "/delalert 2").await;
    assert!(refused.starts_with("⚠️ No alert rule 2"), "{refused}");
    let refused = h.press(other, "pause:2").await;
    assert!(refused.contains("No alert rule 2"), "{refused}");
    assert!(rules(&h.db).await[0].active, "untouched by the other user");

    // Past 20 alerts, ▶ and ◀ turn the pages of /alerts in place.
    let user = h
        .services
        .user_by_chat(chat)
        .await
        .expect("q")
        .expect("user");
    for i in 0..21 {
        h.services
            .create_rule(
                user.id,
                RuleSpec::price(
                    "binance",
                    "ETHUSDT",
                    Condition::GreaterThan,
                    Decimal::from(4_000 + i),
                ),
            )
            .await
            .expect("rule");
    }
    let first = h.say_full(chat, "/alerts").await;
    assert!(first.text.contains("▶ shows the next 20"), "{}", first.text);
    let next = buttons(&first.markup)
        .into_iter()
        .find(|d| d.starts_with("alerts:"))
        .expect("a ▶ button");
    let second = h.press_full(chat, &next).await;
    assert!(
        second.text.contains("4,020"),
        "the 22nd alert on page 2: {}",
        second.text
    );
    assert!(!second.text.contains("#2 "), "{}", second.text);
    assert!(
        buttons(&second.markup).contains(&"alerts:".to_string()),
        "◀ back to the first page: {:?}",
        second.markup
    );
    let back = h.press(chat, "alerts:").await;
    assert!(back.contains("#2"), "{back}");

    assert!(
        h.fake.commands().to_string().contains("\"alert\""),
        "setMyCommands"
    );
    h.stop().await;
}

#[tokio::test]
async fn register_alert_list_and_delete_sqlite() {
    register_alert_list_and_delete(Backend::Sqlite).await;
}

#[tokio::test]
async fn register_alert_list_and_delete_postgres() {
    register_alert_list_and_delete(Backend::Postgres).await;
}

#[tokio::test]
async fn bad_input_says_what_is_wrong_and_the_right_form() {
    let h = Harness::start(Backend::Sqlite).await;
    let chat = 601;
    h.say(chat, "/register").await;
    for (text, needles) in [
        (
            "/alert",
            vec!["symbol is missing", "Use: /alert <symbol>", "Example:"],
        ),
        ("/alert BTCUSDT sideways 5", vec!["not a condition", "Use:"]),
        ("/alert BTCUSDT > abc", vec!["not a price"]),
        (
            "/alert BTCUSDT > -5",
            vec!["threshold", "above zero", "Use:"],
        ),
        ("/alert NOSUCHCOIN > 5", vec!["Unknown symbol"]),
        (
            "/alert btc > 5",
            vec!["several symbols", "binance:BTCUSDT", "upbit:KRW-BTC"],
        ),
        ("/delalert x", vec!["not an alert id", "/delalert 12"]),
        (
            "/subscribe weather",
            vec!["not a signal kind", "rsi_oversold"],
        ),
        ("/settings alert loud", vec!["on, silent or off"]),
        ("/price", vec!["symbol is missing"]),
        ("/frobnicate", vec!["no /frobnicate", "/help"]),
        ("/resume", vec!["Which alert"]),
        (
            "/alert binance:BTCUSDT rsi(14) < 30",
            vec!["cannot be read", "needs an interval", "rsi(14,1h)"],
        ),
    ] {
        let reply = h.say(chat, text).await;
        for needle in needles {
            assert!(reply.contains(needle), "{text} → {reply} (wanted {needle})");
        }
    }
    // The spelt-out venue works where the name alone is ambiguous.
    let set = h
        .say(chat, "/alert upbit:KRW-BTC cross_up 100000000 every 1h")
        .await;
    assert!(set.contains("#1"), "{set}");
    // An indicator alert: stored, and told it waits for candles (none are stored here).
    let set = h
        .say(
            chat,
            "/alert binance:BTCUSDT rsi(14, 1h) < 30 and close > ema(50,1h)",
        )
        .await;
    assert!(
        set.contains("#2")
            && set.contains("rsi(14,1h) < 30 and close(1h) > ema(50,1h)")
            && set.contains("Not evaluable yet"),
        "{set}"
    );
    let help = h.say(chat, "/help").await;
    for command in [
        "/alert",
        "/alerts",
        "/subscribe",
        "/settings",
        "/apikey",
        "/price",
    ] {
        assert!(help.contains(command), "{command} in help");
    }
    assert!(
        !help.contains("/broadcast"),
        "admin commands only for admins"
    );
    h.stop().await;
}

#[tokio::test]
async fn search_by_name_or_alias_offers_alert_buttons() {
    let h = Harness::start(Backend::Sqlite).await;
    let chat = 701;
    let found = h.say_full(chat, "삼성").await;
    assert!(found.text.contains("005930"), "{}", found.text);
    assert!(buttons(&found.markup).contains(&"pick:krx:005930".to_string()));
    let found = h.say_full(chat, "samsung").await;
    assert!(found.text.contains("삼성전자"), "{}", found.text);
    let btc = h.say_full(chat, "btc").await;
    let data = buttons(&btc.markup);
    assert!(
        data.contains(&"pick:binance:BTCUSDT".to_string())
            && data.contains(&"pick:upbit:KRW-BTC".to_string()),
        "{data:?}"
    );
    let how = h.press(chat, "pick:krx:005930").await;
    assert!(how.contains("/alert krx:005930 > PRICE"), "{how}");
    let none = h.say(chat, "zzzzqqq").await;
    assert!(none.contains("No symbol matches"), "{none}");
    h.stop().await;
}

#[tokio::test]
async fn only_admins_halt_and_broadcast() {
    let h = Harness::start(Backend::Sqlite).await;
    let user = 801;
    h.say(user, "/register").await;
    let refused = h.say(user, "/halt").await;
    assert!(refused.contains("Only admins"), "{refused}");
    let refused = h.say(user, "/broadcast hi").await;
    assert!(refused.contains("Only admins"), "{refused}");
    assert!(
        setting::Entity::find_by_id("notifications_halted".to_string())
            .one(&h.db.conn)
            .await
            .expect("query")
            .is_none(),
        "a refused /halt changes nothing"
    );

    let halted = h.say(ADMIN_CHAT, "/halt").await;
    assert!(halted.contains("halted"), "{halted}");
    assert!(h.services.notifications_halted().await.expect("read"));
    let stats = h.say(ADMIN_CHAT, "/stats").await;
    assert!(
        stats.contains("Users: 1") && stats.contains("halted"),
        "{stats}"
    );
    let resumed = h.say(ADMIN_CHAT, "/resume").await;
    assert!(resumed.contains("resumed"), "{resumed}");
    assert!(!h.services.notifications_halted().await.expect("read"));

    // Broadcasts go through the broker, which this bot has not.
    let refused = h.say(ADMIN_CHAT, "/broadcast Maintenance tonight").await;
    assert!(refused.contains("Cannot broadcast"), "{refused}");
    h.stop().await;
}

/// The texts a chat received.
fn texts_to(h: &Harness, chat: i64) -> Vec<String> {
    h.fake
        .delivered_to(chat)
        .into_iter()
        .map(|m| m.text)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_goes_through_the_notifier_resumes_and_sends_once() {
    let config = common::broker_config("bc");
    let broker = Broker::connect(config.clone(), "bc")
        .await
        .expect("RabbitMQ on 127.0.0.1:5672");
    let topology = Topology::standard(&config).expect("topology");
    topology.apply(&broker).await.expect("topology applied");
    let h = Harness::start_with(Backend::Sqlite, Some(broker.clone())).await;
    let notifier = NotifierConfig {
        telegram_bot_token: Some(tickwatch_notifier::Secret::new("1:TEST")),
        telegram_api_url: h.fake.url(),
        ..NotifierConfig::default()
    };
    let stop = CancellationToken::new();
    let role = tokio::spawn({
        let (broker, db, stop) = (broker.clone(), h.db.conn.clone(), stop.clone());
        async move { tickwatch_notifier::adapter::run(&broker, db, &notifier, stop).await }
    });
    let users = [811, 812, 813];
    for user in users {
        h.say(user, "/register").await;
    }
    let received = |text: &'static str| {
        let h = &h;
        move || async move {
            users
                .iter()
                .all(|u| texts_to(h, *u).iter().any(|t| t == text))
        }
    };

    let started = h.say(ADMIN_CHAT, "/broadcast Maintenance tonight").await;
    assert!(started.contains("to 3 user(s)"), "{started}");
    assert!(
        wait_until(Duration::from_secs(20), received("Maintenance tonight")).await,
        "every user got it: {:?}",
        h.fake.delivered()
    );
    // The notifier records a send just after Telegram took it.
    let mut status = String::new();
    for _ in 0..50 {
        status = h.say(ADMIN_CHAT, "/broadcast status").await;
        if status.contains("3/3 handed over, 3 delivered") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        status.contains("3/3 handed over, 3 delivered (all handed over)"),
        "{status}"
    );

    // A broadcast a process stored and died before handing over: the next start runs it.
    let (_, total) = h
        .services
        .start_broadcast("Second notice")
        .await
        .expect("stored");
    assert_eq!(total, 3);
    assert_eq!(h.services.resume_broadcasts().await.expect("resumed"), 1);
    assert!(wait_until(Duration::from_secs(20), received("Second notice")).await);
    assert_eq!(h.services.resume_broadcasts().await.expect("none left"), 0);

    // Handed over, but the process died before it stored that: handed over again, sent once.
    let (id, _) = h
        .services
        .start_broadcast("Third notice")
        .await
        .expect("stored");
    h.services.run_broadcast(&id).await.expect("handed over");
    assert!(wait_until(Duration::from_secs(20), received("Third notice")).await);
    let key = format!("broadcast:{id}");
    let row = setting::Entity::find_by_id(key.clone())
        .one(&h.db.conn)
        .await
        .expect("query")
        .expect("the broadcast's row");
    let mut state: Value = serde_json::from_str(&row.value).expect("JSON");
    state["done"] = json!(false);
    state["after_user"] = json!(0);
    state["published"] = json!(0);
    setting::Entity::update(setting::ActiveModel {
        key: Set(key),
        value: Set(state.to_string()),
        updated_at: Set(row.updated_at),
    })
    .exec(&h.db.conn)
    .await
    .expect("rewound");
    assert_eq!(h.services.resume_broadcasts().await.expect("resumed"), 1);
    let progress = h.services.broadcast_progress(1).await.expect("progress");
    assert_eq!((progress[0].published, progress[0].done), (3, true));
    tokio::time::sleep(Duration::from_secs(1)).await;
    for user in users {
        let texts = texts_to(&h, user);
        assert_eq!(
            texts.iter().filter(|t| *t == "Third notice").count(),
            1,
            "{user}: {texts:?}"
        );
    }

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), role).await;
    h.stop().await;
    topology.delete(&broker).await.expect("cleanup topology");
    broker.close();
}

#[tokio::test]
async fn korean_users_settings_keys_and_paused_notice() {
    let h = Harness::start(Backend::Sqlite).await;
    let chat = 1001;
    // A Korean Telegram client.
    let before = h.fake.delivered().len();
    h.fake.push_update(json!({"message": {
        "message_id": 1, "date": 1_763_762_400, "text": "/register",
        "entities": [{"type": "bot_command", "offset": 0, "length": 9}],
        "chat": {"id": chat, "type": "private", "first_name": "민수"},
        "from": {"id": chat, "is_bot": false, "first_name": "민수", "language_code": "ko"}
    }}));
    let reply = h.reply_after(chat, before).await.text;
    assert!(reply.contains("등록되었습니다"), "{reply}");
    let bad = h.say(chat, "/alert 삼성전자 > 칠만").await;
    assert!(
        bad.contains("가격이 아닙니다") && bad.contains("형식"),
        "{bad}"
    );

    let settings = h.say_full(chat, "/settings signal silent").await;
    assert!(
        settings.text.contains("signal: silent"),
        "{}",
        settings.text
    );
    assert!(buttons(&settings.markup).contains(&"pref:alert:off".to_string()));
    let english = h.press(chat, "lang:en").await;
    assert!(english.contains("Language: English"), "{english}");

    let key = h.say(chat, "/apikey").await;
    let token = key
        .split_whitespace()
        .find(|w| w.starts_with("tw_"))
        .expect("the key is shown once")
        .to_string();
    let caller = h
        .services
        .authenticate(&token)
        .await
        .expect("the key works");
    assert_eq!(
        caller.user_id,
        h.services
            .user_by_chat(chat)
            .await
            .expect("q")
            .expect("user")
            .id
    );

    // /web: a one-time sign-in link to the dashboard, its token in the URL's fragment.
    let web = h.say(chat, "/web").await;
    let link = web
        .split_whitespace()
        .find_map(|w| w.split_once("/#login="))
        .map(|(_, token)| token.to_string())
        .unwrap_or_else(|| panic!("a sign-in link: {web}"));
    let session = h
        .services
        .sign_in_with_link(&link)
        .await
        .expect("the link signs in");
    assert_eq!(session.user_id, caller.user_id);
    assert!(
        h.services.sign_in_with_link(&link).await.is_err(),
        "a link works once"
    );
    let out = h.say(chat, "/web signout").await;
    assert!(out.contains("1 session"), "{out}");
    assert!(
        h.services
            .authenticate_session(&session.token)
            .await
            .is_err(),
        "signed out everywhere"
    );

    // The notifier paused this user (the bot was blocked): /start says so.
    h.services
        .deactivate_user(caller.user_id, "the bot was blocked")
        .await
        .expect("pause");
    let start = h.say(chat, "/start").await;
    assert!(
        start.contains("paused")
            && start.contains("the bot was blocked")
            && start.contains("/register"),
        "{start}"
    );
    let back = h.say(chat, "/register").await;
    assert!(back.contains("back on"), "{back}");

    // /unregister stops notifications; the button deletes everything.
    let stop = h.say_full(chat, "/unregister").await;
    assert!(stop.text.contains("stopped"), "{}", stop.text);
    assert_eq!(buttons(&stop.markup), vec!["forget".to_string()]);
    let gone = h.press(chat, "forget").await;
    assert!(gone.contains("Deleted your data"), "{gone}");
    assert!(
        h.services.authenticate(&token).await.is_err(),
        "its keys are gone"
    );
    h.stop().await;
}

#[tokio::test]
async fn subscriptions_prices_signals_and_stats() {
    use sea_orm::ActiveModelTrait;
    use sea_orm::ActiveValue::Set;
    use tickwatch_schema::db::entity::{latest_price, signal};

    let h = Harness::start(Backend::Sqlite).await;
    let chat = 1101;
    h.say(chat, "/register").await;
    let sub = h.say(chat, "/subscribe rsi_oversold 삼성전자 B").await;
    assert!(
        sub.contains("rsi_oversold") && sub.contains("005930") && sub.contains("grade B"),
        "{sub}"
    );
    let all = h.say(chat, "/subscribe golden_cross all").await;
    assert!(all.contains("every symbol"), "{all}");
    let list = h.say(chat, "/alerts").await;
    assert!(
        list.contains("rsi_oversold 005930 ≥B") && list.contains("golden_cross * ≥D"),
        "{list}"
    );
    let none = h.say(chat, "/unsubscribe death_cross").await;
    assert!(none.contains("No matching subscription"), "{none}");
    let removed = h.say(chat, "/unsubscribe rsi_oversold 005930").await;
    assert!(removed.contains("Removed 1"), "{removed}");
    let removed = h.say(chat, "/unsubscribe all").await;
    assert!(removed.contains("Removed 1"), "{removed}");

    let no_price = h.say(chat, "/price 삼성전자").await;
    assert!(no_price.contains("no price recorded yet"), "{no_price}");
    latest_price::ActiveModel {
        venue: Set("krx".into()),
        symbol: Set("005930".into()),
        price: Set("71500".into()),
        ts: Set(1_763_762_400_000),
    }
    .insert(&h.db.conn)
    .await
    .expect("price");
    let price = h.say(chat, "/price samsung").await;
    assert!(price.contains("005930 (krx) ₩71,500"), "{price}");
    assert!(
        price.contains("2025-11-21 22:00 UTC"),
        "an English user reads UTC: {price}"
    );
    // A time zone of their own: the same price reads in Seoul time.
    let zone = h.say(chat, "/settings tz asia/seoul").await;
    assert!(zone.contains("Time zone: Asia/Seoul"), "{zone}");
    let bad_zone = h.say(chat, "/settings tz Mars/Base").await;
    assert!(bad_zone.contains("not a time zone"), "{bad_zone}");
    let price = h.say(chat, "/price samsung").await;
    assert!(price.contains("2025-11-22 07:00 KST"), "{price}");
    let auto = h.say(chat, "/settings tz auto").await;
    assert!(auto.contains("Time zone: UTC"), "{auto}");

    let empty = h.say(chat, "/signals").await;
    assert!(empty.contains("No signals"), "{empty}");
    signal::ActiveModel {
        id: Set("sig-1".into()),
        kind: Set("golden_cross".into()),
        venue: Set("krx".into()),
        symbol: Set("005930".into()),
        interval: Set("1d".into()),
        ts: Set(1_763_762_400_000),
        price: Set("71000".into()),
        score: Set(81),
        grade: Set("A".into()),
        details: Set("{}".into()),
        ret_1: Set(Some(0.01)),
        ret_5: Set(Some(0.02)),
        ret_20: Set(None),
        created_at: Set(1_763_762_400_000),
    }
    .insert(&h.db.conn)
    .await
    .expect("signal");
    let signals = h.say(chat, "/signals 삼성전자").await;
    assert!(
        signals.contains("005930 golden_cross A (81) @ ₩71,000"),
        "{signals}"
    );
    let stats = h.say(chat, "/stats").await;
    assert!(
        stats.contains("golden_cross (1): 100% of 1 · +2.00%"),
        "{stats}"
    );
    assert!(!stats.contains("System"), "system figures are for admins");
    h.stop().await;
}

/// Webhook mode end to end: the bot registers its public URL and secret with
/// `setWebhook`, takes the updates Telegram posts with that secret (refusing others), and
/// answers them like in polling mode.
#[tokio::test]
async fn webhook_mode_registers_itself_and_answers_posted_updates() {
    use tickwatch_gateway::config::{BotMode, WebhookConfig};

    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = FakeTelegram::start().await.expect("fake telegram");
    let db = database(Backend::Sqlite).await;
    let services = Services::new(db.conn.clone(), None);
    let listen = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        probe.local_addr().expect("addr")
    };
    let config = BotConfig {
        token: Some(Secret::new("1:TEST")),
        api_url: fake.url(),
        mode: BotMode::Webhook,
        webhook: WebhookConfig {
            url: Some("https://bot.example.org/tg/hook".into()),
            listen: listen.to_string(),
            secret_token: Some(Secret::new("s3cret-token")),
        },
        ..BotConfig::default()
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (services, shutdown) = (services.clone(), shutdown.clone());
        async move { bot::run(config, services, shutdown).await }
    });

    let mut registered = None;
    for _ in 0..100 {
        registered = fake.calls().into_iter().find(|c| c.is("setWebhook"));
        if registered.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if registered.is_none() && task.is_finished() {
        panic!("the bot stopped: {:?}", task.await);
    }
    let registered = registered.unwrap_or_else(|| {
        panic!(
            "setWebhook was not called; calls: {:?}; bot finished: {}",
            fake.calls()
                .iter()
                .map(|c| c.method.clone())
                .collect::<Vec<_>>(),
            task.is_finished()
        )
    });
    assert_eq!(
        registered.params.get("url").and_then(Value::as_str),
        Some("https://bot.example.org/tg/hook")
    );
    assert_eq!(
        registered
            .params
            .get("secret_token")
            .and_then(Value::as_str),
        Some("s3cret-token")
    );

    let update = json!({
        "update_id": 1,
        "message": {"message_id": 1, "date": 1_763_762_400, "text": "/help",
            "chat": {"id": 606, "type": "private", "first_name": "W"},
            "from": {"id": 606, "is_bot": false, "first_name": "W"}}
    });
    let client = reqwest::Client::new();
    let url = format!("http://{listen}/tg/hook");
    let mut answered = None;
    for _ in 0..100 {
        // The server may still be binding.
        match client
            .post(&url)
            .header("x-telegram-bot-api-secret-token", "wrong")
            .json(&update)
            .send()
            .await
        {
            Ok(response) => {
                answered = Some(response.status());
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert_eq!(
        answered.map(|s| s.as_u16()),
        Some(401),
        "a forged update is refused"
    );
    let taken = client
        .post(&url)
        .header("x-telegram-bot-api-secret-token", "s3cret-token")
        .json(&update)
        .send()
        .await
        .expect("post");
    assert_eq!(taken.status(), 200);
    assert!(
        fake.wait_for_delivered(1, Duration::from_secs(10)).await,
        "the bot answered"
    );
    let replies = fake.delivered_to(606);
    assert_eq!(
        replies.len(),
        1,
        "answered once: the forged update was dropped"
    );
    assert!(replies[0].text.contains("/alert"), "{}", replies[0].text);

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    db.close().await.expect("cleanup");
}

#[tokio::test]
async fn paper_strategies_set_up_by_buttons_shown_paused_and_deleted() {
    let h = Harness::start(Backend::Sqlite).await;
    let chat = 1201;
    h.say(chat, "/register").await;
    let none = h.say_full(chat, "/paper").await;
    assert!(none.text.contains("No paper strategy yet"), "{}", none.text);
    assert_eq!(buttons(&none.markup), ["pn:"]);

    // Four taps: signal, market, size, exits.
    let kinds = h.press_full(chat, "pn:").await;
    assert!(kinds.text.contains("(1/4)"), "{}", kinds.text);
    let offered = buttons(&kinds.markup);
    assert!(
        offered.contains(&"pn:vcp_breakout".to_string()),
        "{offered:?}"
    );
    assert!(
        !offered.contains(&"pn:death_cross".to_string()),
        "long only: {offered:?}"
    );
    let venues = h.press_full(chat, "pn:vcp_breakout").await;
    assert!(venues.text.contains("(2/4)") && venues.text.contains("vcp_breakout"));
    assert!(buttons(&venues.markup).contains(&"pn:vcp_breakout:krx".to_string()));
    let sizes = h.press_full(chat, "pn:vcp_breakout:krx").await;
    assert!(sizes.text.contains("10,000,000 KRW"), "{}", sizes.text);
    assert_eq!(
        buttons(&sizes.markup),
        [
            "pn:vcp_breakout:krx:10",
            "pn:vcp_breakout:krx:20",
            "pn:vcp_breakout:krx:50"
        ]
    );
    let exits = h.press_full(chat, "pn:vcp_breakout:krx:20").await;
    assert!(exits.text.contains("(4/4)"), "{}", exits.text);
    assert_eq!(buttons(&exits.markup).len(), 4);
    let created = h.press(chat, "pn:vcp_breakout:krx:20:a").await;
    assert!(created.contains("Paper strategy #1"), "{created}");
    // The last button pressed again: still one strategy.
    let again = h.press(chat, "pn:vcp_breakout:krx:20:a").await;
    assert!(again.contains("Paper strategy #1"), "{again}");
    let user = h
        .services
        .user_by_chat(chat)
        .await
        .expect("read")
        .expect("registered");
    let stored = h
        .services
        .list_paper_strategies(user.id)
        .await
        .expect("strategies");
    assert_eq!(stored.len(), 1);
    let s = &stored[0].strategy;
    assert_eq!(s.kinds, [tickwatch_schema::wire::SignalKind::VcpBreakout]);
    assert_eq!(s.venues, ["krx"]);
    assert_eq!(
        (s.currency.as_str(), s.starting_balance),
        ("KRW", Decimal::from(10_000_000))
    );
    assert_eq!(
        s.sizing,
        tickwatch_paper::Sizing::PctEquity(Decimal::from(20))
    );
    assert_eq!(
        (s.take_profit_pct, s.stop_loss_pct),
        (Some(Decimal::from(10)), Some(Decimal::from(5)))
    );

    let shown = h.say_full(chat, "/paper 1").await;
    assert!(
        shown.text.contains("#1 vcp_breakout · KRX")
            && shown.text.contains("equity 10,000,000 KRW")
            && shown.text.contains("Trades 0"),
        "{}",
        shown.text
    );
    assert_eq!(buttons(&shown.markup), ["pz:1", "pd:1", "pl:"]);
    let listed = h.say(chat, "/paper").await;
    assert!(
        listed.contains("#1") && listed.contains("0 open"),
        "{listed}"
    );

    let paused = h.press(chat, "pz:1").await;
    assert!(paused.contains("paused"), "{paused}");
    assert!(
        !h.services
            .list_paper_strategies(user.id)
            .await
            .expect("read")[0]
            .active
    );
    let resumed = h.say(chat, "/paper resume 1").await;
    assert!(resumed.contains("resumed"), "{resumed}");

    // Someone else's strategy is not there for them.
    let other = 1202;
    h.say(other, "/register").await;
    let theirs = h.say(other, "/paper 1").await;
    assert!(theirs.contains("No paper strategy 1 of yours"), "{theirs}");
    let wrong = h.say(chat, "/paper sell").await;
    assert!(wrong.contains("/paper"), "{wrong}");
    let quiet = h.say(chat, "/settings paper silent").await;
    assert!(quiet.contains("paper"), "{quiet}");

    let deleted = h.say(chat, "/paper delete 1").await;
    assert!(deleted.contains("deleted"), "{deleted}");
    assert!(
        h.say(chat, "/paper")
            .await
            .contains("No paper strategy yet")
    );
    h.stop().await;
}

#[tokio::test]
async fn charts_and_the_daily_digest_in_settings() {
    let h = Harness::start(Backend::Sqlite).await;
    let chat = 1301;
    h.say(chat, "/register").await;
    let shown = h.say_full(chat, "/settings").await;
    assert!(shown.text.contains("charts: on"), "{}", shown.text);
    assert!(buttons(&shown.markup).contains(&"charts:off".to_string()));
    let off = h.say(chat, "/settings charts off").await;
    assert!(off.contains("charts: off"), "{off}");
    let user = h
        .services
        .user_by_chat(chat)
        .await
        .expect("read")
        .expect("user");
    assert!(!tickwatch_schema::db::charts_on(&user.prefs));
    let on = h.press(chat, "charts:on").await;
    assert!(on.contains("charts: on"), "{on}");
    let wrong = h.say(chat, "/settings charts maybe").await;
    assert!(wrong.contains("on or off"), "{wrong}");
    let digest = h.say(chat, "/settings digest 7:30").await;
    assert!(digest.contains("digest: 07:30"), "{digest}");
    let user = h
        .services
        .user_by_chat(chat)
        .await
        .expect("read")
        .expect("user");
    assert_eq!(user.digest_at.as_deref(), Some("07:30"));
    assert!(h.say(chat, "/settings").await.contains("digest: 07:30"));
    assert!(
        h.say(chat, "/settings digest off")
            .await
            .contains("digest: off")
    );
    let bad = h.say(chat, "/settings digest noon").await;
    assert!(bad.contains("HH:MM"), "{bad}");
    h.stop().await;
}
