//! Rollups counted from the queue the storing transaction fills: exactly once under
//! redelivery, a pass that dies before its commit, and passes running side by side.

mod common;

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{assert_rollups_match_clicks, queued, rows, wait_until};
use consumer::rollup_worker::{drain, pass};
use consumer::store::{insert_clicks, ClickRow};
use shortener_common::event::Click;
use shortener_testkit::postgres::fresh_database;
use sqlx::PgPool;
use uuid::Uuid;

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const BOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

/// Click `i` of link `code`: person `i % 7` (one in five a bot), now.
fn click(code: &str, i: usize, at: DateTime<Utc>) -> Click {
    Click {
        event_id: Uuid::new_v4(),
        short_code: code.to_string(),
        occurred_at: at,
        ip: Some(IpAddr::from([198, 51, 100, (i % 7) as u8])),
        user_agent: Some(if i.is_multiple_of(5) { BOT } else { BROWSER }.to_string()),
        referer: Some(format!("https://site{}.example/", i % 3)),
        matched_rule: None,
    }
}

/// (humans, bots) of the totals, (humans + bots, new visitors) of the hours, human visits.
async fn counted(pool: &PgPool) -> (i64, i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT coalesce(sum(humans), 0)::int8 FROM click_totals),
                (SELECT coalesce(sum(bots), 0)::int8 FROM click_totals),
                (SELECT coalesce(sum(humans + bots), 0)::int8 FROM click_hourly),
                (SELECT coalesce(sum(visitors), 0)::int8 FROM click_hourly),
                (SELECT coalesce(sum(human_visits), 0)::int8 FROM link_visits)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Distinct (link, person) pairs among the human clicks: the day's unique visitors.
fn visitors(clicks: &[Click]) -> i64 {
    clicks
        .iter()
        .filter(|c| c.user_agent.as_deref() == Some(BROWSER))
        .map(|c| (c.short_code.clone(), c.ip))
        .collect::<HashSet<_>>()
        .len() as i64
}

fn humans(clicks: &[Click]) -> i64 {
    clicks
        .iter()
        .filter(|c| c.user_agent.as_deref() == Some(BROWSER))
        .count() as i64
}

