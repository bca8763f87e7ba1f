//! The dashboard under `/ui/`: server-rendered pages (askama templates, every value
//! escaped) over the same internal functions, authorization and rate limits as the API,
//! with a session instead of the key in the browser. No inline script or style: the CSP
//! allows only this origin's files, embedded in the binary.

pub mod assets;
pub mod csrf;
mod pages;
pub mod range;
pub mod session;
pub mod view;

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue};
use axum::response::{Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::Duration;

use crate::AppState;

/// Where the dashboard lives.
pub const PREFIX: &str = "/ui";

/// Content-Security-Policy of every dashboard response: scripts, styles and images from
/// this origin only (no inline script), no framing, forms post only here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

/// Dashboard settings derived from the configuration.
#[derive(Debug, Clone)]
pub struct UiSettings {
    pub cookies: session::CookiePolicy,
    pub session_ttl: Duration,
    /// `scheme://authority` of PUBLIC_BASE_URL, accepted as a form's `Origin`.
    pub public_origin: String,
}

/// The routes under `/ui/`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/links") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/links") }))
        .route("/ui/login", get(pages::login_page).post(pages::login))
        .route("/ui/logout", post(pages::logout))
        .route("/ui/links", get(pages::links).post(pages::create))
        .route("/ui/links/{code}", get(pages::link))
        .route("/ui/links/{code}/qr", get(pages::qr))
        .route(
            "/ui/links/{code}/edit",
            get(pages::edit_form).post(pages::edit),
        )
        .route(
            "/ui/links/{code}/delete",
            get(pages::confirm_delete).post(pages::delete),
        )
        .route("/ui/account", get(pages::account))
        .route("/ui/assets/{name}", get(assets::serve))
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    // A response with its own policy keeps it (the QR code's SVG).
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        // Pages show one account's data: never kept by shared caches or the back button.
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

/// The client address, resolved like the API's rate limiter does (trusted proxies).
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(Self(state.client_ips.resolve(peer, &parts.headers)))
    }
}
