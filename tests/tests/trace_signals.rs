//! One candle, one trace through the signals role: the producer's publish of the candle,
//! the signals consumer and its publish of the signal, the alerts consumer matching a
//! subscription and publishing the notification, and the notifier's send share a trace,
//! in that order. (Its own test binary: the tracing subscriber is process-global.)

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tickwatch_broker::{Broker, Publisher, Topology};
use tickwatch_gateway::Services;
use tickwatch_gateway::services::subscriptions::NewSubscription;
use tickwatch_schema::names::{Exchange, WorkQueue};
use tickwatch_schema::wire::Grade;
use tickwatch_tests::FakeTelegram;
use tickwatch_tests::db::TestDb;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::layer::SubscriberExt;

const CHAT: i64 = 27182;

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

#[tokio::test]
async fn one_candle_is_one_trace_through_signals_and_alerts_to_the_telegram_send() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    tracing::subscriber::set_global_default(subscriber)
        .expect("the only subscriber of this test binary");

    let candles = tickwatch_tests::fixtures::spy_2015_daily();
    let signals =
        tickwatch_signals::scan(candles.iter().cloned().map(Ok), &Default::default(), &[])
            .expect("scan");
    let first = signals.first().expect("the year has signals").clone();
    // Publish up to the bar that closes with the first signal.
    let upto = candles
        .iter()
        .position(|c| c.open_ts + c.interval.as_ms() == first.ts)
        .expect("the signal's bar");

    let fake = FakeTelegram::start().await.expect("fake telegram");
    let db = TestDb::sqlite().await.expect("sqlite");
    let config = tickwatch_tests::test_broker_config("trsig");
    let broker = Broker::connect(config.clone(), &config.prefix)
        .await
        .expect("broker");
    let topology = Topology::standard(&config).expect("topology");
    topology.apply(&broker).await.expect("apply");
    let services = Services::new(db.conn.clone(), None);
    let user = services
        .create_user(tickwatch_gateway::services::users::NewUser {
            name: "sig".into(),
            telegram_chat_id: Some(CHAT),
            ..Default::default()
        })
        .await
        .expect("user");
    services
        .subscribe(
            user.id,
            NewSubscription {
                kind: first.kind,
                symbol: None,
                min_grade: Grade::D,
            },
        )
        .await
        .expect("subscription");

    let shutdown = CancellationToken::new();
    let roles = [
        tokio::spawn({
            let (b, d, s) = (broker.clone(), db.conn.clone(), shutdown.clone());
            async move {
                tickwatch_signals::adapter::run(&b, d, &Default::default(), s)
                    .await
                    .map_err(|e| e.to_string())
            }
        }),
        tokio::spawn({
            let (b, d, s) = (broker.clone(), db.conn.clone(), shutdown.clone());
            async move {
                tickwatch_alerts::adapter::run(&b, d, &Default::default(), s)
                    .await
                    .map_err(|e| e.to_string())
            }
        }),
        tokio::spawn({
            let notifier_config = tickwatch_notifier::NotifierConfig {
                telegram_bot_token: Some(tickwatch_notifier::Secret::new("1:TEST")),
                telegram_api_url: fake.url(),
                ..Default::default()
            };
            let (b, d, s) = (broker.clone(), db.conn.clone(), shutdown.clone());
            async move {
                tickwatch_notifier::adapter::run(&b, d, &notifier_config, s)
                    .await
                    .map_err(|e| e.to_string())
            }
        }),
    ];
    // The alerts role consumes market data once its subscriptions are loaded.
    let work_queues =
        [WorkQueue::Alerts, WorkQueue::NotifyTelegram].map(|q| broker.names().queue(q));
    assert!(
        tickwatch_tests::wait_for_consumers(&config, &work_queues, Duration::from_secs(30)).await,
        "the alerts role and the notifier consume"
    );
    let publisher = Publisher::start(&broker, "producer");
    for candle in &candles[..=upto] {
        publisher
            .publish(Exchange::Market, candle)
            .await
            .expect("candle");
    }
    assert!(
        fake.wait_for_delivered(1, Duration::from_secs(60)).await,
        "the signal reached the subscriber"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = provider.force_flush();

    let spans = exporter.get_finished_spans().expect("spans");
    // The first signal published is the first signal of the year (the only one, unless a
    // bar closes with several).
    let mut publishes: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.name == "publish" && attribute(s, "kind").as_deref() == Some("signal"))
        .collect();
    publishes.sort_by_key(|s| s.start_time);
    let signal_publish = publishes
        .first()
        .expect("the signals role's publish of the first signal");
    let trace_id = signal_publish.span_context.trace_id();
    let mut trace: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == trace_id)
        .collect();
    trace.sort_by_key(|s| s.start_time);
    let names: Vec<String> = trace
        .iter()
        .map(|s| match (attribute(s, "queue"), attribute(s, "kind")) {
            (Some(q), _) => format!("{} {}", s.name, q.rsplit('.').nth(1).unwrap_or(&q)),
            (None, Some(k)) if s.name == "publish" => format!("publish {k}"),
            _ => s.name.to_string(),
        })
        .collect();
    let wanted = [
        "publish candle",
        "consume signals",
        "publish signal",
        "consume alerts",
        "publish notification",
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

    shutdown.cancel();
    for role in roles {
        role.await.expect("join").expect("clean");
    }
    publisher.close().await;
    services.close().await;
    topology.delete(&broker).await.expect("delete");
    broker.close();
    db.close().await.expect("close");
}
