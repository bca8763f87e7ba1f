//! The HTTP API against a real Postgres, served on a loopback listener.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use shortener_common::db::DatabaseArgs;

#[tokio::test]
async fn create_redirect_details_list_and_delete() {
    let app = start(|_| {}).await;

    let resp = app
        .create(
            ALICE,
            json!({ "long_url": "https://example.com/first?q=1" }),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let code = created["code"].as_str().unwrap().to_string();
    assert_eq!(code.len(), 7);
    assert_eq!(created["short_url"], format!("https://sho.rt/{code}"));
    assert_eq!(created["long_url"], "https://example.com/first?q=1");
    assert!(created["created_at"].as_str().is_some());
    assert_eq!(created["expires_at"], Value::Null);

    // Redirect (twice: database, then cache).
    for _ in 0..2 {
        let resp = app.get(&format!("/{code}")).await;
        assert_eq!(resp.status(), 302);
        assert_eq!(resp.headers()["location"], "https://example.com/first?q=1");
    }
    assert_eq!(
        error_code(app.get("/nosuchcode").await, 404).await,
        "not_found"
    );

    // Details, for the owner only.
    let details: Value = app
        .get_auth(ALICE, &format!("/api/v1/links/{code}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(details["code"], code.as_str());
    assert_eq!(details["long_url"], "https://example.com/first?q=1");
    let resp = app.get_auth(BOB, &format!("/api/v1/links/{code}")).await;
    assert_eq!(error_code(resp, 404).await, "not_found");

    // Four more links (one via X-API-Key), then page through them two at a time.
    let mut expected = vec![code.clone()];
    for i in 0..4 {
        let resp = app
            .client
            .post(app.url("/api/v1/links"))
            .header("x-api-key", ALICE)
            .json(&json!({ "long_url": format!("https://example.com/{i}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let v: Value = resp.json().await.unwrap();
        expected.push(v["code"].as_str().unwrap().to_string());
    }
    app.create_ok(BOB, "https://example.org/bob").await;
    expected.reverse(); // newest first

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/links?limit=2&cursor={c}"),
            None => "/api/v1/links?limit=2".to_string(),
        };
        let page: Value = app.get_auth(ALICE, &path).await.json().await.unwrap();
        pages += 1;
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|i| i["code"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, expected, "every link once, newest first");
    assert_eq!(pages, 3);
    let resp = app.get_auth(ALICE, "/api/v1/links?limit=0").await;
    assert_eq!(error_code(resp, 400).await, "invalid_query");
    let resp = app.get_auth(ALICE, "/api/v1/links?cursor=garbage").await;
    assert_eq!(error_code(resp, 400).await, "invalid_query");
    // Well-formed, but before any time Postgres can represent.
    let resp = app
        .get_auth(ALICE, "/api/v1/links?cursor=-8000000000000000000_1")
        .await;
    assert_eq!(error_code(resp, 400).await, "invalid_query");

    // Delete: not by another key, then by the owner; afterwards the code answers 410.
    let del = |key: &'static str| {
        app.client
            .delete(app.url(&format!("/api/v1/links/{code}")))
            .bearer_auth(key)
            .send()
    };
    assert_eq!(error_code(del(BOB).await.unwrap(), 404).await, "not_found");
    assert_eq!(del(ALICE).await.unwrap().status(), 204);
    assert_eq!(
        error_code(app.get(&format!("/{code}")).await, 410).await,
        "gone"
    );
    assert_eq!(error_code(del(ALICE).await.unwrap(), 410).await, "gone");
    let resp = app.get_auth(ALICE, &format!("/api/v1/links/{code}")).await;
    assert_eq!(error_code(resp, 410).await, "gone");
    let page: Value = app
        .get_auth(ALICE, "/api/v1/links?limit=100")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 4);
    app.stop().await;
}

#[tokio::test]
async fn aliases_are_validated_and_unique() {
    let app = start(|_| {}).await;
    let resp = app
        .create(
            ALICE,
            json!({ "long_url": "https://example.com/a", "alias": "my-Link_1" }),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["code"], "my-Link_1");
    assert_eq!(app.get("/my-Link_1").await.status(), 302);

    let resp = app
        .create(
            BOB,
            json!({ "long_url": "https://example.com/b", "alias": "my-Link_1" }),
        )
        .await;
    assert_eq!(error_code(resp, 409).await, "alias_taken");

    for alias in [
        "ab",
        "has space",
        "api",
        "healthz",
        "metrics",
        "a/b",
        &"x".repeat(65),
    ] {
        let resp = app
            .create(
                ALICE,
                json!({ "long_url": "https://example.com/", "alias": alias }),
            )
            .await;
        assert_eq!(error_code(resp, 400).await, "invalid_alias", "{alias}");
    }
    app.stop().await;
}

#[tokio::test]
async fn invalid_urls_are_rejected() {
    let app = start(|_| {}).await;
    let long = format!("https://example.com/{}", "a".repeat(2100));
    for url in [
        "javascript:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "ftp://example.com/file",
        "file:///etc/passwd",
        "http://10.0.0.1/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
        "http://localhost/",
        "http://foo.localhost/",
        "http://kafka:9092/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://printer.local/",
        "http://[::ffff:0:7f00:1]/",
        "http://[64:ff9b:1::a00:1]/",
        // The shortener itself (PUBLIC_BASE_URL): a redirect chain or loop.
        "https://sho.rt/abc",
        "not a url",
        long.as_str(),
    ] {
        let resp = app.create(ALICE, json!({ "long_url": url })).await;
        assert_eq!(error_code(resp, 400).await, "invalid_url", "{url}");
    }
    // IDN hosts come back normalized.
    let resp = app
        .create(ALICE, json!({ "long_url": "https://bücher.example/" }))
        .await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["long_url"], "https://xn--bcher-kva.example/");
    app.stop().await;
}

#[tokio::test]
async fn private_targets_can_be_allowed() {
    let app = start(|c| c.allow_private_targets = true).await;
    let code = app.create_ok(ALICE, "http://localhost:3000/dev").await;
    let resp = app.get(&format!("/{code}")).await;
    assert_eq!(resp.headers()["location"], "http://localhost:3000/dev");
    app.stop().await;
}

#[tokio::test]
async fn writes_and_management_reads_require_a_valid_key() {
    let app = start(|_| {}).await;
    let body = json!({ "long_url": "https://example.com/" });
    let resp = app
        .client
        .post(app.url("/api/v1/links"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp, 401).await, "unauthorized");
    let resp = app.create("wrong-key", body.clone()).await;
    assert_eq!(error_code(resp, 401).await, "unauthorized");
    let resp = app
        .get_auth(&ALICE[..ALICE.len() - 1], "/api/v1/links")
        .await;
    assert_eq!(error_code(resp, 401).await, "unauthorized");
    let resp = app.get("/api/v1/links").await;
    assert_eq!(error_code(resp, 401).await, "unauthorized");
    let resp = app
        .client
        .delete(app.url("/api/v1/links/abcdefg"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp, 401).await, "unauthorized");
    app.stop().await;
}

#[tokio::test]
async fn hashed_keys_from_api_key_hashes_work() {
    use sha2::{Digest, Sha256};
    let digest = hex::encode(Sha256::digest(b"carol-secret"));
    let app = start(|c| c.api_key_hashes = format!("carol:{digest}")).await;
    app.create_ok("carol-secret", "https://example.com/c").await;
    let page: Value = app
        .get_auth("carol-secret", "/api/v1/links")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn expired_links_answer_410() {
    let app = start(|_| {}).await;
    // Cached while live, then it expires: the cached entry must not keep redirecting.
    let resp = app
        .create(
            ALICE,
            json!({ "long_url": "https://example.com/soon", "expires_in_secs": 1 }),
        )
        .await;
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.unwrap();
    assert!(v["expires_at"].as_str().is_some());
    let code = v["code"].as_str().unwrap().to_string();
    let first = app.get(&format!("/{code}")).await.status().as_u16();
    assert!(first == 302 || first == 410, "{first}");
    let gone = wait_until(Duration::from_secs(15), || async {
        app.get(&format!("/{code}")).await.status() == 410
    })
    .await;
    assert!(gone, "link did not expire");

    // A row that expired long ago (written directly).
    let pool = &app.db.as_ref().unwrap().pool;
    sqlx::query(
        "INSERT INTO links (short_code, long_url, expires_at, owner_key_id) \
         VALUES ('oldlink', 'https://example.com/old', now() - interval '1 day', 'alice')",
    )
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(error_code(app.get("/oldlink").await, 410).await, "gone");

    let resp = app
        .create(
            ALICE,
            json!({ "long_url": "https://example.com/", "expires_at": "2001-01-01T00:00:00Z" }),
        )
        .await;
    assert_eq!(error_code(resp, 400).await, "invalid_request");
    app.stop().await;
}

#[tokio::test]
async fn api_reads_are_rate_limited_per_key_but_redirects_are_not() {
    let app = start(|c| {
        c.read_rate_limit_per_second = 1;
        c.read_rate_limit_burst = 2;
    })
    .await;
    let code = app.create_ok(ALICE, "https://example.com/read-limit").await;
    for _ in 0..2 {
        assert_eq!(app.get_auth(ALICE, "/api/v1/links").await.status(), 200);
    }
    let resp = app.get_auth(ALICE, &format!("/api/v1/links/{code}")).await;
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(error_code(resp, 429).await, "rate_limited");
    // Bob's reads and everybody's redirects are unaffected.
    assert_eq!(app.get_auth(BOB, "/api/v1/links").await.status(), 200);
    for _ in 0..5 {
        assert_eq!(app.get(&format!("/{code}")).await.status(), 302);
    }
    app.stop().await;
}

#[tokio::test]
async fn head_requests_share_the_read_limit() {
    let app = start(|c| {
        c.read_rate_limit_per_second = 1;
        c.read_rate_limit_burst = 2;
    })
    .await;
    let code = app.create_ok(ALICE, "https://example.com/head-limit").await;
    let head = |path: String, key: Option<&str>| {
        let mut req = app.client.head(app.url(&path));
        if let Some(key) = key {
            req = req.header("x-api-key", key);
        }
        req.send()
    };
    for path in ["/api/v1/links".to_string(), format!("/api/v1/links/{code}")] {
        assert_eq!(head(path, Some(ALICE)).await.unwrap().status(), 200);
    }
    // The burst is spent by HEAD alone: the next HEAD, and a GET, are refused.
    let resp = head(format!("/api/v1/links/{code}/stats"), Some(ALICE))
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    assert_eq!(app.get_auth(ALICE, "/api/v1/links").await.status(), 429);
    // Guessing keys with HEAD is limited like with GET.
    let mut statuses = Vec::new();
    for i in 0..4 {
        let key = format!("guess-{i}");
        statuses.push(
            head("/api/v1/links".into(), Some(&key))
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [401, 401, 429, 429]);
    app.stop().await;
}

#[tokio::test]
async fn clients_rotating_addresses_in_one_ipv6_64_share_a_bucket() {
    let app = start(|c| {
        c.read_rate_limit_per_second = 1;
        c.read_rate_limit_burst = 3;
        // The test client stands for the proxy that reports each client's address.
        c.trusted_proxies = url_api::config::parse_proxies("127.0.0.1").unwrap();
    })
    .await;
    let mut statuses = Vec::new();
    for i in 1..=6u32 {
        let resp = app
            .client
            .get(app.url("/api/v1/links"))
            .header("x-api-key", format!("guess-{i}"))
            .header("x-forwarded-for", format!("2001:db8:aa:bb:{i:x}::{i:x}"))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429]);
    // Another /64 has its own bucket.
    let resp = app
        .client
        .get(app.url("/api/v1/links"))
        .header("x-forwarded-for", "2001:db8:aa:bc::1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    app.stop().await;
}

#[tokio::test]
async fn writes_are_rate_limited_per_key() {
    let app = start(|c| {
        c.rate_limit_per_second = 1;
        c.rate_limit_burst = 3;
    })
    .await;
    let body = json!({ "long_url": "https://example.com/" });
    for _ in 0..3 {
        assert_eq!(app.create(ALICE, body.clone()).await.status(), 201);
    }
    let resp = app.create(ALICE, body.clone()).await;
    let retry_after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_eq!(error_code(resp, 429).await, "rate_limited");
    // Another key has its own bucket; reads have a bucket of their own.
    assert_eq!(app.create(BOB, body.clone()).await.status(), 201);
    assert_eq!(app.get_auth(ALICE, "/api/v1/links").await.status(), 200);
    // Callers without a valid key share their IP's bucket and end up limited too.
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(
            app.create(&format!("guess-{i}"), body.clone())
                .await
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses[..3], [401, 401, 401]);
    assert_eq!(statuses[3..], [429, 429]);
    app.stop().await;
}

#[tokio::test]
async fn edits_share_the_write_limit() {
    let app = start(|c| {
        c.rate_limit_per_second = 1;
        c.rate_limit_burst = 2;
    })
    .await;
    let code = app.create_ok(ALICE, "https://example.com/edit-limit").await;
    let edit = |title: &str| {
        app.client
            .patch(app.url(&format!("/api/v1/links/{code}")))
            .bearer_auth(ALICE)
            .json(&json!({ "title": title }))
            .send()
    };
    assert_eq!(edit("one").await.unwrap().status(), 200);
    let resp = edit("two").await.unwrap();
    assert_eq!(error_code(resp, 429).await, "rate_limited");
    app.stop().await;
}

#[tokio::test]
async fn concurrent_creations_get_distinct_codes() {
    let app = start(|_| {}).await;
    let creations = (0..200).map(|i| {
        let app = &app;
        async move {
            app.create_ok(ALICE, &format!("https://example.com/item/{i}"))
                .await
        }
    });
    let codes: HashSet<String> = futures::future::join_all(creations)
        .await
        .into_iter()
        .collect();
    assert_eq!(codes.len(), 200);
    let pool = &app.db.as_ref().unwrap().pool;
    let (n,): (i64,) = sqlx::query_as("SELECT count(DISTINCT short_code) FROM links")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(n, 200);
    app.stop().await;
}

#[tokio::test]
async fn bad_bodies_get_json_errors_not_500() {
    let app = start(|_| {}).await;
    let post = || app.client.post(app.url("/api/v1/links")).bearer_auth(ALICE);

    let resp = post()
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp, 400).await, "invalid_json");
    let resp = post()
        .header("content-type", "application/json")
        .body(r#"{"long_url": 5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp, 400).await, "invalid_json");
    let resp = post()
        .header("content-type", "application/json")
        .body(r#"{"long_url": "https://example.com", "surprise": true}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp, 400).await, "invalid_json");
    let resp = post()
        .body(r#"{"long_url": "https://example.com"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp, 415).await, "unsupported_media_type");
    let huge = json!({ "long_url": format!("https://example.com/{}", "a".repeat(20_000)) });
    let resp = post().json(&huge).send().await.unwrap();
    assert_eq!(error_code(resp, 413).await, "payload_too_large");

    let resp = app.get("/api/v1/nothing/here").await;
    assert_eq!(error_code(resp, 404).await, "not_found");
    let resp = app
        .client
        .put(app.url("/api/v1/links"))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp, 405).await, "method_not_allowed");
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let app = start(|_| {}).await;
    let code = app.create_ok(ALICE, "https://example.com/m").await;
    for _ in 0..3 {
        assert_eq!(app.get(&format!("/{code}")).await.status(), 302);
    }
    app.get("/zzzzzzz").await;
    let text = app.metrics().await;
    // One histogram family: its `_count` series are the request counts.
    let count = |labels: &str| format!("http_request_duration_seconds_count{{{labels}}}");
    for (labels, n) in [
        (r#"method="GET",route="/{code}",status="302""#, 3),
        (r#"method="POST",route="/api/v1/links",status="201""#, 1),
        (r#"method="GET",route="/{code}",status="404""#, 1),
    ] {
        assert!(
            text.contains(&format!("{} {n}\n", count(labels))),
            "{labels}: {text}"
        );
    }
    assert!(text.contains(
        r#"http_request_duration_seconds_sum{method="GET",route="/{code}",status="302"}"#
    ));
    assert!(text.contains("redirect_cache_hits_total 2"), "{text}");
    assert!(!text.contains(&code), "raw paths must not become labels");
    app.stop().await;
}

#[tokio::test]
async fn health_readiness_and_openapi() {
    let app = start(|_| {}).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.admin_get("/healthz").await.status(), 200);
    assert_eq!(app.admin_get("/readyz").await.status(), 200);
    // Readiness and metrics are not for the public.
    for path in ["/readyz", "/metrics"] {
        assert_eq!(
            error_code(app.get(path).await, 404).await,
            "not_found",
            "{path}"
        );
    }
    let body: Value = app.get("/healthz").await.json().await.unwrap();
    assert_eq!(body, json!({ "status": "ok" }));
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for p in ["/api/v1/links", "/api/v1/links/{code}", "/{code}"] {
        assert!(paths.contains_key(p), "{p} missing from {paths:?}");
    }
    assert!(paths["/api/v1/links"]["post"].is_object());
    assert!(paths["/api/v1/links/{code}"]["delete"].is_object());
    assert!(paths["/api/v1/links/{code}"]["patch"].is_object());
    assert!(doc["components"]["schemas"]["EditLinkRequest"]["properties"]["tags"].is_object());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    app.stop().await;
}

#[tokio::test]
async fn database_down_means_not_ready_and_503_not_500() {
    // Nothing listens on a port we just bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut db = DatabaseArgs::with_url(format!("postgres://postgres@127.0.0.1:{port}/none"));
    db.database_acquire_timeout_ms = 500;
    let app = start_with(base_config(db)).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let resp = app.admin_get("/readyz").await;
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "not_ready");
    // The reason names no host, port or driver error.
    assert_eq!(body["reason"], "database unreachable", "{body}");
    let resp = app
        .create(ALICE, json!({ "long_url": "https://example.com/" }))
        .await;
    assert_eq!(error_code(resp, 503).await, "database_unavailable");
    assert_eq!(
        error_code(app.get("/abcdefg").await, 503).await,
        "database_unavailable"
    );
    app.stop().await;
}
