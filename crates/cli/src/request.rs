//! What each subcommand asks of the API, as pure functions of its arguments: method,
//! URL with query, JSON body. Nothing here talks to the network.

use chrono::{DateTime, NaiveDate, SecondsFormat, TimeDelta, Utc};
use serde_json::{json, Map, Value};
use url::Url;

use crate::args::{
    AccountStatsArgs, Bucket, CreateArgs, EditArgs, ExportArgs, ExportFormat, ListArgs, Order,
    QrArgs, QrFormat, RangeArgs, StatsArgs, UtmArgs,
};
use crate::error::CliError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Patch,
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    Json(Value),
    /// `text/csv`, sent as read.
    Csv(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiRequest {
    pub method: Method,
    pub url: Url,
    pub body: Option<Body>,
}

impl ApiRequest {
    fn get(url: Url) -> Self {
        Self {
            method: Method::Get,
            url,
            body: None,
        }
    }

    pub fn json_body(&self) -> Option<&Value> {
        match &self.body {
            Some(Body::Json(v)) => Some(v),
            _ => None,
        }
    }
}

/// `base` + `api/v1/<segments>` with `query`; each segment is percent-encoded, so a
/// code can never reach another path.
pub fn endpoint(base: &Url, segments: &[&str], query: &[(&str, String)]) -> Url {
    let mut url = base.clone();
    {
        let mut path = url
            .path_segments_mut()
            .expect("http(s) base URLs have a path");
        path.pop_if_empty().extend(["api", "v1"]).extend(segments);
    }
    if !query.is_empty() {
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
    }
    url
}

/// `90s`, `30m`, `12h`, `7d`, `2w` in seconds.
pub fn parse_duration(text: &str) -> Option<i64> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = text.split_at(split);
    let n: i64 = digits.parse().ok()?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(unit_secs).filter(|&s| s > 0)
}

/// An RFC 3339 time, or a date (midnight UTC).
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc())
}

const WHEN_HELP: &str =
    "expected a time (2027-01-31 or 2027-01-31T12:00:00Z) or a duration (90m, 12h, 7d, 2w)";

/// A time, or a duration before `now` (for ranges and filters).
pub fn time_or_ago(option: &str, text: &str, now: DateTime<Utc>) -> Result<String, CliError> {
    let at = match parse_duration(text) {
        Some(secs) => now - TimeDelta::seconds(secs),
        None => parse_time(text)
            .ok_or_else(|| CliError::Usage(format!("--{option} {text:?}: {WHEN_HELP}")))?,
    };
    Ok(at.to_rfc3339_opts(SecondsFormat::Secs, true))
}

/// The expiry fields for `--expires`: a duration from now is left to the server's clock.
fn expiry(text: &str) -> Result<(&'static str, Value), CliError> {
    if let Some(secs) = parse_duration(text) {
        return Ok(("expires_in_secs", json!(secs)));
    }
    let at = parse_time(text)
        .ok_or_else(|| CliError::Usage(format!("--expires {text:?}: {WHEN_HELP}")))?;
    Ok((
        "expires_at",
        json!(at.to_rfc3339_opts(SecondsFormat::Secs, true)),
    ))
}

fn utm(args: &UtmArgs) -> Option<Value> {
    let pairs = [
        ("source", &args.utm_source),
        ("medium", &args.utm_medium),
        ("campaign", &args.utm_campaign),
        ("term", &args.utm_term),
        ("content", &args.utm_content),
    ];
    let map: Map<String, Value> = pairs
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.to_owned(), json!(v))))
        .collect();
    (!map.is_empty()).then_some(Value::Object(map))
}

/// `--rules`: must be a JSON array; the API checks the rules themselves.
fn rules(text: &str) -> Result<Value, CliError> {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Array(_)) => Ok(v),
        Ok(_) => Err(CliError::Usage("--rules: expected a JSON array".into())),
        Err(e) => Err(CliError::Usage(format!("--rules: not JSON: {e}"))),
    }
}

fn clean_tags(tags: &[String]) -> Vec<&str> {
    tags.iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .collect()
}

