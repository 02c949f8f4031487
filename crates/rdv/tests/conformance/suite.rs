//! Conformance of the rendezvous with the midi-rdv v3 wire contract
//! (`PROTOCOL.md`): every row of the endpoint table, the order in which each
//! route checks its inputs, and the constraints MidiEditor's client puts on a
//! server, all against a real server on a real loopback port.
//!
//! The suite is one module run by two test targets, each with its own
//! `harness` (how a server starts and what client talks to it):
//! `tests/conformance.rs` against one in-memory server, and
//! `tests/conformance_redis.rs` against two instances sharing one Redis,
//! requests alternating between them.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::common::{self, fake_sdp, Reply};
use super::harness::{client, start, start_with_clock, Server};
use rdv::Config;
use reqwest::Method;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const CODE_ALPHABET: &str = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";
const TTL: Duration = Duration::from_secs(300);

/// The three CORS headers, each present exactly once with exactly this value.
fn assert_cors(r: &Reply) {
    for (name, value) in [
        ("access-control-allow-origin", "*"),
        ("access-control-allow-methods", "GET, POST, OPTIONS"),
        ("access-control-allow-headers", "Content-Type"),
    ] {
        let all: Vec<_> = r.headers.get_all(name).iter().collect();
        assert_eq!(
            all.len(),
            1,
            "{name} must appear exactly once (status {}, body {})",
            r.status,
            r.text
        );
        assert_eq!(
            all[0].to_str().unwrap(),
            value,
            "{name} (status {}, body {})",
            r.status,
            r.text
        );
    }
}

/// What every JSON response must carry: the CORS headers, exactly
/// `Content-Type: application/json`, and a body that is JSON.
fn assert_json_reply(r: &Reply) {
    assert_cors(r);
    let ct: Vec<_> = r.headers.get_all("content-type").iter().collect();
    assert_eq!(ct.len(), 1, "one Content-Type (status {})", r.status);
    assert_eq!(
        ct[0].to_str().unwrap(),
        "application/json",
        "Content-Type (status {}, body {})",
        r.status,
        r.text
    );
    assert!(
        serde_json::from_str::<Value>(&r.text).is_ok(),
        "body is JSON (status {}): {:?}",
        r.status,
        r.text
    );
}

/// Exact status and exact body bytes of a JSON response.
fn expect_body(r: &Reply, status: u16, body: &str) {
    assert_json_reply(r);
    assert_eq!(r.status, status, "status; body was {}", r.text);
    assert_eq!(r.text, body, "exact body (status {})", r.status);
}

/// The exact `GET /code/<c>` body: sessionId first, then displayName.
fn session_body(session_id: &str, display_name: &str) -> String {
    format!(
        "{{\"sessionId\":{},\"displayName\":{}}}",
        serde_json::to_string(session_id).unwrap(),
        serde_json::to_string(display_name).unwrap()
    )
}

/// Exact status and exact `{"error":"..."}` body.
fn expect_error(r: &Reply, status: u16, message: &str) {
    expect_body(r, status, &json!({ "error": message }).to_string());
}

fn expect_ok(r: &Reply) {
    expect_body(r, 200, r#"{"ok":true}"#);
}

/// The keys of a JSON object in the order they appear on the wire
/// (`serde_json::Value` sorts them, so it cannot tell).
fn keys_in_order(text: &str) -> Vec<String> {
    struct Keys;
    impl<'de> Visitor<'de> for Keys {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
            let mut keys = Vec::new();
            while let Some((k, _)) = map.next_entry::<String, IgnoredAny>()? {
                keys.push(k);
            }
            Ok(keys)
        }
    }
    let mut de = serde_json::Deserializer::from_str(text);
    serde::Deserializer::deserialize_map(&mut de, Keys).expect("a JSON object")
}

/// Any request: method, URL, optional Content-Type, optional raw body.
/// Every reply is checked for the headers the contract puts on it: CORS on
/// all of them, and JSON with its Content-Type on all but 204 and HEAD.
async fn send(
    c: &reqwest::Client,
    method: Method,
    url: &str,
    content_type: Option<&str>,
    body: Option<String>,
) -> Reply {
    let head = method == Method::HEAD;
    let mut rb = c.request(method, url);
    if let Some(ct) = content_type {
        rb = rb.header("content-type", ct);
    }
    if let Some(b) = body {
        rb = rb.body(b);
    }
    checked(Reply::from(rb.send().await.unwrap()).await, head)
}

fn checked(r: Reply, head: bool) -> Reply {
    if r.status == 204 || head {
        assert_cors(&r);
    } else {
        assert_json_reply(&r);
    }
    r
}

/// `common::get`, with the reply checked.
async fn get(c: &reqwest::Client, url: &str) -> Reply {
    checked(common::get(c, url).await, false)
}

/// `common::post`, with the reply checked.
async fn post(c: &reqwest::Client, url: &str, body: Value) -> Reply {
    checked(common::post(c, url, body).await, false)
}

