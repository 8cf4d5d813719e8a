//! A small client of RabbitMQ's management HTTP API: the broker's own view of queues,
//! exchanges and bindings, used to explain topology mismatches and by tests and DLQ stats.

use serde_json::Value;

use crate::config::BrokerConfig;
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct Management {
    client: reqwest::Client,
    base: String,
    user: String,
    password: String,
    vhost: String,
}

impl Management {
    pub fn new(config: &BrokerConfig) -> Result<Self> {
        let (base, user, password, vhost) = config.management_base()?;
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Management(e.to_string()))?;
        Ok(Management {
            client,
            base,
            user,
            password,
            vhost,
        })
    }

    async fn get(&self, path: &str) -> Result<Option<Value>> {
        let url = format!("{}/api/{path}", self.base);
        let response = self
            .client
            .get(&url)
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .map_err(|e| {
                Error::Management(format!(
                    "{}: {e} (is the rabbitmq_management plugin enabled?)",
                    self.base
                ))
            })?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(Error::Management(format!(
                "GET {url}: {}",
                response.status()
            )));
        }
        let value = response
            .json()
            .await
            .map_err(|e| Error::Management(format!("GET {url}: {e}")))?;
        Ok(Some(value))
    }

    fn vhost(&self) -> String {
        encode(&self.vhost)
    }

    /// One queue as the broker describes it, `None` if it does not exist.
    pub async fn queue(&self, name: &str) -> Result<Option<Value>> {
        self.get(&format!("queues/{}/{}", self.vhost(), encode(name)))
            .await
    }

    /// One exchange as the broker describes it, `None` if it does not exist.
    pub async fn exchange(&self, name: &str) -> Result<Option<Value>> {
        self.get(&format!("exchanges/{}/{}", self.vhost(), encode(name)))
            .await
    }

    /// Every queue of the vhost whose name starts with `prefix`.
    pub async fn queues(&self, prefix: &str) -> Result<Vec<Value>> {
        let all = self.get(&format!("queues/{}", self.vhost())).await?;
        Ok(filter_by_name(all, prefix))
    }

    /// Every binding of the vhost whose source or destination starts with `prefix`.
    pub async fn bindings(&self, prefix: &str) -> Result<Vec<Value>> {
        let all = self.get(&format!("bindings/{}", self.vhost())).await?;
        Ok(all
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter(|b| {
                ["source", "destination"].iter().any(|k| {
                    b.get(*k)
                        .and_then(Value::as_str)
                        .is_some_and(|n| n.starts_with(prefix))
                })
            })
            .collect())
    }
}

fn filter_by_name(list: Option<Value>, prefix: &str) -> Vec<Value> {
    list.and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|q| {
            q.get("name")
                .and_then(Value::as_str)
                .is_some_and(|n| n.starts_with(prefix))
        })
        .collect()
}

/// Percent-encodes a path segment of the management API (vhost `/` → `%2F`, a
/// connection name's spaces and arrows).
pub fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(super::encode("/"), "%2F");
        assert_eq!(super::encode("tw.alerts.q"), "tw.alerts.q");
        assert_eq!(super::encode("a b"), "a%20b");
    }
}
