//! What a batch of newly stored clicks adds to the rollups (migrations: `click_totals`,
//! `click_hourly`, `click_dims_hourly`, `click_dims_daily`), and the statements adding it.
//!
//! The deltas are summed in memory first, so a batch touches each rollup row once, and are
//! written in key order: every writer locks rows in the same order, so writers of the same
//! link wait for each other at most for one statement and never deadlock.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sqlx::PgConnection;

use crate::enrich::Enrichment;

/// Slot rows per link in `click_totals`.
pub const TOTAL_SLOTS: i16 = 8;

/// One newly stored click, as the rollups see it.
pub struct Added<'a> {
    pub short_code: &'a str,
    pub occurred_at: DateTime<Utc>,
    pub enrichment: &'a Enrichment,
    /// Its visitor was not seen before on that day (and link).
    pub new_visitor: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub humans: i64,
    pub bots: i64,
    pub visitors: i64,
}

/// is_bot, country, device type, browser, OS, traffic source.
pub type Dims<'a> = (bool, &'a str, &'a str, &'a str, &'a str, &'a str);

/// The sums one batch adds, keyed as the rollup tables are.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deltas<'a> {
    pub totals: BTreeMap<&'a str, Counts>,
    pub hourly: BTreeMap<(&'a str, DateTime<Utc>), Counts>,
    pub dims_hourly: BTreeMap<(&'a str, DateTime<Utc>, Dims<'a>), i64>,
    pub dims_daily: BTreeMap<(&'a str, DateTime<Utc>, Dims<'a>), i64>,
}

fn trunc(t: DateTime<Utc>, step: TimeDelta) -> DateTime<Utc> {
    t.duration_trunc(step).unwrap_or(t)
}

pub fn deltas<'a>(added: impl IntoIterator<Item = Added<'a>>) -> Deltas<'a> {
    let mut d = Deltas::default();
    for a in added {
        let e = a.enrichment;
        let mut c = Counts {
            visitors: i64::from(a.new_visitor && !e.is_bot),
            ..Counts::default()
        };
        if e.is_bot {
            c.bots = 1;
        } else {
            c.humans = 1;
        }
        let hour = trunc(a.occurred_at, TimeDelta::hours(1));
        let day = trunc(a.occurred_at, TimeDelta::days(1));
        let dims = (
            e.is_bot,
            e.country_code.as_str(),
            e.device_type.as_str(),
            e.browser.as_str(),
            e.os.as_str(),
            e.traffic_source.as_str(),
        );
        add(d.totals.entry(a.short_code).or_default(), c);
        add(d.hourly.entry((a.short_code, hour)).or_default(), c);
        *d.dims_hourly.entry((a.short_code, hour, dims)).or_default() += 1;
        *d.dims_daily.entry((a.short_code, day, dims)).or_default() += 1;
    }
    d
}

fn add(into: &mut Counts, c: Counts) {
    into.humans += c.humans;
    into.bots += c.bots;
    into.visitors += c.visitors;
}

const UPSERT_TOTALS: &str = "\
INSERT INTO click_totals (short_code, slot, humans, bots)
SELECT code, $2, h, b FROM UNNEST($1::text[], $3::int8[], $4::int8[]) AS t(code, h, b)
ON CONFLICT (short_code, slot) DO UPDATE
SET humans = click_totals.humans + excluded.humans, bots = click_totals.bots + excluded.bots";

const UPSERT_HOURLY: &str = "\
INSERT INTO click_hourly (short_code, hour, humans, bots, visitors)
SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::int8[], $4::int8[], $5::int8[])
ON CONFLICT (short_code, hour) DO UPDATE
SET humans = click_hourly.humans + excluded.humans, bots = click_hourly.bots + excluded.bots,
    visitors = click_hourly.visitors + excluded.visitors";

fn upsert_dims(table: &str) -> String {
    format!(
        "INSERT INTO {table} (short_code, bucket, is_bot, country_code, device_type, browser, os,
                              traffic_source, clicks)
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::bool[], $4::text[], $5::text[],
                              $6::text[], $7::text[], $8::text[], $9::int8[])
         ON CONFLICT (short_code, bucket, is_bot, country_code, device_type, browser, os,
                      traffic_source)
         DO UPDATE SET clicks = {table}.clicks + excluded.clicks"
    )
}

