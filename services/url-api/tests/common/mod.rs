//! Starts url-api in-process on a real loopback listener against a fresh database.
#![allow(dead_code)]

use std::time::Duration;

use shortener_common::db::DatabaseArgs;
use shortener_common::kafka::KafkaArgs;
use shortener_testkit::postgres::{fresh_database, TestDatabase};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use url_api::{AppState, Config};

pub const ALICE: &str = "alice-key-0123456789";
pub const BOB: &str = "bob-key-9876543210";

pub struct TestApp {
    pub base: String,
    /// Base URL of the admin endpoints (`/readyz`, `/metrics`).
    pub admin: String,
    pub client: reqwest::Client,
    pub db: Option<TestDatabase>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// Settings every test starts from: two keys, a generous rate limit, clicks off.
pub fn base_config(database: DatabaseArgs) -> Config {
    let mut config = Config::new(database, KafkaArgs::new("127.0.0.1:1", "clicks"));
    config.api_keys = format!("alice:{ALICE},bob:{BOB}");
    config.rate_limit_per_second = 10_000;
    config.rate_limit_burst = 10_000;
    config.clicks_enabled = false;
    config.public_base_url = "https://sho.rt/".into();
    config
}

pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let db = fresh_database().await;
    let mut config = base_config(db.args());
    tweak(&mut config);
    let mut app = start_with(config).await;
    wait_for_change_listener(&db).await;
    app.db = Some(db);
    app
}

/// `serve` waits only a moment for its LISTEN on link changes; on a loaded machine it can
/// start listening later, and then drops whatever it cached meanwhile. Tests that count
/// cache hits or visits wait until it listens.
async fn wait_for_change_listener(db: &TestDatabase) {
    let listening = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query ILIKE 'LISTEN%'",
        )
        .bind(&db.name)
        .fetch_one(&db.pool)
        .await
        .map(|n| n > 0)
        .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !listening().await {
        assert!(
            std::time::Instant::now() < deadline,
            "url-api never listened for link changes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serves `config` (its database need not be reachable).
pub async fn start_with(config: Config) -> TestApp {
    let pool = config.database.lazy_pool().expect("pool");
    let state = AppState::new(&config, pool).expect("app state");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let admin_addr = admin.local_addr().unwrap();
    // Stops with the runtime at the end of the test.
    tokio::spawn(url_api::serve_admin(
        admin,
        state.clone(),
        std::future::pending(),
    ));
    let (tx, rx) = oneshot::channel();
    let server = tokio::spawn(url_api::serve(listener, state, async {
        let _ = rx.await;
    }));
    TestApp {
        base: format!("http://{addr}"),
        admin: format!("http://{admin_addr}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
        db: None,
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn create(&self, key: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/links"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a link and returns its code.
    pub async fn create_ok(&self, key: &str, long_url: &str) -> String {
        let resp = self
            .create(key, serde_json::json!({ "long_url": long_url }))
            .await;
        assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
        let body: serde_json::Value = resp.json().await.unwrap();
        body["code"].as_str().unwrap().to_string()
    }

    pub async fn patch(&self, key: &str, code: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .patch(self.url(&format!("/api/v1/links/{code}")))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a link from `body` and returns the created link.
    pub async fn create_json(&self, key: &str, body: serde_json::Value) -> serde_json::Value {
        let resp = self.create(key, body).await;
        assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
        resp.json().await.unwrap()
    }

    /// `Location` of a redirect through `path`, or its status when it is not a 302.
    pub async fn location(&self, path: &str) -> Result<String, u16> {
        let resp = self.get(path).await;
        match resp.status().as_u16() {
            302 => Ok(resp.headers()["location"].to_str().unwrap().to_string()),
            other => Err(other),
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_auth(&self, key: &str, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("x-api-key", key)
            .send()
            .await
            .unwrap()
    }

    /// `path` on the admin port.
    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.admin))
            .send()
            .await
            .unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.admin_get("/metrics").await.text().await.unwrap()
    }

    /// Stops the server, waiting for it to drain.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }
}

/// The `error.code` of a JSON error response, after checking its status.
pub async fn error_code(resp: reqwest::Response, status: u16) -> String {
    assert_eq!(resp.status(), status, "unexpected status");
    assert_eq!(
        resp.headers()["content-type"],
        "application/json",
        "errors are JSON"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["error"]["message"].as_str().is_some(), "{body}");
    body["error"]["code"].as_str().unwrap().to_string()
}

/// Polls `check` until it returns true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
