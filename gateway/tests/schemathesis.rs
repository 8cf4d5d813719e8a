//! The served OpenAPI document against the server that serves it: Schemathesis generates
//! requests from `/openapi.json` — valid ones, which must be accepted, and invalid ones,
//! which must be refused with a documented 4xx — and checks every answer against the
//! document (`--checks all`). Zero failures means a client generated from the document, a
//! fuzzer and the server agree on what is accepted.
//!
//! Needs Schemathesis: `scripts/test.sh` installs it (`scripts/tools.sh`) and passes its
//! path in `TICKWATCH_SCHEMATHESIS`.

mod common;

use std::time::Duration;

use tickwatch_broker::{Broker, Topology};
use tickwatch_gateway::config::RateLimitConfig;
use tickwatch_gateway::{ApiConfig, Services};

use common::{Server, broker_config, user_with_key};

/// What no schema can say, and why it is allowed here.
const CONFIG: &str = r#"
[warnings]
# A run where every request got 401 would pass without testing anything.
fail-on = ["missing_auth"]

[phases.stateful]
enabled = false

# A merge patch is valid or not for the rule it patches (a `threshold` on a channel rule
# is refused), which a schema of the patch alone cannot say.
[[operations]]
include-name = "PATCH /v1/alerts/{id}"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]

# Streams never end: read a couple of events, then move on.
[[operations]]
include-path-regex = "^/v1/stream"
request-timeout = 1
max-stream-events = 2
"#;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn schemathesis() -> String {
    std::env::var("TICKWATCH_SCHEMATHESIS").unwrap_or_else(|_| {
        panic!(
            "Schemathesis is not installed: run scripts/test.sh (it installs it with \
             scripts/tools.sh), or set TICKWATCH_SCHEMATHESIS to its `schemathesis` binary"
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_document_and_the_server_agree() {
    let binary = schemathesis();
    let db = tickwatch_tests::db::TestDb::sqlite()
        .await
        .expect("a SQLite test database");
    let config = broker_config("st");
    let broker = Broker::connect(config.clone(), "st")
        .await
        .expect("RabbitMQ on 127.0.0.1:5672");
    let topology = Topology::standard(&config).expect("topology");
    topology.apply(&broker).await.expect("topology applied");
    let services = Services::new(db.conn.clone(), Some(broker.clone()));
    let (_, key) = user_with_key(&services, "fuzzer", true).await;
    let server = Server::start(
        services,
        ApiConfig {
            // Thousands of requests from one key in seconds.
            rate_limit: RateLimitConfig {
                enabled: false,
                ..RateLimitConfig::default()
            },
            // The fuzzer's bearer token is also Alertmanager's secret, so its valid posts
            // are accepted (the fuzzer has no chat: nothing is sent).
            alertmanager_secret: Some(tickwatch_gateway::config::Secret::new(key.clone())),
            ..ApiConfig::default()
        },
    )
    .await;

    let dir = std::env::temp_dir().join(format!(
        "tickwatch-schemathesis-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).expect("a work directory");
    let config_file = dir.join("schemathesis.toml");
    std::fs::write(&config_file, CONFIG).expect("config written");
    let run = tokio::process::Command::new(&binary)
        .arg("--config-file")
        .arg(&config_file)
        .arg("run")
        .arg(server.url("/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {key}")])
        .args(["--checks", "all"])
        // A deeper run: TICKWATCH_SCHEMATHESIS_EXAMPLES=200 TICKWATCH_SCHEMATHESIS_SEED=…
        .args([
            "--max-examples",
            &env_or("TICKWATCH_SCHEMATHESIS_EXAMPLES", "15"),
        ])
        .args(["--seed", &env_or("TICKWATCH_SCHEMATHESIS_SEED", "7")])
        .args(["--generation-database", "none", "--continue-on-failure"])
        .args(["--request-timeout", "5", "--no-color"])
        .current_dir(&dir)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("Schemathesis finishes within 10 minutes")
        .unwrap_or_else(|e| panic!("running {binary}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let summary: String = stdout
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .collect::<Vec<_>>()
        .join("\n");
    println!("{summary}");
    assert!(
        output.status.success(),
        "Schemathesis found the document and the server disagree:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = topology.delete(&broker).await;
    broker.close();
    db.close().await.expect("cleanup");
}
