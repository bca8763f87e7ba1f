//! QR codes of short URLs: `GET /api/v1/links/{code}/qr` for the owner, and `GET /{code}/qr`
//! for anyone when the link has `public_qr`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Owner;
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::qr::{self, Format, DEFAULT_SIZE, MAX_SIZE, MIN_SIZE};
use crate::routes::links::owned_link;
use crate::validate::is_plausible_code;
use crate::{store, AppState};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QrQuery {
    /// `svg` (default) or `png`.
    pub format: Option<String>,
    /// Largest width in pixels, 64 to 2048 (default 300); the image is square and a whole
    /// number of pixels per module.
    pub size: Option<u32>,
}

pub(crate) fn params(q: &QrQuery) -> Result<(Format, u32), ApiError> {
    let format = match q.format.as_deref() {
        None => Format::Svg,
        Some(f) => Format::parse(f)
            .ok_or_else(|| ApiError::InvalidQuery("format must be svg or png".into()))?,
    };
    let size = q.size.unwrap_or(DEFAULT_SIZE);
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        return Err(ApiError::InvalidQuery(format!(
            "size must be between {MIN_SIZE} and {MAX_SIZE}"
        )));
    }
    Ok((format, size))
}

pub(crate) fn image(
    state: &AppState,
    code: &str,
    format: Format,
    size: u32,
) -> Result<Response, ApiError> {
    let url = format!("{}/{code}", state.public_base_url);
    let bytes = qr::render(&url, format, size).map_err(|e| {
        tracing::error!(code, error = %e, "QR code rendering failed");
        ApiError::Internal
    })?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            ),
            // The short URL of a code never changes.
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            // An SVG opened directly may run nothing and load nothing.
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// The QR code of one of the caller's links.
#[utoipa::path(
    get,
    path = "/api/v1/links/{code}/qr",
    tag = "links",
    params(("code" = String, Path, description = "Short code or alias"), QrQuery),
    responses(
        (status = 200, description = "image/svg+xml or image/png encoding the short URL"),
        (status = 400, description = "Bad format or size", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such link owned by this key", body = ErrorBody),
        (status = 410, description = "Link was deleted", body = ErrorBody),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorBody),
    ),
    security(("bearer" = []), ("api_key" = []))
)]
pub async fn owner_qr(
    State(state): State<AppState>,
    Owner(owner): Owner,
    code: Result<Path<String>, PathRejection>,
    ApiQuery(q): ApiQuery<QrQuery>,
) -> Result<Response, ApiError> {
    let (format, size) = params(&q)?;
    let row = owned_link(&state, &owner, code).await?;
    image(&state, &row.short_code, format, size)
}

/// The QR code of a link whose owner made it public (`public_qr`); 404 otherwise.
#[utoipa::path(
    get,
    path = "/{code}/qr",
    tag = "redirect",
    params(("code" = String, Path, description = "Short code or alias"), QrQuery),
    responses(
        (status = 200, description = "image/svg+xml or image/png encoding the short URL"),
        (status = 400, description = "Bad format or size", body = ErrorBody),
        (status = 404, description = "Unknown code, or its QR code is not public", body = ErrorBody),
        (status = 410, description = "Link expired or deleted", body = ErrorBody),
        (status = 429, description = "Rate limited (see Retry-After)", body = ErrorBody),
    )
)]
pub async fn public_qr(
    State(state): State<AppState>,
    code: Result<Path<String>, PathRejection>,
    ApiQuery(q): ApiQuery<QrQuery>,
) -> Result<Response, ApiError> {
    let (format, size) = params(&q)?;
    let Ok(Path(code)) = code else {
        return Err(ApiError::NotFound);
    };
    if !is_plausible_code(&code) {
        return Err(ApiError::NotFound);
    }
    let row = store::find(&state.pool, &code)
        .await
        .map_err(ApiError::from_db)?
        .filter(|r| r.public_qr)
        .ok_or(ApiError::NotFound)?;
    if row.deleted_at.is_some() || row.expires_at.is_some_and(|t| t <= chrono::Utc::now()) {
        return Err(ApiError::Gone);
    }
    image(&state, &row.short_code, format, size)
}
