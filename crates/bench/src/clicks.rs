//! Synthetic clicks: varied events to pre-produce for the consumer benchmark, the
//! no-Kafka/no-enrichment insert ceiling they are compared against, and the bulk
//! analytics links (one `INSERT … SELECT generate_series` each).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use shortener_common::event::Click;
use sqlx::PgPool;

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    "curl/8.5.0",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
];

const REFERERS: &[Option<&str>] = &[
    None,
    Some("https://www.google.com/"),
    Some("https://t.co/abc"),
    Some("https://www.facebook.com/"),
    Some("https://news.ycombinator.com/item?id=1"),
    Some("https://mail.google.com/mail/u/0/"),
    Some("https://blog.example.org/post"),
];

/// `count` clicks over `codes`, with public IPv4 addresses, user agents and referers that
/// exercise every enrichment path. Deterministic for a given `seed`.
pub fn synthetic(count: usize, codes: &[String], seed: u64) -> Vec<Click> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            // Avoid 0/10/127/224+ so most addresses are public and hit the GeoIP database.
            let ip = Ipv4Addr::new(
                rng.random_range(11..=99),
                rng.random(),
                rng.random(),
                rng.random_range(1..=254),
            );
            let mut click = Click::now(
                codes[rng.random_range(0..codes.len())].clone(),
                Some(IpAddr::V4(ip)),
                Some(USER_AGENTS[rng.random_range(0..USER_AGENTS.len())].to_string()),
                REFERERS[rng.random_range(0..REFERERS.len())].map(str::to_string),
            );
            click.event_id = uuid::Uuid::new_v4();
            click
        })
        .collect()
}

/// The same multi-row statement shape the consumer uses, with fixed enrichment values.
const INSERT: &str = "\
INSERT INTO clicks (event_id, short_code, occurred_at, ip, user_agent, referer,
                    country_code, device_type, browser, traffic_source)
SELECT e, c, t, i::inet, u, r, 'US', 'desktop', 'Chrome', 'search'
FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[])
     AS x(e, c, t, i, u, r)
ON CONFLICT (event_id, occurred_at) DO NOTHING";

/// Inserts `rows` in one statement; returns how many were new.
pub async fn insert_plain(pool: &PgPool, rows: &[Click]) -> Result<u64, sqlx::Error> {
    let ids: Vec<uuid::Uuid> = rows.iter().map(|c| c.event_id).collect();
    let codes: Vec<&str> = rows.iter().map(|c| c.short_code.as_str()).collect();
    let times: Vec<chrono::DateTime<Utc>> = rows.iter().map(|c| c.occurred_at).collect();
    let ips: Vec<Option<String>> = rows.iter().map(|c| c.ip.map(|i| i.to_string())).collect();
    let agents: Vec<Option<&str>> = rows.iter().map(|c| c.user_agent.as_deref()).collect();
    let referers: Vec<Option<&str>> = rows.iter().map(|c| c.referer.as_deref()).collect();
    Ok(sqlx::query(INSERT)
        .bind(&ids)
        .bind(&codes)
        .bind(&times)
        .bind(&ips)
        .bind(&agents)
        .bind(&referers)
        .execute(pool)
        .await?
        .rows_affected())
}

/// Inserts every row in batches of `batch_size`, `concurrency` statements at a time, and
/// returns (rows stored, elapsed): the ceiling for the consumer on this database.
pub async fn insert_ceiling(
    pool: &PgPool,
    rows: Arc<Vec<Click>>,
    batch_size: usize,
    concurrency: usize,
) -> Result<(u64, Duration), sqlx::Error> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let (pool, rows, next) = (pool.clone(), rows.clone(), next.clone());
            tokio::spawn(async move {
                let mut stored = 0;
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) * batch_size;
                    if i >= rows.len() {
                        return Ok::<u64, sqlx::Error>(stored);
                    }
                    let end = (i + batch_size).min(rows.len());
                    stored += insert_plain(&pool, &rows[i..end]).await?;
                }
            })
        })
        .collect();
    let mut stored = 0;
    for w in workers {
        stored += w.await.expect("insert worker panicked")?;
    }
    Ok((stored, start.elapsed()))
}

/// Fills one link per `(code, clicks)` with raw clicks in one statement each, spread over
/// the last 30 days: 11 countries, 8 (device, browser, OS) client profiles, 6 sources, 5 %
/// bots (the shape of the figures in docs/performance.md); then builds the rollups.
pub async fn seed_links(pool: &PgPool, links: &[(&str, i64)]) -> Result<(), sqlx::Error> {
    for (code, n) in links {
        sqlx::query(
            "INSERT INTO links (short_code, long_url, owner_key_id)
             VALUES ($1, 'https://example.com/' || $1, 'bench') ON CONFLICT DO NOTHING",
        )
        .bind(code)
        .execute(pool)
        .await?;
        sqlx::query(
            "INSERT INTO clicks (event_id, short_code, occurred_at, country_code, device_type,
                                 browser, os, traffic_source, is_bot)
             SELECT gen_random_uuid(), $1, now() - r.c * interval '30 days',
                    (ARRAY['US','US','US','DE','FR','GB','IN','BR','JP','CA','Unknown'])
                        [1 + floor(r.d * 11)::int],
                    p.device, p.browser, p.os,
                    (ARRAY['direct','google','twitter','facebook','ycombinator.com',
                           'example.org'])[1 + floor(r.h * 6)::int],
                    p.device = 'bot'
             FROM generate_series(1, $2::bigint) g,
                  LATERAL (SELECT random() + g * 0 AS c, random() AS d, random() AS e,
                                  random() AS h) r,
                  LATERAL (SELECT * FROM (VALUES
                      (0.00, 'desktop', 'Chrome', 'Windows 10'),
                      (0.25, 'desktop', 'Firefox', 'Linux'),
                      (0.35, 'desktop', 'Safari', 'Mac OSX'),
                      (0.45, 'mobile', 'Safari', 'iPhone'),
                      (0.70, 'mobile', 'Chrome', 'Android'),
                      (0.88, 'tablet', 'Safari', 'iPad'),
                      (0.93, 'unknown', 'unknown', 'unknown'),
                      (0.95, 'bot', 'Googlebot', 'unknown'))
                      AS t(at, device, browser, os)
                      WHERE t.at <= r.e ORDER BY t.at DESC LIMIT 1) p",
        )
        .bind(code)
        .bind(n)
        .execute(pool)
        .await?;
    }
    // The clicks of last month sit in the default partition until maintenance gives that
    // month its partition, as the consumer does in a running stack.
    consumer::maintenance::run_once(
        pool,
        shortener_common::privacy::DEFAULT_CLICK_RETENTION_DAYS,
        Utc::now().date_naive(),
    )
    .await?;
    sqlx::query("SELECT rebuild_click_rollups()")
        .execute(pool)
        .await?;
    Ok(())
}

