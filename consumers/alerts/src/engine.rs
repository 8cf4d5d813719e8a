//! [`AlertEngine`]: the whole rule book and the subscription index, driven by events.
//!
//! # Keeping the book current: load, then controls
//!
//! Rules and subscriptions carry a `version` that the database bumps on every change. The
//! engine holds, per id, the version it has (a live rule, or a *tombstone* left by a delete,
//! a deactivation, a `once` firing or an expiry) and applies a change only if it is newer:
//!
//! - `RuleUpserted` / `SubscriptionUpserted` apply when `version > held`; an equal or older
//!   version is [`Applied::Stale`]. An upsert with `active = false` removes the rule and
//!   leaves a tombstone at its version.
//! - `RuleDeleted` / `SubscriptionDeleted` apply when `version >= held` (a delete carrying
//!   the version it deletes wins over that version) and leave a tombstone, so a stale upsert
//!   arriving later cannot resurrect the rule.
//!
//! The adapter must start like this, so that no change — and so no firing — is lost between
//! the database load and the first control message:
//!
//! 1. Declare and bind this instance's control queue on `tw.control` and start consuming it
//!    into a buffer (do not apply yet).
//! 2. Load the active rules and subscriptions from the database and call
//!    [`AlertEngine::load`]; then [`AlertEngine::prime`] every symbol with its saved last
//!    price (see *Restarts* below).
//! 3. Apply the buffered controls in order with [`AlertEngine::apply`], then keep applying
//!    live ones as they arrive. A change committed before the snapshot is in the snapshot
//!    and its control is a harmless stale replay; a change committed after it arrives as a
//!    control. Versions make the overlap safe in both directions.
//! 4. Only then start consuming `tw.alerts.q` (ticks, candles, signals). Market data that
//!    arrived meanwhile waits in the durable queue.
//!
//! After a broker reconnect that may have lost control messages, do the same again:
//! [`AlertEngine::load`] on a non-empty engine replaces the book by the snapshot, keeping
//! the runtime state (last firing, hysteresis) of rules whose version did not change.
//!
//! # Exactly-once firing
//!
//! A [`Firing`]'s id derives from the rule and the triggering event (trade id, or time and
//! price), so storing it under a unique key is idempotent. The engine caches the firings of
//! the last evaluated price of each symbol: the same tick again (a redelivery after the
//! adapter failed before its ack) returns the same firings, not nothing. The adapter must
//! therefore store a tick's firings before it evaluates the next tick of that symbol (one
//! tick at a time per symbol, as the queue's ordering already requires). A `once` firing has
//! `disable_rule`: disable the rule in the same transaction that stores the event.
//!
//! # Restarts
//!
//! A process restart loses the in-memory state. Two things carry it over, so that a restart
//! neither misses nor repeats firings as far as the engine can tell:
//!
//! - **The last firing** of each rule, from the database (`AlertRule::last_fired_at`, which
//!   the adapter records with each stored firing). [`AlertEngine::load`] — or an upsert that
//!   carries it — restores it: `every_time` keeps its cooldown from that time,
//!   `once_per_bar` counts that bar as fired. An upsert of a live rule keeps the later of
//!   the two (its row may predate a firing made here since); an upsert without it starts
//!   the rule afresh, as before.
//! - **The last evaluated price** of each symbol: [`AlertEngine::take_changed_prices`] (those
//!   that moved since the last call; [`AlertEngine::last_prices`] gives all), saved by the
//!   adapter before every acknowledgement, and [`AlertEngine::prime`] after the load.
//!   The rules take that price as evaluated, so the next real price is compared with it: a
//!   crossing in between fires (a rule merely loaded would take its first price as no
//!   cross). Nothing fires on the prime; a true state condition fires at the next real price
//!   its trigger mode allows. Save a symbol's price only once that price's firings are
//!   stored: a price saved ahead of them would, after a crash, turn the redelivered tick
//!   into no move at all; saved behind the acknowledged ticks, it would make a restarted
//!   engine miss a fall and the crossing after it.
//!
//! The re-arm state (hysteresis) is not stored. Priming restores it where the rule's last
//! firing `F` and the primed price `p` at `t` determine it: `F = t` — the rule fired at `p`,
//! so it is disarmed as that firing left it; `F < t` and a state condition true at `p` that
//! its trigger mode allowed at `t` — it would have fired at `p` had it been armed, so it was
//! disarmed (a condition that fired and stayed true does not fire again because of the
//! restart); `F > t` — it fired after the saved price, so the move from `p` spans a firing
//! already reported: disarmed until a price beyond its band. Otherwise a rule starts armed;
//! so a rule that was disarmed and waiting within its band, or a state condition held back by
//! its cooldown or bar, may fire once where the old process would not have. The
//! moving-percentage history is not stored either: after a restart it starts at `p`.

use std::sync::Arc;

use rust_decimal::Decimal;
use tickwatch_schema::expr::Series;
use tickwatch_schema::rule::{AlertRule, Subscription, Trigger};
use tickwatch_schema::wire::{Candle, Control, Interval, Signal, Tick, deterministic_id};

use crate::book::{Book, Group, GroupNow, Hot, to_f64, trade_hash};
use crate::compiled::{Band, CompiledRule, Fire, NEVER, NO_TEMPLATE, Outcome};
use crate::config::AlertsConfig;
use crate::error::{Error, Result};
use crate::firing::{Firing, SubscriptionHit};
use crate::indicator::{self, Bar, ExprRule};
use crate::subscriptions::SubscriptionBook;
use rustc_hash::FxHashMap;
use slab::Slab;

use crate::symbol_key::NameKey;

/// What [`AlertEngine::apply`] did with a control message.
#[derive(Debug)]
pub enum Applied {
    RuleAdded {
        rule_id: i64,
    },
    /// A newer version replaced the held one (its runtime state starts afresh).
    RuleReplaced {
        rule_id: i64,
    },
    /// A delete, or an upsert with `active = false`; `was_live` says whether the engine held
    /// the rule (a tombstone is left either way).
    RuleRemoved {
        rule_id: i64,
        was_live: bool,
    },
    SubscriptionAdded {
        subscription_id: i64,
    },
    SubscriptionReplaced {
        subscription_id: i64,
    },
    SubscriptionRemoved {
        subscription_id: i64,
        was_live: bool,
    },
    /// Not newer than what the engine holds (live or tombstone): nothing changed.
    Stale {
        id: i64,
        held: i64,
        got: i64,
    },
    /// The rule or subscription is invalid; the engine keeps what it had.
    Rejected {
        id: i64,
        error: Error,
    },
    /// `Halt` / `Resume` are the notifier's business.
    NotForAlerts,
}

