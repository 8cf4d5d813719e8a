//! Alert rules: create, list, read, change, pause/resume, delete — always of one user's
//! own rules — and the events (firings) of a rule.
//!
//! Every change bumps the row's `version` with an optimistic check (`WHERE version = <read>`),
//! so two concurrent changes cannot both win silently, and is then announced as
//! `RuleUpserted` (a paused rule is an upsert with `active = false`) or `RuleDeleted`
//! carrying the version after the one it deletes.

use rust_decimal::Decimal;
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition as Where, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use tickwatch_schema::db::entity::{alert_event, alert_rule, candle};
use tickwatch_schema::db::{new_rule_row, now_ms, rule_from_row, rule_spec_columns};
use tickwatch_schema::rule::{AlertRule, Condition, RuleSpec, Trigger};
use tickwatch_schema::wire::{Control, Interval};

use super::{Before, Page, Services, time_cursor};
use crate::error::{Error, Result};

/// What a change does to a rule's snooze.
#[derive(Debug, Clone, Copy)]
enum Snooze {
    Keep,
    End,
    Until(i64),
}

/// The most rules one user may have; protects a small server from one runaway script.
pub const MAX_RULES_PER_USER: u64 = 1_000;
/// Optimistic-update attempts before a change is reported as a conflict.
pub(super) const UPDATE_ATTEMPTS: usize = 5;

/// A change to a rule: a field left `None` stays; an optional field set to `Some(None)` is
/// removed. The result is validated as a whole.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RulePatch {
    pub venue: Option<String>,
    pub symbol: Option<String>,
    pub condition: Option<Condition>,
    pub threshold: Option<Option<Decimal>>,
    pub low: Option<Option<Decimal>>,
    pub high: Option<Option<Decimal>>,
    pub pct: Option<Option<Decimal>>,
    pub window_s: Option<Option<u64>>,
    pub trigger: Option<Trigger>,
    pub interval: Option<Option<Interval>>,
    pub cooldown_s: Option<u64>,
    pub expires_at: Option<Option<i64>>,
    pub hysteresis_pct: Option<Option<Decimal>>,
    pub template: Option<Option<String>>,
    pub expression: Option<Option<String>>,
    /// Pause (`false`) or resume (`true`).
    pub active: Option<bool>,
}

impl RulePatch {
    /// Whether it changes more than the active flag.
    fn changes_spec(&self) -> bool {
        RulePatch {
            active: None,
            ..self.clone()
        } != RulePatch::default()
    }

    /// `spec` with this patch applied.
    fn apply(&self, spec: &RuleSpec) -> RuleSpec {
        fn set<T: Clone>(field: &mut T, value: &Option<T>) {
            if let Some(v) = value {
                *field = v.clone();
            }
        }
        let mut out = spec.clone();
        set(&mut out.venue, &self.venue);
        set(&mut out.symbol, &self.symbol);
        set(&mut out.condition, &self.condition);
        set(&mut out.threshold, &self.threshold);
        set(&mut out.low, &self.low);
        set(&mut out.high, &self.high);
        set(&mut out.pct, &self.pct);
        set(&mut out.window_s, &self.window_s);
        set(&mut out.trigger, &self.trigger);
        set(&mut out.interval, &self.interval);
        set(&mut out.cooldown_s, &self.cooldown_s);
        set(&mut out.expires_at, &self.expires_at);
        set(&mut out.hysteresis_pct, &self.hysteresis_pct);
        set(&mut out.template, &self.template);
        set(&mut out.expression, &self.expression);
        out
    }
}

fn to_rule(row: &alert_rule::Model) -> Result<AlertRule> {
    rule_from_row(row).map_err(|e| Error::Data(format!("rule {}: {e}", row.id)))
}

impl Services {
    /// Stores a new rule of `user_id` (normalized, validated, version 1) and announces it.
    /// It is active unless its expiry has passed already: then it is stored expired
    /// (inactive), as it would be a moment later anyway.
    pub async fn create_rule(&self, user_id: i64, spec: RuleSpec) -> Result<AlertRule> {
        let now = now_ms();
        let spec = spec.normalized();
        spec.validate()?;
        let active = spec.expires_at.is_none_or(|at| at > now);
        let txn = self.lock_user(user_id).await?;
        let count = alert_rule::Entity::find()
            .filter(alert_rule::Column::UserId.eq(user_id))
            .count(&txn)
            .await?;
        if count >= MAX_RULES_PER_USER {
            return Err(Error::Conflict(format!(
                "you have {count} alert rules, the most allowed; delete some first"
            )));
        }
        let stored = new_rule_row(user_id, &spec, active, now)
            .insert(&txn)
            .await?;
        txn.commit().await?;
        let rule = to_rule(&stored)?;
        self.announce(&Control::RuleUpserted { rule: rule.clone() })
            .await;
        self.request_history(Some(&rule.spec.venue), &rule.spec.symbol);
        Ok(rule)
    }

