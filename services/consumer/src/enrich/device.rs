//! Device type, browser and operating system from the User-Agent (woothee), with the
//! tablet distinction woothee does not make itself; bots are recognised by
//! `shortener_common::bots` and by woothee's crawler list.

use std::fmt;

use shortener_common::bots;

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
    /// Operating system ("Windows 10", "Mac OSX", "iPhone", "Android", ...); "unknown"
    /// when not recognised.
    pub os: String,
    /// A bot, a link-preview fetcher or a request without a User-Agent.
    pub is_bot: bool,
}

const UNKNOWN: &str = "unknown";
/// woothee's name for command-line clients and HTTP libraries.
const HTTP_LIBRARY: &str = "HTTP Library";

pub fn classify(parser: &woothee::parser::Parser, user_agent: Option<&str>) -> DeviceInfo {
    let bot = bots::classify(user_agent);
    let Some(ua) = user_agent.map(str::trim).filter(|s| !s.is_empty()) else {
        return DeviceInfo {
            device_type: DeviceType::Unknown,
            browser: UNKNOWN.into(),
            os: UNKNOWN.into(),
            is_bot: true,
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
        _ if bot.is_some() => DeviceType::Bot,
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
    // A bot the list names (preview fetchers woothee files as "misc crawler") is shown by
    // that name.
    let browser = match bot {
        Some(b) if b.name != bots::UNIDENTIFIED && b.name != bots::NO_USER_AGENT => {
            b.name.to_string()
        }
        _ => browser,
    };
    let os = match os {
        "" | woothee::woothee::VALUE_UNKNOWN => UNKNOWN.to_string(),
        o => o.to_string(),
    };
    let is_bot = bot.is_some() || device_type == DeviceType::Bot;
    // Browsers that embed a preview fetcher's name stay their device; the flag says bot.
    let device_type = if is_bot { DeviceType::Bot } else { device_type };
    DeviceInfo {
        device_type,
        browser,
        os,
        is_bot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(ua: &str) -> String {
        classify(&woothee::parser::Parser::new(), Some(ua)).os
    }

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
    fn operating_systems() {
        assert_eq!(
            os("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"),
            "Windows 10"
        );
        assert_eq!(os("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.122 Mobile Safari/537.36"), "Android");
        assert_eq!(os("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"), "iPhone");
        assert_eq!(os("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"), "Mac OSX");
        assert_eq!(os("something-odd/1.0"), "unknown");
    }

    #[test]
    fn link_previews_are_bots_named_by_the_bot_list() {
        let p = woothee::parser::Parser::new();
        let slack = classify(
            &p,
            Some("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"),
        );
        assert!(slack.is_bot);
        assert_eq!(slack.device_type, DeviceType::Bot);
        assert_eq!(slack.browser, "Slack");
        let whatsapp = classify(&p, Some("WhatsApp/2.23.20.0 A"));
        assert!(whatsapp.is_bot);
        assert_eq!(whatsapp.browser, "WhatsApp");
        let person = classify(
            &p,
            Some(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
            ),
        );
        assert!(!person.is_bot);
    }

    #[test]
    fn missing_or_unrecognised_user_agents_are_unknown() {
        let p = woothee::parser::Parser::new();
        let none = classify(&p, None);
        assert_eq!(
            (none.device_type, none.browser.as_str()),
            (DeviceType::Unknown, "unknown")
        );
        // No User-Agent at all: no device to name, but counted as a bot.
        assert!(none.is_bot);
        let blank = classify(&p, Some("   "));
        assert_eq!(blank.device_type, DeviceType::Unknown);
        assert_eq!(
            check("something-odd/1.0"),
            (DeviceType::Unknown, "unknown".into())
        );
    }
}
