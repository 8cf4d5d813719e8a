//! The effective configuration: defaults, then the TOML file, then environment variables.
//!
//! Every key can be set by `TICKWATCH_<SECTION>__<KEY>` (nested keys with more `__`), and
//! the well-known variables of the design are honoured as they are: `AMQP_URL`,
//! `DATABASE_URL`, `TELEGRAM_BOT_TOKEN`, `TELEGRAM_API_URL`, `TICKWATCH_API_ADDR`,
//! `TICKWATCH_ADMIN_CHATS`, `TICKWATCH_BINANCE_WS_URL`, `TICKWATCH_BINANCE_REST_URL`,
//! `TICKWATCH_UPBIT_WS_URL`, `TICKWATCH_UPBIT_REST_URL`. The result is validated at start; an error names the key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Deserializer, Serialize};
use tickwatch_alerts::AlertsConfig;
use tickwatch_broker::BrokerConfig;
use tickwatch_broker::config::mask_url;
use tickwatch_gateway::{ApiConfig, BotConfig};
use tickwatch_notifier::NotifierConfig;
use tickwatch_producers::binance::BinanceConfig;
use tickwatch_producers::csv::CsvConfig;
use tickwatch_producers::history::HistoryConfig;
use tickwatch_producers::kis::KisConfig;
use tickwatch_producers::synthetic::SyntheticConfig;
use tickwatch_producers::upbit::UpbitConfig;
use tickwatch_producers::webhook::WebhookConfig;
use tickwatch_signals::SignalsConfig;

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_FILE: &str = "tickwatch.toml";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub broker: BrokerConfig,
    pub database: DatabaseConfig,
    pub telegram: TelegramConfig,
    pub api: ApiConfig,
    pub bot: BotConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub signals: SignalsConfig,
    pub alerts: AlertsConfig,
    pub notifier: NotifierConfig,
    pub producers: ProducersConfig,
    /// Candle history before the first signal (`tickwatch history load`, first alerts).
    pub history: HistoryConfig,
    pub run: RunConfig,
}

/// Each market-data source's settings (`[producers.binance]`, …).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProducersConfig {
    pub binance: BinanceConfig,
    pub upbit: UpbitConfig,
    pub kis: KisConfig,
    pub csv: CsvConfig,
    pub synthetic: SyntheticConfig,
    pub webhook: WebhookConfig,
}

/// What `tickwatch run` starts besides the consumers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Sources to run (`binance`, `upbit`, `kis`, `csv`, `synthetic`, `webhook`), each with its
    /// `[producers.<name>]` section. Empty: the demo replay.
    pub sources: Vec<String>,
    /// The demo's history file (a replay of real 1-minute bars, shipped with tickwatch).
    pub demo_file: PathBuf,
    /// The demo replay's speed (`600x`: ten one-minute bars a second).
    pub demo_speed: String,
    /// Create the demo user with a few alerts and subscriptions on first start.
    pub demo_user: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            sources: Vec::new(),
            demo_file: PathBuf::from("data/demo/BTCUSDT_1m.csv"),
            demo_speed: "600x".to_string(),
            demo_user: true,
        }
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://tickwatch.db?mode=rwc` (default) or `postgres://user@host/db`.
    pub url: String,
    /// Connections each process opens at most. Every instance of every role has its own
    /// pool: keep their sum under PostgreSQL's `max_connections` (100 by default).
    pub pool_size: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: tickwatch_schema::db::DEFAULT_URL.to_string(),
            pool_size: tickwatch_schema::db::DEFAULT_POOL_SIZE,
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &mask_url(&self.url))
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelegramConfig {
    /// Unset: notifications are written to the log instead of sent.
    pub token: Option<String>,
    pub api_url: String,
    /// Chat ids with admin rights (`TICKWATCH_ADMIN_CHATS=1,2`).
    #[serde(deserialize_with = "chat_list")]
    pub admin_chats: Vec<i64>,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            token: None,
            api_url: "https://api.telegram.org".to_string(),
            admin_chats: Vec::new(),
        }
    }
}

impl fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelegramConfig")
            .field("token", &self.token.as_ref().map(|_| "****"))
            .field("api_url", &self.api_url)
            .field("admin_chats", &self.admin_chats)
            .finish()
    }
}

