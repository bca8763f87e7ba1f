//! What a batch of newly stored clicks adds to the rollups (migrations: `click_totals`,
//! `click_hourly`, `click_breakdown_hourly`, `click_breakdown_daily`), and the statements
//! adding it. A click adds one to its link's totals and hour, and one to a breakdown row
//! per dimension (country, device, browser, OS, source) per grain (hour, day).
//!
//! The deltas are summed in memory first, so a batch touches each rollup row once, and are
//! written in key order: every writer locks rows in the same order, so writers of the same
//! link wait for each other at most for one statement and never deadlock.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sqlx::PgConnection;

/// Slot rows per link in `click_totals`.
pub const TOTAL_SLOTS: i16 = 8;

/// One newly stored click, as the rollups see it.
pub struct Added<'a> {
    pub short_code: &'a str,
    pub occurred_at: DateTime<Utc>,
    pub country_code: &'a str,
    pub device_type: &'a str,
    pub browser: &'a str,
    pub os: &'a str,
    pub is_bot: bool,
    /// Its visitor was not seen before on that day (and link).
    pub new_visitor: bool,
    /// Its traffic source as counted: the enrichment's, or the fold value once the link's
    /// day holds its cap of sources (`sources`).
    pub source: &'a str,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub humans: i64,
    pub bots: i64,
    pub visitors: i64,
}

/// A breakdown dimension; the order is `click_dimension`'s, so keys sort as its rows do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    Country,
    Device,
    Browser,
    Os,
    Source,
}

impl Dimension {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Country => "country",
            Self::Device => "device",
            Self::Browser => "browser",
            Self::Os => "os",
            Self::Source => "source",
        }
    }
}

/// A breakdown row's key: link, bucket, dimension, value, bot flag.
pub type BreakdownKey<'a> = (&'a str, DateTime<Utc>, Dimension, &'a str, bool);

/// The sums one batch adds, keyed as the rollup tables are.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Deltas<'a> {
    pub totals: BTreeMap<&'a str, Counts>,
    pub hourly: BTreeMap<(&'a str, DateTime<Utc>), Counts>,
    pub breakdown_hourly: BTreeMap<BreakdownKey<'a>, i64>,
    pub breakdown_daily: BTreeMap<BreakdownKey<'a>, i64>,
}

pub fn trunc(t: DateTime<Utc>, step: TimeDelta) -> DateTime<Utc> {
    t.duration_trunc(step).unwrap_or(t)
}

/// The day (UTC) bucket of `t`.
pub fn day(t: DateTime<Utc>) -> DateTime<Utc> {
    trunc(t, TimeDelta::days(1))
}

