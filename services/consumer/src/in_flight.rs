//! The bound on message data held between the broker client and the database.
//!
//! While the database is down nothing is committed, and every message fetched waits in a
//! worker's channel or batch. Counting messages does not bound that: one url-api batch
//! holds up to 512 KiB. So the dispatcher takes a share of a byte budget
//! (`MAX_IN_FLIGHT_BYTES`) for each message before handing it to a worker, and the share
//! returns when the batch holding the message is done. Once the budget is spent the
//! dispatcher stops polling; librdkafka's own prefetch queue is capped to the same size
//! (`queued.max.messages.kbytes`), so a backlog stays on the brokers, not in memory.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use rdkafka::message::{Headers, Message, OwnedMessage};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of message data in flight, with a gauge of how many are held.
pub struct InFlight {
    budget: Arc<Semaphore>,
    limit: u32,
    gauge: Gauge,
}

/// A message's share of the budget, returned when dropped.
#[derive(Debug)]
pub struct Held {
    _permit: OwnedSemaphorePermit,
    bytes: u32,
    gauge: Gauge,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.dec_by(i64::from(self.bytes));
    }
}

impl InFlight {
    /// A budget of `limit` bytes (at least 1), counted in `gauge`.
    pub fn new(limit: u32, gauge: Gauge) -> Self {
        let limit = limit.max(1);
        Self {
            budget: Arc::new(Semaphore::new(limit as usize)),
            limit,
            gauge,
        }
    }

    /// Waits until `msg` fits in the budget, then holds its share. A message larger than
    /// the whole budget takes all of it, so it waits for everything else, not forever.
    pub async fn hold(&self, msg: &OwnedMessage) -> Held {
        let bytes = message_bytes(msg).min(self.limit as usize) as u32;
        let permit = self
            .budget
            .clone()
            .acquire_many_owned(bytes)
            .await
            .expect("the budget is never closed");
        self.gauge.inc_by(i64::from(bytes));
        Held {
            _permit: permit,
            bytes,
            gauge: self.gauge.clone(),
        }
    }
}

/// What a message holds in memory: payload, key and headers.
pub fn message_bytes(msg: &OwnedMessage) -> usize {
    let headers = msg.headers().map_or(0, |h| {
        h.iter()
            .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
            .sum()
    });
    msg.payload().map_or(0, <[u8]>::len) + msg.key().map_or(0, <[u8]>::len) + headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, Timestamp};
    use std::time::Duration;

    fn msg(payload: usize) -> OwnedMessage {
        OwnedMessage::new(
            Some(vec![0; payload]),
            Some(b"key".to_vec()),
            "clicks".into(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(OwnedHeaders::new().insert(Header {
                key: "h",
                value: Some("vv"),
            })),
        )
    }

    #[test]
    fn a_message_counts_its_payload_key_and_headers() {
        assert_eq!(message_bytes(&msg(100)), 100 + 3 + 3);
    }

    #[tokio::test]
    async fn holding_waits_for_room_and_releases_on_drop() {
        let gauge = Gauge::default();
        let budget = InFlight::new(1000, gauge.clone());
        let a = budget.hold(&msg(494)).await;
        let b = budget.hold(&msg(394)).await;
        assert_eq!(gauge.get(), 900);
        // 200 more bytes do not fit until something is released.
        let more = msg(194);
        let waiting = tokio::time::timeout(Duration::from_millis(50), budget.hold(&more));
        assert!(waiting.await.is_err());
        drop(a);
        let c = budget.hold(&msg(194)).await;
        assert_eq!(gauge.get(), 600);
        // Larger than the whole budget: takes all of it once everything else is back.
        drop((b, c));
        let huge = budget.hold(&msg(5000)).await;
        assert_eq!(gauge.get(), 1000);
        drop(huge);
        assert_eq!(gauge.get(), 0);
    }
}
