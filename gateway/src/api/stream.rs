//! `GET /v1/stream`: live ticks, signals and the caller's alerts, over a WebSocket (an
//! upgrade request) or else as Server-Sent Events (`GET /v1/stream/sse` is SSE only).
//!
//! **Topics**: `ticks:<SYMBOL>` or `ticks:*`, `signals:<SYMBOL>` or `signals:*`,
//! `candles:<SYMBOL>:<interval>`, `alerts:mine` (the caller's fired alerts) and, for admins,
//! `alerts:*`.
//!
//! **Candles**: a `candles:` topic carries the candles the producers publish (closed ones,
//! and a forming one where a producer sends it) and, between them, the forming candle of
//! the current bar as this stream builds it from the symbol's ticks since it subscribed —
//! sent with `"from_ticks": true` beside `data`, on every tick. Its open, high, low and
//! volume cover only the ticks this stream saw: a client merges it into the bar it has
//! (the dashboard keeps the bar's open, widens its high and low, takes the close). The first ones come
//! from `?topics=a,b`; on a WebSocket the client may change them at any time.
//!
//! **WebSocket protocol** (JSON text frames):
//! - client → server: `{"op":"subscribe","topics":[…]}`, `{"op":"unsubscribe","topics":[…]}`,
//!   `{"op":"ping"}`;
//! - server → client: `{"type":"subscribed","topics":[…]}` after each change,
//!   `{"type":"tick"|"candle"|"signal"|"alert","topic":"ticks:BTCUSDT","data":{…wire message…}}`,
//!   `{"type":"heartbeat","ts":…}` every `heartbeat_s`, `{"type":"pong"}`,
//!   `{"type":"error","detail":"…"}` for a bad request (the stream stays open).
//!
//! **SSE**: events named `subscribed`, `tick`, `candle`, `signal`, `alert`, `heartbeat`, and `close`
//! (`{"reason":…}`) right before the server ends the stream.
//!
//! **Slow clients**: the hub keeps the last `stream.buffer` events. A client that falls
//! further behind, or whose socket takes longer than `send_timeout_ms` to take one frame,
//! is closed with a reason — WebSocket close code 1008 and reason `slow consumer: …`, or
//! an SSE `close` event — and may reconnect. Shutting down closes streams with 1001.
//!
//! Browsers cannot set headers on a WebSocket: the API key may also come as
//! `?access_token=`, and the web dashboard's session cookie is accepted as everywhere (from
//! the page's own origin only). A stream opened with the cookie is checked at every
//! heartbeat and closed (1008, `the session ended`) once the session is over.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tickwatch_schema::calendar::{bucket_start, utc_offset_ms};
use tickwatch_schema::wire::{Candle, Interval, Tick};
use tokio::sync::broadcast::{Receiver, error::RecvError};
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};

use super::problem::Problem;
use super::{ApiState, Params, authorize_request, bearer};
use crate::error::{Error, Result};
use crate::hub::{ClientSlot, StreamEvent};
use crate::services::users::Caller;

/// WebSocket close code: policy violation (used for slow consumers).
const CLOSE_POLICY: u16 = 1008;
/// WebSocket close code: going away (server shutting down).
const CLOSE_GOING_AWAY: u16 = 1001;

/// Parameters of `GET /v1/stream`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Comma-separated topics: `ticks:BTCUSDT`, `ticks:*`, `signals:*`,
    /// `candles:BTCUSDT:1m`, `alerts:mine` (`alerts:*` for admins); at most
    /// `stream.max_topics`.
    #[param(
        pattern = "^$|^((ticks|signals):([A-Za-z0-9._/:-]{1,32}|\\*)|candles:[A-Za-z0-9._/:-]{1,32}:(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)|alerts:(mine|\\*))(,((ticks|signals):([A-Za-z0-9._/:-]{1,32}|\\*)|candles:[A-Za-z0-9._/:-]{1,32}:(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)|alerts:(mine|\\*))){0,31}$"
    )]
    pub topics: Option<String>,
    /// The API key, for clients that cannot send `Authorization` (browser WebSockets).
    pub access_token: Option<String>,
}

/// One subscription.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Topic {
    Ticks(Option<String>),
    Signals(Option<String>),
    Candles(String, Interval),
    AlertsMine,
    AlertsAll,
}

