//! The dashboard in a real browser: Debian's chromium driven over WebDriver (chromedriver)
//! against the whole stack (url-api, broker, consumer, analytics-rpc, Postgres). Signs in,
//! shortens a link, follows it with several User-Agents, watches the chart and breakdowns
//! fill, checks CSRF and escaping, deletes, signs out, and reports each page's transferred
//! bytes. With DASHBOARD_SCREENSHOTS=<dir> it also saves screenshots of the main pages.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{Stack, StackOptions};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const API_KEY: &str = "dashboard-key-0123456789abcdef";
const WAIT: Duration = Duration::from_secs(60);

/// (User-Agent, Referer, X-Forwarded-For) of the visitors who follow the short URL.
const VISITORS: [(&str, Option<&str>, Option<&str>); 3] = [
    (
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
        Some("https://www.google.com/search?q=shortener"),
        Some("8.8.8.8"),
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
        Some("https://news.bbc.co.uk/some/story"),
        Some("194.25.0.60"),
    ),
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        None,
        None,
    ),
];

/// A chromedriver child process, stopped on drop.
struct Driver {
    child: Child,
    url: String,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_driver() -> Driver {
    let bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let port = free_port();
    let child = Command::new(&bin)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {bin} ({e}): install chromium-driver, or run ./scripts/test")
        });
    let profile = std::env::temp_dir().join(format!("dashboard-chromium-{port}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        profile,
    }
}

async fn browser(driver: &Driver) -> Client {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1280,900",
                "--lang=en-US",
                format!("--user-data-dir={}", driver.profile.display()),
            ]
        }
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a chromium session")
}

/// Bytes of the page just loaded: the document and what it pulled in (0 when cached).
async fn transferred(c: &Client, page: &str, report: &mut Vec<String>) {
    let v = c
        .execute(
            "const n = performance.getEntriesByType('navigation')[0];
             const r = performance.getEntriesByType('resource');
             const sum = (f) => r.reduce((a, e) => a + e[f], 0);
             return [n.transferSize, sum('transferSize'), n.encodedBodySize + sum('encodedBodySize')];",
            vec![],
        )
        .await
        .unwrap();
    let n = |i: usize| v[i].as_u64().unwrap_or(0);
    report.push(format!(
        "{page:<28} document {:>6} B, assets {:>6} B transferred ({:>6} B of bodies with a cold cache)",
        n(0),
        n(1),
        n(2)
    ));
}