pub fn deltas<'a>(added: impl IntoIterator<Item = Added<'a>>) -> Deltas<'a> {
    let mut d = Deltas::default();
    for a in added {
        let mut c = Counts {
            visitors: i64::from(a.new_visitor && !a.is_bot),
            ..Counts::default()
        };
        if a.is_bot {
            c.bots = 1;
        } else {
            c.humans = 1;
        }
        let hour = trunc(a.occurred_at, TimeDelta::hours(1));
        let day = day(a.occurred_at);
        add(d.totals.entry(a.short_code).or_default(), c);
        add(d.hourly.entry((a.short_code, hour)).or_default(), c);
        for (dimension, value) in [
            (Dimension::Country, a.country_code),
            (Dimension::Device, a.device_type),
            (Dimension::Browser, a.browser),
            (Dimension::Os, a.os),
            (Dimension::Source, a.source),
        ] {
            let key = |bucket| (a.short_code, bucket, dimension, value, a.is_bot);
            *d.breakdown_hourly.entry(key(hour)).or_default() += 1;
            *d.breakdown_daily.entry(key(day)).or_default() += 1;
        }
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

fn upsert_breakdown(table: &str) -> String {
    format!(
        "INSERT INTO {table} (short_code, bucket, dimension, value, is_bot, clicks)
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[]::click_dimension[],
                              $4::text[], $5::bool[], $6::int8[])
         ON CONFLICT (short_code, bucket, dimension, value, is_bot)
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
        ("click_breakdown_hourly", &d.breakdown_hourly),
        ("click_breakdown_daily", &d.breakdown_daily),
    ] {
        let n = rows.len();
        let mut codes = Vec::with_capacity(n);
        let mut buckets = Vec::with_capacity(n);
        let mut dimensions = Vec::with_capacity(n);
        let mut values = Vec::with_capacity(n);
        let mut is_bot = Vec::with_capacity(n);
        let mut clicks = Vec::with_capacity(n);
        for ((code, bucket, dimension, value, bot), n) in rows {
            codes.push(*code);
            buckets.push(*bucket);
            dimensions.push(dimension.as_str());
            values.push(*value);
            is_bot.push(*bot);
            clicks.push(*n);
        }
        sqlx::query(&upsert_breakdown(table))
            .bind(&codes)
            .bind(&buckets)
            .bind(&dimensions)
            .bind(&values)
            .bind(&is_bot)
            .bind(&clicks)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrich::{DeviceType, Enrichment};

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

    fn added<'a>(
        short_code: &'a str,
        occurred_at: DateTime<Utc>,
        e: &'a Enrichment,
        new_visitor: bool,
    ) -> Added<'a> {
        Added {
            short_code,
            occurred_at,
            country_code: &e.country_code,
            device_type: e.device_type.as_str(),
            browser: &e.browser,
            os: &e.os,
            is_bot: e.is_bot,
            new_visitor,
            source: &e.traffic_source,
        }
    }

    fn d_key<'a>(
        code: &'a str,
        bucket: DateTime<Utc>,
        dim: Dimension,
        value: &'a str,
        bot: bool,
    ) -> BreakdownKey<'a> {
        (code, bucket, dim, value, bot)
    }

    #[test]
    fn a_batch_sums_per_link_hour_dimension_and_value() {
        let human_de = enrichment(false, "DE");
        let human_fr = enrichment(false, "FR");
        let bot = enrichment(true, "US");
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let added = vec![
            added("a", t("2026-12-01T10:05:00Z"), &human_de, true),
            added("a", t("2026-12-01T10:55:00Z"), &human_de, false),
            added("a", t("2026-12-01T11:00:00Z"), &human_fr, true),
            // A bot's "new visitor" flag is ignored: bots are not visitors.
            added("a", t("2026-12-01T11:30:00Z"), &bot, true),
            added("b", t("2026-12-01T10:00:00Z"), &human_de, true),
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
        // a: DE/desktop/Firefox/Linux/direct humans at 10h, FR at 11h, one bot at 11h.
        let row = |bucket: &str, dim, value, bot| d_key("a", t(bucket), dim, value, bot);
        assert_eq!(
            d.breakdown_hourly[&row("2026-12-01T10:00:00Z", Dimension::Country, "DE", false)],
            2
        );
        assert_eq!(
            d.breakdown_hourly[&row("2026-12-01T11:00:00Z", Dimension::Country, "FR", false)],
            1
        );
        assert_eq!(
            d.breakdown_daily[&row("2026-12-01T00:00:00Z", Dimension::Browser, "Firefox", false)],
            3
        );
        assert_eq!(
            d.breakdown_daily[&row("2026-12-01T00:00:00Z", Dimension::Device, "bot", true)],
            1
        );
        // Every click counts once in each dimension of each grain.
        for dim in [
            Dimension::Country,
            Dimension::Device,
            Dimension::Browser,
            Dimension::Os,
            Dimension::Source,
        ] {
            let sum = |m: &BTreeMap<BreakdownKey<'_>, i64>| {
                m.iter()
                    .filter(|(k, _)| k.2 == dim)
                    .map(|(_, n)| n)
                    .sum::<i64>()
            };
            assert_eq!(sum(&d.breakdown_hourly), 5);
            assert_eq!(sum(&d.breakdown_daily), 5);
        }
        // a: 3 countries-with-bot-flag rows a day (DE, FR, US bot); b: 1.
        assert_eq!(
            d.breakdown_daily
                .keys()
                .filter(|k| k.2 == Dimension::Country)
                .count(),
            4
        );
    }
}
