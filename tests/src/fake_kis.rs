//! A fake KIS Open API (한국투자증권) for tests: one axum server on `127.0.0.1:0` with the
//! approval-key endpoint and the real-time WebSocket, speaking KIS's wire formats.
//!
//! - `POST /oauth2/Approval` with `{"grant_type":"client_credentials","appkey","secretkey"}`
//!   answers `{"approval_key":"…"}` (or 403 with KIS's error body while refusing).
//! - `GET /tryitout` upgrades to the WebSocket. Each subscription frame
//!   (`{"header":{"approval_key","custtype","tr_type","content-type"},"body":{"input":{"tr_id","tr_key"}}}`)
//!   gets KIS's JSON reply: `SUBSCRIBE SUCCESS`, `ALREADY IN SUBSCRIBE`, `MAX SUBSCRIBE OVER`
//!   past 41 on a session, `invalid approval` for a key it did not issue (or revoked), and
//!   `ALREADY IN USE appkey` for a second session of one app key.
//! - [`FakeKis::trade`] sends `0|H0STCNT0|<count>|…` frames (46 fields a record) to every
//!   session subscribed to the symbol; [`FakeKis::pingpong`] sends a PINGPONG and counts
//!   the echoes; [`FakeKis::disconnect_all`] drops every session.
//! - `POST /oauth2/tokenP` with `{"grant_type":"client_credentials","appkey","appsecret"}`
//!   answers `{"access_token","token_type":"Bearer","expires_in"}`.
//! - `GET /uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice` (`tr_id`
//!   `FHKST03010100`, a bearer token it issued, `appkey`, `appsecret`) answers the newest 100
//!   days of [`FakeKis::set_daily`] in `FID_INPUT_DATE_1 ..= FID_INPUT_DATE_2`, newest first, in
//!   `output2` (a range with none holds one row of empty strings, as KIS sends); an unknown
//!   token gets HTTP 500 with `EGW00123`.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::Error;

/// Fields of one `H0STCNT0` record.
pub const TRADE_FIELDS: usize = 46;

/// One KRX trade as KIS reports it.
#[derive(Debug, Clone)]
pub struct KisTrade {
    pub symbol: String,
    /// `YYYYMMDD`.
    pub date: String,
    /// `HHMMSS`, Seoul time.
    pub time: String,
    pub price: String,
    pub volume: u64,
    /// The day's accumulated volume after this trade.
    pub accumulated: u64,
}

impl KisTrade {
    /// The record's 46 fields joined by `^`, the day's open, high and low (fields 7–9) being
    /// this trade's price: see [`KisTrade::record_in_day`].
    pub fn record(&self) -> String {
        self.record_in_day(&self.price, &self.price, &self.price)
    }

    /// The record with the day's open, high and low so far, as KIS sends them.
    pub fn record_in_day(&self, open: &str, high: &str, low: &str) -> String {
        let volume = self.volume.to_string();
        let accumulated = self.accumulated.to_string();
        let mut fields = vec!["0"; TRADE_FIELDS];
        fields[0] = &self.symbol;
        fields[1] = &self.time;
        fields[2] = &self.price;
        fields[7] = open;
        fields[8] = high;
        fields[9] = low;
        fields[12] = &volume;
        fields[13] = &accumulated;
        fields[33] = &self.date;
        fields[34] = "20"; // 장중, 보통
        fields[35] = "N";
        fields.join("^")
    }
}

#[derive(Default)]
struct Session {
    app_key: String,
    symbols: BTreeSet<String>,
    to_client: Option<mpsc::UnboundedSender<Message>>,
}

#[derive(Default)]
struct Inner {
    approvals: Vec<Value>,
    /// Issued approval key → app key.
    issued: HashMap<String, String>,
    refuse_approvals: bool,
    sessions: HashMap<u64, Session>,
    next_session: u64,
    /// Every subscription frame received, as JSON.
    subscriptions: Vec<Value>,
    pingpong_echoes: usize,
    /// Access tokens issued (`/oauth2/tokenP`).
    tokens: Vec<String>,
    /// Daily bars by symbol, oldest first.
    daily: HashMap<String, Vec<KisDay>>,
    /// Minute bars by symbol, oldest first.
    minutes: HashMap<String, Vec<KisMinute>>,
    /// Daily-chart requests received: their query parameters.
    chart_requests: Vec<HashMap<String, String>>,
    /// Each (symbol, date)'s regular-session open, high and low so far.
    day_figures: HashMap<(String, String), DayFigures>,
}