    /// The user's rules by id, `limit` at a time after the cursor.
    pub async fn list_rules(
        &self,
        user_id: i64,
        after: Option<i64>,
        limit: u64,
    ) -> Result<Page<AlertRule>> {
        let mut query = alert_rule::Entity::find()
            .filter(alert_rule::Column::UserId.eq(user_id))
            .order_by_asc(alert_rule::Column::Id)
            .limit(limit + 1);
        if let Some(after) = after {
            query = query.filter(alert_rule::Column::Id.gt(after));
        }
        let rows = query.all(self.db()).await?;
        let page = Page::of(rows, limit, |r| r.id.to_string());
        let items = page.items.iter().map(to_rule).collect::<Result<Vec<_>>>()?;
        Ok(Page {
            items,
            next_cursor: page.next_cursor,
        })
    }

    /// The cursor (`after`) of the page of `limit` rules before the one starting at
    /// `first_id`: `None` when that is the first page.
    pub async fn page_before(
        &self,
        user_id: i64,
        first_id: i64,
        limit: u64,
    ) -> Result<Option<i64>> {
        let row = alert_rule::Entity::find()
            .filter(alert_rule::Column::UserId.eq(user_id))
            .filter(alert_rule::Column::Id.lt(first_id))
            .order_by_desc(alert_rule::Column::Id)
            .offset(limit)
            .one(self.db())
            .await?;
        Ok(row.map(|r| r.id))
    }

    /// How many rules the user has (active or not).
    pub async fn count_rules(&self, user_id: i64) -> Result<u64> {
        Ok(alert_rule::Entity::find()
            .filter(alert_rule::Column::UserId.eq(user_id))
            .count(self.db())
            .await?)
    }

    async fn owned_rule_row(&self, user_id: i64, rule_id: i64) -> Result<alert_rule::Model> {
        alert_rule::Entity::find_by_id(rule_id)
            .filter(alert_rule::Column::UserId.eq(user_id))
            .one(self.db())
            .await?
            // Someone else's rule looks exactly like a missing one.
            .ok_or_else(|| Error::not_found(format!("alert rule {rule_id}")))
    }

    /// One of the user's rules.
    pub async fn get_rule(&self, user_id: i64, rule_id: i64) -> Result<AlertRule> {
        to_rule(&self.owned_rule_row(user_id, rule_id).await?)
    }

    /// Applies a patch to one of the user's rules, validates the result as a whole, stores
    /// and announces it.
    pub async fn patch_rule(
        &self,
        user_id: i64,
        rule_id: i64,
        patch: &RulePatch,
    ) -> Result<AlertRule> {
        let now = now_ms();
        self.update_owned(user_id, rule_id, patch.active.is_some(), |current| {
            let active = patch.active.unwrap_or(current.active);
            if !patch.changes_spec() {
                check_resumable(&current.spec, active, current.active, now)?;
                return Ok((current.spec.clone(), active));
            }
            let spec = patch.apply(&current.spec).normalized();
            spec.validate()?;
            if patch.expires_at.is_some() {
                spec.validate_at(now)?;
            }
            check_resumable(&spec, active, current.active, now)?;
            Ok((spec, active))
        })
        .await
    }

    /// Pauses (`false`) or resumes (`true`) one of the user's rules.
    pub async fn set_rule_active(
        &self,
        user_id: i64,
        rule_id: i64,
        active: bool,
    ) -> Result<AlertRule> {
        let now = now_ms();
        self.update_owned(user_id, rule_id, true, |current| {
            check_resumable(&current.spec, active, current.active, now)?;
            Ok((current.spec.clone(), active))
        })
        .await
    }

