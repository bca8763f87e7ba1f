//! `GET /api/v1/orphan-visits`: redirects of codes that named no live link, per day.

use axum::extract::State;
use axum::Json;
use chrono::{Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Owner;
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::{orphans, AppState};

pub const MAX_DAYS: i64 = 366;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OrphanQuery {
    /// Days back from today, 1 to 366 (default 30).
    pub days: Option<i64>,
}

#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct OrphanDay {
    pub day: NaiveDate,
    /// Codes no link ever had.
    pub unknown_code: i64,
    /// Deleted or expired links, or links past their max_visits.
    pub gone: i64,
    /// Paths that cannot be a code.
    pub invalid_code: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrphanVisits {
    /// The domain the counts are for (PUBLIC_BASE_URL's host).
    pub domain: String,
    /// Days with orphan visits, oldest first (flushed every 10 s by each replica).
    pub days: Vec<OrphanDay>,
}

/// Orphan visits of this deployment's domain per day (Shlink's orphan visits); the codes
/// themselves are not kept.
#[utoipa::path(
    get,
    path = "/api/v1/orphan-visits",
    tag = "links",
    params(OrphanQuery),
    responses(
        (status = 200, description = "Counts per day and kind", body = OrphanVisits),
        (status = 400, description = "days out of range", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn orphan_visits(
    State(state): State<AppState>,
    _owner: Owner,
    ApiQuery(q): ApiQuery<OrphanQuery>,
) -> Result<Json<OrphanVisits>, ApiError> {
    let days = q.days.unwrap_or(30);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(ApiError::InvalidQuery(format!(
            "days must be between 1 and {MAX_DAYS}"
        )));
    }
    let since = Utc::now().date_naive() - Duration::days(days - 1);
    let rows = orphans::per_day(&state.pool, &state.public_domain, since)
        .await
        .map_err(ApiError::from_db)?;
    let mut out: Vec<OrphanDay> = Vec::new();
    for (day, kind, visits) in rows {
        if out.last().is_none_or(|d| d.day != day) {
            out.push(OrphanDay {
                day,
                ..OrphanDay::default()
            });
        }
        let d = out.last_mut().expect("pushed above");
        match kind.as_str() {
            "unknown_code" => d.unknown_code += visits,
            "gone" => d.gone += visits,
            "invalid_code" => d.invalid_code += visits,
            _ => {}
        }
    }
    Ok(Json(OrphanVisits {
        domain: state.public_domain.to_string(),
        days: out,
    }))
}
