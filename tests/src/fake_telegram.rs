//! A fake Telegram Bot API server for tests: an axum app on `127.0.0.1:0` that teloxide (or
//! any Bot API client) reaches through `Bot::new(token).set_api_url(fake.url())`.
//!
//! - Serves `POST|GET /bot<token>/<method>` with JSON, form-encoded or query parameters;
//!   method names are case-insensitive as in Telegram (teloxide sends `SendMessage`).
//!   Methods: `getMe`, `sendMessage`, `sendPhoto` (multipart; the file kept byte for byte,
//!   the caption as the message's text), `editMessageText` (recorded: [`FakeTelegram::edits`]),
//!   `editMessageReplyMarkup` ([`FakeTelegram::markup_edits`]), `answerCallbackQuery`
//!   ([`FakeTelegram::callback_answers`]),
//!   `deleteMessage`, `sendChatAction`, `setMyCommands`,
//!   `getMyCommands`, `deleteMyCommands`, `getUpdates` (long polling with `offset`,
//!   `limit`, `timeout`), `getWebhookInfo`, `setWebhook`, `deleteWebhook`, `close`,
//!   `logOut`; parameters as JSON, a form, or multipart text fields.
//! - Records every call and, in detail, every `sendMessage` ([`SentMessage`]).
//! - Can be scripted per chat or for all chats ([`Scope`], [`Reply`]): 429 with
//!   `retry_after`, 500, 403 blocked, 400 chat not found, slow answers; or taken down whole
//!   ([`FakeTelegram::set_outage`]).
//! - Checks MarkdownV2 strictly ([`markdown_v2`]) and answers Telegram's 400 when it fails.
//! - Measures the rate limits the client kept ([`FakeTelegram::rates`]) and counts sends
//!   that came back before a 429's `retry_after` had passed.

pub mod markdown_v2;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::Error;

/// The bot's own user id in the fake.
pub const BOT_USER_ID: i64 = 100_000;
/// The longest `getUpdates` wait the fake honours, so a test never hangs on a poll.
const MAX_POLL: Duration = Duration::from_secs(30);

/// Which `sendMessage` calls a scripted reply applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every chat.
    Global,
    /// One chat.
    Chat(i64),
}

/// How the fake answers one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Normal processing (MarkdownV2 check, length check, then the message).
    Ok,
    /// 429 `Too Many Requests: retry after N` with `parameters.retry_after = N` seconds.
    RetryAfter(u32),
    /// 500 `Internal Server Error`.
    ServerError,
    /// 403 `Forbidden: bot was blocked by the user`.
    Blocked,
    /// 403 `Forbidden: user is deactivated`.
    UserDeactivated,
    /// 400 `Bad Request: chat not found`.
    ChatNotFound,
    /// Wait, then answer normally (a slow Telegram; clients may time out).
    Slow(Duration),
    /// Any status with a description, e.g. `(502, "Bad Gateway")`.
    Status(u16, String),
}

/// An accepted `editMessageText`: the message's new text and buttons.
#[derive(Debug, Clone, PartialEq)]
pub struct EditedMessage {
    pub chat_id: i64,
    pub message_id: i64,
    /// The raw `text` parameter.
    pub text: String,
    pub reply_markup: Option<Value>,
}

/// One `sendMessage` call as the fake received it.
#[derive(Debug, Clone)]
pub struct SentMessage {
    pub chat_id: i64,
    /// The raw `text` parameter.
    pub text: String,
    /// The text a user sees (markup parsed away) when the call was accepted.
    pub visible_text: Option<String>,
    pub parse_mode: Option<String>,
    pub disable_notification: bool,
    pub reply_markup: Option<Value>,
    /// When the request arrived (before any scripted delay).
    pub at: Instant,
    /// The HTTP status the fake answered.
    pub status: u16,
    /// The message id given when accepted.
    pub message_id: Option<i64>,
    /// The error description when not accepted.
    pub error: Option<String>,
    /// `sendPhoto`: the uploaded file's bytes (its caption is `text`).
    pub photo: Option<Vec<u8>>,
}

