//! Without an OTLP endpoint the binary serves with trace export off and says nothing
//! about it: no exporter errors, no error lines, a clean exit on SIGTERM.

use std::time::Duration;

use shortener_testkit::process::{
    assert_clean_exit_without_telemetry_noise, free_addr, ServiceProcess,
};

#[tokio::test]
async fn serves_and_stops_cleanly_without_an_otlp_endpoint() {
    let database = std::env::var("TEST_DATABASE_URL")
        .expect("TEST_DATABASE_URL is not set: run through ./scripts/test");
    let (grpc, admin) = (free_addr(), free_addr());
    let mut service = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_analytics-rpc"),
        &[],
        &[
            ("GRPC_ADDR", grpc.as_str()),
            ("ADMIN_ADDR", admin.as_str()),
            ("DATABASE_URL", database.as_str()),
        ],
    );
    service
        .wait_ok(&format!("http://{admin}/healthz"), Duration::from_secs(60))
        .await;
    let out = service.terminate(Duration::from_secs(60));
    assert_clean_exit_without_telemetry_noise(&out);
}
