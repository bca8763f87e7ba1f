//! `GET /{code}`: the hot path.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use shortener_common::event::ClickRef;

use crate::cache::CachedLink;
use crate::clicks::header_text;
use crate::client_ip::peer_of;
use crate::error::{ApiError, ErrorBody};
use crate::extras::{LinkExtras, VisitLimit};
use crate::forward::forwarded;
use crate::orphans::OrphanKind;
use crate::password::{self, Prompt};
use crate::rules::{self, pick, CompiledRule, Visitor};
use crate::store::LinkRow;
use crate::validate::is_plausible_code;
use crate::{store, AppState};
use shortener_common::bots;

/// Redirects to the link's target.
#[utoipa::path(
    get,
    path = "/{code}",
    tag = "redirect",
    params(("code" = String, Path, description = "Short code or alias")),
    responses(
        (status = 302, description = "Redirect to the target of the link's first matching redirect rule, else its long URL (header Location), with this request's query string appended unless the link's forward_query is false"),
        (status = 200, description = "Password-protected link: an HTML form that posts the password to this URL (POST /{code})"),
        (status = 404, description = "Unknown code", body = ErrorBody),
        (status = 410, description = "Link expired or deleted, or its max_visits used up (302 to expired_url instead when set)", body = ErrorBody),
        (status = 429, description = "This client looked up too many codes that are not in the cache (REDIRECT_MISS_PER_SECOND); see Retry-After", body = ErrorBody),
        (status = 503, description = "Database unavailable", body = ErrorBody),
    )
)]
pub async fn redirect(
    State(state): State<AppState>,
    code: Result<Path<String>, PathRejection>,
    // The request itself rather than cloned headers: nothing is copied but what a click
    // keeps.
    req: Request,
) -> Result<Response, ApiError> {
    let code = match code {
        Ok(Path(code)) if is_plausible_code(&code) => code,
        _ => {
            state.orphans.count(OrphanKind::InvalidCode);
            return Err(ApiError::NotFound);
        }
    };
    let (parts, _) = req.into_parts();
    let peer = peer_of(&parts.extensions);
    counted(&state, follow(&state, &code, &parts, peer, false).await)
}

/// A visit answered by [`visit`]: at once, or after a database lookup.
pub(crate) enum Visit {
    Now(Response),
    Later(Pin<Box<dyn Future<Output = Response> + Send>>),
}

/// `GET /{code}` where the server routes it itself ([`crate::front`]): `parts` is a GET
/// whose path is `/` and a plausible code, `peer` the socket peer. A link in the cache is
/// answered before this returns, with no allocation of its own: its redirect's headers go
/// into the request's header map, which hyper then parses the connection's next request
/// into. A miss goes to the database in the returned future.
pub(crate) fn visit(state: &AppState, parts: Parts, peer: Option<IpAddr>) -> Visit {
    let code = code_of(&parts);
    if let Some(hit) = state.cache.get(code) {
        state.metrics.cache_hits.inc();
        let reply = answer(state, code, hit, &parts, peer, false);
        return Visit::Now(
            counted(state, reply.map(|r| r.into_response(parts.headers))).into_response(),
        );
    }
    let state = state.clone();
    Visit::Later(Box::pin(async move {
        let code = code_of(&parts);
        counted(&state, follow(&state, code, &parts, peer, false).await).into_response()
    }))
}

/// The code of a request routed by [`visit`].
fn code_of(parts: &Parts) -> &str {
    &parts.uri.path()[1..]
}

/// `answer`, with a visit that found no live link counted as an orphan.
fn counted(state: &AppState, answer: Result<Response, ApiError>) -> Result<Response, ApiError> {
    match &answer {
        Err(ApiError::NotFound) => state.orphans.count(OrphanKind::UnknownCode),
        Err(ApiError::Gone) => state.orphans.count(OrphanKind::Gone),
        _ => {}
    }
    answer
}

