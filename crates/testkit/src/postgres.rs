//! A fresh, migrated database per test on the private Postgres cluster.

use shortener_common::db::{self, DatabaseArgs};
use sqlx::{Connection, PgConnection, PgPool};

/// Admin connection string of the test cluster, set by `./scripts/test`.
pub const TEST_DATABASE_URL_ENV: &str = "TEST_DATABASE_URL";

/// A database created for one test, with every migration applied.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
}

impl TestDatabase {
    pub fn args(&self) -> DatabaseArgs {
        DatabaseArgs::with_url(&self.url)
    }
}

fn admin_url() -> String {
    std::env::var(TEST_DATABASE_URL_ENV).unwrap_or_else(|_| {
        panic!(
            "{TEST_DATABASE_URL_ENV} is not set: run the tests through ./scripts/test, \
             which starts a private Postgres, or point it at a Postgres superuser URL"
        )
    })
}

/// Creates `t_<uuid>` on the test cluster and migrates it.
pub async fn fresh_database() -> TestDatabase {
    let admin = admin_url();
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {TEST_DATABASE_URL_ENV}: {e}"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    conn.close().await.ok();

    let mut url = url::Url::parse(&admin).expect("TEST_DATABASE_URL is a URL");
    url.set_path(&name);
    let url = url.to_string();
    let pool = DatabaseArgs::with_url(&url)
        .lazy_pool()
        .expect("pool for test database");
    db::migrate(&pool).await.expect("migrate test database");
    TestDatabase { name, url, pool }
}
