//! The dashboard's handlers: thin shells that check the session, CSRF token and rate
//! limit, call the same functions as the API, and render a template.

use std::net::{IpAddr, Ipv4Addr};

use askama::Template;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use chrono::Utc;
use serde::Deserialize;

use super::assets::{AssetUrls, URLS};
use super::range::{self, Preset, RangeForm};
use super::session::{self, Lookup, Session, LOGIN_CSRF_COOKIE};
use super::view::{self, BarList};
use super::{csrf, ClientIp};
use crate::error::ApiError;
use crate::rate_limit::{self, ClientKey};
use crate::routes::links::{self, CreateLinkRequest, EditLinkRequest, LinkResponse, ListQuery};
use crate::routes::qr;
use crate::routes::stats::{self, LinkStats};
use crate::store;
use crate::{auth, AppState};

/// Links per page of the list.
pub const PAGE_SIZE: u32 = 20;

const EXPIRY_CHOICES: &[(&str, &str)] = &[
    ("", "Never"),
    ("3600", "In 1 hour"),
    ("86400", "In 1 day"),
    ("604800", "In 7 days"),
    ("2592000", "In 30 days"),
    ("31536000", "In 1 year"),
];

/// The signed-in header of a page.
pub struct Nav {
    owner: String,
    csrf: String,
    current: &'static str,
}

fn nav(s: &Session, current: &'static str) -> Option<Nav> {
    Some(Nav {
        owner: s.owner.to_string(),
        csrf: s.csrf_token.clone(),
        current,
    })
}

/// Why a dashboard request did not get its page.
#[derive(Debug)]
pub enum UiError {
    /// No session (or an expired one): back to the sign-in form.
    SignIn {
        expired: bool,
    },
    /// A form without a valid CSRF token, or sent from another site.
    Forbidden,
    Api(ApiError),
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        Self::Api(e)
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    assets: &'static AssetUrls,
    nav: Option<Nav>,
    heading: &'static str,
    message: String,
}

fn error_page(status: StatusCode, heading: &'static str, message: String) -> Response {
    let page = ErrorPage {
        assets: &URLS,
        nav: None,
        heading,
        message,
    };
    (status, render(&page)).into_response()
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::SignIn { expired: false } => Redirect::to("/ui/login").into_response(),
            UiError::SignIn { expired: true } => {
                Redirect::to("/ui/login?expired=1").into_response()
            }
            UiError::Forbidden => error_page(
                StatusCode::FORBIDDEN,
                "This form could not be accepted",
                "The form was stale or came from another site, so nothing was changed. \
                 Reload the page and try again."
                    .to_string(),
            ),
            UiError::Api(e) => {
                let (status, message) = view::plain_words(&e);
                let heading = match status {
                    StatusCode::TOO_MANY_REQUESTS => "Slow down",
                    StatusCode::NOT_FOUND | StatusCode::GONE => "Link not found",
                    s if s.is_server_error() => "Temporarily unavailable",
                    _ => "That did not work",
                };
                let mut resp = error_page(status, heading, message);
                let retry = match e {
                    ApiError::RateLimited { retry_after_secs } => Some(retry_after_secs),
                    ApiError::DatabaseUnavailable | ApiError::StatsUnavailable => Some(1),
                    _ => None,
                };
                if let Some(secs) = retry {
                    resp.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                resp
            }
        }
    }
}

fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn bad_form(rejection: FormRejection) -> UiError {
    UiError::Api(ApiError::InvalidRequest(rejection.body_text()))
}

/// A request with a live session whose key is still configured.
pub struct SignedIn(pub Session);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, UiError> {
        let Some(id) = session::cookie(&parts.headers, state.ui.cookies.name()) else {
            return Err(UiError::SignIn { expired: false });
        };
        match session::find(&state.pool, id, Utc::now())
            .await
            .map_err(ApiError::from_db)?
        {
            Lookup::Live {
                session,
                key_digest,
            } if state
                .keys
                .owner_of_digest(&key_digest)
                .is_some_and(|owner| owner == session.owner) =>
            {
                Ok(SignedIn(session))
            }
            _ => Err(UiError::SignIn { expired: true }),
        }
    }
}