/// A day's open, high and low so far, as KIS writes prices.
struct DayFigures {
    open: String,
    high: String,
    low: String,
}

/// One day of a symbol for the daily chart (prices and volume as KIS writes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KisDay {
    /// `YYYYMMDD`.
    pub date: String,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub volume: String,
}

/// One minute bar of a symbol for the daily minute chart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KisMinute {
    /// `YYYYMMDD`.
    pub date: String,
    /// `HHMMSS`, the minute's start (Seoul).
    pub time: String,
    pub open: String,
    pub high: String,
    pub low: String,
    pub close: String,
    pub volume: String,
}

impl KisMinute {
    fn row(&self) -> Value {
        json!({
            "stck_bsop_date": self.date, "stck_cntg_hour": self.time, "stck_prpr": self.close,
            "stck_oprc": self.open, "stck_hgpr": self.high, "stck_lwpr": self.low,
            "cntg_vol": self.volume, "acml_tr_pbmn": "0"
        })
    }
}

impl KisDay {
    fn row(&self) -> Value {
        json!({
            "stck_bsop_date": self.date, "stck_clpr": self.close, "stck_oprc": self.open,
            "stck_hgpr": self.high, "stck_lwpr": self.low, "acml_vol": self.volume,
            "acml_tr_pbmn": "0", "flng_cls_code": "00", "prtt_rate": "0.00", "mod_yn": "N",
            "prdy_vrss_sign": "3", "prdy_vrss": "0", "revl_issu_reas": ""
        })
    }
}

/// The running fake; clones share it.
#[derive(Clone)]
pub struct FakeKis {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for FakeKis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeKis").field("addr", &self.addr).finish()
    }
}

impl FakeKis {
    pub async fn start() -> Result<FakeKis, Error> {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = Router::new()
            .route("/oauth2/Approval", axum::routing::post(approval))
            .route("/tryitout", axum::routing::get(upgrade))
            .route("/oauth2/tokenP", axum::routing::post(token))
            .route(
                "/uapi/domestic-stock/v1/quotations/inquire-daily-itemchartprice",
                axum::routing::get(daily_chart),
            )
            .route(
                "/uapi/domestic-stock/v1/quotations/inquire-time-dailychartprice",
                axum::routing::get(minute_chart),
            )
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(FakeKis { addr, inner })
    }

