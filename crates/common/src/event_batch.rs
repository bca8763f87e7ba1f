//! Many clicks per Kafka message: the ClickBatch payload (schema-version header "2").
//!
//! url-api sends clicks in batches because the per-message cost of a Kafka client and
//! broker, paid once per redirect, is most of the CPU a redirect costs (docs/kafka.md).
//! Each entry keeps a click exactly as a single-click message would carry it, its encoded
//! ClickEvent and its headers, so the consumer turns a batch back into single-click
//! messages and handles, dead-letters and replays them one by one.

use std::collections::HashMap;

use prost::Message;

use crate::event::ClickRef;
use crate::proto::events::{ClickBatch, ClickBatchEntry, ClickEvent};

/// Most clicks in one message unless configured otherwise (url-api's CLICK_BATCH_MAX).
pub const DEFAULT_BATCH_MAX: usize = 100;
/// A batch is sent once it reaches this size, whatever its number of clicks: well below
/// the 1 MiB a Kafka broker accepts per message by default (`message.max.bytes`), even
/// when the last click added is the largest valid one (~4 KiB).
pub const MAX_BATCH_BYTES: usize = 512 * 1024;

/// The `schema-version` header of a single-click message (a ClickEvent payload).
pub const SINGLE_SCHEMA_VERSION: &str = "1";
/// The `schema-version` header of a ClickBatch message.
pub const BATCH_SCHEMA_VERSION: &str = "2";

/// Accumulates encoded entries; the buffer is a valid ClickBatch at any time, because a
/// repeated field is the concatenation of its encoded elements.
#[derive(Debug, Default)]
pub struct BatchWriter {
    buf: Vec<u8>,
    clicks: usize,
}

impl BatchWriter {
    /// Appends one click with the headers its own message would have had. Encodes the
    /// ClickBatchEntry in place: its `event` bytes are the ClickEvent's own encoding.
    pub fn push(&mut self, event: &ClickEvent, headers: HashMap<String, String>) {
        let event_len = event.encoded_len();
        self.push_entry(event_len, |buf| event.encode_raw(buf), &headers);
    }

    /// [`Self::push`] of a borrowed click, encoded from its fields: the same bytes as
    /// pushing its ClickEvent, without building one (the redirect's path).
    pub fn push_click(&mut self, click: &ClickRef<'_>, headers: &HashMap<String, String>) {
        let event = click.encoding();
        self.push_entry(event.encoded_len(), |buf| event.encode_raw(buf), headers);
    }

    fn push_entry(
        &mut self,
        event_len: usize,
        write_event: impl FnOnce(&mut Vec<u8>),
        headers: &HashMap<String, String>,
    ) {
        use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len};
        use prost::encoding::{hash_map, string, WireType};
        let event_field = key_len(1) + encoded_len_varint(event_len as u64) + event_len;
        let headers_len =
            hash_map::encoded_len(string::encoded_len, string::encoded_len, 2, headers);
        encode_key(1, WireType::LengthDelimited, &mut self.buf);
        encode_varint((event_field + headers_len) as u64, &mut self.buf);
        encode_key(1, WireType::LengthDelimited, &mut self.buf);
        encode_varint(event_len as u64, &mut self.buf);
        let start = self.buf.len();
        write_event(&mut self.buf);
        debug_assert_eq!(self.buf.len() - start, event_len, "event length");
        hash_map::encode(
            string::encode,
            string::encoded_len,
            string::encode,
            string::encoded_len,
            2,
            headers,
            &mut self.buf,
        );
        self.clicks += 1;
    }

    /// Clicks in the batch.
    pub fn len(&self) -> usize {
        self.clicks
    }

    pub fn is_empty(&self) -> bool {
        self.clicks == 0
    }

    /// Encoded size of the batch so far.
    pub fn encoded_len(&self) -> usize {
        self.buf.len()
    }

    /// The encoded ClickBatch and its number of clicks, leaving the writer empty (with
    /// room for as much again, so a busy writer does not grow its buffer click by click).
    pub fn take(&mut self) -> (Vec<u8>, usize) {
        let clicks = std::mem::take(&mut self.clicks);
        let room = Vec::with_capacity(self.buf.len());
        (std::mem::replace(&mut self.buf, room), clicks)
    }
}

