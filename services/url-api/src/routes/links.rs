//! `/api/v1/links`: create, list, inspect and delete links (API key required).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Owner;
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::store::{self, Cursor, DeleteOutcome, LinkRow, NewLink, SHORT_CODE_CONSTRAINT};
use crate::validate::{check_alias, is_plausible_code};
use crate::{codes, AppState};

/// Longest lifetime a link may be given.
pub const MAX_EXPIRY_SECS: i64 = 10 * 365 * 24 * 3600;
pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 100;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateLinkRequest {
    /// Target URL: http or https, public host.
    #[schema(example = "https://example.com/some/long/path")]
    pub long_url: String,
    /// Custom code: 3 to 64 of `[A-Za-z0-9_-]`, not a reserved word.
    pub alias: Option<String>,
    /// Absolute expiry (RFC 3339). Exclusive with `expires_in_secs`.
    pub expires_at: Option<DateTime<Utc>>,
    /// Expiry relative to now, in seconds. Exclusive with `expires_at`.
    pub expires_in_secs: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LinkResponse {
    pub code: String,
    pub short_url: String,
    pub long_url: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LinkList {
    pub items: Vec<LinkResponse>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 100 (default 50).
    pub limit: Option<u32>,
    /// Opaque cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

impl LinkResponse {
    pub fn from_row(state: &AppState, row: LinkRow) -> Self {
        Self {
            short_url: format!("{}/{}", state.public_base_url, row.short_code),
            code: row.short_code,
            long_url: row.long_url,
            created_at: row.created_at,
            expires_at: row.expires_at,
        }
    }
}

fn expiry(req: &CreateLinkRequest, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let at = match (req.expires_at, req.expires_in_secs) {
        (Some(_), Some(_)) => {
            return Err(ApiError::InvalidRequest(
                "give either expires_at or expires_in_secs, not both".into(),
            ))
        }
        (Some(at), None) => at,
        (None, Some(secs)) if (1..=MAX_EXPIRY_SECS).contains(&secs) => {
            now + Duration::seconds(secs)
        }
        (None, Some(_)) => {
            return Err(ApiError::InvalidRequest(format!(
                "expires_in_secs must be between 1 and {MAX_EXPIRY_SECS}"
            )))
        }
        (None, None) => return Ok(None),
    };
    if at <= now {
        return Err(ApiError::InvalidRequest("expires_at is in the past".into()));
    }
    if at > now + Duration::seconds(MAX_EXPIRY_SECS) {
        return Err(ApiError::InvalidRequest(
            "expires_at is more than 10 years away".into(),
        ));
    }
    Ok(Some(at))
}

/// Creates a short link.
#[utoipa::path(
    post,
    path = "/api/v1/links",
    tag = "links",
    request_body = CreateLinkRequest,
    responses(
        (status = 201, description = "Created", body = LinkResponse),
        (status = 400, description = "Invalid URL, alias, expiry or JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 409, description = "Alias already taken", body = ErrorBody),
        (status = 413, description = "Body larger than 16 KiB", body = ErrorBody),
        (status = 415, description = "Body is not application/json", body = ErrorBody),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorBody),
        (status = 503, description = "No free code found or database down", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    Owner(owner): Owner,
    ApiJson(req): ApiJson<CreateLinkRequest>,
) -> Result<Response, ApiError> {
    let url = state
        .url_policy
        .check(&req.long_url)
        .map_err(|e| ApiError::InvalidUrl(e.to_string()))?;
    let expires_at = expiry(&req, Utc::now())?;
    let row = match &req.alias {
        Some(alias) => {
            check_alias(alias).map_err(|e| ApiError::InvalidAlias(e.to_string()))?;
            let link = NewLink {
                short_code: alias,
                long_url: url.as_str(),
                expires_at,
                owner_key_id: &owner,
            };
            store::insert(&state.pool, &link).await.map_err(|e| {
                if shortener_common::db::is_unique_violation(&e, SHORT_CODE_CONSTRAINT) {
                    ApiError::AliasTaken(alias.clone())
                } else {
                    ApiError::from_db(e)
                }
            })?
        }
        None => insert_with_random_code(&state, url.as_str(), expires_at, &owner).await?,
    };
    // A redirect may have cached "missing" for this code just before.
    state.cache.invalidate(&row.short_code);
    let body = LinkResponse::from_row(&state, row);
    let location = format!("/api/v1/links/{}", body.code);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

async fn insert_with_random_code(
    state: &AppState,
    long_url: &str,
    expires_at: Option<DateTime<Utc>>,
    owner: &str,
) -> Result<LinkRow, ApiError> {
    for attempt in 1..=codes::MAX_ATTEMPTS {
        let code = codes::generate();
        let link = NewLink {
            short_code: &code,
            long_url,
            expires_at,
            owner_key_id: owner,
        };
        match store::insert(&state.pool, &link).await {
            Ok(row) => return Ok(row),
            Err(e) if shortener_common::db::is_unique_violation(&e, SHORT_CODE_CONSTRAINT) => {
                tracing::warn!(attempt, "generated short code collided, retrying");
            }
            Err(e) => return Err(ApiError::from_db(e)),
        }
    }
    Err(ApiError::CodeExhausted)
}

/// Lists the caller's live links, newest first (keyset pagination).
#[utoipa::path(
    get,
    path = "/api/v1/links",
    tag = "links",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of links", body = LinkList),
        (status = 400, description = "Bad limit or cursor", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Owner(owner): Owner,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<LinkList>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!(
            "limit must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => {
            Some(Cursor::decode(c).ok_or_else(|| ApiError::InvalidQuery("invalid cursor".into()))?)
        }
        None => None,
    };
    let (rows, next) = store::list_by_owner(&state.pool, &owner, limit, after)
        .await
        .map_err(ApiError::from_db)?;
    Ok(Json(LinkList {
        items: rows
            .into_iter()
            .map(|r| LinkResponse::from_row(&state, r))
            .collect(),
        next_cursor: next.map(|c| c.encode()),
    }))
}

/// The caller's link `code`, or 404 (also for other owners' links) / 410 (deleted).
pub(crate) async fn owned_link(
    state: &AppState,
    owner: &str,
    code: Result<Path<String>, PathRejection>,
) -> Result<LinkRow, ApiError> {
    let Ok(Path(code)) = code else {
        return Err(ApiError::NotFound);
    };
    if !is_plausible_code(&code) {
        return Err(ApiError::NotFound);
    }
    let row = store::find(&state.pool, &code)
        .await
        .map_err(ApiError::from_db)?
        .filter(|r| r.owner_key_id == owner)
        .ok_or(ApiError::NotFound)?;
    if row.deleted_at.is_some() {
        return Err(ApiError::Gone);
    }
    Ok(row)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LinkDetails {
    #[serde(flatten)]
    pub link: LinkResponse,
    /// Clicks stored so far; null when analytics is unavailable.
    pub total_clicks: Option<u64>,
    /// False when analytics-rpc could not be asked (down, slow, or circuit open).
    pub stats_available: bool,
}

/// Details of one of the caller's links, with its click count. When analytics-rpc is
/// down or slow the link is still returned (within ANALYTICS_RPC_TIMEOUT_MS) with
/// `total_clicks: null` and `stats_available: false`.
#[utoipa::path(
    get,
    path = "/api/v1/links/{code}",
    tag = "links",
    params(("code" = String, Path, description = "Short code or alias")),
    responses(
        (status = 200, description = "The link", body = LinkDetails),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such link owned by this key", body = ErrorBody),
        (status = 410, description = "Link was deleted", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn details(
    State(state): State<AppState>,
    Owner(owner): Owner,
    code: Result<Path<String>, PathRejection>,
) -> Result<Json<LinkDetails>, ApiError> {
    let row = owned_link(&state, &owner, code).await?;
    let total_clicks = state.analytics.click_count(&row.short_code).await.ok();
    Ok(Json(LinkDetails {
        link: LinkResponse::from_row(&state, row),
        stats_available: total_clicks.is_some(),
        total_clicks,
    }))
}

/// Deletes one of the caller's links (soft delete: the code is never reused).
#[utoipa::path(
    delete,
    path = "/api/v1/links/{code}",
    tag = "links",
    params(("code" = String, Path, description = "Short code or alias")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such link owned by this key", body = ErrorBody),
        (status = 410, description = "Already deleted", body = ErrorBody),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    Owner(owner): Owner,
    code: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let Ok(Path(code)) = code else {
        return Err(ApiError::NotFound);
    };
    if !is_plausible_code(&code) {
        return Err(ApiError::NotFound);
    }
    match store::soft_delete(&state.pool, &code, &owner)
        .await
        .map_err(ApiError::from_db)?
    {
        DeleteOutcome::Deleted => {
            state.cache.invalidate(&code);
            Ok(StatusCode::NO_CONTENT)
        }
        DeleteOutcome::AlreadyDeleted => Err(ApiError::Gone),
        DeleteOutcome::NotFound => Err(ApiError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(at: Option<DateTime<Utc>>, secs: Option<i64>) -> CreateLinkRequest {
        CreateLinkRequest {
            long_url: "https://example.com".into(),
            alias: None,
            expires_at: at,
            expires_in_secs: secs,
        }
    }

    #[test]
    fn expiry_rules() {
        let now = Utc::now();
        assert_eq!(expiry(&req(None, None), now).unwrap(), None);
        assert_eq!(
            expiry(&req(None, Some(60)), now).unwrap(),
            Some(now + Duration::seconds(60))
        );
        let later = now + Duration::hours(1);
        assert_eq!(expiry(&req(Some(later), None), now).unwrap(), Some(later));
        assert!(expiry(&req(Some(later), Some(5)), now).is_err());
        assert!(expiry(&req(None, Some(0)), now).is_err());
        assert!(expiry(&req(None, Some(MAX_EXPIRY_SECS + 1)), now).is_err());
        assert!(expiry(&req(Some(now - Duration::seconds(1)), None), now).is_err());
    }
}
