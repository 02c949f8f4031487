//! Loopback throughput of the rendezvous, next to a bare hyper server.
//!
//! `cargo bench -p rdv --bench throughput` prints a table; it asserts
//! nothing. Measured on 127.0.0.1 only, over keep-alive HTTP/1.1
//! connections driven by a small load generator written on hyper's client
//! connection API:
//!
//! - `GET /health` against rdv (a real `RunningServer`);
//! - the same load against a bare hyper "hello" server returning a small
//!   JSON body, and the ratio rdv/hyper;
//! - whole joins against rdv: session, verify, offer, offers poll, answer,
//!   answer poll (6 requests per join, each on a fresh session);
//! - both stores side by side: `GET /code/<c>` (a store read) and whole
//!   joins on one in-memory instance, then on two instances sharing one
//!   real `redis-server` on loopback, connections spread over both (each
//!   join's six requests on one connection, so on one instance; the
//!   instances share the store, not the joins). Skipped, saying so, when
//!   no `redis-server` is installed.
//!
//! The servers and the load generator run on separate tokio runtimes
//! (half the CPUs each), so the generator does not steal the server's
//! worker threads. Knobs: `RDV_BENCH_CONNS` (default 32), `RDV_BENCH_SECS`
//! (default 3), `RDV_BENCH_WARMUP_MS` (default 500).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use rdv::table::TableLimits;
use rdv::{Config, Rendezvous, RunningServer};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

// ------------------------------------------------------------ bare hyper

const HELLO: &[u8] = br#"{"service":"hello","version":3,"protocol":"joiner-initiated-multi-peer","maxPeersPerSession":8}"#;

/// A minimal HTTP/1.1 server: every request gets 200 and a small JSON body.
async fn start_hyper_hello() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header(CONTENT_TYPE, "application/json")
                            .body(Full::new(Bytes::from_static(HELLO)))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

// -------------------------------------------------------- load generator

type Sender = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Sender {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).unwrap();
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    tx
}

/// One request on a keep-alive connection: status and whole body.
async fn call(
    tx: &mut Sender,
    host: &str,
    method: Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<(u16, Bytes), String> {
    tx.ready().await.map_err(|e| e.to_string())?;
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, host);
    if body.is_some() {
        req = req.header(CONTENT_TYPE, "application/json");
    }
    let req = req
        .body(Full::new(body.map(Bytes::from).unwrap_or_default()))
        .unwrap();
    let resp = tx.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, body))
}