/// `POST /api/v1/links`. `password` comes from stdin when `--password-stdin` is given.
pub fn create(
    base: &Url,
    args: &CreateArgs,
    password: Option<String>,
) -> Result<ApiRequest, CliError> {
    let mut body = Map::new();
    body.insert("long_url".into(), json!(args.long_url));
    let optional = [
        ("alias", &args.alias),
        ("title", &args.title),
        ("description", &args.description),
        ("expired_url", &args.expired_url),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            body.insert(key.into(), json!(v));
        }
    }
    let tags = clean_tags(&args.tags);
    if !tags.is_empty() {
        body.insert("tags".into(), json!(tags));
    }
    if let Some(when) = &args.expires {
        let (key, value) = expiry(when)?;
        body.insert(key.into(), value);
    }
    if let Some(n) = args.max_visits {
        body.insert("max_visits".into(), json!(n));
    }
    if let Some(p) = password {
        body.insert("password".into(), json!(p));
    }
    if args.no_forward_query {
        body.insert("forward_query".into(), json!(false));
    }
    if args.public_qr {
        body.insert("public_qr".into(), json!(true));
    }
    if let Some(r) = &args.rules {
        body.insert("redirect_rules".into(), rules(r)?);
    }
    if let Some(u) = utm(&args.utm) {
        body.insert("utm".into(), u);
    }
    Ok(ApiRequest {
        method: Method::Post,
        url: endpoint(base, &["links"], &[]),
        body: Some(Body::Json(Value::Object(body))),
    })
}

/// One page of `GET /api/v1/links`; `cursor` overrides `--cursor` when paging through.
pub fn list(
    base: &Url,
    args: &ListArgs,
    cursor: Option<&str>,
    now: DateTime<Utc>,
) -> Result<ApiRequest, CliError> {
    let mut query = Vec::new();
    if let Some(q) = &args.search {
        query.push(("q", q.clone()));
    }
    let tags = clean_tags(&args.tags);
    if !tags.is_empty() {
        query.push(("tags", tags.join(",")));
    }
    if let Some(s) = &args.since {
        query.push(("created_after", time_or_ago("since", s, now)?));
    }
    if let Some(u) = &args.until {
        query.push(("created_before", time_or_ago("until", u, now)?));
    }
    if let Some(order) = args.order {
        let order = match order {
            Order::Created => "created",
            Order::Clicks => "clicks",
        };
        query.push(("order", order.into()));
    }
    if let Some(n) = args.limit {
        query.push(("limit", n.to_string()));
    }
    if let Some(c) = cursor.or(args.cursor.as_deref()) {
        query.push(("cursor", c.to_owned()));
    }
    Ok(ApiRequest::get(endpoint(base, &["links"], &query)))
}

/// `GET /api/v1/links/{code}`: the link with its click totals.
pub fn details(base: &Url, code: &str) -> ApiRequest {
    ApiRequest::get(endpoint(base, &["links", code], &[]))
}

/// `PATCH /api/v1/links/{code}` with only the options given; `null` clears.
pub fn edit(base: &Url, args: &EditArgs, password: Option<String>) -> Result<ApiRequest, CliError> {
    let mut body = Map::new();
    let mut put = |key: &str, value: Value| {
        body.insert(key.to_owned(), value);
    };
    if let Some(u) = &args.long_url {
        put("long_url", json!(u));
    }
    let clearable = [
        ("title", &args.title, args.no_title),
        ("description", &args.description, args.no_description),
        ("expired_url", &args.expired_url, args.no_expired_url),
    ];
    for (key, value, clear) in clearable {
        if let Some(v) = value {
            put(key, json!(v));
        } else if clear {
            put(key, Value::Null);
        }
    }
    if !args.tags.is_empty() || args.no_tags {
        put("tags", json!(clean_tags(&args.tags)));
    }
    if let Some(when) = &args.expires {
        let (key, value) = expiry(when)?;
        put(key, value);
    } else if args.no_expiry {
        put("expires_at", Value::Null);
    }
    if let Some(n) = args.max_visits {
        put("max_visits", json!(n));
    } else if args.no_max_visits {
        put("max_visits", Value::Null);
    }
    if let Some(p) = password {
        put("password", json!(p));
    } else if args.no_password {
        put("password", Value::Null);
    }
    if let Some(b) = args.forward_query {
        put("forward_query", json!(b));
    }
    if let Some(b) = args.public_qr {
        put("public_qr", json!(b));
    }
    if let Some(r) = &args.rules {
        put("redirect_rules", rules(r)?);
    }
    if let Some(u) = utm(&args.utm) {
        put("utm", u);
    }
    if body.is_empty() {
        return Err(CliError::Usage(
            "nothing to change: give at least one option (see `shortener links edit --help`)"
                .into(),
        ));
    }
    Ok(ApiRequest {
        method: Method::Patch,
        url: endpoint(base, &["links", &args.code], &[]),
        body: Some(Body::Json(Value::Object(body))),
    })
}

