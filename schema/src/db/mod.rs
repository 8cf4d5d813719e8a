//! The database: sea-orm entities, migrations, and the conversions between stored rows and
//! the shared models. SQLite (the default, a file) and PostgreSQL both work; every value
//! that must stay exact (prices, thresholds) is stored as text.

pub mod entity;
pub mod migration;

use std::time::Duration;

use rust_decimal::Decimal;
use sea_orm::{ConnectOptions, Database, DatabaseConnection};
use sea_orm_migration::MigratorTrait;

use crate::error::{Error, Result};
use crate::rule::{AlertRule, Condition, RuleSpec, Subscription, Trigger};
use crate::wire::{Grade, Interval, SignalKind};

pub use migration::Migrator;
pub use sea_orm;

/// `settings` key: `"true"` while an admin holds every notification in the queue.
pub const SETTING_NOTIFICATIONS_HALTED: &str = "notifications_halted";

/// `users.prefs` key: `"off"` stops the charts sent with notifications (on otherwise).
pub const PREF_CHARTS: &str = "charts";

/// Whether a user's `prefs` JSON has charts on (anything but `"charts": "off"`).
pub fn charts_on(prefs: &str) -> bool {
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(prefs)
        .ok()
        .and_then(|map| {
            map.get(PREF_CHARTS)
                .and_then(|v| v.as_str())
                .map(|v| v != "off")
        })
        .unwrap_or(true)
}

/// Rows per multi-row `INSERT`: on PostgreSQL through sqlx a statement's cost grows faster
/// than its parameters (256 candle rows took 47 ms in one statement, 5 ms as four of 64),
/// so bulk writes go in statements of this many rows.
pub const ROWS_PER_STATEMENT: usize = 64;

/// The default database: a SQLite file in the working directory, created on first use.
pub const DEFAULT_URL: &str = "sqlite://tickwatch.db?mode=rwc";

/// Connections a pool opens at most, unless configured otherwise.
pub const DEFAULT_POOL_SIZE: u32 = 16;

/// Opens a pool of at most [`DEFAULT_POOL_SIZE`] connections on `url` (`sqlite://…` or
/// `postgres://…`).
pub async fn connect(url: &str) -> Result<DatabaseConnection> {
    connect_pool(url, DEFAULT_POOL_SIZE).await
}

/// Opens a pool of at most `pool_size` connections on `url`.
pub async fn connect_pool(url: &str, pool_size: u32) -> Result<DatabaseConnection> {
    let mut options = ConnectOptions::new(url.to_string());
    options
        .max_connections(pool_size)
        .connect_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        // WAL lets readers (the API) run beside the writers (consumers) in one process.
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_secs(10))
        });
    // TLS to a server on this machine protects nothing and costs every query its
    // encryption (a tenth of the pipeline's CPU in a profile): on a loopback address or a
    // Unix socket the connection is plain, unless `sslmode` (URL — sqlx also reads
    // `ssl-mode` — or `PGSSLMODE`) says.
    let ssl_mode_given = names_ssl_mode(url) || std::env::var_os("PGSSLMODE").is_some();
    if !ssl_mode_given {
        options.map_sqlx_postgres_opts(|o| {
            if o.get_socket().is_some() || is_local_host(o.get_host()) {
                o.ssl_mode(sea_orm::sqlx::postgres::PgSslMode::Disable)
            } else {
                o
            }
        });
    }
    Ok(Database::connect(options).await?)
}

/// Whether a database URL sets the TLS mode (`sslmode`, or sqlx's `ssl-mode`).
fn names_ssl_mode(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    lower.contains("sslmode=") || lower.contains("ssl-mode=")
}

/// Whether `host` is this machine: `localhost`, a loopback address, or a socket directory.
fn is_local_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.starts_with('/')
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Applies every pending migration.
pub async fn migrate_up(db: &DatabaseConnection) -> Result<()> {
    Ok(Migrator::up(db, None).await?)
}

/// Rolls back the last `steps` applied migrations.
pub async fn migrate_down(db: &DatabaseConnection, steps: u32) -> Result<()> {
    Ok(Migrator::down(db, Some(steps)).await?)
}