impl SentMessage {
    /// Whether Telegram would have delivered it.
    pub fn accepted(&self) -> bool {
        self.status == 200
    }
}

/// Any call, as received.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method as the client spelled it.
    pub method: String,
    pub params: Map<String, Value>,
    pub at: Instant,
}

impl Call {
    /// Whether this is a call of `method` (case-insensitive, as Telegram matches).
    pub fn is(&self, method: &str) -> bool {
        self.method.eq_ignore_ascii_case(method)
    }
}

/// The limits the client kept, measured on `sendMessage` arrivals (accepted or not).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateReport {
    /// `sendMessage` calls received.
    pub send_calls: usize,
    /// The most `sendMessage` calls to one chat within any 1-second window.
    pub max_per_chat_per_sec: usize,
    /// The chat where that maximum was seen.
    pub busiest_chat: Option<i64>,
    /// The most `sendMessage` calls overall within any 1-second window.
    pub max_global_per_sec: usize,
    /// The most calls to one group chat (negative id) within any 60-second window.
    pub max_group_per_min: usize,
    /// Calls that came before the `retry_after` of a 429 given to their chat had passed.
    pub early_retries: usize,
}

#[derive(Default)]
struct FakeState {
    token: Option<String>,
    next_message_id: i64,
    next_update_id: i64,
    calls: Vec<Call>,
    sent: Vec<SentMessage>,
    /// Accepted `editMessageText` calls: (chat, message id, text, reply_markup).
    edits: Vec<EditedMessage>,
    /// Accepted `editMessageReplyMarkup` calls (their `text` is empty).
    markup_edits: Vec<EditedMessage>,
    /// `answerCallbackQuery` calls: (query id, the notice's text).
    answers: Vec<(String, Option<String>)>,
    scripts: HashMap<Scope, VecDeque<Reply>>,
    persistent: HashMap<Scope, Reply>,
    outage: Option<Reply>,
    latency: Duration,
    retry_not_before: HashMap<i64, Instant>,
    early_retries: usize,
    updates: VecDeque<Value>,
    commands: Value,
}

struct Shared {
    state: Mutex<FakeState>,
    updates_ready: Notify,
    sent_changed: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        // A test that panicked while holding the lock has failed already; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The running fake server; stops when dropped.
#[derive(Debug)]
pub struct FakeTelegram {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Drop for FakeTelegram {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeTelegram {
    /// Starts a fake that accepts any bot token.
    pub async fn start() -> Result<Self, Error> {
        Self::start_inner(None).await
    }

    /// Starts a fake that answers 401 `Unauthorized` to any token but `token`.
    pub async fn start_with_token(token: &str) -> Result<Self, Error> {
        Self::start_inner(Some(token.to_string())).await
    }

    async fn start_inner(token: Option<String>) -> Result<Self, Error> {
        let shared = Arc::new(Shared {
            state: Mutex::new(FakeState {
                token,
                next_message_id: 1,
                next_update_id: 1,
                commands: json!([]),
                ..FakeState::default()
            }),
            updates_ready: Notify::new(),
            sent_changed: Notify::new(),
        });
        let app = Router::new()
            .route("/{*path}", axum::routing::any(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("fake telegram server stopped: {e}");
            }
        });
        Ok(FakeTelegram { addr, shared, task })
    }

    /// The base URL to give the client (`http://127.0.0.1:<port>`, no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues replies for the next `sendMessage` calls in `scope`, one per call; a chat's
    /// own queue is used before the global one.
    pub fn script(&self, scope: Scope, replies: impl IntoIterator<Item = Reply>) {
        self.shared
            .lock()
            .scripts
            .entry(scope)
            .or_default()
            .extend(replies);
    }

