//! The server span of every HTTP request, continuing the caller's W3C trace context when
//! the caller is a trusted proxy (`TRUSTED_PROXIES`). From anyone else `traceparent` and
//! `tracestate` are ignored and the request starts a new trace: an internet client must
//! not choose the sampling decision nor the trace id copied into every click's headers.
//!
//! Named `{METHOD} {route}` after the matched route template (never the raw path, so
//! names stay few), with the stable HTTP semantic-convention attributes. Cheap enough for
//! the redirect hot path: one span and one formatted name per request, nothing awaited.

use std::time::Duration;

use axum::extract::MatchedPath;
use axum::http::{Request, Response};
use opentelemetry::trace::TraceContextExt;
use shortener_common::telemetry::propagation;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::client_ip::ClientIpResolver;

/// The tower-http trace layer with [`ServerSpan`] and [`RecordStatus`]; 5xx responses are
/// also logged as failures (tower-http's default).
pub type HttpTraceLayer =
    TraceLayer<SharedClassifier<ServerErrorsAsFailures>, ServerSpan, (), RecordStatus>;

/// `trusted` decides whose trace context is continued.
pub fn layer(trusted: ClientIpResolver) -> HttpTraceLayer {
    TraceLayer::new_for_http()
        .make_span_with(ServerSpan { trusted })
        .on_request(())
        .on_response(RecordStatus)
}

/// Makes the server span of a request, parented to the context in its `traceparent` when
/// the peer is a trusted proxy.
#[derive(Debug, Clone)]
pub struct ServerSpan {
    trusted: ClientIpResolver,
}

impl<B> MakeSpan<B> for ServerSpan {
    fn make_span(&mut self, req: &Request<B>) -> Span {
        let method = req.method().as_str();
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        let span = tracing::info_span!(
            "HTTP request",
            otel.name = Empty,
            otel.kind = "server",
            http.request.method = method,
            http.route = route,
            url.path = req.uri().path(),
            http.response.status_code = Empty,
            otel.status_code = Empty,
        );
        // Filtered out (e.g. RUST_LOG=warn): skip the name and the header parsing.
        if span.is_disabled() {
            return span;
        }
        let name = match route {
            Some(route) => format!("{method} {route}"),
            // Unmatched requests: the method alone, as the conventions ask.
            None => method.to_owned(),
        };
        span.record("otel.name", name.as_str());
        if !self.trusted.peer_is_trusted(req) {
            return span;
        }
        let parent = propagation::extract_http(req.headers());
        if parent.span().span_context().is_valid() {
            // Fails only when the span is disabled (filtered out): nothing to continue then.
            let _ = span.set_parent(parent);
        }
        span
    }
}

/// Records the status code; a 5xx marks the span as an error.
#[derive(Debug, Clone, Copy)]
pub struct RecordStatus;

impl<B> OnResponse<B> for RecordStatus {
    fn on_response(self, response: &Response<B>, _latency: Duration, span: &Span) {
        let status = response.status();
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
    }
}