/// Takes the password of a protected link (an HTML form post to the link's own URL) and,
/// when it is right, redirects as `GET /{code}` would.
#[utoipa::path(
    post,
    path = "/{code}",
    tag = "redirect",
    params(("code" = String, Path, description = "Short code or alias")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "password=..."),
    responses(
        (status = 302, description = "Right password: redirect as GET /{code} does"),
        (status = 401, description = "Wrong password: the form again (HTML)"),
        (status = 403, description = "Posted from another site", body = ErrorBody),
        (status = 404, description = "Unknown code", body = ErrorBody),
        (status = 405, description = "The link has no password", body = ErrorBody),
        (status = 410, description = "Link expired or deleted", body = ErrorBody),
        (status = 429, description = "Too many attempts for this link from this network: the form (HTML) with Retry-After"),
    )
)]
pub async fn unlock(
    State(state): State<AppState>,
    code: Result<Path<String>, PathRejection>,
    req: Request,
) -> Result<Response, ApiError> {
    let Ok(Path(code)) = code else {
        return Err(ApiError::NotFound);
    };
    if !is_plausible_code(&code) {
        return Err(ApiError::NotFound);
    }
    let (parts, body) = req.into_parts();
    let peer = peer_of(&parts.extensions);
    let hash = match lookup(&state, &code, peer, &parts.headers).await? {
        CachedLink::Missing => return Err(ApiError::NotFound),
        CachedLink::Found { deleted: true, .. } => return Err(ApiError::Gone),
        CachedLink::Found { extras, .. } => extras.and_then(|e| e.password_hash.clone()),
    };
    let Some(hash) = hash else {
        return Err(ApiError::MethodNotAllowed);
    };
    if !crate::web::csrf::same_origin(&parts.headers, &state.ui.public_origin) {
        return Err(ApiError::CrossSiteForm);
    }
    let query = parts.uri.query();
    let ip = state.client_ips.resolve(peer, &parts.headers);
    if let Err(wait) = state.password_attempts.check(&code, ip) {
        let mut page =
            password::form_page(&code, query, Prompt::TooMany, StatusCode::TOO_MANY_REQUESTS);
        page.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait.max(1)));
        return Ok(page);
    }
    let bytes = axum::body::to_bytes(body, FORM_LIMIT_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let presented = url::form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "password")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let right = !presented.is_empty()
        && presented.chars().count() <= password::MAX_CHARS
        && tokio::task::spawn_blocking(move || password::verify(&hash, &presented))
            .await
            .map_err(|_| ApiError::Internal)?;
    if !right {
        return Ok(password::form_page(
            &code,
            query,
            Prompt::Wrong,
            StatusCode::UNAUTHORIZED,
        ));
    }
    follow(&state, &code, &parts, peer, true).await
}

/// Largest password form body read.
const FORM_LIMIT_BYTES: usize = 4096;

/// Answers a visit of `code` from `peer` (see [`answer`]).
async fn follow(
    state: &AppState,
    code: &str,
    req: &Parts,
    peer: Option<IpAddr>,
    unlocked: bool,
) -> Result<Response, ApiError> {
    let link = lookup(state, code, peer, &req.headers).await?;
    let reply = answer(state, code, link, req, peer, unlocked)?;
    Ok(reply.into_response(HeaderMap::new()))
}

/// What a visit answers, before its response is made.
enum Reply {
    /// 302 to this target.
    Found(HeaderValue),
    /// A page of its own (the password form).
    Page(Response),
}

impl Reply {
    /// The response, a redirect's headers written into `spare` (emptied first): a map
    /// with room for them allocates nothing.
    fn into_response(self, spare: HeaderMap) -> Response {
        match self {
            Self::Found(location) => found(location, spare),
            Self::Page(page) => page,
        }
    }
}

/// Answers a visit of `code` whose link is `link`: the target (after rules and query
/// forwarding), the password form of a protected link unless `unlocked`, or 404/410.
fn answer(
    state: &AppState,
    code: &str,
    link: CachedLink,
    req: &Parts,
    peer: Option<IpAddr>,
    unlocked: bool,
) -> Result<Reply, ApiError> {
    let (location, expires_at, deleted, forward_query, extras) = match link {
        CachedLink::Missing => return Err(ApiError::NotFound),
        CachedLink::Found {
            location,
            expires_at,
            deleted,
            forward_query,
            extras,
        } => (location, expires_at, deleted, forward_query, extras),
    };
    if deleted {
        return Err(ApiError::Gone);
    }
    // A click: a GET, or the post of a right password. HEAD (link previews, monitors) is not.
    let is_click = req.method == Method::GET || unlocked;
    let expired = expires_at.is_some_and(|t| t <= Utc::now());
    // Rules, limits, passwords and the target after expiry are looked at only for links
    // that have them.
    let extras = extras.as_deref();
    let locked = !unlocked && extras.is_some_and(|e| e.password_hash.is_some());
    let over_limit = !expired
        && extras.and_then(|e| e.limit.as_ref()).is_some_and(|limit| {
            let ua = req.headers.get(header::USER_AGENT);
            let human = is_click && !locked && !bots::is_bot(ua.and_then(|v| v.to_str().ok()));
            !limit.admit(human)
        });
    if expired || over_limit {
        return match extras.and_then(|e| e.expired_location.clone()) {
            Some(target) => Ok(Reply::Found(target)),
            None => Err(ApiError::Gone),
        };
    }
    if locked {
        return Ok(Reply::Page(password::form_page(
            code,
            req.uri.query(),
            Prompt::Ask,
            StatusCode::OK,
        )));
    }
    let mut client_ip = None;
    let (location, matched_rule) = match extras.map(|e| &*e.rules).filter(|r| !r.is_empty()) {
        None => (location, None),
        Some(rules) => {
            let ip = state.client_ips.resolve(peer, &req.headers);
            client_ip = Some(ip);
            let visitor = Visitor {
                headers: &req.headers,
                ip,
                country_of: |ip| state.geoip.as_ref()?.country_code(ip),
            };
            match pick(rules, visitor) {
                Some((i, rule)) => (rule.location.clone(), u32::try_from(i + 1).ok()),
                None => (location, None),
            }
        }
    };
    // Only a request with a query string pays for building a new target.
    let location = match req.uri.query() {
        Some(query) if forward_query => forwarded(&location, query).unwrap_or(location),
        _ => location,
    };
    if is_click {
        if let Some(clicks) = &state.clicks {
            let user_agent = header_text(&req.headers, header::USER_AGENT);
            let referer = header_text(&req.headers, header::REFERER);
            let mut click = ClickRef::now(
                code,
                client_ip.unwrap_or_else(|| state.client_ips.resolve(peer, &req.headers)),
                user_agent.as_deref(),
                referer.as_deref(),
            );
            click.matched_rule = matched_rule;
            clicks.publish(click);
        }
    }
    Ok(Reply::Found(location))
}