    /// Why an expression rule cannot be evaluated yet: an indicator whose interval has
    /// fewer closed candles stored than its first value needs (the engine warms up on the
    /// stored candles, so with enough it is evaluable at once). Best effort, like the
    /// symbol warnings: a failure answers none.
    pub async fn expression_warnings(&self, spec: &RuleSpec) -> Vec<String> {
        let Ok(Some(expression)) = spec.parsed_expression() else {
            return Vec::new();
        };
        let mut warnings = Vec::new();
        let mut needs: Vec<(Interval, usize, String)> = Vec::new();
        for (series, interval) in expression.series() {
            let bars = series.bars_to_first_value();
            let name = tickwatch_schema::expr::Operand::Series(series, interval).to_string();
            match needs.iter_mut().find(|(i, ..)| *i == interval) {
                Some(need) if need.1 >= bars => {}
                Some(need) => (need.1, need.2) = (bars, name),
                None => needs.push((interval, bars, name)),
            }
        }
        for (interval, bars, series) in needs {
            let stored = candle::Entity::find()
                .filter(candle::Column::Venue.eq(spec.venue.as_str()))
                .filter(candle::Column::Symbol.eq(spec.symbol.as_str()))
                .filter(candle::Column::Interval.eq(interval.as_str()))
                .count(self.db())
                .await;
            match stored {
                Ok(stored) if (stored as usize) < bars => warnings.push(format!(
                    "{series} has no value until {bars} closed {interval} candles of {}:{} are stored ({stored} are): the rule waits for them — `tickwatch history load {} {} --interval {interval}` loads them now",
                    spec.venue, spec.symbol, spec.venue, spec.symbol
                )),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not count the stored candles"),
            }
        }
        warnings
    }

    /// Snoozes one of the user's rules until `until` (epoch ms): it is paused, and resumes
    /// by itself then ([`resume_snoozed`](Self::resume_snoozed)). Snoozing a snoozed rule
    /// moves its time; a rule paused by hand stays paused.
    pub async fn snooze_rule(&self, user_id: i64, rule_id: i64, until: i64) -> Result<AlertRule> {
        self.update_rule(user_id, rule_id, Snooze::Until(until), |current| {
            Ok((current.spec.clone(), false))
        })
        .await
    }

    /// Resumes the snoozed rules whose time has come (of every user), each announced as
    /// any resume is; returns how many. Safe with several processes running it: each row
    /// changes once, under its version. A rule that expired meanwhile stays paused.
    pub async fn resume_snoozed(&self, now: i64) -> Result<usize> {
        let due = alert_rule::Entity::find()
            .filter(alert_rule::Column::Active.eq(false))
            .filter(alert_rule::Column::SnoozedUntil.lte(now))
            .all(self.db())
            .await?;
        let mut resumed = 0;
        for row in due {
            let expired = row.expires_at.is_some_and(|at| at <= now);
            let update = alert_rule::ActiveModel {
                active: Set(!expired),
                snoozed_until: Set(None),
                version: Set(row.version + 1),
                updated_at: Set(now_ms()),
                ..Default::default()
            };
            let result = alert_rule::Entity::update_many()
                .set(update)
                .filter(alert_rule::Column::Id.eq(row.id))
                .filter(alert_rule::Column::Version.eq(row.version))
                .exec(self.db())
                .await?;
            if result.rows_affected == 1 && !expired {
                let rule = AlertRule {
                    active: true,
                    version: row.version + 1,
                    ..to_rule(&row)?
                };
                self.announce(&Control::RuleUpserted { rule }).await;
                resumed += 1;
            }
        }
        Ok(resumed)
    }

    /// Reads the row, computes the new spec and flag, and writes them if nobody changed the
    /// row meanwhile (else reads again); announces the result. A change that says whether
    /// the rule is active (`ends_snooze`: a pause or a resume) ends a snooze.
    async fn update_owned<F>(
        &self,
        user_id: i64,
        rule_id: i64,
        ends_snooze: bool,
        change: F,
    ) -> Result<AlertRule>
    where
        F: Fn(&AlertRule) -> Result<(RuleSpec, bool)>,
    {
        let snooze = if ends_snooze {
            Snooze::End
        } else {
            Snooze::Keep
        };
        self.update_rule(user_id, rule_id, snooze, change).await
    }

