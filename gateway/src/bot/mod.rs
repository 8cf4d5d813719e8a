//! The Telegram bot: [`run`] receives updates (long polling by default, or a webhook) and
//! hands each to one of `workers` tasks, chosen by chat, so one chat's messages are
//! handled in order while chats run side by side.
//!
//! - `parse`: commands as typed values, with every mistake in English and Korean.
//! - `handlers`: what each command and button does, through [`crate::Services`].
//! - `text`: every command's usage and example, `/help`, formatting.
//! - `texts`: every message the bot sends, English and Korean side by side.
//! - `webhook`: the webhook receiver (mode `webhook`).
//!
//! **Webhook mode** (`mode = "webhook"`): the bot calls `setWebhook(webhook.url,
//! secret_token)` and listens on `webhook.listen` at the URL's path; put an HTTPS proxy
//! in front (Telegram requires HTTPS on ports 443, 80, 88 or 8443). A POST without the
//! secret in `X-Telegram-Bot-Api-Secret-Token` is refused. Switching back to polling
//! deletes the webhook.

mod handlers;
pub mod parse;
pub mod text;
pub mod texts;
mod webhook;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use teloxide::payloads::{GetUpdatesSetters, SetMyCommandsSetters};
use teloxide::prelude::*;
use teloxide::requests::Request;
use teloxide::types::{AllowedUpdate, BotCommand, UpdateKind};
use tickwatch_schema::backoff::Backoff;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{BotConfig, BotMode};
use crate::error::{Error, Result};
use crate::services::Services;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub bot: Bot,
    pub services: Services,
    pub config: Arc<BotConfig>,
    /// The bot's `@username`, to tell commands meant for it in groups.
    pub username: Arc<str>,
}

/// Hands updates to the workers: one chat always to the same worker.
#[derive(Clone)]
pub(crate) struct Dispatch {
    senders: Vec<mpsc::Sender<Update>>,
}

impl Dispatch {
    fn chat_of(update: &Update) -> i64 {
        match &update.kind {
            UpdateKind::Message(m) => m.chat.id.0,
            UpdateKind::CallbackQuery(q) => q.message.as_ref().map_or(0, |m| m.chat().id.0),
            _ => 0,
        }
    }

    /// Waits for room in the chat's worker queue (backpressure onto the receiver).
    pub async fn send(&self, update: Update) -> bool {
        if self.senders.is_empty() {
            return false;
        }
        let index = (Self::chat_of(&update).unsigned_abs() % self.senders.len() as u64) as usize;
        self.senders[index].send(update).await.is_ok()
    }
}

fn spawn_workers(ctx: &Ctx, count: usize) -> (Dispatch, Vec<JoinHandle<()>>) {
    let mut senders = Vec::with_capacity(count);
    let mut handles = Vec::with_capacity(count);
    for _ in 0..count {
        let (tx, mut rx) = mpsc::channel::<Update>(64);
        senders.push(tx);
        let ctx = ctx.clone();
        handles.push(tokio::spawn(async move {
            while let Some(update) = rx.recv().await {
                // A bug in one command must not stop the chats of this worker.
                let handled = AssertUnwindSafe(handlers::handle_update(&ctx, update))
                    .catch_unwind()
                    .await;
                if handled.is_err() {
                    tracing::error!("a bot handler panicked; the update was dropped");
                }
            }
        }));
    }
    (Dispatch { senders }, handles)
}

/// Builds the teloxide bot for the configured token and API URL.
fn build_bot(config: &BotConfig) -> Result<Bot> {
    let token = config.token.as_ref().ok_or_else(|| {
        Error::Config("bot.token: set TELEGRAM_BOT_TOKEN (from @BotFather) to run the bot".into())
    })?;
    // Only ring is compiled in; installing it here keeps a forgotten call in main from
    // panicking at the first request. A second install is refused harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // A long poll must not outlive the HTTP client's timeout.
    let client = teloxide::net::default_reqwest_settings()
        .timeout(Duration::from_secs(u64::from(config.poll_timeout_s) + 15))
        .build()
        .map_err(|e| Error::Config(format!("bot HTTP client: {}", e.without_url())))?;
    let url = reqwest::Url::parse(&config.api_url)
        .map_err(|e| Error::Config(format!("bot.api_url: {e}")))?;
    Ok(Bot::with_client(token.expose(), client).set_api_url(url))
}