/// The outcome of [`AlertEngine::load`].
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Rules and subscriptions the engine holds after the load.
    pub rules: usize,
    pub subscriptions: usize,
    /// Snapshot entries not newer than what the engine held (a reload only).
    pub stale: usize,
    /// Live rules and subscriptions absent from the snapshot, removed (a reload only).
    pub removed: usize,
    /// Entries refused, with why.
    pub rejected: Vec<(i64, Error)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Indexed,
    Naive,
}

/// What an evaluation of a price is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// A live price: rules step and fire.
    Live,
    /// A price an earlier process evaluated ([`AlertEngine::prime`]): rules settle at it,
    /// nothing fires.
    Prime,
}

/// Buffers reused from tick to tick, so a tick allocates nothing unless a rule fires.
#[derive(Debug, Default)]
struct Scratch {
    candidates: Vec<u32>,
    groups: Vec<GroupNow>,
}

/// The pure alerts engine: every active rule and signal subscription, evaluated against
/// ticks, closed candles and signals. No I/O and no clock: time is the events' `ts`.
///
/// See the [module documentation](crate::engine) for the load/control protocol and
/// exactly-once firing, and the crate README for the semantics of every condition and
/// trigger mode.
#[derive(Debug)]
pub struct AlertEngine {
    config: AlertsConfig,
    silence_ms: i64,
    /// Interned hysteresis bands; 0 is the configured default.
    bands: Vec<Band>,
    band_index: FxHashMap<Decimal, u16>,
    symbols: FxHashMap<NameKey, u32>,
    books: Vec<Book>,
    /// Per book, what a tick that changes nothing needs (dense: it stays in cache).
    hot: Vec<Hot>,
    /// Where each live rule sits: its book and its slot there.
    ids: FxHashMap<i64, RuleAt>,
    tombstones: FxHashMap<i64, i64>,
    templates: Slab<Arc<str>>,
    subscriptions: SubscriptionBook,
    expired: Vec<i64>,
    scratch: Scratch,
    /// Rule evaluations so far (a measure of how much the index saves).
    evaluations: u64,
    /// Prices that took the fast path (provably nothing to evaluate).
    quiet_prices: u64,
    /// Books whose last price changed since [`take_changed_prices`](Self::take_changed_prices).
    changed: Vec<usize>,
}

impl AlertEngine {
    /// An empty engine; fails if the configuration does not validate.
    pub fn new(config: AlertsConfig) -> Result<Self> {
        config.validate()?;
        let default_band = Band::new(config.hysteresis_pct);
        Ok(AlertEngine {
            silence_ms: config.candle_silence_ms(),
            config,
            bands: vec![default_band],
            band_index: FxHashMap::default(),
            symbols: FxHashMap::default(),
            books: Vec::new(),
            hot: Vec::new(),
            ids: FxHashMap::default(),
            tombstones: FxHashMap::default(),
            templates: Slab::new(),
            subscriptions: SubscriptionBook::default(),
            expired: Vec::new(),
            scratch: Scratch::default(),
            evaluations: 0,
            quiet_prices: 0,
            changed: Vec::new(),
        })
    }

    pub fn config(&self) -> &AlertsConfig {
        &self.config
    }

    /// Active rules held.
    pub fn rule_count(&self) -> usize {
        self.ids.len()
    }

