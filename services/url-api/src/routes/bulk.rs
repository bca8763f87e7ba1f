//! Many links at once: `POST /api/v1/links/bulk` (JSON, up to [`MAX_BULK`] links),
//! `POST /api/v1/links/import` (CSV), and `GET /api/v1/links/export` (CSV or JSON).
//!
//! Each link of a bulk request is created on its own, as `POST /api/v1/links` would: one
//! bad item is reported in its result and does not stop the others (partial success).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Owner;
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody, ErrorDetail};
use crate::routes::links::{create_link, CreateLinkRequest, LinkResponse};
use crate::store::{self, ListFilter};
use crate::AppState;

/// Most links in one bulk request or CSV import.
pub const MAX_BULK: usize = 1000;
/// Largest bulk or import body.
pub const BULK_BODY_LIMIT_BYTES: usize = 2 * 1024 * 1024;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// 1 to 1000 links, each as the body of `POST /api/v1/links`.
    pub links: Vec<CreateLinkRequest>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkItem {
    /// Position in the request (0-based; for CSV, the data row).
    pub index: usize,
    /// What `POST /api/v1/links` would have answered: 201 or the error's status.
    pub status: u16,
    pub link: Option<LinkResponse>,
    pub error: Option<ErrorDetail>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResponse {
    pub created: usize,
    pub failed: usize,
    /// One result per requested link, in order.
    pub results: Vec<BulkItem>,
}

async fn create_all(
    state: &AppState,
    owner: &str,
    links: Vec<Result<CreateLinkRequest, ApiError>>,
) -> BulkResponse {
    let mut results = Vec::with_capacity(links.len());
    for (index, item) in links.into_iter().enumerate() {
        let outcome = match item {
            Ok(req) => create_link(state, owner, &req).await,
            Err(e) => Err(e),
        };
        results.push(match outcome {
            Ok(row) => BulkItem {
                index,
                status: 201,
                link: Some(LinkResponse::from_row(state, row)),
                error: None,
            },
            Err(e) => BulkItem {
                index,
                status: e.status().as_u16(),
                error: Some(ErrorDetail {
                    code: e.code(),
                    message: e.to_string(),
                }),
                link: None,
            },
        });
    }
    let created = results.iter().filter(|r| r.status == 201).count();
    BulkResponse {
        created,
        failed: results.len() - created,
        results,
    }
}

fn check_count(n: usize) -> Result<(), ApiError> {
    if (1..=MAX_BULK).contains(&n) {
        Ok(())
    } else {
        Err(ApiError::InvalidRequest(format!(
            "give 1 to {MAX_BULK} links"
        )))
    }
}

/// Creates up to 1000 links; each succeeds or fails on its own.
#[utoipa::path(
    post,
    path = "/api/v1/links/bulk",
    tag = "links",
    request_body = BulkRequest,
    responses(
        (status = 200, description = "Per-link results (201 or the link's error)", body = BulkResponse),
        (status = 400, description = "Not 1 to 1000 links, or bad JSON", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 413, description = "Body larger than 2 MiB", body = ErrorBody),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn bulk_create(
    State(state): State<AppState>,
    Owner(owner): Owner,
    ApiJson(req): ApiJson<BulkRequest>,
) -> Result<Json<BulkResponse>, ApiError> {
    check_count(req.links.len())?;
    Ok(Json(
        create_all(&state, &owner, req.links.into_iter().map(Ok).collect()).await,
    ))
}

/// One CSV row of an import: `long_url` (or `destination`), `alias`, `title`, `tags`
/// (separated by `|` or spaces), `expires_at` (RFC 3339); only `long_url` is required.
#[derive(Debug, Deserialize)]
struct CsvRow {
    #[serde(alias = "destination", alias = "url")]
    long_url: String,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    tags: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
}

fn row_request(row: CsvRow) -> Result<CreateLinkRequest, ApiError> {
    let blank = |s: Option<String>| s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let expires_at = match blank(row.expires_at) {
        Some(t) => Some(
            DateTime::parse_from_rfc3339(&t)
                .map_err(|_| ApiError::InvalidRequest(format!("expires_at {t:?} is not RFC 3339")))?
                .with_timezone(&Utc),
        ),
        None => None,
    };
    Ok(CreateLinkRequest {
        long_url: row.long_url.trim().to_string(),
        alias: blank(row.alias),
        expires_at,
        expires_in_secs: None,
        title: blank(row.title),
        description: None,
        tags: row
            .tags
            .unwrap_or_default()
            .split(['|', ' '])
            .filter(|t| !t.is_empty())
            .map(str::to_string)
            .collect(),
        forward_query: None,
        utm: None,
        redirect_rules: Vec::new(),
        max_visits: None,
        expired_url: None,
        public_qr: false,
        password: None,
    })
}

/// Imports links from CSV (a header row, then up to 1000 rows).
#[utoipa::path(
    post,
    path = "/api/v1/links/import",
    tag = "links",
    request_body(content = String, content_type = "text/csv", description = "Header `long_url,alias,title,tags,expires_at` (any order; only long_url required; `destination` is accepted for long_url); tags separated by | or spaces"),
    responses(
        (status = 200, description = "Per-row results (201 or the row's error)", body = BulkResponse),
        (status = 400, description = "Not CSV, no long_url column, or not 1 to 1000 rows", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 413, description = "Body larger than 2 MiB", body = ErrorBody),
        (status = 415, description = "Content-Type is not text/csv", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn import_csv(
    State(state): State<AppState>,
    Owner(owner): Owner,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<BulkResponse>, ApiError> {
    let is_csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("text/csv")
        });
    if !is_csv {
        return Err(ApiError::UnsupportedMediaType);
    }
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::Headers)
        .flexible(false)
        .from_reader(&body[..]);
    let columns = reader
        .headers()
        .map_err(|e| ApiError::InvalidRequest(format!("not CSV: {e}")))?
        .clone();
    if !columns
        .iter()
        .any(|c| matches!(c, "long_url" | "destination" | "url"))
    {
        return Err(ApiError::InvalidRequest(
            "the header row names no long_url column".into(),
        ));
    }
    let mut rows = Vec::new();
    for record in reader.deserialize::<CsvRow>() {
        if rows.len() == MAX_BULK {
            return Err(ApiError::InvalidRequest(format!(
                "give 1 to {MAX_BULK} rows"
            )));
        }
        rows.push(
            record
                .map_err(|e| ApiError::InvalidRequest(format!("unreadable row: {e}")))
                .and_then(row_request),
        );
    }
    check_count(rows.len())?;
    Ok(Json(create_all(&state, &owner, rows).await))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

/// Most links one export returns.
pub const MAX_EXPORT: usize = 100_000;

/// All the caller's live links, newest first, as CSV or JSON.
#[utoipa::path(
    get,
    path = "/api/v1/links/export",
    tag = "links",
    params(ExportQuery),
    responses(
        (status = 200, description = "JSON array of links, or CSV with columns code, short_url, long_url, title, description, tags (| separated), created_at, expires_at, max_visits, forward_query"),
        (status = 400, description = "Unknown format", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn export(
    State(state): State<AppState>,
    Owner(owner): Owner,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let csv_format = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => return Err(ApiError::InvalidQuery("format must be json or csv".into())),
    };
    let filter = ListFilter::default();
    let mut links = Vec::new();
    let mut after = None;
    loop {
        let (rows, next) = store::list_by_owner(&state.pool, &owner, &filter, 1000, after)
            .await
            .map_err(ApiError::from_db)?;
        links.extend(rows.into_iter().map(|r| LinkResponse::from_row(&state, r)));
        match next {
            Some(c) if links.len() < MAX_EXPORT => after = Some(c),
            _ => break,
        }
    }
    if !csv_format {
        return Ok(Json(links).into_response());
    }
    let mut out = csv::Writer::from_writer(Vec::new());
    let write = |out: &mut csv::Writer<Vec<u8>>, l: &LinkResponse| {
        out.write_record([
            l.code.as_str(),
            &l.short_url,
            &l.long_url,
            l.title.as_deref().unwrap_or(""),
            l.description.as_deref().unwrap_or(""),
            &l.tags.join("|"),
            &l.created_at.to_rfc3339(),
            &l.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            &l.max_visits.map(|n| n.to_string()).unwrap_or_default(),
            if l.forward_query { "true" } else { "false" },
        ])
    };
    let fail = |e: csv::Error| {
        tracing::error!(error = %e, "CSV export failed");
        ApiError::Internal
    };
    out.write_record([
        "code",
        "short_url",
        "long_url",
        "title",
        "description",
        "tags",
        "created_at",
        "expires_at",
        "max_visits",
        "forward_query",
    ])
    .map_err(fail)?;
    for l in &links {
        write(&mut out, l).map_err(fail)?;
    }
    let bytes = out.into_inner().map_err(|e| fail(e.into_error().into()))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"links.csv\""),
            ),
        ],
        bytes,
    )
        .into_response())
}
