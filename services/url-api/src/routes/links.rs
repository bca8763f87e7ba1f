//! `/api/v1/links`: create, list, inspect and delete links (API key required).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Owner;
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::metadata::{self, Utm};
use crate::rules::{self, RedirectRule};
use crate::store::{
    self, Cursor, DeleteOutcome, LinkPatch, LinkRow, ListFilter, ListOrder, NewLink,
    SHORT_CODE_CONSTRAINT,
};
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
    /// Up to 200 characters.
    pub title: Option<String>,
    /// Up to 1000 characters.
    pub description: Option<String>,
    /// Up to 20 tags of 1 to 50 letters, digits, `-`, `_`, `.`; stored lowercased.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Append the short URL's query string to the destination (default true).
    pub forward_query: Option<bool>,
    /// UTM parameters set in the destination's query.
    pub utm: Option<Utm>,
    /// Up to 10 ordered rules; the first whose conditions all match picks the target.
    #[serde(default)]
    pub redirect_rules: Vec<RedirectRule>,
    /// After this many human clicks (1 to 10^9) the link answers like an expired one.
    pub max_visits: Option<i64>,
    /// Where visitors go once the link expired or reached `max_visits`, instead of a 410.
    pub expired_url: Option<String>,
    /// Anyone may fetch the QR code at `/{code}/qr` (default false).
    #[serde(default)]
    pub public_qr: bool,
    /// Visitors must enter this (4 to 128 characters) to be redirected; stored as argon2id.
    pub password: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LinkResponse {
    pub code: String,
    pub short_url: String,
    pub long_url: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub forward_query: bool,
    /// When the link was last edited; null if never.
    pub updated_at: Option<DateTime<Utc>>,
    pub redirect_rules: Vec<RedirectRule>,
    pub max_visits: Option<i64>,
    pub expired_url: Option<String>,
    pub public_qr: bool,
    /// True when visitors must enter a password (never returned).
    pub password_protected: bool,
}

/// `PATCH` body: only the fields present change; `null` clears a nullable field.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditLinkRequest {
    /// New target URL (checked as on create).
    pub long_url: Option<String>,
    /// New absolute expiry, or null for none. Exclusive with `expires_in_secs`.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub expires_at: Option<Option<DateTime<Utc>>>,
    /// New expiry relative to now, in seconds.
    pub expires_in_secs: Option<i64>,
    /// New title, or null to remove it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub title: Option<Option<String>>,
    /// New description, or null to remove it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// Replaces all tags.
    pub tags: Option<Vec<String>>,
    pub forward_query: Option<bool>,
    /// UTM parameters set in the (new or current) destination's query.
    pub utm: Option<Utm>,
    /// Replaces all redirect rules (`[]` or null removes them).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<RedirectRule>>)]
    pub redirect_rules: Option<Option<Vec<RedirectRule>>>,
    /// New visit limit, or null for none.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<i64>)]
    pub max_visits: Option<Option<i64>>,
    /// New target after expiry, or null for none.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub expired_url: Option<Option<String>>,
    pub public_qr: Option<bool>,
    /// New password, or null to remove the protection.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub password: Option<Option<String>>,
}

/// A present field, null included, becomes `Some`; an absent one stays `None` (default).
fn nullable<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
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
    /// Case-insensitive text searched in the code, the long URL and the title.
    pub q: Option<String>,
    /// Comma-separated tags; only links carrying all of them.
    pub tags: Option<String>,
    /// Links created at or after this time (RFC 3339).
    pub created_after: Option<DateTime<Utc>>,
    /// Links created before this time (RFC 3339).
    pub created_before: Option<DateTime<Utc>>,
    /// `created` (newest first, the default) or `clicks` (most clicked first).
    pub order: Option<String>,
}

/// Longest `q` accepted by the list.
pub const MAX_SEARCH_CHARS: usize = 200;

