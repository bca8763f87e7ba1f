//! SQL for the `links` table.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};

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
    pub title: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub forward_query: bool,
    pub updated_at: Option<DateTime<Utc>>,
    /// JSON array of `rules::RedirectRule`; None when the link has no rules.
    pub redirect_rules: Option<String>,
    pub max_visits: Option<i64>,
    pub expired_url: Option<String>,
    pub public_qr: bool,
    pub password_hash: Option<String>,
}

const COLUMNS: &str =
    "id, short_code, long_url, created_at, expires_at, owner_key_id, deleted_at, \
     title, description, tags, forward_query, updated_at, redirect_rules::text AS redirect_rules, \
     max_visits, expired_url, public_qr, password_hash";

#[derive(Clone, Copy)]
pub struct NewLink<'a> {
    pub short_code: &'a str,
    pub long_url: &'a str,
    pub expires_at: Option<DateTime<Utc>>,
    pub owner_key_id: &'a str,
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
    pub tags: &'a [String],
    pub forward_query: bool,
    pub redirect_rules: Option<&'a str>,
    pub max_visits: Option<i64>,
    pub expired_url: Option<&'a str>,
    pub public_qr: bool,
    pub password_hash: Option<&'a str>,
}

pub async fn insert(pool: &PgPool, link: &NewLink<'_>) -> Result<LinkRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO links (short_code, long_url, expires_at, owner_key_id, title, description, \
         tags, forward_query, redirect_rules, max_visits, expired_url, public_qr, \
         password_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, $13) \
         RETURNING {COLUMNS}"
    ))
    .bind(link.short_code)
    .bind(link.long_url)
    .bind(link.expires_at)
    .bind(link.owner_key_id)
    .bind(link.title)
    .bind(link.description)
    .bind(link.tags)
    .bind(link.forward_query)
    .bind(link.redirect_rules)
    .bind(link.max_visits)
    .bind(link.expired_url)
    .bind(link.public_qr)
    .bind(link.password_hash)
    .fetch_one(pool)
    .await
}

/// The fields an edit changes; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Default)]
pub struct LinkPatch {
    pub long_url: Option<String>,
    pub expires_at: Option<Option<DateTime<Utc>>>,
    pub title: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub forward_query: Option<bool>,
    pub redirect_rules: Option<Option<String>>,
    pub max_visits: Option<Option<i64>>,
    pub expired_url: Option<Option<String>>,
    pub public_qr: Option<bool>,
    pub password_hash: Option<Option<String>>,
}

impl LinkPatch {
    pub fn is_empty(&self) -> bool {
        self.long_url.is_none()
            && self.expires_at.is_none()
            && self.title.is_none()
            && self.description.is_none()
            && self.tags.is_none()
            && self.forward_query.is_none()
            && self.redirect_rules.is_none()
            && self.max_visits.is_none()
            && self.expired_url.is_none()
            && self.public_qr.is_none()
            && self.password_hash.is_none()
    }
}

/// Applies `patch` to `owner`'s live link `code`; None when there is no such live link.
pub async fn update(
    pool: &PgPool,
    code: &str,
    owner: &str,
    patch: LinkPatch,
) -> Result<Option<LinkRow>, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("UPDATE links SET updated_at = now()");
    if let Some(v) = patch.long_url {
        q.push(", long_url = ").push_bind(v);
    }
    if let Some(v) = patch.expires_at {
        q.push(", expires_at = ").push_bind(v);
    }
    if let Some(v) = patch.title {
        q.push(", title = ").push_bind(v);
    }
    if let Some(v) = patch.description {
        q.push(", description = ").push_bind(v);
    }
    if let Some(v) = patch.tags {
        q.push(", tags = ").push_bind(v);
    }
    if let Some(v) = patch.forward_query {
        q.push(", forward_query = ").push_bind(v);
    }
    if let Some(v) = patch.redirect_rules {
        q.push(", redirect_rules = ").push_bind(v).push("::jsonb");
    }
    if let Some(v) = patch.max_visits {
        q.push(", max_visits = ").push_bind(v);
    }
    if let Some(v) = patch.expired_url {
        q.push(", expired_url = ").push_bind(v);
    }
    if let Some(v) = patch.public_qr {
        q.push(", public_qr = ").push_bind(v);
    }
    if let Some(v) = patch.password_hash {
        q.push(", password_hash = ").push_bind(v);
    }
    q.push(" WHERE short_code = ")
        .push_bind(code)
        .push(" AND owner_key_id = ")
        .push_bind(owner)
        .push(" AND deleted_at IS NULL RETURNING ")
        .push(COLUMNS);
    q.build_query_as().fetch_optional(pool).await
}

/// Human visits of `code` the consumer has stored so far.
pub async fn human_visits(pool: &PgPool, code: &str) -> Result<i64, sqlx::Error> {
    let n: Option<(i64,)> =
        sqlx::query_as("SELECT human_visits FROM link_visits WHERE short_code = $1")
            .bind(code)
            .fetch_optional(pool)
            .await?;
    Ok(n.map_or(0, |(n,)| n))
}