/// How many clicks a ClickBatch payload holds, read from its framing without decoding
/// them; None when it is not a ClickBatch. Lets the consumer size its database batches in
/// clicks before it decodes anything.
pub fn count_entries(payload: &[u8]) -> Option<usize> {
    use prost::bytes::Buf;
    use prost::encoding::{decode_key, decode_varint, WireType};
    let mut buf = payload;
    let mut entries = 0;
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf).ok()?;
        if tag != 1 || wire_type != WireType::LengthDelimited {
            return None;
        }
        let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
        if len > buf.remaining() {
            return None;
        }
        buf.advance(len);
        entries += 1;
    }
    Some(entries)
}

/// The entries of a ClickBatch payload.
pub fn decode_batch(payload: &[u8]) -> Result<Vec<ClickBatchEntry>, prost::DecodeError> {
    Ok(ClickBatch::decode(payload)?.entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Click;

    #[test]
    fn a_written_batch_decodes_to_its_entries_in_order() {
        let clicks: Vec<Click> = (0..3)
            .map(|i| Click::now(format!("code{i}"), None, None, None))
            .collect();
        let mut w = BatchWriter::default();
        assert!(w.is_empty());
        for (i, c) in clicks.iter().enumerate() {
            let headers = HashMap::from([("traceparent".to_string(), format!("tp{i}"))]);
            w.push(&c.to_event(), if i == 1 { HashMap::new() } else { headers });
        }
        assert_eq!(w.len(), 3);
        let size = w.encoded_len();
        let (payload, n) = w.take();
        assert_eq!(payload.len(), size);
        assert_eq!(n, 3);
        assert!(w.is_empty() && w.take().0.is_empty());
        assert_eq!(count_entries(&payload), Some(3));
        let entries = decode_batch(&payload).unwrap();
        assert_eq!(entries.len(), 3);
        // Byte for byte what prost writes for the same entries.
        let reencoded = ClickBatch {
            entries: entries.clone(),
        }
        .encode_to_vec();
        assert_eq!(payload, reencoded);
        for (i, (entry, click)) in entries.iter().zip(&clicks).enumerate() {
            assert_eq!(&Click::decode(&entry.event).unwrap(), click);
            let tp = entry.headers.get("traceparent").cloned();
            assert_eq!(tp, (i != 1).then(|| format!("tp{i}")));
        }
    }

    #[test]
    fn a_borrowed_click_is_pushed_as_its_event_is() {
        let agent = "Mozilla/5.0 (Macintosh)".to_string();
        let mut click = ClickRef::now("abc", Some("8.8.8.8".parse().unwrap()), Some(&agent), None);
        click.matched_rule = Some(2);
        let headers = HashMap::from([("traceparent".to_string(), "tp".to_string())]);
        let (mut by_event, mut by_ref) = (BatchWriter::default(), BatchWriter::default());
        for headers in [headers, HashMap::new()] {
            by_event.push(&click.to_click().to_event(), headers.clone());
            by_ref.push_click(&click, &headers);
        }
        assert_eq!(by_ref.len(), 2);
        let payload = by_ref.take().0;
        assert_eq!(payload, by_event.take().0);
        let entries = decode_batch(&payload).unwrap();
        assert_eq!(Click::decode(&entries[1].event).unwrap(), click.to_click());
    }

    #[test]
    fn garbage_is_not_a_batch() {
        assert!(decode_batch(b"\x0a\xff\xff").is_err());
        assert_eq!(decode_batch(b"").unwrap(), vec![]);
        assert_eq!(count_entries(b""), Some(0));
        // Cut short, another field, a single ClickEvent (field 1 is a varint there).
        assert_eq!(count_entries(b"\x0a\x05ab"), None);
        assert_eq!(count_entries(b"\x12\x00"), None);
        let single = Click::now("c", None, None, None).encode();
        assert_eq!(count_entries(&single), None);
    }
}
