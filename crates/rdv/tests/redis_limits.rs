//! The open-internet limits of `table.rs` through the shared store: SDP
//! budgets per session, per source and in total (given back on expiry), and
//! the full table's eviction order (idle first, else the biggest holder,
//! never a polling host), on two instances sharing one real
//! `redis-server`, requests alternating between them. Sources are told
//! apart by `x-forwarded-for`, as behind a proxy.
//!
//! Needs `redis-server` (`scripts/setup.sh` installs it).

mod common;

#[path = "harness/redis_pair.rs"]
mod harness;

use std::time::Duration;

use common::{fake_sdp, Reply};
use harness::{client, start_with_clock};
use rdv::table::TableLimits;
use rdv::Config;
use serde_json::json;

fn behind_proxy(table: TableLimits) -> Config {
    Config {
        table,
        client_ip_header: Some("x-forwarded-for".into()),
        hold_plain_polls: Duration::ZERO,
        sweep_interval: Duration::from_millis(50),
        ..Config::default()
    }
}

async fn send(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    ip: &str,
    body: Option<serde_json::Value>,
) -> Reply {
    let mut rb = c.request(method, url).header("x-forwarded-for", ip);
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    Reply::from(rb.send().await.unwrap()).await
}

async fn open_from(c: &reqwest::Client, base: &str, ip: &str) -> Reply {
    send(
        c,
        reqwest::Method::POST,
        &format!("{base}/session"),
        ip,
        Some(json!({"sessionId": "s", "displayName": "h"})),
    )
    .await
}

async fn code_from(c: &reqwest::Client, base: &str, ip: &str) -> String {
    let r = open_from(c, base, ip).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["code"].as_str().unwrap().to_owned()
}

async fn offer_from(
    c: &reqwest::Client,
    base: &str,
    code: &str,
    n: u32,
    sdp: &str,
    ip: &str,
) -> Reply {
    send(
        c,
        reqwest::Method::POST,
        &format!("{base}/code/{code}/joiner-offer"),
        ip,
        Some(json!({"joinerId": format!("joiner-{n:09}"), "sdp": sdp})),
    )
    .await
}

async fn alive(c: &reqwest::Client, base: &str, code: &str) -> bool {
    let r = send(
        c,
        reqwest::Method::GET,
        &format!("{base}/code/{code}"),
        "10.9.9.9",
        None,
    )
    .await;
    r.status == 200
}

async fn host_poll(c: &reqwest::Client, base: &str, code: &str, ip: &str) {
    let r = send(
        c,
        reqwest::Method::GET,
        &format!("{base}/code/{code}/joiner-offers"),
        ip,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

fn metric(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or("?")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdp_budgets_hold_per_session_per_source_and_in_total_and_come_back_on_expiry() {
    let (s, clock) = start_with_clock(behind_proxy(TableLimits {
        max_peers: 8,
        max_sdp_bytes_per_session: 0, // the floor: 8 x 32 KiB = 262,144
        max_sdp_bytes_per_source: 150_000,
        max_sdp_bytes_total: 300_000,
        ..TableLimits::default()
    }))
    .await;
    let base = s.url();
    let c = client();
    let host = "10.0.0.100";
    let (a, b, d) = (
        code_from(&c, &base, host).await,
        code_from(&c, &base, host).await,
        code_from(&c, &base, host).await,
    );
    let sdp = format!(
        "{}{}",
        fake_sdp("big"),
        "a".repeat(60_000 - fake_sdp("big").len())
    );
    assert_eq!(sdp.len(), 60_000);
    // Session budget: four 60 KB offers fit in 256 KiB, a fifth does not.
    for i in 1..=4 {
        let r = offer_from(&c, &base, &a, i, &sdp, &format!("10.0.1.{i}")).await;
        assert_eq!(r.status, 200, "offer {i}: {}", r.text);
    }
    let r = offer_from(&c, &base, &a, 5, &sdp, "10.0.1.5").await;
    assert_eq!(
        (r.status, r.error()),
        (503, "session holds too much SDP; try again later")
    );
    // Source budget: 10.0.1.1 holds 60 KB; one more fits, a third does not.
    let r = offer_from(&c, &base, &b, 6, &sdp, "10.0.1.1").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = offer_from(&c, &base, &d, 7, &sdp, "10.0.1.1").await;
    assert_eq!(
        (r.status, r.error()),
        (429, "too much SDP stored from this address")
    );
    // Total: 300 KB stored, nothing more fits anywhere.
    let r = offer_from(&c, &base, &d, 8, &sdp, "10.0.1.6").await;
    assert_eq!(
        (r.status, r.error()),
        (503, "server is at capacity; try again later")
    );
    let m = common::get(&c, &format!("{base}/metrics")).await.text;
    assert_eq!(metric(&m, "rdv_sdp_bytes"), "300000");
    // Expiry gives every byte back once the sweep (or an access) removes
    // the sessions, as in memory.
    clock.advance(Duration::from_secs(301));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let m = common::get(&c, &format!("{base}/metrics")).await.text;
        if metric(&m, "rdv_sdp_bytes") == "0" && metric(&m, "rdv_sessions") == "0" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = code_from(&c, &base, host).await;
    for (i, n) in [(9, "10.0.1.1"), (10, "10.0.1.1")] {
        let r = offer_from(&c, &base, &e, i, &sdp, n).await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    let m = common::get(&c, &format!("{base}/metrics")).await.text;
    assert_eq!(metric(&m, "rdv_sdp_bytes"), "120000");
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_evicts_the_idle_then_the_biggest_holder_never_a_polling_host() {
    let (s, clock) = start_with_clock(behind_proxy(TableLimits {
        max_sessions: 4,
        idle_after: Duration::from_secs(60),
        ..TableLimits::default()
    }))
    .await;
    let base = s.url();
    let c = client();
    let host = code_from(&c, &base, "10.0.0.1").await;
    let mut squat = Vec::new();
    for _ in 0..3 {
        squat.push(code_from(&c, &base, "10.0.0.2").await);
    }
    // Full: the biggest holder (3 sessions) gives one up for a newcomer.
    clock.advance(Duration::from_secs(1));
    host_poll(&c, &base, &host, "10.0.0.1").await;
    let newcomer = code_from(&c, &base, "10.0.0.3").await;
    assert!(alive(&c, &base, &host).await);
    assert!(alive(&c, &base, &newcomer).await);
    let mut left = 0;
    for code in &squat {
        left += usize::from(alive(&c, &base, code).await);
    }
    assert_eq!(left, 2);
    // Shares 1/2/1: the 2-session source gives one up for a source with
    // none; at 1/1/1/1 nobody holds two more, so the next is refused.
    clock.advance(Duration::from_secs(1));
    code_from(&c, &base, "10.0.0.4").await;
    assert!(alive(&c, &base, &host).await);
    let r = open_from(&c, &base, "10.0.0.5").await;
    assert_eq!(
        (r.status, r.error()),
        (503, "server is at capacity; try again later")
    );
    // Later only the host keeps polling: an idle session goes first.
    clock.advance(Duration::from_secs(88));
    host_poll(&c, &base, &host, "10.0.0.1").await;
    let late = code_from(&c, &base, "10.0.0.5").await;
    assert!(alive(&c, &base, &host).await);
    assert!(alive(&c, &base, &late).await);
    let m = common::get(&c, &format!("{base}/metrics")).await.text;
    assert_eq!(metric(&m, "rdv_sessions_evicted_total"), "3");
    assert_eq!(metric(&m, "rdv_sessions"), "4");
    s.stop().await.unwrap();
}
