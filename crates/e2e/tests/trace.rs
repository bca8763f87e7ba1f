//! One trace from the redirect to the stored click, every hop over real loopback sockets:
//! a `traceparent` sent to url-api reaches its server span, the producer span, the click's
//! headers in its Kafka batch, and the consumer's process, enrichment and insert spans; a link-details
//! request's client span reaches analytics-rpc's server span through gRPC metadata.
//!
//! The capturing subscriber is process-wide (spans come from many runtime threads), so
//! this binary holds exactly one test.

use std::time::Duration;

mod common;

use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry_sdk::trace::SpanData;
use serde_json::json;
use shortener_common::event_batch::decode_batch;
use shortener_testkit::tracing::{attr, capture_global, lineage, Capture};

use common::{Stack, StackOptions, TOPIC};

const WAIT: Duration = Duration::from_secs(120);
const API_KEY: &str = "trace-key-0123456789abcdef";
const REDIRECT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const DETAILS_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn traceparent(trace: &str) -> String {
    format!("00-{trace}-{CALLER_SPAN}-01")
}

/// The one finished span named `name` in trace `trace`, once it exists.
async fn wait_span(capture: &Capture, trace: TraceId, name: &str) -> SpanData {
    let capture = capture.clone();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        capture.wait_for(WAIT, |spans| {
            let found: Vec<&SpanData> = spans
                .iter()
                .filter(|s| s.name == name && s.span_context.trace_id() == trace)
                .collect();
            assert!(found.len() <= 1, "several {name} spans in {trace}");
            found.first().map(|s| (*s).clone())
        })
    })
    .await
    .unwrap()
}

