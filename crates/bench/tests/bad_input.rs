//! The bad-input corpus, end to end: url-api and the consumer in-process on loopback, a
//! librdkafka mock cluster, a fresh Postgres database. Every malformed HTTP request gets
//! its documented 4xx with a JSON `code` (never a 500), every malformed topic message goes
//! to the DLQ, and afterwards the links and clicks tables hold exactly what the valid
//! requests and events put there.

use std::time::Duration;

use consumer::{ConsumerApp, ConsumerArgs};
use shortener_common::event::{Click, ClickEvent, SCHEMA_VERSION};
use shortener_common::event_batch::BatchWriter;
use shortener_common::kafka::{KafkaArgs, HEADER_DLQ_ERROR, HEADER_SCHEMA_VERSION};
use shortener_testkit::kafka::MockBroker;
use shortener_testkit::postgres::fresh_database;
use url_api::{AppState, Config};

const KEY: &str = "corpus-key-0123456789";

/// One HTTP request and what it must get.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    /// `error.code` of the JSON body; None for success answers.
    code: Option<&'static str>,
}

fn case(
    name: &'static str,
    method: &'static str,
    path: &str,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.to_string(),
        headers: vec![("authorization", format!("Bearer {KEY}"))],
        body: Vec::new(),
        status,
        code: Some(code),
    }
}

/// POST /api/v1/links with a JSON content type and `body`.
fn create(name: &'static str, body: impl Into<Vec<u8>>, status: u16, code: &'static str) -> Case {
    let mut c = case(name, "POST", "/api/v1/links", status, code);
    c.headers.push(("content-type", "application/json".into()));
    c.body = body.into();
    c
}

fn create_url(name: &'static str, long_url: &str, status: u16, code: &'static str) -> Case {
    create(
        name,
        serde_json::json!({ "long_url": long_url }).to_string(),
        status,
        code,
    )
}

fn create_alias(name: &'static str, alias: &str, status: u16, code: &'static str) -> Case {
    create(
        name,
        serde_json::json!({ "long_url": "https://example.com/a", "alias": alias }).to_string(),
        status,
        code,
    )
}

fn with_auth(mut c: Case, value: Option<String>) -> Case {
    c.headers.retain(|(k, _)| *k != "authorization");
    if let Some(v) = value {
        c.headers.push(("authorization", v));
    }
    c
}

