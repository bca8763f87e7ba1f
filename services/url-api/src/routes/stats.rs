//! `GET /api/v1/links/{code}/stats` (one link) and `GET /api/v1/account/stats` (all the
//! caller's links): totals, breakdowns and a time series from analytics-rpc.
//!
//! Unlike link details (which degrade to `total_clicks: null`), these endpoints have
//! nothing useful to say without analytics, so an outage, a failed query or a response
//! over the size limit answers 503 `stats_unavailable` with `Retry-After` (never the
//! service's internal message), rather than empty breakdowns that would read as "no
//! clicks". Only a request analytics-rpc judges invalid is a 400. An owner over its
//! concurrent-call limit gets 429.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shortener_common::proto::analytics::{
    BreakdownEntry, Bucket, GetAccountStatsRequest, GetAccountStatsResponse, GetClickStatsRequest,
    GetClickStatsResponse, TimeBucket,
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
    /// Series bucket; default hour for ranges up to 2 days, else day. With hour and day
    /// buckets the range is widened to whole buckets (`from`/`to` of the answer).
    /// Minute buckets cover at most 6 hours.
    pub bucket: Option<BucketParam>,
    /// Entries per breakdown before the `other` entry: 1 to 100, default 10.
    pub top: Option<u32>,
    /// Breakdowns count human clicks only (totals always report both).
    pub exclude_bots: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccountStatsQuery {
    /// Inclusive start (RFC 3339); default 30 days before `to`; widened to whole days.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive end (RFC 3339); default now; widened to whole days.
    pub to: Option<DateTime<Utc>>,
    /// Entries per list before the `other` entry: 1 to 100, default 10.
    pub top: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Breakdown {
    pub key: String,
    pub clicks: u64,
    /// True for the last entry, key `other`: the sum of every key after the top N.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub other: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SeriesPoint {
    pub start: DateTime<Utc>,
    /// human_clicks + bot_clicks.
    pub clicks: u64,
    pub human_clicks: u64,
    pub bot_clicks: u64,
    /// Visitors whose first click of the day (UTC) fell in this bucket; a day's sum is its
    /// unique visitors. 0 in minute buckets.
    pub visitors: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LinkStats {
    pub code: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub bucket: Option<BucketParam>,
    /// human_clicks + bot_clicks.
    pub total_clicks: u64,
    /// Clicks by people.
    pub human_clicks: u64,
    /// Crawlers, link-preview fetchers (Slack, WhatsApp, ...), HTTP tools, requests
    /// without a User-Agent.
    pub bot_clicks: u64,
    /// Unique visitors (keyed hash of IP and User-Agent, exact per day), summed over the
    /// days of the range.
    pub visitors: u64,
    pub by_country: Vec<Breakdown>,
    pub by_device_type: Vec<Breakdown>,
    pub by_browser: Vec<Breakdown>,
    pub by_os: Vec<Breakdown>,
    pub by_traffic_source: Vec<Breakdown>,
    pub series: Vec<SeriesPoint>,
    /// Always true in a 200 answer (an outage answers 503).
    pub stats_available: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AccountStats {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub total_clicks: u64,
    pub human_clicks: u64,
    pub bot_clicks: u64,
    /// Sum over links and days of each link's daily unique visitors.
    pub visitors: u64,
    /// The caller's links with the most human clicks (key: short code).
    pub top_links: Vec<Breakdown>,
    /// Human clicks by country and by source, over all the caller's links.
    pub by_country: Vec<Breakdown>,
    pub by_traffic_source: Vec<Breakdown>,
    /// Daily buckets.
    pub series: Vec<SeriesPoint>,
}

fn breakdown(entries: Vec<BreakdownEntry>) -> Vec<Breakdown> {
    entries
        .into_iter()
        .map(|e| Breakdown {
            key: e.key,
            clicks: e.clicks,
            other: e.other,
        })
        .collect()
}

fn series(buckets: Vec<TimeBucket>) -> Vec<SeriesPoint> {
    buckets
        .into_iter()
        .filter_map(|b| {
            Some(SeriesPoint {
                start: to_datetime(b.start.as_ref()?)?,
                clicks: b.clicks,
                human_clicks: b.human_clicks,
                bot_clicks: b.bot_clicks,
                visitors: b.visitors,
            })
        })
        .collect()
}

impl From<GetAccountStatsResponse> for AccountStats {
    fn from(r: GetAccountStatsResponse) -> Self {
        Self {
            from: r.from.as_ref().and_then(to_datetime),
            to: r.to.as_ref().and_then(to_datetime),
            total_clicks: r.total_clicks,
            human_clicks: r.human_clicks,
            bot_clicks: r.bot_clicks,
            visitors: r.visitors,
            top_links: breakdown(r.top_links),
            by_country: breakdown(r.by_country),
            by_traffic_source: breakdown(r.by_traffic_source),
            series: series(r.series),
        }
    }
}

/// `top` as analytics-rpc takes it (0 = default), or why it is refused.
fn top(top: Option<u32>) -> Result<u32, ApiError> {
    match top {
        None => Ok(0),
        Some(n @ 1..=100) => Ok(n),
        Some(_) => Err(ApiError::InvalidQuery(
            "top must be between 1 and 100".into(),
        )),
    }
}

fn check_range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Result<(), ApiError> {
    match (from, to) {
        (Some(from), Some(to)) if from >= to => {
            Err(ApiError::InvalidQuery("from must be before to".into()))
        }
        _ => Ok(()),
    }
}

/// The API's answer to a failed analytics call.
fn analytics_error(e: AnalyticsError) -> ApiError {
    match e {
        AnalyticsError::Rejected(status) => ApiError::InvalidQuery(status.message().to_string()),
        AnalyticsError::Busy => ApiError::RateLimited {
            retry_after_secs: 1,
        },
        AnalyticsError::ShortCircuited | AnalyticsError::Timeout | AnalyticsError::Failed(_) => {
            ApiError::StatsUnavailable
        }
    }
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
            human_clicks: r.human_clicks,
            bot_clicks: r.bot_clicks,
            visitors: r.visitors,
            by_country: breakdown(r.by_country),
            by_device_type: breakdown(r.by_device_type),
            by_browser: breakdown(r.by_browser),
            by_os: breakdown(r.by_os),
            by_traffic_source: breakdown(r.by_traffic_source),
            series: series(r.series),
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
        (status = 400, description = "Bad range, bucket or top", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such link owned by this key", body = ErrorBody),
        (status = 429, description = "Too many analytics requests in flight for this key (see Retry-After)", body = ErrorBody),
        (status = 503, description = "Analytics unavailable or the query failed (see Retry-After)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn stats(
    State(state): State<AppState>,
    Owner(owner): Owner,
    code: Result<Path<String>, PathRejection>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Json<LinkStats>, ApiError> {
    check_range(q.from, q.to)?;
    let row = owned_link(&state, &owner, code).await?;
    fetch_stats(&state, &owner, row.short_code, &q)
        .await
        .map(Json)
}

/// Asks analytics-rpc for the stats of `short_code` (whose ownership the caller checked)
/// on behalf of `owner`: a refused range or `top` is a 400, an outage (down, slow, circuit
/// open) or a failed query `StatsUnavailable`, too many calls of the owner 429.
pub(crate) async fn fetch_stats(
    state: &AppState,
    owner: &str,
    short_code: String,
    q: &StatsQuery,
) -> Result<LinkStats, ApiError> {
    let top = top(q.top)?;
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
        top,
        exclude_bots: q.exclude_bots.unwrap_or(false),
    };
    match state.analytics.click_stats(owner, request).await {
        Ok(resp) => Ok(resp.into()),
        Err(e) => Err(analytics_error(e)),
    }
}

/// Click analytics over all of the caller's links (Dub's workspace analytics): totals,
/// daily series, top links, countries and sources.
#[utoipa::path(
    get,
    path = "/api/v1/account/stats",
    tag = "links",
    params(AccountStatsQuery),
    responses(
        (status = 200, description = "Totals, top lists and daily series", body = AccountStats),
        (status = 400, description = "Bad range or top", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 429, description = "Too many analytics requests in flight for this key (see Retry-After)", body = ErrorBody),
        (status = 503, description = "Analytics unavailable or the query failed (see Retry-After)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn account(
    State(state): State<AppState>,
    Owner(owner): Owner,
    ApiQuery(q): ApiQuery<AccountStatsQuery>,
) -> Result<Json<AccountStats>, ApiError> {
    check_range(q.from, q.to)?;
    fetch_account_stats(&state, &owner, &q).await.map(Json)
}

/// Asks analytics-rpc for `owner`'s account-wide stats: what `GET /api/v1/account/stats`
/// and the dashboard's account page both show.
pub(crate) async fn fetch_account_stats(
    state: &AppState,
    owner: &str,
    q: &AccountStatsQuery,
) -> Result<AccountStats, ApiError> {
    let request = GetAccountStatsRequest {
        owner: owner.to_string(),
        from: q.from.map(to_timestamp),
        to: q.to.map(to_timestamp),
        top: top(q.top)?,
    };
    match state.analytics.account_stats(request).await {
        Ok(resp) => Ok(resp.into()),
        Err(e) => Err(analytics_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use tonic::Status;

    #[test]
    fn internal_and_size_errors_are_5xx_without_their_message() {
        for status in [
            Status::internal("query failed"),
            Status::out_of_range("decoded message length too large: 5000000 > 4194304"),
            Status::unknown("h2 protocol error"),
        ] {
            let e = analytics_error(AnalyticsError::Failed(status));
            assert_eq!(e.status(), StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(e.code(), "stats_unavailable");
            assert!(!e.to_string().contains("decoded"), "{e}");
        }
        let e = analytics_error(AnalyticsError::Rejected(Status::invalid_argument(
            "from must be before to",
        )));
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            analytics_error(AnalyticsError::Busy).status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    #[test]
    fn top_is_1_to_100() {
        assert_eq!(top(None).unwrap(), 0);
        assert_eq!(top(Some(100)).unwrap(), 100);
        assert!(top(Some(0)).is_err());
        assert!(top(Some(101)).is_err());
    }
}
