//! Signal subscriptions: one per user, kind and symbol (or all symbols). Subscribing again
//! to the same kind and symbol changes the minimum grade of the existing one.

use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};
use tickwatch_schema::db::entity::subscription;
use tickwatch_schema::db::{now_ms, subscription_from_row};
use tickwatch_schema::rule::Subscription;
use tickwatch_schema::wire::{Control, Grade, SignalKind, validate_symbol};

use super::Services;
use crate::error::{Error, Result};

/// The most subscriptions one user may have.
pub const MAX_SUBSCRIPTIONS_PER_USER: u64 = 200;

/// What a user asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSubscription {
    pub kind: SignalKind,
    /// `None`: every symbol.
    pub symbol: Option<String>,
    pub min_grade: Grade,
}

/// A stored subscription with its creation time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionView {
    pub subscription: Subscription,
    pub created_at: i64,
}

fn to_view(row: &subscription::Model) -> Result<SubscriptionView> {
    Ok(SubscriptionView {
        subscription: subscription_from_row(row)
            .map_err(|e| Error::Data(format!("subscription {}: {e}", row.id)))?,
        created_at: row.created_at,
    })
}

impl Services {
    /// Subscribes the user (or changes the grade of the same kind and symbol). Returns the
    /// subscription and whether it is new.
    pub async fn subscribe(
        &self,
        user_id: i64,
        new: NewSubscription,
    ) -> Result<(SubscriptionView, bool)> {
        if let Some(symbol) = &new.symbol {
            validate_symbol(symbol)?;
        }
        // The lookup, the count and the write under the user's row: two requests at once
        // neither make two of one subscription nor pass the limit together.
        let txn = self.lock_user(user_id).await?;
        let mut query = subscription::Entity::find()
            .filter(subscription::Column::UserId.eq(user_id))
            .filter(subscription::Column::Kind.eq(new.kind.as_str()));
        query = match &new.symbol {
            Some(s) => query.filter(subscription::Column::Symbol.eq(s.as_str())),
            None => query.filter(subscription::Column::Symbol.is_null()),
        };
        if let Some(existing) = query.one(&txn).await? {
            let result = subscription::Entity::update_many()
                .set(subscription::ActiveModel {
                    min_grade: Set(new.min_grade.as_str().to_string()),
                    active: Set(true),
                    version: Set(existing.version + 1),
                    ..Default::default()
                })
                .filter(subscription::Column::Id.eq(existing.id))
                .filter(subscription::Column::Version.eq(existing.version))
                .exec(&txn)
                .await?;
            if result.rows_affected != 1 {
                return Err(Error::Conflict(
                    "the subscription changed meanwhile; try again".into(),
                ));
            }
            txn.commit().await?;
            let view = SubscriptionView {
                subscription: Subscription {
                    id: existing.id,
                    user_id,
                    kind: new.kind,
                    symbol: new.symbol,
                    min_grade: new.min_grade,
                    active: true,
                    version: existing.version + 1,
                },
                created_at: existing.created_at,
            };
            self.announce(&Control::SubscriptionUpserted {
                subscription: view.subscription.clone(),
            })
            .await;
            return Ok((view, false));
        }
        let count = subscription::Entity::find()
            .filter(subscription::Column::UserId.eq(user_id))
            .count(&txn)
            .await?;
        if count >= MAX_SUBSCRIPTIONS_PER_USER {
            return Err(Error::Conflict(format!(
                "you have {count} subscriptions, the most allowed; remove some first"
            )));
        }
        let stored = subscription::ActiveModel {
            user_id: Set(user_id),
            kind: Set(new.kind.as_str().to_string()),
            symbol: Set(new.symbol.clone()),
            min_grade: Set(new.min_grade.as_str().to_string()),
            active: Set(true),
            version: Set(1),
            created_at: Set(now_ms()),
            ..Default::default()
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        let view = to_view(&stored)?;
        self.announce(&Control::SubscriptionUpserted {
            subscription: view.subscription.clone(),
        })
        .await;
        if let Some(symbol) = &view.subscription.symbol {
            self.request_history(None, symbol);
        }
        Ok((view, true))
    }

    /// The user's subscriptions by id.
    pub async fn list_subscriptions(&self, user_id: i64) -> Result<Vec<SubscriptionView>> {
        subscription::Entity::find()
            .filter(subscription::Column::UserId.eq(user_id))
            .order_by_asc(subscription::Column::Id)
            .all(self.db())
            .await?
            .iter()
            .map(to_view)
            .collect()
    }

    async fn owned_subscription(&self, user_id: i64, id: i64) -> Result<subscription::Model> {
        subscription::Entity::find_by_id(id)
            .filter(subscription::Column::UserId.eq(user_id))
            .one(self.db())
            .await?
            .ok_or_else(|| Error::not_found(format!("subscription {id}")))
    }

    /// One of the user's subscriptions.
    pub async fn get_subscription(&self, user_id: i64, id: i64) -> Result<SubscriptionView> {
        to_view(&self.owned_subscription(user_id, id).await?)
    }

    /// Removes one of the user's subscriptions and announces it.
    pub async fn unsubscribe(&self, user_id: i64, id: i64) -> Result<SubscriptionView> {
        for _ in 0..super::rules::UPDATE_ATTEMPTS {
            let row = self.owned_subscription(user_id, id).await?;
            let view = to_view(&row)?;
            // Only the version read (see `delete_rule`).
            let result = subscription::Entity::delete_many()
                .filter(subscription::Column::Id.eq(id))
                .filter(subscription::Column::UserId.eq(user_id))
                .filter(subscription::Column::Version.eq(row.version))
                .exec(self.db())
                .await?;
            if result.rows_affected == 1 {
                self.announce(&Control::SubscriptionDeleted {
                    subscription_id: id,
                    version: row.version + 1,
                })
                .await;
                return Ok(view);
            }
        }
        Err(Error::Conflict(format!(
            "subscription {id} kept changing meanwhile; try again"
        )))
    }

    /// Removes the user's subscriptions of `kind` (any kind: `None`) on `symbol`
    /// (`Some(None)`: the all-symbols one; `None`: any). Returns what was removed.
    pub async fn unsubscribe_matching(
        &self,
        user_id: i64,
        kind: Option<SignalKind>,
        symbol: Option<Option<&str>>,
    ) -> Result<Vec<SubscriptionView>> {
        let mut removed = Vec::new();
        for view in self.list_subscriptions(user_id).await? {
            let s = &view.subscription;
            let kind_matches = kind.is_none_or(|k| k == s.kind);
            let symbol_matches = symbol.is_none_or(|wanted| wanted == s.symbol.as_deref());
            if kind_matches && symbol_matches {
                removed.push(self.unsubscribe(user_id, s.id).await?);
            }
        }
        Ok(removed)
    }
}