    /// Active subscriptions held.
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.len()
    }

    /// The version held for a rule: live, or the tombstone of a removed one.
    pub fn rule_version(&self, rule_id: i64) -> Option<i64> {
        match self.ids.get(&rule_id) {
            Some(at) => self
                .books
                .get(at.book as usize)
                .and_then(|b| b.rule(at.slot))
                .map(|r| r.version),
            None => self.tombstones.get(&rule_id).copied(),
        }
    }

    /// Whether the rule is live in the book.
    pub fn has_rule(&self, rule_id: i64) -> bool {
        self.ids.contains_key(&rule_id)
    }

    /// The version held for a subscription: live, or the tombstone of a removed one.
    pub fn subscription_version(&self, subscription_id: i64) -> Option<i64> {
        self.subscriptions.version(subscription_id)
    }

    /// Loads the database snapshot (active rules and subscriptions; inactive ones are
    /// recorded as tombstones). On an empty engine, the start-up case, rules stream in and
    /// the index is sorted once at the end. On a non-empty engine the snapshot replaces the
    /// book: newer versions replace held ones, equal versions keep their runtime state, and
    /// live entries absent from the snapshot are removed. Then apply the buffered controls
    /// (see the module documentation).
    pub fn load<R, S>(&mut self, rules: R, subscriptions: S) -> LoadReport
    where
        R: IntoIterator<Item = AlertRule>,
        S: IntoIterator<Item = Subscription>,
    {
        let mut report = LoadReport::default();
        let reload = !self.ids.is_empty() || self.subscriptions.len() > 0;
        let mut seen_rules = std::collections::HashSet::new();
        let mut seen_subs = std::collections::HashSet::new();
        for rule in rules {
            if reload {
                seen_rules.insert(rule.id);
            }
            match self.upsert_rule(&rule, true) {
                Applied::Stale { .. } => report.stale += 1,
                Applied::Rejected { id, error } => report.rejected.push((id, error)),
                _ => {}
            }
        }
        for sub in subscriptions {
            if reload {
                seen_subs.insert(sub.id);
            }
            match self.subscriptions.upsert(&sub) {
                Applied::Stale { .. } => report.stale += 1,
                Applied::Rejected { id, error } => report.rejected.push((id, error)),
                _ => {}
            }
        }
        if reload {
            let gone: Vec<(i64, i64)> = self
                .books
                .iter()
                .flat_map(|b| b.rules.iter())
                .filter(|r| r.is_live() && !seen_rules.contains(&r.id))
                .map(|r| (r.id, r.version))
                .collect();
            for (id, version) in gone {
                self.remove_live(id);
                self.tombstones.insert(id, version);
                report.removed += 1;
            }
            for id in self.subscriptions.ids() {
                if !seen_subs.contains(&id)
                    && let Some(version) = self.subscriptions.version(id)
                {
                    self.subscriptions.unlink(id);
                    self.subscriptions.tombstone(id, version);
                    report.removed += 1;
                }
            }
        }
        for book in &mut self.books {
            book.finish_bulk();
            book.maybe_compact();
        }
        report.rules = self.ids.len();
        report.subscriptions = self.subscriptions.len();
        report
    }

    /// Applies one control message (see the module documentation for the versioning).
    pub fn apply(&mut self, control: &Control) -> Applied {
        match control {
            Control::RuleUpserted { rule } => self.upsert_rule(rule, false),
            Control::RuleDeleted {
                rule_id, version, ..
            } => self.delete_rule(*rule_id, *version),
            Control::SubscriptionUpserted { subscription } => {
                self.subscriptions.upsert(subscription)
            }
            Control::SubscriptionDeleted {
                subscription_id,
                version,
            } => self.subscriptions.delete(*subscription_id, *version),
            Control::Halt { .. } | Control::Resume { .. } => Applied::NotForAlerts,
        }
    }

    fn upsert_rule(&mut self, rule: &AlertRule, bulk: bool) -> Applied {
        if let Some(held) = self.rule_version(rule.id)
            && rule.version <= held
        {
            return Applied::Stale {
                id: rule.id,
                held,
                got: rule.version,
            };
        }
        if !rule.active {
            let was_live = self.remove_live(rule.id);
            self.tombstones.insert(rule.id, rule.version);
            return Applied::RuleRemoved {
                rule_id: rule.id,
                was_live,
            };
        }
        if let Err(source) = rule.spec.validate() {
            return Applied::Rejected {
                id: rule.id,
                error: Error::Rule {
                    rule_id: rule.id,
                    source,
                },
            };
        }
        let band = match self.intern_band(rule) {
            Ok(band) => band,
            Err(error) => return Applied::Rejected { id: rule.id, error },
        };
        let template = match &rule.spec.template {
            Some(text) => match add_template(&mut self.templates, text) {
                Some(index) => index,
                None => {
                    return Applied::Rejected {
                        id: rule.id,
                        error: Error::Capacity {
                            rule_id: rule.id,
                            reason: "too many templates".into(),
                        },
                    };
                }
            },
            None => NO_TEMPLATE,
        };
        let mut compiled = match CompiledRule::compile(rule, band, template) {
            Ok(compiled) => compiled,
            Err(error) => {
                remove_template(&mut self.templates, template);
                return Applied::Rejected { id: rule.id, error };
            }
        };
        if rule.last_fired_at.is_some()
            && let Some(held) = self.held_last_fire(rule.id)
        {
            // The row an update was built from may predate a firing this engine has made
            // since (the database records it after the update was read): keep the later.
            compiled.last_fire = compiled.last_fire.max(held);
        }
        let was_live = self.remove_live(rule.id);
        let book = self.intern_symbol(&rule.spec.venue, &rule.spec.symbol);
        let band = self.bands.get(usize::from(band)).copied();
        let slot = match (book.and_then(|b| self.books.get_mut(b)), band) {
            (Some(b), Some(band)) => b.insert(compiled, &band, bulk),
            _ => None,
        };
        let (Some(book), Some(slot)) = (book, slot) else {
            remove_template(&mut self.templates, template);
            return Applied::Rejected {
                id: rule.id,
                error: Error::Capacity {
                    rule_id: rule.id,
                    reason: format!(
                        "the book of {} {} is full",
                        rule.spec.venue, rule.spec.symbol
                    ),
                },
            };
        };
        if let Ok(Some(expression)) = rule.spec.parsed_expression()
            && let Some(b) = self.books.get_mut(book)
        {
            b.attach_expression(slot, ExprRule::new(expression.clauses));
        }
        self.ids.insert(
            rule.id,
            RuleAt {
                book: book as u32,
                slot,
            },
        );
        self.tombstones.remove(&rule.id);
        if let Some(hot) = self.hot.get_mut(book) {
            hot.has_fresh = true;
        }
        if !bulk && let Some(b) = self.books.get_mut(book) {
            b.maybe_compact();
        }
        if was_live {
            Applied::RuleReplaced { rule_id: rule.id }
        } else {
            Applied::RuleAdded { rule_id: rule.id }
        }
    }

    /// When a live rule last fired, as the engine knows it.
    fn held_last_fire(&self, rule_id: i64) -> Option<i64> {
        let at = self.ids.get(&rule_id)?;
        let rule = self.books.get(at.book as usize)?.rule(at.slot)?;
        Some(rule.last_fire)
    }

    fn delete_rule(&mut self, rule_id: i64, version: i64) -> Applied {
        if let Some(held) = self.rule_version(rule_id)
            && version < held
        {
            return Applied::Stale {
                id: rule_id,
                held,
                got: version,
            };
        }
        let was_live = self.remove_live(rule_id);
        self.tombstones.insert(rule_id, version);
        Applied::RuleRemoved { rule_id, was_live }
    }

    /// Removes a live rule (no tombstone: the caller leaves the right one).
    fn remove_live(&mut self, rule_id: i64) -> bool {
        let Some(at) = self.ids.remove(&rule_id) else {
            return false;
        };
        if let Some(b) = self.books.get_mut(at.book as usize) {
            if let Some(removed) = b.remove(at.slot, &self.bands) {
                remove_template(&mut self.templates, removed.template);
            }
            b.maybe_compact();
        }
        true
    }

    fn intern_band(&mut self, rule: &AlertRule) -> Result<u16> {
        let Some(pct) = rule.spec.hysteresis_pct else {
            return Ok(0);
        };
        // Equal values share a band, whatever their scale (0.1 and 0.10).
        let pct = pct.normalize();
        if let Some(&index) = self.band_index.get(&pct) {
            return Ok(index);
        }
        let index = u16::try_from(self.bands.len()).map_err(|_| Error::Capacity {
            rule_id: rule.id,
            reason: "more than 65 536 distinct hysteresis values".into(),
        })?;
        self.bands.push(Band::new(pct));
        self.band_index.insert(pct, index);
        Ok(index)
    }

    /// The book of a venue and symbol, created if need be; `None` for names longer than the
    /// contract allows (32 bytes each), which validation already refuses.
    fn intern_symbol(&mut self, venue: &str, symbol: &str) -> Option<usize> {
        let key = NameKey::new(venue, symbol)?;
        if let Some(&book) = self.symbols.get(&key) {
            return usize::try_from(book).ok();
        }
        let book = self.books.len();
        let index = u32::try_from(book).ok()?;
        self.books
            .push(Book::new(Arc::from(venue), Arc::from(symbol)));
        self.hot.push(Hot::default());
        self.symbols.insert(key, index);
        Some(book)
    }

    fn book_of(&self, venue: &str, symbol: &str) -> Option<usize> {
        let book = *self.symbols.get(&NameKey::new(venue, symbol)?)?;
        usize::try_from(book).ok()
    }

    /// Evaluates a tick and returns the firings (in a deterministic order). The same tick
    /// again (same time, price and trade id) returns the same firings again; a tick older
    /// than the symbol's last evaluated price is ignored, as is a symbol without rules.
    pub fn process_tick(&mut self, tick: &Tick) -> Vec<Firing> {
        self.process_price(
            &tick.venue,
            &tick.symbol,
            tick.price,
            tick.ts,
            tick.trade_id.as_deref(),
            true,
            Mode::Indexed,
        )
    }

    /// The reference evaluator: like [`process_tick`](Self::process_tick) but asks every
    /// rule of the symbol instead of the index. Same results, O(rules of the symbol) per
    /// tick; for the cross-check tests and the benchmark.
    pub fn process_tick_naive(&mut self, tick: &Tick) -> Vec<Firing> {
        self.process_price(
            &tick.venue,
            &tick.symbol,
            tick.price,
            tick.ts,
            tick.trade_id.as_deref(),
            true,
            Mode::Naive,
        )
    }

    /// Evaluates a closed candle's close as a price at the candle's last millisecond
    /// (`open_ts + interval − 1`), but only for a symbol without ticks (none within
    /// `candle_silence_s` before that time) and only for the smallest interval seen for the
    /// symbol (a larger interval repeats the same closes). Open candles are ignored.
    ///
    /// Before that, the candle's close is the bar close of the rules of its interval with
    /// the trigger `once_per_bar_close` (see [`evaluate_bar_close`](Self::evaluate_bar_close));
    /// their firings come first.
    pub fn process_candle(&mut self, candle: &Candle) -> Vec<Firing> {
        if !candle.closed {
            return Vec::new();
        }
        let Some(book) = self.book_of(&candle.venue, &candle.symbol) else {
            return Vec::new();
        };
        if let Some(b) = self.books.get_mut(book)
            && let Some(series) = b
                .indicators
                .iter_mut()
                .find(|s| s.interval == candle.interval)
        {
            series.push(Bar::of(candle));
        }
        let mut fired = self.evaluate_bar_close(book, candle);
        fired.extend(self.candle_as_price(book, candle));
        fired
    }

    /// A closed candle's close as a price (see [`process_candle`](Self::process_candle)).
    fn candle_as_price(&mut self, book: usize, candle: &Candle) -> Vec<Firing> {
        let close_ts = candle
            .open_ts
            .saturating_add(candle.interval.as_ms())
            .saturating_sub(1);
        let silence_ms = self.silence_ms;
        let (Some(b), Some(hot)) = (self.books.get_mut(book), self.hot.get(book)) else {
            return Vec::new();
        };
        match b.candle_interval {
            Some(smallest) if candle.interval > smallest => return Vec::new(),
            _ => b.candle_interval = Some(candle.interval),
        }
        if hot.last_tick_ts > close_ts.saturating_sub(silence_ms) {
            return Vec::new();
        }
        self.process_price(
            &candle.venue,
            &candle.symbol,
            candle.close,
            close_ts,
            None,
            false,
            Mode::Indexed,
        )
    }

    /// Primes a symbol after a restart with the last price the previous process evaluated
    /// for it (`price` at `ts`, as [`last_prices`](Self::last_prices) gave it): every rule of
    /// the symbol, and its last price and moving-percentage history, are set as if that
    /// price had been evaluated here — so the next real price is compared with it and a
    /// crossing in between fires — but nothing fires on the prime itself, not even a true
    /// state condition: that waits for the next real price and its trigger mode, which
    /// counts from the rule's restored last firing (`AlertRule::last_fired_at`). Where the
    /// last firing and the price determine a rule's re-arm state, it is restored too (see
    /// the module documentation).
    ///
    /// Call it after [`load`](Self::load), before the buffered controls and before market
    /// data. A prime not newer than the price the engine already holds for the symbol is
    /// ignored, as is one for a symbol without rules or a price that is not positive. Rules
    /// added later (a new rule, a new version) are new rules: their first price is no cross.
    /// A rule that expires at `ts` or before is dropped, as at any price (see
    /// [`take_expired`](Self::take_expired)).
    pub fn prime(&mut self, venue: &str, symbol: &str, price: Decimal, ts: i64) {
        self.prime_in(venue, symbol, price, ts, Mode::Indexed);
    }

    fn prime_in(&mut self, venue: &str, symbol: &str, price: Decimal, ts: i64, mode: Mode) {
        let Some(book) = self.book_of(venue, symbol) else {
            return;
        };
        if price <= Decimal::ZERO {
            return;
        }
        let Some(hot) = self.hot.get(book) else {
            return;
        };
        // At the same time as a price already evaluated it is no newer information (and a
        // tick already seen at that time may have fired).
        if hot.has_last && ts <= hot.last_ts {
            return;
        }
        // No trade id: a redelivered trade-less tick equal to the prime is a redelivery (its
        // firings were reported by the previous process).
        self.evaluate(book, price, to_f64(price), ts, (None, 0), mode, Pass::Prime);
    }

    /// The last evaluated price of a symbol and its time, if it has one.
    pub fn last_price(&self, venue: &str, symbol: &str) -> Option<(Decimal, i64)> {
        let hot = self.hot.get(self.book_of(venue, symbol)?)?;
        hot.has_last.then_some((hot.last_price, hot.last_ts))
    }

    /// Forgets everything the engine holds for a symbol — its rules' runtime state, its
    /// last price and history — and takes it as stored: `rules`, the symbol's active rules
    /// as the database has them (with their last firing), then `price` as a
    /// [`prime`](Self::prime). For a symbol another instance has evaluated meanwhile (a
    /// shard handed over): the symbol ends as a restart would have it. Rules deleted here
    /// (tombstones) stay deleted. Returns the rules the engine refused.
    pub fn reset_symbol(
        &mut self,
        venue: &str,
        symbol: &str,
        rules: &[AlertRule],
        price: Option<(Decimal, i64)>,
    ) -> Vec<(i64, Error)> {
        let stored: std::collections::HashSet<i64> = rules.iter().map(|r| r.id).collect();
        let mut rejected = Vec::new();
        if let Some(book) = self.book_of(venue, symbol) {
            let live: Vec<(i64, i64)> = self.books[book]
                .rules
                .iter()
                .filter(|r| r.is_live())
                .map(|r| (r.id, r.version))
                .collect();
            for (id, version) in live {
                self.remove_live(id);
                if !stored.contains(&id) {
                    self.tombstones.insert(id, version);
                }
            }
            self.books[book] = Book::new(Arc::from(venue), Arc::from(symbol));
            self.hot[book] = Hot::default();
        }
        for rule in rules
            .iter()
            .filter(|r| r.spec.venue == venue && r.spec.symbol == symbol)
        {
            if let Applied::Rejected { id, error } = self.upsert_rule(rule, true) {
                rejected.push((id, error));
            }
        }
        if let Some(book) = self.book_of(venue, symbol) {
            self.books[book].finish_bulk();
            self.books[book].maybe_compact();
        }
        if let Some((price, ts)) = price {
            self.prime(venue, symbol, price, ts);
        }
        rejected
    }

    /// The last evaluated price of each symbol whose price changed since the previous call,
    /// as [`last_prices`](Self::last_prices) gives it: what the adapter's checkpoint saves,
    /// at a cost of what moved rather than of every symbol held.
    pub fn take_changed_prices(&mut self) -> Vec<(String, String, Decimal, i64)> {
        let mut prices = Vec::with_capacity(self.changed.len());
        for book in std::mem::take(&mut self.changed) {
            let (Some(b), Some(hot)) = (self.books.get(book), self.hot.get_mut(book)) else {
                continue;
            };
            // A book listed twice (its state was reset meanwhile) gives its price once.
            if std::mem::take(&mut hot.changed) && hot.has_last {
                prices.push((
                    b.venue.to_string(),
                    b.symbol.to_string(),
                    hot.last_price,
                    hot.last_ts,
                ));
            }
        }
        prices
    }

    /// Lists a symbol's last price as changed again (a save of it failed or had to wait), so
    /// the next [`take_changed_prices`](Self::take_changed_prices) gives it.
    pub fn relist_price(&mut self, venue: &str, symbol: &str) {
        let Some(book) = self.book_of(venue, symbol) else {
            return;
        };
        if let Some(hot) = self.hot.get_mut(book)
            && hot.has_last
            && !std::mem::replace(&mut hot.changed, true)
        {
            self.changed.push(book);
        }
    }

    /// The last evaluated price of every symbol that has one: `(venue, symbol, price, ts)`.
    /// The adapter saves these (periodically and at shutdown) for [`prime`](Self::prime)
    /// after a restart. Save a symbol's price only once the firings of that price are
    /// stored: a price saved ahead of its firings would, after a crash, prime the redelivered
    /// tick into no move at all and lose them.
    pub fn last_prices(&self) -> Vec<(String, String, Decimal, i64)> {
        self.books
            .iter()
            .zip(&self.hot)
            .filter(|(_, hot)| hot.has_last)
            .map(|(book, hot)| {
                (
                    book.venue.to_string(),
                    book.symbol.to_string(),
                    hot.last_price,
                    hot.last_ts,
                )
            })
            .collect()
    }

    /// The subscriptions a signal meets (active, its kind, its symbol or all symbols, grade
    /// at least the minimum), sorted by subscription id. Stateless: a redelivered signal
    /// gives the same hits with the same ids.
    pub fn process_signal(&self, signal: &Signal) -> Vec<SubscriptionHit> {
        self.subscriptions.hits(signal)
    }

    /// Drops every rule expired at `now_ms` (the adapter's clock, e.g. once a minute, for
    /// symbols that stopped trading) and returns the ids of all rules expired since the last
    /// call, including those dropped while processing events. The adapter may mark them
    /// inactive in the database; the engine has already forgotten them.
    pub fn expire(&mut self, now_ms: i64) -> Vec<i64> {
        let AlertEngine {
            bands,
            books,
            ids,
            tombstones,
            templates,
            expired,
            ..
        } = self;
        for book in books.iter_mut() {
            expire_book(book, now_ms, bands, ids, tombstones, templates, expired);
        }
        std::mem::take(&mut self.expired)
    }

    /// The ids of rules expired while processing events since the last call.
    pub fn take_expired(&mut self) -> Vec<i64> {
        std::mem::take(&mut self.expired)
    }

    /// Indicator calculators held for expression rules (each distinct symbol, interval,
    /// indicator and parameters once).
    pub fn indicator_calculators(&self) -> usize {
        self.books
            .iter()
            .flat_map(|b| b.indicators.iter())
            .map(|s| s.calculators())
            .sum()
    }

    /// How many rule evaluations the engine has made (the naive loop makes one per rule of
    /// the symbol per tick; the index, one per rule a price move can affect).
    pub fn evaluations(&self) -> u64 {
        self.evaluations
    }

    /// How many prices took the fast path: the hot record proved that no rule could change,
    /// so none was asked.
    pub fn quiet_prices(&self) -> u64 {
        self.quiet_prices
    }

    /// Heap bytes the engine accounts for (capacities, not allocator overhead): for metrics.
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        self.books.capacity() * size_of::<Book>()
            + self.hot.capacity() * size_of::<Hot>()
            + self.books.iter().map(Book::heap_bytes).sum::<usize>()
            + self.ids.capacity() * (size_of::<(i64, RuleAt)>() + 1)
            + self.tombstones.capacity() * (size_of::<(i64, i64)>() + 1)
            + self.templates.capacity() * size_of::<(usize, Arc<str>)>()
            + self.subscriptions.heap_bytes()
            + self.symbols.capacity() * (std::mem::size_of::<(NameKey, u32)>() + 1)
    }

    #[allow(clippy::too_many_arguments)]
    fn process_price(
        &mut self,
        venue: &str,
        symbol: &str,
        price: Decimal,
        ts: i64,
        trade: Option<&str>,
        is_tick: bool,
        mode: Mode,
    ) -> Vec<Firing> {
        let Some(book) = self.book_of(venue, symbol) else {
            return Vec::new();
        };
        if price <= Decimal::ZERO {
            return Vec::new();
        }
        let Some(hot) = self.hot.get_mut(book) else {
            return Vec::new();
        };
        if is_tick {
            hot.last_tick_ts = hot.last_tick_ts.max(ts);
        }
        let hash = trade_hash(trade);
        if hot.is_redelivery(ts, hash, price) {
            return self
                .books
                .get(book)
                .map(|b| b.last_firings.clone())
                .unwrap_or_default();
        }
        if hot.has_last && ts < hot.last_ts {
            return Vec::new();
        }
        let price_f = to_f64(price);
        if mode == Mode::Indexed && hot.quiet(price_f, ts) {
            // The fast path: no rule can change (see `Hot::quiet`).
            if hot.set_last(price, price_f, ts, hash) {
                self.changed.push(book);
            }
            self.quiet_prices += 1;
            if hot.cached {
                hot.cached = false;
                if let Some(b) = self.books.get_mut(book) {
                    b.last_firings.clear();
                }
            }
            return Vec::new();
        }
        self.evaluate(book, price, price_f, ts, (trade, hash), mode, Pass::Live)
    }

    #[allow(clippy::too_many_arguments)]
    fn evaluate(
        &mut self,
        book: usize,
        price: Decimal,
        price_f: f64,
        ts: i64,
        (trade, hash): (Option<&str>, u64),
        mode: Mode,
        pass: Pass,
    ) -> Vec<Firing> {
        let AlertEngine {
            bands,
            books,
            hot,
            ids,
            tombstones,
            templates,
            expired,
            scratch,
            evaluations,
            changed,
            ..
        } = self;
        let book_index = book;
        let (Some(book), Some(hot)) = (books.get_mut(book), hot.get_mut(book)) else {
            return Vec::new();
        };
        let Scratch { candidates, groups } = scratch;
        let prev = hot.has_last.then_some(hot.last_price);

        // Rules expired by this time go first: they must not fire at it.
        expire_book(book, ts, bands, ids, tombstones, templates, expired);

        groups.clear();
        // The naive loop trusts no cache: it reads every group's reference at every price,
        // so the cross-check tests hold the cached references to the truth.
        let groups_quiet = mode == Mode::Indexed && book.groups_quiet(hot, price_f, ts);
        if groups_quiet {
            // Nothing can change for any group: leave them unread (a candidate that needs
            // its group's change reads the cached reference).
            groups.resize(book.groups.len(), GroupNow::UNSEEN);
        } else if !book.groups.is_empty() {
            if hot.has_last && book.history.closes_slot(hot.last_ts, ts) {
                book.history.finalize(hot.last_ts, hot.last_price, ts);
            }
            book.view_groups(
                hot.has_last
                    .then_some(hot.last_ts)
                    .filter(|_| mode == Mode::Indexed),
                ts,
                price,
                price_f,
                groups,
            );
        }

        candidates.clear();
        let keys_moved = book.keys_moved(hot, price_f);
        match mode {
            Mode::Indexed => book.gather(hot, keys_moved, price_f, ts, groups, candidates),
            Mode::Naive => book.gather_all(candidates),
        }

        let mut fired = Vec::new();
        *evaluations += candidates.len() as u64;
        for &slot in candidates.iter() {
            let Some(rule) = book.rules.get_mut(slot as usize) else {
                continue;
            };
            // A queue entry left by a slot's earlier rule may name a bar-close rule now:
            // prices never evaluate those.
            if !rule.is_live() || rule.at_bar_close() {
                continue;
            }
            let change = match groups.get_mut(usize::from(rule.group)) {
                Some(now) if rule.is_moving() => {
                    let cached = book.groups.get(usize::from(rule.group));
                    let amount = cached.is_some_and(|g| g.amount);
                    *now.exact.get_or_insert_with(|| {
                        now.reference
                            .or_else(|| cached.map(Group::reference))
                            .and_then(|r| exact_change(price, r, amount))
                    })
                }
                _ => None,
            };
            let Some(band) = bands.get(usize::from(rule.band)).copied() else {
                continue;
            };
            let was_waiting = rule.needs_rearm_entries();
            let offset = book.offset_ms;
            let outcome = match pass {
                Pass::Live => rule.step(prev, price, ts, change, &band, offset),
                Pass::Prime => rule.prime(price, ts, change, &band, offset),
            };
            match outcome {
                Outcome::Nothing => {}
                Outcome::Deferred => {
                    // Asked at the next price whatever it is, like a rule just added (the
                    // naive loop asks every rule anyway).
                    if mode == Mode::Indexed {
                        book.fresh.push(slot);
                    }
                }
                Outcome::Suppressed { eligible } => {
                    if mode == Mode::Indexed {
                        book.push_pending(eligible, slot);
                    }
                }
                Outcome::Expired => {
                    let id = rule.id;
                    retire(book, slot, bands, ids, tombstones, templates);
                    expired.push(id);
                }
                Outcome::Fired(fire) => {
                    let template = templates.get(rule.template as usize).cloned();
                    let firing = build_firing(
                        &book.venue,
                        &book.symbol,
                        rule,
                        fire,
                        price,
                        ts,
                        trade,
                        change,
                        template,
                    );
                    fired.push(firing);
                    if rule.trigger == Trigger::Once {
                        retire(book, slot, bands, ids, tombstones, templates);
                    }
                }
            }
            // A rule that fired now waits to re-arm; one that re-armed no longer does.
            let waiting = book
                .rules
                .get(slot as usize)
                .filter(|r| r.is_live())
                .map(CompiledRule::needs_rearm_entries);
            match (was_waiting, waiting) {
                (false, Some(true)) => book.watch_rearm(slot, &band),
                (true, Some(false)) => book.unwatch_rearm(slot, &band),
                _ => {}
            }
        }

        book.last_firings.clone_from(&fired);
        book.maybe_compact();
        if hot.set_last(price, price_f, ts, hash) {
            changed.push(book_index);
        }
        book.refresh(hot, price_f, keys_moved, groups_quiet, groups);
        fired
    }
}

