//! The one service layer both doors call: every read and change of rules, subscriptions,
//! users, API keys, settings and market data goes through [`Services`], so the bot and the
//! API share one model, one validation and one ownership check.
//!
//! A change is written to the database first (the truth: an alerts instance loads it on
//! start and after a reconnect), then announced on `tw.control` so that running alerts
//! instances apply it at once. An announcement that fails is logged, not returned: the
//! change is stored, and versions make a later reload converge.
//!
//! - [`rules`]: alert rules and their events.
//! - [`subscriptions`]: signal subscriptions.
//! - [`users`]: users, Telegram registration, preferences, API keys and authentication.
//! - [`market`]: symbols (search and resolution), prices with the day's change, signals and
//!   their outcome statistics.
//! - [`universe`]: importing a venue's whole symbol list (Binance, Upbit, KIS master files).
//! - [`system`]: global halt/resume, system statistics, the DLQ summary.
//! - [`web`]: the dashboard's sign-in links and sessions, candle history, notifications.

pub mod broadcasts;
pub mod digest;
pub mod market;
pub mod operators;
pub mod paper;
pub mod relay;
pub mod rules;
pub mod subscriptions;
pub mod system;
pub mod universe;
pub mod users;
pub mod web;

use crate::events::ControlAnnounced;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter,
    TransactionTrait,
};
use tickwatch_broker::{Broker, Publisher};
use tickwatch_schema::db::entity::user;
use tickwatch_schema::names::Exchange;
use tickwatch_schema::wire::Control;

use crate::error::{Error, Result};

/// A page of results with the cursor of the next page (`None`: this is the last one).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// A page from up to `limit + 1` rows read (one more than asked tells whether a next
    /// page exists): the first `limit`, and the last one's cursor when there is more.
    pub fn of(mut rows: Vec<T>, limit: u64, cursor: impl Fn(&T) -> String) -> Page<T> {
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let next_cursor = rows.last().filter(|_| more).map(cursor);
        Page {
            items: rows,
            next_cursor,
        }
    }
}

/// The database, the broker (optional: the CLI's user commands need none) and the control
/// publisher; cheap to clone.
#[derive(Clone)]
pub struct Services {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    broker: Option<Broker>,
    publisher: Option<Publisher>,
    announce_timeout: Duration,
    /// Every symbol, kept in memory: search runs over thousands of them per keystroke.
    /// Older than [`SYMBOLS_TTL`], it is still answered from while a background read
    /// replaces it; an import in this process clears it at once.
    symbols: std::sync::Mutex<SymbolCache>,
    refreshing_symbols: std::sync::atomic::AtomicBool,
    /// Loads a symbol's candle history when it gets an alert or a subscription (set by the
    /// application; none in the CLI's user commands).
    history: std::sync::OnceLock<Arc<dyn HistoryRequests>>,
}

/// Takes requests to load a symbol's candle history (the application's history loader).
/// Called when a symbol gets an alert or a signal subscription: it must return at once and
/// do the work elsewhere; a request for a symbol whose history is stored costs little.
pub trait HistoryRequests: Send + Sync {
    /// `venue` is `None` when the caller knows only the symbol (a signal subscription).
    fn request(&self, venue: Option<&str>, symbol: &str);
}

/// The symbol list in memory, and how many times it was dropped: a read that began
/// before an import must not put the old list back.
#[derive(Default)]
struct SymbolCache {
    generation: u64,
    list: Option<(std::time::Instant, Arc<market::SymbolList>)>,
}

/// How long the symbol list is kept in memory.
pub const SYMBOLS_TTL: Duration = Duration::from_secs(30);

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("broker", &self.inner.broker)
            .field("announce_timeout", &self.inner.announce_timeout)
            .finish_non_exhaustive()
    }
}

/// How long a change waits for the broker to confirm its announcement before the request
/// answers anyway (the change is stored either way).
pub const DEFAULT_ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(5);

impl Services {
    /// Services on `db`; with a broker, changes are announced on `tw.control` through a
    /// confirmed publisher started here (call inside the tokio runtime).
    pub fn new(db: DatabaseConnection, broker: Option<Broker>) -> Self {
        Self::with_announce_timeout(db, broker, DEFAULT_ANNOUNCE_TIMEOUT)
    }

