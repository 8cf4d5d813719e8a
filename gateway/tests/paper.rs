//! `/v1/paper/strategies` against real databases: create, read, change, pause, delete —
//! each user sees only their own — and a strategy's positions, trades (paged), equity
//! curve and statistics, from rows the paper role's own store function wrote.

mod common;

use reqwest::Method;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use tickwatch_gateway::{ApiConfig, Services};
use tickwatch_paper::store::{self, Changes};
use tickwatch_paper::{Entry, ExitReason, OpenPosition, Trade};
use tickwatch_schema::wire::Interval;

use common::{Backend, Server, database, user_with_key};

fn d(text: &str) -> Decimal {
    text.parse().expect("decimal")
}

fn body() -> Value {
    json!({"name":"MACD on KRX","kinds":["macd_bullish_cross","golden_cross"],"venues":["krx"],
           "starting_balance":"10000000","currency":"KRW","sizing":{"fixed":"1000000"},
           "take_profit_pct":"8","stop_loss_pct":"4","max_bars":20})
}

fn trade(strategy_id: i64, n: i64, kind: &str, pnl: &str) -> Trade {
    Trade {
        strategy_id,
        venue: "krx".into(),
        symbol: "005930".into(),
        signal_id: format!("sig-{n}"),
        signal_kind: kind.into(),
        interval: Interval::D1,
        signal_ts: 1_700_000_000_000 + n * 86_400_000,
        quantity: d("10"),
        entry_ts: 1_700_000_000_000 + n * 86_400_000,
        entry_price: d("70000"),
        exit_ts: 1_700_000_000_000 + (n + 1) * 86_400_000,
        exit_price: d("71000"),
        exit_reason: ExitReason::TakeProfit,
        fees: d("100"),
        pnl: d(pnl),
        return_pct: d(pnl) / d("7000"),
        bars: 1,
    }
}

