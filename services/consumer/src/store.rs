//! Writing enriched clicks to Postgres, idempotently by event_id, with the rollups they
//! add in the same transaction.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{NaiveDate, Utc};
use rand::Rng;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::enrich::{privacy, Enrichment};
use crate::rollup;
use crate::sources;
use crate::visitors::{self, VisitorId};
use shortener_common::event::Click;

/// A click ready to be stored.
#[derive(Debug, Clone)]
pub struct ClickRow {
    pub click: Click,
    pub enrichment: Enrichment,
}

/// One multi-row statement: arrays of columns unnested into rows. Rows whose event_id is
/// already stored (a redelivery) are skipped; RETURNING lists the rows really added, the
/// only ones the rollups count.
const INSERT: &str = "\
INSERT INTO clicks (event_id, short_code, occurred_at, ip, user_agent, referer,
                    country_code, device_type, browser, os, is_bot, traffic_source, matched_rule)
SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::text[]::inet[],
                     $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                     $11::bool[], $12::text[], $13::int2[])
ON CONFLICT DO NOTHING
RETURNING event_id";

/// Human clicks per link, what url-api checks visit limits (max_visits) against. Rows in
/// code order, so concurrent writers lock the counters in one order.
const COUNT_VISITS: &str = "\
INSERT INTO link_visits (short_code, human_visits)
SELECT * FROM UNNEST($1::text[], $2::int8[])
ON CONFLICT (short_code) DO UPDATE
    SET human_visits = link_visits.human_visits + excluded.human_visits";

/// The visitors of a batch not yet in their day's set: inserted, and returned if new.
const INSERT_VISITORS: &str = "\
INSERT INTO click_visitors (short_code, day, visitor)
SELECT * FROM UNNEST($1::text[], $2::date[], $3::bytea[])
ON CONFLICT DO NOTHING
RETURNING short_code, day, visitor";

/// Inserts `rows` and adds what they add to the rollups, in one transaction; returns how
/// many rows were new. A crash or error anywhere rolls back both, so a redelivered batch is
/// counted exactly once, by whichever attempt commits.
pub async fn insert_clicks(pool: &PgPool, rows: &[ClickRow]) -> Result<u64, sqlx::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let n = rows.len();
    let mut event_ids = Vec::with_capacity(n);
    let mut codes = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    let mut ips = Vec::with_capacity(n);
    let mut agents = Vec::with_capacity(n);
    let mut referers = Vec::with_capacity(n);
    let mut countries = Vec::with_capacity(n);
    let mut devices = Vec::with_capacity(n);
    let mut browsers = Vec::with_capacity(n);
    let mut oses = Vec::with_capacity(n);
    let mut bots = Vec::with_capacity(n);
    let mut sources = Vec::with_capacity(n);
    let mut rules = Vec::with_capacity(n);
    for ClickRow { click, enrichment } in rows {
        event_ids.push(click.event_id);
        codes.push(click.short_code.as_str());
        times.push(click.occurred_at);
        ips.push(enrichment.stored_ip.map(|ip| ip.to_string()));
        agents.push(
            click
                .user_agent
                .as_deref()
                .map(|ua| privacy::truncate(ua, privacy::MAX_STORED_USER_AGENT)),
        );
        referers.push(
            click
                .referer
                .as_deref()
                .map(|r| privacy::truncate(r, privacy::MAX_STORED_REFERER)),
        );
        countries.push(enrichment.country_code.as_str());
        devices.push(enrichment.device_type.as_str());
        browsers.push(enrichment.browser.as_str());
        oses.push(enrichment.os.as_str());
        bots.push(enrichment.is_bot);
        sources.push(enrichment.traffic_source.as_str());
        // Bounded by MAX_MATCHED_RULE when the click was decoded.
        rules.push(click.matched_rule.and_then(|n| i16::try_from(n).ok()));
    }
    let mut tx = pool.begin().await?;
    let inserted: Vec<Uuid> = sqlx::query_scalar(INSERT)
        .bind(&event_ids)
        .bind(&codes)
        .bind(&times)
        .bind(&ips)
        .bind(&agents)
        .bind(&referers)
        .bind(&countries)
        .bind(&devices)
        .bind(&browsers)
        .bind(&oses)
        .bind(&bots)
        .bind(&sources)
        .bind(&rules)
        .fetch_all(&mut *tx)
        .await?;
    if inserted.is_empty() {
        tx.commit().await?;
        return Ok(0);
    }
    // Each returned id stands for the first row carrying it (a batch may repeat a click).
    let mut new: HashSet<Uuid> = inserted.iter().copied().collect();
    let added: Vec<&ClickRow> = rows
        .iter()
        .filter(|r| new.remove(&r.click.event_id))
        .collect();
    let new_visitors = new_visitors(&mut tx, &added).await?;
    let day_sources: BTreeSet<sources::SourceKey<'_>> = added
        .iter()
        .map(|r| {
            (
                r.click.short_code.as_str(),
                rollup::day(r.click.occurred_at),
                r.enrichment.traffic_source.as_str(),
            )
        })
        .collect();
    let folded = sources::fold(&mut tx, day_sources).await?;
    let deltas = rollup::deltas(added.iter().zip(new_visitors).map(|(r, new_visitor)| {
        let code = r.click.short_code.as_str();
        rollup::Added {
            short_code: code,
            occurred_at: r.click.occurred_at,
            enrichment: &r.enrichment,
            new_visitor,
            source: folded.source(
                code,
                rollup::day(r.click.occurred_at),
                &r.enrichment.traffic_source,
            ),
        }
    }));
    let slot = rand::rng().random_range(0..rollup::TOTAL_SLOTS);
    rollup::apply(&mut tx, &deltas, slot).await?;
    let (codes, visits): (Vec<&str>, Vec<i64>) = deltas
        .totals
        .iter()
        .filter(|(_, c)| c.humans > 0)
        .map(|(code, c)| (*code, c.humans))
        .unzip();
    if !codes.is_empty() {
        sqlx::query(COUNT_VISITS)
            .bind(&codes)
            .bind(&visits)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(inserted.len() as u64)
}

