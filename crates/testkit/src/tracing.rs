//! Captures the spans a test produces, through the same `tracing` -> OpenTelemetry layer
//! the binaries install, into an in-memory exporter.
//!
//! `tracing::subscriber::set_default` is thread-local: [`capture_local`] suits a test on a
//! current-thread runtime; a test whose spans come from several threads (a multi-threaded
//! runtime, librdkafka callbacks) uses [`capture_global`], once per test binary.

use std::time::{Duration, Instant};

use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use shortener_common::telemetry;
use tracing_subscriber::layer::SubscriberExt;

/// The spans finished so far, as the exporter received them.
#[derive(Clone)]
pub struct Capture {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
}

impl Capture {
    fn new() -> (Self, impl tracing::Subscriber + Send + Sync) {
        telemetry::install_propagator();
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        // The binaries' default filter: info spans of every crate.
        let subscriber = tracing_subscriber::registry()
            .with(telemetry::otel_layer(&provider, "test"))
            .with(tracing_subscriber::EnvFilter::new("info"));
        (Self { exporter, provider }, subscriber)
    }

    /// Every span finished so far.
    pub fn spans(&self) -> Vec<SpanData> {
        let _ = self.provider.force_flush();
        self.exporter.get_finished_spans().unwrap_or_default()
    }

    /// Polls until `found` picks something out of the finished spans; panics after
    /// `timeout` with the names of the spans seen.
    pub fn wait_for<T>(
        &self,
        timeout: Duration,
        mut found: impl FnMut(&[SpanData]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if let Some(t) = found(&spans) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for spans; finished: {:?}",
                spans.iter().map(|s| s.name.as_ref()).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Installs the capturing subscriber for the current thread only.
pub fn capture_local() -> (Capture, tracing::subscriber::DefaultGuard) {
    let (capture, subscriber) = Capture::new();
    let guard = tracing::subscriber::set_default(subscriber);
    (capture, guard)
}

/// Installs the capturing subscriber for the whole process. Panics when a global
/// subscriber is already installed: keep one such test per test binary.
pub fn capture_global() -> Capture {
    let (capture, subscriber) = Capture::new();
    tracing::subscriber::set_global_default(subscriber)
        .expect("a global subscriber is already installed");
    capture
}

/// The attribute `key` of `span`, as text.
pub fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| match &kv.value {
            Value::String(s) => s.as_str().to_string(),
            other => other.to_string(),
        })
}

/// The finished spans named `name` (the OpenTelemetry name, i.e. `otel.name` when set).
pub fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// Shorthand for assertions: (trace id, parent span id, kind) of `span`.
pub fn lineage(span: &SpanData) -> (TraceId, SpanId, SpanKind) {
    (
        span.span_context.trace_id(),
        span.parent_span_id,
        span.span_kind.clone(),
    )
}
