//! The dashboard over HTTP (no browser): sessions, CSRF, security headers, escaping, and
//! the plain-words error pages. The browser-driven journey is crates/e2e/tests/dashboard.rs.

mod common;

use common::{start, TestApp, ALICE, BOB};
use reqwest::header::{HeaderMap, CONTENT_SECURITY_POLICY, LOCATION, SET_COOKIE};
use reqwest::{Response, StatusCode};

const SESSION: &str = "shortener_session";

/// A browser's worth of state: the cookies it was given.
struct Browser<'a> {
    app: &'a TestApp,
    cookies: Vec<(String, String)>,
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        Self {
            app,
            cookies: Vec::new(),
        }
    }

    fn keep(&mut self, headers: &HeaderMap) {
        for v in headers.get_all(SET_COOKIE) {
            let v = v.to_str().unwrap();
            let (pair, _) = v.split_once(';').unwrap_or((v, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != name);
            if !value.is_empty() {
                self.cookies.push((name.into(), value.into()));
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn get(&mut self, path: &str) -> Response {
        let resp = self
            .app
            .client
            .get(self.app.url(path))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(resp.headers());
        resp
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Response {
        let resp = self
            .app
            .client
            .post(self.app.url(path))
            .header("cookie", self.cookie_header())
            .header("sec-fetch-site", "same-origin")
            .form(form)
            .send()
            .await
            .unwrap();
        self.keep(resp.headers());
        resp
    }

    /// Loads `path` and returns its form's CSRF token.
    async fn csrf(&mut self, path: &str) -> String {
        let html = self.get(path).await.text().await.unwrap();
        csrf_in(&html)
    }

    async fn sign_in(&mut self, key: &str) -> Response {
        let token = self.csrf("/ui/login").await;
        self.post("/ui/login", &[("csrf", &token), ("api_key", key)])
            .await
    }
}

fn csrf_in(html: &str) -> String {
    let start = html
        .find("name=\"csrf\" value=\"")
        .expect("the page has a CSRF field")
        + "name=\"csrf\" value=\"".len();
    html[start..start + 64].to_string()
}

fn location(resp: &Response) -> &str {
    resp.headers()[LOCATION].to_str().unwrap()
}

async fn app() -> TestApp {
    start(|c| {
        // Nothing listens there: analytics is down, and the pages must still work.
        c.analytics_rpc_url = "http://127.0.0.1:1".into();
        c.public_base_url = "http://sho.rt".into();
        c.breaker_failure_threshold = 1;
    })
    .await
}

#[tokio::test]
async fn signing_in_exchanges_the_key_for_a_strict_http_only_session() {
    let app = app().await;
    let mut b = Browser::new(&app);

    let resp = b.get("/ui/links").await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&resp), "/ui/login");

    let login = b.get("/ui/login").await;
    assert_eq!(login.status(), 200);
    let csp = login.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(login.headers()["x-frame-options"], "DENY");

    let wrong = b.sign_in("not-a-key").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong
        .text()
        .await
        .unwrap()
        .contains("That API key is not valid"));

    let ok = b.sign_in(ALICE).await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&ok), "/ui/links");
    let set = ok
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with(SESSION))
        .expect("a session cookie");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(set.contains("Max-Age=43200"), "{set}");
    assert!(
        !set.contains(ALICE),
        "the key never goes to the browser: {set}"
    );
    assert!(
        !set.contains("Secure"),
        "plain http has no Secure cookies: {set}"
    );

    let page = b.get("/ui/links").await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Shorten a link") && html.contains(">alice<"),
        "{html}"
    );

    // The session row keeps digests only.
    let db = app.db.as_ref().unwrap();
    let stored: Vec<(Vec<u8>, Vec<u8>)> =
        sqlx::query_as("SELECT id_digest, key_digest FROM ui_sessions")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(stored.len(), 1);
    let id = &b.cookies.iter().find(|(n, _)| n == SESSION).unwrap().1;
    assert_ne!(stored[0].0, id.as_bytes());

    // Expired sessions send the user back to sign in, saying why.
    sqlx::query("UPDATE ui_sessions SET expires_at = now() - interval '1 second'")
        .execute(&db.pool)
        .await
        .unwrap();
    let expired = b.get("/ui/links").await;
    assert_eq!(location(&expired), "/ui/login?expired=1");
    let again = b.get("/ui/login?expired=1").await.text().await.unwrap();
    assert!(again.contains("Your session expired"), "{again}");
    app.stop().await;
}

