//! Broker settings: serde defaults, validated at start with a message naming the bad key.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tickwatch_schema::backoff::Backoff;
use tickwatch_schema::names::Names;

use crate::error::{Error, Result};

/// The broker URL used when none is configured.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// `amqp://user:pass@host:port/vhost` (env `AMQP_URL`).
    pub url: String,
    /// Prefix of every exchange and queue name (`tw` → `tw.market`, `tw.alerts.q`, …).
    pub prefix: String,
    /// The management HTTP API (`http://user:pass@host:15672`); derived from `url` if unset.
    pub management_url: Option<String>,
    /// Unacknowledged deliveries a consumer may hold. 1 is slow on quorum queues; a few
    /// times `batch`, so the next batches arrive while one is stored.
    pub prefetch: u16,
    /// One retry tier per entry: the delay before attempt 2, 3, … (milliseconds).
    pub retry_delays_ms: Vec<u64>,
    /// The broker-side guard: a message redelivered this many times goes to the DLQ.
    pub delivery_limit: u32,
    /// Published messages awaiting their confirm at once, per publisher channel.
    pub confirm_window: usize,
    /// How long `publish` waits for the broker's confirm before giving up.
    pub publish_timeout_ms: u64,
    /// A consumer paused (an admin's halt, an open breaker) holds its prefetched
    /// deliveries this long, then hands them back to the queue by closing its channel.
    /// Holding spares the queue's `x-delivery-limit` (every hand-back counts) through
    /// short pauses; handing back keeps a long pause clear of the broker's
    /// `consumer_timeout` (30 min by default), so keep this well under it.
    pub pause_release_ms: u64,
    /// A handler still running after this long counts as a transient failure.
    pub handler_timeout_ms: u64,
    /// Finished deliveries acknowledged together (`multiple = true`); at most `prefetch`.
    pub ack_batch: u16,
    /// The most deliveries the batching roles (signals, alerts, recorder) take at once,
    /// of those the broker has already delivered (`prefetch` caps it). Each batch is one
    /// database transaction.
    pub batch: usize,
    /// The longest a finished delivery waits for its batched ack. Each flush runs the
    /// consumer's checkpoint (the alerts role: a database commit), so a short wait buys
    /// nothing a user sees and costs commits (in two pipeline-bench runs 50 ms sustained
    /// about a tenth more input than 10 ms).
    pub ack_flush_ms: u64,
    /// Reconnect backoff: first delay and cap (milliseconds), with jitter. The cap is a few
    /// seconds: a broker that refuses connections costs little to ask, and a role must be
    /// back promptly when it returns (a 30 s cap kept roles away up to 25 s after a restart).
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Connections in the process-wide pool shared by publishers and consumers.
    pub pool_size: usize,
    /// Work queues split into N shards on a consistent-hash exchange, by role:
    /// `{ alerts = 4 }`. Needs the `rabbitmq_consistent_hash_exchange` plugin.
    pub shards: BTreeMap<String, usize>,
    /// Declare work queues with `x-single-active-consumer`: a second instance of a role
    /// waits as a standby instead of splitting a symbol's messages.
    pub single_active_consumer: bool,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: DEFAULT_URL.to_string(),
            prefix: tickwatch_schema::names::DEFAULT_PREFIX.to_string(),
            management_url: None,
            prefetch: 1024,
            retry_delays_ms: vec![1_000, 10_000, 60_000],
            delivery_limit: 20,
            confirm_window: 1_000,
            publish_timeout_ms: 30_000,
            pause_release_ms: 300_000,
            handler_timeout_ms: 60_000,
            ack_batch: 128,
            batch: 256,
            ack_flush_ms: 50,
            reconnect_min_ms: 200,
            reconnect_max_ms: 3_000,
            pool_size: 2,
            shards: BTreeMap::new(),
            single_active_consumer: true,
        }
    }
}

