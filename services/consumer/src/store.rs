//! Writing enriched clicks to Postgres, idempotently by event_id.

use sqlx::PgPool;

use crate::enrich::Enrichment;
use shortener_common::bots;
use shortener_common::event::Click;

/// A click ready to be stored.
#[derive(Debug, Clone)]
pub struct ClickRow {
    pub click: Click,
    pub enrichment: Enrichment,
}

/// One multi-row statement: arrays of columns unnested into rows. Rows whose event_id is
/// already stored (a redelivery) are skipped, so the returned count is new rows only. The
/// same statement adds the new human clicks to `link_visits` (what url-api checks visit
/// limits against): counted exactly once with their click, in code order so concurrent
/// writers lock the counters in one order.
const INSERT: &str = "\
WITH new AS (
    INSERT INTO clicks (event_id, short_code, occurred_at, ip, user_agent, referer,
                        country_code, device_type, browser, traffic_source, matched_rule)
    SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::text[]::inet[],
                         $5::text[], $6::text[], $7::text[], $8::text[], $9::text[],
                         $10::text[], $11::int2[])
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id, short_code
), human AS (
    SELECT new.short_code, count(*) AS visits
    FROM new JOIN UNNEST($1::uuid[], $12::bool[]) AS h(event_id, human) USING (event_id)
    WHERE h.human
    GROUP BY new.short_code
), counted AS (
    INSERT INTO link_visits (short_code, human_visits)
    SELECT short_code, visits FROM human ORDER BY short_code
    ON CONFLICT (short_code) DO UPDATE
        SET human_visits = link_visits.human_visits + excluded.human_visits
)
SELECT count(*) FROM new";

/// Inserts `rows` in one statement (its own transaction); returns how many were new.
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
    let mut sources = Vec::with_capacity(n);
    let mut rules = Vec::with_capacity(n);
    let mut humans = Vec::with_capacity(n);
    for ClickRow { click, enrichment } in rows {
        event_ids.push(click.event_id);
        codes.push(click.short_code.as_str());
        times.push(click.occurred_at);
        ips.push(click.ip.map(|ip| ip.to_string()));
        agents.push(click.user_agent.as_deref());
        referers.push(click.referer.as_deref());
        countries.push(enrichment.country_code.as_str());
        devices.push(enrichment.device_type.as_str());
        browsers.push(enrichment.browser.as_str());
        sources.push(enrichment.traffic_source.as_str());
        // Bounded by MAX_MATCHED_RULE when the click was decoded.
        rules.push(click.matched_rule.and_then(|n| i16::try_from(n).ok()));
        humans.push(!bots::is_bot(click.user_agent.as_deref()));
    }
    let (stored,): (i64,) = sqlx::query_as(INSERT)
        .bind(&event_ids)
        .bind(&codes)
        .bind(&times)
        .bind(&ips)
        .bind(&agents)
        .bind(&referers)
        .bind(&countries)
        .bind(&devices)
        .bind(&browsers)
        .bind(&sources)
        .bind(&rules)
        .bind(&humans)
        .fetch_one(pool)
        .await?;
    Ok(stored as u64)
}
