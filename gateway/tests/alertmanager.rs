//! Alertmanager's webhook end to end: its payloads posted to the API, the notifications
//! through the real RabbitMQ and the notifier role to the fake Telegram, where the admins
//! read them. A repeated post sends nothing new; a resolution is a new message; a group
//! of three is three; a wrong secret is 401 and a bad body a problem+json 400 or 422.

mod common;

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tickwatch_gateway::config::Secret;
use tickwatch_gateway::services::users::{Language, NewUser};
use tickwatch_gateway::{ApiConfig, Services};
use tickwatch_notifier::NotifierConfig;
use tickwatch_tests::{FakeTelegram, wait_until};
use tokio_util::sync::CancellationToken;

use common::{Backend, Server, broker_with_topology, database};

const SECRET: &str = "alertmanager-shared-secret-0123";
const PATH: &str = "/v1/admin/alertmanager";
const EN_ADMIN: i64 = 9_001;
const KO_ADMIN: i64 = 9_002;
const USER: i64 = 9_003;

fn alert(status: &str, name: &str, fingerprint: &str) -> Value {
    json!({
        "status": status,
        "labels": {"alertname": name, "severity": "critical", "instance": "alerts-0"},
        "annotations": {
            "summary": format!("{name} on alerts-0"),
            "runbook_url": format!("https://example.org/runbooks/{name}")
        },
        "startsAt": "2026-12-06T10:00:00.000Z",
        "endsAt": if status == "resolved" { "2026-12-06T10:05:00Z" } else { "0001-01-01T00:00:00Z" },
        "generatorURL": "http://prometheus:9090/graph",
        "fingerprint": fingerprint
    })
}

