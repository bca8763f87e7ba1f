//! What hyper calls for each request of a connection: `GET /{code}`, `GET /healthz` and
//! GETs of paths no route has are answered here, everything else goes to the axum router
//! ([`crate::router`]).
//!
//! The hot paths get what the router's layers give every request — the server span
//! with trusted trace context ([`crate::http_trace`]), the request histogram by route
//! template ([`crate::metrics`]), the request deadline ([`crate::deadline`]), the client IP
//! from the socket peer — without what the router costs per request: a clone of the
//! matched route's boxed service and its boxed future, the path parameters (two `Arc<str>`
//! and a `String`), and a request extension map holding the peer and the matched path. A
//! redirect answered from the cache is complete when [`Front::call`] returns.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use axum::response::{IntoResponse, Response};
use axum::routing::future::RouteFuture;
use axum::Router;
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use shortener_common::health;
use tower::Service;

use crate::deadline::DeadlineFuture;
use crate::error::ApiError;
use crate::http_trace::{self, ServerSpanFuture};
use crate::metrics::{self, TrackFuture};
use crate::routes::redirect::{self, Visit};
use crate::validate::is_plausible_code;
use crate::AppState;

/// The paths answered here rather than by the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastRoute {
    Healthz,
    /// `/{code}`: the path is `/` and a plausible code.
    Redirect,
    /// A path no route of the router matches (404, as its fallback answers).
    Unmatched,
}

/// First path segments under which the router has routes other than `/{code}` and
/// `/{code}/qr`. A route added under a new first segment must be named here, or its
/// GETs are answered 404 (the unit test below lists every route).
pub const ROUTER_SEGMENTS: &[&str] = &["api", "ui", "openapi.json", "healthz"];

impl FastRoute {
    /// The route template the request is recorded under, as the router names it; None
    /// when no route matches.
    pub fn template(self) -> Option<&'static str> {
        match self {
            Self::Healthz => Some("/healthz"),
            Self::Redirect => Some("/{code}"),
            Self::Unmatched => None,
        }
    }

    /// Which fast path, if any, serves `method path`. Only GET: HEAD (link previews,
    /// monitors), the password form's POST and other methods are rare and go to the
    /// router. So does a one-segment path that is not a plausible code (the router decodes
    /// percent escapes and answers as for any impossible code).
    pub fn of(method: &Method, path: &str) -> Option<Self> {
        if method != Method::GET {
            return None;
        }
        let rest = path.strip_prefix('/')?;
        let (first, after) = match rest.split_once('/') {
            Some((first, after)) => (first, Some(after)),
            None => (rest, None),
        };
        if ROUTER_SEGMENTS.contains(&first) {
            return (rest == "healthz").then_some(Self::Healthz);
        }
        match after {
            None => is_plausible_code(first).then_some(Self::Redirect),
            // `/{code}/qr`, whatever the code looks like before decoding.
            Some("qr") => None,
            Some(_) => Some(Self::Unmatched),
        }
    }
}

/// The service of one connection from `peer`.
pub struct Front {
    state: AppState,
    /// This connection's own router handle: hyper calls through `&self` and a router call
    /// needs `&mut`; cloning it per request would bump a count shared by every connection.
    router: RefCell<Router>,
    peer: SocketAddr,
}

impl Front {
    pub fn new(state: AppState, router: Router, peer: SocketAddr) -> Self {
        Self {
            state,
            router: RefCell::new(router),
            peer,
        }
    }

