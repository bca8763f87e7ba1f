//! Is a click's User-Agent a bot? Known crawlers, link-preview fetchers (the requests chat
//! apps and social networks make to unfurl a pasted link), monitoring services and HTTP
//! tools, then generic markers ("bot", "crawler", "spider", a `+http` info URL) for the
//! long tail, in the spirit of the `isbot` pattern list and Shlink's use of CrawlerDetect.
//!
//! A request without a User-Agent counts as a bot: every browser sends one, scripts often
//! do not. Analytics store bot clicks apart from human ones, and link limits (maximum
//! visits) count human clicks only, so both read this one classification.
//!
//! Pure: case-insensitive Aho-Corasick scans over the header, no regexes.

use std::sync::LazyLock;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// What sort of automated client a bot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BotKind {
    /// Search engines, SEO and AI crawlers, archivers.
    Crawler,
    /// Fetches a link to show its preview card (Slack, Discord, WhatsApp, ...).
    Preview,
    /// Uptime and performance monitors.
    Monitor,
    /// Command-line clients, HTTP libraries, headless browsers.
    Tool,
    /// Matched only by a generic marker, or no User-Agent at all.
    Other,
}

impl BotKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crawler => "crawler",
            Self::Preview => "preview",
            Self::Monitor => "monitor",
            Self::Tool => "tool",
            Self::Other => "other",
        }
    }
}

/// A recognised bot: a stable display name and its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bot {
    pub name: &'static str,
    pub kind: BotKind,
}

/// Name of the bot reported for a missing or blank User-Agent.
pub const NO_USER_AGENT: &str = "no user agent";
/// Name of the bot reported when only a generic marker matched.
pub const UNIDENTIFIED: &str = "unidentified bot";

use BotKind::{Crawler, Monitor, Other, Preview, Tool};

