//! W3C trace-context propagation (`traceparent`/`tracestate`) across every hop: HTTP
//! headers, gRPC metadata and Kafka message headers. All go through the global
//! propagator that `telemetry::init` installs.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::Context;
use rdkafka::message::Headers;

struct HttpHeaders<'a>(&'a http::HeaderMap);
struct HttpHeadersMut<'a>(&'a mut http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

impl Injector for HttpHeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The remote parent context carried by incoming HTTP (or gRPC, whose metadata is HTTP/2
/// headers) request headers; empty when there is none.
pub fn extract_http(headers: &http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HttpHeaders(headers)))
}

/// Writes `cx` into outgoing HTTP request headers.
pub fn inject_http(cx: &Context, headers: &mut http::HeaderMap) {
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(cx, &mut HttpHeadersMut(headers))
    });
}

/// Writes `cx` into outgoing gRPC request metadata.
pub fn inject_grpc(cx: &Context, metadata: &mut tonic::metadata::MetadataMap) {
    struct Meta<'a>(&'a mut tonic::metadata::MetadataMap);
    impl Injector for Meta<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(k), Ok(v)) = (
                tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
                tonic::metadata::MetadataValue::try_from(value.as_str()),
            ) {
                self.0.insert(k, v);
            }
        }
    }
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(cx, &mut Meta(metadata)));
}

/// The remote parent context carried by incoming gRPC request metadata.
pub fn extract_grpc(metadata: &tonic::metadata::MetadataMap) -> Context {
    struct Meta<'a>(&'a tonic::metadata::MetadataMap);
    impl Extractor for Meta<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0
                .keys()
                .filter_map(|k| match k {
                    tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                    tonic::metadata::KeyRef::Binary(_) => None,
                })
                .collect()
        }
    }
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&Meta(metadata)))
}

/// `cx` as header names and values, for a message that carries its headers itself (a
/// click inside a batch).
pub fn inject_map(cx: &Context) -> HashMap<String, String> {
    let mut fields = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(cx, &mut fields));
    fields
}

/// The producer's context carried by a Kafka message's headers.
pub fn extract_kafka<H: Headers>(headers: Option<&H>) -> Context {
    struct KafkaHeaders(Vec<(String, String)>);
    impl Extractor for KafkaHeaders {
        fn get(&self, key: &str) -> Option<&str> {
            self.0
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(k, _)| k.as_str()).collect()
        }
    }
    let pairs = KafkaHeaders(
        headers
            .map(|h| {
                h.iter()
                    .filter_map(|hdr| {
                        let v = std::str::from_utf8(hdr.value?).ok()?;
                        Some((hdr.key.to_string(), v.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default(),
    );
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&pairs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
    use opentelemetry::{SpanId, TraceId};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use rdkafka::message::{Header, OwnedHeaders};

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn remote_cx() -> Context {
        Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        ))
    }

    fn install() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }

    #[test]
    fn http_round_trip() {
        install();
        let mut headers = http::HeaderMap::new();
        inject_http(&remote_cx(), &mut headers);
        assert_eq!(headers.get("traceparent").unwrap(), TRACEPARENT);
        let cx = extract_http(&headers);
        assert_eq!(
            cx.span().span_context().trace_id(),
            remote_cx().span().span_context().trace_id()
        );
    }

    #[test]
    fn grpc_round_trip() {
        install();
        let mut md = tonic::metadata::MetadataMap::new();
        inject_grpc(&remote_cx(), &mut md);
        assert_eq!(md.get("traceparent").unwrap(), TRACEPARENT);
        let cx = extract_grpc(&md);
        assert!(cx.span().span_context().is_remote());
        assert_eq!(
            cx.span().span_context().span_id(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap()
        );
    }

    #[test]
    fn kafka_round_trip_keeps_other_headers() {
        install();
        let injected = inject_map(&remote_cx());
        assert_eq!(injected["traceparent"], TRACEPARENT);
        let headers = injected.iter().fold(
            OwnedHeaders::new().insert(Header {
                key: "schema-version",
                value: Some("1"),
            }),
            |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v),
                })
            },
        );
        let keys: Vec<&str> = headers.iter().map(|h| h.key).collect();
        assert!(keys.contains(&"schema-version") && keys.contains(&"traceparent"));
        let cx = extract_kafka(Some(&headers));
        assert_eq!(
            cx.span().span_context().trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        let empty = extract_kafka::<OwnedHeaders>(None);
        assert!(!empty.span().span_context().is_valid());
    }
}
