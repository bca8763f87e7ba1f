//! Human output: the API's answers as aligned tables and labelled fields. `--json` skips
//! this and prints the API's JSON as is.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

/// A link as the API returns it (create, list, edit; details add the click totals).
/// Fields default so an older or newer server's answer still prints.
#[derive(Debug, Clone, Deserialize)]
pub struct Link {
    pub code: String,
    pub short_url: String,
    pub long_url: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "yes")]
    pub forward_query: bool,
    #[serde(default)]
    pub redirect_rules: Vec<Value>,
    #[serde(default)]
    pub max_visits: Option<i64>,
    #[serde(default)]
    pub expired_url: Option<String>,
    #[serde(default)]
    pub public_qr: bool,
    #[serde(default)]
    pub password_protected: bool,
    #[serde(default)]
    pub total_clicks: Option<u64>,
    #[serde(default)]
    pub human_clicks: Option<u64>,
    #[serde(default)]
    pub bot_clicks: Option<u64>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
pub struct LinkList {
    pub items: Vec<Link>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Breakdown {
    pub key: String,
    pub clicks: u64,
    #[serde(default)]
    pub other: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeriesPoint {
    pub start: DateTime<Utc>,
    pub clicks: u64,
    #[serde(default)]
    pub human_clicks: u64,
    #[serde(default)]
    pub bot_clicks: u64,
    #[serde(default)]
    pub visitors: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LinkStats {
    pub code: String,
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
    pub total_clicks: u64,
    #[serde(default)]
    pub human_clicks: u64,
    #[serde(default)]
    pub bot_clicks: u64,
    #[serde(default)]
    pub visitors: u64,
    #[serde(default)]
    pub by_country: Vec<Breakdown>,
    #[serde(default)]
    pub by_device_type: Vec<Breakdown>,
    #[serde(default)]
    pub by_browser: Vec<Breakdown>,
    #[serde(default)]
    pub by_os: Vec<Breakdown>,
    #[serde(default)]
    pub by_traffic_source: Vec<Breakdown>,
    #[serde(default)]
    pub series: Vec<SeriesPoint>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AccountStats {
    #[serde(default)]
    pub from: Option<DateTime<Utc>>,
    #[serde(default)]
    pub to: Option<DateTime<Utc>>,
    pub total_clicks: u64,
    #[serde(default)]
    pub human_clicks: u64,
    #[serde(default)]
    pub bot_clicks: u64,
    #[serde(default)]
    pub visitors: u64,
    #[serde(default)]
    pub top_links: Vec<Breakdown>,
    #[serde(default)]
    pub by_country: Vec<Breakdown>,
    #[serde(default)]
    pub by_traffic_source: Vec<Breakdown>,
    #[serde(default)]
    pub series: Vec<SeriesPoint>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// One row of an import: the link, or why it was not created.
#[derive(Debug, Clone, Deserialize)]
pub struct BulkItem {
    pub index: usize,
    pub status: u16,
    #[serde(default)]
    pub link: Option<Link>,
    #[serde(default)]
    pub error: Option<ErrorDetail>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct BulkResult {
    pub created: usize,
    pub failed: usize,
    pub results: Vec<BulkItem>,
}

/// At most `max` characters, the cut marked with `…`.
pub fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Left-aligned columns two spaces apart, numbers right-aligned; no trailing spaces.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let numeric: Vec<bool> = (0..headers.len())
        .map(|i| {
            !rows.is_empty()
                && rows.iter().all(|r| {
                    r[i].chars()
                        .all(|c| c.is_ascii_digit() || c == '%' || c == '.')
                })
        })
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let pad = widths[i] - cell.chars().count();
            if numeric[i] {
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        out
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

fn minute(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

pub fn links_table(links: &[Link]) -> String {
    if links.is_empty() {
        return "no links\n".into();
    }
    let rows: Vec<Vec<String>> = links
        .iter()
        .map(|l| {
            vec![
                l.code.clone(),
                l.short_url.clone(),
                truncate(&l.long_url, 60),
                truncate(l.title.as_deref().unwrap_or(""), 30),
                l.tags.join(","),
                minute(&l.created_at),
            ]
        })
        .collect();
    table(
        &[
            "CODE",
            "SHORT URL",
            "LONG URL",
            "TITLE",
            "TAGS",
            "CREATED (UTC)",
        ],
        &rows,
    )
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.into()
}

/// One link, a field per line.
pub fn link_details(link: &Link) -> String {
    let mut fields: Vec<(&str, String)> = vec![
        ("code", link.code.clone()),
        ("short url", link.short_url.clone()),
        ("long url", link.long_url.clone()),
    ];
    if let Some(t) = &link.title {
        fields.push(("title", t.clone()));
    }
    if let Some(d) = &link.description {
        fields.push(("description", d.clone()));
    }
    if !link.tags.is_empty() {
        fields.push(("tags", link.tags.join(", ")));
    }
    fields.push(("created", format!("{} UTC", minute(&link.created_at))));
    if let Some(u) = &link.updated_at {
        fields.push(("updated", format!("{} UTC", minute(u))));
    }
    fields.push((
        "expires",
        link.expires_at
            .map_or("never".into(), |t| format!("{} UTC", minute(&t))),
    ));
    if let Some(n) = link.max_visits {
        fields.push(("max visits", n.to_string()));
    }
    if let Some(u) = &link.expired_url {
        fields.push(("expired url", u.clone()));
    }
    fields.push(("password", yes_no(link.password_protected)));
    fields.push(("forward query", yes_no(link.forward_query)));
    fields.push(("public qr", yes_no(link.public_qr)));
    for (i, rule) in link.redirect_rules.iter().enumerate() {
        let label = if i == 0 { "rules" } else { "" };
        fields.push((label, rule.to_string()));
    }
    if let Some(total) = link.total_clicks {
        let (humans, bots) = (link.human_clicks.unwrap_or(0), link.bot_clicks.unwrap_or(0));
        fields.push(("clicks", clicks(total, humans, bots)));
    }
    labelled(&fields)
}

fn labelled(fields: &[(&str, String)]) -> String {
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    fields
        .iter()
        .map(|(k, v)| format!("{k:width$}  {v}\n"))
        .map(|l| l.trim_end().to_owned() + "\n")
        .collect()
}

fn period(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> String {
    match (from, to) {
        (Some(f), Some(t)) => format!("{} to {} UTC", minute(&f), minute(&t)),
        _ => String::new(),
    }
}

fn breakdown_table(title: &str, entries: &[Breakdown]) -> String {
    if entries.is_empty() {
        return String::new();
    }
    let sum: u64 = entries.iter().map(|e| e.clicks).sum();
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let share = if sum == 0 {
                0.0
            } else {
                100.0 * e.clicks as f64 / sum as f64
            };
            let key = if e.other {
                "(other)".into()
            } else {
                e.key.clone()
            };
            vec![key, e.clicks.to_string(), format!("{share:.1}%")]
        })
        .collect();
    format!("\n{}", table(&[title, "CLICKS", "SHARE"], &rows))
}

fn series_table(series: &[SeriesPoint]) -> String {
    let rows: Vec<Vec<String>> = series
        .iter()
        .map(|p| {
            vec![
                minute(&p.start),
                p.clicks.to_string(),
                p.human_clicks.to_string(),
                p.bot_clicks.to_string(),
                p.visitors.to_string(),
            ]
        })
        .collect();
    format!(
        "\n{}",
        table(
            &["START (UTC)", "CLICKS", "PEOPLE", "BOTS", "VISITORS"],
            &rows
        )
    )
}

/// "4 (3 people, 1 bot)".
fn clicks(total: u64, humans: u64, bots: u64) -> String {
    let s = if bots == 1 { "" } else { "s" };
    format!("{total} ({humans} people, {bots} bot{s})")
}

fn totals(total: u64, humans: u64, bots: u64, visitors: u64) -> Vec<(&'static str, String)> {
    vec![
        ("clicks", clicks(total, humans, bots)),
        ("visitors", visitors.to_string()),
    ]
}

pub fn link_stats(s: &LinkStats, with_series: bool) -> String {
    let mut fields = vec![("link", s.code.clone()), ("period", period(s.from, s.to))];
    fields.extend(totals(
        s.total_clicks,
        s.human_clicks,
        s.bot_clicks,
        s.visitors,
    ));
    let mut out = labelled(&fields);
    out += &breakdown_table("COUNTRY", &s.by_country);
    out += &breakdown_table("DEVICE", &s.by_device_type);
    out += &breakdown_table("BROWSER", &s.by_browser);
    out += &breakdown_table("OS", &s.by_os);
    out += &breakdown_table("SOURCE", &s.by_traffic_source);
    if with_series {
        out += &series_table(&s.series);
    }
    out
}

pub fn account_stats(s: &AccountStats, with_series: bool) -> String {
    let mut fields = vec![("period", period(s.from, s.to))];
    fields.extend(totals(
        s.total_clicks,
        s.human_clicks,
        s.bot_clicks,
        s.visitors,
    ));
    let mut out = labelled(&fields);
    out += &breakdown_table("LINK", &s.top_links);
    out += &breakdown_table("COUNTRY", &s.by_country);
    out += &breakdown_table("SOURCE", &s.by_traffic_source);
    if with_series {
        out += &series_table(&s.series);
    }
    out
}

/// One line per row (1-based data rows), then the counts.
pub fn import_results(r: &BulkResult) -> String {
    let rows: Vec<Vec<String>> = r
        .results
        .iter()
        .map(|item| {
            let result = match (&item.link, &item.error) {
                (Some(link), _) => link.short_url.clone(),
                (None, Some(e)) => format!("{} ({})", e.message, e.code),
                (None, None) => String::new(),
            };
            vec![
                (item.index + 1).to_string(),
                item.status.to_string(),
                result,
            ]
        })
        .collect();
    format!(
        "{}created {}, failed {}\n",
        table(&["ROW", "STATUS", "RESULT"], &rows),
        r.created,
        r.failed
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn link() -> Link {
        serde_json::from_value(link_json()).unwrap()
    }

    fn link_json() -> Value {
        json!({
            "code": "docs",
            "short_url": "https://sho.rt/docs",
            "long_url": "https://example.com/a/very/long/path/that/goes/on/and/on/and/on/for/ever/and/ever",
            "created_at": "2026-12-01T10:15:30Z",
            "expires_at": null,
            "title": "Docs",
            "tags": ["rust", "web"],
            "max_visits": 5,
            "redirect_rules": [{ "long_url": "https://m.example.com", "device": "ios" }],
            "password_protected": true,
            "total_clicks": 12,
            "human_clicks": 10,
            "bot_clicks": 2,
            "some_future_field": 1,
        })
    }

    #[test]
    fn import_results_show_each_row_and_the_counts() {
        let r: BulkResult = serde_json::from_value(json!({
            "created": 1, "failed": 1,
            "results": [
                { "index": 0, "status": 201, "link": link_json(), "error": null },
                { "index": 1, "status": 400, "link": null,
                  "error": { "code": "invalid_url", "message": "long_url must be http or https" } },
            ],
        }))
        .unwrap();
        assert_eq!(
            import_results(&r),
            "ROW  STATUS  RESULT\n  1     201  https://sho.rt/docs\n  2     400  long_url must be http or https (invalid_url)\ncreated 1, failed 1\n"
        );
    }

    #[test]
    fn tables_align_columns_and_numbers() {
        let t = table(
            &["NAME", "N"],
            &[
                vec!["a".into(), "5".into()],
                vec!["longer".into(), "120".into()],
            ],
        );
        assert_eq!(t, "NAME      N\na         5\nlonger  120\n");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
        assert_eq!(truncate("éééééé", 3), "éé…", "cuts characters, not bytes");
    }

    #[test]
    fn link_list_shows_one_row_per_link() {
        let out = links_table(&[link()]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("CODE  SHORT URL"), "{out}");
        assert!(lines[1].starts_with("docs  https://sho.rt/docs"), "{out}");
        assert!(
            lines[1].contains("https://example.com/a/very/long/path/that/goes/on/and/on/an…"),
            "{out}"
        );
        assert!(lines[1].ends_with("rust,web  2026-12-01 10:15"), "{out}");
        assert_eq!(links_table(&[]), "no links\n");
    }

    #[test]
    fn details_label_each_field() {
        let out = link_details(&link());
        for want in [
            "code           docs\n",
            "tags           rust, web\n",
            "created        2026-12-01 10:15 UTC\n",
            "expires        never\n",
            "max visits     5\n",
            "password       yes\n",
            "forward query  yes\n",
            "rules          {\"device\":\"ios\",\"long_url\":\"https://m.example.com\"}\n",
            "clicks         12 (10 people, 2 bots)\n",
        ] {
            assert!(out.contains(want), "{want:?} missing in\n{out}");
        }
        assert!(!out.contains("description"), "unset fields are left out");
    }

    #[test]
    fn stats_show_totals_breakdowns_with_shares_and_optionally_the_series() {
        let stats: LinkStats = serde_json::from_value(json!({
            "code": "docs",
            "from": "2026-11-01T00:00:00Z",
            "to": "2026-12-01T00:00:00Z",
            "total_clicks": 4, "human_clicks": 3, "bot_clicks": 1, "visitors": 2,
            "by_country": [{ "key": "DE", "clicks": 3 }, { "key": "other", "clicks": 1, "other": true }],
            "by_device_type": [], "by_browser": [], "by_os": [], "by_traffic_source": [],
            "series": [{ "start": "2026-11-30T00:00:00Z", "clicks": 4, "human_clicks": 3, "bot_clicks": 1, "visitors": 2 }],
            "stats_available": true,
        }))
        .unwrap();
        let out = link_stats(&stats, false);
        assert!(out.starts_with("link      docs\nperiod    2026-11-01 00:00 to 2026-12-01 00:00 UTC\nclicks    4 (3 people, 1 bot)\nvisitors  2\n"), "{out}");
        assert!(
            out.contains(
                "\nCOUNTRY  CLICKS  SHARE\nDE            3  75.0%\n(other)       1  25.0%\n"
            ),
            "{out}"
        );
        assert!(!out.contains("DEVICE"), "empty breakdowns are left out");
        assert!(!out.contains("START"));
        let out = link_stats(&stats, true);
        assert!(
            out.contains("2026-11-30 00:00       4       3     1         2\n"),
            "{out}"
        );
    }
}
