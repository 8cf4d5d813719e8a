//! Broker-side faults for tests.

use tickwatch_broker::BrokerConfig;

/// Force-closes, from the broker's side, every connection of `tickwatch/<role>` (what a
/// crashed process leaves behind: its unacknowledged deliveries go back to the queue).
pub async fn kill_connections(config: &BrokerConfig, role: &str) -> usize {
    let (base, user, pass, _) = config.management_base().expect("management url");
    let client = reqwest::Client::new();
    let list: serde_json::Value = client
        .get(format!("{base}/api/connections"))
        .basic_auth(&user, Some(&pass))
        .send()
        .await
        .expect("list connections")
        .json()
        .await
        .expect("connections as JSON");
    let wanted = format!("tickwatch/{role}");
    let mut killed = 0;
    for c in list.as_array().cloned().unwrap_or_default() {
        let name = c
            .pointer("/client_properties/connection_name")
            .and_then(|v| v.as_str());
        // `tickwatch/<role> <instance>`.
        if name.and_then(|n| n.split(' ').next()) != Some(wanted.as_str()) {
            continue;
        }
        let id = c.get("name").and_then(|v| v.as_str()).unwrap_or_default();
        let encoded = tickwatch_broker::management::encode(id);
        let response = client
            .delete(format!("{base}/api/connections/{encoded}"))
            .basic_auth(&user, Some(&pass))
            .header("X-Reason", "test: simulated crash")
            .send()
            .await
            .expect("delete connection");
        if response.status().is_success() {
            killed += 1;
        }
    }
    killed
}

/// What a [`listen`] queue received, decoded as `M`.
#[derive(Debug, Clone)]
pub struct Heard<M>(std::sync::Arc<std::sync::Mutex<Vec<M>>>);

impl<M: Clone> Heard<M> {
    pub fn all(&self) -> Vec<M> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<M> tickwatch_broker::Handler for Heard<M>
where
    M: tickwatch_schema::wire::Message + Clone + Send + Sync + 'static,
{
    async fn handle(&mut self, message: &tickwatch_broker::Incoming) -> tickwatch_broker::Outcome {
        let decoded: M = message.decode()?;
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(decoded);
        Ok(tickwatch_broker::Handled::Done)
    }
}

/// A private queue bound to `exchange` with `key`, consumed until `stop` into what it
/// returns (decoded as `M`), once it consumes: a test's ear on the broker.
pub async fn listen<M>(
    broker: &tickwatch_broker::Broker,
    exchange: tickwatch_schema::names::Exchange,
    key: &str,
    stop: &tokio_util::sync::CancellationToken,
) -> Heard<M>
where
    M: tickwatch_schema::wire::Message + Clone + Send + Sync + 'static,
{
    let mut topology = tickwatch_broker::Topology::default();
    let name = format!(
        "{}.listen.{}",
        broker.config().prefix,
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    let spec = topology
        .add_private_queue(
            broker.config(),
            &name,
            &[(broker.names().exchange(exchange), key.to_string())],
        )
        .expect("a private queue");
    let heard = Heard(Default::default());
    tokio::spawn({
        let (b, h, s) = (broker.clone(), heard.clone(), stop.clone());
        let options = tickwatch_broker::ConsumeOptions {
            declare: Some(std::sync::Arc::new(topology)),
            ..Default::default()
        };
        async move { tickwatch_broker::consume_with(&b, &spec, h, s, options).await }
    });
    let component = format!("consumer:{name}");
    let up = crate::wait_until(std::time::Duration::from_secs(15), async || {
        broker
            .health()
            .snapshot()
            .get(&component)
            .is_some_and(|c| c.up)
    })
    .await;
    assert!(up, "the listener on {name} consumes");
    heard
}
