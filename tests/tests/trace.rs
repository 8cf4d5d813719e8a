//! One tick, one trace: the producer's publish, the alerts consumer (consume, process,
//! store, publish) and the notifier (consume, send) share a trace, linked through the
//! `traceparent` header, in that order. Spans go to an in-memory exporter.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use rust_decimal::Decimal;
use tickwatch_broker::{Broker, Publisher, Topology};
use tickwatch_gateway::Services;
use tickwatch_schema::names::{Exchange, WorkQueue};
use tickwatch_schema::rule::{Condition, RuleSpec};
use tickwatch_schema::wire::Tick;
use tickwatch_tests::FakeTelegram;
use tickwatch_tests::db::TestDb;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;

const CHAT: i64 = 31337;

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

#[tokio::test]
async fn one_tick_is_one_trace_from_the_producer_to_the_telegram_send() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber)
        .expect("the only subscriber of this test binary");

    let fake = FakeTelegram::start().await.expect("fake telegram");
    let db = TestDb::sqlite().await.expect("sqlite");
    let config = tickwatch_tests::test_broker_config("trace");
    let broker = Broker::connect(config.clone(), &config.prefix)
        .await
        .expect("broker");
    let topology = Topology::standard(&config).expect("topology");
    topology.apply(&broker).await.expect("apply");
    let services = Services::new(db.conn.clone(), None);
    let user = services
        .create_user(tickwatch_gateway::services::users::NewUser {
            name: "tracy".into(),
            telegram_chat_id: Some(CHAT),
            ..Default::default()
        })
        .await
        .expect("user");
    services
        .create_rule(
            user.id,
            RuleSpec::price(
                "binance",
                "SOLUSDT",
                Condition::CrossingUp,
                "200".parse().expect("d"),
            ),
        )
        .await
        .expect("rule");

    let shutdown = CancellationToken::new();
    let alerts = tokio::spawn({
        let (b, d, s) = (broker.clone(), db.conn.clone(), shutdown.clone());
        async move { tickwatch_alerts::adapter::run(&b, d, &Default::default(), s).await }
    });
    let notifier_config = tickwatch_notifier::NotifierConfig {
        telegram_bot_token: Some(tickwatch_notifier::Secret::new("1:TEST")),
        telegram_api_url: fake.url(),
        ..Default::default()
    };
    let notifier = tokio::spawn({
        let (b, d, s) = (broker.clone(), db.conn.clone(), shutdown.clone());
        async move { tickwatch_notifier::adapter::run(&b, d, &notifier_config, s).await }
    });

    let publisher = Publisher::start(&broker, "producer");
    let tick = |price: &str, id: &str| Tick {
        venue: "binance".into(),
        symbol: "SOLUSDT".into(),
        price: price.parse::<Decimal>().expect("price"),
        qty: Decimal::ONE,
        ts: tickwatch_schema::db::now_ms(),
        trade_id: Some(id.into()),
    };
    // The alerts role consumes market data once its rules are loaded.
    let work_queues =
        [WorkQueue::Alerts, WorkQueue::NotifyTelegram].map(|q| broker.names().queue(q));
    assert!(
        tickwatch_tests::wait_for_consumers(&config, &work_queues, Duration::from_secs(30)).await,
        "the alerts role and the notifier consume"
    );
    publisher
        .publish(Exchange::Market, &tick("190", "1"))
        .await
        .expect("tick");
    let crossing = publisher
        .publish(Exchange::Market, &tick("201", "2"))
        .await
        .expect("tick");
    assert!(
        fake.wait_for_delivered(1, Duration::from_secs(30)).await,
        "the alert was sent"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = provider.force_flush();

    let spans = exporter.get_finished_spans().expect("spans");
    let root = spans
        .iter()
        .find(|s| {
            s.name == "publish"
                && attribute(s, "message_id").as_deref() == Some(crossing.to_string().as_str())
        })
        .expect("the producer's publish span of the crossing tick");
    let trace_id = root.span_context.trace_id();
    let mut trace: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == trace_id)
        .collect();
    trace.sort_by_key(|s| s.start_time);
    let names: Vec<String> = trace
        .iter()
        .map(|s| match attribute(s, "queue") {
            Some(q) => format!("{} {}", s.name, q.rsplit('.').nth(1).unwrap_or(&q)),
            None => s.name.to_string(),
        })
        .collect();
    let wanted = [
        "publish",
        "consume alerts",
        "process",
        "store",
        "publish",
        "consume telegram",
        "send",
    ];
    let mut at = 0;
    for name in &names {
        if at < wanted.len() && name.starts_with(wanted[at]) {
            at += 1;
        }
    }
    assert_eq!(
        at,
        wanted.len(),
        "one trace holds, in order, {wanted:?}; it holds {names:?}"
    );
    // Each hop is a child of the one before it across the broker.
    let consume_alerts = trace
        .iter()
        .find(|s| {
            s.name == "consume" && attribute(s, "queue").is_some_and(|q| q.ends_with("alerts.q"))
        })
        .expect("consume on the alerts queue");
    assert_eq!(consume_alerts.parent_span_id, root.span_context.span_id());

    shutdown.cancel();
    alerts.await.expect("join").expect("clean");
    notifier.await.expect("join").expect("clean");
    publisher.close().await;
    services.close().await;
    topology.delete(&broker).await.expect("delete");
    broker.close();
    db.close().await.expect("close");
}
