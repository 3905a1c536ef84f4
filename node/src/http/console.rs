//! `GET /console` and `GET /console/assets/{file}`: the web console, a single page of static
//! assets compiled into the binary (`node/console/`; `cargo build` alone produces it — no npm,
//! no CDN, no third-party origin at run time). The page signs in at the node's own token
//! endpoint and then calls the public API like any other client: the console has no route or
//! privilege of its own.
//!
//! Every console response carries a strict Content-Security-Policy (scripts, styles and
//! connections from this origin only, no inline script or style, no framing), `X-Frame-Options:
//! DENY`, `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`; every asset has
//! an ETag (a digest of its bytes) and `Cache-Control: no-cache`, so a browser revalidates
//! (304) and an upgraded node's assets are never mixed with a cached older page.

use warp::http::{header, HeaderValue, StatusCode};
use warp::Rejection;

use crate::app::{AppState, ErrorCode};
use crate::http::error::ApiError;
use crate::http::extract::{conditional, Params};
use crate::model::ErrorBody;

/// The console's Content-Security-Policy: nothing but this origin, no inline code, no framing.
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
form-action 'self'";

/// The page and its assets: name, media type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/api.js"),
    ),
    (
        "dom.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/dom.js"),
    ),
    (
        "charts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/charts.js"),
    ),
    (
        "pages.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/pages.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/console.css"),
    ),
    (
        "icon.svg",
        "image/svg+xml",
        include_bytes!("../../console/icon.svg"),
    ),
];

const INDEX: &[u8] = include_bytes!("../../console/index.html");

/// The ETag of the page or of an asset, computed once per process (they are compiled in).
fn etag(body: &'static [u8]) -> &'static str {
    static ETAGS: std::sync::OnceLock<std::collections::HashMap<usize, String>> =
        std::sync::OnceLock::new();
    let etags = ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|(_, _, b)| *b)
            .chain([INDEX])
            .map(|b| (b.as_ptr() as usize, crate::app::artifacts::etag_of(b)))
            .collect()
    });
    match etags.get(&(body.as_ptr() as usize)) {
        Some(e) => e,
        None => "\"\"",
    }
}

/// The console's security headers, on every console response (including 304 and 404).
fn secure(mut resp: warp::reply::Response) -> warp::reply::Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// `body` with its ETag and `Cache-Control: no-cache` (revalidate every time: asset names carry
/// no version); 304 when `If-None-Match` names it.
fn asset_reply(
    body: &'static [u8],
    content_type: &'static str,
    if_none_match: Option<&str>,
) -> warp::reply::Response {
    let mut resp = conditional(
        bytes::Bytes::from_static(body),
        etag(body),
        content_type,
        if_none_match,
        0,
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    secure(resp)
}

/// The console: one HTML page (a single-page application with hash routes; sign-in with an
/// organization admin's or the instance admin's client id and secret, exchanged at the token
/// endpoint). Served with a strict Content-Security-Policy.
#[utoipa::path(get, operation_id = "getConsole", path = "/console", tag = "Console",
    responses((status = 200, description = "The console's HTML page", body = String, content_type = "text/html")))]
pub(crate) async fn page(
    _p: Params,
    if_none_match: Option<String>,
    _state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    Ok(asset_reply(
        INDEX,
        "text/html; charset=utf-8",
        if_none_match.as_deref(),
    ))
}

/// A script, stylesheet or image of the console.
#[utoipa::path(get, operation_id = "getConsoleAsset", path = "/console/assets/{file}", tag = "Console",
    params(("file" = String, Path, description = "Asset name, e.g. `app.js`")),
    responses((status = 200, description = "The asset", content((String = "text/javascript"), (String = "text/css"), (String = "image/svg+xml"))),
        (status = 404, description = "ASSET_NOT_FOUND", body = ErrorBody)))]
pub(crate) async fn asset(
    p: Params,
    if_none_match: Option<String>,
    _state: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let name = p.raw("file");
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => {
            Ok(asset_reply(body, content_type, if_none_match.as_deref()))
        }
        None => Ok(secure(
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::AssetNotFound,
                "The console has no asset of that name.",
            )
            .into_response(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(path: &str, inm: Option<&str>) -> warp::http::Response<bytes::Bytes> {
        let dir = tempfile::tempdir().unwrap();
        let filter = crate::http::routes(crate::app::testing::state(dir.path()).await);
        let mut req = warp::test::request().method("GET").path(path);
        if let Some(v) = inm {
            req = req.header("if-none-match", v);
        }
        req.reply(&filter).await
    }

    #[tokio::test]
    async fn the_page_and_its_assets_carry_the_security_headers() {
        for path in [
            "/console",
            "/console/",
            "/console/assets/app.js",
            "/console/assets/nope.js",
        ] {
            let resp = get(path, None).await;
            let h = resp.headers();
            assert_eq!(h["content-security-policy"], CSP, "{path}");
            assert_eq!(h["x-frame-options"], "DENY", "{path}");
            assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
            assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        }
        let resp = get("/console", None).await;
        assert_eq!(resp.status(), 200);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        let missing = get("/console/assets/nope.js", None).await;
        assert_eq!(missing.status(), 404);
        let body: serde_json::Value = serde_json::from_slice(missing.body()).unwrap();
        assert_eq!(body["code"], "ASSET_NOT_FOUND");
    }

    #[tokio::test]
    async fn assets_revalidate_with_their_etag() {
        let first = get("/console/assets/console.css", None).await;
        assert_eq!(first.status(), 200);
        assert_eq!(first.headers()["cache-control"], "no-cache");
        let tag = first.headers()["etag"].to_str().unwrap().to_string();
        let again = get("/console/assets/console.css", Some(&tag)).await;
        assert_eq!(again.status(), 304);
        assert!(again.body().is_empty());
        let other = get("/console/assets/console.css", Some("\"other\"")).await;
        assert_eq!(other.status(), 200);
    }

    /// The page loads only same-origin assets that exist, with no inline script or style
    /// (which the CSP would block), and nothing in the assets writes HTML from strings.
    #[test]
    fn the_page_refers_only_to_embedded_assets_and_has_no_inline_code() {
        let html = std::str::from_utf8(INDEX).unwrap();
        for attr in ["src=\"", "href=\""] {
            for part in html.split(attr).skip(1) {
                let url = part.split('"').next().unwrap();
                let name = url
                    .strip_prefix("/console/assets/")
                    .unwrap_or_else(|| panic!("{url} is not a console asset"));
                assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "{url} missing");
            }
        }
        assert!(!html.contains("style="), "inline style attribute");
        assert!(!html.contains("<style"), "inline style element");
        assert!(!html.contains("<script>"), "inline script");
        for (name, _, body) in ASSETS {
            let text = std::str::from_utf8(body).unwrap();
            for bad in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
            ] {
                assert!(!text.contains(bad), "{name} uses {bad}");
            }
        }
    }
}