/// A 302 to `location`, its headers in `headers` (emptied first).
fn found(location: HeaderValue, mut headers: HeaderMap) -> Response {
    headers.clear();
    headers.insert(header::LOCATION, location);
    // Browsers must come back each time, so every click is seen (and counted).
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=0"),
    );
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::FOUND;
    *resp.headers_mut() = headers;
    resp
}

/// The extras of a stored link, None for a plain one.
async fn link_extras(state: &AppState, row: &LinkRow) -> Result<Option<Arc<LinkExtras>>, ApiError> {
    let code = row.short_code.as_str();
    let broken = |what: &str| {
        tracing::error!(code, what, "stored link field is unusable");
        ApiError::Internal
    };
    let rules: Box<[CompiledRule]> = match row.redirect_rules.as_deref() {
        None => Box::new([]),
        Some(json) => serde_json::from_str::<Vec<rules::RedirectRule>>(json)
            .ok()
            .and_then(|r| rules::compile(&r))
            .ok_or_else(|| broken("redirect_rules"))?,
    };
    let limit = match row.max_visits {
        None => None,
        Some(max) => {
            let stored = store::human_visits(&state.pool, code)
                .await
                .map_err(ApiError::from_db)?;
            Some(VisitLimit::new(
                u64::try_from(max).unwrap_or(0),
                state
                    .visit_tallies
                    .tally(code, u64::try_from(stored).unwrap_or(0)),
            ))
        }
    };
    let expired_location = match row.expired_url.as_deref() {
        None => None,
        Some(url) => Some(HeaderValue::from_str(url).map_err(|_| broken("expired_url"))?),
    };
    let password_hash = row.password_hash.as_deref().map(Box::from);
    Ok(LinkExtras::new(rules, limit, expired_location, password_hash).map(Arc::new))
}

/// Cache first, then the database (caching the answer, including "missing"), if the
/// client has not spent its budget of lookups that miss the cache.
async fn lookup(
    state: &AppState,
    code: &str,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
) -> Result<CachedLink, ApiError> {
    if let Some(hit) = state.cache.get(code) {
        state.metrics.cache_hits.inc();
        return Ok(hit);
    }
    if let Err(retry_after_secs) = state
        .miss_limit
        .check(state.client_ips.resolve(peer, headers))
    {
        state.metrics.misses_limited.inc();
        return Err(ApiError::RateLimited { retry_after_secs });
    }
    state.metrics.cache_misses.inc();
    let ticket = state.cache.ticket();
    let entry = match store::find(&state.pool, code)
        .await
        .map_err(ApiError::from_db)?
    {
        Some(row) => {
            // Deleted links need nothing but the flag.
            let extras = match row.deleted_at {
                None => link_extras(state, &row).await?,
                Some(_) => None,
            };
            CachedLink::Found {
                location: HeaderValue::from_maybe_shared(Bytes::from(row.long_url)).map_err(
                    |_| {
                        tracing::error!(code, "stored long_url is not a valid header value");
                        ApiError::Internal
                    },
                )?,
                expires_at: row.expires_at,
                deleted: row.deleted_at.is_some(),
                forward_query: row.forward_query,
                extras,
            }
        }
        None => CachedLink::Missing,
    };
    state.cache.insert_read(code, entry.clone(), ticket);
    Ok(entry)
}
