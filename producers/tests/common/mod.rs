//! Test helpers: a scripted fake WebSocket server, fixture and data-file locations.
#![allow(dead_code)] // each test crate uses a different part

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// One thing the fake server does on a connection, in order.
#[derive(Debug, Clone)]
pub enum Step {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Sleep(u64),
    /// Waits until the client sent this many messages (e.g. a subscription).
    AwaitReceived(usize),
    /// A server-initiated close with a close frame.
    Close(u16, &'static str),
    /// An abrupt end: the TCP connection is dropped without a close frame.
    Drop,
    /// Keeps the connection open until the client closes it.
    Hold,
    /// Stops reading (so pings go unanswered) and keeps the socket open this many ms.
    Stall(u64),
}

/// What one accepted connection saw.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub path: String,
    pub received: Vec<Message>,
}

#[derive(Debug, Clone)]
pub struct FakeWs {
    pub base: String,
    pub connections: Arc<Mutex<Vec<Arc<Mutex<Seen>>>>>,
}

impl FakeWs {
    pub fn seen(&self) -> Vec<Seen> {
        self.connections
            .lock()
            .expect("lock")
            .iter()
            .map(|c| c.lock().expect("lock").clone())
            .collect()
    }
}

/// Starts a server on 127.0.0.1:0; connection `i` plays `scripts[i]` (later ones hold).
pub async fn fake_ws(scripts: Vec<Vec<Step>>) -> FakeWs {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind fake ws");
    let base = format!("ws://{}", listener.local_addr().expect("addr"));
    let connections: Arc<Mutex<Vec<Arc<Mutex<Seen>>>>> = Arc::default();
    let conns = connections.clone();
    tokio::spawn(async move {
        let mut index = 0;
        while let Ok((stream, _)) = listener.accept().await {
            let script = scripts
                .get(index)
                .cloned()
                .unwrap_or_else(|| vec![Step::Hold]);
            index += 1;
            let seen = Arc::new(Mutex::new(Seen::default()));
            conns.lock().expect("lock").push(seen.clone());
            tokio::spawn(play(stream, script, seen));
        }
    });
    FakeWs { base, connections }
}

// The handshake callback's type, large error variant included, is tungstenite's.
#[allow(clippy::result_large_err)]
async fn play(stream: tokio::net::TcpStream, script: Vec<Step>, seen: Arc<Mutex<Seen>>) {
    let path_slot = seen.clone();
    let callback = move |req: &Request, resp: Response| {
        path_slot.lock().expect("lock").path = req.uri().to_string();
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let (mut tx, mut rx) = ws.split();
    let recorder = seen.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = rx.next().await {
            recorder.lock().expect("lock").received.push(m);
        }
    });
    for step in script {
        let sent = match step {
            Step::Text(t) => tx.send(Message::text(t)).await,
            Step::Binary(b) => tx.send(Message::binary(b)).await,
            Step::Ping(p) => tx.send(Message::Ping(p.into())).await,
            Step::Sleep(ms) => {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok(())
            }
            Step::AwaitReceived(n) => {
                for _ in 0..500 {
                    if seen.lock().expect("lock").received.len() >= n {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(())
            }
            Step::Close(code, reason) => {
                let frame = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.into(),
                };
                let _ = tx.send(Message::Close(Some(frame))).await;
                let _ = tokio::time::timeout(Duration::from_secs(2), reader).await;
                return;
            }
            Step::Drop => {
                reader.abort();
                return; // dropping both halves closes the socket without a close frame
            }
            Step::Hold => {
                let _ = reader.await;
                return;
            }
            Step::Stall(ms) => {
                reader.abort();
                tokio::time::sleep(Duration::from_millis(ms)).await;
                return;
            }
        };
        if sent.is_err() {
            reader.abort();
            return;
        }
    }
    let _ = reader.await;
}

/// The crate's own fixtures.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A file of the project's data directory (`TICKWATCH_DATA_DIR`).
pub fn data_file(name: &str) -> PathBuf {
    tickwatch_schema::history::data_file(name).unwrap_or_else(|e| panic!("{e}"))
}

/// A fresh temporary directory for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tickwatch-producers-{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// The rows of a history file, split by hand (independent of the code under test).
pub fn rows(path: &std::path::Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .expect("read data file")
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

/// Polls `check` every 10 ms until it holds or `secs` pass.
pub async fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 100 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    check()
}