impl AlertEngine {
    /// Evaluates the bar-close rules of a closed candle's symbol and interval at its close
    /// (time: the candle's last millisecond). A rule compares the close with the previous
    /// close of the series — a crossing is between the two, a state holds at the close —
    /// and a moving rule measures the change from the close a window earlier. A rule that
    /// has not seen a close takes the previous one as seen (restored from the store after a
    /// restart, see [`history_wanted`](Self::history_wanted)), so its first bar close can be a
    /// crossing. The same candle again returns the same firings; an older one nothing.
    fn evaluate_bar_close(&mut self, book: usize, candle: &Candle) -> Vec<Firing> {
        let AlertEngine {
            bands,
            books,
            ids,
            tombstones,
            templates,
            expired,
            evaluations,
            ..
        } = self;
        let Some(book) = books.get_mut(book) else {
            return Vec::new();
        };
        let slots = book.bar_slots_of(candle.interval);
        if slots.is_empty() {
            return Vec::new();
        }
        let keep = book.bars_needed(candle.interval);
        let len = candle.interval.as_ms();
        let close_ts = candle.open_ts.saturating_add(len).saturating_sub(1);
        let series = book.series(candle.interval);
        match series.last_open {
            Some(open) if candle.open_ts == open => return series.last_firings.clone(),
            Some(open) if candle.open_ts < open => return Vec::new(),
            _ => {}
        }
        let previous = series.close_before(candle.open_ts);
        expire_book(book, close_ts, bands, ids, tombstones, templates, expired);
        let offset = book.offset_ms;
        let mut fired = Vec::new();
        for slot in slots {
            let stepped = if book.exprs.contains_key(&slot) {
                step_expression_rule(book, slot, close_ts, len, offset)
            } else {
                step_bar_rule(book, slot, candle, previous, bands)
            };
            let Some((outcome, change, detail)) = stepped else {
                continue;
            };
            *evaluations += 1;
            let Some(rule) = book.rules.get(slot as usize) else {
                continue;
            };
            match outcome {
                Outcome::Expired => {
                    let id = rule.id;
                    retire(book, slot, bands, ids, tombstones, templates);
                    expired.push(id);
                }
                Outcome::Fired(fire) => {
                    let template = templates.get(rule.template as usize).cloned();
                    let mut firing = build_firing(
                        &book.venue,
                        &book.symbol,
                        rule,
                        fire,
                        candle.close,
                        close_ts,
                        None,
                        change,
                        template,
                    );
                    firing.expression = detail;
                    fired.push(firing);
                    if rule.trigger == Trigger::Once {
                        retire(book, slot, bands, ids, tombstones, templates);
                    }
                }
                // Asked again at the next close anyway.
                Outcome::Nothing | Outcome::Suppressed { .. } | Outcome::Deferred => {}
            }
        }
        let series = book.series(candle.interval);
        series.push(candle.open_ts, candle.close, keep);
        series.last_firings.clone_from(&fired);
        fired
    }