/// One topic, as the document's pattern for `topics` spells it.
pub const TOPIC_PATTERN: &str = "(ticks|signals):([A-Za-z0-9._/:-]{1,32}|\\*)|candles:[A-Za-z0-9._/:-]{1,32}:(1m|3m|5m|15m|30m|1h|2h|4h|6h|12h|1d|1w)|alerts:(mine|\\*)";

impl Topic {
    fn parse(text: &str, caller: &Caller) -> Result<Topic> {
        let bad = || {
            Error::invalid(
                "topics",
                format!(
                    "`{text}` is not a topic; use ticks:<SYMBOL>, ticks:*, signals:<SYMBOL>, signals:*, candles:<SYMBOL>:<interval> or alerts:mine"
                ),
            )
        };
        let (family, rest) = text.split_once(':').ok_or_else(bad)?;
        let symbol = |rest: &str| -> Result<Option<String>> {
            if rest == "*" {
                return Ok(None);
            }
            // ASCII only, as the pattern says: `ß` would upper-case into a valid `SS`.
            if !rest.is_ascii() {
                return Err(bad());
            }
            let upper = rest.to_ascii_uppercase();
            tickwatch_schema::wire::validate_symbol(&upper).map_err(|_| bad())?;
            Ok(Some(upper))
        };
        match family {
            "ticks" => Ok(Topic::Ticks(symbol(rest)?)),
            "signals" => Ok(Topic::Signals(symbol(rest)?)),
            "candles" => {
                // The symbol may hold `:` itself; the interval is what follows the last one.
                let (name, interval) = rest.rsplit_once(':').ok_or_else(bad)?;
                let interval = interval.parse::<Interval>().map_err(|_| bad())?;
                match symbol(name)? {
                    Some(name) => Ok(Topic::Candles(name, interval)),
                    None => Err(bad()),
                }
            }
            "alerts" if rest == "mine" => Ok(Topic::AlertsMine),
            "alerts" if rest == "*" && caller.admin => Ok(Topic::AlertsAll),
            "alerts" if rest == "*" => Err(Error::Forbidden(
                "the topic alerts:* is for admins; use alerts:mine".into(),
            )),
            _ => Err(bad()),
        }
    }

    fn name(&self) -> String {
        let sym = |s: &Option<String>| s.clone().unwrap_or_else(|| "*".into());
        match self {
            Topic::Ticks(s) => format!("ticks:{}", sym(s)),
            Topic::Signals(s) => format!("signals:{}", sym(s)),
            Topic::Candles(s, interval) => format!("candles:{s}:{}", interval.as_str()),
            Topic::AlertsMine => "alerts:mine".into(),
            Topic::AlertsAll => "alerts:*".into(),
        }
    }
}

/// A stream's topics and who it belongs to.
#[derive(Debug, Clone)]
struct Topics {
    caller: Caller,
    set: BTreeSet<Topic>,
    max: usize,
    /// When the web dashboard's session cookie opened the stream: the session, checked at
    /// every heartbeat, so signing out (or `/web signout`) closes the stream too.
    session: Option<SessionCheck>,
}

/// A session to check again.
#[derive(Clone)]
struct SessionCheck {
    services: crate::Services,
    token: String,
}

impl std::fmt::Debug for SessionCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionCheck(…)")
    }
}

impl Topics {
    fn new(caller: Caller, max: usize) -> Self {
        Topics {
            caller,
            set: BTreeSet::new(),
            max,
            session: None,
        }
    }

    /// Whether the stream may go on: always for a key; for a session, while it lasts (a
    /// database that cannot answer now is no reason to close).
    async fn still_signed_in(&self) -> bool {
        match &self.session {
            None => true,
            Some(check) => !matches!(
                check.services.authenticate_session(&check.token).await,
                Err(Error::Unauthorized(_))
            ),
        }
    }

    fn add(&mut self, names: &[String]) -> Result<()> {
        let parsed = names
            .iter()
            .map(|n| Topic::parse(n, &self.caller))
            .collect::<Result<Vec<_>>>()?;
        let mut next = self.set.clone();
        next.extend(parsed);
        if next.len() > self.max {
            return Err(Error::invalid(
                "topics",
                format!("at most {} topics per stream", self.max),
            ));
        }
        self.set = next;
        Ok(())
    }