pub fn delete(base: &Url, code: &str) -> ApiRequest {
    ApiRequest {
        method: Method::Delete,
        url: endpoint(base, &["links", code], &[]),
        body: None,
    }
}

fn range(args: &RangeArgs, now: DateTime<Utc>) -> Result<Vec<(&'static str, String)>, CliError> {
    let mut query = Vec::new();
    if let Some(f) = &args.from {
        query.push(("from", time_or_ago("from", f, now)?));
    }
    if let Some(t) = &args.to {
        query.push(("to", time_or_ago("to", t, now)?));
    }
    if let Some(n) = args.top {
        query.push(("top", n.to_string()));
    }
    Ok(query)
}

/// `GET /api/v1/links/{code}/stats`.
pub fn stats(base: &Url, args: &StatsArgs, now: DateTime<Utc>) -> Result<ApiRequest, CliError> {
    let mut query = range(&args.range, now)?;
    if let Some(b) = args.bucket {
        let b = match b {
            Bucket::Minute => "minute",
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        };
        query.push(("bucket", b.into()));
    }
    if args.exclude_bots {
        query.push(("exclude_bots", "true".into()));
    }
    Ok(ApiRequest::get(endpoint(
        base,
        &["links", &args.code, "stats"],
        &query,
    )))
}

/// `GET /api/v1/account/stats`.
pub fn account_stats(
    base: &Url,
    args: &AccountStatsArgs,
    now: DateTime<Utc>,
) -> Result<ApiRequest, CliError> {
    let query = range(&args.range, now)?;
    Ok(ApiRequest::get(endpoint(
        base,
        &["account", "stats"],
        &query,
    )))
}

/// The output file's extension, lowercased.
fn extension(output: Option<&std::path::Path>) -> Option<String> {
    output
        .and_then(|p| p.extension())
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
}

/// `--format`, else the output file's extension, else SVG (text, safe on a terminal).
pub fn qr_format(args: &QrArgs) -> QrFormat {
    if let Some(f) = args.format {
        return f;
    }
    match extension(args.output.as_deref()).as_deref() {
        Some("png") => QrFormat::Png,
        _ => QrFormat::Svg,
    }
}

/// `GET /api/v1/links/{code}/qr?format=&size=`.
pub fn qr(base: &Url, args: &QrArgs) -> ApiRequest {
    let format = match qr_format(args) {
        QrFormat::Svg => "svg",
        QrFormat::Png => "png",
    };
    let mut query = vec![("format", format.to_owned())];
    if let Some(s) = args.size {
        query.push(("size", s.to_string()));
    }
    ApiRequest::get(endpoint(base, &["links", &args.code, "qr"], &query))
}

/// `POST /api/v1/links/import` with the CSV as read; the API checks it row by row.
pub fn import(base: &Url, csv: Vec<u8>) -> ApiRequest {
    ApiRequest {
        method: Method::Post,
        url: endpoint(base, &["links", "import"], &[]),
        body: Some(Body::Csv(csv)),
    }
}

/// `--format`, else the output file's extension, else JSON under `--json`, else CSV.
pub fn export_format(args: &ExportArgs, json: bool) -> ExportFormat {
    if let Some(f) = args.format {
        return f;
    }
    match extension(args.output.as_deref()).as_deref() {
        Some("json") => ExportFormat::Json,
        Some("csv") => ExportFormat::Csv,
        _ if json => ExportFormat::Json,
        _ => ExportFormat::Csv,
    }
}

