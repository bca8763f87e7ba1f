//! Query forwarding: the short URL's query string appended to the destination (Shlink's
//! `forwardQuery`), so `/{code}?ref=mail` reaches `<destination>?ref=mail`. Parameters are
//! appended, not merged: a name present in both appears twice, the destination's first.

use axum::http::HeaderValue;

/// The redirect target for `location` with the visitor's `query` added, before any
/// fragment. None when there is nothing to add or the result is not a valid header.
pub fn forwarded(location: &HeaderValue, query: &str) -> Option<HeaderValue> {
    if query.is_empty() {
        return None;
    }
    let target = location.to_str().ok()?;
    let (base, fragment) = match target.find('#') {
        Some(i) => target.split_at(i),
        None => (target, ""),
    };
    let sep = match base.find('?') {
        None => "?",
        Some(i) if i + 1 == base.len() || base.ends_with('&') => "",
        Some(_) => "&",
    };
    let mut out = String::with_capacity(base.len() + sep.len() + query.len() + fragment.len());
    out.push_str(base);
    out.push_str(sep);
    out.push_str(query);
    out.push_str(fragment);
    HeaderValue::try_from(out).ok()
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
    }
}
