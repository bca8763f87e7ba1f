//! The HTTP/1.1 server under the router: hyper's connection handling with the limits that
//! keep slow, idle or too many clients from holding the service.
//!
//! - **Header read timeout** (hyper's timer): a connection whose request head is not
//!   complete in time is closed. It runs from the moment the server waits for a head, so
//!   it also closes idle keep-alive connections and clients that trickle header bytes
//!   (slowloris).
//! - **Connection cap**: at most `max_connections` connections are served at once; past
//!   that the server stops accepting until one closes, and further clients wait in the
//!   kernel's accept backlog instead of costing memory here.
//! - The **request timeout** (reading the body and handling) is a router layer,
//!   [`crate::deadline`], so its 408 is counted and traced like any answer.
//!
//! HTTP/2 is not served: TLS and HTTP/2 end at the ingress, and without protocol sniffing
//! (hyper-util's `auto`, which has no timeout of its own) a silent connection is covered
//! by the header timeout from its first byte on.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Semaphore};

/// Largest request head hyper buffers; a longer head is answered 431. Bounds the memory
/// of each connection's read buffer.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Pause after an accept error that is not the client's (e.g. out of file descriptors),
/// so the loop does not spin while the condition lasts.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// What bounds the connections of one server.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Longest wait for a complete request head, idle keep-alive time included.
    pub header_read_timeout: Duration,
    /// Most connections served at once.
    pub max_connections: usize,
}

/// The hyper HTTP/1.1 settings every connection is served with.
fn http1(limits: &ConnectionLimits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        // Responses of pipelined requests leave together, in one write.
        .pipeline_flush(true);
    builder
}

/// Serves `listener` until `shutdown` resolves, each connection with the service
/// `connection(peer)` makes for it; then stops accepting, lets each open connection finish
/// the request it is serving, and returns once all are closed.
pub async fn serve<S>(
    listener: TcpListener,
    connection: impl Fn(SocketAddr) -> S,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let http1 = Arc::new(http1(&limits));
    let max = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let permits = Arc::new(Semaphore::new(max));
    let open = Arc::new(OpenConnections::default());
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if !is_connection_error(&e) {
                        tracing::error!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A response leaves in one write; nothing is gained by holding its last segment.
        let _ = stream.set_nodelay(true);
        let conn = http1.serve_connection(TokioIo::new(stream), connection(peer));
        let (id, stop) = open.add();
        let open = open.clone();
        tokio::spawn(async move {
            let mut conn = pin!(conn);
            // Errors (reset, header timeout, malformed head) concern that client only.
            tokio::select! {
                biased;
                _ = conn.as_mut() => {}
                _ = stop => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.as_mut().await;
                }
            }
            open.remove(id);
            drop(permit);
        });
    }
    drop(listener);
    open.stop_all();
    // Every connection holds a permit until it is closed.
    let _all_closed = permits.acquire_many(max as u32).await;
    Ok(())
}

/// A stop signal per open connection. One per connection rather than one shared channel:
/// a connection task polls its own signal on every wake-up, and a shared one would take a
/// lock common to all connections each time.
#[derive(Default)]
struct OpenConnections {
    stops: Mutex<(u64, HashMap<u64, oneshot::Sender<()>>)>,
}

impl OpenConnections {
    fn add(&self) -> (u64, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        let mut stops = self.stops.lock().unwrap_or_else(|e| e.into_inner());
        let id = stops.0;
        stops.0 += 1;
        stops.1.insert(id, tx);
        (id, rx)
    }

    fn remove(&self, id: u64) {
        self.stops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .remove(&id);
    }

    fn stop_all(&self) {
        let stops = std::mem::take(&mut self.stops.lock().unwrap_or_else(|e| e.into_inner()).1);
        for stop in stops.into_values() {
            let _ = stop.send(());
        }
    }
}

/// Accept errors that concern one connection only (it went away before being accepted).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}