fn assert_attrs(span: &SpanData, expected: &[(&str, &str)]) {
    for (key, value) in expected {
        assert_eq!(
            attr(span, key).as_deref(),
            Some(*value),
            "{key} of {}: {:?}",
            span.name,
            span.attributes
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_from_the_redirect_to_the_stored_click() {
    let capture = capture_global();
    let stack = Stack::start(StackOptions {
        api_key: API_KEY,
        group_id: "trace-e2e",
        partitions: 2,
        geoip_db: None,
        // The test client stands for a proxy whose trace context is continued.
        trusted_proxies: "127.0.0.1/32",
        allow_private_targets: false,
        analytics_rpc_timeout_ms: None,
    })
    .await;
    let (http, base, db, broker) = (&stack.http, &stack.base, &stack.db, &stack.broker);
    let code = stack.create_link("https://example.com/traced").await;

    // The redirect, continuing a caller's trace.
    let resp = http
        .get(format!("{base}/{code}"))
        .header("traceparent", traceparent(REDIRECT_TRACE))
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    let trace = TraceId::from_hex(REDIRECT_TRACE).unwrap();
    let caller = SpanId::from_hex(CALLER_SPAN).unwrap();

    let server = wait_span(&capture, trace, "GET /{code}").await;
    assert_eq!(lineage(&server), (trace, caller, SpanKind::Server));
    assert!(server.parent_span_is_remote);
    let path = format!("/{code}");
    assert_attrs(
        &server,
        &[
            ("http.request.method", "GET"),
            ("http.route", "/{code}"),
            ("url.path", &path),
            ("http.response.status_code", "302"),
        ],
    );

    let publish = wait_span(&capture, trace, "create clicks").await;
    let server_id = server.span_context.span_id();
    assert_eq!(lineage(&publish), (trace, server_id, SpanKind::Producer));
    assert_attrs(
        &publish,
        &[
            ("messaging.system", "kafka"),
            ("messaging.destination.name", TOPIC),
            ("messaging.operation.type", "create"),
        ],
    );

    // The click in its batch on the topic carries the producer span's context.
    let messages = broker.consume_all(TOPIC, 1, WAIT).await;
    let message = &messages[0];
    let entries = decode_batch(message.payload.as_deref().unwrap()).unwrap();
    assert_eq!(entries.len(), 1);
    let publish_id = publish.span_context.span_id();
    assert_eq!(
        entries[0].headers.get("traceparent"),
        Some(&format!("00-{trace}-{publish_id}-01"))
    );

    let process = wait_span(&capture, trace, "process clicks").await;
    assert_eq!(lineage(&process), (trace, publish_id, SpanKind::Consumer));
    assert!(process.parent_span_is_remote);
    let partition = message.partition.to_string();
    let offset = message.offset.to_string();
    assert_attrs(
        &process,
        &[
            ("messaging.system", "kafka"),
            ("messaging.operation.type", "process"),
            ("messaging.destination.name", TOPIC),
            ("messaging.destination.partition.id", &partition),
            ("messaging.kafka.offset", &offset),
            ("messaging.consumer.group.name", "trace-e2e"),
        ],
    );
    let process_id = process.span_context.span_id();
    let enrich = wait_span(&capture, trace, "enrich click").await;
    assert_eq!(lineage(&enrich), (trace, process_id, SpanKind::Internal));
    // The only message of its batch: the insert is its process span's child.
    let insert = wait_span(&capture, trace, "INSERT clicks").await;
    assert_eq!(lineage(&insert), (trace, process_id, SpanKind::Client));
    assert_attrs(
        &insert,
        &[
            ("db.system", "postgresql"),
            ("db.operation.name", "INSERT"),
            ("db.collection.name", "clicks"),
            ("db.operation.batch.size", "1"),
            ("clicks.inserted", "1"),
        ],
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM clicks WHERE short_code = $1")
        .bind(&code)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1);
    // The count is read from the rollups, which the consumer's rollup task adds the click
    // to right after storing it.
    let deadline = std::time::Instant::now() + WAIT;
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM click_rollup_queue")
        .fetch_one(&db.pool)
        .await
        .unwrap()
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the click was never rolled up"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Link details ask analytics-rpc for the count: client span -> gRPC metadata -> server span.
    let details = stack
        .link_details(&code, Some(&traceparent(DETAILS_TRACE)))
        .await;
    assert_eq!(details["total_clicks"], json!(1), "{details}");
    let trace = TraceId::from_hex(DETAILS_TRACE).unwrap();
    let http_server = wait_span(&capture, trace, "GET /api/v1/links/{code}").await;
    assert_eq!(lineage(&http_server), (trace, caller, SpanKind::Server));
    assert_attrs(&http_server, &[("http.route", "/api/v1/links/{code}")]);
    let rpc_name = "shortener.analytics.v1.AnalyticsService/GetClickCount";
    let (client, rpc_server) = tokio::task::spawn_blocking({
        let capture = capture.clone();
        move || {
            capture.wait_for(WAIT, |spans| {
                let of = |kind: SpanKind| {
                    spans
                        .iter()
                        .find(|s| {
                            s.name == rpc_name
                                && s.span_context.trace_id() == trace
                                && s.span_kind == kind
                        })
                        .cloned()
                };
                Some((of(SpanKind::Client)?, of(SpanKind::Server)?))
            })
        }
    })
    .await
    .unwrap();
    let http_server_id = http_server.span_context.span_id();
    assert_eq!(lineage(&client), (trace, http_server_id, SpanKind::Client));
    let port = stack.grpc_addr.port().to_string();
    assert_attrs(
        &client,
        &[
            ("rpc.system", "grpc"),
            ("rpc.service", "shortener.analytics.v1.AnalyticsService"),
            ("rpc.method", "GetClickCount"),
            ("server.address", "127.0.0.1"),
            ("server.port", &port),
            ("rpc.grpc.status_code", "0"),
        ],
    );
    let client_id = client.span_context.span_id();
    assert_eq!(lineage(&rpc_server), (trace, client_id, SpanKind::Server));
    assert!(rpc_server.parent_span_is_remote);
    assert_attrs(
        &rpc_server,
        &[
            ("rpc.system", "grpc"),
            ("rpc.service", "shortener.analytics.v1.AnalyticsService"),
            ("rpc.method", "GetClickCount"),
            ("rpc.grpc.status_code", "0"),
        ],
    );

    stack.stop().await;
}
