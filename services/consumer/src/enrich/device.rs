//! Device type and browser name from the User-Agent (woothee), with the tablet and bot
//! distinctions woothee does not make itself.

use std::fmt;

/// Stored in `clicks.device_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceType {
    Mobile,
    Tablet,
    Desktop,
    Bot,
    Unknown,
}

impl DeviceType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mobile => "mobile",
            Self::Tablet => "tablet",
            Self::Desktop => "desktop",
            Self::Bot => "bot",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for DeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub device_type: DeviceType,
    /// Browser (or crawler, or HTTP library) name; "unknown" when not recognised.
    pub browser: String,
}

const UNKNOWN: &str = "unknown";
/// woothee's name for command-line clients and HTTP libraries.
const HTTP_LIBRARY: &str = "HTTP Library";
/// Substrings that mark automated clients woothee does not list.
const BOT_MARKERS: [&str; 4] = ["bot", "spider", "crawl", "slurp"];

pub fn classify(parser: &woothee::parser::Parser, user_agent: Option<&str>) -> DeviceInfo {
    let Some(ua) = user_agent.map(str::trim).filter(|s| !s.is_empty()) else {
        return DeviceInfo {
            device_type: DeviceType::Unknown,
            browser: UNKNOWN.into(),
        };
    };
    let parsed = parser.parse(ua);
    let (category, os, name, version) = parsed
        .as_ref()
        .map(|r| (r.category, r.os, r.name, r.version))
        .unwrap_or((woothee::woothee::VALUE_UNKNOWN, "", "", ""));

    let device_type = match category {
        // Command-line HTTP clients (curl, wget, language libraries) are filed under
        // "misc"; for click analytics they are automated traffic like crawlers.
        _ if name == HTTP_LIBRARY => DeviceType::Bot,
        "crawler" => DeviceType::Bot,
        "pc" => DeviceType::Desktop,
        // woothee files iPads and Android tablets under smartphone: an iPad says so in its
        // OS, an Android tablet by leaving "Mobile" out of its UA (Google's convention).
        "smartphone" | "mobilephone" => {
            if os == "iPad" || (os == "Android" && !ua.contains("Mobile")) {
                DeviceType::Tablet
            } else {
                DeviceType::Mobile
            }
        }
        _ if looks_automated(ua) => DeviceType::Bot,
        _ => DeviceType::Unknown,
    };
    let browser = match name {
        "" | woothee::woothee::VALUE_UNKNOWN => UNKNOWN.to_string(),
        // For command-line clients woothee keeps the tool ("curl", "wget") in the version.
        HTTP_LIBRARY if !version.is_empty() && version != woothee::woothee::VALUE_UNKNOWN => {
            version.to_string()
        }
        n => n.to_string(),
    };
    DeviceInfo {
        device_type,
        browser,
    }
}

fn looks_automated(ua: &str) -> bool {
    let lower = ua.to_ascii_lowercase();
    BOT_MARKERS.iter().any(|m| lower.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ua: &str) -> (DeviceType, String) {
        let info = classify(&woothee::parser::Parser::new(), Some(ua));
        (info.device_type, info.browser)
    }

    #[test]
    fn phones_and_tablets() {
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
        assert_eq!(check(iphone), (DeviceType::Mobile, "Safari".into()));
        let android = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.122 Mobile Safari/537.36";
        assert_eq!(check(android), (DeviceType::Mobile, "Chrome".into()));
        let ipad = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1";
        assert_eq!(check(ipad), (DeviceType::Tablet, "Safari".into()));
        let android_tablet = "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
        assert_eq!(check(android_tablet), (DeviceType::Tablet, "Chrome".into()));
    }

    #[test]
    fn desktops() {
        let firefox =
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(check(firefox), (DeviceType::Desktop, "Firefox".into()));
        let chrome = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
        assert_eq!(check(chrome), (DeviceType::Desktop, "Chrome".into()));
        let edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.87";
        assert_eq!(check(edge), (DeviceType::Desktop, "Edge".into()));
    }

    #[test]
    fn crawlers_and_tools_are_bots() {
        let googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        assert_eq!(check(googlebot), (DeviceType::Bot, "Googlebot".into()));
        assert_eq!(check("curl/8.5.0"), (DeviceType::Bot, "curl".into()));
        let unlisted = "Mozilla/5.0 (compatible; ExampleCrawler/1.0; +https://example.com/crawler)";
        assert_eq!(check(unlisted).0, DeviceType::Bot);
    }

    #[test]
    fn missing_or_unrecognised_user_agents_are_unknown() {
        let p = woothee::parser::Parser::new();
        let none = classify(&p, None);
        assert_eq!(
            (none.device_type, none.browser.as_str()),
            (DeviceType::Unknown, "unknown")
        );
        let blank = classify(&p, Some("   "));
        assert_eq!(blank.device_type, DeviceType::Unknown);
        assert_eq!(
            check("something-odd/1.0"),
            (DeviceType::Unknown, "unknown".into())
        );
    }
}
