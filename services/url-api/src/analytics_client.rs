//! Calls to analytics-rpc: a lazily connected channel, a deadline per call, a bound on each
//! owner's concurrent stats and account calls, and a circuit breaker so an outage costs callers nothing once
//! detected.
//!
//! The breaker judges the service, not the requests: it counts connection failures,
//! UNAVAILABLE, and deadlines missed by cheap calls (a count). A stats or account call
//! that runs out of time may just be an expensive request (a wide range over a busy link):
//! it fails alone and is not counted, so one owner's heavy requests cannot open the breaker
//! for everyone. Other errors the service answers with (INTERNAL, OUT_OF_RANGE when a
//! response would exceed the message limit) show the service alive: they fail the request
//! as a 5xx without counting either. Only INVALID_ARGUMENT is the caller's mistake.
//!
//! With ANALYTICS_RPC_CA set the calls go over TLS ([`RpcTls`]): analytics-rpc's certificate
//! must chain to that CA and carry the expected name, or no call is made.
//!
//! Each call is a client span (`shortener.analytics.v1.AnalyticsService/{method}`) whose
//! W3C context goes in the request metadata, so analytics-rpc's server span continues the
//! caller's trace. Short-circuited calls never leave the process and get no span.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use shortener_common::proto::analytics::analytics_service_client::AnalyticsServiceClient;
use shortener_common::proto::analytics::{
    GetAccountStatsRequest, GetAccountStatsResponse, GetClickCountRequest, GetClickCountResponse,
    GetClickStatsRequest, GetClickStatsResponse,
};
use shortener_common::telemetry::propagation;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};
use tracing::field::Empty;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::breaker::{Breaker, SystemClock};
use crate::metrics::{Metrics, RpcLabels};
use crate::owner_limit::OwnerLimit;

/// Largest response accepted, the same bound analytics-rpc sends within.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

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
    /// This owner already has its maximum of analytics calls in flight.
    #[error("too many analytics requests in flight for this owner")]
    Busy,
}

/// How much work a call may ask of analytics-rpc (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cost {
    Cheap,
    Expensive,
}

/// A link's all-time clicks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClickCount {
    pub total: u64,
    pub humans: u64,
    pub bots: u64,
}

/// TLS towards analytics-rpc.
#[derive(Clone)]
pub struct RpcTls {
    /// PEM certificate(s) of the CA analytics-rpc's certificate must chain to.
    pub ca_pem: Vec<u8>,
    /// Name analytics-rpc's certificate must carry; the URL's host when None.
    pub server_name: Option<String>,
}

impl RpcTls {
    /// Reads the CA file (`ca.crt` of the Secret cert-manager or an operator fills).
    pub fn from_file(ca: &Path, server_name: Option<String>) -> Result<Self, EndpointError> {
        let ca_pem = std::fs::read(ca).map_err(|source| EndpointError::ReadCa {
            path: ca.to_owned(),
            source,
        })?;
        Ok(Self {
            ca_pem,
            server_name,
        })
    }
}