    /// The stored closed candles this candle's symbol lacks, per interval, `(interval,
    /// how many)`: the closes its bar-close rules compare the candle with, and the bars its
    /// expression rules' indicators warm up on (any interval they read) — after a restart,
    /// a handover, or for a rule new to the engine. The adapter reads the newest that many
    /// from the candle store — for the candle's own interval, those that opened before it —
    /// and hands them to [`prime_history`](Self::prime_history) before
    /// [`process_candle`](Self::process_candle). Each series asks once for a given need.
    pub fn history_wanted(&self, candle: &Candle) -> Vec<(Interval, usize)> {
        let mut wanted: Vec<(Interval, usize)> = Vec::new();
        if !candle.closed {
            return wanted;
        }
        let Some(book) = self
            .book_of(&candle.venue, &candle.symbol)
            .and_then(|b| self.books.get(b))
        else {
            return wanted;
        };
        let closes = book.bars_needed(candle.interval);
        if closes > 0 {
            let series = book.bars.iter().find(|b| b.interval == candle.interval);
            let (held, asked) =
                series.map_or((0, 0), |s| (s.count_before(candle.open_ts), s.asked));
            if held < closes && asked < closes {
                wanted.push((candle.interval, closes));
            }
        }
        for series in &book.indicators {
            let needed = series.bars_needed();
            if series.bars_held() < needed && series.asked < needed {
                match wanted.iter_mut().find(|(i, _)| *i == series.interval) {
                    Some((_, n)) => *n = (*n).max(needed),
                    None => wanted.push((series.interval, needed)),
                }
            }
        }
        wanted
    }