impl BrokerConfig {
    /// Checks every key; the error names the first bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, why: String| Err(Error::Config(format!("broker.{key}: {why}")));
        if !(self.url.starts_with("amqp://") || self.url.starts_with("amqps://")) {
            return bad(
                "url",
                format!(
                    "`{}` must start with amqp:// or amqps://",
                    mask_url(&self.url)
                ),
            );
        }
        if let Err(e) = self.url.parse::<lapin::uri::AMQPUri>() {
            return bad(
                "url",
                format!("`{}` is not an AMQP URL: {e}", mask_url(&self.url)),
            );
        }
        if let Err(e) = Names::new(self.prefix.clone()) {
            return bad("prefix", e.to_string());
        }
        if let Some(m) = &self.management_url
            && !(m.starts_with("http://") || m.starts_with("https://"))
        {
            return bad(
                "management_url",
                "must start with http:// or https://".into(),
            );
        }
        if self.prefetch == 0 {
            return bad("prefetch", "must be at least 1".into());
        }
        if self.retry_delays_ms.len() > 10 {
            return bad("retry_delays_ms", "at most 10 retry tiers".into());
        }
        if let Some(d) = self
            .retry_delays_ms
            .iter()
            .find(|d| **d == 0 || **d > 86_400_000)
        {
            return bad(
                "retry_delays_ms",
                format!("{d} is not between 1 ms and one day"),
            );
        }
        if self.delivery_limit < 2 {
            return bad("delivery_limit", "must be at least 2".into());
        }
        if self.confirm_window == 0 {
            return bad("confirm_window", "must be at least 1".into());
        }
        if self.publish_timeout_ms == 0 || self.handler_timeout_ms == 0 {
            return bad(
                "publish_timeout_ms/handler_timeout_ms",
                "must be above 0".into(),
            );
        }
        if self.ack_batch == 0 {
            return bad("ack_batch", "must be at least 1".into());
        }
        if self.batch == 0 {
            return bad("batch", "must be at least 1".into());
        }
        if self.reconnect_min_ms == 0 || self.reconnect_min_ms > self.reconnect_max_ms {
            return bad(
                "reconnect_min_ms",
                "must be above 0 and at most reconnect_max_ms".into(),
            );
        }
        if self.pool_size == 0 {
            return bad("pool_size", "must be at least 1".into());
        }
        const ROLES: [&str; 4] = ["signals", "alerts", "recorder", "notifier"];
        for (role, n) in &self.shards {
            if !ROLES.contains(&role.as_str()) {
                return bad(
                    "shards",
                    format!("`{role}` is not a role; use one of {}", ROLES.join(", ")),
                );
            }
            if *n == 0 || *n > 64 {
                return bad("shards", format!("{role} = {n}: use 1 to 64 shards"));
            }
        }
        Ok(())
    }

    pub fn names(&self) -> Result<Names> {
        Names::new(self.prefix.clone()).map_err(Error::from)
    }

    /// The batch size in effect: `batch`, capped by `prefetch`.
    pub fn batch_size(&self) -> usize {
        self.batch.min(usize::from(self.prefetch))
    }

    pub fn reconnect_min(&self) -> Duration {
        Duration::from_millis(self.reconnect_min_ms)
    }

    pub fn reconnect_max(&self) -> Duration {
        Duration::from_millis(self.reconnect_max_ms)
    }

    /// The delays between reconnects: doubling from `reconnect_min_ms` to
    /// `reconnect_max_ms`, each moved by up to ±50 % so that every consumer of a restarted
    /// broker does not come back in the same instant.
    pub fn reconnect_backoff(&self) -> Backoff {
        Backoff::new(self.reconnect_min(), self.reconnect_max(), 2.0, 0.5)
    }

    /// The management API base URL (without credentials), user, password and vhost: the
    /// configured URL, or the AMQP host on port 15672; with the credentials the
    /// management URL carries (`http://user:pass@host:15672`), else the AMQP URL's.
    pub fn management_base(&self) -> Result<(String, String, String, String)> {
        let uri: lapin::uri::AMQPUri = self
            .url
            .parse()
            .map_err(|e| Error::Config(format!("broker.url {}: {e}", mask_url(&self.url))))?;
        let (mut user, mut pass) = (
            uri.authority.userinfo.username.clone(),
            uri.authority.userinfo.password.clone(),
        );
        let vhost = uri.vhost.clone();
        let base = match &self.management_url {
            Some(m) => {
                let (base, userinfo) = split_userinfo(m.trim_end_matches('/'));
                if let Some((u, p)) = userinfo {
                    (user, pass) = (u, p);
                }
                base
            }
            None => format!("http://{}:15672", uri.authority.host),
        };
        Ok((base, user, pass, vhost))
    }
}

