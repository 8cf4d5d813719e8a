//! `/paper`: paper strategies — the list with each one's equity, one strategy's account,
//! statistics and positions, pause / resume / delete, and `/paper new`, four steps of
//! buttons (signal, market, size, exits) that carry the choices so far in their data.

use rust_decimal::Decimal;
use tickwatch_paper::{Sizing, Strategy};
use tickwatch_schema::display::format_number;
use tickwatch_schema::wire::{Grade, SignalDirection, SignalKind};

use super::*;

/// Strategies listed by `/paper` (the API has them all).
const PAPER_LIST_LIMIT: usize = 20;

/// The markets `/paper new` offers, with the balance a strategy starts with there.
const VENUES: [(&str, &str, &str); 3] = [
    ("krx", "KRX", "10000000"),
    ("upbit", "Upbit", "10000000"),
    ("binance", "Binance", "10000"),
];

/// Shares of equity per trade `/paper new` offers.
const SIZES: [u32; 3] = [10, 20, 50];

fn currency_of(venue: &str) -> &'static str {
    if venue == "binance" { "USDT" } else { "KRW" }
}

fn money(amount: Decimal, currency: &str) -> String {
    let dp = if currency == "KRW" { 0 } else { 2 };
    format!("{} {currency}", format_number(amount.round_dp(dp)))
}

fn followable() -> impl Iterator<Item = SignalKind> {
    SignalKind::ALL
        .iter()
        .copied()
        .filter(|k| k.direction() != SignalDirection::Bearish)
}

/// The exits a `/paper new` button stands for (percentages, and bars).
#[derive(Debug, Clone, Copy)]
struct Exits {
    take_profit: Option<u32>,
    stop_loss: Option<u32>,
    trailing: Option<u32>,
    bars: Option<u32>,
}

fn exits(code: &str) -> Option<Exits> {
    let (take_profit, stop_loss, trailing, bars) = match code {
        "a" => (Some(10), Some(5), None, None),
        "b" => (Some(20), Some(10), None, None),
        "c" => (None, None, Some(8), None),
        "d" => (None, Some(10), None, Some(20)),
        _ => return None,
    };
    Some(Exits {
        take_profit,
        stop_loss,
        trailing,
        bars,
    })
}