#[derive(Clone)]
enum Workload {
    /// One GET per operation.
    Get(&'static str),
    /// One whole join (6 requests) per operation.
    Join,
}

impl Workload {
    fn requests_per_op(&self) -> u64 {
        match self {
            Workload::Get(_) => 1,
            Workload::Join => 6,
        }
    }
}

/// What one connection did before the deadline.
#[derive(Default)]
struct Tally {
    ops: u64,
    errors: u64,
    /// Per-operation latency, microseconds.
    latencies: Vec<u32>,
}

fn sdp(role: &str, tag: &str) -> String {
    // About the size of a real non-trickle data-channel SDP with a few
    // host/srflx candidates.
    let mut s = format!(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         a=group:BUNDLE 0\r\na=msid-semantic: WMS\r\n\
         m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
         a=ice-ufrag:{tag}\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=ice-options:trickle\r\n\
         a=fingerprint:sha-256 AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89:AB:CD:EF:01:23:45:67:89\r\n\
         a=setup:{role}\r\na=mid:0\r\na=sctp-port:5000\r\na=max-message-size:262144\r\n"
    );
    for i in 0..6 {
        s.push_str(&format!(
            "a=candidate:{i} 1 UDP 2122317823 192.168.1.{i} 5{i}123 typ host\r\n"
        ));
    }
    s.push_str("a=end-of-candidates\r\n");
    s
}

/// One join on `tx`; Err names the step that did not answer 200.
async fn join(tx: &mut Sender, host: &str, conn: usize, n: u64) -> Result<(), String> {
    let joiner = format!("bench-{conn:03}-{n:010}");
    let ok = |step: &str, r: Result<(u16, Bytes), String>| match r {
        Ok((200, body)) => Ok(body),
        Ok((status, body)) => Err(format!(
            "{step}: {status} {}",
            String::from_utf8_lossy(&body)
        )),
        Err(e) => Err(format!("{step}: {e}")),
    };
    let body = json!({"sessionId": "bench", "displayName": "Bench host"}).to_string();
    let created = ok(
        "session",
        call(tx, host, Method::POST, "/session", Some(body.into_bytes())).await,
    )?;
    let created: Value = serde_json::from_slice(&created).map_err(|e| e.to_string())?;
    let code = created["code"].as_str().ok_or("no code")?.to_owned();
    let base = format!("/code/{code}");

    ok("verify", call(tx, host, Method::GET, &base, None).await)?;
    let offer = json!({"joinerId": joiner, "sdp": sdp("actpass", &joiner)}).to_string();
    ok(
        "offer",
        call(
            tx,
            host,
            Method::POST,
            &format!("{base}/joiner-offer"),
            Some(offer.into_bytes()),
        )
        .await,
    )?;
    let list = ok(
        "offers poll",
        call(
            tx,
            host,
            Method::GET,
            &format!("{base}/joiner-offers"),
            None,
        )
        .await,
    )?;
    if list.len() < 100 {
        return Err("offers poll: offer missing".into());
    }
    let answer = json!({"joinerId": joiner, "sdp": sdp("active", "answerufrag")}).to_string();
    ok(
        "answer",
        call(
            tx,
            host,
            Method::POST,
            &format!("{base}/host-answer"),
            Some(answer.into_bytes()),
        )
        .await,
    )?;
    ok(
        "answer poll",
        call(
            tx,
            host,
            Method::GET,
            &format!("{base}/host-answer/{joiner}"),
            None,
        )
        .await,
    )?;
    Ok(())
}

async fn drive(addr: SocketAddr, conn: usize, work: Workload, until: Instant) -> Tally {
    let host = addr.to_string();
    let mut tx = connect(addr).await;
    let mut t = Tally {
        latencies: Vec::with_capacity(1 << 16),
        ..Tally::default()
    };
    let mut first_error: Option<String> = None;
    while Instant::now() < until {
        let started = Instant::now();
        let r = match &work {
            Workload::Get(path) => match call(&mut tx, &host, Method::GET, path, None).await {
                Ok((200, _)) => Ok(()),
                Ok((s, b)) => Err(format!("{s} {}", String::from_utf8_lossy(&b))),
                Err(e) => Err(e),
            },
            Workload::Join => join(&mut tx, &host, conn, t.ops + t.errors).await,
        };
        let took = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
        match r {
            Ok(()) => {
                t.ops += 1;
                t.latencies.push(took);
            }
            Err(e) => {
                t.errors += 1;
                first_error.get_or_insert(e);
                if tx.is_closed() {
                    tx = connect(addr).await;
                }
            }
        }
    }
    if let Some(e) = first_error {
        eprintln!("  connection {conn}: first error: {e}");
    }
    t
}

/// The instances a run spreads its connections over (round robin).
#[derive(Clone)]
struct Addrs(Vec<SocketAddr>);

impl From<SocketAddr> for Addrs {
    fn from(a: SocketAddr) -> Addrs {
        Addrs(vec![a])
    }
}

impl From<Vec<SocketAddr>> for Addrs {
    fn from(a: Vec<SocketAddr>) -> Addrs {
        Addrs(a)
    }
}

struct Measured {
    ops_per_sec: f64,
    req_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

/// Runs `work` on `conns` connections for `warmup`, then again for `dur`,
/// and reports the second run.
async fn measure(
    addr: impl Into<Addrs> + Clone,
    conns: usize,
    work: Workload,
    warmup: Duration,
    dur: Duration,
) -> Measured {
    if !warmup.is_zero() {
        run(addr.clone(), conns, work.clone(), warmup).await;
    }
    let (tallies, elapsed) = run(addr, conns, work.clone(), dur).await;
    let ops: u64 = tallies.iter().map(|t| t.ops).sum();
    let errors = tallies.iter().map(|t| t.errors).sum();
    let mut lat: Vec<u32> = tallies.into_iter().flat_map(|t| t.latencies).collect();
    lat.sort_unstable();
    let pct = |p: f64| {
        if lat.is_empty() {
            f64::NAN
        } else {
            let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1;
            lat[i] as f64 / 1000.0
        }
    };
    let secs = elapsed.as_secs_f64();
    Measured {
        ops_per_sec: ops as f64 / secs,
        req_per_sec: (ops * work.requests_per_op()) as f64 / secs,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    }
}

async fn run(
    addr: impl Into<Addrs>,
    conns: usize,
    work: Workload,
    dur: Duration,
) -> (Vec<Tally>, Duration) {
    let addrs = addr.into().0;
    let started = Instant::now();
    let until = started + dur;
    let tasks: Vec<_> = (0..conns)
        .map(|c| tokio::spawn(drive(addrs[c % addrs.len()], c, work.clone(), until)))
        .collect();
    let mut tallies = Vec::with_capacity(conns);
    for t in tasks {
        tallies.push(t.await.expect("load task"));
    }
    (tallies, started.elapsed())
}

// ------------------------------------------------------------------ main

fn runtime(threads: usize, name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn row(name: &str, conns: usize, m: &Measured) {
    println!(
        "{name:<28} {conns:>5} {:>11.0} {:>11.0} {:>8.3} {:>8.3} {:>7}",
        m.ops_per_sec, m.req_per_sec, m.p50_ms, m.p99_ms, m.errors
    );
}

fn main() {
    let conns: usize = env_or("RDV_BENCH_CONNS", 32);
    let dur = Duration::from_secs_f64(env_or("RDV_BENCH_SECS", 3.0));
    let warmup = Duration::from_millis(env_or("RDV_BENCH_WARMUP_MS", 500));
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let server_threads = (cpus / 2).max(1);
    let load_threads = (cpus - server_threads).max(1);
    let server_rt = runtime(server_threads, "server");
    let load_rt = runtime(load_threads, "load");

    // /health on a default rendezvous.
    let health_rdv = server_rt
        .block_on(RunningServer::start(
            "127.0.0.1:0".parse().unwrap(),
            Rendezvous::new(Config::default()),
        ))
        .expect("start rdv");
    // Joins on one whose caps admit every session the run opens from
    // 127.0.0.1 (the per-source cap is 64 by default).
    let join_config = Config {
        // A join takes milliseconds; a 2 s lifetime swept twice a
        // second keeps the live set (and code-space occupancy) small
        // however fast the machine is.
        table: TableLimits {
            ttl: Duration::from_secs(2),
            max_sessions: 600_000,
            max_sessions_per_source: 600_000,
            // One load generator on 127.0.0.1 stands for many
            // clients: the per-source SDP budget would refuse it.
            max_sdp_bytes_per_source: usize::MAX / 2,
            max_sdp_bytes_total: usize::MAX / 2,
            ..TableLimits::default()
        },
        sweep_interval: Duration::from_millis(500),
        ..Config::default()
    };
    let start = |config: Config| {
        server_rt
            .block_on(async {
                RunningServer::start("127.0.0.1:0".parse().unwrap(), Rendezvous::new(config)).await
            })
            .expect("start rdv")
    };
    let join_rdv = start(join_config.clone());
    let hyper_addr = server_rt.block_on(start_hyper_hello());

    println!(
        "midi-rdv loopback throughput: keep-alive HTTP/1.1, {:.1} s per row after {:.1} s warm-up; \
         server runtime {server_threads} thread(s), load generator {load_threads} thread(s), {cpus} CPU(s)",
        dur.as_secs_f64(),
        warmup.as_secs_f64()
    );
    println!(
        "{:<28} {:>5} {:>11} {:>11} {:>8} {:>8} {:>7}",
        "workload", "conns", "ops/s", "requests/s", "p50 ms", "p99 ms", "errors"
    );
    println!("{}", "-".repeat(84));

    let health = Workload::Get("/health");
    let rdv_h = load_rt.block_on(measure(health_rdv.addr, conns, health.clone(), warmup, dur));
    row("GET /health   rdv", conns, &rdv_h);
    let hyp_h = load_rt.block_on(measure(hyper_addr, conns, health.clone(), warmup, dur));
    row("GET /health   bare hyper", conns, &hyp_h);
    let short = dur.min(Duration::from_secs(2));
    let rdv_1 = load_rt.block_on(measure(health_rdv.addr, 1, health.clone(), warmup, short));
    row("GET /health   rdv", 1, &rdv_1);
    let hyp_1 = load_rt.block_on(measure(hyper_addr, 1, health, warmup, short));
    row("GET /health   bare hyper", 1, &hyp_1);
    let joins = load_rt.block_on(measure(join_rdv.addr, conns, Workload::Join, warmup, dur));
    row("join (6 req)  rdv", conns, &joins);
    println!("{}", "-".repeat(84));
    println!(
        "rdv/hyper GET /health: {:.2} at {conns} connections, {:.2} at 1 connection",
        rdv_h.ops_per_sec / hyp_h.ops_per_sec,
        rdv_1.ops_per_sec / hyp_1.ops_per_sec
    );
    println!(
        "joins: {:.0}/s = {:.0} requests/s; live sessions at the end (2 s TTL): {}",
        joins.ops_per_sec,
        joins.req_per_sec,
        join_rdv
            .rdv
            .metrics_text()
            .lines()
            .find_map(|l| l.strip_prefix("rdv_sessions "))
            .unwrap_or("?")
    );

    // Both stores side by side: a store read and whole joins, on one
    // in-memory instance, then on two instances sharing one redis-server.
    println!();
    if !test_support::redis::redis_available("throughput: stores side by side") {
        let _ = server_rt.block_on(health_rdv.stop());
        let _ = server_rt.block_on(join_rdv.stop());
        return;
    }
    let redis = test_support::redis::RedisServer::start(false);
    let shared = Config {
        store: Some(rdv::redis_store::RedisConfig {
            url: redis.url(),
            prefix: "bench:".into(),
        }),
        // Sessions of 60 s: the read workload polls one for the whole run.
        table: TableLimits {
            ttl: Duration::from_secs(60),
            ..join_config.table.clone()
        },
        ..join_config.clone()
    };
    let lookup_mem = start(Config {
        table: shared.table.clone(),
        ..join_config.clone()
    });
    let pair = [start(shared.clone()), start(shared)];
    let pair_addrs: Vec<SocketAddr> = pair.iter().map(|s| s.addr).collect();
    // One live session per side to read.
    let code_on = |addr: SocketAddr| -> &'static str {
        let body = json!({"sessionId": "bench", "displayName": "Read me"}).to_string();
        let created = load_rt.block_on(async {
            let mut tx = connect(addr).await;
            call(
                &mut tx,
                &addr.to_string(),
                Method::POST,
                "/session",
                Some(body.into_bytes()),
            )
            .await
        });
        let (_, bytes) = created.expect("open a session to read");
        let v: Value = serde_json::from_slice(&bytes).expect("session JSON");
        let path = format!("/code/{}", v["code"].as_str().expect("a code"));
        Box::leak(path.into_boxed_str())
    };
    let mem_read = Workload::Get(code_on(lookup_mem.addr));
    let redis_read = Workload::Get(code_on(pair_addrs[0]));
    println!(
        "stores side by side ({conns} connections; redis-server on 127.0.0.1, no persistence)"
    );
    println!(
        "{:<28} {:>5} {:>11} {:>11} {:>8} {:>8} {:>7}",
        "workload", "conns", "ops/s", "requests/s", "p50 ms", "p99 ms", "errors"
    );
    println!("{}", "-".repeat(84));
    let mem_r = load_rt.block_on(measure(lookup_mem.addr, conns, mem_read, warmup, dur));
    row("GET /code/<c> memory x1", conns, &mem_r);
    let red_r = load_rt.block_on(measure(pair_addrs.clone(), conns, redis_read, warmup, dur));
    row("GET /code/<c> redis x2", conns, &red_r);
    row("join (6 req)  memory x1", conns, &joins);
    let red_j = load_rt.block_on(measure(pair_addrs, conns, Workload::Join, warmup, dur));
    row("join (6 req)  redis x2", conns, &red_j);
    println!("{}", "-".repeat(84));
    println!(
        "redis x2 / memory x1: reads {:.2}, joins {:.2}",
        red_r.req_per_sec / mem_r.req_per_sec,
        red_j.ops_per_sec / joins.ops_per_sec
    );

    let _ = server_rt.block_on(health_rdv.stop());
    let _ = server_rt.block_on(join_rdv.stop());
    let _ = server_rt.block_on(lookup_mem.stop());
    for s in pair {
        let _ = server_rt.block_on(s.stop());
    }
    drop(redis);
}
