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
use serde_json::{Map, Value};
use tickwatch_schema::db::entity::{alert_event, alert_rule};
use tickwatch_schema::db::{now_ms, rule_from_row, rule_spec_columns};
use tickwatch_schema::rule::{AlertRule, Condition, RuleSpec, Trigger};
use tickwatch_schema::wire::{Control, Interval};

use super::{Page, Services, decode_cursor, encode_cursor};
use crate::error::{Error, Result};

/// The most rules one user may have; protects a small server from one runaway script.
pub const MAX_RULES_PER_USER: u64 = 1_000;
/// Optimistic-update attempts before a change is reported as a conflict.
pub(super) const UPDATE_ATTEMPTS: usize = 5;

/// The fields `PATCH /v1/alerts/{id}` takes besides the rule's own.
pub const PATCH_EXTRA_FIELDS: &[&str] = &["active"];

/// Decodes a client's rule JSON: names the first field with a wrong type or value, refuses
/// unknown fields, then runs the shared validation (with `expires_at` in the future).
pub fn parse_rule_spec(value: &Value, now_ms: i64) -> Result<RuleSpec> {
    let object = value
        .as_object()
        .ok_or_else(|| Error::invalid("body", "the alert rule must be a JSON object"))?;
    check_fields(object, &[])?;
    let spec = RuleSpec::from_json_strict(value)?;
    spec.validate_at(now_ms)?;
    Ok(spec)
}

/// Checks each field's JSON type and value on its own, so an error names its field;
/// `extra` are further allowed fields (`active` in a patch).
pub fn check_fields(object: &Map<String, Value>, extra: &[&str]) -> Result<()> {
    for (field, value) in object {
        if !RuleSpec::FIELDS.contains(&field.as_str()) && !extra.contains(&field.as_str()) {
            let mut known: Vec<&str> = RuleSpec::FIELDS.to_vec();
            known.extend_from_slice(extra);
            return Err(Error::invalid(
                field.clone(),
                format!(
                    "is not a field of an alert rule; the fields are {}",
                    known.join(", ")
                ),
            ));
        }
        probe(field, value)?;
    }
    Ok(())
}

fn probe(field: &str, value: &Value) -> Result<()> {
    let (ok, expected) = match field {
        "venue" | "symbol" => (value.is_string(), "a string"),
        "template" => (value.is_string() || value.is_null(), "a string"),
        "condition" => return probe_enum::<Condition>(field, value, false),
        "trigger" => return probe_enum::<Trigger>(field, value, false),
        "interval" => return probe_enum::<Interval>(field, value, true),
        "threshold" | "low" | "high" | "pct" | "hysteresis_pct" => (
            value.is_null() || value.as_str().is_some_and(|s| s.parse::<Decimal>().is_ok()),
            "a decimal string such as \"65000.5\" (not a JSON number)",
        ),
        "window_s" => (
            value.is_null() || value.as_u64().is_some(),
            "a whole number of seconds",
        ),
        "cooldown_s" => (value.as_u64().is_some(), "a whole number of seconds"),
        "expires_at" => (
            value.is_null() || value.as_i64().is_some(),
            "epoch milliseconds or null",
        ),
        "active" => (value.is_boolean(), "true or false"),
        _ => (true, ""),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(field, format!("must be {expected}")))
    }
}

/// An enum field: its exact spelling, or an error listing the known values.
fn probe_enum<T>(field: &str, value: &Value, nullable: bool) -> Result<()>
where
    T: serde::de::DeserializeOwned + std::str::FromStr,
    T::Err: std::fmt::Display,
{
    if nullable && value.is_null() {
        return Ok(());
    }
    if serde_json::from_value::<T>(value.clone()).is_ok() {
        return Ok(());
    }
    match value.as_str() {
        Some(text) => match text.parse::<T>() {
            // Known, but spelt in another case: the wire wants the exact spelling.
            Ok(_) => Err(Error::invalid(
                field,
                format!("`{text}`: write it in lower case as documented"),
            )),
            Err(e) => Err(Error::invalid(field, strip_field_prefix(&e.to_string()))),
        },
        None => Err(Error::invalid(field, "must be a string")),
    }
}

/// `invalid `condition`: `x` is not known…` → `` `x` is not known…``.
fn strip_field_prefix(text: &str) -> String {
    match text.strip_prefix("invalid `") {
        Some(rest) => rest
            .split_once("`: ")
            .map_or(text.to_string(), |(_, r)| r.to_string()),
        None => text.to_string(),
    }
}

fn to_rule(row: &alert_rule::Model) -> Result<AlertRule> {
    rule_from_row(row).map_err(|e| Error::Data(format!("rule {}: {e}", row.id)))
}

impl Services {
    /// Stores a new rule of `user_id` (validated, active, version 1) and announces it.
    pub async fn create_rule(&self, user_id: i64, spec: RuleSpec) -> Result<AlertRule> {
        let now = now_ms();
        spec.validate_at(now)?;
        let count = alert_rule::Entity::find()
            .filter(alert_rule::Column::UserId.eq(user_id))
            .count(self.db())
            .await?;
        if count >= MAX_RULES_PER_USER {
            return Err(Error::Conflict(format!(
                "you have {count} alert rules, the most allowed; delete some first"
            )));
        }
        let mut row = alert_rule::ActiveModel {
            user_id: Set(user_id),
            active: Set(true),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
            fired_count: Set(0),
            last_fired_at: Set(None),
            ..Default::default()
        };
        rule_spec_columns(&spec, &mut row);
        let stored = row.insert(self.db()).await?;
        let rule = to_rule(&stored)?;
        self.announce(&Control::RuleUpserted { rule: rule.clone() })
            .await;
        Ok(rule)
    }

