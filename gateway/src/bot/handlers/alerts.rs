//! `/alert`, `/alerts`, `/delalert`, `/pause`, `/resume`: a user's price alerts.

use super::*;

impl Session<'_> {
    /// A symbol typed in a command: found, or a reply explaining (ambiguous, unknown).
    pub(super) async fn resolve(&self, text: &str, command: &str) -> Result<Option<SymbolInfo>> {
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
                self.reply(self.text_with(
                    &texts::AMBIGUOUS_SYMBOL,
                    &[
                        ("text", &esc(text)),
                        ("options", &list.join(", ")),
                        ("usage", &usage(self.lang, command)),
                    ],
                ))
                .await?;
                Ok(None)
            }
            Resolution::NotFound { suggestions } => {
                let hint = if suggestions.is_empty() {
                    self.text(&texts::SEARCH_HINT)
                } else {
                    let list: Vec<String> = suggestions
                        .iter()
                        .map(|s| format!("<code>{}</code> ({})", esc(&s.symbol), esc(&s.name)))
                        .collect();
                    self.text_with(&texts::DID_YOU_MEAN, &[("options", &list.join(", "))])
                };
                self.reply(self.text_with(
                    &texts::UNKNOWN_SYMBOL,
                    &[
                        ("text", &esc(text)),
                        ("hint", &hint),
                        ("usage", &usage(self.lang, command)),
                    ],
                ))
                .await?;
                Ok(None)
            }
        }
    }

    pub(super) async fn alert(&self, args: AlertArgs) -> Result<()> {
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
            AlertValues::MovingBy { amount, window_s } => {
                spec.threshold = Some(amount);
                spec.window_s = Some(window_s);
            }
            AlertValues::Expression(text) => {
                spec.threshold = None;
                spec.expression = Some(text);
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
        let mut text = self.text_with(
            &texts::ALERT_SET,
            &[
                ("id", &rule.id),
                ("name", &name),
                ("rule", &rule_line(&rule)),
            ],
        );
        let symbol = format!("{}:{}", info.venue, info.symbol);
        for warning in self
            .ctx
            .services
            .symbol_warnings(&info.venue, &info.symbol)
            .await
        {
            let warning = match warning {
                SymbolWarning::Delisted => &texts::ALERT_WARN_DELISTED,
                SymbolWarning::NoData => &texts::ALERT_WARN_NO_DATA,
            };
            text.push('\n');
            text.push_str(&self.text_with(warning, &[("symbol", &esc(&symbol))]));
        }
        for detail in self.ctx.services.expression_warnings(&rule.spec).await {
            text.push('\n');
            text.push_str(
                &self.text_with(&texts::ALERT_WARN_HISTORY, &[("detail", &esc(&detail))]),
            );
        }
        self.reply(text).await
    }

    pub(super) fn rule_buttons(&self, rules: &[AlertRule]) -> InlineKeyboardMarkup {
        let rows: Vec<Vec<InlineKeyboardButton>> = rules
            .iter()
            .map(|r| {
                let toggle = if r.active {
                    InlineKeyboardButton::callback(
                        self.text_with(&texts::PAUSE_BUTTON, &[("id", &r.id)]),
                        format!("pause:{}", r.id),
                    )
                } else {
                    InlineKeyboardButton::callback(
                        self.text_with(&texts::RESUME_BUTTON, &[("id", &r.id)]),
                        format!("resume:{}", r.id),
                    )
                };
                vec![
                    toggle,
                    InlineKeyboardButton::callback(
                        self.text_with(&texts::DELETE_BUTTON, &[("id", &r.id)]),
                        format!("del:{}", r.id),
                    ),
                ]
            })
            .collect();
        InlineKeyboardMarkup::new(rows)
    }

    /// `/alerts`, a page of `LIST_LIMIT` after the rule `after`; ◀ ▶ turn the pages (in
    /// place, as buttons edit their message).
    pub(super) async fn alerts(&self, after: Option<i64>) -> Result<()> {
        let Some(user) = self.registered().await? else {
            return Ok(());
        };
        let page = self
            .ctx
            .services
            .list_rules(user.id, after, LIST_LIMIT)
            .await?;
        let subs = self.ctx.services.list_subscriptions(user.id).await?;
        let mut text = if page.items.is_empty() {
            self.text(&texts::NO_ALERTS)
        } else {
            let lines: Vec<String> = page.items.iter().map(rule_line).collect();
            let more = if page.next_cursor.is_some() {
                self.text_with(&texts::MORE_ALERTS, &[("limit", &LIST_LIMIT)])
            } else {
                String::new()
            };
            format!(
                "{}\n{}{more}",
                self.text(&texts::YOUR_ALERTS),
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
                self.text(&texts::YOUR_SUBSCRIPTIONS),
                lines.join("\n")
            ));
        }
        let mut markup = (!page.items.is_empty()).then(|| self.rule_buttons(&page.items));
        let mut turns = Vec::new();
        if let (Some(_), Some(first)) = (after, page.items.first()) {
            let before = self
                .ctx
                .services
                .page_before(user.id, first.id, LIST_LIMIT)
                .await?;
            let data = format!(
                "alerts:{}",
                before.map(|b| b.to_string()).unwrap_or_default()
            );
            turns.push(InlineKeyboardButton::callback("◀", data));
        }
        if let Some(next) = &page.next_cursor {
            turns.push(InlineKeyboardButton::callback(
                "▶",
                format!("alerts:{next}"),
            ));
        }
        if let Some(markup) = markup.as_mut()
            && !turns.is_empty()
        {
            markup.inline_keyboard.push(turns);
        }
        self.reply_with(text, markup).await
    }

    pub(super) async fn delete(&self, id: i64) -> Result<()> {
        let Some(user) = self.registered().await? else {
            return Ok(());
        };
        self.ctx.services.delete_rule(user.id, id).await?;
        self.reply(self.text_with(&texts::ALERT_DELETED, &[("id", &id)]))
            .await
    }

    /// `/edit`: one change to one of the user's alerts, validated as a whole rule.
    pub(super) async fn edit(&self, id: i64, change: RuleChange) -> Result<()> {
        let Some(user) = self.registered().await? else {
            return Ok(());
        };
        let mut patch = RulePatch::default();
        match change {
            RuleChange::Threshold(t) => patch.threshold = Some(Some(t)),
            RuleChange::Channel(low, high) => {
                (patch.low, patch.high) = (Some(Some(low)), Some(Some(high)));
            }
            RuleChange::Pct(p) => patch.pct = Some(Some(p)),
            RuleChange::Window(s) => patch.window_s = Some(Some(s)),
            RuleChange::Once => {
                patch.trigger = Some(Trigger::Once);
                (patch.interval, patch.cooldown_s) = (Some(None), Some(0));
            }
            RuleChange::Every(s) => {
                patch.trigger = Some(Trigger::EveryTime);
                (patch.interval, patch.cooldown_s) = (Some(None), Some(s));
            }
            RuleChange::Bar(interval) => {
                patch.trigger = Some(Trigger::OncePerBar);
                (patch.interval, patch.cooldown_s) = (Some(Some(interval)), Some(0));
            }
            RuleChange::Expression(text) => patch.expression = Some(Some(text)),
            RuleChange::BarClose(interval) => {
                patch.trigger = Some(Trigger::OncePerBarClose);
                (patch.interval, patch.cooldown_s) = (Some(Some(interval)), Some(0));
            }
            RuleChange::Expires(after) => {
                patch.expires_at = Some(after.map(|s| {
                    let ms = i64::try_from(s)
                        .ok()
                        .and_then(|s| s.checked_mul(1000))
                        .unwrap_or(i64::MAX);
                    tickwatch_schema::db::now_ms().saturating_add(ms)
                }));
            }
        }
        let rule = self.ctx.services.patch_rule(user.id, id, &patch).await?;
        let text = self.text_with(
            &texts::ALERT_EDITED,
            &[("id", &id), ("rule", &rule_line(&rule))],
        );
        self.reply(text).await
    }

    pub(super) async fn set_active(&self, id: i64, active: bool) -> Result<()> {
        let Some(user) = self.registered().await? else {
            return Ok(());
        };
        let rule = self
            .ctx
            .services
            .set_rule_active(user.id, id, active)
            .await?;
        let text = if active {
            &texts::ALERT_RESUMED
        } else {
            &texts::ALERT_PAUSED
        };
        let text = self.text_with(text, &[("id", &id), ("rule", &rule_line(&rule))]);
        self.reply(text).await
    }

    pub(super) async fn resume_all(&self) -> Result<()> {
        if !self.admin {
            return self
                .reply(self.text_with(
                    &texts::WHICH_ALERT,
                    &[("usage", &usage(self.lang, "resume"))],
                ))
                .await;
        }
        self.ctx
            .services
            .resume_notifications(Some(self.chat))
            .await?;
        self.reply(self.text(&texts::RESUMED_ALL)).await
    }
}
