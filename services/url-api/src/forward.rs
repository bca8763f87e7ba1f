//! Query forwarding: the short URL's query string appended to the destination (Shlink's
//! `forwardQuery`), so `/{code}?ref=mail` reaches `<destination>?ref=mail`. Parameters are
//! appended, not merged: a name present in both appears twice, the destination's first.

use axum::body::Bytes;
use axum::http::HeaderValue;

/// The redirect target for `location` with the visitor's `query` added, before any
/// fragment. None when there is nothing to add or the result is not a valid header.
pub fn forwarded(location: &HeaderValue, query: &str) -> Option<HeaderValue> {
    if query.is_empty() {
        return None;
    }
    // Bytes, not text: both halves are valid header bytes already, and the result is
    // checked once when it becomes a header value.
    let target = location.as_bytes();
    let (base, fragment) = match target.iter().position(|&b| b == b'#') {
        Some(i) => target.split_at(i),
        None => (target, &[][..]),
    };
    let sep: &[u8] = match base.iter().position(|&b| b == b'?') {
        None => b"?",
        Some(i) if i + 1 == base.len() || base.ends_with(b"&") => b"",
        Some(_) => b"&",
    };
    let mut out = Vec::with_capacity(base.len() + sep.len() + query.len() + fragment.len());
    out.extend_from_slice(base);
    out.extend_from_slice(sep);
    out.extend_from_slice(query.as_bytes());
    out.extend_from_slice(fragment);
    HeaderValue::from_maybe_shared(Bytes::from(out)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fw(location: &'static str, query: &str) -> Option<String> {
        forwarded(&HeaderValue::from_static(location), query)
            .map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn appends_the_query_before_any_fragment() {
        assert_eq!(
            fw("https://e.com/p", "a=1").as_deref(),
            Some("https://e.com/p?a=1")
        );
        assert_eq!(
            fw("https://e.com/p?x=2", "a=1&b").as_deref(),
            Some("https://e.com/p?x=2&a=1&b")
        );
        assert_eq!(
            fw("https://e.com/p?", "a=1").as_deref(),
            Some("https://e.com/p?a=1")
        );
        assert_eq!(
            fw("https://e.com/p?x=2&", "a=1").as_deref(),
            Some("https://e.com/p?x=2&a=1")
        );
        assert_eq!(
            fw("https://e.com/p#frag?no", "a=1").as_deref(),
            Some("https://e.com/p?a=1#frag?no")
        );
        assert_eq!(fw("https://e.com/p", ""), None);
        // A target of non-ASCII header bytes (as stored) keeps them.
        let latin = HeaderValue::from_bytes(b"https://e.com/caf\xe9#x").unwrap();
        let out = forwarded(&latin, "a=1").unwrap();
        assert_eq!(out.as_bytes(), b"https://e.com/caf\xe9?a=1#x");
        // What cannot be a header value is not forwarded.
        assert_eq!(fw("https://e.com/p", "a=\n"), None);
    }
}
