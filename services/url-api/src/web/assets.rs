//! The dashboard's static files, embedded in the binary. URLs carry a digest of the
//! content (`?v=`), so browsers may keep them for a year and still see every change.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    /// The same bytes gzipped, for browsers that accept it (the big file only).
    pub gzip: Option<&'static [u8]>,
}

macro_rules! asset {
    ($name:literal, $path:literal, $type:literal) => {
        Asset {
            name: $name,
            content_type: $type,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $path)),
            gzip: None,
        }
    };
}

pub static ASSETS: &[Asset] = &[
    asset!("app.css", "assets/app.css", "text/css; charset=utf-8"),
    asset!("app.js", "assets/app.js", "text/javascript; charset=utf-8"),
    // uPlot from the npm registry, pinned and checked by ./scripts/vendor-ui.
    Asset {
        gzip: Some(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/web/vendor/uplot/uPlot.iife.min.js.gz"
        ))),
        ..asset!(
            "uPlot.iife.min.js",
            "vendor/uplot/uPlot.iife.min.js",
            "text/javascript; charset=utf-8"
        )
    },
    asset!(
        "uPlot.min.css",
        "vendor/uplot/uPlot.min.css",
        "text/css; charset=utf-8"
    ),
];

/// The versioned URLs the templates link to.
pub struct AssetUrls {
    pub app_css: String,
    pub app_js: String,
    pub uplot_js: String,
    pub uplot_css: String,
}

fn url(name: &str) -> String {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .expect("asset is embedded");
    let digest = Sha256::digest(asset.bytes);
    format!("/ui/assets/{name}?v={}", &hex::encode(digest)[..12])
}

pub static URLS: LazyLock<AssetUrls> = LazyLock::new(|| AssetUrls {
    app_css: url("app.css"),
    app_js: url("app.js"),
    uplot_js: url("uPlot.iife.min.js"),
    uplot_css: url("uPlot.min.css"),
});

/// True when `Accept-Encoding` lists gzip (or `*`) without `q=0`.
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or_default();
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

/// `GET /ui/assets/{name}`.
pub async fn serve(Path(name): Path<String>, headers: HeaderMap) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut resp = match asset.gzip.filter(|_| accepts_gzip(&headers)) {
        Some(gz) => {
            let mut r = gz.into_response();
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        None => asset.bytes.into_response(),
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if asset.gzip.is_some() {
        h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded uPlot is byte for byte what ./scripts/vendor-ui verified from npm.
    #[test]
    fn vendored_files_match_their_recorded_digests() {
        let sums = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/web/vendor/uplot/SHA256SUMS"
        ));
        let mut checked = 0;
        for line in sums.lines() {
            let (digest, file) = line.split_once("  ").expect("sha256sum format");
            if let Some(asset) = ASSETS.iter().find(|a| a.name == file) {
                assert_eq!(hex::encode(Sha256::digest(asset.bytes)), digest, "{file}");
                checked += 1;
            }
        }
        assert_eq!(
            checked, 2,
            "uPlot's script and stylesheet are both recorded"
        );
    }

    #[test]
    fn gzip_is_chosen_only_when_accepted() {
        let h = |v: &'static str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
            m
        };
        assert!(accepts_gzip(&h("gzip, deflate, br, zstd")));
        assert!(accepts_gzip(&h("br;q=1.0, GZIP;q=0.5")));
        assert!(accepts_gzip(&h("*")));
        assert!(!accepts_gzip(&h("gzip;q=0, br")));
        assert!(!accepts_gzip(&h("identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn urls_carry_a_content_version() {
        assert!(URLS
            .uplot_js
            .starts_with("/ui/assets/uPlot.iife.min.js?v=19c8d4c6ad88"));
        assert_ne!(URLS.app_css, URLS.app_js);
    }
}
