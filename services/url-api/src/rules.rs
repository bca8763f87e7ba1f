//! Redirect rules (Shlink's dynamic rules, Dub's device and geo targeting): an ordered list
//! per link, each sending visitors that match all of its conditions (device type, country,
//! browser language) to its own target. The first matching rule wins; no match means the
//! link's own target. Links without rules never reach this module on a redirect.

use std::net::IpAddr;

use axum::http::{header, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::validate::UrlPolicy;

pub const MAX_RULES: usize = 10;
pub const MAX_COUNTRIES: usize = 50;
pub const MAX_LANGUAGES: usize = 20;

/// A rule as given and returned by the API, and stored (JSON) with the link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedirectRule {
    /// Target for visitors matching every condition given (checked as `long_url`).
    pub long_url: String,
    /// `ios`, `android` or `desktop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// ISO 3166-1 alpha-2 codes; matches a visitor located in any of them (GeoIP).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Language tags (`de`, `pt-BR`); matches when the browser's Accept-Language names one
    /// of them or a more specific tag (`de` matches `de-CH`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub languages: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Ios,
    Android,
    Desktop,
}

impl Device {
    fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "ios" => Some(Self::Ios),
            "android" => Some(Self::Android),
            "desktop" => Some(Self::Desktop),
            _ => None,
        }
    }

    /// The device of a User-Agent: iOS and Android by their names, desktop for any other
    /// browser that does not call itself mobile; None for other phones and no UA. The three
    /// Apple names are looked for only in a text holding their common `iP`: other browsers
    /// pay three searches, not five (`contains`, which has a vectorised path that
    /// `match_indices` and a byte loop do not).
    pub fn of(user_agent: &str) -> Option<Self> {
        let apple = user_agent.contains("iP")
            && ["iPhone", "iPad", "iPod"]
                .iter()
                .any(|n| user_agent.contains(n));
        if apple {
            Some(Self::Ios)
        } else if user_agent.contains("Android") {
            Some(Self::Android)
        } else if user_agent.contains("Mobi") || user_agent.is_empty() {
            None
        } else {
            Some(Self::Desktop)
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RuleError {
    #[error("at most {MAX_RULES} redirect rules")]
    TooMany,
    #[error("rule {0}: {1}")]
    Target(usize, String),
    #[error("rule {0} has no condition: give device, countries or languages")]
    NoCondition(usize),
    #[error("rule {0}: device must be ios, android or desktop")]
    Device(usize),
    #[error("rule {0}: countries must be 1 to {MAX_COUNTRIES} ISO 3166-1 alpha-2 codes")]
    Countries(usize),
    #[error("rule {0}: languages must be 1 to {MAX_LANGUAGES} language tags such as de or pt-BR")]
    Languages(usize),
}

/// Checks `rules` and returns them normalized (targets as URLs are stored, countries upper
/// case, languages lower case). Positions in errors are 1-based.
pub fn check(rules: Vec<RedirectRule>, policy: &UrlPolicy) -> Result<Vec<RedirectRule>, RuleError> {
    if rules.len() > MAX_RULES {
        return Err(RuleError::TooMany);
    }
    rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let n = i + 1;
            let long_url = policy
                .check(&r.long_url)
                .map_err(|e| RuleError::Target(n, e.to_string()))?
                .into();
            if r.device.is_none() && r.countries.is_empty() && r.languages.is_empty() {
                return Err(RuleError::NoCondition(n));
            }
            let device = match r.device {
                Some(d) => {
                    Device::parse(&d).ok_or(RuleError::Device(n))?;
                    Some(d.to_ascii_lowercase())
                }
                None => None,
            };
            if r.countries.len() > MAX_COUNTRIES
                || r.countries
                    .iter()
                    .any(|c| c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()))
            {
                return Err(RuleError::Countries(n));
            }
            if r.languages.len() > MAX_LANGUAGES || !r.languages.iter().all(|l| is_language_tag(l))
            {
                return Err(RuleError::Languages(n));
            }
            Ok(RedirectRule {
                long_url,
                device,
                countries: r.countries.iter().map(|c| c.to_ascii_uppercase()).collect(),
                languages: r.languages.iter().map(|l| l.to_ascii_lowercase()).collect(),
            })
        })
        .collect()
}

