//! Traffic source from the `Referer`: a well-known network's name, else the registrable
//! domain (eTLD+1 by the Public Suffix List), "ip" for an IP literal, else "direct".

/// No referer, an empty one, or one that is not an absolute http(s) URL.
pub const DIRECT: &str = "direct";
/// Every IP-literal referer: anyone can invent millions, none names a site.
pub const IP: &str = "ip";

/// Registrable domains (or, for Google, the second-level label under any public suffix)
/// that fold into one named source.
const NAMED: &[(&str, &[&str])] = &[
    ("bing", &["bing.com"]),
    (
        "facebook",
        &["facebook.com", "fb.com", "fb.me", "messenger.com"],
    ),
    ("twitter", &["t.co", "twitter.com", "x.com"]),
    ("linkedin", &["linkedin.com", "lnkd.in"]),
    ("reddit", &["reddit.com", "redd.it"]),
];

pub fn traffic_source(referer: Option<&str>) -> String {
    let Some(referer) = referer.map(str::trim).filter(|r| !r.is_empty()) else {
        return DIRECT.to_string();
    };
    let Ok(url) = url::Url::parse(referer) else {
        return DIRECT.to_string();
    };
    if !matches!(url.scheme(), "http" | "https") {
        return DIRECT.to_string();
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
        Some(url::Host::Ipv4(_)) | Some(url::Host::Ipv6(_)) => return IP.to_string(),
        None => return DIRECT.to_string(),
    };
    if host.is_empty() {
        return DIRECT.to_string();
    }
    let registrable = psl::domain_str(&host).unwrap_or(&host).to_string();
    // google.com, google.co.uk, google.de, ...
    if registrable
        .split_once('.')
        .is_some_and(|(label, _)| label == "google")
    {
        return "google".to_string();
    }
    NAMED
        .iter()
        .find(|(_, domains)| domains.contains(&registrable.as_str()))
        .map(|(name, _)| name.to_string())
        .unwrap_or(registrable)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(r: &str) -> String {
        traffic_source(Some(r))
    }

    #[test]
    fn missing_empty_or_invalid_referers_are_direct() {
        assert_eq!(traffic_source(None), "direct");
        assert_eq!(src(""), "direct");
        assert_eq!(src("   "), "direct");
        assert_eq!(src("not a url"), "direct");
        assert_eq!(src("/relative/path"), "direct");
        assert_eq!(src("android-app://com.example.app"), "direct");
        assert_eq!(src("http://"), "direct");
    }

    #[test]
    fn well_known_networks_get_their_name() {
        assert_eq!(src("https://www.google.com/search?q=rust"), "google");
        assert_eq!(src("https://www.google.co.uk/"), "google");
        assert_eq!(src("https://google.de"), "google");
        assert_eq!(src("https://www.bing.com/search?q=x"), "bing");
        assert_eq!(src("https://l.facebook.com/l.php?u=x"), "facebook");
        assert_eq!(src("https://m.facebook.com/"), "facebook");
        assert_eq!(src("https://t.co/abc123"), "twitter");
        assert_eq!(src("https://twitter.com/someone"), "twitter");
        assert_eq!(src("https://x.com/someone/status/1"), "twitter");
        assert_eq!(src("https://www.linkedin.com/feed/"), "linkedin");
        assert_eq!(src("https://lnkd.in/xyz"), "linkedin");
        assert_eq!(src("https://old.reddit.com/r/rust/"), "reddit");
        assert_eq!(src("HTTPS://WWW.GOOGLE.COM./"), "google");
    }

    #[test]
    fn other_sites_are_their_registrable_domain() {
        assert_eq!(src("https://news.bbc.co.uk/story"), "bbc.co.uk");
        assert_eq!(src("https://www.example.com/page"), "example.com");
        assert_eq!(src("http://example.com"), "example.com");
        assert_eq!(src("https://someone.github.io/blog"), "someone.github.io");
        assert_eq!(src("https://a.b.example.com.au/x"), "example.com.au");
        // Not a Google property despite the label further down.
        assert_eq!(src("https://google.example.org/"), "example.org");
        assert_eq!(src("http://192.0.2.10:8080/x"), "ip");
        assert_eq!(src("http://[2001:db8::1]/x"), "ip");
        assert_eq!(src("http://3232235777/"), "ip");
        assert_eq!(src("http://localhost:3000/"), "localhost");
    }
}
