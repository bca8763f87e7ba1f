//! Link management beyond create/delete: edits (and their reach across replicas),
//! descriptive fields, list search and filters, query forwarding and UTM parameters.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// An edit or delete made through one replica stops the other replica's cached copy
/// within about a second, far below its one-hour cache TTL.
#[tokio::test]
async fn edits_and_deletes_reach_every_replica_within_a_second() {
    let a = start(|c| c.cache_ttl_secs = 3600).await;
    let db = a.db.as_ref().unwrap();
    let mut config_b = base_config(db.args());
    config_b.cache_ttl_secs = 3600;
    let b = start_with(config_b).await;

    let code = a.create_ok(ALICE, "https://example.com/v1").await;
    // Both replicas cache the first destination.
    for app in [&a, &b] {
        for _ in 0..2 {
            assert_eq!(
                app.location(&format!("/{code}")).await.as_deref(),
                Ok("https://example.com/v1")
            );
        }
    }
    // B also caches "no such code" for an alias about to be created on A.
    assert_eq!(b.location("/soon-made").await, Err(404));

    let resp = a
        .patch(
            ALICE,
            &code,
            json!({ "long_url": "https://example.com/v2" }),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let edited = Instant::now();
    let seen = wait_until(Duration::from_secs(3), || async {
        b.location(&format!("/{code}")).await.as_deref() == Ok("https://example.com/v2")
    })
    .await;
    assert!(seen, "replica B still serves the old destination");
    assert!(
        edited.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        edited.elapsed()
    );

    a.create_json(
        ALICE,
        json!({ "long_url": "https://example.com/new", "alias": "soon-made" }),
    )
    .await;
    assert!(
        wait_until(Duration::from_secs(3), || async {
            b.location("/soon-made").await.is_ok()
        })
        .await,
        "replica B still answers 404 for a created alias"
    );

    let resp = a
        .client
        .delete(a.url(&format!("/api/v1/links/{code}")))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let deleted = Instant::now();
    assert!(
        wait_until(Duration::from_secs(3), || async {
            b.location(&format!("/{code}")).await == Err(410)
        })
        .await,
        "replica B still redirects a deleted link"
    );
    assert!(deleted.elapsed() < Duration::from_millis(1500));
    b.stop().await;
    a.stop().await;
}

#[tokio::test]
async fn patch_changes_only_the_given_fields_with_create_validation() {
    let app = start(|_| {}).await;
    let created = app
        .create_json(
            ALICE,
            json!({
                "long_url": "https://example.com/a",
                "alias": "editable",
                "title": "  First title ",
                "description": "about it",
                "tags": ["Launch", "q3", "launch"],
                "expires_in_secs": 3600,
            }),
        )
        .await;
    assert_eq!(created["title"], "First title");
    assert_eq!(created["tags"], json!(["launch", "q3"]));
    assert_eq!(created["forward_query"], true);
    assert_eq!(created["updated_at"], Value::Null);
    assert!(created["expires_at"].is_string());

    // Title removed, tags replaced, expiry removed; the rest stays.
    let resp = app
        .patch(
            ALICE,
            "editable",
            json!({ "title": null, "tags": ["other"], "expires_at": null }),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["title"], Value::Null);
    assert_eq!(v["description"], "about it");
    assert_eq!(v["tags"], json!(["other"]));
    assert_eq!(v["expires_at"], Value::Null);
    assert_eq!(v["long_url"], "https://example.com/a");
    assert!(v["updated_at"].is_string());
    let details: Value = app
        .get_auth(ALICE, "/api/v1/links/editable")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(details["tags"], json!(["other"]));

    // Every field is checked as on create.
    for (body, status, code) in [
        (
            json!({ "long_url": "javascript:alert(1)" }),
            400,
            "invalid_url",
        ),
        (
            json!({ "long_url": "http://10.0.0.1/" }),
            400,
            "invalid_url",
        ),
        (json!({ "title": "x".repeat(201) }), 400, "invalid_title"),
        (
            json!({ "description": "\u{7}" }),
            400,
            "invalid_description",
        ),
        (json!({ "tags": ["no spaces"] }), 400, "invalid_tags"),
        (json!({ "tags": "notalist" }), 400, "invalid_json"),
        (json!({ "expires_in_secs": 0 }), 400, "invalid_request"),
        (
            json!({ "expires_at": "2001-01-01T00:00:00Z" }),
            400,
            "invalid_request",
        ),
        (
            json!({ "expires_at": null, "expires_in_secs": 60 }),
            400,
            "invalid_request",
        ),
        (json!({ "utm": { "source": "" } }), 400, "invalid_utm"),
        (json!({ "alias": "renamed" }), 400, "invalid_json"),
        (json!({}), 400, "invalid_request"),
    ] {
        let resp = app.patch(ALICE, "editable", body.clone()).await;
        assert_eq!(error_code(resp, status).await, code, "{body}");
    }
    // Someone else's link is not found; a deleted one is gone.
    let resp = app.patch(BOB, "editable", json!({ "title": "mine" })).await;
    assert_eq!(error_code(resp, 404).await, "not_found");
    let resp = app
        .patch(ALICE, "nosuchcode", json!({ "title": "t" }))
        .await;
    assert_eq!(error_code(resp, 404).await, "not_found");
    app.client
        .delete(app.url("/api/v1/links/editable"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    let resp = app.patch(ALICE, "editable", json!({ "title": "t" })).await;
    assert_eq!(error_code(resp, 410).await, "gone");
    app.stop().await;
}

#[tokio::test]
async fn list_searches_filters_by_tag_and_date_and_orders_by_clicks() {
    let app = start(|_| {}).await;
    let pool = &app.db.as_ref().unwrap().pool;
    let mk = |alias: &str, url: &str, title: &str, tags: Value| json!({ "long_url": url, "alias": alias, "title": title, "tags": tags });
    app.create_json(
        ALICE,
        mk(
            "spring-sale",
            "https://shop.example/sale",
            "Spring Sale",
            json!(["promo", "2026"]),
        ),
    )
    .await;
    app.create_json(
        ALICE,
        mk(
            "docs-home",
            "https://docs.example/",
            "Documentation",
            json!(["docs"]),
        ),
    )
    .await;
    app.create_json(
        ALICE,
        mk(
            "blog-100",
            "https://blog.example/100%_off",
            "Blog",
            json!(["promo"]),
        ),
    )
    .await;
    app.create_json(
        BOB,
        mk(
            "bob-sale",
            "https://shop.example/bob",
            "Sale",
            json!(["promo"]),
        ),
    )
    .await;

    let codes = |v: Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["code"].as_str().unwrap().to_string())
            .collect()
    };
    let list = |query: &'static str| {
        let app = &app;
        async move {
            let resp = app.get_auth(ALICE, &format!("/api/v1/links?{query}")).await;
            assert_eq!(resp.status(), 200, "{query}");
            resp.json::<Value>().await.unwrap()
        }
    };
    // q matches code, destination or title, case-insensitively; wildcards are literal.
    assert_eq!(codes(list("q=SALE").await), ["spring-sale"]);
    assert_eq!(codes(list("q=docs.example").await), ["docs-home"]);
    assert_eq!(codes(list("q=documentation").await), ["docs-home"]);
    assert_eq!(codes(list("q=100%25_").await), ["blog-100"]);
    assert_eq!(codes(list("q=%25").await), ["blog-100"]);
    assert_eq!(codes(list("q=_").await), ["blog-100"]);
    // Tags: all given ones must match.
    assert_eq!(codes(list("tags=promo").await), ["blog-100", "spring-sale"]);
    assert_eq!(codes(list("tags=PROMO,2026").await), ["spring-sale"]);
    assert!(codes(list("tags=nothing").await).is_empty());
    // Date range.
    let created: Vec<(String, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT short_code, created_at FROM links ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
    let docs_at = created[1].1;
    let after = format!(
        "/api/v1/links?created_after={}",
        urlencode(&docs_at.to_rfc3339())
    );
    let v: Value = app.get_auth(ALICE, &after).await.json().await.unwrap();
    assert_eq!(codes(v), ["blog-100", "docs-home"]);
    let before = format!(
        "/api/v1/links?created_before={}",
        urlencode(&docs_at.to_rfc3339())
    );
    let v: Value = app.get_auth(ALICE, &before).await.json().await.unwrap();
    assert_eq!(codes(v), ["spring-sale"]);

    // Order by counted clicks: docs-home 3, spring-sale 1, blog-100 none.
    for (code, n) in [("docs-home", 3), ("spring-sale", 1), ("bob-sale", 9)] {
        for _ in 0..n {
            sqlx::query(
                "INSERT INTO clicks (event_id, short_code, occurred_at) \
                 VALUES (gen_random_uuid(), $1, now())",
            )
            .bind(code)
            .execute(pool)
            .await
            .unwrap();
        }
    }
    // The counts the consumer would have added to the rollups with these clicks.
    sqlx::query("SELECT rebuild_click_rollups()")
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(
        codes(list("order=clicks").await),
        ["docs-home", "spring-sale", "blog-100"]
    );
    let page1 = list("order=clicks&limit=2").await;
    let cursor = page1["next_cursor"].as_str().unwrap().to_string();
    assert_eq!(codes(page1), ["docs-home", "spring-sale"]);
    let page2: Value = app
        .get_auth(
            ALICE,
            &format!("/api/v1/links?order=clicks&limit=2&cursor={cursor}"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page2["next_cursor"], Value::Null);
    assert_eq!(codes(page2), ["blog-100"]);
    // A cursor of the other order is refused.
    let resp = app
        .get_auth(ALICE, &format!("/api/v1/links?cursor={cursor}"))
        .await;
    assert_eq!(error_code(resp, 400).await, "invalid_query");

    for bad in [
        "order=popular",
        "tags=a%20b",
        "created_after=yesterday",
        "created_after=2026-01-02T00:00:00Z&created_before=2026-01-01T00:00:00Z",
    ] {
        let resp = app.get_auth(ALICE, &format!("/api/v1/links?{bad}")).await;
        assert_eq!(error_code(resp, 400).await, "invalid_query", "{bad}");
    }
    let long_q = format!("/api/v1/links?q={}", "x".repeat(201));
    let resp = app.get_auth(ALICE, &long_q).await;
    assert_eq!(error_code(resp, 400).await, "invalid_query");
    app.stop().await;
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn query_is_forwarded_unless_turned_off_and_utm_is_set_on_create() {
    let app = start(|_| {}).await;
    app.create_json(
        ALICE,
        json!({ "long_url": "https://example.com/p?x=1#top", "alias": "fwd" }),
    )
    .await;
    app.create_json(
        ALICE,
        json!({ "long_url": "https://example.com/q", "alias": "nofwd", "forward_query": false }),
    )
    .await;
    assert_eq!(
        app.location("/fwd?ref=mail&id=%20").await.as_deref(),
        Ok("https://example.com/p?x=1&ref=mail&id=%20#top")
    );
    assert_eq!(
        app.location("/fwd").await.as_deref(),
        Ok("https://example.com/p?x=1#top")
    );
    assert_eq!(
        app.location("/nofwd?ref=mail").await.as_deref(),
        Ok("https://example.com/q")
    );
    // Turned on by an edit, on the cached link too.
    let resp = app
        .patch(ALICE, "nofwd", json!({ "forward_query": true }))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        app.location("/nofwd?ref=mail").await.as_deref(),
        Ok("https://example.com/q?ref=mail")
    );

    let v = app
        .create_json(
            ALICE,
            json!({
                "long_url": "https://example.com/land?utm_source=old&k=v",
                "utm": { "source": "newsletter", "medium": "email", "campaign": "spring 26" },
            }),
        )
        .await;
    assert_eq!(
        v["long_url"],
        "https://example.com/land?k=v&utm_source=newsletter&utm_medium=email&utm_campaign=spring+26"
    );
    for (utm, code) in [
        (json!({ "source": "" }), "invalid_utm"),
        (json!({ "term": "x".repeat(201) }), "invalid_utm"),
        (json!({ "id": "x" }), "invalid_json"),
    ] {
        let resp = app
            .create(
                ALICE,
                json!({ "long_url": "https://example.com/", "utm": utm }),
            )
            .await;
        assert_eq!(error_code(resp, 400).await, code);
    }
    let resp = app
        .create(
            ALICE,
            json!({ "long_url": "https://example.com/", "forward_query": "yes" }),
        )
        .await;
    assert_eq!(error_code(resp, 400).await, "invalid_json");
    app.stop().await;
}

const BROWSER: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15";

async fn visit(app: &TestApp, path: &str, ua: &str) -> (u16, Option<String>) {
    let resp = app
        .client
        .get(app.url(path))
        .header("user-agent", ua)
        .send()
        .await
        .unwrap();
    let loc = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (resp.status().as_u16(), loc)
}

/// After max_visits human visits a link answers 410, or sends visitors to expired_url;
/// bots do not use up the limit; visits counted by the consumer (link_visits) count too.
#[tokio::test]
async fn max_visits_counts_human_visits_and_expired_url_takes_over() {
    let app = start(|c| c.cache_ttl_secs = 3600).await;
    let pool = app.db.as_ref().unwrap().pool.clone();
    let v = app
        .create_json(
            ALICE,
            json!({ "long_url": "https://example.com/limited", "alias": "three-visits", "max_visits": 3 }),
        )
        .await;
    assert_eq!(v["max_visits"], 3);
    // Bots (and HEAD) pass without using up the limit.
    for _ in 0..5 {
        assert_eq!(visit(&app, "/three-visits", "curl/8.5.0").await.0, 302);
    }
    for _ in 0..3 {
        assert_eq!(visit(&app, "/three-visits", BROWSER).await.0, 302);
    }
    assert_eq!(
        error_code(
            app.client
                .get(app.url("/three-visits"))
                .header("user-agent", BROWSER)
                .send()
                .await
                .unwrap(),
            410
        )
        .await,
        "gone"
    );
    assert_eq!(visit(&app, "/three-visits", "curl/8.5.0").await.0, 410);

    // The consumer stores those 3 human visits (this replica's tally already holds them, so
    // they are not counted twice). Raising the limit opens it again; an expired_url takes
    // visitors once it is used up.
    sqlx::query("INSERT INTO link_visits (short_code, human_visits) VALUES ('three-visits', 3)")
        .execute(&pool)
        .await
        .unwrap();
    let resp = app
        .patch(
            ALICE,
            "three-visits",
            json!({ "max_visits": 4, "expired_url": "https://example.com/sold-out" }),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(visit(&app, "/three-visits", BROWSER).await.0, 302);
    assert_eq!(
        visit(&app, "/three-visits", BROWSER).await,
        (302, Some("https://example.com/sold-out".into()))
    );

    // Visits stored by the consumer count: the link is read again within LIMITED_TTL.
    app.create_json(
        ALICE,
        json!({ "long_url": "https://example.com/b", "alias": "counted", "max_visits": 10 }),
    )
    .await;
    assert_eq!(visit(&app, "/counted", BROWSER).await.0, 302);
    sqlx::query("INSERT INTO link_visits (short_code, human_visits) VALUES ('counted', 10)")
        .execute(&pool)
        .await
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || async {
            visit(&app, "/counted", "curl/8.5.0").await.0 == 410
        })
        .await,
        "stored visits not seen"
    );
    // A limit removed by an edit is gone at once.
    let resp = app
        .patch(ALICE, "counted", json!({ "max_visits": null }))
        .await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["max_visits"], Value::Null);
    assert_eq!(visit(&app, "/counted", BROWSER).await.0, 302);

    // expired_url also serves links past their expiry.
    app.create_json(
        ALICE,
        json!({ "long_url": "https://example.com/c", "alias": "short-lived", "expires_in_secs": 1,
                "expired_url": "https://example.com/too-late" }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        visit(&app, "/short-lived", BROWSER).await,
        (302, Some("https://example.com/too-late".into()))
    );

    for (body, code) in [
        (json!({ "max_visits": 0 }), "invalid_max_visits"),
        (
            json!({ "max_visits": 1_000_000_001i64 }),
            "invalid_max_visits",
        ),
        (json!({ "max_visits": "ten" }), "invalid_json"),
        (
            json!({ "expired_url": "javascript:alert(1)" }),
            "invalid_expired_url",
        ),
        (
            json!({ "expired_url": "http://127.0.0.1/" }),
            "invalid_expired_url",
        ),
    ] {
        let mut create = body.clone();
        create["long_url"] = "https://example.com/".into();
        let resp = app.create(ALICE, create).await;
        assert_eq!(error_code(resp, 400).await, code, "{body}");
        let resp = app.patch(ALICE, "counted", body.clone()).await;
        assert_eq!(error_code(resp, 400).await, code, "{body}");
    }
    app.stop().await;
}

/// The text a PNG QR code holds, read back by an independent decoder.
fn decode_png_qr(bytes: &[u8]) -> String {
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let (w, h) = (reader.info().width as usize, reader.info().height as usize);
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    reader.next_frame(&mut buf).unwrap();
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().unwrap().1
}

#[tokio::test]
async fn qr_codes_encode_the_short_url_and_public_ones_need_the_owners_consent() {
    let app = start(|_| {}).await;
    app.create_json(
        ALICE,
        json!({ "long_url": "https://example.com/poster", "alias": "poster" }),
    )
    .await;
    let png = app
        .get_auth(ALICE, "/api/v1/links/poster/qr?format=png&size=400")
        .await;
    assert_eq!(png.status(), 200);
    assert_eq!(png.headers()["content-type"], "image/png");
    assert_eq!(png.headers()["x-content-type-options"], "nosniff");
    let bytes = png.bytes().await.unwrap();
    assert_eq!(decode_png_qr(&bytes), "https://sho.rt/poster");
    let svg = app.get_auth(ALICE, "/api/v1/links/poster/qr").await;
    assert_eq!(svg.status(), 200);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'none'"));
    assert!(svg.text().await.unwrap().contains("<svg"));

    // Not someone else's, and not public until the owner says so.
    let resp = app.get_auth(BOB, "/api/v1/links/poster/qr").await;
    assert_eq!(error_code(resp, 404).await, "not_found");
    assert_eq!(
        error_code(app.get("/poster/qr").await, 404).await,
        "not_found"
    );
    let resp = app
        .patch(ALICE, "poster", json!({ "public_qr": true }))
        .await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["public_qr"], true);
    let public = app.get("/poster/qr?format=png&size=128").await;
    assert_eq!(public.status(), 200);
    assert_eq!(
        decode_png_qr(&public.bytes().await.unwrap()),
        "https://sho.rt/poster"
    );
    // The redirect itself is unchanged.
    assert_eq!(
        app.location("/poster").await.as_deref(),
        Ok("https://example.com/poster")
    );

    for bad in ["format=gif", "size=10", "size=5000", "size=big"] {
        let resp = app
            .get_auth(ALICE, &format!("/api/v1/links/poster/qr?{bad}"))
            .await;
        assert_eq!(error_code(resp, 400).await, "invalid_query", "{bad}");
        let resp = app.get(&format!("/poster/qr?{bad}")).await;
        assert_eq!(error_code(resp, 400).await, "invalid_query", "{bad}");
    }
    let resp = app
        .create(
            ALICE,
            json!({ "long_url": "https://example.com/", "public_qr": "yes" }),
        )
        .await;
    assert_eq!(error_code(resp, 400).await, "invalid_json");
    app.client
        .delete(app.url("/api/v1/links/poster"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(app.get("/poster/qr").await, 410).await, "gone");
    app.stop().await;
}

async fn post_password(
    app: &TestApp,
    path: &str,
    password: &str,
    origin: Option<&str>,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url(path))
        .header("user-agent", BROWSER)
        .form(&[("password", password)]);
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn password_protected_links_ask_check_and_limit_attempts() {
    let app = start(|_| {}).await;
    let v = app
        .create_json(
            ALICE,
            json!({ "long_url": "https://example.com/secret", "alias": "locked", "password": "open sesame" }),
        )
        .await;
    assert_eq!(v["password_protected"], true);
    assert!(v.get("password").is_none() && !v.to_string().contains("sesame"));
    let stored: (String,) =
        sqlx::query_as("SELECT password_hash FROM links WHERE short_code = 'locked'")
            .fetch_one(&app.db.as_ref().unwrap().pool)
            .await
            .unwrap();
    assert!(stored.0.starts_with("$argon2id$"), "stored hashed");

    // The redirect answers the form, with a CSP that lets it post only to itself.
    let form = app.get("/locked?ref=qr").await;
    assert_eq!(form.status(), 200);
    assert_eq!(form.headers()["content-type"], "text/html; charset=utf-8");
    let csp = form.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("form-action 'self'"),
        "{csp}"
    );
    assert_eq!(form.headers()["x-frame-options"], "DENY");
    assert_eq!(form.headers()["cache-control"], "no-store");
    let html = form.text().await.unwrap();
    assert!(html.contains(r#"action="/locked?ref=qr""#), "{html}");
    assert!(
        !html.contains("example.com/secret"),
        "the target stays hidden"
    );

    // Wrong, then right (from this site); the query is still forwarded.
    let wrong = post_password(&app, "/locked?ref=qr", "guess", None).await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("Wrong password"));
    let right = post_password(&app, "/locked?ref=qr", "open sesame", Some(&app.base)).await;
    assert_eq!(right.status(), 302);
    assert_eq!(
        right.headers()["location"],
        "https://example.com/secret?ref=qr"
    );
    // Another site's form may not post here.
    let cross = post_password(&app, "/locked", "open sesame", Some("https://evil.example")).await;
    assert_eq!(error_code(cross, 403).await, "cross_site_form");

    // 5 attempts a minute per link and client network, right or wrong.
    let mut limited = None;
    for _ in 0..6 {
        let resp = post_password(&app, "/locked", "guess", None).await;
        if resp.status() == 429 {
            limited = Some(resp);
            break;
        }
        assert_eq!(resp.status(), 401);
    }
    let limited = limited.expect("attempts limited");
    assert!(limited.headers().contains_key("retry-after"));
    assert!(limited.text().await.unwrap().contains("Too many attempts"));
    // Even the right password waits now; other links are not affected.
    assert_eq!(
        post_password(&app, "/locked", "open sesame", None)
            .await
            .status(),
        429
    );

    // Unprotected links take no posts; the password can be changed and removed.
    app.create_json(
        ALICE,
        json!({ "long_url": "https://example.com/open", "alias": "open-link" }),
    )
    .await;
    let resp = post_password(&app, "/open-link", "x", None).await;
    assert_eq!(error_code(resp, 405).await, "method_not_allowed");
    let resp = app
        .patch(ALICE, "locked", json!({ "password": null }))
        .await;
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["password_protected"], false);
    assert_eq!(
        app.location("/locked").await.as_deref(),
        Ok("https://example.com/secret")
    );
    let resp = app
        .patch(ALICE, "open-link", json!({ "password": "new pass" }))
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(app.get("/open-link").await.status(), 200);

    for bad in [
        json!({ "password": "abc" }),
        json!({ "password": "p".repeat(129) }),
    ] {
        let resp = app.patch(ALICE, "open-link", bad.clone()).await;
        assert_eq!(error_code(resp, 400).await, "invalid_password");
        let mut create = bad.clone();
        create["long_url"] = "https://example.com/".into();
        let resp = app.create(ALICE, create).await;
        assert_eq!(error_code(resp, 400).await, "invalid_password");
    }
    app.stop().await;
}

