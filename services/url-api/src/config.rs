//! Settings of the url-api process: clap arguments backed by environment variables.

use std::net::SocketAddr;

use ipnet::IpNet;
use shortener_common::db::DatabaseArgs;
use shortener_common::kafka::KafkaArgs;
use shortener_common::telemetry::LogArgs;

pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:8080";
pub const DEFAULT_ADMIN_ADDR: &str = "0.0.0.0:9095";
pub const DEFAULT_PUBLIC_BASE_URL: &str = "http://localhost:8080";
pub const DEFAULT_RATE_LIMIT_PER_SECOND: u32 = 10;
pub const DEFAULT_RATE_LIMIT_BURST: u32 = 20;
pub const DEFAULT_CACHE_MAX_ENTRIES: u64 = 100_000;
pub const DEFAULT_CACHE_TTL_SECS: u64 = 60;
pub const DEFAULT_MAX_URL_LENGTH: usize = 2048;
pub const DEFAULT_ANALYTICS_RPC_URL: &str = "http://127.0.0.1:50051";
pub const DEFAULT_ANALYTICS_RPC_TIMEOUT_MS: u64 = 300;
pub const DEFAULT_ANALYTICS_MAX_CONCURRENT_PER_OWNER: usize = 4;
pub const DEFAULT_BREAKER_FAILURE_THRESHOLD: u32 = 5;
pub const DEFAULT_BREAKER_RESET_MS: u64 = 10_000;
pub const DEFAULT_READ_RATE_LIMIT_PER_SECOND: u32 = 100;
pub const DEFAULT_READ_RATE_LIMIT_BURST: u32 = 200;
/// Redirect lookups that miss the cache, per second per client network.
pub const DEFAULT_REDIRECT_MISS_PER_SECOND: u32 = 50;
pub const DEFAULT_REDIRECT_MISS_BURST: u32 = 200;
pub const DEFAULT_CLICK_QUEUE_CAPACITY: usize = 100_000;
/// Longest a click waits in url-api for its batch to fill.
pub const DEFAULT_CLICK_LINGER_MS: u64 = 25;
/// Dashboard sessions last 12 hours.
pub const DEFAULT_UI_SESSION_TTL_SECS: u64 = 12 * 3600;
/// Longest wait for a request's head, idle keep-alive time included.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Longest a request may take from its head to its answer, body included.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;
/// Most connections served at once (each costs a few KiB of buffers).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Most clicks in one Kafka message.
pub const DEFAULT_CLICK_BATCH_MAX: usize = shortener_common::event_batch::DEFAULT_BATCH_MAX;