/// Accepts `[1, 2]`, `"1,2"` or `1`.
fn chat_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Chats {
        List(Vec<i64>),
        One(i64),
        Text(String),
    }
    match Chats::deserialize(d)? {
        Chats::List(list) => Ok(list),
        Chats::One(id) => Ok(vec![id]),
        Chats::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<i64>()
                    .map_err(|_| serde::de::Error::custom(format!("`{s}` is not a chat id")))
            })
            .collect(),
    }
}

/// Where every process serves `/healthz`, `/readyz` and `/metrics`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// `TICKWATCH_ADMIN_ADDR`; `0.0.0.0:9464` in containers.
    pub addr: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            addr: "127.0.0.1:9464".to_string(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter (`info`, `tickwatch=debug,lapin=warn`); `RUST_LOG` wins if set.
    pub level: String,
    /// `human` or `json`.
    pub format: String,
    /// Also write to this file, rotated daily (`tickwatch.log.2026-11-21`).
    pub file: Option<PathBuf>,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info,sqlx=warn".to_string(),
            format: "human".to_string(),
            file: None,
        }
    }
}

/// Well-known variables and the key each one sets.
const WELL_KNOWN: &[(&str, &[&str])] = &[
    ("AMQP_URL", &["broker", "url"]),
    ("DATABASE_URL", &["database", "url"]),
    ("TELEGRAM_BOT_TOKEN", &["telegram", "token"]),
    ("TELEGRAM_API_URL", &["telegram", "api_url"]),
    ("TICKWATCH_API_ADDR", &["api", "addr"]),
    ("TICKWATCH_ADMIN_CHATS", &["telegram", "admin_chats"]),
    ("TICKWATCH_ADMIN_ADDR", &["admin", "addr"]),
    (
        "TICKWATCH_BINANCE_WS_URL",
        &["producers", "binance", "ws_url"],
    ),
    (
        "TICKWATCH_BINANCE_REST_URL",
        &["producers", "binance", "rest_url"],
    ),
    ("TICKWATCH_UPBIT_WS_URL", &["producers", "upbit", "ws_url"]),
    (
        "TICKWATCH_UPBIT_REST_URL",
        &["producers", "upbit", "rest_url"],
    ),
    ("KIS_APP_KEY", &["producers", "kis", "app_key"]),
    ("KIS_APP_SECRET", &["producers", "kis", "app_secret"]),
    ("TICKWATCH_KIS_WS_URL", &["producers", "kis", "ws_url"]),
    ("TICKWATCH_KIS_REST_URL", &["producers", "kis", "rest_url"]),
];

/// Variables read as they are, as text (never guessed into numbers).
const TEXT_KEYS: &[&str] = &[
    "TELEGRAM_BOT_TOKEN",
    "TICKWATCH_ADMIN_CHATS",
    "KIS_APP_KEY",
    "KIS_APP_SECRET",
];

