//! Servers the fault suite can take away and bring back: a librdkafka mock cluster whose
//! brokers go down and up (they keep their logs, like a restarted Kafka broker), and a
//! private Postgres cluster stopped and started with pg_ctl through scripts/lib/postgres.sh.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rdkafka::mocking::MockCluster;

enum Command {
    CreateTopic(String, i32, mpsc::Sender<Result<(), String>>),
    Down(mpsc::Sender<Result<(), String>>),
    Up(mpsc::Sender<Result<(), String>>),
    Shutdown,
}

/// A one-broker mock cluster on its own thread (the cluster handle is not `Send`).
pub struct FlakyBroker {
    bootstrap: String,
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

/// librdkafka numbers mock brokers from 1.
const BROKER_ID: i32 = 1;

impl FlakyBroker {
    pub fn start() -> Self {
        let (commands, rx) = mpsc::channel::<Command>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("flaky-kafka-broker".into())
            .spawn(move || {
                let cluster = MockCluster::new(1).expect("start the Kafka mock cluster");
                let _ = ready_tx.send(cluster.bootstrap_servers());
                while let Ok(cmd) = rx.recv() {
                    let str_err = |e: rdkafka::error::KafkaError| e.to_string();
                    match cmd {
                        Command::CreateTopic(name, partitions, reply) => {
                            let _ = reply
                                .send(cluster.create_topic(&name, partitions, 1).map_err(str_err));
                        }
                        Command::Down(reply) => {
                            let _ = reply.send(cluster.broker_down(BROKER_ID).map_err(str_err));
                        }
                        Command::Up(reply) => {
                            let _ = reply.send(cluster.broker_up(BROKER_ID).map_err(str_err));
                        }
                        Command::Shutdown => break,
                    }
                }
            })
            .expect("spawn mock cluster thread");
        let bootstrap = ready_rx.recv().expect("mock cluster thread died");
        Self {
            bootstrap,
            commands,
            thread: Some(thread),
        }
    }

    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    fn call(
        &self,
        make: impl FnOnce(mpsc::Sender<Result<(), String>>) -> Command,
    ) -> Result<(), String> {
        let (tx, rx) = mpsc::channel();
        self.commands.send(make(tx)).map_err(|e| e.to_string())?;
        rx.recv().map_err(|e| e.to_string())?
    }

    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<(), String> {
        self.call(|r| Command::CreateTopic(name.into(), partitions, r))
    }

    /// Closes the broker's connections and refuses new ones.
    pub fn down(&self) -> Result<(), String> {
        self.call(Command::Down)
    }

    pub fn up(&self) -> Result<(), String> {
        self.call(Command::Up)
    }
}

impl Drop for FlakyBroker {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A Postgres cluster of our own (initdb on first start), so stopping it harms no one else.
pub struct PgCluster {
    data: PathBuf,
    port: u16,
    scripts: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("{action} of the Postgres cluster in {data} failed: {detail}")]
pub struct PgError {
    action: &'static str,
    data: String,
    detail: String,
}

impl PgCluster {
    /// Creates and starts a cluster under `dir` on a free port.
    pub fn start(dir: &Path) -> Result<Self, PgError> {
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/lib");
        let c = Self {
            data: dir.join("pgdata"),
            port: crate::procs::free_port(),
            scripts,
        };
        c.run("start", "pg_start \"$1\" \"$2\" \"$3\"")?;
        Ok(c)
    }

    /// The `shortener` database (created by pg_start) as its superuser.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// `pg_ctl stop -m fast`: connections are cut, new ones refused.
    pub fn stop(&self) -> Result<(), PgError> {
        self.run("stop", "pg_stop \"$1\"")
    }

    pub fn restart(&self) -> Result<(), PgError> {
        self.run("start", "pg_start \"$1\" \"$2\" \"$3\"")
    }

    fn run(&self, action: &'static str, call: &str) -> Result<(), PgError> {
        let script = format!(
            "set -e; source \"{0}/common.sh\"; source \"{0}/postgres.sh\"; {call}",
            self.scripts.display()
        );
        let log = self.data.with_extension("log");
        let out = std::process::Command::new("bash")
            .args(["-c", &script, "pg"])
            .arg(&self.data)
            .arg(self.port.to_string())
            .arg(&log)
            .output()
            .map_err(|e| self.err(action, e.to_string()))?;
        if !out.status.success() {
            return Err(self.err(action, String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        Ok(())
    }

    fn err(&self, action: &'static str, detail: String) -> PgError {
        PgError {
            action,
            data: self.data.display().to_string(),
            detail,
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
