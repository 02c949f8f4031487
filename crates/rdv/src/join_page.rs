//! The browser join page: what a phone gets when it scans the host's QR code.
//!
//! The page is a peer of the jam like any other joiner (it speaks the same v3
//! rendezvous as MidiEditor, as the offerer), so all the server has to do is
//! hand out a few static files. They are compiled into the binary
//! (`include_str!`) because the jam runs on LANs with no internet: no CDN, no
//! build step, nothing to install next to the executable.
//!
//! Routes, below the base path (every other path falls through to the v3
//! routes, so `/` and `/health` answer exactly as before):
//!
//! | path | what |
//! |---|---|
//! | `GET /join`, `/join/`, `/join/<code>` | the page (the code may also be `?code=`) |
//! | `GET /join/app.js`, `/join/synth.js`, `/join/style.css` | its module, synth and style |
//! | `GET /join/config.json` | `{"iceServers":[...]}`: the host's STUN/TURN list |
//!
//! The config is served rather than baked into the page so one cached page
//! works whatever the host's ICE settings are. TURN credentials in it are
//! readable by anyone who can reach the rendezvous, exactly as they must be
//! for a browser to use them.

use std::sync::{Arc, RwLock};

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::server::Config;

const PAGE: &str = include_str!("../web/join.html");
const APP_JS: &str = include_str!("../web/app.js");
const SYNTH_JS: &str = include_str!("../web/synth.js");
const STYLE_CSS: &str = include_str!("../web/style.css");

/// The placeholder in `join.html` replaced by the base path (so the page
/// finds its files and the API under a prefix such as `/rdv`).
const BASE_MARK: &str = "%BASE%";
/// Replaced by this build's version: the page's `hello` says `client`
/// `midi-jam-web/<version>` and `appVersion` `<version>`.
const VERSION_MARK: &str = "%VERSION%";

/// Longest path segment taken as a code in `/join/<code>`. Real codes are 4
/// characters; a few more let the page say "that is not a code" in words
/// instead of a bare JSON 404 for a typo.
const MAX_CODE_IN_PATH: usize = 12;

/// One entry of `RTCConfiguration.iceServers`, as a browser reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebIceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The ICE servers the page is told to use, shared between the server and
/// whoever configures the jam: the host's STUN/TURN list is applied live
/// (no restart, no new code), so the next page that loads must get the new
/// list without the rendezvous being rebuilt. Clones share one list.
#[derive(Debug, Clone, Default)]
pub struct JoinIce(Arc<RwLock<Vec<WebIceServer>>>);

impl JoinIce {
    pub fn new(servers: Vec<WebIceServer>) -> JoinIce {
        JoinIce(Arc::new(RwLock::new(servers)))
    }

    /// Replaces the list for every page loaded from now on.
    pub fn set(&self, servers: Vec<WebIceServer>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = servers;
    }

    pub fn get(&self) -> Vec<WebIceServer> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PageConfig {
    ice_servers: Vec<WebIceServer>,
}

/// The page's answer to `path` (already below the base path), or `None` when
/// the path is not one of the page's, so the v3 routes take it.
pub fn respond(path: &str, method: &Method, config: &Config) -> Option<Response> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let rest = path.strip_prefix("/join")?;
    let rest = match rest {
        "" => "/",
        r if r.starts_with('/') => r,
        _ => return None,
    };
    Some(match &rest[1..] {
        "app.js" => file(APP_JS, "text/javascript; charset=utf-8"),
        "synth.js" => file(SYNTH_JS, "text/javascript; charset=utf-8"),
        "style.css" => file(STYLE_CSS, "text/css; charset=utf-8"),
        "config.json" => {
            let body = serde_json::to_string(&PageConfig {
                ice_servers: config.join_ice_servers.get(),
            })
            .unwrap_or_else(|_| r#"{"iceServers":[]}"#.to_owned());
            file(body, "application/json")
        }
        seg if seg.is_empty() || looks_like_code(seg) => page(&config.base_path),
        _ => return None,
    })
}

fn looks_like_code(seg: &str) -> bool {
    seg.len() <= MAX_CODE_IN_PATH && seg.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn page(base: &str) -> Response {
    let html = PAGE
        .replace(BASE_MARK, &escape_attr(base))
        .replace(VERSION_MARK, env!("CARGO_PKG_VERSION"));
    file(html, "text/html; charset=utf-8")
}

/// The base path goes into `href`/`src` attributes: escape what could end one.
fn escape_attr(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn file(body: impl Into<String>, content_type: &'static str) -> Response {
    let mut resp = (StatusCode::OK, body.into()).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // A host upgraded in place must not leave phones on a stale page.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // The page talks to its own origin only (the rendezvous); WebRTC is not
    // governed by connect-src, so peers are still reachable.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(path: &str, base: &str) -> Option<Response> {
        let config = Config {
            base_path: base.to_owned(),
            ..Config::default()
        };
        respond(path, &Method::GET, &config)
    }

    #[test]
    fn the_page_and_its_files_are_served_and_other_paths_fall_through() {
        for p in [
            "/join",
            "/join/",
            "/join/AB2C",
            "/join/ab2c",
            "/join/app.js",
            "/join/synth.js",
            "/join/style.css",
            "/join/config.json",
        ] {
            let r = get(p, "").unwrap_or_else(|| panic!("{p} not served"));
            assert_eq!(r.status(), StatusCode::OK, "{p}");
        }
        for p in [
            "/",
            "/health",
            "/joiner",
            "/join/x/y",
            "/join/../health",
            "/join/AAAAAAAAAAAAA",
            "/code/AB2C",
        ] {
            assert!(get(p, "").is_none(), "{p} should fall through");
        }
        let config = Config::default();
        assert!(respond("/join", &Method::POST, &config).is_none());
    }

    #[test]
    fn the_base_path_is_written_into_the_page_escaped() {
        assert!(PAGE.contains(BASE_MARK) && PAGE.contains(VERSION_MARK));
        let html = page("/rdv\"x");
        let ct = html.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(ct.starts_with("text/html"), "{ct}");
        assert_eq!(escape_attr("/rdv\"<x>&"), "/rdv&quot;&lt;x&gt;&amp;");
    }
}
