//! The symbol universe against real databases: a venue's list imported (Upbit's shape, KIS's
//! master files), found by Korean and English names, imported again without change, a
//! delisted symbol kept but marked and warned about, and one that comes back.

mod common;

use common::{Backend, database};
use tickwatch_gateway::Services;
use tickwatch_gateway::services::market::SymbolWarning;
use tickwatch_gateway::services::universe::{self, KOSDAQ_TAIL, KOSPI_TAIL};

fn upbit_list(with_doge: bool) -> String {
    let mut markets = vec![
        r#"{"market":"KRW-BTC","korean_name":"비트코인","english_name":"Bitcoin","market_warning":"NONE"}"#,
        r#"{"market":"KRW-XRP","korean_name":"리플","english_name":"XRP","market_warning":"NONE"}"#,
        r#"{"market":"BTC-ETH","korean_name":"이더리움","english_name":"Ethereum","market_warning":"NONE"}"#,
    ];
    if with_doge {
        markets.push(
            r#"{"market":"KRW-DOGE","korean_name":"도지코인","english_name":"Dogecoin","market_warning":"CAUTION"}"#,
        );
    }
    format!("[{}]", markets.join(","))
}

async fn import_upbit(services: &Services, with_doge: bool) -> universe::ImportReport {
    let listed = universe::parse_upbit_markets(&upbit_list(with_doge)).expect("parsed");
    services
        .import_symbols("upbit", listed)
        .await
        .expect("imported")
}

async fn upbit_symbols_in_a_fresh_database(backend: Backend) {
    let db = database(backend).await;
    let services = Services::new(db.conn.clone(), None);
    let stored_before = services.all_symbols().await.expect("symbols");
    let upbit_before = stored_before.iter().filter(|s| s.venue == "upbit").count();

    let first = import_upbit(&services, true).await;
    assert_eq!(first.listed, 4);
    assert_eq!(
        first.added + first.updated + first.unchanged,
        4,
        "{first:?}"
    );
    // The seed's Upbit symbols that the list does not hold are delisted by it.
    let kept = 4 - first.added;
    assert_eq!(first.deactivated, upbit_before - kept, "{first:?}");

    // Found by the Korean name, the English name, the coin ("리플" is Binance's XRPUSDT too).
    for (query, symbol) in [
        ("리플", "KRW-XRP"),
        ("dogecoin", "KRW-DOGE"),
        ("도지", "KRW-DOGE"),
    ] {
        let found = services.search_symbols(query, 5).await.expect("search");
        assert!(
            found.iter().any(|s| s.symbol == symbol),
            "{query}: {found:?}"
        );
    }
    let doge = services.resolve_symbol("도지코인").await.expect("resolve");
    assert!(
        matches!(&doge, tickwatch_gateway::services::market::Resolution::Found(s) if s.symbol == "KRW-DOGE" && s.name == "도지코인 (KRW)"),
        "{doge:?}"
    );

    // The same list again changes nothing.
    let again = import_upbit(&services, true).await;
    assert_eq!(
        (again.added, again.updated, again.deactivated),
        (0, 0, 0),
        "{again:?}"
    );
    assert_eq!(again.unchanged, 4);

    // Dogecoin leaves the list: kept, marked, still found, and warned about.
    let delisted = import_upbit(&services, false).await;
    assert_eq!(delisted.deactivated, 1, "{delisted:?}");
    let doge = services.search_symbols("도지", 5).await.expect("search");
    assert_eq!(doge.len(), 1);
    assert!(!doge[0].active, "marked inactive: {doge:?}");
    let warnings = services.symbol_warnings("upbit", "KRW-DOGE").await;
    assert_eq!(warnings, [SymbolWarning::Delisted, SymbolWarning::NoData]);

    // …and comes back.
    let back = import_upbit(&services, true).await;
    assert_eq!((back.updated, back.deactivated), (1, 0), "{back:?}");
    let doge = services.search_symbols("도지", 5).await.expect("search");
    assert!(doge[0].active);
    db.close().await.expect("close");
}