impl Config {
    /// Reads `path` (or `tickwatch.toml` if present), then the environment, and validates.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        Self::load_from(path, std::env::vars())
    }

    pub fn load_from(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Config> {
        let mut table = match path {
            Some(p) => read_file(p)?,
            None if Path::new(DEFAULT_FILE).exists() => read_file(Path::new(DEFAULT_FILE))?,
            None => toml::Table::new(),
        };
        let mut vars: Vec<(String, String)> = vars.into_iter().collect();
        vars.sort();
        for (name, raw) in &vars {
            // An empty variable (`TELEGRAM_BOT_TOKEN=` in a compose file) means unset.
            if raw.trim().is_empty() {
                continue;
            }
            let key: Vec<String> =
                if let Some((_, key)) = WELL_KNOWN.iter().find(|(n, _)| n == name) {
                    key.iter().map(|s| s.to_string()).collect()
                } else if let Some(rest) = name.strip_prefix("TICKWATCH_") {
                    if !rest.contains("__") {
                        continue;
                    }
                    rest.split("__").map(str::to_ascii_lowercase).collect()
                } else {
                    continue;
                };
            let value = if TEXT_KEYS.contains(&name.as_str()) {
                toml::Value::String(raw.clone())
            } else {
                guess_value(raw)
            };
            insert(&mut table, &key, value)
                .with_context(|| format!("environment variable {name}"))?;
        }
        let mut config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("configuration: {}", e.message()))
            .context("reading the configuration (file and TICKWATCH_* variables)")?;
        config.share_settings();
        config.validate()?;
        Ok(config)
    }

    /// A configuration built in code (tests, embedding): shares the settings several
    /// sections use and validates, as loading does.
    pub fn resolved(mut self) -> anyhow::Result<Config> {
        self.share_settings();
        self.validate()?;
        Ok(self)
    }

    /// Copies the settings several sections use from the one place a user sets them.
    fn share_settings(&mut self) {
        self.notifier.telegram_bot_token = self
            .telegram
            .token
            .clone()
            .map(tickwatch_notifier::Secret::new);
        self.notifier.telegram_api_url = self.telegram.api_url.clone();
        self.bot.token = self
            .telegram
            .token
            .clone()
            .map(tickwatch_gateway::config::Secret::new);
        self.bot.api_url = self.telegram.api_url.clone();
        self.bot.admin_chats = self.telegram.admin_chats.clone();
    }

    /// Checks every section; the error names the key.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.broker.validate()?;
        let db = &self.database.url;
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            bail!(
                "database.url: `{}` must start with sqlite: or postgres://",
                mask_url(db)
            );
        }
        if !(1..=1_000).contains(&self.database.pool_size) {
            bail!(
                "database.pool_size: {} connections; use 1 to 1000",
                self.database.pool_size
            );
        }
        if !(self.telegram.api_url.starts_with("http://")
            || self.telegram.api_url.starts_with("https://"))
        {
            bail!(
                "telegram.api_url: `{}` must be an http(s) URL",
                self.telegram.api_url
            );
        }
        if self.telegram.api_url.ends_with('/') {
            bail!("telegram.api_url: remove the trailing `/` (teloxide would request `//bot…`)");
        }
        if let Some(token) = &self.telegram.token
            && (token.trim().is_empty() || !token.contains(':'))
        {
            bail!("telegram.token: a bot token looks like `123456:ABC…` (from @BotFather)");
        }
        self.api.validate()?;
        self.bot.validate()?;
        self.admin.addr.parse::<SocketAddr>().map_err(|e| {
            anyhow::anyhow!("admin.addr: `{}` is not host:port ({e})", self.admin.addr)
        })?;
        if !["human", "json"].contains(&self.log.format.as_str()) {
            bail!(
                "log.format: `{}` must be `human` or `json`",
                self.log.format
            );
        }
        self.notifier.validate()?;
        self.signals.validate()?;
        self.alerts.validate()?;
        self.history.validate()?;
        for source in &self.run.sources {
            match source.as_str() {
                "binance" => self.producers.binance.validate()?,
                "upbit" => self.producers.upbit.validate()?,
                "kis" => self.producers.kis.validate()?,
                "csv" => self.producers.csv.validate()?,
                "synthetic" => self.producers.synthetic.validate()?,
                "webhook" => self.producers.webhook.validate()?,
                other => bail!(
                    "run.sources: `{other}` is not a source; use binance, upbit, kis, csv, synthetic or webhook"
                ),
            }
        }
        self.run
            .demo_speed
            .parse::<tickwatch_producers::csv::Speed>()
            .map_err(|e| anyhow::anyhow!("run.demo_speed: {e}"))?;
        Ok(())
    }

    /// The configuration as TOML with every secret masked, for `tickwatch config show`.
    pub fn to_masked_toml(&self) -> anyhow::Result<String> {
        let mut shown = self.clone();
        shown.broker.url = mask_url(&shown.broker.url);
        shown.broker.management_url = shown.broker.management_url.as_deref().map(mask_url);
        shown.database.url = mask_url(&shown.database.url);
        if shown.telegram.token.is_some() {
            shown.telegram.token = Some("****".to_string());
        }
        Ok(toml::to_string(&shown)?)
    }
}

fn read_file(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the configuration file {}", path.display()))?;
    text.parse::<toml::Table>()
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e))
}

