//! The cap on distinct traffic sources per link and day (`click_source_cap()` in the
//! migrations, docs/performance.md "Referer flood"). Anyone can send any Referer, so each
//! link's day keeps the first sources it sees, up to the cap; clicks of any later new
//! source are counted under the fold value (`click_source_fold()`), which reads show in
//! the `other` entry. Decided inside the transaction that stores and counts the click, so
//! it is decided once, by whichever delivery commits, and both grains (hour, day) agree.
//!
//! Existing sources need no lock. A link's day gaining new ones is locked (a transaction
//! advisory lock, taken in key order like every other lock of the batch) while its kept
//! sources are counted, so concurrent writers never keep more than the cap.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// (link, day bucket, source)
pub type SourceKey<'a> = (&'a str, DateTime<Utc>, &'a str);

/// The batch's (link, day, source) triples already counted as themselves.
const SEEN: &str = "\
SELECT c.code, c.day, c.value
FROM UNNEST($1::text[], $2::timestamptz[], $3::text[]) AS c(code, day, value)
WHERE EXISTS (SELECT 1 FROM click_breakdown_daily d
              WHERE d.short_code = c.code AND d.bucket = c.day AND d.dimension = 'source'
                AND d.value = c.value)";

/// One lock per link's day, in the order of the lock keys (a total order every writer
/// shares, so none waits in a cycle). The first argument names what the locks are for.
const LOCK_DAYS: &str = "\
SELECT count(pg_advisory_xact_lock(1936879475, k))
FROM (SELECT DISTINCT hashtext(code || ' ' || extract(epoch FROM day)::int8) AS k
      FROM UNNEST($1::text[], $2::timestamptz[]) AS t(code, day)
      ORDER BY k) s";

/// Per link's day: how many more sources it may keep.
const ROOM: &str = "\
SELECT c.code, c.day,
       greatest(click_source_cap() - (SELECT count(DISTINCT d.value) FROM click_breakdown_daily d
                                      WHERE d.short_code = c.code AND d.bucket = c.day
                                        AND d.dimension = 'source'
                                        AND d.value <> click_source_fold()), 0)::int8
FROM UNNEST($1::text[], $2::timestamptz[]) AS c(code, day)";

/// The sources of a batch that are counted under the fold value, and that value.
#[derive(Debug, Default)]
pub struct Folded<'a> {
    pub fold: String,
    pub folded: HashSet<SourceKey<'a>>,
}

impl Folded<'_> {
    /// The source `value` of a click of `code` on `day` is counted as.
    pub fn source<'s>(&'s self, code: &str, day: DateTime<Utc>, value: &'s str) -> &'s str {
        if self.folded.contains(&(code, day, value)) {
            &self.fold
        } else {
            value
        }
    }
}

/// Of the new sources of each link's day (in key order), those past the day's `room`.
pub fn over_cap<'a>(
    new: &BTreeSet<SourceKey<'a>>,
    room: &BTreeMap<(&str, DateTime<Utc>), i64>,
) -> HashSet<SourceKey<'a>> {
    let mut used: BTreeMap<(&str, DateTime<Utc>), i64> = BTreeMap::new();
    new.iter()
        .filter(|(code, day, _)| {
            let n = used.entry((code, *day)).or_default();
            *n += 1;
            *n > room.get(&(*code, *day)).copied().unwrap_or(0)
        })
        .copied()
        .collect()
}

/// Which of the batch's `sources` are folded, inside the storing transaction.
pub async fn fold<'a>(
    conn: &mut PgConnection,
    sources: BTreeSet<SourceKey<'a>>,
) -> Result<Folded<'a>, sqlx::Error> {
    let fold: String = sqlx::query_scalar("SELECT click_source_fold()")
        .fetch_one(&mut *conn)
        .await?;
    let mut new: BTreeSet<SourceKey<'a>> =
        sources.into_iter().filter(|(_, _, v)| *v != fold).collect();
    remove_seen(conn, &mut new).await?;
    if new.is_empty() {
        return Ok(Folded {
            fold,
            folded: HashSet::new(),
        });
    }
    let days: BTreeSet<(&str, DateTime<Utc>)> = new.iter().map(|(c, d, _)| (*c, *d)).collect();
    let (codes, buckets): (Vec<&str>, Vec<DateTime<Utc>>) = days.iter().copied().unzip();
    sqlx::query(LOCK_DAYS)
        .bind(&codes)
        .bind(&buckets)
        .execute(&mut *conn)
        .await?;
    // Under the locks: what other writers added meanwhile is now visible.
    remove_seen(conn, &mut new).await?;
    let room: Vec<(String, DateTime<Utc>, i64)> = sqlx::query_as(ROOM)
        .bind(&codes)
        .bind(&buckets)
        .fetch_all(&mut *conn)
        .await?;
    let room: BTreeMap<(&str, DateTime<Utc>), i64> = room
        .iter()
        .filter_map(|(code, day, n)| {
            let code = days.get(&(code.as_str(), *day))?.0;
            Some(((code, *day), *n))
        })
        .collect();
    Ok(Folded {
        folded: over_cap(&new, &room),
        fold,
    })
}

async fn remove_seen(
    conn: &mut PgConnection,
    new: &mut BTreeSet<SourceKey<'_>>,
) -> Result<(), sqlx::Error> {
    if new.is_empty() {
        return Ok(());
    }
    let (mut codes, mut days, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for (c, d, v) in new.iter() {
        codes.push(*c);
        days.push(*d);
        values.push(*v);
    }
    let seen: Vec<(String, DateTime<Utc>, String)> = sqlx::query_as(SEEN)
        .bind(&codes)
        .bind(&days)
        .bind(&values)
        .fetch_all(&mut *conn)
        .await?;
    let seen: HashSet<SourceKey<'_>> = seen
        .iter()
        .map(|(c, d, v)| (c.as_str(), *d, v.as_str()))
        .collect();
    new.retain(|k| !seen.contains(k));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_days_new_sources_past_its_room_are_folded_in_key_order() {
        let d1: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let d2: DateTime<Utc> = "2026-12-02T00:00:00Z".parse().unwrap();
        let new: BTreeSet<SourceKey<'_>> = [
            ("a", d1, "x.com"),
            ("a", d1, "a.com"),
            ("a", d1, "m.com"),
            ("a", d2, "z.com"),
            ("b", d1, "q.com"),
        ]
        .into_iter()
        .collect();
        let room = [(("a", d1), 2), (("a", d2), 0), (("b", d1), 5)]
            .into_iter()
            .collect();
        let folded = over_cap(&new, &room);
        let want: HashSet<SourceKey<'_>> = [("a", d1, "x.com"), ("a", d2, "z.com")]
            .into_iter()
            .collect();
        assert_eq!(folded, want);
    }

    #[test]
    fn folded_sources_read_as_the_fold_value() {
        let d1: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let f = Folded {
            fold: "(other)".into(),
            folded: [("a", d1, "x.com")].into_iter().collect(),
        };
        assert_eq!(f.source("a", d1, "x.com"), "(other)");
        assert_eq!(f.source("a", d1, "y.com"), "y.com");
        assert_eq!(f.source("b", d1, "x.com"), "x.com");
    }
}
