//! The server span of every HTTP request, continuing the caller's W3C trace context when
//! the caller is a trusted proxy (`TRUSTED_PROXIES`). From anyone else `traceparent` and
//! `tracestate` are ignored and the request starts a new trace: an internet client must
//! not choose the sampling decision nor the trace id copied into every click's headers.
//!
//! Named `{METHOD} {route}` after the matched route template (never the raw path, so
//! names stay few), with the stable HTTP semantic-convention attributes. Cheap enough for
//! the redirect hot path: one span and one formatted name per request, nothing awaited;
//! nothing at all when the span is filtered out. The response body is passed through
//! untouched (no wrapper per request).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode};
use opentelemetry::trace::TraceContextExt;
use pin_project_lite::pin_project;
use shortener_common::telemetry::propagation;
use tower::{Layer, Service};
use tracing::field::Empty;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::client_ip::ClientIpResolver;

/// The layer giving every request its server span (see the module docs). A 5xx answer
/// marks the span as an error and is logged as a failure.
#[derive(Debug, Clone)]
pub struct ServerSpanLayer {
    trusted: Arc<ClientIpResolver>,
}

/// `trusted` decides whose trace context is continued.
pub fn layer(trusted: ClientIpResolver) -> ServerSpanLayer {
    ServerSpanLayer {
        trusted: Arc::new(trusted),
    }
}

impl<S> Layer<S> for ServerSpanLayer {
    type Service = ServerSpan<S>;

    fn layer(&self, inner: S) -> ServerSpan<S> {
        ServerSpan {
            inner,
            trusted: self.trusted.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerSpan<S> {
    inner: S,
    // Shared: axum clones the whole layered service for every request.
    trusted: Arc<ClientIpResolver>,
}

impl<S, B, ResBody> Service<Request<B>> for ServerSpan<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = ServerSpanFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str);
        let span = make_span(req.method(), route, req.uri().path(), req.headers(), || {
            self.trusted.peer_is_trusted(&req)
        });
        let inner = in_span(&span, || self.inner.call(req));
        ServerSpanFuture { inner, span }
    }
}

/// The span of a request and when it started; None when the span is filtered out.
pub type RequestSpan = Option<(Span, Instant)>;

/// Runs `f` inside `span` when there is one.
pub fn in_span<T>(span: &RequestSpan, f: impl FnOnce() -> T) -> T {
    match span {
        Some((span, _)) => span.in_scope(f),
        None => f(),
    }
}

/// Records the answer of a request on its span (see [`record_status`]).
pub fn finish(span: &RequestSpan, status: StatusCode) {
    if let Some((span, start)) = span {
        let _entered = span.enter();
        record_status(status, *start, span);
    }
}

pin_project! {
    pub struct ServerSpanFuture<F> {
        #[pin]
        inner: F,
        // None when the span is filtered out (e.g. RUST_LOG=warn).
        span: Option<(Span, Instant)>,
    }
}

impl<F, ResBody, E> Future for ServerSpanFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let Some((span, start)) = this.span.as_ref() else {
            return this.inner.poll(cx);
        };
        let _entered = span.enter();
        let result = ready!(this.inner.poll(cx));
        if let Ok(response) = &result {
            record_status(response.status(), *start, span);
        }
        Poll::Ready(result)
    }
}

impl<F> ServerSpanFuture<F> {
    /// `inner`, polled inside `span`, whose status is recorded when it completes.
    pub fn new(inner: F, span: RequestSpan) -> Self {
        Self { inner, span }
    }
}

/// The server span of a request (`route`: its route template, None when no route matched),
/// parented to the context in its `traceparent` when `peer_is_trusted()`; None when
/// filtered out, which then costs nothing more: no name, no header parsing, no clock.
pub fn make_span(
    method: &Method,
    route: Option<&str>,
    path: &str,
    headers: &HeaderMap,
    peer_is_trusted: impl FnOnce() -> bool,
) -> RequestSpan {
    let method = method.as_str();
    let span = tracing::info_span!(
        "HTTP request",
        otel.name = Empty,
        otel.kind = "server",
        http.request.method = method,
        http.route = route,
        url.path = path,
        http.response.status_code = Empty,
        otel.status_code = Empty,
    );
    if span.is_disabled() {
        return None;
    }
    let name = match route {
        Some(route) => format!("{method} {route}"),
        // Unmatched requests: the method alone, as the conventions ask.
        None => method.to_owned(),
    };
    span.record("otel.name", name.as_str());
    if peer_is_trusted() {
        let parent = propagation::extract_http(headers);
        if parent.span().span_context().is_valid() {
            // Fails only when the span is disabled (filtered out): nothing to continue then.
            let _ = span.set_parent(parent);
        }
    }
    Some((span, Instant::now()))
}

/// Records the status code; a 5xx marks the span as an error and is logged.
fn record_status(status: StatusCode, start: Instant, span: &Span) {
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
        tracing::error!(
            status = status.as_u16(),
            latency_ms = start.elapsed().as_millis() as u64,
            "response failed"
        );
    }
}