impl fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("url", &mask_url(&self.url))
            .field("prefix", &self.prefix)
            .field(
                "management_url",
                &self.management_url.as_deref().map(mask_url),
            )
            .field("prefetch", &self.prefetch)
            .field("retry_delays_ms", &self.retry_delays_ms)
            .field("delivery_limit", &self.delivery_limit)
            .field("confirm_window", &self.confirm_window)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

/// A URL without its userinfo, and the (percent-decoded) user and password it carried.
fn split_userinfo(url: &str) -> (String, Option<(String, String)>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None);
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_string(), None);
    };
    let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    (
        format!("{scheme}://{host}{path}"),
        Some((percent_decode(user), percent_decode(pass))),
    )
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Hides the password of a URL (`amqp://guest:****@host/`), for logs and error messages.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let masked = if userinfo.contains(':') {
                format!("{user}:****")
            } else {
                user.to_string()
            };
            format!("{scheme}://{masked}@{host}{path}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn management_credentials_come_from_its_url_and_stay_out_of_the_base() {
        let mut config = BrokerConfig {
            url: "amqp://app:secret@rabbit:5672/%2f".into(),
            ..Default::default()
        };
        let (base, user, pass, _) = config.management_base().expect("base");
        assert_eq!(
            (base.as_str(), user.as_str(), pass.as_str()),
            ("http://rabbit:15672", "app", "secret")
        );
        config.management_url = Some("https://ops:p%40ss@mgmt.example:443/rabbit/".into());
        let (base, user, pass, _) = config.management_base().expect("base");
        assert_eq!(base, "https://mgmt.example:443/rabbit");
        assert_eq!((user.as_str(), pass.as_str()), ("ops", "p@ss"));
        config.management_url = Some("http://mgmt:15672".into());
        let (base, user, _, _) = config.management_base().expect("base");
        assert_eq!((base.as_str(), user.as_str()), ("http://mgmt:15672", "app"));
    }

    #[test]
    fn defaults_are_valid_and_bad_keys_are_named() {
        BrokerConfig::default()
            .validate()
            .expect("defaults are valid");
        let cases: Vec<(BrokerConfig, &str)> = vec![
            (
                BrokerConfig {
                    url: "http://x".into(),
                    ..Default::default()
                },
                "broker.url",
            ),
            (
                BrokerConfig {
                    prefix: "a b".into(),
                    ..Default::default()
                },
                "broker.prefix",
            ),
            (
                BrokerConfig {
                    prefetch: 0,
                    ..Default::default()
                },
                "broker.prefetch",
            ),
            (
                BrokerConfig {
                    retry_delays_ms: vec![0],
                    ..Default::default()
                },
                "broker.retry_delays_ms",
            ),
            (
                BrokerConfig {
                    ack_batch: 0,
                    ..Default::default()
                },
                "broker.ack_batch",
            ),
            (
                BrokerConfig {
                    shards: [("sigs".to_string(), 2)].into(),
                    ..Default::default()
                },
                "broker.shards",
            ),
        ];
        for (config, key) in cases {
            let err = config.validate().expect_err(key).to_string();
            assert!(err.contains(key), "{err} should name {key}");
        }
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_url("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:****@127.0.0.1:5672/%2f"
        );
        assert_eq!(mask_url("amqp://127.0.0.1"), "amqp://127.0.0.1");
        let shown = format!(
            "{:?}",
            BrokerConfig {
                url: "amqp://u:hunter2@h/".into(),
                ..Default::default()
            }
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn management_url_is_derived_from_the_amqp_url() {
        let config = BrokerConfig {
            url: "amqp://bob:pw@rabbit:5672/prod".into(),
            ..Default::default()
        };
        let (base, user, pass, vhost) = config.management_base().expect("valid");
        assert_eq!(
            (base.as_str(), user.as_str(), pass.as_str(), vhost.as_str()),
            ("http://rabbit:15672", "bob", "pw", "prod")
        );
    }
}
