//! The shared store's edges that the conformance suite does not reach:
//! store-wide metrics, a Redis that is down when the instance starts, and
//! the in-process host API refusing a shared store. Each test starts its
//! own `redis-server` on loopback, or prints that it is skipped.

mod common;

use std::time::{Duration, Instant};

use common::{client, get, open_session};
use rdv::redis_store::RedisConfig;
use rdv::table::CreateError;
use rdv::{Config, Rendezvous, RunningServer};
use test_support::redis::{redis_available, RedisServer};

fn shared(url: &str, prefix: &str) -> Config {
    Config {
        store: Some(RedisConfig {
            url: url.to_owned(),
            prefix: prefix.to_owned(),
        }),
        ..Config::default()
    }
}

async fn start(config: Config) -> RunningServer {
    RunningServer::start("127.0.0.1:0".parse().unwrap(), Rendezvous::new(config))
        .await
        .unwrap()
}

fn gauge(metrics: &str, name: &str) -> String {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or("?")
        .to_owned()
}

#[tokio::test]
async fn metrics_count_the_sessions_of_every_instance() {
    if !redis_available("redis_store::metrics") {
        return;
    }
    let redis = RedisServer::start(false);
    let a = start(shared(&redis.url(), "m:")).await;
    let b = start(shared(&redis.url(), "m:")).await;
    let c = client();
    open_session(&c, &a.url(), "one").await;
    open_session(&c, &b.url(), "two").await;
    for s in [&a, &b] {
        let m = get(&c, &format!("{}/metrics", s.url())).await.text;
        assert_eq!(gauge(&m, "rdv_sessions"), "2", "{m}");
    }
    // Another prefix is another service on the same Redis.
    let other = start(shared(&redis.url(), "other:")).await;
    let m = get(&c, &format!("{}/metrics", other.url())).await.text;
    assert_eq!(gauge(&m, "rdv_sessions"), "0");
    for s in [a, b, other] {
        s.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_store_down_at_start_answers_503_then_serves_when_it_comes_up() {
    if !redis_available("redis_store::down_at_start") {
        return;
    }
    let mut redis = RedisServer::start(false);
    redis.kill();
    let s = start(shared(&redis.url(), "d:")).await;
    let c = client();
    let t = Instant::now();
    let r = common::post(
        &c,
        &format!("{}/session", s.url()),
        serde_json::json!({"sessionId": "s", "displayName": "x"}),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.error(), "session store unavailable; try again");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(get(&c, &format!("{}/health", s.url())).await.status, 200);
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = common::post(
            &c,
            &format!("{}/session", s.url()),
            serde_json::json!({"sessionId": "s", "displayName": "x"}),
        )
        .await;
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still {}: {}", r.status, r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn the_in_process_host_api_refuses_a_shared_store() {
    // No Redis needed: the store connects lazily and is never reached
    // (building it needs a Tokio runtime, hence the async test).
    let rdv = Rendezvous::new(shared("redis://127.0.0.1:1/0", "h:"));
    assert!(rdv.has_shared_store());
    assert_eq!(
        rdv.host_open("s", "host", true).map(|_| ()),
        Err(CreateError::NeedsMemoryStore)
    );
}

#[tokio::test]
async fn sessions_left_by_stopped_instances_are_swept_and_give_their_budgets_back() {
    if !redis_available("redis_store::swept_later") {
        return;
    }
    let redis = RedisServer::start(false);
    let clock = rdv::ManualClock::new();
    let config = Config {
        sweep_interval: Duration::from_millis(50),
        ..shared(&redis.url(), "g:")
    };
    let start_on_clock = |config: Config| {
        RunningServer::start(
            "127.0.0.1:0".parse().unwrap(),
            Rendezvous::with_clock(config, clock.clone()),
        )
    };
    let a = start_on_clock(config.clone()).await.unwrap();
    let c = client();
    let (code, _) = open_session(&c, &a.url(), "gone").await;
    let r = common::post(
        &c,
        &format!("{}/code/{code}/joiner-offer", a.url()),
        serde_json::json!({"joinerId": "joiner-000000009", "sdp": common::fake_sdp("g")}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let m = get(&c, &format!("{}/metrics", a.url())).await.text;
    assert_eq!(gauge(&m, "rdv_sessions"), "1");
    assert_ne!(gauge(&m, "rdv_sdp_bytes"), "0");
    a.stop().await.unwrap();
    // Nobody serves the store while the session's lifetime runs out; the
    // next instance's sweep removes it and gives its bytes back.
    clock.advance(Duration::from_secs(301));
    let b = start_on_clock(config).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = get(&c, &format!("{}/metrics", b.url())).await.text;
        if gauge(&m, "rdv_sessions") == "0" && gauge(&m, "rdv_sdp_bytes") == "0" {
            assert_eq!(gauge(&m, "rdv_sessions_expired_total"), "1");
            break;
        }
        assert!(Instant::now() < deadline, "not swept:\n{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.stop().await.unwrap();
}

#[tokio::test]
async fn a_store_that_hangs_answers_503_within_the_command_timeout_then_serves_again() {
    if !redis_available("redis_store::hung_store") {
        return;
    }
    let redis = RedisServer::start(false);
    let s = start(shared(&redis.url(), "hang:")).await;
    let c = client();
    let (code, _) = open_session(&c, &s.url(), "host").await;
    let pid = redis.pid().unwrap();
    // Stopped, not gone: connections stay open and nothing answers.
    test_support::send_signal(pid, "STOP");
    let t = Instant::now();
    let r = get(&c, &format!("{}/code/{code}", s.url())).await;
    let took = t.elapsed();
    test_support::send_signal(pid, "CONT");
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.error(), "session store unavailable; try again");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(3),
        "answered after {took:?}"
    );
    eprintln!("hung store: 503 after {took:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = get(&c, &format!("{}/code/{code}", s.url())).await;
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still {}: {}", r.status, r.text);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "hung store: served again {:?} after it resumed",
        t.elapsed() - took
    );
    s.stop().await.unwrap();
}
