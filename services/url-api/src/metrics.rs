//! Prometheus metrics of url-api and the middleware that records HTTP requests.
//!
//! Requests are labelled by the matched route template (`/api/v1/links/{code}`), never by
//! the raw path, so cardinality stays bounded.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: &'static str,
    pub route: String,
    pub status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub method: &'static str,
    pub route: String,
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

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

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
    pub http_requests: Family<RequestLabels, Counter>,
    pub http_duration: HistogramFamily<RouteLabels>,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub clicks_published: Counter,
    pub clicks_dropped: Family<DropLabels, Counter>,
    pub clicks_delivery_failed: Counter,
    pub rpc_failures: Family<RpcLabels, Counter>,
    pub rpc_short_circuits: Family<RpcLabels, Counter>,
    /// 0 closed, 1 open, 2 half-open.
    pub breaker_state: Gauge,
}

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~4 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = MetricHandles {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            clicks_published: Counter::default(),
            clicks_dropped: Family::default(),
            clicks_delivery_failed: Counter::default(),
            rpc_failures: Family::default(),
            rpc_short_circuits: Family::default(),
            breaker_state: Gauge::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route template",
            m.http_duration.clone(),
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
            "analytics_breaker_state",
            "Circuit breaker state of analytics-rpc calls: 0 closed, 1 open, 2 half-open",
            m.breaker_state.clone(),
        );
        Self(Arc::new(m))
    }

    pub fn drop_click(&self, reason: DropReason) {
        self.clicks_dropped
            .get_or_create(&DropLabels { reason })
            .inc();
    }
}

fn method_label(method: &axum::http::Method) -> &'static str {
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

/// Middleware recording count and latency per route template and status.
pub async fn track(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    let elapsed = start.elapsed().as_secs_f64();
    metrics
        .http_duration
        .get_or_create(&RouteLabels {
            method,
            route: route.clone(),
        })
        .observe(elapsed);
    metrics
        .http_requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: resp.status().as_u16(),
        })
        .inc();
    resp
}
