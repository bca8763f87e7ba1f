//! Writing enriched clicks to Postgres, idempotently by event_id, and queueing the rows
//! really added for the rollups ([`crate::rollup_worker`]) in the same transaction.

use std::collections::HashSet;

use chrono::{NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::enrich::{privacy, Enrichment};
use crate::visitors;
use shortener_common::event::Click;

/// A click ready to be stored.
#[derive(Debug, Clone)]
pub struct ClickRow {
    pub click: Click,
    pub enrichment: Enrichment,
}

/// One multi-row statement: arrays of columns unnested into rows. Rows whose event_id is
/// already stored (a redelivery) are skipped, and so are rows older than the retention
/// floor (`retention_floor`: their stored copy may have been dropped, so a
/// redelivery could not be told apart); RETURNING lists the rows really added, the only
/// ones queued for the rollups.
const INSERT: &str = "\
INSERT INTO clicks (event_id, short_code, occurred_at, ip, user_agent, referer,
                    country_code, device_type, browser, os, is_bot, traffic_source, matched_rule)
SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::text[]::inet[],
                     $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
                     $11::bool[], $12::text[], $13::int2[])
    AS c(event_id, short_code, occurred_at, ip, user_agent, referer, country_code,
         device_type, browser, os, is_bot, traffic_source, matched_rule)
WHERE c.occurred_at >= coalesce((SELECT kept_from FROM retention_floor), '-infinity')
ON CONFLICT DO NOTHING
RETURNING event_id";

/// What the rollups need of each added click, the visitor as its day's keyed hash.
const ENQUEUE: &str = "\
INSERT INTO click_rollup_queue (short_code, occurred_at, country_code, device_type, browser,
                                os, is_bot, traffic_source, visitor)
SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[],
                     $6::text[], $7::bool[], $8::text[], $9::bytea[])";

/// Inserts `rows` and queues the ones really added for the rollups, in one transaction;
/// returns how many rows were new. A crash or error anywhere rolls back both, so a
/// redelivered batch is queued (and counted) exactly once, by whichever attempt commits.
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
    enqueue(&mut tx, &added).await?;
    tx.commit().await?;
    Ok(inserted.len() as u64)
}

async fn enqueue(conn: &mut PgConnection, added: &[&ClickRow]) -> Result<(), sqlx::Error> {
    let ids = visitor_ids(conn, added).await?;
    let n = added.len();
    let (mut codes, mut times, mut countries, mut devices) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut browsers, mut oses, mut bots, mut sources) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for ClickRow { click, enrichment } in added {
        codes.push(click.short_code.as_str());
        times.push(click.occurred_at);
        countries.push(enrichment.country_code.as_str());
        devices.push(enrichment.device_type.as_str());
        browsers.push(enrichment.browser.as_str());
        oses.push(enrichment.os.as_str());
        bots.push(enrichment.is_bot);
        sources.push(enrichment.traffic_source.as_str());
    }
    let ids: Vec<Option<&[u8]>> = ids.iter().map(|id| id.as_ref().map(|v| &v[..])).collect();
    sqlx::query(ENQUEUE)
        .bind(&codes)
        .bind(&times)
        .bind(&countries)
        .bind(&devices)
        .bind(&browsers)
        .bind(&oses)
        .bind(&bots)
        .bind(&sources)
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The visitor of each of `added` under its day's key, taken now: the raw address is
/// anonymized before storage. None for bots and for clicks of days no longer counted.
async fn visitor_ids(
    conn: &mut PgConnection,
    added: &[&ClickRow],
) -> Result<Vec<Option<visitors::VisitorId>>, sqlx::Error> {
    let now = Utc::now();
    let days: Vec<Option<NaiveDate>> = added
        .iter()
        .map(|r| {
            (!r.enrichment.is_bot)
                .then(|| visitors::countable_day(r.click.occurred_at, now))
                .flatten()
        })
        .collect();
    let mut wanted: Vec<NaiveDate> = days.iter().flatten().copied().collect();
    if wanted.is_empty() {
        return Ok(vec![None; added.len()]);
    }
    wanted.sort_unstable();
    wanted.dedup();
    let salts = visitors::salts(conn, &wanted, now.date_naive()).await?;
    Ok(added
        .iter()
        .zip(days)
        .map(|(r, day)| {
            let salt = salts.get(&day?)?;
            Some(visitors::visitor_id(
                salt,
                r.click.ip,
                r.click.user_agent.as_deref(),
            ))
        })
        .collect())
}
