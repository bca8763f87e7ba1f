//! The ClickEvent: what url-api publishes for each redirect and the consumer stores.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use prost::Message;
use uuid::Uuid;

pub use crate::proto::events::ClickEvent;
use crate::proto::{to_datetime, to_timestamp};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// Longest short code, user agent and referer kept; longer values are invalid events.
pub const MAX_SHORT_CODE_LEN: usize = 64;
pub const MAX_HEADER_VALUE_LEN: usize = 2048;
/// Highest redirect rule position a click may name (url-api allows fewer rules per link).
pub const MAX_MATCHED_RULE: u32 = 100;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventError {
    #[error("payload is not a ClickEvent protobuf: {0}")]
    Decode(String),
    #[error("unsupported schema version {0} (this build reads {SCHEMA_VERSION})")]
    UnsupportedSchema(u32),
    #[error("event_id {0:?} is not a UUID")]
    InvalidEventId(String),
    #[error("short_code is empty or longer than {MAX_SHORT_CODE_LEN}")]
    InvalidShortCode,
    #[error("occurred_at is missing or out of range")]
    InvalidTimestamp,
    #[error("ip {0:?} is not an IP address")]
    InvalidIp(String),
    #[error("{0} is longer than {MAX_HEADER_VALUE_LEN} bytes")]
    TooLong(&'static str),
    #[error("matched_rule {0} is above {MAX_MATCHED_RULE}")]
    InvalidMatchedRule(u32),
}

/// A decoded and validated click, ready for enrichment.
#[derive(Debug, Clone, PartialEq)]
pub struct Click {
    pub event_id: Uuid,
    pub short_code: String,
    pub occurred_at: DateTime<Utc>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub referer: Option<String>,
    /// 1-based position of the redirect rule that chose the target, if one did.
    pub matched_rule: Option<u32>,
}

impl Click {
    /// A click happening now, with a fresh time-ordered event id.
    pub fn now(
        short_code: impl Into<String>,
        ip: Option<IpAddr>,
        user_agent: Option<String>,
        referer: Option<String>,
    ) -> Self {
        // One clock read for both; the id's random bits keep ids unique within a
        // millisecond, across processes too.
        let occurred_at = Utc::now();
        let ts = uuid::Timestamp::from_unix(
            uuid::NoContext,
            occurred_at.timestamp().max(0) as u64,
            occurred_at.timestamp_subsec_nanos(),
        );
        Self {
            event_id: Uuid::new_v7(ts),
            short_code: short_code.into(),
            occurred_at,
            ip,
            user_agent,
            referer,
            matched_rule: None,
        }
    }

    /// The protobuf message, moving the strings (the publisher's path: no copies).
    pub fn into_event(self) -> ClickEvent {
        ClickEvent {
            schema_version: SCHEMA_VERSION,
            event_id: self
                .event_id
                .hyphenated()
                .encode_lower(&mut Uuid::encode_buffer())
                .to_owned(),
            short_code: self.short_code,
            occurred_at: Some(to_timestamp(self.occurred_at)),
            ip: self.ip.map(ip_text).unwrap_or_default(),
            user_agent: self.user_agent.unwrap_or_default(),
            referer: self.referer.unwrap_or_default(),
            matched_rule: self.matched_rule.unwrap_or(0),
        }
    }

    pub fn to_event(&self) -> ClickEvent {
        self.clone().into_event()
    }

    /// The Kafka payload.
    pub fn encode(&self) -> Vec<u8> {
        self.to_event().encode_to_vec()
    }

    /// Decodes and validates a Kafka payload.
    pub fn decode(payload: &[u8]) -> Result<Self, EventError> {
        let event = ClickEvent::decode(payload).map_err(|e| EventError::Decode(e.to_string()))?;
        Self::try_from(event)
    }
}

/// An address as text. IPv4, the common case, is written digit by digit: through `fmt` it
/// cost more than the rest of the event together.
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

impl TryFrom<ClickEvent> for Click {
    type Error = EventError;

    fn try_from(e: ClickEvent) -> Result<Self, EventError> {
        if e.schema_version != SCHEMA_VERSION {
            return Err(EventError::UnsupportedSchema(e.schema_version));
        }
        let event_id =
            Uuid::parse_str(&e.event_id).map_err(|_| EventError::InvalidEventId(e.event_id))?;
        if e.short_code.is_empty() || e.short_code.len() > MAX_SHORT_CODE_LEN {
            return Err(EventError::InvalidShortCode);
        }
        let ts = e.occurred_at.ok_or(EventError::InvalidTimestamp)?;
        let occurred_at = to_datetime(&ts).ok_or(EventError::InvalidTimestamp)?;
        if e.matched_rule > MAX_MATCHED_RULE {
            return Err(EventError::InvalidMatchedRule(e.matched_rule));
        }
        let ip = match e.ip.as_str() {
            "" => None,
            s => Some(s.parse().map_err(|_| EventError::InvalidIp(e.ip.clone()))?),
        };
        let non_empty = |s: String, field: &'static str| -> Result<Option<String>, EventError> {
            if s.len() > MAX_HEADER_VALUE_LEN {
                Err(EventError::TooLong(field))
            } else {
                Ok(Some(s).filter(|s| !s.is_empty()))
            }
        };
        Ok(Self {
            event_id,
            short_code: e.short_code,
            occurred_at,
            ip,
            user_agent: non_empty(e.user_agent, "user_agent")?,
            referer: non_empty(e.referer, "referer")?,
            matched_rule: Some(e.matched_rule).filter(|n| *n > 0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_matches_display() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "9.10.99.100",
            "203.0.113.255",
            "255.255.255.255",
            "2001:db8::1",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    fn sample() -> Click {
        Click::now(
            "abc123",
            Some("203.0.113.7".parse().unwrap()),
            Some("Mozilla/5.0".into()),
            None,
        )
    }

    #[test]
    fn round_trips_through_protobuf() {
        let mut click = sample();
        let back = Click::decode(&click.encode()).unwrap();
        assert_eq!(back, click);
        click.matched_rule = Some(2);
        assert_eq!(Click::decode(&click.encode()).unwrap(), click);
    }

    #[test]
    fn rejects_garbage_and_invalid_fields() {
        assert!(matches!(
            Click::decode(b"\xff\xff\xff"),
            Err(EventError::Decode(_))
        ));
        let mut e = sample().to_event();
        e.schema_version = 9;
        assert_eq!(Click::try_from(e), Err(EventError::UnsupportedSchema(9)));
        let mut e = sample().to_event();
        e.event_id = "nope".into();
        assert!(matches!(
            Click::try_from(e),
            Err(EventError::InvalidEventId(_))
        ));
        let mut e = sample().to_event();
        e.short_code.clear();
        assert_eq!(Click::try_from(e), Err(EventError::InvalidShortCode));
        let mut e = sample().to_event();
        e.occurred_at = None;
        assert_eq!(Click::try_from(e), Err(EventError::InvalidTimestamp));
        let mut e = sample().to_event();
        e.ip = "999.1.1.1".into();
        assert!(matches!(Click::try_from(e), Err(EventError::InvalidIp(_))));
        let mut e = sample().to_event();
        e.user_agent = "x".repeat(MAX_HEADER_VALUE_LEN + 1);
        assert_eq!(Click::try_from(e), Err(EventError::TooLong("user_agent")));
        let mut e = sample().to_event();
        e.matched_rule = MAX_MATCHED_RULE + 1;
        assert_eq!(
            Click::try_from(e),
            Err(EventError::InvalidMatchedRule(MAX_MATCHED_RULE + 1))
        );
    }
}