    fn remove(&mut self, names: &[String]) -> Result<()> {
        for name in names {
            let topic = Topic::parse(name, &self.caller)?;
            self.set.remove(&topic);
        }
        Ok(())
    }

    fn names(&self) -> Vec<String> {
        self.set.iter().map(Topic::name).collect()
    }

    /// The event's topic when this stream wants it (a candle: the candle as it came).
    fn wants(&self, event: &StreamEvent) -> Option<String> {
        let wanted = |family: fn(Option<String>) -> Topic, symbol: &str| {
            self.set.contains(&family(None)) || self.set.contains(&family(Some(symbol.into())))
        };
        match event {
            StreamEvent::Tick(t) => {
                wanted(Topic::Ticks, &t.symbol).then(|| format!("ticks:{}", t.symbol))
            }
            StreamEvent::Candle(c) => {
                let topic = Topic::Candles(c.symbol.clone(), c.interval);
                self.set.contains(&topic).then(|| topic.name())
            }
            StreamEvent::Signal(s) => {
                wanted(Topic::Signals, &s.symbol).then(|| format!("signals:{}", s.symbol))
            }
            StreamEvent::Alert(a) => {
                if a.user_id == self.caller.user_id
                    && (self.set.contains(&Topic::AlertsMine)
                        || self.set.contains(&Topic::AlertsAll))
                {
                    Some("alerts:mine".into())
                } else if self.set.contains(&Topic::AlertsAll) {
                    Some("alerts:*".into())
                } else {
                    None
                }
            }
        }
    }

    /// The candle intervals this stream follows for `symbol`.
    fn candle_intervals(&self, symbol: &str) -> Vec<Interval> {
        self.set
            .iter()
            .filter_map(|t| match t {
                Topic::Candles(s, interval) if s == symbol => Some(*interval),
                _ => None,
            })
            .collect()
    }
}

/// One message for a client: its type, topic and data, and whether it is a candle built
/// from ticks.
#[derive(Debug, Clone, PartialEq)]
struct Out {
    kind: &'static str,
    topic: String,
    data: serde_json::Value,
    from_ticks: bool,
}

impl Out {
    fn websocket_text(&self) -> String {
        let mut text = json!({"type": self.kind, "topic": self.topic, "data": self.data});
        if self.from_ticks {
            text["from_ticks"] = json!(true);
        }
        text.to_string()
    }

    fn sse_data(&self) -> String {
        let mut text = json!({"topic": self.topic, "data": self.data});
        if self.from_ticks {
            text["from_ticks"] = json!(true);
        }
        text.to_string()
    }
}

/// What one stream sends: its topics, and the forming candles it builds from ticks.
#[derive(Debug)]
struct Streamer {
    topics: Topics,
    /// (venue, symbol, interval) → the current bar as this stream's ticks made it.
    forming: BTreeMap<(String, String, Interval), Candle>,
    /// (venue, symbol, interval) → the latest bar a producer closed: ticks of it or before
    /// (late trades, KRX's after-hours trades) build nothing.
    closed_through: BTreeMap<(String, String, Interval), i64>,
}

impl Streamer {
    fn new(topics: Topics) -> Self {
        Streamer {
            topics,
            forming: BTreeMap::new(),
            closed_through: BTreeMap::new(),
        }
    }

    /// Leaves topics, and forgets the bars built for them.
    fn unsubscribe(&mut self, names: &[String]) -> Result<()> {
        self.topics.remove(names)?;
        let topics = &self.topics;
        let follows = |symbol: &String, interval: &Interval| {
            topics
                .set
                .contains(&Topic::Candles(symbol.clone(), *interval))
        };
        self.forming.retain(|(_, s, i), _| follows(s, i));
        self.closed_through.retain(|(_, s, i), _| follows(s, i));
        Ok(())
    }

