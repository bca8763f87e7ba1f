//! Calls to analytics-rpc: a lazily connected channel, a deadline per call, and a circuit
//! breaker so an outage costs callers nothing once detected.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shortener_common::proto::analytics::analytics_service_client::AnalyticsServiceClient;
use shortener_common::proto::analytics::{
    GetClickCountRequest, GetClickStatsRequest, GetClickStatsResponse,
};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

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
}

impl AnalyticsClient {
    /// Connects on first use. Call inside a tokio runtime.
    pub fn new(
        url: &str,
        timeout: Duration,
        failure_threshold: u32,
        reset_after: Duration,
        metrics: Metrics,
    ) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(url.to_string())?
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
        })
    }

    pub async fn click_count(&self, short_code: &str) -> Result<u64, AnalyticsError> {
        let req = GetClickCountRequest {
            short_code: short_code.to_string(),
        };
        self.call("GetClickCount", req, |mut c, r| async move {
            c.get_click_count(r).await
        })
        .await
        .map(|r| r.total_clicks)
    }

    pub async fn click_stats(
        &self,
        req: GetClickStatsRequest,
    ) -> Result<GetClickStatsResponse, AnalyticsError> {
        self.call("GetClickStats", req, |mut c, r| async move {
            c.get_click_stats(r).await
        })
        .await
    }

    async fn call<Req, Resp, F, Fut>(
        &self,
        method: &'static str,
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
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        // The deadline also covers connecting, which the channel does lazily.
        let outcome = tokio::time::timeout(self.timeout, f(self.client.clone(), request)).await;
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
