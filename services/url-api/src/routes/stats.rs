//! `GET /api/v1/links/{code}/stats`: click breakdowns and a time series from analytics-rpc.
//!
//! Unlike link details (which degrade to `total_clicks: null`), this endpoint has nothing
//! useful to say without analytics, so an outage answers 503 `stats_unavailable` with
//! `Retry-After` rather than empty breakdowns that would read as "no clicks".

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shortener_common::proto::analytics::{
    BreakdownEntry, Bucket, GetClickStatsRequest, GetClickStatsResponse,
};
use shortener_common::proto::{to_datetime, to_timestamp};
use utoipa::{IntoParams, ToSchema};

use crate::analytics_client::AnalyticsError;
use crate::auth::Owner;
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::routes::links::owned_link;
use crate::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BucketParam {
    Minute,
    Hour,
    Day,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Inclusive start (RFC 3339); default 30 days before `to`.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive end (RFC 3339); default now.
    pub to: Option<DateTime<Utc>>,
    /// Series bucket; default hour for ranges up to 2 days, else day.
    pub bucket: Option<BucketParam>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Breakdown {
    pub key: String,
    pub clicks: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SeriesPoint {
    pub start: DateTime<Utc>,
    pub clicks: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LinkStats {
    pub code: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub bucket: Option<BucketParam>,
    pub total_clicks: u64,
    pub by_country: Vec<Breakdown>,
    pub by_device_type: Vec<Breakdown>,
    pub by_browser: Vec<Breakdown>,
    pub by_traffic_source: Vec<Breakdown>,
    pub series: Vec<SeriesPoint>,
    /// Always true in a 200 answer (an outage answers 503).
    pub stats_available: bool,
}

fn breakdown(entries: Vec<BreakdownEntry>) -> Vec<Breakdown> {
    entries
        .into_iter()
        .map(|e| Breakdown {
            key: e.key,
            clicks: e.clicks,
        })
        .collect()
}

impl From<GetClickStatsResponse> for LinkStats {
    fn from(r: GetClickStatsResponse) -> Self {
        let bucket = match r.bucket() {
            Bucket::Minute => Some(BucketParam::Minute),
            Bucket::Hour => Some(BucketParam::Hour),
            Bucket::Day => Some(BucketParam::Day),
            Bucket::Unspecified => None,
        };
        Self {
            code: r.short_code,
            from: r.from.as_ref().and_then(to_datetime),
            to: r.to.as_ref().and_then(to_datetime),
            bucket,
            total_clicks: r.total_clicks,
            by_country: breakdown(r.by_country),
            by_device_type: breakdown(r.by_device_type),
            by_browser: breakdown(r.by_browser),
            by_traffic_source: breakdown(r.by_traffic_source),
            series: r
                .series
                .into_iter()
                .filter_map(|b| {
                    Some(SeriesPoint {
                        start: to_datetime(b.start.as_ref()?)?,
                        clicks: b.clicks,
                    })
                })
                .collect(),
            stats_available: true,
        }
    }
}

/// Click statistics of one of the caller's links.
#[utoipa::path(
    get,
    path = "/api/v1/links/{code}/stats",
    tag = "links",
    params(("code" = String, Path, description = "Short code or alias"), StatsQuery),
    responses(
        (status = 200, description = "Totals, breakdowns and series", body = LinkStats),
        (status = 400, description = "Bad range or bucket", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such link owned by this key", body = ErrorBody),
        (status = 503, description = "Analytics unavailable (see Retry-After)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn stats(
    State(state): State<AppState>,
    Owner(owner): Owner,
    code: Result<Path<String>, PathRejection>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Json<LinkStats>, ApiError> {
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from >= to {
            return Err(ApiError::InvalidQuery("from must be before to".into()));
        }
    }
    let row = owned_link(&state, &owner, code).await?;
    fetch_stats(&state, row.short_code, &q).await.map(Json)
}

/// Asks analytics-rpc for the stats of `short_code` (whose ownership the caller checked):
/// a refused range is a 400, an outage (down, slow, circuit open) `StatsUnavailable`.
pub(crate) async fn fetch_stats(
    state: &AppState,
    short_code: String,
    q: &StatsQuery,
) -> Result<LinkStats, ApiError> {
    let bucket = match q.bucket {
        None => Bucket::Unspecified,
        Some(BucketParam::Minute) => Bucket::Minute,
        Some(BucketParam::Hour) => Bucket::Hour,
        Some(BucketParam::Day) => Bucket::Day,
    };
    let request = GetClickStatsRequest {
        short_code,
        from: q.from.map(to_timestamp),
        to: q.to.map(to_timestamp),
        bucket: bucket as i32,
    };
    match state.analytics.click_stats(request).await {
        Ok(resp) => Ok(resp.into()),
        Err(AnalyticsError::Rejected(status)) => {
            Err(ApiError::InvalidQuery(status.message().to_string()))
        }
        Err(_) => Err(ApiError::StatsUnavailable),
    }
}
