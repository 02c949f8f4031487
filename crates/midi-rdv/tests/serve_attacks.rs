//! The cheap attacks on an open-internet `midi-rdv serve`, each run against
//! the real binary on loopback with bounded counts and time, each asserting
//! that a normal client is still served within its budget meanwhile.
//!
//! Loopback is a whole /8, so attackers and the normal client are told
//! apart by source address: attackers bind 127.0.0.10 and up, the normal
//! client 127.0.0.2. Limits are scaled down by flags so each test takes a
//! few seconds.

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_midi-rdv");

/// The normal client's address; attackers use [`attacker`].
const NORMAL: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// One attack at a time: each test loads a 2-core machine on purpose (240
/// trickling sockets, 40 large listings, floods) and then times a normal
/// client, so two at once would time each other's load, not the server's.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn attacker(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + i))
}

/// A running `midi-rdv serve` on 127.0.0.1, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Server {
    fn start(extra: &[&str]) -> Server {
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("MIDI_RDV_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(["serve", "--bind", "127.0.0.1", "--port", "0"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn midi-rdv");
        let stdout = child.stdout.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
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
            .expect("no startup line");
        let hostport = line
            .trim()
            .strip_prefix("midi-rdv listening on http://")
            .unwrap_or_else(|| panic!("startup line {line:?}"));
        Server {
            child,
            addr: hostport.parse().unwrap(),
            stderr: Some(stderr),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Resident memory of the server process, in KiB.
    fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// SIGTERM; the exit must be clean and quick.
    async fn stop(mut self) {
        let st = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let started = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no exit after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let err = self.stderr.take().unwrap().join().unwrap_or_default();
        assert_eq!(status.code(), Some(0), "stderr:\n{err}");
        assert!(!err.contains("panicked"), "stderr:\n{err}");
    }
}

/// A client bound to `from`, HTTP/1.1 only, with a hard timeout.
fn client_from(from: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .local_address(from)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn tcp_from(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from, 0))?;
    s.connect(to).await
}

struct Reply {
    status: u16,
    json: Value,
    text: String,
}

