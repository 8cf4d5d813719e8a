//! `/subscribe`, `/unsubscribe`, `/signals`, `/stats`, `/price` and plain-text symbol
//! search: market data and signals.

use super::*;

impl Session<'_> {
    /// A subscription's symbol: resolved through the symbols table, or as typed when it
    /// is a valid symbol the table does not know.
    pub(super) async fn subscription_symbol(
        &self,
        text: &str,
        command: &str,
    ) -> Result<Option<String>> {
        if let Resolution::NotFound { .. } = self.ctx.services.resolve_symbol(text).await? {
            let upper = text.trim().to_uppercase();
            if validate_symbol(&upper).is_ok() {
                return Ok(Some(upper));
            }
        }
        Ok(self.resolve(text, command).await?.map(|i| i.symbol))
    }

    pub(super) async fn subscribe(&self, args: SubscribeArgs) -> Result<()> {
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

    pub(super) async fn unsubscribe(&self, args: UnsubscribeArgs) -> Result<()> {
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

    pub(super) async fn signals(&self, symbol: Option<String>) -> Result<()> {
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

    pub(super) async fn stats(&self) -> Result<()> {
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

    pub(super) async fn price_line(&self, info: &SymbolInfo) -> Result<String> {
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

    pub(super) async fn price(&self, text: &str) -> Result<()> {
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

    /// A plain message: a symbol search with buttons to set an alert.
    pub(super) async fn search(&self, text: &str) -> Result<()> {
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