    /// Stored closed candles of one series of a symbol, oldest or newest first (see
    /// [`history_wanted`](Self::history_wanted)); `asked` is how many were asked for, so the
    /// store is not asked again for as many. Candles not older than what the engine
    /// evaluated for bar-close rules are left out there.
    pub fn prime_history(
        &mut self,
        venue: &str,
        symbol: &str,
        interval: Interval,
        candles: &[Candle],
        asked: usize,
    ) {
        let Some(book) = self.book_of(venue, symbol) else {
            return;
        };
        let Some(book) = self.books.get_mut(book) else {
            return;
        };
        let keep = book.bars_needed(interval);
        if keep > 0 {
            let series = book.series(interval);
            let closes: Vec<(i64, Decimal)> = candles
                .iter()
                .filter(|c| {
                    series.last_open.is_none_or(|last| c.open_ts < last) && c.close > Decimal::ZERO
                })
                .map(|c| (c.open_ts, c.close))
                .collect();
            series.add_earlier(&closes, keep);
            series.asked = series.asked.max(asked);
        }
        if let Some(series) = book.indicators.iter_mut().find(|s| s.interval == interval) {
            let bars: Vec<Bar> = candles.iter().map(Bar::of).collect();
            series.add_history(&bars);
            series.asked = series.asked.max(asked);
            let indicators = &book.indicators;
            for expr in book.exprs.values_mut() {
                expr.seed_previous(|s, i| indicator::read(indicators, s, i));
            }
        }
    }
}