    /// The REST base (`kis.rest_url`).
    pub fn rest_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The WebSocket (`kis.ws_url`).
    pub fn ws_url(&self) -> String {
        format!("ws://{}/tryitout", self.addr)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Approval-key requests received, as JSON bodies.
    pub fn approvals(&self) -> Vec<Value> {
        self.lock().approvals.clone()
    }

    /// Refuse (403) every approval-key request from now on, or stop refusing.
    pub fn refuse_approvals(&self, refuse: bool) {
        self.lock().refuse_approvals = refuse;
    }

    /// Serves these days (any order) for `symbol` on the daily chart.
    pub fn set_daily(&self, symbol: &str, mut days: Vec<KisDay>) {
        days.sort_by(|a, b| a.date.cmp(&b.date));
        self.lock().daily.insert(symbol.to_string(), days);
    }

    /// Serves these minute bars (any order) for `symbol` on the daily minute chart.
    pub fn set_minutes(&self, symbol: &str, mut minutes: Vec<KisMinute>) {
        minutes.sort_by(|a, b| (&a.date, &a.time).cmp(&(&b.date, &b.time)));
        self.lock().minutes.insert(symbol.to_string(), minutes);
    }

    /// Access tokens issued so far.
    pub fn tokens(&self) -> Vec<String> {
        self.lock().tokens.clone()
    }

    /// Forgets the issued access tokens: the next chart request with one gets `EGW00123`.
    pub fn expire_tokens(&self) {
        for token in &mut self.lock().tokens {
            token.clear();
        }
    }

    /// The query parameters of each daily-chart request.
    pub fn chart_requests(&self) -> Vec<HashMap<String, String>> {
        self.lock().chart_requests.clone()
    }

    /// Forgets every issued key: the next subscription with one is `invalid approval`.
    pub fn revoke_keys(&self) {
        self.lock().issued.clear();
    }

    /// Every subscription frame received.
    pub fn subscriptions(&self) -> Vec<Value> {
        self.lock().subscriptions.clone()
    }

    /// Symbols subscribed on the live sessions.
    pub fn subscribed(&self) -> BTreeSet<String> {
        self.lock()
            .sessions
            .values()
            .filter(|s| s.to_client.is_some())
            .flat_map(|s| s.symbols.iter().cloned())
            .collect()
    }

    /// Sends one data frame with these trades to every session subscribed to their
    /// symbol; returns how many sessions got it.
    /// Each record carries the day's open, high and low so far (over this fake's trades of
    /// the day before 15:31, like KIS's regular session).
    pub fn trade(&self, trades: &[KisTrade]) -> usize {
        let mut inner = self.lock();
        let records: Vec<(String, String)> = trades
            .iter()
            .map(|t| {
                let value = |p: &str| p.parse::<f64>().unwrap_or_default();
                let key = (t.symbol.clone(), t.date.clone());
                let day = inner.day_figures.entry(key).or_insert_with(|| DayFigures {
                    open: t.price.clone(),
                    high: t.price.clone(),
                    low: t.price.clone(),
                });
                if t.time.as_str() < "153100" {
                    if value(&t.price) > value(&day.high) {
                        day.high = t.price.clone();
                    }
                    if value(&t.price) < value(&day.low) {
                        day.low = t.price.clone();
                    }
                }
                (
                    t.symbol.clone(),
                    t.record_in_day(&day.open, &day.high, &day.low),
                )
            })
            .collect();
        let mut reached = 0;
        for session in inner.sessions.values() {
            let mine: Vec<String> = records
                .iter()
                .filter(|(symbol, _)| session.symbols.contains(symbol))
                .map(|(_, record)| record.clone())
                .collect();
            if mine.is_empty() {
                continue;
            }
            let frame = format!("0|H0STCNT0|{:03}|{}", mine.len(), mine.join("^"));
            if let Some(tx) = &session.to_client
                && tx.send(Message::Text(frame.into())).is_ok()
            {
                reached += 1;
            }
        }
        reached
    }

    /// Sends a PINGPONG to every session.
    pub fn pingpong(&self) {
        let frame = json!({"header": {"tr_id": "PINGPONG", "datetime": "20260304093000"}});
        for session in self.lock().sessions.values() {
            if let Some(tx) = &session.to_client {
                let _ = tx.send(Message::Text(frame.to_string().into()));
            }
        }
    }

    /// PINGPONG frames the clients echoed back.
    pub fn pingpong_echoes(&self) -> usize {
        self.lock().pingpong_echoes
    }

    /// Drops every session (the TCP connection closes without a close frame).
    pub fn disconnect_all(&self) {
        for session in self.lock().sessions.values_mut() {
            session.to_client = None;
        }
    }
}

async fn approval(
    State(inner): State<Arc<Mutex<Inner>>>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
    inner.approvals.push(body.clone());
    let app_key = body["appkey"].as_str().unwrap_or_default().to_string();
    let well_formed = body["grant_type"] == "client_credentials"
        && !app_key.is_empty()
        && body["secretkey"].as_str().is_some_and(|s| !s.is_empty());
    if inner.refuse_approvals || !well_formed {
        return (
            StatusCode::FORBIDDEN,
            Json(
                json!({"error_description": "유효하지 않은 AppKey입니다.", "error_code": "EGW00103"}),
            ),
        );
    }
    let key = format!("fake-approval-{}", inner.approvals.len());
    inner.issued.insert(key.clone(), app_key);
    (StatusCode::OK, Json(json!({ "approval_key": key })))
}

async fn token(
    State(inner): State<Arc<Mutex<Inner>>>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
    let well_formed = body["grant_type"] == "client_credentials"
        && body["appkey"].as_str().is_some_and(|s| !s.is_empty())
        && body["appsecret"].as_str().is_some_and(|s| !s.is_empty());
    if !well_formed {
        return (
            StatusCode::FORBIDDEN,
            Json(
                json!({"error_description": "유효하지 않은 AppKey입니다.", "error_code": "EGW00103"}),
            ),
        );
    }
    let token = format!("fake-token-{}", inner.tokens.len() + 1);
    inner.tokens.push(token.clone());
    (
        StatusCode::OK,
        Json(
            json!({"access_token": token, "token_type": "Bearer", "expires_in": 86400,
            "access_token_token_expired": "2099-01-01 00:00:00"}),
        ),
    )
}

/// KIS's answer to a chart request without a token it issued (`EGW00123`), or with another
/// `tr_id` or no `appkey`/`appsecret` (`EGW00205`); `None` when the request may go on.
fn refused(
    inner: &Inner,
    headers: &axum::http::HeaderMap,
    tr_id: &str,
) -> Option<(StatusCode, Json<Value>)> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let error = |code: &str, message: &str| {
        Some((
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"rt_cd": "1", "msg_cd": code, "msg1": message})),
        ))
    };
    let token = header("authorization")
        .strip_prefix("Bearer ")
        .unwrap_or_default();
    if token.is_empty() || !inner.tokens.iter().any(|t| t == token) {
        return error("EGW00123", "기간이 만료된 token 입니다.");
    }
    if header("tr_id") != tr_id || header("appkey").is_empty() || header("appsecret").is_empty() {
        return error("EGW00205", "tr_id, appkey or appsecret is wrong");
    }
    None
}

