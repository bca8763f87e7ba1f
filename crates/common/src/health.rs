//! `/healthz`, `/readyz` and `/metrics`: the endpoints every service exposes on its admin
//! port (url-api also answers `/healthz` on its public port).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::registry::Registry;

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// Answers whether the service can do its work now (e.g. its database is reachable).
#[derive(Clone)]
pub struct Readiness(Arc<dyn Fn() -> CheckFuture + Send + Sync>);

impl Readiness {
    pub fn new<F, Fut>(check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self(Arc::new(move || Box::pin(check())))
    }

    /// Ready as soon as the process serves.
    pub fn always() -> Self {
        Self::new(|| async { Ok(()) })
    }

    pub async fn check(&self) -> Result<(), String> {
        (self.0)().await
    }
}

#[derive(Clone)]
struct HealthState {
    registry: Arc<Registry>,
    readiness: Readiness,
}

/// Routes for `/healthz` (process up), `/readyz` (dependencies reachable) and `/metrics`
/// (Prometheus text format of `registry`).
pub fn router(registry: Arc<Registry>, readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(HealthState {
            registry,
            readiness,
        })
}

/// `{"status":"ok"}`: the process serves. Says nothing about dependencies. A constant,
/// encoded once: probes and load balancers call it often.
pub async fn healthz() -> Response {
    healthz_response()
}

/// The answer of [`healthz`], for servers that route `/healthz` themselves.
pub fn healthz_response() -> Response {
    let mut resp = Response::new(Body::from(Bytes::from_static(br#"{"status":"ok"}"#)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

async fn readyz(State(state): State<HealthState>) -> Response {
    match state.readiness.check().await {
        Ok(()) => Json(serde_json::json!({ "status": "ready" })).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "not_ready", "reason": reason })),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<HealthState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &state.registry) {
        Ok(()) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Serves `router` on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "admin endpoints listening");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    async fn get_text(router: Router, path: &str) -> (StatusCode, String) {
        use tower::ServiceExt;
        let resp = router
            .oneshot(
                axum::http::Request::get(path)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn endpoints_report_health_readiness_and_metrics() {
        let mut registry = Registry::default();
        let counter: Counter = Counter::default();
        counter.inc_by(3);
        registry.register("things", "Things seen", counter);
        let registry = Arc::new(registry);

        let ok = router(registry.clone(), Readiness::always());
        assert_eq!(
            get_text(ok.clone(), "/healthz").await,
            (StatusCode::OK, r#"{"status":"ok"}"#.to_string())
        );
        assert_eq!(get_text(ok.clone(), "/readyz").await.0, StatusCode::OK);
        let (status, body) = get_text(ok, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("things_total 3"), "{body}");

        let down = router(
            registry,
            Readiness::new(|| async { Err("database unreachable".to_string()) }),
        );
        let (status, body) = get_text(down.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("database unreachable"));
        assert_eq!(get_text(down, "/healthz").await.0, StatusCode::OK);
    }
}
