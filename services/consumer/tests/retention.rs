//! Retention of raw clicks and of visitor keys: the maintenance task against a real
//! database, clicks written by the consumer's own store (rollups included).

mod common;

use std::net::IpAddr;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use common::{assert_rollups_match_clicks, rows};
use consumer::maintenance::{self, Outcome, Report};
use consumer::retention::Month;
use consumer::rollup_worker::drain;
use consumer::store::insert_clicks;
use consumer::visitors;
use shortener_common::event::Click;
use shortener_testkit::postgres::fresh_database;
use sqlx::PgPool;
use uuid::Uuid;

const RETENTION_DAYS: u32 = 400;
const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

fn click(code: &str, at: DateTime<Utc>, person: u8) -> Click {
    Click {
        event_id: Uuid::new_v4(),
        short_code: code.to_string(),
        occurred_at: at,
        ip: Some(IpAddr::from([198, 51, 100, person])),
        user_agent: Some(BROWSER.to_string()),
        referer: Some("https://news.ycombinator.com/".to_string()),
        matched_rule: None,
    }
}

async fn run(pool: &PgPool, today: NaiveDate) -> Report {
    match maintenance::run_once(pool, RETENTION_DAYS, today)
        .await
        .unwrap()
    {
        Outcome::Done(report) => report,
        Outcome::Busy => panic!("nobody else holds the maintenance lock"),
    }
}

async fn partitions(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'clicks'::regclass ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Where each of `clicks` is stored: its partition, or None once it is gone.
async fn homes(pool: &PgPool, clicks: &[Click]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for c in clicks {
        out.push(
            sqlx::query_scalar("SELECT tableoid::regclass::text FROM clicks WHERE event_id = $1")
                .bind(c.event_id)
                .fetch_optional(pool)
                .await
                .unwrap(),
        );
    }
    out
}

/// Every rollup table's content (every `click_*` table but the visitor sets), as one
/// fingerprint per table.
async fn rollups(pool: &PgPool) -> Vec<(String, i64, String)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
           AND table_name LIKE 'click\\_%' AND table_name <> 'click_visitors'
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(tables.contains(&"click_totals".to_string()), "{tables:?}");
    let mut out = Vec::new();
    for table in tables {
        let (rows, digest): (i64, Option<String>) = sqlx::query_as(&format!(
            "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        out.push((table, rows, digest.unwrap_or_default()));
    }
    out
}

async fn total_clicks(pool: &PgPool, code: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(humans + bots), 0)::int8 FROM click_totals WHERE short_code = $1",
    )
    .bind(code)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn retention_drops_expired_months_whole_and_keeps_the_rollups() {
    let db = fresh_database().await;
    let now = Utc::now();
    let today = now.date_naive();
    let long_ago = now - Duration::days(i64::from(RETENTION_DAYS) + 100);
    let last_month = now - Duration::days(35);
    let clicks = [
        click("kept", long_ago, 1),
        click("kept", long_ago + Duration::minutes(1), 2),
        click("kept", last_month, 3),
        click("kept", now, 4),
    ];
    assert_eq!(insert_clicks(&db.pool, &rows(&clicks)).await.unwrap(), 4);
    assert_eq!(drain(&db.pool).await.unwrap(), 4);

    // Back when the old clicks were recent, their month got its partition (the rows
    // waiting in the default partition moved into it).
    let old_month = Month::of(long_ago.date_naive()).partition_name();
    let then = run(&db.pool, long_ago.date_naive()).await;
    assert!(then.created.contains(&old_month), "{then:?}");
    assert_eq!(then.moved_from_default, 2, "{then:?}");
    assert!(then.dropped.is_empty(), "{then:?}");
    assert_eq!(
        homes(&db.pool, &clicks[..2]).await,
        [Some(old_month.clone()), Some(old_month.clone())]
    );

    let before = rollups(&db.pool).await;
    assert_eq!(total_clicks(&db.pool, "kept").await, 4);

    // Every partition made back then is now wholly expired: all are dropped, nothing else.
    let report = run(&db.pool, today).await;
    assert_eq!(report.dropped, then.created, "{report:?}");
    assert!(!partitions(&db.pool).await.contains(&old_month));
    // The raw clicks of the expired month are gone, the others are in their month's
    // partition (last month's was made for the row waiting in the default one).
    let last = Month::of(last_month.date_naive()).partition_name();
    let this = Month::of(today).partition_name();
    assert_eq!(
        homes(&db.pool, &clicks).await,
        [None, None, Some(last), Some(this)]
    );
    // Counts, series and breakdowns are unchanged: rollups are not touched.
    assert_eq!(rollups(&db.pool).await, before);
    assert_eq!(total_clicks(&db.pool, "kept").await, 4);
    let hourly: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(humans + bots), 0)::int8 FROM click_hourly
         WHERE short_code = 'kept' AND hour < $1",
    )
    .bind(now - Duration::days(i64::from(RETENTION_DAYS)))
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(hourly, 2, "the expired clicks' hours still count them");

    // A redelivery of the expired clicks (their copies are gone) is refused, not stored
    // and counted again; the kept ones are still duplicates.
    assert_eq!(insert_clicks(&db.pool, &rows(&clicks)).await.unwrap(), 0);
    assert_eq!(drain(&db.pool).await.unwrap(), 0);
    assert_eq!(total_clicks(&db.pool, "kept").await, 4);
    assert_eq!(rollups(&db.pool).await, before);

    // Nothing more to do on a second run.
    let again = run(&db.pool, today).await;
    assert!(
        again.dropped.is_empty() && again.created.is_empty(),
        "{again:?}"
    );
}

