//! Server spans of HTTP requests: the `traceparent` of a trusted proxy is continued (anyone
//! else's is ignored), names and attributes follow the HTTP semantic conventions, 5xx
//! answers are errors. A
//! current-thread runtime keeps every span on the thread whose subscriber captures them.

mod common;

use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId};
use shortener_common::db::DatabaseArgs;
use shortener_testkit::tracing::{attr, capture_local, lineage, named};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";

#[tokio::test(flavor = "current_thread")]
async fn server_spans_continue_the_callers_trace_and_mark_server_errors() {
    let (capture, _guard) = capture_local();
    // Nothing listens on port 1: a redirect that misses the cache answers 503.
    let mut database = DatabaseArgs::with_url("postgres://shortener@127.0.0.1:1/shortener");
    database.database_acquire_timeout_ms = 200;
    let mut config = common::base_config(database);
    // The test client connects from loopback, acting as a trusted proxy.
    config.trusted_proxies = url_api::config::parse_proxies("127.0.0.1").unwrap();
    let app = common::start_with(config).await;

    let resp = app
        .client
        .get(app.url("/abc123"))
        .header("traceparent", format!("00-{TRACE}-{CALLER}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let resp = app
        .client
        .get(app.url("/no/such/route"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    app.stop().await;

    let spans = capture.spans();
    let redirect = named(&spans, "GET /{code}");
    assert_eq!(redirect.len(), 1, "{spans:#?}");
    let redirect = redirect[0];
    assert_eq!(
        lineage(redirect),
        (
            TraceId::from_hex(TRACE).unwrap(),
            SpanId::from_hex(CALLER).unwrap(),
            SpanKind::Server
        )
    );
    assert!(redirect.parent_span_is_remote);
    assert_eq!(
        attr(redirect, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(attr(redirect, "http.route").as_deref(), Some("/{code}"));
    assert_eq!(attr(redirect, "url.path").as_deref(), Some("/abc123"));
    assert_eq!(
        attr(redirect, "http.response.status_code").as_deref(),
        Some("503")
    );
    assert!(
        matches!(redirect.status, Status::Error { .. }),
        "{:?}",
        redirect.status
    );

    // No route matched: the method alone names the span; no traceparent: a new trace.
    let unmatched = named(&spans, "GET");
    assert_eq!(unmatched.len(), 1, "{spans:#?}");
    let unmatched = unmatched[0];
    assert_eq!(unmatched.parent_span_id, SpanId::INVALID);
    assert_ne!(
        unmatched.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert_eq!(attr(unmatched, "http.route"), None);
    assert_eq!(
        attr(unmatched, "url.path").as_deref(),
        Some("/no/such/route")
    );
    assert_eq!(
        attr(unmatched, "http.response.status_code").as_deref(),
        Some("404")
    );
    assert_eq!(unmatched.status, Status::Unset);
}

#[tokio::test(flavor = "current_thread")]
async fn trace_context_from_an_untrusted_client_starts_a_new_trace() {
    let (capture, _guard) = capture_local();
    let mut database = DatabaseArgs::with_url("postgres://shortener@127.0.0.1:1/shortener");
    database.database_acquire_timeout_ms = 200;
    // No trusted proxies: the loopback client is an internet client.
    let app = common::start_with(common::base_config(database)).await;
    let resp = app
        .client
        .get(app.url("/abc123"))
        .header("traceparent", format!("00-{TRACE}-{CALLER}-01"))
        .header("tracestate", "vendor=chosen-by-client")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    app.stop().await;

    let spans = capture.spans();
    let redirect = named(&spans, "GET /{code}");
    assert_eq!(redirect.len(), 1, "{spans:#?}");
    let redirect = redirect[0];
    assert_eq!(redirect.parent_span_id, SpanId::INVALID);
    assert!(!redirect.parent_span_is_remote);
    assert_ne!(
        redirect.span_context.trace_id(),
        TraceId::from_hex(TRACE).unwrap()
    );
    assert!(redirect.span_context.trace_state().get("vendor").is_none());
}
