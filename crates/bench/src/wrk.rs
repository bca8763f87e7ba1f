//! The second load generator: Debian's `wrk` (C, epoll, one thread), so a result does not
//! hinge on our own client's cost or behaviour. Closed loop over keep-alive connections
//! like [`crate::loadgen`]; each request is `GET /{code}` for a code drawn at random from a
//! file by a Lua script.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::loadgen::LoadReport;

/// Picks a random code (one per line in `$WRK_CODES`) for every request.
const SCRIPT: &str = r#"
local codes = {}
for line in io.lines(os.getenv("WRK_CODES")) do codes[#codes + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/" .. codes[math.random(#codes)])
end
"#;

/// The same, each request also carrying the headers of `$WRK_HEADERS` (`Name: value` lines).
const SCRIPT_WITH_HEADERS: &str = r#"
local codes = {}
for line in io.lines(os.getenv("WRK_CODES")) do codes[#codes + 1] = line end
local headers = {}
for line in io.lines(os.getenv("WRK_HEADERS")) do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then headers[name] = value end
end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/" .. codes[math.random(#codes)], headers)
end
"#;

#[derive(Debug, thiserror::Error)]
pub enum WrkError {
    #[error("refusing to load {0}: only loopback targets are allowed")]
    NotLoopback(SocketAddr),
    #[error("cannot run wrk (install Debian's wrk; ./scripts/bench does): {0}")]
    Spawn(#[source] std::io::Error),
    #[error("wrk failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
    #[error("unreadable wrk output ({0}):\n{1}")]
    Output(&'static str, String),
}

/// A wrk set-up: the codes it requests, in files under a work directory.
pub struct Wrk {
    script: PathBuf,
    codes: PathBuf,
    /// `Name: value` lines sent with every request, or None.
    headers: Option<PathBuf>,
    /// `taskset -c` CPU list for wrk, or None.
    pub cpus: Option<String>,
}

impl Wrk {
    /// Writes the script and the codes under `dir`.
    pub fn new(dir: &Path, codes: &[String]) -> std::io::Result<Self> {
        let script = dir.join("wrk-codes.lua");
        let list = dir.join("wrk-codes.txt");
        std::fs::write(&script, SCRIPT)?;
        std::fs::write(&list, codes.join("\n") + "\n")?;
        Ok(Self {
            script,
            codes: list,
            headers: None,
            cpus: None,
        })
    }

    /// Like [`Wrk::new`], every request also carrying `headers`; the files are named after
    /// `name`, so several set-ups can share `dir`. `codes` may carry a query string.
    pub fn with_headers(
        dir: &Path,
        name: &str,
        codes: &[String],
        headers: &[(&str, &str)],
    ) -> std::io::Result<Self> {
        let script = dir.join(format!("wrk-{name}.lua"));
        let list = dir.join(format!("wrk-{name}-codes.txt"));
        let header_file = dir.join(format!("wrk-{name}-headers.txt"));
        std::fs::write(&script, SCRIPT_WITH_HEADERS)?;
        std::fs::write(&list, codes.join("\n") + "\n")?;
        let lines: String = headers.iter().map(|(n, v)| format!("{n}: {v}\n")).collect();
        std::fs::write(&header_file, lines)?;
        Ok(Self {
            script,
            codes: list,
            headers: Some(header_file),
            cpus: None,
        })
    }

    /// A warm-up run (not recorded), then the recorded one. Every answer must be a 302.
    pub async fn run(
        &self,
        target: SocketAddr,
        connections: usize,
        warmup: Duration,
        duration: Duration,
    ) -> Result<LoadReport, WrkError> {
        if !target.ip().is_loopback() {
            return Err(WrkError::NotLoopback(target));
        }
        if !warmup.is_zero() {
            self.once(target, connections, warmup).await?;
        }
        let text = self.once(target, connections, duration).await?;
        parse(&text, connections)
    }

    async fn once(
        &self,
        target: SocketAddr,
        connections: usize,
        duration: Duration,
    ) -> Result<String, WrkError> {
        // wrk counts whole seconds.
        let secs = duration.as_secs().max(1);
        let mut cmd = match &self.cpus {
            Some(cpus) => {
                let mut c = tokio::process::Command::new("taskset");
                c.arg("-c").arg(cpus).arg("wrk");
                c
            }
            None => tokio::process::Command::new("wrk"),
        };
        if let Some(headers) = &self.headers {
            cmd.env("WRK_HEADERS", headers);
        }
        let out = cmd
            .args(["-t1", "--latency", "--timeout", "10s"])
            .arg(format!("-c{connections}"))
            .arg(format!("-d{secs}s"))
            .arg("-s")
            .arg(&self.script)
            .arg(format!("http://{target}"))
            .env("WRK_CODES", &self.codes)
            .kill_on_drop(true)
            .output()
            .await
            .map_err(WrkError::Spawn)?;
        if !out.status.success() {
            return Err(WrkError::Failed {
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// `635.91us`, `1.20ms`, `2.00s` in milliseconds.
fn millis(text: &str) -> Option<f64> {
    let (number, factor) = if let Some(n) = text.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1000.0)
    } else {
        return None;
    };
    number.parse::<f64>().ok().map(|v| v * factor)
}

/// Reads wrk's report (run with `--latency`). Answers other than 2xx/3xx and socket errors
/// count as errors.
pub fn parse(text: &str, connections: usize) -> Result<LoadReport, WrkError> {
    let bad = |what| WrkError::Output(what, text.to_owned());
    let words = |line: &str| {
        line.split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let mut requests = None;
    let mut duration_s = None;
    let mut max_ms = None;
    let mut percentiles = Vec::new();
    let mut errors = 0u64;
    for line in text.lines().map(str::trim) {
        let w = words(line);
        match w.as_slice() {
            // "123456 requests in 10.00s, 12.34MB read"
            [n, r, i, d, ..] if r == "requests" && i == "in" => {
                requests = n.parse::<u64>().ok();
                duration_s = millis(d.trim_end_matches(',')).map(|ms| ms / 1000.0);
            }
            // "Latency   635.91us  120.00us   5.00ms   90.00%"
            [l, _avg, _stdev, max, ..] if l == "Latency" => max_ms = millis(max),
            // "99%    1.20ms"
            [p, v] if p.ends_with('%') => {
                if let (Ok(p), Some(v)) = (p.trim_end_matches('%').parse::<f64>(), millis(v)) {
                    percentiles.push((p, v));
                }
            }
            _ => {}
        }
        if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += n.trim().parse::<u64>().map_err(|_| bad("non-2xx count"))?;
        }
        if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in rest.split(',') {
                if let Some(n) = part.split_whitespace().nth(1) {
                    errors += n.parse::<u64>().map_err(|_| bad("socket errors"))?;
                }
            }
        }
    }
    let requests = requests.ok_or_else(|| bad("request count"))?;
    let duration_s = duration_s
        .filter(|d| *d > 0.0)
        .ok_or_else(|| bad("duration"))?;
    let at = |p: f64| {
        percentiles
            .iter()
            .find(|(q, _)| *q == p)
            .map(|(_, v)| *v)
            .ok_or_else(|| bad("latency distribution (run with --latency)"))
    };
    Ok(LoadReport {
        connections,
        duration_s,
        requests,
        errors,
        rps: requests as f64 / duration_s,
        p50_ms: at(50.0)?,
        p90_ms: at(90.0)?,
        p99_ms: at(99.0)?,
        max_ms: max_ms.ok_or_else(|| bad("latency max"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 10s test @ http://127.0.0.1:40000
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   635.91us  120.00us   5.00ms   90.00%
    Req/Sec   100.00k     5.00k  110.00k    70.00%
  Latency Distribution
     50%  612.00us
     75%  700.00us
     90%  800.00us
     99%    1.20ms
  1000000 requests in 10.00s, 150.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec: 100000.00
Transfer/sec:     15.00MB
";

    #[test]
    fn reads_rate_latencies_and_errors() {
        let r = parse(REPORT, 64).unwrap();
        assert_eq!(r.requests, 1_000_000);
        assert!((r.rps - 100_000.0).abs() < 1e-6);
        assert!((r.p50_ms - 0.612).abs() < 1e-9);
        assert!((r.p90_ms - 0.8).abs() < 1e-9);
        assert!((r.p99_ms - 1.2).abs() < 1e-9);
        assert!((r.max_ms - 5.0).abs() < 1e-9);
        assert_eq!(r.errors, 7);
    }

    /// The headers script sends every header and the codes' query strings as given.
    #[tokio::test]
    #[ignore = "needs Debian's wrk on PATH (./scripts/bench installs it)"]
    async fn sends_the_given_headers_and_query() {
        use axum::http::{HeaderMap, StatusCode, Uri};
        use std::sync::{Arc, Mutex};

        type Seen = Arc<Mutex<std::collections::HashSet<String>>>;
        let seen: Seen = Arc::default();
        let app = axum::Router::new().fallback({
            let seen = seen.clone();
            move |uri: Uri, headers: HeaderMap| async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_string()
                };
                let line = format!("{uri} {} {}", h("user-agent"), h("x-forwarded-for"));
                seen.lock().unwrap().insert(line);
                StatusCode::FOUND
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let dir = std::env::temp_dir().join(format!("wrk-headers-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let codes = vec!["a?q=1&x=2".to_string(), "b?q=1&x=2".to_string()];
        let wrk = Wrk::with_headers(
            &dir,
            "t",
            &codes,
            &[
                ("User-Agent", "Bench/1 (x; y)"),
                ("X-Forwarded-For", "8.8.8.8"),
            ],
        )
        .unwrap();
        let report = wrk
            .run(addr, 2, Duration::ZERO, Duration::from_secs(1))
            .await
            .unwrap();
        assert!(report.requests > 0 && report.errors == 0, "{report:?}");
        let seen = seen.lock().unwrap();
        let want: std::collections::HashSet<String> = [
            "/a?q=1&x=2 Bench/1 (x; y) 8.8.8.8".to_string(),
            "/b?q=1&x=2 Bench/1 (x; y) 8.8.8.8".to_string(),
        ]
        .into();
        assert_eq!(*seen, want);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn refuses_output_without_a_distribution() {
        let without: String = REPORT
            .lines()
            .filter(|l| !l.trim_start().starts_with("99%"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(matches!(parse(&without, 64), Err(WrkError::Output(_, _))));
        assert_eq!(millis("2.00s"), Some(2000.0));
        assert_eq!(millis("1.50m"), Some(90_000.0));
        assert_eq!(millis("12"), None);
    }
}