/// Runs the bot until `shutdown`; returns once the updates in hand are handled. Fails at
/// start on a missing or refused token; network trouble is retried with backoff.
pub async fn run(config: BotConfig, services: Services, shutdown: CancellationToken) -> Result<()> {
    config.validate()?;
    let bot = build_bot(&config)?;
    let Some(username) = whoami(&bot, &shutdown).await? else {
        return Ok(());
    };
    tracing::info!(%username, mode = ?config.mode, "telegram bot starting");
    set_commands(&bot).await;
    let ctx = Ctx {
        bot,
        services,
        config: Arc::new(config),
        username: username.into(),
    };
    // Broadcasts a previous process left part-way go on (their batches are durable in
    // the broker once handed over; the rest is handed over now).
    let resume = tokio::spawn({
        let services = ctx.services.clone();
        async move {
            if services.broker().is_none() {
                return;
            }
            match services.resume_broadcasts().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(broadcasts = n, "resumed unfinished broadcasts"),
                Err(e) => tracing::warn!(error = %e, "could not resume the unfinished broadcasts"),
            }
        }
    });
    // Snoozed alerts resume when their hour is up (any number of bots may run this).
    let snoozes = tokio::spawn({
        let services = ctx.services.clone();
        let shutdown = shutdown.clone();
        async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(SNOOZE_CHECK) => {}
                }
                match services
                    .resume_snoozed(tickwatch_schema::db::now_ms())
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rules = n, "snoozed alerts resumed"),
                    Err(e) => tracing::warn!(error = %e, "could not resume the snoozed alerts"),
                }
            }
        }
    });
    // The daily digests that are due (any number of bots may run this: the store claims
    // each user's day once).
    let digests = tokio::spawn({
        let services = ctx.services.clone();
        let shutdown = shutdown.clone();
        async move {
            if services.broker().is_none() {
                return;
            }
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(DIGEST_CHECK) => {}
                }
                match services
                    .send_due_digests(tickwatch_schema::db::now_ms())
                    .await
                {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(digests = n, "daily digests sent"),
                    Err(e) => tracing::warn!(error = %e, "could not send the daily digests"),
                }
            }
        }
    });
    let (dispatch, workers) = spawn_workers(&ctx, ctx.config.workers);
    let result = match ctx.config.mode {
        BotMode::Polling => poll(&ctx, dispatch, &shutdown).await,
        BotMode::Webhook => webhook::serve(&ctx, dispatch, &shutdown).await,
    };
    // The dispatch is dropped: workers finish what they hold, then stop.
    for worker in workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), worker).await;
    }
    resume.abort();
    snoozes.abort();
    digests.abort();
    result
}

/// How often the bot looks for daily digests that are due.
const DIGEST_CHECK: Duration = Duration::from_secs(30);

/// How often the bot looks for snoozed alerts whose time is up.
const SNOOZE_CHECK: Duration = Duration::from_secs(15);

/// The bot's username (`getMe`); `None` if shut down while Telegram was unreachable.
async fn whoami(bot: &Bot, shutdown: &CancellationToken) -> Result<Option<String>> {
    let mut backoff = telegram_backoff();
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            r = bot.get_me().send() => r,
        };
        match attempt {
            Ok(me) => return Ok(Some(me.username().to_string())),
            Err(teloxide::RequestError::Api(teloxide::ApiError::InvalidToken)) => {
                return Err(Error::Config(
                    "bot.token: Telegram refused the token (check TELEGRAM_BOT_TOKEN)".into(),
                ));
            }
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(error = %e, retry_in = ?delay, "telegram unreachable");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// The command menu, in Korean for Korean clients and English otherwise. A failure only
/// costs the menu.
async fn set_commands(bot: &Bot) {
    let mut seen = std::collections::HashSet::new();
    let docs: Vec<&text::CommandDoc> = text::COMMANDS
        .iter()
        .filter(|d| !d.admin && seen.insert(d.name))
        .collect();
    let ko: Vec<BotCommand> = docs.iter().map(|d| BotCommand::new(d.name, d.ko)).collect();
    let en: Vec<BotCommand> = docs.iter().map(|d| BotCommand::new(d.name, d.en)).collect();
    if let Err(e) = bot.set_my_commands(ko).language_code("ko").send().await {
        tracing::warn!(error = %e, "setMyCommands (ko) failed");
    }
    if let Err(e) = bot.set_my_commands(en).send().await {
        tracing::warn!(error = %e, "setMyCommands failed");
    }
}

fn allowed_updates() -> Vec<AllowedUpdate> {
    vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery]
}

/// Retries of Telegram's getMe and getUpdates: from 0.5 s, doubling up to 30 s.
fn telegram_backoff() -> Backoff {
    Backoff::new(
        Duration::from_millis(500),
        Duration::from_secs(30),
        2.0,
        0.0,
    )
}

/// Long polling: `getUpdates` with the offset after the last update handed on.
async fn poll(ctx: &Ctx, dispatch: Dispatch, shutdown: &CancellationToken) -> Result<()> {
    if let Err(e) = ctx.bot.delete_webhook().send().await {
        // A webhook left set makes getUpdates fail with 409; that error will say so.
        tracing::warn!(error = %e, "deleteWebhook failed");
    }
    let mut offset: i32 = 0;
    let mut backoff = telegram_backoff();
    loop {
        let request = ctx
            .bot
            .get_updates()
            .offset(offset)
            .timeout(ctx.config.poll_timeout_s)
            .allowed_updates(allowed_updates())
            .send();
        let result = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = request => r,
        };
        match result {
            Ok(updates) => {
                backoff.reset();
                for update in updates {
                    offset = offset.max(update.id.0 as i32 + 1);
                    if !dispatch.send(update).await {
                        return Err(Error::Unavailable("the bot's workers stopped".into()));
                    }
                }
            }
            Err(teloxide::RequestError::Api(teloxide::ApiError::InvalidToken)) => {
                return Err(Error::Config(
                    "bot.token: Telegram refused the token (check TELEGRAM_BOT_TOKEN)".into(),
                ));
            }
            Err(e) => {
                let delay = backoff.next_delay();
                let wait = match &e {
                    teloxide::RequestError::RetryAfter(s) => s.duration(),
                    _ => delay,
                };
                tracing::warn!(error = %e, retry_in = ?wait, "getUpdates failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    if offset > 0 {
        // Confirms what was handed on, so a restart does not handle it again.
        let confirm = ctx
            .bot
            .get_updates()
            .offset(offset)
            .timeout(0)
            .limit(1)
            .send();
        let _ = tokio::time::timeout(Duration::from_secs(2), confirm).await;
    }
    Ok(())
}