#[tokio::test]
async fn secure_cookies_over_https() {
    let app = start(|c| c.public_base_url = "https://sho.rt".into()).await;
    let mut b = Browser::new(&app);
    let ok = b.sign_in(ALICE).await;
    let set: Vec<String> = ok
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        set.iter()
            .any(|c| c.starts_with("__Host-shortener_session=") && c.ends_with("; Secure")),
        "{set:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn forms_without_the_sessions_token_or_from_another_site_change_nothing() {
    let app = app().await;
    let mut b = Browser::new(&app);
    b.sign_in(ALICE).await;
    let token = b.csrf("/ui/links").await;

    let forged = b
        .post(
            "/ui/links",
            &[
                ("csrf", &"0".repeat(64)),
                ("long_url", "https://example.com/x"),
            ],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.text().await.unwrap().contains("nothing was changed"));

    let cross_site = app
        .client
        .post(app.url("/ui/links"))
        .header("cookie", b.cookie_header())
        .header("sec-fetch-site", "cross-site")
        .form(&[
            ("csrf", token.as_str()),
            ("long_url", "https://example.com/y"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN);

    // Sign-in needs the token of its own cookie (no login CSRF).
    let mut other = Browser::new(&app);
    let no_cookie = other
        .post("/ui/login", &[("csrf", &token), ("api_key", ALICE)])
        .await;
    assert_eq!(no_cookie.status(), StatusCode::FORBIDDEN);

    let db = app.db.as_ref().unwrap();
    let links: i64 = sqlx::query_scalar("SELECT count(*) FROM links")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(links, 0);

    let ok = b
        .post(
            "/ui/links",
            &[("csrf", &token), ("long_url", "https://example.com/z")],
        )
        .await;
    assert_eq!(ok.status(), StatusCode::SEE_OTHER);
    app.stop().await;
}

#[tokio::test]
async fn shorten_show_and_delete_with_analytics_down() {
    let app = app().await;
    let mut b = Browser::new(&app);
    b.sign_in(ALICE).await;
    let token = b.csrf("/ui/links").await;

    let created = b
        .post(
            "/ui/links",
            &[
                ("csrf", &token),
                ("long_url", "https://example.com/docs?q=1&r=2"),
                ("alias", "my-docs"),
                ("expires_in", "86400"),
            ],
        )
        .await;
    assert_eq!(created.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&created), "/ui/links/my-docs?created=1");

    let page = b.get("/ui/links/my-docs?created=1").await;
    assert_eq!(page.status(), 200, "the page works without analytics");
    let html = page.text().await.unwrap();
    assert!(html.contains("Your short link is ready"));
    assert!(
        html.contains("data-copy=\"http://sho.rt/my-docs\""),
        "{html}"
    );
    assert!(
        html.contains("https://example.com/docs?q=1&#38;r=2"),
        "escaped: {html}"
    );
    assert!(
        html.contains("Click statistics are temporarily unavailable"),
        "{html}"
    );
    assert!(html.contains("expires"), "{html}");
    // The failure opened the breaker: the next view does not even try, and still works.
    assert!(app.metrics().await.contains("analytics_breaker_state 1"));
    let again = b.get("/ui/links/my-docs").await;
    assert_eq!(again.status(), 200);
    assert!(again
        .text()
        .await
        .unwrap()
        .contains("Click statistics are temporarily unavailable"));
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("analytics_rpc_short_circuits_total{method=\"GetClickStats\"} 1"),
        "{metrics}"
    );

    // Same alias again: the form comes back with the error and the typed values.
    let taken = b
        .post(
            "/ui/links",
            &[
                ("csrf", &token),
                ("long_url", "https://example.com/2"),
                ("alias", "my-docs"),
            ],
        )
        .await;
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    let html = taken.text().await.unwrap();
    assert!(
        html.contains("alias &#34;my-docs&#34; is already taken"),
        "{html}"
    );
    assert!(html.contains("value=\"https://example.com/2\""), "{html}");

    // Another owner cannot see or delete it.
    let mut bob = Browser::new(&app);
    bob.sign_in(BOB).await;
    assert_eq!(bob.get("/ui/links/my-docs").await.status(), 404);
    let bob_token = bob.csrf("/ui/links").await;
    let stolen = bob
        .post("/ui/links/my-docs/delete", &[("csrf", &bob_token)])
        .await;
    assert_eq!(stolen.status(), 404);

    let confirm = b
        .get("/ui/links/my-docs/delete")
        .await
        .text()
        .await
        .unwrap();
    assert!(confirm.contains("Delete this link?"));
    let deleted = b
        .post("/ui/links/my-docs/delete", &[("csrf", &csrf_in(&confirm))])
        .await;
    assert_eq!(location(&deleted), "/ui/links?deleted=my-docs");
    assert!(b
        .get("/ui/links?deleted=my-docs")
        .await
        .text()
        .await
        .unwrap()
        .contains("Deleted my-docs."));
    let gone = b.get("/ui/links/my-docs").await;
    assert_eq!(gone.status(), StatusCode::GONE);
    assert!(gone
        .text()
        .await
        .unwrap()
        .contains("This link was deleted."));
    assert_eq!(app.get("/my-docs").await.status(), StatusCode::GONE);

    // Account overview works with analytics down, and says so.
    let account = b.get("/ui/account").await.text().await.unwrap();
    assert!(account.contains("id=\"live-links\">0<"), "{account}");
    assert!(
        account.contains("Click statistics are temporarily unavailable"),
        "{account}"
    );
    // It has the link page's range picker: 30 days unless picked, a custom range echoed
    // back, a reversed one explained.
    assert!(
        account.contains(r#"<option value="30d" selected>"#),
        "{account}"
    );
    let ranged = b
        .get("/ui/account?range=custom&from=2026-11-01&to=2026-11-05")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        ranged.contains(r#"<option value="custom" selected>"#)
            && ranged.contains(r#"value="2026-11-01""#)
            && ranged.contains(r#"value="2026-11-05""#),
        "{ranged}"
    );
    let reversed = b
        .get("/ui/account?range=custom&from=2026-11-05&to=2026-11-01")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        reversed.contains("The start date is after the end date."),
        "{reversed}"
    );

    // Sign out ends the session on the server.
    let stale = b.cookie_header();
    let out = b.post("/ui/logout", &[("csrf", &token)]).await;
    assert_eq!(location(&out), "/ui/login?signed_out=1");
    let replay = app
        .client
        .get(app.url("/ui/links"))
        .header("cookie", stale)
        .send()
        .await
        .unwrap();
    assert_eq!(location(&replay), "/ui/login?expired=1");
    app.stop().await;
}

#[tokio::test]
async fn typed_markup_comes_back_as_text() {
    let app = app().await;
    let mut b = Browser::new(&app);
    b.sign_in(ALICE).await;
    let token = b.csrf("/ui/links").await;
    let resp = b
        .post(
            "/ui/links",
            &[
                ("csrf", &token),
                ("long_url", "javascript:<script>alert(1)</script>"),
                ("alias", "\"><img src=x onerror=alert(2)>"),
            ],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let html = resp.text().await.unwrap();
    assert!(!html.contains("<script>alert(1)"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(
        html.contains("javascript:&#60;script&#62;alert(1)"),
        "{html}"
    );
    assert!(html.contains("&#34;&#62;&#60;img src=x"), "{html}");
    app.stop().await;
}

#[tokio::test]
async fn pages_share_the_api_rate_limit_and_say_so_in_words() {
    let app = start(|c| {
        c.read_rate_limit_per_second = 1;
        c.read_rate_limit_burst = 2;
    })
    .await;
    let mut b = Browser::new(&app);
    b.sign_in(ALICE).await;
    // One read from the API, one page: the bucket is the key's, shared by both.
    assert_eq!(app.get_auth(ALICE, "/api/v1/links").await.status(), 200);
    assert_eq!(b.get("/ui/links").await.status(), 200);
    let limited = b.get("/ui/links").await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key("retry-after"));
    let html = limited.text().await.unwrap();
    assert!(
        html.contains("rate limit") && html.contains("try again"),
        "{html}"
    );
    app.stop().await;
}

#[tokio::test]
async fn assets_are_embedded_and_cached_by_version() {
    let app = app().await;
    let mut b = Browser::new(&app);
    let html = b.get("/ui/login").await.text().await.unwrap();
    let start = html.find("/ui/assets/app.css?v=").unwrap();
    let url = &html[start..html[start..].find('"').unwrap() + start];
    let css = app.get(url).await;
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert!(css.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("immutable"));
    let js = app.get("/ui/assets/uPlot.iife.min.js").await;
    assert_eq!(js.status(), 200);
    assert!(js.headers().get("content-encoding").is_none());
    assert!(js.bytes().await.unwrap().len() > 40_000);
    let gz = app
        .client
        .get(app.url("/ui/assets/uPlot.iife.min.js"))
        .header("accept-encoding", "gzip, br")
        .send()
        .await
        .unwrap();
    assert_eq!(gz.headers()["content-encoding"], "gzip");
    assert_eq!(gz.headers()["vary"], "accept-encoding");
    let body = gz.bytes().await.unwrap();
    assert_eq!(&body[..2], [0x1f, 0x8b], "gzip magic");
    assert!(body.len() < 25_000, "{}", body.len());
    assert_eq!(app.get("/ui/assets/nope.js").await.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn titles_and_tags_are_escaped_searchable_and_editable() {
    let app = app().await;
    let mut b = Browser::new(&app);
    b.sign_in(ALICE).await;
    let token = b.csrf("/ui/links").await;
    let created = b
        .post(
            "/ui/links",
            &[
                ("csrf", &token),
                ("long_url", "https://example.com/launch"),
                ("alias", "launch"),
                ("title", "<script>alert(1)</script> launch"),
                ("tags", "Launch, docs"),
            ],
        )
        .await;
    assert_eq!(location(&created), "/ui/links/launch?created=1");
    let page = b.get("/ui/links/launch").await.text().await.unwrap();
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(
        page.contains("&#60;script&#62;alert(1)&#60;/script&#62; launch"),
        "{page}"
    );
    assert!(
        page.contains("href=\"/ui/links?tag=launch\">#launch<"),
        "{page}"
    );

    let by_tag = b.get("/ui/links?tag=docs").await.text().await.unwrap();
    assert!(by_tag.contains("/ui/links/launch\""), "{by_tag}");
    let other = b.get("/ui/links?tag=other").await.text().await.unwrap();
    assert!(other.contains("No links match"), "{other}");
    let searched = b
        .get("/ui/links?q=LAUNCH&order=clicks")
        .await
        .text()
        .await
        .unwrap();
    assert!(searched.contains("/ui/links/launch\""), "{searched}");

    let form = b.get("/ui/links/launch/edit").await.text().await.unwrap();
    assert!(form.contains("value=\"launch, docs\""), "{form}");
    let token = csrf_in(&form);
    let bad = b
        .post(
            "/ui/links/launch/edit",
            &[
                ("csrf", &token),
                ("long_url", "ftp://example.com"),
                ("expires_in", "keep"),
            ],
        )
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(bad.text().await.unwrap().contains("id=\"form-error\""));
    let unchanged = b
        .post(
            "/ui/links/launch/edit",
            &[
                ("csrf", &token),
                ("long_url", "https://example.com/launch"),
                ("title", "<script>alert(1)</script> launch"),
                ("tags", "launch, docs"),
                ("expires_in", "keep"),
            ],
        )
        .await;
    assert_eq!(location(&unchanged), "/ui/links/launch");
    let saved = b
        .post(
            "/ui/links/launch/edit",
            &[
                ("csrf", &token),
                ("long_url", "https://example.com/launch/v2"),
                ("title", "Launch notes"),
                ("tags", "release"),
                ("expires_in", "3600"),
            ],
        )
        .await;
    assert_eq!(location(&saved), "/ui/links/launch?edited=1");
    let page = b
        .get("/ui/links/launch?edited=1")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Saved.") && page.contains(">Launch notes<"),
        "{page}"
    );
    assert!(
        page.contains("#release") && !page.contains("#docs"),
        "{page}"
    );
    assert!(page.contains("expires"), "{page}");
    let resp = app.get("/launch").await;
    assert_eq!(resp.headers()[LOCATION], "https://example.com/launch/v2");

    // A forged edit changes nothing.
    let forged = b
        .post(
            "/ui/links/launch/edit",
            &[("csrf", "x"), ("long_url", "https://evil.example.com/")],
        )
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}

#[tokio::test]
async fn removing_a_key_from_the_configuration_ends_its_sessions() {
    let app = app().await;
    let mut b = Browser::new(&app);
    b.sign_in(BOB).await;
    assert_eq!(b.get("/ui/links").await.status(), 200);
    let cookie = b.cookie_header();
    let mut app = app;
    let db = app.db.take().unwrap();
    app.stop().await;

    // The same database, served with alice's key only.
    let mut config = common::base_config(db.args());
    config.api_keys = format!("alice:{ALICE}");
    config.public_base_url = "http://sho.rt".into();
    let restarted = common::start_with(config).await;
    let resp = restarted
        .client
        .get(restarted.url("/ui/links"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(location(&resp), "/ui/login?expired=1");
    restarted.stop().await;
}

#[tokio::test]
async fn qr_codes_of_own_links_only() {
    let app = app().await;
    let mut b = Browser::new(&app);
    b.sign_in(ALICE).await;
    let token = b.csrf("/ui/links").await;
    b.post(
        "/ui/links",
        &[
            ("csrf", &token),
            ("long_url", "https://example.com/qr"),
            ("alias", "qr-me"),
        ],
    )
    .await;
    let page = b.get("/ui/links/qr-me").await.text().await.unwrap();
    assert!(
        page.contains("src=\"/ui/links/qr-me/qr?format=png&amp;size=160\""),
        "{page}"
    );
    let png = b.get("/ui/links/qr-me/qr?format=png&size=256").await;
    assert_eq!(png.status(), 200);
    assert_eq!(png.headers()["content-type"], "image/png");
    assert_eq!(&png.bytes().await.unwrap()[..4], b"\x89PNG");
    let svg = b.get("/ui/links/qr-me/qr?format=svg").await;
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(svg.text().await.unwrap().contains("<svg"));
    assert_eq!(b.get("/ui/links/qr-me/qr?size=5").await.status(), 400);

    let mut bob = Browser::new(&app);
    bob.sign_in(BOB).await;
    assert_eq!(bob.get("/ui/links/qr-me/qr").await.status(), 404);
    let mut anonymous = Browser::new(&app);
    assert_eq!(
        location(&anonymous.get("/ui/links/qr-me/qr").await),
        "/ui/login"
    );
    app.stop().await;
}
