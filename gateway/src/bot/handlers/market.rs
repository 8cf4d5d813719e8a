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
            .map_or_else(|| self.text(&texts::EVERY_SYMBOL), esc);
        self.reply(self.text_with(
            &texts::SUBSCRIBED,
            &[
                ("id", &view.subscription.id),
                ("kind", &args.kind),
                ("on", &on),
                ("grade", &min_grade),
            ],
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
                .reply(self.text_with(
                    &texts::NO_MATCHING_SUBSCRIPTION,
                    &[("usage", &usage(self.lang, "unsubscribe"))],
                ))
                .await;
        }
        let n = removed.len();
        self.reply(self.text_with(&texts::UNSUBSCRIBED, &[("count", &n)]))
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
            return self.reply(self.text(&texts::NO_SIGNALS)).await;
        }
        let lines: Vec<String> = page
            .items
            .iter()
            .map(|s| {
                format!(
                    "• {} <b>{}</b> {} {} ({}) @ {}",
                    time(s.ts, self.tz),
                    esc(&s.symbol),
                    esc(&s.kind),
                    esc(&s.grade),
                    s.score,
                    esc(&s.price.parse().map_or_else(
                        |_| s.price.clone(),
                        |p| format_price(p, &s.venue, &s.symbol)
                    ))
                )
            })
            .collect();
        self.reply(format!(
            "{}\n{}",
            self.text(&texts::LATEST_SIGNALS),
            lines.join("\n")
        ))
        .await
    }

    pub(super) async fn stats(&self) -> Result<()> {
        let mut out = String::new();
        if self.admin {
            let s = self.ctx.services.system_stats().await?;
            let notifications = self.text(if s.notifications_halted {
                &texts::NOTIFICATIONS_HALTED
            } else {
                &texts::NOTIFICATIONS_FLOWING
            });
            out.push_str(&self.text_with(
                &texts::SYSTEM_STATS,
                &[
                    ("users", &s.users),
                    ("active_users", &s.active_users),
                    ("rules", &s.rules),
                    ("active_rules", &s.active_rules),
                    ("subscriptions", &s.subscriptions),
                    ("notifications", &notifications),
                ],
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
                None => out.push_str(&self.text(&texts::QUEUES_UNAVAILABLE)),
            }
            out.push('\n');
        }
        let kinds = self
            .ctx
            .services
            .signal_stats(&SignalFilter::default())
            .await?;
        if kinds.is_empty() {
            out.push_str(&self.text(&texts::NO_SIGNAL_OUTCOMES));
        } else {
            out.push_str(&self.text(&texts::SIGNAL_STATS));
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
                    Some(c) => self.text_with(
                        &texts::DAY_CHANGE,
                        &[
                            ("pct", &signed_pct(c.change_pct)),
                            ("change", &display::format_number(c.change)),
                        ],
                    ),
                    None => String::new(),
                };
                Ok(format!(
                    "{label} {}{change}\n<i>{}</i>",
                    format_price(p.price, &info.venue, &info.symbol),
                    time(p.ts, self.tz)
                ))
            }
            Err(Error::NotFound(_)) => {
                Ok(self.text_with(&texts::NO_PRICE_YET, &[("label", &label)]))
            }
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
            return self.reply(self.text(&texts::SEARCH_HOW)).await;
        }
        let found = self
            .ctx
            .services
            .search_symbols(query, SEARCH_LIMIT)
            .await?;
        if found.is_empty() {
            return self
                .reply(self.text_with(&texts::NO_SYMBOL_MATCHES, &[("query", &esc(query))]))
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
                    self.text_with(
                        &texts::ALERT_ON_BUTTON,
                        &[("symbol", &s.symbol), ("venue", &s.venue)],
                    ),
                    format!("pick:{}:{}", s.venue, s.symbol),
                )]
            })
            .collect();
        self.reply_with(
            format!(
                "{}\n{}",
                self.text_with(&texts::SEARCH_RESULTS, &[("query", &esc(query))]),
                lines.join("\n")
            ),
            Some(InlineKeyboardMarkup::new(rows)),
        )
        .await
    }
}
