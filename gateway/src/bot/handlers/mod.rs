//! What each command, plain message and button does. Every reply is in the user's
//! language; every mistake gets a reply saying what is wrong and the right form; a user
//! only ever sees and changes their own rules (the service layer checks ownership).
//! What the bot says is in [`super::texts`].

use teloxide::payloads::{AnswerCallbackQuerySetters, SendMessageSetters};
use teloxide::prelude::*;
use teloxide::types::{
    CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, MessageId,
    ParseMode, UpdateKind, User,
};
use tickwatch_schema::db::entity::user;
use tickwatch_schema::display::{self, Tz, format_price};
use tickwatch_schema::rule::{AlertRule, RuleSpec, Trigger};
use tickwatch_schema::wire::{AlertAction, EventKind, validate_symbol};

use super::Ctx;
use super::parse::{
    AlertArgs, AlertValues, Command, PaperArgs, ParseError, RuleChange, SettingsArgs,
    SubscribeArgs, Target, UnsubscribeArgs, parse,
};
use super::text::{esc, fraction_pct, help, rule_line, signed_pct, time, usage};
use super::texts::{self, Arg, Text};
use crate::error::{Error, Result};
use crate::services::market::{Resolution, SignalFilter, SymbolInfo, SymbolWarning};
use crate::services::rules::RulePatch;
use crate::services::subscriptions::NewSubscription;
use crate::services::users::{Language, Preference, ROLE_ADMIN, Registration, preferences};

mod account;
mod admin;
mod alerts;
mod market;
mod paper;

/// Rules listed by `/alerts` (more are in the API).
const LIST_LIMIT: u64 = 20;
/// Symbols offered for a plain-text search.
const SEARCH_LIMIT: usize = 8;

pub(crate) async fn handle_update(ctx: &Ctx, update: Update) {
    let result = match update.kind {
        UpdateKind::Message(message) => handle_message(ctx, &message).await,
        UpdateKind::CallbackQuery(query) => handle_callback(ctx, &query).await,
        _ => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "bot update failed");
    }
}

/// One incoming message or button, with who sent it.
struct Session<'a> {
    ctx: &'a Ctx,
    chat: i64,
    user: Option<user::Model>,
    lang: Language,
    /// The zone times are shown in (the user's, else their language's).
    tz: Tz,
    /// The message a pressed button belongs to: the answer replaces it.
    editing: Option<MessageId>,
    admin: bool,
    display_name: String,
}

