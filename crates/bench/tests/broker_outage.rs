//! Broker outage under redirect load, in-process (the fast variant of the fault suite's
//! case; ./scripts/faults runs it against the url-api binary): url-api publishes to a
//! librdkafka mock broker that goes down for 10 s while 8 connections keep redirecting.
//! No redirect may fail, and every click queued during the outage must reach the topic
//! once the broker is back.

use shortener_bench::faults::broker::{exercise, QUEUE_FOR_THE_OUTAGE};
use shortener_bench::outage::FlakyBroker;
use shortener_bench::stack::API_KEY;
use shortener_common::kafka::KafkaArgs;
use shortener_testkit::postgres::fresh_database;
use url_api::{AppState, Config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_survive_a_broker_outage_and_queued_clicks_are_delivered() {
    let db = fresh_database().await;
    let broker = FlakyBroker::start();
    broker.create_topic("clicks", 4).unwrap();

    let mut config = Config::new(db.args(), KafkaArgs::new(broker.bootstrap(), "clicks"));
    config.api_keys = format!("faults:{API_KEY}");
    config.rate_limit_per_second = 100_000;
    config.rate_limit_burst = 100_000;
    config.click_queue_capacity = QUEUE_FOR_THE_OUTAGE;
    let state = AppState::new(&config, db.pool.clone()).expect("url-api state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin_addr = admin.local_addr().unwrap();
    tokio::spawn(url_api::serve_admin(
        admin,
        state.clone(),
        std::future::pending(),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(url_api::serve(listener, state, async {
        let _ = stopped.await;
    }));

    let (pass, observed) = exercise(addr, admin_addr, &broker, false)
        .await
        .expect("outage scenario runs");
    let _ = stop.send(());
    server.await.unwrap().unwrap();
    assert!(pass, "{observed}");
}