/// One request from the owner's API bucket (`read` for pages, else the write bucket).
fn limit(state: &AppState, s: &Session, read: bool) -> Result<(), UiError> {
    let config = if read {
        &state.read_limit
    } else {
        &state.write_limit
    };
    rate_limit::check(config, &ClientKey::ApiKey(s.owner.clone())).map_err(UiError::Api)
}

fn check_csrf(
    state: &AppState,
    headers: &HeaderMap,
    s: &Session,
    presented: &str,
) -> Result<(), UiError> {
    if csrf::same_origin(headers, &state.ui.public_origin)
        && csrf::token_matches(&s.csrf_token, presented)
    {
        Ok(())
    } else {
        Err(UiError::Forbidden)
    }
}

// --- Sign in / out -------------------------------------------------------------------

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    assets: &'static AssetUrls,
    nav: Option<Nav>,
    csrf: String,
    notice: Option<&'static str>,
    error: Option<&'static str>,
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    expired: Option<String>,
    signed_out: Option<String>,
}

fn login_form(
    state: &AppState,
    status: StatusCode,
    notice: Option<&'static str>,
    error: Option<&'static str>,
) -> Response {
    let token = session::random_token();
    let page = LoginPage {
        assets: &URLS,
        nav: None,
        csrf: token.clone(),
        notice,
        error,
    };
    let mut resp = (status, render(&page)).into_response();
    resp.headers_mut()
        .append(header::SET_COOKIE, state.ui.cookies.login_csrf(&token));
    resp
}

pub async fn login_page(
    State(state): State<AppState>,
    signed_in: Result<SignedIn, UiError>,
    Query(q): Query<LoginQuery>,
) -> Response {
    if signed_in.is_ok() {
        return Redirect::to("/ui/links").into_response();
    }
    let notice = if q.expired.is_some() {
        Some("Your session expired. Sign in again to continue.")
    } else if q.signed_out.is_some() {
        Some("You are signed out.")
    } else {
        None
    };
    let mut resp = login_form(&state, StatusCode::OK, notice, None);
    if q.expired.is_some() {
        resp.headers_mut()
            .append(header::SET_COOKIE, state.ui.cookies.clear());
    }
    resp
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    csrf: String,
    api_key: String,
}

pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Result<Response, UiError> {
    // Sign-in attempts share the bucket of keyless API calls from the same address.
    let client = ClientKey::Ip(rate_limit::client_net(
        ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
    ));
    rate_limit::check(&state.write_limit, &client)?;
    let Form(form) = form.map_err(bad_form)?;
    let expected = session::cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if !csrf::same_origin(&headers, &state.ui.public_origin)
        || !csrf::token_matches(expected, &form.csrf)
    {
        return Err(UiError::Forbidden);
    }
    let key_digest = auth::digest(form.api_key.trim());
    let Some(owner) = state.keys.owner_of_digest(&key_digest) else {
        return Ok(login_form(
            &state,
            StatusCode::UNAUTHORIZED,
            None,
            Some("That API key is not valid. Check it and try again."),
        ));
    };
    let (id, _) = session::open(
        &state.pool,
        &owner,
        &key_digest,
        state.ui.session_ttl,
        Utc::now(),
    )
    .await
    .map_err(ApiError::from_db)?;
    let mut resp = Redirect::to("/ui/links").into_response();
    let h = resp.headers_mut();
    h.append(
        header::SET_COOKIE,
        state.ui.cookies.set(&id, state.ui.session_ttl),
    );
    Ok(resp)
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    csrf: String,
}

