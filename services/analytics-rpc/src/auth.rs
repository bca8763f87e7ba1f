//! The shared token between url-api and analytics-rpc: with `RPC_AUTH_TOKEN` set, every
//! AnalyticsService call must carry `authorization: Bearer <token>`, or it fails with
//! UNAUTHENTICATED. The health and reflection services stay open (probes use them; they
//! reveal no data).

use std::sync::Arc;

use subtle::ConstantTimeEq;
use tonic::{Request, Status};

/// A secret token; `Debug` never shows it.
#[derive(Clone)]
pub struct SharedToken(Arc<str>);

impl std::fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedToken(***)")
    }
}

impl std::str::FromStr for SharedToken {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() < 16 {
            return Err("the token must be at least 16 characters long".into());
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token must be printable ASCII without spaces".into());
        }
        Ok(Self(s.into()))
    }
}

impl SharedToken {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The interceptor: passes everything when `token` is None.
pub fn check(
    token: Option<SharedToken>,
) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |req: Request<()>| {
        let Some(token) = &token else {
            return Ok(req);
        };
        let presented = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if presented.as_bytes().ct_eq(token.as_str().as_bytes()).into() {
            Ok(req)
        } else {
            Err(Status::unauthenticated("missing or wrong bearer token"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: Option<&str>) -> Request<()> {
        let mut req = Request::new(());
        if let Some(v) = value {
            req.metadata_mut()
                .insert("authorization", v.parse().unwrap());
        }
        req
    }

    #[test]
    fn only_the_token_passes_when_one_is_set() {
        let token: SharedToken = "0123456789abcdef-token".parse().unwrap();
        let check = check(Some(token));
        assert!(check(with_auth(Some("Bearer 0123456789abcdef-token"))).is_ok());
        for bad in [
            None,
            Some("Bearer nope"),
            Some("Bearer 0123456789abcdef-toke"),
            Some("0123456789abcdef-token"),
            Some("Basic 0123456789abcdef-token"),
        ] {
            let err = check(with_auth(bad)).unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{bad:?}");
        }
        let open = super::check(None);
        assert!(open(with_auth(None)).is_ok());
    }

    #[test]
    fn tokens_are_long_printable_and_never_shown() {
        assert!("short".parse::<SharedToken>().is_err());
        assert!("has a space in it!!".parse::<SharedToken>().is_err());
        let t: SharedToken = "0123456789abcdef-token".parse().unwrap();
        assert!(!format!("{t:?}").contains("0123"));
    }
}
