//! Dashboard sessions: an API key is exchanged once for a random session id kept in an
//! HttpOnly, SameSite=Strict cookie (Secure when the public base URL is https). The key
//! itself never reaches the browser again; the server keeps SHA-256 digests only (of the
//! session id and of the key), so removing a key from the configuration ends its sessions.

use std::sync::Arc;

use axum::http::{header, HeaderMap, HeaderValue};
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// Cookie of the session id over http (`__Host-` needs Secure, so https only).
pub const COOKIE: &str = "shortener_session";
pub const SECURE_COOKIE: &str = "__Host-shortener_session";
/// Cookie holding the sign-in form's CSRF token (double submit: no session exists yet).
pub const LOGIN_CSRF_COOKIE: &str = "shortener_login_csrf";

/// A signed-in dashboard user, as loaded for one request.
#[derive(Debug, Clone)]
pub struct Session {
    pub owner: Arc<str>,
    pub csrf_token: String,
    id_digest: [u8; 32],
}

/// 32 random bytes, URL-safe hex: session ids and CSRF tokens.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn id_digest(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// How the session cookie is written: name and attributes depend on https.
#[derive(Debug, Clone, Copy)]
pub struct CookiePolicy {
    pub secure: bool,
}

impl CookiePolicy {
    pub fn name(self) -> &'static str {
        if self.secure {
            SECURE_COOKIE
        } else {
            COOKIE
        }
    }

    fn attributes(self, path: &str, max_age: i64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
    }

    /// `Set-Cookie` opening a session that lasts `ttl`.
    pub fn set(self, id: &str, ttl: Duration) -> HeaderValue {
        let v = format!(
            "{}={id}; {}",
            self.name(),
            self.attributes("/", ttl.num_seconds())
        );
        HeaderValue::from_str(&v).expect("hex id and fixed attributes are a valid header")
    }

    /// `Set-Cookie` removing the session cookie.
    pub fn clear(self) -> HeaderValue {
        let v = format!("{}=; {}", self.name(), self.attributes("/", 0));
        HeaderValue::from_str(&v).expect("fixed attributes are a valid header")
    }

    /// `Set-Cookie` of the sign-in form's CSRF token, scoped to the sign-in path.
    pub fn login_csrf(self, token: &str) -> HeaderValue {
        let v = format!(
            "{LOGIN_CSRF_COOKIE}={token}; {}",
            self.attributes("/ui/login", 3600)
        );
        HeaderValue::from_str(&v).expect("hex token and fixed attributes are a valid header")
    }
}

/// Opens a session for `owner` (whose key has digest `key_digest`); returns the new
/// session id for the cookie. Expired sessions are purged on the way.
pub async fn open(
    pool: &PgPool,
    owner: &str,
    key_digest: &[u8; 32],
    ttl: Duration,
    now: DateTime<Utc>,
) -> Result<(String, Session), sqlx::Error> {
    sqlx::query("DELETE FROM ui_sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(pool)
        .await?;
    let id = random_token();
    let digest = id_digest(&id);
    let csrf_token = random_token();
    sqlx::query(
        "INSERT INTO ui_sessions (id_digest, owner, key_digest, csrf_token, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&digest[..])
    .bind(owner)
    .bind(&key_digest[..])
    .bind(&csrf_token)
    .bind(now)
    .bind(now + ttl)
    .execute(pool)
    .await?;
    Ok((
        id,
        Session {
            owner: owner.into(),
            csrf_token,
            id_digest: digest,
        },
    ))
}

/// What a presented session id turns out to be.
#[derive(Debug)]
pub enum Lookup {
    /// A live session; `key_digest` must still name a configured key.
    Live {
        session: Session,
        key_digest: [u8; 32],
    },
    /// Unknown or expired (both read as "your session expired").
    Expired,
}

pub async fn find(pool: &PgPool, id: &str, now: DateTime<Utc>) -> Result<Lookup, sqlx::Error> {
    let digest = id_digest(id);
    let row: Option<(String, Vec<u8>, String)> = sqlx::query_as(
        "SELECT owner, key_digest, csrf_token FROM ui_sessions \
         WHERE id_digest = $1 AND expires_at > $2",
    )
    .bind(&digest[..])
    .bind(now)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some((owner, key_digest, csrf_token)) => match <[u8; 32]>::try_from(key_digest) {
            Ok(key_digest) => Lookup::Live {
                session: Session {
                    owner: owner.into(),
                    csrf_token,
                    id_digest: digest,
                },
                key_digest,
            },
            Err(_) => Lookup::Expired,
        },
        None => Lookup::Expired,
    })
}

/// Ends `session` (sign-out).
pub async fn close(pool: &PgPool, session: &Session) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM ui_sessions WHERE id_digest = $1")
        .bind(&session.id_digest[..])
        .execute(pool)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_is_found_among_others_and_headers() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; shortener_session=abc"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "shortener"), None);
    }

    #[test]
    fn session_cookie_is_http_only_strict_and_secure_over_https() {
        let plain = CookiePolicy { secure: false }.set("id1", Duration::hours(1));
        assert_eq!(
            plain,
            "shortener_session=id1; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict"
        );
        let secure = CookiePolicy { secure: true }.set("id1", Duration::hours(1));
        assert_eq!(
            secure,
            "__Host-shortener_session=id1; Path=/; Max-Age=3600; HttpOnly; SameSite=Strict; Secure"
        );
        let cleared = CookiePolicy { secure: true }.clear();
        assert!(cleared.to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn tokens_are_random_and_long() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
