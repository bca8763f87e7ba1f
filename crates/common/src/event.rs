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

/// The time of a click happening now and its fresh time-ordered event id, from one clock
/// read; the id's random bits keep ids unique within a millisecond, across processes too.
fn stamp() -> (Uuid, DateTime<Utc>) {
    let occurred_at = Utc::now();
    let ts = uuid::Timestamp::from_unix(
        uuid::NoContext,
        occurred_at.timestamp().max(0) as u64,
        occurred_at.timestamp_subsec_nanos(),
    );
    (Uuid::new_v7(ts), occurred_at)
}

impl Click {
    /// A click happening now, with a fresh time-ordered event id.
    pub fn now(
        short_code: impl Into<String>,
        ip: Option<IpAddr>,
        user_agent: Option<String>,
        referer: Option<String>,
    ) -> Self {
        let (event_id, occurred_at) = stamp();
        Self {
            event_id,
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

/// A click as the redirect has it: the request's own strings, borrowed. Encoded straight
/// into a batch ([`crate::event_batch::BatchWriter::push_click`]) it is byte for byte the
/// ClickEvent of the same [`Click`], with no string copied on the way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClickRef<'a> {
    pub event_id: Uuid,
    pub short_code: &'a str,
    pub occurred_at: DateTime<Utc>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<&'a str>,
    pub referer: Option<&'a str>,
    pub matched_rule: Option<u32>,
}

impl<'a> ClickRef<'a> {
    /// A click happening now, as [`Click::now`].
    pub fn now(
        short_code: &'a str,
        ip: Option<IpAddr>,
        user_agent: Option<&'a str>,
        referer: Option<&'a str>,
    ) -> Self {
        let (event_id, occurred_at) = stamp();
        Self {
            event_id,
            short_code,
            occurred_at,
            ip,
            user_agent,
            referer,
            matched_rule: None,
        }
    }

    /// The same click with its own strings.
    pub fn to_click(&self) -> Click {
        Click {
            event_id: self.event_id,
            short_code: self.short_code.to_owned(),
            occurred_at: self.occurred_at,
            ip: self.ip,
            user_agent: self.user_agent.map(str::to_owned),
            referer: self.referer.map(str::to_owned),
            matched_rule: self.matched_rule,
        }
    }

    /// The click ready to encode (its texts formatted on the stack, once).
    pub fn encoding(&self) -> ClickEncoding<'_> {
        let mut event_id = [0u8; 36];
        self.event_id.hyphenated().encode_lower(&mut event_id);
        ClickEncoding {
            event_id,
            short_code: self.short_code,
            occurred_at: to_timestamp(self.occurred_at),
            ip: self.ip.map(IpText::of),
            user_agent: self.user_agent.unwrap_or_default(),
            referer: self.referer.unwrap_or_default(),
            matched_rule: self.matched_rule.unwrap_or(0),
        }
    }

    /// The Kafka payload of a single-click message, as [`Click::encode`].
    pub fn encode(&self) -> Vec<u8> {
        let encoding = self.encoding();
        let mut buf = Vec::with_capacity(encoding.encoded_len());
        encoding.encode_raw(&mut buf);
        buf
    }
}

/// The ClickEvent of a [`ClickRef`], written by hand in the wire format prost writes for
/// it: the fields in tag order, those at their default value left out.
pub struct ClickEncoding<'a> {
    event_id: [u8; 36],
    short_code: &'a str,
    occurred_at: prost_types::Timestamp,
    ip: Option<IpText>,
    user_agent: &'a str,
    referer: &'a str,
    matched_rule: u32,
}

impl ClickEncoding<'_> {
    fn ip(&self) -> &[u8] {
        self.ip.as_ref().map_or(&[], IpText::as_bytes)
    }

    /// Length of [`Self::encode_raw`]'s output.
    pub fn encoded_len(&self) -> usize {
        use prost::encoding::{message, uint32};
        uint32::encoded_len(1, &SCHEMA_VERSION)
            + bytes_len(2, &self.event_id)
            + bytes_len(3, self.short_code.as_bytes())
            + message::encoded_len(4, &self.occurred_at)
            + bytes_len(5, self.ip())
            + bytes_len(6, self.user_agent.as_bytes())
            + bytes_len(7, self.referer.as_bytes())
            + if self.matched_rule == 0 {
                0
            } else {
                uint32::encoded_len(8, &self.matched_rule)
            }
    }

    /// Appends the ClickEvent's fields (no length prefix) to `buf`.
    pub fn encode_raw(&self, buf: &mut Vec<u8>) {
        use prost::encoding::{message, uint32};
        uint32::encode(1, &SCHEMA_VERSION, buf);
        put_bytes(2, &self.event_id, buf);
        put_bytes(3, self.short_code.as_bytes(), buf);
        message::encode(4, &self.occurred_at, buf);
        put_bytes(5, self.ip(), buf);
        put_bytes(6, self.user_agent.as_bytes(), buf);
        put_bytes(7, self.referer.as_bytes(), buf);
        if self.matched_rule != 0 {
            uint32::encode(8, &self.matched_rule, buf);
        }
    }
}