impl<'a> Session<'a> {
    async fn open(ctx: &'a Ctx, chat: i64, from: Option<&User>) -> Result<Session<'a>> {
        let user = ctx.services.user_by_chat(chat).await?;
        let lang = match &user {
            Some(u) => Language::from_code(Some(&u.language)),
            None => Language::from_code(from.and_then(|f| f.language_code.as_deref())),
        };
        let tz = display::user_time_zone(
            lang.as_str(),
            user.as_ref().and_then(|u| u.time_zone.as_deref()),
        );
        let admin =
            ctx.config.is_admin_chat(chat) || user.as_ref().is_some_and(|u| u.role == ROLE_ADMIN);
        let display_name = from
            .map(|f| f.username.clone().unwrap_or_else(|| f.full_name()))
            .unwrap_or_else(|| format!("telegram-{chat}"));
        Ok(Session {
            ctx,
            chat,
            user,
            lang,
            tz,
            editing: None,
            admin,
            display_name,
        })
    }

    /// A message in the user's language.
    fn text(&self, text: &Text) -> String {
        text.get(self.lang).to_string()
    }

    /// A message in the user's language with its `{placeholders}` filled in.
    fn text_with(&self, text: &Text, args: &[Arg]) -> String {
        text.fill(self.lang, args)
    }

    async fn reply(&self, text: String) -> Result<()> {
        self.reply_with(text, None).await
    }

    async fn reply_with(&self, text: String, markup: Option<InlineKeyboardMarkup>) -> Result<()> {
        // A button's answer replaces the message it belongs to, as an app's screen would.
        if let Some(message_id) = self.editing {
            let mut edit = self
                .ctx
                .bot
                .edit_message_text(ChatId(self.chat), message_id, text.clone())
                .parse_mode(ParseMode::Html);
            if let Some(markup) = markup.clone() {
                edit = edit.reply_markup(markup);
            }
            match edit.await {
                Ok(_) => return Ok(()),
                // Pressing the same button twice leaves the message as it is.
                Err(e) if e.to_string().contains("message is not modified") => return Ok(()),
                // Too old or gone: a new message instead.
                Err(e) => {
                    tracing::debug!(error = %e, "could not edit the message; sending a new one")
                }
            }
        }
        let mut request = self
            .ctx
            .bot
            .send_message(ChatId(self.chat), text)
            .parse_mode(ParseMode::Html)
            .link_preview_options(LinkPreviewOptions {
                is_disabled: true,
                url: None,
                prefer_small_media: false,
                prefer_large_media: false,
                show_above_text: false,
            });
        if let Some(markup) = markup {
            request = request.reply_markup(markup);
        }
        request.await?;
        Ok(())
    }

    /// The registered, active user, or a reply telling how to register.
    async fn registered(&self) -> Result<Option<&user::Model>> {
        match &self.user {
            Some(u) if u.active => Ok(Some(u)),
            Some(_) => {
                self.reply(self.text(&texts::NOTIFICATIONS_STOPPED)).await?;
                Ok(None)
            }
            None => {
                self.reply(self.text(&texts::REGISTER_FIRST)).await?;
                Ok(None)
            }
        }
    }

    /// A failed command: what is wrong (client errors) or an apology (the rest), and the
    /// command's usage.
    async fn reply_error(&self, err: Error, command: &str) -> Result<()> {
        let body = match &err {
            // The grammar's own message is English: the form it expects follows in the
            // user's language.
            Error::Invalid { field, reason } if field == "expression" => {
                self.text_with(&texts::INVALID_EXPRESSION, &[("reason", &esc(reason))])
            }
            Error::Invalid { field, reason } => self.text_with(
                &texts::INVALID,
                &[("field", &esc(field)), ("reason", &esc(reason))],
            ),
            Error::NotFound(what) if what.starts_with("paper strategy") => {
                self.text_with(&texts::PAPER_NOT_FOUND, &[("what", &esc(what))])
            }
            Error::NotFound(what) => self.text_with(&texts::NOT_FOUND, &[("what", &esc(what))]),
            Error::Conflict(detail) | Error::Forbidden(detail) | Error::BadRequest(detail) => {
                format!("⚠️ {}", esc(detail))
            }
            _ => {
                tracing::error!(error = %err, chat = self.chat, command, "bot command failed");
                return self.reply(self.text(&texts::INTERNAL_ERROR)).await;
            }
        };
        let hint = if matches!(err, Error::NotFound(_)) {
            String::new()
        } else {
            format!("\n{}", usage(self.lang, command))
        };
        self.reply(format!("{body}{hint}")).await
    }
}

fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Start => "start",
        Command::Help => "help",
        Command::Register => "register",
        Command::Unregister => "unregister",
        Command::Alert(_) => "alert",
        Command::Alerts => "alerts",
        Command::DelAlert(_) => "delalert",
        Command::Pause(_) => "pause",
        Command::Edit(..) => "edit",
        Command::Resume(_) => "resume",
        Command::Subscribe(_) => "subscribe",
        Command::Unsubscribe(_) => "unsubscribe",
        Command::Signals(_) => "signals",
        Command::Stats => "stats",
        Command::Price(_) => "price",
        Command::Settings(_) => "settings",
        Command::ApiKey { .. } => "apikey",
        Command::Relay => "relay",
        Command::Web { .. } => "web",
        Command::Halt => "halt",
        Command::Broadcast(_) => "broadcast",
        Command::Paper(_) => "paper",
    }
}

async fn handle_message(ctx: &Ctx, message: &Message) -> Result<()> {
    let Some(text) = message.text() else {
        return Ok(());
    };
    let from = message.from.as_ref();
    if from.is_some_and(|f| f.is_bot) {
        return Ok(());
    }
    let session = Session::open(ctx, message.chat.id.0, from).await?;
    match parse(text, &ctx.username) {
        None if text.trim_start().starts_with('/') => Ok(()),
        // In a group, plain chatter is not a search request.
        None if !message.chat.is_private() => Ok(()),
        None => session.search(text).await,
        Some(Err(ParseError::Unknown(name))) => {
            session
                .reply(session.text_with(&texts::UNKNOWN_COMMAND, &[("name", &esc(&name))]))
                .await
        }
        Some(Err(ParseError::Usage { command, problem })) => {
            session
                .reply(format!(
                    "⚠️ {}\n{}",
                    esc(problem.text(session.lang)),
                    usage(session.lang, command)
                ))
                .await
        }
        Some(Ok(command)) => {
            let name = command_name(&command);
            match session.run(command).await {
                Ok(()) => Ok(()),
                Err(Error::Telegram(e)) => Err(Error::Telegram(e)),
                Err(e) => session.reply_error(e, name).await,
            }
        }
    }
}