    /// [`update_owned`](Self::update_owned), saying what becomes of a snooze.
    async fn update_rule<F>(
        &self,
        user_id: i64,
        rule_id: i64,
        snooze: Snooze,
        change: F,
    ) -> Result<AlertRule>
    where
        F: Fn(&AlertRule) -> Result<(RuleSpec, bool)>,
    {
        for _ in 0..UPDATE_ATTEMPTS {
            let row = self.owned_rule_row(user_id, rule_id).await?;
            let current = to_rule(&row)?;
            let (spec, active) = change(&current)?;
            let mut update = <alert_rule::ActiveModel as Default>::default();
            rule_spec_columns(&spec, &mut update);
            match snooze {
                // Only an active or snoozed rule snoozes: one paused by hand stays paused.
                Snooze::Until(_) if !row.active && row.snoozed_until.is_none() => {
                    return Err(Error::Conflict(format!(
                        "alert {rule_id} is paused; resume it first"
                    )));
                }
                Snooze::Until(until) => update.snoozed_until = Set(Some(until)),
                Snooze::End => update.snoozed_until = Set(None),
                Snooze::Keep => {}
            }
            update.active = Set(active);
            update.version = Set(row.version + 1);
            update.updated_at = Set(now_ms());
            let result = alert_rule::Entity::update_many()
                .set(update)
                .filter(alert_rule::Column::Id.eq(rule_id))
                .filter(alert_rule::Column::UserId.eq(user_id))
                .filter(alert_rule::Column::Version.eq(row.version))
                .exec(self.db())
                .await?;
            if result.rows_affected == 1 {
                let rule = AlertRule {
                    id: row.id,
                    user_id: row.user_id,
                    spec,
                    active,
                    version: row.version + 1,
                    created_at: row.created_at,
                    last_fired_at: row.last_fired_at,
                };
                self.announce(&Control::RuleUpserted { rule: rule.clone() })
                    .await;
                return Ok(rule);
            }
        }
        Err(Error::Conflict(format!(
            "alert rule {rule_id} kept changing meanwhile; try again"
        )))
    }

    /// Deletes one of the user's rules and announces it; returns the rule as it was.
    pub async fn delete_rule(&self, user_id: i64, rule_id: i64) -> Result<AlertRule> {
        for _ in 0..UPDATE_ATTEMPTS {
            let row = self.owned_rule_row(user_id, rule_id).await?;
            let rule = to_rule(&row)?;
            // Only the version read: the tombstone's version must follow the last upsert
            // announced, or an alerts instance could keep a rule changed meanwhile.
            let result = alert_rule::Entity::delete_many()
                .filter(alert_rule::Column::Id.eq(rule_id))
                .filter(alert_rule::Column::UserId.eq(user_id))
                .filter(alert_rule::Column::Version.eq(row.version))
                .exec(self.db())
                .await?;
            if result.rows_affected == 1 {
                self.announce(&Control::RuleDeleted {
                    rule_id,
                    user_id,
                    // Versions order a delete after every upsert of the rule.
                    version: row.version + 1,
                })
                .await;
                return Ok(rule);
            }
        }
        Err(Error::Conflict(format!(
            "alert rule {rule_id} kept changing meanwhile; try again"
        )))
    }

    /// The firings of one of the user's rules, newest first.
    pub async fn rule_events(
        &self,
        user_id: i64,
        rule_id: i64,
        before: Option<Before>,
        limit: u64,
    ) -> Result<Page<alert_event::Model>> {
        self.owned_rule_row(user_id, rule_id).await?;
        let mut query = alert_event::Entity::find()
            .filter(alert_event::Column::RuleId.eq(rule_id))
            .filter(alert_event::Column::UserId.eq(user_id))
            .order_by_desc(alert_event::Column::Ts)
            .order_by_desc(alert_event::Column::Id)
            .limit(limit + 1);
        if let Some((ts, id)) = before {
            query = query.filter(
                Where::any().add(alert_event::Column::Ts.lt(ts)).add(
                    Where::all()
                        .add(alert_event::Column::Ts.eq(ts))
                        .add(alert_event::Column::Id.lt(id)),
                ),
            );
        }
        let rows = query.all(self.db()).await?;
        Ok(Page::of(rows, limit, |r| time_cursor(r.ts, &r.id)))
    }
}

/// A rule can be resumed only while it has not expired.
fn check_resumable(spec: &RuleSpec, active: bool, was_active: bool, now: i64) -> Result<()> {
    if active
        && !was_active
        && let Some(at) = spec.expires_at
        && at <= now
    {
        return Err(Error::invalid(
            "expires_at",
            "is in the past: set a later expiry (or null) to resume the rule",
        ));
    }
    Ok(())
}
