//! The WebSocket session driver the venue feeds share: connect (and subscribe), read frames
//! into the venue's parser, answer pings, send our own pings, notice a dead connection,
//! reconnect with backoff, renew the connection before the venue's cut, stop on shutdown.
//!
//! Pings: tungstenite queues the pong when it reads a ping and writes it on the next read,
//! so the driver never stops reading for long: parsed messages go to the outbox, which
//! never blocks; only a REST backfill pauses reading, bounded by its timeout.
//!
//! Renewal is make-before-break: the new connection is opened while the old one keeps
//! delivering; during the overlap the new one's frames are held, then the old one is closed
//! and the held frames are processed. Nothing is missed, and what both delivered is removed
//! by trade-id de-duplication (and by open time for candles).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::config::{Backoff, ConnectionConfig};
use crate::metrics::{self, Metrics};
use crate::outbox::{Item, Outbox};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Frames held from a renewal's new connection before it takes over; past this it takes
/// over at once rather than hold more.
const MAX_HELD: usize = 100_000;
/// How often [`Feed::on_timer`] runs (closes quiet candle buckets).
const TIMER: Duration = Duration::from_secs(1);

/// One venue's side of a feed: where to connect, what to subscribe, how to read a frame.
#[async_trait::async_trait]
pub(crate) trait Feed: Send {
    fn name(&self) -> &'static str;
    fn url(&self) -> String;
    /// Runs before each connection attempt (KIS fetches its approval key here); an error
    /// counts as a failed attempt and is retried with backoff.
    async fn prepare(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// Text messages sent right after connecting (Upbit's one subscription, KIS's one per
    /// symbol), `subscription_pause` apart.
    fn subscriptions(&self) -> Vec<String>;
    fn subscription_pause(&self) -> Duration {
        Duration::ZERO
    }
    /// Parses one data frame and appends what it yields. Never fails: a bad frame is logged
    /// and counted by the feed.
    async fn on_frame(&mut self, payload: &[u8], out: &mut Vec<Item>);
    /// What the last frames asked of the connection: replies to send (KIS's PINGPONG echo)
    /// or a reconnect (a refused key).
    fn take_requests(&mut self) -> Requests {
        Requests::default()
    }
    /// Called every second with the wall clock (epoch ms); like a frame, it may wait on a
    /// REST backfill (Upbit's, after a reconnect).
    async fn on_timer(&mut self, _now_ms: i64, _out: &mut Vec<Item>) {}
    /// Called once after the last frame, before the outbox is flushed.
    fn on_shutdown(&mut self, _out: &mut Vec<Item>) {}
}

/// See [`Feed::take_requests`].
#[derive(Debug, Default)]
pub(crate) struct Requests {
    /// Text frames to send on the current connection.
    pub(crate) send: Vec<String>,
    /// Drop the connection for this reason and connect again.
    pub(crate) reconnect: Option<String>,
}

enum Flow {
    Continue,
    Lost(String),
}

struct Pending {
    ws: Ws,
    held: Vec<Message>,
    switch_at: Instant,
}

/// Runs the feed until `shutdown`: connects, reads, reconnects with backoff, renews.
pub(crate) async fn drive<F: Feed>(
    feed: &mut F,
    config: &ConnectionConfig,
    outbox: &Outbox,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) {
    let mut backoff = config.reconnect.backoff();
    let mut connected_before = false;
    loop {
        let attempt = tokio::select! {
            () = shutdown.cancelled() => break,
            r = async {
                feed.prepare().await?;
                connect(&*feed, config).await
            } => r,
        };
        match attempt {
            Ok(ws) => {
                if connected_before {
                    metrics::inc(&metrics.reconnects);
                }
                connected_before = true;
                metrics
                    .connected
                    .store(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(source = feed.name(), "connected");
                // Boxed: a session holds two WebSocket streams and would bloat every caller's future.
                match Box::pin(session(
                    feed,
                    ws,
                    config,
                    outbox,
                    metrics,
                    shutdown,
                    &mut backoff,
                ))
                .await
                {
                    None => break,
                    Some(reason) => {
                        metrics
                            .connected
                            .store(0, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(source = feed.name(), %reason, "connection lost; reconnecting");
                    }
                }
            }
            Err(reason) => {
                tracing::warn!(source = feed.name(), %reason, attempt = backoff.attempts() + 1, "connect failed");
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(delay) => {}
        }
    }
    metrics
        .connected
        .store(0, std::sync::atomic::Ordering::Relaxed);
    let mut out = Vec::new();
    feed.on_shutdown(&mut out);
    outbox.push_all(out);
}

async fn connect<F: Feed>(feed: &F, config: &ConnectionConfig) -> Result<Ws, String> {
    let url = feed.url();
    let (mut ws, _) = tokio::time::timeout(
        config.connect_timeout,
        tokio_tungstenite::connect_async(url.as_str()),
    )
    .await
    .map_err(|_| format!("no connection within {:?}", config.connect_timeout))?
    .map_err(|e| e.to_string())?;
    for (i, subscription) in feed.subscriptions().into_iter().enumerate() {
        if i > 0 && !feed.subscription_pause().is_zero() {
            tokio::time::sleep(feed.subscription_pause()).await;
        }
        ws.send(Message::text(subscription))
            .await
            .map_err(|e| format!("subscribing: {e}"))?;
    }
    Ok(ws)
}

/// Reads one connection (and its renewal) until it is lost (`Some(reason)`) or shutdown
/// (`None`).
async fn session<F: Feed>(
    feed: &mut F,
    mut current: Ws,
    config: &ConnectionConfig,
    outbox: &Outbox,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    backoff: &mut Backoff,
) -> Option<String> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut last_seen = start;
    let mut had_data = false;
    let mut renew_at = start + config.renew_after;
    let mut pending: Option<Pending> = None;
    let mut ping = tokio::time::interval_at(start + config.ping_interval, config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut timer = tokio::time::interval_at(start + TIMER, TIMER);
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let outcome = 'session: loop {
        let switch_at = pending.as_ref().map(|p| p.switch_at);
        // Unbiased on purpose: a busy socket must not starve pings, timers or a renewal.
        let flow = tokio::select! {
            () = shutdown.cancelled() => break None,
            msg = current.next() => {
                last_seen = Instant::now();
                let flow = handle(feed, msg, &mut out, metrics).await;
                if !had_data && !out.is_empty() {
                    // A connection that delivers market data is healthy: the next loss
                    // starts the backoff from the beginning. (Not any frame: a venue's
                    // refusal is a frame too, and must not make the reconnects tight.)
                    had_data = true;
                    backoff.reset();
                }
                match flow {
                    Flow::Lost(reason) => match pending.take() {
                        // The old connection died during the overlap: the new one takes over.
                        Some(p) => {
                            tracing::info!(source = feed.name(), %reason, "old connection ended during renewal");
                            current = p.ws;
                            replay_held(feed, p.held, &mut out, metrics).await
                        }
                        None => Flow::Lost(reason),
                    },
                    flow => flow,
                }
            }
            msg = next_of(&mut pending) => {
                match msg {
                    Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                        if let Some(p) = pending.as_mut() {
                            p.held.push(m);
                            if p.held.len() >= MAX_HELD {
                                p.switch_at = Instant::now();
                            }
                        }
                    }
                    Some(Ok(_)) => {}
                    other => {
                        let reason = match other {
                            Some(Err(e)) => e.to_string(),
                            _ => "closed".to_string(),
                        };
                        tracing::warn!(source = feed.name(), %reason, "renewal connection lost; keeping the old one, retrying in a minute");
                        pending = None;
                        renew_at = Instant::now() + Duration::from_secs(60);
                    }
                }
                Flow::Continue
            }
            () = sleep_until_some(switch_at) => {
                match pending.take() {
                    Some(p) => {
                        let mut old = std::mem::replace(&mut current, p.ws);
                        close_quietly(&mut old).await;
                        last_seen = Instant::now();
                        tracing::info!(source = feed.name(), held = p.held.len(), "renewed connection took over");
                        replay_held(feed, p.held, &mut out, metrics).await
                    }
                    None => Flow::Continue,
                }
            }
            () = sleep_until(renew_at), if pending.is_none() && config.renew => {
                tracing::info!(source = feed.name(), "renewing the connection before the venue cuts it");
                match connect(&*feed, config).await {
                    Ok(ws) => {
                        metrics::inc(&metrics.reconnects);
                        pending = Some(Pending { ws, held: Vec::new(), switch_at: Instant::now() + config.overlap });
                        renew_at = Instant::now() + config.renew_after;
                    }
                    Err(reason) => {
                        tracing::warn!(source = feed.name(), %reason, "renewal failed; keeping the old connection, retrying in a minute");
                        renew_at = Instant::now() + Duration::from_secs(60);
                    }
                }
                Flow::Continue
            }
            () = sleep_until(last_seen + config.idle_timeout) => {
                Flow::Lost(format!("nothing received for {:?}", config.idle_timeout))
            }
            _ = ping.tick(), if config.pings => {
                match current.send(Message::Ping(Default::default())).await {
                    Ok(()) => Flow::Continue,
                    Err(e) => Flow::Lost(format!("sending ping: {e}")),
                }
            }
            _ = timer.tick() => {
                feed.on_timer(now_ms(), &mut out).await;
                Flow::Continue
            }
        };
        outbox.push_all(out.drain(..));
        if let Flow::Lost(reason) = flow {
            break Some(reason);
        }
        let requests = feed.take_requests();
        for text in requests.send {
            if let Err(e) = current.send(Message::text(text)).await {
                break 'session Some(format!("sending a reply: {e}"));
            }
        }
        if let Some(reason) = requests.reconnect {
            close_quietly(&mut current).await;
            break Some(reason);
        }
    };
    if outcome.is_none() {
        close_quietly(&mut current).await;
        if let Some(mut p) = pending {
            close_quietly(&mut p.ws).await;
        }
    }
    outcome
}

async fn handle<F: Feed>(
    feed: &mut F,
    msg: Option<Result<Message, tungstenite::Error>>,
    out: &mut Vec<Item>,
    metrics: &Metrics,
) -> Flow {
    match msg {
        None => Flow::Lost("connection closed".into()),
        Some(Err(e)) => Flow::Lost(format!("read failed: {e}")),
        Some(Ok(Message::Text(text))) => {
            metrics::inc(&metrics.frames);
            feed.on_frame(text.as_str().as_bytes(), out).await;
            Flow::Continue
        }
        Some(Ok(Message::Binary(data))) => {
            metrics::inc(&metrics.frames);
            feed.on_frame(&data, out).await;
            Flow::Continue
        }
        Some(Ok(Message::Close(frame))) => Flow::Lost(match frame {
            Some(f) => format!("server closed the connection ({} {})", f.code, f.reason),
            None => "server closed the connection".into(),
        }),
        // Pongs to our pings prove liveness (already noted); pings are answered by tungstenite.
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Flow::Continue,
    }
}

async fn replay_held<F: Feed>(
    feed: &mut F,
    held: Vec<Message>,
    out: &mut Vec<Item>,
    metrics: &Metrics,
) -> Flow {
    for m in held {
        if let Flow::Lost(reason) = handle(feed, Some(Ok(m)), out, metrics).await {
            return Flow::Lost(reason);
        }
    }
    Flow::Continue
}

async fn next_of(pending: &mut Option<Pending>) -> Option<Result<Message, tungstenite::Error>> {
    match pending {
        Some(p) => p.ws.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn close_quietly(ws: &mut Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

pub(crate) fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Counts one problem of a feed (a malformed frame, a bad value, …) and logs it while
/// [`worth_logging`] says so.
pub(crate) fn count_problem(
    source: &str,
    counter: &std::sync::atomic::AtomicU64,
    what: impl FnOnce() -> String,
) {
    metrics::inc(counter);
    let n = counter.load(std::sync::atomic::Ordering::Relaxed);
    if worth_logging(n) {
        tracing::warn!(source, count = n, "{}", what());
    }
}

/// Logs the first few occurrences of a counted problem and then every power of two, so a
/// venue sending garbage cannot flood the log while every case is still counted.
pub(crate) fn worth_logging(count_after: u64) -> bool {
    count_after <= 10 || count_after.is_power_of_two()
}

/// A frame cut to a length fit for a log line.
pub(crate) fn excerpt(payload: &[u8]) -> String {
    let text = String::from_utf8_lossy(payload);
    let mut cut: String = text.chars().take(200).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}
