//! Several real `midi-rdv serve` processes on one real `redis-server`
//! (`--store`), all on loopback: a session opened on one instance is
//! joined through another, long-poll wake-ups and the guessing lockout
//! cross instances, an instance SIGKILLed mid-join does not stop the join,
//! a Redis restart mid-session costs a clear 503 and nothing else, and
//! sessions outlive a restart of the server.
//!
//! Needs `redis-server` (Debian's package, installed by
//! `scripts/setup.sh`): without it each test prints that it is skipped.

#[path = "support/cli.rs"]
mod cli;
#[path = "../../rdv/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{client, fake_sdp, get, open_session, post};
use serde_json::json;
use test_support::redis::{redis_available, RedisServer};

const BIN: &str = env!("CARGO_BIN_EXE_midi-rdv");
const STARTUP_PREFIX: &str = "midi-rdv listening on ";

/// One `midi-rdv serve` on 127.0.0.1 with a shared store; killed on drop.
struct Instance {
    child: Child,
    url: String,
}

impl Instance {
    fn start(store: &str, prefix: &str, extra: &[&str]) -> Instance {
        let mut cmd = Command::new(BIN);
        cli::plain(&mut cmd);
        cmd.args(["serve", "--bind", "127.0.0.1", "--port", "0"])
            .args(["--store", store, "--store-prefix", prefix])
            .args(extra)
            .env("MIDI_RDV_LOG", "warn");
        let mut child = cmd.spawn().expect("spawn midi-rdv serve");
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            assert!(!s.contains("panicked"), "midi-rdv panicked:\n{s}");
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            let _ = tx.send(line);
            let _ = std::io::copy(&mut r, &mut std::io::sink());
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("startup line");
        let url = line
            .trim()
            .strip_prefix(STARTUP_PREFIX)
            .unwrap_or_else(|| panic!("startup line {line:?}"))
            .to_owned();
        Instance { child, url }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL by its own PID: no shutdown, nothing flushed.
    fn kill(&mut self) {
        test_support::send_signal(self.pid(), "KILL");
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn offer_url(base: &str, code: &str) -> String {
    format!("{base}/code/{code}/joiner-offer")
}

fn answer_url(base: &str, code: &str) -> String {
    format!("{base}/code/{code}/host-answer")
}

fn answer_get_url(base: &str, code: &str, joiner: &str) -> String {
    format!("{base}/code/{code}/host-answer/{joiner}")
}

fn offers_url(base: &str, code: &str) -> String {
    format!("{base}/code/{code}/joiner-offers")
}

/// A GET started now (a long-poll): its status and body once it answers.
fn spawn_get(c: &reqwest::Client, url: String) -> tokio::task::JoinHandle<(u16, String)> {
    let c = c.clone();
    tokio::spawn(async move {
        let r = c.get(&url).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

/// The host posts the answer for `joiner` through `base` with its token;
/// the status.
async fn post_answer(
    c: &reqwest::Client,
    base: &str,
    code: &str,
    token: &str,
    joiner: &str,
) -> u16 {
    c.post(answer_url(base, code))
        .bearer_auth(token)
        .json(&json!({"joinerId": joiner, "sdp": "v=0 answer"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opened_on_one_instance_is_joined_through_another_with_cross_instance_wakeups() {
    if !redis_available("serve_redis::cross_instance_join") {
        return;
    }
    let redis = RedisServer::start(false);
    let a = Instance::start(&redis.url(), "x1:", &[]);
    let b = Instance::start(&redis.url(), "x1:", &[]);
    let c = client();
    let (code, token) = open_session(&c, &a.url, "host on A").await;
    // The joiner looks the code up and offers through B.
    let r = get(&c, &format!("{}/code/{code}", b.url)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["displayName"], "host on A");
    // The host long-polls A for offers; the joiner's offer lands on B.
    let host_poll = {
        let (c, url) = (
            c.clone(),
            format!("{}?wait=20000", offers_url(&a.url, &code)),
        );
        let token = token.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let r = c.get(&url).bearer_auth(token).send().await.unwrap();
            let body: serde_json::Value = r.json().await.unwrap();
            (t.elapsed(), body)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let joiner = "joiner-000000001";
    let posted = Instant::now();
    let r = post(
        &c,
        &offer_url(&b.url, &code),
        json!({"joinerId": joiner, "sdp": fake_sdp("j1")}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let (held, body) = host_poll.await.unwrap();
    let woke_after = posted.elapsed();
    assert_eq!(body["offers"][0]["joinerId"], joiner);
    assert!(
        woke_after < Duration::from_millis(1000),
        "the host's long-poll on A woke {woke_after:?} after the offer on B (held {held:?})"
    );
    eprintln!("offer on B -> long-poll on A answered in {woke_after:?}");
    // The joiner long-polls B for the answer; the host answers through A.
    let joiner_poll = spawn_get(
        &c,
        format!("{}?wait=20000", answer_get_url(&b.url, &code, joiner)),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answered = Instant::now();
    assert_eq!(post_answer(&c, &a.url, &code, &token, joiner).await, 200);
    let (status, text) = joiner_poll.await.unwrap();
    let woke_after = answered.elapsed();
    assert_eq!((status, text.as_str()), (200, r#"{"sdp":"v=0 answer"}"#));
    assert!(
        woke_after < Duration::from_millis(1000),
        "the joiner's long-poll on B woke {woke_after:?} after the answer on A"
    );
    eprintln!("answer on A -> long-poll on B answered in {woke_after:?}");
}

#[tokio::test]
async fn the_guessing_lockout_is_shared_by_every_instance() {
    if !redis_available("serve_redis::shared_lockout") {
        return;
    }
    let redis = RedisServer::start(false);
    let a = Instance::start(&redis.url(), "x2:", &[]);
    let b = Instance::start(&redis.url(), "x2:", &[]);
    let c = client();
    let (code, _) = open_session(&c, &a.url, "real").await;
    // 31 failed lookups, alternating instances: the 31st locks out.
    for i in 0..31 {
        let base = if i % 2 == 0 { &a.url } else { &b.url };
        let r = get(&c, &format!("{base}/code/ZZZ{}", ["Z", "Y"][i % 2])).await;
        assert_eq!(r.status, 404, "guess {i}: {}", r.text);
    }
    for base in [&a.url, &b.url] {
        let r = get(&c, &format!("{base}/code/{code}")).await;
        assert_eq!(r.status, 429, "locked out on {base}: {}", r.text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_killed_mid_join_does_not_stop_the_join() {
    if !redis_available("serve_redis::killed_mid_join") {
        return;
    }
    let redis = RedisServer::start(false);
    let a = Instance::start(&redis.url(), "x3:", &[]);
    let mut b = Instance::start(&redis.url(), "x3:", &[]);
    let c = client();
    let (code, token) = open_session(&c, &a.url, "host").await;
    let joiner = "joiner-000000002";
    let r = post(
        &c,
        &offer_url(&b.url, &code),
        json!({"joinerId": joiner, "sdp": fake_sdp("j2")}),
    )
    .await;
    assert_eq!(r.status, 200);
    // The joiner waits on B for the answer; B dies with the poll open.
    let poll = {
        let (c, url) = (
            c.clone(),
            format!("{}?wait=20000", answer_get_url(&b.url, &code, joiner)),
        );
        tokio::spawn(async move { c.get(&url).send().await.is_err() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    b.kill();
    assert!(poll.await.unwrap(), "the poll on the killed instance fails");
    // The host's view and the join carry on through A.
    let r = c
        .get(offers_url(&a.url, &code))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["offers"][0]["joinerId"], joiner);
    assert_eq!(post_answer(&c, &a.url, &code, &token, joiner).await, 200);
    let r = get(&c, &answer_get_url(&a.url, &code, joiner)).await;
    assert_eq!(
        (r.status, r.text.as_str()),
        (200, r#"{"sdp":"v=0 answer"}"#)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_session_costs_a_clear_503_and_the_join_completes() {
    if !redis_available("serve_redis::redis_restart") {
        return;
    }
    let mut redis = RedisServer::start(true);
    let a = Instance::start(&redis.url(), "x4:", &[]);
    let c = client();
    let (code, token) = open_session(&c, &a.url, "host").await;
    let joiner = "joiner-000000003";
    let r = post(
        &c,
        &offer_url(&a.url, &code),
        json!({"joinerId": joiner, "sdp": fake_sdp("j3")}),
    )
    .await;
    assert_eq!(r.status, 200);

    redis.kill();
    // During the outage: a JSON 503 with CORS, well within the bound.
    for url in [
        format!("{}/code/{code}", a.url),
        answer_get_url(&a.url, &code, joiner),
        offers_url(&a.url, &code),
    ] {
        let t = Instant::now();
        let r = get(&c, &url).await;
        assert_eq!(r.status, 503, "{url}: {}", r.text);
        assert_eq!(r.error(), "session store unavailable; try again");
        assert_eq!(r.headers["access-control-allow-origin"], "*");
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "{url} took {:?}",
            t.elapsed()
        );
        eprintln!("Redis down: 503 in {:?}", t.elapsed());
    }
    let r = post(
        &c,
        &format!("{}/session", a.url),
        json!({"sessionId": "s", "displayName": "x"}),
    )
    .await;
    assert_eq!(r.status, 503, "{}", r.text);
    let r = get(&c, &format!("{}/health", a.url)).await;
    assert_eq!(r.status, 200, "/health needs no store");

    redis.restart();
    // Back on its own: the session is still there and the join completes.
    let back = Instant::now();
    let deadline = back + Duration::from_secs(10);
    let r = loop {
        let r = get(&c, &format!("{}/code/{code}", a.url)).await;
        if r.status != 503 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(r.status, 200, "after the restart: {}", r.text);
    eprintln!("Redis back: served again within {:?}", back.elapsed());
    let r = c
        .get(offers_url(&a.url, &code))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["offers"][0]["joinerId"], joiner);
    // And long-poll wake-ups work again (the subscription came back).
    let poll = spawn_get(
        &c,
        format!("{}?wait=20000", answer_get_url(&a.url, &code, joiner)),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(post_answer(&c, &a.url, &code, &token, joiner).await, 200);
    let t = Instant::now();
    let (status, text) = poll.await.unwrap();
    assert_eq!((status, text.as_str()), (200, r#"{"sdp":"v=0 answer"}"#));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "woken in {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn sessions_survive_a_restart_of_the_server() {
    if !redis_available("serve_redis::server_restart") {
        return;
    }
    let redis = RedisServer::start(false);
    let mut a = Instance::start(&redis.url(), "x5:", &[]);
    let c = client();
    let (code, token) = open_session(&c, &a.url, "kept").await;
    a.kill();
    let a2 = Instance::start(&redis.url(), "x5:", &[]);
    let r = get(&c, &format!("{}/code/{code}", a2.url)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["displayName"], "kept");
    // The host token still holds, so the protected session stays its host's.
    let r = c
        .get(offers_url(&a2.url, &code))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test]
async fn a_bad_store_url_is_refused_at_startup() {
    // Not Redis at all, and TLS, which is not compiled in.
    for url in ["http://not-redis", "rediss://127.0.0.1:6379/0"] {
        let mut cmd = Command::new(BIN);
        cli::plain(&mut cmd);
        let out = cmd
            .args(["serve", "--bind", "127.0.0.1", "--port", "0"])
            .args(["--store", url])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{url} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("invalid store URL"), "{url}: {err}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains(STARTUP_PREFIX));
    }
}
