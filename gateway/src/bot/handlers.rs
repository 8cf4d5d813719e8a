//! What each command, plain message and button does. Every reply is in the user's
//! language; every mistake gets a reply saying what is wrong and the right form; a user
//! only ever sees and changes their own rules (the service layer checks ownership).

use teloxide::payloads::{AnswerCallbackQuerySetters, SendMessageSetters};
use teloxide::prelude::*;
use teloxide::types::{
    CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, LinkPreviewOptions, ParseMode,
    UpdateKind, User,
};
use tickwatch_schema::db::entity::user;
use tickwatch_schema::rule::{AlertRule, RuleSpec};
use tickwatch_schema::wire::{EventKind, validate_symbol};

use super::Ctx;
use super::parse::{
    AlertArgs, AlertValues, Command, ParseError, SettingsArgs, SubscribeArgs, Target,
    UnsubscribeArgs, parse,
};
use super::text::{esc, fraction_pct, help, pick, rule_line, signed_pct, time, usage};
use crate::error::{Error, Result};
use crate::services::market::{Resolution, SignalFilter, SymbolInfo};
use crate::services::subscriptions::NewSubscription;
use crate::services::users::{Language, Preference, ROLE_ADMIN, Registration, preferences};

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
            admin,
            display_name,
        })
    }

    fn t(&self, en: impl Into<String>, ko: impl Into<String>) -> String {
        pick(self.lang, en, ko)
    }

    async fn reply(&self, text: String) -> Result<()> {
        self.reply_with(text, None).await
    }

    async fn reply_with(&self, text: String, markup: Option<InlineKeyboardMarkup>) -> Result<()> {
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
                self.reply(self.t(
                    "Your notifications are stopped. Send /register to turn them back on first.",
                    "알림이 중지된 상태입니다. 먼저 /register 로 다시 켜 주세요.",
                ))
                .await?;
                Ok(None)
            }
            None => {
                self.reply(self.t(
                    "Please /register first: it records your consent to receive notifications.",
                    "먼저 /register 해 주세요: 알림 수신 동의를 기록합니다.",
                ))
                .await?;
                Ok(None)
            }
        }
    }

    /// A failed command: what is wrong (client errors) or an apology (the rest), and the
    /// command's usage.
    async fn reply_error(&self, err: Error, command: &str) -> Result<()> {
        let body = match &err {
            Error::Invalid { field, reason } => self.t(
                format!("⚠️ Invalid <code>{}</code>: {}", esc(field), esc(reason)),
                format!("⚠️ 잘못된 <code>{}</code>: {}", esc(field), esc(reason)),
            ),
            Error::NotFound(what) => self.t(
                format!("⚠️ No {} of yours. /alerts lists yours.", esc(what)),
                format!(
                    "⚠️ 해당 항목이 없습니다 ({}). /alerts 로 확인하세요.",
                    esc(what)
                ),
            ),
            Error::Conflict(detail) | Error::Forbidden(detail) | Error::BadRequest(detail) => {
                format!("⚠️ {}", esc(detail))
            }
            _ => {
                tracing::error!(error = %err, chat = self.chat, command, "bot command failed");
                return self
                    .reply(self.t(
                        "😵 Something went wrong on our side. Please try again in a moment.",
                        "😵 서버에 문제가 생겼습니다. 잠시 후 다시 시도해 주세요.",
                    ))
                    .await;
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
        Command::Resume(_) => "resume",
        Command::Subscribe(_) => "subscribe",
        Command::Unsubscribe(_) => "unsubscribe",
        Command::Signals(_) => "signals",
        Command::Stats => "stats",
        Command::Price(_) => "price",
        Command::Settings(_) => "settings",
        Command::ApiKey { .. } => "apikey",
        Command::Halt => "halt",
        Command::Broadcast(_) => "broadcast",
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
                .reply(session.t(
                    format!(
                        "🤔 There is no /{} command. /help lists them all.",
                        esc(&name)
                    ),
                    format!(
                        "🤔 /{} 명령은 없습니다. /help 에서 전체 목록을 보세요.",
                        esc(&name)
                    ),
                ))
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
            Command::Alerts => self.alerts().await,
            Command::DelAlert(id) => self.delete(id).await,
            Command::Pause(id) => self.set_active(id, false).await,
            Command::Resume(Some(id)) => self.set_active(id, true).await,
            Command::Resume(None) => self.resume_all().await,
            Command::Subscribe(args) => self.subscribe(args).await,
            Command::Unsubscribe(args) => self.unsubscribe(args).await,
            Command::Signals(symbol) => self.signals(symbol).await,
            Command::Stats => self.stats().await,
            Command::Price(symbol) => self.price(&symbol).await,
            Command::Settings(args) => self.settings(args).await,
            Command::ApiKey { revoke } => self.api_key(revoke).await,
            Command::Halt => self.halt().await,
            Command::Broadcast(text) => self.broadcast(text).await,
        }
    }

    async fn start(&self) -> Result<()> {
        let text = match &self.user {
            Some(u) if !u.active => {
                let reason = u.paused_reason.as_deref().unwrap_or("-");
                self.t(
                    format!(
                        "👋 Welcome back. Your notifications were paused: <i>{}</i>.\nSend /register to resume them; your alerts are kept.",
                        esc(reason)
                    ),
                    format!(
                        "👋 다시 오신 것을 환영합니다. 알림이 일시 중지되었습니다: <i>{}</i>.\n/register 를 보내면 다시 받습니다. 알림 설정은 그대로 있습니다.",
                        esc(reason)
                    ),
                )
            }
            Some(u) => {
                let rules = self.ctx.services.count_rules(u.id).await?;
                self.t(
                    format!("👋 Welcome back, {}. You have {rules} alert(s): /alerts. /help lists every command.", esc(&u.name)),
                    format!("👋 {}님, 다시 오셨네요. 알림 {rules}개: /alerts. /help 에서 모든 명령을 볼 수 있습니다.", esc(&u.name)),
                )
            }
            None => self.t(
                "👋 Welcome to <b>tickwatch</b>: price alerts and market signals, right here.\n1. /register — agree to receive notifications\n2. <code>/alert BTCUSDT &gt; 65000</code> — your first alert\n/help lists every command. Type a name such as <code>btc</code> or <code>삼성</code> to find a symbol.",
                "👋 <b>tickwatch</b>에 오신 것을 환영합니다: 가격 알림과 시장 신호.\n1. /register — 알림 수신 동의\n2. <code>/alert 삼성전자 &gt; 70000</code> — 첫 알림\n/help 에서 모든 명령을 볼 수 있습니다. <code>삼성</code>, <code>btc</code> 처럼 이름을 보내면 종목을 찾습니다.",
            ),
        };
        self.reply(text).await
    }

    async fn register(&self) -> Result<()> {
        let (_, outcome) = self
            .ctx
            .services
            .register_chat(self.chat, &self.display_name, self.lang)
            .await?;
        let text = match outcome {
            Registration::New => self.t(
                "✅ Registered. You agreed to receive notifications from this bot; /unregister stops them at any time.\nTry <code>/alert BTCUSDT &gt; 65000</code>.",
                "✅ 등록되었습니다. 이 봇의 알림 수신에 동의하셨습니다. 언제든 /unregister 로 중지할 수 있습니다.\n예: <code>/alert 삼성전자 &gt; 70000</code>",
            ),
            Registration::Reactivated => self.t(
                "✅ Notifications are back on. /alerts lists your alerts.",
                "✅ 알림을 다시 받습니다. /alerts 로 알림을 확인하세요.",
            ),
            Registration::Already => self.t(
                "You are already registered. /alerts lists your alerts.",
                "이미 등록되어 있습니다. /alerts 로 알림을 확인하세요.",
            ),
        };
        self.reply(text).await
    }

    async fn unregister(&self) -> Result<()> {
        let Some(u) = &self.user else {
            return self
                .reply(self.t("You are not registered.", "등록되어 있지 않습니다."))
                .await;
        };
        self.ctx
            .services
            .deactivate_user(u.id, "you sent /unregister")
            .await?;
        let rules = self.ctx.services.count_rules(u.id).await?;
        let button = InlineKeyboardMarkup::new([[InlineKeyboardButton::callback(
            self.t("🗑 Delete all my data", "🗑 내 데이터 모두 삭제"),
            "forget",
        )]]);
        self.reply_with(
            self.t(
                format!("🔕 Notifications stopped. Your {rules} alert(s) are kept: /register turns notifications back on.\nOr delete everything (alerts, subscriptions, API keys):"),
                format!("🔕 알림을 중지했습니다. 알림 {rules}개는 보관됩니다: /register 로 다시 켤 수 있습니다.\n또는 모든 데이터(알림, 구독, API 키)를 삭제할 수 있습니다:"),
            ),
            Some(button),
        )
        .await
    }

    /// A symbol typed in a command: found, or a reply explaining (ambiguous, unknown).
    async fn resolve(&self, text: &str, command: &str) -> Result<Option<SymbolInfo>> {
        match self.ctx.services.resolve_symbol(text).await? {
            Resolution::Found(info) => Ok(Some(info)),
            Resolution::Ambiguous(options) => {
                let list: Vec<String> = options
                    .iter()
                    .map(|s| {
                        format!(
                            "<code>{}:{}</code> ({})",
                            esc(&s.venue),
                            esc(&s.symbol),
                            esc(&s.name)
                        )
                    })
                    .collect();
                self.reply(self.t(
                    format!("🤔 “{}” matches several symbols: {}.\nWrite one of them as <code>venue:SYMBOL</code>.\n{}", esc(text), list.join(", "), usage(self.lang, command)),
                    format!("🤔 “{}”에 해당하는 종목이 여럿입니다: {}.\n<code>거래소:종목</code> 형식으로 하나를 고르세요.\n{}", esc(text), list.join(", "), usage(self.lang, command)),
                ))
                .await?;
                Ok(None)
            }
            Resolution::NotFound { suggestions } => {
                let hint = if suggestions.is_empty() {
                    self.t(
                        "Type a name such as <code>btc</code> or <code>삼성</code> to search.",
                        "<code>btc</code>, <code>삼성</code> 처럼 이름을 보내 검색해 보세요.",
                    )
                } else {
                    let list: Vec<String> = suggestions
                        .iter()
                        .map(|s| format!("<code>{}</code> ({})", esc(&s.symbol), esc(&s.name)))
                        .collect();
                    self.t(
                        format!("Did you mean {}?", list.join(", ")),
                        format!("혹시 {} 인가요?", list.join(", ")),
                    )
                };
                self.reply(self.t(
                    format!(
                        "⚠️ Unknown symbol “{}”. {hint}\n{}",
                        esc(text),
                        usage(self.lang, command)
                    ),
                    format!(
                        "⚠️ 알 수 없는 종목 “{}”. {hint}\n{}",
                        esc(text),
                        usage(self.lang, command)
                    ),
                ))
                .await?;
                Ok(None)
            }
        }
    }

    async fn alert(&self, args: AlertArgs) -> Result<()> {
        let Some(user) = self.registered().await? else {
            return Ok(());
        };
        let Some(info) = self.resolve(&args.symbol, "alert").await? else {
            return Ok(());
        };
        let mut spec = RuleSpec::price(
            &info.venue,
            &info.symbol,
            args.condition,
            rust_decimal::Decimal::ZERO,
        );
        spec.threshold = None;
        match args.values {
            AlertValues::Price(p) => spec.threshold = Some(p),
            AlertValues::Channel { low, high } => {
                spec.low = Some(low);
                spec.high = Some(high);
            }
            AlertValues::Moving { pct, window_s } => {
                spec.pct = Some(pct);
                spec.window_s = Some(window_s);
            }
        }
        spec.trigger = args.trigger;
        spec.cooldown_s = args.cooldown_s;
        spec.interval = args.interval;
        let rule = self.ctx.services.create_rule(user.id, spec).await?;
        let name = if info.name != info.symbol {
            format!(" — {}", esc(&info.name))
        } else {
            String::new()
        };
        self.reply(self.t(
            format!("✅ Alert <b>#{}</b> set{name}:\n{}\n/alerts lists yours; /pause {} or /delalert {}.", rule.id, rule_line(&rule), rule.id, rule.id),
            format!("✅ 알림 <b>#{}</b> 설정{name}:\n{}\n/alerts 로 목록, /pause {} 일시정지, /delalert {} 삭제.", rule.id, rule_line(&rule), rule.id, rule.id),
        ))
        .await
    }

    fn rule_buttons(&self, rules: &[AlertRule]) -> InlineKeyboardMarkup {
        let rows: Vec<Vec<InlineKeyboardButton>> = rules
            .iter()
            .map(|r| {
                let toggle = if r.active {
                    InlineKeyboardButton::callback(
                        self.t(
                            format!("⏸ Pause #{}", r.id),
                            format!("⏸ 일시정지 #{}", r.id),
                        ),
                        format!("pause:{}", r.id),
                    )
                } else {
                    InlineKeyboardButton::callback(
                        self.t(format!("▶ Resume #{}", r.id), format!("▶ 재개 #{}", r.id)),
                        format!("resume:{}", r.id),
                    )
                };
                vec![
                    toggle,
                    InlineKeyboardButton::callback(
                        self.t(format!("🗑 Delete #{}", r.id), format!("🗑 삭제 #{}", r.id)),
                        format!("del:{}", r.id),
                    ),
                ]
            })
            .collect();
        InlineKeyboardMarkup::new(rows)
    }

    async fn alerts(&self) -> Result<()> {
        let Some(user) = self.registered().await? else {
            return Ok(());
        };
        let page = self
            .ctx
            .services
            .list_rules(user.id, None, LIST_LIMIT)
            .await?;
        let subs = self.ctx.services.list_subscriptions(user.id).await?;
        let mut text = if page.items.is_empty() {
            self.t(
                "You have no alerts yet. Example: <code>/alert BTCUSDT &gt; 65000</code>",
                "아직 알림이 없습니다. 예: <code>/alert 삼성전자 &gt; 70000</code>",
            )
        } else {
            let lines: Vec<String> = page.items.iter().map(rule_line).collect();
            let more = if page.next_cursor.is_some() {
                self.t(
                    format!("\n… and more: the API lists them all (showing {LIST_LIMIT})."),
                    format!(
                        "\n… 더 있습니다: API에서 전체를 볼 수 있습니다 ({LIST_LIMIT}개 표시)."
                    ),
                )
            } else {
                String::new()
            };
            format!(
                "{}\n{}{more}",
                self.t("<b>Your alerts</b>", "<b>내 알림</b>"),
                lines.join("\n")
            )
        };
        if !subs.is_empty() {
            let lines: Vec<String> = subs
                .iter()
                .map(|v| {
                    let s = &v.subscription;
                    format!(
                        "<b>#{}</b> {} {} ≥{}",
                        s.id,
                        s.kind,
                        esc(s.symbol.as_deref().unwrap_or("*")),
                        s.min_grade
                    )
                })
                .collect();
            text.push_str(&format!(
                "\n\n{}\n{}",
                self.t("<b>Your signal subscriptions</b>", "<b>내 신호 구독</b>"),
                lines.join("\n")
            ));
        }
        let markup = (!page.items.is_empty()).then(|| self.rule_buttons(&page.items));
        self.reply_with(text, markup).await
    }

    async fn delete(&self, id: i64) -> Result<()> {
        let Some(user) = self.registered().await? else {
            return Ok(());
        };
        self.ctx.services.delete_rule(user.id, id).await?;
        self.reply(self.t(
            format!("🗑 Alert #{id} deleted."),
            format!("🗑 알림 #{id} 삭제됨."),
        ))
        .await
    }

    async fn set_active(&self, id: i64, active: bool) -> Result<()> {
        let Some(user) = self.registered().await? else {
            return Ok(());
        };
        let rule = self
            .ctx
            .services
            .set_rule_active(user.id, id, active)
            .await?;
        let text = if active {
            self.t(
                format!("▶ Alert #{id} resumed.\n{}", rule_line(&rule)),
                format!("▶ 알림 #{id} 재개.\n{}", rule_line(&rule)),
            )
        } else {
            self.t(
                format!(
                    "⏸ Alert #{id} paused; /resume {id} resumes it.\n{}",
                    rule_line(&rule)
                ),
                format!(
                    "⏸ 알림 #{id} 일시정지; /resume {id} 로 재개.\n{}",
                    rule_line(&rule)
                ),
            )
        };
        self.reply(text).await
    }

    async fn resume_all(&self) -> Result<()> {
        if !self.admin {
            return self
                .reply(self.t(
                    format!(
                        "⚠️ Which alert? Give its id.\n{}",
                        usage(self.lang, "resume")
                    ),
                    format!(
                        "⚠️ 어떤 알림인가요? 번호를 쓰세요.\n{}",
                        usage(self.lang, "resume")
                    ),
                ))
                .await;
        }
        self.ctx
            .services
            .resume_notifications(Some(self.chat))
            .await?;
        self.reply(self.t(
            "▶ Notifications resumed for everyone; held messages are being delivered.",
            "▶ 전체 알림을 재개했습니다. 보류된 메시지를 전송합니다.",
        ))
        .await
    }

    /// A subscription's symbol: resolved through the symbols table, or as typed when it
    /// is a valid symbol the table does not know.
    async fn subscription_symbol(&self, text: &str, command: &str) -> Result<Option<String>> {
        if let Resolution::NotFound { .. } = self.ctx.services.resolve_symbol(text).await? {
            let upper = text.trim().to_uppercase();
            if validate_symbol(&upper).is_ok() {
                return Ok(Some(upper));
            }
        }
        Ok(self.resolve(text, command).await?.map(|i| i.symbol))
    }

    async fn subscribe(&self, args: SubscribeArgs) -> Result<()> {
        let Some(user) = self.registered().await? else {
            return Ok(());
        };
        let symbol = match &args.target {
            Target::All => None,
            Target::Symbol(text) => match self.subscription_symbol(text, "subscribe").await? {
                Some(s) => Some(s),
                None => return Ok(()),
            },
        };
        let min_grade = args.min_grade.unwrap_or(tickwatch_schema::wire::Grade::D);
        let (view, _) = self
            .ctx
            .services
            .subscribe(
                user.id,
                NewSubscription {
                    kind: args.kind,
                    symbol: symbol.clone(),
                    min_grade,
                },
            )
            .await?;
        let on = symbol
            .as_deref()
            .map_or_else(|| self.t("every symbol", "모든 종목"), esc);
        self.reply(self.t(
            format!("🔔 Subscribed (#{}) to <b>{}</b> on {on}, grade {min_grade} or better.\n/unsubscribe {} stops it.", view.subscription.id, args.kind, view.subscription.id),
            format!("🔔 <b>{}</b> 신호 구독 (#{}): {on}, {min_grade} 등급 이상.\n/unsubscribe {} 로 해지.", args.kind, view.subscription.id, view.subscription.id),
        ))
        .await
    }

    async fn unsubscribe(&self, args: UnsubscribeArgs) -> Result<()> {
        let Some(user) = self.registered().await? else {
            return Ok(());
        };
        let services = &self.ctx.services;
        let removed = match args {
            UnsubscribeArgs::Id(id) => vec![services.unsubscribe(user.id, id).await?],
            UnsubscribeArgs::All => services.unsubscribe_matching(user.id, None, None).await?,
            UnsubscribeArgs::Kind { kind, target } => {
                let symbol = match target {
                    None => None,
                    Some(Target::All) => Some(None),
                    Some(Target::Symbol(text)) => {
                        match self.subscription_symbol(&text, "unsubscribe").await? {
                            Some(s) => Some(Some(s)),
                            None => return Ok(()),
                        }
                    }
                };
                let symbol_ref = symbol.as_ref().map(|s| s.as_deref());
                services
                    .unsubscribe_matching(user.id, Some(kind), symbol_ref)
                    .await?
            }
        };
        if removed.is_empty() {
            return self
                .reply(self.t(
                    format!(
                        "⚠️ No matching subscription. /alerts lists yours.\n{}",
                        usage(self.lang, "unsubscribe")
                    ),
                    format!(
                        "⚠️ 해당하는 구독이 없습니다. /alerts 에서 확인하세요.\n{}",
                        usage(self.lang, "unsubscribe")
                    ),
                ))
                .await;
        }
        let n = removed.len();
        self.reply(self.t(
            format!("🔕 Removed {n} subscription(s)."),
            format!("🔕 구독 {n}개를 해지했습니다."),
        ))
        .await
    }

    async fn signals(&self, symbol: Option<String>) -> Result<()> {
        let symbol = match symbol {
            None => None,
            Some(text) => match self.subscription_symbol(&text, "signals").await? {
                Some(s) => Some(s),
                None => return Ok(()),
            },
        };
        let filter = SignalFilter {
            symbol: symbol.clone(),
            ..Default::default()
        };
        let page = self.ctx.services.signals(&filter, None, 10).await?;
        if page.items.is_empty() {
            return self
                .reply(self.t("No signals recorded yet.", "아직 기록된 신호가 없습니다."))
                .await;
        }
        let lines: Vec<String> = page
            .items
            .iter()
            .map(|s| {
                format!(
                    "• {} <b>{}</b> {} {} ({}) @ {}",
                    time(s.ts),
                    esc(&s.symbol),
                    esc(&s.kind),
                    esc(&s.grade),
                    s.score,
                    esc(&s.price)
                )
            })
            .collect();
        self.reply(format!(
            "{}\n{}",
            self.t("<b>Latest signals</b>", "<b>최근 신호</b>"),
            lines.join("\n")
        ))
        .await
    }

    async fn stats(&self) -> Result<()> {
        let mut out = String::new();
        if self.admin {
            let s = self.ctx.services.system_stats().await?;
            out.push_str(&self.t(
                format!(
                    "<b>System</b>\nUsers: {} ({} active) · rules: {} ({} active) · subscriptions: {}\nNotifications: {}\n",
                    s.users, s.active_users, s.rules, s.active_rules, s.subscriptions,
                    if s.notifications_halted { "⏸ halted" } else { "▶ flowing" }
                ),
                format!(
                    "<b>시스템</b>\n사용자: {} (활성 {}) · 알림 규칙: {} (활성 {}) · 구독: {}\n알림 전송: {}\n",
                    s.users, s.active_users, s.rules, s.active_rules, s.subscriptions,
                    if s.notifications_halted { "⏸ 보류 중" } else { "▶ 정상" }
                ),
            ));
            match &s.queues {
                Some(queues) => {
                    for q in queues {
                        out.push_str(&format!(
                            "<code>{}</code>: {} · consumers {} · DLQ {}\n",
                            esc(&q.queue),
                            q.messages,
                            q.consumers,
                            q.dlq_messages
                        ));
                    }
                }
                None => out.push_str(&self.t(
                    "Queues: unavailable (broker or management API unreachable)\n",
                    "큐: 확인 불가 (브로커 또는 관리 API에 연결할 수 없음)\n",
                )),
            }
            out.push('\n');
        }
        let kinds = self
            .ctx
            .services
            .signal_stats(&SignalFilter::default())
            .await?;
        if kinds.is_empty() {
            out.push_str(&self.t(
                "No signal outcomes recorded yet.",
                "아직 기록된 신호 결과가 없습니다.",
            ));
        } else {
            out.push_str(&self.t(
                "<b>Signals</b> (hit rate and mean return after 5 bars)\n",
                "<b>신호</b> (5봉 뒤 적중률과 평균 수익률)\n",
            ));
            for k in kinds {
                let five = k.horizons.iter().find(|h| h.bars == 5);
                let detail = match five {
                    Some(h) if h.count > 0 => format!(
                        "{:.0}% of {} · {}",
                        h.hit_rate.unwrap_or(0.0) * 100.0,
                        h.count,
                        fraction_pct(h.mean_return.unwrap_or(0.0))
                    ),
                    _ => "—".to_string(),
                };
                out.push_str(&format!("• {} ({}): {detail}\n", k.kind, k.count));
            }
        }
        self.reply(out).await
    }

    async fn price_line(&self, info: &SymbolInfo) -> Result<String> {
        let label = format!("<b>{}</b> ({})", esc(&info.symbol), esc(&info.venue));
        match self.ctx.services.price(&info.venue, &info.symbol).await {
            Ok(p) => {
                let change = match &p.day_change {
                    Some(c) => self.t(
                        format!(" · {} ({}) today", signed_pct(c.change_pct), c.change),
                        format!(" · 오늘 {} ({})", signed_pct(c.change_pct), c.change),
                    ),
                    None => String::new(),
                };
                Ok(format!(
                    "{label} {}{change}\n<i>{}</i>",
                    p.price,
                    time(p.ts)
                ))
            }
            Err(Error::NotFound(_)) => Ok(self.t(
                format!("{label}: no price recorded yet"),
                format!("{label}: 아직 기록된 가격이 없습니다"),
            )),
            Err(e) => Err(e),
        }
    }

    async fn price(&self, text: &str) -> Result<()> {
        // `btc` on several venues: show them all rather than ask.
        if let Resolution::Ambiguous(options) = self.ctx.services.resolve_symbol(text).await? {
            let mut lines = Vec::new();
            for info in options.iter().take(5) {
                lines.push(self.price_line(info).await?);
            }
            return self.reply(lines.join("\n")).await;
        }
        let Some(info) = self.resolve(text, "price").await? else {
            return Ok(());
        };
        let line = self.price_line(&info).await?;
        self.reply(line).await
    }

    fn settings_markup(
        &self,
        prefs: &std::collections::BTreeMap<EventKind, Preference>,
    ) -> InlineKeyboardMarkup {
        let mut rows: Vec<Vec<InlineKeyboardButton>> = prefs
            .iter()
            .map(|(kind, current)| {
                Preference::ALL
                    .iter()
                    .map(|p| {
                        let mark = if p == current { "✓ " } else { "" };
                        InlineKeyboardButton::callback(
                            format!("{mark}{kind}: {}", p.as_str()),
                            format!("pref:{kind}:{}", p.as_str()),
                        )
                    })
                    .collect()
            })
            .collect();
        rows.push(vec![
            InlineKeyboardButton::callback("English", "lang:en"),
            InlineKeyboardButton::callback("한국어", "lang:ko"),
        ]);
        InlineKeyboardMarkup::new(rows)
    }

    fn settings_text(
        &self,
        prefs: &std::collections::BTreeMap<EventKind, Preference>,
        lang: Language,
    ) -> String {
        let lines: Vec<String> = prefs
            .iter()
            .map(|(kind, p)| format!("• {kind}: <b>{}</b>", p.as_str()))
            .collect();
        pick(
            lang,
            format!(
                "<b>Settings</b> (on · silent = no sound · off)\n{}\nLanguage: English\nChange with the buttons or e.g. <code>/settings signal silent</code>, <code>/settings lang ko</code>.",
                lines.join("\n")
            ),
            format!(
                "<b>설정</b> (on · silent = 무음 · off)\n{}\n언어: 한국어\n버튼 또는 <code>/settings signal silent</code>, <code>/settings lang en</code> 으로 바꿀 수 있습니다.",
                lines.join("\n")
            ),
        )
    }

    async fn settings(&self, args: SettingsArgs) -> Result<()> {
        let Some(user) = self.registered().await? else {
            return Ok(());
        };
        let services = &self.ctx.services;
        let (prefs, lang) = match args {
            SettingsArgs::Show => (preferences(&user.prefs), self.lang),
            SettingsArgs::Preference(kind, pref) => (
                services.set_preference(user.id, kind, pref).await?,
                self.lang,
            ),
            SettingsArgs::Language(lang) => {
                services.set_language(user.id, lang).await?;
                (preferences(&user.prefs), lang)
            }
        };
        self.reply_with(
            self.settings_text(&prefs, lang),
            Some(self.settings_markup(&prefs)),
        )
        .await
    }

    async fn api_key(&self, revoke: bool) -> Result<()> {
        let Some(user) = self.registered().await? else {
            return Ok(());
        };
        if revoke {
            let n = self.ctx.services.revoke_api_keys(user.id).await?;
            return self
                .reply(self.t(
                    format!("🔑 Revoked {n} API key(s)."),
                    format!("🔑 API 키 {n}개를 폐기했습니다."),
                ))
                .await;
        }
        let key = self.ctx.services.create_api_key(user.id).await?;
        self.reply(self.t(
            format!("🔑 Your new API key — shown only now, keep it safe:\n<code>{}</code>\nSend it as <code>Authorization: Bearer …</code>. /apikey revoke revokes all your keys.", esc(&key.key)),
            format!("🔑 새 API 키 — 지금 한 번만 표시됩니다. 안전하게 보관하세요:\n<code>{}</code>\n<code>Authorization: Bearer …</code> 헤더로 보내세요. /apikey revoke 로 모든 키를 폐기합니다.", esc(&key.key)),
        ))
        .await
    }

    async fn forbidden(&self, command: &str) -> Result<()> {
        self.reply(self.t(
            format!("⛔ Only admins can use /{command}."),
            format!("⛔ /{command} 는 관리자만 쓸 수 있습니다."),
        ))
        .await
    }

    async fn halt(&self) -> Result<()> {
        if !self.admin {
            return self.forbidden("halt").await;
        }
        self.ctx
            .services
            .halt_notifications(Some(self.chat))
            .await?;
        self.reply(self.t(
            "⏸ Notifications halted for everyone. They are held in the queue, not lost; /resume releases them. System messages (operators' alerts, broadcasts) are not held unless notifier.halt_holds_system is set.",
            "⏸ 전체 알림을 보류했습니다. 메시지는 큐에 보관되며 /resume 으로 재개합니다. 시스템 메시지(운영 경보, 공지)는 notifier.halt_holds_system 설정이 없으면 계속 전송됩니다.",
        ))
        .await
    }

    /// `/broadcast <text>`: a durable broadcast through the broker (see
    /// [`crate::services::broadcasts`]); `/broadcast status`: the latest ones' progress.
    async fn broadcast(&self, text: String) -> Result<()> {
        if !self.admin {
            return self.forbidden("broadcast").await;
        }
        if text.trim().eq_ignore_ascii_case("status") {
            return self.broadcast_status().await;
        }
        let (id, total) = match self.ctx.services.start_broadcast(&text).await {
            Ok(started) => started,
            Err(Error::Unavailable(why)) => {
                return self
                    .reply(self.t(
                        format!("⚠️ Cannot broadcast: {}", esc(&why)),
                        format!("⚠️ 공지를 보낼 수 없습니다: {}", esc(&why)),
                    ))
                    .await;
            }
            Err(e) => return Err(e),
        };
        self.reply(self.t(
            format!("📣 Broadcast <code>{id}</code> to {total} user(s): handed to the notifier in batches. /broadcast status shows how far it is."),
            format!("📣 공지 <code>{id}</code>: {total}명에게 순서대로 전달합니다. /broadcast status 로 진행 상황을 확인하세요."),
        ))
        .await?;
        // Handed over in the background; a restart resumes it (the bot's start).
        let services = self.ctx.services.clone();
        tokio::spawn(async move {
            if let Err(e) = services.run_broadcast(&id).await {
                tracing::warn!(broadcast = %id, error = %e, "broadcast interrupted; the next start resumes it");
            }
        });
        Ok(())
    }

    async fn broadcast_status(&self) -> Result<()> {
        let latest = self.ctx.services.broadcast_progress(5).await?;
        if latest.is_empty() {
            return self
                .reply(self.t("📣 No broadcasts yet.", "📣 아직 공지가 없습니다."))
                .await;
        }
        let mut lines = vec![self.t("📣 Broadcasts, newest first:", "📣 공지 (최신순):")];
        for b in latest {
            let state = if b.done {
                self.t("all handed over", "전달 완료")
            } else {
                self.t("handing over", "전달 중")
            };
            lines.push(self.t(
                format!(
                    "<code>{}</code> {}: {}/{} handed over, {} delivered ({state})",
                    b.id,
                    time(b.started_at),
                    b.published,
                    b.total,
                    b.delivered
                ),
                format!(
                    "<code>{}</code> {}: {}/{} 전달, {} 수신 ({state})",
                    b.id,
                    time(b.started_at),
                    b.published,
                    b.total,
                    b.delivered
                ),
            ));
        }
        self.reply(lines.join("\n")).await
    }

    /// A plain message: a symbol search with buttons to set an alert.
    async fn search(&self, text: &str) -> Result<()> {
        let query = text.trim();
        if query.is_empty() || query.chars().count() > 40 {
            return self
                .reply(self.t(
                    "Type a symbol or a name to search (e.g. <code>btc</code>, <code>삼성</code>), or /help.",
                    "종목이나 이름을 보내 검색하세요 (예: <code>btc</code>, <code>삼성</code>). 또는 /help.",
                ))
                .await;
        }
        let found = self
            .ctx
            .services
            .search_symbols(query, SEARCH_LIMIT)
            .await?;
        if found.is_empty() {
            return self
                .reply(self.t(
                    format!("🔍 No symbol matches “{}”. Try <code>btc</code>, <code>samsung</code> or <code>삼성</code> — or /help.", esc(query)),
                    format!("🔍 “{}”에 해당하는 종목이 없습니다. <code>btc</code>, <code>삼성</code> 등으로 찾아보세요. 또는 /help.", esc(query)),
                ))
                .await;
        }
        let lines: Vec<String> = found
            .iter()
            .map(|s| {
                format!(
                    "• <b>{}</b> — {} ({})",
                    esc(&s.symbol),
                    esc(&s.name),
                    esc(&s.venue)
                )
            })
            .collect();
        let rows: Vec<Vec<InlineKeyboardButton>> = found
            .iter()
            .map(|s| {
                vec![InlineKeyboardButton::callback(
                    self.t(
                        format!("🔔 Alert on {} ({})", s.symbol, s.venue),
                        format!("🔔 {} ({}) 알림", s.symbol, s.venue),
                    ),
                    format!("pick:{}:{}", s.venue, s.symbol),
                )]
            })
            .collect();
        self.reply_with(
            format!(
                "{}\n{}",
                self.t(
                    format!("🔍 Symbols for “{}”:", esc(query)),
                    format!("🔍 “{}” 검색 결과:", esc(query))
                ),
                lines.join("\n")
            ),
            Some(InlineKeyboardMarkup::new(rows)),
        )
        .await
    }
}