/// For each of `added`: is it its visitor's first click of the day on that link? Human
/// clicks of countable days only; the first of several clicks in the batch (by time) is
/// the one that counts.
async fn new_visitors(
    conn: &mut PgConnection,
    added: &[&ClickRow],
) -> Result<Vec<bool>, sqlx::Error> {
    let now = Utc::now();
    let mut flags = vec![false; added.len()];
    let keyed: Vec<(usize, NaiveDate)> = added
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.enrichment.is_bot)
        .filter_map(|(i, r)| Some((i, visitors::countable_day(r.click.occurred_at, now)?)))
        .collect();
    if keyed.is_empty() {
        return Ok(flags);
    }
    let mut days: Vec<NaiveDate> = keyed.iter().map(|(_, d)| *d).collect();
    days.sort_unstable();
    days.dedup();
    let salts = visitors::salts(conn, &days, now.date_naive()).await?;
    let mut firsts: BTreeMap<(&str, NaiveDate, VisitorId), usize> = BTreeMap::new();
    for (i, day) in keyed {
        let Some(salt) = salts.get(&day) else {
            continue;
        };
        let click = &added[i].click;
        let id = visitors::visitor_id(salt, click.ip, click.user_agent.as_deref());
        firsts
            .entry((click.short_code.as_str(), day, id))
            .and_modify(|first| {
                if click.occurred_at < added[*first].click.occurred_at {
                    *first = i;
                }
            })
            .or_insert(i);
    }
    // Key order: concurrent batches insert the same keys in the same order.
    let (codes, days, ids): (Vec<&str>, Vec<NaiveDate>, Vec<&[u8]>) = firsts
        .keys()
        .map(|(c, d, v)| (*c, *d, v.as_slice()))
        .collect();
    let fresh: Vec<(String, NaiveDate, Vec<u8>)> = sqlx::query_as(INSERT_VISITORS)
        .bind(&codes)
        .bind(&days)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
    for (code, day, id) in fresh {
        let Ok(id) = VisitorId::try_from(id.as_slice()) else {
            continue;
        };
        if let Some(&i) = firsts.get(&(code.as_str(), day, id)) {
            flags[i] = true;
        }
    }
    Ok(flags)
}
