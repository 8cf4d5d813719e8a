//! The paper role's rows on SQLite and PostgreSQL: an entry is one row that moves from
//! pending to open to closed (or skipped) and never back, whatever order later writes
//! come in; what is stored reads back as the engine's account.

use rust_decimal::Decimal;
use sea_orm::ActiveValue::Set;
use sea_orm::{ActiveModelTrait, EntityTrait};
use tickwatch_paper::store::{self, Changes, status};
use tickwatch_paper::{Entry, ExitReason, OpenPosition, Trade};
use tickwatch_schema::db::entity::{paper_position, paper_strategy, user};
use tickwatch_schema::wire::Interval;
use tickwatch_tests::db::TestDb;

fn d(text: &str) -> Decimal {
    text.parse().expect("decimal")
}

fn entry(open: Option<OpenPosition>) -> Entry {
    Entry {
        venue: "krx".into(),
        symbol: "005930".into(),
        signal_id: "sig-1".into(),
        kind: "golden_cross".into(),
        interval: Interval::D1,
        signal_ts: 1_700_000_000_000,
        open,
    }
}

fn open() -> OpenPosition {
    OpenPosition {
        quantity: d("10"),
        entry_ts: 1_700_000_000_000,
        entry_price: d("70000"),
        entry_fee: d("105"),
        highest: d("71500"),
        bars: 3,
        exit_next_open: Some(ExitReason::OppositeSignal),
        mark: d("71000"),
    }
}

async fn rows_move_forward_only(db: TestDb) {
    let conn = &db.conn;
    let owner = user::ActiveModel {
        name: Set("u".into()),
        language: Set("en".into()),
        active: Set(true),
        role: Set("user".into()),
        prefs: Set("{}".into()),
        demo: Set(false),
        created_at: Set(0),
        ..Default::default()
    }
    .insert(conn)
    .await
    .expect("user");
    let strategy = paper_strategy::ActiveModel {
        user_id: Set(owner.id),
        name: Set("s".into()),
        spec: Set(r#"{"id":1,"name":"s","kinds":["golden_cross"],"starting_balance":"1000000","currency":"KRW","sizing":{"fixed":"700000"}}"#.into()),
        starting_balance: Set("1000000".into()),
        currency: Set("KRW".into()),
        cash: Set("1000000".into()),
        active: Set(true),
        follow_since: Set(0),
        version: Set(1),
        created_at: Set(0),
        updated_at: Set(0),
        ..Default::default()
    }
    .insert(conn)
    .await
    .expect("strategy");
    let id = strategy.id;
    let only_row = || async {
        let rows = paper_position::Entity::find()
            .all(conn)
            .await
            .expect("rows");
        assert_eq!(rows.len(), 1, "one row per strategy and signal");
        rows.into_iter().next().expect("a row")
    };

    // Pending, then skipped by a later batch (too little cash at the open).
    store::write(
        conn,
        &Changes {
            held: vec![(id, entry(None))],
            ..Changes::default()
        },
    )
    .await
    .expect("pending");
    assert_eq!(only_row().await.status, status::PENDING);
    store::write(
        conn,
        &Changes {
            skipped: vec![(id, entry(None), "too little cash for one unit".into())],
            ..Changes::default()
        },
    )
    .await
    .expect("skipped");
    let row = only_row().await;
    assert_eq!(
        (row.status.as_str(), row.note.as_deref()),
        (status::SKIPPED, Some("too little cash for one unit"))
    );
    // A late write of the same entry as held does not bring it back.
    store::write(
        conn,
        &Changes {
            held: vec![(id, entry(Some(open())))],
            ..Changes::default()
        },
    )
    .await
    .expect("late");
    assert_eq!(only_row().await.status, status::SKIPPED);
    // Nothing held comes back from it.
    let (_, account) = store::load_strategies(conn).await.expect("load").remove(0);
    assert!(account.entries.is_empty(), "{account:?}");

    // Another signal: open, every field read back as written; then closed, for good.
    paper_position::Entity::delete_many()
        .exec(conn)
        .await
        .expect("clear");
    store::write(
        conn,
        &Changes {
            held: vec![(id, entry(Some(open())))],
            ..Changes::default()
        },
    )
    .await
    .expect("open");
    let (_, account) = store::load_strategies(conn).await.expect("load").remove(0);
    assert_eq!(account.entries, vec![entry(Some(open()))]);
    let trade = Trade {
        strategy_id: id,
        venue: "krx".into(),
        symbol: "005930".into(),
        signal_id: "sig-1".into(),
        signal_kind: "golden_cross".into(),
        interval: Interval::D1,
        signal_ts: 1_700_000_000_000,
        quantity: d("10"),
        entry_ts: 1_700_000_000_000,
        entry_price: d("70000"),
        exit_ts: 1_700_300_000_000,
        exit_price: d("72000"),
        exit_reason: ExitReason::OppositeSignal,
        fees: d("235"),
        pnl: d("19765"),
        return_pct: d("2.82"),
        bars: 4,
    };
    store::write(
        conn,
        &Changes {
            closed: vec![trade.clone()],
            ..Changes::default()
        },
    )
    .await
    .expect("closed");
    store::write(
        conn,
        &Changes {
            held: vec![(id, entry(Some(open())))],
            ..Changes::default()
        },
    )
    .await
    .expect("late");
    let row = only_row().await;
    assert_eq!(row.status, status::CLOSED);
    assert_eq!(
        (&row.highest, &row.mark_price, &row.exit_next_open),
        (&None, &None, &None),
        "what only an open position has is cleared"
    );
    assert_eq!(store::trade_from_row(&row).expect("a trade"), trade);
    db.close().await.expect("cleanup");
}

#[tokio::test]
async fn entry_rows_move_forward_only_on_sqlite() {
    rows_move_forward_only(TestDb::sqlite().await.expect("sqlite")).await;
}

#[tokio::test]
async fn entry_rows_move_forward_only_on_postgres() {
    rows_move_forward_only(TestDb::postgres().await.expect("postgres")).await;
}
