//! The demo user `tickwatch run` creates on its first start: a few alerts on the shipped
//! BTCUSDT replay (10–12 March 2023, ≈ 19,600 → 22,000) and signal subscriptions, so that
//! within a minute the log shows alerts fired and notifications "sent". It is flagged as
//! demo and removed with `tickwatch user remove --demo`; it is not created again after that.

use anyhow::Context;
use rust_decimal::Decimal;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, EntityTrait};
use tickwatch_gateway::Services;
use tickwatch_gateway::services::subscriptions::NewSubscription;
use tickwatch_gateway::services::users::{Language, NewUser};
use tickwatch_schema::db::entity::setting;
use tickwatch_schema::db::now_ms;
use tickwatch_schema::rule::{Condition, RuleSpec, Trigger};
use tickwatch_schema::wire::{Grade, SignalKind};

use crate::config::Config;

/// `settings` key: the demo user was created once (so removing it is for good).
pub const DEMO_CREATED_KEY: &str = "demo_created";

/// A placeholder chat for the demo user when no admin chat is configured.
const PLACEHOLDER_CHAT: i64 = 1;

fn price(text: &str) -> Decimal {
    text.parse().unwrap_or_default()
}

/// The demo's rules, on the prices of the shipped replay.
fn rules() -> Vec<RuleSpec> {
    let mut rules = vec![
        RuleSpec::price(
            "binance",
            "BTCUSDT",
            Condition::CrossingDown,
            price("20000"),
        ),
        RuleSpec::price("binance", "BTCUSDT", Condition::CrossingUp, price("20400")),
        RuleSpec::price("binance", "BTCUSDT", Condition::CrossingUp, price("21500")),
    ];
    rules[1].trigger = Trigger::EveryTime;
    rules[1].cooldown_s = 3_600;
    let mut drop = RuleSpec::price(
        "binance",
        "BTCUSDT",
        Condition::MovingDownPct,
        Decimal::ZERO,
    );
    drop.threshold = None;
    drop.pct = Some(price("1"));
    drop.window_s = Some(3_600);
    drop.trigger = Trigger::EveryTime;
    drop.cooldown_s = 7_200;
    rules.push(drop);
    rules
}

/// Creates the demo user, its rules and subscriptions, once.
pub async fn ensure(config: &Config, services: &Services) -> anyhow::Result<()> {
    let db = services.db();
    if setting::Entity::find_by_id(DEMO_CREATED_KEY.to_string())
        .one(db)
        .await?
        .is_some()
    {
        return Ok(());
    }
    // With a bot token and an admin chat, the demo talks to the admin; otherwise its
    // notifications go to the log.
    let chat = match (&config.telegram.token, config.telegram.admin_chats.first()) {
        (Some(_), Some(admin)) => *admin,
        _ => PLACEHOLDER_CHAT,
    };
    let user = services
        .create_user(NewUser {
            name: "demo".to_string(),
            telegram_chat_id: Some(chat),
            admin: false,
            language: Language::En,
            demo: true,
        })
        .await
        .context("creating the demo user")?;
    for spec in rules() {
        services
            .create_rule(user.id, spec)
            .await
            .context("creating a demo alert")?;
    }
    // Strong signals only: on minute bars the weaker grades would flood the chat (Telegram
    // allows one message a second per chat).
    for (kind, min_grade) in [
        (SignalKind::GoldenCross, Grade::B),
        (SignalKind::DeathCross, Grade::A),
        (SignalKind::RsiOversold, Grade::B),
    ] {
        services
            .subscribe(
                user.id,
                NewSubscription {
                    kind,
                    symbol: None,
                    min_grade,
                },
            )
            .await
            .context("creating a demo subscription")?;
    }
    setting::Entity::insert(setting::ActiveModel {
        key: Set(DEMO_CREATED_KEY.to_string()),
        value: Set("true".to_string()),
        updated_at: Set(now_ms()),
    })
    .on_conflict(
        OnConflict::column(setting::Column::Key)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    tracing::info!(
        user = user.id,
        chat,
        "demo user created with 4 alerts and 3 signal subscriptions (remove with `tickwatch user remove --demo`)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_rules_are_valid() {
        for rule in super::rules() {
            rule.validate().expect("a demo rule is valid");
        }
    }
}
