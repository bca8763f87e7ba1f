//! Slow and greedy clients: a head sent slowly (or never), a body that does not arrive,
//! and more connections than the cap. Raw TCP, so nothing on the client side times out or
//! retries on our behalf.

mod common;

use std::time::{Duration, Instant};

use shortener_common::db::DatabaseArgs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far above any limit under test, so a test fails rather than hangs.
const PATIENCE: Duration = Duration::from_secs(5);

async fn start(tweak: impl FnOnce(&mut url_api::Config)) -> common::TestApp {
    // No request here reaches the database.
    let mut config = common::base_config(DatabaseArgs::with_url(
        "postgres://shortener@127.0.0.1:1/shortener",
    ));
    tweak(&mut config);
    common::start_with(config).await
}

async fn connect(app: &common::TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .unwrap()
}

/// Reads until the server closes the connection; the time that took, and what was read.
async fn read_until_closed(stream: &mut TcpStream) -> (Duration, String) {
    let start = Instant::now();
    let mut seen = Vec::new();
    let read = tokio::time::timeout(PATIENCE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "connection still open after {PATIENCE:?}; read so far: {:?}",
        String::from_utf8_lossy(&seen)
    );
    (start.elapsed(), String::from_utf8_lossy(&seen).into_owned())
}

/// Reads one response whose body is at most `Content-Length` bytes; None if nothing
/// complete arrives within `wait`.
async fn read_response(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut seen = Vec::new();
    tokio::time::timeout(wait, async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before a whole response");
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                if body.len() >= len {
                    return text.into_owned();
                }
            }
        }
    })
    .await
    .ok()
}

#[tokio::test]
async fn slow_and_idle_heads_are_cut_off_at_the_header_timeout() {
    let app = start(|c| c.header_read_timeout_ms = 300).await;

    // Slowloris: a head that never ends.
    let mut slow = connect(&app).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A connection that never says anything.
    let mut silent = connect(&app).await;
    // A keep-alive connection left idle after its request.
    let mut idle = connect(&app).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let first = read_response(&mut idle, PATIENCE).await.unwrap();
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");

    for (what, stream) in [
        ("slow head", &mut slow),
        ("silent", &mut silent),
        ("idle keep-alive", &mut idle),
    ] {
        let (after, read) = read_until_closed(stream).await;
        assert!(read.is_empty(), "{what}: {read}");
        assert!(
            after < Duration::from_secs(3),
            "{what}: closed after {after:?}"
        );
    }

    // A prompt client on a fresh connection is served as usual.
    assert_eq!(app.get("/healthz").await.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_answered_408() {
    let app = start(|c| c.request_timeout_ms = 300).await;
    let mut stream = connect(&app).await;
    let head = format!(
        "POST /api/v1/links HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"long_url\"",
        common::ALICE
    );
    let start = Instant::now();
    stream.write_all(head.as_bytes()).await.unwrap();
    let resp = read_response(&mut stream, PATIENCE)
        .await
        .expect("an answer before the client gives up");
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(resp.contains(r#""code":"request_timeout""#), "{resp}");
    assert!(start.elapsed() >= Duration::from_millis(300));

    // The 408 is counted like any answer.
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            r#"http_request_duration_seconds_count{method="POST",route="/api/v1/links",status="408"} 1"#
        ),
        "{metrics}"
    );
    app.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    let app = start(|c| c.max_connections = 2).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect(&app).await;
        stream.write_all(request).await.unwrap();
        let resp = read_response(&mut stream, PATIENCE).await.unwrap();
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
        held.push(stream);
    }

    // The kernel completes the handshake, but the server does not take the connection.
    let mut third = connect(&app).await;
    third.write_all(request).await.unwrap();
    assert_eq!(
        read_response(&mut third, Duration::from_millis(700)).await,
        None,
        "a third connection was served while two were open"
    );

    drop(held.pop());
    let resp = read_response(&mut third, PATIENCE)
        .await
        .expect("served once a slot is free");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    drop(held);
    app.stop().await;
}
