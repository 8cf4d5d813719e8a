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

    pub(super) fn rule_buttons(&self, rules: &[AlertRule]) -> InlineKeyboardMarkup {
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

    pub(super) async fn alerts(&self) -> Result<()> {
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

    pub(super) async fn delete(&self, id: i64) -> Result<()> {
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

    pub(super) async fn resume_all(&self) -> Result<()> {
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
}