    /// Answers every `sendMessage` in `scope` with `reply` until cleared with `None`
    /// (after any queued script).
    pub fn set_persistent(&self, scope: Scope, reply: Option<Reply>) {
        let mut state = self.shared.lock();
        match reply {
            Some(reply) => state.persistent.insert(scope, reply),
            None => state.persistent.remove(&scope),
        };
    }

    /// Answers every call of every method with `reply` (e.g. [`Reply::ServerError`]:
    /// Telegram is down) until cleared with `None`.
    pub fn set_outage(&self, reply: Option<Reply>) {
        self.shared.lock().outage = reply;
    }

    /// Delays every answer by `latency`.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    /// How many calls of `method` were received (case-insensitive).
    pub fn call_count(&self, method: &str) -> usize {
        self.shared
            .lock()
            .calls
            .iter()
            .filter(|c| c.is(method))
            .count()
    }

    /// Every `sendMessage` call, accepted or not, in arrival order.
    pub fn sent(&self) -> Vec<SentMessage> {
        self.shared.lock().sent.clone()
    }

    /// The accepted `sendMessage` calls: what users would have received.
    pub fn delivered(&self) -> Vec<SentMessage> {
        self.shared
            .lock()
            .sent
            .iter()
            .filter(|m| m.accepted())
            .cloned()
            .collect()
    }

    /// The accepted `editMessageText` calls, in order.
    pub fn edits(&self) -> Vec<EditedMessage> {
        self.shared.lock().edits.clone()
    }

    /// The accepted `editMessageReplyMarkup` calls, in order (`text` is empty).
    pub fn markup_edits(&self) -> Vec<EditedMessage> {
        self.shared.lock().markup_edits.clone()
    }

    /// The `answerCallbackQuery` calls: the query id and the notice shown, in order.
    pub fn callback_answers(&self) -> Vec<(String, Option<String>)> {
        self.shared.lock().answers.clone()
    }

    /// Waits until at least `count` button markups were changed, or `timeout` passed.
    pub async fn wait_for_markup_edits(&self, count: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |state| state.markup_edits.len() >= count)
            .await
    }

    /// Waits until at least `count` edits were accepted, or `timeout` passed.
    pub async fn wait_for_edits(&self, count: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |state| state.edits.len() >= count)
            .await
    }

    /// Waits until `done` holds of the recorded calls (checked at each send or edit), or
    /// `timeout` passed; returns whether it held.
    async fn wait_until(&self, timeout: Duration, done: impl Fn(&FakeState) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.sent_changed.notified();
            if done(&self.shared.lock()) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// What one chat's user reads: the visible texts of its accepted messages, in order.
    pub fn texts_to(&self, chat_id: i64) -> Vec<String> {
        self.delivered_to(chat_id)
            .into_iter()
            .filter_map(|m| m.visible_text)
            .collect()
    }

    /// The accepted messages to one chat.
    pub fn delivered_to(&self, chat_id: i64) -> Vec<SentMessage> {
        self.delivered()
            .into_iter()
            .filter(|m| m.chat_id == chat_id)
            .collect()
    }

    /// Waits until at least `count` messages were accepted, or `timeout` passed; returns
    /// whether the count was reached.
    pub async fn wait_for_delivered(&self, count: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |state| {
            state.sent.iter().filter(|m| m.accepted()).count() >= count
        })
        .await
    }

    /// The commands the bot registered with `setMyCommands`.
    pub fn commands(&self) -> Value {
        self.shared.lock().commands.clone()
    }

    /// Feeds a text message from user `from_id` in `chat_id` to `getUpdates`; returns its
    /// `update_id`. A text starting with `/` carries a `bot_command` entity.
    pub fn push_message(&self, chat_id: i64, from_id: i64, text: &str) -> i64 {
        let mut state = self.shared.lock();
        let message_id = state.next_message_id;
        state.next_message_id += 1;
        let mut message = message_json(message_id, chat_id, text, user_json(from_id));
        if text.starts_with('/') {
            let command_len = text
                .split_whitespace()
                .next()
                .map_or(0, |c| c.encode_utf16().count());
            message["entities"] =
                json!([{"type": "bot_command", "offset": 0, "length": command_len}]);
        }
        push_update_locked(&mut state, &self.shared, json!({ "message": message }))
    }