async fn daily_chart(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
    inner.chart_requests.push(query.clone());
    if let Some(refusal) = refused(&inner, &headers, "FHKST03010100") {
        return refusal;
    }
    let error = |status: StatusCode, code: &str, message: &str| {
        (
            status,
            Json(json!({"rt_cd": "1", "msg_cd": code, "msg1": message})),
        )
    };
    let param = |name: &str| query.get(name).cloned().unwrap_or_default();
    if param("FID_COND_MRKT_DIV_CODE") != "J" || param("FID_PERIOD_DIV_CODE") != "D" {
        return error(StatusCode::OK, "OPSQ2001", "입력값이 올바르지 않습니다.");
    }
    let (from, to) = (param("FID_INPUT_DATE_1"), param("FID_INPUT_DATE_2"));
    let mut rows: Vec<Value> = inner
        .daily
        .get(&param("FID_INPUT_ISCD"))
        .map(|days| {
            days.iter()
                .rev()
                .filter(|d| d.date >= from && d.date <= to)
                .take(100)
                .map(KisDay::row)
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        rows.push(json!({"stck_bsop_date": "", "stck_clpr": "", "stck_oprc": "", "stck_hgpr": "",
            "stck_lwpr": "", "acml_vol": "", "acml_tr_pbmn": "", "flng_cls_code": "",
            "prtt_rate": "", "mod_yn": "", "prdy_vrss_sign": "", "prdy_vrss": "", "revl_issu_reas": ""}));
    }
    (
        StatusCode::OK,
        Json(
            json!({"output1": {"stck_shrn_iscd": param("FID_INPUT_ISCD")}, "output2": rows,
            "rt_cd": "0", "msg_cd": "MCA00000", "msg1": "정상처리 되었습니다."}),
        ),
    )
}

/// `GET …/inquire-time-dailychartprice` (`FHKST03010230`): the 120 newest minute bars at or
/// before `FID_INPUT_DATE_1` `FID_INPUT_HOUR_1`, newest first; earlier days only with
/// `FID_PW_DATA_INCU_YN=Y`.
async fn minute_chart(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(query): axum::extract::Query<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
    inner.chart_requests.push(query.clone());
    if let Some(refusal) = refused(&inner, &headers, "FHKST03010230") {
        return refusal;
    }
    let param = |name: &str| query.get(name).cloned().unwrap_or_default();
    let (date, hour) = (param("FID_INPUT_DATE_1"), param("FID_INPUT_HOUR_1"));
    let past_days = param("FID_PW_DATA_INCU_YN") == "Y";
    let rows: Vec<Value> = inner
        .minutes
        .get(&param("FID_INPUT_ISCD"))
        .map(|bars| {
            bars.iter()
                .rev()
                .filter(|m| (&m.date, &m.time) <= (&date, &hour))
                .filter(|m| past_days || m.date == date)
                .take(120)
                .map(KisMinute::row)
                .collect()
        })
        .unwrap_or_default();
    (
        StatusCode::OK,
        Json(json!({"output1": {"stck_prpr": "0"}, "output2": rows,
            "rt_cd": "0", "msg_cd": "MCA00000", "msg1": "정상처리 되었습니다."})),
    )
}

async fn upgrade(
    State(inner): State<Arc<Mutex<Inner>>>,
    ws: WebSocketUpgrade,
) -> impl IntoResponse {
    ws.on_upgrade(move |socket| session(socket, inner))
}

fn reply(tr_key: &str, rt_cd: &str, msg_cd: &str, msg1: &str) -> Message {
    let mut body = json!({"rt_cd": rt_cd, "msg_cd": msg_cd, "msg1": msg1});
    if rt_cd == "0" {
        body["output"] =
            json!({"iv": "0123456789abcdef", "key": "0123456789abcdef0123456789abcdef"});
    }
    Message::Text(
        json!({"header": {"tr_id": "H0STCNT0", "tr_key": tr_key, "encrypt": "N"}, "body": body})
            .to_string()
            .into(),
    )
}

async fn session(mut socket: WebSocket, inner: Arc<Mutex<Inner>>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let id = {
        let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.next_session += 1;
        let id = inner.next_session;
        inner.sessions.insert(
            id,
            Session {
                to_client: Some(tx.clone()),
                ..Session::default()
            },
        );
        id
    };
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(message) => {
                    if socket.send(message).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let answer = on_client_text(&inner, id, text.as_str());
                    if let Some(answer) = answer
                        && socket.send(answer).await.is_err()
                    {
                        break;
                    }
                }
                Some(Ok(_)) => {}
                _ => break,
            },
        }
        // Dropped by `disconnect_all`: end without a close frame.
        let dropped = inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sessions
            .get(&id)
            .is_none_or(|s| s.to_client.is_none());
        if dropped {
            break;
        }
    }
    inner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .sessions
        .remove(&id);
}