/// Case-insensitive substrings naming a client. The first entry of this list found in a
/// UA wins, wherever it appears: Mastodon fetches with `http.rb/5.1.1 (Mastodon/4.2.1; ...)`,
/// and Apple's previews name Facebook and Twitter. Needles are specific enough not to hit in-app browsers, whose UAs name the
/// app (`FBAN/FBIOS`, `LinkedInApp`, `[Pinterest/iOS]`, `Snapchat/12.x`) but are people.
const KNOWN: &[(&str, &str, BotKind)] = &[
    // Link previews. Apple's Messages app names three networks at once.
    (
        "facebookexternalhit/1.1 facebot twitterbot",
        "Apple Messages",
        Preview,
    ),
    // Telegram says it is "like TwitterBot".
    ("telegrambot", "Telegram", Preview),
    ("slackbot", "Slack", Preview),
    ("slack-imgproxy", "Slack", Preview),
    ("discordbot", "Discord", Preview),
    ("twitterbot", "Twitter", Preview),
    ("facebookexternalhit", "Facebook", Preview),
    ("facebot", "Facebook", Preview),
    ("facebookcatalog", "Facebook", Preview),
    ("meta-externalagent", "Facebook", Preview),
    ("linkedinbot", "LinkedIn", Preview),
    ("mastodon/", "Mastodon", Preview),
    ("pleroma", "Pleroma", Preview),
    ("misskey", "Misskey", Preview),
    ("whatsapp/", "WhatsApp", Preview),
    ("skypeuripreview", "Skype/Teams", Preview),
    ("microsoftpreview", "Microsoft", Preview),
    ("bingpreview", "Bing", Preview),
    ("pinterest/0.", "Pinterest", Preview),
    ("pinterestbot", "Pinterest", Preview),
    ("redditbot", "Reddit", Preview),
    ("vkshare", "VK", Preview),
    ("bluesky cardyb", "Bluesky", Preview),
    ("embedly", "Embedly", Preview),
    ("iframely", "Iframely", Preview),
    ("google-pagerenderer", "Google", Preview),
    ("googledocs", "Google", Preview),
    ("line-poker", "LINE", Preview),
    ("kakaotalk-scrap", "KakaoTalk", Preview),
    ("matrix-synapse", "Matrix", Preview),
    ("synapse (bot;", "Matrix", Preview),
    // Crawlers.
    ("googlebot", "Googlebot", Crawler),
    ("google-inspectiontool", "Googlebot", Crawler),
    ("googleother", "Googlebot", Crawler),
    ("adsbot-google", "Google Ads", Crawler),
    ("mediapartners-google", "Google Ads", Crawler),
    ("feedfetcher-google", "Google", Crawler),
    ("google-read-aloud", "Google", Crawler),
    ("storebot-google", "Google", Crawler),
    ("bingbot", "Bingbot", Crawler),
    ("msnbot", "Bingbot", Crawler),
    ("adidxbot", "Bingbot", Crawler),
    ("yandexbot", "Yandex", Crawler),
    ("yandex.com/bots", "Yandex", Crawler),
    ("baiduspider", "Baidu", Crawler),
    ("duckduckbot", "DuckDuckGo", Crawler),
    ("duckassistbot", "DuckDuckGo", Crawler),
    ("slurp", "Yahoo", Crawler),
    ("applebot", "Applebot", Crawler),
    ("petalbot", "PetalBot", Crawler),
    ("seznambot", "Seznam", Crawler),
    ("sogou web spider", "Sogou", Crawler),
    ("exabot", "Exabot", Crawler),
    ("qwantify", "Qwant", Crawler),
    ("ahrefsbot", "Ahrefs", Crawler),
    ("semrushbot", "Semrush", Crawler),
    ("mj12bot", "Majestic", Crawler),
    ("dotbot", "Moz", Crawler),
    ("rogerbot", "Moz", Crawler),
    ("gptbot", "OpenAI", Crawler),
    ("chatgpt-user", "OpenAI", Crawler),
    ("oai-searchbot", "OpenAI", Crawler),
    ("claudebot", "Anthropic", Crawler),
    ("claude-web", "Anthropic", Crawler),
    ("anthropic-ai", "Anthropic", Crawler),
    ("perplexitybot", "Perplexity", Crawler),
    ("ccbot", "Common Crawl", Crawler),
    ("bytespider", "ByteDance", Crawler),
    ("amazonbot", "Amazon", Crawler),
    ("ia_archiver", "Internet Archive", Crawler),
    ("archive.org_bot", "Internet Archive", Crawler),
    ("diffbot", "Diffbot", Crawler),
    // Monitors.
    ("uptimerobot", "UptimeRobot", Monitor),
    ("pingdom", "Pingdom", Monitor),
    ("statuscake", "StatusCake", Monitor),
    ("newrelicpinger", "New Relic", Monitor),
    ("site24x7", "Site24x7", Monitor),
    ("datadog", "Datadog", Monitor),
    ("better uptime", "Better Stack", Monitor),
    ("betterstack", "Better Stack", Monitor),
    ("chrome-lighthouse", "Lighthouse", Monitor),
    ("gtmetrix", "GTmetrix", Monitor),
    // Tools and libraries.
    ("curl/", "curl", Tool),
    ("wget/", "Wget", Tool),
    ("python-requests", "python-requests", Tool),
    ("python-urllib", "Python urllib", Tool),
    ("python-httpx", "HTTPX", Tool),
    ("aiohttp", "aiohttp", Tool),
    ("scrapy", "Scrapy", Tool),
    ("go-http-client", "Go http", Tool),
    ("okhttp", "OkHttp", Tool),
    ("apache-httpclient", "Apache HttpClient", Tool),
    ("java/", "Java", Tool),
    ("axios/", "axios", Tool),
    ("node-fetch", "node-fetch", Tool),
    ("undici", "undici", Tool),
    ("got (https://github.com/sindresorhus/got)", "got", Tool),
    ("libwww-perl", "libwww-perl", Tool),
    ("lwp::", "libwww-perl", Tool),
    ("guzzlehttp", "Guzzle", Tool),
    ("php/", "PHP", Tool),
    ("http.rb/", "http.rb", Tool),
    ("faraday", "Faraday", Tool),
    ("reqwest", "reqwest", Tool),
    ("postmanruntime", "Postman", Tool),
    ("insomnia", "Insomnia", Tool),
    ("httpie", "HTTPie", Tool),
    ("headlesschrome", "Headless Chrome", Tool),
    ("phantomjs", "PhantomJS", Tool),
    ("electron-fetch", "electron-fetch", Tool),
    ("powershell", "PowerShell", Tool),
    ("winhttp", "WinHTTP", Tool),
    ("libcurl", "curl", Tool),
];

