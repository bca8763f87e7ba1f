//! The one error type of the HTTP API and its JSON form:
//! `{"error": {"code": "invalid_url", "message": "..."}}`.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use std::sync::OnceLock;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidUrl(String),
    #[error("{0}")]
    InvalidAlias(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error(transparent)]
    InvalidField(#[from] crate::metadata::FieldError),
    #[error(transparent)]
    InvalidRules(#[from] crate::rules::RuleError),
    #[error("request body must be JSON with Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("request body is too large")]
    PayloadTooLarge,
    #[error("a valid API key is required (Authorization: Bearer <key> or X-API-Key)")]
    Unauthorized,
    #[error("no such link")]
    NotFound,
    #[error("this form may only be sent from this site")]
    CrossSiteForm,
    #[error("this link has expired or was deleted")]
    Gone,
    #[error("alias {0:?} is already taken")]
    AliasTaken(String),
    #[error("too many requests, retry in {retry_after_secs}s")]
    RateLimited { retry_after_secs: u64 },
    #[error("could not allocate a free short code, try again")]
    CodeExhausted,
    #[error("the database is unavailable, try again")]
    DatabaseUnavailable,
    #[error("click statistics are unavailable right now, try again")]
    StatsUnavailable,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request took too long to arrive or to answer")]
    RequestTimeout,
    #[error("internal error")]
    Internal,
}

/// JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_url`, `alias_taken`, `rate_limited`.
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidUrl(_)
            | Self::InvalidAlias(_)
            | Self::InvalidRequest(_)
            | Self::InvalidJson(_)
            | Self::InvalidQuery(_)
            | Self::InvalidField(_)
            | Self::InvalidRules(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::CrossSiteForm => StatusCode::FORBIDDEN,
            Self::Gone => StatusCode::GONE,
            Self::AliasTaken(_) => StatusCode::CONFLICT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::CodeExhausted | Self::DatabaseUnavailable | Self::StatsUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUrl(_) => "invalid_url",
            Self::InvalidAlias(_) => "invalid_alias",
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidQuery(_) => "invalid_query",
            Self::InvalidField(e) => e.code(),
            Self::InvalidRules(_) => "invalid_rules",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::CrossSiteForm => "cross_site_form",
            Self::Gone => "gone",
            Self::AliasTaken(_) => "alias_taken",
            Self::RateLimited { .. } => "rate_limited",
            Self::CodeExhausted => "code_generation_failed",
            Self::DatabaseUnavailable => "database_unavailable",
            Self::StatsUnavailable => "stats_unavailable",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::Internal => "internal",
        }
    }

    /// Classifies a database error: outages become 503 so clients retry, anything else
    /// is logged and answered with a bare 500.
    pub fn from_db(err: sqlx::Error) -> Self {
        if shortener_common::db::is_transient(&err) {
            tracing::warn!(error = %err, "database unavailable");
            Self::DatabaseUnavailable
        } else {
            tracing::error!(error = %err, "database error");
            Self::Internal
        }
    }
}

impl ApiError {
    /// The JSON body. The errors anyone can cause in bulk without a key (unknown or
    /// expired codes, wrong methods) have a fixed message: their body is encoded once.
    fn body(&self) -> Bytes {
        static NOT_FOUND: OnceLock<&'static [u8]> = OnceLock::new();
        static GONE: OnceLock<&'static [u8]> = OnceLock::new();
        static METHOD_NOT_ALLOWED: OnceLock<&'static [u8]> = OnceLock::new();
        let once = match self {
            Self::NotFound => &NOT_FOUND,
            Self::Gone => &GONE,
            Self::MethodNotAllowed => &METHOD_NOT_ALLOWED,
            _ => return Bytes::from(self.encode()),
        };
        Bytes::from_static(once.get_or_init(|| self.encode().leak()))
    }

    fn encode(&self) -> Vec<u8> {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        };
        serde_json::to_vec(&body).expect("an error body always serializes")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = match &self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            Self::CodeExhausted | Self::DatabaseUnavailable | Self::StatsUnavailable => Some(1),
            _ => None,
        };
        let mut resp = Response::new(Body::from(self.body()));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        // These answers come before the request body was read; the server closes the
        // connection instead of draining it, and says so, so a client does not send its
        // next request on a socket about to be reset.
        if matches!(self, Self::PayloadTooLarge | Self::RequestTimeout) {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            _ => Self::InvalidJson(rejection.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::InvalidQuery(rejection.body_text())
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s (400/413/415 JSON, never 500).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Self(value))
    }
}

/// `axum::extract::Query` whose rejections are [`ApiError`]s.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(Self(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_non_500_status_except_internal() {
        let errors = [
            ApiError::InvalidUrl("x".into()),
            ApiError::AliasTaken("x".into()),
            ApiError::RateLimited {
                retry_after_secs: 0,
            },
            ApiError::DatabaseUnavailable,
        ];
        for e in errors {
            assert!(e.status().as_u16() < 500 || e.status() == 503, "{e:?}");
        }
        let resp = ApiError::RateLimited {
            retry_after_secs: 0,
        }
        .into_response();
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn answers_before_the_body_is_read_close_the_connection() {
        for e in [ApiError::PayloadTooLarge, ApiError::RequestTimeout] {
            assert_eq!(e.into_response().headers()[header::CONNECTION], "close");
        }
        let resp = ApiError::InvalidUrl("x".into()).into_response();
        assert!(resp.headers().get(header::CONNECTION).is_none());
    }

    #[tokio::test]
    async fn fixed_and_varying_bodies_have_the_same_shape() {
        for (e, code, message) in [
            (ApiError::NotFound, "not_found", "no such link"),
            (ApiError::NotFound, "not_found", "no such link"),
            (
                ApiError::Gone,
                "gone",
                "this link has expired or was deleted",
            ),
            (
                ApiError::MethodNotAllowed,
                "method_not_allowed",
                "method not allowed",
            ),
            (
                ApiError::AliasTaken("x".into()),
                "alias_taken",
                "alias \"x\" is already taken",
            ),
        ] {
            let resp = e.into_response();
            assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
            let bytes = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(
                body,
                serde_json::json!({ "error": { "code": code, "message": message } })
            );
        }
    }
}