    /// The messages one event makes for this stream.
    fn outputs(&mut self, event: &StreamEvent) -> Vec<Out> {
        let mut outs = Vec::new();
        if let Some(topic) = self.topics.wants(event) {
            outs.push(Out {
                kind: event.kind(),
                topic,
                data: event.data(),
                from_ticks: false,
            });
        }
        match event {
            StreamEvent::Tick(tick) => {
                for interval in self.topics.candle_intervals(&tick.symbol) {
                    if let Some(candle) = self.on_tick(tick, interval) {
                        outs.push(Out {
                            kind: "candle",
                            topic: Topic::Candles(tick.symbol.clone(), interval).name(),
                            data: serde_json::to_value(candle).unwrap_or_default(),
                            from_ticks: true,
                        });
                    }
                }
            }
            // A closed bar is the producer's word; the next tick starts the next bar.
            StreamEvent::Candle(c)
                if c.closed
                    && self
                        .topics
                        .set
                        .contains(&Topic::Candles(c.symbol.clone(), c.interval)) =>
            {
                let key = (c.venue.clone(), c.symbol.clone(), c.interval);
                if self
                    .forming
                    .get(&key)
                    .is_some_and(|f| f.open_ts <= c.open_ts)
                {
                    self.forming.remove(&key);
                }
                let through = self.closed_through.entry(key).or_insert(c.open_ts);
                *through = (*through).max(c.open_ts);
            }
            _ => {}
        }
        outs
    }

    /// The forming bar of `interval` after `tick`; `None` for a tick of an earlier bar.
    fn on_tick(&mut self, tick: &Tick, interval: Interval) -> Option<&Candle> {
        let start = bucket_start(tick.ts, interval, utc_offset_ms(&tick.venue));
        let key = (tick.venue.clone(), tick.symbol.clone(), interval);
        if self.closed_through.get(&key).is_some_and(|&t| start <= t) {
            return None;
        }
        let fresh = || Candle {
            venue: tick.venue.clone(),
            symbol: tick.symbol.clone(),
            interval,
            open_ts: start,
            open: tick.price,
            high: tick.price,
            low: tick.price,
            close: tick.price,
            volume: tick.qty,
            trades: Some(1),
            closed: false,
        };
        match self.forming.get_mut(&key) {
            Some(bar) if bar.open_ts == start => {
                bar.high = bar.high.max(tick.price);
                bar.low = bar.low.min(tick.price);
                bar.close = tick.price;
                bar.volume += tick.qty;
                bar.trades = bar.trades.map(|n| n + 1);
            }
            Some(bar) if bar.open_ts > start => return None,
            _ => {
                self.forming.insert(key.clone(), fresh());
            }
        }
        self.forming.get(&key)
    }
}

/// `?topics=a,b` as the document's pattern has it: no spaces, no empty topic.
fn split_topics(text: Option<&str>) -> Vec<String> {
    match text {
        None | Some("") => Vec::new(),
        Some(text) => text.split(',').map(str::to_string).collect(),
    }
}

/// Topics a WebSocket client sent, forgiving stray spaces and empty entries.
fn tidy(topics: Vec<String>) -> Vec<String> {
    topics
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Authenticates (header or `access_token`), parses the first topics and takes a place
/// in the hub.
async fn open(
    state: &ApiState,
    headers: &HeaderMap,
    q: StreamQuery,
) -> Result<(Topics, ClientSlot, Receiver<Arc<StreamEvent>>)> {
    let caller = authorize_request(state, headers, q.access_token.as_deref(), true).await?;
    let mut topics = Topics::new(caller, state.config().stream.max_topics);
    if bearer(headers).is_none() && q.access_token.is_none() {
        topics.session = super::web::session_cookie(headers).map(|token| SessionCheck {
            services: state.services().clone(),
            token: token.to_string(),
        });
    }
    topics.add(&split_topics(q.topics.as_deref()))?;
    let (slot, rx) = state.hub().join()?;
    Ok((topics, slot, rx))
}

/// One Server-Sent Event as a client reads it: its name and its data (JSON text).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SseEvent {
    /// `subscribed`, `tick`, `candle`, `signal`, `alert`, `heartbeat` or `close`.
    pub event: String,
    /// The event's JSON, as text.
    pub data: String,
}

