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