async fn send(b: reqwest::RequestBuilder) -> Reply {
    let r = b.send().await.expect("request failed");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    Reply {
        status,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

/// Times `n` /health probes by the normal client, one every `every`, and
/// returns the slowest. Each must answer 200 within `budget`.
async fn probe_health(base: &str, n: usize, every: Duration, budget: Duration) -> Duration {
    let c = client_from(NORMAL);
    let mut worst = Duration::ZERO;
    for i in 0..n {
        let t = Instant::now();
        let r = tokio::time::timeout(budget, c.get(format!("{base}/health")).send())
            .await
            .unwrap_or_else(|_| panic!("health probe {i} took over {budget:?}"))
            .expect("health probe failed");
        assert_eq!(r.status(), 200);
        worst = worst.max(t.elapsed());
        tokio::time::sleep(every).await;
    }
    worst
}

async fn open_session(c: &reqwest::Client, base: &str) -> (String, String) {
    let r = send(
        c.post(format!("{base}/session"))
            .json(&json!({"sessionId": "s", "displayName": "h"})),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    (
        r.json["code"].as_str().unwrap().to_owned(),
        r.json["hostToken"].as_str().unwrap().to_owned(),
    )
}

async fn post_offer(c: &reqwest::Client, base: &str, code: &str, id: &str, sdp: &str) -> Reply {
    send(
        c.post(format!("{base}/code/{code}/joiner-offer"))
            .json(&json!({"joinerId": id, "sdp": sdp})),
    )
    .await
}

fn jid(i: usize) -> String {
    format!("joiner-{i:04}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_cannot_starve_a_normal_client() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = Server::start(&[
        "--header-timeout-secs",
        "1",
        "--max-connections",
        "200",
        "--max-connections-per-source",
        "40",
    ]);
    let addr = server.addr;
    // Four attacker addresses open 60 connections each (past their cap of
    // 40) and send a header byte every 200 ms, forever.
    let mut attackers = Vec::new();
    for a in 0..4u8 {
        for _ in 0..60 {
            attackers.push(tokio::spawn(async move {
                let Ok(mut s) = tcp_from(attacker(a), addr).await else {
                    return Duration::ZERO;
                };
                let opened = Instant::now();
                for b in b"GET /health HTTP/1.1\r\nX-Slow: ".iter().cycle().take(200) {
                    if s.write_all(&[*b]).await.is_err() {
                        break;
                    }
                    let mut buf = [0u8; 256];
                    match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
                        Ok(Ok(0)) | Ok(Err(_)) => break,
                        _ => {}
                    }
                }
                opened.elapsed()
            }));
        }
    }
    // 1 s: the first probes share the test's own runtime with the 240
    // attacker tasks being set up. Unprotected, the server starved such
    // probes entirely (they timed out), so the budget still tells apart.
    let worst = probe_health(
        &server.url(),
        15,
        Duration::from_millis(150),
        Duration::from_secs(1),
    )
    .await;
    // Every attacker connection is cut by the header deadline (1 s), however
    // steadily it trickles; none lives to the end of its 40 s script.
    for a in attackers {
        let lived = a.await.unwrap();
        assert!(
            lived < Duration::from_secs(4),
            "a trickling connection lived {lived:?}"
        );
    }
    let metrics = client_from(NORMAL)
        .get(format!("{}/metrics", server.url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("rdv_connections_refused_total "))
        .and_then(|v| v.parse().ok())
        .expect("rdv_connections_refused_total in /metrics");
    // How many exactly depends on how fast the 240 connects land compared
    // with the 1 s deadline freeing slots; some must have met the cap.
    assert!(
        refused > 0,
        "no connection was refused past the per-source cap"
    );
    println!(
        "slowloris: worst /health {worst:?}, {refused} refused at accept, server RSS {} KiB",
        server.rss_kib()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_cannot_pin_unbounded_memory() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = Server::start(&[
        "--max-connections-per-source",
        "40",
        "--max-sdp-bytes-per-session",
        "262144",
    ]);
    let base = server.url();
    let c = client_from(attacker(0));
    let (code, _) = open_session(&c, &base).await;

    // Control characters (what JSON-escapes to six bytes each) are refused.
    let r = post_offer(&c, &base, &code, &jid(0), &"\u{1}".repeat(65_536)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.json["error"], "sdp must be printable text");
    // Printable SDP fills the session's budget (256 KiB) and stops there.
    let big = "a=x".repeat(20_000);
    let mut stored = 0;
    for i in 1..=8 {
        let r = post_offer(&c, &base, &code, &jid(i), &big).await;
        if r.status == 200 {
            stored += 1;
        } else {
            assert_eq!(r.status, 503, "{}", r.text);
            assert_eq!(
                r.json["error"],
                "session holds too much SDP; try again later"
            );
        }
    }
    assert_eq!(stored, 4, "4 x 60 KB fit in 256 KiB, the 5th does not");
    let listing = c
        .get(format!("{base}/code/{code}/joiner-offers"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        listing.len() < 300_000,
        "listing of {} bytes",
        listing.len()
    );

    // 80 clients ask for that listing and never read; only 40 get a
    // connection, and what they pin is bounded by the session budget.
    let before = server.rss_kib();
    let request = format!("GET /code/{code}/joiner-offers HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut held = Vec::new();
    for _ in 0..80 {
        if let Ok(mut s) = tcp_from(attacker(1), server.addr).await {
            let _ = s.write_all(request.as_bytes()).await;
            held.push(s);
        }
    }
    // Forty 240 KB listings at once cost CPU (serialising them in a debug
    // build on a shared 2-core machine takes about a second), hence the
    // wider budget here; memory is what this attack is about.
    let worst = probe_health(
        &base,
        10,
        Duration::from_millis(100),
        Duration::from_millis(2500),
    )
    .await;
    let after = server.rss_kib();
    let grown_mib = after.saturating_sub(before) / 1024;
    println!("non-reading clients: RSS {before} -> {after} KiB, worst /health {worst:?}");
    assert!(
        grown_mib < 48,
        "80 non-reading clients grew the server by {grown_mib} MiB"
    );
    drop(held);

    // HTTP/2 is not spoken at all (no h2c, no prior knowledge): the
    // preface gets the connection closed, never an HTTP/2 frame.
    let mut s = tcp_from(attacker(2), server.addr).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    assert!(out.is_empty(), "answered an HTTP/2 preface: {out:?}");
    // A request hyper itself rejects still gets JSON and CORS.
    let mut s = tcp_from(attacker(2), server.addr).await.unwrap();
    s.write_all(b"NOT A REQUEST LINE\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out).to_lowercase();
    assert!(out.starts_with("http/1.1 400"), "{out}");
    assert!(out.contains("access-control-allow-origin: *"), "{out}");
    assert!(out.ends_with(r#"{"error":"bad request"}"#), "{out}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_cannot_store_unbounded_sdp() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = Server::start(&["--max-sdp-bytes-per-source", "1000000"]);
    let base = server.url();
    let host = client_from(NORMAL);
    let attack = client_from(attacker(0));
    let sdp = "a=y".repeat(20_000);
    let mut sessions = Vec::new();
    for _ in 0..8 {
        sessions.push(open_session(&host, &base).await.0);
    }
    let mut accepted = 0usize;
    let mut refused = 0usize;
    for (s, code) in sessions.iter().enumerate() {
        for i in 0..4 {
            let r = post_offer(&attack, &base, code, &jid(s * 10 + i), &sdp).await;
            match r.status {
                200 => accepted += 1,
                429 => {
                    assert_eq!(r.json["error"], "too much SDP stored from this address");
                    refused += 1;
                }
                other => panic!("{other}: {}", r.text),
            }
        }
    }
    assert!(
        accepted * sdp.len() <= 1_000_000,
        "{accepted} offers stored"
    );
    assert_eq!(accepted, 16, "16 x 60 KB fit in 1 MB");
    assert_eq!(refused, 16);
    // Another address still joins the same sessions.
    let r = post_offer(&host, &base, &sessions[7], &jid(999), "v=0\r\n").await;
    assert_eq!(r.status, 200, "{}", r.text);
    probe_health(
        &base,
        3,
        Duration::from_millis(50),
        Duration::from_millis(500),
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_session_table_makes_room_for_real_hosts() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = Server::start(&["--max-sessions", "40", "--max-sessions-per-source", "10"]);
    let base = server.url();
    // A real host opens its session first and keeps polling it.
    let host = client_from(NORMAL);
    let (code, token) = open_session(&host, &base).await;
    // Eight attacker addresses try to open 20 sessions each, as fast as
    // they can; then again, to keep the table full.
    for round in 0..2 {
        for a in 0..8u8 {
            let c = client_from(attacker(a));
            for _ in 0..20 {
                let r = send(
                    c.post(format!("{base}/session"))
                        .json(&json!({"sessionId": "x", "displayName": "x"})),
                )
                .await;
                assert!(matches!(r.status, 200 | 429 | 503), "{}", r.text);
            }
        }
        let r = send(
            host.get(format!("{base}/code/{code}/joiner-offers"))
                .bearer_auth(&token),
        )
        .await;
        assert_eq!(
            r.status, 200,
            "round {round}: the polling host lost its session: {}",
            r.text
        );
    }
    // A new host from a fresh address still gets a session now.
    let newcomer = client_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3)));
    let (code2, _) = open_session(&newcomer, &base).await;
    assert_eq!(
        send(host.get(format!("{base}/code/{code2}"))).await.status,
        200
    );
    assert_eq!(
        send(host.get(format!("{base}/code/{code}"))).await.status,
        200
    );
    probe_health(
        &base,
        3,
        Duration::from_millis(50),
        Duration::from_millis(500),
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_guessers_and_the_host_behind_them() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = Server::start(&[
        "--client-ip-header",
        "x-forwarded-for",
        "--trusted-proxies",
        "1",
        "--max-sessions-per-source",
        "1",
    ]);
    let base = server.url();
    let c = client_from(NORMAL);
    // The proxy appends its own line: the client's spoofed first line does
    // not change whose address counts.
    let open = |spoof: &'static str| {
        c.post(format!("{base}/session"))
            .header("x-forwarded-for", spoof)
            .header("x-forwarded-for", "10.9.9.9")
            .json(&json!({"sessionId": "s"}))
    };
    let r = send(open("1.1.1.1")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let code = r.json["code"].as_str().unwrap().to_owned();
    let token = r.json["hostToken"].as_str().unwrap().to_owned();
    let r = send(open("2.2.2.2")).await;
    assert_eq!(
        r.status, 429,
        "a spoofed first line made a new source: {}",
        r.text
    );

    // A guesser behind the host's NAT (same address) gets locked out...
    const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
    for &ch in &ALPHABET[..31] {
        let guess = format!("ZQ{}A", ch as char);
        if guess == code {
            continue;
        }
        let r = send(
            c.get(format!("{base}/code/{guess}"))
                .header("x-forwarded-for", "10.9.9.9"),
        )
        .await;
        assert!(matches!(r.status, 404 | 429));
    }
    let locked = send(
        c.get(format!("{base}/code/{code}"))
            .header("x-forwarded-for", "10.9.9.9"),
    )
    .await;
    assert_eq!(locked.status, 429, "{}", locked.text);
    // ...but the host's polls with its token still work and keep it alive.
    let r = send(
        c.get(format!("{base}/code/{code}/joiner-offers"))
            .header("x-forwarded-for", "10.9.9.9")
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = send(
        c.get(format!("{base}/code/{code}/joiner-offers"))
            .header("x-forwarded-for", "10.9.9.9"),
    )
    .await;
    assert_eq!(
        r.status, 429,
        "without the token the lockout applies: {}",
        r.text
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_oversized_heads_and_shutdown() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = Server::start(&["--body-timeout-secs", "1"]);
    let base = server.url();
    let (code, _) = open_session(&client_from(NORMAL), &base).await;

    // A body trickled a byte every 150 ms: cut at the 1 s deadline (408),
    // although no gap ever came near the idle timeout.
    let mut s = tcp_from(attacker(0), server.addr).await.unwrap();
    let started = Instant::now();
    s.write_all(
        format!(
            "POST /code/{code}/joiner-offer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    for _ in 0..100 {
        if s.write_all(b" ").await.is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(150), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(
        out.contains(r#"{"error":"request body too slow"}"#),
        "{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));

    // Headers past the limit: 431 with JSON and CORS, from the HTTP layer.
    let mut s = tcp_from(attacker(0), server.addr).await.unwrap();
    let huge = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(40_000)
    );
    let _ = s.write_all(huge.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out).to_lowercase();
    assert!(out.starts_with("http/1.1 431"), "{out}");
    assert!(out.contains("access-control-allow-origin: *"), "{out}");
    assert!(out.contains("content-type: application/json"), "{out}");

    // Half-sent heads and idle keep-alives do not hold up SIGTERM.
    let mut half = tcp_from(attacker(1), server.addr).await.unwrap();
    half.write_all(b"GET /hea").await.unwrap();
    let mut idle = tcp_from(attacker(1), server.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let _ = idle.read(&mut buf).await.unwrap();
    let t = Instant::now();
    server.stop().await;
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "shutdown took {:?}",
        t.elapsed()
    );
}