impl Session<'_> {
    async fn run(&self, command: Command) -> Result<()> {
        match command {
            Command::Start => self.start().await,
            Command::Help => self.reply(help(self.lang, self.admin)).await,
            Command::Register => self.register().await,
            Command::Unregister => self.unregister().await,
            Command::Alert(args) => self.alert(args).await,
            Command::Alerts => self.alerts(None).await,
            Command::DelAlert(id) => self.delete(id).await,
            Command::Pause(id) => self.set_active(id, false).await,
            Command::Edit(id, change) => self.edit(id, change).await,
            Command::Resume(Some(id)) => self.set_active(id, true).await,
            Command::Resume(None) => self.resume_all().await,
            Command::Subscribe(args) => self.subscribe(args).await,
            Command::Unsubscribe(args) => self.unsubscribe(args).await,
            Command::Signals(symbol) => self.signals(symbol).await,
            Command::Stats => self.stats().await,
            Command::Price(symbol) => self.price(&symbol).await,
            Command::Settings(args) => self.settings(args).await,
            Command::ApiKey { revoke } => self.api_key(revoke).await,
            Command::Relay => self.relay().await,
            Command::Web { sign_out } => self.web(sign_out).await,
            Command::Halt => self.halt().await,
            Command::Broadcast(text) => self.broadcast(text).await,
            Command::Paper(args) => self.paper(args).await,
        }
    }
}

async fn handle_callback(ctx: &Ctx, query: &CallbackQuery) -> Result<()> {
    let Some(chat) = query.message.as_ref().map(|m| m.chat().id.0) else {
        ctx.bot.answer_callback_query(query.id.clone()).await?;
        return Ok(());
    };
    let mut session = Session::open(ctx, chat, Some(&query.from)).await?;
    session.editing = query.message.as_ref().map(|m| m.id());
    let data = query.data.as_deref().unwrap_or_default();
    if let Some((action, rule_id)) = AlertAction::parse(data) {
        return session.notice_button(query, action, rule_id).await;
    }
    let (action, arg) = data.split_once(':').unwrap_or((data, ""));
    // Stops the button's spinner first; the outcome replaces the button's message.
    ctx.bot
        .answer_callback_query(query.id.clone())
        .text(session.text(&texts::BUTTON_OK))
        .await?;
    let outcome = match action {
        "del" | "pause" | "resume" => match arg.parse::<i64>() {
            Ok(id) if action == "del" => session.delete(id).await,
            Ok(id) => session.set_active(id, action == "resume").await,
            Err(_) => Ok(()),
        },
        "pick" => session.picked(arg).await,
        "alerts" => session.alerts(arg.parse().ok()).await,
        "forget" => session.forget().await,
        "pref" => match arg.split_once(':') {
            Some((kind, pref)) => match (kind.parse::<EventKind>(), pref.parse::<Preference>()) {
                (Ok(kind), Ok(pref)) => {
                    session.settings(SettingsArgs::Preference(kind, pref)).await
                }
                _ => Ok(()),
            },
            None => Ok(()),
        },
        "pn" => session.paper_new(arg).await,
        "pp" | "pz" | "pr" | "pd" => match arg.parse::<i64>() {
            Ok(id) => {
                let args = match action {
                    "pp" => PaperArgs::Show(id),
                    "pz" => PaperArgs::Pause(id),
                    "pr" => PaperArgs::Resume(id),
                    _ => PaperArgs::Delete(id),
                };
                session.paper(args).await
            }
            Err(_) => Ok(()),
        },
        "pl" => session.paper(PaperArgs::List).await,
        "charts" => session.settings(SettingsArgs::Charts(arg == "on")).await,
        "lang" => match arg.parse::<Language>() {
            Ok(lang) => session.settings(SettingsArgs::Language(lang)).await,
            Err(_) => Ok(()),
        },
        _ => Ok(()),
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(Error::Telegram(e)) => Err(Error::Telegram(e)),
        Err(e) => session.reply_error(e, "alerts").await,
    }
}

/// How long the snooze button puts an alert to sleep.
const SNOOZE_MS: i64 = 3_600_000;

