//! The schema's migrations and basic queries on both databases tickwatch supports: SQLite
//! (the default) and PostgreSQL (the local server, a fresh database per test).

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection,
    EntityTrait, QueryFilter,
};
use tickwatch_schema::db::{self, entity};
use tickwatch_schema::rule::{Condition, RuleSpec};
use tickwatch_tests::db::TestDb;

async fn exercise(conn: &DatabaseConnection) {
    // Every migration is applied (TestDb migrated up).
    let status = db::migration_status(conn).await.expect("status");
    assert!(status.iter().all(|(_, applied)| *applied), "{status:?}");

    // The seeded symbols are searchable by their Korean name.
    let samsung = entity::symbol::Entity::find()
        .filter(entity::symbol::Column::Aliases.contains("삼성전자"))
        .one(conn)
        .await
        .expect("query")
        .expect("seeded");
    assert_eq!(
        (samsung.venue.as_str(), samsung.symbol.as_str()),
        ("krx", "005930")
    );

    // A user with a rule: the rule round-trips through its row exactly.
    let now = db::now_ms();
    let user = entity::user::ActiveModel {
        name: Set("alice".into()),
        telegram_chat_id: Set(Some(1001)),
        language: Set("ko".into()),
        active: Set(true),
        role: Set("user".into()),
        prefs: Set("{}".into()),
        demo: Set(false),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(conn)
    .await
    .expect("user");
    let spec = RuleSpec::price(
        "binance",
        "BTCUSDT",
        Condition::CrossingUp,
        "65000.50".parse().expect("decimal"),
    );
    let mut row = entity::alert_rule::ActiveModel {
        user_id: Set(user.id),
        active: Set(true),
        version: Set(1),
        created_at: Set(now),
        updated_at: Set(now),
        fired_count: Set(0),
        ..Default::default()
    };
    db::rule_spec_columns(&spec, &mut row);
    let stored = row.insert(conn).await.expect("rule");
    let rule = db::rule_from_row(&stored).expect("converts");
    assert_eq!(rule.spec, spec);
    assert_eq!(rule.user_id, user.id);

    // Candles are unique on venue + symbol + interval + open time.
    let candle = |close: &str| entity::candle::ActiveModel {
        venue: Set("binance".into()),
        symbol: Set("BTCUSDT".into()),
        interval: Set("1m".into()),
        open_ts: Set(1_763_762_400_000),
        open: Set("1".into()),
        high: Set("2".into()),
        low: Set("1".into()),
        close: Set(close.into()),
        volume: Set("3".into()),
        trades: Set(None),
        ..Default::default()
    };
    candle("1.5").insert(conn).await.expect("first candle");
    assert!(
        candle("1.6").insert(conn).await.is_err(),
        "a second row for the same bar is refused"
    );

    // Notifications are unique on their dedupe key.
    let notification = |id: &str| entity::notification::ActiveModel {
        id: Set(id.into()),
        dedupe_key: Set("alert:x".into()),
        chat_id: Set(1001),
        kind: Set("alert".into()),
        text: Set("hi".into()),
        status: Set("pending".into()),
        attempts: Set(0),
        last_error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        sent_at: Set(None),
    };
    notification("a").insert(conn).await.expect("first");
    assert!(
        notification("b").insert(conn).await.is_err(),
        "the dedupe key is unique"
    );

    // Deleting the user deletes their rules (foreign key cascade).
    entity::user::Entity::delete_by_id(user.id)
        .exec(conn)
        .await
        .expect("delete");
    let left = entity::alert_rule::Entity::find()
        .all(conn)
        .await
        .expect("rules");
    assert!(left.is_empty(), "rules of a removed user go with them");
}

#[tokio::test]
async fn migrations_and_queries_work_on_sqlite() {
    let test_db = TestDb::sqlite().await.expect("sqlite");
    exercise(&test_db.conn).await;
    test_db.close().await.expect("close");
}

#[tokio::test]
async fn migrations_and_queries_work_on_postgres() {
    let test_db = TestDb::postgres()
        .await
        .expect("PostgreSQL at 127.0.0.1:5432");
    exercise(&test_db.conn).await;
    test_db.close().await.expect("close");
}

#[tokio::test]
async fn migrating_down_and_up_again_works_on_both() {
    for test_db in [
        TestDb::sqlite().await.expect("sqlite"),
        TestDb::postgres().await.expect("pg"),
    ] {
        let applied = db::migration_status(&test_db.conn)
            .await
            .expect("status")
            .len() as u32;
        db::migrate_down(&test_db.conn, applied)
            .await
            .expect("down");
        assert!(
            db::migration_status(&test_db.conn)
                .await
                .expect("status")
                .iter()
                .all(|(_, a)| !a)
        );
        db::migrate_up(&test_db.conn).await.expect("up again");
        exercise(&test_db.conn).await;
        test_db.close().await.expect("close");
    }
}

/// The recorder's latest price never goes back in time: an older price arriving late (a
/// redelivery) leaves the newer one in place, on both backends.
#[tokio::test]
async fn the_latest_price_never_goes_back_in_time() {
    use tickwatch_schema::db::entity::latest_price;
    for test_db in [
        TestDb::sqlite().await.expect("sqlite"),
        TestDb::postgres().await.expect("postgres"),
    ] {
        let price = |p: &str, ts: i64| {
            vec![(
                "binance".to_string(),
                "BTCUSDT".to_string(),
                p.parse::<rust_decimal::Decimal>().expect("price"),
                ts,
            )]
        };
        let store = |rows: Vec<(String, String, rust_decimal::Decimal, i64)>| {
            let conn = test_db.conn.clone();
            async move {
                tickwatch_recorder::store::upsert_latest_prices(&conn, &rows)
                    .await
                    .expect("upsert")
            }
        };
        store(price("100", 1_000)).await;
        store(price("110", 2_000)).await;
        store(price("105", 1_500)).await; // late
        let row = latest_price::Entity::find()
            .one(&test_db.conn)
            .await
            .expect("read")
            .expect("stored");
        assert_eq!((row.price.as_str(), row.ts), ("110", 2_000));
        store(price("120", 2_000)).await; // the same time: the later write wins
        let row = latest_price::Entity::find()
            .one(&test_db.conn)
            .await
            .expect("read")
            .expect("stored");
        assert_eq!(row.price, "120");
        test_db.close().await.expect("close");
    }
}

/// The column `ssl` of the one row `sql` gives.
async fn ssl_column<T: sea_orm::TryGetable>(conn: &DatabaseConnection, sql: &str) -> T {
    conn.query_one_raw(sea_orm::Statement::from_string(
        conn.get_database_backend(),
        sql,
    ))
    .await
    .expect("query")
    .expect("a row")
    .try_get::<T>("", "ssl")
    .expect("ssl")
}

/// Whether this connection to PostgreSQL is encrypted (`pg_stat_ssl`).
async fn encrypted(conn: &DatabaseConnection) -> bool {
    ssl_column(
        conn,
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .await
}

#[tokio::test]
async fn a_server_on_this_machine_is_reached_without_tls_unless_the_url_asks() {
    let url = std::env::var("TICKWATCH_TEST_PG_URL")
        .unwrap_or_else(|_| tickwatch_tests::db::DEFAULT_PG_ADMIN_URL.to_string());
    let plain = db::connect(&url).await.expect("connect");
    assert!(!encrypted(&plain).await, "{url}: TLS on loopback");
    let server_has_tls = ssl_column::<String>(&plain, "SHOW ssl").await == "on";
    plain.close().await.expect("close");
    if !server_has_tls {
        eprintln!("the local PostgreSQL has ssl off: the sslmode=require half is skipped");
        return;
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    let asked = db::connect(&format!("{url}{separator}sslmode=require"))
        .await
        .expect("connect with TLS");
    assert!(encrypted(&asked).await, "sslmode=require is honoured");
    asked.close().await.expect("close");
}