/// Adds `d` to the rollups, inside the caller's transaction. `slot`: the `click_totals`
/// slot this batch writes (0..TOTAL_SLOTS).
pub async fn apply(conn: &mut PgConnection, d: &Deltas<'_>, slot: i16) -> Result<(), sqlx::Error> {
    if d.totals.is_empty() {
        return Ok(());
    }
    let (codes, counts): (Vec<&str>, Vec<Counts>) = d.totals.iter().map(|(k, v)| (*k, *v)).unzip();
    sqlx::query(UPSERT_TOTALS)
        .bind(&codes)
        .bind(slot)
        .bind(counts.iter().map(|c| c.humans).collect::<Vec<_>>())
        .bind(counts.iter().map(|c| c.bots).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;

    let mut codes = Vec::with_capacity(d.hourly.len());
    let mut hours = Vec::with_capacity(d.hourly.len());
    let (mut humans, mut bots, mut visitors) = (Vec::new(), Vec::new(), Vec::new());
    for ((code, hour), c) in &d.hourly {
        codes.push(*code);
        hours.push(*hour);
        humans.push(c.humans);
        bots.push(c.bots);
        visitors.push(c.visitors);
    }
    sqlx::query(UPSERT_HOURLY)
        .bind(&codes)
        .bind(&hours)
        .bind(&humans)
        .bind(&bots)
        .bind(&visitors)
        .execute(&mut *conn)
        .await?;

    for (table, rows) in [
        ("click_dims_hourly", &d.dims_hourly),
        ("click_dims_daily", &d.dims_daily),
    ] {
        let n = rows.len();
        let mut codes = Vec::with_capacity(n);
        let mut buckets = Vec::with_capacity(n);
        let mut is_bot = Vec::with_capacity(n);
        let mut country = Vec::with_capacity(n);
        let mut device = Vec::with_capacity(n);
        let mut browser = Vec::with_capacity(n);
        let mut os = Vec::with_capacity(n);
        let mut source = Vec::with_capacity(n);
        let mut clicks = Vec::with_capacity(n);
        for ((code, bucket, (b, c, dv, br, o, s)), n) in rows {
            codes.push(*code);
            buckets.push(*bucket);
            is_bot.push(*b);
            country.push(*c);
            device.push(*dv);
            browser.push(*br);
            os.push(*o);
            source.push(*s);
            clicks.push(*n);
        }
        sqlx::query(&upsert_dims(table))
            .bind(&codes)
            .bind(&buckets)
            .bind(&is_bot)
            .bind(&country)
            .bind(&device)
            .bind(&browser)
            .bind(&os)
            .bind(&source)
            .bind(&clicks)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::DeviceType;

    fn enrichment(bot: bool, country: &str) -> Enrichment {
        Enrichment {
            country_code: country.into(),
            device_type: if bot {
                DeviceType::Bot
            } else {
                DeviceType::Desktop
            },
            browser: "Firefox".into(),
            os: "Linux".into(),
            is_bot: bot,
            traffic_source: "direct".into(),
            stored_ip: None,
        }
    }

    #[test]
    fn a_batch_sums_per_link_hour_and_combination() {
        let human_de = enrichment(false, "DE");
        let human_fr = enrichment(false, "FR");
        let bot = enrichment(true, "US");
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let added = vec![
            Added {
                short_code: "a",
                occurred_at: t("2026-12-01T10:05:00Z"),
                enrichment: &human_de,
                new_visitor: true,
            },
            Added {
                short_code: "a",
                occurred_at: t("2026-12-01T10:55:00Z"),
                enrichment: &human_de,
                new_visitor: false,
            },
            Added {
                short_code: "a",
                occurred_at: t("2026-12-01T11:00:00Z"),
                enrichment: &human_fr,
                new_visitor: true,
            },
            // A bot's "new visitor" flag is ignored: bots are not visitors.
            Added {
                short_code: "a",
                occurred_at: t("2026-12-01T11:30:00Z"),
                enrichment: &bot,
                new_visitor: true,
            },
            Added {
                short_code: "b",
                occurred_at: t("2026-12-01T10:00:00Z"),
                enrichment: &human_de,
                new_visitor: true,
            },
        ];
        let d = deltas(added);
        assert_eq!(
            d.totals["a"],
            Counts {
                humans: 3,
                bots: 1,
                visitors: 2
            }
        );
        assert_eq!(
            d.totals["b"],
            Counts {
                humans: 1,
                bots: 0,
                visitors: 1
            }
        );
        assert_eq!(
            d.hourly[&("a", t("2026-12-01T10:00:00Z"))],
            Counts {
                humans: 2,
                bots: 0,
                visitors: 1
            }
        );
        assert_eq!(
            d.hourly[&("a", t("2026-12-01T11:00:00Z"))],
            Counts {
                humans: 1,
                bots: 1,
                visitors: 1
            }
        );
        assert_eq!(d.dims_hourly.len(), 4);
        let de = (false, "DE", "desktop", "Firefox", "Linux", "direct");
        assert_eq!(d.dims_hourly[&("a", t("2026-12-01T10:00:00Z"), de)], 2);
        assert_eq!(d.dims_daily[&("a", t("2026-12-01T00:00:00Z"), de)], 2);
        assert_eq!(d.dims_daily.len(), 4);
        assert_eq!(d.dims_daily.values().sum::<i64>(), 5);
    }
}
