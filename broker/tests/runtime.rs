//! The consumer runtime and publisher against the real local RabbitMQ.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::{Fixture, Recording, kill_connections, tick, wait_until};
use tickwatch_broker::publisher::OutgoingMessage;
use tickwatch_broker::{DeadReason, HandlerError, Publisher, consume, dlq, headers};
use tickwatch_schema::names::Exchange;
use tickwatch_schema::wire::Tick;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn fails_twice_then_succeeds_with_growing_delays_and_is_acked() {
    let fx = Fixture::new("retry").await;
    let handler = Recording::new(|_, seen| {
        if seen <= 2 {
            Err(HandlerError::Transient(format!("flaky #{seen}")))
        } else {
            Ok(())
        }
    });
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (b, q, h, s) = (
            fx.broker.clone(),
            fx.queue.clone(),
            handler.clone(),
            shutdown.clone(),
        );
        async move { consume(&b, &q, h, s).await }
    });
    let publisher = Publisher::start(&fx.broker, "test");
    publisher
        .publish(Exchange::Market, &tick("AAA", 1))
        .await
        .expect("published");
    assert!(
        wait_until(WAIT, || handler.calls().len() >= 3).await,
        "three calls"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = handler.calls();
    assert_eq!(calls.len(), 3, "called exactly three times");
    assert_eq!(
        calls.iter().map(|c| c.message.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let gap1 = calls[1].at - calls[0].at;
    let gap2 = calls[2].at - calls[1].at;
    assert!(
        gap1 >= Duration::from_millis(150),
        "first retry waits tier 1: {gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_millis(300),
        "second retry waits tier 2: {gap2:?}"
    );
    assert!(gap2 > gap1, "delays grow: {gap1:?} then {gap2:?}");
    // The retried copy still says where it was first published.
    assert_eq!(calls[2].message.routing_key, "tick.test.AAA");
    shutdown.cancel();
    task.await.expect("join").expect("consumer ends cleanly");
    publisher.close().await;
    assert!(
        fx.wait_depth(&fx.queue.name, (0, 0)).await,
        "acked: nothing left in the queue"
    );
    assert!(
        fx.wait_depth(&fx.queue.dlq, (0, 0)).await,
        "nothing dead-lettered"
    );
    fx.cleanup().await;
}

#[tokio::test]
async fn always_failing_ends_in_the_dlq_exhausted_with_full_headers() {
    let fx = Fixture::new("exhaust").await;
    let handler = Recording::new(|_, _| Err(HandlerError::Transient("database is down".into())));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (b, q, h, s) = (
            fx.broker.clone(),
            fx.queue.clone(),
            handler.clone(),
            shutdown.clone(),
        );
        async move { consume(&b, &q, h, s).await }
    });
    let publisher = Publisher::start(&fx.broker, "test");
    let id = publisher
        .publish(Exchange::Market, &tick("BBB", 7))
        .await
        .expect("published");
    assert!(
        wait_until(WAIT, || handler.calls().len() >= 4).await,
        "1 + 3 tiers"
    );
    let mut dead = Vec::new();
    for _ in 0..100 {
        dead = dlq::show(&fx.broker, &fx.queue.dlq, 10)
            .await
            .expect("show");
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(handler.calls().len(), 4, "no attempt after the last tier");
    assert_eq!(dead.len(), 1);
    let m = &dead[0];
    assert_eq!(m.message_id.as_deref(), Some(id.to_string().as_str()));
    assert_eq!(m.reason, DeadReason::Exhausted.as_str());
    assert_eq!(m.error.as_deref(), Some("database is down"));
    assert_eq!(m.attempts, Some(4));
    assert_eq!(
        m.original_exchange.as_deref(),
        Some(format!("{}.market", fx.broker.config().prefix).as_str())
    );
    assert_eq!(m.original_routing_key.as_deref(), Some("tick.test.BBB"));
    assert!(m.first_failure_ms.is_some() && m.dead_at_ms >= m.first_failure_ms);
    assert_eq!(m.body["symbol"], "BBB");
    shutdown.cancel();
    task.await.expect("join").expect("clean");
    publisher.close().await;
    fx.cleanup().await;
}

#[tokio::test]
async fn malformed_json_goes_to_the_dlq_at_once_and_the_queue_keeps_flowing() {
    let fx = Fixture::new("poison").await;
    let handler = Recording::new(|m, _| m.decode::<Tick>().map(|_| ()));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (b, q, h, s) = (
            fx.broker.clone(),
            fx.queue.clone(),
            handler.clone(),
            shutdown.clone(),
        );
        async move { consume(&b, &q, h, s).await }
    });
    let publisher = Publisher::start(&fx.broker, "test");
    let market = format!("{}.market", fx.broker.config().prefix);
    let mut bad_headers = lapin_free_headers();
    headers::set_i64(&mut bad_headers, headers::HEADER_SCHEMA, 1);
    let poison = OutgoingMessage {
        exchange: market.clone(),
        routing_key: "tick.test.CCC".into(),
        body: b"{\"venue\":\"test\",\"symbol\":".to_vec(),
        properties: tickwatch_broker::publisher::json_properties("tick", bad_headers),
        mandatory: true,
    };
    publisher
        .publish_raw(poison)
        .await
        .expect("poison published");
    let mut wrong_schema = lapin_free_headers();
    headers::set_i64(&mut wrong_schema, headers::HEADER_SCHEMA, 2);
    let body = serde_json::to_vec(&tick("CCC", 2)).expect("json");
    publisher
        .publish_raw(OutgoingMessage {
            exchange: market,
            routing_key: "tick.test.CCC".into(),
            body,
            properties: tickwatch_broker::publisher::json_properties("tick", wrong_schema),
            mandatory: true,
        })
        .await
        .expect("published");
    for seq in 3..=5 {
        publisher
            .publish(Exchange::Market, &tick("CCC", seq))
            .await
            .expect("good one");
    }
    let mut dead = Vec::new();
    for _ in 0..100 {
        dead = dlq::show(&fx.broker, &fx.queue.dlq, 10)
            .await
            .expect("show");
        if dead.len() >= 2 && handler.calls().len() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead.len(), 2, "both poison messages dead-lettered");
    assert!(
        dead.iter()
            .all(|m| m.reason == "invalid" && m.attempts == Some(1))
    );
    assert!(
        dead[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("malformed JSON"),
        "{:?}",
        dead[0].error
    );
    assert!(
        dead[1]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("schema version"),
        "{:?}",
        dead[1].error
    );
    // The malformed one reached the handler once (which refused it); the wrong-schema one
    // never did; the three good ones behind them were processed.
    let good: Vec<_> = handler
        .calls()
        .into_iter()
        .filter(|c| c.message.decode::<Tick>().is_ok())
        .collect();
    assert_eq!(good.len(), 3);
    assert_eq!(handler.calls().len(), 4);
    shutdown.cancel();
    task.await.expect("join").expect("clean");
    publisher.close().await;
    fx.cleanup().await;
}