    /// The user's rules by id, `limit` at a time after the cursor.
    pub async fn list_rules(
        &self,
        user_id: i64,
        cursor: Option<&str>,
        limit: u64,
    ) -> Result<Page<AlertRule>> {
        let mut query = alert_rule::Entity::find()
            .filter(alert_rule::Column::UserId.eq(user_id))
            .order_by_asc(alert_rule::Column::Id)
            .limit(limit + 1);
        if let Some(cursor) = cursor {
            let (_, id) = decode_cursor(cursor)?;
            let after: i64 = id
                .parse()
                .map_err(|_| Error::invalid("cursor", "is not a cursor this API gave out"))?;
            query = query.filter(alert_rule::Column::Id.gt(after));
        }
        let mut rows = query.all(self.db()).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = match (more, rows.last()) {
            (true, Some(last)) => Some(encode_cursor(0, &last.id.to_string())),
            _ => None,
        };
        let items = rows.iter().map(to_rule).collect::<Result<Vec<_>>>()?;
        Ok(Page { items, next_cursor })
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

    /// Applies a JSON merge patch (a field set to `null` is removed) of rule fields and
    /// `active`, validates the result as a whole, stores and announces it.
    pub async fn patch_rule(
        &self,
        user_id: i64,
        rule_id: i64,
        patch: &Map<String, Value>,
    ) -> Result<AlertRule> {
        check_fields(patch, PATCH_EXTRA_FIELDS)?;
        let now = now_ms();
        self.update_owned(user_id, rule_id, |current| {
            let active = match patch.get("active") {
                Some(v) => v.as_bool().unwrap_or(current.active),
                None => current.active,
            };
            let spec_changed = patch.keys().any(|k| k != "active");
            if !spec_changed {
                check_resumable(&current.spec, active, current.active, now)?;
                return Ok((current.spec.clone(), active));
            }
            let mut merged = match serde_json::to_value(&current.spec) {
                Ok(Value::Object(map)) => map,
                _ => return Err(Error::Data(format!("rule {rule_id} does not serialise"))),
            };
            for (key, value) in patch {
                if key == "active" {
                    continue;
                }
                if value.is_null() {
                    merged.remove(key);
                } else {
                    merged.insert(key.clone(), value.clone());
                }
            }
            let spec = RuleSpec::from_json_strict(&Value::Object(merged))?;
            if patch.contains_key("expires_at") {
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
        self.update_owned(user_id, rule_id, |current| {
            check_resumable(&current.spec, active, current.active, now)?;
            Ok((current.spec.clone(), active))
        })
        .await
    }

    /// Reads the row, computes the new spec and flag, and writes them if nobody changed the
    /// row meanwhile (else reads again); announces the result.
    async fn update_owned<F>(&self, user_id: i64, rule_id: i64, change: F) -> Result<AlertRule>
    where
        F: Fn(&AlertRule) -> Result<(RuleSpec, bool)>,
    {
        for _ in 0..UPDATE_ATTEMPTS {
            let row = self.owned_rule_row(user_id, rule_id).await?;
            let current = to_rule(&row)?;
            let (spec, active) = change(&current)?;
            let mut update = <alert_rule::ActiveModel as Default>::default();
            rule_spec_columns(&spec, &mut update);
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
        cursor: Option<&str>,
        limit: u64,
    ) -> Result<Page<alert_event::Model>> {
        self.owned_rule_row(user_id, rule_id).await?;
        let mut query = alert_event::Entity::find()
            .filter(alert_event::Column::RuleId.eq(rule_id))
            .filter(alert_event::Column::UserId.eq(user_id))
            .order_by_desc(alert_event::Column::Ts)
            .order_by_desc(alert_event::Column::Id)
            .limit(limit + 1);
        if let Some(cursor) = cursor {
            let (ts, id) = decode_cursor(cursor)?;
            query = query.filter(
                Where::any().add(alert_event::Column::Ts.lt(ts)).add(
                    Where::all()
                        .add(alert_event::Column::Ts.eq(ts))
                        .add(alert_event::Column::Id.lt(id)),
                ),
            );
        }
        let mut rows = query.all(self.db()).await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = match (more, rows.last()) {
            (true, Some(last)) => Some(encode_cursor(last.ts, &last.id)),
            _ => None,
        };
        Ok(Page {
            items: rows,
            next_cursor,
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field_of(err: Error) -> String {
        match err {
            Error::Invalid { field, .. } => field,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn each_error_names_its_field() {
        let now = 1_763_762_400_000;
        let base = json!({"venue":"binance","symbol":"BTCUSDT","condition":"crossing_up","threshold":"65000"});
        assert!(parse_rule_spec(&base, now).is_ok());
        let with = |k: &str, v: Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        let cases = [
            (with("threshold", json!(65000)), "threshold"),
            (with("threshold", json!("-1")), "threshold"),
            (with("condition", json!("sideways")), "condition"),
            (with("trigger", json!("twice")), "trigger"),
            (with("cooldown_s", json!(-5)), "cooldown_s"),
            (with("treshold", json!("1")), "treshold"),
            (with("symbol", json!("btcusdt")), "symbol"),
            (
                with("expires_at", json!(1_000_000_000_000i64)),
                "expires_at",
            ),
        ];
        for (body, field) in cases {
            let err = parse_rule_spec(&body, now).expect_err(field);
            assert_eq!(field_of(err), field, "{body}");
        }
        let mut missing = base.clone();
        if let Some(map) = missing.as_object_mut() {
            map.remove("threshold");
        }
        assert_eq!(
            field_of(parse_rule_spec(&missing, now).expect_err("missing")),
            "threshold"
        );
    }
}