/// Why the analytics-rpc endpoint cannot be set up; each stops url-api at start.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("invalid ANALYTICS_RPC_URL: {0}")]
    Url(#[source] tonic::transport::Error),
    #[error("ANALYTICS_RPC_URL is https:// but ANALYTICS_RPC_CA is not set")]
    HttpsWithoutCa,
    #[error("ANALYTICS_RPC_CA is set but ANALYTICS_RPC_URL is not https:// (calls would go in plaintext)")]
    CaWithoutHttps,
    #[error("cannot read ANALYTICS_RPC_CA {path}: {source}")]
    ReadCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ANALYTICS_RPC_CA holds no PEM certificate")]
    NoCaCertificate,
    #[error("invalid ANALYTICS_RPC_CA or ANALYTICS_RPC_SERVER_NAME: {0}")]
    Tls(#[source] tonic::transport::Error),
}

/// The endpoint of `url`, over TLS exactly when `tls` is given. The scheme must agree
/// (https:// with TLS, http:// without): a CA next to an http:// URL would otherwise be
/// ignored silently, and tonic refuses https:// without TLS only at the first call.
pub fn endpoint(url: &str, tls: Option<&RpcTls>) -> Result<Endpoint, EndpointError> {
    let endpoint = Endpoint::from_shared(url.to_string()).map_err(EndpointError::Url)?;
    let https = endpoint.uri().scheme_str() == Some("https");
    match (tls, https) {
        (None, false) => Ok(endpoint),
        (None, true) => Err(EndpointError::HttpsWithoutCa),
        (Some(_), false) => Err(EndpointError::CaWithoutHttps),
        (Some(tls), true) => {
            if !String::from_utf8_lossy(&tls.ca_pem).contains("-----BEGIN CERTIFICATE-----") {
                return Err(EndpointError::NoCaCertificate);
            }
            let mut config =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
            if let Some(name) = &tls.server_name {
                config = config.domain_name(name.clone());
            }
            endpoint.tls_config(config).map_err(EndpointError::Tls)
        }
    }
}

/// ANALYTICS_RPC_TOKEN holds characters a header cannot carry.
#[derive(Debug, thiserror::Error)]
#[error("ANALYTICS_RPC_TOKEN must be printable ASCII")]
pub struct InvalidToken;

#[derive(Clone)]
pub struct AnalyticsClient {
    client: AnalyticsServiceClient<Channel>,
    timeout: Duration,
    breaker: Arc<Breaker>,
    owners: Arc<OwnerLimit>,
    metrics: Metrics,
    /// `server.address` and `server.port` of the client spans.
    server: Arc<(String, u16)>,
    /// `Bearer <ANALYTICS_RPC_TOKEN>`, sent with every call when set.
    authorization: Option<MetadataValue<Ascii>>,
}

/// `rpc.service` of the client spans.
const RPC_SERVICE: &str = "shortener.analytics.v1.AnalyticsService";

impl AnalyticsClient {
    /// Connects to `endpoint` (see [`endpoint`]) on first use. Call inside a tokio
    /// runtime. `per_owner`: most calls one owner may have in flight.
    pub fn new(
        endpoint: Endpoint,
        timeout: Duration,
        failure_threshold: u32,
        reset_after: Duration,
        per_owner: usize,
        metrics: Metrics,
    ) -> Self {
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
        let client = AnalyticsServiceClient::new(channel)
            .max_decoding_message_size(MAX_RESPONSE_BYTES)
            .max_encoding_message_size(64 * 1024);
        Self {
            client,
            timeout,
            breaker: Arc::new(breaker),
            owners: Arc::new(OwnerLimit::new(per_owner)),
            metrics,
            server: Arc::new(server),
            authorization: None,
        }
    }

    /// Sends `token` as `authorization: Bearer <token>` with every call (analytics-rpc's
    /// RPC_AUTH_TOKEN). Err when the token cannot be a header value.
    pub fn with_token(mut self, token: Option<&str>) -> Result<Self, InvalidToken> {
        self.authorization = token
            .map(|t| format!("Bearer {t}").parse().map_err(|_| InvalidToken))
            .transpose()?;
        Ok(self)
    }

    pub async fn click_count(
        &self,
        owner: &str,
        short_code: &str,
    ) -> Result<ClickCount, AnalyticsError> {
        let req = GetClickCountRequest {
            short_code: short_code.to_string(),
        };
        self.call(
            owner,
            Cost::Cheap,
            (
                "GetClickCount",
                "shortener.analytics.v1.AnalyticsService/GetClickCount",
            ),
            req,
            |mut c, r| async move { c.get_click_count(r).await },
        )
        .await
        .map(|r: GetClickCountResponse| ClickCount {
            total: r.total_clicks,
            humans: r.human_clicks,
            bots: r.bot_clicks,
        })
    }

    pub async fn click_stats(
        &self,
        owner: &str,
        req: GetClickStatsRequest,
    ) -> Result<GetClickStatsResponse, AnalyticsError> {
        self.call(
            owner,
            Cost::Expensive,
            (
                "GetClickStats",
                "shortener.analytics.v1.AnalyticsService/GetClickStats",
            ),
            req,
            |mut c, r| async move { c.get_click_stats(r).await },
        )
        .await
    }

    pub async fn account_stats(
        &self,
        req: GetAccountStatsRequest,
    ) -> Result<GetAccountStatsResponse, AnalyticsError> {
        let owner = req.owner.clone();
        self.call(
            &owner,
            Cost::Expensive,
            (
                "GetAccountStats",
                "shortener.analytics.v1.AnalyticsService/GetAccountStats",
            ),
            req,
            |mut c, r| async move { c.get_account_stats(r).await },
        )
        .await
    }

    async fn call<Req, Resp, F, Fut>(
        &self,
        owner: &str,
        cost: Cost,
        (method, full_name): (&'static str, &'static str),
        message: Req,
        f: F,
    ) -> Result<Resp, AnalyticsError>
    where
        F: FnOnce(AnalyticsServiceClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let labels = RpcLabels { method };
        // Counts read a few rows: only the calls that can be expensive are bounded.
        let _owner_slot = match cost {
            Cost::Cheap => None,
            Cost::Expensive => match self.owners.try_acquire(owner) {
                Some(slot) => Some(slot),
                None => {
                    self.metrics.rpc_owner_limited.get_or_create(&labels).inc();
                    return Err(AnalyticsError::Busy);
                }
            },
        };
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
        if let Some(auth) = &self.authorization {
            request.metadata_mut().insert("authorization", auth.clone());
        }
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
            Ok(Err(status)) if status.code() == Code::InvalidArgument => {
                permit.success();
                return Err(AnalyticsError::Rejected(status));
            }
            Ok(Err(status)) => AnalyticsError::Failed(status),
            Err(_) => AnalyticsError::Timeout,
        };
        let _entered = span.enter();
        self.metrics.rpc_failures.get_or_create(&labels).inc();
        tracing::warn!(method, error = %failure, "analytics call failed");
        match verdict(&failure, cost) {
            Verdict::ServiceFailed => permit.failure(),
            Verdict::ServiceAnswered => permit.success(),
            // Dropped unreported: a trial call frees its slot, others change nothing.
            Verdict::NotCounted => drop(permit),
        }
        Err(failure)
    }
}