/// Alertmanager's webhook body (version 4) around `alerts`.
fn post(status: &str, alerts: Vec<Value>) -> Value {
    json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"TickwatchRoleDown\"}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "tickwatch",
        "groupLabels": {"alertname": "TickwatchRoleDown"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanagers_alerts_reach_every_admin_once_per_status() {
    let db = database(Backend::Sqlite).await;
    let (broker, topology) = broker_with_topology("am").await;
    let services = Services::new(db.conn.clone(), Some(broker.clone()));
    for (name, chat, admin, language) in [
        ("root", Some(EN_ADMIN), true, Language::En),
        ("운영자", Some(KO_ADMIN), true, Language::Ko),
        ("no-chat-admin", None, true, Language::En),
        ("trader", Some(USER), false, Language::En),
    ] {
        services
            .create_user(NewUser {
                name: name.into(),
                telegram_chat_id: chat,
                admin,
                language,
                demo: false,
            })
            .await
            .expect("user created");
    }
    let fake = FakeTelegram::start().await.expect("fake Telegram");
    let notifier = {
        let mut notifier = NotifierConfig {
            telegram_bot_token: Some(tickwatch_notifier::Secret::new("123456:AM-TEST")),
            telegram_api_url: fake.url(),
            ..NotifierConfig::default()
        };
        notifier.limits.chat_interval_ms = 50;
        notifier
    };
    let stop = CancellationToken::new();
    let role = tokio::spawn({
        let (broker, db, stop) = (broker.clone(), db.conn.clone(), stop.clone());
        async move { tickwatch_notifier::adapter::run(&broker, db, &notifier, stop).await }
    });
    let server = Server::start(
        services,
        ApiConfig {
            alertmanager_secret: Some(Secret::new(SECRET)),
            ..ApiConfig::default()
        },
    )
    .await;

    // Firing: one message per admin with a chat, in their language.
    let firing = post(
        "firing",
        vec![alert("firing", "TickwatchRoleDown", "a1b2c3d4e5f60718")],
    );
    let (status, body) = server
        .json(Method::POST, PATH, Some(SECRET), Some(firing.clone()))
        .await;
    assert_eq!((status, body.clone()), (202, json!({"notifications": 2})));
    assert!(
        wait_until(Duration::from_secs(20), || async {
            !fake.texts_to(EN_ADMIN).is_empty() && !fake.texts_to(KO_ADMIN).is_empty()
        })
        .await,
        "the admins were told: {:?}",
        fake.delivered()
    );
    assert_eq!(
        fake.texts_to(EN_ADMIN),
        [
            "🔥 FIRING: TickwatchRoleDown (critical)\nTickwatchRoleDown on alerts-0\nRunbook: https://example.org/runbooks/TickwatchRoleDown"
        ]
    );
    assert_eq!(
        fake.texts_to(KO_ADMIN),
        [
            "🔥 발생: TickwatchRoleDown (critical)\nTickwatchRoleDown on alerts-0\n런북: https://example.org/runbooks/TickwatchRoleDown"
        ]
    );

    // Repeated (Alertmanager's repeat_interval, or a retry), then resolved: the repeat
    // sends nothing, the resolution is one new message. A chat's messages keep their
    // order, so once the resolution is there the repeat has been dealt with.
    let (status, _) = server
        .json(Method::POST, PATH, Some(SECRET), Some(firing))
        .await;
    assert_eq!(status, 202);
    let resolved = post(
        "resolved",
        vec![alert("resolved", "TickwatchRoleDown", "a1b2c3d4e5f60718")],
    );
    let (status, _) = server
        .json(Method::POST, PATH, Some(SECRET), Some(resolved))
        .await;
    assert_eq!(status, 202);
    assert!(
        wait_until(Duration::from_secs(20), || async {
            fake.texts_to(EN_ADMIN).len() >= 2 && fake.texts_to(KO_ADMIN).len() >= 2
        })
        .await
    );

    // A group of three.
    let group = post(
        "firing",
        [
            "TickwatchDlqGrowing",
            "TickwatchQueueBacklog",
            "TickwatchTelegramFailing",
        ]
        .iter()
        .enumerate()
        .map(|(i, name)| alert("firing", name, &format!("f{i}")))
        .collect(),
    );
    let (status, body) = server
        .json(Method::POST, PATH, Some(SECRET), Some(group))
        .await;
    assert_eq!((status, body), (202, json!({"notifications": 6})));
    assert!(
        wait_until(Duration::from_secs(20), || async {
            fake.texts_to(EN_ADMIN).len() >= 5 && fake.texts_to(KO_ADMIN).len() >= 5
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let en = fake.texts_to(EN_ADMIN);
    assert_eq!(en.len(), 5, "{en:#?}");
    assert!(
        en[1].starts_with("✅ RESOLVED: TickwatchRoleDown (critical)"),
        "{en:#?}"
    );
    for (text, name) in en[2..].iter().zip([
        "TickwatchDlqGrowing",
        "TickwatchQueueBacklog",
        "TickwatchTelegramFailing",
    ]) {
        assert!(
            text.starts_with(&format!("🔥 FIRING: {name} (critical)")),
            "{text}"
        );
    }
    let ko = fake.texts_to(KO_ADMIN);
    assert_eq!(ko.len(), 5, "{ko:#?}");
    assert!(ko[1].starts_with("✅ 해결: TickwatchRoleDown"), "{ko:#?}");
    assert!(fake.texts_to(USER).is_empty(), "only admins hear of it");

    // Refused: no secret, a wrong one, and bodies that are not Alertmanager's.
    for key in [None, Some("wrong-secret-of-the-same-length!")] {
        let response = server
            .call(Method::POST, PATH, key, Some(post("firing", vec![])))
            .await;
        assert_eq!(response.status().as_u16(), 401);
    }
    let not_json = server
        .http
        .post(server.url(PATH))
        .bearer_auth(SECRET)
        .header("content-type", "application/json")
        .body("{\"status\": ")
        .send()
        .await
        .expect("the API answers");
    assert_eq!(not_json.status().as_u16(), 400);
    assert_eq!(
        not_json.headers()["content-type"],
        "application/problem+json"
    );
    for (bad, field) in [
        (json!({"status": "firing"}), "alerts"),
        (post("burning", vec![]), "status"),
        (
            post("firing", vec![alert("firing", "X", "")]),
            "alerts[0].fingerprint",
        ),
        (
            post(
                "firing",
                vec![json!({"status": "firing", "fingerprint": "f", "startsAt": "yesterday"})],
            ),
            "alerts[0].startsAt",
        ),
        (
            post(
                "firing",
                vec![json!({"status": "firing", "fingerprint": "f"})],
            ),
            "startsAt",
        ),
    ] {
        let response = server
            .call(Method::POST, PATH, Some(SECRET), Some(bad.clone()))
            .await;
        assert_eq!(response.status().as_u16(), 422, "{bad}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.expect("a problem");
        assert!(
            problem.to_string().contains(field),
            "{bad} → {problem} names {field}"
        );
    }

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), role).await;
    server.stop().await;
    topology.delete(&broker).await.expect("cleanup topology");
    broker.close();
    let _ = db.close().await;
}