/// Encoded length of a string or bytes field; 0 when empty (proto3 leaves it out).
fn bytes_len(tag: u32, value: &[u8]) -> usize {
    if value.is_empty() {
        0
    } else {
        prost::encoding::key_len(tag)
            + prost::encoding::encoded_len_varint(value.len() as u64)
            + value.len()
    }
}

/// Writes a string or bytes field unless it is empty.
fn put_bytes(tag: u32, value: &[u8], buf: &mut Vec<u8>) {
    use prost::encoding::{encode_key, encode_varint, WireType};
    if !value.is_empty() {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(value.len() as u64, buf);
        buf.extend_from_slice(value);
    }
}

/// An address as text, on the stack. IPv4, the common case, is written digit by digit:
/// through `fmt` it cost more than the rest of the event together.
struct IpText {
    /// The longest form: `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`.
    buf: [u8; 45],
    len: u8,
}

impl IpText {
    fn of(ip: IpAddr) -> Self {
        let mut text = Self {
            buf: [0; 45],
            len: 0,
        };
        match ip {
            IpAddr::V4(v4) => {
                let mut push = |b: u8| {
                    text.buf[text.len as usize] = b;
                    text.len += 1;
                };
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        push(b'.');
                    }
                    if octet >= 100 {
                        push(b'0' + octet / 100);
                    }
                    if octet >= 10 {
                        push(b'0' + octet / 10 % 10);
                    }
                    push(b'0' + octet % 10);
                }
            }
            IpAddr::V6(v6) => {
                use std::io::Write;
                let mut rest = &mut text.buf[..];
                write!(rest, "{v6}").expect("an IPv6 address fits in 45 bytes");
                let left = rest.len();
                text.len = (45 - left) as u8;
            }
        }
        text
    }

    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).expect("an address is ASCII")
    }
}

fn ip_text(ip: IpAddr) -> String {
    IpText::of(ip).as_str().to_owned()
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

    #[test]
    fn a_borrowed_click_encodes_as_prost_encodes_its_owned_event() {
        let long_agent = "é".repeat(MAX_HEADER_VALUE_LEN / 2);
        let long_code = "c".repeat(MAX_SHORT_CODE_LEN);
        let at = |rfc3339: &str| {
            DateTime::parse_from_rfc3339(rfc3339)
                .unwrap()
                .with_timezone(&Utc)
        };
        let now = ClickRef::now("abc123", None, None, None);
        let mut cases = vec![now];
        for ip in [
            "203.0.113.7",
            "8.8.8.8",
            "255.255.255.255",
            "2001:db8::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            cases.push(ClickRef {
                ip: Some(ip.parse().unwrap()),
                user_agent: Some("Mozilla/5.0"),
                ..now
            });
        }
        cases.push(ClickRef {
            short_code: &long_code,
            user_agent: Some(&long_agent),
            referer: Some("https://example.com/from?x=1"),
            matched_rule: Some(MAX_MATCHED_RULE),
            ..now
        });
        for (t, rule) in [
            ("1970-01-01T00:00:00Z", Some(1)),
            ("1969-07-20T20:17:40.5Z", None),
            ("2026-12-01T22:00:00Z", Some(3)),
        ] {
            cases.push(ClickRef {
                occurred_at: at(t),
                matched_rule: rule,
                ..now
            });
        }
        for click in cases {
            let owned = click.to_click();
            let prost = owned.encode();
            assert_eq!(click.encode(), prost, "{click:?}");
            assert_eq!(click.encoding().encoded_len(), prost.len(), "{click:?}");
            assert_eq!(Click::decode(&prost).unwrap(), owned);
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
