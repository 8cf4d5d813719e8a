//! `/start`, `/register`, `/unregister`, `/settings` and `/apikey`: a user's account.

use super::*;

impl Session<'_> {
    pub(super) async fn start(&self) -> Result<()> {
        let text = match &self.user {
            Some(u) if !u.active => {
                let reason = u.paused_reason.as_deref().unwrap_or("-");
                self.text_with(&texts::WELCOME_BACK_PAUSED, &[("reason", &esc(reason))])
            }
            Some(u) => {
                let rules = self.ctx.services.count_rules(u.id).await?;
                self.text_with(
                    &texts::WELCOME_BACK,
                    &[("name", &esc(&u.name)), ("rules", &rules)],
                )
            }
            None => self.text(&texts::WELCOME),
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
            Registration::New => self.text(&texts::REGISTERED),
            Registration::Reactivated => self.text(&texts::REACTIVATED),
            Registration::Already => self.text(&texts::ALREADY_REGISTERED),
        };
        self.reply(text).await
    }

    pub(super) async fn unregister(&self) -> Result<()> {
        let Some(u) = &self.user else {
            return self.reply(self.text(&texts::NOT_REGISTERED)).await;
        };
        self.ctx
            .services
            .deactivate_user(u.id, "you sent /unregister")
            .await?;
        let rules = self.ctx.services.count_rules(u.id).await?;
        let button = InlineKeyboardMarkup::new([[InlineKeyboardButton::callback(
            self.text(&texts::DELETE_MY_DATA_BUTTON),
            "forget",
        )]]);
        self.reply_with(
            self.text_with(&texts::UNREGISTERED, &[("rules", &rules)]),
            Some(button),
        )
        .await
    }

    pub(super) fn settings_markup(
        &self,
        prefs: &std::collections::BTreeMap<EventKind, Preference>,
        charts: bool,
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
        let mark = |on: bool| if on == charts { "✓ " } else { "" };
        rows.push(vec![
            InlineKeyboardButton::callback(format!("{}charts: on", mark(true)), "charts:on"),
            InlineKeyboardButton::callback(format!("{}charts: off", mark(false)), "charts:off"),
        ]);
        rows.push(vec![
            InlineKeyboardButton::callback("English", "lang:en"),
            InlineKeyboardButton::callback("한국어", "lang:ko"),
        ]);
        InlineKeyboardMarkup::new(rows)
    }

    pub(super) fn settings_text(
        &self,
        prefs: &std::collections::BTreeMap<EventKind, Preference>,
        charts: bool,
        lang: Language,
        zone: Tz,
    ) -> String {
        let mut lines: Vec<String> = prefs
            .iter()
            .map(|(kind, p)| format!("• {kind}: <b>{}</b>", p.as_str()))
            .collect();
        lines.push(format!(
            "• charts: <b>{}</b>",
            if charts { "on" } else { "off" }
        ));
        lines.push(format!(
            "• digest: <b>{}</b>",
            self.user
                .as_ref()
                .and_then(|u| u.digest_at.clone())
                .unwrap_or_else(|| "off".into())
        ));
        let now = display::format_time_short(tickwatch_schema::db::now_ms(), zone);
        let zone = format!("{} ({now})", zone.name());
        // In `lang`, not the session's: `/settings lang` answers in the new language.
        texts::SETTINGS.fill(lang, &[("lines", &lines.join("\n")), ("zone", &zone)])
    }

    pub(super) async fn settings(&self, args: SettingsArgs) -> Result<()> {
        let Some(user) = self.registered().await? else {
            return Ok(());
        };
        let services = &self.ctx.services;
        let chosen = user.time_zone.clone();
        let mut charts = tickwatch_schema::db::charts_on(&user.prefs);
        let (prefs, lang, chosen) = match args {
            SettingsArgs::Digest(at) => {
                services.set_digest(user.id, at.clone()).await?;
                let note = match &at {
                    Some(at) => format!("📰 digest: {at}"),
                    None => "📰 digest: off".to_string(),
                };
                return self.reply(note).await;
            }
            SettingsArgs::Charts(on) => {
                let stored = services.set_charts(user.id, on).await?;
                charts = tickwatch_schema::db::charts_on(&stored);
                (preferences(&stored), self.lang, chosen)
            }
            SettingsArgs::Show => (preferences(&user.prefs), self.lang, chosen),
            SettingsArgs::Preference(kind, pref) => (
                services.set_preference(user.id, kind, pref).await?,
                self.lang,
                chosen,
            ),
            SettingsArgs::Language(lang) => {
                services.set_language(user.id, lang).await?;
                (preferences(&user.prefs), lang, chosen)
            }
            SettingsArgs::TimeZone(zone) => {
                let zone = zone.map(|z| z.name().to_string());
                services.set_time_zone(user.id, zone.clone()).await?;
                (preferences(&user.prefs), self.lang, zone)
            }
        };
        // The zone as it now stands: a language change moves a default zone with it.
        let zone = display::user_time_zone(lang.as_str(), chosen.as_deref());
        self.reply_with(
            self.settings_text(&prefs, charts, lang, zone),
            Some(self.settings_markup(&prefs, charts)),
        )
        .await
    }

    /// A new TradingView relay URL (the old one stops working), shown this once.
    pub(super) async fn relay(&self) -> Result<()> {
        let Some(user) = self.registered().await? else {
            return Ok(());
        };
        let secret = self.ctx.services.rotate_relay_token(user.id).await?;
        let url = crate::services::relay::relay_url(&self.public_url(), &secret);
        self.reply(self.text_with(&texts::RELAY_URL, &[("url", &esc(&url))]))
            .await
    }

    /// Where users reach the HTTP API (and the dashboard) from outside.
    fn public_url(&self) -> String {
        self.ctx
            .config
            .relay_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", crate::ApiConfig::default().addr))
    }

    /// A one-time sign-in link to the web dashboard. The token is in the URL's fragment,
    /// which no server, proxy log or link preview sees.
    pub(super) async fn web(&self, sign_out: bool) -> Result<()> {
        let Some(user) = self.registered().await? else {
            return Ok(());
        };
        if sign_out {
            let count = self.ctx.services.sign_out_everywhere(user.id).await?;
            return self
                .reply(self.text_with(&texts::WEB_SIGNED_OUT, &[("count", &count)]))
                .await;
        }
        let token = self.ctx.services.create_web_link(user.id).await?;
        let url = format!("{}/#login={token}", self.public_url().trim_end_matches('/'));
        self.reply(self.text_with(&texts::WEB_LINK, &[("url", &esc(&url))]))
            .await
    }

    pub(super) async fn api_key(&self, revoke: bool) -> Result<()> {
        let Some(user) = self.registered().await? else {
            return Ok(());
        };
        if revoke {
            let n = self.ctx.services.revoke_api_keys(user.id).await?;
            return self
                .reply(self.text_with(&texts::API_KEYS_REVOKED, &[("count", &n)]))
                .await;
        }
        let key = self.ctx.services.create_api_key(user.id).await?;
        self.reply(self.text_with(&texts::NEW_API_KEY, &[("key", &esc(&key.key))]))
            .await
    }
}