async fn handle_callback(ctx: &Ctx, query: &CallbackQuery) -> Result<()> {
    let Some(chat) = query.message.as_ref().map(|m| m.chat().id.0) else {
        ctx.bot.answer_callback_query(query.id.clone()).await?;
        return Ok(());
    };
    let session = Session::open(ctx, chat, Some(&query.from)).await?;
    let data = query.data.as_deref().unwrap_or_default();
    let (action, arg) = data.split_once(':').unwrap_or((data, ""));
    // Stops the button's spinner first; the outcome comes as a message.
    ctx.bot
        .answer_callback_query(query.id.clone())
        .text(session.t("OK", "확인"))
        .await?;
    let outcome = match action {
        "del" | "pause" | "resume" => match arg.parse::<i64>() {
            Ok(id) if action == "del" => session.delete(id).await,
            Ok(id) => session.set_active(id, action == "resume").await,
            Err(_) => Ok(()),
        },
        "pick" => session.picked(arg).await,
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

impl Session<'_> {
    /// A search result's button: how to set an alert on it, with its price if known.
    async fn picked(&self, arg: &str) -> Result<()> {
        let Some((venue, symbol)) = arg.split_once(':') else {
            return Ok(());
        };
        let name = format!("{venue}:{symbol}");
        let price = match self.ctx.services.price(venue, symbol).await {
            Ok(p) => self.t(
                format!(" (now {})", p.price),
                format!(" (현재 {})", p.price),
            ),
            Err(_) => String::new(),
        };
        self.reply(self.t(
            format!("Set an alert on <b>{}</b>{price}: send\n<code>/alert {} &gt; PRICE</code>\nor e.g. <code>/alert {} cross_down PRICE once</code>.", esc(&name), esc(&name), esc(&name)),
            format!("<b>{}</b>{price} 알림 설정: 다음을 보내세요\n<code>/alert {} &gt; 가격</code>\n또는 <code>/alert {} cross_down 가격 once</code>.", esc(&name), esc(&name), esc(&name)),
        ))
        .await
    }

    /// The "delete all my data" button of `/unregister`.
    async fn forget(&self) -> Result<()> {
        let Some(user) = &self.user else {
            return self
                .reply(self.t("Nothing to delete.", "삭제할 데이터가 없습니다."))
                .await;
        };
        let removed = self.ctx.services.remove_user(user.id).await?;
        self.reply(self.t(
            format!("🗑 Deleted your data: {} alert(s), {} subscription(s), {} API key(s). /register starts afresh.", removed.rules, removed.subscriptions, removed.api_keys),
            format!("🗑 데이터를 삭제했습니다: 알림 {}개, 구독 {}개, API 키 {}개. /register 로 새로 시작할 수 있습니다.", removed.rules, removed.subscriptions, removed.api_keys),
        ))
        .await
    }
}
