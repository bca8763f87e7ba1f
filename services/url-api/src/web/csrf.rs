//! Cross-site request forgery checks of the dashboard's forms: every POST carries a token
//! (the session's, or the sign-in cookie's before a session exists) compared in constant
//! time, and a browser-declared cross-site request is refused before that.

use axum::http::HeaderMap;
use subtle::ConstantTimeEq;

/// True when `presented` equals `expected` (both non-empty), in constant time.
pub fn token_matches(expected: &str, presented: &str) -> bool {
    !expected.is_empty()
        && expected.len() == presented.len()
        && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
}

/// False when the browser says the request comes from another site (`Sec-Fetch-Site`), or
/// its `Origin` is neither the host it was sent to nor `public_origin` (the public base
/// URL's `scheme://authority`, for proxies that rewrite `Host`).
pub fn same_origin(headers: &HeaderMap, public_origin: &str) -> bool {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    match (text("origin"), text("host")) {
        (Some(origin), _) if origin.eq_ignore_ascii_case(public_origin) => true,
        (Some("null"), _) => false,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abc", "abd"));
        assert!(!token_matches("abc", "ab"));
        assert!(!token_matches("", ""));
    }

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    const PUBLIC: &str = "https://sho.rt";

    #[test]
    fn cross_site_posts_are_refused() {
        assert!(same_origin(&h(&[]), PUBLIC));
        assert!(same_origin(
            &h(&[
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://localhost:8080"),
                ("host", "localhost:8080"),
            ]),
            PUBLIC
        ));
        assert!(!same_origin(
            &h(&[("sec-fetch-site", "cross-site")]),
            PUBLIC
        ));
        assert!(!same_origin(&h(&[("sec-fetch-site", "same-site")]), PUBLIC));
        assert!(!same_origin(
            &h(&[
                ("origin", "https://evil.example"),
                ("host", "localhost:8080"),
            ]),
            PUBLIC
        ));
        assert!(!same_origin(&h(&[("origin", "null")]), PUBLIC));
        // Behind a proxy that rewrites Host, the public origin still matches.
        assert!(same_origin(
            &h(&[("origin", "https://sho.rt"), ("host", "url-api:8080")]),
            PUBLIC
        ));
        assert!(!same_origin(
            &h(&[
                ("origin", "https://sho.rt.evil.example"),
                ("host", "url-api:8080")
            ]),
            PUBLIC
        ));
    }
}