impl LinkResponse {
    pub fn from_row(state: &AppState, row: LinkRow) -> Self {
        Self {
            short_url: format!("{}/{}", state.public_base_url, row.short_code),
            code: row.short_code,
            long_url: row.long_url,
            created_at: row.created_at,
            expires_at: row.expires_at,
            title: row.title,
            description: row.description,
            tags: row.tags,
            forward_query: row.forward_query,
            updated_at: row.updated_at,
            redirect_rules: row
                .redirect_rules
                .as_deref()
                .and_then(|json| serde_json::from_str(json).ok())
                .unwrap_or_default(),
            max_visits: row.max_visits,
            expired_url: row.expired_url,
            public_qr: row.public_qr,
            password_protected: row.password_hash.is_some(),
        }
    }
}

fn expiry(
    expires_at: Option<DateTime<Utc>>,
    expires_in_secs: Option<i64>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, ApiError> {
    let at = match (expires_at, expires_in_secs) {
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
    let row = create_link(&state, &owner, &req).await?;
    let body = LinkResponse::from_row(&state, row);
    let location = format!("/api/v1/links/{}", body.code);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(body),
    )
        .into_response())
}

/// Validates and stores a new link of `owner`: what `POST /api/v1/links` and the
/// dashboard's shorten form both do.
pub(crate) async fn create_link(
    state: &AppState,
    owner: &str,
    req: &CreateLinkRequest,
) -> Result<LinkRow, ApiError> {
    let long_url = destination(state, &req.long_url, req.utm.as_ref())?;
    let expires_at = expiry(req.expires_at, req.expires_in_secs, Utc::now())?;
    let title = req
        .title
        .as_deref()
        .map(metadata::title)
        .transpose()?
        .flatten();
    let description = req
        .description
        .as_deref()
        .map(metadata::description)
        .transpose()?
        .flatten();
    let tags = metadata::tags(&req.tags)?;
    let redirect_rules = rules_json(state, &req.redirect_rules)?;
    let max_visits = req.max_visits.map(metadata::max_visits).transpose()?;
    let expired_url = req
        .expired_url
        .as_deref()
        .map(|u| expired_target(state, u))
        .transpose()?;
    let mut link = NewLink {
        short_code: "",
        long_url: &long_url,
        expires_at,
        owner_key_id: owner,
        title: title.as_deref(),
        description: description.as_deref(),
        tags: &tags,
        forward_query: req.forward_query.unwrap_or(true),
        redirect_rules: redirect_rules.as_deref(),
        max_visits,
        expired_url: expired_url.as_deref(),
        public_qr: req.public_qr,
        password_hash: None,
    };
    let password_hash = match &req.password {
        Some(p) => Some(hash_password(p).await?),
        None => None,
    };
    link.password_hash = password_hash.as_deref();
    let row = match &req.alias {
        Some(alias) => {
            check_alias(alias).map_err(|e| ApiError::InvalidAlias(e.to_string()))?;
            link.short_code = alias;
            store::insert(&state.pool, &link).await.map_err(|e| {
                if shortener_common::db::is_unique_violation(&e, SHORT_CODE_CONSTRAINT) {
                    ApiError::AliasTaken(alias.clone())
                } else {
                    ApiError::from_db(e)
                }
            })?
        }
        None => insert_with_random_code(state, link).await?,
    };
    // A redirect may have cached "missing" for this code just before.
    state.cache.invalidate(&row.short_code);
    Ok(row)
}

/// Checked rules as stored: None for no rules.
fn rules_json(state: &AppState, given: &[RedirectRule]) -> Result<Option<String>, ApiError> {
    if given.is_empty() {
        return Ok(None);
    }
    let checked = rules::check(given.to_vec(), &state.url_policy)?;
    Ok(Some(
        serde_json::to_string(&checked).map_err(|_| ApiError::Internal)?,
    ))
}

