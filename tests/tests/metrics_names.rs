//! Every metric the Grafana dashboard, the Prometheus alert rules and the operations guide
//! name is served by a running tickwatch: a panel or an alert on a metric nobody records
//! stays silent exactly when it is needed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `tw_…` names in a text, without the histogram series suffixes Prometheus adds.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("tw_") {
        let start = i + at;
        let boundary =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |n| start + n);
        if boundary && end - start > 3 {
            let name = &text[start..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(base.to_string());
        }
        i = end.max(start + 3);
    }
    names
}

/// `tw_…` names the operations guide uses that are no metric.
const NOT_METRICS: [&str; 1] = [
    // The web dashboard's session cookie (`tw_session`, `__Host-tw_session`).
    "tw_session",
];

/// The names the dashboard, the alert rules and the operations guide use.
fn documented_metric_names() -> BTreeSet<String> {
    let root = root();
    let mut names = BTreeSet::new();
    for file in [
        "deploy/grafana/dashboards/tickwatch.json",
        "deploy/prometheus/alerts.yml",
        "docs/operations.md",
    ] {
        let text = std::fs::read_to_string(root.join(file)).expect(file);
        names.extend(metric_names(&text));
    }
    names.retain(|name| !NOT_METRICS.contains(&name.as_str()));
    names
}

/// A free local port for the admin endpoints (asked of the OS, then released).
fn free_local_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

/// `tickwatch run` (every role, SQLite, the local RabbitMQ on the test's own prefix, the
/// alerts queue in two shards, no market data flowing), scraped
/// at its `/metrics` as Prometheus would: every documented metric is there from the start
/// — at zero when nothing happened yet — not only after its first event.
#[tokio::test]
async fn every_metric_in_dashboards_alerts_and_docs_is_served_by_a_running_tickwatch() {
    use tickwatch::config::Config;
    use tickwatch_tests::db::TestDb;
    use tokio_util::sync::CancellationToken;

    let _ = rustls::crypto::ring::default_provider().install_default();
    let documented = documented_metric_names();
    assert!(
        documented.len() > 20,
        "found only {} metric names",
        documented.len()
    );
    let db = TestDb::sqlite().await.expect("sqlite");
    let mut config = Config {
        broker: tickwatch_tests::test_broker_config("metrics"),
        ..Default::default()
    };
    config.database.url = db.url.clone();
    config.api.addr = "127.0.0.1:0".into();
    // `tw_shards_owned` exists for sharded queues only.
    config.broker.shards.insert("alerts".into(), 2);
    // No traffic at all (a webhook nobody posts to, no demo user): every series must be
    // there because the roles register it at start, not because something happened.
    config.run.sources = vec!["webhook".into()];
    config.run.demo_user = false;
    config.producers.webhook.addr = "127.0.0.1:0".parse().expect("addr");
    let admin = free_local_addr();
    config.admin.addr = admin.clone();
    let config = config.resolved().expect("valid configuration");
    let shutdown = CancellationToken::new();
    let run = tokio::spawn({
        let (config, shutdown) = (config.clone(), shutdown.clone());
        async move { tickwatch::app::run(&config, shutdown).await }
    });

    let client = reqwest::Client::new();
    let url = format!("http://{admin}/metrics");
    let mut missing: Vec<String> = documented.iter().cloned().collect();
    let all_served = tickwatch_tests::wait_until(Duration::from_secs(90), async || {
        let Ok(response) = client.get(&url).send().await else {
            return false;
        };
        let Ok(text) = response.text().await else {
            return false;
        };
        let served = metric_names(&text);
        missing = documented
            .iter()
            .filter(|name| !served.contains(*name))
            .cloned()
            .collect();
        missing.is_empty()
    })
    .await;
    shutdown.cancel();
    run.await
        .expect("join")
        .expect("tickwatch run stops cleanly");
    tickwatch_tests::delete_standard_topology(&config.broker).await;
    db.close().await.expect("close");
    assert!(
        all_served,
        "documented but not served at {url}: {missing:#?}"
    );
}

/// Kubernetes' PrometheusRule carries the very rules of `deploy/prometheus/alerts.yml`
/// (its groups, indented two spaces under `spec:`), so an edit of one cannot leave the
/// other behind.
#[test]
fn the_kubernetes_rules_are_the_prometheus_rules() {
    let root = root();
    let rules = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yml"))
        .expect("deploy/prometheus/alerts.yml");
    let wrapped = std::fs::read_to_string(root.join("deploy/k8s/prometheus-rule.yaml"))
        .expect("deploy/k8s/prometheus-rule.yaml");
    let groups = &rules[rules.find("\ngroups:").expect("a `groups:` key") + 1..];
    let indented: String = groups
        .split_inclusive('\n')
        .map(|line| {
            if line.trim().is_empty() {
                line.to_string()
            } else {
                format!("  {line}")
            }
        })
        .collect();
    let spec = &wrapped[wrapped.find("\nspec:\n").expect("a `spec:` key") + "\nspec:\n".len()..];
    assert!(
        spec == indented,
        "deploy/k8s/prometheus-rule.yaml differs from deploy/prometheus/alerts.yml: regenerate it (see its header)"
    );
}
