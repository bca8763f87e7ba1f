//! Enrichment of a click: country from the IP, device type, browser, OS and the bot flag
//! from the User-Agent, traffic source from the referer. Pure functions over the event; the only
//! state is the GeoIP database and the User-Agent parser, both read-only.

pub mod device;
pub mod privacy;
pub mod source;

use std::net::IpAddr;
use std::path::Path;

use shortener_common::event::Click;

pub use device::{DeviceInfo, DeviceType};
/// Shared with url-api, whose redirect rules match on the visitor's country.
pub use shortener_common::geo as country;
pub use shortener_common::geo::{CountryDb, GeoIpError, UNKNOWN_COUNTRY};

/// What the consumer adds to a click before storing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrichment {
    pub country_code: String,
    pub device_type: DeviceType,
    pub browser: String,
    pub os: String,
    pub is_bot: bool,
    pub traffic_source: String,
    /// The client address as stored (anonymized unless configured otherwise); the click
    /// keeps the full one for the enrichment and the visitor hash.
    pub stored_ip: Option<IpAddr>,
}

/// Everything needed to enrich clicks; cheap to share behind an `Arc`.
pub struct Enricher {
    countries: Option<CountryDb>,
    ua: woothee::parser::Parser,
    /// Store client addresses whole instead of anonymized (ANONYMIZE_IPS=false).
    keep_full_ips: bool,
}

impl Enricher {
    /// `geoip_db`: path of a MaxMind-format country database; `None` makes every country
    /// "Unknown".
    pub fn new(geoip_db: Option<&Path>) -> Result<Self, GeoIpError> {
        Ok(Self {
            countries: geoip_db.map(CountryDb::open).transpose()?,
            ua: woothee::parser::Parser::new(),
            keep_full_ips: false,
        })
    }

    /// Stores client addresses whole (the default anonymizes them, [`privacy::anonymize`]).
    pub fn keeping_full_ips(mut self, keep: bool) -> Self {
        self.keep_full_ips = keep;
        self
    }

    /// The address to store for `ip`.
    pub fn stored_ip(&self, ip: IpAddr) -> IpAddr {
        if self.keep_full_ips {
            ip
        } else {
            privacy::anonymize(ip)
        }
    }

    pub fn has_geoip(&self) -> bool {
        self.countries.is_some()
    }

    pub fn enrich(&self, click: &Click) -> Enrichment {
        let country_code = match (&self.countries, click.ip) {
            (Some(db), Some(ip)) => db.country(ip),
            _ => UNKNOWN_COUNTRY.to_string(),
        };
        let device = device::classify(&self.ua, click.user_agent.as_deref());
        Enrichment {
            country_code,
            device_type: device.device_type,
            browser: device.browser,
            os: device.os,
            is_bot: device.is_bot,
            traffic_source: source::traffic_source(click.referer.as_deref()),
            stored_ip: click.ip.map(|ip| self.stored_ip(ip)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_database_everything_but_the_country_is_still_enriched() {
        let enricher = Enricher::new(None).unwrap();
        assert!(!enricher.has_geoip());
        let click = Click::now(
            "abc",
            Some("8.8.8.8".parse().unwrap()),
            Some(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
                    .into(),
            ),
            Some("https://www.google.com/search?q=x".into()),
        );
        assert_eq!(
            enricher.enrich(&click),
            Enrichment {
                country_code: "Unknown".into(),
                device_type: DeviceType::Desktop,
                browser: "Firefox".into(),
                os: "Windows 10".into(),
                is_bot: false,
                traffic_source: "google".into(),
                stored_ip: Some("8.8.8.0".parse().unwrap()),
            }
        );
    }

    #[test]
    fn addresses_are_anonymized_unless_kept() {
        let ip = "203.0.113.77".parse().unwrap();
        let default = Enricher::new(None).unwrap();
        assert_eq!(default.stored_ip(ip).to_string(), "203.0.113.0");
        let keeping = Enricher::new(None).unwrap().keeping_full_ips(true);
        assert_eq!(keeping.stored_ip(ip), ip);
    }

    #[test]
    fn a_missing_database_file_is_an_error_not_a_silent_unknown() {
        let err = Enricher::new(Some(Path::new("/nonexistent/geo.mmdb")))
            .err()
            .expect("opening a missing file fails");
        assert!(err.to_string().contains("/nonexistent/geo.mmdb"), "{err}");
    }
}
