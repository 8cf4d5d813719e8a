//! The daily digest: at the local time a user chose (`/settings digest 18:00`), one
//! message — the day's fired alerts, the signals of their subscriptions with the outcomes
//! known so far, and a chart of their most active symbol. Off by default.
//!
//! [`Services::send_due_digests`] is the schedule's one step, run by every bot: a digest is
//! first stored under its user and local day (the primary key makes the second claim of a
//! day fail, whoever runs it), then published, then marked; a digest stored but not
//! published (a broker failure, a crash) goes out at the next step, and the notifier sends
//! its dedupe key once.

use std::collections::BTreeMap;

use chrono::{NaiveTime, TimeZone};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tickwatch_schema::db::entity::{alert_event, digest, signal, subscription, user};
use tickwatch_schema::display::{self, Tz};
use tickwatch_schema::names::Exchange;
use tickwatch_schema::wire::{
    Channel, ChartRequest, EventKind, Grade, Interval, Notification, deterministic_id,
};

use super::Services;
use crate::error::{Error, Result};

/// The time of day a digest goes out when a user turns it on without one.
pub const DEFAULT_DIGEST_AT: &str = "18:00";
/// Lines of each kind a digest lists (the rest are counted).
const LINES: usize = 10;

/// A time of day as users type it (`18:00`, `7:30`), as stored (`HH:MM`).
pub fn parse_time_of_day(text: &str) -> Option<String> {
    let time = NaiveTime::parse_from_str(text.trim(), "%H:%M").ok()?;
    Some(time.format("%H:%M").to_string())
}

/// The user's local day and time of day at `now`, and when that day began (epoch ms).
fn local(now: i64, tz: Tz) -> Option<(String, String, i64)> {
    let at = tz.timestamp_millis_opt(now).single()?;
    let day = at.date_naive();
    let start = tz
        .from_local_datetime(&day.and_hms_opt(0, 0, 0)?)
        .earliest()?
        .timestamp_millis();
    Some((
        day.format("%Y-%m-%d").to_string(),
        at.format("%H:%M").to_string(),
        start,
    ))
}

impl Services {
    /// Turns the daily digest on at `at` (`HH:MM`, the user's time) or off (`None`).
    pub async fn set_digest(&self, user_id: i64, at: Option<String>) -> Result<()> {
        user::Entity::update_many()
            .col_expr(user::Column::DigestAt, Expr::value(at))
            .filter(user::Column::Id.eq(user_id))
            .exec(self.db())
            .await?;
        Ok(())
    }

    /// Stores and publishes the digests that are due at `now` (each user's local time has
    /// reached theirs, and today's is not stored yet), and publishes any stored earlier
    /// but not published. Returns how many went to the broker.
    pub async fn send_due_digests(&self, now: i64) -> Result<usize> {
        let Some(publisher) = &self.inner.publisher else {
            return Err(Error::Unavailable("the digest needs the broker".into()));
        };
        let users = user::Entity::find()
            .filter(user::Column::DigestAt.is_not_null())
            .filter(user::Column::Active.eq(true))
            .filter(user::Column::TelegramChatId.is_not_null())
            .all(self.db())
            .await?;
        for user in &users {
            let tz = display::user_time_zone(&user.language, user.time_zone.as_deref());
            let Some((day, time, start)) = local(now, tz) else {
                continue;
            };
            if user
                .digest_at
                .as_deref()
                .is_none_or(|at| time.as_str() < at)
            {
                continue;
            }
            let exists = digest::Entity::find_by_id((user.id, day.clone()))
                .one(self.db())
                .await?
                .is_some();
            if exists {
                continue;
            }
            let text = self.digest_text(user, &day, start, now, tz).await?;
            // The claim: a second writer of the same user and day changes nothing.
            digest::Entity::insert(digest::ActiveModel {
                user_id: Set(user.id),
                day: Set(day),
                text: Set(text),
                published: Set(false),
                created_at: Set(now),
            })
            .on_conflict(
                OnConflict::columns([digest::Column::UserId, digest::Column::Day])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(self.db())
            .await
            .or_else(|e| match e {
                sea_orm::DbErr::RecordNotInserted => Ok(0),
                other => Err(other),
            })?;
        }
        // Publish what is stored and not yet published (just now, or left by a failure).
        let waiting = digest::Entity::find()
            .filter(digest::Column::Published.eq(false))
            .order_by_asc(digest::Column::CreatedAt)
            .limit(500)
            .all(self.db())
            .await?;
        let mut sent = 0;
        for row in waiting {
            let Some(user) = user::Entity::find_by_id(row.user_id).one(self.db()).await? else {
                continue;
            };
            if let Some(chat_id) = user.telegram_chat_id.filter(|_| user.active) {
                let key = format!("digest:{}:{}", row.user_id, row.day);
                let notification = Notification {
                    id: deterministic_id(row.created_at, &[&key]),
                    channel: Channel::Telegram,
                    chat_id,
                    text: row.text.clone(),
                    parse_mode: None,
                    dedupe_key: key,
                    kind: EventKind::Alert,
                    origin_ts: None,
                    buttons: Vec::new(),
                    chart: self.most_active_chart(&user, row.created_at).await?,
                };
                publisher.publish(Exchange::Notify, &notification).await?;
                sent += 1;
            }
            digest::Entity::update_many()
                .col_expr(digest::Column::Published, Expr::value(true))
                .filter(digest::Column::UserId.eq(row.user_id))
                .filter(digest::Column::Day.eq(row.day.as_str()))
                .exec(self.db())
                .await?;
        }
        Ok(sent)
    }

    /// The chart of the symbol whose alerts fired most today (else none).
    async fn most_active_chart(
        &self,
        user: &user::Model,
        now: i64,
    ) -> Result<Option<ChartRequest>> {
        let since = now - 86_400_000;
        let events = alert_event::Entity::find()
            .filter(alert_event::Column::UserId.eq(user.id))
            .filter(alert_event::Column::Ts.gte(since))
            .all(self.db())
            .await?;
        let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
        for e in &events {
            *counts
                .entry((e.venue.clone(), e.symbol.clone()))
                .or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|((venue, symbol), _)| ChartRequest {
                venue,
                symbol,
                interval: Interval::H1,
                level: None,
                marker_ts: None,
                bars: 48,
            }))
    }

