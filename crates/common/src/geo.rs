//! Country of an IP address from a MaxMind-format (mmdb) database: the consumer stores it
//! with each click, url-api matches redirect rules on it.
//!
//! Two record layouts exist in the wild: MaxMind's GeoIP2/GeoLite2 `{country: {iso_code}}`
//! and the flat `{country_code}` of several redistributions; both are read.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Stored when the country cannot be determined.
pub const UNKNOWN_COUNTRY: &str = "Unknown";

#[derive(Debug, thiserror::Error)]
#[error("cannot open GeoIP database {path}: {source}")]
pub struct GeoIpError {
    path: PathBuf,
    source: maxminddb::MaxMindDbError,
}

pub struct CountryDb {
    reader: maxminddb::Reader<Vec<u8>>,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    country_code: Option<&'a str>,
    #[serde(borrow)]
    country: Option<Country<'a>>,
    #[serde(borrow)]
    registered_country: Option<Country<'a>>,
}

#[derive(Deserialize)]
struct Country<'a> {
    iso_code: Option<&'a str>,
}

impl CountryDb {
    pub fn open(path: &Path) -> Result<Self, GeoIpError> {
        let reader = maxminddb::Reader::open_readfile(path).map_err(|source| GeoIpError {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self { reader })
    }

    /// ISO 3166-1 alpha-2 code of `ip`, or "Unknown" for private, reserved and unmatched
    /// addresses (and on a corrupt record: enrichment never fails a click).
    pub fn country(&self, ip: IpAddr) -> String {
        match self.country_code(ip) {
            Some(code) => code.iter().map(|&b| char::from(b)).collect(),
            None => UNKNOWN_COUNTRY.to_string(),
        }
    }

    /// The upper-case two-letter code of [`Self::country`], None where it says "Unknown";
    /// allocates nothing (url-api's redirect rules look it up per request).
    pub fn country_code(&self, ip: IpAddr) -> Option<[u8; 2]> {
        let ip = canonical(ip);
        if !is_public(ip) {
            return None;
        }
        let record: Option<Record> = match self.reader.lookup(ip) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(%ip, error = %e, "GeoIP lookup failed");
                None
            }
        };
        let code = record.and_then(|r| {
            r.country_code
                .or(r.country.and_then(|c| c.iso_code))
                .or(r.registered_country.and_then(|c| c.iso_code))
        })?;
        let code = <[u8; 2]>::try_from(code.as_bytes()).ok()?;
        code.iter()
            .all(u8::is_ascii_alphabetic)
            .then(|| code.map(|b| b.to_ascii_uppercase()))
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what dual-stack sockets report) are
/// looked up as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// False for addresses that can never have a country: private, loopback, link-local,
/// carrier-grade NAT, unspecified, multicast, documentation and unique-local ranges.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || (first == 0x2001 && v6.segments()[1] == 0x0db8))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_db() -> Option<CountryDb> {
        let path = std::env::var_os("SHORTENER_TEST_GEOIP_DB")?;
        Some(CountryDb::open(Path::new(&path)).expect("open SHORTENER_TEST_GEOIP_DB"))
    }

    fn db() -> CountryDb {
        test_db().expect(
            "SHORTENER_TEST_GEOIP_DB is not set: run through ./scripts/test, which fetches the database",
        )
    }

    /// The country of `ip`, checking that both lookups agree.
    fn country(db: &CountryDb, ip: &str) -> String {
        let ip = ip.parse().unwrap();
        let text = db.country(ip);
        let code = db.country_code(ip);
        match code {
            Some(code) => assert_eq!(text.as_bytes(), code, "{ip}"),
            None => assert_eq!(text, UNKNOWN_COUNTRY, "{ip}"),
        }
        text
    }

    #[test]
    fn well_known_public_addresses_resolve_to_their_country() {
        let db = db();
        assert_eq!(country(&db, "8.8.8.8"), "US");
        // Deutsche Telekom's resolver and Japan's NTT.
        assert_eq!(country(&db, "194.25.0.60"), "DE");
        assert_eq!(country(&db, "129.250.35.250"), "US");
        // IPv6: Google Public DNS and Deutsche Telekom.
        assert_eq!(country(&db, "2001:4860:4860::8888"), "US");
        assert_eq!(country(&db, "2003::1"), "DE");
        // IPv4-mapped IPv6 is looked up as IPv4.
        assert_eq!(country(&db, "::ffff:8.8.8.8"), "US");
    }

    #[test]
    fn private_and_reserved_addresses_are_unknown() {
        let db = db();
        for ip in [
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "127.0.0.1",
            "100.64.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "203.0.113.9",
        ] {
            assert_eq!(country(&db, ip), UNKNOWN_COUNTRY, "{ip}");
        }
    }

    #[test]
    fn public_check_covers_both_families() {
        assert!(is_public("1.1.1.1".parse().unwrap()));
        assert!(is_public("2606:4700:4700::1111".parse().unwrap()));
        assert!(!is_public("100.127.255.255".parse().unwrap()));
        assert!(is_public("100.128.0.1".parse().unwrap()));
        assert!(!is_public("2001:db8::1".parse().unwrap()));
    }
}