fn http_corpus() -> Vec<Case> {
    let ok_body = r#"{"long_url":"https://example.com/ok"}"#;
    let mut nested = "[".repeat(5000);
    nested.push_str(&"]".repeat(5000));
    let mut cases = vec![
        // API keys.
        with_auth(create("no API key", ok_body, 401, "unauthorized"), None),
        with_auth(
            create("wrong bearer key", ok_body, 401, "unauthorized"),
            Some("Bearer nope".into()),
        ),
        with_auth(
            create("empty bearer", ok_body, 401, "unauthorized"),
            Some("Bearer ".into()),
        ),
        with_auth(
            create("basic auth scheme", ok_body, 401, "unauthorized"),
            Some("Basic YWxpY2U6cHc=".into()),
        ),
        with_auth(
            create("8 KiB bearer key", ok_body, 401, "unauthorized"),
            Some(format!("Bearer {}", "k".repeat(8192))),
        ),
        with_auth(
            create("key with SQL", ok_body, 401, "unauthorized"),
            Some("Bearer ' OR '1'='1".into()),
        ),
        {
            let mut c = with_auth(
                create("wrong X-API-Key", ok_body, 401, "unauthorized"),
                None,
            );
            c.headers.push(("x-api-key", "nope".into()));
            c
        },
        with_auth(
            case(
                "list without key",
                "GET",
                "/api/v1/links",
                401,
                "unauthorized",
            ),
            None,
        ),
        with_auth(
            case(
                "delete without key",
                "DELETE",
                "/api/v1/links/taken-alias",
                401,
                "unauthorized",
            ),
            None,
        ),
        // HEAD on every API read: the same answer as GET, without a body.
        with_auth(
            case(
                "HEAD list without key",
                "HEAD",
                "/api/v1/links",
                401,
                "unauthorized",
            ),
            None,
        ),
        with_auth(
            case(
                "HEAD details without key",
                "HEAD",
                "/api/v1/links/taken-alias",
                401,
                "unauthorized",
            ),
            None,
        ),
        with_auth(
            case(
                "HEAD stats without key",
                "HEAD",
                "/api/v1/links/taken-alias/stats",
                401,
                "unauthorized",
            ),
            None,
        ),
        case(
            "HEAD unknown details",
            "HEAD",
            "/api/v1/links/no-such-link",
            404,
            "not_found",
        ),
        case(
            "HEAD stats with a bad range",
            "HEAD",
            "/api/v1/links/taken-alias/stats?from=yesterday",
            400,
            "invalid_query",
        ),
        // Malformed JSON.
        create("truncated JSON", "{", 400, "invalid_json"),
        create("JSON array", "[]", 400, "invalid_json"),
        create("JSON null", "null", 400, "invalid_json"),
        create(
            "JSON string",
            "\"https://example.com\"",
            400,
            "invalid_json",
        ),
        create(
            "long_url is a number",
            r#"{"long_url":42}"#,
            400,
            "invalid_json",
        ),
        create("missing long_url", "{}", 400, "invalid_json"),
        create(
            "unknown field",
            r#"{"long_url":"https://example.com","admin":true}"#,
            400,
            "invalid_json",
        ),
        create("empty body", "", 400, "invalid_json"),
        create(
            "invalid UTF-8",
            b"{\"long_url\":\"https://ex\xff\xfe.com\"}".to_vec(),
            400,
            "invalid_json",
        ),
        create(
            "trailing garbage",
            format!("{ok_body} xyz"),
            400,
            "invalid_json",
        ),
        create("5000-deep nesting", nested, 400, "invalid_json"),
        create(
            "expires_at not a date",
            r#"{"long_url":"https://example.com","expires_at":"tomorrow"}"#,
            400,
            "invalid_json",
        ),
        // Content types.
        {
            let mut c = create("text/plain body", ok_body, 415, "unsupported_media_type");
            c.headers.retain(|(k, _)| *k != "content-type");
            c.headers.push(("content-type", "text/plain".into()));
            c
        },
        {
            let mut c = create("no content type", ok_body, 415, "unsupported_media_type");
            c.headers.retain(|(k, _)| *k != "content-type");
            c
        },
        {
            let mut c = create(
                "form body",
                "long_url=https%3A%2F%2Fexample.com",
                415,
                "unsupported_media_type",
            );
            c.headers.retain(|(k, _)| *k != "content-type");
            c.headers
                .push(("content-type", "application/x-www-form-urlencoded".into()));
            c
        },
        // Sizes.
        create(
            "1 MiB body",
            format!(
                r#"{{"long_url":"https://example.com/{}"}}"#,
                "a".repeat(1 << 20)
            ),
            413,
            "payload_too_large",
        ),
        create_url(
            "3000-char URL",
            &format!("https://example.com/{}", "a".repeat(3000)),
            400,
            "invalid_url",
        ),
        // Invalid URLs.
        create_url("empty URL", "", 400, "invalid_url"),
        create_url("not a URL", "not a url", 400, "invalid_url"),
        create_url("ftp scheme", "ftp://example.com/file", 400, "invalid_url"),
        create_url(
            "javascript scheme",
            "javascript:alert(1)",
            400,
            "invalid_url",
        ),
        create_url(
            "data scheme",
            "data:text/html,<script>alert(1)</script>",
            400,
            "invalid_url",
        ),
        create_url("file scheme", "file:///etc/passwd", 400, "invalid_url"),
        create_url("localhost", "http://localhost/admin", 400, "invalid_url"),
        create_url("loopback IP", "http://127.0.0.1:8080/", 400, "invalid_url"),
        create_url("hex loopback", "http://0x7f.1/", 400, "invalid_url"),
        create_url("private IP", "http://10.1.2.3/", 400, "invalid_url"),
        create_url("IPv6 loopback", "http://[::1]/", 400, "invalid_url"),
        create_url(
            "cloud metadata",
            "http://169.254.169.254/latest/meta-data/",
            400,
            "invalid_url",
        ),
        create_url("space in host", "https://exa mple.com/", 400, "invalid_url"),
        create_url(
            "port out of range",
            "https://example.com:99999/",
            400,
            "invalid_url",
        ),
        create_url("empty host", "https://", 400, "invalid_url"),
        create_url(
            "single-label host",
            "http://kafka:9092/",
            400,
            "invalid_url",
        ),
        create_url(
            "cloud metadata name",
            "http://metadata.google.internal/computeMetadata/v1/",
            400,
            "invalid_url",
        ),
        create_url("mDNS name", "http://printer.local/", 400, "invalid_url"),
        create_url(
            "cluster service name",
            "http://kafka.default.svc.cluster.local:9092/",
            400,
            "invalid_url",
        ),
        create_url(
            "IPv4-translated loopback",
            "http://[::ffff:0:7f00:1]/",
            400,
            "invalid_url",
        ),
        create_url(
            "local-use NAT64",
            "http://[64:ff9b:1::a00:1]/",
            400,
            "invalid_url",
        ),
        create_url(
            "the shortener itself",
            "https://sho.rt/taken-alias",
            400,
            "invalid_url",
        ),
        // Aliases.
        create_alias("alias too short", "ab", 400, "invalid_alias"),
        create_alias("alias too long", &"a".repeat(65), 400, "invalid_alias"),
        create_alias("alias with slash", "a/b/c", 400, "invalid_alias"),
        create_alias("unicode alias", "café-link", 400, "invalid_alias"),
        create_alias("emoji alias", "🔥🔥🔥", 400, "invalid_alias"),
        create_alias("reserved alias", "api", 400, "invalid_alias"),
        create_alias(
            "reserved alias, other case",
            "HealthZ",
            400,
            "invalid_alias",
        ),
        create_alias(
            "SQL in alias",
            "x'; DROP TABLE links;--",
            400,
            "invalid_alias",
        ),
        create_alias("alias collision", "taken-alias", 409, "alias_taken"),
        // Expiry.
        create(
            "negative expiry",
            r#"{"long_url":"https://example.com","expires_in_secs":-5}"#,
            400,
            "invalid_request",
        ),
        create(
            "both expiries",
            r#"{"long_url":"https://example.com","expires_in_secs":60,"expires_at":"2030-01-01T00:00:00Z"}"#,
            400,
            "invalid_request",
        ),
        // Paths, queries and methods.
        case("unknown code", "GET", "/nope-not-here", 404, "not_found"),
        case("code with dot", "GET", "/a.b", 404, "not_found"),
        case(
            "65-char code",
            "GET",
            &format!("/{}", "a".repeat(65)),
            404,
            "not_found",
        ),
        case(
            "SQL in code",
            "GET",
            "/%27%3B%20DROP%20TABLE%20links%3B--",
            404,
            "not_found",
        ),
        case(
            "SQL in details path",
            "GET",
            "/api/v1/links/%27%20OR%201%3D1",
            404,
            "not_found",
        ),
        case(
            "details of unknown code",
            "GET",
            "/api/v1/links/unknown-code",
            404,
            "not_found",
        ),
        case(
            "delete unknown code",
            "DELETE",
            "/api/v1/links/unknown-code",
            404,
            "not_found",
        ),
        case(
            "garbage cursor",
            "GET",
            "/api/v1/links?cursor=%00%01garbage",
            400,
            "invalid_query",
        ),
        case(
            "negative page size",
            "GET",
            "/api/v1/links?limit=-1",
            400,
            "invalid_query",
        ),
        case(
            "stats with bad from",
            "GET",
            "/api/v1/links/taken-alias/stats?from=yesterday",
            400,
            "invalid_query",
        ),
        case(
            "PUT on links",
            "PUT",
            "/api/v1/links",
            405,
            "method_not_allowed",
        ),
        case(
            "PATCH without a body",
            "PATCH",
            "/api/v1/links/taken-alias",
            415,
            "unsupported_media_type",
        ),
        case(
            "POST on a redirect",
            "POST",
            "/taken-alias",
            405,
            "method_not_allowed",
        ),
        case(
            "DELETE on a redirect",
            "DELETE",
            "/taken-alias",
            405,
            "method_not_allowed",
        ),
    ];
    // Descriptive fields, query forwarding and UTM parameters, on create and on edit.
    let field_cases: [(&'static str, serde_json::Value, &'static str); 20] = [
        (
            "title too long",
            serde_json::json!({ "title": "t".repeat(201) }),
            "invalid_title",
        ),
        (
            "title with NUL",
            serde_json::json!({ "title": "a\u{0}b" }),
            "invalid_title",
        ),
        (
            "description with bell",
            serde_json::json!({ "description": "\u{7}" }),
            "invalid_description",
        ),
        (
            "description too long",
            serde_json::json!({ "description": "d".repeat(1001) }),
            "invalid_description",
        ),
        (
            "tag with space",
            serde_json::json!({ "tags": ["two words"] }),
            "invalid_tags",
        ),
        (
            "empty tag",
            serde_json::json!({ "tags": [""] }),
            "invalid_tags",
        ),
        (
            "21 tags",
            serde_json::json!({ "tags": (0..21).map(|i| format!("t{i}")).collect::<Vec<_>>() }),
            "invalid_tags",
        ),
        (
            "tags not a list",
            serde_json::json!({ "tags": "a,b" }),
            "invalid_json",
        ),
        (
            "forward_query not a bool",
            serde_json::json!({ "forward_query": "no" }),
            "invalid_json",
        ),
        (
            "empty utm_source",
            serde_json::json!({ "utm": { "source": "" } }),
            "invalid_utm",
        ),
        (
            "utm with control character",
            serde_json::json!({ "utm": { "campaign": "a\nb" } }),
            "invalid_utm",
        ),
        (
            "unknown utm field",
            serde_json::json!({ "utm": { "id": "x" } }),
            "invalid_json",
        ),
        (
            "max_visits zero",
            serde_json::json!({ "max_visits": 0 }),
            "invalid_max_visits",
        ),
        (
            "max_visits negative",
            serde_json::json!({ "max_visits": -5 }),
            "invalid_max_visits",
        ),
        (
            "max_visits not a number",
            serde_json::json!({ "max_visits": "10" }),
            "invalid_json",
        ),
        (
            "expired_url to a file: URL",
            serde_json::json!({ "expired_url": "file:///etc/passwd" }),
            "invalid_expired_url",
        ),
        (
            "expired_url to the metadata service",
            serde_json::json!({ "expired_url": "http://169.254.169.254/" }),
            "invalid_expired_url",
        ),
        (
            "3-character password",
            serde_json::json!({ "password": "abc" }),
            "invalid_password",
        ),
        (
            "129-character password",
            serde_json::json!({ "password": "p".repeat(129) }),
            "invalid_password",
        ),
        (
            "password not a string",
            serde_json::json!({ "password": 1234 }),
            "invalid_json",
        ),
    ];
    for (name, fields, code) in field_cases {
        let mut body = fields.clone();
        body["long_url"] = "https://example.com/never".into();
        cases.push(create(name, body.to_string(), 400, code));
        let mut c = case(name, "PATCH", "/api/v1/links/taken-alias", 400, code);
        c.headers.push(("content-type", "application/json".into()));
        c.body = fields.to_string().into_bytes();
        cases.push(c);
    }
    for (name, body, status, code) in [
        (
            "edit to a javascript: URL",
            r#"{"long_url":"javascript:alert(1)"}"#,
            400,
            "invalid_url",
        ),
        ("edit changing nothing", "{}", 400, "invalid_request"),
        (
            "edit renaming the code",
            r#"{"alias":"other"}"#,
            400,
            "invalid_json",
        ),
        (
            "edit with both expiries",
            r#"{"expires_at":null,"expires_in_secs":5}"#,
            400,
            "invalid_request",
        ),
    ] {
        let mut c = case(name, "PATCH", "/api/v1/links/taken-alias", status, code);
        c.headers.push(("content-type", "application/json".into()));
        c.body = body.into();
        cases.push(c);
    }
    // Redirect rules, on create and on edit.
    let rule_cases: [(&'static str, serde_json::Value, &'static str); 9] = [
        (
            "rule without a condition",
            serde_json::json!([{ "long_url": "https://e.com/" }]),
            "invalid_rules",
        ),
        (
            "rule to a javascript: URL",
            serde_json::json!([{ "long_url": "javascript:alert(1)", "device": "ios" }]),
            "invalid_rules",
        ),
        (
            "rule to a private address",
            serde_json::json!([{ "long_url": "http://169.254.169.254/", "device": "ios" }]),
            "invalid_rules",
        ),
        (
            "rule for an unknown device",
            serde_json::json!([{ "long_url": "https://e.com/", "device": "fridge" }]),
            "invalid_rules",
        ),
        (
            "rule for a 3-letter country",
            serde_json::json!([{ "long_url": "https://e.com/", "countries": ["DEU"] }]),
            "invalid_rules",
        ),
        (
            "rule for a malformed language",
            serde_json::json!([{ "long_url": "https://e.com/", "languages": ["de_DE"] }]),
            "invalid_rules",
        ),
        (
            "11 rules",
            serde_json::json!(vec![
                serde_json::json!({ "long_url": "https://e.com/", "device": "ios" });
                11
            ]),
            "invalid_rules",
        ),
        (
            "rule with an unknown condition",
            serde_json::json!([{ "long_url": "https://e.com/", "os": "ios" }]),
            "invalid_json",
        ),
        (
            "rules not a list",
            serde_json::json!({ "long_url": "https://e.com/" }),
            "invalid_json",
        ),
    ];
    for (name, rules, code) in rule_cases {
        let body =
            serde_json::json!({ "long_url": "https://example.com/never", "redirect_rules": rules });
        cases.push(create(name, body.to_string(), 400, code));
        let mut c = case(name, "PATCH", "/api/v1/links/taken-alias", 400, code);
        c.headers.push(("content-type", "application/json".into()));
        c.body = serde_json::json!({ "redirect_rules": rules })
            .to_string()
            .into_bytes();
        cases.push(c);
    }
    let mut c = case(
        "edit of an unknown code",
        "PATCH",
        "/api/v1/links/unknown-code",
        404,
        "not_found",
    );
    c.headers.push(("content-type", "application/json".into()));
    c.body = br#"{"title":"x"}"#.to_vec();
    cases.push(c);
    for (name, query) in [
        ("list with unknown order", "order=popular"),
        ("list with a bad tag", "tags=a%20b"),
        ("list with a bad date", "created_after=yesterday"),
        (
            "list with an empty date range",
            "created_after=2026-01-02T00:00:00Z&created_before=2026-01-01T00:00:00Z",
        ),
        ("list with an offset cursor by date", "cursor=o100"),
    ] {
        cases.push(case(
            name,
            "GET",
            &format!("/api/v1/links?{query}"),
            400,
            "invalid_query",
        ));
    }
    for (name, path, status, code) in [
        (
            "QR as GIF",
            "/api/v1/links/taken-alias/qr?format=gif",
            400,
            "invalid_query",
        ),
        (
            "QR of 1 pixel",
            "/api/v1/links/taken-alias/qr?size=1",
            400,
            "invalid_query",
        ),
        (
            "QR of negative size",
            "/api/v1/links/taken-alias/qr?size=-300",
            400,
            "invalid_query",
        ),
        (
            "QR of an unknown code",
            "/api/v1/links/unknown-code/qr",
            404,
            "not_found",
        ),
        (
            "public QR not made public",
            "/taken-alias/qr",
            404,
            "not_found",
        ),
        (
            "public QR with a bad size",
            "/taken-alias/qr?size=99999",
            400,
            "invalid_query",
        ),
    ] {
        cases.push(case(name, "GET", path, status, code));
    }
    let mut c = case(
        "password post to an unknown code",
        "POST",
        "/unknown-code",
        404,
        "not_found",
    );
    c.headers
        .push(("content-type", "application/x-www-form-urlencoded".into()));
    c.body = b"password=guess".to_vec();
    cases.push(c);
    for (name, path, ct, body, status, code) in [
        ("bulk with no links", "/api/v1/links/bulk", "application/json", r#"{"links":[]}"#.to_string(), 400, "invalid_request"),
        ("bulk of 1001 links", "/api/v1/links/bulk", "application/json", serde_json::json!({ "links": vec![serde_json::json!({ "long_url": "https://e.com/" }); 1001] }).to_string(), 400, "invalid_request"),
        ("bulk not a list", "/api/v1/links/bulk", "application/json", r#"{"links":{}}"#.to_string(), 400, "invalid_json"),
        ("import as JSON", "/api/v1/links/import", "application/json", "long_url\nhttps://e.com/\n".to_string(), 415, "unsupported_media_type"),
        ("import without a long_url column", "/api/v1/links/import", "text/csv", "alias,title\nx,y\n".to_string(), 400, "invalid_request"),
        ("import of binary garbage", "/api/v1/links/import", "text/csv", "\u{0}\u{1}\u{2}".to_string(), 400, "invalid_request"),
    ] {
        let mut c = case(name, "POST", path, status, code);
        c.headers.push(("content-type", ct.into()));
        c.body = body.into_bytes();
        cases.push(c);
    }
    cases.push(case(
        "export as XML",
        "GET",
        "/api/v1/links/export?format=xml",
        400,
        "invalid_query",
    ));
    for (name, query) in [
        ("orphan visits of 0 days", "days=0"),
        ("orphan visits of 367 days", "days=367"),
        ("orphan visits of some days", "days=some"),
    ] {
        cases.push(case(
            name,
            "GET",
            &format!("/api/v1/orphan-visits?{query}"),
            400,
            "invalid_query",
        ));
    }
    cases.push(case(
        "list with a 201-character q",
        "GET",
        &format!("/api/v1/links?q={}", "q".repeat(201)),
        400,
        "invalid_query",
    ));
    // Valid but unusual input is accepted and stored normalized.
    for (name, url) in [
        ("IDN host", "https://bücher.example.com/straße"),
        (
            "SQL-ish query string",
            "https://example.com/search?q=%27%20OR%201%3D1%3B--",
        ),
    ] {
        let mut c = create_url(name, url, 201, "");
        c.code = None;
        cases.push(c);
    }
    cases
}

/// A malformed topic message: (name, payload, schema-version header).
type BadMessage = (&'static str, Option<Vec<u8>>, Option<&'static str>);

fn topic_corpus(valid: &Click) -> Vec<BadMessage> {
    let good = valid.to_event();
    let with = |f: &dyn Fn(&mut ClickEvent)| {
        let mut e = good.clone();
        f(&mut e);
        Some(prost::Message::encode_to_vec(&e))
    };
    let in_batch = |f: &dyn Fn(&mut ClickEvent)| {
        let mut e = good.clone();
        f(&mut e);
        let mut batch = BatchWriter::default();
        batch.push(&e, Default::default());
        Some(batch.take().0)
    };
    let encoded = valid.encode();
    vec![
        (
            "garbage bytes",
            Some(b"\xff\xff\xff\xff garbage".to_vec()),
            Some("1"),
        ),
        (
            "truncated protobuf",
            Some(encoded[..encoded.len() / 2].to_vec()),
            Some("1"),
        ),
        ("empty payload", Some(Vec::new()), Some("1")),
        ("no payload (tombstone)", None, Some("1")),
        (
            "JSON instead of protobuf",
            Some(br#"{"short_code":"taken-alias"}"#.to_vec()),
            Some("1"),
        ),
        (
            "schema version 3 in header",
            Some(encoded.clone()),
            Some("3"),
        ),
        (
            "unreadable click batch",
            Some(b"\x0a\xff\xff garbage".to_vec()),
            Some("2"),
        ),
        (
            "single click where a batch is announced",
            Some(encoded.clone()),
            Some("2"),
        ),
        (
            "click batch holding an invalid click",
            in_batch(&|e| e.short_code.clear()),
            Some("2"),
        ),
        (
            "non-numeric schema header",
            Some(encoded.clone()),
            Some("one"),
        ),
        (
            "schema version 2 in payload",
            with(&|e| e.schema_version = 2),
            Some("1"),
        ),
        (
            "schema version 0 in payload",
            with(&|e| e.schema_version = 0),
            None,
        ),
        (
            "event_id not a UUID",
            with(&|e| e.event_id = "'; DROP TABLE clicks;--".into()),
            Some("1"),
        ),
        (
            "empty short code",
            with(&|e| e.short_code.clear()),
            Some("1"),
        ),
        (
            "65-char short code",
            with(&|e| e.short_code = "a".repeat(65)),
            Some("1"),
        ),
        (
            "missing timestamp",
            with(&|e| e.occurred_at = None),
            Some("1"),
        ),
        (
            "negative nanos",
            with(&|e| e.occurred_at.as_mut().unwrap().nanos = -1),
            Some("1"),
        ),
        ("bad IP", with(&|e| e.ip = "999.1.1.1".into()), Some("1")),
        (
            "3 KiB user agent",
            with(&|e| e.user_agent = "u".repeat(3000)),
            Some("1"),
        ),
        (
            "matched rule beyond any link's rules",
            with(&|e| e.matched_rule = 40_000),
            Some("1"),
        ),
    ]
}

async fn send(client: &reqwest::Client, base: &str, c: &Case) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(c.method.as_bytes()).unwrap();
    let mut req = client
        .request(method, format!("{base}{}", c.path))
        .body(c.body.clone());
    for (k, v) in &c.headers {
        req = req.header(*k, v);
    }
    req.send()
        .await
        .unwrap_or_else(|e| panic!("{}: request failed: {e}", c.name))
}

/// Sends a request with one header of `size` bytes on a raw connection; returns the
/// status line answered, empty when the server closed the connection instead.
async fn huge_header(base: &str, size: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /healthz HTTP/1.1\r\nhost: {addr}\r\nx-big: {}\r\n\r\n",
        "a".repeat(size)
    );
    // The server may answer and close before reading it all: a failed write is expected.
    let _ = stream.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("a 1 MB header must not hang the connection");
    if read.is_err() && answer.is_empty() {
        return String::new();
    }
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_documented_errors_and_stores_nothing_wrong() {
    let db = fresh_database().await;
    let broker = MockBroker::start();
    broker.create_topic("clicks", 2);
    broker.create_topic("clicks.dlq", 1);

    // url-api publishing clicks to the mock cluster.
    let mut config = Config::new(db.args(), KafkaArgs::new(broker.bootstrap(), "clicks"));
    config.api_keys = format!("corpus:{KEY}");
    config.rate_limit_per_second = 100_000;
    config.rate_limit_burst = 100_000;
    config.read_rate_limit_burst = 50;
    config.public_base_url = "https://sho.rt".into();
    // The client stands for the proxy reporting each client's address (IPv6 rotation).
    config.trusted_proxies = url_api::config::parse_proxies("127.0.0.1").unwrap();
    let state = AppState::new(&config, db.pool.clone()).expect("url-api state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(url_api::serve(listener, state, async {
        let _ = api_stopped.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // The one link the collision case collides with, and one redirect through it.
    let resp = send(
        &client,
        &base,
        &create_alias("setup", "taken-alias", 201, ""),
    )
    .await;
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    let resp = client
        .get(format!("{base}/taken-alias"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);

    let corpus = http_corpus();
    let mut failures = Vec::new();
    for c in &corpus {
        let resp = send(&client, &base, c).await;
        let status = resp.status().as_u16();
        // A body refused unread closes the connection, and the answer says so: a client
        // must not queue its next request on that socket.
        let closes = resp
            .headers()
            .get("connection")
            .is_some_and(|v| v == "close");
        if status == 413 && !closes {
            failures.push(format!("{}: 413 without `connection: close`", c.name));
        }
        let json = resp
            .headers()
            .get("content-type")
            .is_some_and(|v| v == "application/json");
        let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
        let code = body["error"]["code"].as_str().map(str::to_string);
        // A HEAD answer has the headers of the GET answer and no body.
        let head = c.method == "HEAD";
        let ok = status == c.status
            && json
            && (head
                || match c.code {
                    Some(want) => {
                        code.as_deref() == Some(want) && body["error"]["message"].is_string()
                    }
                    None => body["code"].is_string(),
                });
        if !ok {
            failures.push(format!(
                "{}: want {} {:?}, got {status} {:?} (json: {json})",
                c.name, c.status, c.code, code
            ));
        }
        assert_ne!(status, 500, "{}: 500", c.name);
    }

    // IPv6 rotation inside one /64: every address of it shares one read bucket (burst 50,
    // then 100 a second), whatever key it guesses.
    let (mut unauthorized, mut limited) = (0, 0);
    for i in 0..300u32 {
        let resp = client
            .head(format!("{base}/api/v1/links"))
            .header("x-forwarded-for", format!("2001:db8:5:5:{i:x}::{i:x}"))
            .header("authorization", format!("Bearer guess-{i}"))
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            401 => unauthorized += 1,
            429 => limited += 1,
            other => failures.push(format!("IPv6 rotation: got {other}")),
        }
    }
    assert!(
        limited >= 100 && unauthorized + limited == 300,
        "IPv6 rotation in a /64: {unauthorized} answered 401, {limited} limited"
    );

    // 10 000 random codes from one client, 16 at a time: past its budget of cache misses
    // (burst 200, then 50 a second) each is refused with 429 and no query; the real link,
    // cached, keeps redirecting the same client.
    let started = std::time::Instant::now();
    let mut scans = Vec::new();
    for task in 0..16u32 {
        let (client, base) = (client.clone(), base.clone());
        scans.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..625u32 {
                let resp = client
                    .get(format!("{base}/scan{task:02}x{i:04}"))
                    .send()
                    .await
                    .unwrap();
                statuses.push(resp.status().as_u16());
            }
            statuses
        }));
    }
    let mut scanned = std::collections::BTreeMap::<u16, usize>::new();
    for scan in scans {
        for status in scan.await.unwrap() {
            *scanned.entry(status).or_default() += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let looked_up = scanned.get(&404).copied().unwrap_or(0);
    let refused = scanned.get(&429).copied().unwrap_or(0);
    println!(
        "10 000 random codes in {elapsed:.1} s ({:.0}/s): {looked_up} looked up (404), {refused} refused (429)",
        10_000.0 / elapsed
    );
    assert_eq!(looked_up + refused, 10_000, "{scanned:?}");
    assert!(
        (looked_up as f64) <= 200.0 + 50.0 * elapsed + 16.0,
        "{looked_up} lookups reached the database in {elapsed:.1} s"
    );
    // HEAD, so the tables below hold only the corpus's clicks. Another client's lookup
    // first, in case a change notification dropped the link from the cache meanwhile.
    let resp = client
        .head(format!("{base}/taken-alias"))
        .header("x-forwarded-for", "192.0.2.77")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 302);
    let resp = client
        .head(format!("{base}/taken-alias"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        302,
        "the real link keeps redirecting the scanner"
    );

    // A 1 MB header: refused (431) or the connection closed, never served or hung; the
    // server keeps serving.
    let answer = huge_header(&base, 1 << 20).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "1 MB header answered {answer:?}"
    );
    let resp = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "served after a 1 MB header");

    // Malformed messages on the topic, plus valid events (one delivered twice).
    let valid: Vec<Click> = (0..3)
        .map(|i| {
            Click::now(
                "taken-alias",
                Some(format!("198.51.100.{i}").parse().unwrap()),
                Some("Mozilla/5.0".into()),
                None,
            )
        })
        .collect();
    let bad = topic_corpus(&valid[0]);
    let version = SCHEMA_VERSION.to_string();
    for click in valid.iter().chain(std::iter::once(&valid[0])) {
        broker
            .produce(
                "clicks",
                Some(b"taken-alias"),
                &click.encode(),
                &[(HEADER_SCHEMA_VERSION, version.as_bytes())],
            )
            .await;
    }
    for (name, payload, header) in &bad {
        let headers: Vec<(&str, &[u8])> = header
            .iter()
            .map(|h| (HEADER_SCHEMA_VERSION, h.as_bytes()))
            .collect();
        let record =
            rdkafka::producer::FutureRecord::<[u8], [u8]>::to("clicks").key(name.as_bytes());
        let record = match payload {
            Some(p) => record.payload(p.as_slice()),
            None => record,
        };
        let mut owned = rdkafka::message::OwnedHeaders::new();
        for (k, v) in headers {
            owned = owned.insert(rdkafka::message::Header {
                key: k,
                value: Some(v),
            });
        }
        broker
            .producer()
            .send(record.headers(owned), Duration::from_secs(30))
            .await
            .unwrap_or_else(|(e, _)| panic!("produce {name}: {e}"));
    }

    let mut args = ConsumerArgs::new(KafkaArgs::new(broker.bootstrap(), "clicks"), db.args());
    args.batch_max_wait_ms = 50;
    let app = ConsumerApp::new(args).await.expect("consumer");
    let metrics = app.metrics();
    let (stop_consumer, consumer_stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = tokio::spawn(app.run(async {
        let _ = consumer_stopped.await;
    }));

    // The DLQ gets exactly the malformed messages, each with a reason.
    let dead = broker
        .consume_all("clicks.dlq", bad.len(), Duration::from_secs(60))
        .await;
    let mut dead_keys: Vec<String> = dead
        .iter()
        .map(|m| String::from_utf8_lossy(m.key.as_deref().unwrap_or_default()).into_owned())
        .collect();
    dead_keys.sort();
    let mut want_keys: Vec<String> = bad.iter().map(|(n, _, _)| n.to_string()).collect();
    want_keys.sort();
    assert_eq!(dead_keys, want_keys);
    assert!(dead
        .iter()
        .all(|m| m.header(HEADER_DLQ_ERROR).is_some_and(|e| !e.is_empty())));

    // 1 redirect + 3 produced valid events (one redelivered) = 4 clicks, nothing else.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while metrics.stored.get() < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop_consumer.send(());
    consumer.await.unwrap().unwrap();
    let _ = stop_api.send(());
    api.await.unwrap().unwrap();

    let clicks: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT event_id, short_code FROM clicks ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(clicks.len(), 4, "{clicks:?}");
    assert!(clicks.iter().all(|(_, code)| code == "taken-alias"));
    for v in &valid {
        assert_eq!(clicks.iter().filter(|(id, _)| *id == v.event_id).count(), 1);
    }
    let links: Vec<(String, String)> =
        sqlx::query_as("SELECT short_code, long_url FROM links ORDER BY id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let urls: Vec<&str> = links.iter().map(|(_, u)| u.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://example.com/a",
            "https://xn--bcher-kva.example.com/stra%C3%9Fe",
            "https://example.com/search?q=%27%20OR%201%3D1%3B--",
        ],
        "only the valid creations are stored, normalized"
    );

    assert!(
        corpus.len() + bad.len() >= 50,
        "corpus has {} cases",
        corpus.len() + bad.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} HTTP cases answered wrongly:\n{}",
        failures.len(),
        corpus.len(),
        failures.join("\n")
    );
}

