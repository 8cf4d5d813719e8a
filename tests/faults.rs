//! The fault suite's short version, so it cannot rot: the built `tickwatch` binary's
//! roles, each its own process, through a kill -9 of the alerts role (it found a loss), of
//! the notifier, the closing of every broker connection, scale-out (two instances of
//! alerts and signals splitting 8 shards, one killed and restarted), and kill -9 at the two
//! exact moments of a batch that matter: inside its transaction, and after its commit but
//! before its acks. Nothing lost, nothing doubled beyond the one unavoidable window, every
//! chat in order, every candle stored. (`scripts/chaos.sh` runs every fault.)

use tickwatch_tests::faults::{self, Fault, Suite, Workload};

async fn run(fault: Fault) -> faults::Row {
    let mut suite = Suite::local(env!("CARGO_BIN_EXE_tickwatch").into());
    suite.workload = Workload {
        crossings: 20,
        candles: 150,
        poison: 200,
        ..Workload::default()
    };
    let row = faults::run(&suite, fault).await.expect("the suite runs");
    println!("{}", faults::table(std::slice::from_ref(&row)));
    for note in &row.notes {
        println!("note: {note}");
    }
    assert!(row.expected > 0);
    assert_eq!(row.lost, 0, "{row:?}");
    assert_eq!(row.duplicated, row.unavoidable, "{row:?}");
    assert_eq!(row.out_of_order, 0, "{row:?}");
    assert_eq!(row.candles_stored, row.candles_published, "{row:?}");
    assert!(row.dead_lettered.is_empty(), "{row:?}");
    row
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_alerts_role_loses_nothing() {
    run(Fault::KillAlerts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_notifier_loses_nothing() {
    run(Fault::KillNotifier).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_broker_connections_lose_nothing() {
    run(Fault::CloseConnections).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_split_the_shards_and_take_over_a_killed_ones() {
    let row = run(Fault::ScaleOut).await;
    let takeover = row.takeover.expect("the survivors took every shard");
    assert!(takeover.as_secs_f64() <= 10.0, "{row:?}");
    assert!(
        row.rebalance.is_some(),
        "split 4/4 again after the restart: {row:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_inside_a_batchs_transaction_loses_nothing() {
    let row = run(Fault::CrashMidWrite).await;
    assert_eq!(crashes(&row), 3, "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_after_a_batchs_commit_before_its_acks_doubles_nothing() {
    let row = run(Fault::CrashAfterWrite).await;
    assert_eq!(crashes(&row), 3, "{row:?}");
}

/// The roles that died at their crash point (by SIGKILL).
fn crashes(row: &faults::Row) -> usize {
    row.notes
        .iter()
        .filter(|n| n.contains(" died at ") && n.contains("signal: 9"))
        .count()
}
