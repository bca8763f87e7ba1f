//! The client's IP address: the socket peer, or — only when the peer is a trusted proxy —
//! the right-most X-Forwarded-For entry that is not itself a trusted proxy. Entries left
//! of that one are client-controlled and ignored.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap, HeaderName};

use crate::config::TrustedProxies;

/// A name, not a `&str`: a lookup by string parses and lowercases it first, which cost more
/// than the rest of the lookup on every request from a trusted proxy.
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: TrustedProxies,
}

impl ClientIpResolver {
    pub fn new(trusted: TrustedProxies) -> Self {
        Self { trusted }
    }

    fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.0.iter().any(|net| net.contains(&ip))
    }

    pub fn resolve(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = peer.map(|ip| ip.to_canonical())?;
        if !self.is_trusted(peer) {
            return Some(peer);
        }
        // Hops in the order they were appended (several headers count as one list), walked
        // from the last without collecting them.
        let hops = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim);
        let mut last_trusted = peer;
        for hop in hops.rev() {
            let Some(ip) = parse_hop(hop) else {
                // Garbage written by (or passed through) a trusted hop: stop at that hop.
                return Some(last_trusted);
            };
            if !self.is_trusted(ip) {
                return Some(ip);
            }
            last_trusted = ip;
        }
        Some(last_trusted)
    }

    /// The client IP of a request, from its `ConnectInfo` and headers.
    pub fn from_request<B>(&self, req: &axum::http::Request<B>) -> Option<IpAddr> {
        self.from_parts(req.extensions(), req.headers())
    }

    /// [`Self::from_request`] from the parts of a request that may be shared across tasks.
    pub fn from_parts(&self, extensions: &Extensions, headers: &HeaderMap) -> Option<IpAddr> {
        self.resolve(peer_of(extensions), headers)
    }

    /// True when the request came straight from a trusted proxy (whose headers, such as
    /// the trace context, are believed).
    pub fn peer_is_trusted<B>(&self, req: &axum::http::Request<B>) -> bool {
        self.is_trusted_peer(peer_of(req.extensions()))
    }

    /// [`Self::peer_is_trusted`] for a known peer address.
    pub fn is_trusted_peer(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| self.is_trusted(ip.to_canonical()))
    }
}

/// The socket peer of a request routed by axum (its `ConnectInfo`).
pub fn peer_of(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Accepts `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` and `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_proxies;
    use axum::http::HeaderValue;

    fn headers(xff: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_static(v));
        }
        h
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_headers_say() {
        let r = ClientIpResolver::new(parse_proxies("10.0.0.0/8").unwrap());
        let h = headers(&["1.1.1.1"]);
        assert_eq!(r.resolve(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        let none = ClientIpResolver::default();
        assert_eq!(none.resolve(ip("10.0.0.1"), &h), ip("10.0.0.1"));
    }

    #[test]
    fn trusted_peer_yields_right_most_untrusted_hop() {
        let r = ClientIpResolver::new(parse_proxies("10.0.0.0/8,192.0.2.1").unwrap());
        // The client spoofed 6.6.6.6; 198.51.100.7 is what the first trusted proxy saw.
        let h = headers(&["6.6.6.6, 198.51.100.7", "192.0.2.1"]);
        assert_eq!(r.resolve(ip("10.1.2.3"), &h), ip("198.51.100.7"));
        // Ports and IPv6 brackets are accepted.
        let h = headers(&["[2001:db8::5]:443"]);
        assert_eq!(r.resolve(ip("10.1.2.3"), &h), ip("2001:db8::5"));
        // No header: the proxy itself.
        assert_eq!(r.resolve(ip("10.1.2.3"), &HeaderMap::new()), ip("10.1.2.3"));
        // Only trusted hops: the left-most of them.
        let h = headers(&["10.9.9.9, 192.0.2.1"]);
        assert_eq!(r.resolve(ip("10.1.2.3"), &h), ip("10.9.9.9"));
        // Garbage stops the walk at the last trusted hop.
        let h = headers(&["1.1.1.1, nonsense, 192.0.2.1"]);
        assert_eq!(r.resolve(ip("10.1.2.3"), &h), ip("192.0.2.1"));
    }

    #[test]
    fn ipv4_mapped_peers_are_canonical() {
        let r = ClientIpResolver::new(parse_proxies("10.0.0.0/8").unwrap());
        let h = headers(&["198.51.100.7"]);
        assert_eq!(r.resolve(ip("::ffff:10.0.0.1"), &h), ip("198.51.100.7"));
        assert_eq!(
            r.resolve(ip("::ffff:203.0.113.1"), &HeaderMap::new()),
            ip("203.0.113.1")
        );
    }
}
