//! Prometheus metrics of url-api and the middleware that records HTTP requests.
//!
//! Requests are labelled by the matched route template (`/api/v1/links/{code}`), never by
//! the raw path, so cardinality stays bounded. One histogram family covers requests: its
//! `_count` series are the request counts by method, route and status. What every request
//! or redirect writes is kept per thread ([`crate::per_thread`]).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use axum::http;
use pin_project_lite::pin_project;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::Registry;
use tower::{Layer, Service};

use crate::per_thread;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    /// The matched route template, or `unmatched`.
    pub route: &'static str,
    pub status: u16,
}

/// The route label of requests no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The route template of a request as a `&'static str`: each distinct template is copied
/// once per process (there are as many as the router has routes), so a request's labels
/// hold no reference count that every worker would bump on the same cache line.
pub fn route_label(req_route: Option<&MatchedPath>) -> &'static str {
    static KNOWN: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    thread_local! {
        static SEEN: RefCell<Vec<&'static str>> = const { RefCell::new(Vec::new()) };
    }
    let Some(route) = req_route.map(MatchedPath::as_str) else {
        return UNMATCHED;
    };
    SEEN.with_borrow_mut(|seen| {
        if let Some(known) = seen.iter().find(|s| **s == route) {
            return *known;
        }
        let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
        let interned = match known.iter().find(|s| **s == route) {
            Some(s) => *s,
            None => {
                let s: &'static str = Box::leak(route.into());
                known.push(s);
                s
            }
        };
        seen.push(interned);
        interned
    })
}

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum DropReason {
    /// The local producer queue (CLICK_QUEUE_CAPACITY) is full.
    queue_full,
    /// The producer refused the message for another reason.
    produce_error,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    pub reason: DropReason,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub method: &'static str,
}

/// Every metric the service exports. Cloned into each request's middleware, so it is one
/// `Arc` around the handles (each of which is itself shared).
#[derive(Clone)]
pub struct Metrics(Arc<MetricHandles>);

impl std::ops::Deref for Metrics {
    type Target = MetricHandles;

    fn deref(&self) -> &MetricHandles {
        &self.0
    }
}

pub struct MetricHandles {
    /// Per thread: written by every request.
    pub http_requests: per_thread::HistogramFamily<RequestLabels>,
    /// Per thread: written by every redirect.
    pub cache_hits: per_thread::Counter,
    pub cache_misses: per_thread::Counter,
    pub misses_limited: Counter,
    pub clicks_published: Counter,
    pub clicks_dropped: Family<DropLabels, Counter>,
    pub clicks_delivery_failed: Counter,
    pub rpc_failures: Family<RpcLabels, Counter>,
    pub rpc_short_circuits: Family<RpcLabels, Counter>,
    pub rpc_owner_limited: Family<RpcLabels, Counter>,
    /// 0 closed, 1 open, 2 half-open.
    pub breaker_state: Gauge,
}

/// Upper bounds of the request latency buckets: 0.25 ms .. ~4 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_25, 2.0, 15)
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = MetricHandles {
            http_requests: per_thread::HistogramFamily::new(latency_buckets()),
            cache_hits: per_thread::Counter::default(),
            cache_misses: per_thread::Counter::default(),
            misses_limited: Counter::default(),
            clicks_published: Counter::default(),
            clicks_dropped: Family::default(),
            clicks_delivery_failed: Counter::default(),
            rpc_failures: Family::default(),
            rpc_short_circuits: Family::default(),
            rpc_owner_limited: Family::default(),
            breaker_state: Gauge::default(),
        };
        registry.register(
            "http_request_duration_seconds",
            "HTTP requests and their latency by method, route template and status",
            m.http_requests.clone(),
        );
        registry.register(
            "redirect_cache_hits",
            "Redirect lookups answered from the cache",
            m.cache_hits.clone(),
        );
        registry.register(
            "redirect_cache_misses",
            "Redirect lookups that went to the database",
            m.cache_misses.clone(),
        );
        registry.register(
            "redirect_misses_limited",
            "Redirect lookups that missed the cache and were refused (429) without a query: \
             the client was over REDIRECT_MISS_PER_SECOND",
            m.misses_limited.clone(),
        );
        registry.register(
            "clicks_published",
            "Click events acknowledged by the brokers",
            m.clicks_published.clone(),
        );
        registry.register(
            "clicks_dropped",
            "Click events dropped before reaching the producer queue",
            m.clicks_dropped.clone(),
        );
        registry.register(
            "clicks_delivery_failed",
            "Click events the producer gave up on (e.g. message timeout)",
            m.clicks_delivery_failed.clone(),
        );
        registry.register(
            "analytics_rpc_failures",
            "Failed or timed-out calls to analytics-rpc",
            m.rpc_failures.clone(),
        );
        registry.register(
            "analytics_rpc_short_circuits",
            "Calls to analytics-rpc skipped because the circuit breaker is open",
            m.rpc_short_circuits.clone(),
        );
        registry.register(
            "analytics_rpc_owner_limited",
            "Calls to analytics-rpc refused because their owner had \
             ANALYTICS_MAX_CONCURRENT_PER_OWNER calls in flight",
            m.rpc_owner_limited.clone(),
        );
        registry.register(
            "analytics_breaker_state",
            "Circuit breaker state of analytics-rpc calls: 0 closed, 1 open, 2 half-open",
            m.breaker_state.clone(),
        );
        Self(Arc::new(m))
    }

    /// Records one answered request started at `start`.
    pub fn observe_request(
        &self,
        method: &'static str,
        route: &'static str,
        status: http::StatusCode,
        start: Instant,
    ) {
        let labels = RequestLabels {
            method,
            route,
            status: status.as_u16(),
        };
        self.http_requests
            .observe(&labels, start.elapsed().as_secs_f64());
    }

    pub fn drop_clicks(&self, reason: DropReason, clicks: u64) {
        self.clicks_dropped
            .get_or_create(&DropLabels { reason })
            .inc_by(clicks);
    }
}

/// The method as a label: the common ones by name, anything else `OTHER`.
pub fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The layer recording every request's latency by method, route template and status.
/// A plain tower layer: no boxed inner service or future per request on the redirect path.
#[derive(Clone)]
pub struct TrackLayer {
    metrics: Metrics,
}

impl TrackLayer {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, ResBody> Service<http::Request<B>> for Track<S>
where
    S: Service<http::Request<B>, Response = http::Response<ResBody>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let route = route_label(req.extensions().get::<MatchedPath>());
        let method = method_label(req.method());
        TrackFuture::new(self.inner.call(req), self.metrics.clone(), method, route)
    }
}

impl<F> TrackFuture<F> {
    /// `inner`, recorded under `method` and `route` when it completes; its latency counts
    /// from now.
    pub fn new(inner: F, metrics: Metrics, method: &'static str, route: &'static str) -> Self {
        Self {
            inner,
            metrics,
            labels: Some((method, route)),
            start: Instant::now(),
        }
    }
}

pin_project! {
    pub struct TrackFuture<F> {
        #[pin]
        inner: F,
        metrics: Metrics,
        labels: Option<(&'static str, &'static str)>,
        start: Instant,
    }
}

impl<F, ResBody, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        if let (Ok(resp), Some((method, route))) = (&result, this.labels.take()) {
            this.metrics
                .observe_request(method, route, resp.status(), *this.start);
        }
        Poll::Ready(result)
    }
}