/// Live events over a WebSocket (an upgrade request), or as Server-Sent Events otherwise.
#[utoipa::path(get, operation_id = "stream", path = "/v1/stream", tag = "stream", params(StreamQuery),
    security(("bearer" = [])),
    responses(
        (status = 101, description = "WebSocket: see the protocol in the description of the stream tag"),
        (status = 200, description = "Server-Sent Events", body = SseEvent, content_type = "text/event-stream"),
        (status = 503, description = "Too many streams open", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn stream(
    State(state): State<ApiState>,
    headers: HeaderMap,
    ws: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    q: Result<Params<StreamQuery>>,
) -> Response {
    let opened = match q {
        Ok(Params(q)) => open(&state, &headers, q).await,
        Err(e) => Err(e),
    };
    let (topics, slot, rx) = match opened {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };
    match ws {
        Ok(upgrade) => {
            let closing = state.closing().clone();
            let config = state.config().stream.clone();
            upgrade
                .on_upgrade(move |socket| run_websocket(socket, topics, slot, rx, closing, config))
                .into_response()
        }
        Err(_) => sse(&state, topics, slot, rx).into_response(),
    }
}

/// Live events as Server-Sent Events, whatever the `Accept` header says.
#[utoipa::path(get, operation_id = "stream_sse", path = "/v1/stream/sse", tag = "stream", params(StreamQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Server-Sent Events", body = SseEvent, content_type = "text/event-stream"),
        (status = 503, description = "Too many streams open", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn sse_only(
    State(state): State<ApiState>,
    headers: HeaderMap,
    q: Result<Params<StreamQuery>>,
) -> Response {
    let opened = match q {
        Ok(Params(q)) => open(&state, &headers, q).await,
        Err(e) => Err(e),
    };
    match opened {
        Ok((topics, slot, rx)) => sse(&state, topics, slot, rx).into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientOp {
    op: String,
    #[serde(default)]
    topics: Vec<String>,
}

async fn run_websocket(
    socket: WebSocket,
    topics: Topics,
    _slot: ClientSlot,
    mut rx: Receiver<Arc<StreamEvent>>,
    closing: CancellationToken,
    config: crate::config::StreamConfig,
) {
    let (mut sink, mut incoming) = socket.split();
    let send_timeout = config.send_timeout();
    // One write, bounded in time: a client that does not read is closed, not buffered for.
    macro_rules! send {
        ($text:expr) => {
            match tokio::time::timeout(send_timeout, sink.send(Message::Text($text.into()))).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    let _ = close(
                        &mut sink,
                        CLOSE_POLICY,
                        "slow consumer: a write timed out; reconnect and read faster",
                    )
                    .await;
                    return;
                }
            }
        };
    }
    let mut streamer = Streamer::new(topics);
    send!(json!({"type": "subscribed", "topics": streamer.topics.names()}).to_string());
    let mut heartbeat = tokio::time::interval(config.heartbeat());
    heartbeat.tick().await;
    loop {
        tokio::select! {
            _ = closing.cancelled() => {
                let _ = close(&mut sink, CLOSE_GOING_AWAY, "server shutting down").await;
                return;
            }
            frame = incoming.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let reply = match serde_json::from_str::<ClientOp>(text.as_str()) {
                        Ok(op) => match op.op.as_str() {
                            "subscribe" => streamer.topics.add(&tidy(op.topics)).map(|()| json!({"type": "subscribed", "topics": streamer.topics.names()})),
                            "unsubscribe" => streamer.unsubscribe(&tidy(op.topics)).map(|()| json!({"type": "subscribed", "topics": streamer.topics.names()})),
                            "ping" => Ok(json!({"type": "pong"})),
                            other => Err(Error::invalid("op", format!("`{other}` is not subscribe, unsubscribe or ping"))),
                        },
                        Err(e) => Err(Error::BadRequest(format!("not an operation: {e}"))),
                    };
                    let reply = reply.unwrap_or_else(|e| json!({"type": "error", "detail": e.to_string()}));
                    send!(reply.to_string());
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            event = rx.recv() => match event {
                Ok(event) => {
                    for out in streamer.outputs(&event) {
                        send!(out.websocket_text());
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    crate::events::StreamClientTooSlow { missed }.emit();
                    let reason = format!("slow consumer: {missed} events dropped; reconnect and read faster");
                    let _ = close(&mut sink, CLOSE_POLICY, &reason).await;
                    return;
                }
                Err(RecvError::Closed) => {
                    let _ = close(&mut sink, CLOSE_GOING_AWAY, "stream ended").await;
                    return;
                }
            },
            _ = heartbeat.tick() => {
                if !streamer.topics.still_signed_in().await {
                    let _ = close(&mut sink, CLOSE_POLICY, "the session ended; sign in again").await;
                    return;
                }
                send!(json!({"type": "heartbeat", "ts": tickwatch_schema::db::now_ms()}).to_string());
            }
        }
    }
}

async fn close(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    code: u16,
    reason: &str,
) -> std::result::Result<(), axum::Error> {
    // A close reason is at most 123 bytes.
    let mut reason = reason.to_string();
    while reason.len() > 123 {
        reason.pop();
    }
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    tokio::time::timeout(
        std::time::Duration::from_secs(1),
        sink.send(Message::Close(Some(frame))),
    )
    .await
    .unwrap_or(Ok(()))
}

/// What the SSE stream carries between polls.
struct SseState {
    streamer: Streamer,
    /// Messages of one event not sent yet (a tick can make several).
    pending: std::collections::VecDeque<Out>,
    _slot: ClientSlot,
    rx: Receiver<Arc<StreamEvent>>,
    heartbeat: tokio::time::Interval,
    closing: CancellationToken,
    greeted: bool,
    done: bool,
}

fn sse(
    state: &ApiState,
    topics: Topics,
    slot: ClientSlot,
    rx: Receiver<Arc<StreamEvent>>,
) -> Sse<impl Stream<Item = std::result::Result<Event, Infallible>> + use<>> {
    let config = &state.config().stream;
    let mut heartbeat = tokio::time::interval(config.heartbeat());
    heartbeat.reset();
    let start = SseState {
        streamer: Streamer::new(topics),
        pending: Default::default(),
        _slot: slot,
        rx,
        heartbeat,
        closing: state.closing().clone(),
        greeted: false,
        done: false,
    };
    let events = futures_util::stream::unfold(start, |mut st| async move {
        if st.done {
            return None;
        }
        if !st.greeted {
            st.greeted = true;
            let data = json!({"topics": st.streamer.topics.names()}).to_string();
            return Some((Ok(Event::default().event("subscribed").data(data)), st));
        }
        loop {
            if let Some(out) = st.pending.pop_front() {
                return Some((
                    Ok(Event::default().event(out.kind).data(out.sse_data())),
                    st,
                ));
            }
            tokio::select! {
                _ = st.closing.cancelled() => {
                    st.done = true;
                    let data = json!({"reason": "server shutting down"}).to_string();
                    return Some((Ok(Event::default().event("close").data(data)), st));
                }
                event = st.rx.recv() => match event {
                    Ok(event) => {
                        let outs = st.streamer.outputs(&event);
                        st.pending.extend(outs);
                    }
                    Err(RecvError::Lagged(missed)) => {
                        crate::events::StreamClientTooSlow { missed }.emit();
                        st.done = true;
                        let data = json!({"reason": format!("slow consumer: {missed} events dropped; reconnect and read faster")}).to_string();
                        return Some((Ok(Event::default().event("close").data(data)), st));
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = st.heartbeat.tick() => {
                    if !st.streamer.topics.still_signed_in().await {
                        st.done = true;
                        let data = json!({"reason": "the session ended; sign in again"}).to_string();
                        return Some((Ok(Event::default().event("close").data(data)), st));
                    }
                    let data = json!({"ts": tickwatch_schema::db::now_ms()}).to_string();
                    return Some((Ok(Event::default().event("heartbeat").data(data)), st));
                }
            }
        }
    });
    // The named heartbeat events keep the connection busy; the keep-alive comment is a
    // backstop for proxies that only look at bytes.
    Sse::new(events).keep_alive(KeepAlive::new().interval(config.heartbeat() * 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use tickwatch_schema::rule::Condition;
    use tickwatch_schema::wire::AlertTriggered;

    fn caller(admin: bool) -> Caller {
        Caller {
            user_id: 7,
            name: "a".into(),
            admin,
            key_id: 1,
        }
    }

    #[test]
    fn topics_parse_and_match() {
        let mut topics = Topics::new(caller(false), 4);
        topics
            .add(&["ticks:btcusdt".into(), "alerts:mine".into()])
            .expect("valid topics");
        assert_eq!(topics.names(), vec!["ticks:BTCUSDT", "alerts:mine"]);
        assert!(topics.add(&["alerts:*".into()]).is_err(), "admins only");
        assert!(topics.add(&["weather:*".into()]).is_err());
        let tick = |symbol: &str| {
            StreamEvent::Tick(Tick {
                venue: "binance".into(),
                symbol: symbol.into(),
                price: Decimal::ONE,
                qty: Decimal::ONE,
                ts: 1_763_762_400_000,
                trade_id: None,
            })
        };
        assert_eq!(
            topics.wants(&tick("BTCUSDT")).as_deref(),
            Some("ticks:BTCUSDT")
        );
        assert_eq!(topics.wants(&tick("ETHUSDT")), None);
        let alert = |user_id| {
            StreamEvent::Alert(AlertTriggered {
                id: uuid::Uuid::nil(),
                rule_id: 1,
                user_id,
                venue: "binance".into(),
                symbol: "BTCUSDT".into(),
                condition: Condition::CrossingUp,
                threshold: Decimal::ONE,
                price: Decimal::ONE,
                ts: 1_763_762_400_000,
            })
        };
        assert!(topics.wants(&alert(7)).is_some());
        assert!(topics.wants(&alert(8)).is_none(), "another user's alert");
        topics
            .add(&["signals:*".into(), "ticks:*".into()])
            .expect("4 topics");
        assert!(
            topics.add(&["signals:ETHUSDT".into()]).is_err(),
            "over the limit"
        );
    }

    #[test]
    fn a_candle_topic_builds_the_bar_from_ticks_and_forgets_it_when_left() {
        let mut topics = Topics::new(caller(false), 4);
        topics
            .add(&["candles:btcusdt:1h".into()])
            .expect("a candle topic");
        assert_eq!(topics.names(), vec!["candles:BTCUSDT:1h"]);
        assert!(topics.add(&["candles:*:1h".into()]).is_err(), "one symbol");
        assert!(topics.add(&["candles:BTCUSDT:2d".into()]).is_err());
        let mut streamer = Streamer::new(topics);
        let tick = |price: i64, ts: i64| {
            StreamEvent::Tick(Tick {
                venue: "binance".into(),
                symbol: "BTCUSDT".into(),
                price: Decimal::from(price),
                qty: Decimal::ONE,
                ts,
                trade_id: None,
            })
        };
        let hour = 1_763_762_400_000; // 22:00 UTC
        let bar = |outs: Vec<Out>| {
            assert_eq!(outs.len(), 1, "{outs:?}");
            assert!(outs[0].from_ticks);
            let d = &outs[0].data;
            (
                d["open_ts"].as_i64().unwrap_or_default(),
                format!("{} {} {} {}", d["open"], d["high"], d["low"], d["close"]),
            )
        };
        assert_eq!(
            bar(streamer.outputs(&tick(10, hour + 5))),
            (hour, r#""10" "10" "10" "10""#.into())
        );
        assert_eq!(
            bar(streamer.outputs(&tick(12, hour + 6))),
            (hour, r#""10" "12" "10" "12""#.into())
        );
        assert_eq!(
            bar(streamer.outputs(&tick(9, hour + 3_600_000))),
            (hour + 3_600_000, r#""9" "9" "9" "9""#.into()),
            "the next hour starts a bar"
        );
        assert!(
            streamer.outputs(&tick(11, hour + 7)).is_empty(),
            "a late tick of the bar before"
        );
        // A producer's closed bar: a late tick of it builds nothing.
        let closed = StreamEvent::Candle(Candle {
            venue: "binance".into(),
            symbol: "BTCUSDT".into(),
            interval: Interval::H1,
            open_ts: hour + 3_600_000,
            open: Decimal::from(9),
            high: Decimal::from(9),
            low: Decimal::from(9),
            close: Decimal::from(9),
            volume: Decimal::ONE,
            trades: None,
            closed: true,
        });
        assert_eq!(streamer.outputs(&closed).len(), 1, "passed on");
        assert!(
            streamer.outputs(&tick(8, hour + 3_600_009)).is_empty(),
            "a trade of a closed bar"
        );
        assert_eq!(
            bar(streamer.outputs(&tick(8, hour + 7_200_000))),
            (hour + 7_200_000, r#""8" "8" "8" "8""#.into())
        );
        streamer
            .unsubscribe(&["candles:BTCUSDT:1h".into()])
            .expect("left");
        assert!(streamer.outputs(&tick(11, hour + 3_600_001)).is_empty());
        assert!(streamer.forming.is_empty() && streamer.closed_through.is_empty());
    }
}
