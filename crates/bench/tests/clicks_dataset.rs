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
async fn analytics_dataset_is_skewed_and_varied() {
    let db = fresh_database().await;
    let hot = clicks::seed_analytics_dataset(&db.pool, 20_000)
        .await
        .unwrap();
    assert_eq!(clicks::count_clicks(&db.pool).await.unwrap(), 20_000);
    // 20 % on the hot code, give or take sampling noise.
    assert!((3_400..=4_600).contains(&hot), "hot code has {hot} clicks");
    let (codes, countries, devices, browsers, sources, days): (i64, i64, i64, i64, i64, f64) =
        sqlx::query_as(
            "SELECT count(DISTINCT short_code), count(DISTINCT country_code),
                    count(DISTINCT device_type), count(DISTINCT browser),
                    count(DISTINCT traffic_source),
                    extract(epoch FROM max(occurred_at) - min(occurred_at))::float8 / 86400
             FROM clicks",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(codes > 500, "{codes} codes");
    assert_eq!((countries, devices, browsers, sources), (9, 5, 5, 5));
    assert!(days > 29.0 && days <= 30.0, "spread over {days} days");
    // Every clicked code has a link row.
    let (orphans,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM clicks c WHERE NOT EXISTS
           (SELECT 1 FROM links l WHERE l.short_code = c.short_code)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(orphans, 0);
}