/// What stepping a bar-close or expression rule gave: the outcome, a moving rule's change,
/// and an expression's clauses with their values (for a firing).
type Stepped = (Outcome, Option<Decimal>, Option<String>);

/// Steps the expression rule in `slot` at a close (see [`CompiledRule::step_expression`]);
/// `None` when a side has no value yet or the slot holds no live rule.
fn step_expression_rule(
    book: &mut Book,
    slot: u32,
    close_ts: i64,
    len: i64,
    offset: i64,
) -> Option<Stepped> {
    let expr = book.exprs.get_mut(&slot)?;
    let indicators = &book.indicators;
    let read = |s: Series, i: Interval| indicator::read(indicators, s, i);
    let first = book
        .rules
        .get(slot as usize)
        .is_some_and(|r| !r.is_primed());
    let held_before = if first { expr.previous_truth() } else { None };
    let truth = expr.evaluate(read)?;
    let detail = truth.then(|| expr.describe(read));
    let rule = book.rules.get_mut(slot as usize).filter(|r| r.is_live())?;
    let fired_in_run = rule.last_fire != NEVER
        && (rule.last_fire >= close_ts.saturating_sub(len) || held_before == Some(true));
    let outcome = rule.step_expression(truth, fired_in_run, close_ts, offset);
    Some((outcome, None, detail))
}