impl Session<'_> {
    /// A button under an alert's notification: acts on the rule, says what it did in a
    /// short notice, and changes the buttons in place — the notification's text stays, so
    /// the alert can still be read.
    async fn notice_button(
        &self,
        query: &CallbackQuery,
        action: AlertAction,
        rule_id: Option<i64>,
    ) -> Result<()> {
        let answer = |text: String| {
            self.ctx
                .bot
                .answer_callback_query(query.id.clone())
                .text(text)
        };
        let Some(user) = self.user.as_ref().filter(|u| u.active) else {
            answer(self.text(&texts::REGISTER_FIRST)).await?;
            return Ok(());
        };
        let Some(id) = rule_id else {
            // Not data the alerts role sends: nothing to act on.
            self.ctx.bot.answer_callback_query(query.id.clone()).await?;
            return Ok(());
        };
        let services = &self.ctx.services;
        let until = tickwatch_schema::db::now_ms().saturating_add(SNOOZE_MS);
        let done = match action {
            AlertAction::Pause => services.set_rule_active(user.id, id, false).await,
            AlertAction::Resume => services.set_rule_active(user.id, id, true).await,
            AlertAction::Delete => services.delete_rule(user.id, id).await,
            AlertAction::Snooze => services.snooze_rule(user.id, id, until).await,
        };
        let rule = match done {
            Ok(rule) => rule,
            Err(Error::NotFound(_)) => {
                answer(self.text_with(&texts::NOTICE_GONE, &[("id", &id)])).await?;
                return self.set_notice_buttons(query, Vec::new()).await;
            }
            Err(Error::Invalid { reason, .. }) => {
                answer(format!("⚠️ {reason}")).await?;
                return Ok(());
            }
            Err(Error::Conflict(detail) | Error::Forbidden(detail) | Error::BadRequest(detail)) => {
                answer(format!("⚠️ {detail}")).await?;
                return Ok(());
            }
            Err(e) => {
                answer(self.text(&texts::INTERNAL_ERROR)).await?;
                return Err(e);
            }
        };
        let notice = match action {
            AlertAction::Pause => self.text_with(&texts::NOTICE_PAUSED, &[("id", &id)]),
            AlertAction::Resume => self.text_with(&texts::NOTICE_RESUMED, &[("id", &id)]),
            AlertAction::Delete => self.text_with(&texts::NOTICE_DELETED, &[("id", &id)]),
            AlertAction::Snooze => self.text_with(
                &texts::NOTICE_SNOOZED,
                &[("id", &id), ("time", &display::format_time(until, self.tz))],
            ),
        };
        answer(notice).await?;
        let button = |label: &Text, action: AlertAction| {
            InlineKeyboardButton::callback(self.text(label), action.data(id))
        };
        let buttons = match action {
            AlertAction::Delete => Vec::new(),
            _ if rule.active => vec![
                button(&texts::NOTICE_PAUSE_BUTTON, AlertAction::Pause),
                button(&texts::NOTICE_DELETE_BUTTON, AlertAction::Delete),
                button(&texts::NOTICE_SNOOZE_BUTTON, AlertAction::Snooze),
            ],
            _ => vec![
                button(&texts::NOTICE_RESUME_BUTTON, AlertAction::Resume),
                button(&texts::NOTICE_DELETE_BUTTON, AlertAction::Delete),
            ],
        };
        self.set_notice_buttons(query, buttons).await
    }

    /// Replaces the buttons of the notification a button belongs to (none: removes them).
    async fn set_notice_buttons(
        &self,
        query: &CallbackQuery,
        buttons: Vec<InlineKeyboardButton>,
    ) -> Result<()> {
        let Some(message) = query.message.as_ref() else {
            return Ok(());
        };
        let rows = if buttons.is_empty() {
            Vec::new()
        } else {
            vec![buttons]
        };
        let edit = self
            .ctx
            .bot
            .edit_message_reply_markup(ChatId(self.chat), message.id())
            .reply_markup(InlineKeyboardMarkup::new(rows));
        // Pressing twice may ask for the buttons it already has: Telegram says "not
        // modified", which changes nothing here.
        if let Err(e) = edit.await {
            tracing::debug!(error = %e, chat = self.chat, "notification buttons not changed");
        }
        Ok(())
    }

    /// A search result's button: how to set an alert on it, with its price if known.
    async fn picked(&self, arg: &str) -> Result<()> {
        let Some((venue, symbol)) = arg.split_once(':') else {
            return Ok(());
        };
        let name = format!("{venue}:{symbol}");
        let price = match self.ctx.services.price(venue, symbol).await {
            Ok(p) => self.text_with(
                &texts::PICKED_PRICE,
                &[("price", &display::format_price(p.price, venue, symbol))],
            ),
            Err(_) => String::new(),
        };
        self.reply(self.text_with(&texts::PICKED, &[("name", &esc(&name)), ("price", &price)]))
            .await
    }

    /// The "delete all my data" button of `/unregister`.
    async fn forget(&self) -> Result<()> {
        let Some(user) = &self.user else {
            return self.reply(self.text(&texts::NOTHING_TO_DELETE)).await;
        };
        let removed = self.ctx.services.remove_user(user.id).await?;
        self.reply(self.text_with(
            &texts::DATA_DELETED,
            &[
                ("rules", &removed.rules),
                ("subscriptions", &removed.subscriptions),
                ("api_keys", &removed.api_keys),
            ],
        ))
        .await
    }
}
