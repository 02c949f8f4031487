//! LAN discovery and join latency between two "machines": network
//! namespaces A and B joined by a veth pair (10.77.0.1/24 and 10.77.0.2/24),
//! created and removed by the benchmark itself (root needed). Nothing else
//! is used: no ICE servers, mDNS only on the veth ends.
//!
//! `cargo bench -p jam --bench lan_join` prints, over `LAN_BENCH_RUNS` runs
//! (default 20) each:
//!
//! - **discovery**: from just before the host starts in A (bundled
//!   rendezvous on 10.77.0.1:0, [`Host`], then a [`lan::Advertiser`] on `vA`
//!   with the open code) to the jam's first `Found` in B's [`lan::Browser`]
//!   on `vB`, which was already running (the Join view is open). Split into
//!   "host up" (rendezvous + host + advertiser started) and the mDNS rest.
//! - **join**: from [`Joiner::join`] in B to the host's `sessionWelcome`
//!   received (the call returns then), against one host running in A, with
//!   the joiner's own step times (health, verify, offer, answer, open,
//!   welcome).
//!
//! Goals: discovery < 1 s, join < 300 ms (p50).
//!
//! How the two machines live in one process: a network namespace is per
//! thread on Linux. Each machine is a thread that entered its namespace with
//! `setns(2)` and then built a Tokio runtime; the runtime's worker and
//! blocking threads, the mDNS daemons and every socket are created from
//! there and stay in that namespace. The benchmark's main thread only sends
//! jobs and reads clocks (`Instant` is one monotonic clock for the process).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use jam::host::{Host, HostConfig, HostEvent};
use jam::joiner::{JoinConfig, JoinEvent, JoinStep, Joiner};
use jam::rtc::RtcConfig;
use jam::signal::Target;
use rdv::{Config, Rendezvous, RunningServer};
use test_support::{Netns, VethPair};

const IP_A: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const IP_B: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const WAIT: Duration = Duration::from_secs(15);
const WARMUP_JOINS: usize = 2;

type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A thread in a namespace running a Tokio runtime that executes jobs.
struct Machine {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
}

impl Machine {
    fn start(ns: &Netns) -> Machine {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Job>();
        ns.spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                while let Some(job) = rx.recv().await {
                    tokio::spawn(job());
                }
            });
        });
        Machine { jobs: tx }
    }

    /// Runs `f` on this machine and waits for its result.
    fn run<T, F>(&self, f: impl FnOnce() -> F + Send + 'static) -> T
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = mpsc::channel();
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let _ = tx.send(f().await);
            })
        });
        self.jobs.send(job).expect("machine alive");
        rx.recv().expect("job finished")
    }
}

fn rtc(ip: Ipv4Addr) -> RtcConfig {
    RtcConfig {
        ice_servers: Vec::new(),
        gather_timeout: Duration::from_secs(2),
        bind_ips: vec![IpAddr::V4(ip)],
        resolve_mdns: false,
    }
}

struct Hosting {
    server: RunningServer,
    host: Host,
    advertiser: Option<lan::Advertiser>,
    code: String,
    url: String,
}

async fn start_host(name: String, advertise: bool) -> Hosting {
    let server = RunningServer::start(
        SocketAddr::new(IpAddr::V4(IP_A), 0),
        Rendezvous::new(Config::default()),
    )
    .await
    .expect("rendezvous binds 10.77.0.1");
    let url = server.url();
    let (host, mut events) = Host::start(HostConfig {
        display_name: name.clone(),
        machine_id: String::new(),
        session_id: "bench".into(),
        max_peers: 8,
        rtc: rtc(IP_A),
        target: Target::bundled(server.rdv.clone()),
        share_urls: vec![url.clone()],
        keep_code: None,
    })
    .await
    .expect("host starts");
    let code = match events.recv().await {
        Ok(HostEvent::Hosting { code, .. }) => code,
        other => panic!("first host event {other:?}"),
    };
    let advertiser = advertise.then(|| {
        lan::Advertiser::start(lan::AdvertiseConfig {
            interfaces: lan::InterfaceChoice::Named(vec!["vA".into()]),
            port: server.addr.port(),
            base_path: "/".into(),
            name,
            code: Some(code.clone()),
            peers: (0, 8),
        })
        .expect("advertiser starts")
    });
    Hosting {
        server,
        host,
        advertiser,
        code,
        url,
    }
}