#[tokio::test]
async fn a_redelivered_batch_is_queued_and_counted_once() {
    let db = fresh_database().await;
    let now = Utc::now();
    let clicks: Vec<Click> = (0..50)
        .map(|i| click(&format!("r{}", i % 4), i, now))
        .collect();
    let batch = rows(&clicks);
    assert_eq!(insert_clicks(&db.pool, &batch).await.unwrap(), 50);
    // Stored, not yet counted: the rollups wait for a pass.
    assert_eq!(queued(&db.pool).await, 50);
    assert_eq!(counted(&db.pool).await, (0, 0, 0, 0, 0));

    // Delivered again, before and after the pass: nothing more is queued.
    assert_eq!(insert_clicks(&db.pool, &batch).await.unwrap(), 0);
    assert_eq!(queued(&db.pool).await, 50);
    assert_eq!(drain(&db.pool).await.unwrap(), 50);
    assert_eq!(insert_clicks(&db.pool, &batch[10..]).await.unwrap(), 0);
    assert_eq!(drain(&db.pool).await.unwrap(), 0);

    let h = humans(&clicks);
    assert_eq!(
        counted(&db.pool).await,
        (h, 50 - h, 50, visitors(&clicks), h)
    );
    assert_rollups_match_clicks(&db.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_that_dies_before_its_commit_leaves_its_clicks_queued() {
    let db = fresh_database().await;
    let now = Utc::now();
    let clicks: Vec<Click> = (0..40).map(|i| click("crash", i, now)).collect();
    assert_eq!(insert_clicks(&db.pool, &rows(&clicks)).await.unwrap(), 40);

    // Hold link_visits, the last table a pass writes, so the pass stops there: its rows
    // are taken and its rollups written, uncommitted. Then its connection is killed.
    let mut blocker = db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE link_visits IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    // Its own pool, so the killed connection is not handed out again.
    let own = PgPool::connect(&db.url).await.unwrap();
    let pool = own.clone();
    let dying = tokio::spawn(async move { pass(&pool, 1000).await });
    let waiting = || async {
        sqlx::query_scalar::<_, Option<i32>>(
            "SELECT l.pid FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
             WHERE c.relname = 'link_visits' AND NOT l.granted LIMIT 1",
        )
        .fetch_one(&db.pool)
        .await
        .ok()
        .flatten()
    };
    wait_until("the pass waiting on link_visits", || async {
        waiting().await.is_some()
    })
    .await;
    let pid = waiting().await.unwrap();
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(killed);
    assert!(
        dying.await.unwrap().is_err(),
        "the killed pass reports its error"
    );
    own.close().await;
    // Termination is asynchronous: until the backend has exited it still holds the row
    // locks of its take, and a pass skips locked rows (SKIP LOCKED).
    wait_until("the killed backend to exit", || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)",
        )
        .bind(pid)
        .fetch_one(&db.pool)
        .await
        .unwrap()
    })
    .await;
    blocker.rollback().await.unwrap();

    // Nothing of it stayed: the clicks are queued again, the rollups untouched.
    assert_eq!(queued(&db.pool).await, 40);
    assert_eq!(counted(&db.pool).await, (0, 0, 0, 0, 0));
    let sets: i64 = sqlx::query_scalar("SELECT count(*) FROM click_visitors")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(sets, 0, "the visitor sets were rolled back too");

    // The next pass counts them, once.
    assert_eq!(drain(&db.pool).await.unwrap(), 40);
    let h = humans(&clicks);
    assert_eq!(
        counted(&db.pool).await,
        (h, 40 - h, 40, visitors(&clicks), h)
    );
    assert_rollups_match_clicks(&db.pool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passes_running_side_by_side_count_every_click_once() {
    let db = fresh_database().await;
    let now = Utc::now();
    let clicks: Vec<Click> = (0..6000)
        .map(|i| click(&format!("side{}", i % 9), i, now))
        .collect();
    // Batches are stored while two workers take small passes, as replicas would.
    let storer = {
        let pool = db.pool.clone();
        let batches: Vec<Vec<ClickRow>> = clicks.chunks(250).map(rows).collect();
        tokio::spawn(async move {
            for b in &batches {
                insert_clicks(&pool, b).await.unwrap();
                // Some of them twice, as redeliveries.
                insert_clicks(&pool, &b[..50]).await.unwrap();
            }
        })
    };
    let worker = |pool: PgPool| {
        tokio::spawn(async move {
            let mut taken = 0usize;
            let mut idle = 0;
            while idle < 20 {
                let p = pass(&pool, 300).await.unwrap();
                taken += p.taken;
                if p.taken == 0 {
                    idle += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            taken
        })
    };
    let (a, b) = (worker(db.pool.clone()), worker(db.pool.clone()));
    storer.await.unwrap();
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    let rest = drain(&db.pool).await.unwrap() as usize;
    println!("worker a took {a}, worker b {b}, the final drain {rest}");
    assert_eq!(a + b + rest, clicks.len());
    assert!(a > 0 && b > 0, "both workers took clicks: {a} + {b}");

    let h = humans(&clicks);
    let n = clicks.len() as i64;
    assert_eq!(counted(&db.pool).await, (h, n - h, n, visitors(&clicks), h));
    assert_rollups_match_clicks(&db.pool).await;
}

#[tokio::test]
async fn a_rebuild_empties_the_queue_so_nothing_is_counted_twice() {
    let db = fresh_database().await;
    let now = Utc::now();
    let clicks: Vec<Click> = (0..30).map(|i| click("rebuilt", i, now)).collect();
    insert_clicks(&db.pool, &rows(&clicks[..10])).await.unwrap();
    drain(&db.pool).await.unwrap();
    insert_clicks(&db.pool, &rows(&clicks[10..])).await.unwrap();
    assert_eq!(queued(&db.pool).await, 20);

    sqlx::query("SELECT rebuild_click_rollups()")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(queued(&db.pool).await, 0);
    assert_eq!(drain(&db.pool).await.unwrap(), 0);
    let (humans_counted, bots, hourly, _, visits) = counted(&db.pool).await;
    let h = humans(&clicks);
    assert_eq!((humans_counted, bots, hourly, visits), (h, 30 - h, 30, h));
    assert_rollups_match_clicks(&db.pool).await;
}
