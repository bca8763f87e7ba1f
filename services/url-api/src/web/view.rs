//! What the templates show, computed from API models: ranked bar lists, chart data and
//! errors in plain words. Pure functions, tested without a browser.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};

use crate::error::ApiError;
use crate::routes::stats::{Breakdown, SeriesPoint};

/// Most rows of one breakdown list.
pub const MAX_BARS: usize = 10;

/// One row of a ranked bar list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    pub label: String,
    pub clicks: u64,
    /// Bar length relative to the top row, 0 to 100.
    pub width: u64,
    /// Share of all clicks in the list, rounded, e.g. "42%".
    pub share: String,
}

impl Bar {
    /// Length of a bar of `clicks` when the longest has `top`: 1 to 100.
    pub fn width_of(clicks: u64, top: u64) -> u64 {
        (clicks * 100).checked_div(top).unwrap_or(0).clamp(1, 100)
    }
}

/// A titled breakdown (countries, devices, ...).
#[derive(Debug, Clone)]
pub struct BarList {
    pub title: &'static str,
    /// `country` when labels are ISO codes, which the page's script names in the
    /// reader's language (Intl.DisplayNames); empty otherwise.
    pub kind: &'static str,
    pub bars: Vec<Bar>,
    /// Rows beyond [`MAX_BARS`], folded into the last line.
    pub others: u64,
}

/// Ranks `entries` by clicks (then name), keeps the top [`MAX_BARS`].
pub fn bar_list(title: &'static str, entries: &[Breakdown], label: fn(&str) -> String) -> BarList {
    let mut sorted: Vec<&Breakdown> = entries.iter().filter(|e| e.clicks > 0).collect();
    sorted.sort_by(|a, b| b.clicks.cmp(&a.clicks).then_with(|| a.key.cmp(&b.key)));
    let total: u64 = sorted.iter().map(|e| e.clicks).sum();
    let top = sorted.first().map_or(0, |e| e.clicks);
    let bars = sorted
        .iter()
        .take(MAX_BARS)
        .map(|e| Bar {
            // The rest beyond analytics' top N, folded by analytics-rpc itself.
            label: if e.other {
                "Other".to_string()
            } else {
                label(&e.key)
            },
            clicks: e.clicks,
            width: Bar::width_of(e.clicks, top),
            share: format!(
                "{}%",
                (e.clicks * 100 + total / 2).checked_div(total).unwrap_or(0)
            ),
        })
        .collect();
    BarList {
        title,
        kind: "",
        bars,
        others: sorted.iter().skip(MAX_BARS).map(|e| e.clicks).sum(),
    }
}

/// A breakdown key as stored ("bot", "bbc.co.uk").
pub fn as_is(key: &str) -> String {
    key.to_string()
}

/// A device type with a capital ("mobile" -> "Mobile").
pub fn capitalized(key: &str) -> String {
    let mut chars = key.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// A traffic source ("direct" -> "Direct (no referrer)").
pub fn source(key: &str) -> String {
    match key {
        "direct" => "Direct (no referrer)".to_string(),
        other => other.to_string(),
    }
}

/// The chart's data: bucket starts (Unix seconds) and clicks, comma-separated, for the
/// element's `data-` attributes (no inline script under the CSP).
pub fn series_attrs(series: &[SeriesPoint]) -> (String, String, String) {
    let join = |f: fn(&SeriesPoint) -> String| -> String {
        series.iter().map(f).collect::<Vec<_>>().join(",")
    };
    (
        join(|p| p.start.timestamp().to_string()),
        join(|p| p.clicks.to_string()),
        join(|p| p.human_clicks.to_string()),
    )
}

/// A timestamp as the pages show it (UTC, to the minute).
pub fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// An API error as a status and a sentence a person can act on.
pub fn plain_words(err: &ApiError) -> (StatusCode, String) {
    let text = match err {
        ApiError::RateLimited { retry_after_secs } => format!(
            "You are going faster than your account's rate limit allows. \
             Wait {retry_after_secs} second{} and try again.",
            if *retry_after_secs == 1 { "" } else { "s" }
        ),
        ApiError::NotFound => "There is no such link in your account.".to_string(),
        ApiError::Gone => "This link was deleted.".to_string(),
        ApiError::DatabaseUnavailable => {
            "The link database is not answering right now. Try again in a moment.".to_string()
        }
        ApiError::StatsUnavailable => {
            "Click statistics are temporarily unavailable. Your links still redirect; \
             try again in a moment."
                .to_string()
        }
        ApiError::CodeExhausted => "No free short code was found. Try again.".to_string(),
        ApiError::Internal => "Something went wrong on our side. Try again.".to_string(),
        other => other.to_string(),
    };
    (err.status(), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(key: &str, clicks: u64) -> Breakdown {
        Breakdown {
            key: key.into(),
            clicks,
            other: false,
        }
    }

    #[test]
    fn bars_are_ranked_scaled_to_the_top_and_shared_of_the_total() {
        let list = bar_list(
            "Browsers",
            &[b("Firefox", 1), b("Safari", 3), b("Edge", 0)],
            as_is,
        );
        let rows: Vec<(&str, u64, u64, &str)> = list
            .bars
            .iter()
            .map(|r| (r.label.as_str(), r.clicks, r.width, r.share.as_str()))
            .collect();
        assert_eq!(rows, [("Safari", 3, 100, "75%"), ("Firefox", 1, 33, "25%")]);
        assert_eq!(list.others, 0);
    }

    #[test]
    fn long_lists_fold_into_others() {
        let entries: Vec<Breakdown> = (0..13).map(|i| b(&format!("k{i:02}"), 1)).collect();
        let list = bar_list("Sources", &entries, as_is);
        assert_eq!(list.bars.len(), MAX_BARS);
        assert_eq!(list.others, 3);
        assert_eq!(list.bars[0].label, "k00");
    }

    #[test]
    fn labels() {
        assert_eq!(capitalized("mobile"), "Mobile");
        assert_eq!(source("direct"), "Direct (no referrer)");
    }

    #[test]
    fn errors_read_as_sentences() {
        let (status, text) = plain_words(&ApiError::RateLimited {
            retry_after_secs: 3,
        });
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(text.contains("Wait 3 seconds"), "{text}");
        assert!(plain_words(&ApiError::StatsUnavailable)
            .1
            .contains("still redirect"));
    }
}