/// Everything `url-api serve` needs. `Debug` masks the API keys (and, through the shared
/// argument types, the database and SASL passwords).
#[derive(clap::Args, Clone)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = DEFAULT_LISTEN_ADDR)]
    pub listen_addr: SocketAddr,
    /// Address of `/healthz`, `/readyz` and `/metrics` (not for the public).
    #[arg(long, env = "ADMIN_ADDR", default_value = DEFAULT_ADMIN_ADDR)]
    pub admin_addr: SocketAddr,
    /// Base of the short URLs handed out (`<base>/<code>`).
    #[arg(long, env = "PUBLIC_BASE_URL", default_value = DEFAULT_PUBLIC_BASE_URL)]
    pub public_base_url: String,
    /// Comma-separated `name:key` API keys; hashed at load, the plaintext is not kept.
    #[arg(long, env = "API_KEYS", default_value = "", hide_env_values = true)]
    pub api_keys: String,
    /// Comma-separated `name:sha256hex` API key digests.
    #[arg(
        long,
        env = "API_KEY_HASHES",
        default_value = "",
        hide_env_values = true
    )]
    pub api_key_hashes: String,
    /// Sustained writes per second allowed per API key (or client IP without a valid key).
    #[arg(long, env = "RATE_LIMIT_PER_SECOND", default_value_t = DEFAULT_RATE_LIMIT_PER_SECOND)]
    pub rate_limit_per_second: u32,
    /// Writes allowed in a burst before the per-second rate applies.
    #[arg(long, env = "RATE_LIMIT_BURST", default_value_t = DEFAULT_RATE_LIMIT_BURST)]
    pub rate_limit_burst: u32,
    /// Sustained API reads (link details, lists, stats) per second per API key (or client IP).
    #[arg(long, env = "READ_RATE_LIMIT_PER_SECOND", default_value_t = DEFAULT_READ_RATE_LIMIT_PER_SECOND)]
    pub read_rate_limit_per_second: u32,
    /// API reads allowed in a burst before the per-second rate applies.
    #[arg(long, env = "READ_RATE_LIMIT_BURST", default_value_t = DEFAULT_READ_RATE_LIMIT_BURST)]
    pub read_rate_limit_burst: u32,
    /// Redirects per second per client (IPv4 address or IPv6 /64) that may miss the cache
    /// and query the database; beyond it a miss answers 429 without a query. Cache hits
    /// are not counted. 0 disables the limit.
    #[arg(long, env = "REDIRECT_MISS_PER_SECOND", default_value_t = DEFAULT_REDIRECT_MISS_PER_SECOND)]
    pub redirect_miss_per_second: u32,
    /// Cache-missing redirects allowed in a burst before the per-second rate applies.
    #[arg(long, env = "REDIRECT_MISS_BURST", default_value_t = DEFAULT_REDIRECT_MISS_BURST)]
    pub redirect_miss_burst: u32,
    /// Allow targets on loopback, private, link-local and similar addresses.
    #[arg(long, env = "ALLOW_PRIVATE_TARGETS", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_private_targets: bool,
    /// Comma-separated CIDRs (or single IPs) of proxies whose X-Forwarded-For is trusted;
    /// empty means never trust it.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "", value_parser = parse_proxies)]
    pub trusted_proxies: TrustedProxies,
    /// Largest number of short codes kept in the redirect cache (0 disables it).
    #[arg(long, env = "CACHE_MAX_ENTRIES", default_value_t = DEFAULT_CACHE_MAX_ENTRIES)]
    pub cache_max_entries: u64,
    /// How long a cached short code lives, in seconds.
    #[arg(long, env = "CACHE_TTL_SECS", default_value_t = DEFAULT_CACHE_TTL_SECS)]
    pub cache_ttl_secs: u64,
    /// Longest accepted long URL, in bytes.
    #[arg(long, env = "MAX_URL_LENGTH", default_value_t = DEFAULT_MAX_URL_LENGTH)]
    pub max_url_length: usize,
    /// gRPC endpoint of analytics-rpc.
    #[arg(long, env = "ANALYTICS_RPC_URL", default_value = DEFAULT_ANALYTICS_RPC_URL)]
    pub analytics_rpc_url: String,
    /// PEM file of the CA analytics-rpc's certificate must chain to (`ca.crt` of its TLS
    /// Secret). Set, calls go over TLS and ANALYTICS_RPC_URL must be https://.
    #[arg(long, env = "ANALYTICS_RPC_CA")]
    pub analytics_rpc_ca: Option<std::path::PathBuf>,
    /// Name analytics-rpc's certificate must carry, when not the host of ANALYTICS_RPC_URL.
    #[arg(long, env = "ANALYTICS_RPC_SERVER_NAME")]
    pub analytics_rpc_server_name: Option<String>,
    /// Shared secret sent to analytics-rpc (its RPC_AUTH_TOKEN) with every call.
    #[arg(long, env = "ANALYTICS_RPC_TOKEN", hide_env_values = true)]
    pub analytics_rpc_token: Option<String>,
    /// Deadline of each analytics call, in milliseconds.
    #[arg(long, env = "ANALYTICS_RPC_TIMEOUT_MS", default_value_t = DEFAULT_ANALYTICS_RPC_TIMEOUT_MS)]
    pub analytics_rpc_timeout_ms: u64,
    /// Most stats and account-analytics calls one API key may have in flight; more answer
    /// 429 (link details' click counts are cheap and not bounded).
    #[arg(long, env = "ANALYTICS_MAX_CONCURRENT_PER_OWNER", default_value_t = DEFAULT_ANALYTICS_MAX_CONCURRENT_PER_OWNER)]
    pub analytics_max_concurrent_per_owner: usize,
    /// Consecutive analytics failures that open the circuit breaker.
    #[arg(long, env = "BREAKER_FAILURE_THRESHOLD", default_value_t = DEFAULT_BREAKER_FAILURE_THRESHOLD)]
    pub breaker_failure_threshold: u32,
    /// How long the breaker stays open before one trial call, in milliseconds.
    #[arg(long, env = "BREAKER_RESET_MS", default_value_t = DEFAULT_BREAKER_RESET_MS)]
    pub breaker_reset_ms: u64,
    /// Click events buffered locally while the brokers are slow or down; beyond it
    /// clicks are dropped and counted.
    #[arg(long, env = "CLICK_QUEUE_CAPACITY", default_value_t = DEFAULT_CLICK_QUEUE_CAPACITY)]
    pub click_queue_capacity: usize,
    /// Longest a click waits to be sent with others in one Kafka message, in milliseconds.
    #[arg(long, env = "CLICK_LINGER_MS", default_value_t = DEFAULT_CLICK_LINGER_MS, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub click_linger_ms: u64,
    /// Most clicks in one Kafka message (a ClickBatch, also sent once it reaches 512 KiB):
    /// bigger batches cost less CPU per click in url-api and the brokers (docs/kafka.md,
    /// docs/performance.md).
    #[arg(long, env = "CLICK_BATCH_MAX", default_value_t = DEFAULT_CLICK_BATCH_MAX, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub click_batch_max: usize,
    /// How long a dashboard session lasts after sign-in, in seconds.
    #[arg(long, env = "UI_SESSION_TTL_SECS", default_value_t = DEFAULT_UI_SESSION_TTL_SECS, value_parser = clap::value_parser!(u64).range(60..=2_592_000))]
    pub ui_session_ttl_secs: u64,
    /// MaxMind-format country database (mmdb) for redirect rules by country; unset means
    /// such rules never match.
    #[arg(long, env = "GEOIP_DB_PATH")]
    pub geoip_db_path: Option<std::path::PathBuf>,
    /// Longest wait for a complete request head, in milliseconds; it also closes idle
    /// keep-alive connections and clients that send their headers slowly.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = DEFAULT_HEADER_READ_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,
    /// Longest a request may take once its head has arrived (body and answer), in
    /// milliseconds; past it the answer is 408 `request_timeout`.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = DEFAULT_REQUEST_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout_ms: u64,
    /// Most connections served at once; further clients wait to be accepted.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections: usize,
    /// Publish a ClickEvent per redirect.
    #[arg(long, env = "CLICKS_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub clicks_enabled: bool,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let masked = |keys: &str| if keys.is_empty() { "" } else { "***" };
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field("admin_addr", &self.admin_addr)
            .field("public_base_url", &self.public_base_url)
            .field("api_keys", &masked(&self.api_keys))
            .field("api_key_hashes", &masked(&self.api_key_hashes))
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field(
                "read_rate_limit_per_second",
                &self.read_rate_limit_per_second,
            )
            .field("read_rate_limit_burst", &self.read_rate_limit_burst)
            .field("redirect_miss_per_second", &self.redirect_miss_per_second)
            .field("redirect_miss_burst", &self.redirect_miss_burst)
            .field("allow_private_targets", &self.allow_private_targets)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("cache_max_entries", &self.cache_max_entries)
            .field("cache_ttl_secs", &self.cache_ttl_secs)
            .field("max_url_length", &self.max_url_length)
            .field("analytics_rpc_url", &self.analytics_rpc_url)
            .field("analytics_rpc_ca", &self.analytics_rpc_ca)
            .field("analytics_rpc_server_name", &self.analytics_rpc_server_name)
            .field(
                "analytics_rpc_token",
                &self.analytics_rpc_token.as_ref().map(|_| "***"),
            )
            .field("analytics_rpc_timeout_ms", &self.analytics_rpc_timeout_ms)
            .field(
                "analytics_max_concurrent_per_owner",
                &self.analytics_max_concurrent_per_owner,
            )
            .field("breaker_failure_threshold", &self.breaker_failure_threshold)
            .field("breaker_reset_ms", &self.breaker_reset_ms)
            .field("click_queue_capacity", &self.click_queue_capacity)
            .field("click_linger_ms", &self.click_linger_ms)
            .field("click_batch_max", &self.click_batch_max)
            .field("ui_session_ttl_secs", &self.ui_session_ttl_secs)
            .field("geoip_db_path", &self.geoip_db_path)
            .field("clicks_enabled", &self.clicks_enabled)
            .field("header_read_timeout_ms", &self.header_read_timeout_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("max_connections", &self.max_connections)
            .field("database", &self.database)
            .field("kafka", &self.kafka)
            .field("log", &self.log)
            .finish()
    }
}

