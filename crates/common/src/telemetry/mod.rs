//! Logging and tracing for every binary: `tracing` with an env filter, JSON (with trace
//! ids) or text logs, and OpenTelemetry.
//!
//! Spans are always created through an OpenTelemetry tracer, so W3C trace context flows
//! through every hop and log lines carry trace ids even when nothing is exported. An OTLP
//! (gRPC) exporter is attached only when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the traces-only
//! variant) is set; the standard `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER(_ARG)` and
//! `OTEL_RESOURCE_ATTRIBUTES` variables are honoured by the SDK.

mod json_log;
pub mod propagation;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{span_processor_with_async_runtime, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

pub use json_log::JsonWithTraceIds;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(clap::Args, Debug, Clone)]
pub struct LogArgs {
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Json)]
    pub log_format: LogFormat,
    /// Log filter directives (tracing-subscriber EnvFilter syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,
}

impl Default for LogArgs {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            log_filter: "info".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter: {0}")]
    Filter(#[from] tracing_subscriber::filter::ParseError),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Flushes pending spans when dropped; keep it alive for the life of `main`.
#[must_use = "dropping the guard shuts the span exporter down"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl TelemetryGuard {
    /// True when spans are exported over OTLP.
    pub fn exporting(&self) -> bool {
        self.exporting
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if self.exporting {
            if let Err(e) = self.provider.shutdown() {
                eprintln!("failed to flush spans on shutdown: {e}");
            }
        }
    }
}

/// True when the standard OTLP endpoint variables ask for an exporter.
pub fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|k| std::env::var(k).is_ok_and(|v| !v.trim().is_empty()))
}

/// A tracer provider for `service_name` (the default when `OTEL_SERVICE_NAME` is unset),
/// exporting over OTLP only when configured. Must be called inside a multi-threaded tokio
/// runtime when exporting: the batch processor runs as a task on it, because the gRPC
/// exporter needs the tokio reactor.
pub fn tracer_provider(
    service_name: &'static str,
) -> Result<(SdkTracerProvider, bool), TelemetryError> {
    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service_name);
    }
    let mut builder = SdkTracerProvider::builder().with_resource(resource.build());
    let exporting = otlp_configured();
    if exporting {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?;
        let processor = span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
        builder = builder.with_span_processor(processor);
    }
    Ok((builder.build(), exporting))
}

/// The `tracing` layer that turns spans into OpenTelemetry spans of `provider`.
pub fn otel_layer<S>(provider: &SdkTracerProvider, service_name: &'static str) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer().with_tracer(provider.tracer(service_name))
}

/// Installs the W3C trace-context propagator used by `propagation`.
pub fn install_propagator() {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}

/// Installs the global subscriber and propagator.
pub fn init(service_name: &'static str, args: &LogArgs) -> Result<TelemetryGuard, TelemetryError> {
    let filter = EnvFilter::try_new(&args.log_filter)?;
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match args.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .event_format(JsonWithTraceIds)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
    };
    install_propagator();
    let (provider, exporting) = tracer_provider(service_name)?;
    opentelemetry::global::set_tracer_provider(provider.clone());
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel_layer(&provider, service_name))
        .with(filter)
        .try_init()
        .map_err(|_| TelemetryError::AlreadyInstalled)?;
    if exporting {
        tracing::info!("exporting traces over OTLP");
    }
    Ok(TelemetryGuard {
        provider,
        exporting,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_endpoint_means_no_exporter() {
        if otlp_configured() {
            return; // the developer's shell exports one; the variable decides, not this test
        }
        let (provider, exporting) = tracer_provider("test").unwrap();
        assert!(!exporting);
        drop(provider);
    }

    #[test]
    fn json_lines_carry_trace_ids_and_fields() {
        use std::io::Write;
        use std::sync::{Arc, Mutex};

        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .event_format(JsonWithTraceIds)
                    .with_writer(move || writer.clone()),
            )
            .with(otel_layer(&provider, "test"));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("reconcile", name = "demo");
            let _g = span.enter();
            tracing::info!(count = 3, "hello");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["message"], "hello");
        assert_eq!(line["count"], 3);
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["spans"][0]["name"], "reconcile");
        assert_eq!(line["spans"][0]["fields"], "name=\"demo\"");
        assert_eq!(line["trace_id"].as_str().unwrap().len(), 32);
        assert_eq!(line["span_id"].as_str().unwrap().len(), 16);
    }
}