/// The argon2id hash of a checked password, computed off the async workers.
async fn hash_password(password: &str) -> Result<String, ApiError> {
    crate::password::check(password)?;
    let password = password.to_string();
    tokio::task::spawn_blocking(move || crate::password::hash(&password))
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(|e| {
            tracing::error!(error = %e, "password hashing failed");
            ApiError::Internal
        })
}

fn expired_target(state: &AppState, url: &str) -> Result<String, ApiError> {
    state
        .url_policy
        .check(url)
        .map(String::from)
        .map_err(|e| metadata::FieldError::ExpiredUrl(e.to_string()).into())
}

/// The checked target URL, with `utm` parameters set.
fn destination(state: &AppState, long_url: &str, utm: Option<&Utm>) -> Result<String, ApiError> {
    let url = state
        .url_policy
        .check(long_url)
        .map_err(|e| ApiError::InvalidUrl(e.to_string()))?;
    let Some(utm) = utm else {
        return Ok(url.into());
    };
    let url = utm.apply(&url)?;
    if url.as_str().len() > state.url_policy.max_len {
        return Err(ApiError::InvalidUrl(format!(
            "long_url with its UTM parameters is longer than {} bytes",
            state.url_policy.max_len
        )));
    }
    Ok(url.into())
}

async fn insert_with_random_code(state: &AppState, link: NewLink<'_>) -> Result<LinkRow, ApiError> {
    for attempt in 1..=codes::MAX_ATTEMPTS {
        let code = codes::generate();
        let link = NewLink {
            short_code: &code,
            ..link
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

/// Lists the caller's live links, newest first (keyset pagination) or most clicked first
/// (offset pagination: pages may shift while clicks arrive), optionally searched and
/// filtered by tags and creation time.
#[utoipa::path(
    get,
    path = "/api/v1/links",
    tag = "links",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of links", body = LinkList),
        (status = 400, description = "Bad limit, cursor, q, tags, dates or order", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    Owner(owner): Owner,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<LinkList>, ApiError> {
    let (rows, next) = list_links(&state, &owner, &q).await?;
    Ok(Json(LinkList {
        items: rows
            .into_iter()
            .map(|r| LinkResponse::from_row(&state, r))
            .collect(),
        next_cursor: next.map(|c| c.encode()),
    }))
}

/// One page of `owner`'s links as `q` asks: what `GET /api/v1/links` and the dashboard's
/// list both show.
pub(crate) async fn list_links(
    state: &AppState,
    owner: &str,
    q: &ListQuery,
) -> Result<(Vec<LinkRow>, Option<Cursor>), ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&limit) {
        return Err(ApiError::InvalidQuery(format!(
            "limit must be between 1 and {MAX_PAGE_SIZE}"
        )));
    }
    let filter = list_filter(q)?;
    let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(
            Cursor::decode(c)
                .filter(|c| {
                    matches!(
                        (filter.order, c),
                        (ListOrder::Created, Cursor::After { .. })
                            | (ListOrder::Clicks, Cursor::Offset(_))
                    )
                })
                .ok_or_else(|| ApiError::InvalidQuery("invalid cursor".into()))?,
        ),
        None => None,
    };
    store::list_by_owner(&state.pool, owner, &filter, limit, after)
        .await
        .map_err(ApiError::from_db)
}

fn list_filter(q: &ListQuery) -> Result<ListFilter, ApiError> {
    let search = q.q.as_deref().map(str::trim).filter(|t| !t.is_empty());
    if let Some(text) = search {
        if text.chars().count() > MAX_SEARCH_CHARS || text.chars().any(char::is_control) {
            return Err(ApiError::InvalidQuery(format!(
                "q must be at most {MAX_SEARCH_CHARS} characters without control characters"
            )));
        }
    }
    let tags = match q.tags.as_deref().filter(|t| !t.is_empty()) {
        Some(list) => {
            let given: Vec<String> = list.split(',').map(str::to_string).collect();
            metadata::tags(&given).map_err(|e| ApiError::InvalidQuery(e.to_string()))?
        }
        None => Vec::new(),
    };
    if let (Some(a), Some(b)) = (q.created_after, q.created_before) {
        if a >= b {
            return Err(ApiError::InvalidQuery(
                "created_after must be before created_before".into(),
            ));
        }
    }
    let order = match q.order.as_deref() {
        None | Some("created") => ListOrder::Created,
        Some("clicks") => ListOrder::Clicks,
        Some(_) => {
            return Err(ApiError::InvalidQuery(
                "order must be created or clicks".into(),
            ))
        }
    };
    Ok(ListFilter {
        q: search.map(str::to_string),
        tags,
        created_after: q.created_after,
        created_before: q.created_before,
        order,
    })
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
    owned_link_by_code(state, owner, &code).await
}

/// The caller's link `code`, or 404 (also for other owners' links) / 410 (deleted).
pub(crate) async fn owned_link_by_code(
    state: &AppState,
    owner: &str,
    code: &str,
) -> Result<LinkRow, ApiError> {
    if !is_plausible_code(code) {
        return Err(ApiError::NotFound);
    }
    let row = store::find(&state.pool, code)
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
    /// Of those, clicks by people (`total_clicks` minus bots and link previews).
    pub human_clicks: Option<u64>,
    /// Of those, crawlers, link-preview fetchers, HTTP tools, requests without User-Agent.
    pub bot_clicks: Option<u64>,
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
    let count = state
        .analytics
        .click_count(&owner, &row.short_code)
        .await
        .ok();
    Ok(Json(LinkDetails {
        link: LinkResponse::from_row(&state, row),
        stats_available: count.is_some(),
        total_clicks: count.map(|c| c.total),
        human_clicks: count.map(|c| c.humans),
        bot_clicks: count.map(|c| c.bots),
    }))
}

/// Changes one of the caller's links: only the fields given, each checked as on create.
/// Every replica stops serving the old version within about a second.
#[utoipa::path(
    patch,
    path = "/api/v1/links/{code}",
    tag = "links",
    params(("code" = String, Path, description = "Short code or alias")),
    request_body = EditLinkRequest,
    responses(
        (status = 200, description = "The link as changed", body = LinkResponse),
        (status = 400, description = "Invalid field, empty change or bad JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such link owned by this key", body = ErrorBody),
        (status = 410, description = "Link was deleted", body = ErrorBody),
        (status = 413, description = "Body larger than 16 KiB", body = ErrorBody),
        (status = 415, description = "Body is not application/json", body = ErrorBody),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn edit(
    State(state): State<AppState>,
    Owner(owner): Owner,
    code: Result<Path<String>, PathRejection>,
    ApiJson(req): ApiJson<EditLinkRequest>,
) -> Result<Json<LinkResponse>, ApiError> {
    let current = owned_link(&state, &owner, code).await?;
    let row = edit_link(&state, &owner, &current, req).await?;
    Ok(Json(LinkResponse::from_row(&state, row)))
}

/// Applies `req` to `owner`'s link `current`: what `PATCH /api/v1/links/{code}` and the
/// dashboard's edit form both do.
pub(crate) async fn edit_link(
    state: &AppState,
    owner: &str,
    current: &LinkRow,
    req: EditLinkRequest,
) -> Result<LinkRow, ApiError> {
    let password = req.password.clone();
    let mut patch = link_patch(state, current, req, Utc::now())?;
    patch.password_hash = match password {
        Some(Some(p)) => Some(Some(hash_password(&p).await?)),
        Some(None) => Some(None),
        None => None,
    };
    if patch.is_empty() {
        return Err(ApiError::InvalidRequest(
            "the request changes nothing".into(),
        ));
    }
    let row = store::update(&state.pool, &current.short_code, owner, patch)
        .await
        .map_err(ApiError::from_db)?
        // Deleted between the read and the update.
        .ok_or(ApiError::Gone)?;
    state.cache.invalidate(&row.short_code);
    Ok(row)
}

/// The checked change `req` asks of `current`.
fn link_patch(
    state: &AppState,
    current: &LinkRow,
    req: EditLinkRequest,
    now: DateTime<Utc>,
) -> Result<LinkPatch, ApiError> {
    let long_url = match (&req.long_url, &req.utm) {
        (Some(url), utm) => Some(destination(state, url, utm.as_ref())?),
        (None, Some(utm)) => Some(destination(state, &current.long_url, Some(utm))?),
        (None, None) => None,
    };
    let expires_at = match (req.expires_at, req.expires_in_secs) {
        (Some(None), None) => Some(None),
        (Some(None), Some(_)) => {
            return Err(ApiError::InvalidRequest(
                "give either expires_at or expires_in_secs, not both".into(),
            ))
        }
        (at, secs) if at.is_some() || secs.is_some() => Some(expiry(at.flatten(), secs, now)?),
        _ => None,
    };
    let title = match req.title {
        Some(Some(t)) => Some(metadata::title(&t)?),
        Some(None) => Some(None),
        None => None,
    };
    let description = match req.description {
        Some(Some(d)) => Some(metadata::description(&d)?),
        Some(None) => Some(None),
        None => None,
    };
    Ok(LinkPatch {
        long_url,
        expires_at,
        title,
        description,
        tags: req.tags.as_deref().map(metadata::tags).transpose()?,
        forward_query: req.forward_query,
        redirect_rules: req
            .redirect_rules
            .map(|r| rules_json(state, r.as_deref().unwrap_or_default()))
            .transpose()?,
        max_visits: req
            .max_visits
            .map(|m| m.map(metadata::max_visits).transpose())
            .transpose()?,
        expired_url: req
            .expired_url
            .map(|u| u.as_deref().map(|u| expired_target(state, u)).transpose())
            .transpose()?,
        public_qr: req.public_qr,
        password_hash: None,
    })
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
    delete_link(&state, &owner, &code).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Soft-deletes `owner`'s link `code`: what `DELETE /api/v1/links/{code}` and the
/// dashboard's delete form both do.
pub(crate) async fn delete_link(state: &AppState, owner: &str, code: &str) -> Result<(), ApiError> {
    if !is_plausible_code(code) {
        return Err(ApiError::NotFound);
    }
    match store::soft_delete(&state.pool, code, owner)
        .await
        .map_err(ApiError::from_db)?
    {
        DeleteOutcome::Deleted => {
            state.cache.invalidate(code);
            Ok(())
        }
        DeleteOutcome::AlreadyDeleted => Err(ApiError::Gone),
        DeleteOutcome::NotFound => Err(ApiError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_rules() {
        let now = Utc::now();
        assert_eq!(expiry(None, None, now).unwrap(), None);
        assert_eq!(
            expiry(None, Some(60), now).unwrap(),
            Some(now + Duration::seconds(60))
        );
        let later = now + Duration::hours(1);
        assert_eq!(expiry(Some(later), None, now).unwrap(), Some(later));
        assert!(expiry(Some(later), Some(5), now).is_err());
        assert!(expiry(None, Some(0), now).is_err());
        assert!(expiry(None, Some(MAX_EXPIRY_SECS + 1), now).is_err());
        assert!(expiry(Some(now - Duration::seconds(1)), None, now).is_err());
    }

    #[test]
    fn edit_bodies_tell_absent_from_null() {
        let r: EditLinkRequest =
            serde_json::from_str(r#"{"title": null, "description": "d"}"#).unwrap();
        assert_eq!(r.title, Some(None));
        assert_eq!(r.description, Some(Some("d".into())));
        assert_eq!(r.expires_at, None);
        assert!(serde_json::from_str::<EditLinkRequest>(r#"{"nope": 1}"#).is_err());
    }
}