async fn screenshot(c: &Client, name: &str) {
    if let Some(dir) = std::env::var_os("DASHBOARD_SCREENSHOTS") {
        let png = c.screenshot().await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(PathBuf::from(dir).join(format!("{name}.png")), png).unwrap();
    }
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn fill(c: &Client, css: &str, value: &str) {
    let e = c.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(value).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn path(c: &Client) -> String {
    let u = c.current_url().await.unwrap();
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

/// Waits for the browser to arrive at `expected` (path and query) after a click.
async fn wait_path(c: &Client, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = path(c).await;
        if now == expected
            && c.execute("return document.readyState", vec![])
                .await
                .unwrap()
                == "complete"
        {
            return;
        }
        assert!(Instant::now() < deadline, "at {now}, expected {expected}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the element at `css` shows `needle` (the page after a click may be loading).
async fn wait_text(c: &Client, css: &str, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(e) = c.find(Locator::Css(css)).await {
            if e.text().await.is_ok_and(|t| t.contains(needle)) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{css} never showed {needle:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A landing page for the short link on another port (url-api refuses links to its own
/// host): answers every request with a small HTML page. Runs until the test ends.
async fn landing_page() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let body = "<!doctype html><title>Landed</title><h1>Landed</h1>";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(resp.as_bytes()).await;
            });
        }
    });
    format!("http://localhost:{port}/landing")
}

const TAB: char = '\u{e004}';
const ENTER: char = '\u{e007}';

async fn press(c: &Client, key: char) {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    c.perform_actions(keys).await.unwrap();
}

/// WCAG contrast of every element's own text against the background it sits on: the
/// elements under 4.5:1.
const LOW_CONTRAST: &str = r#"
const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
const lum = (c) => { const [r, g, b] = c.match(/[\d.]+/g).slice(0, 3).map(Number).map(channel);
  return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
const bg = (el) => { for (; el; el = el.parentElement) {
    const c = getComputedStyle(el).backgroundColor, a = c.match(/[\d.]+/g);
    if (a && (a.length < 4 || Number(a[3]) > 0)) return c; }
  return "rgb(255, 255, 255)"; };
const low = [];
for (const el of document.querySelectorAll("body *")) {
  if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
  if (el.closest(".sr-only, .skip, [hidden]")) continue;
  const a = lum(getComputedStyle(el).color), b = lum(bg(el));
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) low.push(`${el.tagName}.${el.className} ${ratio.toFixed(2)}`);
}
return low;
"#;

/// Every visible form control has a label, text has AA contrast, and nothing is wider
/// than the viewport.
async fn accessible_layout(c: &Client, page: &str) {
    let low = c.execute(LOW_CONTRAST, vec![]).await.unwrap();
    assert_eq!(low, json!([]), "{page}: text under 4.5:1 contrast");
    let v = c
        .execute(
            "const unlabeled = [...document.querySelectorAll('input:not([type=hidden]), select')]
               .filter((e) => e.labels.length === 0).map((e) => e.name);
             return [unlabeled, document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(v[0], json!([]), "{page}: inputs without a label");
    assert!(
        v[1].as_u64() <= v[2].as_u64(),
        "{page}: wider than the window ({} > {})",
        v[1],
        v[2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_in_a_real_browser() {
    let started = Instant::now();
    let geoip = std::env::var_os("SHORTENER_TEST_GEOIP_DB")
        .expect("SHORTENER_TEST_GEOIP_DB is not set: run through ./scripts/test");
    let stack = Stack::start(StackOptions {
        api_key: API_KEY,
        group_id: "dashboard",
        partitions: 1,
        geoip_db: Some(geoip),
        trusted_proxies: "127.0.0.1/32",
        allow_private_targets: true,
        analytics_rpc_timeout_ms: None,
    })
    .await;
    let base = stack.base.clone();
    let driver = start_driver().await;
    let c = browser(&driver).await;
    let mut bytes = Vec::new();

    // Signing in.
    c.goto(&format!("{base}/ui/")).await.unwrap();
    wait_path(&c, "/ui/login").await;
    transferred(&c, "sign in (first visit)", &mut bytes).await;
    accessible_layout(&c, "sign in").await;
    screenshot(&c, "sign-in").await;
    // The contrast check itself sees pale text.
    let pale = c
        .execute(
            "const p = document.createElement('p'); p.textContent = 'pale'; p.style.color = '#bbb';
             document.querySelector('main').appendChild(p);",
            vec![],
        )
        .await;
    pale.unwrap();
    let low = c.execute(LOW_CONTRAST, vec![]).await.unwrap();
    assert_eq!(low.as_array().map(Vec::len), Some(1), "{low}");
    fill(&c, "#api_key", "wrong-key").await;
    click(&c, "form[action='/ui/login'] button").await;
    wait_text(&c, ".error", "not valid").await;
    fill(&c, "#api_key", API_KEY).await;
    click(&c, "form[action='/ui/login'] button").await;
    wait_path(&c, "/ui/links").await;

    // Keyboard: the first Tab reaches the skip link, which leads to the content.
    press(&c, TAB).await;
    let focused = c.active_element().await.unwrap();
    assert_eq!(
        focused.attr("class").await.unwrap().as_deref(),
        Some("skip")
    );
    press(&c, ENTER).await;
    assert_eq!(c.current_url().await.unwrap().fragment(), Some("main"));
    let cookies = c.execute("return document.cookie", vec![]).await.unwrap();
    assert_eq!(cookies, json!(""), "the session cookie is HttpOnly");
    let storage = c
        .execute(
            "return JSON.stringify(localStorage) + JSON.stringify(sessionStorage)",
            vec![],
        )
        .await
        .unwrap();
    assert!(!storage.to_string().contains(API_KEY));

    // Markup typed into the form comes back as text, and runs nothing.
    fill(&c, "#long_url", "https://example.com/<b>bold</b>").await;
    fill(&c, "#alias", "\"><img src=x id=xss>").await;
    c.execute(
        "document.getElementById('alias').removeAttribute('pattern')",
        vec![],
    )
    .await
    .unwrap();
    click(&c, ".shorten button[type=submit]").await;
    wait_text(&c, "#form-error", "alias").await;
    let injected = c
        .execute(
            "return [document.getElementById('xss') === null, document.getElementById('alias').value]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(injected, json!([true, "\"><img src=x id=xss>"]));

    // Shortening, to a landing page on this machine.
    let destination = landing_page().await;
    fill(&c, "#long_url", &destination).await;
    fill(&c, "#alias", "launch-notes").await;
    let title = "<img src=x id=xss-title> Launch notes";
    fill(&c, "#title", title).await;
    fill(&c, "#tags", "launch, docs").await;
    click(&c, ".shorten button[type=submit]").await;
    wait_path(&c, "/ui/links/launch-notes?created=1").await;
    wait_text(&c, ".notice", "ready").await;
    transferred(&c, "link (first with the chart)", &mut bytes).await;
    // The QR code is drawn (an image the page's CSP allows) and offered as a download.
    let qr = "const i = document.querySelector('.qr img'); return i.complete ? i.naturalWidth : 0";
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.execute(qr, vec![]).await.unwrap() == json!(0) {
        assert!(Instant::now() < deadline, "the QR code never loaded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let png = c
        .find(Locator::Css(".qr a[download$='.png']"))
        .await
        .unwrap();
    let href = png.attr("href").await.unwrap().unwrap();
    let png = stack
        .http
        .get(format!("{base}{href}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        png.status().as_u16(),
        303,
        "the QR download needs the session"
    );
    assert_eq!(text(&c, "#link-title").await, title, "the title is text");
    let injected = c
        .execute(
            "return document.getElementById('xss-title') === null",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(injected, json!(true));
    let short_url = format!("{base}/launch-notes");
    let copy = c.find(Locator::Css("button.copy")).await.unwrap();
    assert_eq!(
        copy.attr("data-copy").await.unwrap().as_deref(),
        Some(short_url.as_str())
    );
    copy.click().await.unwrap();
    // The clipboard answers asynchronously; the status line says when it is done.
    wait_text(&c, "#copy-status", &format!("Copied {short_url}")).await;

    // Following the short URL: once in the browser, then as other visitors.
    c.goto(&short_url).await.unwrap();
    wait_path(&c, "/landing").await;
    wait_text(&c, "h1", "Landed").await;
    for (ua, referer, xff) in VISITORS {
        for _ in 0..2 {
            let mut req = stack.http.get(&short_url).header("user-agent", ua);
            if let Some(r) = referer {
                req = req.header("referer", r);
            }
            if let Some(ip) = xff {
                req = req.header("x-forwarded-for", ip);
            }
            assert_eq!(req.send().await.unwrap().status().as_u16(), 302);
        }
    }
    let expected = 1 + 2 * VISITORS.len();

    // The analytics page catches up with the clicks.
    let page = format!("{base}/ui/links/launch-notes?range=24h&bucket=hour");
    let deadline = Instant::now() + WAIT;
    loop {
        c.goto(&page).await.unwrap();
        if let Ok(total) = c.find(Locator::Css("#total-clicks")).await {
            if total.text().await.unwrap() == expected.to_string() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the clicks never showed up");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    c.wait()
        .for_element(Locator::Css("#chart.drawn canvas"))
        .await
        .unwrap();
    transferred(&c, "link analytics (7 clicks)", &mut bytes).await;
    let breakdowns = text(&c, ".breakdowns").await;
    for seen in [
        "Firefox",
        "Safari",
        "Googlebot",
        "Mobile",
        "Desktop",
        "Bot",
        "google",
        "bbc.co.uk",
        "US",
        "DE",
    ] {
        assert!(
            breakdowns.contains(seen),
            "{seen} missing from {breakdowns}"
        );
    }
    // People and bots add up to the clicks; the two Googlebot visits are bots.
    let number = |t: String| t.parse::<u64>().unwrap();
    let humans = number(text(&c, "#human-clicks").await);
    let bots = number(text(&c, "#bot-clicks").await);
    assert_eq!(humans + bots, expected as u64);
    assert!(bots >= 2, "{bots} bots");
    assert!(number(text(&c, "#visitors").await) >= 1);
    assert!(breakdowns.contains("Operating systems"), "{breakdowns}");
    let chart_sum = c
        .execute(
            "return document.getElementById('chart').dataset.clicks.split(',').map(Number).reduce((a, b) => a + b, 0)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(chart_sum, json!(expected));
    accessible_layout(&c, "link analytics").await;
    // Tall enough for the chart and the breakdowns in one picture.
    c.set_window_size(1280, 1350).await.unwrap();
    screenshot(&c, "link-analytics").await;
    c.set_window_size(1280, 900).await.unwrap();

    // Daily buckets over 7 days through the range picker.
    c.find(Locator::Css("#range option[value='7d']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css("#bucket option[value='day']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(&c, ".range button").await;
    wait_path(&c, "/ui/links/launch-notes?range=7d&bucket=day").await;
    assert_eq!(text(&c, "#total-clicks").await, expected.to_string());
    c.wait()
        .for_element(Locator::Css("#chart.drawn canvas"))
        .await
        .unwrap();

    // Custom dates: the date inputs appear only for them; yesterday and today (UTC) hold
    // every click, even just after midnight.
    let hidden = "return document.getElementById('from').closest('.field').hidden";
    assert_eq!(c.execute(hidden, vec![]).await.unwrap(), json!(true));
    c.find(Locator::Css("#range option[value='custom']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(c.execute(hidden, vec![]).await.unwrap(), json!(false));
    c.execute(
        "const day = (ms) => new Date(ms).toISOString().slice(0, 10);
         document.getElementById('from').value = day(Date.now() - 86400000);
         document.getElementById('to').value = day(Date.now());",
        vec![],
    )
    .await
    .unwrap();
    click(&c, ".range button").await;
    wait_text(&c, ".total", "(UTC)").await;
    assert_eq!(text(&c, "#total-clicks").await, expected.to_string());

    // At phone width the page still fits.
    c.set_window_size(360, 800).await.unwrap();
    c.refresh().await.unwrap();
    accessible_layout(&c, "link analytics at 360 px").await;
    screenshot(&c, "link-analytics-360px").await;
    c.set_window_size(1280, 900).await.unwrap();

    // The list and the account overview.
    c.goto(&format!("{base}/ui/links")).await.unwrap();
    transferred(&c, "links", &mut bytes).await;
    assert!(text(&c, ".links").await.contains(&short_url));
    accessible_layout(&c, "links").await;
    screenshot(&c, "links").await;
    c.goto(&format!("{base}/ui/account")).await.unwrap();
    transferred(&c, "account", &mut bytes).await;
    assert_eq!(text(&c, "#live-links").await, "1");
    assert_eq!(text(&c, "#account-clicks").await, expected.to_string());
    assert!(text(&c, "#top-links").await.contains("launch-notes"));
    screenshot(&c, "account").await;

    // Editing: a new title and tags; the tag filter finds the link by its new tag.
    c.goto(&format!("{base}/ui/links/launch-notes"))
        .await
        .unwrap();
    click(&c, "a[href$='/edit']").await;
    wait_path(&c, "/ui/links/launch-notes/edit").await;
    screenshot(&c, "edit").await;
    fill(&c, "#title", "Launch notes, final").await;
    fill(&c, "#tags", "launch, release").await;
    click(&c, "form[action$='/edit'] button[type=submit]").await;
    wait_path(&c, "/ui/links/launch-notes?edited=1").await;
    assert_eq!(text(&c, "#link-title").await, "Launch notes, final");
    c.goto(&format!("{base}/ui/links?tag=release"))
        .await
        .unwrap();
    assert!(text(&c, ".links").await.contains("Launch notes, final"));

    // A delete form whose CSRF token was tampered with changes nothing.
    c.goto(&format!("{base}/ui/links/launch-notes/delete"))
        .await
        .unwrap();
    transferred(&c, "delete confirmation", &mut bytes).await;
    screenshot(&c, "delete").await;
    c.execute(
        "document.querySelector('form[action$=\"/delete\"] input[name=csrf]').value = 'forged'",
        vec![],
    )
    .await
    .unwrap();
    click(&c, "form[action$='/delete'] button").await;
    wait_text(&c, "h1", "could not be accepted").await;
    assert_eq!(
        stack
            .http
            .get(&short_url)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        302
    );

    // Deleting, confirmed.
    c.goto(&format!("{base}/ui/links/launch-notes"))
        .await
        .unwrap();
    click(&c, "a.button.danger").await;
    wait_path(&c, "/ui/links/launch-notes/delete").await;
    click(&c, "form[action$='/delete'] button").await;
    wait_path(&c, "/ui/links?deleted=launch-notes").await;
    wait_text(&c, ".notice", "Deleted launch-notes").await;
    assert_eq!(
        stack
            .http
            .get(&short_url)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        410
    );

    // Signing out ends the session.
    click(&c, ".signout button").await;
    wait_path(&c, "/ui/login?signed_out=1").await;
    c.goto(&format!("{base}/ui/links")).await.unwrap();
    wait_path(&c, "/ui/login").await;

    c.close().await.unwrap();
    drop(driver);
    stack.stop().await;
    println!("transferred bytes per page:\n  {}", bytes.join("\n  "));
    println!("browser test took {:?}", started.elapsed());
}
