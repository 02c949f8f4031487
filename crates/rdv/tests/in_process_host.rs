//! The in-process host API the desktop app uses on its bundled rendezvous,
//! exercised together with real HTTP joiners on a real port.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{client, fake_sdp, get, post};
use rdv::code::Code;
use rdv::Config;
use serde_json::json;

/// Waits until `rdv` holds a long-poll (its `rdv_longpoll_waiters` gauge,
/// counted once the poll has probed and found nothing ready), so what a
/// test does next happens while the poll is parked, not before it.
async fn parked(rdv: &rdv::Rendezvous) {
    let held = || {
        rdv.metrics_text()
            .lines()
            .find_map(|l| l.strip_prefix("rdv_longpoll_waiters "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while held() == 0 {
        assert!(Instant::now() < deadline, "no long-poll was parked");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_http_offer_reaches_the_in_process_host_at_once() {
    let server = common::start(Config::default()).await;
    let rdv = server.rdv.clone();
    let s = rdv.host_open("sess", "Host", true).unwrap();
    let code = s.code;
    let base = server.url();
    let c = client();

    let waiter = {
        let rdv = rdv.clone();
        let token = s.host_token.clone();
        tokio::spawn(async move {
            let seen = HashSet::new();
            let got = rdv
                .host_next_offers(code, &token, &seen, Duration::from_secs(10))
                .await;
            (got, Instant::now())
        })
    };
    // The long-poll parks first (the scenario).
    parked(&rdv).await;
    let posted_at = Instant::now();
    let r = post(
        &c,
        &format!("{base}/code/{code}/joiner-offer"),
        json!({"joinerId": "joiner-0001", "sdp": fake_sdp("a")}),
    )
    .await;
    assert_eq!(r.status, 200);
    let (got, woke_at) = waiter.await.unwrap();
    let offers = got.expect("session is live");
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].joiner_id, "joiner-0001");
    let delay = woke_at.saturating_duration_since(posted_at);
    assert!(delay < Duration::from_secs(1), "host woke after {delay:?}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn seen_offers_do_not_wake_the_host_again() {
    let server = common::start(Config::default()).await;
    let rdv = server.rdv.clone();
    let s = rdv.host_open("sess", "Host", false).unwrap();
    let c = client();
    post(
        &c,
        &format!("{}/code/{}/joiner-offer", server.url(), s.code),
        json!({"joinerId": "joiner-0001", "sdp": "x"}),
    )
    .await;
    let mut seen = HashSet::new();
    let first = rdv
        .host_next_offers(s.code, &s.host_token, &seen, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    seen.insert(first[0].joiner_id.clone());
    let started = Instant::now();
    let again = rdv
        .host_next_offers(s.code, &s.host_token, &seen, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(again.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(250));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_in_process_answer_releases_the_joiners_long_poll() {
    let server = common::start(Config::default()).await;
    let rdv = server.rdv.clone();
    let s = rdv.host_open("sess", "Host", true).unwrap();
    let url = format!(
        "{}/code/{}/host-answer/joiner-0001?wait=10000",
        server.url(),
        s.code
    );
    let c = client();
    let poll = tokio::spawn(async move { get(&c, &url).await });
    // The long-poll parks first (the scenario).
    parked(&rdv).await;
    rdv.host_answer(s.code, &s.host_token, "joiner-0001", "v=0 answer".into())
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(2), poll)
        .await
        .expect("long-poll not released")
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json["sdp"], "v=0 answer");
    // A protected session refuses answers without its token.
    assert!(rdv
        .host_answer(s.code, "wrong", "joiner-0002", "x".into())
        .is_err());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn closing_the_session_ends_it_for_joiners_and_waiters() {
    let server = common::start(Config::default()).await;
    let rdv = server.rdv.clone();
    let s = rdv.host_open("sess", "Host", false).unwrap();
    let c = client();
    let base = server.url();
    let code: Code = s.code;
    assert_eq!(get(&c, &format!("{base}/code/{code}")).await.status, 200);
    let waiter = {
        let c = c.clone();
        let url = format!("{base}/code/{code}/joiner-offers?wait=10000");
        tokio::spawn(async move { get(&c, &url).await })
    };
    // The long-poll parks first (the scenario).
    parked(&rdv).await;
    rdv.host_close(code, &s.host_token).unwrap();
    let r = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .expect("waiter not released")
        .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.error(), "no session for code");
    let r = get(&c, &format!("{base}/code/{code}")).await;
    assert_eq!(r.status, 404);
    assert!(rdv.host_close(code, &s.host_token).is_err());
    server.stop().await.unwrap();
}

#[tokio::test]
async fn in_process_display_names_follow_the_wire_rules() {
    let server = common::start(Config::default()).await;
    let s = server.rdv.host_open("", &"n".repeat(100), false).unwrap();
    let r = get(&client(), &format!("{}/code/{}", server.url(), s.code)).await;
    assert_eq!(r.json["displayName"].as_str().unwrap().len(), 64);
    assert_eq!(r.json["sessionId"], "");
    server.stop().await.unwrap();
}

/// The jam engine sees the bundled rendezvous only through
/// `types::InProcessRendezvous`: the same session, seen through the trait,
/// with the table's refusals turned into "gone" or words.
#[tokio::test]
async fn the_host_trait_reaches_the_same_table() {
    use std::sync::Arc;
    use types::{HostError, InProcessRendezvous};

    let server = common::start(Config::default()).await;
    let host: Arc<dyn InProcessRendezvous> = Arc::new(server.rdv.clone());
    let s = host.host_open("sess", "Host", true, None).unwrap();
    let (code, token) = (s.code, s.host_token.clone());
    let c = client();
    let base = server.url();
    let r = post(
        &c,
        &format!("{base}/code/{code}/joiner-offer"),
        json!({"joinerId": "joiner-0001", "sdp": fake_sdp("a")}),
    )
    .await;
    assert_eq!(r.status, 200);
    let offers = host
        .host_next_offers(code, &token, &HashSet::new(), Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].joiner_id, "joiner-0001");
    host.host_answer(code, &token, "joiner-0001", "v=0 answer".into())
        .unwrap();
    assert!(matches!(
        host.host_answer(code, &token, "joiner-0001", "v=0 again".into()),
        Err(HostError::Refused(_))
    ));
    let r = get(&c, &format!("{base}/code/{code}/host-answer/joiner-0001")).await;
    assert_eq!(r.status, 200);
    assert_eq!(host.host_release(code, &token, "joiner-0001"), Ok(true));
    host.host_close(code, &token).unwrap();
    assert_eq!(
        host.host_next_offers(code, &token, &HashSet::new(), Duration::ZERO)
            .await,
        Err(HostError::SessionGone)
    );
    assert_eq!(host.host_close(code, &token), Err(HostError::SessionGone));
    server.stop().await.unwrap();
}
