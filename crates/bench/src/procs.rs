//! The service binaries as child processes: started with an environment, waited for,
//! stopped politely (SIGTERM) or killed (SIGKILL), restarted. Output goes to a log file.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("binary {0} not found: build it first (cargo build --release --bins)")]
    MissingBinary(PathBuf),
    #[error("cannot start {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("{name} did not answer {url} within {timeout:?} (log: {log})")]
    NotReady {
        name: String,
        url: String,
        timeout: Duration,
        log: String,
    },
    #[error("{name} exited early with {status} (log: {log})")]
    Exited {
        name: String,
        status: std::process::ExitStatus,
        log: String,
    },
}

/// Directory of the workspace's build outputs for `profile` (`debug` or `release`),
/// overridable with SHORTENER_BIN_DIR.
pub fn bin_dir(profile: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("SHORTENER_BIN_DIR") {
        return dir.into();
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join(profile)
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// How to (re)start one service.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub name: String,
    pub binary: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub log: PathBuf,
    /// Optional `taskset -c` CPU list.
    pub cpus: Option<String>,
}

impl ServiceSpec {
    pub fn new(name: &str, binary: PathBuf, log_dir: &Path) -> Self {
        Self {
            name: name.into(),
            binary,
            args: Vec::new(),
            env: Vec::new(),
            log: log_dir.join(format!("{name}.log")),
            cpus: None,
        }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn spawn(&self) -> Result<Service, ProcError> {
        if !self.binary.exists() {
            return Err(ProcError::MissingBinary(self.binary.clone()));
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|source| self.spawn_error(source))?;
        let err_log = log.try_clone().map_err(|source| self.spawn_error(source))?;
        let mut cmd = match &self.cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.arg("-c").arg(cpus).arg(&self.binary);
                c
            }
            None => Command::new(&self.binary),
        };
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| self.spawn_error(source))?;
        Ok(Service {
            spec: self.clone(),
            child,
        })
    }

    fn spawn_error(&self, source: std::io::Error) -> ProcError {
        ProcError::Spawn {
            name: self.name.clone(),
            source,
        }
    }
}

/// A running child process; killed when dropped.
pub struct Service {
    pub spec: ServiceSpec,
    child: Child,
}

impl Service {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Polls `url` until it answers 2xx; fails early if the process exits.
    pub async fn wait_ready(&mut self, url: &str, timeout: Duration) -> Result<(), ProcError> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(ProcError::Exited {
                    name: self.spec.name.clone(),
                    status,
                    log: self.spec.log.display().to_string(),
                });
            }
            let ok = client
                .get(url)
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ProcError::NotReady {
            name: self.spec.name.clone(),
            url: url.into(),
            timeout,
            log: self.spec.log.display().to_string(),
        })
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL: no shutdown hooks run, nothing is flushed.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Sends `signal` (a `kill -s` name such as `STOP` or `CONT`).
    pub fn signal(&self, signal: &str) -> std::io::Result<()> {
        let pid = self
            .child
            .id()
            .ok_or_else(|| std::io::Error::other("process has exited"))?;
        let status = std::process::Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "kill -s {signal} {pid} failed"
            )))
        }
    }

    /// SIGTERM, then SIGKILL after `grace`.
    pub async fn terminate(&mut self, grace: Duration) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            if tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return;
            }
        }
        self.kill().await;
    }

    /// Starts the same command again (after a kill or terminate).
    pub fn restart(&mut self) -> Result<(), ProcError> {
        *self = self.spec.spawn()?;
        Ok(())
    }
}

/// The sum of every sample of `name` in a Prometheus/OpenMetrics text exposition
/// (all label sets), or None when the metric is absent.
pub fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if rest.starts_with('{') {
            rest.rsplit_once('}').map(|(_, v)| v)
        } else if rest.starts_with(' ') {
            Some(rest)
        } else {
            None
        };
        if let Some(v) = value.and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// CPU time (user + system, all threads) a process has used so far, from
/// `/proc/<pid>/stat` (Linux; in USER_HZ ticks of 10 ms). None when unreadable.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after `comm`.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Like [`metric_sum`], over the samples whose line contains `needle` (e.g. a label).
pub fn metric_sum_matching(text: &str, name: &str, needle: &str) -> f64 {
    let lines: String = text
        .lines()
        .filter(|l| l.contains(needle))
        .map(|l| format!("{l}\n"))
        .collect();
    metric_sum(&lines, name).unwrap_or(0.0)
}

/// GET `url` and return [`metric_sum`] of `name` (0 when absent).
pub async fn scrape(url: &str, name: &str) -> Result<f64, reqwest::Error> {
    let text = reqwest::get(url).await?.text().await?;
    Ok(metric_sum(&text, name).unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_samples_across_labels() {
        let text = "# HELP x_total X\n# TYPE x_total counter\nx_total{a=\"1\"} 2\nx_total{a=\"2\"} 3.5\nx_total_other 9\nx 1\n";
        assert_eq!(metric_sum(text, "x_total"), Some(5.5));
        assert_eq!(metric_sum(text, "x"), Some(1.0));
        assert_eq!(metric_sum(text, "y"), None);
    }
}
