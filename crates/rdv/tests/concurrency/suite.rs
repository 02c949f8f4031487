//! Concurrency: many real HTTP requests fired at the same instant against a
//! real server on a real loopback port. These check "Deliberate improvements"
//! 4 and 6 of PROTOCOL.md: the slot cap, the 409 rules and code allocation
//! are atomic, and no accepted offer is ever lost.
//!
//! One module run by two targets: `tests/concurrency.rs` (one in-memory
//! server) and `tests/concurrency_redis.rs` (two instances on one Redis,
//! requests alternating, so the races are between instances too).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::common::{fake_sdp, get, open_session, post, post_raw, Reply};
use super::harness::{client, start};
use rdv::table::TableLimits;
use rdv::Config;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::Barrier;

const FULL: &str = "session is full (8 peers)";
const ID_IN_USE: &str = "joinerId already in use; pick a fresh one";
const ANSWER_TAKEN: &str = "answer already posted for this joinerId";
const ALPHABET: &str = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// A valid joinerId (`[A-Za-z0-9-]{8,64}`), distinct per tag and index.
fn joiner_id(tag: &str, i: usize) -> String {
    format!("{tag}-j{i:04}")
}

/// Runs `n` futures made by `make`, each on its own task, all released at
/// once by a barrier so the requests really start together. Results come
/// back in index order.
async fn race<F, Fut, T>(n: usize, make: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let fut = make(i);
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.expect("racing task panicked"));
    }
    out
}

/// Opens `n` pooled connections ahead of a race, so the racers do not
/// spend their head start on TCP handshakes.
async fn warm_up(c: &reqwest::Client, base: &str, n: usize) {
    let url = format!("{base}/health");
    let statuses = race(n, |_| {
        let c = c.clone();
        let url = url.clone();
        async move { get(&c, &url).await.status }
    })
    .await;
    assert!(statuses.iter().all(|s| *s == 200));
}

async fn post_offer(c: &reqwest::Client, base: &str, code: &str, id: &str, sdp: &str) -> Reply {
    post(
        c,
        &format!("{base}/code/{code}/joiner-offer"),
        json!({"joinerId": id, "sdp": sdp}),
    )
    .await
}

