//! JSON log lines that carry the OpenTelemetry `trace_id`/`span_id` of the current span,
//! so a log line can be joined with its trace.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OtelData;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// One JSON object per line: timestamp, level, target, the event's fields, the names and
/// fields of the enclosing spans, and the trace ids when a trace is active.
pub struct JsonWithTraceIds;

struct FieldsToJson<'a>(&'a mut Map<String, Value>);

impl Visit for FieldsToJson<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

impl<S, N> FormatEvent<S, N> for JsonWithTraceIds
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::from(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.insert("level".into(), Value::from(meta.level().as_str()));
        line.insert("target".into(), Value::from(meta.target()));
        event.record(&mut FieldsToJson(&mut line));

        if let Some(scope) = ctx.event_scope() {
            let mut spans = Vec::new();
            let mut ids = None;
            for span in scope {
                let ext = span.extensions();
                if ids.is_none() {
                    ids = ext
                        .get::<OtelData>()
                        .and_then(|d| Some((d.trace_id()?, d.span_id()?)));
                }
                let mut entry = Map::new();
                entry.insert("name".into(), Value::from(span.name()));
                if let Some(fields) = ext.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        entry.insert("fields".into(), Value::from(fields.as_str()));
                    }
                }
                spans.push(Value::Object(entry));
            }
            spans.reverse();
            line.insert("spans".into(), Value::Array(spans));
            if let Some((trace_id, span_id)) = ids {
                if trace_id != opentelemetry::TraceId::INVALID {
                    line.insert("trace_id".into(), Value::from(trace_id.to_string()));
                    line.insert("span_id".into(), Value::from(span_id.to_string()));
                }
            }
        }
        let text = serde_json::to_string(&Value::Object(line)).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}