    /// Feeds a callback query (a pressed inline button with `data`) on the bot's message
    /// `message_id` in `chat_id`; returns its `update_id`.
    pub fn push_callback_query(
        &self,
        chat_id: i64,
        from_id: i64,
        message_id: i64,
        data: &str,
    ) -> i64 {
        let mut state = self.shared.lock();
        let id = state.next_update_id;
        let query = json!({
            "id": format!("cbq{id}"),
            "from": user_json(from_id),
            "message": message_json(message_id, chat_id, "…", bot_user_json()),
            "chat_instance": format!("ci{chat_id}"),
            "data": data,
        });
        push_update_locked(&mut state, &self.shared, json!({ "callback_query": query }))
    }

    /// Feeds any update object (its `update_id` is set by the fake); returns the id.
    pub fn push_update(&self, update: Value) -> i64 {
        let mut state = self.shared.lock();
        push_update_locked(&mut state, &self.shared, update)
    }

    /// Updates fed but not yet confirmed by a `getUpdates` offset.
    pub fn pending_updates(&self) -> usize {
        self.shared.lock().updates.len()
    }

    /// The limits the client kept so far.
    pub fn rates(&self) -> RateReport {
        let state = self.shared.lock();
        let mut per_chat: HashMap<i64, Vec<Instant>> = HashMap::new();
        let mut all: Vec<Instant> = Vec::with_capacity(state.sent.len());
        for m in &state.sent {
            per_chat.entry(m.chat_id).or_default().push(m.at);
            all.push(m.at);
        }
        let second = Duration::from_secs(1);
        let mut report = RateReport {
            send_calls: all.len(),
            max_global_per_sec: max_in_window(&mut all, second),
            early_retries: state.early_retries,
            ..RateReport::default()
        };
        for (chat, times) in &mut per_chat {
            let per_sec = max_in_window(times, second);
            if per_sec > report.max_per_chat_per_sec {
                report.max_per_chat_per_sec = per_sec;
                report.busiest_chat = Some(*chat);
            }
            if *chat < 0 {
                report.max_group_per_min = report
                    .max_group_per_min
                    .max(max_in_window(times, Duration::from_secs(60)));
            }
        }
        report
    }
}

/// The most instants within any half-open window `[t, t + window)`.
fn max_in_window(times: &mut [Instant], window: Duration) -> usize {
    times.sort_unstable();
    let mut best = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end].duration_since(times[start]) >= window {
            start += 1;
        }
        best = best.max(end - start + 1);
    }
    best
}

fn push_update_locked(state: &mut FakeState, shared: &Shared, mut update: Value) -> i64 {
    let id = state.next_update_id;
    state.next_update_id += 1;
    update["update_id"] = json!(id);
    state.updates.push_back(update);
    shared.updates_ready.notify_waiters();
    id
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn bot_user_json() -> Value {
    json!({
        "id": BOT_USER_ID,
        "is_bot": true,
        "first_name": "tickwatch",
        "username": "tickwatch_fake_bot",
    })
}

fn user_json(id: i64) -> Value {
    json!({
        "id": id,
        "is_bot": false,
        "first_name": format!("User{id}"),
        "username": format!("user{id}"),
        "language_code": "en",
    })
}

/// Private chats have positive ids, basic groups negative ones, supergroups -100….
fn chat_json(id: i64) -> Value {
    if id >= 0 {
        json!({"id": id, "type": "private", "first_name": format!("User{id}"), "username": format!("user{id}")})
    } else if id <= -1_000_000_000_000 {
        json!({"id": id, "type": "supergroup", "title": format!("Supergroup {id}")})
    } else {
        json!({"id": id, "type": "group", "title": format!("Group {id}")})
    }
}

fn message_json(message_id: i64, chat_id: i64, text: &str, from: Value) -> Value {
    json!({
        "message_id": message_id,
        "date": unix_now(),
        "chat": chat_json(chat_id),
        "from": from,
        "text": text,
    })
}

fn ok(result: Value) -> Response {
    (StatusCode::OK, Json(json!({"ok": true, "result": result}))).into_response()
}

fn error(status: u16, description: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        Json(json!({"ok": false, "error_code": status, "description": description})),
    )
        .into_response()
}

