//! `GET /v1/stream`: live ticks, signals and the caller's alerts, over a WebSocket (an
//! upgrade request) or else as Server-Sent Events (`GET /v1/stream/sse` is SSE only).
//!
//! **Topics**: `ticks:<SYMBOL>` or `ticks:*`, `signals:<SYMBOL>` or `signals:*`,
//! `alerts:mine` (the caller's fired alerts) and, for admins, `alerts:*`. The first ones come
//! from `?topics=a,b`; on a WebSocket the client may change them at any time.
//!
//! **WebSocket protocol** (JSON text frames):
//! - client → server: `{"op":"subscribe","topics":[…]}`, `{"op":"unsubscribe","topics":[…]}`,
//!   `{"op":"ping"}`;
//! - server → client: `{"type":"subscribed","topics":[…]}` after each change,
//!   `{"type":"tick"|"signal"|"alert","topic":"ticks:BTCUSDT","data":{…wire message…}}`,
//!   `{"type":"heartbeat","ts":…}` every `heartbeat_s`, `{"type":"pong"}`,
//!   `{"type":"error","detail":"…"}` for a bad request (the stream stays open).
//!
//! **SSE**: events named `subscribed`, `tick`, `signal`, `alert`, `heartbeat`, and `close`
//! (`{"reason":…}`) right before the server ends the stream.
//!
//! **Slow clients**: the hub keeps the last `stream.buffer` events. A client that falls
//! further behind, or whose socket takes longer than `send_timeout_ms` to take one frame,
//! is closed with a reason — WebSocket close code 1008 and reason `slow consumer: …`, or
//! an SSE `close` event — and may reconnect. Shutting down closes streams with 1001.
//!
//! Browsers cannot set headers on a WebSocket: the API key may also come as
//! `?access_token=`.

use std::collections::BTreeSet;
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
use tokio::sync::broadcast::{Receiver, error::RecvError};
use tokio_util::sync::CancellationToken;
use utoipa::{IntoParams, ToSchema};

use super::problem::Problem;
use super::{ApiState, Params, authorize, bearer};
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
    /// Comma-separated topics: `ticks:BTCUSDT`, `ticks:*`, `signals:*`, `alerts:mine`
    /// (`alerts:*` for admins); at most `stream.max_topics`.
    #[param(
        pattern = "^$|^((ticks|signals):([A-Za-z0-9._/:-]{1,32}|\\*)|alerts:(mine|\\*))(,((ticks|signals):([A-Za-z0-9._/:-]{1,32}|\\*)|alerts:(mine|\\*))){0,31}$"
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
    AlertsMine,
    AlertsAll,
}

/// One topic, as the document's pattern for `topics` spells it.
pub const TOPIC_PATTERN: &str = "(ticks|signals):([A-Za-z0-9._/:-]{1,32}|\\*)|alerts:(mine|\\*)";

impl Topic {
    fn parse(text: &str, caller: &Caller) -> Result<Topic> {
        let bad = || {
            Error::invalid(
                "topics",
                format!(
                    "`{text}` is not a topic; use ticks:<SYMBOL>, ticks:*, signals:<SYMBOL>, signals:* or alerts:mine"
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
}

impl Topics {
    fn new(caller: Caller, max: usize) -> Self {
        Topics {
            caller,
            set: BTreeSet::new(),
            max,
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

    /// The event's topic when this stream wants it.
    fn wants(&self, event: &StreamEvent) -> Option<String> {
        let wanted = |family: fn(Option<String>) -> Topic, symbol: &str| {
            self.set.contains(&family(None)) || self.set.contains(&family(Some(symbol.into())))
        };
        match event {
            StreamEvent::Tick(t) => {
                wanted(Topic::Ticks, &t.symbol).then(|| format!("ticks:{}", t.symbol))
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
}

fn message(event: &StreamEvent, topic: &str) -> String {
    json!({"type": event.kind(), "topic": topic, "data": event.data()}).to_string()
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
    let key = bearer(headers)
        .map(str::to_string)
        .or(q.access_token)
        .ok_or_else(|| Error::Unauthorized("no API key".into()))?;
    let caller = authorize(state, &key).await?;
    let mut topics = Topics::new(caller, state.config().stream.max_topics);
    topics.add(&split_topics(q.topics.as_deref()))?;
    let (slot, rx) = state.hub().join()?;
    Ok((topics, slot, rx))
}

/// One Server-Sent Event as a client reads it: its name and its data (JSON text).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SseEvent {
    /// `subscribed`, `tick`, `signal`, `alert`, `heartbeat` or `close`.
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
    mut topics: Topics,
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
    send!(json!({"type": "subscribed", "topics": topics.names()}).to_string());
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
                            "subscribe" => topics.add(&tidy(op.topics)).map(|()| json!({"type": "subscribed", "topics": topics.names()})),
                            "unsubscribe" => topics.remove(&tidy(op.topics)).map(|()| json!({"type": "subscribed", "topics": topics.names()})),
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
                    if let Some(topic) = topics.wants(&event) {
                        send!(message(&event, &topic));
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
    topics: Topics,
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
        topics,
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
            let data = json!({"topics": st.topics.names()}).to_string();
            return Some((Ok(Event::default().event("subscribed").data(data)), st));
        }
        loop {
            tokio::select! {
                _ = st.closing.cancelled() => {
                    st.done = true;
                    let data = json!({"reason": "server shutting down"}).to_string();
                    return Some((Ok(Event::default().event("close").data(data)), st));
                }
                event = st.rx.recv() => match event {
                    Ok(event) => {
                        if let Some(topic) = st.topics.wants(&event) {
                            let data = json!({"topic": topic, "data": event.data()}).to_string();
                            return Some((Ok(Event::default().event(event.kind()).data(data)), st));
                        }
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
    use tickwatch_schema::wire::{AlertTriggered, Tick};

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
}