impl Config {
    /// Every setting at its documented default, with the given database and brokers.
    /// Does not read the environment (for tests and embedding).
    pub fn new(database: DatabaseArgs, kafka: KafkaArgs) -> Self {
        Self {
            listen_addr: DEFAULT_LISTEN_ADDR.parse().expect("valid default address"),
            admin_addr: DEFAULT_ADMIN_ADDR.parse().expect("valid default address"),
            public_base_url: DEFAULT_PUBLIC_BASE_URL.into(),
            api_keys: String::new(),
            api_key_hashes: String::new(),
            rate_limit_per_second: DEFAULT_RATE_LIMIT_PER_SECOND,
            rate_limit_burst: DEFAULT_RATE_LIMIT_BURST,
            read_rate_limit_per_second: DEFAULT_READ_RATE_LIMIT_PER_SECOND,
            read_rate_limit_burst: DEFAULT_READ_RATE_LIMIT_BURST,
            redirect_miss_per_second: DEFAULT_REDIRECT_MISS_PER_SECOND,
            redirect_miss_burst: DEFAULT_REDIRECT_MISS_BURST,
            allow_private_targets: false,
            trusted_proxies: TrustedProxies::default(),
            cache_max_entries: DEFAULT_CACHE_MAX_ENTRIES,
            cache_ttl_secs: DEFAULT_CACHE_TTL_SECS,
            max_url_length: DEFAULT_MAX_URL_LENGTH,
            analytics_rpc_url: DEFAULT_ANALYTICS_RPC_URL.into(),
            analytics_rpc_ca: None,
            analytics_rpc_server_name: None,
            analytics_rpc_token: None,
            analytics_rpc_timeout_ms: DEFAULT_ANALYTICS_RPC_TIMEOUT_MS,
            analytics_max_concurrent_per_owner: DEFAULT_ANALYTICS_MAX_CONCURRENT_PER_OWNER,
            breaker_failure_threshold: DEFAULT_BREAKER_FAILURE_THRESHOLD,
            breaker_reset_ms: DEFAULT_BREAKER_RESET_MS,
            click_queue_capacity: DEFAULT_CLICK_QUEUE_CAPACITY,
            click_linger_ms: DEFAULT_CLICK_LINGER_MS,
            click_batch_max: DEFAULT_CLICK_BATCH_MAX,
            ui_session_ttl_secs: DEFAULT_UI_SESSION_TTL_SECS,
            geoip_db_path: None,
            clicks_enabled: true,
            header_read_timeout_ms: DEFAULT_HEADER_READ_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            database,
            kafka,
            log: LogArgs {
                log_format: shortener_common::telemetry::LogFormat::Json,
                log_filter: "info".into(),
            },
        }
    }
}