/// Steps the bar-close price rule in `slot` at `candle`'s close, `previous` being the
/// series' close before it: a rule that has not seen a close takes that one as seen.
fn step_bar_rule(
    book: &mut Book,
    slot: u32,
    candle: &Candle,
    previous: Option<(i64, Decimal)>,
    bands: &[Band],
) -> Option<Stepped> {
    let len = candle.interval.as_ms();
    let close_ts = candle.open_ts.saturating_add(len).saturating_sub(1);
    let offset = book.offset_ms;
    let series = book.bars.iter().find(|b| b.interval == candle.interval)?;
    let rule = book.rules.get(slot as usize).filter(|r| r.is_live())?;
    let window_ms = i64::from(rule.window_s).saturating_mul(1_000);
    let amount = rule.condition.is_moving_amount();
    let moving = rule.is_moving();
    let change_at = |open_ts: i64, close: Decimal| {
        moving
            .then(|| series.change(open_ts, close, window_ms, amount))
            .flatten()
    };
    let change = change_at(candle.open_ts, candle.close);
    let before = previous.map(|(open, close)| {
        (
            close,
            open.saturating_add(len).saturating_sub(1),
            change_at(open, close),
        )
    });
    let band = bands.get(usize::from(rule.band)).copied()?;
    let rule = book.rules.get_mut(slot as usize)?;
    let mut outcome = Outcome::Nothing;
    if !rule.is_primed()
        && let Some((close, ts, change)) = before
    {
        outcome = rule.prime(close, ts, change, &band, offset);
    }
    if outcome != Outcome::Expired {
        outcome = rule.step(
            before.map(|(close, ..)| close),
            candle.close,
            close_ts,
            change,
            &band,
            offset,
        );
    }
    Some((outcome, change, None))
}

/// Where a live rule sits in the engine.
#[derive(Debug, Clone, Copy)]
struct RuleAt {
    book: u32,
    slot: u32,
}

/// Stores a rule's own message template; its index as a rule keeps it (`None`: no room).
fn add_template(templates: &mut Slab<Arc<str>>, text: &str) -> Option<u32> {
    let key = templates.insert(Arc::from(text));
    match u32::try_from(key).ok().filter(|&k| k != NO_TEMPLATE) {
        Some(index) => Some(index),
        None => {
            templates.remove(key);
            None
        }
    }
}

/// Drops a rule's template ([`NO_TEMPLATE`]: it had none).
fn remove_template(templates: &mut Slab<Arc<str>>, index: u32) {
    if index != NO_TEMPLATE {
        templates.try_remove(index as usize);
    }
}

/// Removes a rule the engine itself ends (a `once` firing, an expiry): the tombstone keeps
/// its version so a replayed upsert of that version cannot bring it back.
fn retire(
    book: &mut Book,
    slot: u32,
    bands: &[Band],
    ids: &mut FxHashMap<i64, RuleAt>,
    tombstones: &mut FxHashMap<i64, i64>,
    templates: &mut Slab<Arc<str>>,
) {
    if let Some(removed) = book.remove(slot, bands) {
        ids.remove(&removed.id);
        tombstones.insert(removed.id, removed.version);
        remove_template(templates, removed.template);
    }
}

fn expire_book(
    book: &mut Book,
    now_ms: i64,
    bands: &[Band],
    ids: &mut FxHashMap<i64, RuleAt>,
    tombstones: &mut FxHashMap<i64, i64>,
    templates: &mut Slab<Arc<str>>,
    expired: &mut Vec<i64>,
) {
    let mut due = Vec::new();
    book.due_expiries(now_ms, &mut due);
    for slot in due {
        // A slot may have been reused since the entry was pushed: check the rule itself.
        let id = book
            .rule(slot)
            .filter(|r| r.is_live() && r.expires_at <= now_ms)
            .map(|r| r.id);
        if let Some(id) = id {
            retire(book, slot, bands, ids, tombstones, templates);
            expired.push(id);
        }
    }
}

/// `(p − ref) × 100 / ref` (or `p − ref` for an `amount`), in decimal; `None` for a
/// reference that is not a price.
fn exact_change(price: Decimal, reference: Decimal, amount: bool) -> Option<Decimal> {
    if reference <= Decimal::ZERO {
        return None;
    }
    let moved = price.checked_sub(reference)?;
    if amount {
        return Some(moved);
    }
    moved
        .checked_mul(Decimal::ONE_HUNDRED)?
        .checked_div(reference)
}

#[allow(clippy::too_many_arguments)]
fn build_firing(
    venue: &Arc<str>,
    symbol: &Arc<str>,
    rule: &CompiledRule,
    fire: Fire,
    price: Decimal,
    ts: i64,
    trade: Option<&str>,
    change: Option<Decimal>,
    template: Option<Arc<str>>,
) -> Firing {
    let rule_id = rule.id.to_string();
    let id = match trade {
        Some(trade_id) => deterministic_id(ts, &["alert", &rule_id, trade_id]),
        None => {
            let ts_text = ts.to_string();
            let price_text = price.normalize().to_string();
            deterministic_id(ts, &["alert", &rule_id, &ts_text, &price_text])
        }
    };
    let channel = rule.condition.is_channel();
    let moving = rule.condition.is_moving();
    let pct = rule.condition.is_moving_pct();
    Firing {
        id,
        rule_id: rule.id,
        rule_version: rule.version,
        user_id: rule.user_id,
        venue: venue.clone(),
        symbol: symbol.clone(),
        condition: rule.condition,
        direction: fire.direction,
        threshold: fire.threshold,
        low: channel.then_some(rule.a),
        high: channel.then_some(rule.b),
        pct: pct.then_some(rule.a),
        window_s: moving.then_some(rule.window_s),
        change_pct: if pct { change } else { None },
        change: if moving && !pct { change } else { None },
        expression: None,
        price,
        ts,
        interval: rule.interval,
        trigger: rule.trigger,
        disable_rule: rule.trigger == Trigger::Once,
        template,
    }
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
