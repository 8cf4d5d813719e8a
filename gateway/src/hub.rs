//! The live-stream hub of one API process: one private broker queue bound to `tick.#`,
//! `candle.#`, `signal.#` and `alert.#` feeds a bounded tokio broadcast channel that every open stream
//! reads. A stream that falls `buffer` events behind is closed by its handler with a
//! reason — nothing is ever buffered without bound, neither here nor on the broker (the
//! private queue has a length cap and a short TTL: live data goes stale fast).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tickwatch_broker::topology::{Arg, Topology};
use tickwatch_broker::{Broker, ConsumeOptions, Handler, Incoming, consume_with};
use tickwatch_schema::names::{Exchange, routing};
use tickwatch_schema::wire::{AlertTriggered, Candle, MessageKind, Signal, Tick};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::config::StreamConfig;
use crate::error::{Error, Result};

/// One event on the streams.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    Tick(Tick),
    Candle(Candle),
    Signal(Signal),
    Alert(AlertTriggered),
}

impl StreamEvent {
    /// The event's `type` on the stream and its topic family.
    pub fn kind(&self) -> &'static str {
        match self {
            StreamEvent::Tick(_) => "tick",
            StreamEvent::Candle(_) => "candle",
            StreamEvent::Signal(_) => "signal",
            StreamEvent::Alert(_) => "alert",
        }
    }

    pub fn symbol(&self) -> &str {
        match self {
            StreamEvent::Tick(t) => &t.symbol,
            StreamEvent::Candle(c) => &c.symbol,
            StreamEvent::Signal(s) => &s.symbol,
            StreamEvent::Alert(a) => &a.symbol,
        }
    }

    /// The event's JSON body (the wire message itself).
    pub fn data(&self) -> serde_json::Value {
        let value = match self {
            StreamEvent::Tick(t) => serde_json::to_value(t),
            StreamEvent::Candle(c) => serde_json::to_value(c),
            StreamEvent::Signal(s) => serde_json::to_value(s),
            StreamEvent::Alert(a) => serde_json::to_value(a),
        };
        value.unwrap_or(serde_json::Value::Null)
    }
}

/// The in-process fan-out; cheap to clone.
#[derive(Debug, Clone)]
pub struct Hub {
    tx: broadcast::Sender<Arc<StreamEvent>>,
    clients: Arc<AtomicUsize>,
    max_clients: usize,
}

/// A stream's place among the hub's clients; leaving is dropping it.
#[derive(Debug)]
pub struct ClientSlot {
    clients: Arc<AtomicUsize>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        self.clients.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Hub {
    pub fn new(config: &StreamConfig) -> Self {
        let (tx, _) = broadcast::channel(config.buffer);
        Hub {
            tx,
            clients: Arc::new(AtomicUsize::new(0)),
            max_clients: config.max_clients,
        }
    }

    /// Hands an event to every open stream (none open: dropped).
    pub fn publish(&self, event: StreamEvent) {
        let _ = self.tx.send(Arc::new(event));
    }

    /// A place for one more stream and its receiver; `Unavailable` when full.
    pub fn join(&self) -> Result<(ClientSlot, broadcast::Receiver<Arc<StreamEvent>>)> {
        let before = self.clients.fetch_add(1, Ordering::SeqCst);
        let slot = ClientSlot {
            clients: self.clients.clone(),
        };
        if before >= self.max_clients {
            return Err(Error::Unavailable(format!(
                "{} streams are open, the most this server takes; try again later",
                self.max_clients
            )));
        }
        Ok((slot, self.tx.subscribe()))
    }

    /// Streams open now.
    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::SeqCst)
    }

    /// Feeds the hub from a private queue of this process until `shutdown`; reconnects on
    /// its own (the consumer runtime re-declares the queue on each connection).
    pub async fn feed(
        self,
        broker: Broker,
        config: StreamConfig,
        shutdown: CancellationToken,
    ) -> Result<()> {
        let names = broker.names().clone();
        let standard = Topology::standard(broker.config())?;
        let sources = [
            (Exchange::Market, routing::ALL_TICKS),
            (Exchange::Market, routing::ALL_CANDLES),
            (Exchange::Signals, routing::ALL_SIGNALS),
            (Exchange::Alerts, routing::ALL_ALERTS),
        ];
        let wanted: Vec<String> = sources.iter().map(|(e, _)| names.exchange(*e)).collect();
        let mut topology = Topology {
            exchanges: standard
                .exchanges
                .into_iter()
                .filter(|e| wanted.contains(&e.name))
                .collect(),
            ..Topology::default()
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let queue = format!("{}.stream.{}", names.prefix(), &id[..8]);
        let bindings: Vec<(String, String)> = sources
            .iter()
            .map(|(e, key)| (names.exchange(*e), (*key).to_string()))
            .collect();
        let spec = topology.add_private_queue(broker.config(), &queue, &bindings)?;
        if let Some(decl) = topology.queues.iter_mut().find(|q| q.name == queue) {
            decl.args
                .insert("x-max-length".into(), Arg::Int(config.queue_max_length));
            decl.args
                .insert("x-message-ttl".into(), Arg::Int(config.queue_ttl_ms));
        }
        let options = ConsumeOptions {
            declare: Some(Arc::new(topology)),
            ..Default::default()
        };
        tracing::info!(%queue, "stream hub consuming");
        consume_with(&broker, &spec, Feed { hub: self }, shutdown, options).await?;
        Ok(())
    }
}

#[derive(Clone)]
struct Feed {
    hub: Hub,
}

impl Handler for Feed {
    async fn handle(&mut self, message: &Incoming) -> tickwatch_broker::Outcome {
        let event = match message.message_kind() {
            Some(MessageKind::Tick) => StreamEvent::Tick(message.decode::<Tick>()?),
            Some(MessageKind::Candle) => StreamEvent::Candle(message.decode::<Candle>()?),
            Some(MessageKind::Signal) => StreamEvent::Signal(message.decode::<Signal>()?),
            Some(MessageKind::Alert) => StreamEvent::Alert(message.decode::<AlertTriggered>()?),
            _ => return Ok(tickwatch_broker::Handled::Done),
        };
        self.hub.publish(event);
        Ok(tickwatch_broker::Handled::Done)
    }
}
