//! The three services in one process, every hop over real loopback sockets, against a
//! librdkafka mock cluster and a fresh database (url-api calls analytics-rpc over TLS, with a
//! token): what each end-to-end test starts from.

// Each test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use analytics_rpc::{AnalyticsServer, ServerArgs};
use consumer::{ConsumerApp, ConsumerArgs};
use serde_json::{json, Value};
use shortener_common::kafka::KafkaArgs;
use shortener_testkit::kafka::MockBroker;
use shortener_testkit::postgres::{fresh_database, TestDatabase};
use shortener_testkit::tls::{TestCa, TlsFiles};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TOPIC: &str = "clicks";
/// The token url-api presents to analytics-rpc.
pub const RPC_TOKEN: &str = "e2e-rpc-token-0123456789";
/// The name in analytics-rpc's certificate (the stack connects to 127.0.0.1).
pub const RPC_SERVER_NAME: &str = "analytics-rpc.e2e.test";

/// What differs between the tests' stacks.
pub struct StackOptions {
    pub api_key: &'static str,
    pub group_id: &'static str,
    pub partitions: i32,
    pub geoip_db: Option<OsString>,
    /// CIDRs whose X-Forwarded-For url-api believes.
    pub trusted_proxies: &'static str,
    /// Lets links point at loopback addresses (the dashboard test's destinations).
    pub allow_private_targets: bool,
    /// url-api's deadline for analytics calls; None: 10 s, clear of a loaded machine.
    pub analytics_rpc_timeout_ms: Option<u64>,
}

pub struct Stack {
    pub broker: MockBroker,
    pub db: TestDatabase,
    /// `http://127.0.0.1:<port>` of url-api.
    pub base: String,
    pub grpc_addr: SocketAddr,
    /// analytics-rpc's certificate, key and CA (it serves TLS, as production should).
    pub rpc_tls: TlsFiles,
    pub http: reqwest::Client,
    api_key: &'static str,
    stops: Vec<oneshot::Sender<()>>,
    tasks: Vec<(&'static str, JoinHandle<Result<(), String>>)>,
}

fn stop_signal(stops: &mut Vec<oneshot::Sender<()>>) -> impl std::future::Future<Output = ()> {
    let (tx, rx) = oneshot::channel::<()>();
    stops.push(tx);
    async move {
        let _ = rx.await;
    }
}

impl Stack {
    pub async fn start(options: StackOptions) -> Self {
        let broker = MockBroker::start();
        broker.create_topic(TOPIC, options.partitions);
        broker.create_topic(&format!("{TOPIC}.dlq"), 1);
        let db = fresh_database().await;
        let kafka = KafkaArgs::new(broker.bootstrap(), TOPIC);
        let mut stops = Vec::new();
        let mut tasks = Vec::new();

        // url-api and analytics-rpc share a token and talk TLS, as a deployment should.
        let rpc_tls = TestCa::new("e2e CA").server_files(&[RPC_SERVER_NAME]);
        let mut rpc_args = ServerArgs::new(db.args());
        rpc_args.auth_token = Some(RPC_TOKEN.parse().expect("token"));
        rpc_args.tls_cert = Some(rpc_tls.cert.clone());
        rpc_args.tls_key = Some(rpc_tls.key.clone());
        let rpc = AnalyticsServer::bind(rpc_args)
            .await
            .expect("bind analytics-rpc");
        let grpc_addr = rpc.grpc_addr();
        let stop = stop_signal(&mut stops);
        tasks.push((
            "analytics-rpc",
            tokio::spawn(async move { rpc.run(stop).await.map_err(|e| e.to_string()) }),
        ));

        let mut consumer_args = ConsumerArgs::new(kafka.clone(), db.args());
        consumer_args.group_id = options.group_id.into();
        consumer_args.geoip_db_path = options.geoip_db.map(Into::into);
        consumer_args.batch_max_wait_ms = 50;
        let consumer = ConsumerApp::new(consumer_args)
            .await
            .expect("start consumer");
        let stop = stop_signal(&mut stops);
        tasks.push((
            "consumer",
            tokio::spawn(async move { consumer.run(stop).await.map_err(|e| e.to_string()) }),
        ));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let mut config = url_api::Config::new(db.args(), kafka);
        config.public_base_url = base.clone();
        config.allow_private_targets = options.allow_private_targets;
        config.api_keys = format!("e2e:{}", options.api_key);
        config.trusted_proxies =
            url_api::config::parse_proxies(options.trusted_proxies).expect("trusted proxies");
        config.analytics_rpc_url = format!("https://{grpc_addr}");
        config.analytics_rpc_ca = Some(rpc_tls.ca.clone());
        config.analytics_rpc_server_name = Some(RPC_SERVER_NAME.into());
        config.analytics_rpc_token = Some(RPC_TOKEN.into());
        // The first call also dials the channel; keep it well clear of a loaded machine.
        config.analytics_rpc_timeout_ms = options.analytics_rpc_timeout_ms.unwrap_or(10_000);
        config.rate_limit_per_second = 10_000;
        config.rate_limit_burst = 10_000;
        let state = url_api::AppState::new(&config, db.pool.clone()).expect("url-api state");
        let stop = stop_signal(&mut stops);
        tasks.push((
            "url-api",
            tokio::spawn(async move {
                url_api::serve(listener, state, stop)
                    .await
                    .map_err(|e| e.to_string())
            }),
        ));

        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Self {
            broker,
            db,
            base,
            grpc_addr,
            rpc_tls,
            http,
            api_key: options.api_key,
            stops,
            tasks,
        }
    }

    /// A TLS channel to analytics-rpc, trusting the stack's CA, as url-api connects.
    pub async fn rpc_channel(&self) -> tonic::transport::Channel {
        let tls = url_api::analytics_client::RpcTls::from_file(
            &self.rpc_tls.ca,
            Some(RPC_SERVER_NAME.into()),
        )
        .expect("CA file");
        url_api::analytics_client::endpoint(&format!("https://{}", self.grpc_addr), Some(&tls))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect to analytics-rpc over TLS")
    }

    /// Shortens `long_url` through the API; returns the code.
    pub async fn create_link(&self, long_url: &str) -> String {
        let resp = self
            .http
            .post(format!("{}/api/v1/links", self.base))
            .bearer_auth(self.api_key)
            .json(&json!({ "long_url": long_url }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        let created: Value = resp.json().await.unwrap();
        created["code"].as_str().expect("code").to_string()
    }

    /// `GET /api/v1/links/{code}` with the API key, optionally continuing `traceparent`.
    pub async fn link_details(&self, code: &str, traceparent: Option<&str>) -> Value {
        let mut req = self
            .http
            .get(format!("{}/api/v1/links/{code}", self.base))
            .bearer_auth(self.api_key);
        if let Some(tp) = traceparent {
            req = req.header("traceparent", tp);
        }
        req.send().await.unwrap().json().await.unwrap()
    }

    /// Graceful shutdown of the three services; each must end without error.
    pub async fn stop(self) {
        for stop in self.stops {
            let _ = stop.send(());
        }
        for (name, task) in self.tasks.into_iter().rev() {
            if let Err(e) = task.await.expect("service task panicked") {
                panic!("{name} ended with an error: {e}");
            }
        }
    }
}
