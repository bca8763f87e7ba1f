//! Unique visitors without storing who they are: a visitor is the keyed hash
//! (HMAC-SHA-256, truncated to 128 bits) of the client's IP address and User-Agent under a
//! random key of the click's day (UTC). The keys live in `visitor_salts`, one per day,
//! created by whichever consumer first needs it, and are deleted with the day's visitor
//! sets once the day can no longer be counted (the [`crate::maintenance`] task): from then
//! on no stored hash can be linked to an address, and the same person on two days is two
//! unrelated hashes.
//!
//! The hash is taken from the full address, before it is anonymized for storage.

use std::collections::HashMap;
use std::net::IpAddr;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use sqlx::PgConnection;

pub type Salt = [u8; 32];
pub type VisitorId = [u8; 16];

/// Clicks of the current day and of the previous one are counted as visitors; a click
/// arriving later than that (a long outage, a replayed dead letter) is counted as a click
/// but not as a visitor, since its day's key and set may be gone.
pub const VISITOR_DAYS: i64 = 2;

/// The visitor a click comes from, under its day's `salt`.
pub fn visitor_id(salt: &Salt, ip: Option<IpAddr>, user_agent: Option<&str>) -> VisitorId {
    let mut mac = Hmac::<Sha256>::new_from_slice(salt).expect("HMAC takes keys of any size");
    match ip {
        Some(IpAddr::V4(v4)) => mac.update(&v4.octets()),
        Some(IpAddr::V6(v6)) => mac.update(&v6.octets()),
        None => {}
    }
    // The separator keeps (ip, ua) pairs from colliding through their concatenation.
    mac.update(&[0]);
    mac.update(user_agent.unwrap_or_default().as_bytes());
    let full = mac.finalize().into_bytes();
    let mut id = [0u8; 16];
    id.copy_from_slice(&full[..16]);
    id
}

/// The oldest day (UTC) still counted on `today`; the keys and sets of earlier days are
/// no longer needed and are deleted by the maintenance task.
pub fn first_countable_day(today: NaiveDate) -> NaiveDate {
    today - Duration::days(VISITOR_DAYS - 1)
}

/// The day (UTC) whose visitor set a click at `at` belongs to, if it is still counted.
pub fn countable_day(at: DateTime<Utc>, now: DateTime<Utc>) -> Option<NaiveDate> {
    let day = at.date_naive();
    let today = now.date_naive();
    (day <= today && day >= first_countable_day(today)).then_some(day)
}

/// The keys of `days`, creating those that do not exist yet (concurrent consumers agree:
/// the first insert wins, the others read it). A day before `first_countable_day(today)`
/// gets no new key: its key may just have been forgotten, and must stay so (a batch that
/// found its day countable a moment before midnight counts no visitor then).
pub async fn salts(
    conn: &mut PgConnection,
    days: &[NaiveDate],
    today: NaiveDate,
) -> Result<HashMap<NaiveDate, Salt>, sqlx::Error> {
    if days.is_empty() {
        return Ok(HashMap::new());
    }
    let fresh: Vec<Vec<u8>> = days
        .iter()
        .map(|_| {
            let mut s = vec![0u8; 32];
            rand::rng().fill_bytes(&mut s);
            s
        })
        .collect();
    sqlx::query(
        "INSERT INTO visitor_salts (day, salt)
         SELECT * FROM UNNEST($1::date[], $2::bytea[]) AS k(day, salt) WHERE day >= $3
         ON CONFLICT (day) DO NOTHING",
    )
    .bind(days)
    .bind(&fresh)
    .bind(first_countable_day(today))
    .execute(&mut *conn)
    .await?;
    let rows: Vec<(NaiveDate, Vec<u8>)> =
        sqlx::query_as("SELECT day, salt FROM visitor_salts WHERE day = ANY($1)")
            .bind(days)
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(day, salt)| Some((day, Salt::try_from(salt.as_slice()).ok()?)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_person_same_day_is_one_visitor() {
        let salt = [7u8; 32];
        let ip = Some("203.0.113.9".parse().unwrap());
        let a = visitor_id(&salt, ip, Some("Firefox"));
        assert_eq!(a, visitor_id(&salt, ip, Some("Firefox")));
        assert_ne!(a, visitor_id(&salt, ip, Some("Chrome")));
        assert_ne!(
            a,
            visitor_id(
                &salt,
                Some("203.0.113.10".parse().unwrap()),
                Some("Firefox")
            )
        );
    }

    #[test]
    fn another_days_key_gives_an_unrelated_id() {
        let ip = Some("2001:db8::1".parse().unwrap());
        assert_ne!(
            visitor_id(&[1u8; 32], ip, Some("UA")),
            visitor_id(&[2u8; 32], ip, Some("UA"))
        );
    }

    #[test]
    fn the_id_does_not_contain_the_address() {
        let id = visitor_id(&[0u8; 32], Some("10.20.30.40".parse().unwrap()), None);
        assert!(!id.windows(4).any(|w| w == [10, 20, 30, 40]));
    }

    #[test]
    fn only_today_and_yesterday_are_counted() {
        let now: DateTime<Utc> = "2026-12-01T10:00:00Z".parse().unwrap();
        let day = |s: &str| countable_day(s.parse().unwrap(), now);
        assert_eq!(day("2026-12-01T09:59:00Z"), Some(now.date_naive()));
        assert!(day("2026-11-30T00:00:00Z").is_some());
        assert_eq!(day("2026-11-29T23:59:59Z"), None);
        // A click stamped in the future (clock skew) is not counted either.
        assert_eq!(day("2026-12-02T00:00:01Z"), None);
        assert_eq!(
            first_countable_day(now.date_naive()),
            "2026-11-30".parse::<NaiveDate>().unwrap()
        );
    }
}