fn retry_after(seconds: u64) -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({
            "ok": false,
            "error_code": 429,
            "description": format!("Too Many Requests: retry after {seconds}"),
            "parameters": {"retry_after": seconds},
        })),
    )
        .into_response()
}

/// A reply that is not `Ok`/`Slow` as (status, description).
fn failure(reply: &Reply) -> Option<(u16, String)> {
    match reply {
        Reply::Ok | Reply::Slow(_) | Reply::RetryAfter(_) => None,
        Reply::ServerError => Some((500, "Internal Server Error".into())),
        Reply::Blocked => Some((403, "Forbidden: bot was blocked by the user".into())),
        Reply::UserDeactivated => Some((403, "Forbidden: user is deactivated".into())),
        Reply::ChatNotFound => Some((400, "Bad Request: chat not found".into())),
        Reply::Status(status, description) => Some((*status, description.clone())),
    }
}

fn answer(reply: &Reply) -> Option<Response> {
    match reply {
        Reply::RetryAfter(seconds) => Some(retry_after(u64::from(*seconds))),
        other => failure(other).map(|(status, description)| error(status, &description)),
    }
}

/// Reads parameters from the query, and from a JSON or form-encoded body.
fn params(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    if let Some(query) = query {
        for (k, v) in form_pairs(query) {
            map.insert(k, Value::String(v));
        }
    }
    if body.is_empty() {
        return Ok(map);
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8".to_string())?;
        for (k, v) in form_pairs(text) {
            map.insert(k, Value::String(v));
        }
    } else if content_type.starts_with("multipart/form-data") {
        // teloxide sends some methods (`setWebhook`, with its optional certificate) as
        // multipart: take the text fields.
        let original = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let boundary = original
            .split(';')
            .find_map(|p| p.trim().strip_prefix("boundary="))
            .map(|b| b.trim_matches('"'))
            .ok_or("multipart without a boundary")?;
        map.extend(multipart_fields(body, boundary)?);
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => map.extend(object),
            _ => return Err("body is not a JSON object".into()),
        }
    }
    Ok(map)
}

/// The text fields of a `multipart/form-data` body, by name.
fn multipart_fields(body: &[u8], boundary: &str) -> Result<Map<String, Value>, String> {
    let text = String::from_utf8_lossy(body);
    let delimiter = format!("--{boundary}");
    let mut fields = Map::new();
    for part in text.split(delimiter.as_str()).skip(1) {
        if part.starts_with("--") {
            break; // the closing delimiter
        }
        let Some((head, value)) = part.split_once("\r\n\r\n") else {
            return Err("a multipart part without headers".into());
        };
        let name = head
            .split(';')
            .find_map(|p| p.trim().strip_prefix("name="))
            .map(|n| n.trim_matches('"').to_string())
            .ok_or("a multipart part without a name")?;
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        fields.insert(name, Value::String(value.to_string()));
    }
    Ok(fields)
}

fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn int_param(params: &Map<String, Value>, name: &str) -> Option<i64> {
    match params.get(name)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn str_param(params: &Map<String, Value>, name: &str) -> Option<String> {
    match params.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn bool_param(params: &Map<String, Value>, name: &str) -> bool {
    match params.get(name) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// A JSON parameter that form bodies carry as a JSON-encoded string.
fn json_param(params: &Map<String, Value>, name: &str) -> Option<Value> {
    match params.get(name)? {
        Value::String(s) => serde_json::from_str(s).ok(),
        Value::Null => None,
        other => Some(other.clone()),
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let Some((token, method)) = path
        .strip_prefix("bot")
        .and_then(|rest| rest.split_once('/'))
    else {
        return error(404, "Not Found");
    };
    let params = match params(&headers, query.as_deref(), &body) {
        Ok(params) => params,
        Err(reason) => return error(400, &format!("Bad Request: {reason}")),
    };
    let (latency, outage) = {
        let mut state = shared.lock();
        state.calls.push(Call {
            method: method.to_string(),
            params: params.clone(),
            at,
        });
        if state.token.as_deref().is_some_and(|t| t != token) {
            return error(401, "Unauthorized");
        }
        (state.latency, state.outage.clone())
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(reply) = outage {
        if let Reply::Slow(delay) = reply {
            tokio::time::sleep(delay).await;
        } else if let Some(response) = answer(&reply) {
            return response;
        }
    }
    match method.to_ascii_lowercase().as_str() {
        "getme" => ok(json!({
            "id": BOT_USER_ID,
            "is_bot": true,
            "first_name": "tickwatch",
            "username": "tickwatch_fake_bot",
            "can_join_groups": true,
            "can_read_all_group_messages": false,
            "supports_inline_queries": false,
            "can_connect_to_business": false,
            "has_main_web_app": false,
        })),
        "sendmessage" => send_message(&shared, &params, at, None).await,
        "sendphoto" => {
            // The photo as uploaded (multipart), byte for byte.
            let photo = multipart_boundary(&headers)
                .and_then(|boundary| multipart_file(&body, &boundary, "photo"));
            match photo {
                Some(bytes) if !bytes.is_empty() => {
                    send_message(&shared, &params, at, Some(bytes)).await
                }
                _ => error(400, "Bad Request: there is no photo in the request"),
            }
        }
        "editmessagetext" => {
            let response = edit_message_text(&params);
            if response.status().is_success() {
                let edit = EditedMessage {
                    chat_id: int_param(&params, "chat_id").unwrap_or_default(),
                    message_id: int_param(&params, "message_id").unwrap_or_default(),
                    text: str_param(&params, "text").unwrap_or_default(),
                    reply_markup: json_param(&params, "reply_markup"),
                };
                shared.lock().edits.push(edit);
                shared.sent_changed.notify_waiters();
            }
            response
        }
        "editmessagereplymarkup" => {
            let (Some(chat_id), Some(message_id)) = (
                int_param(&params, "chat_id"),
                int_param(&params, "message_id"),
            ) else {
                return error(400, "Bad Request: message to edit not found");
            };
            let markup = json_param(&params, "reply_markup");
            let mut message = message_json(message_id, chat_id, "…", bot_user_json());
            if let Some(markup) = markup.clone() {
                message["reply_markup"] = markup;
            }
            shared.lock().markup_edits.push(EditedMessage {
                chat_id,
                message_id,
                text: String::new(),
                reply_markup: markup,
            });
            shared.sent_changed.notify_waiters();
            ok(message)
        }
        "answercallbackquery" => {
            let id = str_param(&params, "callback_query_id").unwrap_or_default();
            shared.lock().answers.push((id, str_param(&params, "text")));
            ok(json!(true))
        }
        "deletemessage" | "sendchataction" | "deletemycommands" | "close" | "logout" => {
            ok(json!(true))
        }
        "deletewebhook" | "setwebhook" => ok(json!(true)),
        "setmycommands" => {
            let commands = json_param(&params, "commands").unwrap_or_else(|| json!([]));
            shared.lock().commands = commands;
            ok(json!(true))
        }
        "getmycommands" => ok(shared.lock().commands.clone()),
        "getwebhookinfo" => {
            let pending = shared.lock().updates.len();
            ok(json!({"url": "", "has_custom_certificate": false, "pending_update_count": pending}))
        }
        "getupdates" => get_updates(&shared, &params).await,
        _ => error(404, "Not Found: method not found"),
    }
}

fn edit_message_text(params: &Map<String, Value>) -> Response {
    let (Some(chat_id), Some(message_id)) = (
        int_param(params, "chat_id"),
        int_param(params, "message_id"),
    ) else {
        return error(400, "Bad Request: message to edit not found");
    };
    let text = str_param(params, "text").unwrap_or_default();
    let visible = match check_text(&text, str_param(params, "parse_mode").as_deref()) {
        Ok(visible) => visible,
        Err(description) => return error(400, &description),
    };
    let mut message = message_json(message_id, chat_id, &visible, bot_user_json());
    if let Some(markup) = json_param(params, "reply_markup") {
        message["reply_markup"] = markup;
    }
    ok(message)
}

/// A photo's caption: empty, or a text of at most 1,024 characters once parsed.
fn check_caption(text: &str, parse_mode: Option<&str>) -> Result<String, String> {
    if text.is_empty() {
        return Ok(String::new());
    }
    let visible = check_text(text, parse_mode)?;
    if visible.encode_utf16().count() > 1024 {
        return Err("Bad Request: message caption is too long".into());
    }
    Ok(visible)
}

/// The visible text, or Telegram's 400 description.
fn check_text(text: &str, parse_mode: Option<&str>) -> Result<String, String> {
    let visible = match parse_mode {
        Some(mode) if mode.eq_ignore_ascii_case("MarkdownV2") => {
            let parsed = markdown_v2::parse(text)
                .map_err(|e| format!("Bad Request: can't parse entities: {e}"))?;
            parsed.text
        }
        // HTML and legacy Markdown are passed through unchecked.
        _ => text.to_string(),
    };
    if visible.trim().is_empty() {
        return Err("Bad Request: message text is empty".into());
    }
    if visible.encode_utf16().count() > 4096 {
        return Err("Bad Request: message is too long".into());
    }
    Ok(visible)
}

/// The boundary of a `multipart/form-data` body.
fn multipart_boundary(headers: &HeaderMap) -> Option<String> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    if !content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return None;
    }
    content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"').to_string())
}

/// The bytes of the multipart part named `name` (a file's contents are binary: the text
/// fields' parser would not keep them).
fn multipart_file(body: &[u8], boundary: &str, name: &str) -> Option<Vec<u8>> {
    let delimiter = format!("\r\n--{boundary}").into_bytes();
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    // The first delimiter has no line break before it.
    let first = format!("--{boundary}").into_bytes();
    let mut rest = &body[find(body, &first)? + first.len()..];
    loop {
        let end = find(rest, &delimiter).unwrap_or(rest.len());
        let part = &rest[..end];
        if let Some(split) = find(part, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&part[..split]);
            let named = head
                .split(';')
                .filter_map(|p| p.trim().strip_prefix("name="))
                .any(|n| n.trim_matches('"') == name);
            if named {
                return Some(part[split + 4..].to_vec());
            }
        }
        if end == rest.len() {
            return None;
        }
        rest = &rest[end + delimiter.len()..];
        if rest.starts_with(b"--") {
            return None;
        }
    }
}

async fn send_message(
    shared: &Shared,
    params: &Map<String, Value>,
    at: Instant,
    photo: Option<Vec<u8>>,
) -> Response {
    let Some(chat_id) = int_param(params, "chat_id") else {
        return error(400, "Bad Request: chat not found");
    };
    let text_param = if photo.is_some() { "caption" } else { "text" };
    let mut record = SentMessage {
        chat_id,
        text: str_param(params, text_param).unwrap_or_default(),
        visible_text: None,
        parse_mode: str_param(params, "parse_mode"),
        disable_notification: bool_param(params, "disable_notification"),
        reply_markup: json_param(params, "reply_markup"),
        at,
        status: 200,
        message_id: None,
        error: None,
        photo,
    };
    let (reply, early) = {
        let mut state = shared.lock();
        let early = state
            .retry_not_before
            .get(&chat_id)
            .and_then(|until| until.checked_duration_since(at))
            .filter(|left| !left.is_zero());
        let scripted = [Scope::Chat(chat_id), Scope::Global]
            .into_iter()
            .find_map(|scope| state.scripts.get_mut(&scope).and_then(VecDeque::pop_front))
            .or_else(|| state.persistent.get(&Scope::Chat(chat_id)).cloned())
            .or_else(|| state.persistent.get(&Scope::Global).cloned())
            .unwrap_or(Reply::Ok);
        if early.is_some() {
            state.early_retries += 1;
        }
        (scripted, early)
    };
    let response = if let Some(left) = early {
        // Telegram answers a send inside the flood wait with another 429.
        let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
        record.status = 429;
        record.error = Some(format!("Too Many Requests: retry after {seconds}"));
        retry_after(seconds)
    } else {
        if let Reply::Slow(delay) = reply {
            tokio::time::sleep(delay).await;
        }
        if let Reply::RetryAfter(seconds) = reply {
            shared
                .lock()
                .retry_not_before
                .insert(chat_id, at + Duration::from_secs(u64::from(seconds)));
            record.status = 429;
            record.error = Some(format!("Too Many Requests: retry after {seconds}"));
            retry_after(u64::from(seconds))
        } else if let Some((status, description)) = failure(&reply) {
            record.status = status;
            record.error = Some(description.clone());
            error(status, &description)
        } else {
            let checked = if record.photo.is_some() {
                check_caption(&record.text, record.parse_mode.as_deref())
            } else {
                check_text(&record.text, record.parse_mode.as_deref())
            };
            match checked {
                Err(description) => {
                    record.status = 400;
                    record.error = Some(description.clone());
                    error(400, &description)
                }
                Ok(visible) => {
                    let message_id = {
                        let mut state = shared.lock();
                        let id = state.next_message_id;
                        state.next_message_id += 1;
                        id
                    };
                    record.message_id = Some(message_id);
                    let mut message = message_json(message_id, chat_id, &visible, bot_user_json());
                    if let Some(markup) = &record.reply_markup {
                        message["reply_markup"] = markup.clone();
                    }
                    record.visible_text = Some(visible);
                    ok(message)
                }
            }
        }
    };
    shared.lock().sent.push(record);
    shared.sent_changed.notify_waiters();
    response
}

async fn get_updates(shared: &Shared, params: &Map<String, Value>) -> Response {
    let offset = int_param(params, "offset").unwrap_or(0);
    let limit = int_param(params, "limit").unwrap_or(100).clamp(1, 100) as usize;
    let timeout =
        Duration::from_secs(int_param(params, "timeout").unwrap_or(0).max(0) as u64).min(MAX_POLL);
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let notified = shared.updates_ready.notified();
        {
            let mut state = shared.lock();
            // An offset confirms every update before it, as in Telegram.
            while state
                .updates
                .front()
                .and_then(|u| u["update_id"].as_i64())
                .is_some_and(|id| id < offset)
            {
                state.updates.pop_front();
            }
            if !state.updates.is_empty() {
                let batch: Vec<Value> = state.updates.iter().take(limit).cloned().collect();
                return ok(Value::Array(batch));
            }
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            return ok(json!([]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_counts_half_open_seconds() {
        let t0 = Instant::now();
        let mut times = vec![
            t0,
            t0 + Duration::from_millis(999),
            t0 + Duration::from_millis(1000),
            t0 + Duration::from_millis(1500),
        ];
        assert_eq!(max_in_window(&mut times, Duration::from_secs(1)), 3);
        let mut spaced = vec![t0, t0 + Duration::from_secs(1), t0 + Duration::from_secs(2)];
        assert_eq!(max_in_window(&mut spaced, Duration::from_secs(1)), 1);
    }

    #[test]
    fn form_decoding() {
        assert_eq!(
            form_pairs("chat_id=5&text=a+b%2Ec%21"),
            vec![
                ("chat_id".into(), "5".into()),
                ("text".into(), "a b.c!".into())
            ]
        );
    }
}