/// Substrings that mark an automated client not listed above.
const GENERIC: &[&str] = &[
    "bot",
    "crawl",
    "spider",
    "scrape",
    "preview",
    "fetcher",
    "headless",
    "httpclient",
    "http-client",
    "http_client",
    "+http",
    "check_http",
];

/// Devices whose name contains a generic marker: Cubot phones (`CUBOT_X30`).
const NOT_BOTS: &[&str] = &["cubot"];

static KNOWN_AC: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .build(KNOWN.iter().map(|k| k.0))
        .expect("static needle list builds")
});
static GENERIC_AC: LazyLock<AhoCorasick> = LazyLock::new(|| build(GENERIC.iter().copied()));
static NOT_BOTS_AC: LazyLock<AhoCorasick> = LazyLock::new(|| build(NOT_BOTS.iter().copied()));

fn build<'a>(needles: impl IntoIterator<Item = &'a str>) -> AhoCorasick {
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(needles)
        .expect("static needle list builds")
}

/// The bot `user_agent` belongs to, or `None` for what looks like a person's browser.
pub fn classify(user_agent: Option<&str>) -> Option<Bot> {
    let Some(ua) = user_agent.map(str::trim).filter(|s| !s.is_empty()) else {
        return Some(Bot {
            name: NO_USER_AGENT,
            kind: Other,
        });
    };
    if let Some(first) = KNOWN_AC
        .find_overlapping_iter(ua)
        .map(|m| m.pattern().as_usize())
        .min()
    {
        let (_, name, kind) = KNOWN[first];
        return Some(Bot { name, kind });
    }
    // A generic marker counts unless it lies inside a known non-bot word.
    let excluded: Vec<(usize, usize)> = NOT_BOTS_AC
        .find_iter(ua)
        .map(|m| (m.start(), m.end()))
        .collect();
    let generic = GENERIC_AC.find_iter(ua).any(|m| {
        !excluded
            .iter()
            .any(|&(s, e)| s <= m.start() && m.end() <= e)
    });
    generic.then_some(Bot {
        name: UNIDENTIFIED,
        kind: Other,
    })
}

