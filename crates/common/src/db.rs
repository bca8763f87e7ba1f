//! Postgres: connection settings, the pool, migrations and error classification.

use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// Every migration in `migrations/`, embedded at build time. The `migrate` subcommand and
/// the operator's migration Job both run exactly this.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("invalid DATABASE_URL: {0}")]
    InvalidUrl(#[source] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
}

/// Connection settings shared by every binary that talks to Postgres. `Debug` masks the
/// password in the URL.
#[derive(clap::Args, Clone)]
pub struct DatabaseArgs {
    /// Postgres connection string.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://shortener@127.0.0.1:5432/shortener",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Largest number of pooled connections.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,
    /// How long a query waits for a free connection before failing, in milliseconds.
    #[arg(long, env = "DATABASE_ACQUIRE_TIMEOUT_MS", default_value_t = 3000)]
    pub database_acquire_timeout_ms: u64,
}

impl std::fmt::Debug for DatabaseArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseArgs")
            .field("database_url", &redact_url_password(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field(
                "database_acquire_timeout_ms",
                &self.database_acquire_timeout_ms,
            )
            .finish()
    }
}

/// The URL with any password replaced by `***` (what may appear in logs); a string that is
/// not a URL is masked whole.
pub fn redact_url_password(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "***".to_string(),
    }
}

impl DatabaseArgs {
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            database_url: url.into(),
            database_max_connections: 10,
            database_acquire_timeout_ms: 3000,
        }
    }

    /// A pool that connects on first use, so a service starts (and serves what it can)
    /// while the database is still down.
    pub fn lazy_pool(&self) -> Result<PgPool, DbError> {
        let options: PgConnectOptions = self.database_url.parse().map_err(DbError::InvalidUrl)?;
        Ok(PgPoolOptions::new()
            .max_connections(self.database_max_connections)
            .acquire_timeout(Duration::from_millis(self.database_acquire_timeout_ms))
            .connect_lazy_with(options.application_name(env!("CARGO_PKG_NAME"))))
    }
}

/// Applies every pending migration; returns the newest version now applied.
pub async fn migrate(pool: &PgPool) -> Result<i64, DbError> {
    MIGRATOR.run(pool).await?;
    Ok(latest_migration_version())
}

/// The newest migration version embedded in this build.
pub fn latest_migration_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// `SELECT 1` through the pool.
pub async fn ping(pool: &PgPool) -> Result<(), DbError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}

/// Longest a readiness ping waits for the database.
pub const READY_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// The readiness check of every service with a database: a [`ping`] bounded by
/// [`READY_PING_TIMEOUT`]. The reason is generic on purpose: `/readyz` answers anyone who
/// reaches the admin port, and driver errors name hosts, roles and databases. The error
/// itself goes to the log.
pub async fn ready(pool: &PgPool) -> Result<(), &'static str> {
    match tokio::time::timeout(READY_PING_TIMEOUT, ping(pool)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database ping failed");
            Err("database unreachable")
        }
        Err(_) => {
            tracing::warn!(timeout = ?READY_PING_TIMEOUT, "readiness: database ping timed out");
            Err("database ping timed out")
        }
    }
}

/// True when `err` is a unique-constraint violation of the named constraint.
pub fn is_unique_violation(err: &sqlx::Error, constraint: &str) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("23505") && db.constraint() == Some(constraint)
        }
        _ => false,
    }
}

/// The SQLSTATE the server answered `err` with, if it answered at all.
pub fn sqlstate(err: &sqlx::Error) -> Option<String> {
    match err {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// True for errors that may pass if retried later (the database or network is down,
/// overloaded, read-only after a failover, or a statement was cancelled), as opposed to
/// errors in the statement or the data.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| is_transient_sqlstate(&c)),
        _ => false,
    }
}

/// Class 08 (connection exception), 53 (insufficient resources), 57 (operator
/// intervention: cancelled statement, shutdown, crash recovery), 58 (system error: I/O),
/// 40001/40P01 (serialization failure, deadlock), 25006 (read-only transaction: a
/// standby, or a primary just demoted), 55P03/55006 (lock not available, object in use).
pub fn is_transient_sqlstate(code: &str) -> bool {
    ["08", "53", "57", "58"].iter().any(|c| code.starts_with(c))
        || ["40001", "40P01", "25006", "55P03", "55006"].contains(&code)
}

/// True when a statement failed because of the rows it was given: SQLSTATE class 22 (data
/// exception) or 23 (integrity constraint violation). Retrying the same rows fails the
/// same way. Any other failure (connection, permissions, a missing table, read-only,
/// cancelled, ...) is the database's or the deployment's state, never a row's fault.
pub fn is_data_error(err: &sqlx::Error) -> bool {
    sqlstate(err).is_some_and(|c| is_data_sqlstate(&c))
}

pub fn is_data_sqlstate(code: &str) -> bool {
    code.starts_with("22") || code.starts_with("23")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_embedded_in_order() {
        let versions: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
        assert!(!versions.is_empty());
        assert!(versions.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(latest_migration_version(), *versions.last().unwrap());
    }

    #[test]
    fn debug_output_masks_the_password() {
        let args = DatabaseArgs::with_url("postgres://app:s3cret@db:5432/shortener");
        let text = format!("{args:?}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            text.contains("postgres://app:***@db:5432/shortener"),
            "{text}"
        );
        assert_eq!(redact_url_password("not a url s3cret"), "***");
    }

    #[test]
    fn bad_url_is_a_clear_error() {
        let err = DatabaseArgs::with_url("not a url").lazy_pool().unwrap_err();
        assert!(err.to_string().starts_with("invalid DATABASE_URL"));
    }

    #[test]
    fn pool_timeouts_are_transient_but_row_not_found_is_not() {
        assert!(is_transient(&sqlx::Error::PoolTimedOut));
        assert!(!is_transient(&sqlx::Error::RowNotFound));
        assert!(!is_data_error(&sqlx::Error::PoolTimedOut));
    }

    #[test]
    fn sqlstates_are_classified() {
        // Failover, cancellation and locks pass with time.
        for code in [
            "08006", "53300", "57P01", "57014", "58030", "40001", "40P01", "25006", "55P03",
        ] {
            assert!(is_transient_sqlstate(code), "{code}");
            assert!(!is_data_sqlstate(code), "{code}");
        }
        // Only data exceptions and constraint violations are a row's fault.
        for code in ["22001", "22021", "22P02", "23505", "23514", "23502"] {
            assert!(is_data_sqlstate(code), "{code}");
            assert!(!is_transient_sqlstate(code), "{code}");
        }
        // Permissions and missing objects are neither: a deployment to fix, not data.
        for code in ["42501", "42P01", "42703", "XX000"] {
            assert!(
                !is_data_sqlstate(code) && !is_transient_sqlstate(code),
                "{code}"
            );
        }
    }
}