    pub fn with_announce_timeout(
        db: DatabaseConnection,
        broker: Option<Broker>,
        announce_timeout: Duration,
    ) -> Self {
        let publisher = broker
            .as_ref()
            .map(|b| Publisher::start(b, "gateway:control"));
        Services {
            inner: Arc::new(Inner {
                db,
                broker,
                publisher,
                announce_timeout,
                symbols: std::sync::Mutex::new(SymbolCache::default()),
                refreshing_symbols: std::sync::atomic::AtomicBool::new(false),
                history: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Sets what loads a symbol's history on its first alert (once; later calls are ignored).
    pub fn set_history_requests(&self, requests: Arc<dyn HistoryRequests>) {
        let _ = self.inner.history.set(requests);
    }

    /// Asks for the history of a symbol that just got an alert or a subscription.
    pub(crate) fn request_history(&self, venue: Option<&str>, symbol: &str) {
        if let Some(history) = self.inner.history.get() {
            history.request(venue, symbol);
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    /// A transaction that holds the user's row: a per-user limit counted in it stays true
    /// until its insert commits, so two requests at once cannot both take the last place.
    /// The update that changes nothing locks the row on PostgreSQL and takes the write lock
    /// on SQLite.
    pub(crate) async fn lock_user(&self, user_id: i64) -> Result<DatabaseTransaction> {
        let txn = self.db().begin().await?;
        user::Entity::update_many()
            .col_expr(user::Column::Id, Expr::col(user::Column::Id))
            .filter(user::Column::Id.eq(user_id))
            .exec(&txn)
            .await?;
        Ok(txn)
    }

    /// The cached symbol list and whether it is fresh, and the cache's generation (for
    /// [`Services::cache_symbols`]).
    pub(crate) fn cached_symbols(&self) -> (u64, Option<(bool, Arc<market::SymbolList>)>) {
        let cache = self.inner.symbols.lock().unwrap_or_else(|p| p.into_inner());
        let list = cache
            .list
            .as_ref()
            .map(|(at, list)| (at.elapsed() < SYMBOLS_TTL, list.clone()));
        (cache.generation, list)
    }

    /// Keeps `list`, read when the cache was at `generation`, unless it was dropped since.
    pub(crate) fn cache_symbols(&self, generation: u64, list: Arc<market::SymbolList>) {
        let mut cache = self.inner.symbols.lock().unwrap_or_else(|p| p.into_inner());
        if cache.generation == generation {
            cache.list = Some((std::time::Instant::now(), list));
        }
    }

    /// Claims the one background refresh of the symbol list; `false` if one runs.
    pub(crate) fn start_symbols_refresh(&self) -> bool {
        !self
            .inner
            .refreshing_symbols
            .swap(true, std::sync::atomic::Ordering::AcqRel)
    }

    pub(crate) fn end_symbols_refresh(&self) {
        self.inner
            .refreshing_symbols
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// Drops the cached symbol list (after an import).
    pub(crate) fn forget_symbols(&self) {
        let mut cache = self.inner.symbols.lock().unwrap_or_else(|p| p.into_inner());
        cache.generation += 1;
        cache.list = None;
    }

    pub fn broker(&self) -> Option<&Broker> {
        self.inner.broker.as_ref()
    }

    /// Waits for announcements in flight, then stops the control publisher.
    pub async fn close(&self) {
        if let Some(publisher) = &self.inner.publisher {
            publisher.close().await;
        }
    }

    /// Announces a change on `tw.control`. Returns whether the broker confirmed it; a
    /// failure is logged and counted, never returned (the database holds the change).
    pub async fn announce(&self, control: &Control) -> bool {
        let Some(publisher) = &self.inner.publisher else {
            tracing::debug!(?control, "no broker: change stored, not announced");
            return false;
        };
        let outcome = tokio::time::timeout(self.inner.announce_timeout, async {
            publisher.publish(Exchange::Control, control).await
        })
        .await;
        let event = match outcome {
            Ok(Ok(_)) => ControlAnnounced::Confirmed,
            Ok(Err(e)) => ControlAnnounced::Failed {
                control,
                error: e.to_string(),
            },
            Err(_) => ControlAnnounced::TimedOut {
                control,
                after: self.inner.announce_timeout,
            },
        };
        event.emit();
        matches!(event, ControlAnnounced::Confirmed)
    }

    /// The broker, or a 503-style error naming what needs it.
    pub(crate) fn require_broker(&self, what: &str) -> Result<&Broker> {
        self.broker()
            .ok_or_else(|| Error::Unavailable(format!("{what} needs the broker")))
    }
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

/// The `next_cursor` of a newest-first page: `<ts>_<id>` of its last item, the position
/// the next page starts after (the API reads it back as `api::fields::TimeCursor`).
pub(crate) fn time_cursor(ts: i64, id: &str) -> String {
    format!("{ts}_{id}")
}

/// Where a newest-first list goes on: before this `(ts, id)`.
pub type Before = (i64, String);
