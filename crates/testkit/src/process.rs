//! A service binary run as a child process, as a container would run it: configured by
//! environment only, stopped with SIGTERM, its output kept for assertions.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A free loopback address (bound then released; the child binds it right after).
pub fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().to_string()
}

pub struct ServiceProcess {
    child: Child,
    stdout: Option<JoinHandle<Vec<String>>>,
    stderr: Option<JoinHandle<Vec<String>>>,
}

/// What a stopped process left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Finished {
    /// Every output line, stdout first.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.stdout.iter().chain(&self.stderr).map(String::as_str)
    }
}

fn collect(stream: impl Read + Send + 'static) -> JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        BufReader::new(stream)
            .lines()
            .map_while(Result::ok)
            .collect()
    })
}

impl ServiceProcess {
    /// Starts `bin` with `env` on top of this process's environment minus every `OTEL_*`
    /// variable and the config-file variable, with JSON logs at `info`.
    pub fn spawn(bin: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("SHORTENER_CONFIG_FILE")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("OTEL_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(env.iter().copied());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("start {bin}: {e}"));
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Self {
            child,
            stdout: Some(stdout),
            stderr: Some(stderr),
        }
    }

    /// Polls `url` until it answers 200; panics when the process exits or `timeout` passes.
    pub async fn wait_ok(&mut self, url: &str, timeout: Duration) {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(resp) = client.get(url).send().await {
                if resp.status().as_u16() == 200 {
                    return;
                }
            }
            if let Some(status) = self.child.try_wait().expect("poll child") {
                let out = self.collect_output(status);
                panic!("process exited before {url} answered: {out:#?}");
            }
            assert!(Instant::now() < deadline, "{url} never answered 200");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends SIGTERM and waits (up to `timeout`, then SIGKILL and panic) for the exit.
    pub fn terminate(mut self, timeout: Duration) -> Finished {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll child") {
                return self.collect_output(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let status = self.child.wait().expect("reap child");
                let out = self.collect_output(status);
                panic!("no exit within {timeout:?} of SIGTERM: {out:#?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn collect_output(&mut self, status: ExitStatus) -> Finished {
        Finished {
            status,
            stdout: self
                .stdout
                .take()
                .map(|h| h.join().unwrap())
                .unwrap_or_default(),
            stderr: self
                .stderr
                .take()
                .map(|h| h.join().unwrap())
                .unwrap_or_default(),
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Panics unless the process exited cleanly, logged no error, and said nothing about
/// OpenTelemetry or OTLP (the exporter must be off, silently, without an endpoint).
pub fn assert_clean_exit_without_telemetry_noise(out: &Finished) {
    assert!(out.status.success(), "exit status {}: {out:#?}", out.status);
    for line in out.lines() {
        let lower = line.to_ascii_lowercase();
        assert!(
            !lower.contains("opentelemetry") && !lower.contains("otlp"),
            "telemetry noise: {line}"
        );
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(line) {
            assert_ne!(json["level"], "ERROR", "error logged: {line}");
        }
    }
    assert!(
        out.stdout.iter().any(|l| l.contains("SIGTERM")),
        "the shutdown was not logged: {out:#?}"
    );
}
