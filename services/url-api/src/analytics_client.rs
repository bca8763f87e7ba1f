//! Calls to analytics-rpc: a lazily connected channel, a deadline per call, and a circuit
//! breaker so an outage costs callers nothing once detected.
//!
//! Each call is a client span (`shortener.analytics.v1.AnalyticsService/{method}`) whose
//! W3C context goes in the request metadata, so analytics-rpc's server span continues the
//! caller's trace. Short-circuited calls never leave the process and get no span.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shortener_common::proto::analytics::analytics_service_client::AnalyticsServiceClient;
use shortener_common::proto::analytics::{
    GetClickCountRequest, GetClickStatsRequest, GetClickStatsResponse,
};
use shortener_common::telemetry::propagation;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tracing::field::Empty;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::breaker::{Breaker, SystemClock};
use crate::metrics::{Metrics, RpcLabels};

#[derive(Debug, thiserror::Error)]
pub enum AnalyticsError {
    #[error("analytics-rpc is unavailable (circuit open)")]
    ShortCircuited,
    #[error("analytics-rpc did not answer in time")]
    Timeout,
    #[error("analytics-rpc failed: {0}")]
    Failed(Status),
    /// The service is fine but refused the request (bad range, ...).
    #[error("{}", .0.message())]
    Rejected(Status),
}

#[derive(Clone)]
pub struct AnalyticsClient {
    client: AnalyticsServiceClient<Channel>,
    timeout: Duration,
    breaker: Arc<Breaker>,
    metrics: Metrics,
    /// `server.address` and `server.port` of the client spans.
    server: Arc<(String, u16)>,
}

/// `rpc.service` of the client spans.
const RPC_SERVICE: &str = "shortener.analytics.v1.AnalyticsService";

impl AnalyticsClient {
    /// Connects on first use. Call inside a tokio runtime.
    pub fn new(
        url: &str,
        timeout: Duration,
        failure_threshold: u32,
        reset_after: Duration,
        metrics: Metrics,
    ) -> Result<Self, tonic::transport::Error> {
        let endpoint = Endpoint::from_shared(url.to_string())?;
        let uri = endpoint.uri();
        let server = (
            uri.host().unwrap_or_default().to_string(),
            uri.port_u16()
                .unwrap_or(if uri.scheme_str() == Some("https") {
                    443
                } else {
                    80
                }),
        );
        let channel = endpoint
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_lazy();
        let breaker = Breaker::new(failure_threshold, reset_after, SystemClock)
            .with_gauge(metrics.breaker_state.clone());
        Ok(Self {
            client: AnalyticsServiceClient::new(channel),
            timeout,
            breaker: Arc::new(breaker),
            metrics,
            server: Arc::new(server),
        })
    }

    pub async fn click_count(&self, short_code: &str) -> Result<u64, AnalyticsError> {
        let req = GetClickCountRequest {
            short_code: short_code.to_string(),
        };
        self.call(
            (
                "GetClickCount",
                "shortener.analytics.v1.AnalyticsService/GetClickCount",
            ),
            req,
            |mut c, r| async move { c.get_click_count(r).await },
        )
        .await
        .map(|r| r.total_clicks)
    }

    pub async fn click_stats(
        &self,
        req: GetClickStatsRequest,
    ) -> Result<GetClickStatsResponse, AnalyticsError> {
        self.call(
            (
                "GetClickStats",
                "shortener.analytics.v1.AnalyticsService/GetClickStats",
            ),
            req,
            |mut c, r| async move { c.get_click_stats(r).await },
        )
        .await
    }

    async fn call<Req, Resp, F, Fut>(
        &self,
        (method, full_name): (&'static str, &'static str),
        message: Req,
        f: F,
    ) -> Result<Resp, AnalyticsError>
    where
        F: FnOnce(AnalyticsServiceClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let labels = RpcLabels { method };
        let Ok(permit) = self.breaker.acquire() else {
            self.metrics.rpc_short_circuits.get_or_create(&labels).inc();
            return Err(AnalyticsError::ShortCircuited);
        };
        let span = tracing::info_span!(
            "analytics rpc",
            otel.name = full_name,
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = RPC_SERVICE,
            rpc.method = method,
            server.address = self.server.0.as_str(),
            server.port = self.server.1,
            rpc.grpc.status_code = Empty,
            otel.status_code = Empty,
            error.type = Empty,
        );
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        propagation::inject_grpc(&span.context(), request.metadata_mut());
        // The deadline also covers connecting, which the channel does lazily.
        let outcome = tokio::time::timeout(self.timeout, f(self.client.clone(), request))
            .instrument(span.clone())
            .await;
        match &outcome {
            Ok(Ok(_)) => {
                span.record("rpc.grpc.status_code", Code::Ok as i64);
            }
            Ok(Err(status)) => {
                span.record("rpc.grpc.status_code", status.code() as i64);
                span.record("otel.status_code", "ERROR");
            }
            Err(_) => {
                span.record("otel.status_code", "ERROR");
                span.record("error.type", "timeout");
            }
        }
        let failure = match outcome {
            Ok(Ok(resp)) => {
                permit.success();
                return Ok(resp.into_inner());
            }
            Ok(Err(status)) if is_request_error(status.code()) => {
                permit.success();
                return Err(AnalyticsError::Rejected(status));
            }
            Ok(Err(status)) => AnalyticsError::Failed(status),
            Err(_) => AnalyticsError::Timeout,
        };
        let _entered = span.enter();
        permit.failure();
        self.metrics.rpc_failures.get_or_create(&labels).inc();
        tracing::warn!(method, error = %failure, "analytics call failed");
        Err(failure)
    }
}

/// Errors about the request itself: the service answered, so it is healthy.
fn is_request_error(code: Code) -> bool {
    matches!(
        code,
        Code::InvalidArgument
            | Code::NotFound
            | Code::OutOfRange
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::Unauthenticated
    )
}
