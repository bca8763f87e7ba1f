//! `AnalyticsService`: validation, queries, error mapping and request metrics.
//!
//! An unknown short code is not an error: it has zero clicks (this service does not own
//! the links table, and a link deleted or never clicked must still answer), so both
//! methods answer 0 rather than NOT_FOUND.
//!
//! Each call runs in a server span (`shortener.analytics.v1.AnalyticsService/{method}`)
//! parented to the W3C context in the request metadata, so it joins the caller's trace.

use std::future::Future;
use std::time::{Duration, Instant};

use opentelemetry::trace::TraceContextExt;
use shortener_common::db::is_transient;
use shortener_common::proto::analytics::analytics_service_server::AnalyticsService;
use shortener_common::proto::analytics::{
    BreakdownEntry, Bucket, GetAccountStatsRequest, GetAccountStatsResponse, GetClickCountRequest,
    GetClickCountResponse, GetClickStatsRequest, GetClickStatsResponse, TimeBucket,
};
use shortener_common::telemetry::propagation;
use sqlx::PgPool;
use tonic::{Code, Request, Response, Status};
use tracing::field::Empty;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::metrics::RpcMetrics;
use crate::queries::{self, Breakdown, Point};
use crate::request;
use shortener_common::proto::to_timestamp;

#[derive(Clone)]
pub struct AnalyticsApi {
    pool: PgPool,
    metrics: RpcMetrics,
    /// `statement_timeout` of every query.
    query_timeout: Duration,
}

impl AnalyticsApi {
    pub fn new(pool: PgPool, metrics: RpcMetrics, query_timeout: Duration) -> Self {
        Self {
            pool,
            metrics,
            query_timeout,
        }
    }

    /// Runs one call in its server span and records its metrics.
    async fn observed<T>(
        &self,
        (method, full_name): (&'static str, &'static str),
        metadata: &tonic::metadata::MetadataMap,
        f: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let span = server_span(method, full_name, metadata);
        let result = f.instrument(span.clone()).await;
        let code = match &result {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        };
        span.record("rpc.grpc.status_code", code as i64);
        if is_server_error(code) {
            span.record("otel.status_code", "ERROR");
        }
        self.metrics.observe(method, code, started.elapsed());
        result.map(Response::new)
    }

    async fn click_count(
        &self,
        req: GetClickCountRequest,
    ) -> Result<GetClickCountResponse, Status> {
        let code = request::short_code(&req.short_code)?;
        let count = queries::click_count(&self.pool, code, self.query_timeout)
            .await
            .map_err(|e| db_status("GetClickCount", e))?;
        Ok(GetClickCountResponse {
            short_code: req.short_code,
            total_clicks: count.humans + count.bots,
            human_clicks: count.humans,
            bot_clicks: count.bots,
        })
    }

    async fn click_stats(
        &self,
        req: GetClickStatsRequest,
    ) -> Result<GetClickStatsResponse, Status> {
        let code = request::short_code(&req.short_code)?;
        let window = request::window(
            req.from.as_ref(),
            req.to.as_ref(),
            req.bucket,
            chrono::Utc::now(),
        )?;
        let top = request::top(req.top)?;
        let stats = queries::click_stats(
            &self.pool,
            code,
            &window,
            top,
            req.exclude_bots,
            self.query_timeout,
        )
        .await
        .map_err(|e| db_status("GetClickStats", e))?;
        Ok(GetClickStatsResponse {
            short_code: req.short_code,
            from: Some(to_timestamp(window.from)),
            to: Some(to_timestamp(window.to)),
            bucket: window.step.bucket() as i32,
            total_clicks: stats.totals.humans + stats.totals.bots,
            human_clicks: stats.totals.humans,
            bot_clicks: stats.totals.bots,
            visitors: stats.totals.visitors,
            by_country: entries(stats.by_country),
            by_device_type: entries(stats.by_device_type),
            by_browser: entries(stats.by_browser),
            by_os: entries(stats.by_os),
            by_traffic_source: entries(stats.by_traffic_source),
            series: series(stats.series),
        })
    }