/// Numbers, booleans and arrays as TOML reads them; anything else is text.
fn guess_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !matches!(v, toml::Value::Table(_)))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn insert(table: &mut toml::Table, key: &[String], value: toml::Value) -> anyhow::Result<()> {
    let (last, parents) = key.split_last().context("empty key")?;
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(t) => t,
            _ => bail!("`{part}` is not a section"),
        };
    }
    current.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_no_file_and_no_environment() {
        let config = Config::load_from(None, vec![]).expect("defaults");
        assert_eq!(config.database.url, "sqlite://tickwatch.db?mode=rwc");
        assert_eq!(config.broker.url, "amqp://guest:guest@127.0.0.1:5672/%2f");
        assert_eq!(config.api.addr, "127.0.0.1:8080");
        assert!(config.telegram.token.is_none());
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("tw-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("tickwatch.toml");
        std::fs::write(
            &file,
            "[broker]\nprefetch = 10\nprefix = \"file\"\n[api]\naddr = \"0.0.0.0:9000\"\n",
        )
        .expect("write");
        let config = Config::load_from(
            Some(&file),
            vars(&[
                ("TICKWATCH_BROKER__PREFETCH", "64"),
                ("AMQP_URL", "amqp://u:p@rabbit:5672/prod"),
                ("DATABASE_URL", "postgres://postgres@127.0.0.1/test"),
                ("TELEGRAM_BOT_TOKEN", "123:abc"),
                ("TICKWATCH_ADMIN_CHATS", "11, 22"),
                ("TICKWATCH_BROKER__RETRY_DELAYS_MS", "[5, 50]"),
                ("TICKWATCH_BROKER__SHARDS__ALERTS", "4"),
                ("TICKWATCH_DATA_DIR", "/ignored"),
            ]),
        )
        .expect("valid");
        assert_eq!(config.broker.prefetch, 64);
        assert_eq!(config.broker.prefix, "file");
        assert_eq!(config.broker.url, "amqp://u:p@rabbit:5672/prod");
        assert_eq!(config.broker.retry_delays_ms, vec![5, 50]);
        assert_eq!(config.broker.shards.get("alerts"), Some(&4));
        assert_eq!(config.database.url, "postgres://postgres@127.0.0.1/test");
        assert_eq!(config.telegram.token.as_deref(), Some("123:abc"));
        assert_eq!(config.telegram.admin_chats, vec![11, 22]);
        assert_eq!(config.api.addr, "0.0.0.0:9000");
        let shown = config.to_masked_toml().expect("toml");
        assert!(
            !shown.contains("123:abc") && !shown.contains(":p@"),
            "{shown}"
        );
        assert!(shown.contains("u:****@rabbit"), "{shown}");
    }

    #[test]
    fn bad_keys_are_named() {
        let cases = [
            ("TICKWATCH_BROKER__PREFETCH", "0", "broker.prefetch"),
            ("TICKWATCH_BROKER__PREFECH", "10", "prefech"),
            ("TICKWATCH_API_ADDR", "nowhere", "api.addr"),
            ("DATABASE_URL", "mysql://x", "database.url"),
            ("TICKWATCH_DATABASE__POOL_SIZE", "0", "database.pool_size"),
            ("TELEGRAM_BOT_TOKEN", "nonsense", "telegram.token"),
            ("TELEGRAM_API_URL", "http://fake/", "telegram.api_url"),
            ("TICKWATCH_LOG__FORMAT", "xml", "log.format"),
            ("TICKWATCH_SIGNALS__RSI__OVERSOLD", "500", "rsi.oversold"),
            ("TICKWATCH_ALERTS__HYSTERESIS_PCT", "-1", "hysteresis_pct"),
            (
                "TICKWATCH_NOTIFIER__CONCURRENCY",
                "0",
                "notifier.concurrency",
            ),
            ("TICKWATCH_BROKER__BATCH", "0", "broker.batch"),
            ("TICKWATCH_RUN__SOURCES", "[\"kraken\"]", "run.sources"),
            ("TICKWATCH_RUN__DEMO_SPEED", "fast", "run.demo_speed"),
        ];
        for (name, value, key) in cases {
            let err = Config::load_from(None, vars(&[(name, value)])).expect_err(name);
            let text = format!("{err:#}");
            assert!(
                text.contains(key),
                "{name}={value}: `{text}` should name {key}"
            );
        }
    }
}