impl Session<'_> {
    pub(super) async fn paper(&self, args: PaperArgs) -> Result<()> {
        let Some(user) = self.registered().await? else {
            return Ok(());
        };
        let services = &self.ctx.services;
        match args {
            PaperArgs::List => self.paper_list(user.id).await,
            PaperArgs::New => self.paper_new("").await,
            PaperArgs::Show(id) => self.paper_show(user.id, id).await,
            PaperArgs::Pause(id) | PaperArgs::Resume(id) => {
                let resume = matches!(args, PaperArgs::Resume(_));
                services
                    .patch_paper_strategy(
                        user.id,
                        id,
                        crate::services::paper::StrategyPatch {
                            active: Some(resume),
                            ..Default::default()
                        },
                    )
                    .await?;
                let done = if resume {
                    &texts::PAPER_RESUMED_DONE
                } else {
                    &texts::PAPER_PAUSED_DONE
                };
                self.reply_with(
                    self.text_with(done, &[("id", &id)]),
                    Some(self.paper_buttons(id, resume)),
                )
                .await
            }
            PaperArgs::Delete(id) => {
                services.delete_paper_strategy(user.id, id).await?;
                self.reply_with(
                    self.text_with(&texts::PAPER_DELETED, &[("id", &id)]),
                    Some(InlineKeyboardMarkup::new(vec![vec![
                        InlineKeyboardButton::callback(self.text(&texts::PAPER_BACK_BUTTON), "pl:"),
                    ]])),
                )
                .await
            }
        }
    }

    async fn paper_list(&self, user_id: i64) -> Result<()> {
        let services = &self.ctx.services;
        let strategies = services.list_paper_strategies(user_id).await?;
        let new = InlineKeyboardButton::callback(self.text(&texts::PAPER_NEW_BUTTON), "pn:");
        if strategies.is_empty() {
            return self
                .reply_with(
                    self.text(&texts::PAPER_NONE),
                    Some(InlineKeyboardMarkup::new(vec![vec![new]])),
                )
                .await;
        }
        let mut lines = vec![self.text(&texts::PAPER_LIST)];
        let mut rows = Vec::new();
        for view in strategies.iter().take(PAPER_LIST_LIMIT) {
            let id = view.strategy.id;
            let summary = services.paper_summary(user_id, id).await?;
            let start = view.strategy.starting_balance;
            let ret = if start > Decimal::ZERO {
                signed_pct(
                    ((summary.equity / start - Decimal::ONE) * Decimal::ONE_HUNDRED).round_dp(2),
                )
            } else {
                String::new()
            };
            let state = if view.active { "▶" } else { "⏸" };
            lines.push(self.text_with(
                &texts::PAPER_LINE,
                &[
                    ("state", &state),
                    ("id", &id),
                    ("name", &esc(&view.strategy.name)),
                    ("equity", &money(summary.equity, &view.strategy.currency)),
                    ("ret", &ret),
                    ("open", &summary.open_positions),
                    ("trades", &summary.overall.trades),
                ],
            ));
            rows.push(vec![InlineKeyboardButton::callback(
                format!(
                    "📊 #{id} {}",
                    view.strategy.name.chars().take(24).collect::<String>()
                ),
                format!("pp:{id}"),
            )]);
        }
        rows.push(vec![new]);
        self.reply_with(lines.join("\n"), Some(InlineKeyboardMarkup::new(rows)))
            .await
    }

    fn paper_buttons(&self, id: i64, active: bool) -> InlineKeyboardMarkup {
        let toggle = if active {
            InlineKeyboardButton::callback(
                self.text(&texts::PAPER_PAUSE_BUTTON),
                format!("pz:{id}"),
            )
        } else {
            InlineKeyboardButton::callback(
                self.text(&texts::PAPER_RESUME_BUTTON),
                format!("pr:{id}"),
            )
        };
        InlineKeyboardMarkup::new(vec![
            vec![
                toggle,
                InlineKeyboardButton::callback(
                    self.text(&texts::PAPER_DELETE_BUTTON),
                    format!("pd:{id}"),
                ),
            ],
            vec![InlineKeyboardButton::callback(
                self.text(&texts::PAPER_BACK_BUTTON),
                "pl:",
            )],
        ])
    }

    async fn paper_show(&self, user_id: i64, id: i64) -> Result<()> {
        let services = &self.ctx.services;
        let summary = services.paper_summary(user_id, id).await?;
        let view = &summary.view;
        let s = &view.strategy;
        let start = s.starting_balance;
        let pct = |x: Decimal| ((x / start - Decimal::ONE) * Decimal::ONE_HUNDRED).round_dp(2);
        let kinds: Vec<&str> = s.kinds.iter().map(|k| k.as_str()).collect();
        let venues = if s.venues.is_empty() {
            self.text(&texts::PAPER_ANY_VENUE)
        } else {
            s.venues.join(", ")
        };
        let o = &summary.overall;
        let mut text = self.text_with(
            &texts::PAPER_SHOW,
            &[
                ("id", &id),
                ("name", &esc(&s.name)),
                (
                    "state",
                    &self.text(if view.active {
                        &texts::PAPER_RUNNING
                    } else {
                        &texts::PAPER_PAUSED
                    }),
                ),
                ("kinds", &kinds.join(", ")),
                ("grade", &s.min_grade),
                ("venues", &esc(&venues)),
                ("start", &money(start, &s.currency)),
                ("equity", &money(summary.equity, &s.currency)),
                ("ret", &signed_pct(pct(summary.equity))),
                ("cash", &money(view.cash, &s.currency)),
                ("trades", &o.trades),
                ("win", &o.win_rate_pct),
                ("avg", &o.average_return_pct.round_dp(2)),
                (
                    "pf",
                    &o.profit_factor
                        .map_or("–".to_string(), |p| p.round_dp(2).to_string()),
                ),
                ("mdd", &o.max_drawdown_pct),
            ],
        );
        let positions = services.paper_positions(user_id, id).await?;
        if !positions.is_empty() {
            text.push('\n');
            text.push_str(&self.text(&texts::PAPER_POSITIONS));
            for p in positions.iter().take(15) {
                let d = |t: &Option<String>| t.as_deref().and_then(|x| x.parse::<Decimal>().ok());
                let line = match (d(&p.quantity), d(&p.entry_price), d(&p.mark_price)) {
                    (Some(qty), Some(entry), mark) => {
                        let mark = mark.unwrap_or(entry);
                        let ret = if entry > Decimal::ZERO {
                            signed_pct(
                                ((mark / entry - Decimal::ONE) * Decimal::ONE_HUNDRED).round_dp(2),
                            )
                        } else {
                            String::new()
                        };
                        self.text_with(
                            &texts::PAPER_POSITION,
                            &[
                                ("symbol", &esc(&p.symbol)),
                                ("qty", &qty.normalize()),
                                ("entry", &format_price(entry, &p.venue, &p.symbol)),
                                ("mark", &format_price(mark, &p.venue, &p.symbol)),
                                ("ret", &ret),
                            ],
                        )
                    }
                    _ => self.text_with(
                        &texts::PAPER_PENDING,
                        &[("symbol", &esc(&p.symbol)), ("kind", &esc(&p.signal_kind))],
                    ),
                };
                text.push('\n');
                text.push_str(&line);
            }
        }
        self.reply_with(text, Some(self.paper_buttons(id, view.active)))
            .await
    }

    /// A step of `/paper new`; `choices` are the ones made so far (`kind:venue:size:exit`).
    pub(super) async fn paper_new(&self, choices: &str) -> Result<()> {
        let Some(user) = self.registered().await? else {
            return Ok(());
        };
        let parts: Vec<&str> = choices.split(':').filter(|p| !p.is_empty()).collect();
        let kind = parts.first().and_then(|k| k.parse::<SignalKind>().ok());
        let venue = parts
            .get(1)
            .and_then(|v| VENUES.iter().find(|(code, _, _)| code == v));
        let size = parts
            .get(2)
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|s| SIZES.contains(s));
        let exit = parts.get(3).and_then(|e| exits(e));
        let button = |label: String, data: String| InlineKeyboardButton::callback(label, data);
        match (kind, venue, size, exit) {
            (Some(kind), Some(venue), Some(size), Some(exit)) => {
                let balance: Decimal = venue.2.parse().unwrap_or(Decimal::ONE_THOUSAND);
                let strategy = Strategy {
                    id: 0,
                    name: format!("{} · {}", kind.as_str(), venue.1),
                    kinds: vec![kind],
                    min_grade: Grade::D,
                    venues: vec![venue.0.to_string()],
                    symbols: Vec::new(),
                    starting_balance: balance,
                    currency: currency_of(venue.0).to_string(),
                    sizing: Sizing::PctEquity(Decimal::from(size)),
                    take_profit_pct: exit.take_profit.map(Decimal::from),
                    stop_loss_pct: exit.stop_loss.map(Decimal::from),
                    trailing_stop_pct: exit.trailing.map(Decimal::from),
                    max_bars: exit.bars,
                    exit_on_opposite: false,
                    fees: None,
                    since_ts: 0,
                };
                // The last button pressed twice (a slow network, an impatient thumb) makes
                // one strategy: the same one made in the last half minute is the answer.
                let now = tickwatch_schema::db::now_ms();
                let existing = self
                    .ctx
                    .services
                    .list_paper_strategies(user.id)
                    .await?
                    .into_iter()
                    .find(|v| {
                        now - v.created_at < 30_000
                            && v.strategy.name == strategy.name
                            && v.strategy.sizing == strategy.sizing
                            && v.strategy.take_profit_pct == strategy.take_profit_pct
                            && v.strategy.stop_loss_pct == strategy.stop_loss_pct
                            && v.strategy.trailing_stop_pct == strategy.trailing_stop_pct
                            && v.strategy.max_bars == strategy.max_bars
                    });
                let view = match existing {
                    Some(view) => view,
                    None => {
                        self.ctx
                            .services
                            .create_paper_strategy(user.id, strategy)
                            .await?
                    }
                };
                let id = view.strategy.id;
                self.reply_with(
                    self.text_with(
                        &texts::PAPER_CREATED,
                        &[("id", &id), ("name", &esc(&view.strategy.name))],
                    ),
                    Some(InlineKeyboardMarkup::new(vec![vec![button(
                        format!("📊 #{id}"),
                        format!("pp:{id}"),
                    )]])),
                )
                .await
            }
            (Some(kind), Some(venue), Some(size), None) => {
                let at = format!("pn:{kind}:{}:{size}", venue.0);
                let rows = vec![
                    vec![
                        button(self.text(&texts::PAPER_EXIT_TIGHT), format!("{at}:a")),
                        button(self.text(&texts::PAPER_EXIT_WIDE), format!("{at}:b")),
                    ],
                    vec![
                        button(self.text(&texts::PAPER_EXIT_TRAIL), format!("{at}:c")),
                        button(self.text(&texts::PAPER_EXIT_BARS), format!("{at}:d")),
                    ],
                ];
                self.reply_with(
                    self.text(&texts::PAPER_NEW_EXIT),
                    Some(InlineKeyboardMarkup::new(rows)),
                )
                .await
            }
            (Some(kind), Some(venue), None, _) => {
                let balance: Decimal = venue.2.parse().unwrap_or(Decimal::ONE_THOUSAND);
                let row: Vec<InlineKeyboardButton> = SIZES
                    .iter()
                    .map(|pct| {
                        button(
                            self.text_with(&texts::PAPER_SIZE_PCT, &[("pct", pct)]),
                            format!("pn:{kind}:{}:{pct}", venue.0),
                        )
                    })
                    .collect();
                self.reply_with(
                    self.text_with(
                        &texts::PAPER_NEW_SIZE,
                        &[
                            ("kind", &kind),
                            ("venue", &venue.1),
                            ("balance", &money(balance, currency_of(venue.0))),
                        ],
                    ),
                    Some(InlineKeyboardMarkup::new(vec![row])),
                )
                .await
            }
            (Some(kind), None, _, _) => {
                let row: Vec<InlineKeyboardButton> = VENUES
                    .iter()
                    .map(|(code, label, _)| button(label.to_string(), format!("pn:{kind}:{code}")))
                    .collect();
                self.reply_with(
                    self.text_with(&texts::PAPER_NEW_VENUE, &[("kind", &kind)]),
                    Some(InlineKeyboardMarkup::new(vec![row])),
                )
                .await
            }
            (None, ..) => {
                let kinds: Vec<SignalKind> = followable().collect();
                let rows: Vec<Vec<InlineKeyboardButton>> = kinds
                    .chunks(2)
                    .map(|pair| {
                        pair.iter()
                            .map(|k| button(k.as_str().to_string(), format!("pn:{k}")))
                            .collect()
                    })
                    .collect();
                self.reply_with(
                    self.text(&texts::PAPER_NEW_KIND),
                    Some(InlineKeyboardMarkup::new(rows)),
                )
                .await
            }
        }
    }
}