    async fn account_stats(
        &self,
        req: GetAccountStatsRequest,
    ) -> Result<GetAccountStatsResponse, Status> {
        if req.owner.is_empty() || req.owner.len() > 128 {
            return Err(Status::invalid_argument(
                "owner must be 1 to 128 characters",
            ));
        }
        let window = request::window(
            req.from.as_ref(),
            req.to.as_ref(),
            Bucket::Day as i32,
            chrono::Utc::now(),
        )?;
        let top = request::top(req.top)?;
        let stats =
            queries::account_stats(&self.pool, &req.owner, &window, top, self.query_timeout)
                .await
                .map_err(|e| db_status("GetAccountStats", e))?;
        Ok(GetAccountStatsResponse {
            from: Some(to_timestamp(window.from)),
            to: Some(to_timestamp(window.to)),
            total_clicks: stats.totals.humans + stats.totals.bots,
            human_clicks: stats.totals.humans,
            bot_clicks: stats.totals.bots,
            visitors: stats.totals.visitors,
            top_links: entries(stats.top_links),
            by_country: entries(stats.by_country),
            by_traffic_source: entries(stats.by_traffic_source),
            series: series(stats.series),
        })
    }
}

fn series(points: Vec<(chrono::DateTime<chrono::Utc>, Point)>) -> Vec<TimeBucket> {
    points
        .into_iter()
        .map(|(start, p)| TimeBucket {
            start: Some(to_timestamp(start)),
            clicks: p.humans + p.bots,
            human_clicks: p.humans,
            bot_clicks: p.bots,
            visitors: p.visitors,
        })
        .collect()
}

/// `rpc.service` of the server spans.
const RPC_SERVICE: &str = "shortener.analytics.v1.AnalyticsService";

fn server_span(
    method: &'static str,
    full_name: &'static str,
    metadata: &tonic::metadata::MetadataMap,
) -> tracing::Span {
    let span = tracing::info_span!(
        "analytics rpc",
        otel.name = full_name,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = RPC_SERVICE,
        rpc.method = method,
        rpc.grpc.status_code = Empty,
        otel.status_code = Empty,
    );
    let parent = propagation::extract_grpc(metadata);
    if parent.span().span_context().is_valid() {
        // Fails only when the span is disabled (filtered out).
        let _ = span.set_parent(parent);
    }
    span
}

/// The codes the gRPC semantic conventions count as server-side errors.
fn is_server_error(code: Code) -> bool {
    matches!(
        code,
        Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss
    )
}

fn entries(b: Breakdown) -> Vec<BreakdownEntry> {
    b.into_iter()
        .map(|e| BreakdownEntry {
            key: e.key,
            clicks: e.clicks,
            other: e.other,
        })
        .collect()
}

/// Postgres' SQLSTATE for a statement cancelled by `statement_timeout`.
const QUERY_CANCELED: &str = "57014";

/// Outages are UNAVAILABLE (clients may retry); a query over its time budget is
/// DEADLINE_EXCEEDED; anything else is a bug, logged with its detail and answered without it.
fn db_status(method: &str, e: sqlx::Error) -> Status {
    let cancelled = e
        .as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == QUERY_CANCELED);
    if cancelled {
        tracing::warn!(method, "query cancelled by statement_timeout");
        Status::deadline_exceeded("the query took too long")
    } else if is_transient(&e) {
        tracing::warn!(method, error = %e, "database unavailable");
        Status::unavailable("the click database is unavailable; retry later")
    } else {
        tracing::error!(method, error = %e, "query failed");
        Status::internal("query failed")
    }
}

#[tonic::async_trait]
impl AnalyticsService for AnalyticsApi {
    async fn get_click_count(
        &self,
        request: Request<GetClickCountRequest>,
    ) -> Result<Response<GetClickCountResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        self.observed(
            (
                "GetClickCount",
                "shortener.analytics.v1.AnalyticsService/GetClickCount",
            ),
            &metadata,
            self.click_count(message),
        )
        .await
    }

    async fn get_click_stats(
        &self,
        request: Request<GetClickStatsRequest>,
    ) -> Result<Response<GetClickStatsResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        self.observed(
            (
                "GetClickStats",
                "shortener.analytics.v1.AnalyticsService/GetClickStats",
            ),
            &metadata,
            self.click_stats(message),
        )
        .await
    }

    async fn get_account_stats(
        &self,
        request: Request<GetAccountStatsRequest>,
    ) -> Result<Response<GetAccountStatsResponse>, Status> {
        let (metadata, _, message) = request.into_parts();
        self.observed(
            (
                "GetAccountStats",
                "shortener.analytics.v1.AnalyticsService/GetAccountStats",
            ),
            &metadata,
            self.account_stats(message),
        )
        .await
    }
}