/// What a failed call says about the service (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    ServiceFailed,
    ServiceAnswered,
    NotCounted,
}

fn verdict(failure: &AnalyticsError, cost: Cost) -> Verdict {
    let deadline = match failure {
        AnalyticsError::Timeout => true,
        AnalyticsError::Failed(s) => match s.code() {
            Code::DeadlineExceeded | Code::Cancelled => true,
            Code::Unavailable | Code::Unknown => return Verdict::ServiceFailed,
            _ => return Verdict::ServiceAnswered,
        },
        _ => return Verdict::ServiceAnswered,
    };
    match (deadline, cost) {
        (true, Cost::Cheap) => Verdict::ServiceFailed,
        (true, Cost::Expensive) => Verdict::NotCounted,
        (false, _) => Verdict::ServiceAnswered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_and_the_url_scheme_must_agree() {
        let tls = RpcTls {
            ca_pem: b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_vec(),
            server_name: Some("analytics-rpc.shortener.svc".into()),
        };
        assert!(endpoint("http://analytics-rpc:50051", None).is_ok());
        assert!(matches!(
            endpoint("https://analytics-rpc:50051", None),
            Err(EndpointError::HttpsWithoutCa)
        ));
        assert!(matches!(
            endpoint("http://analytics-rpc:50051", Some(&tls)),
            Err(EndpointError::CaWithoutHttps)
        ));
        let not_pem = RpcTls {
            ca_pem: b"MIIB".to_vec(),
            server_name: None,
        };
        assert!(matches!(
            endpoint("https://analytics-rpc:50051", Some(&not_pem)),
            Err(EndpointError::NoCaCertificate)
        ));
        assert!(matches!(
            endpoint("not a url", None),
            Err(EndpointError::Url(_))
        ));
        let err = RpcTls::from_file(Path::new("/nonexistent/ca.crt"), None)
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
    }

    #[test]
    fn slow_expensive_calls_do_not_judge_the_service() {
        use AnalyticsError::*;
        assert_eq!(verdict(&Timeout, Cost::Cheap), Verdict::ServiceFailed);
        assert_eq!(verdict(&Timeout, Cost::Expensive), Verdict::NotCounted);
        let deadline = || Failed(Status::deadline_exceeded("slow"));
        assert_eq!(verdict(&deadline(), Cost::Expensive), Verdict::NotCounted);
        assert_eq!(verdict(&deadline(), Cost::Cheap), Verdict::ServiceFailed);
        for cost in [Cost::Cheap, Cost::Expensive] {
            assert_eq!(
                verdict(&Failed(Status::unavailable("down")), cost),
                Verdict::ServiceFailed
            );
            // Answered errors: the service is up even if this request failed.
            for status in [
                Status::internal("query failed"),
                Status::out_of_range("message too large"),
                Status::resource_exhausted("busy"),
            ] {
                assert_eq!(verdict(&Failed(status), cost), Verdict::ServiceAnswered);
            }
        }
    }
}