#[tokio::test]
async fn a_click_for_a_month_without_a_partition_is_stored_once() {
    let db = fresh_database().await;
    let now = Utc::now();
    let today = now.date_naive();
    // A late click of a past month and clicks stamped by clocks far ahead: none of their
    // months has a partition.
    let clicks = [
        click("skew", now - Duration::days(100), 1),
        click("skew", now + Duration::days(200), 2),
        click("skew", now + Duration::days(3650), 3),
    ];
    assert!(!partitions(&db.pool)
        .await
        .contains(&Month::of(clicks[0].occurred_at.date_naive()).partition_name()));
    let batch = rows(&clicks);
    assert_eq!(insert_clicks(&db.pool, &batch).await.unwrap(), 3);
    assert_eq!(
        homes(&db.pool, &clicks).await,
        vec![Some("clicks_default".to_string()); 3]
    );
    // A redelivery is still recognised.
    assert_eq!(insert_clicks(&db.pool, &batch).await.unwrap(), 0);

    // The past month gets its partition and its click; the far future waits.
    let report = run(&db.pool, today).await;
    let past = Month::of(clicks[0].occurred_at.date_naive()).partition_name();
    assert!(report.created.contains(&past), "{report:?}");
    assert_eq!(report.moved_from_default, 1, "{report:?}");
    assert_eq!(
        homes(&db.pool, &clicks).await,
        [
            Some(past),
            Some("clicks_default".to_string()),
            Some("clicks_default".to_string())
        ]
    );
    assert_eq!(insert_clicks(&db.pool, &batch).await.unwrap(), 0);

    // Once the second one's month is near, it moves too, and is still counted once.
    let later = clicks[1].occurred_at.date_naive();
    let report = run(&db.pool, later).await;
    assert_eq!(report.moved_from_default, 1, "{report:?}");
    assert_eq!(
        homes(&db.pool, &clicks[1..2]).await,
        [Some(Month::of(later).partition_name())]
    );
    assert_eq!(insert_clicks(&db.pool, &batch).await.unwrap(), 0);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM clicks WHERE short_code = 'skew'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(stored, 3);
    // Queued once, by the first delivery only.
    assert_eq!(drain(&db.pool).await.unwrap(), 3);
    assert_eq!(total_clicks(&db.pool, "skew").await, 3);
    assert_rollups_match_clicks(&db.pool).await;
}

#[tokio::test]
async fn clicks_older_than_the_retention_in_the_default_partition_are_deleted() {
    let db = fresh_database().await;
    let now = Utc::now();
    // A clock decades behind: no partition, and already past the retention.
    let ancient = click("old", now - Duration::days(365 * 30), 1);
    let fresh = click("old", now, 2);
    insert_clicks(&db.pool, &rows(&[ancient.clone(), fresh.clone()]))
        .await
        .unwrap();
    drain(&db.pool).await.unwrap();
    let report = run(&db.pool, now.date_naive()).await;
    assert_eq!(report.purged_from_default, 1, "{report:?}");
    assert!(report.created.iter().all(|p| !p.starts_with("clicks_p199")));
    assert_eq!(
        homes(&db.pool, &[ancient, fresh]).await,
        [None, Some(Month::of(now.date_naive()).partition_name())]
    );
    assert_eq!(total_clicks(&db.pool, "old").await, 2);
}

