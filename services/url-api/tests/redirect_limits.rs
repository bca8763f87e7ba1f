//! Redirect lookups that miss the cache are limited per client: random codes cannot
//! drain the database pool, while links in the cache keep redirecting.

mod common;

use common::*;
use shortener_common::db::DatabaseArgs;

/// GET `path` as the client `ip` (reported by the trusted proxy the test client stands for).
async fn get_as(app: &TestApp, ip: &str, path: &str) -> reqwest::Response {
    app.client
        .get(app.url(path))
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap()
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} missing: {text}"))
}

#[tokio::test]
async fn random_codes_from_one_client_are_limited_and_real_links_keep_redirecting() {
    let app = start(|c| {
        c.redirect_miss_per_second = 1;
        c.redirect_miss_burst = 5;
        c.trusted_proxies = url_api::config::parse_proxies("127.0.0.1").unwrap();
    })
    .await;
    let code = app.create_ok(ALICE, "https://example.com/real").await;
    let scanner = "198.51.100.1";
    assert_eq!(
        get_as(&app, scanner, &format!("/{code}")).await.status(),
        302
    );

    let mut statuses = Vec::new();
    for i in 0..50 {
        let resp = get_as(&app, scanner, &format!("/rnd{i:04}xyz")).await;
        statuses.push(resp.status().as_u16());
    }
    let not_found = statuses.iter().filter(|s| **s == 404).count();
    let limited = statuses.iter().filter(|s| **s == 429).count();
    // The burst of 5 (one spent on the real link, maybe two when a change notification
    // dropped it from the cache), plus at most a refill or two.
    assert!((3..=6).contains(&not_found), "{statuses:?}");
    assert_eq!(not_found + limited, 50, "{statuses:?}");
    let resp = get_as(&app, scanner, "/another-random").await;
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(error_code(resp, 429).await, "rate_limited");

    // The cached link still redirects the scanner, and others have their own budget.
    assert_eq!(
        get_as(&app, scanner, &format!("/{code}")).await.status(),
        302
    );
    assert_eq!(
        get_as(&app, "203.0.113.9", "/rnd-other").await.status(),
        404
    );
    // Rotating through the scanner's IPv6 /64 does not give it more.
    let v6 = "2001:db8:9:9";
    let mut v6_statuses = Vec::new();
    for i in 1..=10 {
        let resp = get_as(&app, &format!("{v6}:{i:x}::1"), &format!("/v6-{i}")).await;
        v6_statuses.push(resp.status().as_u16());
    }
    assert_eq!(
        v6_statuses.iter().filter(|s| **s == 404).count(),
        5,
        "{v6_statuses:?}"
    );

    let text = app.metrics().await;
    assert!(
        metric(&text, "redirect_misses_limited_total") >= 45,
        "{text}"
    );
    assert!(metric(&text, "redirect_cache_misses_total") <= 16, "{text}");
    app.stop().await;
}

#[tokio::test]
async fn a_refused_lookup_never_reaches_the_database() {
    // Nothing listens on a port just bound and released: every query fails with 503.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut db = DatabaseArgs::with_url(format!("postgres://postgres@127.0.0.1:{port}/none"));
    db.database_acquire_timeout_ms = 200;
    let mut config = base_config(db);
    config.redirect_miss_per_second = 1;
    config.redirect_miss_burst = 2;
    let app = start_with(config).await;
    let mut statuses = Vec::new();
    for i in 0..6 {
        statuses.push(app.get(&format!("/code{i}")).await.status().as_u16());
    }
    // Two lookups tried the database; the rest were answered without it.
    assert_eq!(statuses, [503, 503, 429, 429, 429, 429]);
    app.stop().await;
}