/// `common::post_raw`, with the reply checked.
async fn post_raw(c: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> Reply {
    checked(common::post_raw(c, url, body).await, false)
}

/// Like `common::open_session` (same body), but with the reply's headers and
/// shape checked. Returns (code, hostToken).
async fn open_session(c: &reqwest::Client, base: &str, name: &str) -> (String, String) {
    let r = post(
        c,
        &format!("{base}/session"),
        json!({"sessionId": "s-1", "displayName": name}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        keys_in_order(&r.text),
        ["code", "expiresInSec", "hostToken"]
    );
    let code = r.json["code"].as_str().unwrap().to_owned();
    assert_code_shape(&code);
    (code, r.json["hostToken"].as_str().unwrap().to_owned())
}

/// A GET as MidiEditor sends it: with `Content-Type: application/json`.
async fn get_like_midieditor(c: &reqwest::Client, url: &str) -> Reply {
    send(c, Method::GET, url, Some("application/json"), None).await
}

/// A 16-character joinerId like MidiEditor's.
fn jid(n: u32) -> String {
    format!("joiner-{n:09}")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn offer_url(base: &str, code: &str) -> String {
    format!("{base}/code/{code}/joiner-offer")
}

fn offers_url(base: &str, code: &str) -> String {
    format!("{base}/code/{code}/joiner-offers")
}

fn answer_post_url(base: &str, code: &str) -> String {
    format!("{base}/code/{code}/host-answer")
}

fn answer_get_url(base: &str, code: &str, joiner: &str) -> String {
    format!("{base}/code/{code}/host-answer/{joiner}")
}

async fn post_offer(c: &reqwest::Client, base: &str, code: &str, joiner: &str, sdp: &str) -> Reply {
    post(
        c,
        &offer_url(base, code),
        json!({"joinerId": joiner, "sdp": sdp}),
    )
    .await
}

async fn post_answer(
    c: &reqwest::Client,
    base: &str,
    code: &str,
    joiner: &str,
    sdp: &str,
) -> Reply {
    post(
        c,
        &answer_post_url(base, code),
        json!({"joinerId": joiner, "sdp": sdp}),
    )
    .await
}

/// The offers listed for `code`, as (joinerId, sdp, ts), after checking the
/// response's status, headers and exact shape.
async fn list_offers(c: &reqwest::Client, base: &str, code: &str) -> Vec<(String, String, u64)> {
    let r = get(c, &offers_url(base, code)).await;
    assert_json_reply(&r);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(keys_in_order(&r.text), ["offers"]);
    let items: Vec<(String, String, u64)> = r.json["offers"]
        .as_array()
        .expect("offers is an array")
        .iter()
        .map(|o| {
            (
                o["joinerId"].as_str().unwrap().to_owned(),
                o["sdp"].as_str().unwrap().to_owned(),
                o["ts"].as_u64().expect("ts is a non-negative integer"),
            )
        })
        .collect();
    // Byte-exact: {"offers":[{"joinerId":..,"sdp":..,"ts":..},...]}.
    let expected = format!(
        "{{\"offers\":[{}]}}",
        items
            .iter()
            .map(|(j, s, ts)| format!(
                "{{\"joinerId\":{},\"sdp\":{},\"ts\":{ts}}}",
                serde_json::to_string(j).unwrap(),
                serde_json::to_string(s).unwrap()
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(r.text, expected);
    items
}

fn ids(offers: &[(String, String, u64)]) -> Vec<&str> {
    offers.iter().map(|o| o.0.as_str()).collect()
}

fn assert_code_shape(code: &str) {
    assert_eq!(code.len(), 4, "code {code:?} has 4 characters");
    assert!(
        code.chars().all(|ch| CODE_ALPHABET.contains(ch)),
        "code {code:?} matches ^[{CODE_ALPHABET}]{{4}}$"
    );
}

/// Every server here holds plain polls, as by default, so each check below
/// also shows the hold changes no response, only its timing; but briefly,
/// because this suite makes many polls that have nothing new on purpose.
fn conf() -> Config {
    Config {
        hold_plain_polls: Duration::from_millis(20),
        ..Config::default()
    }
}

fn with_base(base_path: &str) -> Config {
    Config {
        base_path: base_path.into(),
        ..conf()
    }
}

async fn server() -> (Server, String, reqwest::Client) {
    let s = start(conf()).await;
    let url = s.url();
    (s, url, client())
}

// ---------------------------------------------------------------------------
// OPTIONS, / and /health
// ---------------------------------------------------------------------------

#[tokio::test]
async fn options_on_any_path_is_204_with_empty_body_and_cors() {
    let (s, base, c) = server().await;
    let (code, _) = open_session(&c, &base, "host").await;
    let paths = [
        "/".to_owned(),
        "/health".to_owned(),
        "/session".to_owned(),
        format!("/code/{code}"),
        format!("/code/{code}/joiner-offer"),
        format!("/code/{code}/joiner-offers"),
        format!("/code/{code}/host-answer"),
        format!("/code/{code}/host-answer/{}", jid(1)),
        "/code/ZZZZ/joiner-offer".to_owned(),
        "/no/such/path".to_owned(),
        "/code/abcd".to_owned(),
        "/rdv/session".to_owned(),
    ];
    for p in &paths {
        let r = send(&c, Method::OPTIONS, &format!("{base}{p}"), None, None).await;
        assert_eq!(r.status, 204, "OPTIONS {p}");
        assert_eq!(r.text, "", "OPTIONS {p} has an empty body");
        assert_cors(&r);
    }
    // A preflight as a browser sends it, with a body-less request.
    let r = c
        .request(Method::OPTIONS, format!("{base}/session"))
        .header("origin", "http://example.test")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    let r = Reply::from(r).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.text, "");
    assert_cors(&r);
    s.stop().await.unwrap();

    // Under a base path: inside and outside it, OPTIONS is still 204.
    let s = start(with_base("/rdv")).await;
    let root = format!("http://{}", s.addr);
    for p in [
        "/rdv",
        "/rdv/health",
        "/rdv/session",
        "/rdv/nope",
        "/elsewhere",
        "/",
    ] {
        let r = send(&c, Method::OPTIONS, &format!("{root}{p}"), None, None).await;
        assert_eq!(r.status, 204, "OPTIONS {p} under base path");
        assert_eq!(r.text, "");
        assert_cors(&r);
    }
    s.stop().await.unwrap();
}

/// Checks a `/health` body: the five contract fields in order with their
/// exact values, then only `extensions`, listing the opt-in extensions, and
/// `build`, the release (the workspace version; `version` stays the protocol's 3).
fn assert_health_body(r: &Reply) {
    assert_json_reply(r);
    assert_eq!(r.status, 200, "{}", r.text);
    let keys = keys_in_order(&r.text);
    assert_eq!(
        keys[..5],
        [
            "service",
            "version",
            "protocol",
            "maxPeersPerSession",
            "docs"
        ],
        "field order of {}",
        r.text
    );
    assert_eq!(
        keys[5..],
        ["extensions", "build"],
        "only `extensions` and `build` may follow"
    );
    assert_eq!(r.json["build"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r.json["service"], "midi-rdv");
    assert_eq!(r.json["version"], 3);
    assert_eq!(r.json["protocol"], "joiner-initiated-multi-peer");
    assert_eq!(r.json["maxPeersPerSession"], 8);
    assert!(
        r.json["docs"].as_str().is_some_and(|d| !d.is_empty()),
        "docs is a non-empty string"
    );
    assert!(
        r.text.starts_with(
            r#"{"service":"midi-rdv","version":3,"protocol":"joiner-initiated-multi-peer","maxPeersPerSession":8,"docs":""#
        ),
        "byte-exact prefix: {}",
        r.text
    );
    let ext: Vec<&str> = r.json["extensions"]
        .as_array()
        .expect("extensions is advertised")
        .iter()
        .map(|e| e.as_str().expect("extension names are strings"))
        .collect();
    for wanted in ["long-poll", "answer-protection"] {
        assert!(ext.contains(&wanted), "{wanted} in {ext:?}");
    }
}

#[tokio::test]
async fn root_and_health_answer_200_on_every_method() {
    let (s, base, c) = server().await;
    let custom = Method::from_bytes(b"PURGE").unwrap();
    for path in ["/", "/health", "/health?probe=1"] {
        for m in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            custom.clone(),
        ] {
            let r = send(&c, m.clone(), &format!("{base}{path}"), None, None).await;
            assert_health_body(&r);
            // With a body (even garbage), nothing changes.
            let r = send(
                &c,
                m.clone(),
                &format!("{base}{path}"),
                Some("application/json"),
                Some("{not json".into()),
            )
            .await;
            assert_health_body(&r);
        }
        let r = send(&c, Method::HEAD, &format!("{base}{path}"), None, None).await;
        assert_eq!(r.status, 200, "HEAD {path}");
        assert_eq!(r.text, "", "HEAD has no body");
        assert_cors(&r);
    }
    // MidiEditor's pre-flight: GET /health with Content-Type, 3 s budget.
    let started = std::time::Instant::now();
    let r = get_like_midieditor(&c, &format!("{base}/health")).await;
    assert_health_body(&r);
    assert!(started.elapsed() < Duration::from_secs(3));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn health_like_paths_that_are_not_health_get_generic_404() {
    let (s, base, c) = server().await;
    for p in [
        "/health/",
        "/healthcheck",
        "/HEALTH",
        "/x/health",
        "/sessions",
    ] {
        let r = get(&c, &format!("{base}{p}")).await;
        expect_error(&r, 404, "not found");
    }
    s.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// Headers on every status
// ---------------------------------------------------------------------------

#[tokio::test]
async fn every_json_status_carries_cors_and_json_content_type() {
    let (s, base, c) = server().await;
    let (code, _) = open_session(&c, &base, "host").await;

    // 200
    let r = get(&c, &format!("{base}/health")).await;
    assert_eq!(r.status, 200);
    assert_json_reply(&r);
    let r = get(&c, &format!("{base}/code/{code}")).await;
    assert_eq!(r.status, 200);
    assert_json_reply(&r);

    // 400
    let r = post_raw(&c, &format!("{base}/session"), "{").await;
    expect_error(&r, 400, "invalid JSON body");

    // 403 (answer protection)
    let r = post(
        &c,
        &format!("{base}/session"),
        json!({"sessionId": "p", "displayName": "d", "protectAnswers": true}),
    )
    .await;
    assert_json_reply(&r);
    let pcode = r.json["code"].as_str().unwrap().to_owned();
    let r = post_answer(&c, &base, &pcode, &jid(1), "v=0").await;
    expect_error(&r, 403, "host token required");

    // 404
    let r = get(&c, &format!("{base}/nowhere")).await;
    expect_error(&r, 404, "not found");

    // 409
    expect_ok(&post_offer(&c, &base, &code, &jid(1), "v=0 a").await);
    let r = post_offer(&c, &base, &code, &jid(1), "v=0 b").await;
    expect_error(&r, 409, "joinerId already in use; pick a fresh one");

    // 413
    let r = post_raw(&c, &format!("{base}/session"), "x".repeat(2 * 1024 * 1024)).await;
    expect_error(&r, 413, "request body too large");

    // 503
    for i in 2..=8 {
        expect_ok(&post_offer(&c, &base, &code, &jid(i), "v=0").await);
    }
    let r = post_offer(&c, &base, &code, &jid(9), "v=0").await;
    expect_error(&r, 503, "session is full (8 peers)");

    // 429: 31 failed lookups of unknown codes lock the source out.
    for _ in 0..31 {
        let r = get(&c, &format!("{base}/code/ZZZZ")).await;
        expect_error(&r, 404, "not found or expired");
    }
    let r = get(&c, &format!("{base}/code/ZZZZ")).await;
    expect_error(&r, 429, "too many unknown codes; slow down");
    s.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// POST /session
// ---------------------------------------------------------------------------

#[tokio::test]
async fn create_session_returns_code_expiry_and_host_token_in_order() {
    let (s, base, c) = server().await;
    let mut seen = std::collections::HashSet::new();
    for i in 0..40 {
        let r = post(
            &c,
            &format!("{base}/session"),
            json!({"sessionId": format!("s-{i}"), "displayName": "Host"}),
        )
        .await;
        assert_json_reply(&r);
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(
            keys_in_order(&r.text),
            ["code", "expiresInSec", "hostToken"]
        );
        let code = r.json["code"].as_str().unwrap();
        let token = r.json["hostToken"].as_str().unwrap();
        assert_code_shape(code);
        assert!(
            token.len() >= 32 && token.chars().all(|ch| ch.is_ascii_hexdigit()),
            "hostToken carries at least 128 bits: {token:?}"
        );
        assert_eq!(
            r.text,
            format!(r#"{{"code":"{code}","expiresInSec":300,"hostToken":"{token}"}}"#)
        );
        assert!(
            seen.insert(code.to_owned()),
            "codes of live sessions are unique"
        );
        let r = get(&c, &format!("{base}/code/{code}")).await;
        expect_body(
            &r,
            200,
            &format!(r#"{{"sessionId":"s-{i}","displayName":"Host"}}"#),
        );
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn missing_non_string_or_oversized_session_id_is_400() {
    let (s, base, c) = server().await;
    let url = format!("{base}/session");
    let bad_bodies = [
        json!({}),
        json!({"displayName": "d"}),
        json!({"sessionId": 5}),
        json!({"sessionId": null}),
        json!({"sessionId": true}),
        json!({"sessionId": ["a"]}),
        json!({"sessionId": {"a": 1}}),
        json!(null),
        json!([]),
        json!("sessionId"),
        json!(42),
        json!({"sessionId": "x".repeat(257)}),
        // 128 emoji = 256 UTF-16 units, plus one ASCII unit = 257.
        json!({"sessionId": "🎹".repeat(128) + "x"}),
        json!({"sessionId": "🎹".repeat(129)}),
    ];
    for b in bad_bodies {
        let r = post(&c, &url, b.clone()).await;
        expect_error(&r, 400, "missing or oversized sessionId");
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn session_id_limit_is_256_utf16_units_and_round_trips() {
    let (s, base, c) = server().await;
    // 128 emoji are 512 UTF-8 bytes but only 256 UTF-16 units: accepted.
    for sid in ["🎹".repeat(128), "x".repeat(256), "é".repeat(256)] {
        let r = post(
            &c,
            &format!("{base}/session"),
            json!({"sessionId": sid, "displayName": "n"}),
        )
        .await;
        assert_json_reply(&r);
        assert_eq!(r.status, 200, "{}", r.text);
        let code = r.json["code"].as_str().unwrap();
        let r = get(&c, &format!("{base}/code/{code}")).await;
        expect_body(&r, 200, &session_body(&sid, "n"));
        assert_eq!(keys_in_order(&r.text), ["sessionId", "displayName"]);
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn empty_session_id_is_accepted() {
    let (s, base, c) = server().await;
    let r = post(
        &c,
        &format!("{base}/session"),
        json!({"sessionId": "", "displayName": "Unsaved"}),
    )
    .await;
    assert_json_reply(&r);
    assert_eq!(r.status, 200, "{}", r.text);
    let code = r.json["code"].as_str().unwrap();
    assert_code_shape(code);
    let r = get(&c, &format!("{base}/code/{code}")).await;
    expect_body(&r, 200, r#"{"sessionId":"","displayName":"Unsaved"}"#);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn display_name_is_truncated_to_64_utf16_units_never_rejected() {
    let (s, base, c) = server().await;
    let cases = [
        ("n".repeat(100), "n".repeat(64)),
        ("n".repeat(64), "n".repeat(64)),
        ("n".repeat(63), "n".repeat(63)),
        // 40 emoji = 80 units; 64 units are 32 emoji.
        ("🎹".repeat(40), "🎹".repeat(32)),
        ("é".repeat(70), "é".repeat(64)),
        ("Ünïcödé name".to_owned(), "Ünïcödé name".to_owned()),
    ];
    for (sent, kept) in cases {
        let r = post(
            &c,
            &format!("{base}/session"),
            json!({"sessionId": "s", "displayName": sent}),
        )
        .await;
        assert_json_reply(&r);
        assert_eq!(r.status, 200, "{}", r.text);
        let code = r.json["code"].as_str().unwrap();
        let r = get(&c, &format!("{base}/code/{code}")).await;
        expect_body(&r, 200, &session_body("s", &kept));
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn body_is_parsed_whatever_the_content_type() {
    let (s, base, c) = server().await;
    let url = format!("{base}/session");
    let body = r#"{"sessionId":"ct","displayName":"Plain"}"#;
    for ct in [
        Some("text/plain"),
        None,
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=utf-8"),
    ] {
        let r = send(&c, Method::POST, &url, ct, Some(body.into())).await;
        assert_json_reply(&r);
        assert_eq!(r.status, 200, "Content-Type {ct:?}: {}", r.text);
        let code = r.json["code"].as_str().unwrap().to_owned();
        let r = get(&c, &format!("{base}/code/{code}")).await;
        expect_body(&r, 200, r#"{"sessionId":"ct","displayName":"Plain"}"#);

        // The same holds for the offer and answer bodies.
        let offer = json!({"joinerId": jid(1), "sdp": "v=0 offer"}).to_string();
        let r = send(&c, Method::POST, &offer_url(&base, &code), ct, Some(offer)).await;
        expect_ok(&r);
        let answer = json!({"joinerId": jid(1), "sdp": "v=0 answer"}).to_string();
        let r = send(
            &c,
            Method::POST,
            &answer_post_url(&base, &code),
            ct,
            Some(answer),
        )
        .await;
        expect_ok(&r);
        let r = get(&c, &answer_get_url(&base, &code, &jid(1))).await;
        expect_body(&r, 200, r#"{"sdp":"v=0 answer"}"#);
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_json_is_400_invalid_json_body() {
    let (s, base, c) = server().await;
    let (code, _) = open_session(&c, &base, "host").await;
    let garbage = [
        "{",
        "",
        "not json",
        r#"{"sessionId":"#,
        r#"{"sessionId":"x",}"#,
        "\u{1}",
    ];
    for g in garbage {
        let r = post_raw(&c, &format!("{base}/session"), g).await;
        expect_error(&r, 400, "invalid JSON body");
        // With no Content-Type at all.
        let r = send(
            &c,
            Method::POST,
            &format!("{base}/session"),
            None,
            Some(g.into()),
        )
        .await;
        expect_error(&r, 400, "invalid JSON body");
        // On a live session the body routes answer the same.
        let r = post_raw(&c, &offer_url(&base, &code), g).await;
        expect_error(&r, 400, "invalid JSON body");
        let r = post_raw(&c, &answer_post_url(&base, &code), g).await;
        expect_error(&r, 400, "invalid JSON body");
    }
    // Invalid UTF-8 is not JSON either.
    let r = post_raw(&c, &format!("{base}/session"), vec![0xffu8, 0xfe, 0x7b]).await;
    expect_error(&r, 400, "invalid JSON body");
    s.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// GET /code/<c>
// ---------------------------------------------------------------------------

#[tokio::test]
async fn code_lookup_returns_session_id_and_display_name() {
    let (s, base, c) = server().await;
    let r = post(
        &c,
        &format!("{base}/session"),
        json!({"sessionId": "song.mid", "displayName": "Alice"}),
    )
    .await;
    assert_json_reply(&r);
    let code = r.json["code"].as_str().unwrap().to_owned();
    let r = get(&c, &format!("{base}/code/{code}")).await;
    expect_body(&r, 200, r#"{"sessionId":"song.mid","displayName":"Alice"}"#);
    // A lookup with MidiEditor's Content-Type on GET is the same.
    let r = get_like_midieditor(&c, &format!("{base}/code/{code}")).await;
    expect_body(&r, 200, r#"{"sessionId":"song.mid","displayName":"Alice"}"#);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_code_is_404_not_found_or_expired() {
    let (s, base, c) = server().await;
    let (code, _) = open_session(&c, &base, "host").await;
    // A code of the route pattern that names no session; symbols outside
    // the alphabet (O, 0, I, 1) still match the route.
    let unknown = ["O0I1", "1111", "ZZZZ", "AAAA"];
    for u in unknown.iter().filter(|u| **u != code) {
        let r = get(&c, &format!("{base}/code/{u}")).await;
        expect_error(&r, 404, "not found or expired");
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn lowercase_or_wrong_length_code_is_generic_404() {
    let (s, base, c) = server().await;
    // A code of digits only has no lowercase form; take one with a letter.
    let mut code = open_session(&c, &base, "host").await.0;
    while !code.chars().any(|ch| ch.is_ascii_uppercase()) {
        code = open_session(&c, &base, "host").await.0;
    }
    let lower = code.to_lowercase();
    assert_ne!(lower, code);
    let mut paths = vec![
        format!("/code/{lower}"),
        format!("/code/{}", &code[..3]),
        format!("/code/{code}A"),
        "/code/ABC".to_owned(),
        "/code/ABCDE".to_owned(),
        "/code/".to_owned(),
        "/code".to_owned(),
        "/code/AB-C".to_owned(),
        format!("/code/{code}/"),
        format!("/code/{lower}/joiner-offers"),
        format!("/code/{lower}/host-answer/{}", jid(1)),
    ];
    // Mixed case too, when the code has a letter to lower.
    if let Some(i) = code.find(|ch: char| ch.is_ascii_uppercase()) {
        let mut mixed = code.clone();
        mixed.replace_range(i..=i, &code[i..=i].to_lowercase());
        paths.push(format!("/code/{mixed}"));
    }
    for p in &paths {
        let r = get(&c, &format!("{base}{p}")).await;
        expect_error(&r, 404, "not found");
    }
    let r = post_offer(&c, &base, &lower, &jid(1), "v=0").await;
    expect_error(&r, 404, "not found");
    let r = post_answer(&c, &base, &lower, &jid(1), "v=0").await;
    expect_error(&r, 404, "not found");
    // The real code still works.
    let r = get(&c, &format!("{base}/code/{code}")).await;
    assert_eq!(r.status, 200);
    assert_json_reply(&r);
    s.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// POST /code/<c>/joiner-offer
// ---------------------------------------------------------------------------

#[tokio::test]
async fn joiner_offer_unknown_session_is_404_before_any_body_check() {
    let (s, base, c) = server().await;
    let url = offer_url(&base, "ZZZZ");
    for body in [
        "{not json".to_owned(),
        String::new(),
        json!({}).to_string(),
        json!({"joinerId": "bad", "sdp": ""}).to_string(),
        json!({"joinerId": jid(1), "sdp": ""}).to_string(),
        json!({"joinerId": jid(1), "sdp": "v=0"}).to_string(),
    ] {
        let r = post_raw(&c, &url, body).await;
        expect_error(&r, 404, "no session for code");
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn joiner_offer_invalid_joiner_id_is_400_before_sdp_check() {
    let (s, base, c) = server().await;
    let (code, _) = open_session(&c, &base, "host").await;
    let url = offer_url(&base, &code);
    let bad_ids = [
        json!("abc_defgh"),
        json!("abcd efgh"),
        json!("abcdefg!"),
        json!("abcdéfgh"),
        json!("abcdefg"),
        json!("a".repeat(65)),
        json!(""),
        json!(12345678),
        json!(null),
        json!(["abcdefgh"]),
    ];
    for id in bad_ids {
        // A bad sdp as well: the joinerId is checked first.
        for sdp in [json!("v=0"), json!(""), json!(5)] {
            let r = post(&c, &url, json!({"joinerId": id, "sdp": sdp})).await;
            expect_error(&r, 400, "invalid joinerId");
        }
    }
    let r = post(&c, &url, json!({"sdp": "v=0"})).await;
    expect_error(&r, 400, "invalid joinerId");
    let r = post(&c, &url, json!(null)).await;
    expect_error(&r, 400, "invalid joinerId");
    // Boundaries of ^[A-Za-z0-9-]{8,64}$ are accepted.
    for ok_id in [
        "abcdefgh".to_owned(),
        "A".repeat(64),
        "--------".to_owned(),
        "aZ09-aZ09".to_owned(),
    ] {
        expect_ok(&post_offer(&c, &base, &code, &ok_id, "v=0").await);
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn joiner_offer_missing_empty_or_oversized_sdp_is_400() {
    let (s, base, c) = server().await;
    let (code, _) = open_session(&c, &base, "host").await;
    let url = offer_url(&base, &code);
    let bad_sdps = [
        json!(""),
        json!(null),
        json!(5),
        json!({"type": "offer"}),
        json!(["v=0"]),
        json!("x".repeat(65_537)),
        // 32,768 emoji are 65,536 units; one more unit is over.
        json!("🎹".repeat(32_768) + "x"),
    ];
    for (i, sdp) in bad_sdps.into_iter().enumerate() {
        let r = post(&c, &url, json!({"joinerId": jid(i as u32), "sdp": sdp})).await;
        expect_error(&r, 400, "missing or oversized sdp");
    }
    let r = post(&c, &url, json!({"joinerId": jid(99)})).await;
    expect_error(&r, 400, "missing or oversized sdp");
    // A refused body did not use up the joinerId.
    expect_ok(&post_offer(&c, &base, &code, &jid(0), "v=0 later").await);
    // Exactly 65,536 units is accepted, in ASCII and in surrogate pairs.
    let big_ascii = "x".repeat(65_536);
    let big_emoji = "🎹".repeat(32_768);
    expect_ok(&post_offer(&c, &base, &code, &jid(100), &big_ascii).await);
    expect_ok(&post_offer(&c, &base, &code, &jid(101), &big_emoji).await);
    let offers = list_offers(&c, &base, &code).await;
    assert_eq!(ids(&offers), [jid(0), jid(100), jid(101)]);
    assert_eq!(offers[1].1, big_ascii);
    assert_eq!(offers[2].1, big_emoji);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn duplicate_joiner_id_is_409_and_never_overwrites_the_offer() {
    let (s, base, c) = server().await;
    let (code, _) = open_session(&c, &base, "host").await;
    let first = fake_sdp("first");
    expect_ok(&post_offer(&c, &base, &code, &jid(1), &first).await);
    for attempt in ["attacker", "again"] {
        let r = post_offer(&c, &base, &code, &jid(1), &fake_sdp(attempt)).await;
        expect_error(&r, 409, "joinerId already in use; pick a fresh one");
    }
    // Body validation comes before the 409.
    let r = post(
        &c,
        &offer_url(&base, &code),
        json!({"joinerId": jid(1), "sdp": ""}),
    )
    .await;
    expect_error(&r, 400, "missing or oversized sdp");
    let offers = list_offers(&c, &base, &code).await;
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].0, jid(1));
    assert_eq!(offers[0].1, first, "first offer kept");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn ninth_joiner_is_503_session_full_but_duplicate_is_still_409() {
    let (s, base, c) = server().await;
    let (code, _) = open_session(&c, &base, "host").await;
    for i in 1..=8 {
        expect_ok(&post_offer(&c, &base, &code, &jid(i), &fake_sdp(&format!("p{i}"))).await);
    }
    let r = post_offer(&c, &base, &code, &jid(9), "v=0").await;
    expect_error(&r, 503, "session is full (8 peers)");
    // 409 is checked before the slot cap.
    let r = post_offer(&c, &base, &code, &jid(3), "v=0").await;
    expect_error(&r, 409, "joinerId already in use; pick a fresh one");
    // Body errors come before both.
    let r = post(
        &c,
        &offer_url(&base, &code),
        json!({"joinerId": "x", "sdp": "v=0"}),
    )
    .await;
    expect_error(&r, 400, "invalid joinerId");
    let r = post(
        &c,
        &offer_url(&base, &code),
        json!({"joinerId": jid(9), "sdp": ""}),
    )
    .await;
    expect_error(&r, 400, "missing or oversized sdp");
    let offers = list_offers(&c, &base, &code).await;
    assert_eq!(ids(&offers), (1..=8).map(jid).collect::<Vec<_>>());
    // Answered joiners still hold their slot while their offer lives.
    expect_ok(&post_answer(&c, &base, &code, &jid(1), "v=0 answer").await);
    let r = post_offer(&c, &base, &code, &jid(10), "v=0").await;
    expect_error(&r, 503, "session is full (8 peers)");
    s.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// GET /code/<c>/joiner-offers
// ---------------------------------------------------------------------------

#[tokio::test]
async fn joiner_offers_lists_in_arrival_order_with_epoch_ms_ts() {
    let (s, base, c) = server().await;
    let (code, _) = open_session(&c, &base, "host").await;
    assert!(list_offers(&c, &base, &code).await.is_empty());
    let r = get(&c, &offers_url(&base, &code)).await;
    expect_body(&r, 200, r#"{"offers":[]}"#);

    let before = now_ms();
    // Not in sorted order, so arrival order is distinguishable.
    let order = ["zzzzzzzz-9", "aaaaaaaa-1", "MMMMMMMM-5"];
    for (i, id) in order.iter().enumerate() {
        expect_ok(&post_offer(&c, &base, &code, id, &fake_sdp(&format!("o{i}"))).await);
        // Spaces the arrivals (the scenario), not a wait for a result.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let after = now_ms();
    let offers = list_offers(&c, &base, &code).await;
    assert_eq!(ids(&offers), order);
    for (i, (_, sdp, ts)) in offers.iter().enumerate() {
        assert_eq!(
            *sdp,
            fake_sdp(&format!("o{i}")),
            "SDP returned byte for byte"
        );
        assert!(
            *ts + 1000 >= before && *ts <= after + 1000,
            "ts {ts} is ms since the epoch, near now ({before}..{after})"
        );
    }
    assert!(
        offers.windows(2).all(|w| w[0].2 <= w[1].2),
        "ts follows arrival"
    );

    // Answered offers are still listed (the host filters locally).
    expect_ok(&post_answer(&c, &base, &code, order[1], "v=0 answer").await);
    let again = list_offers(&c, &base, &code).await;
    assert_eq!(again, offers);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn joiner_offers_for_unknown_session_is_404() {
    let (s, base, c) = server().await;
    for code in ["ZZZZ", "O0I1"] {
        let r = get(&c, &offers_url(&base, code)).await;
        expect_error(&r, 404, "no session for code");
        let r = get_like_midieditor(&c, &offers_url(&base, code)).await;
        expect_error(&r, 404, "no session for code");
    }
    s.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// POST /code/<c>/host-answer
// ---------------------------------------------------------------------------

#[tokio::test]
async fn host_answer_checks_session_then_joiner_id_then_sdp_then_409() {
    let (s, base, c) = server().await;
    // 404 first, whatever the body.
    for body in [
        "{oops".to_owned(),
        json!({"joinerId": "x", "sdp": ""}).to_string(),
        json!({"joinerId": jid(1), "sdp": "v=0"}).to_string(),
    ] {
        let r = post_raw(&c, &answer_post_url(&base, "ZZZZ"), body).await;
        expect_error(&r, 404, "no session for code");
    }
    let (code, _) = open_session(&c, &base, "host").await;
    expect_ok(&post_offer(&c, &base, &code, &jid(1), &fake_sdp("j1")).await);
    let url = answer_post_url(&base, &code);
    // Then the joinerId, even when the sdp is bad too.
    for id in [
        json!("short"),
        json!("a".repeat(65)),
        json!("bad_char!"),
        json!(7),
        json!(null),
    ] {
        let r = post(&c, &url, json!({"joinerId": id, "sdp": ""})).await;
        expect_error(&r, 400, "invalid joinerId");
    }
    // Then the sdp.
    for sdp in [json!(""), json!(null), json!(1), json!("x".repeat(65_537))] {
        let r = post(&c, &url, json!({"joinerId": jid(1), "sdp": sdp})).await;
        expect_error(&r, 400, "missing or oversized sdp");
    }
    let r = post(&c, &url, json!({"joinerId": jid(1)})).await;
    expect_error(&r, 400, "missing or oversized sdp");
    // The refused bodies stored nothing.
    let r = get(&c, &answer_get_url(&base, &code, &jid(1))).await;
    expect_error(&r, 404, "not yet");
    // Then the answer, once.
    let first = fake_sdp("answer-1");
    expect_ok(&post_answer(&c, &base, &code, &jid(1), &first).await);
    let r = post_answer(&c, &base, &code, &jid(1), &fake_sdp("mitm")).await;
    expect_error(&r, 409, "answer already posted for this joinerId");
    // A bad body on an answered joiner is still a 400, not a 409.
    let r = post(&c, &url, json!({"joinerId": jid(1), "sdp": ""})).await;
    expect_error(&r, 400, "missing or oversized sdp");
    let r = get(&c, &answer_get_url(&base, &code, &jid(1))).await;
    expect_body(&r, 200, &json!({ "sdp": first }).to_string());
    // 65,536 units is the largest answer accepted.
    expect_ok(&post_offer(&c, &base, &code, &jid(2), "v=0").await);
    expect_ok(&post_answer(&c, &base, &code, &jid(2), &"y".repeat(65_536)).await);
    s.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// GET /code/<c>/host-answer/<joinerId>
// ---------------------------------------------------------------------------

#[tokio::test]
async fn answer_poll_is_404_not_yet_until_posted_then_200_sdp() {
    let (s, base, c) = server().await;
    let (code, _) = open_session(&c, &base, "host").await;
    let url = answer_get_url(&base, &code, &jid(1));
    // Before the offer exists.
    expect_error(&get(&c, &url).await, 404, "not yet");
    expect_ok(&post_offer(&c, &base, &code, &jid(1), &fake_sdp("j1")).await);
    // Offer posted, no answer yet.
    expect_error(&get(&c, &url).await, 404, "not yet");
    let answer = fake_sdp("host-answer");
    expect_ok(&post_answer(&c, &base, &code, &jid(1), &answer).await);
    let r = get(&c, &url).await;
    expect_body(&r, 200, &json!({ "sdp": answer }).to_string());
    assert_eq!(keys_in_order(&r.text), ["sdp"]);
    assert_eq!(r.json["sdp"], answer.as_str());
    // Repeated polls keep answering the same.
    let r = get_like_midieditor(&c, &url).await;
    expect_body(&r, 200, &json!({ "sdp": answer }).to_string());
    // Another joiner of the same session sees nothing.
    expect_error(
        &get(&c, &answer_get_url(&base, &code, &jid(2))).await,
        404,
        "not yet",
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn answer_poll_for_unknown_session_is_404_not_yet() {
    let (s, base, c) = server().await;
    for code in ["ZZZZ", "O0I1", "2345"] {
        let r = get(&c, &answer_get_url(&base, code, &jid(1))).await;
        expect_error(&r, 404, "not yet");
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn answer_poll_with_invalid_joiner_id_in_path_is_generic_404() {
    let (s, base, c) = server().await;
    let (code, _) = open_session(&c, &base, "host").await;
    for id in [
        "short".to_owned(),
        "abcdefg".to_owned(),
        "a".repeat(65),
        "abc_defgh".to_owned(),
        "abcd.efgh".to_owned(),
        "abcd%20efgh".to_owned(),
        String::new(),
        format!("{}/extra", jid(1)),
    ] {
        let r = get(&c, &format!("{base}/code/{code}/host-answer/{id}")).await;
        expect_error(&r, 404, "not found");
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn answer_polls_are_never_counted_as_code_guessing() {
    let (s, base, c) = server().await;
    // Far more than the 30 failures a guesser is allowed.
    for i in 0..80 {
        let r = get(&c, &answer_get_url(&base, "ZZZZ", &jid(i))).await;
        expect_error(&r, 404, "not yet");
    }
    // The source is not locked out: an unknown code is still a plain 404.
    let r = get(&c, &format!("{base}/code/ZZZZ")).await;
    expect_error(&r, 404, "not found or expired");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn thirty_failed_lookups_never_lock_out_and_lockout_spares_answer_polls() {
    let (s, base, c) = server().await;
    let (code, _) = open_session(&c, &base, "host").await;
    for _ in 0..30 {
        let r = get(&c, &format!("{base}/code/ZZZZ")).await;
        expect_error(&r, 404, "not found or expired");
    }
    // Past 30, the guesser is slowed down on code lookups...
    let mut locked = false;
    for _ in 0..3 {
        let r = get(&c, &format!("{base}/code/ZZZZ")).await;
        assert_json_reply(&r);
        if r.status == 429 {
            expect_error(&r, 429, "too many unknown codes; slow down");
            locked = true;
        } else {
            expect_error(&r, 404, "not found or expired");
        }
    }
    assert!(locked, "a source past 30 failures in a minute is limited");
    // ...but answer polls still answer 200/404 only.
    let r = get(&c, &answer_get_url(&base, &code, &jid(1))).await;
    expect_error(&r, 404, "not yet");
    let r = get(&c, &format!("{base}/health")).await;
    assert_health_body(&r);
    s.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// Anything else
// ---------------------------------------------------------------------------

#[tokio::test]
async fn wrong_method_on_known_path_is_404_not_405() {
    let (s, base, c) = server().await;
    let (code, _) = open_session(&c, &base, "host").await;
    expect_ok(&post_offer(&c, &base, &code, &jid(1), "v=0").await);
    expect_ok(&post_answer(&c, &base, &code, &jid(1), "v=0 a").await);
    let j = jid(1);
    let cases: Vec<(Method, String)> = vec![
        (Method::GET, "/session".into()),
        (Method::PUT, "/session".into()),
        (Method::DELETE, "/session".into()),
        (Method::PATCH, "/session".into()),
        (Method::HEAD, "/session".into()),
        (Method::POST, format!("/code/{code}")),
        (Method::PUT, format!("/code/{code}")),
        (Method::DELETE, format!("/code/{code}")),
        (Method::GET, format!("/code/{code}/joiner-offer")),
        (Method::PUT, format!("/code/{code}/joiner-offer")),
        (Method::DELETE, format!("/code/{code}/joiner-offer")),
        (Method::POST, format!("/code/{code}/joiner-offers")),
        (Method::DELETE, format!("/code/{code}/joiner-offers")),
        (Method::GET, format!("/code/{code}/host-answer")),
        (Method::PATCH, format!("/code/{code}/host-answer")),
        (Method::DELETE, format!("/code/{code}/host-answer")),
        (Method::POST, format!("/code/{code}/host-answer/{j}")),
        (Method::PUT, format!("/code/{code}/host-answer/{j}")),
        (Method::DELETE, format!("/code/{code}/host-answer/{j}")),
        (Method::DELETE, "/no/such/thing".into()),
        (Method::GET, "/no/such/thing".into()),
        (Method::POST, "/no/such/thing".into()),
    ];
    for (m, p) in cases {
        let body = (m != Method::GET && m != Method::HEAD)
            .then(|| json!({"sessionId": "s", "joinerId": j, "sdp": "v=0"}).to_string());
        let r = send(
            &c,
            m.clone(),
            &format!("{base}{p}"),
            Some("application/json"),
            body,
        )
        .await;
        if m == Method::HEAD {
            // No body on HEAD, but still a 404 with CORS.
            assert_eq!(r.status, 404, "HEAD {p}");
            assert_cors(&r);
        } else {
            assert_ne!(r.status, 405, "{m} {p}");
            expect_error(&r, 404, "not found");
        }
    }
    // None of that touched the session: the first offer and answer stand.
    let offers = list_offers(&c, &base, &code).await;
    assert_eq!(ids(&offers), [j.as_str()]);
    let r = get(&c, &answer_get_url(&base, &code, &j)).await;
    expect_body(&r, 200, r#"{"sdp":"v=0 a"}"#);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_body_is_413_and_the_server_keeps_serving() {
    let (s, base, c) = server().await;
    let (code, _) = open_session(&c, &base, "host").await;
    expect_ok(&post_offer(&c, &base, &code, &jid(1), &fake_sdp("j1")).await);
    let two_mb = "x".repeat(2 * 1024 * 1024);

    let r = post_raw(&c, &format!("{base}/session"), two_mb.clone()).await;
    expect_error(&r, 413, "request body too large");
    let r = post_raw(&c, &offer_url(&base, &code), two_mb.clone()).await;
    expect_error(&r, 413, "request body too large");
    // A 2 MB body that is valid JSON is refused all the same.
    let big_json = json!({"joinerId": jid(2), "sdp": "v".repeat(2 * 1024 * 1024)}).to_string();
    let r = post_raw(&c, &offer_url(&base, &code), big_json.clone()).await;
    expect_error(&r, 413, "request body too large");
    let r = post_raw(&c, &answer_post_url(&base, &code), big_json).await;
    expect_error(&r, 413, "request body too large");
    // An unknown session is still 404 first.
    let r = post_raw(&c, &offer_url(&base, "ZZZZ"), two_mb.clone()).await;
    expect_error(&r, 404, "no session for code");

    // The existing session is intact and a new one works end to end.
    let offers = list_offers(&c, &base, &code).await;
    assert_eq!(ids(&offers), [jid(1)]);
    let (code2, _) = open_session(&c, &base, "second").await;
    expect_ok(&post_offer(&c, &base, &code2, &jid(3), "v=0").await);
    expect_ok(&post_answer(&c, &base, &code2, &jid(3), "v=0 a").await);
    let r = get(&c, &answer_get_url(&base, &code2, &jid(3))).await;
    expect_body(&r, 200, r#"{"sdp":"v=0 a"}"#);
    let r = get(&c, &format!("{base}/health")).await;
    assert_health_body(&r);
    s.stop().await.unwrap();
}

/// Sends only the request head of a POST declaring a huge Content-Length and
/// reads the response without ever sending the body: the server must refuse
/// it from the declared length, before reading the body.
#[tokio::test]
async fn declared_oversized_body_is_refused_before_it_is_sent() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (s, base, c) = server().await;
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let head = format!(
        "POST /session HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        s.addr,
        2 * 1024 * 1024
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = tcp.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if let Some((_, body)) = text.split_once("\r\n\r\n") {
                if body.ends_with('}') {
                    break;
                }
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server answered without waiting for the body"
    );
    let text = String::from_utf8_lossy(&buf).to_string();
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/json\r\n"),
        "{text}"
    );
    assert!(
        lower.contains("access-control-allow-origin: *\r\n"),
        "{text}"
    );
    assert!(
        text.ends_with(r#"{"error":"request body too large"}"#),
        "{text}"
    );
    // And the server is fine.
    let (code, _) = open_session(&c, &base, "after").await;
    assert_code_shape(&code);
    s.stop().await.unwrap();
}

/// A chunked body (no Content-Length to refuse it by) over the limit is
/// refused as it streams in, with the same JSON 413.
#[tokio::test]
async fn chunked_oversized_body_is_413_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = start(Config {
        max_body_bytes: 1024,
        ..Default::default()
    })
    .await;
    let base = s.url();
    let c = client();
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut req = format!(
        "POST /session HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n",
        s.addr
    )
    .into_bytes();
    for _ in 0..8 {
        req.extend_from_slice(format!("200\r\n{}\r\n", "x".repeat(0x200)).as_bytes());
    }
    req.extend_from_slice(b"0\r\n\r\n");
    tcp.write_all(&req).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = tcp.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.ends_with(b"}") {
                break;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the server answered");
    let text = String::from_utf8_lossy(&buf).to_string();
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/json\r\n"),
        "{text}"
    );
    assert!(
        lower.contains("access-control-allow-origin: *\r\n"),
        "{text}"
    );
    assert!(
        text.ends_with(r#"{"error":"request body too large"}"#),
        "{text}"
    );
    // A body under the limit is still fine on the same server.
    let (code, _) = open_session(&c, &base, "small").await;
    assert_code_shape(&code);
    s.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// Lifetimes (ManualClock)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_hour_of_host_polling_keeps_the_session_then_it_expires_one_ttl_later() {
    // 3,600 empty offer polls about lifetimes, not timing: unheld.
    let (s, clock) = start_with_clock(Config {
        hold_plain_polls: Duration::ZERO,
        ..conf()
    })
    .await;
    let base = s.url();
    let c = client();
    let (code, _) = open_session(&c, &base, "long host").await;
    let offers = offers_url(&base, &code);
    for i in 0..3600 {
        clock.advance(Duration::from_secs(1));
        let r = get_like_midieditor(&c, &offers).await;
        assert_eq!(r.status, 200, "poll {i} of the hour: {}", r.text);
        assert_json_reply(&r);
    }
    // Well past the Worker's 300 s, the session is alive.
    let r = get(&c, &format!("{base}/code/{code}")).await;
    expect_body(&r, 200, r#"{"sessionId":"s-1","displayName":"long host"}"#);
    // The host stops. Joiner lookups do not keep it alive.
    clock.advance(TTL - Duration::from_secs(1));
    let r = get(&c, &format!("{base}/code/{code}")).await;
    assert_eq!(
        r.status, 200,
        "alive just under one TTL after the last poll"
    );
    clock.advance(Duration::from_secs(1));
    let r = get(&c, &format!("{base}/code/{code}")).await;
    expect_error(&r, 404, "not found or expired");
    let r = get(&c, &offers).await;
    expect_error(&r, 404, "no session for code");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_session_nobody_polls_expires_after_300_seconds() {
    let (s, clock) = start_with_clock(conf()).await;
    let base = s.url();
    let c = client();
    let (code, _) = open_session(&c, &base, "idle").await;
    // Joiner activity does not extend the session: only the host's does.
    clock.advance(Duration::from_secs(100));
    assert_eq!(get(&c, &format!("{base}/code/{code}")).await.status, 200);
    expect_ok(&post_offer(&c, &base, &code, &jid(1), "v=0").await);
    clock.advance(Duration::from_secs(100));
    let r = get(&c, &answer_get_url(&base, &code, &jid(1))).await;
    expect_error(&r, 404, "not yet");
    clock.advance(Duration::from_secs(99));
    let r = get(&c, &format!("{base}/code/{code}")).await;
    expect_body(&r, 200, r#"{"sessionId":"s-1","displayName":"idle"}"#);
    clock.advance(Duration::from_secs(1));
    let r = get(&c, &format!("{base}/code/{code}")).await;
    expect_error(&r, 404, "not found or expired");
    let r = get(&c, &offers_url(&base, &code)).await;
    expect_error(&r, 404, "no session for code");
    let r = post_offer(&c, &base, &code, &jid(2), "v=0").await;
    expect_error(&r, 404, "no session for code");
    let r = post_answer(&c, &base, &code, &jid(1), "v=0").await;
    expect_error(&r, 404, "no session for code");
    let r = get(&c, &answer_get_url(&base, &code, &jid(1))).await;
    expect_error(&r, 404, "not yet");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn a_host_answer_post_renews_the_session() {
    let (s, clock) = start_with_clock(conf()).await;
    let base = s.url();
    let c = client();
    let (code, _) = open_session(&c, &base, "host").await;
    expect_ok(&post_offer(&c, &base, &code, &jid(1), "v=0").await);
    clock.advance(Duration::from_secs(200));
    expect_ok(&post_answer(&c, &base, &code, &jid(1), "v=0 a").await);
    clock.advance(Duration::from_secs(299));
    assert_eq!(get(&c, &format!("{base}/code/{code}")).await.status, 200);
    clock.advance(Duration::from_secs(1));
    let r = get(&c, &format!("{base}/code/{code}")).await;
    expect_error(&r, 404, "not found or expired");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn offers_and_answers_live_300_seconds_from_their_own_write() {
    let (s, clock) = start_with_clock(conf()).await;
    let base = s.url();
    let c = client();
    let (code, _) = open_session(&c, &base, "host").await;
    expect_ok(&post_offer(&c, &base, &code, &jid(1), "v=0 one").await);
    clock.advance(Duration::from_secs(100));
    expect_ok(&post_answer(&c, &base, &code, &jid(1), "v=0 ans").await);
    expect_ok(&post_offer(&c, &base, &code, &jid(2), "v=0 two").await);
    clock.advance(Duration::from_secs(199)); // t = 299
    assert_eq!(ids(&list_offers(&c, &base, &code).await), [jid(1), jid(2)]);
    clock.advance(Duration::from_secs(1)); // t = 300: offer 1 lapses
    assert_eq!(ids(&list_offers(&c, &base, &code).await), [jid(2)]);
    // Its answer, written at t = 100, is still there until t = 400.
    clock.advance(Duration::from_secs(99)); // t = 399
    let r = get(&c, &answer_get_url(&base, &code, &jid(1))).await;
    expect_body(&r, 200, r#"{"sdp":"v=0 ans"}"#);
    assert_eq!(ids(&list_offers(&c, &base, &code).await), [jid(2)]);
    clock.advance(Duration::from_secs(1)); // t = 400: answer 1 and offer 2 lapse
    let r = get(&c, &answer_get_url(&base, &code, &jid(1))).await;
    expect_error(&r, 404, "not yet");
    assert!(list_offers(&c, &base, &code).await.is_empty());
    // The session itself lives on (the host polled at 299, 300 and 399).
    assert_eq!(get(&c, &format!("{base}/code/{code}")).await.status, 200);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn slots_count_live_joiners_only() {
    let (s, clock) = start_with_clock(conf()).await;
    let base = s.url();
    let c = client();
    let (code, _) = open_session(&c, &base, "host").await;
    for i in 1..=8 {
        expect_ok(&post_offer(&c, &base, &code, &jid(i), "v=0").await);
    }
    let r = post_offer(&c, &base, &code, &jid(9), "v=0").await;
    expect_error(&r, 503, "session is full (8 peers)");
    // The host keeps polling; the 8 offers age past their TTL.
    clock.advance(Duration::from_secs(200));
    assert_eq!(list_offers(&c, &base, &code).await.len(), 8);
    clock.advance(Duration::from_secs(101));
    assert!(list_offers(&c, &base, &code).await.is_empty());
    // A new joiner gets a slot, and so does a reconnecting one.
    expect_ok(&post_offer(&c, &base, &code, &jid(9), &fake_sdp("nine")).await);
    expect_ok(&post_offer(&c, &base, &code, &jid(1), &fake_sdp("back")).await);
    let offers = list_offers(&c, &base, &code).await;
    assert_eq!(ids(&offers), [jid(9), jid(1)]);
    assert_eq!(offers[1].1, fake_sdp("back"));
    for i in 10..=15 {
        expect_ok(&post_offer(&c, &base, &code, &jid(i), "v=0").await);
    }
    let r = post_offer(&c, &base, &code, &jid(16), "v=0").await;
    expect_error(&r, 503, "session is full (8 peers)");
    s.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// MidiEditor client behaviours
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answer_poll_started_before_the_offer_lands_gets_404_then_200() {
    let (s, base, c) = server().await;
    let (code, _) = open_session(&c, &base, "host").await;
    let joiner = jid(42);
    let offer_sdp = fake_sdp("joiner");
    let answer_sdp = fake_sdp("host");
    let poll_url = answer_get_url(&base, &code, &joiner);

    // The joiner: the answer poll and the offer POST fired together.
    let (first_poll, offer) = tokio::join!(
        get_like_midieditor(&c, &poll_url),
        post_offer(&c, &base, &code, &joiner, &offer_sdp)
    );
    expect_error(&first_poll, 404, "not yet");
    expect_ok(&offer);

    // Then the poll loop runs alongside the host, which answers a little later.
    let poller = async {
        let mut statuses = vec![first_poll.status];
        for _ in 0..400 {
            let r = get_like_midieditor(&c, &poll_url).await;
            assert_json_reply(&r);
            statuses.push(r.status);
            if r.status == 200 {
                return (statuses, r);
            }
            assert_eq!(r.error(), "not yet");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no answer after 400 polls: {statuses:?}");
    };
    let host = async {
        // The host answers a little later (the scenario: the joiner polls
        // meanwhile); the offer it lists was posted before.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let offers = list_offers(&c, &base, &code).await;
        assert_eq!(ids(&offers), [joiner.as_str()]);
        assert_eq!(offers[0].1, offer_sdp);
        expect_ok(&post_answer(&c, &base, &code, &joiner, &answer_sdp).await);
    };
    let ((statuses, answered), ()) = tokio::join!(poller, host);
    assert!(
        statuses.iter().all(|s| *s == 404 || *s == 200),
        "only 200 or 404 may reach a MidiEditor joiner: {statuses:?}"
    );
    assert!(statuses.len() >= 2 && statuses[0] == 404);
    expect_body(&answered, 200, &json!({ "sdp": answer_sdp }).to_string());

    // Many joiners doing the same at once, none ever sees anything else.
    let runs = (100..108).map(|n| {
        let c = c.clone();
        let base = base.clone();
        let code = code.clone();
        async move {
            let j = jid(n);
            let url = answer_get_url(&base, &code, &j);
            let (p, o) = tokio::join!(get(&c, &url), post_offer(&c, &base, &code, &j, "v=0"));
            (p, o)
        }
    });
    let mut accepted = 0;
    for (p, o) in futures_join_all(runs).await {
        expect_error(&p, 404, "not yet");
        if o.status == 200 {
            expect_ok(&o);
            accepted += 1;
        } else {
            expect_error(&o, 503, "session is full (8 peers)");
        }
    }
    // One slot was taken already: exactly 7 of the 8 racers get in.
    assert_eq!(accepted, 7);
    s.stop().await.unwrap();
}

/// Runs futures concurrently and collects their outputs in order (spawned,
/// so they really overlap on the multi-thread runtime).
async fn futures_join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_base_path_prefix_serves_a_whole_join_and_nothing_outside_it() {
    let s = start(with_base("/rdv")).await;
    let base = s.url();
    assert!(
        base.ends_with("/rdv"),
        "url() includes the base path: {base}"
    );
    let root = format!("http://{}", s.addr);
    let c = client();

    // MidiEditor strips the trailing slash and appends paths as-is.
    assert_health_body(&get_like_midieditor(&c, &format!("{base}/health")).await);
    assert_health_body(&get(&c, &base).await);
    assert_health_body(&get(&c, &format!("{base}/")).await);

    let r = post(
        &c,
        &format!("{base}/session"),
        json!({"sessionId": "", "displayName": "Prefixed"}),
    )
    .await;
    assert_json_reply(&r);
    assert_eq!(r.status, 200, "{}", r.text);
    let code = r.json["code"].as_str().unwrap().to_owned();
    assert_code_shape(&code);
    let r = get_like_midieditor(&c, &format!("{base}/code/{code}")).await;
    expect_body(&r, 200, r#"{"sessionId":"","displayName":"Prefixed"}"#);
    let joiner = jid(7);
    let r = get_like_midieditor(&c, &answer_get_url(&base, &code, &joiner)).await;
    expect_error(&r, 404, "not yet");
    expect_ok(&post_offer(&c, &base, &code, &joiner, &fake_sdp("o")).await);
    let offers = list_offers(&c, &base, &code).await;
    assert_eq!(ids(&offers), [joiner.as_str()]);
    expect_ok(&post_answer(&c, &base, &code, &joiner, &fake_sdp("a")).await);
    let r = get_like_midieditor(&c, &answer_get_url(&base, &code, &joiner)).await;
    expect_body(&r, 200, &json!({ "sdp": fake_sdp("a") }).to_string());

    // Outside the base path everything is the generic 404, the routes too.
    for (m, p) in [
        (Method::GET, "/".to_owned()),
        (Method::GET, "/health".to_owned()),
        (Method::POST, "/session".to_owned()),
        (Method::GET, format!("/code/{code}")),
        (Method::GET, format!("/code/{code}/joiner-offers")),
        (Method::GET, format!("/code/{code}/host-answer/{joiner}")),
        (Method::GET, "/rdvx/health".to_owned()),
        (Method::GET, "/rdvhealth".to_owned()),
        (Method::GET, "/RDV/health".to_owned()),
        (Method::POST, "/other/rdv/session".to_owned()),
    ] {
        let body = (m == Method::POST).then(|| json!({"sessionId": "x"}).to_string());
        let r = send(&c, m, &format!("{root}{p}"), Some("application/json"), body).await;
        expect_error(&r, 404, "not found");
    }
    // Inside it, unknown paths are the generic 404 as well.
    let r = get(&c, &format!("{base}/nope")).await;
    expect_error(&r, 404, "not found");
    s.stop().await.unwrap();
}

/// The in-app "Test connection" and a real join, request for request as
/// MidiEditor makes them (GETs carry `Content-Type: application/json`),
/// host and joiner against the same rendezvous from one process.
#[tokio::test]
async fn full_join_end_to_end_as_midieditor_does_it() {
    let (s, base, host) = server().await;
    let started = std::time::Instant::now();
    let joiner = client();

    // Both sides: pre-flight.
    for side in [&host, &joiner] {
        let r = get_like_midieditor(side, &format!("{base}/health")).await;
        assert_health_body(&r);
    }
    // Host: announce.
    let r = post(
        &host,
        &format!("{base}/session"),
        json!({"sessionId": "", "displayName": "Studio A"}),
    )
    .await;
    assert_json_reply(&r);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["expiresInSec"], 300);
    let code = r.json["code"].as_str().unwrap().to_owned();
    assert_code_shape(&code);
    // Host: first poll, nothing yet.
    let r = get_like_midieditor(&host, &offers_url(&base, &code)).await;
    expect_body(&r, 200, r#"{"offers":[]}"#);
    // Joiner: verify the code.
    let r = get_like_midieditor(&joiner, &format!("{base}/code/{code}")).await;
    expect_body(&r, 200, r#"{"sessionId":"","displayName":"Studio A"}"#);
    // Joiner: 16-char id from [A-Za-z0-9-], offer, answer poll in parallel.
    let jid16 = "aB3-xY9z-Qr7-Km2";
    assert_eq!(jid16.len(), 16);
    let offer_sdp = fake_sdp("joinerufrag");
    let poll_url = answer_get_url(&base, &code, jid16);
    let (poll, offer) = tokio::join!(
        get_like_midieditor(&joiner, &poll_url),
        post_offer(&joiner, &base, &code, jid16, &offer_sdp)
    );
    expect_error(&poll, 404, "not yet");
    expect_ok(&offer);
    // Host: poll offers, answer the new joiner.
    let r = get_like_midieditor(&host, &offers_url(&base, &code)).await;
    assert_json_reply(&r);
    assert_eq!(r.status, 200);
    let listed = &r.json["offers"];
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["joinerId"], jid16);
    assert_eq!(listed[0]["sdp"], offer_sdp.as_str());
    assert!(listed[0]["ts"].as_u64().unwrap() <= now_ms());
    let answer_sdp = fake_sdp("hostufrag");
    expect_ok(&post_answer(&host, &base, &code, jid16, &answer_sdp).await);
    // Joiner: poll until answered.
    let mut answered = None;
    for _ in 0..360 {
        let r = get_like_midieditor(&joiner, &answer_get_url(&base, &code, jid16)).await;
        assert_json_reply(&r);
        assert!(r.status == 200 || r.status == 404, "{}", r.text);
        if r.status == 200 {
            answered = Some(r);
            break;
        }
    }
    let r = answered.expect("joiner got the answer");
    expect_body(&r, 200, &json!({ "sdp": answer_sdp }).to_string());
    // Host keeps polling: still 200, the answered offer still listed.
    let r = get_like_midieditor(&host, &offers_url(&base, &code)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["offers"][0]["joinerId"], jid16);
    // The "Test connection" verdict budget for the rendezvous part.
    assert!(started.elapsed() <= Duration::from_millis(3000));
    s.stop().await.unwrap();
}