#[tokio::test]
async fn past_days_visitor_keys_and_sets_are_deleted() {
    let db = fresh_database().await;
    let now = Utc::now();
    let today = now.date_naive();
    // Today's and yesterday's visitors: the store makes their keys, a rollup pass their
    // sets.
    let yesterday_noon = (today - Duration::days(1))
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc();
    insert_clicks(
        &db.pool,
        &rows(&[click("v", now, 1), click("v", yesterday_noon, 2)]),
    )
    .await
    .unwrap();
    assert_eq!(drain(&db.pool).await.unwrap(), 2);
    // Keys and sets left from days no longer counted.
    for days_ago in [2, 9] {
        let day = today - Duration::days(days_ago);
        sqlx::query(
            "INSERT INTO visitor_salts (day, salt) VALUES ($1, decode(repeat('ab', 32), 'hex'))",
        )
        .bind(day)
        .execute(&db.pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO click_visitors (short_code, day, visitor)
             VALUES ('v', $1, '\\x01'), ('w', $1, '\\x02')",
        )
        .bind(day)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let keys = |pool: PgPool| async move {
        sqlx::query_scalar::<_, NaiveDate>("SELECT day FROM visitor_salts ORDER BY day DESC")
            .fetch_all(&pool)
            .await
            .unwrap()
    };
    let set_days = |pool: PgPool| async move {
        sqlx::query_scalar::<_, NaiveDate>(
            "SELECT DISTINCT day FROM click_visitors ORDER BY day DESC",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let yesterday = today - Duration::days(1);
    assert_eq!(keys(db.pool.clone()).await.len(), 4);

    let report = run(&db.pool, today).await;
    assert_eq!(report.visitor_keys_deleted, 2, "{report:?}");
    assert_eq!(report.visitor_rows_deleted, 4, "{report:?}");
    assert_eq!(keys(db.pool.clone()).await, [today, yesterday]);
    assert_eq!(set_days(db.pool.clone()).await, [today, yesterday]);

    // A forgotten day's key is not made again by a writer that still thought it countable.
    let mut conn = db.pool.acquire().await.unwrap();
    let two_days_ago = today - Duration::days(2);
    let salts = visitors::salts(&mut conn, &[two_days_ago, today], today)
        .await
        .unwrap();
    assert!(!salts.contains_key(&two_days_ago));
    assert!(salts.contains_key(&today));
    assert_eq!(keys(db.pool.clone()).await, [today, yesterday]);
}

#[tokio::test]
async fn one_replica_at_a_time() {
    let db = fresh_database().await;
    let today = Utc::now().date_naive();
    let mut holder = db.pool.acquire().await.unwrap();
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(maintenance::LOCK_KEY)
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    assert!(held);
    assert_eq!(
        maintenance::run_once(&db.pool, RETENTION_DAYS, today)
            .await
            .unwrap(),
        Outcome::Busy
    );
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(maintenance::LOCK_KEY)
        .execute(&mut *holder)
        .await
        .unwrap();
    assert!(matches!(
        maintenance::run_once(&db.pool, RETENTION_DAYS, today)
            .await
            .unwrap(),
        Outcome::Done(_)
    ));
}

/// The running consumer does this by itself: at start it makes the coming months'
/// partitions, forgets past visitor keys and says so in its metrics.
#[tokio::test]
async fn the_consumer_runs_maintenance_on_its_own() {
    let db = fresh_database().await;
    let today = Utc::now().date_naive();
    sqlx::query(
        "INSERT INTO visitor_salts (day, salt) VALUES ($1, decode(repeat('cd', 32), 'hex'))",
    )
    .bind(today - Duration::days(5))
    .execute(&db.pool)
    .await
    .unwrap();
    let broker = common::broker();
    let running = common::start(common::args(&broker, &db.url, "g-maintenance")).await;
    let furthest = Month::of(today)
        .plus(consumer::retention::MONTHS_AHEAD)
        .partition_name();
    common::wait_until("the maintenance task's first run", || async {
        partitions(&db.pool).await.contains(&furthest)
    })
    .await;
    common::wait_until("its metrics", || async {
        let (_, text) = common::http_get(running.admin, "/metrics").await;
        common::metric_sum(
            &text,
            r#"shortener_consumer_maintenance_runs_total{outcome="done"}"#,
        ) == Some(1.0)
            && common::metric_sum(&text, "shortener_consumer_visitor_keys_deleted_total")
                == Some(1.0)
            && common::metric_sum(&text, "shortener_consumer_click_partitions_created_total")
                >= Some(1.0)
    })
    .await;
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM visitor_salts")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(keys, 0);
    running.shutdown().await;
}
