//! tansu (a Kafka-protocol broker in one binary, `$TANSU_BIN`) as a separate process, so
//! it can be killed and restarted. It stores in memory: a restart loses topics and
//! messages, so [`Tansu::restart`] recreates the topics.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

use crate::procs::{free_port, ProcError, Service, ServiceSpec};

#[derive(Debug, thiserror::Error)]
pub enum TansuError {
    #[error("TANSU_BIN is not set (./scripts/lib/tansu.sh provides the binary)")]
    NoBinary,
    #[error(transparent)]
    Proc(#[from] ProcError),
    #[error("tansu did not accept connections on {0} within 30 s")]
    NotListening(String),
    #[error("create topic {topic}: {message}")]
    CreateTopic { topic: String, message: String },
}

pub struct Tansu {
    service: Service,
    port: u16,
    topics: Vec<(String, i32)>,
}

impl Tansu {
    /// Starts a broker on a free loopback port.
    pub async fn start(log_dir: &Path) -> Result<Self, TansuError> {
        let bin: PathBuf = std::env::var_os("TANSU_BIN")
            .ok_or(TansuError::NoBinary)?
            .into();
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let spec = ServiceSpec::new("tansu", bin, log_dir)
            .arg("broker")
            .arg("--listener-url")
            .arg(&url)
            .arg("--advertised-listener-url")
            .arg(&url)
            .arg("--storage-engine")
            .arg("memory://tansu/");
        let service = spec.spawn()?;
        let t = Self {
            service,
            port,
            topics: Vec::new(),
        };
        t.wait_listening().await?;
        Ok(t)
    }

    pub fn pid(&self) -> Option<u32> {
        self.service.pid()
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn wait_listening(&self) -> Result<(), TansuError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(TansuError::NotListening(self.bootstrap()))
    }

    /// Creates `topic` (replication factor 1); an existing topic is fine.
    pub async fn create_topic(&mut self, topic: &str, partitions: i32) -> Result<(), TansuError> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .create()
            .map_err(|e| TansuError::CreateTopic {
                topic: topic.into(),
                message: e.to_string(),
            })?;
        let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results =
            admin
                .create_topics([&new], &opts)
                .await
                .map_err(|e| TansuError::CreateTopic {
                    topic: topic.into(),
                    message: e.to_string(),
                })?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(TansuError::CreateTopic {
                        topic: topic.into(),
                        message: code.to_string(),
                    })
                }
            }
        }
        if !self.topics.iter().any(|(t, _)| t == topic) {
            self.topics.push((topic.into(), partitions));
        }
        Ok(())
    }

    /// SIGKILL: the broker vanishes mid-conversation.
    pub async fn kill(&mut self) {
        self.service.kill().await;
    }

    /// Starts the broker again on the same port and recreates the topics it had.
    pub async fn restart(&mut self) -> Result<(), TansuError> {
        self.service.restart()?;
        self.wait_listening().await?;
        for (topic, partitions) in self.topics.clone() {
            self.create_topic(&topic, partitions).await?;
        }
        Ok(())
    }
}
