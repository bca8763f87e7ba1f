//! The OpenAPI document, served at `/openapi.json`.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorBody, ErrorDetail};
use crate::routes::{links, redirect, stats};

#[derive(OpenApi)]
#[openapi(
    info(title = "url-api", description = "URL shortener API"),
    paths(
        links::create,
        links::list,
        links::details,
        links::edit,
        links::delete,
        stats::stats,
        crate::routes::qr::owner_qr,
        crate::routes::bulk::bulk_create,
        crate::routes::bulk::import_csv,
        crate::routes::bulk::export,
        crate::routes::orphans::orphan_visits,
        crate::routes::qr::public_qr,
        stats::account,
        redirect::redirect,
        redirect::unlock,
    ),
    components(schemas(
        links::CreateLinkRequest,
        links::EditLinkRequest,
        crate::metadata::Utm,
        crate::rules::RedirectRule,
        crate::routes::bulk::BulkRequest,
        crate::routes::bulk::BulkResponse,
        crate::routes::bulk::BulkItem,
        crate::routes::orphans::OrphanVisits,
        crate::routes::orphans::OrphanDay,
        links::LinkResponse,
        links::LinkList,
        links::LinkDetails,
        stats::LinkStats,
        stats::AccountStats,
        stats::Breakdown,
        stats::SeriesPoint,
        stats::BucketParam,
        ErrorBody,
        ErrorDetail,
    )),
    modifiers(&Security),
    tags(
        (name = "links", description = "Manage short links (API key required)"),
        (name = "redirect", description = "Follow a short link"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    ApiDoc::openapi()
        .to_json()
        .expect("the OpenAPI document serializes")
});

pub async fn serve() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_str(),
    )
}
