//! Validation of long URLs and custom aliases.
//!
//! Target checks look only at the URL itself: the scheme, the host name and IP-literal
//! hosts. A host name must end in a suffix of the Public Suffix List under a registrable
//! label, which rules out single-label names (`kafka`, a cluster's services) and private
//! namespaces (`*.local`, `*.internal`, `metadata.google.internal`). Host names are NOT
//! resolved (no DNS in the request path: it would add latency
//! and an outage dependency, and the answer can change after validation anyway), so a
//! public name that resolves to a private address is accepted; the redirect is served to
//! the browser, which is what limits the blast radius.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Paths under the service root that an alias must not shadow (compared case-insensitively).
pub const RESERVED_ALIASES: &[&str] = &[
    "api",
    "healthz",
    "readyz",
    "livez",
    "health",
    "metrics",
    "openapi.json",
    "openapi",
    "docs",
    "swagger",
    "admin",
    "static",
    "assets",
    "public",
    "login",
    "logout",
    "signup",
    "favicon.ico",
    "robots.txt",
    "well-known",
    // Fixed paths under /api/v1/links/ that a link's code would otherwise shadow.
    "bulk",
    "import",
    "export",
];
pub const ALIAS_MIN_LEN: usize = 3;
pub const ALIAS_MAX_LEN: usize = 64;

#[derive(Debug, Clone)]
pub struct UrlPolicy {
    pub max_len: usize,
    pub allow_private: bool,
    /// The shortener's own host (of `PUBLIC_BASE_URL`, lowercase): a link to it would
    /// redirect to another short link, or to itself.
    pub own_host: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum UrlError {
    #[error("long_url is empty")]
    Empty,
    #[error("long_url is longer than {0} bytes")]
    TooLong(usize),
    #[error("long_url contains whitespace or control characters")]
    ControlCharacters,
    #[error("long_url is not a valid absolute URL: {0}")]
    Parse(String),
    #[error("scheme {0:?} is not allowed: use http or https")]
    Scheme(String),
    #[error("long_url has no host")]
    NoHost,
    #[error("long_url must not embed credentials")]
    Credentials,
    #[error("target {0} is a local or private address")]
    PrivateTarget(String),
    #[error("target {0} is this shortener: links to short links are not allowed")]
    OwnHost(String),
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AliasError {
    #[error("alias must be {ALIAS_MIN_LEN} to {ALIAS_MAX_LEN} characters long")]
    Length,
    #[error("alias may contain only letters, digits, '_' and '-'")]
    Charset,
    #[error("alias {0:?} is reserved")]
    Reserved(String),
}

impl UrlPolicy {
    /// Parses and checks `input`; returns the normalized URL (IDN hosts in punycode).
    pub fn check(&self, input: &str) -> Result<Url, UrlError> {
        if input.is_empty() {
            return Err(UrlError::Empty);
        }
        if input.len() > self.max_len {
            return Err(UrlError::TooLong(self.max_len));
        }
        // The url crate would silently strip these; reject instead of guessing.
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::ControlCharacters);
        }
        let url = Url::parse(input).map_err(|e| UrlError::Parse(e.to_string()))?;
        match url.scheme() {
            "http" | "https" => {}
            other => return Err(UrlError::Scheme(other.to_string())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        let host = url.host().ok_or(UrlError::NoHost)?;
        if let (Some(own), Some(name)) = (&self.own_host, url.host_str()) {
            if name.trim_end_matches('.').eq_ignore_ascii_case(own) {
                return Err(UrlError::OwnHost(host.to_string()));
            }
        }
        if !self.allow_private {
            let private = match &host {
                Host::Domain(d) => is_local_name(d),
                Host::Ipv4(ip) => is_private_v4(*ip),
                Host::Ipv6(ip) => is_private_v6(*ip),
            };
            if private {
                return Err(UrlError::PrivateTarget(host.to_string()));
            }
        }
        // Punycode can make the normalized form longer than the input.
        if url.as_str().len() > self.max_len {
            return Err(UrlError::TooLong(self.max_len));
        }
        Ok(url)
    }
}

/// True for names that cannot be a public site: no registrable domain under a known
/// public suffix (single labels, `.local`, `.internal`, unknown TLDs), `localhost`, and
/// the special-use `.arpa` zone (`home.arpa`, reverse DNS). Names under the documentation
/// TLD `.example` (RFC 2606) pass, so examples and tests can use them.
fn is_local_name(domain: &str) -> bool {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    if d.is_empty() || d == "localhost" || d.ends_with(".localhost") {
        return true;
    }
    if d.ends_with(".example") {
        return false;
    }
    let public = psl::suffix(d.as_bytes()).is_some_and(|s| s.is_known())
        && psl::domain(d.as_bytes()).is_some();
    !public || d == "arpa" || d.ends_with(".arpa")
}

/// True for addresses a public link must not point at.
pub fn is_private_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_unspecified()
        || a == 0 // "this network"
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b)) // CGNAT 100.64.0.0/10
        || ip.is_broadcast()
        || ip.is_multicast()
        || a >= 240 // reserved
}

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_private_v4(v4);
    }
    // Deprecated IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16)
    // addresses reach an embedded IPv4 address.
    let embedded = |hi: u16, lo: u16| Ipv4Addr::from(((hi as u32) << 16) | lo as u32);
    if s[..6] == [0; 6] && !ip.is_loopback() && !ip.is_unspecified() {
        return is_private_v4(embedded(s[6], s[7]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_private_v4(embedded(s[6], s[7]));
    }
    // IPv4-translated ::ffff:0:a.b.c.d (SIIT).
    if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return is_private_v4(embedded(s[6], s[7]));
    }
    // Local-use NAT64 64:ff9b:1::/48 translates into whatever the operator's network holds.
    if s[..3] == [0x64, 0xff9b, 1] {
        return true;
    }
    if s[0] == 0x2002 {
        return is_private_v4(embedded(s[1], s[2]));
    }
    ip.is_unspecified()
        || ip.is_loopback()
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (s[0] & 0xffc0) == 0xfec0 // site-local fec0::/10 (deprecated)
        || ip.is_multicast()
}

