//! Generated protobuf and gRPC types (see `proto/`).

pub mod events {
    tonic::include_proto!("shortener.events.v1");
}

pub mod analytics {
    tonic::include_proto!("shortener.analytics.v1");
}

/// Encoded `FileDescriptorSet` of every proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("shortener_descriptor");

/// A protobuf `Timestamp` of `t`.
pub fn to_timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        // Always below 10^9 (chrono keeps leap seconds in the nanos of a normal second,
        // below 2 * 10^9), so it fits.
        nanos: t.timestamp_subsec_nanos().min(999_999_999) as i32,
    }
}

/// The instant a protobuf `Timestamp` names; `None` when it is out of range or its nanos
/// are not in `0..10^9`.
pub fn to_datetime(t: &prost_types::Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    chrono::Utc.timestamp_opt(t.seconds, nanos).single()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_reject_bad_nanos() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-26T12:34:56.789Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(to_datetime(&to_timestamp(t)), Some(t));
        for nanos in [-1, 1_000_000_000] {
            let bad = prost_types::Timestamp { seconds: 0, nanos };
            assert_eq!(to_datetime(&bad), None);
        }
        let huge = prost_types::Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        assert_eq!(to_datetime(&huge), None);
    }
}