#[tokio::test]
async fn bulk_create_import_and_export_report_each_link() {
    let app = start(|_| {}).await;
    // 300 links (about 25 KiB, over the 16 KiB limit of single requests), two of them bad.
    let mut links: Vec<Value> = (0..300)
        .map(|i| json!({ "long_url": format!("https://example.com/bulk/{i}"), "tags": ["bulk"] }))
        .collect();
    links[7] = json!({ "long_url": "javascript:alert(1)" });
    links[8] = json!({ "long_url": "https://example.com/a", "alias": "bulk-alias" });
    links[9] = json!({ "long_url": "https://example.com/b", "alias": "bulk-alias" });
    let resp = app
        .client
        .post(app.url("/api/v1/links/bulk"))
        .bearer_auth(ALICE)
        .json(&json!({ "links": links }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (v["created"].as_u64(), v["failed"].as_u64()),
        (Some(298), Some(2))
    );
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 300);
    assert_eq!(results[7]["status"], 400);
    assert_eq!(results[7]["error"]["code"], "invalid_url");
    assert_eq!(results[8]["link"]["code"], "bulk-alias");
    assert_eq!(results[9]["status"], 409);
    assert_eq!(results[9]["error"]["code"], "alias_taken");
    let code = results[0]["link"]["code"].as_str().unwrap().to_string();
    assert_eq!(
        app.location(&format!("/{code}")).await.as_deref(),
        Ok("https://example.com/bulk/0")
    );

    for (body, why) in [
        (json!({ "links": [] }), "no links"),
        (
            json!({ "links": vec![json!({ "long_url": "https://e.com/" }); 1001] }),
            "1001 links",
        ),
    ] {
        let resp = app
            .client
            .post(app.url("/api/v1/links/bulk"))
            .bearer_auth(ALICE)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(resp, 400).await, "invalid_request", "{why}");
    }

    // CSV import: quoted fields, tags separated by |, a bad row reported by position.
    let csv = "destination,alias,title,tags,expires_at\n\
               https://example.com/c1,csv-one,\"Hello, world\",news|launch,\n\
               ftp://example.com/c2,,,,\n\
               https://example.com/c3,,,,2999-01-01T00:00:00Z\n\
               https://example.com/c4,,,,tomorrow\n";
    let resp = app
        .client
        .post(app.url("/api/v1/links/import"))
        .bearer_auth(ALICE)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (v["created"].as_u64(), v["failed"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(v["results"][0]["link"]["title"], "Hello, world");
    assert_eq!(v["results"][0]["link"]["tags"], json!(["news", "launch"]));
    assert_eq!(v["results"][1]["error"]["code"], "invalid_url");
    // Ten years at most, as on create.
    assert_eq!(v["results"][2]["error"]["code"], "invalid_request");
    assert_eq!(v["results"][3]["error"]["code"], "invalid_request");
    for (ct, body, status, code) in [
        (
            "application/json",
            "long_url\nhttps://e.com/\n",
            415,
            "unsupported_media_type",
        ),
        ("text/csv", "alias\nx\n", 400, "invalid_request"),
        ("text/csv", "long_url\n", 400, "invalid_request"),
    ] {
        let resp = app
            .client
            .post(app.url("/api/v1/links/import"))
            .bearer_auth(ALICE)
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(resp, status).await, code, "{body}");
    }

    // Export: every live link of the caller, JSON and CSV.
    let all: Value = app
        .get_auth(ALICE, "/api/v1/links/export")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 299);
    let resp = app.get_auth(ALICE, "/api/v1/links/export?format=csv").await;
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    let text = resp.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "code",
            "short_url",
            "long_url",
            "title",
            "description",
            "tags",
            "created_at",
            "expires_at",
            "max_visits",
            "forward_query"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 299);
    let one = rows.iter().find(|r| &r[0] == "csv-one").unwrap();
    assert_eq!((&one[3], &one[5]), ("Hello, world", "news|launch"));
    let resp = app.get_auth(BOB, "/api/v1/links/export").await;
    assert_eq!(resp.json::<Value>().await.unwrap(), json!([]));
    let resp = app.get_auth(ALICE, "/api/v1/links/export?format=xml").await;
    assert_eq!(error_code(resp, 400).await, "invalid_query");
    app.stop().await;
}