fn on_client_text(inner: &Arc<Mutex<Inner>>, id: u64, text: &str) -> Option<Message> {
    let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
    let Ok(frame) = serde_json::from_str::<Value>(text) else {
        return Some(reply(
            "",
            "9",
            "OPSP9999",
            "JSON PARSING ERROR : invalid json format",
        ));
    };
    if frame["header"]["tr_id"] == "PINGPONG" {
        inner.pingpong_echoes += 1;
        return None;
    }
    inner.subscriptions.push(frame.clone());
    let header = &frame["header"];
    let input = &frame["body"]["input"];
    let tr_key = input["tr_key"].as_str().unwrap_or_default().to_string();
    let approval_key = header["approval_key"].as_str().unwrap_or_default();
    let Some(app_key) = inner.issued.get(approval_key).cloned() else {
        return Some(reply(
            &tr_key,
            "1",
            "OPSP0011",
            "invalid approval : NOT FOUND",
        ));
    };
    if header["custtype"] != "P" && header["custtype"] != "B" {
        return Some(reply(
            &tr_key,
            "9",
            "OPSP8998",
            "JSON PARSING ERROR : invalid custtype",
        ));
    }
    if header["tr_type"] != "1" || header["content-type"] != "utf-8" {
        return Some(reply(
            &tr_key,
            "9",
            "OPSP8997",
            "JSON PARSING ERROR : invalid tr_type",
        ));
    }
    if input["tr_id"] != "H0STCNT0" {
        return Some(reply(
            &tr_key,
            "1",
            "OPSP8991",
            "SUBSCRIBE ERROR : invalid tr_id",
        ));
    }
    if tr_key.len() != 6 {
        return Some(reply(
            &tr_key,
            "1",
            "OPSP8992",
            "SUBSCRIBE ERROR : invalid tr_key",
        ));
    }
    let in_use_elsewhere = inner
        .sessions
        .iter()
        .any(|(other, s)| *other != id && s.to_client.is_some() && s.app_key == app_key);
    if in_use_elsewhere {
        return Some(reply(&tr_key, "9", "OPSP8996", "ALREADY IN USE appkey"));
    }
    let session = inner.sessions.get_mut(&id)?;
    session.app_key = app_key;
    if session.symbols.contains(&tr_key) {
        return Some(reply(&tr_key, "1", "OPSP0002", "ALREADY IN SUBSCRIBE"));
    }
    if session.symbols.len() >= 41 {
        return Some(reply(&tr_key, "9", "OPSP0008", "MAX SUBSCRIBE OVER"));
    }
    session.symbols.insert(tr_key.clone());
    Some(reply(&tr_key, "0", "OPSP0000", "SUBSCRIBE SUCCESS"))
}