/// The idle timeout of the corpus's own server: short, so the case takes about a second
/// rather than the minute a client may try to hold a connection for.
const IDLE_TIMEOUT: Duration = Duration::from_millis(500);

/// Reads from `stream` until the server closes it; how long that took after `since`, and
/// whatever arrived.
async fn held_until_closed(
    stream: &mut tokio::net::TcpStream,
    since: std::time::Instant,
) -> (Duration, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    // A connection the server never closes fails here after the minute of the issue.
    let closed = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "connection held open for 60 s");
    (since.elapsed(), seen)
}

/// Connections held open without a request: one that never sends a byte, a keep-alive
/// connection left idle after its request, and a request head sent halfway. Each is closed
/// by the server, unanswered, once the header timeout (HEADER_READ_TIMEOUT_MS, which is also
/// the keep-alive idle timeout) passes, and not before; other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed_at_the_idle_timeout() {
    use tokio::io::AsyncWriteExt;
    // Production closes a connection idle for 60 s after 10 s.
    assert_eq!(url_api::config::DEFAULT_HEADER_READ_TIMEOUT_MS, 10_000);

    // No request here reaches the database or the broker.
    let mut config = Config::new(
        shortener_common::db::DatabaseArgs::with_url("postgres://shortener@127.0.0.1:1/none"),
        KafkaArgs::new("127.0.0.1:1", "clicks"),
    );
    config.clicks_enabled = false;
    config.header_read_timeout_ms = IDLE_TIMEOUT.as_millis() as u64;
    let pool = config.database.lazy_pool().unwrap();
    let state = AppState::new(&config, pool).expect("url-api state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api = tokio::spawn(url_api::serve(listener, state, async {
        let _ = api_stopped.await;
    }));
    let connect = || tokio::net::TcpStream::connect(addr);
    // `serve` accepts once it gave up waiting for its change listener (no database here):
    // the timeouts below are measured from then on.
    let resp = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let silent_since = std::time::Instant::now();
    let mut silent = connect().await.unwrap();
    let mut half = connect().await.unwrap();
    half.write_all(b"POST /api/v1/links HTTP/1.1\r\nHost: sho.rt\r\nContent-Ty")
        .await
        .unwrap();
    let half_since = std::time::Instant::now();
    let mut idle = connect().await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: sho.rt\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0u8; 256];
    let n = tokio::io::AsyncReadExt::read(&mut idle, &mut first)
        .await
        .unwrap();
    let idle_since = std::time::Instant::now();
    assert!(
        first[..n].starts_with(b"HTTP/1.1 200"),
        "keep-alive request served"
    );

    // While those are held, a prompt client on its own connections is served.
    let prompt = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut served = 0;
        let until = std::time::Instant::now() + IDLE_TIMEOUT;
        while std::time::Instant::now() < until {
            let resp = client
                .get(format!("http://{addr}/healthz"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            served += 1;
        }
        served
    });

    let mut closed_after = Vec::new();
    for (what, stream, since) in [
        ("silent", &mut silent, silent_since),
        ("half-sent head", &mut half, half_since),
        ("idle keep-alive", &mut idle, idle_since),
    ] {
        let (after, seen) = held_until_closed(stream, since).await;
        assert!(
            seen.is_empty(),
            "{what}: answered {:?}",
            String::from_utf8_lossy(&seen)
        );
        // The keep-alive timer starts as the response leaves, a moment before it is read.
        assert!(
            after >= IDLE_TIMEOUT.mul_f64(0.8),
            "{what}: closed after {after:?}, before the idle timeout"
        );
        assert!(
            after < IDLE_TIMEOUT + Duration::from_secs(5),
            "{what}: closed only after {after:?}"
        );
        closed_after.push(format!("{what} {} ms", after.as_millis()));
    }
    let served = prompt.await.unwrap();
    assert!(served > 0, "a prompt client was served meanwhile");
    println!(
        "idle timeout {} ms: closed {}; {served} prompt requests served meanwhile",
        IDLE_TIMEOUT.as_millis(),
        closed_after.join(", ")
    );
    let _ = stop_api.send(());
    api.await.unwrap().unwrap();
}
