//! Migrations, one per file, applied in order.
use sea_orm_migration::prelude::*;

mod m20261121_000001_initial;
pub mod m20261121_000002_seed_symbols;
mod m20261122_000003_signal_progress;
mod m20261122_000004_alert_prices;
mod m20261207_000005_symbol_universe;
mod m20261207_000006_user_time_zone;
mod m20261207_000007_relay_token;
mod m20261207_000008_rule_snooze_expression;
mod m20261207_000009_paper;
mod m20261207_000010_digest;
mod m20261207_000011_web_sessions;

#[derive(Debug)]
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_initial::Migration),
            Box::new(m20261121_000002_seed_symbols::Migration),
            Box::new(m20261122_000003_signal_progress::Migration),
            Box::new(m20261122_000004_alert_prices::Migration),
            Box::new(m20261207_000005_symbol_universe::Migration),
            Box::new(m20261207_000006_user_time_zone::Migration),
            Box::new(m20261207_000007_relay_token::Migration),
            Box::new(m20261207_000008_rule_snooze_expression::Migration),
            Box::new(m20261207_000009_paper::Migration),
            Box::new(m20261207_000010_digest::Migration),
            Box::new(m20261207_000011_web_sessions::Migration),
        ]
    }
}
