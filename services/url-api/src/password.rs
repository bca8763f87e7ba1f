//! Password-protected links (Kutt, Dub): a redirect answers an HTML form instead, and the
//! right password (stored as an argon2id PHC string) continues to the target.
//!
//! The form holds no secret and acts for no signed-in user (no cookie, no session), so a
//! cross-site post can do nothing a visitor could not; posts whose Origin is another site
//! are refused anyway, so no other page can spend a visitor's attempts. Wrong attempts are
//! limited per link and client network ([`ATTEMPTS_PER_MINUTE`]). The page loads and runs
//! nothing: its CSP allows inline style only, posting only to itself, and no framing.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::metadata::FieldError;
use crate::rate_limit::{client_net, MAX_TRACKED_CLIENTS};

pub const MIN_CHARS: usize = 4;
pub const MAX_CHARS: usize = 128;
/// Password attempts per link and client network per minute (all of them, right or wrong:
/// a limit that only counts failures would need the slow check first).
pub const ATTEMPTS_PER_MINUTE: u32 = 5;
const JANITOR_INTERVAL: Duration = Duration::from_secs(30);

pub fn check(password: &str) -> Result<(), FieldError> {
    let n = password.chars().count();
    if (MIN_CHARS..=MAX_CHARS).contains(&n) {
        Ok(())
    } else {
        Err(FieldError::Password)
    }
}

/// The argon2id PHC string of `password` (default parameters, random salt). CPU-bound:
/// call off the async workers.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Whether `password` matches the stored `phc` string. CPU-bound, like [`hash`].
pub fn verify(phc: &str, password: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Attempts per (link, client network), with a bounded number of tracked pairs.
#[derive(Clone)]
pub struct AttemptLimiter {
    limiter: Arc<DefaultKeyedRateLimiter<(Box<str>, IpAddr)>>,
}

impl Default for AttemptLimiter {
    fn default() -> Self {
        let rate = NonZeroU32::new(ATTEMPTS_PER_MINUTE).expect("non-zero");
        Self {
            limiter: Arc::new(DefaultKeyedRateLimiter::keyed(Quota::per_minute(rate))),
        }
    }
}

impl AttemptLimiter {
    /// Ok when one more attempt at `code` from `client` is allowed; else seconds to wait.
    pub fn check(&self, code: &str, client: Option<IpAddr>) -> Result<(), u64> {
        let net = client.map(client_net).unwrap_or(IpAddr::from([0, 0, 0, 0]));
        // Past the cap all newcomers for a link share one bucket (memory stays bounded).
        let net = if self.limiter.len() >= MAX_TRACKED_CLIENTS {
            IpAddr::from([255, 255, 255, 255])
        } else {
            net
        };
        self.limiter
            .check_key(&(code.into(), net))
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
            })
    }

    pub fn spawn_janitor(&self) -> tokio::task::JoinHandle<()> {
        let limiter = self.limiter.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(JANITOR_INTERVAL);
            loop {
                tick.tick().await;
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        })
    }
}

/// Escapes text for HTML content and attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What the form says above the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    Ask,
    Wrong,
    TooMany,
}

/// The form page for `code`, posting back to the same URL (query included, so query
/// forwarding still applies once unlocked).
pub fn form_page(code: &str, query: Option<&str>, prompt: Prompt, status: StatusCode) -> Response {
    let action = match query {
        Some(q) if !q.is_empty() => format!("/{code}?{q}"),
        _ => format!("/{code}"),
    };
    let message = match prompt {
        Prompt::Ask => "This link is protected. Enter its password to continue.",
        Prompt::Wrong => "Wrong password. Try again.",
        Prompt::TooMany => "Too many attempts. Wait a minute and try again.",
    };
    let body = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>Protected link</title>
<style>body{{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem;color:#111}}
label,input,button{{display:block;width:100%;font-size:1rem;margin:.5rem 0}}input,button{{padding:.6rem;box-sizing:border-box}}
button{{background:#1a56db;color:#fff;border:0;border-radius:4px}}p[role=alert]{{color:#9b1c1c}}</style></head>
<body><main><h1>Protected link</h1>
<p{role}>{message}</p>
<form method="post" action="{action}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required autofocus maxlength="{MAX_CHARS}">
<button type="submit">Continue</button>
</form></main></body></html>
"#,
        role = if prompt == Prompt::Ask {
            ""
        } else {
            r#" role="alert""#
        },
        action = escape(&action),
    );
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
                     frame-ancestors 'none'; base-uri 'none'",
                ),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_their_password() {
        let phc = hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(verify(&phc, "correct horse"));
        assert!(!verify(&phc, "correct hors"));
        assert!(!verify("not a hash", "correct horse"));
        assert_ne!(hash("correct horse").unwrap(), phc, "salted");
    }

    #[test]
    fn password_length_is_checked() {
        assert!(check("abcd").is_ok());
        assert_eq!(check("abc"), Err(FieldError::Password));
        assert_eq!(check(&"x".repeat(129)), Err(FieldError::Password));
    }

    #[test]
    fn attempts_are_limited_per_link_and_network() {
        let limits = AttemptLimiter::default();
        let ip = Some("203.0.113.5".parse().unwrap());
        for _ in 0..ATTEMPTS_PER_MINUTE {
            assert!(limits.check("abc", ip).is_ok());
        }
        assert!(limits.check("abc", ip).unwrap_err() >= 1);
        assert!(limits.check("other", ip).is_ok());
        assert!(limits
            .check("abc", Some("203.0.113.6".parse().unwrap()))
            .is_ok());
    }

    #[test]
    fn the_form_escapes_what_it_echoes() {
        let page = form_page(
            "abc",
            Some("q=\"><script>"),
            Prompt::Wrong,
            StatusCode::UNAUTHORIZED,
        );
        assert_eq!(page.status(), StatusCode::UNAUTHORIZED);
        assert!(page.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("form-action 'self'"));
    }
}
