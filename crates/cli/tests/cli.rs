//! The `shortener` binary against a real url-api and analytics-rpc, both in-process on
//! loopback over a fresh test database; clicks are stored by the consumer's own storage
//! code, so stats go through the real rollups and gRPC.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use analytics_rpc::{AnalyticsServer, ServerArgs};
use consumer::enrich::Enricher;
use consumer::rollup_worker::drain;
use consumer::store::{insert_clicks, ClickRow};
use serde_json::Value;
use shortener_common::event::Click;
use shortener_common::kafka::KafkaArgs;
use shortener_testkit::postgres::{fresh_database, TestDatabase};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use url_api::{AppState, Config};

const KEY: &str = "cli-test-key-0123456789";
const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
const SLACK: &str = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)";

struct Stack {
    base: String,
    db: TestDatabase,
    /// HOME and XDG_CONFIG_HOME of the CLI runs, removed at the end.
    home: PathBuf,
}

async fn start() -> Stack {
    let db = fresh_database().await;

    let mut rpc = ServerArgs::new(db.args());
    // Generous: the test machine may be busy, and a timeout would read as an outage.
    rpc.query_timeout_ms = 10_000;
    let rpc = AnalyticsServer::bind(rpc)
        .await
        .expect("bind analytics-rpc");
    let grpc = rpc.grpc_addr();
    tokio::spawn(rpc.run(std::future::pending()));

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut config = Config::new(db.args(), KafkaArgs::new("127.0.0.1:1", "clicks"));
    config.api_keys = format!("cli:{KEY}");
    config.rate_limit_per_second = 10_000;
    config.rate_limit_burst = 10_000;
    config.clicks_enabled = false;
    config.public_base_url = base.clone();
    config.analytics_rpc_url = format!("http://{grpc}");
    config.analytics_rpc_timeout_ms = 10_000;
    let pool = config.database.lazy_pool().expect("pool");
    let state = AppState::new(&config, pool).expect("app state");
    // Both servers stop with the test's runtime.
    tokio::spawn(url_api::serve(listener, state, std::future::pending()));

    let home = std::env::temp_dir().join(format!("shortener-cli-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&home).unwrap();
    Stack { base, db, home }
}

struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    fn text(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("utf-8 output")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(
            self.code,
            0,
            "stderr: {}\nstdout: {}",
            self.stderr,
            self.text()
        );
        self
    }
}

impl Stack {
    /// The binary with this stack's URL and key in its environment.
    async fn cli(&self, args: &[&str]) -> Run {
        self.cli_with(
            &[("SHORTENER_URL", &self.base), ("SHORTENER_API_KEY", KEY)],
            args,
            None,
        )
        .await
    }

    /// The binary with only `vars` set (besides PATH and a private HOME).
    async fn cli_with(&self, vars: &[(&str, &str)], args: &[&str], stdin: Option<&str>) -> Run {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_shortener"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join("xdg"))
            .envs(vars.iter().copied())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run shortener");
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).await.unwrap();
        }
        drop(input);
        let out = child.wait_with_output().await.unwrap();
        Run {
            code: out.status.code().expect("exited"),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Stores clicks of `code` as the consumer does after reading them from Kafka.
    async fn clicks(&self, code: &str, visits: &[(&str, &str)]) {
        let enricher = Enricher::new(None).unwrap();
        let rows: Vec<ClickRow> = visits
            .iter()
            .map(|(ip, ua)| {
                let click = Click::now(
                    code,
                    Some(ip.parse::<IpAddr>().unwrap()),
                    Some(ua.to_string()),
                    None,
                );
                ClickRow {
                    enrichment: enricher.enrich(&click),
                    click,
                }
            })
            .collect();
        assert_eq!(
            insert_clicks(&self.db.pool, &rows).await.unwrap(),
            rows.len() as u64
        );
        drain(&self.db.pool).await.unwrap();
    }

    /// Where the API's redirect for `code` points.
    async fn location(&self, code: &str) -> String {
        let resp = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(format!("{}/{code}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302);
        resp.headers()["location"].to_str().unwrap().to_owned()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// The text a PNG QR code holds, read by an independent decoder.
fn decode_png_qr(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_edit_stats_qr_delete_import_export() {
    let s = start().await;

    // create: JSON for scripts, labelled fields for people, a password from stdin.
    let guide = s
        .cli(&[
            "--json",
            "links",
            "create",
            "https://example.com/guide",
            "--alias",
            "guide",
            "--title",
            "Docs",
            "--tag",
            "rust,web",
            "--max-visits",
            "50",
        ])
        .await
        .ok()
        .json();
    assert_eq!(guide["code"], "guide");
    assert_eq!(guide["short_url"], format!("{}/guide", s.base));
    assert_eq!(guide["tags"], serde_json::json!(["rust", "web"]));
    assert_eq!(guide["max_visits"], 50);
    let blog = s
        .cli(&[
            "links",
            "create",
            "https://example.com/blog",
            "--expires",
            "7d",
        ])
        .await
        .ok()
        .text();
    assert!(blog.starts_with("code "), "{blog}");
    assert!(
        blog.contains("\nlong url       https://example.com/blog\n"),
        "{blog}"
    );
    assert!(!blog.contains("never"), "expires in 7 days: {blog}");
    let secret = s
        .cli_with(
            &[("SHORTENER_URL", &s.base), ("SHORTENER_API_KEY", KEY)],
            &[
                "links",
                "create",
                "https://example.com/secret",
                "-a",
                "secret",
                "--password-stdin",
            ],
            Some("open sesame\n"),
        )
        .await
        .ok()
        .text();
    assert!(secret.contains("\npassword       yes\n"), "{secret}");

    // The API's validation reaches the user as message, code and status, exit 1.
    let bad = s.cli(&["links", "create", "ftp://example.com/"]).await;
    assert_eq!(bad.code, 1);
    assert!(
        bad.stderr.starts_with("error: ") && bad.stderr.contains("(invalid_url, HTTP 400)"),
        "{}",
        bad.stderr
    );
    let taken = s
        .cli(&["links", "create", "https://example.com/", "-a", "guide"])
        .await;
    assert_eq!(taken.code, 1);
    assert!(
        taken.stderr.contains("(alias_taken, HTTP 409)"),
        "{}",
        taken.stderr
    );

    // list: a table, filters, and paging through every page.
    let table = s.cli(&["links", "list"]).await.ok().text();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert!(lines[0].starts_with("CODE "), "{table}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("guide ") && l.contains("rust,web")),
        "{table}"
    );
    let tagged = s
        .cli(&["--json", "links", "list", "--tag", "rust"])
        .await
        .ok()
        .json();
    let codes: Vec<&str> = tagged["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["guide"]);
    let page = s.cli(&["links", "list", "--limit", "1"]).await.ok();
    assert_eq!(page.text().lines().count(), 2);
    assert!(
        page.stderr.contains("more links: add --cursor "),
        "{}",
        page.stderr
    );
    let all = s
        .cli(&["--json", "links", "list", "--limit", "1", "--all"])
        .await
        .ok()
        .json();
    assert_eq!(all["items"].as_array().unwrap().len(), 3);
    assert_eq!(all["next_cursor"], Value::Null);
    let found = s
        .cli(&["--json", "links", "list", "-q", "secret"])
        .await
        .ok()
        .json();
    assert_eq!(found["items"][0]["code"], "secret");

    // edit: only what is given changes; the redirect follows at once.
    let edited = s
        .cli(&[
            "--json",
            "links",
            "edit",
            "guide",
            "--long-url",
            "https://example.com/guide/v2",
            "--no-title",
            "--tag",
            "go",
        ])
        .await
        .ok()
        .json();
    assert_eq!(edited["long_url"], "https://example.com/guide/v2");
    assert_eq!(edited["title"], Value::Null);
    assert_eq!(edited["tags"], serde_json::json!(["go"]));
    assert_eq!(edited["max_visits"], 50, "untouched");
    assert_eq!(s.location("guide").await, "https://example.com/guide/v2");
    let nothing = s.cli(&["links", "edit", "guide"]).await;
    assert_eq!(nothing.code, 2);
    assert!(
        nothing.stderr.contains("nothing to change"),
        "{}",
        nothing.stderr
    );

    // stats: clicks stored by the consumer's code, counted through rollups and gRPC.
    s.clicks(
        "guide",
        &[
            ("203.0.113.1", IPHONE),
            ("203.0.113.2", IPHONE),
            ("203.0.113.3", IPHONE),
            ("198.51.100.9", SLACK),
        ],
    )
    .await;
    let stats = s
        .cli(&["links", "stats", "guide", "--series"])
        .await
        .ok()
        .text();
    assert!(stats.starts_with("link      guide\n"), "{stats}");
    assert!(
        stats.contains("\nclicks    4 (3 people, 1 bot)\n"),
        "{stats}"
    );
    assert!(stats.contains("\nDEVICE "), "{stats}");
    assert!(stats.contains("\nSTART (UTC) "), "{stats}");
    let stats = s
        .cli(&[
            "--json",
            "links",
            "stats",
            "guide",
            "--exclude-bots",
            "--from",
            "1d",
        ])
        .await
        .ok()
        .json();
    assert_eq!(stats["total_clicks"], 4);
    assert_eq!(stats["human_clicks"], 3);
    let details = s.cli(&["links", "get", "guide"]).await.ok().text();
    assert!(
        details.contains("\nclicks         4 (3 people, 1 bot)\n"),
        "{details}"
    );
    let account = s.cli(&["stats"]).await.ok().text();
    assert!(
        account.contains("\nclicks    4 (3 people, 1 bot)\n"),
        "{account}"
    );
    assert!(
        account.lines().any(|l| l.starts_with("guide ")),
        "{account}"
    );

    // qr: a PNG file that decodes to the short URL; SVG on stdout.
    let png = s.home.join("guide.png");
    let wrote = s
        .cli(&[
            "links",
            "qr",
            "guide",
            "-o",
            png.to_str().unwrap(),
            "--size",
            "256",
        ])
        .await
        .ok()
        .text();
    assert!(
        wrote.starts_with(&format!("wrote {} (png, ", png.display())),
        "{wrote}"
    );
    assert_eq!(decode_png_qr(&png), format!("{}/guide", s.base));
    let svg = s.cli(&["links", "qr", "guide"]).await.ok().text();
    assert!(svg.contains("<svg"), "{svg}");

    // delete: several at once; a second delete is refused, exit 1.
    let deleted = s
        .cli(&["links", "delete", "guide", "secret"])
        .await
        .ok()
        .text();
    assert_eq!(deleted, "deleted guide\ndeleted secret\n");
    let gone = s.cli(&["links", "get", "guide"]).await;
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains("HTTP 4"), "{}", gone.stderr);
    let again = s.cli(&["links", "delete", "guide", "nope"]).await;
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("error: guide: "), "{}", again.stderr);
    assert!(again.stderr.contains("error: nope: "), "{}", again.stderr);
    assert!(
        again.stderr.ends_with("error: 2 of 2 links not deleted\n"),
        "{}",
        again.stderr
    );
    let left = s.cli(&["--json", "links", "list"]).await.ok().json();
    assert_eq!(left["items"].as_array().unwrap().len(), 1);

    // import: per-row results, exit 1 when a row failed; export: every link.
    let csv = s.home.join("links.csv");
    std::fs::write(
        &csv,
        "long_url,alias,tags\nhttps://example.com/a,imported,x|y\nftp://bad/,,\n",
    )
    .unwrap();
    let import = s.cli(&["links", "import", csv.to_str().unwrap()]).await;
    assert_eq!(import.code, 1, "{}", import.stderr);
    let text = import.text();
    assert!(
        text.contains(&format!("  1     201  {}/imported\n", s.base)),
        "{text}"
    );
    assert!(
        text.contains("  2     400  ") && text.contains("(invalid_url)\n"),
        "{text}"
    );
    assert!(text.ends_with("created 1, failed 1\n"), "{text}");
    assert!(
        import.stderr.ends_with("error: 1 of 2 rows not imported\n"),
        "{}",
        import.stderr
    );
    let exported = s.cli(&["links", "export"]).await.ok().text();
    assert!(
        exported.starts_with("code,short_url,long_url,"),
        "{exported}"
    );
    assert!(
        exported.contains("imported,") && exported.contains("x|y"),
        "{exported}"
    );
    let json_file = s.home.join("links.json");
    s.cli(&["links", "export", "-o", json_file.to_str().unwrap()])
        .await
        .ok();
    let all: Value = serde_json::from_slice(&std::fs::read(&json_file).unwrap()).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_config_and_failures_exit_codes() {
    let s = start().await;

    // Nothing configured: usage error naming the fix.
    let none = s.cli_with(&[], &["links", "list"], None).await;
    assert_eq!(none.code, 2);
    assert!(none.stderr.contains("SHORTENER_URL"), "{}", none.stderr);
    let no_key = s
        .cli_with(&[("SHORTENER_URL", &s.base)], &["links", "list"], None)
        .await;
    assert_eq!(no_key.code, 2);
    assert!(
        no_key.stderr.contains("SHORTENER_API_KEY"),
        "{}",
        no_key.stderr
    );

    // A wrong key: the API's 401 with a hint; nothing listening: exit 3.
    let wrong = s
        .cli_with(
            &[
                ("SHORTENER_URL", &s.base),
                ("SHORTENER_API_KEY", "wrong-key-000000000"),
            ],
            &["links", "list"],
            None,
        )
        .await;
    assert_eq!(wrong.code, 1);
    assert!(
        wrong.stderr.contains("(unauthorized, HTTP 401)"),
        "{}",
        wrong.stderr
    );
    let down = s
        .cli_with(
            &[
                ("SHORTENER_URL", "http://127.0.0.1:1"),
                ("SHORTENER_API_KEY", KEY),
            ],
            &["links", "list"],
            None,
        )
        .await;
    assert_eq!(down.code, 3);
    assert!(
        down.stderr
            .starts_with("error: cannot reach http://127.0.0.1:1/api/v1/links"),
        "{}",
        down.stderr
    );

    // login checks the key before saving it.
    let config = s.home.join("xdg/shortener/config.toml");
    let refused = s
        .cli_with(&[], &["login", &s.base], Some("wrong-key-000000000\n"))
        .await;
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(!config.exists(), "a refused key is not saved");
    let saved = s
        .cli_with(&[], &["login", &s.base], Some(&format!("{KEY}\n")))
        .await
        .ok()
        .text();
    assert!(saved.starts_with("saved "), "{saved}");
    let text = std::fs::read_to_string(&config).unwrap();
    assert_eq!(
        text,
        format!("url = \"{}/\"\napi_key = \"{KEY}\"\n", s.base)
    );

    // The saved settings are used; the environment still wins over them.
    s.cli_with(
        &[],
        &["links", "create", "https://example.com/", "-a", "fromfile"],
        None,
    )
    .await
    .ok();
    let shown = s.cli_with(&[], &["config", "show"], None).await.ok().text();
    assert!(
        shown.contains("api_key = \"cli-… (23 characters)\""),
        "{shown}"
    );
    assert!(!shown.contains(KEY), "the key is not printed");
    let path = s.cli_with(&[], &["config", "path"], None).await.ok().text();
    assert_eq!(path.trim_end(), config.to_str().unwrap());
    let env_wins = s
        .cli_with(
            &[("SHORTENER_API_KEY", "wrong-key-000000000")],
            &["links", "list"],
            None,
        )
        .await;
    assert_eq!(env_wins.code, 1);
    s.cli_with(&[], &["config", "set", "url", "http://127.0.0.1:1"], None)
        .await
        .ok();
    assert_eq!(s.cli_with(&[], &["links", "list"], None).await.code, 3);
    let flag_wins = s
        .cli_with(&[], &["--server", &s.base, "--json", "links", "list"], None)
        .await
        .ok()
        .json();
    assert_eq!(flag_wins["items"][0]["code"], "fromfile");
    let unknown = s
        .cli_with(&[], &["config", "set", "colour", "blue"], None)
        .await;
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("unknown config key"),
        "{}",
        unknown.stderr
    );
}
