//! The standard topology against the real broker, checked through the management API.

mod common;

use std::collections::BTreeSet;

use serde_json::Value;
use tickwatch_broker::{Broker, Topology};

async fn snapshot(broker: &Broker, prefix: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let management =
        tickwatch_broker::management::Management::new(broker.config()).expect("management");
    let queues = management
        .queues(prefix)
        .await
        .expect("queues")
        .iter()
        .map(|q| format!("{} {} {}", q["name"], q["type"], q["arguments"]))
        .collect();
    let bindings = management
        .bindings(prefix)
        .await
        .expect("bindings")
        .iter()
        .map(|b| {
            format!(
                "{} -> {} [{}]",
                b["source"], b["destination"], b["routing_key"]
            )
        })
        .collect();
    (queues, bindings)
}

#[tokio::test]
async fn apply_declares_every_queue_argument_and_binding_and_is_idempotent() {
    let config = common::config("topo");
    let prefix = config.prefix.clone();
    let broker = Broker::connect(config.clone(), &prefix)
        .await
        .expect("broker");
    let topology = Topology::standard(&config).expect("topology");
    topology.apply(&broker).await.expect("first apply");

    let management = tickwatch_broker::management::Management::new(&config).expect("management");
    for queue in &topology.queues {
        let found = management
            .queue(&queue.name)
            .await
            .expect("api")
            .unwrap_or_else(|| panic!("{} missing", queue.name));
        assert_eq!(found["type"], "quorum", "{} is a quorum queue", queue.name);
        assert_eq!(found["durable"], true);
        let args = found["arguments"].as_object().expect("arguments");
        assert_eq!(args.len(), queue.args.len(), "{}: {args:?}", queue.name);
        for (key, value) in &queue.args {
            let got = &args[key];
            let expected = match value {
                tickwatch_broker::topology::Arg::Str(s) => Value::from(s.clone()),
                tickwatch_broker::topology::Arg::Int(i) => Value::from(*i),
                tickwatch_broker::topology::Arg::Bool(b) => Value::from(*b),
            };
            assert_eq!(got, &expected, "{} {key}", queue.name);
        }
    }
    let (_, bindings) = snapshot(&broker, &prefix).await;
    for b in &topology.bindings {
        let line = format!("\"{}\" -> \"{}\" [\"{}\"]", b.source, b.destination, b.key);
        assert!(
            bindings.contains(&line),
            "binding {line} missing from {bindings:?}"
        );
    }
    let alerts = format!("{prefix}.alerts.q");
    let q = management
        .queue(&alerts)
        .await
        .expect("api")
        .expect("alerts queue");
    assert_eq!(
        q["arguments"]["x-dead-letter-exchange"],
        format!("{prefix}.dlx")
    );

    let before = snapshot(&broker, &prefix).await;
    topology.apply(&broker).await.expect("second apply");
    let after = snapshot(&broker, &prefix).await;
    assert_eq!(before, after, "applying twice changes nothing");

    topology.delete(&broker).await.expect("delete");
    broker.close();
}

#[tokio::test]
async fn a_queue_with_other_arguments_is_reported_with_the_difference_and_a_fix() {
    let mut config = common::config("mismatch");
    let prefix = config.prefix.clone();
    let broker = Broker::connect(config.clone(), &prefix)
        .await
        .expect("broker");
    // An older deployment declared the queues with a delivery limit of 5.
    config.delivery_limit = 5;
    let old = Topology::standard(&config).expect("topology");
    old.apply(&broker).await.expect("old apply");
    config.delivery_limit = 20;
    let new = Topology::standard(&config).expect("topology");
    let err = new.apply(&broker).await.expect_err("mismatch").to_string();
    assert!(
        err.contains(&format!("queue `{prefix}.signals.q`")),
        "{err}"
    );
    assert!(
        err.contains("x-delivery-limit: the broker has 5, tickwatch declares 20"),
        "{err}"
    );
    assert!(
        err.contains("Fix:") && err.contains("delete_queue"),
        "{err}"
    );
    assert!(
        !err.contains("PRECONDITION_FAILED -"),
        "not the bare broker text: {err}"
    );
    old.delete(&broker).await.expect("delete");
    broker.close();
}

#[tokio::test]
async fn a_broker_set_up_when_the_recorder_took_ticks_no_longer_sends_it_any() {
    for shards in [1, 2] {
        let mut config = common::config("retired");
        if shards > 1 {
            config.shards.insert("recorder".into(), shards);
        }
        let prefix = config.prefix.clone();
        let broker = Broker::connect(config.clone(), &prefix)
            .await
            .expect("broker");
        let new = Topology::standard(&config).expect("topology");
        assert_eq!(new.retired_bindings.len(), 1, "{:?}", new.retired_bindings);
        let tick_line = |b: &tickwatch_broker::topology::BindingDecl| {
            format!("\"{}\" -> \"{}\" [\"{}\"]", b.source, b.destination, b.key)
        };
        let retired = tick_line(&new.retired_bindings[0]);
        assert!(retired.contains("tick.#"), "{retired}");
        assert!(
            !new.bindings.iter().any(|b| tick_line(b) == retired),
            "the standard topology does not bind the recorder to the ticks"
        );
        // What the earlier version declared.
        let mut old = new.clone();
        old.bindings.append(&mut old.retired_bindings);
        old.apply(&broker).await.expect("old apply");
        let (_, bindings) = snapshot(&broker, &prefix).await;
        assert!(bindings.contains(&retired), "{bindings:?}");

        new.apply(&broker).await.expect("apply");
        let (_, bindings) = snapshot(&broker, &prefix).await;
        assert!(!bindings.contains(&retired), "removed: {bindings:?}");
        for b in &new.bindings {
            assert!(bindings.contains(&tick_line(b)), "kept: {}", tick_line(b));
        }
        // Removing it again, when it is not there, is no error.
        new.apply(&broker).await.expect("apply again");
        new.delete(&broker).await.expect("delete");
        broker.close();
    }
}
