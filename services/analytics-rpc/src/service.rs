//! `AnalyticsService`: validation, queries, error mapping and request metrics.
//!
//! An unknown short code is not an error: it has zero clicks (this service does not own
//! the links table, and a link deleted or never clicked must still answer), so both
//! methods answer 0 rather than NOT_FOUND.

use std::future::Future;
use std::time::Instant;

use shortener_common::db::is_transient;
use shortener_common::proto::analytics::analytics_service_server::AnalyticsService;
use shortener_common::proto::analytics::{
    BreakdownEntry, GetClickCountRequest, GetClickCountResponse, GetClickStatsRequest,
    GetClickStatsResponse, TimeBucket,
};
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use crate::metrics::RpcMetrics;
use crate::queries::{self, Breakdown};
use crate::request::{self, to_proto};

#[derive(Clone)]
pub struct AnalyticsApi {
    pool: PgPool,
    metrics: RpcMetrics,
}

impl AnalyticsApi {
    pub fn new(pool: PgPool, metrics: RpcMetrics) -> Self {
        Self { pool, metrics }
    }

    async fn observed<T>(
        &self,
        method: &'static str,
        f: impl Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let result = f.await;
        let code = match &result {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        self.metrics.observe(method, code, started.elapsed());
        result.map(Response::new)
    }

    async fn click_count(
        &self,
        req: GetClickCountRequest,
    ) -> Result<GetClickCountResponse, Status> {
        let code = request::short_code(&req.short_code)?;
        let total = queries::click_count(&self.pool, code)
            .await
            .map_err(|e| db_status("GetClickCount", e))?;
        Ok(GetClickCountResponse {
            short_code: req.short_code,
            total_clicks: total,
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
        let stats = queries::click_stats(&self.pool, code, &window)
            .await
            .map_err(|e| db_status("GetClickStats", e))?;
        Ok(GetClickStatsResponse {
            short_code: req.short_code,
            from: Some(to_proto(window.from)),
            to: Some(to_proto(window.to)),
            bucket: window.step.bucket() as i32,
            total_clicks: stats.total,
            by_country: entries(stats.by_country),
            by_device_type: entries(stats.by_device_type),
            by_browser: entries(stats.by_browser),
            by_traffic_source: entries(stats.by_traffic_source),
            series: stats
                .series
                .into_iter()
                .map(|(start, clicks)| TimeBucket {
                    start: Some(to_proto(start)),
                    clicks,
                })
                .collect(),
        })
    }
}

fn entries(b: Breakdown) -> Vec<BreakdownEntry> {
    b.into_iter()
        .map(|(key, clicks)| BreakdownEntry { key, clicks })
        .collect()
}

/// Outages are UNAVAILABLE (clients may retry); anything else is a bug, logged with its
/// detail and answered without it.
fn db_status(method: &str, e: sqlx::Error) -> Status {
    if is_transient(&e) {
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
        self.observed("GetClickCount", self.click_count(request.into_inner()))
            .await
    }

    async fn get_click_stats(
        &self,
        request: Request<GetClickStatsRequest>,
    ) -> Result<Response<GetClickStatsResponse>, Status> {
        self.observed("GetClickStats", self.click_stats(request.into_inner()))
            .await
    }
}