/// Unknown, deleted and impossible codes are counted per day for the deployment's domain,
/// without keeping the codes: 60 random codes add counts, not rows.
#[tokio::test]
async fn orphan_visits_are_counted_without_storing_codes() {
    let app = start(|_| {}).await;
    let pool = app.db.as_ref().unwrap().pool.clone();
    let code = app.create_ok(ALICE, "https://example.com/soon-gone").await;
    app.client
        .delete(app.url(&format!("/api/v1/links/{code}")))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    for i in 0..60 {
        assert_eq!(app.get(&format!("/random-{i}-x")).await.status(), 404);
    }
    assert_eq!(app.get(&format!("/{code}")).await.status(), 410);
    assert_eq!(app.get("/not.a.code").await.status(), 404);
    // A real redirect is not an orphan.
    let live = app.create_ok(ALICE, "https://example.com/live").await;
    assert_eq!(app.get(&format!("/{live}")).await.status(), 302);

    let fetch = || async {
        app.get_auth(BOB, "/api/v1/orphan-visits?days=1")
            .await
            .json::<Value>()
            .await
            .unwrap()
    };
    let counted = wait_until(Duration::from_secs(25), || async {
        fetch().await["days"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
    })
    .await;
    let seen = fetch().await;
    assert!(counted, "{seen}");
    assert_eq!(seen["domain"], "sho.rt");
    let today = &seen["days"][0];
    assert_eq!(
        (
            today["unknown_code"].as_i64(),
            today["gone"].as_i64(),
            today["invalid_code"].as_i64()
        ),
        (Some(60), Some(1), Some(1)),
        "{seen}"
    );
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM orphan_visits")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 3, "one row per kind and day, no code stored");
    let resp = app.get_auth(BOB, "/api/v1/orphan-visits?days=0").await;
    assert_eq!(error_code(resp, 400).await, "invalid_query");
    let resp = app.get("/api/v1/orphan-visits").await;
    assert_eq!(error_code(resp, 401).await, "unauthorized");
    app.stop().await;
}