/// True for bots, previews, tools and requests without a User-Agent.
pub fn is_bot(user_agent: Option<&str>) -> bool {
    classify(user_agent).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bot(ua: &str) -> Option<(&'static str, BotKind)> {
        classify(Some(ua)).map(|b| (b.name, b.kind))
    }

    #[test]
    fn link_preview_fetchers() {
        let cases = [
            ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "Slack"),
            ("Slack-ImgProxy (+https://api.slack.com/robots)", "Slack"),
            ("Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)", "Discord"),
            ("Twitterbot/1.0", "Twitter"),
            ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "Facebook"),
            ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0", "Apple Messages"),
            ("LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient +http://www.linkedin.com)", "LinkedIn"),
            ("http.rb/5.1.1 (Mastodon/4.2.1; +https://mastodon.social/)", "Mastodon"),
            ("TelegramBot (like TwitterBot)", "Telegram"),
            ("WhatsApp/2.23.20.0 A", "WhatsApp"),
            ("Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 skype-url-preview@microsoft.com", "Skype/Teams"),
            ("Mozilla/5.0 (compatible; Bluesky Cardyb/1.1; +mailto:support@bsky.app)", "Bluesky"),
            ("Pinterest/0.2 (+https://www.pinterest.com/bot.html)", "Pinterest"),
            ("Mozilla/5.0 (compatible; redditbot/1.0; +http://www.reddit.com/feedback)", "Reddit"),
        ];
        for (ua, name) in cases {
            assert_eq!(bot(ua), Some((name, Preview)), "{ua}");
        }
    }

    #[test]
    fn search_and_ai_crawlers() {
        let cases = [
            ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot"),
            ("Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.126 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot"),
            ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "Bingbot"),
            ("Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", "Yandex"),
            ("Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)", "Yahoo"),
            ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)", "OpenAI"),
            ("Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)", "Anthropic"),
            ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", "Ahrefs"),
        ];
        for (ua, name) in cases {
            assert_eq!(bot(ua), Some((name, Crawler)), "{ua}");
        }
    }

    #[test]
    fn tools_and_monitors() {
        assert_eq!(bot("curl/8.5.0"), Some(("curl", Tool)));
        assert_eq!(bot("Wget/1.21.4"), Some(("Wget", Tool)));
        assert_eq!(
            bot("python-requests/2.31.0"),
            Some(("python-requests", Tool))
        );
        assert_eq!(bot("Go-http-client/1.1"), Some(("Go http", Tool)));
        assert_eq!(bot("okhttp/4.12.0"), Some(("OkHttp", Tool)));
        assert_eq!(bot("axios/1.6.8"), Some(("axios", Tool)));
        assert_eq!(bot("PostmanRuntime/7.36.3"), Some(("Postman", Tool)));
        assert_eq!(
            bot("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/126.0.0.0 Safari/537.36"),
            Some(("Headless Chrome", Tool))
        );
        assert_eq!(
            bot("Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)"),
            Some(("UptimeRobot", Monitor))
        );
    }

    #[test]
    fn unlisted_bots_caught_by_generic_markers() {
        for ua in [
            "Mozilla/5.0 (compatible; ExampleCrawler/1.0; +https://example.com/crawler)",
            "NewThingBot/0.1",
            "my-spider 3.0",
            "Mozilla/5.0 (compatible; Foo/1.0; +https://foo.example/about)",
        ] {
            assert_eq!(bot(ua), Some((UNIDENTIFIED, Other)), "{ua}");
        }
    }

    #[test]
    fn missing_user_agent_is_a_bot() {
        for ua in [None, Some(""), Some("   ")] {
            assert_eq!(
                classify(ua),
                Some(Bot {
                    name: NO_USER_AGENT,
                    kind: Other
                })
            );
        }
    }

    #[test]
    fn browsers_and_in_app_browsers_are_people() {
        for ua in [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.122 Mobile Safari/537.36",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.87",
            // In-app browsers of the networks whose preview fetchers are bots.
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/470.0.0.43.108;FBBV/611263133;FBDV/iPhone14,5;FBMD/iPhone;FBSN/iOS;FBSV/17.5;FBSS/3;FBID/phone;FBLC/en_US;FBOP/5]",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [LinkedInApp]/9.30.1",
            "Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/126.0.6478.122 Mobile Safari/537.36 Instagram 337.0.0.35.102 Android",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [Pinterest/iOS]",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Snapchat/13.0.0.45 (like Safari/8618.2.12.10.1, panda)",
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36 YandexSearch/24.50",
            // A phone brand containing "bot".
            "Mozilla/5.0 (Linux; Android 12; CUBOT_X30) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
        ] {
            assert_eq!(classify(Some(ua)), None, "{ua}");
        }
    }

    #[test]
    fn matching_ignores_case() {
        assert_eq!(bot("GOOGLEBOT/2.1"), Some(("Googlebot", Crawler)));
        assert_eq!(bot("cUrL/7.0"), Some(("curl", Tool)));
    }
}