/// Gives `to` the rollups of `from` with every count multiplied by `factor`: a link with
/// `factor` times the clicks over the same distinct values, without storing its raw clicks
/// (reads of hour and day windows only read rollups).
pub async fn scale_rollups(
    pool: &PgPool,
    from: &str,
    to: &str,
    factor: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO links (short_code, long_url, owner_key_id)
         VALUES ($1, 'https://example.com/' || $1, 'bench') ON CONFLICT DO NOTHING",
    )
    .bind(to)
    .execute(pool)
    .await?;
    for sql in [
        "INSERT INTO click_totals (short_code, slot, humans, bots)
         SELECT $2, slot, humans * $3, bots * $3 FROM click_totals WHERE short_code = $1",
        "INSERT INTO click_hourly (short_code, hour, humans, bots, visitors)
         SELECT $2, hour, humans * $3, bots * $3, visitors * $3
         FROM click_hourly WHERE short_code = $1",
        "INSERT INTO click_breakdown_hourly
         SELECT $2, bucket, dimension, value, is_bot, clicks * $3
         FROM click_breakdown_hourly WHERE short_code = $1",
        "INSERT INTO click_breakdown_daily
         SELECT $2, bucket, dimension, value, is_bot, clicks * $3
         FROM click_breakdown_daily WHERE short_code = $1",
    ] {
        sqlx::query(sql)
            .bind(from)
            .bind(to)
            .bind(factor)
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// VACUUM ANALYZE of the tables analytics reads, as autovacuum would leave them.
pub async fn vacuum_analytics(pool: &PgPool) -> Result<(), sqlx::Error> {
    for table in [
        "clicks",
        "links",
        "click_totals",
        "click_hourly",
        "click_breakdown_hourly",
        "click_breakdown_daily",
    ] {
        sqlx::query(&format!("VACUUM ANALYZE {table}"))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Rows in `clicks`.
pub async fn count_clicks(pool: &PgPool) -> Result<i64, sqlx::Error> {
    let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM clicks")
        .fetch_one(pool)
        .await?;
    Ok(n)
}

/// Produces every event to `topic` in ClickBatch messages of url-api's default
/// CLICK_BATCH_MAX clicks (idempotent producer) and waits for all acknowledgements.
pub async fn produce(bootstrap: &str, topic: &str, events: &[Click]) -> anyhow::Result<()> {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    use shortener_common::event_batch::{BatchWriter, BATCH_SCHEMA_VERSION, DEFAULT_BATCH_MAX};
    use shortener_common::kafka::HEADER_SCHEMA_VERSION;

    let producer = shortener_testkit::kafka::producer(bootstrap);
    for chunk in events.chunks(10_000) {
        let payloads: Vec<Vec<u8>> = chunk
            .chunks(DEFAULT_BATCH_MAX)
            .map(|clicks| {
                let mut batch = BatchWriter::default();
                for click in clicks {
                    batch.push(&click.to_event(), Default::default());
                }
                batch.take().0
            })
            .collect();
        let mut pending = Vec::with_capacity(payloads.len());
        for (i, payload) in payloads.iter().enumerate() {
            let headers = OwnedHeaders::new().insert(Header {
                key: HEADER_SCHEMA_VERSION,
                value: Some(BATCH_SCHEMA_VERSION),
            });
            // Keyed by position, so the batches spread evenly over the partitions: the
            // librdkafka mock cluster keeps only the last 5 MB of each partition's log, and
            // the sticky partitioner url-api relies on fills one partition at a time.
            let key = i.to_string();
            let record = FutureRecord::to(topic)
                .key(key.as_str())
                .payload(payload.as_slice())
                .headers(headers);
            pending.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| anyhow::anyhow!("enqueue: {e}"))?,
            );
        }
        for p in pending {
            p.await?
                .map_err(|(e, _)| anyhow::anyhow!("delivery: {e}"))?;
        }
    }
    Ok(())
}

/// How many of `events` are stored, and how many rows `clicks` has in all.
pub async fn stored_of(pool: &PgPool, events: &[Click]) -> Result<(i64, i64), sqlx::Error> {
    let ids: Vec<uuid::Uuid> = events.iter().map(|c| c.event_id).collect();
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM clicks WHERE event_id = ANY($1)), (SELECT count(*) FROM clicks)",
    )
    .bind(&ids)
    .fetch_one(pool)
    .await
}
