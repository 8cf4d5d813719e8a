//! The daily digest through the real broker, on SQLite and PostgreSQL: due at the user's
//! local time, one message a day however many schedulers run at once, with the day's
//! firings, the signals of the user's subscriptions and a chart of the most active symbol.

mod common;

use std::time::Duration;

use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, EntityTrait};
use tickwatch_gateway::Services;
use tickwatch_schema::db::entity::{alert_event, digest, signal, subscription, user};
use tickwatch_schema::db::now_ms;
use tickwatch_schema::names::Exchange;
use tickwatch_schema::wire::Notification;
use tokio_util::sync::CancellationToken;

use common::{Backend, broker_with_topology, database};

async fn digest_once_a_day(backend: Backend) {
    let db = database(backend).await;
    let (broker, topology) = broker_with_topology("digest").await;
    let stop = CancellationToken::new();
    let got: tickwatch_tests::broker::Heard<Notification> =
        tickwatch_tests::broker::listen(&broker, Exchange::Notify, "telegram", &stop).await;

    let services = Services::new(db.conn.clone(), Some(broker.clone()));
    let now = now_ms();
    let owner = user::ActiveModel {
        name: Set("trader".into()),
        telegram_chat_id: Set(Some(5150)),
        language: Set("ko".into()),
        active: Set(true),
        role: Set("user".into()),
        prefs: Set("{}".into()),
        demo: Set(false),
        created_at: Set(0),
        ..Default::default()
    }
    .insert(&db.conn)
    .await
    .expect("user");
    let quiet = user::ActiveModel {
        name: Set("quiet".into()),
        telegram_chat_id: Set(Some(5151)),
        language: Set("en".into()),
        active: Set(true),
        role: Set("user".into()),
        prefs: Set("{}".into()),
        demo: Set(false),
        created_at: Set(0),
        ..Default::default()
    }
    .insert(&db.conn)
    .await
    .expect("user");
    // 00:00: due at any time of the day.
    services
        .set_digest(owner.id, Some("00:00".into()))
        .await
        .expect("on");
    services
        .set_digest(quiet.id, Some("00:00".into()))
        .await
        .expect("on");
    alert_event::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        rule_id: Set(1),
        user_id: Set(owner.id),
        venue: Set("krx".into()),
        symbol: Set("005930".into()),
        condition: Set("crossing_up".into()),
        threshold: Set("75000".into()),
        price: Set("75100".into()),
        ts: Set(now),
        text: Set("005930 crossed".into()),
        published: Set(true),
        created_at: Set(now),
    }
    .insert(&db.conn)
    .await
    .expect("event");
    subscription::ActiveModel {
        user_id: Set(owner.id),
        kind: Set("golden_cross".into()),
        symbol: Set(None),
        min_grade: Set("B".into()),
        active: Set(true),
        version: Set(1),
        created_at: Set(0),
        ..Default::default()
    }
    .insert(&db.conn)
    .await
    .expect("subscription");
    for (id, grade) in [("sig-a", "A"), ("sig-c", "C")] {
        signal::ActiveModel {
            id: Set(id.into()),
            kind: Set("golden_cross".into()),
            venue: Set("krx".into()),
            symbol: Set("000660".into()),
            interval: Set("1d".into()),
            ts: Set(now),
            price: Set("180000".into()),
            score: Set(80),
            grade: Set(grade.into()),
            details: Set("{}".into()),
            ret_1: Set(Some(0.0123)),
            ret_5: Set(None),
            ret_20: Set(None),
            created_at: Set(now),
        }
        .insert(&db.conn)
        .await
        .expect("signal");
    }

    // Two schedulers at the same moment (two bots): one digest per user.
    let other = Services::new(db.conn.clone(), Some(broker.clone()));
    let (a, b) = tokio::join!(services.send_due_digests(now), other.send_due_digests(now));
    let published = a.expect("step") + b.expect("step");
    assert!(published >= 2, "{published}");
    assert_eq!(
        services.send_due_digests(now + 60_000).await.expect("step"),
        0
    );
    assert!(tickwatch_tests::wait_until(Duration::from_secs(10), async || got.len() >= 2).await);
    let notes = got.all();
    let mut keys: Vec<&str> = notes.iter().map(|n| n.dedupe_key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(keys.len(), 2, "one digest a user: {keys:?}");
    let rows = digest::Entity::find().all(&db.conn).await.expect("rows");
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.published));

    let mine = notes
        .iter()
        .find(|n| n.chat_id == 5150)
        .expect("the trader's");
    assert!(mine.text.starts_with("📰 일일 요약"), "{}", mine.text);
    assert!(
        mine.text.contains("발동한 알림 1건") && mine.text.contains("005930"),
        "{}",
        mine.text
    );
    // The B-or-better subscription: the A signal, with its outcome; not the C one.
    assert!(
        mine.text.contains("구독한 신호 1건") && mine.text.contains("+1.23%"),
        "{}",
        mine.text
    );
    assert_eq!(
        mine.chart.as_ref().map(|c| c.symbol.as_str()),
        Some("005930")
    );
    let theirs = notes
        .iter()
        .find(|n| n.chat_id == 5151)
        .expect("the quiet one's");
    assert!(theirs.text.contains("A quiet day"), "{}", theirs.text);
    assert!(theirs.chart.is_none());

    stop.cancel();
    services.close().await;
    let _ = topology.delete(&broker).await;
    broker.close();
    db.close().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_digest_goes_once_a_day_sqlite() {
    digest_once_a_day(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_digest_goes_once_a_day_postgres() {
    digest_once_a_day(Backend::Postgres).await;
}
