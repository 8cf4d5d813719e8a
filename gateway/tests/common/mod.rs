//! Support for the gateway tests: fresh databases, an API served on a free port, users
//! with keys, a broker prefix per test (`twt-<tag>-<uuid8>`) and a control-exchange
//! listener.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Client, Method, Response};
use serde_json::Value;
use tickwatch_broker::topology::{ExchangeDecl, Topology, WorkQueueSpec};
use tickwatch_broker::{Broker, BrokerConfig, ConsumeOptions, Handler, Incoming, consume_with};
use tickwatch_gateway::api::{self, ApiState};
use tickwatch_gateway::services::users::NewUser;
use tickwatch_gateway::{ApiConfig, Services};
use tickwatch_schema::names::Exchange;
use tickwatch_schema::wire::Control;
use tickwatch_tests::db::TestDb;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub async fn database(backend: Backend) -> TestDb {
    match backend {
        Backend::Sqlite => TestDb::sqlite().await.expect("a SQLite test database"),
        Backend::Postgres => TestDb::postgres()
            .await
            .expect("a PostgreSQL test database on 127.0.0.1 (TICKWATCH_TEST_PG_URL)"),
    }
}

/// A broker configuration with its own prefix, so tests never share names.
pub fn broker_config(tag: &str) -> BrokerConfig {
    let id = uuid::Uuid::new_v4().simple().to_string();
    BrokerConfig {
        url: std::env::var("AMQP_URL")
            .unwrap_or_else(|_| tickwatch_broker::config::DEFAULT_URL.into()),
        prefix: format!("twt-{tag}-{}", &id[..8]),
        retry_delays_ms: vec![150],
        prefetch: 64,
        ack_batch: 32,
        reconnect_min_ms: 50,
        reconnect_max_ms: 1_000,
        publish_timeout_ms: 10_000,
        handler_timeout_ms: 5_000,
        ..Default::default()
    }
}

/// A broker on the test prefix of `tag`, with the standard topology applied (delete it at
/// the end).
pub async fn broker_with_topology(tag: &str) -> (Broker, Topology) {
    let config = broker_config(tag);
    let broker = Broker::connect(config.clone(), tag)
        .await
        .expect("RabbitMQ on 127.0.0.1:5672");
    let topology = Topology::standard(&config).expect("topology");
    topology.apply(&broker).await.expect("topology applied");
    (broker, topology)
}

/// An API served on 127.0.0.1:<free port> until dropped (or `stop`).
pub struct Server {
    pub base: String,
    pub state: ApiState,
    pub services: Services,
    pub http: Client,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start(services: Services, config: ApiConfig) -> Server {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let state = ApiState::new(
            services.clone(),
            config,
            Some(Arc::new(|| "tw_up 1\n".to_string())),
        )
        .expect("valid API config");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let (state, shutdown) = (state.clone(), shutdown.clone());
            async move {
                api::serve(state, listener, shutdown).await.expect("serve");
            }
        });
        Server {
            base,
            state,
            services,
            http: Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
            shutdown,
            task: Some(task),
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self.services.close().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with an optional key and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.http.request(method, self.url(path));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("the API answers")
    }

    /// Like `call`, returning the status and the body as JSON (`Null` when empty).
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let response = self.call(method, path, key, body).await;
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A user and a fresh key.
pub async fn user_with_key(services: &Services, name: &str, admin: bool) -> (i64, String) {
    let user = services
        .create_user(NewUser {
            name: name.into(),
            admin,
            ..Default::default()
        })
        .await
        .expect("user created");
    let key = services.create_api_key(user.id).await.expect("key created");
    (user.id, key.key)
}

/// Decoded control messages from a private queue on `<prefix>.control`.
#[derive(Clone, Default)]
pub struct Controls {
    pub seen: Arc<Mutex<Vec<Control>>>,
}

impl Handler for Controls {
    async fn handle(&mut self, message: &Incoming) -> tickwatch_broker::Outcome {
        let control = message.decode::<Control>()?;
        self.seen.lock().expect("lock").push(control);
        Ok(tickwatch_broker::Handled::Done)
    }
}

impl Controls {
    pub fn snapshot(&self) -> Vec<Control> {
        self.seen.lock().expect("lock").clone()
    }

    pub async fn wait_for(&self, count: usize) -> Vec<Control> {
        for _ in 0..200 {
            let seen = self.snapshot();
            if seen.len() >= count {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.snapshot()
    }
}

/// Declares `<prefix>.control` and a private queue on it, consumed into [`Controls`]
/// until `stop` is cancelled. Returns once consuming.
pub async fn listen_to_controls(
    broker: &Broker,
    stop: CancellationToken,
) -> (Controls, Topology, tokio::task::JoinHandle<()>) {
    let names = broker.names().clone();
    let mut topology = Topology::default();
    topology.exchanges.push(ExchangeDecl {
        name: names.exchange(Exchange::Control),
        kind: "fanout".into(),
        args: Default::default(),
    });
    let queue = format!("{}.test-control", names.prefix());
    let spec: WorkQueueSpec = topology
        .add_private_queue(
            broker.config(),
            &queue,
            &[(names.exchange(Exchange::Control), String::new())],
        )
        .expect("private queue");
    let controls = Controls::default();
    let task = tokio::spawn({
        let (broker, controls, topology) = (broker.clone(), controls.clone(), topology.clone());
        async move {
            let options = ConsumeOptions {
                declare: Some(Arc::new(topology)),
                ..Default::default()
            };
            let _ = consume_with(&broker, &spec, controls, stop, options).await;
        }
    });
    wait_consuming(broker, &queue).await;
    (controls, topology, task)
}

/// Waits until this process's consumer of `queue` reports itself consuming.
pub async fn wait_consuming(broker: &Broker, queue: &str) {
    let component = format!("consumer:{queue}");
    for _ in 0..200 {
        if broker
            .health()
            .snapshot()
            .get(&component)
            .is_some_and(|c| c.up)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{component} never started consuming");
}

/// Waits until some consumer whose component name contains `part` is consuming.
pub async fn wait_component(broker: &Broker, part: &str) {
    for _ in 0..200 {
        if broker
            .health()
            .snapshot()
            .iter()
            .any(|(name, c)| name.contains(part) && c.up && c.detail == "consuming")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no consumer matching {part} started");
}

/// Deletes every standard exchange and queue under the broker's (test) prefix; what was
/// never declared is skipped by the broker.
pub async fn delete_standard_topology(broker: &Broker) {
    let topology = Topology::standard(broker.config()).expect("standard topology");
    if let Err(e) = topology.delete(broker).await {
        eprintln!("cleanup of {}: {e}", broker.names().prefix());
    }
}

/// A live-stream WebSocket.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket to `/v1/stream` with `topics`, authenticated by `key`.
pub async fn connect(server: &Server, key: &str, topics: &str) -> Ws {
    let url = format!(
        "{}/v1/stream?topics={topics}&access_token={key}",
        server.base.replace("http://", "ws://")
    );
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the WebSocket opens");
    ws
}

/// The next JSON text message, skipping heartbeats.
pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")
            .expect("stream open")
            .expect("frame");
        if let Message::Text(text) = frame {
            let value: Value = serde_json::from_str(text.as_str()).expect("JSON");
            if value["type"] != "heartbeat" {
                return value;
            }
        }
    }
}