    fn serve_fast(&self, route: FastRoute, req: Request<Incoming>) -> FrontFuture {
        let (parts, _) = req.into_parts();
        let (state, peer) = (&self.state, Some(self.peer.ip()));
        let template = route.template();
        let span = http_trace::make_span(
            &parts.method,
            template,
            parts.uri.path(),
            &parts.headers,
            || state.client_ips.is_trusted_peer(peer),
        );
        let start = Instant::now();
        let visit = http_trace::in_span(&span, || match route {
            FastRoute::Healthz => Visit::Now(health::healthz_response()),
            FastRoute::Redirect => redirect::visit(state, parts, peer),
            FastRoute::Unmatched => Visit::Now(ApiError::NotFound.into_response()),
        });
        let route_label = template.unwrap_or(metrics::UNMATCHED);
        match visit {
            Visit::Now(response) => {
                http_trace::finish(&span, response.status());
                state
                    .metrics
                    .observe_request("GET", route_label, response.status(), start);
                FrontFuture::Ready {
                    response: Some(response),
                }
            }
            Visit::Later(answer) => FrontFuture::Later {
                inner: TrackFuture::new(
                    ServerSpanFuture::new(
                        DeadlineFuture::new(Infallibly { inner: answer }, state.request_timeout),
                        span,
                    ),
                    state.metrics.clone(),
                    "GET",
                    route_label,
                ),
            },
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = FrontFuture;

    fn call(&self, mut req: Request<Incoming>) -> FrontFuture {
        if let Some(route) = FastRoute::of(req.method(), req.uri().path()) {
            return self.serve_fast(route, req);
        }
        // The router's handlers read the peer (client IP, rate limits) from here.
        req.extensions_mut().insert(ConnectInfo(self.peer));
        FrontFuture::Router {
            // A router is always ready; the future it returns does not borrow it.
            inner: self.router.borrow_mut().call(req),
        }
    }
}

pin_project! {
    /// A boxed answer as a future that cannot fail.
    pub struct Infallibly {
        inner: Pin<Box<dyn Future<Output = Response> + Send>>,
    }
}

impl Future for Infallibly {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.as_mut().poll(cx).map(Ok)
    }
}

pin_project! {
    /// The answer of [`Front::call`].
    #[project = FrontProj]
    pub enum FrontFuture {
        /// Answered (span and metrics recorded) before the call returned.
        Ready { response: Option<Response> },
        /// A fast path that waits (a redirect whose link is not in the cache).
        Later { #[pin] inner: TrackFuture<ServerSpanFuture<DeadlineFuture<Infallibly>>> },
        Router { #[pin] inner: RouteFuture<Infallible> },
    }
}

impl Future for FrontFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            FrontProj::Ready { response } => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            FrontProj::Later { inner } => inner.poll(cx),
            FrontProj::Router { inner } => inner.poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str) -> Option<FastRoute> {
        FastRoute::of(&Method::GET, path)
    }

    #[test]
    fn health_and_plausible_codes_are_fast() {
        assert_eq!(get("/healthz"), Some(FastRoute::Healthz));
        assert_eq!(get("/abc123"), Some(FastRoute::Redirect));
        assert_eq!(get("/my-alias_2"), Some(FastRoute::Redirect));
        for not_a_code in ["/a%62c", "/a.b", "/", &format!("/{}", "a".repeat(65))] {
            assert_eq!(
                get(not_a_code),
                None,
                "{not_a_code}: the router decodes and answers"
            );
        }
        for method in [Method::HEAD, Method::POST, Method::DELETE] {
            for path in ["/abc123", "/healthz", "/nope/x"] {
                assert_eq!(FastRoute::of(&method, path), None, "{method} {path}");
            }
        }
    }

    #[test]
    fn every_route_of_the_router_reaches_it() {
        // Each path of `crate::router`, with `x` for a parameter (`/{code}` is fast).
        for routed in [
            "/openapi.json",
            "/x/qr",
            "/api/v1/links",
            "/api/v1/links/x",
            "/api/v1/links/x/stats",
            "/api/v1/links/x/qr",
            "/api/v1/links/bulk",
            "/api/v1/links/import",
            "/api/v1/links/export",
            "/api/v1/orphan-visits",
            "/api/v1/account/stats",
            "/ui",
            "/ui/",
            "/ui/login",
            "/ui/logout",
            "/ui/links",
            "/ui/links/x",
            "/ui/links/x/qr",
            "/ui/account",
            "/ui/assets/x",
            "/api/nothing/here",
            "/ui/nothing",
        ] {
            assert_eq!(get(routed), None, "{routed}");
        }
    }

    #[test]
    fn paths_no_route_has_are_unmatched() {
        for unmatched in [
            "/nope/x",
            "/abc/",
            "/x/qr/more",
            "//abc",
            "/wp-admin/setup.php",
        ] {
            assert_eq!(get(unmatched), Some(FastRoute::Unmatched), "{unmatched}");
        }
    }
}
