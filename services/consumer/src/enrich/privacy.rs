//! What of a click's client details is kept: the address anonymized (IPv4 to its /24,
//! IPv6 to its /48, as Shlink's ANONYMIZE_REMOTE_ADDR and Matomo do) unless the operator
//! chose to keep it whole; User-Agent and Referer cut to a bounded length. Country, device
//! and visitor identity are derived from the full values before this.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest User-Agent stored, in bytes (real ones are well under 300).
pub const MAX_STORED_USER_AGENT: usize = 512;
/// Longest Referer stored, in bytes: the source is derived from the full value first.
pub const MAX_STORED_REFERER: usize = 1024;

/// The address with its host part zeroed: the last octet of IPv4, all but the first 48
/// bits of IPv6 (IPv4-mapped IPv6 is treated as the IPv4 it carries).
pub fn anonymize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(anonymize_v4(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V6(anonymize_v4(v4).to_ipv6_mapped()),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0))
            }
        },
    }
}

fn anonymize_v4(v4: Ipv4Addr) -> Ipv4Addr {
    let [a, b, c, _] = v4.octets();
    Ipv4Addr::new(a, b, c, 0)
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anon(ip: &str) -> String {
        anonymize(ip.parse().unwrap()).to_string()
    }

    #[test]
    fn addresses_lose_their_host_part() {
        assert_eq!(anon("203.0.113.77"), "203.0.113.0");
        assert_eq!(anon("2001:db8:abcd:1234:5678::1"), "2001:db8:abcd::");
        assert_eq!(anon("::ffff:198.51.100.9"), "::ffff:198.51.100.0");
        assert_eq!(anon("10.0.0.0"), "10.0.0.0");
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc");
        // "é" is two bytes: cutting inside it keeps the character out.
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(
            truncate(&"x".repeat(2000), MAX_STORED_USER_AGENT).len(),
            512
        );
    }
}
