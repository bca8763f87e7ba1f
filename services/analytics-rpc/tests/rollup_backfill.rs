//! The migration to per-dimension breakdowns carries over what the combination rollups
//! counted before it, capping each link's day at `click_source_cap()` sources (the largest
//! kept), and the rest of the migrations apply on top.

use std::path::Path;

use shortener_common::db::{DatabaseArgs, MIGRATOR};
use sqlx::migrate::Migrator;
use sqlx::{Connection, PgConnection};

/// The first migration that reads breakdowns per dimension.
const PER_DIMENSION: i64 = 20261201000500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combination_rows_become_dimension_rows() {
    let admin = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL is not set");
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut url = url::Url::parse(&admin).unwrap();
    url.set_path(&name);
    let pool = DatabaseArgs::with_url(url.as_str()).lazy_pool().unwrap();

    // The schema as it was before: the migrations older than PER_DIMENSION.
    let before = tempdir();
    let migrations = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    for entry in std::fs::read_dir(&migrations).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_string();
        let version: i64 = file.split('_').next().unwrap().parse().unwrap();
        if version < PER_DIMENSION {
            std::fs::copy(&path, before.join(&file)).unwrap();
        }
    }
    Migrator::new(before.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    std::fs::remove_dir_all(&before).ok();

    // Two hours of one day: 150 sources (source i with i clicks, humans) and a bot.
    sqlx::query(
        "INSERT INTO click_dims_hourly
         SELECT 'old', '2026-11-20T10:00:00Z'::timestamptz + (i % 2) * interval '1 hour', false,
                'DE', 'desktop', 'Firefox', 'Linux', 'site' || i || '.example', i
         FROM generate_series(1, 150) AS i
         UNION ALL
         SELECT 'old', '2026-11-20T11:00:00Z', true, 'US', 'bot', 'Googlebot', 'unknown',
                'direct', 7",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO click_dims_daily
         SELECT short_code, date_trunc('day', bucket, 'UTC'), is_bot, country_code,
                device_type, browser, os, traffic_source, sum(clicks)
         FROM click_dims_hourly GROUP BY 1, 2, 3, 4, 5, 6, 7, 8",
    )
    .execute(&pool)
    .await
    .unwrap();

    MIGRATOR.run(&pool).await.unwrap();

    let total: i64 = (1..=150).sum::<i64>() + 7;
    for table in ["click_breakdown_hourly", "click_breakdown_daily"] {
        let per_dimension: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT dimension::text, sum(clicks)::int8 FROM {table}
             WHERE short_code = 'old' GROUP BY dimension ORDER BY 1"
        ))
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            per_dimension,
            ["browser", "country", "device", "os", "source"]
                .map(|d| (d.to_string(), total))
                .to_vec(),
            "{table}"
        );
    }
    let rows: Vec<(String, bool, i64)> = sqlx::query_as(
        "SELECT value, is_bot, clicks FROM click_breakdown_daily
         WHERE short_code = 'old' AND dimension IN ('country', 'device') ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let humans = (1..=150).sum::<i64>();
    assert_eq!(
        rows,
        vec![
            ("DE".into(), false, humans),
            ("US".into(), true, 7),
            ("bot".into(), true, 7),
            ("desktop".into(), false, humans),
        ]
    );
    // The day keeps its 100 largest sources (site51..site150); site1..site50 and the bot's
    // direct (7 clicks) are folded.
    let (kept, smallest, folded): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE value <> click_source_fold()),
                min(clicks) FILTER (WHERE value <> click_source_fold()),
                coalesce(sum(clicks) FILTER (WHERE value = click_source_fold()), 0)::int8
         FROM click_breakdown_daily WHERE short_code = 'old' AND dimension = 'source'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((kept, smallest), (100, 51));
    assert_eq!(folded, (1..=50).sum::<i64>() + 7);
    let old_tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE tablename IN ('click_dims_hourly', 'click_dims_daily')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(old_tables, 0);

    pool.close().await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .ok();
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("migrations-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
