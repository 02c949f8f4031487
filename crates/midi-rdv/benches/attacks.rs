//! Memory and `/health` latency of the real `midi-rdv serve` under each
//! open-internet attack of issue 15, on loopback: the server's resident
//! memory before and at its peak, and p50/p99/max of a normal client's
//! `/health` probes (every 20 ms from 127.0.0.2) while the attack runs.
//! Default limits throughout. `ATTACK_SECS` (default 6) sets each run.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_midi-rdv");

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--log-level",
            "error",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn midi-rdv");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let hostport = line
        .trim()
        .strip_prefix("midi-rdv listening on http://")
        .expect("startup line");
    Server {
        addr: hostport.parse().unwrap(),
        child,
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn client(from: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .local_address(from)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn tcp(from: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(from, 0))?;
    s.connect(to).await
}

async fn open_session(c: &reqwest::Client, base: &str) -> Option<String> {
    let r = c
        .post(format!("{base}/session"))
        .json(&json!({"sessionId": "s", "displayName": "h"}))
        .send()
        .await
        .ok()?;
    let v: serde_json::Value = r.json().await.ok()?;
    v["code"].as_str().map(str::to_owned)
}

/// Runs `attack` for `secs` while probing /health; prints one line.
async fn measure<F, Fut>(name: &str, secs: u64, attack: F)
where
    F: FnOnce(SocketAddr, Arc<AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = String> + Send + 'static,
{
    let server = start();
    let pid = server.child.id();
    let base = format!("http://{}", server.addr);
    let before = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let attack = tokio::spawn(attack(server.addr, stop.clone()));
    let peak = Arc::new(AtomicU64::new(before));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let c = client(ip(2));
    let mut lat = Vec::new();
    let mut failed = 0;
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let t = Instant::now();
        match c.get(format!("{base}/health")).send().await {
            Ok(r) if r.status() == 200 => lat.push(t.elapsed()),
            _ => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let note = tokio::time::timeout(Duration::from_secs(30), attack)
        .await
        .map(|r| r.unwrap_or_default())
        .unwrap_or_else(|_| "attack did not stop".into());
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{name:<28} RSS {:>6} -> peak {:>6} KiB | /health n={} p50 {:>8.2?} p99 {:>8.2?} max {:>8.2?} failed {failed} | {note}",
        before,
        peak.load(Ordering::Relaxed),
        lat.len(),
        pct(0.5),
        pct(0.99),
        lat.last().copied().unwrap_or_default(),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let secs: u64 = std::env::var("ATTACK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    println!("midi-rdv serve, default limits, {secs} s per attack, debug or release as built");

    measure("baseline (no attack)", secs, |_, _| async { String::new() }).await;

    measure(
        "slowloris 8 src x 300 conn",
        secs,
        |addr, stop| async move {
            let mut tasks = Vec::new();
            for a in 0..8u8 {
                for _ in 0..300 {
                    let stop = stop.clone();
                    tasks.push(tokio::spawn(async move {
                        let Ok(mut s) = tcp(ip(10 + a), addr).await else {
                            return false;
                        };
                        let _ = s.write_all(b"GET /health HTTP/1.1\r\n").await;
                        while !stop.load(Ordering::Relaxed) {
                            if s.write_all(b"X").await.is_err() {
                                return true;
                            }
                            let mut b = [0u8; 64];
                            if let Ok(Ok(0)) =
                                tokio::time::timeout(Duration::from_millis(500), s.read(&mut b))
                                    .await
                            {
                                return true;
                            }
                        }
                        false
                    }));
                }
            }
            let mut cut = 0;
            for t in tasks {
                cut += usize::from(t.await.unwrap_or(false));
            }
            format!("{cut} of 2400 trickling connections cut")
        },
    )
    .await;

    measure(
        "non-reading 2 src x 300 conn",
        secs,
        |addr, stop| async move {
            let base = format!("http://{addr}");
            let host = client(ip(3));
            let Some(code) = open_session(&host, &base).await else {
                return "no session".into();
            };
            // Fill the session to its 1 MiB budget with printable SDP.
            let sdp = "a=x".repeat(40_000);
            for i in 0..8 {
                let _ = client(ip(30 + i))
                    .post(format!("{base}/code/{code}/joiner-offer"))
                    .json(&json!({"joinerId": format!("joiner-{i:04}"), "sdp": sdp}))
                    .send()
                    .await;
            }
            let req = format!("GET /code/{code}/joiner-offers HTTP/1.1\r\nHost: x\r\n\r\n");
            let mut held = Vec::new();
            for a in 0..2u8 {
                for _ in 0..300 {
                    if let Ok(mut s) = tcp(ip(20 + a), addr).await {
                        let _ = s.write_all(req.as_bytes()).await;
                        held.push(s);
                    }
                }
            }
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            format!("{} connections held", held.len())
        },
    )
    .await;

    measure(
        "SDP flood 1 src, 64 sessions",
        secs,
        |addr, stop| async move {
            let base = format!("http://{addr}");
            let host = client(ip(3));
            let attacker = client(ip(40));
            let sdp = "a=y".repeat(20_000);
            let (mut ok, mut refused) = (0, 0);
            'outer: for _ in 0..64 {
                let Some(code) = open_session(&host, &base).await else {
                    break;
                };
                for i in 0..8 {
                    if stop.load(Ordering::Relaxed) {
                        break 'outer;
                    }
                    let r = attacker
                        .post(format!("{base}/code/{code}/joiner-offer"))
                        .json(&json!({"joinerId": format!("joiner-{i:04}"), "sdp": sdp}))
                        .send()
                        .await;
                    match r.map(|r| r.status().as_u16()) {
                        Ok(200) => ok += 1,
                        _ => refused += 1,
                    }
                }
            }
            format!("{ok} offers of 60 KB stored, {refused} refused")
        },
    )
    .await;

    measure("session flood 40 src", secs, |addr, stop| async move {
        let base = format!("http://{addr}");
        let (mut ok, mut refused) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            for a in 0..40u8 {
                let c = client(ip(100 + a));
                for _ in 0..70 {
                    match open_session(&c, &base).await {
                        Some(_) => ok += 1,
                        None => refused += 1,
                    }
                }
            }
        }
        format!("{ok} sessions opened, {refused} refused")
    })
    .await;
}
