//! The fake Telegram Bot API server, exercised with plain HTTP (reqwest) and with teloxide.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use teloxide::payloads::{GetUpdatesSetters, SendMessageSetters};
use teloxide::prelude::*;
use teloxide::types::{BotCommand, ParseMode, UpdateKind};
use tickwatch_tests::{FakeTelegram, Reply, Scope};

fn provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn fake() -> FakeTelegram {
    provider();
    FakeTelegram::start().await.expect("fake server starts")
}

async fn post(fake: &FakeTelegram, method: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/bot1:T/{method}", fake.url()))
        .json(&body)
        .send()
        .await
        .expect("fake answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON answer"))
}

#[tokio::test]
async fn send_message_json_and_form_are_recorded() {
    let fake = fake().await;
    let (status, body) = post(
        &fake,
        "SendMessage",
        json!({"chat_id": 42, "text": "*hi* 1\\.5", "parse_mode": "MarkdownV2",
               "disable_notification": true,
               "reply_markup": {"inline_keyboard": [[{"text": "ok", "callback_data": "x"}]]}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["text"], "hi 1.5");
    assert_eq!(body["result"]["chat"]["type"], "private");

    let response = reqwest::Client::new()
        .post(format!("{}/bot1:T/sendmessage", fake.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("chat_id=-5&text=plain+text%21")
        .send()
        .await
        .expect("fake answers");
    assert_eq!(response.status().as_u16(), 200);

    let sent = fake.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].chat_id, 42);
    assert!(sent[0].disable_notification);
    assert_eq!(sent[0].parse_mode.as_deref(), Some("MarkdownV2"));
    assert_eq!(
        sent[0]
            .reply_markup
            .as_ref()
            .map(|m| m["inline_keyboard"][0][0]["text"].clone()),
        Some(json!("ok"))
    );
    assert_eq!(sent[1].chat_id, -5);
    assert_eq!(sent[1].text, "plain text!");
    assert!(!sent[1].disable_notification);
    assert_eq!(fake.call_count("sendMessage"), 2);
}

#[tokio::test]
async fn markdown_v2_errors_have_telegrams_shape() {
    let fake = fake().await;
    let (status, body) = post(
        &fake,
        "sendMessage",
        json!({"chat_id": 1, "text": "BRK.B", "parse_mode": "MarkdownV2"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["ok"], false);
    assert_eq!(body["error_code"], 400);
    assert_eq!(
        body["description"],
        "Bad Request: can't parse entities: Character '.' is reserved and must be escaped with the preceding '\\'"
    );
    let (status, body) = post(
        &fake,
        "sendMessage",
        json!({"chat_id": 1, "text": "*open", "parse_mode": "MarkdownV2"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["description"],
        "Bad Request: can't parse entities: Can't find end of Bold entity at byte offset 0"
    );
    // Without a parse mode the same text is fine.
    let (status, _) = post(&fake, "sendMessage", json!({"chat_id": 1, "text": "BRK.B"})).await;
    assert_eq!(status, 200);
    let (status, body) = post(
        &fake,
        "sendMessage",
        json!({"chat_id": 1, "text": "x".repeat(4097)}),
    )
    .await;
    assert_eq!(
        (status, body["description"].clone()),
        (400, json!("Bad Request: message is too long"))
    );
    assert_eq!(fake.delivered().len(), 1);
    assert_eq!(fake.sent().len(), 4);
}

#[tokio::test]
async fn scripted_failures_per_chat_and_global() {
    let fake = fake().await;
    fake.script(
        Scope::Chat(7),
        [Reply::Blocked, Reply::ChatNotFound, Reply::ServerError],
    );
    fake.script(Scope::Global, [Reply::Status(502, "Bad Gateway".into())]);
    let send = |chat: i64| post(&fake, "sendMessage", json!({"chat_id": chat, "text": "x"}));
    let (s, b) = send(7).await;
    assert_eq!(
        (s, b["description"].clone()),
        (403, json!("Forbidden: bot was blocked by the user"))
    );
    let (s, b) = send(7).await;
    assert_eq!(
        (s, b["description"].clone()),
        (400, json!("Bad Request: chat not found"))
    );
    let (s, _) = send(7).await;
    assert_eq!(s, 500);
    // Chat 7's queue is empty: the global script applies.
    let (s, b) = send(7).await;
    assert_eq!((s, b["description"].clone()), (502, json!("Bad Gateway")));
    let (s, _) = send(8).await;
    assert_eq!(s, 200);

    fake.set_persistent(Scope::Chat(9), Some(Reply::UserDeactivated));
    for _ in 0..2 {
        assert_eq!(send(9).await.0, 403);
    }
    fake.set_persistent(Scope::Chat(9), None);
    assert_eq!(send(9).await.0, 200);
}

#[tokio::test]
async fn retry_after_is_enforced_and_early_retries_counted() {
    let fake = fake().await;
    fake.script(Scope::Chat(3), [Reply::RetryAfter(1)]);
    let (status, body) = post(&fake, "sendMessage", json!({"chat_id": 3, "text": "a"})).await;
    assert_eq!(status, 429);
    assert_eq!(body["parameters"]["retry_after"], 1);
    assert_eq!(body["description"], "Too Many Requests: retry after 1");
    // Too early: another 429, counted.
    let (status, _) = post(&fake, "sendMessage", json!({"chat_id": 3, "text": "a"})).await;
    assert_eq!(status, 429);
    // Other chats are not affected.
    assert_eq!(
        post(&fake, "sendMessage", json!({"chat_id": 4, "text": "a"}))
            .await
            .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(
        post(&fake, "sendMessage", json!({"chat_id": 3, "text": "a"}))
            .await
            .0,
        200
    );
    assert_eq!(fake.rates().early_retries, 1);
}

#[tokio::test]
async fn slow_replies_and_outages() {
    let fake = fake().await;
    fake.script(Scope::Global, [Reply::Slow(Duration::from_millis(300))]);
    let started = Instant::now();
    assert_eq!(
        post(&fake, "sendMessage", json!({"chat_id": 1, "text": "a"}))
            .await
            .0,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(300));

    fake.set_outage(Some(Reply::ServerError));
    assert_eq!(post(&fake, "getMe", json!({})).await.0, 500);
    assert_eq!(
        post(&fake, "sendMessage", json!({"chat_id": 1, "text": "a"}))
            .await
            .0,
        500
    );
    fake.set_outage(None);
    assert_eq!(post(&fake, "getMe", json!({})).await.0, 200);
}

#[tokio::test]
async fn rates_are_measured() {
    let fake = fake().await;
    for chat in [1, 1, 2, -100, -100] {
        post(&fake, "sendMessage", json!({"chat_id": chat, "text": "a"})).await;
    }
    let rates = fake.rates();
    assert_eq!(rates.send_calls, 5);
    assert_eq!(rates.max_per_chat_per_sec, 2);
    assert_eq!(rates.max_global_per_sec, 5);
    assert_eq!(rates.max_group_per_min, 2);
}

#[tokio::test]
async fn unknown_methods_and_wrong_tokens() {
    provider();
    let fake = FakeTelegram::start_with_token("1:GOOD")
        .await
        .expect("fake starts");
    let client = reqwest::Client::new();
    let status = |url: String| {
        let client = client.clone();
        async move {
            client
                .post(url)
                .json(&json!({}))
                .send()
                .await
                .expect("answer")
                .status()
                .as_u16()
        }
    };
    assert_eq!(status(format!("{}/bot1:BAD/getMe", fake.url())).await, 401);
    assert_eq!(status(format!("{}/bot1:GOOD/getMe", fake.url())).await, 200);
    assert_eq!(
        status(format!("{}/bot1:GOOD/noSuchMethod", fake.url())).await,
        404
    );
}

fn bot(fake: &FakeTelegram) -> Bot {
    Bot::new("1:TOKEN").set_api_url(fake.url().parse().expect("fake URL parses"))
}

#[tokio::test]
async fn teloxide_understands_every_answer() {
    let fake = fake().await;
    let bot = bot(&fake);
    let me = bot.get_me().await.expect("getMe");
    assert_eq!(me.username(), "tickwatch_fake_bot");

    let message = bot
        .send_message(ChatId(77), "*BTC* at `65000\\.5`")
        .parse_mode(ParseMode::MarkdownV2)
        .disable_notification(true)
        .await
        .expect("sendMessage");
    assert_eq!(message.chat.id, ChatId(77));
    assert_eq!(message.text(), Some("BTC at 65000.5"));
    let group = bot
        .send_message(ChatId(-1_000_000_000_123), "to a supergroup")
        .await
        .expect("sendMessage");
    assert!(group.chat.is_supergroup());

    let err = bot
        .send_message(ChatId(77), "BRK.B")
        .parse_mode(ParseMode::MarkdownV2)
        .await
        .expect_err("parse error");
    assert!(err.to_string().contains("can't parse entities"), "{err}");

    fake.script(Scope::Chat(78), [Reply::Blocked]);
    let err = bot
        .send_message(ChatId(78), "x")
        .await
        .expect_err("blocked");
    assert!(
        matches!(
            err,
            teloxide::RequestError::Api(teloxide::ApiError::BotBlocked)
        ),
        "{err:?}"
    );
    fake.script(Scope::Chat(78), [Reply::RetryAfter(5)]);
    let err = bot.send_message(ChatId(78), "x").await.expect_err("429");
    assert!(
        matches!(err, teloxide::RequestError::RetryAfter(s) if s.seconds() == 5),
        "{err:?}"
    );

    bot.set_my_commands([
        BotCommand::new("start", "Start"),
        BotCommand::new("alerts", "List alerts"),
    ])
    .await
    .expect("setMyCommands");
    assert_eq!(fake.commands()[1]["command"], "alerts");
    let commands = bot.get_my_commands().await.expect("getMyCommands");
    assert_eq!(commands.len(), 2);

    let edited = bot
        .edit_message_text(ChatId(77), message.id, "new *text*")
        .parse_mode(ParseMode::MarkdownV2)
        .await
        .expect("editMessageText");
    assert_eq!(edited.text(), Some("new text"));
    bot.delete_message(ChatId(77), message.id)
        .await
        .expect("deleteMessage");
    bot.answer_callback_query(teloxide::types::CallbackQueryId("cbq1".to_string()))
        .await
        .expect("answerCallbackQuery");
    assert_eq!(fake.call_count("deleteMessage"), 1);
    assert_eq!(fake.call_count("answerCallbackQuery"), 1);
}

#[tokio::test]
async fn teloxide_long_polling_receives_messages_and_callbacks() {
    let fake = fake().await;
    let bot = bot(&fake);

    // Nothing queued: the poll waits for its timeout, then answers empty.
    let started = Instant::now();
    let updates = bot.get_updates().timeout(1).await.expect("getUpdates");
    assert!(updates.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A message fed while a poll is waiting wakes it.
    let poll = tokio::spawn({
        let bot = bot.clone();
        async move { bot.get_updates().timeout(10).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let first = fake.push_message(5, 5, "/start");
    let updates = poll.await.expect("poll task").expect("getUpdates");
    assert_eq!(updates.len(), 1);
    let UpdateKind::Message(message) = &updates[0].kind else {
        panic!("a message update, got {:?}", updates[0].kind);
    };
    assert_eq!(message.text(), Some("/start"));
    assert_eq!(message.chat.id, ChatId(5));

    fake.push_callback_query(5, 5, 10, "pause:42");
    let updates = bot
        .get_updates()
        .offset(first as i32 + 1)
        .timeout(1)
        .await
        .expect("getUpdates");
    assert_eq!(updates.len(), 1);
    let UpdateKind::CallbackQuery(query) = &updates[0].kind else {
        panic!("a callback query, got {:?}", updates[0].kind);
    };
    assert_eq!(query.data.as_deref(), Some("pause:42"));
    assert_eq!(fake.pending_updates(), 1);
}

#[tokio::test]
async fn teloxide_polling_listener_works() {
    use futures_util::StreamExt;
    use teloxide::update_listeners::{AsUpdateStream, polling_default};

    let fake = fake().await;
    let bot = bot(&fake);
    fake.push_message(9, 9, "/help");
    let mut listener = polling_default(bot).await;
    let stream = listener.as_stream();
    tokio::pin!(stream);
    let update = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an update within 5 s")
        .expect("stream open")
        .expect("update parses");
    assert!(matches!(update.kind, UpdateKind::Message(_)));
    assert!(fake.call_count("getWebhookInfo") >= 1);
}