async fn paper_api(backend: Backend) {
    let db = database(backend).await;
    let server = Server::start(Services::new(db.conn.clone(), None), ApiConfig::default()).await;
    let (_, key) = user_with_key(&server.services, "trader", false).await;
    let (_, other) = user_with_key(&server.services, "someone", false).await;
    let key = Some(key.as_str());

    let (status, created) = server
        .json(Method::POST, "/v1/paper/strategies", key, Some(body()))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().expect("an id");
    assert_eq!(created["cash"], "10000000");
    assert_eq!(created["sizing"], json!({"mode":"fixed","value":"1000000"}));
    assert_eq!(created["fees"], Value::Null, "the venue's defaults");
    assert!(created["follows_since"].as_i64().expect("since") > 0);
    let path = format!("/v1/paper/strategies/{id}");

    // Mistakes name their field; a bearish kind is refused (long only).
    let mut bad = body();
    bad["kinds"] = json!(["death_cross"]);
    let (status, problem) = server
        .json(Method::POST, "/v1/paper/strategies", key, Some(bad))
        .await;
    assert_eq!(status, 422);
    assert!(
        problem["field"]
            .as_str()
            .expect("field")
            .starts_with("kinds"),
        "{problem}"
    );
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("long only")
    );

    // Owner-only: another user's strategy does not exist for them.
    for p in [
        path.clone(),
        format!("{path}/positions"),
        format!("{path}/trades"),
        format!("{path}/equity"),
        format!("{path}/summary"),
    ] {
        let (status, _) = server.json(Method::GET, &p, Some(&other), None).await;
        assert_eq!(status, 404, "{p}");
    }
    let (status, _) = server.json(Method::DELETE, &path, Some(&other), None).await;
    assert_eq!(status, 404);
    let (_, theirs) = server
        .json(Method::GET, "/v1/paper/strategies", Some(&other), None)
        .await;
    assert_eq!(theirs["items"], json!([]));

    // A change of the exits; `null` removes one; pausing.
    let (status, changed) = server
        .json(
            Method::PATCH,
            &path,
            key,
            Some(json!({"take_profit_pct":null,"trailing_stop_pct":"6","active":false})),
        )
        .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["take_profit_pct"], Value::Null);
    assert_eq!(changed["trailing_stop_pct"], "6");
    assert_eq!(changed["active"], false);
    let (status, problem) = server
        .json(
            Method::PATCH,
            &path,
            key,
            Some(json!({"starting_balance":"1"})),
        )
        .await;
    assert_eq!(
        (status, problem["field"].as_str()),
        (422, Some("starting_balance"))
    );

    // What the paper role stores: two trades of two kinds, an open position, the equity.
    let open = Entry {
        venue: "krx".into(),
        symbol: "247540".into(),
        signal_id: "sig-open".into(),
        kind: "golden_cross".into(),
        interval: Interval::D1,
        signal_ts: 1_700_900_000_000,
        open: Some(OpenPosition {
            quantity: d("5"),
            entry_ts: 1_700_900_000_000,
            entry_price: d("200000"),
            entry_fee: d("150"),
            highest: d("210000"),
            bars: 2,
            exit_next_open: None,
            mark: d("205000"),
        }),
    };
    let changes = Changes {
        held: vec![(id, open)],
        closed: vec![
            trade(id, 1, "macd_bullish_cross", "9800"),
            trade(id, 2, "golden_cross", "-5200"),
            trade(id, 3, "macd_bullish_cross", "4000"),
        ],
        accounts: vec![(id, d("8007600"), d("9032600"), "2023-11-24".into())],
        ..Changes::default()
    };
    store::write(&db.conn, &changes)
        .await
        .expect("stored as the role does");

    let (_, positions) = server
        .json(Method::GET, &format!("{path}/positions"), key, None)
        .await;
    let items = positions["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{positions}");
    assert_eq!(items[0]["status"], "open");
    assert_eq!(items[0]["mark_price"], "205000");
    // 5 × (205000 − 200000) − 150 commission.
    assert_eq!(items[0]["unrealized_pnl"], "24850");

    // Trades, newest first, two per page.
    let (_, first) = server
        .json(Method::GET, &format!("{path}/trades?limit=2"), key, None)
        .await;
    let page: Vec<&str> = first["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|t| t["signal_id"].as_str().expect("id"))
        .collect();
    assert_eq!(page, ["sig-3", "sig-2"]);
    let cursor = first["next_cursor"].as_str().expect("a next page");
    let (_, second) = server
        .json(
            Method::GET,
            &format!("{path}/trades?limit=2&cursor={cursor}"),
            key,
            None,
        )
        .await;
    assert_eq!(second["items"][0]["signal_id"], "sig-1");
    assert_eq!(second["items"][0]["exit_reason"], "take_profit");
    assert_eq!(second["next_cursor"], Value::Null);

    let (_, equity) = server
        .json(Method::GET, &format!("{path}/equity"), key, None)
        .await;
    assert_eq!(
        equity,
        json!({"starting_balance":"10000000","items":[{"day":"2023-11-24","equity":"9032600","cash":"8007600"}]})
    );

    let (_, summary) = server
        .json(Method::GET, &format!("{path}/summary"), key, None)
        .await;
    assert_eq!(summary["open_positions"], 1);
    assert_eq!(summary["cash"], "8007600");
    // Cash plus 5 × 205000.
    assert_eq!(summary["equity"], "9032600");
    assert_eq!(summary["overall"]["trades"], 3);
    assert_eq!(summary["overall"]["wins"], 2);
    assert_eq!(summary["overall"]["net_profit"], "8600");
    // 13800 won over 5200 lost.
    assert_eq!(summary["overall"]["profit_factor"], "2.6538");
    let kinds: Vec<(&str, i64)> = summary["by_kind"]
        .as_array()
        .expect("kinds")
        .iter()
        .map(|k| {
            (
                k["kind"].as_str().expect("kind"),
                k["stats"]["trades"].as_i64().expect("n"),
            )
        })
        .collect();
    assert_eq!(kinds, [("golden_cross", 1), ("macd_bullish_cross", 2)]);

    // Deleting takes its trades along.
    let (status, _) = server.json(Method::DELETE, &path, key, None).await;
    assert_eq!(status, 204);
    let (status, _) = server
        .json(Method::GET, &format!("{path}/trades"), key, None)
        .await;
    assert_eq!(status, 404);
    server.stop().await;
    db.close().await.expect("cleanup");
}

#[tokio::test]
async fn paper_strategies_through_the_api_sqlite() {
    paper_api(Backend::Sqlite).await;
}

#[tokio::test]
async fn paper_strategies_through_the_api_postgres() {
    paper_api(Backend::Postgres).await;
}
