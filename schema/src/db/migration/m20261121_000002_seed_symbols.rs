//! The instruments tickwatch knows out of the box, with the names users search by.
use sea_orm_migration::prelude::*;

#[derive(Debug, DeriveMigrationName)]
pub struct Migration;

/// venue, symbol, name, aliases, market
pub const SEED: &[(&str, &str, &str, &str, &str)] = &[
    (
        "binance",
        "BTCUSDT",
        "Bitcoin / Tether",
        "btc|bitcoin|비트코인|btcusdt",
        "crypto",
    ),
    (
        "binance",
        "ETHUSDT",
        "Ethereum / Tether",
        "eth|ethereum|이더리움|ethusdt",
        "crypto",
    ),
    (
        "binance",
        "SOLUSDT",
        "Solana / Tether",
        "sol|solana|솔라나|solusdt",
        "crypto",
    ),
    (
        "binance",
        "XRPUSDT",
        "XRP / Tether",
        "xrp|ripple|리플|xrpusdt",
        "crypto",
    ),
    (
        "upbit",
        "KRW-BTC",
        "비트코인 (KRW)",
        "btc|bitcoin|비트코인|krw-btc",
        "crypto",
    ),
    (
        "upbit",
        "KRW-ETH",
        "이더리움 (KRW)",
        "eth|ethereum|이더리움|krw-eth",
        "crypto",
    ),
    (
        "krx",
        "005930",
        "삼성전자",
        "삼성전자|삼성|samsung|samsung electronics|005930",
        "krx",
    ),
    (
        "krx",
        "000660",
        "SK하이닉스",
        "sk하이닉스|하이닉스|sk hynix|hynix|000660",
        "krx",
    ),
    (
        "krx",
        "247540",
        "에코프로비엠",
        "에코프로비엠|에코프로|ecopro bm|ecopro|247540",
        "krx",
    ),
    ("krx", "035420", "NAVER", "네이버|naver|035420", "krx"),
    ("nasdaq", "AAPL", "Apple Inc.", "apple|애플|aapl", "us"),
    (
        "nyse",
        "SPY",
        "SPDR S&P 500 ETF",
        "spy|s&p 500|s&p500|sp500",
        "us",
    ),
    (
        "nyse",
        "BRK.B",
        "Berkshire Hathaway B",
        "berkshire|버크셔|brk.b|brk-b",
        "us",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let mut insert = Query::insert();
        insert
            .into_table("symbols")
            .columns(["venue", "symbol", "name", "aliases", "market"]);
        for (venue, symbol, name, aliases, market) in SEED {
            insert.values_panic([
                (*venue).into(),
                (*symbol).into(),
                (*name).into(),
                (*aliases).into(),
                (*market).into(),
            ]);
        }
        m.exec_stmt(insert.to_owned()).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (venue, symbol, ..) in SEED {
            let delete = Query::delete()
                .from_table("symbols")
                .and_where(Expr::col("venue").eq(*venue))
                .and_where(Expr::col("symbol").eq(*symbol))
                .to_owned();
            m.exec_stmt(delete).await?;
        }
        Ok(())
    }
}