/// `en`, `pt-BR`, `zh-Hant-TW`: a 2-3 letter language and up to three alphanumeric subtags.
fn is_language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let primary = parts.next().unwrap_or_default();
    (2..=3).contains(&primary.len())
        && primary.bytes().all(|b| b.is_ascii_alphabetic())
        && parts.clone().count() <= 3
        && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A stored rule ready for redirects: parsed conditions and a prebuilt `Location`.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledRule {
    device: Option<Device>,
    countries: Box<[[u8; 2]]>,
    languages: Box<[Box<str>]>,
    pub location: HeaderValue,
}

/// Compiles rules read back from the database (checked when written).
pub fn compile(rules: &[RedirectRule]) -> Option<Box<[CompiledRule]>> {
    rules
        .iter()
        .map(|r| {
            Some(CompiledRule {
                device: match &r.device {
                    Some(d) => Some(Device::parse(d)?),
                    None => None,
                },
                countries: r
                    .countries
                    .iter()
                    .map(|c| <[u8; 2]>::try_from(c.as_bytes()).ok())
                    .collect::<Option<_>>()?,
                languages: r.languages.iter().map(|l| l.as_str().into()).collect(),
                location: HeaderValue::from_str(&r.long_url).ok()?,
            })
        })
        .collect()
}

/// What the rules look at in a request. The country is looked up only when a rule asks.
pub struct Visitor<'a, F: FnOnce(IpAddr) -> Option<[u8; 2]>> {
    pub headers: &'a HeaderMap,
    pub ip: Option<IpAddr>,
    pub country_of: F,
}