/// Networks whose X-Forwarded-For header is believed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrustedProxies(pub Vec<IpNet>);

/// Parses comma-separated CIDRs; a bare IP means a single host.
pub fn parse_proxies(text: &str) -> Result<TrustedProxies, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{s:?} is neither a CIDR nor an IP address"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(TrustedProxies)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_accept_cidrs_and_single_ips() {
        let p = parse_proxies(" 10.0.0.0/8, 192.0.2.1 ,fd00::/8,").unwrap();
        assert_eq!(p.0.len(), 3);
        assert_eq!(p.0[1].to_string(), "192.0.2.1/32");
        assert_eq!(parse_proxies("").unwrap(), TrustedProxies::default());
        assert!(parse_proxies("10.0.0.0/33").is_err());
        assert!(parse_proxies("proxy.local").is_err());
    }

    #[test]
    fn debug_output_hides_keys_and_passwords() {
        let mut kafka = KafkaArgs::new("b:9092", "clicks");
        kafka.kafka_sasl_password = Some("kafka-pass".into());
        let mut config = Config::new(
            DatabaseArgs::with_url("postgres://app:db-pass@db/shortener"),
            kafka,
        );
        config.api_keys = "alice:alice-key".into();
        config.api_key_hashes = format!("bob:{}", "ab".repeat(32));
        let text = format!("{config:?}");
        for secret in ["alice-key", "db-pass", "kafka-pass", &"ab".repeat(32)] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains(r#"api_keys: "***""#), "{text}");
    }

    #[test]
    fn click_batching_settings_are_bounded() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            config: Config,
        }
        let parse = |extra: &[&str]| {
            let base = ["url-api", "--database-url", "postgres://db/s"];
            <Cli as clap::Parser>::try_parse_from(base.iter().chain(extra)).map(|c| c.config)
        };
        let defaults = parse(&[]).unwrap();
        assert_eq!(
            (defaults.click_batch_max, defaults.click_linger_ms),
            (DEFAULT_CLICK_BATCH_MAX, DEFAULT_CLICK_LINGER_MS)
        );
        let set = parse(&["--click-batch-max", "500", "--click-linger-ms", "5"]).unwrap();
        assert_eq!((set.click_batch_max, set.click_linger_ms), (500, 5));
        for bad in [
            ["--click-batch-max", "0"],
            ["--click-batch-max", "10001"],
            ["--click-linger-ms", "0"],
            ["--click-linger-ms", "60001"],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?} accepted");
        }
    }
}
