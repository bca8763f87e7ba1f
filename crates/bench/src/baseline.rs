//! The redirect baseline: a bare axum handler answering `GET /{code}` with the same 302 as
//! url-api, from an in-memory HashMap. No database, cache, auth, metrics or events: the
//! ceiling for what the HTTP stack alone can do on this machine.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// Codes and their long URLs.
pub type Links = Arc<HashMap<String, String>>;

pub fn router(links: Links) -> Router {
    Router::new()
        .route("/{code}", get(redirect))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(links)
}

async fn redirect(State(links): State<Links>, Path(code): Path<String>) -> Response {
    match links.get(&code) {
        Some(url) => (
            StatusCode::FOUND,
            [
                (header::LOCATION, url.as_str()),
                (header::CACHE_CONTROL, "private, max-age=0"),
            ],
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Reads `code<TAB>url` lines.
pub fn parse_links(text: &str) -> Links {
    Arc::new(
        text.lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(c, u)| (c.to_string(), u.to_string()))
            .collect(),
    )
}

/// Serves the baseline on an ephemeral loopback port of the current runtime.
pub async fn spawn(links: Links) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(links)).await;
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::{self, LoadSpec};
    use std::time::Duration;

    #[tokio::test]
    async fn load_generator_measures_the_baseline() {
        let links: Links = Arc::new(
            (0..10)
                .map(|i| (format!("c{i}"), format!("https://example.com/{i}")))
                .collect(),
        );
        let addr = spawn(links).await.unwrap();
        let report = loadgen::run(LoadSpec {
            target: addr,
            connections: 4,
            warmup: Duration::from_millis(50),
            duration: Duration::from_millis(300),
            request: Arc::new(|n| loadgen::get(&format!("/c{}", n % 10))),
            expect: StatusCode::FOUND,
        })
        .await
        .unwrap();
        assert_eq!(report.errors, 0);
        assert!(report.requests > 0);
        assert!(report.p50_ms <= report.p99_ms && report.p99_ms <= report.max_ms);

        // A wrong expectation turns every answer into an error.
        let report = loadgen::run(LoadSpec {
            target: addr,
            connections: 2,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(200),
            request: Arc::new(|_| loadgen::get("/missing")),
            expect: StatusCode::FOUND,
        })
        .await;
        assert!(matches!(
            report,
            Err(loadgen::LoadError::NothingSucceeded(_))
        ));
    }
}