/// The first rule `visitor` matches, as (0-based position, rule).
pub fn pick<'r, F>(
    rules: &'r [CompiledRule],
    visitor: Visitor<'_, F>,
) -> Option<(usize, &'r CompiledRule)>
where
    F: FnOnce(IpAddr) -> Option<[u8; 2]>,
{
    let text = |name| {
        visitor
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let device = text(header::USER_AGENT).and_then(Device::of);
    // Parsed once, when the first rule naming languages is reached.
    let accept_language = text(header::ACCEPT_LANGUAGE);
    let mut accepted: Option<Accepted> = None;
    let mut country_of = Some(visitor.country_of);
    let mut country: Option<Option<[u8; 2]>> = None;
    let ip = visitor.ip;
    rules.iter().enumerate().find(|(_, r)| {
        if r.device.is_some() && r.device != device {
            return false;
        }
        if !r.languages.is_empty() {
            let Some(header) = accept_language else {
                return false;
            };
            if !accepted
                .get_or_insert_with(|| Accepted::parse(header))
                .any_of(&r.languages)
            {
                return false;
            }
        }
        if !r.countries.is_empty() {
            let c = *country.get_or_insert_with(|| {
                let lookup = country_of.take()?;
                ip.and_then(lookup)
            });
            if !c.is_some_and(|c| r.countries.iter().any(|rc| rc.eq_ignore_ascii_case(&c))) {
                return false;
            }
        }
        true
    })
}

/// Most Accept-Language entries kept from one parse; a longer header's remainder is
/// scanned per rule instead ([`accepts_any`]).
const MAX_ACCEPTED: usize = 16;

/// The language tags an Accept-Language header accepts (q > 0), read once per request
/// whatever the number of rules naming languages, and kept on the stack.
struct Accepted<'h> {
    tags: [&'h str; MAX_ACCEPTED],
    len: usize,
    /// What follows the first MAX_ACCEPTED entries, unparsed.
    rest: &'h str,
}

impl<'h> Accepted<'h> {
    fn parse(header: &'h str) -> Self {
        let mut accepted = Self {
            tags: [""; MAX_ACCEPTED],
            len: 0,
            rest: "",
        };
        let mut rest = header;
        for _ in 0..MAX_ACCEPTED {
            let (item, after) = split_at_byte(rest, b',');
            if let Some(tag) = accepted_tag(item) {
                accepted.tags[accepted.len] = tag;
                accepted.len += 1;
            }
            rest = after;
            if rest.is_empty() {
                break;
            }
        }
        accepted.rest = rest;
        accepted
    }

    /// True when an accepted tag is one of `languages` or a more specific tag of one.
    fn any_of(&self, languages: &[Box<str>]) -> bool {
        self.tags[..self.len]
            .iter()
            .any(|tag| names_any(tag, languages))
            || (!self.rest.is_empty() && accepts_any(self.rest, languages))
    }
}

/// `text` before and after the first `sep`, or all of it and nothing. A plain loop: the
/// items of a header are a few bytes long, shorter than a general search's setup.
fn split_at_byte(text: &str, sep: u8) -> (&str, &str) {
    match text.bytes().position(|b| b == sep) {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, ""),
    }
}

/// The tag of one Accept-Language entry (`de-CH;q=0.8`), None when its q is 0. Header text
/// is visible ASCII (`HeaderValue::to_str`), so trimming ASCII whitespace is trimming all.
fn accepted_tag(item: &str) -> Option<&str> {
    let (tag, mut params) = split_at_byte(item, b';');
    while !params.is_empty() {
        let (param, rest) = split_at_byte(params, b';');
        if param.trim_ascii().strip_prefix("q=").is_some_and(is_zero_q) {
            return None;
        }
        params = rest;
    }
    Some(tag.trim_ascii())
}

/// True when a q value reads as a number ≤ 0. The usual forms (`0.8`, `0`, `1.000`) are
/// read digit by digit; anything else as a float, as before.
fn is_zero_q(q: &str) -> bool {
    let q = q.trim_ascii();
    let (int, frac) = q.split_once('.').unwrap_or((q, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !q.is_empty() && q != "." && digits(int) && digits(frac) {
        return q.bytes().all(|b| b == b'0' || b == b'.');
    }
    q.parse::<f32>().is_ok_and(|q| q <= 0.0)
}

/// True when `tag` is one of `languages` or a more specific tag of one (`de` names `de-CH`).
fn names_any(tag: &str, languages: &[Box<str>]) -> bool {
    languages.iter().any(|l| {
        tag.len() >= l.len()
            && tag[..l.len()].eq_ignore_ascii_case(l)
            && (tag.len() == l.len() || tag.as_bytes()[l.len()] == b'-')
    })
}

/// True when the Accept-Language header names (with q > 0) one of `languages` or a more
/// specific tag of one.
fn accepts_any(header: &str, languages: &[Box<str>]) -> bool {
    header
        .split(',')
        .filter_map(accepted_tag)
        .any(|tag| names_any(tag, languages))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: UrlPolicy = UrlPolicy {
        max_len: 2048,
        allow_private: false,
        own_host: None,
    };

    fn rule(
        url: &str,
        device: Option<&str>,
        countries: &[&str],
        languages: &[&str],
    ) -> RedirectRule {
        RedirectRule {
            long_url: url.into(),
            device: device.map(str::to_string),
            countries: countries.iter().map(|s| s.to_string()).collect(),
            languages: languages.iter().map(|s| s.to_string()).collect(),
        }
    }

    const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
    const PIXEL: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36";
    const MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15";

    #[test]
    fn devices_of_user_agents() {
        assert_eq!(Device::of(IPHONE), Some(Device::Ios));
        assert_eq!(Device::of(PIXEL), Some(Device::Android));
        assert_eq!(Device::of(MAC), Some(Device::Desktop));
        assert_eq!(
            Device::of("Opera/9.80 (J2ME/MIDP; Opera Mini) Mobile"),
            None
        );
        assert_eq!(Device::of(""), None);
        // iOS wins over the other names wherever they stand; Android over "Mobile".
        assert_eq!(Device::of("Android Mobi iPad"), Some(Device::Ios));
        assert_eq!(Device::of("Mobile Android"), Some(Device::Android));
        for (ua, device) in [
            ("iPod", Some(Device::Ios)),
            ("xiPhon", Some(Device::Desktop)),
            ("Androi", Some(Device::Desktop)),
            ("Mob", Some(Device::Desktop)),
            ("Mobi", None),
            ("iphone android mobi", Some(Device::Desktop)),
        ] {
            assert_eq!(Device::of(ua), device, "{ua}");
        }
    }

    #[test]
    fn rules_are_checked_and_normalized() {
        let ok = check(
            vec![rule("https://E.com/de", Some("IOS"), &["de"], &["pt-BR"])],
            &POLICY,
        )
        .unwrap();
        assert_eq!(
            ok,
            vec![rule("https://e.com/de", Some("ios"), &["DE"], &["pt-br"])]
        );
        let err = |r: RedirectRule| check(vec![r], &POLICY).unwrap_err();
        assert!(matches!(
            err(rule("javascript:x", Some("ios"), &[], &[])),
            RuleError::Target(1, _)
        ));
        assert_eq!(
            err(rule("https://e.com", None, &[], &[])),
            RuleError::NoCondition(1)
        );
        assert_eq!(
            err(rule("https://e.com", Some("tv"), &[], &[])),
            RuleError::Device(1)
        );
        assert_eq!(
            err(rule("https://e.com", None, &["DEU"], &[])),
            RuleError::Countries(1)
        );
        assert_eq!(
            err(rule("https://e.com", None, &["1A"], &[])),
            RuleError::Countries(1)
        );
        assert_eq!(
            err(rule("https://e.com", None, &[], &["x"])),
            RuleError::Languages(1)
        );
        assert_eq!(
            err(rule("https://e.com", None, &[], &["de_DE"])),
            RuleError::Languages(1)
        );
        let many = vec![rule("https://e.com", Some("ios"), &[], &[]); MAX_RULES + 1];
        assert_eq!(check(many, &POLICY), Err(RuleError::TooMany));
    }

    fn headers(ua: &str, lang: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::USER_AGENT, HeaderValue::from_str(ua).unwrap());
        if !lang.is_empty() {
            h.insert(
                header::ACCEPT_LANGUAGE,
                HeaderValue::from_str(lang).unwrap(),
            );
        }
        h
    }

    #[test]
    fn first_matching_rule_wins() {
        let rules = compile(&[
            rule("https://e.com/de-ios", Some("ios"), &["DE"], &[]),
            rule("https://e.com/ios", Some("ios"), &[], &[]),
            rule("https://e.com/german", None, &[], &["de"]),
            rule("https://e.com/desktop", Some("desktop"), &[], &[]),
        ])
        .unwrap();
        let ip: Option<IpAddr> = Some("194.25.0.60".parse().unwrap());
        let pick_for = |ua: &str, lang: &str, country: Option<[u8; 2]>| {
            let h = headers(ua, lang);
            pick(
                &rules,
                Visitor {
                    headers: &h,
                    ip,
                    country_of: |_| country,
                },
            )
            .map(|(i, r)| (i, r.location.to_str().unwrap().to_string()))
        };
        assert_eq!(pick_for(IPHONE, "", Some(*b"DE")).unwrap().0, 0);
        assert_eq!(pick_for(IPHONE, "de", Some(*b"US")).unwrap().0, 1);
        assert_eq!(pick_for(PIXEL, "en;q=0.8, de-CH", None).unwrap().0, 2);
        assert_eq!(pick_for(PIXEL, "de;q=0", None), None);
        assert_eq!(pick_for(PIXEL, "den", None), None);
        assert_eq!(pick_for(MAC, "fr", None).unwrap().0, 3);
    }

    #[test]
    fn q_values_read_as_floats_do() {
        for q in [
            "0", "0.", "0.0", "0.000", ".0", "00", "0.001", "0.8", "1", "1.000", "", ".", "0..0",
            "-0", "-1", "0e1", "nan", "inf", " 0 ", "0.0.0", "1e-50", "x",
        ] {
            let as_float = q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0);
            assert_eq!(is_zero_q(q), as_float, "{q:?}");
        }
    }

    /// The straightforward reading of Accept-Language the parser must agree with: split,
    /// trim, q parsed as a float.
    fn reference(header: &str, languages: &[Box<str>]) -> bool {
        header.split(',').any(|item| {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            !refused && names_any(tag, languages)
        })
    }

    #[test]
    fn accept_language_parsed_once_matches_a_scan_per_rule() {
        let languages: Vec<Box<str>> = vec!["de".into(), "pt-br".into()];
        let many = (0..40)
            .map(|i| format!("x{i}"))
            .chain(["de-CH;q=0.5".into()])
            .collect::<Vec<_>>()
            .join(",");
        for header in [
            "fr-FR,fr;q=0.9,en;q=0.5",
            "de",
            "de;q=0",
            "de;;q=0",
            "de; q=0 ;x=1",
            "de;",
            " de-CH ; q = 0.5",
            "de;q=0.000, pt-BR",
            "DE-at",
            "den",
            "",
            ",,de,",
            "pt",
            &many,
            &many.replace("q=0.5", "q=0"),
        ] {
            let parsed = Accepted::parse(header);
            let expected = reference(header, &languages);
            assert_eq!(parsed.any_of(&languages), expected, "{header}");
            assert_eq!(accepts_any(header, &languages), expected, "{header}");
        }
        assert!(Accepted::parse(&many).any_of(&languages));
        assert!(!Accepted::parse("de;q=0, de-CH;q=0.0").any_of(&languages));
    }

    #[test]
    fn the_country_is_looked_up_only_when_a_rule_needs_it() {
        let rules = compile(&[rule("https://e.com/ios", Some("ios"), &[], &[])]).unwrap();
        let h = headers(IPHONE, "");
        let picked = pick(
            &rules,
            Visitor {
                headers: &h,
                ip: None,
                country_of: |_| -> Option<[u8; 2]> { panic!("no rule asks for the country") },
            },
        );
        assert_eq!(picked.unwrap().0, 0);
    }
}