/// The host's view: (joinerId, sdp) in listed order.
async fn list_offers(c: &reqwest::Client, base: &str, code: &str) -> Vec<(String, String)> {
    let r = get(c, &format!("{base}/code/{code}/joiner-offers")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json["offers"]
        .as_array()
        .expect("offers array")
        .iter()
        .map(|o| {
            (
                o["joinerId"].as_str().unwrap().to_owned(),
                o["sdp"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn statuses(replies: &[Reply]) -> HashMap<u16, usize> {
    let mut m = HashMap::new();
    for r in replies {
        *m.entry(r.status).or_insert(0) += 1;
    }
    m
}

fn assert_json_error(r: &Reply) {
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "status {} body {}",
        r.status,
        r.text
    );
    assert_eq!(
        r.headers
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("*")
    );
    assert!(
        !r.error().is_empty() && r.error() != "<no error field>",
        "not a JSON error: {}",
        r.text
    );
}

/// Races `racers` distinct joiners for the slots of a session already
/// holding `filled` offers, and returns (ids, replies) of the racers.
async fn slot_race(
    c: &reqwest::Client,
    base: &str,
    code: &str,
    tag: &str,
    racers: usize,
) -> Vec<(String, Reply)> {
    let base = base.to_owned();
    let code = code.to_owned();
    let tag = tag.to_owned();
    race(racers, |i| {
        let c = c.clone();
        let base = base.clone();
        let code = code.clone();
        let id = joiner_id(&tag, i);
        async move {
            let r = post_offer(&c, &base, &code, &id, &fake_sdp(&id)).await;
            (id, r)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_joiners_racing_for_eight_slots_exactly_eight_win_and_are_listed() {
    let server = start(Config::default()).await;
    let base = server.url();
    let c = client();
    warm_up(&c, &base, 16).await;
    for round in 0..5 {
        let (code, _) = open_session(&c, &base, "host").await;
        let replies = slot_race(&c, &base, &code, &format!("r{round}"), 16).await;

        let mut winners = HashSet::new();
        for (id, r) in &replies {
            match r.status {
                200 => {
                    assert_eq!(r.json, json!({"ok": true}));
                    winners.insert(id.clone());
                }
                503 => {
                    assert_eq!(r.error(), FULL);
                    assert_json_error(r);
                }
                s => panic!("unexpected {s} for {id}: {}", r.text),
            }
        }
        assert_eq!(winners.len(), 8, "round {round}: exactly the cap wins");

        let listed = list_offers(&c, &base, &code).await;
        assert_eq!(listed.len(), 8, "round {round}: every winner listed once");
        let listed_ids: HashSet<String> = listed.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(
            listed_ids, winners,
            "round {round}: the list is the winners"
        );
        for (id, sdp) in &listed {
            assert_eq!(sdp, &fake_sdp(id), "each winner's own sdp is stored");
        }

        // The session stays full for anyone else.
        let late = post_offer(&c, &base, &code, "latecomer-1", &fake_sdp("late")).await;
        assert_eq!(late.status, 503);
        assert_eq!(late.error(), FULL);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_joiners_racing_for_the_last_slot_exactly_one_wins() {
    let server = start(Config::default()).await;
    let base = server.url();
    let c = client();
    warm_up(&c, &base, 10).await;
    for round in 0..5 {
        let (code, _) = open_session(&c, &base, "host").await;
        let mut seated = HashSet::new();
        for i in 0..7 {
            let id = joiner_id(&format!("seat{round}"), i);
            let r = post_offer(&c, &base, &code, &id, &fake_sdp(&id)).await;
            assert_eq!(r.status, 200, "{}", r.text);
            seated.insert(id);
        }

        let replies = slot_race(&c, &base, &code, &format!("last{round}"), 10).await;
        let winners: Vec<&String> = replies
            .iter()
            .filter(|(_, r)| r.status == 200)
            .map(|(id, _)| id)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one takes the last slot"
        );
        for (id, r) in &replies {
            if r.status != 200 {
                assert_eq!(r.status, 503, "{id}: {}", r.text);
                assert_eq!(r.error(), FULL);
            }
        }

        let listed = list_offers(&c, &base, &code).await;
        assert_eq!(listed.len(), 8);
        let listed_ids: HashSet<String> = listed.iter().map(|(id, _)| id.clone()).collect();
        seated.insert(winners[0].clone());
        assert_eq!(listed_ids, seated);
        // The first seven keep their arrival order at the head of the list.
        let head: Vec<String> = listed.iter().take(7).map(|(id, _)| id.clone()).collect();
        let expected: Vec<String> = (0..7)
            .map(|i| joiner_id(&format!("seat{round}"), i))
            .collect();
        assert_eq!(head, expected);
        assert_eq!(&listed[7].0, winners[0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_offers_posted_at_the_same_instant_are_all_accepted_and_listed() {
    let server = start(Config::default()).await;
    let base = server.url();
    let c = client();
    warm_up(&c, &base, 8).await;
    for round in 0..10 {
        let (code, _) = open_session(&c, &base, "host").await;
        let replies = slot_race(&c, &base, &code, &format!("same{round}"), 8).await;
        for (id, r) in &replies {
            assert_eq!(r.status, 200, "round {round}, {id}: {}", r.text);
            assert_eq!(r.json, json!({"ok": true}));
        }

        let r = get(&c, &format!("{base}/code/{code}/joiner-offers")).await;
        assert_eq!(r.status, 200);
        let offers = r.json["offers"].as_array().unwrap();
        assert_eq!(offers.len(), 8, "round {round}: no accepted offer is lost");
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let mut seen = HashSet::new();
        for o in offers {
            let id = o["joinerId"].as_str().unwrap();
            assert!(seen.insert(id.to_owned()), "{id} listed twice");
            assert_eq!(o["sdp"].as_str().unwrap(), fake_sdp(id));
            let ts = o["ts"].as_u64().expect("ts is an integer");
            assert!(ts <= now_ms && now_ms - ts < 60_000, "ts {ts} is recent");
        }
        let expected: HashSet<String> = replies.iter().map(|(id, _)| id.clone()).collect();
        assert_eq!(seen, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn simultaneous_offers_for_one_joiner_id_exactly_one_wins_and_its_sdp_is_kept() {
    let server = start(Config::default()).await;
    let base = server.url();
    let c = client();
    warm_up(&c, &base, 10).await;
    for round in 0..5 {
        let (code, _) = open_session(&c, &base, "host").await;
        let id = format!("contested-{round}");
        let replies = race(10, |i| {
            let c = c.clone();
            let base = base.clone();
            let code = code.clone();
            let id = id.clone();
            async move {
                let sdp = fake_sdp(&format!("attempt{i}"));
                let r = post_offer(&c, &base, &code, &id, &sdp).await;
                (sdp, r)
            }
        })
        .await;

        let winners: Vec<&String> = replies
            .iter()
            .filter(|(_, r)| r.status == 200)
            .map(|(sdp, _)| sdp)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one post wins");
        for (_, r) in &replies {
            if r.status != 200 {
                assert_eq!(r.status, 409, "{}", r.text);
                assert_eq!(r.error(), ID_IN_USE);
                assert_json_error(r);
            }
        }

        let listed = list_offers(&c, &base, &code).await;
        assert_eq!(listed, vec![(id.clone(), winners[0].clone())]);
    }
}

/// Races `n` answers for one joiner and checks exactly one wins and is the
/// one the joiner receives.
async fn answer_race(n: usize) {
    let server = start(Config::default()).await;
    let base = server.url();
    let c = client();
    warm_up(&c, &base, n).await;
    for round in 0..5 {
        let (code, _) = open_session(&c, &base, "host").await;
        let id = format!("answered-{round}");
        let r = post_offer(&c, &base, &code, &id, &fake_sdp("offer")).await;
        assert_eq!(r.status, 200);

        let replies = race(n, |i| {
            let c = c.clone();
            let url = format!("{base}/code/{code}/host-answer");
            let id = id.clone();
            async move {
                let sdp = fake_sdp(&format!("answer{i}"));
                let r = post(&c, &url, json!({"joinerId": id, "sdp": sdp})).await;
                (sdp, r)
            }
        })
        .await;

        let winners: Vec<&String> = replies
            .iter()
            .filter(|(_, r)| r.status == 200)
            .map(|(sdp, _)| sdp)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: exactly one answer wins");
        for (_, r) in &replies {
            if r.status != 200 {
                assert_eq!(r.status, 409, "{}", r.text);
                assert_eq!(r.error(), ANSWER_TAKEN);
                assert_json_error(r);
            }
        }

        let poll = get(&c, &format!("{base}/code/{code}/host-answer/{id}")).await;
        assert_eq!(poll.status, 200);
        assert_eq!(poll.json, json!({"sdp": winners[0]}));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_racing_answers_for_one_joiner_exactly_one_wins_and_the_joiner_gets_it() {
    answer_race(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_racing_answers_for_one_joiner_exactly_one_wins_and_the_joiner_gets_it() {
    answer_race(10).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_sessions_created_at_once_all_get_distinct_valid_codes() {
    let config = Config {
        table: TableLimits {
            max_sessions_per_source: 1000,
            ..TableLimits::default()
        },
        ..Config::default()
    };
    let server = start(config).await;
    let base = server.url();
    let c = client();
    warm_up(&c, &base, 50).await;

    let replies = race(200, |i| {
        let c = c.clone();
        let url = format!("{base}/session");
        async move {
            post(
                &c,
                &url,
                json!({"sessionId": format!("s-{i}"), "displayName": format!("host {i}")}),
            )
            .await
        }
    })
    .await;

    let mut codes = HashSet::new();
    let mut tokens = HashSet::new();
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(r.status, 200, "session {i}: {}", r.text);
        assert_eq!(r.json["expiresInSec"], json!(300));
        let code = r.json["code"].as_str().unwrap().to_owned();
        assert_eq!(code.len(), 4);
        assert!(code.chars().all(|ch| ALPHABET.contains(ch)), "{code}");
        assert!(codes.insert(code), "duplicate code handed out");
        assert!(tokens.insert(r.json["hostToken"].as_str().unwrap().to_owned()));
    }
    assert_eq!(codes.len(), 200);

    // Every code leads to its own session, not someone else's.
    for (i, r) in replies.iter().enumerate() {
        let code = r.json["code"].as_str().unwrap();
        let info = get(&c, &format!("{base}/code/{code}")).await;
        assert_eq!(info.status, 200);
        assert_eq!(
            info.json,
            json!({"sessionId": format!("s-{i}"), "displayName": format!("host {i}")})
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn server_session_cap_admits_exactly_the_cap_under_a_race_then_503_json() {
    let config = Config {
        table: TableLimits {
            max_sessions: 5,
            ..TableLimits::default()
        },
        ..Config::default()
    };
    let server = start(config).await;
    let base = server.url();
    let c = client();
    warm_up(&c, &base, 20).await;

    let replies = race(20, |i| {
        let c = c.clone();
        let url = format!("{base}/session");
        async move {
            post(
                &c,
                &url,
                json!({"sessionId": format!("s{i}"), "displayName": "h"}),
            )
            .await
        }
    })
    .await;
    let counts = statuses(&replies);
    assert_eq!(counts.get(&200), Some(&5), "{counts:?}");
    assert_eq!(counts.get(&503), Some(&15), "{counts:?}");
    for r in replies.iter().filter(|r| r.status == 503) {
        assert_json_error(r);
    }

    // Still full afterwards, and the five sessions all work.
    let more = post(
        &c,
        &format!("{base}/session"),
        json!({"sessionId": "x", "displayName": "h"}),
    )
    .await;
    assert_eq!(more.status, 503);
    assert_json_error(&more);
    for r in replies.iter().filter(|r| r.status == 200) {
        let code = r.json["code"].as_str().unwrap();
        assert_eq!(get(&c, &format!("{base}/code/{code}")).await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_source_session_cap_admits_exactly_the_cap_under_a_race_then_429_json() {
    let config = Config {
        table: TableLimits {
            max_sessions_per_source: 3,
            ..TableLimits::default()
        },
        client_ip_header: Some("x-forwarded-for".into()),
        ..Config::default()
    };
    let server = start(config).await;
    let base = server.url();
    let c = client();
    warm_up(&c, &base, 12).await;

    let create_from = |ip: &'static str| {
        let c = c.clone();
        let url = format!("{base}/session");
        async move {
            Reply::from(
                c.post(&url)
                    .header("x-forwarded-for", ip)
                    .body(json!({"sessionId": "s", "displayName": "h"}).to_string())
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };

    let replies = race(12, |_| create_from("10.1.1.1")).await;
    let counts = statuses(&replies);
    assert_eq!(counts.get(&200), Some(&3), "{counts:?}");
    assert_eq!(counts.get(&429), Some(&9), "{counts:?}");
    for r in replies.iter().filter(|r| r.status == 429) {
        assert_json_error(r);
    }

    // The cap is per source: another address still opens sessions.
    let other = create_from("10.1.1.2").await;
    assert_eq!(other.status, 200, "{}", other.text);
    let again = create_from("10.1.1.1").await;
    assert_eq!(again.status, 429);
}

/// A deterministic byte soup, so a failure can be replayed.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// One piece of garbage: method, path (below the base URL) and body.
struct Junk {
    method: reqwest::Method,
    path: String,
    body: Vec<u8>,
}

fn junk_list(code: &str) -> Vec<Junk> {
    use reqwest::Method;
    let post = |path: String, body: Vec<u8>| Junk {
        method: Method::POST,
        path,
        body,
    };
    let offer = format!("/code/{code}/joiner-offer");
    let answer = format!("/code/{code}/host-answer");
    let mut v = Vec::new();
    // Malformed JSON.
    for body in [
        "{",
        "not json",
        "{\"joinerId\":",
        "{\"joinerId\": \"abcdefgh\", \"sdp\": }",
        "\"unterminated",
        "",
        "{}}",
    ] {
        v.push(post(offer.clone(), body.into()));
        v.push(post(answer.clone(), body.into()));
        v.push(post("/session".into(), body.into()));
    }
    // JSON of the wrong shape or types.
    for body in [
        json!(null),
        json!([1, 2, 3]),
        json!(42),
        json!("string"),
        json!({"joinerId": 12345678, "sdp": "x"}),
        json!({"joinerId": null, "sdp": "x"}),
        json!({"joinerId": "abcdefgh", "sdp": 5}),
        json!({"joinerId": "abcdefgh", "sdp": ""}),
        json!({"joinerId": "abcdefgh"}),
        json!({"sessionId": 7}),
    ] {
        let body = body.to_string().into_bytes();
        v.push(post(offer.clone(), body.clone()));
        v.push(post(answer.clone(), body.clone()));
        v.push(post("/session".into(), body));
    }
    // Deeply nested JSON.
    v.push(post(offer.clone(), "[".repeat(100_000).into_bytes()));
    // Invalid joinerIds, with a valid sdp.
    for id in [
        "short",
        "has space inside",
        "under_score_id",
        "ünïcödé-joiner",
        "abc/def/ghi",
        "x",
        "",
    ] {
        let body = json!({"joinerId": id, "sdp": fake_sdp("junk")}).to_string();
        v.push(post(offer.clone(), body.clone().into_bytes()));
        v.push(post(answer.clone(), body.into_bytes()));
    }
    let long_id = "a".repeat(65);
    v.push(post(
        offer.clone(),
        json!({"joinerId": long_id, "sdp": "x"})
            .to_string()
            .into_bytes(),
    ));
    // Oversized sdp (65,537 units) and bodies above the byte limit.
    v.push(post(
        offer.clone(),
        json!({"joinerId": "oversized-1", "sdp": "x".repeat(65_537)})
            .to_string()
            .into_bytes(),
    ));
    v.push(post(offer.clone(), vec![b'x'; 1 << 20]));
    v.push(post(answer.clone(), vec![b'{'; 600_000]));
    v.push(post("/session".into(), vec![b' '; 2 << 20]));
    // Binary bodies.
    for seed in 0..4 {
        v.push(post(offer.clone(), noise(seed, 4096)));
        v.push(post(answer.clone(), noise(seed + 100, 512)));
        v.push(post("/session".into(), noise(seed + 200, 64)));
    }
    v.push(post(offer.clone(), b"\xEF\xBB\xBF\xff\xfe\x00".to_vec()));
    // Random and near-miss paths.
    let lower = code.to_lowercase();
    for path in [
        "/nope".to_owned(),
        "/code".into(),
        "/code/".into(),
        format!("/code/{lower}"),
        format!("/code/{code}/"),
        format!("/code/{code}/joiner-offers/extra"),
        format!("/code/{code}/host-answer/short"),
        format!("/code/{code}/host-answer/{}", "b".repeat(65)),
        format!("/code/{code}x/joiner-offers"),
        "/code/0000".into(),
        "/code/0000/joiner-offers".into(),
        "/code/ZZ0Z/host-answer/abcdefgh".into(),
        "/%2e%2e/%2e%2e/etc/passwd".into(),
        "/code/%41%42%43%44".into(),
        format!("/{}", "q".repeat(8000)),
        "/session/extra".into(),
        "/health/".into(),
    ] {
        v.push(Junk {
            method: Method::GET,
            path,
            body: Vec::new(),
        });
    }
    v.push(post("/code/0000/joiner-offer".into(), b"{}".to_vec()));
    // Known paths with the wrong method.
    for (m, path) in [
        (Method::DELETE, "/session".to_owned()),
        (Method::PUT, offer.clone()),
        (Method::GET, offer.clone()),
        (Method::PATCH, answer.clone()),
        (Method::GET, answer.clone()),
        (Method::POST, format!("/code/{code}")),
        (Method::DELETE, format!("/code/{code}/joiner-offers")),
        (Method::POST, format!("/code/{code}/joiner-offers")),
        (Method::PUT, format!("/code/{code}/host-answer/abcdefgh")),
        (Method::POST, "/metrics".into()),
    ] {
        v.push(Junk {
            method: m,
            path,
            body: b"{\"joinerId\":\"wrong-method-1\",\"sdp\":\"v=0\"}".to_vec(),
        });
    }
    v
}

/// Garbage below HTTP: bytes that are not a request at all, a request cut
/// off half way, and a chunked body far over the limit.
async fn raw_junk(addr: std::net::SocketAddr, code: &str, seed: u64) {
    let payloads: Vec<Vec<u8>> = vec![
        noise(seed, 2048),
        b"GET /code/".to_vec(),
        format!("POST /code/{code}/joiner-offer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{\"joi")
            .into_bytes(),
        {
            let mut r = format!(
                "POST /code/{code}/joiner-offer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .into_bytes();
            for _ in 0..64 {
                r.extend_from_slice(b"4000\r\n");
                r.extend_from_slice(&[b'a'; 0x4000]);
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(b"0\r\n\r\n");
            r
        },
        b"HELLO / SPDY/9\r\n\r\n".to_vec(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
    ];
    for p in payloads {
        if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
            // The server may reset the connection mid-write; that is fine.
            let _ = s.write_all(&p).await;
            let _ = s.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_of_any_shape_disturbs_no_other_session() {
    // Garbage arrives "from" another address, as a stranger's would; its
    // unknown-code probes must not lock out the good users' address.
    let config = Config {
        client_ip_header: Some("x-forwarded-for".into()),
        ..Config::default()
    };
    let server = start(config).await;
    let base = server.url();
    let addr = server.addr;
    let c = client();
    let (code, _) = open_session(&c, &base, "good host").await;

    let junk = Arc::new(junk_list(&code));
    let mut junk_tasks = Vec::new();
    for worker in 0..6u64 {
        let junk = junk.clone();
        let base = base.clone();
        let code = code.clone();
        // A client of its own, so a reset connection cannot affect the good one.
        let jc = client();
        junk_tasks.push(tokio::spawn(async move {
            let mut answered = 0usize;
            for pass in 0..3u64 {
                raw_junk(addr, &code, worker * 10 + pass).await;
                // Each worker starts at a different place in the list.
                let offset = worker as usize * 7;
                for j in junk.iter().cycle().skip(offset).take(junk.len()) {
                    let sent = jc
                        .request(j.method.clone(), format!("{base}{}", j.path))
                        .header("x-forwarded-for", "10.66.66.66")
                        .header("content-type", "application/json")
                        .body(j.body.clone())
                        .send()
                        .await;
                    // A refused huge body may surface as a broken pipe.
                    let Ok(resp) = sent else { continue };
                    let r = Reply::from(resp).await;
                    answered += 1;
                    assert!(
                        matches!(r.status, 400 | 404 | 413 | 429),
                        "{} {} got {}: {}",
                        j.method,
                        &j.path[..j.path.len().min(80)],
                        r.status,
                        &r.text[..r.text.len().min(200)]
                    );
                    assert_json_error(&r);
                }
            }
            answered
        }));
    }

    // Meanwhile, three joiners join the good session one after the other.
    let mut expected = Vec::new();
    for k in 0..3 {
        let id = format!("good-joiner-{k}");
        let offer_sdp = fake_sdp(&format!("goodoffer{k}"));
        let answer_sdp = fake_sdp(&format!("goodanswer{k}"));

        let info = get(&c, &format!("{base}/code/{code}")).await;
        assert_eq!(info.status, 200, "{}", info.text);
        assert_eq!(
            info.json,
            json!({"sessionId": "s-1", "displayName": "good host"})
        );

        let early = get(&c, &format!("{base}/code/{code}/host-answer/{id}")).await;
        assert_eq!(early.status, 404);
        assert_eq!(early.error(), "not yet");

        let r = post_offer(&c, &base, &code, &id, &offer_sdp).await;
        assert_eq!(r.status, 200, "{}", r.text);
        expected.push((id.clone(), offer_sdp.clone()));

        let listed = list_offers(&c, &base, &code).await;
        assert_eq!(listed, expected, "only the good offers are listed");

        let r = post(
            &c,
            &format!("{base}/code/{code}/host-answer"),
            json!({"joinerId": id, "sdp": answer_sdp}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);

        let a = get(&c, &format!("{base}/code/{code}/host-answer/{id}")).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.json, json!({"sdp": answer_sdp}));
        // Paces the rounds (the scenario), not a wait for a result.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut answered = 0;
    for t in junk_tasks {
        answered += t.await.expect("junk worker panicked");
    }
    assert!(
        answered > 100,
        "the garbage was actually answered ({answered})"
    );

    // After the storm: the good session is exactly as the good users left it.
    let listed = list_offers(&c, &base, &code).await;
    assert_eq!(listed, expected);
    for (k, (id, _)) in expected.iter().enumerate() {
        let a = get(&c, &format!("{base}/code/{code}/host-answer/{id}")).await;
        assert_eq!(a.json, json!({"sdp": fake_sdp(&format!("goodanswer{k}"))}));
    }
    let h = get(&c, &format!("{base}/health")).await;
    assert_eq!(h.status, 200);
    // No garbage opened a session, and a new one still works end to end.
    let m = get(&c, &format!("{base}/metrics")).await;
    assert!(
        m.text.lines().any(|l| l == "rdv_sessions 1"),
        "only the good session exists:\n{}",
        m.text
    );
    let (code2, _) = open_session(&c, &base, "second").await;
    let r = post_raw(
        &c,
        &format!("{base}/code/{code2}/joiner-offer"),
        json!({"joinerId": "after-storm", "sdp": "v=0"}).to_string(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
}