/// `GET /api/v1/links/export?format=`: every link of the key, in one answer.
pub fn export(base: &Url, format: ExportFormat) -> ApiRequest {
    let format = match format {
        ExportFormat::Csv => "csv",
        ExportFormat::Json => "json",
    };
    ApiRequest::get(endpoint(
        base,
        &["links", "export"],
        &[("format", format.to_owned())],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn base() -> Url {
        Url::parse("https://sho.rt/prefix/").unwrap()
    }

    fn now() -> DateTime<Utc> {
        parse_time("2026-12-01T12:00:00Z").unwrap()
    }

    #[test]
    fn endpoints_keep_the_prefix_and_encode_codes() {
        assert_eq!(
            endpoint(&base(), &["links"], &[]).as_str(),
            "https://sho.rt/prefix/api/v1/links"
        );
        let root = Url::parse("http://localhost:8080/").unwrap();
        assert_eq!(
            endpoint(&root, &["links", "abc", "qr"], &[("format", "png".into())]).as_str(),
            "http://localhost:8080/api/v1/links/abc/qr?format=png"
        );
        // A code cannot climb out of its path segment or start a query.
        assert_eq!(
            endpoint(&root, &["links", "../x?y#z"], &[]).as_str(),
            "http://localhost:8080/api/v1/links/..%2Fx%3Fy%23z"
        );
        assert_eq!(
            endpoint(
                &root,
                &["links"],
                &[("created_after", "2026-01-01T00:00:00+01:00".into())]
            )
            .query(),
            Some("created_after=2026-01-01T00%3A00%3A00%2B01%3A00")
        );
    }

    #[test]
    fn durations_and_times_parse() {
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("30m"), Some(1800));
        assert_eq!(parse_duration("12h"), Some(43_200));
        assert_eq!(parse_duration("7d"), Some(604_800));
        assert_eq!(parse_duration("2w"), Some(1_209_600));
        for bad in [
            "",
            "7",
            "d",
            "7y",
            "-1d",
            "0d",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(
            parse_time("2027-01-31").unwrap().to_rfc3339(),
            "2027-01-31T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("2027-01-31T12:00:00+02:00")
                .unwrap()
                .to_rfc3339(),
            "2027-01-31T10:00:00+00:00"
        );
        assert_eq!(parse_time("31/01/2027"), None);
        assert_eq!(
            time_or_ago("from", "7d", now()).unwrap(),
            "2026-11-24T12:00:00Z"
        );
        let e = time_or_ago("from", "last week", now()).unwrap_err();
        assert!(
            e.to_string().starts_with("--from \"last week\": expected"),
            "{e}"
        );
    }

    #[test]
    fn create_sends_only_what_was_given() {
        let args = CreateArgs {
            long_url: "https://example.com/a".into(),
            ..CreateArgs::default()
        };
        let req = create(&base(), &args, None).unwrap();
        assert_eq!(req.method, Method::Post);
        assert_eq!(req.url.as_str(), "https://sho.rt/prefix/api/v1/links");
        assert_eq!(
            req.json_body(),
            Some(&json!({ "long_url": "https://example.com/a" }))
        );

        let args = CreateArgs {
            long_url: "https://example.com/a".into(),
            alias: Some("docs".into()),
            title: Some("Docs".into()),
            tags: vec!["rust".into(), " ".into(), "web".into()],
            expires: Some("7d".into()),
            max_visits: Some(3),
            expired_url: Some("https://example.com/gone".into()),
            no_forward_query: true,
            public_qr: true,
            rules: Some(r#"[{"long_url":"https://m.example.com","device":"ios"}]"#.into()),
            utm: UtmArgs {
                utm_source: Some("mail".into()),
                ..UtmArgs::default()
            },
            ..CreateArgs::default()
        };
        let req = create(&base(), &args, Some("open sesame".into())).unwrap();
        assert_eq!(
            req.json_body(),
            Some(&json!({
                "long_url": "https://example.com/a",
                "alias": "docs",
                "title": "Docs",
                "tags": ["rust", "web"],
                "expires_in_secs": 604_800,
                "max_visits": 3,
                "expired_url": "https://example.com/gone",
                "password": "open sesame",
                "forward_query": false,
                "public_qr": true,
                "redirect_rules": [{ "long_url": "https://m.example.com", "device": "ios" }],
                "utm": { "source": "mail" },
            }))
        );
        let at = CreateArgs {
            expires: Some("2027-01-31".into()),
            ..CreateArgs::default()
        };
        assert_eq!(
            create(&base(), &at, None).unwrap().json_body().unwrap()["expires_at"],
            "2027-01-31T00:00:00Z"
        );
    }

    #[test]
    fn bad_options_are_refused_before_any_request() {
        let bad_expiry = CreateArgs {
            expires: Some("tomorrow".into()),
            ..CreateArgs::default()
        };
        assert!(matches!(
            create(&base(), &bad_expiry, None),
            Err(CliError::Usage(_))
        ));
        for bad in ["{}", "[", "\"x\""] {
            let args = CreateArgs {
                rules: Some(bad.into()),
                ..CreateArgs::default()
            };
            let e = create(&base(), &args, None).unwrap_err();
            assert!(e.to_string().starts_with("--rules"), "{e}");
        }
    }

    #[test]
    fn edit_sends_changes_and_nulls_for_removals() {
        let args = EditArgs {
            code: "docs".into(),
            long_url: Some("https://example.com/b".into()),
            no_title: true,
            description: Some("d".into()),
            no_tags: true,
            no_expiry: true,
            no_max_visits: true,
            no_password: true,
            forward_query: Some(true),
            public_qr: Some(false),
            rules: Some("[]".into()),
            ..EditArgs::default()
        };
        let req = edit(&base(), &args, None).unwrap();
        assert_eq!(req.method, Method::Patch);
        assert_eq!(req.url.as_str(), "https://sho.rt/prefix/api/v1/links/docs");
        assert_eq!(
            req.json_body(),
            Some(&json!({
                "long_url": "https://example.com/b",
                "title": null,
                "description": "d",
                "tags": [],
                "expires_at": null,
                "max_visits": null,
                "password": null,
                "forward_query": true,
                "public_qr": false,
                "redirect_rules": [],
            }))
        );
        let args = EditArgs {
            code: "docs".into(),
            tags: vec!["a".into()],
            expires: Some("1h".into()),
            max_visits: Some(10),
            ..EditArgs::default()
        };
        assert_eq!(
            edit(&base(), &args, Some("pw".into())).unwrap().json_body(),
            Some(
                &json!({ "tags": ["a"], "expires_in_secs": 3600, "max_visits": 10, "password": "pw" })
            )
        );
    }

    #[test]
    fn edit_without_changes_is_a_usage_error() {
        let args = EditArgs {
            code: "docs".into(),
            ..EditArgs::default()
        };
        let e = edit(&base(), &args, None).unwrap_err();
        assert!(e.to_string().starts_with("nothing to change"), "{e}");
        assert_eq!(e.exit_code(), crate::error::EXIT_USAGE);
    }

    #[test]
    fn list_maps_filters_to_the_query() {
        let req = list(&base(), &ListArgs::default(), None, now()).unwrap();
        assert_eq!(req.url.as_str(), "https://sho.rt/prefix/api/v1/links");
        let args = ListArgs {
            search: Some("rust lang".into()),
            tags: vec!["a".into(), "b".into()],
            since: Some("7d".into()),
            until: Some("2026-12-01".into()),
            order: Some(Order::Clicks),
            limit: Some(20),
            cursor: Some("c1".into()),
            all: false,
        };
        let req = list(&base(), &args, None, now()).unwrap();
        let pairs: Vec<(String, String)> = req.url.query_pairs().into_owned().collect();
        let want = [
            ("q", "rust lang"),
            ("tags", "a,b"),
            ("created_after", "2026-11-24T12:00:00Z"),
            ("created_before", "2026-12-01T00:00:00Z"),
            ("order", "clicks"),
            ("limit", "20"),
            ("cursor", "c1"),
        ];
        assert_eq!(
            pairs,
            want.map(|(k, v)| (k.to_owned(), v.to_owned())).to_vec()
        );
        let next = list(&base(), &args, Some("c2"), now()).unwrap();
        assert!(next.url.as_str().ends_with("cursor=c2"), "{}", next.url);
    }

    #[test]
    fn stats_and_qr_requests() {
        let args = StatsArgs {
            code: "docs".into(),
            range: RangeArgs {
                from: Some("2d".into()),
                to: None,
                top: Some(5),
            },
            bucket: Some(Bucket::Hour),
            exclude_bots: true,
            series: false,
        };
        assert_eq!(
            stats(&base(), &args, now()).unwrap().url.as_str(),
            "https://sho.rt/prefix/api/v1/links/docs/stats?from=2026-11-29T12%3A00%3A00Z&top=5&bucket=hour&exclude_bots=true"
        );
        let account = AccountStatsArgs {
            range: RangeArgs::default(),
            series: false,
        };
        assert_eq!(
            account_stats(&base(), &account, now())
                .unwrap()
                .url
                .as_str(),
            "https://sho.rt/prefix/api/v1/account/stats"
        );

        let qr_args = |format, output: Option<&str>| QrArgs {
            code: "docs".into(),
            format,
            size: None,
            output: output.map(PathBuf::from),
        };
        assert_eq!(qr_format(&qr_args(None, None)), QrFormat::Svg);
        assert_eq!(qr_format(&qr_args(None, Some("a/code.PNG"))), QrFormat::Png);
        assert_eq!(qr_format(&qr_args(None, Some("code.svg"))), QrFormat::Svg);
        assert_eq!(
            qr_format(&qr_args(Some(QrFormat::Svg), Some("code.png"))),
            QrFormat::Svg
        );
        let mut sized = qr_args(None, Some("x.png"));
        sized.size = Some(512);
        assert_eq!(
            qr(&base(), &sized).url.as_str(),
            "https://sho.rt/prefix/api/v1/links/docs/qr?format=png&size=512"
        );
        assert_eq!(delete(&base(), "docs").method, Method::Delete);
        assert_eq!(
            details(&base(), "docs").url.as_str(),
            "https://sho.rt/prefix/api/v1/links/docs"
        );
    }
}

#[cfg(test)]
mod bulk_tests {
    use super::*;
    use std::path::PathBuf;

    fn args(format: Option<ExportFormat>, output: Option<&str>) -> ExportArgs {
        ExportArgs {
            format,
            output: output.map(PathBuf::from),
        }
    }

    #[test]
    fn export_format_follows_flag_then_extension_then_json_flag() {
        assert_eq!(export_format(&args(None, None), false), ExportFormat::Csv);
        assert_eq!(export_format(&args(None, None), true), ExportFormat::Json);
        assert_eq!(
            export_format(&args(None, Some("all.JSON")), false),
            ExportFormat::Json
        );
        assert_eq!(
            export_format(&args(None, Some("all.csv")), true),
            ExportFormat::Csv
        );
        assert_eq!(
            export_format(&args(Some(ExportFormat::Csv), Some("all.json")), true),
            ExportFormat::Csv
        );
        let base = Url::parse("http://localhost:8080/").unwrap();
        assert_eq!(
            export(&base, ExportFormat::Csv).url.as_str(),
            "http://localhost:8080/api/v1/links/export?format=csv"
        );
    }

    #[test]
    fn import_sends_the_csv_untouched() {
        let base = Url::parse("http://localhost:8080/").unwrap();
        let csv = b"long_url,alias\nhttps://example.com/,ex\n".to_vec();
        let req = import(&base, csv.clone());
        assert_eq!(req.method, Method::Post);
        assert_eq!(
            req.url.as_str(),
            "http://localhost:8080/api/v1/links/import"
        );
        assert_eq!(req.body, Some(Body::Csv(csv)));
        assert_eq!(req.json_body(), None);
    }
}
