//! The fresh test databases are migrated and isolated.

use sea_orm::{EntityTrait, PaginatorTrait};
use tickwatch_schema::db::entity::notification;
use tickwatch_tests::db::TestDb;

#[tokio::test]
async fn sqlite_database_is_migrated_and_removed() {
    let db = TestDb::sqlite().await.expect("sqlite test database");
    let count = notification::Entity::find()
        .count(&db.conn)
        .await
        .expect("table exists");
    assert_eq!(count, 0);
    assert!(db.url.starts_with("sqlite://"));
    db.close().await.expect("cleanup");
}

#[tokio::test]
async fn postgres_database_is_fresh_and_dropped() {
    let a = TestDb::postgres()
        .await
        .expect("local PostgreSQL at 127.0.0.1 (trust auth)");
    let b = TestDb::postgres().await.expect("a second database");
    assert_ne!(a.url, b.url);
    let count = notification::Entity::find()
        .count(&a.conn)
        .await
        .expect("table exists");
    assert_eq!(count, 0);
    a.close().await.expect("drop database");
    b.close().await.expect("drop database");
}