/// Checks a custom alias: length, charset and reserved words.
pub fn check_alias(alias: &str) -> Result<(), AliasError> {
    if !(ALIAS_MIN_LEN..=ALIAS_MAX_LEN).contains(&alias.chars().count()) {
        return Err(AliasError::Length);
    }
    if !alias
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(AliasError::Charset);
    }
    if RESERVED_ALIASES
        .iter()
        .any(|r| r.eq_ignore_ascii_case(alias))
    {
        return Err(AliasError::Reserved(alias.to_string()));
    }
    Ok(())
}

/// True when `code` could name a link (cheap check before touching the cache or DB).
pub fn is_plausible_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= ALIAS_MAX_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: UrlPolicy = UrlPolicy {
        max_len: 2048,
        allow_private: false,
        own_host: None,
    };

    fn rejected(url: &str) -> UrlError {
        STRICT.check(url).unwrap_err()
    }

    #[test]
    fn accepts_public_http_and_https() {
        let u = STRICT.check("https://example.com/a?b=c#d").unwrap();
        assert_eq!(u.as_str(), "https://example.com/a?b=c#d");
        assert!(STRICT.check("http://93.184.216.34:8080/").is_ok());
        assert!(STRICT.check("http://[2606:2800:220:1::1]/").is_ok());
    }

    #[test]
    fn normalizes_idn_hosts_to_punycode() {
        let u = STRICT.check("https://bücher.example/straße").unwrap();
        assert_eq!(u.host_str(), Some("xn--bcher-kva.example"));
        assert!(STRICT.check("https://bücher.de/").is_ok());
    }

    #[test]
    fn rejects_other_schemes() {
        for (url, scheme) in [
            ("javascript:alert(1)", "javascript"),
            ("data:text/html,<script>x</script>", "data"),
            ("file:///etc/passwd", "file"),
            ("ftp://example.com/x", "ftp"),
            ("JAVASCRIPT:alert(1)", "javascript"),
            ("vbscript:msgbox", "vbscript"),
        ] {
            assert_eq!(rejected(url), UrlError::Scheme(scheme.into()), "{url}");
        }
    }

    #[test]
    fn rejects_malformed_and_odd_urls() {
        assert_eq!(rejected(""), UrlError::Empty);
        assert!(matches!(rejected("example.com"), UrlError::Parse(_)));
        assert!(matches!(rejected("https://"), UrlError::Parse(_)));
        assert_eq!(
            rejected(" https://example.com"),
            UrlError::ControlCharacters
        );
        assert_eq!(
            rejected("https://exa\tmple.com"),
            UrlError::ControlCharacters
        );
        assert_eq!(rejected("https://u:p@example.com/"), UrlError::Credentials);
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert_eq!(rejected(&long), UrlError::TooLong(2048));
    }

    #[test]
    fn rejects_local_and_private_targets() {
        for url in [
            "http://localhost/",
            "http://LOCALHOST./",
            "http://api.localhost:8080/",
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0.0.0.0/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://255.255.255.255/",
            "http://[::1]/",
            "http://[::]/",
            "http://[fd12:3456::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:c0a8:0101::1]/",
            "http://[::ffff:0:7f00:1]/",
            "http://[::ffff:0:a00:1]/",
            "http://[64:ff9b:1::808:808]/",
            "http://[64:ff9b:1:ffff::1]/",
        ] {
            assert!(
                matches!(rejected(url), UrlError::PrivateTarget(_)),
                "{url} should be rejected"
            );
        }
        // Just outside the ranges.
        for url in [
            "http://100.128.0.1/",
            "http://172.32.0.1/",
            "http://notlocalhost.com/",
            "http://[::ffff:0:808:808]/",
            "http://[64:ff9b::808:808]/",
            "http://[64:ff9b:2::1]/",
        ] {
            assert!(STRICT.check(url).is_ok(), "{url} should be accepted");
        }
    }

    #[test]
    fn rejects_internal_and_single_label_names() {
        for url in [
            "http://kafka:9092/",
            "http://postgres/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://metadata.google.internal./",
            "http://printer.local/",
            "http://kafka.default.svc.cluster.local:9092/",
            "http://db.internal/",
            "http://router.home.arpa/",
            "http://1.0.0.127.in-addr.arpa/",
            "http://intranet.corp/",
            "http://nas.lan/",
            "http://com/",
            "http://example/",
            "http://db.test/",
        ] {
            assert!(
                matches!(rejected(url), UrlError::PrivateTarget(_)),
                "{url} should be rejected"
            );
        }
        for url in [
            "https://github.com/",
            "https://someone.github.io/x",
            "https://news.bbc.co.uk/",
            "https://a.b.example.com.au/",
            "https://example.com./",
            "https://xn--bcher-kva.de/",
        ] {
            assert!(STRICT.check(url).is_ok(), "{url} should be accepted");
        }
    }

    #[test]
    fn rejects_links_to_the_shortener_itself() {
        let policy = UrlPolicy {
            own_host: Some("go.example.com".into()),
            ..STRICT
        };
        for url in [
            "https://go.example.com/abc",
            "http://GO.Example.com:8080/abc",
            "https://go.example.com./abc",
        ] {
            assert!(
                matches!(policy.check(url), Err(UrlError::OwnHost(_))),
                "{url}"
            );
        }
        assert!(policy.check("https://www.go.example.com/abc").is_ok());
        // Also when private targets are allowed (a development setup).
        let open = UrlPolicy {
            allow_private: true,
            own_host: Some("localhost".into()),
            ..STRICT
        };
        assert!(matches!(
            open.check("http://localhost:8080/abc"),
            Err(UrlError::OwnHost(_))
        ));
        assert!(open.check("http://127.0.0.1:3000/").is_ok());
        let by_ip = UrlPolicy {
            own_host: Some("[2001:db8::1]".into()),
            ..STRICT
        };
        assert!(matches!(
            by_ip.check("http://[2001:db8::1]:8080/abc"),
            Err(UrlError::OwnHost(_))
        ));
    }

    #[test]
    fn private_targets_allowed_when_configured() {
        let open = UrlPolicy {
            max_len: 2048,
            allow_private: true,
            own_host: None,
        };
        assert!(open.check("http://localhost:3000/").is_ok());
        assert!(open.check("http://10.0.0.1/").is_ok());
        assert!(open.check("javascript:alert(1)").is_err());
    }

    #[test]
    fn alias_rules() {
        assert!(check_alias("my-link_01").is_ok());
        assert!(check_alias(&"a".repeat(64)).is_ok());
        assert_eq!(check_alias("ab"), Err(AliasError::Length));
        assert_eq!(check_alias(&"a".repeat(65)), Err(AliasError::Length));
        assert_eq!(check_alias("has space"), Err(AliasError::Charset));
        assert_eq!(check_alias("a/b/c"), Err(AliasError::Charset));
        assert_eq!(check_alias("ünï"), Err(AliasError::Charset));
        assert_eq!(check_alias("a.b"), Err(AliasError::Charset));
        for r in [
            "api", "API", "healthz", "readyz", "metrics", "docs", "admin", "static", "bulk",
            "Export", "import",
        ] {
            assert!(
                matches!(check_alias(r), Err(AliasError::Reserved(_))),
                "{r}"
            );
        }
    }

    #[test]
    fn plausible_codes() {
        assert!(is_plausible_code("Ab3_x-9"));
        assert!(!is_plausible_code(""));
        assert!(!is_plausible_code("a.b"));
        assert!(!is_plausible_code(&"a".repeat(65)));
    }
}
