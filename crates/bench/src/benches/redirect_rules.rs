//! The redirect benchmark's second case: links with redirect rules evaluated on every
//! request and query forwarding on, requested with a query string. Each link has three
//! rules (device, language, country, in that order); for most links none matches the
//! bench's requests, so all three are evaluated (the country one through a GeoIP lookup)
//! before the link's own target is served; for every [`MATCH_EVERY`]th link the country
//! rule matches and its target is served. Either way the query is appended.

use std::sync::Arc;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use serde_json::json;

use crate::loadgen::RequestFactory;
use crate::stack::{UrlApi, API_KEY};

/// The query string every request carries, forwarded to the target.
pub const QUERY: &str = "utm_source=bench&x=1";

/// The client address url-api sees through `X-Forwarded-For` (it trusts the loopback
/// proxy): a public address GeoIP places in the US, so the country lookup walks the real
/// database rather than a reserved range.
pub const CLIENT_IP: &str = "8.8.8.8";

/// A desktop browser with a French Accept-Language: misses the `ios` and `de` rules.
pub const HEADERS: [(&str, &str); 3] = [
    (
        "User-Agent",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    ),
    ("Accept-Language", "fr-FR,fr;q=0.9,en;q=0.5"),
    ("X-Forwarded-For", CLIENT_IP),
];

/// One link in four has a country rule that matches [`CLIENT_IP`].
pub const MATCH_EVERY: usize = 4;

/// A link of this case: its code, its own target, and the target the bench's requests
/// must be sent to (before the forwarded query).
#[derive(Debug, Clone)]
pub struct RuledLink {
    pub code: String,
    pub long_url: String,
    pub expected: String,
}

fn long_url(i: usize) -> String {
    format!("https://example.com/ruled/{i}?ref=bench")
}

/// Three rules for link `i`: the first two never match the bench's requests; the third
/// matches for every [`MATCH_EVERY`]th link.
fn rules(i: usize) -> (serde_json::Value, Option<String>) {
    let country_target = format!("https://example.com/ruled/{i}/country");
    let matches = i.is_multiple_of(MATCH_EVERY);
    let countries = if matches {
        json!(["US", "CA"])
    } else {
        json!(["DE", "AT", "CH"])
    };
    let rules = json!([
        { "long_url": format!("https://example.com/ruled/{i}/ios"), "device": "ios" },
        { "long_url": format!("https://example.com/ruled/{i}/de"), "languages": ["de"] },
        { "long_url": country_target, "countries": countries },
    ]);
    (rules, matches.then_some(country_target))
}

/// Creates `n` ruled links through the API (forwarding on).
pub async fn create(api: &UrlApi, n: usize) -> anyhow::Result<Vec<RuledLink>> {
    let mut links = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(32) {
        let created = futures::future::try_join_all(chunk.iter().map(|&i| async move {
            let (rules, matched) = rules(i);
            let long_url = long_url(i);
            let resp = api
                .client()
                .post(api.url("/api/v1/links"))
                .bearer_auth(API_KEY)
                .json(&json!({
                    "long_url": long_url,
                    "forward_query": true,
                    "redirect_rules": rules,
                }))
                .send()
                .await?;
            let status = resp.status();
            anyhow::ensure!(
                status == reqwest::StatusCode::CREATED,
                "create ruled link: {status} {}",
                resp.text().await.unwrap_or_default()
            );
            let body: serde_json::Value = resp.json().await?;
            let code = body["code"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("create ruled link: no code in {body}"))?
                .to_string();
            Ok(RuledLink {
                code,
                expected: matched.unwrap_or_else(|| long_url.clone()),
                long_url,
            })
        }))
        .await?;
        links.extend(created);
    }
    Ok(links)
}

/// The `Location` a bench request for `link` must get: its expected target with the
/// query appended.
pub fn location(link: &RuledLink) -> String {
    let sep = if link.expected.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{}{sep}{QUERY}", link.expected)
}

/// Requests every link once as the load generators will (warming the cache) and checks
/// that each answer went through the rules and forwarding: a 302 whose `Location` is the
/// matching rule's target or the link's own, with the query appended. Returns how many
/// were sent to a rule's target.
pub async fn verify(api: &UrlApi, links: &[RuledLink]) -> anyhow::Result<usize> {
    let mut matched = 0;
    for link in links {
        let mut req = api
            .client()
            .get(api.url(&format!("/{}?{QUERY}", link.code)));
        for (name, value) in HEADERS {
            req = req.header(name, value);
        }
        let resp = req.send().await?;
        anyhow::ensure!(
            resp.status() == reqwest::StatusCode::FOUND,
            "GET /{}?{QUERY}: {}",
            link.code,
            resp.status()
        );
        let got = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let want = location(link);
        anyhow::ensure!(
            got == want,
            "GET /{}?{QUERY} went to {got:?}, not {want:?} (are GEOIP_DB_PATH and \
             TRUSTED_PROXIES set for url-api?)",
            link.code
        );
        if link.expected != link.long_url {
            matched += 1;
        }
    }
    Ok(matched)
}

/// The request paths of this case, `code?query`, for the load generators.
pub fn paths(links: &[RuledLink]) -> Vec<String> {
    links
        .iter()
        .map(|l| format!("{}?{QUERY}", l.code))
        .collect()
}

/// The built-in load generator's requests: `GET /{code}?{QUERY}` with [`HEADERS`].
pub fn requests(paths: Arc<Vec<String>>) -> RequestFactory {
    Arc::new(move |n| {
        let mut req = Request::get(format!("/{}", paths[n as usize % paths.len()]))
            .header("host", "127.0.0.1");
        for (name, value) in HEADERS {
            req = req.header(name, value);
        }
        req.body(Full::new(Bytes::new())).expect("valid request")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fourth_link_matches_its_country_rule_and_the_query_is_appended() {
        let (r0, m0) = rules(0);
        let (r1, m1) = rules(1);
        assert_eq!(r0.as_array().map(Vec::len), Some(3));
        assert_eq!(m0.as_deref(), Some("https://example.com/ruled/0/country"));
        assert_eq!(r0[2]["countries"], json!(["US", "CA"]));
        assert_eq!(m1, None);
        assert_eq!(r1[2]["countries"], json!(["DE", "AT", "CH"]));
        let plain = RuledLink {
            code: "c".into(),
            long_url: long_url(1),
            expected: long_url(1),
        };
        assert_eq!(
            location(&plain),
            "https://example.com/ruled/1?ref=bench&utm_source=bench&x=1"
        );
        let ruled = RuledLink {
            expected: m0.unwrap(),
            ..plain
        };
        assert_eq!(
            location(&ruled),
            "https://example.com/ruled/0/country?utm_source=bench&x=1"
        );
    }
}
