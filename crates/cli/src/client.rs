//! The only part that talks to the network: sends an [`ApiRequest`] with the API key and
//! turns the answer into a body or a [`CliError`].

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Deserialize;

use crate::config::Settings;
use crate::error::CliError;
use crate::request::{ApiRequest, Body, Method};

/// Longest wait for one answer; a QR code or a page of links takes milliseconds.
const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Client {
    http: reqwest::Client,
    settings: Settings,
}

/// A successful answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Client {
    pub fn new(settings: Settings) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            // A redirect would be answered by the short link, not the API.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("shortener-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Usage(format!("cannot set up HTTP: {e}")))?;
        Ok(Self { http, settings })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub async fn send(&self, req: ApiRequest) -> Result<Answer, CliError> {
        let method = match req.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        };
        let url = req.url.to_string();
        let mut builder = self
            .http
            .request(method, req.url)
            .bearer_auth(&self.settings.api_key);
        match req.body {
            Some(Body::Json(v)) => builder = builder.json(&v),
            Some(Body::Csv(bytes)) => {
                builder = builder
                    .header(reqwest::header::CONTENT_TYPE, "text/csv")
                    .body(bytes)
            }
            None => {}
        }
        let unreachable = |e: reqwest::Error| CliError::Unreachable {
            url: url.clone(),
            reason: describe(&e),
        };
        let resp = builder.send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let retry_after = retry_after(resp.headers());
        let body = resp.bytes().await.map_err(unreachable)?.to_vec();
        if (200..300).contains(&status) {
            Ok(Answer { status, body })
        } else {
            Err(api_error(status, retry_after, &body))
        }
    }

    /// A JSON answer.
    pub async fn json(&self, req: ApiRequest) -> Result<serde_json::Value, CliError> {
        let answer = self.send(req).await?;
        serde_json::from_slice(&answer.body).map_err(|e| CliError::Api {
            status: answer.status,
            code: "invalid_response".into(),
            message: format!("the API's answer is not JSON: {e}"),
            retry_after: None,
        })
    }
}

/// Why a request failed, in the words of the innermost cause ("Connection refused (os
/// error 111)", a DNS or certificate error); reqwest's own message repeats the URL.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {} s", TIMEOUT.as_secs());
    }
    let mut innermost: Option<&dyn std::error::Error> = None;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        innermost = Some(s);
        source = s.source();
    }
    innermost.map_or_else(|| e.to_string(), |s| s.to_string())
}

fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// The API's `{"error":{"code","message"}}`; anything else (a proxy's HTML page, an
/// empty body) is reported by status with the start of the text.
pub fn api_error(status: u16, retry_after: Option<u64>, body: &[u8]) -> CliError {
    if let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) {
        return CliError::Api {
            status,
            code: error.code,
            message: error.message,
            retry_after,
        };
    }
    let text = String::from_utf8_lossy(body);
    let text: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let message = if text.is_empty() {
        "the API answered with an error and no explanation".to_owned()
    } else {
        format!("the API answered: {}", crate::format::truncate(&text, 200))
    };
    CliError::Api {
        status,
        code: "http_error".into(),
        message,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_becomes_code_and_message() {
        let e = api_error(
            400,
            None,
            br#"{"error":{"code":"invalid_url","message":"long_url must be http or https"}}"#,
        );
        assert_eq!(
            e.to_string(),
            "long_url must be http or https (invalid_url, HTTP 400)"
        );
        let e = api_error(
            429,
            Some(2),
            br#"{"error":{"code":"rate_limited","message":"too many requests"}}"#,
        );
        assert_eq!(
            e.to_string(),
            "too many requests (rate_limited, HTTP 429); retry in 2 s"
        );
    }

    #[test]
    fn other_bodies_are_reported_by_status() {
        let e = api_error(502, None, b"<html>\n  <body>Bad   Gateway</body>\n</html>");
        assert_eq!(
            e.to_string(),
            "the API answered: <html> <body>Bad Gateway</body> </html> (http_error, HTTP 502)"
        );
        let e = api_error(500, None, b"");
        assert!(e.to_string().contains("no explanation"), "{e}");
        let long = "x".repeat(1000);
        assert!(api_error(500, None, long.as_bytes()).to_string().len() < 260);
    }

    #[tokio::test]
    async fn unreachable_names_the_cause_once() {
        let settings = Settings {
            base_url: "http://127.0.0.1:1/".parse().unwrap(),
            api_key: "k".into(),
        };
        let client = Client::new(settings.clone()).unwrap();
        let req = crate::request::details(&settings.base_url, "abc");
        let e = client.send(req).await.unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with("cannot reach http://127.0.0.1:1/api/v1/links/abc: "),
            "{text}"
        );
        assert_eq!(text.matches("127.0.0.1:1").count(), 1, "{text}");
        assert!(text.to_lowercase().contains("refused"), "{text}");
        assert_eq!(e.exit_code(), crate::error::EXIT_UNREACHABLE);
    }

    #[test]
    fn retry_after_reads_seconds() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(7));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