async fn stop_host(h: Hosting) {
    if let Some(a) = h.advertiser {
        let _ = tokio::task::spawn_blocking(move || a.stop()).await;
    }
    h.host.stop().await;
    let _ = h.server.stop().await;
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn row(label: &str, mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let p50 = pct(&v, 0.5);
    println!(
        "  {label:<28} n={:<3} p50 {:>8.1} ms   p90 {:>8.1} ms   min {:>8.1}   max {:>8.1}",
        v.len(),
        p50,
        pct(&v, 0.9),
        v.first().copied().unwrap_or(f64::NAN),
        v.last().copied().unwrap_or(f64::NAN)
    );
    p50
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks harness=false benches to list
    }
    let runs: usize = std::env::var("LAN_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let pair = VethPair::new("lanbench");
    let a = Machine::start(&pair.a);
    let b = Machine::start(&pair.b);

    // ---------------------------------------------------------- discovery
    // B's browser runs for the whole series on its own thread (in B).
    let (found_tx, found_rx) = mpsc::channel::<(String, Instant, bool)>();
    let (stop_browse, browse_stopped) = mpsc::channel::<()>();
    let (browsing_tx, browsing) = mpsc::channel::<()>();
    let browser_thread = pair.b.spawn(move || {
        let browser =
            lan::Browser::start(lan::BrowseConfig::new(lan::InterfaceChoice::Named(vec![
                "vB".into(),
            ])))
            .expect("browser starts");
        let _ = browsing_tx.send(());
        while browse_stopped.try_recv().is_err() {
            match browser.recv_timeout(Duration::from_millis(50)) {
                Some(lan::BrowseEvent::Found(info)) => {
                    let _ = found_tx.send((info.name, Instant::now(), true));
                }
                Some(lan::BrowseEvent::Lost(instance)) => {
                    let name = instance.split("._midi-rdv").next().unwrap_or("").to_owned();
                    let _ = found_tx.send((name, Instant::now(), false));
                }
                None => {}
            }
        }
        let _ = browser.stop();
    });
    browsing.recv_timeout(WAIT).expect("B's browser started");

    let mut discovery = Vec::new();
    let mut host_up = Vec::new();
    let mut mdns_part = Vec::new();
    let mut lost = Vec::new();
    for i in 0..runs {
        let name = format!("bench jam {i}");
        let t0 = Instant::now();
        let n = name.clone();
        let h = a.run(move || start_host(n, true));
        let up = Instant::now();
        let seen = loop {
            match found_rx.recv_timeout(WAIT) {
                Ok((n, at, true)) if n == name => break at,
                Ok(_) => {}
                Err(_) => panic!("{name} not seen in B within {WAIT:?}"),
            }
        };
        discovery.push((seen - t0).as_secs_f64() * 1000.0);
        host_up.push((up - t0).as_secs_f64() * 1000.0);
        mdns_part.push((seen.saturating_duration_since(up)).as_secs_f64() * 1000.0);
        let t_stop = Instant::now();
        a.run(move || stop_host(h));
        let gone = loop {
            match found_rx.recv_timeout(WAIT) {
                Ok((n, at, false)) if n == name => break at,
                Ok(_) => {}
                Err(_) => panic!("{name} never vanished from B"),
            }
        };
        lost.push((gone - t_stop).as_secs_f64() * 1000.0);
        // Space the runs: mDNS rate-limits each record to one send a second
        // (pacing, not a wait for a result).
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = stop_browse.send(());
    let _ = browser_thread.join();

    // --------------------------------------------------------------- join
    let h = a.run(|| start_host("bench host".into(), false));
    let (url, code) = (h.url.clone(), h.code.clone());
    let mut total = Vec::new();
    let mut steps: HashMap<&'static str, Vec<f64>> = HashMap::new();
    for i in 0..(runs + WARMUP_JOINS) {
        let (url, code) = (url.clone(), code.clone());
        let (elapsed, marks) = b.run(move || async move {
            let cfg = JoinConfig {
                rtc: rtc(IP_B),
                ..JoinConfig::new(url.parse().expect("url"), Some(code), format!("joiner {i}"))
            };
            let t0 = Instant::now();
            let (joiner, mut events) = Joiner::join(cfg).await.expect("joins");
            let elapsed = t0.elapsed();
            let mut marks = Vec::new();
            while let Ok(e) = events.try_recv() {
                if let JoinEvent::Step { step, ms } = e {
                    marks.push((step, ms));
                }
            }
            joiner.leave().await;
            (elapsed, marks)
        });
        if i < WARMUP_JOINS {
            continue;
        }
        total.push(elapsed.as_secs_f64() * 1000.0);
        // Each step's duration is the time to the next step's start.
        for w in marks.windows(2) {
            let label = match w[0].0 {
                JoinStep::CheckingRendezvous => "GET /health",
                JoinStep::VerifyingCode => "GET /code (verify)",
                JoinStep::Offering => "offer + gathering",
                JoinStep::WaitingForHost => "offer POST → answer",
                JoinStep::Connecting => "answer → channel open",
                JoinStep::Greeting => "hello → welcome",
                _ => continue,
            };
            steps.entry(label).or_default().push(w[1].1 - w[0].1);
        }
    }
    a.run(move || stop_host(h));

    println!("LAN discovery and join, two namespaces over a veth pair ({runs} runs each)");
    println!("discovery: host start in A → jam found by B's browser (browser already running)");
    let d50 = row("host start → found in B", discovery);
    row("  host up (rdv+host+advert)", host_up);
    row("  advert → found (mDNS)", mdns_part);
    row("host stop → lost in B", lost);
    println!("join: Joiner::join in B → sessionWelcome from the host in A");
    let j50 = row("join → welcome", total);
    for label in [
        "GET /health",
        "GET /code (verify)",
        "offer + gathering",
        "offer POST → answer",
        "answer → channel open",
        "hello → welcome",
    ] {
        row(
            &format!("  {label}"),
            steps.remove(label).unwrap_or_default(),
        );
    }
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!(
        "goals: discovery p50 {d50:.0} ms < 1000 ms: {}; join p50 {j50:.0} ms < 300 ms: {}",
        verdict(d50 < 1000.0),
        verdict(j50 < 300.0)
    );
    drop(pair);
}