fn lapin_free_headers() -> tickwatch_broker::publisher::Headers {
    tickwatch_broker::publisher::Headers::default()
}

#[tokio::test]
async fn a_panicking_handler_is_retried_and_the_consumer_survives() {
    let fx = Fixture::new("panic").await;
    let handler = Recording::new(|_, seen| {
        if seen == 1 {
            panic!("boom");
        }
        Ok(())
    });
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (b, q, h, s) = (
            fx.broker.clone(),
            fx.queue.clone(),
            handler.clone(),
            shutdown.clone(),
        );
        async move { consume(&b, &q, h, s).await }
    });
    let publisher = Publisher::start(&fx.broker, "test");
    publisher
        .publish(Exchange::Market, &tick("DDD", 1))
        .await
        .expect("published");
    publisher
        .publish(Exchange::Market, &tick("DDD", 2))
        .await
        .expect("published");
    assert!(
        wait_until(WAIT, || handler.calls().len() >= 4).await,
        "each panics once, then succeeds"
    );
    assert!(!task.is_finished(), "the consumer is still running");
    shutdown.cancel();
    task.await.expect("join").expect("clean");
    publisher.close().await;
    fx.cleanup().await;
}

#[tokio::test]
async fn an_unroutable_message_is_an_error_not_a_silent_drop() {
    let fx = Fixture::new("route").await;
    let publisher = Publisher::start(&fx.broker, "test");
    let candle_key = OutgoingMessage {
        exchange: format!("{}.market", fx.broker.config().prefix),
        routing_key: "candle.test.EEE.1m".into(),
        body: b"{}".to_vec(),
        properties: tickwatch_broker::publisher::json_properties("candle", Default::default()),
        mandatory: true,
    };
    let err = publisher
        .publish_raw(candle_key)
        .await
        .expect_err("no queue binds candles here");
    assert!(
        matches!(err, tickwatch_broker::Error::Unroutable { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("candle.test.EEE.1m"));
    publisher.close().await;
    fx.cleanup().await;
}

/// A broker nack (here a full queue with `reject-publish` overflow refusing a message)
/// reaches the caller as an error naming the route: the message is not the broker's.
#[tokio::test]
async fn a_broker_nack_is_an_error_to_the_caller() {
    use tickwatch_broker::topology::{Arg, QueueDecl};

    let fx = Fixture::new("nack").await;
    let queue = format!("{}.full.q", fx.broker.config().prefix);
    let mut full = tickwatch_broker::Topology::default();
    full.queues.push(QueueDecl {
        name: queue.clone(),
        // A classic queue: it refuses at once (a quorum queue applies its limit a little
        // after the fact).
        args: [
            ("x-max-length".to_string(), Arg::Int(1)),
            ("x-overflow".to_string(), Arg::Str("reject-publish".into())),
        ]
        .into(),
        private: false,
    });
    full.apply(&fx.broker).await.expect("apply");
    let publisher = Publisher::start(&fx.broker, "test");
    let message = || OutgoingMessage {
        exchange: String::new(),
        routing_key: queue.clone(),
        body: b"{}".to_vec(),
        properties: tickwatch_broker::publisher::json_properties("tick", Default::default()),
        mandatory: true,
    };
    publisher
        .publish_raw(message())
        .await
        .expect("room for one");
    let err = publisher
        .publish_raw(message())
        .await
        .expect_err("the full queue refuses the second");
    assert!(
        matches!(err, tickwatch_broker::Error::Nacked { .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&queue), "{err}");
    assert!(
        err.is_retryable(),
        "room may free up: the caller may try again"
    );
    assert!(
        fx.wait_depth(&queue, (1, 0)).await,
        "only the first was taken"
    );
    publisher.close().await;
    let _ = full.delete(&fx.broker).await;
    fx.cleanup().await;
}

#[tokio::test]
async fn no_message_is_lost_when_connections_are_killed_twice() {
    const N: u64 = 10_000;
    let fx = Fixture::new("loss").await;
    let seen: std::sync::Arc<std::sync::Mutex<BTreeMap<String, u32>>> = Default::default();
    let handler = {
        let seen = seen.clone();
        Recording::new(move |m, _| {
            if let Some(id) = &m.message_id {
                *seen.lock().expect("lock").entry(id.clone()).or_default() += 1;
            }
            Ok(())
        })
    };
    // Keep the recorder from holding every call: only the count map matters here.
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (b, q, h, s) = (
            fx.broker.clone(),
            fx.queue.clone(),
            handler.clone(),
            shutdown.clone(),
        );
        async move { consume(&b, &q, h, s).await }
    });
    let publisher = Publisher::start(&fx.broker, "test");
    // Publishing runs paced in its own task while this test's connections are killed
    // twice from the broker side, so the kills land with messages in flight both ways.
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let kills_done = std::sync::Arc::new(tokio::sync::Notify::new());
    let sender = tokio::spawn({
        let (publisher, progress, kills_done) =
            (publisher.clone(), progress.clone(), kills_done.clone());
        async move {
            let mut ids = HashSet::new();
            let mut confirms = Vec::new();
            for seq in 0..N {
                if seq == N - 1_000 {
                    // Keep the stream going until both kills happened.
                    kills_done.notified().await;
                }
                confirms.push(
                    publisher
                        .send(Exchange::Market, &tick("LOSS", seq))
                        .await
                        .expect("enqueued"),
                );
                progress.store(seq + 1, std::sync::atomic::Ordering::SeqCst);
                if seq % 4 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                if confirms.len() >= 500 {
                    for c in confirms.drain(..) {
                        ids.insert(c.wait().await.expect("confirmed despite the kills"));
                    }
                }
            }
            for c in confirms.drain(..) {
                ids.insert(c.wait().await.expect("confirmed"));
            }
            ids
        }
    });
    let config = fx.broker.config().clone();
    let mut kills = 0;
    for threshold in [1_000, 4_000] {
        while progress.load(std::sync::atomic::Ordering::SeqCst) < threshold {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The management API lists a new connection only after its stats arrive.
        for _ in 0..300 {
            let n = kill_connections(&config).await;
            if n > 0 {
                kills += n;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    kills_done.notify_one();
    let ids = sender.await.expect("sender");
    assert!(kills >= 2, "connections were killed ({kills})");
    assert_eq!(ids.len() as u64, N);
    let all_arrived = wait_until(Duration::from_secs(60), || {
        let seen = seen.lock().expect("lock");
        ids.iter().all(|id| seen.contains_key(&id.to_string()))
    })
    .await;
    let seen = seen.lock().expect("lock").clone();
    let missing = ids
        .iter()
        .filter(|id| !seen.contains_key(&id.to_string()))
        .count();
    let duplicates: u32 = seen.values().map(|n| n - 1).sum();
    println!(
        "loss test: {N} published, {} distinct received, {duplicates} duplicate deliveries, {kills} connections killed",
        seen.len()
    );
    assert!(all_arrived, "{missing} messages never arrived");
    shutdown.cancel();
    task.await.expect("join").expect("clean");
    publisher.close().await;
    fx.cleanup().await;
}

#[tokio::test]
async fn shutdown_mid_stream_leaves_nothing_unacked_and_loses_nothing() {
    const N: u64 = 400;
    let fx = Fixture::new("shutdown").await;
    let handler = Recording::new(|_, _| {
        std::thread::sleep(Duration::from_millis(2));
        Ok(())
    });
    let publisher = Publisher::start(&fx.broker, "test");
    let mut confirms = Vec::new();
    for seq in 0..N {
        confirms.push(
            publisher
                .send(Exchange::Market, &tick("STOP", seq))
                .await
                .expect("enqueued"),
        );
    }
    for c in confirms {
        c.wait().await.expect("confirmed");
    }
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (b, q, h, s) = (
            fx.broker.clone(),
            fx.queue.clone(),
            handler.clone(),
            shutdown.clone(),
        );
        async move { consume(&b, &q, h, s).await }
    });
    assert!(wait_until(WAIT, || handler.calls().len() >= 100).await);
    shutdown.cancel();
    task.await.expect("join").expect("clean shutdown");
    let processed = handler.calls().len() as u64;
    assert!(processed < N, "stopped mid-stream ({processed})");
    let mut depth = (0, 0);
    for _ in 0..60 {
        depth = fx.depth(&fx.queue.name).await;
        if depth.1 == 0 && depth.0 + processed == N {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(depth.1, 0, "nothing unacked after shutdown");
    assert_eq!(
        depth.0 + processed,
        N,
        "processed + still queued = published"
    );
    publisher.close().await;
    fx.cleanup().await;
}

#[tokio::test]
async fn replayed_dead_letters_arrive_exactly_as_published() {
    let fx = Fixture::new("replay").await;
    let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let handler = {
        let fail = fail.clone();
        Recording::new(move |_, _| {
            if fail.load(std::sync::atomic::Ordering::SeqCst) {
                Err(HandlerError::Rejected("downstream refused".into()))
            } else {
                Ok(())
            }
        })
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (b, q, h, s) = (
            fx.broker.clone(),
            fx.queue.clone(),
            handler.clone(),
            shutdown.clone(),
        );
        async move { consume(&b, &q, h, s).await }
    });
    let publisher = Publisher::start(&fx.broker, "test");
    for seq in 0..3 {
        publisher
            .publish(Exchange::Market, &tick("RPL", seq))
            .await
            .expect("published");
    }
    assert!(wait_until(WAIT, || handler.calls().len() >= 3).await);
    let originals: Vec<_> = handler.calls().into_iter().map(|c| c.message).collect();
    let mut summary = Vec::new();
    for _ in 0..50 {
        summary = dlq::list(&fx.broker, &fx.topology).await.expect("list");
        if summary[0].depth == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(summary[0].depth, 3);
    assert_eq!(summary[0].by_reason.get("rejected"), Some(&3));
    fail.store(false, std::sync::atomic::Ordering::SeqCst);
    let report = dlq::replay(&fx.broker, &fx.queue.dlq, 100, Some("rejected"), None)
        .await
        .expect("replay");
    assert_eq!(report.replayed, 3);
    assert!(wait_until(WAIT, || handler.calls().len() >= 6).await);
    let replayed: Vec<_> = handler
        .calls()
        .into_iter()
        .skip(3)
        .map(|c| c.message)
        .collect();
    for (original, again) in originals.iter().zip(&replayed) {
        assert_eq!(again.body, original.body);
        assert_eq!(again.message_id, original.message_id);
        assert_eq!(again.kind, original.kind);
        assert_eq!(again.routing_key, original.routing_key);
        assert_eq!(again.attempt, 1);
        assert_eq!(
            again.properties.headers(),
            original.properties.headers(),
            "headers as published"
        );
    }
    assert_eq!(
        dlq::show(&fx.broker, &fx.queue.dlq, 10)
            .await
            .expect("show")
            .len(),
        0
    );
    shutdown.cancel();
    task.await.expect("join").expect("clean");
    publisher.close().await;
    fx.cleanup().await;
}

/// `dlq replay --only-queue`: the replayed messages reach the queue that failed them
/// and no other queue bound to their exchange.
#[tokio::test]
async fn a_replay_to_its_queue_only_leaves_other_bound_queues_alone() {
    let fx = Fixture::new("replay-only").await;
    let mut bystander = tickwatch_broker::Topology::default();
    let bystander_queue = format!("{}.bystander.q", fx.broker.config().prefix);
    bystander
        .add_work_queue(
            fx.broker.config(),
            &bystander_queue,
            &[(
                fx.broker.names().exchange(Exchange::Market),
                tickwatch_schema::names::routing::ALL_TICKS.to_string(),
            )],
            1,
        )
        .expect("bystander");
    bystander.apply(&fx.broker).await.expect("apply");
    let fail = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let handler = {
        let fail = fail.clone();
        Recording::new(move |_, _| {
            if fail.load(std::sync::atomic::Ordering::SeqCst) {
                Err(HandlerError::Rejected("downstream refused".into()))
            } else {
                Ok(())
            }
        })
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (b, q, h, s) = (
            fx.broker.clone(),
            fx.queue.clone(),
            handler.clone(),
            shutdown.clone(),
        );
        async move { consume(&b, &q, h, s).await }
    });
    let publisher = Publisher::start(&fx.broker, "test");
    for seq in 0..2 {
        publisher
            .publish(Exchange::Market, &tick("ONLY", seq))
            .await
            .expect("published");
    }
    assert!(wait_until(WAIT, || handler.calls().len() >= 2).await);
    assert!(fx.wait_depth(&fx.queue.dlq, (2, 0)).await, "dead-lettered");
    assert!(fx.wait_depth(&bystander_queue, (2, 0)).await);
    fail.store(false, std::sync::atomic::Ordering::SeqCst);

    let source = dlq::source_queue(&fx.topology, &fx.queue.dlq).expect("source");
    assert_eq!(source, fx.queue.name);
    let report = dlq::replay(&fx.broker, &fx.queue.dlq, 100, None, Some(source))
        .await
        .expect("replay");
    assert_eq!(report.replayed, 2);
    assert!(wait_until(WAIT, || handler.calls().len() >= 4).await);
    let first = handler.calls()[0].message.body.clone();
    assert_eq!(
        handler.calls()[2].message.body,
        first,
        "the same message again"
    );
    assert!(fx.wait_depth(&fx.queue.dlq, (0, 0)).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        fx.wait_depth(&bystander_queue, (2, 0)).await,
        "the other queue got nothing more"
    );

    shutdown.cancel();
    task.await.expect("join").expect("clean");
    publisher.close().await;
    let _ = bystander.delete(&fx.broker).await;
    fx.cleanup().await;
}

#[derive(Clone)]
struct Slow(std::sync::Arc<std::sync::Mutex<Vec<(String, u64)>>>);

impl tickwatch_broker::Handler for Slow {
    async fn handle(&mut self, m: &tickwatch_broker::Incoming) -> tickwatch_broker::Outcome {
        let t: Tick = m.decode()?;
        let seq: u64 = t.trade_id.as_deref().unwrap_or("0").parse().unwrap_or(0);
        // Uneven work, so that deliveries finish out of order.
        tokio::time::sleep(Duration::from_millis(seq * 7 % 5)).await;
        self.0.lock().expect("lock").push((t.symbol, seq));
        Ok(tickwatch_broker::Handled::Done)
    }
}

#[tokio::test]
async fn a_concurrent_consumer_keeps_each_keys_order_and_acks_everything() {
    const N: u64 = 600;
    let fx = Fixture::new("conc").await;
    let log: std::sync::Arc<std::sync::Mutex<Vec<(String, u64)>>> = Default::default();
    let shutdown = CancellationToken::new();
    let options = tickwatch_broker::ConsumeOptions {
        concurrency: 16,
        ..Default::default()
    };
    let task = tokio::spawn({
        let (b, q, h, s) = (
            fx.broker.clone(),
            fx.queue.clone(),
            Slow(log.clone()),
            shutdown.clone(),
        );
        async move { tickwatch_broker::consume_with(&b, &q, h, s, options).await }
    });
    let publisher = Publisher::start(&fx.broker, "test");
    let mut confirms = Vec::new();
    for seq in 0..N {
        confirms.push(
            publisher
                .send(Exchange::Market, &tick(&format!("K{}", seq % 30), seq))
                .await
                .expect("send"),
        );
    }
    for c in confirms {
        c.wait().await.expect("confirmed");
    }
    assert!(wait_until(WAIT, || log.lock().expect("lock").len() as u64 >= N).await);
    shutdown.cancel();
    task.await.expect("join").expect("clean");
    let log = log.lock().expect("lock").clone();
    assert_eq!(log.len() as u64, N, "each message handled once");
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for (symbol, seq) in &log {
        if let Some(prev) = last.insert(symbol.clone(), *seq) {
            assert!(*seq > prev, "{symbol}: {seq} after {prev}");
        }
    }
    let in_order = log.windows(2).all(|w| w[0].1 < w[1].1);
    assert!(
        !in_order,
        "keys ran concurrently (global order differs from publish order)"
    );
    assert!(
        fx.wait_depth(&fx.queue.name, (0, 0)).await,
        "everything acknowledged"
    );
    publisher.close().await;
    fx.cleanup().await;
}

#[tokio::test]
async fn a_private_queue_drops_poison_and_is_declared_again_after_a_reconnect() {
    let fx = Fixture::new("private").await;
    let names = fx.broker.names().clone();
    let config = fx.broker.config().clone();
    let mut private = tickwatch_broker::Topology::default();
    let spec = private
        .add_private_queue(
            &config,
            &format!("{}.live.q", config.prefix),
            &[(names.exchange(Exchange::Market), "tick.#".to_string())],
        )
        .expect("private queue");
    let handler = Recording::new(|m, _| m.decode::<Tick>().map(|_| ()));
    let shutdown = CancellationToken::new();
    let options = tickwatch_broker::ConsumeOptions {
        declare: Some(std::sync::Arc::new(private)),
        ..Default::default()
    };
    let task = tokio::spawn({
        let (b, q, h, s) = (
            fx.broker.clone(),
            spec.clone(),
            handler.clone(),
            shutdown.clone(),
        );
        async move { tickwatch_broker::consume_with(&b, &q, h, s, options).await }
    });
    let publisher = Publisher::start(&fx.broker, "test");
    // Wait for the private queue to exist before publishing to it.
    assert!(
        wait_until(WAIT, || fx
            .broker
            .health()
            .snapshot()
            .get(&format!("consumer:{}", spec.name))
            .is_some_and(|c| c.up))
        .await
    );
    publisher
        .publish_raw(OutgoingMessage {
            exchange: names.exchange(Exchange::Market),
            routing_key: "tick.test.PRV".into(),
            body: b"not json".to_vec(),
            properties: tickwatch_broker::publisher::json_properties("tick", Default::default()),
            mandatory: true,
        })
        .await
        .expect("poison published");
    publisher
        .publish(Exchange::Market, &tick("PRV", 1))
        .await
        .expect("good one");
    assert!(
        wait_until(WAIT, || handler.calls().len() >= 2).await,
        "poison dropped, the good one handled"
    );
    for _ in 0..150 {
        if kill_connections(&config).await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // After the reconnect the queue is declared again and receives new messages.
    let mut delivered = false;
    for seq in 2..200 {
        let _ = publisher.publish(Exchange::Market, &tick("PRV", seq)).await;
        if wait_until(Duration::from_millis(100), || {
            handler.calls().iter().any(|c| {
                c.message
                    .decode::<Tick>()
                    .is_ok_and(|t| t.ts > 1_763_762_400_001)
            })
        })
        .await
        {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "messages flow again after the reconnect");
    assert!(
        dlq::list(&fx.broker, &fx.topology)
            .await
            .expect("list")
            .iter()
            .all(|d| d.depth == 0)
    );
    shutdown.cancel();
    task.await.expect("join").expect("clean");
    publisher.close().await;
    fx.cleanup().await;
}

/// The checkpoint runs beside the batches: a slow one does not hold up the next message,
/// and one that fails leaves the acknowledgements waiting until it succeeds.
#[tokio::test]
async fn a_slow_or_failing_checkpoint_holds_the_acks_not_the_next_batch() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use tickwatch_broker::{Checkpoint, ConsumeOptions, consume_with};

    let fx = Fixture::new("checkpoint").await;
    let handler = Recording::new(|_, _| Ok(()));
    let (calls, running) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let (release, released) = tokio::sync::watch::channel(false);
    let checkpoint = Checkpoint(Arc::new({
        let (calls, running) = (calls.clone(), running.clone());
        move || {
            let (calls, running, mut released) = (calls.clone(), running.clone(), released.clone());
            Box::pin(async move {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                running.store(true, Ordering::SeqCst);
                // The first save waits until the test lets it go; the second fails.
                if n == 1 {
                    let _ = released.wait_for(|go| *go).await;
                }
                running.store(false, Ordering::SeqCst);
                if n == 2 {
                    return Err("the database is away".to_string());
                }
                Ok(())
            })
        }
    }));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (b, q, h, s) = (
            fx.broker.clone(),
            fx.queue.clone(),
            handler.clone(),
            shutdown.clone(),
        );
        let options = ConsumeOptions {
            checkpoint: Some(checkpoint),
            ..ConsumeOptions::default()
        };
        async move { consume_with(&b, &q, h, s, options).await }
    });
    let publisher = Publisher::start(&fx.broker, "test");
    publisher
        .publish(Exchange::Market, &tick("AAA", 1))
        .await
        .expect("published");
    assert!(
        wait_until(WAIT, || running.load(Ordering::SeqCst)).await,
        "the first message's checkpoint started"
    );
    publisher
        .publish(Exchange::Market, &tick("AAA", 2))
        .await
        .expect("published");
    assert!(
        wait_until(WAIT, || handler.calls().len() == 2).await,
        "the next message is handled while the checkpoint runs"
    );
    assert!(
        running.load(Ordering::SeqCst),
        "the checkpoint is still running"
    );
    release.send(true).expect("release");
    // The second checkpoint fails; the one after it, a second later, acknowledges.
    assert!(
        wait_until(WAIT, || calls.load(Ordering::SeqCst) >= 3).await,
        "a failed checkpoint is tried again"
    );
    shutdown.cancel();
    task.await.expect("join").expect("consumer ends cleanly");
    assert_eq!(handler.calls().len(), 2, "each message handled once");
    // Nothing came back to the queue when the consumer's channel closed: both acknowledged.
    let channel = fx.broker.channel().await.expect("channel");
    let queue = channel
        .queue_declare(
            fx.queue.name.as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .expect("passive declare");
    assert_eq!(queue.message_count(), 0, "both acknowledged");
    publisher.close().await;
    fx.cleanup().await;
}
