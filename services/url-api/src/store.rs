//! SQL for the `links` table.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Name of the unique constraint on `links.short_code`.
pub const SHORT_CODE_CONSTRAINT: &str = "links_short_code_key";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LinkRow {
    pub id: i64,
    pub short_code: String,
    pub long_url: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub owner_key_id: String,
    pub deleted_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, short_code, long_url, created_at, expires_at, owner_key_id, deleted_at";

pub struct NewLink<'a> {
    pub short_code: &'a str,
    pub long_url: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
    pub owner_key_id: &'a str,
}

pub async fn insert(pool: &PgPool, link: &NewLink<'_>) -> Result<LinkRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO links (short_code, long_url, expires_at, owner_key_id) \
         VALUES ($1, $2, $3, $4) RETURNING {COLUMNS}"
    ))
    .bind(link.short_code)
    .bind(link.long_url)
    .bind(link.expires_at)
    .bind(link.owner_key_id)
    .fetch_one(pool)
    .await
}

pub async fn find(pool: &PgPool, code: &str) -> Result<Option<LinkRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM links WHERE short_code = $1"
    ))
    .bind(code)
    .fetch_optional(pool)
    .await
}

/// Position after which a page starts: the last row of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: DateTime<Utc>,
    pub id: i64,
}

impl Cursor {
    /// Opaque text form: `<created_at micros>_<id>` (Postgres keeps microseconds).
    pub fn encode(&self) -> String {
        format!("{}_{}", self.created_at.timestamp_micros(), self.id)
    }

    /// None for anything `encode` cannot have produced. Links are created after 1970, and
    /// an earlier time could also lie outside Postgres' timestamp range (a query error).
    pub fn decode(text: &str) -> Option<Self> {
        let (micros, id) = text.split_once('_')?;
        let micros: i64 = micros.parse().ok().filter(|m| *m >= 0)?;
        Some(Self {
            created_at: DateTime::from_timestamp_micros(micros)?,
            id: id.parse().ok()?,
        })
    }
}

/// One page of an owner's live (not deleted) links, newest first, plus the cursor of the
/// next page when there is one.
pub async fn list_by_owner(
    pool: &PgPool,
    owner: &str,
    limit: u32,
    after: Option<Cursor>,
) -> Result<(Vec<LinkRow>, Option<Cursor>), sqlx::Error> {
    let fetch = i64::from(limit) + 1;
    let mut rows: Vec<LinkRow> = match after {
        None => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM links WHERE owner_key_id = $1 AND deleted_at IS NULL \
                 ORDER BY created_at DESC, id DESC LIMIT $2"
            ))
            .bind(owner)
            .bind(fetch)
            .fetch_all(pool)
            .await?
        }
        Some(c) => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM links WHERE owner_key_id = $1 AND deleted_at IS NULL \
                 AND (created_at, id) < ($2, $3) \
                 ORDER BY created_at DESC, id DESC LIMIT $4"
            ))
            .bind(owner)
            .bind(c.created_at)
            .bind(c.id)
            .bind(fetch)
            .fetch_all(pool)
            .await?
        }
    };
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        rows.last().map(|r| Cursor {
            created_at: r.created_at,
            id: r.id,
        })
    } else {
        None
    };
    Ok((rows, next))
}

#[derive(Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    AlreadyDeleted,
    /// No such code, or it belongs to another owner.
    NotFound,
}

/// Soft-deletes `code` if `owner` owns it.
pub async fn soft_delete(
    pool: &PgPool,
    code: &str,
    owner: &str,
) -> Result<DeleteOutcome, sqlx::Error> {
    // One statement: the CTE sees the row before the update, so it reports whether the
    // row existed and was already deleted.
    let row: Option<(bool,)> = sqlx::query_as(
        "WITH target AS ( \
             SELECT id, deleted_at IS NOT NULL AS was_deleted FROM links \
             WHERE short_code = $1 AND owner_key_id = $2 FOR UPDATE \
         ), upd AS ( \
             UPDATE links SET deleted_at = now() \
             WHERE id IN (SELECT id FROM target WHERE NOT was_deleted) \
         ) \
         SELECT was_deleted FROM target",
    )
    .bind(code)
    .bind(owner)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        None => DeleteOutcome::NotFound,
        Some((true,)) => DeleteOutcome::AlreadyDeleted,
        Some((false,)) => DeleteOutcome::Deleted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let c = Cursor {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            id: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("nope"), None);
        assert_eq!(Cursor::decode("1_x"), None);
        assert_eq!(Cursor::decode("_1"), None);
        assert_eq!(Cursor::decode("-8000000000000000000_1"), None);
    }
}
