//! `/start`, `/register`, `/unregister`, `/settings` and `/apikey`: a user's account.

use super::*;

impl Session<'_> {
    pub(super) async fn start(&self) -> Result<()> {
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

    pub(super) async fn register(&self) -> Result<()> {
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

    pub(super) async fn unregister(&self) -> Result<()> {
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

    pub(super) fn settings_markup(
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

    pub(super) fn settings_text(
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

    pub(super) async fn settings(&self, args: SettingsArgs) -> Result<()> {
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

    pub(super) async fn api_key(&self, revoke: bool) -> Result<()> {
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
}