#[tokio::test]
async fn upbit_symbols_sqlite() {
    upbit_symbols_in_a_fresh_database(Backend::Sqlite).await;
}

#[tokio::test]
async fn upbit_symbols_postgres() {
    upbit_symbols_in_a_fresh_database(Backend::Postgres).await;
}

/// KIS's two master files in one import: every KRX symbol found by its Korean name, the
/// seed's hand-made aliases kept.
#[tokio::test]
async fn krx_master_files() {
    let db = database(Backend::Sqlite).await;
    let services = Services::new(db.conn.clone(), None);
    let read = |name: &str| {
        std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name),
        )
        .expect("fixture")
    };
    let mut listed =
        universe::parse_krx_master(&read("kospi_code.mst"), KOSPI_TAIL).expect("kospi");
    listed
        .extend(universe::parse_krx_master(&read("kosdaq_code.mst"), KOSDAQ_TAIL).expect("kosdaq"));
    let report = services
        .import_symbols("krx", listed)
        .await
        .expect("import");
    assert_eq!(report.listed, 5);
    for (query, symbol) in [
        ("에코프로", "247540"),
        ("스팩", "0004Y0"),
        ("신라섬유", "001000"),
        // The seed's alias of 삼성전자 survives the import.
        ("samsung", "005930"),
    ] {
        let found = services.search_symbols(query, 5).await.expect("search");
        assert_eq!(
            found.first().map(|s| s.symbol.as_str()),
            Some(symbol),
            "{query}: {found:?}"
        );
    }
    db.close().await.expect("close");
}

/// The same through the admin API, in tickwatch's own shape: admins only, a bad entry is a
/// 422 naming its field, and the imported names are searchable at once.
#[tokio::test]
async fn the_admin_api_imports_a_list() {
    use reqwest::Method;
    use serde_json::json;

    let db = database(Backend::Sqlite).await;
    let server = common::Server::start(
        Services::new(db.conn.clone(), None),
        tickwatch_gateway::ApiConfig::default(),
    )
    .await;
    let (_, admin) = common::user_with_key(&server.services, "root", true).await;
    let (_, user) = common::user_with_key(&server.services, "minji", false).await;
    let body = json!({"venue": "upbit", "symbols": [
        {"symbol": "KRW-BTC", "name": "비트코인 (KRW)", "aliases": ["비트코인", "bitcoin", "btc"]},
        {"symbol": "KRW-DOGE", "name": "도지코인 (KRW)", "aliases": ["도지코인", "dogecoin", "doge"], "market": "crypto"},
    ]});
    let import = async |key: &str, body: serde_json::Value| {
        server
            .json(
                Method::POST,
                "/v1/admin/symbols/import",
                Some(key),
                Some(body),
            )
            .await
    };

    let (status, _) = import(&user, body.clone()).await;
    assert_eq!(status, 403);
    let (status, report) = import(&admin, body.clone()).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["venue"], "upbit");
    assert_eq!(report["listed"], 2);
    let (_, again) = import(&admin, body).await;
    assert_eq!(
        (again["added"].as_u64(), again["updated"].as_u64()),
        (Some(0), Some(0)),
        "{again}"
    );

    let (status, problem) = import(
        &admin,
        json!({"venue": "upbit", "symbols": [{"symbol": "krw-doge", "name": "x"}]}),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert!(problem.to_string().contains("symbol"), "{problem}");

    let (_, found) = server
        .json(
            Method::GET,
            "/v1/symbols?query=%EB%8F%84%EC%A7%80",
            Some(&user),
            None,
        )
        .await;
    assert_eq!(found["items"][0]["symbol"], "KRW-DOGE", "도지: {found}");
    assert_eq!(found["items"][0]["active"], true);
    server.stop().await;
    db.close().await.expect("close");
}