/// Each known migration and whether it is applied.
pub async fn migration_status(db: &DatabaseConnection) -> Result<Vec<(String, bool)>> {
    let migrations = Migrator::get_migration_with_status(db).await?;
    Ok(migrations
        .iter()
        .map(|m| {
            (
                m.name().to_string(),
                m.status() == sea_orm_migration::MigrationStatus::Applied,
            )
        })
        .collect())
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn stored_decimal(field: &'static str, text: Option<&str>) -> Result<Option<Decimal>> {
    text.map(|t| {
        t.parse::<Decimal>()
            .map_err(|e| Error::invalid(field, format!("stored value `{t}`: {e}")))
    })
    .transpose()
}

/// A stored rule row as the shared model.
pub fn rule_from_row(row: &entity::alert_rule::Model) -> Result<AlertRule> {
    let spec = RuleSpec {
        venue: row.venue.clone(),
        symbol: row.symbol.clone(),
        condition: row.condition.parse::<Condition>()?,
        threshold: stored_decimal("threshold", row.threshold.as_deref())?,
        low: stored_decimal("low", row.low.as_deref())?,
        high: stored_decimal("high", row.high.as_deref())?,
        pct: stored_decimal("pct", row.pct.as_deref())?,
        window_s: row.window_s.map(|w| w.max(0) as u64),
        trigger: row.trigger.parse::<Trigger>()?,
        interval: row
            .interval
            .as_deref()
            .map(str::parse::<Interval>)
            .transpose()?,
        cooldown_s: row.cooldown_s.max(0) as u64,
        expires_at: row.expires_at,
        hysteresis_pct: stored_decimal("hysteresis_pct", row.hysteresis_pct.as_deref())?,
        template: row.template.clone(),
        expression: row.expression.clone(),
    };
    Ok(AlertRule {
        id: row.id,
        user_id: row.user_id,
        spec,
        active: row.active,
        version: row.version,
        created_at: row.created_at,
        last_fired_at: row.last_fired_at,
    })
}

/// A new rule's row: `spec` for `user_id`, version 1, never fired, created `now`.
pub fn new_rule_row(
    user_id: i64,
    spec: &RuleSpec,
    active: bool,
    now: i64,
) -> entity::alert_rule::ActiveModel {
    use sea_orm::ActiveValue::Set;
    let mut row = entity::alert_rule::ActiveModel {
        user_id: Set(user_id),
        active: Set(active),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        fired_count: Set(0),
        last_fired_at: Set(None),
        ..Default::default()
    };
    rule_spec_columns(spec, &mut row);
    row
}

/// A new active user's row: a plain user (not an admin, not the demo), default
/// preferences, created `now`.
pub fn new_user_row(
    name: String,
    telegram_chat_id: Option<i64>,
    language: &str,
    now: i64,
) -> entity::user::ActiveModel {
    use sea_orm::ActiveValue::Set;
    entity::user::ActiveModel {
        name: Set(name),
        telegram_chat_id: Set(telegram_chat_id),
        language: Set(language.to_string()),
        active: Set(true),
        role: Set("user".into()),
        prefs: Set("{}".into()),
        paused_reason: Set(None),
        demo: Set(false),
        created_at: Set(now),
        ..Default::default()
    }
}

/// The columns of a rule spec, for inserting or updating a row.
pub fn rule_spec_columns(spec: &RuleSpec, row: &mut entity::alert_rule::ActiveModel) {
    use sea_orm::ActiveValue::Set;
    let text = |d: Option<Decimal>| d.map(|d| d.normalize().to_string());
    row.venue = Set(spec.venue.clone());
    row.symbol = Set(spec.symbol.clone());
    row.condition = Set(spec.condition.as_str().to_string());
    row.threshold = Set(text(spec.threshold));
    row.low = Set(text(spec.low));
    row.high = Set(text(spec.high));
    row.pct = Set(text(spec.pct));
    row.window_s = Set(spec.window_s.map(|w| w as i64));
    row.trigger = Set(spec.trigger.as_str().to_string());
    row.interval = Set(spec.interval.map(|i| i.as_str().to_string()));
    row.cooldown_s = Set(spec.cooldown_s as i64);
    row.expires_at = Set(spec.expires_at);
    row.hysteresis_pct = Set(text(spec.hysteresis_pct));
    row.template = Set(spec.template.clone());
    row.expression = Set(spec.expression.clone());
}

/// A stored subscription row as the shared model.
pub fn subscription_from_row(row: &entity::subscription::Model) -> Result<Subscription> {
    Ok(Subscription {
        id: row.id,
        user_id: row.user_id,
        kind: row.kind.parse::<SignalKind>()?,
        symbol: row.symbol.clone(),
        min_grade: row.min_grade.parse::<Grade>()?,
        active: row.active,
        version: row.version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_names_its_tls_mode_in_either_spelling() {
        assert!(names_ssl_mode("postgres://u@localhost/db?sslmode=require"));
        assert!(names_ssl_mode(
            "postgres://u@localhost/db?SSL-MODE=verify-full"
        ));
        assert!(!names_ssl_mode("postgres://u@localhost/db"));
    }

    #[test]
    fn only_this_machine_is_local() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "/var/run/postgresql",
        ] {
            assert!(is_local_host(host), "{host}");
        }
        for host in [
            "db.example.org",
            "10.0.0.5",
            "192.168.1.2",
            "::2",
            "localhost.example.org",
        ] {
            assert!(!is_local_host(host), "{host}");
        }
    }
}
