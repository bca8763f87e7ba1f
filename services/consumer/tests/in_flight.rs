//! The consumer holds at most MAX_IN_FLIGHT_BYTES of messages while the database is down,
//! however deep the backlog on the brokers.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use shortener_common::event::Click;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_with_a_deep_backlog_holds_a_bounded_amount_of_messages() {
    let broker = broker();
    // ~100 KB messages: url-api batches of 50 clicks with 2 KB user agents.
    let messages: Vec<_> = (0..120)
        .map(|m| {
            let clicks: Vec<Click> = (0..50)
                .map(|i| {
                    let mut c = click(&format!("deep{}", m % 8), i);
                    c.user_agent = Some("u".repeat(2000));
                    c
                })
                .collect();
            batch(&clicks, |_| HashMap::new())
        })
        .collect();
    let size = messages[0].payload.len();
    assert!(size > 90_000, "{size}");
    broker.produce_batch(TOPIC, &messages).await;

    // Nothing listens on this port: every write fails and is retried.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args = args(
        &broker,
        &format!("postgres://postgres@127.0.0.1:{port}/none"),
        "g-in-flight",
    );
    args.max_in_flight_bytes = 1 << 20;
    let running = start(args).await;
    wait_until("some messages in flight", || async {
        running.metrics.db_retries.get() >= 2 && running.metrics.consumed.get() >= 5
    })
    .await;
    // Give the dispatcher time to fetch all it would.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let consumed = running.metrics.consumed.get();
    let held = running.metrics.in_flight_bytes.get();
    println!("{consumed} of 120 messages fetched, {held} bytes held (budget 1 MiB)");
    assert!(held > 0 && held <= 1 << 20, "{held}");
    // What fits in the budget, plus the one the dispatcher holds while it waits for room.
    assert!(
        consumed as usize <= (1 << 20) / size + 2,
        "{consumed} messages of {size} bytes fetched"
    );
    running.shutdown().await;
}