pub async fn find(pool: &PgPool, code: &str) -> Result<Option<LinkRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM links WHERE short_code = $1"
    ))
    .bind(code)
    .fetch_optional(pool)
    .await
}

/// Where a page starts. Pages by creation date continue after the last row of the previous
/// page (stable while links are added); pages by clicks continue at an offset, since click
/// counts change between two pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    After { created_at: DateTime<Utc>, id: i64 },
    Offset(u32),
}

impl Cursor {
    /// Opaque text form: `<created_at micros>_<id>` (Postgres keeps microseconds) or
    /// `o<offset>`.
    pub fn encode(&self) -> String {
        match self {
            Self::After { created_at, id } => format!("{}_{}", created_at.timestamp_micros(), id),
            Self::Offset(n) => format!("o{n}"),
        }
    }

    /// None for anything `encode` cannot have produced. Links are created after 1970, and
    /// an earlier time could also lie outside Postgres' timestamp range (a query error).
    pub fn decode(text: &str) -> Option<Self> {
        if let Some(n) = text.strip_prefix('o') {
            return n.parse().ok().map(Self::Offset);
        }
        let (micros, id) = text.split_once('_')?;
        let micros: i64 = micros.parse().ok().filter(|m| *m >= 0)?;
        Some(Self::After {
            created_at: DateTime::from_timestamp_micros(micros)?,
            id: id.parse().ok()?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListOrder {
    /// Newest first.
    #[default]
    Created,
    /// Most stored clicks first (ties: newest first).
    Clicks,
}

/// Which of an owner's links a list returns.
#[derive(Debug, Default)]
pub struct ListFilter {
    /// Case-insensitive substring of the code, the long URL or the title.
    pub q: Option<String>,
    /// Links carrying every one of these tags.
    pub tags: Vec<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub order: ListOrder,
}

/// `text` as a LIKE pattern matching it anywhere, its wildcards escaped.
fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// One page of an owner's live (not deleted) links matching `filter`, plus the cursor of
/// the next page when there is one. `after` must be of the kind `filter.order` hands out.
pub async fn list_by_owner(
    pool: &PgPool,
    owner: &str,
    filter: &ListFilter,
    limit: u32,
    after: Option<Cursor>,
) -> Result<(Vec<LinkRow>, Option<Cursor>), sqlx::Error> {
    let fetch = i64::from(limit) + 1;
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM links WHERE deleted_at IS NULL AND owner_key_id = "
    ));
    q.push_bind(owner);
    if let Some(text) = &filter.q {
        let pattern = contains_pattern(text);
        q.push(" AND (short_code ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR long_url ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR title ILIKE ")
            .push_bind(pattern)
            .push(")");
    }
    if !filter.tags.is_empty() {
        q.push(" AND tags @> ").push_bind(filter.tags.clone());
    }
    if let Some(t) = filter.created_after {
        q.push(" AND created_at >= ").push_bind(t);
    }
    if let Some(t) = filter.created_before {
        q.push(" AND created_at < ").push_bind(t);
    }
    let mut offset = 0;
    match (filter.order, after) {
        (ListOrder::Created, Some(Cursor::After { created_at, id })) => {
            q.push(" AND (created_at, id) < (")
                .push_bind(created_at)
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        (ListOrder::Clicks, Some(Cursor::Offset(n))) => offset = n,
        (_, None) => {}
        _ => return Err(sqlx::Error::Protocol("cursor of another order".into())),
    }
    match filter.order {
        ListOrder::Created => q.push(" ORDER BY created_at DESC, id DESC"),
        ListOrder::Clicks => q.push(
            " ORDER BY (SELECT coalesce(sum(t.humans + t.bots), 0) FROM click_totals t \
             WHERE t.short_code = links.short_code) DESC, created_at DESC, id DESC",
        ),
    };
    q.push(" LIMIT ").push_bind(fetch);
    q.push(" OFFSET ").push_bind(i64::from(offset));
    let mut rows: Vec<LinkRow> = q.build_query_as().fetch_all(pool).await?;
    let next = if rows.len() > limit as usize {
        rows.truncate(limit as usize);
        match filter.order {
            ListOrder::Created => rows.last().map(|r| Cursor::After {
                created_at: r.created_at,
                id: r.id,
            }),
            ListOrder::Clicks => Some(Cursor::Offset(offset.saturating_add(limit))),
        }
    } else {
        None
    };
    Ok((rows, next))
}

/// How many live (not deleted) links `owner` has.
pub async fn count_live_by_owner(pool: &PgPool, owner: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM links WHERE owner_key_id = $1 AND deleted_at IS NULL")
        .bind(owner)
        .fetch_one(pool)
        .await
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
        let c = Cursor::After {
            created_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            id: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(
            Cursor::decode(&Cursor::Offset(300).encode()),
            Some(Cursor::Offset(300))
        );
        assert_eq!(Cursor::decode("o-1"), None);
        assert_eq!(Cursor::decode("nope"), None);
        assert_eq!(Cursor::decode("1_x"), None);
        assert_eq!(Cursor::decode("_1"), None);
        assert_eq!(Cursor::decode("-8000000000000000000_1"), None);
    }

    #[test]
    fn search_text_is_matched_literally() {
        assert_eq!(contains_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
    }
}