pub async fn logout(
    State(state): State<AppState>,
    SignedIn(s): SignedIn,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, UiError> {
    let Form(form) = form.map_err(bad_form)?;
    check_csrf(&state, &headers, &s, &form.csrf)?;
    limit(&state, &s, false)?;
    session::close(&state.pool, &s)
        .await
        .map_err(ApiError::from_db)?;
    let mut resp = Redirect::to("/ui/login?signed_out=1").into_response();
    resp.headers_mut()
        .append(header::SET_COOKIE, state.ui.cookies.clear());
    Ok(resp)
}

// --- Links ---------------------------------------------------------------------------

/// A link as the pages show it.
pub struct LinkView {
    code: String,
    short_url: String,
    long_url: String,
    title: Option<String>,
    tags: Vec<String>,
    created: String,
    expires: Option<String>,
}

impl From<LinkResponse> for LinkView {
    fn from(l: LinkResponse) -> Self {
        Self {
            created: view::when(&l.created_at),
            expires: l.expires_at.as_ref().map(view::when),
            code: l.code,
            short_url: l.short_url,
            long_url: l.long_url,
            title: l.title,
            tags: l.tags,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct ShortenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    long_url: String,
    #[serde(default)]
    alias: String,
    #[serde(default)]
    title: String,
    /// Comma-separated.
    #[serde(default)]
    tags: String,
    #[serde(default)]
    expires_in: String,
}

/// The list's search, tag filter, order and page, as in its query string.
#[derive(Debug, Default, Deserialize)]
pub struct ListForm {
    #[serde(default)]
    q: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    order: String,
    cursor: Option<String>,
    deleted: Option<String>,
}

impl ListForm {
    fn query(&self) -> ListQuery {
        let some = |s: &str| Some(s.trim().to_string()).filter(|t| !t.is_empty());
        ListQuery {
            limit: Some(PAGE_SIZE),
            cursor: self.cursor.clone(),
            q: some(&self.q),
            tags: some(&self.tag),
            created_after: None,
            created_before: None,
            order: some(&self.order).filter(|o| o == "clicks"),
        }
    }

    /// `/ui/links?...` of the page after this one.
    fn next_page(&self, cursor: &str) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in [("q", &self.q), ("tag", &self.tag), ("order", &self.order)] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        q.append_pair("cursor", cursor);
        format!("/ui/links?{}", q.finish())
    }

    fn filtered(&self) -> bool {
        !self.q.trim().is_empty() || !self.tag.trim().is_empty()
    }
}

#[derive(Template)]
#[template(path = "links.html")]
struct LinksPage {
    assets: &'static AssetUrls,
    nav: Option<Nav>,
    csrf: String,
    notice: Option<String>,
    form_error: Option<String>,
    form: ShortenForm,
    expiry_choices: &'static [(&'static str, &'static str)],
    list: ListForm,
    links: Vec<LinkView>,
    next_page: Option<String>,
    paged: bool,
}

async fn links_page(
    state: &AppState,
    s: &Session,
    list: ListForm,
    notice: Option<String>,
    form: ShortenForm,
    form_error: Option<String>,
) -> Result<LinksPage, UiError> {
    let (rows, next) = links::list_links(state, &s.owner, &list.query()).await?;
    Ok(LinksPage {
        assets: &URLS,
        nav: nav(s, "links"),
        csrf: s.csrf_token.clone(),
        notice,
        form_error,
        form,
        expiry_choices: EXPIRY_CHOICES,
        links: rows
            .into_iter()
            .map(|r| LinkResponse::from_row(state, r).into())
            .collect(),
        next_page: next.map(|c| list.next_page(&c.encode())),
        paged: list.cursor.as_deref().is_some_and(|c| !c.is_empty()),
        list,
    })
}

pub async fn links(
    State(state): State<AppState>,
    SignedIn(s): SignedIn,
    Query(list): Query<ListForm>,
) -> Result<Response, UiError> {
    limit(&state, &s, true)?;
    let notice = list.deleted.as_ref().map(|code| format!("Deleted {code}."));
    let page = links_page(&state, &s, list, notice, ShortenForm::default(), None).await?;
    Ok(render(&page))
}

/// Comma- or space-separated tags as typed.
fn tag_list(text: &str) -> Vec<String> {
    text.split([',', ' '])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The shorten form as the API's create request.
fn create_request(form: &ShortenForm) -> Result<CreateLinkRequest, ApiError> {
    let alias = form.alias.trim();
    let title = form.title.trim();
    Ok(CreateLinkRequest {
        long_url: form.long_url.trim().to_string(),
        alias: (!alias.is_empty()).then(|| alias.to_string()),
        expires_at: None,
        expires_in_secs: expires_in(&form.expires_in)?,
        title: (!title.is_empty()).then(|| title.to_string()),
        description: None,
        tags: tag_list(&form.tags),
        forward_query: None,
        utm: None,
        redirect_rules: Vec::new(),
        max_visits: None,
        expired_url: None,
        public_qr: false,
        password: None,
    })
}

/// An expiry choice of the forms: empty for none, else seconds from now.
fn expires_in(choice: &str) -> Result<Option<i64>, ApiError> {
    match choice.trim() {
        "" => Ok(None),
        secs => secs
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::InvalidRequest("pick an expiry from the list".into())),
    }
}

/// Errors about what was typed: the form comes back with them and the values.
fn is_form_error(e: &ApiError) -> bool {
    matches!(e.status(), StatusCode::BAD_REQUEST | StatusCode::CONFLICT)
}

pub async fn create(
    State(state): State<AppState>,
    SignedIn(s): SignedIn,
    headers: HeaderMap,
    form: Result<Form<ShortenForm>, FormRejection>,
) -> Result<Response, UiError> {
    let Form(form) = form.map_err(bad_form)?;
    check_csrf(&state, &headers, &s, &form.csrf)?;
    limit(&state, &s, false)?;
    let created = match create_request(&form) {
        Ok(req) => links::create_link(&state, &s.owner, &req).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(row) => {
            Ok(Redirect::to(&format!("/ui/links/{}?created=1", row.short_code)).into_response())
        }
        Err(e) if is_form_error(&e) => {
            let status = e.status();
            let message = view::plain_words(&e).1;
            let page =
                links_page(&state, &s, ListForm::default(), None, form, Some(message)).await?;
            Ok((status, render(&page)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct EditForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    long_url: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    tags: String,
    /// `keep`, empty (never), or seconds from now.
    #[serde(default)]
    expires_in: String,
}

#[derive(Template)]
#[template(path = "edit.html")]
struct EditPage {
    assets: &'static AssetUrls,
    nav: Option<Nav>,
    csrf: String,
    link: LinkView,
    form: EditForm,
    form_error: Option<String>,
    expiry_choices: &'static [(&'static str, &'static str)],
}

fn edit_page(s: &Session, link: LinkView, form: EditForm, form_error: Option<String>) -> EditPage {
    EditPage {
        assets: &URLS,
        nav: nav(s, "links"),
        csrf: s.csrf_token.clone(),
        link,
        form,
        form_error,
        expiry_choices: EXPIRY_CHOICES,
    }
}

pub async fn edit_form(
    State(state): State<AppState>,
    SignedIn(s): SignedIn,
    Path(code): Path<String>,
) -> Result<Response, UiError> {
    limit(&state, &s, true)?;
    let row = links::owned_link_by_code(&state, &s.owner, &code).await?;
    let link: LinkView = LinkResponse::from_row(&state, row).into();
    let form = EditForm {
        long_url: link.long_url.clone(),
        title: link.title.clone().unwrap_or_default(),
        tags: link.tags.join(", "),
        expires_in: "keep".into(),
        ..EditForm::default()
    };
    Ok(render(&edit_page(&s, link, form, None)))
}

/// The edit form as the API's change request: only what differs from `current`.
fn edit_request(form: &EditForm, current: &LinkView) -> Result<EditLinkRequest, ApiError> {
    let long_url = form.long_url.trim();
    let title = form.title.trim();
    let tags = tag_list(&form.tags);
    Ok(EditLinkRequest {
        long_url: (long_url != current.long_url).then(|| long_url.to_string()),
        title: (Some(title) != current.title.as_deref().or(Some("")))
            .then(|| (!title.is_empty()).then(|| title.to_string())),
        tags: (tags != current.tags).then_some(tags),
        expires_in_secs: match form.expires_in.trim() {
            "keep" => None,
            other => expires_in(other)?,
        },
        expires_at: (form.expires_in.trim() == "").then_some(None),
        ..EditLinkRequest::default()
    })
}

fn changes_nothing(req: &EditLinkRequest) -> bool {
    req.long_url.is_none()
        && req.title.is_none()
        && req.tags.is_none()
        && req.expires_in_secs.is_none()
        && req.expires_at.is_none()
}

pub async fn edit(
    State(state): State<AppState>,
    SignedIn(s): SignedIn,
    Path(code): Path<String>,
    headers: HeaderMap,
    form: Result<Form<EditForm>, FormRejection>,
) -> Result<Response, UiError> {
    let Form(form) = form.map_err(bad_form)?;
    check_csrf(&state, &headers, &s, &form.csrf)?;
    limit(&state, &s, false)?;
    let row = links::owned_link_by_code(&state, &s.owner, &code).await?;
    let current: LinkView = LinkResponse::from_row(&state, row.clone()).into();
    let edited = match edit_request(&form, &current) {
        Ok(req) if changes_nothing(&req) => {
            return Ok(Redirect::to(&format!("/ui/links/{code}")).into_response())
        }
        Ok(req) => links::edit_link(&state, &s.owner, &row, req).await,
        Err(e) => Err(e),
    };
    match edited {
        Ok(row) => {
            Ok(Redirect::to(&format!("/ui/links/{}?edited=1", row.short_code)).into_response())
        }
        Err(e) if is_form_error(&e) => {
            let status = e.status();
            let page = edit_page(&s, current, form, Some(view::plain_words(&e).1));
            Ok((status, render(&page)).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

// --- One link ------------------------------------------------------------------------

/// The analytics part of a link's page.
pub struct StatsView {
    total: u64,
    humans: u64,
    bots: u64,
    visitors: u64,
    human_series: String,
    range_text: String,
    times: String,
    clicks: String,
    lists: Vec<BarList>,
}

/// What `range_form.html` shows: the range picker of the link and account pages.
pub struct RangePicker {
    action: String,
    /// Whether to offer hourly or daily buckets (only where a chart shows them).
    show_bucket: bool,
    presets: Vec<(&'static str, &'static str)>,
    selected: &'static str,
    from_date: String,
    to_date: String,
    hourly: bool,
    problem: Option<String>,
}

impl RangePicker {
    fn new(action: String, show_bucket: bool, window: &range::Window) -> Self {
        Self {
            action,
            show_bucket,
            presets: Preset::ALL.iter().map(|p| (p.param(), p.label())).collect(),
            selected: window.preset.param(),
            from_date: window.from_date.to_string(),
            to_date: window.to_date.to_string(),
            hourly: window.hourly,
            problem: window.problem.clone(),
        }
    }
}

/// The picked range in words: "in the last 7 days", "from 2026-11-01 to 2026-11-05 (UTC)".
fn range_text(window: &range::Window) -> String {
    match window.preset {
        Preset::Custom => format!("from {} to {} (UTC)", window.from_date, window.to_date),
        preset => format!(
            "in the {}",
            preset.label().to_lowercase().trim_start_matches("in the ")
        ),
    }
}

fn stats_view(stats: &LinkStats, window: &range::Window) -> StatsView {
    let (times, clicks, humans) = view::series_attrs(&stats.series);
    let range_text = range_text(window);
    StatsView {
        total: stats.total_clicks,
        humans: stats.human_clicks,
        bots: stats.bot_clicks,
        visitors: stats.visitors,
        range_text,
        times,
        clicks,
        human_series: humans,
        lists: vec![
            BarList {
                kind: "country",
                ..view::bar_list("Countries", &stats.by_country, view::as_is)
            },
            view::bar_list("Devices", &stats.by_device_type, view::capitalized),
            view::bar_list("Browsers", &stats.by_browser, view::as_is),
            view::bar_list("Operating systems", &stats.by_os, view::as_is),
            view::bar_list("Traffic sources", &stats.by_traffic_source, view::source),
        ],
    }
}

#[derive(Template)]
#[template(path = "link.html")]
struct LinkPage {
    assets: &'static AssetUrls,
    nav: Option<Nav>,
    link: LinkView,
    created: bool,
    edited: bool,
    picker: RangePicker,
    stats: Option<StatsView>,
    stats_problem: String,
}

pub async fn link(
    State(state): State<AppState>,
    SignedIn(s): SignedIn,
    Path(code): Path<String>,
    Query(q): Query<RangeForm>,
) -> Result<Response, UiError> {
    limit(&state, &s, true)?;
    let row = links::owned_link_by_code(&state, &s.owner, &code).await?;
    let range_action = format!("/ui/links/{}", row.short_code);
    let window = range::resolve(&q, Utc::now());
    let (stats, stats_problem) =
        match stats::fetch_stats(&state, &s.owner, row.short_code.clone(), &window.query()).await {
            Ok(st) => (Some(stats_view(&st, &window)), String::new()),
            Err(e) => (None, view::plain_words(&e).1),
        };
    let page = LinkPage {
        assets: &URLS,
        nav: nav(&s, "links"),
        link: LinkResponse::from_row(&state, row).into(),
        created: q.created.is_some(),
        edited: q.edited.is_some(),
        picker: RangePicker::new(range_action, true, &window),
        stats,
        stats_problem,
    };
    Ok(render(&page))
}

/// `GET /ui/links/{code}/qr`: the link's QR code (the API's owner QR), for the page's
/// image and its download links.
pub async fn qr(
    State(state): State<AppState>,
    SignedIn(s): SignedIn,
    Path(code): Path<String>,
    Query(q): Query<qr::QrQuery>,
) -> Result<Response, UiError> {
    limit(&state, &s, true)?;
    let (format, size) = qr::params(&q)?;
    let row = links::owned_link_by_code(&state, &s.owner, &code).await?;
    Ok(qr::image(&state, &row.short_code, format, size)?)
}

#[derive(Template)]
#[template(path = "delete.html")]
struct DeletePage {
    assets: &'static AssetUrls,
    nav: Option<Nav>,
    csrf: String,
    code: String,
    short_url: String,
    long_url: String,
}

pub async fn confirm_delete(
    State(state): State<AppState>,
    SignedIn(s): SignedIn,
    Path(code): Path<String>,
) -> Result<Response, UiError> {
    limit(&state, &s, true)?;
    let row = links::owned_link_by_code(&state, &s.owner, &code).await?;
    let link = LinkResponse::from_row(&state, row);
    Ok(render(&DeletePage {
        assets: &URLS,
        nav: nav(&s, "links"),
        csrf: s.csrf_token.clone(),
        code: link.code,
        short_url: link.short_url,
        long_url: link.long_url,
    }))
}

pub async fn delete(
    State(state): State<AppState>,
    SignedIn(s): SignedIn,
    Path(code): Path<String>,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, UiError> {
    let Form(form) = form.map_err(bad_form)?;
    check_csrf(&state, &headers, &s, &form.csrf)?;
    limit(&state, &s, false)?;
    links::delete_link(&state, &s.owner, &code).await?;
    Ok(Redirect::to(&format!("/ui/links?deleted={code}")).into_response())
}

// --- Account -------------------------------------------------------------------------

/// Account totals and top lists over the picked range (30 days unless picked), from
/// analytics' account call.
pub struct AccountView {
    total: u64,
    humans: u64,
    bots: u64,
    visitors: u64,
    top_links: BarList,
    lists: Vec<BarList>,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    assets: &'static AssetUrls,
    nav: Option<Nav>,
    live_links: i64,
    picker: RangePicker,
    range_text: String,
    stats: Option<AccountView>,
    stats_problem: String,
}

pub async fn account(
    State(state): State<AppState>,
    SignedIn(s): SignedIn,
    Query(mut q): Query<RangeForm>,
) -> Result<Response, UiError> {
    limit(&state, &s, true)?;
    let live_links = store::count_live_by_owner(&state.pool, &s.owner)
        .await
        .map_err(ApiError::from_db)?;
    q.range.get_or_insert_with(|| "30d".to_string());
    let window = range::resolve(&q, Utc::now());
    let query = stats::AccountStatsQuery {
        from: Some(window.from),
        to: Some(window.to),
        top: Some(view::MAX_BARS as u32),
    };
    let (stats, stats_problem) = match stats::fetch_account_stats(&state, &s.owner, &query).await {
        Ok(a) => (
            Some(AccountView {
                total: a.total_clicks,
                humans: a.human_clicks,
                bots: a.bot_clicks,
                visitors: a.visitors,
                top_links: BarList {
                    kind: "code",
                    ..view::bar_list("Top links", &a.top_links, view::as_is)
                },
                lists: vec![
                    BarList {
                        kind: "country",
                        ..view::bar_list("Countries", &a.by_country, view::as_is)
                    },
                    view::bar_list("Traffic sources", &a.by_traffic_source, view::source),
                ],
            }),
            String::new(),
        ),
        Err(e) => (None, view::plain_words(&e).1),
    };
    Ok(render(&AccountPage {
        assets: &URLS,
        nav: nav(&s, "account"),
        live_links,
        picker: RangePicker::new("/ui/account".to_string(), false, &window),
        range_text: range_text(&window),
        stats,
        stats_problem,
    }))
}
