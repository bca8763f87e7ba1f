//! A closed-loop HTTP/1.1 load generator: a fixed number of keep-alive connections, each
//! sending its next request as soon as the previous response is read, for a fixed time.
//! Latency goes into an HDR histogram (microseconds, 3 significant digits).
//!
//! Closed loop means a slow response delays the next request on that connection, so the
//! tail is a lower bound under saturation (no coordinated-omission correction); the
//! comparisons we make (service vs baseline) use the same loop on both sides.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

/// Builds request number `n` of a connection (`n` counts across the whole run).
pub type RequestFactory = Arc<dyn Fn(u64) -> Request<Full<Bytes>> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("refusing to load {0}: only loopback targets are allowed")]
    NotLoopback(SocketAddr),
    #[error("no request succeeded against {0}")]
    NothingSucceeded(SocketAddr),
}

/// What to run.
#[derive(Clone)]
pub struct LoadSpec {
    pub target: SocketAddr,
    pub connections: usize,
    /// Time spent before recording (connections open, caches and pools warm up).
    pub warmup: Duration,
    /// Recorded time.
    pub duration: Duration,
    pub request: RequestFactory,
    /// The status every response must have; anything else counts as an error.
    pub expect: StatusCode,
}

/// What was measured over the recorded window.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub connections: usize,
    pub duration_s: f64,
    pub requests: u64,
    pub errors: u64,
    pub rps: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

struct ConnStats {
    hist: Histogram<u64>,
    errors: u64,
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs .. 60 s.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Runs `spec` and reports the recorded window.
pub async fn run(spec: LoadSpec) -> Result<LoadReport, LoadError> {
    if !spec.target.ip().is_loopback() {
        return Err(LoadError::NotLoopback(spec.target));
    }
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let record_from = start + spec.warmup;
    let stop_at = record_from + spec.duration;
    let tasks: Vec<_> = (0..spec.connections)
        .map(|_| {
            let spec = spec.clone();
            let counter = counter.clone();
            tokio::spawn(
                async move { connection_loop(&spec, &counter, record_from, stop_at).await },
            )
        })
        .collect();
    let mut hist = new_histogram();
    let mut errors = 0;
    for t in tasks {
        let stats = t.await.expect("load connection task panicked");
        hist.add(&stats.hist).expect("same histogram bounds");
        errors += stats.errors;
    }
    let measured = stop_at
        .min(Instant::now())
        .saturating_duration_since(record_from);
    let requests = hist.len();
    if requests == 0 {
        return Err(LoadError::NothingSucceeded(spec.target));
    }
    let ms = |us: u64| us as f64 / 1000.0;
    Ok(LoadReport {
        connections: spec.connections,
        duration_s: measured.as_secs_f64(),
        requests,
        errors,
        rps: requests as f64 / measured.as_secs_f64(),
        p50_ms: ms(hist.value_at_quantile(0.50)),
        p90_ms: ms(hist.value_at_quantile(0.90)),
        p99_ms: ms(hist.value_at_quantile(0.99)),
        max_ms: ms(hist.max()),
    })
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(target: SocketAddr) -> Option<Sender> {
    let stream = TcpStream::connect(target).await.ok()?;
    stream.set_nodelay(true).ok()?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Some(sender)
}

async fn connection_loop(
    spec: &LoadSpec,
    counter: &std::sync::atomic::AtomicU64,
    record_from: Instant,
    stop_at: Instant,
) -> ConnStats {
    let mut stats = ConnStats {
        hist: new_histogram(),
        errors: 0,
    };
    let mut sender: Option<Sender> = None;
    while Instant::now() < stop_at {
        let s = match sender.as_mut() {
            Some(s) => s,
            None => match connect(spec.target).await {
                Some(s) => sender.insert(s),
                None => {
                    if Instant::now() >= record_from {
                        stats.errors += 1;
                    }
                    // Back off a little so a dead server is not hammered with SYNs.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let req = (spec.request)(n);
        let sent = Instant::now();
        let outcome = async {
            s.ready().await.ok()?;
            let resp = s.send_request(req).await.ok()?;
            let status = resp.status();
            resp.into_body().collect().await.ok()?;
            Some(status)
        }
        .await;
        let elapsed = sent.elapsed();
        let recording = sent >= record_from && Instant::now() <= stop_at;
        match outcome {
            Some(status) if status == spec.expect => {
                if recording {
                    stats
                        .hist
                        .record((elapsed.as_micros() as u64).max(1))
                        .expect("latency within histogram bounds");
                }
            }
            Some(_) => {
                if recording {
                    stats.errors += 1;
                }
            }
            None => {
                if recording {
                    stats.errors += 1;
                }
                sender = None;
            }
        }
    }
    stats
}

/// A GET request for `path` with a Host header, empty body.
pub fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header(http::header::HOST, "127.0.0.1")
        .body(Full::new(Bytes::new()))
        .expect("valid request")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_non_loopback_targets() {
        let spec = LoadSpec {
            target: "192.0.2.1:80".parse().unwrap(),
            connections: 1,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(10),
            request: Arc::new(|_| get("/")),
            expect: StatusCode::OK,
        };
        assert!(matches!(run(spec).await, Err(LoadError::NotLoopback(_))));
    }
}