    /// The digest of the user's day from `start` to `now`.
    async fn digest_text(
        &self,
        user: &user::Model,
        day: &str,
        start: i64,
        now: i64,
        tz: Tz,
    ) -> Result<String> {
        let ko = user.language == "ko";
        let events = alert_event::Entity::find()
            .filter(alert_event::Column::UserId.eq(user.id))
            .filter(alert_event::Column::Ts.gte(start))
            .filter(alert_event::Column::Ts.lte(now))
            .order_by_asc(alert_event::Column::Ts)
            .all(self.db())
            .await?;
        let subscriptions = subscription::Entity::find()
            .filter(subscription::Column::UserId.eq(user.id))
            .filter(subscription::Column::Active.eq(true))
            .all(self.db())
            .await?;
        let kinds: Vec<String> = subscriptions.iter().map(|s| s.kind.clone()).collect();
        let signals = if kinds.is_empty() {
            Vec::new()
        } else {
            signal::Entity::find()
                .filter(signal::Column::Kind.is_in(kinds))
                .filter(signal::Column::Ts.gte(start))
                .filter(signal::Column::Ts.lte(now))
                .order_by_asc(signal::Column::Ts)
                .limit(2_000)
                .all(self.db())
                .await?
        };
        let grade = |g: &str| g.parse::<Grade>().unwrap_or(Grade::D);
        let followed: Vec<&signal::Model> = signals
            .iter()
            .filter(|s| {
                subscriptions.iter().any(|sub| {
                    sub.kind == s.kind
                        && sub.symbol.as_deref().is_none_or(|sym| sym == s.symbol)
                        && grade(&s.grade).meets(grade(&sub.min_grade))
                })
            })
            .collect();
        let time = |ts: i64| {
            display::format_time_short(ts, tz)
                .split(' ')
                .nth(1)
                .unwrap_or_default()
                .to_string()
        };
        let mut lines = vec![if ko {
            format!("📰 일일 요약 · {day}")
        } else {
            format!("📰 Daily digest · {day}")
        }];
        if events.is_empty() && followed.is_empty() {
            lines.push(if ko {
                "조용한 하루: 발동한 알림도, 구독한 신호도 없었습니다.".into()
            } else {
                "A quiet day: no alert fired and no signal of your subscriptions.".into()
            });
            return Ok(lines.join("\n"));
        }
        lines.push(if ko {
            format!("\n🔔 오늘 발동한 알림 {}건", events.len())
        } else {
            format!("\n🔔 Alerts fired today: {}", events.len())
        });
        for e in events.iter().take(LINES) {
            let price = e
                .price
                .parse()
                .map(|p| display::format_price(p, &e.venue, &e.symbol))
                .unwrap_or_else(|_| e.price.clone());
            lines.push(format!(
                "• {} {} {} {} @ {price}",
                time(e.ts),
                e.symbol,
                e.condition,
                e.threshold
            ));
        }
        if events.len() > LINES {
            lines.push(format!("  … +{}", events.len() - LINES));
        }
        lines.push(if ko {
            format!("\n📈 구독한 신호 {}건", followed.len())
        } else {
            format!("\n📈 Signals of your subscriptions: {}", followed.len())
        });
        for s in followed.iter().take(LINES) {
            let outcome = s.ret_1.map_or(String::new(), |r| {
                if ko {
                    format!(" · 1봉 후 {:+.2}%", r * 100.0)
                } else {
                    format!(" · 1 bar: {:+.2}%", r * 100.0)
                }
            });
            lines.push(format!(
                "• {} {} {} ({}){outcome}",
                time(s.ts),
                s.symbol,
                s.kind,
                s.grade
            ));
        }
        if followed.len() > LINES {
            lines.push(format!("  … +{}", followed.len() - LINES));
        }
        Ok(lines.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_of_day_and_local_days() {
        assert_eq!(parse_time_of_day("18:00").as_deref(), Some("18:00"));
        assert_eq!(parse_time_of_day("7:05").as_deref(), Some("07:05"));
        assert_eq!(parse_time_of_day("25:00"), None);
        assert_eq!(parse_time_of_day("six"), None);
        // 2026-12-07 10:00 UTC is 19:00 in Seoul, the day began at 15:00 UTC the day before.
        let now = 1_796_637_600_000;
        let (day, time, start) = local(now, display::KOREAN_DEFAULT).expect("a local time");
        assert_eq!((day.as_str(), time.as_str()), ("2026-12-07", "19:00"));
        assert_eq!(start, now - 19 * 3_600_000);
    }
}
