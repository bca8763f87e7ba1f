//! The request deadline: a request whose body has not arrived, or whose answer is not
//! ready, within `REQUEST_TIMEOUT_MS` is answered 408 (`request_timeout`) and its handler
//! dropped, so a client trickling a body cannot hold a handler, a database connection or a
//! connection slot for longer.
//!
//! The timer is armed only when the handler first has to wait: a redirect answered from the
//! cache completes on its first poll and never touches the timer wheel.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::Request;
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use crate::error::ApiError;

#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    timeout: Duration,
}

impl DeadlineLayer {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            timeout: self.timeout,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    timeout: Duration,
}

impl<S, B> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        DeadlineFuture::new(self.inner.call(req), self.timeout)
    }
}

pin_project! {
    pub struct DeadlineFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Option<Sleep>,
        timeout: Duration,
    }
}

impl<F> DeadlineFuture<F> {
    /// `inner`, answered 408 if it is not ready `timeout` after it first has to wait.
    pub fn new(inner: F, timeout: Duration) -> Self {
        Self {
            inner,
            sleep: None,
            timeout,
        }
    }
}

impl<F, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(out) = this.inner.poll(cx) {
            return Poll::Ready(out);
        }
        if this.sleep.is_none() {
            // The first poll follows the call at once: the deadline counts from here.
            this.sleep.set(Some(tokio::time::sleep_until(
                Instant::now() + *this.timeout,
            )));
        }
        let sleep = this.sleep.as_pin_mut().expect("armed above");
        match sleep.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Ok(ApiError::RequestTimeout.into_response())),
            Poll::Pending => Poll::Pending,
        }
    }
}
