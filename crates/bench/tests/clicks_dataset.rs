//! The synthetic data the benchmarks use, on a real Postgres.

use std::sync::Arc;

use shortener_bench::clicks;
use shortener_testkit::postgres::fresh_database;

#[tokio::test]
async fn ceiling_inserts_each_event_exactly_once() {
    let db = fresh_database().await;
    let codes: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    let rows = Arc::new(clicks::synthetic(1_000, &codes, 7));
    let (stored, _) = clicks::insert_ceiling(&db.pool, rows.clone(), 100, 3)
        .await
        .unwrap();
    assert_eq!(stored, 1_000);
    // A second pass is all redeliveries: nothing new.
    let (again, _) = clicks::insert_ceiling(&db.pool, rows, 300, 2)
        .await
        .unwrap();
    assert_eq!(again, 0);
    assert_eq!(clicks::count_clicks(&db.pool).await.unwrap(), 1_000);
}

#[tokio::test]
async fn seeded_links_hold_their_clicks_and_scaled_rollups() {
    let db = fresh_database().await;
    clicks::seed_links(&db.pool, &[("small", 500), ("big", 5_000)])
        .await
        .unwrap();
    clicks::scale_rollups(&db.pool, "big", "huge", 10)
        .await
        .unwrap();
    assert_eq!(clicks::count_clicks(&db.pool).await.unwrap(), 5_500);
    // Each click sits in its month's partition, as in a running stack.
    let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM clicks_default")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(waiting, 0);
    let (countries, profiles, sources, bots, days): (i64, i64, i64, i64, f64) = sqlx::query_as(
        "SELECT count(DISTINCT country_code), count(DISTINCT (device_type, browser, os)),
                count(DISTINCT traffic_source), count(*) FILTER (WHERE is_bot),
                extract(epoch FROM max(occurred_at) - min(occurred_at))::float8 / 86400
         FROM clicks WHERE short_code = 'big'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((countries, profiles, sources), (9, 8, 6));
    assert!((150..=350).contains(&bots), "{bots} bots of 5000");
    assert!(days > 29.0 && days <= 30.0, "spread over {days} days");
    // Every dimension of the scaled link sums to ten times the original's clicks.
    let sums: Vec<(String, i64)> = sqlx::query_as(
        "SELECT short_code || ' ' || dimension, sum(clicks)::int8 FROM click_breakdown_daily
         GROUP BY short_code, dimension ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    for (key, n) in sums {
        let want = match key.split(' ').next().unwrap() {
            "small" => 500,
            "big" => 5_000,
            _ => 50_000,
        };
        assert_eq!(n, want, "{key}");
    }
    let total: i64 = sqlx::query_scalar(
        "SELECT sum(humans + bots)::int8 FROM click_totals WHERE short_code = 'huge'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(total, 50_000);
}
