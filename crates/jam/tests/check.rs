//! `jam::check` against real servers, all on loopback: the bundled
//! rendezvous (in process), a stopped one, web servers that are not a
//! rendezvous, Debian's coturn as STUN/TURN server, and silent UDP ports.
//!
//! Nothing here leaves 127.0.0.0/8: the test peers bind 127.0.0.1 only and
//! use no ICE servers; every STUN/TURN server is one this file started.
//! The coturn tests need the `turnserver` binary (Debian package `coturn`,
//! installed by `scripts/setup.sh`); they fail with a message saying so
//! when it is missing.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jam::check::{
    check_health, check_ice_server, details_text, run_check, run_check_quiet, CheckConfig,
    CheckError, Progress, ServerError, ServerKind, StageId, Status, Verdict,
};
use jam::host::{Host, HostConfig, HostEvent};
use jam::rtc::RtcConfig;
use jam::signal::Target;
use rdv::{Config, Rendezvous, RunningServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn config(url: &str) -> CheckConfig {
    CheckConfig {
        bind_ips: vec![LOOPBACK],
        ..CheckConfig::new(url)
    }
}

async fn bundled() -> RunningServer {
    RunningServer::start((LOOPBACK, 0).into(), Rendezvous::new(Config::default()))
        .await
        .expect("the bundled rendezvous starts on 127.0.0.1")
}

/// A TCP port on 127.0.0.1 where nothing listens (bound, then released).
async fn closed_tcp_port() -> u16 {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    port
}

/// A tiny HTTP/1.1 server on 127.0.0.1 that answers every request with
/// `response` (raw bytes, headers included) and closes; `None` accepts and
/// then never answers.
async fn fake_http(response: Option<&'static str>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind((LOOPBACK, 0)).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            match response {
                Some(response) => {
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 4096];
                        let _ = stream.read(&mut buf).await;
                        let _ = stream.write_all(response.as_bytes()).await;
                        let _ = stream.shutdown().await;
                    });
                }
                None => held.push(stream),
            }
        }
    });
    (url, task)
}

fn http_response(status: &str, content_type: &str, body: &str) -> &'static str {
    Box::leak(
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_boxed_str(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundled_rendezvous_is_good_with_every_stage_timed_and_progress_reported() {
    let server = bundled().await;
    let events: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let sink = events.clone();
    let report = run_check(&config(&server.url()), move |p| {
        sink.lock().unwrap().push(p)
    })
    .await;
    let text = details_text(&report);
    eprintln!("{text}");

    assert_eq!(report.verdict, Verdict::Good, "{text}");
    assert!(report.passed());
    assert_eq!(report.failed_stage, None);
    assert!(report.code.as_deref().is_some_and(|c| c.len() == 4));
    for stage in &report.stages {
        assert_eq!(stage.status, Status::Passed, "{stage:?}");
        assert!(stage.duration_ms.is_some_and(|d| d >= 0.0), "{stage:?}");
        assert!(stage.error.is_none() && stage.hint.is_none(), "{stage:?}");
    }
    let ids: Vec<StageId> = report.stages.iter().map(|s| s.stage).collect();
    assert_eq!(ids, StageId::ALL.to_vec());
    let t = &report.timings;
    let (rendezvous, handshake, rtt) = (
        t.rendezvous_ms.expect("rendezvous time"),
        t.handshake_ms.expect("handshake time"),
        t.round_trip_ms.expect("round trip time"),
    );
    assert!(rendezvous > 0.0 && handshake > 0.0 && rtt > 0.0, "{t:?}");
    assert!(rendezvous + handshake <= t.total_ms + 0.5, "{t:?}");
    assert!(t.total_ms < 5000.0, "loopback is fast: {t:?}");
    let health = report.health.as_ref().expect("health info");
    assert_eq!(health.version, 3);
    assert!(health.extensions.iter().any(|e| e == "long-poll"));
    assert!(report.summary.starts_with("Good"), "{}", report.summary);
    assert!(
        text.contains("Verdict: Good") && text.contains("Ping / pong"),
        "{text}"
    );

    // Progress: every stage started, then finished passed, in order.
    let events = events.lock().unwrap().clone();
    let mut expected = Vec::new();
    for stage in StageId::ALL {
        expected.push(format!("start {stage:?}"));
        expected.push(format!("done {stage:?} Passed"));
    }
    let seen: Vec<String> = events
        .iter()
        .map(|e| match e {
            Progress::StageStarted { stage, .. } => format!("start {stage:?}"),
            Progress::StageFinished { report } => {
                format!("done {:?} {:?}", report.stage, report.status)
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(seen, expected);

    // The report is what a front end gets: camelCase JSON.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["verdict"], "good");
    assert!(json["timings"]["handshakeMs"].is_number());
    assert_eq!(json["stages"][6]["stage"], "roundTrip");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_never_disturbs_a_jam_hosted_on_the_same_rendezvous() {
    let server = bundled().await;
    let (host, mut host_events) = Host::start(HostConfig {
        display_name: "Jam".into(),
        machine_id: String::new(),
        session_id: "jam".into(),
        max_peers: 8,
        rtc: RtcConfig {
            bind_ips: vec![LOOPBACK],
            resolve_mdns: false,
            ..RtcConfig::default()
        },
        target: Target::bundled(server.rdv.clone()),
        share_urls: vec![server.url()],
        keep_code: None,
    })
    .await
    .expect("the jam host starts");
    let jam_code = match host_events.recv().await.unwrap() {
        HostEvent::Hosting { code, .. } => code,
        other => panic!("first event {other:?}"),
    };

    for _ in 0..2 {
        let report = run_check_quiet(&config(&server.url())).await;
        assert_eq!(report.verdict, Verdict::Good, "{}", details_text(&report));
        assert_ne!(
            report.code.as_deref(),
            Some(jam_code.as_str()),
            "own session"
        );
    }
    // The jam saw nothing: no peer joined or left, no renewed session. (A
    // negative check, so a fixed wait.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    if let Ok(event) = host_events.try_recv() {
        panic!("the jam host saw {event:?} during a connection test");
    }
    // And its code still leads to it.
    let lookup = reqwest::get(format!("{}/code/{jam_code}", server.url()))
        .await
        .unwrap();
    assert_eq!(lookup.status(), 200);
    let body: serde_json::Value = lookup.json().await.unwrap();
    assert_eq!(body["sessionId"], "jam");
    host.stop().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_rendezvous_fails_fast_at_health_with_connection_refused() {
    let port = closed_tcp_port().await;
    let started = Instant::now();
    let report = run_check_quiet(&config(&format!("http://127.0.0.1:{port}"))).await;
    let took = started.elapsed();
    eprintln!("{}", details_text(&report));
    assert!(took < Duration::from_millis(1000), "fast: {took:?}");
    assert_eq!(report.verdict, Verdict::Failed);
    assert_eq!(report.failed_stage, Some(StageId::Health));
    let health = &report.stages[0];
    assert_eq!(health.status, Status::Failed);
    assert_eq!(
        health.error,
        Some(CheckError::ConnectionRefused {
            addr: format!("127.0.0.1:{port}")
        })
    );
    assert!(health
        .detail
        .as_deref()
        .unwrap()
        .contains("connection refused"));
    assert!(health
        .hint
        .as_deref()
        .unwrap()
        .contains("no rendezvous runs on that port"));
    assert!(report.stages[1..]
        .iter()
        .all(|s| s.status == Status::Skipped));
    assert!(report.code.is_none());
    assert!(!report.passed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_web_server_that_is_not_a_rendezvous_is_named_as_such() {
    let html = http_response(
        "200 OK",
        "text/html",
        "<!DOCTYPE html><html><body><h1>Router login</h1></body></html>",
    );
    let (url, _server) = fake_http(Some(html)).await;
    let report = run_check_quiet(&config(&url)).await;
    eprintln!("{}", details_text(&report));
    assert_eq!(report.verdict, Verdict::Failed);
    assert_eq!(report.failed_stage, Some(StageId::Health));
    match &report.stages[0].error {
        Some(CheckError::NotARendezvous { detail }) => assert!(detail.contains("HTML"), "{detail}"),
        other => panic!("expected NotARendezvous, got {other:?}"),
    }
    assert!(
        report.summary.contains("not a midi-rdv rendezvous"),
        "{}",
        report.summary
    );

    // JSON that is not ours, an old rendezvous, an error status.
    let (url, _s) = fake_http(Some(http_response(
        "200 OK",
        "application/json",
        r#"{"ok":true}"#,
    )))
    .await;
    assert!(matches!(
        check_health(&url, Duration::from_secs(3)).await,
        Err(CheckError::NotARendezvous { .. })
    ));
    let (url, _s) = fake_http(Some(http_response(
        "200 OK",
        "application/json",
        r#"{"service":"midi-rdv","version":2,"protocol":"host-initiated"}"#,
    )))
    .await;
    assert_eq!(
        check_health(&url, Duration::from_secs(3)).await,
        Err(CheckError::ProtocolTooOld { version: Some(2) })
    );
    let (url, _s) = fake_http(Some(http_response(
        "503 Service Unavailable",
        "text/plain",
        "down",
    )))
    .await;
    let err = check_health(&url, Duration::from_secs(3))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CheckError::HttpStatus {
            status: 503,
            message: None
        }
    );
    assert!(err.to_string().contains("HTTP status 503"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_times_out_within_the_budget_and_https_to_plain_http_is_a_tls_problem() {
    let (url, _server) = fake_http(None).await;
    let started = Instant::now();
    let err = check_health(&url, Duration::from_millis(500))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err, CheckError::TimedOut { ms: 500 });
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(1500),
        "{took:?}"
    );

    let server = bundled().await;
    let https = format!("https://{}", server.addr);
    match check_health(&https, Duration::from_secs(3)).await {
        Err(CheckError::Tls { detail }) => eprintln!("TLS detail: {detail}"),
        other => panic!("expected a TLS problem, got {other:?}"),
    }
    assert!(matches!(
        check_health("127.0.0.1:8787", Duration::from_secs(3)).await,
        Err(CheckError::BadUrl { .. })
    ));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_cannot_be_built_after_the_code_is_inconclusive() {
    // 192.0.2.1 (TEST-NET-1) is on no interface here: binding it fails
    // locally (EADDRNOTAVAIL), nothing is sent anywhere.
    let server = bundled().await;
    let cfg = CheckConfig {
        bind_ips: vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))],
        ..CheckConfig::new(server.url())
    };
    let report = run_check_quiet(&cfg).await;
    eprintln!("{}", details_text(&report));
    assert_eq!(report.verdict, Verdict::Inconclusive);
    assert_eq!(report.failed_stage, Some(StageId::Offer));
    assert!(report.code.is_some());
    assert!(matches!(
        report.stages[3].error,
        Some(CheckError::WebRtc { .. })
    ));
    assert!(
        report.summary.starts_with("Inconclusive"),
        "{}",
        report.summary
    );
    server.stop().await.unwrap();
}

// ------------------------------------------------------------- STUN / TURN

/// A coturn `turnserver` on 127.0.0.1, killed on drop.
struct Coturn {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 (coturn listens on both).
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = std::net::UdpSocket::bind((LOOPBACK, 0)).unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind((LOOPBACK, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair");
}

/// Starts coturn with long-term credentials `u:p`, realm `test`, on
/// loopback only, and waits until it answers STUN.
async fn coturn() -> Coturn {
    let binary = which_turnserver().unwrap_or_else(|| {
        panic!(
            "these tests need coturn's `turnserver` binary and it is not installed: \
             run scripts/setup.sh or `apt-get install -y coturn`"
        )
    });
    for _attempt in 0..3 {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("jam-check-coturn-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(&binary)
            .args(["--lt-cred-mech", "--user", "u:p", "--realm", "test"])
            .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
            .args(["--listening-port", &port.to_string()])
            .args(["--min-port", "40000", "--max-port", "40999"])
            .args(["--no-tls", "--no-dtls", "--no-cli", "--no-rfc5780", "-n"])
            .args(["--log-file", "stdout", "--allow-loopback-peers"])
            .arg("--pidfile")
            .arg(dir.join("turnserver.pid"))
            .arg("--userdb")
            .arg(dir.join("turndb"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("turnserver starts");
        let mut server = Coturn {
            child,
            port,
            _dir: TempDir(dir),
        };
        // Ready once it answers a Binding request.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.child.try_wait() {
                break; // exited (port taken?): try another port
            }
            let probe = check_ice_server(
                &format!("stun:127.0.0.1:{port}"),
                Duration::from_millis(300),
            )
            .await;
            if probe.status == Status::Passed {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = server.child.kill();
    }
    panic!("coturn did not come up on 127.0.0.1");
}

fn which_turnserver() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/bin".into(), "/usr/sbin".into()])
        .map(|dir| dir.join("turnserver"))
        .find(|candidate| candidate.is_file())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_stun_reports_our_mapped_address_and_turn_allocates_a_relay() {
    let turn = coturn().await;
    let bound = Duration::from_secs(5);

    let stun = check_ice_server(&format!("stun:127.0.0.1:{}", turn.port), bound).await;
    eprintln!("{stun:?}");
    assert_eq!(stun.status, Status::Passed, "{stun:?}");
    assert_eq!(stun.kind, ServerKind::Stun);
    let mapped: SocketAddr = stun.mapped_address.as_deref().unwrap().parse().unwrap();
    assert_eq!(mapped.ip(), LOOPBACK, "coturn sees us on loopback");
    assert_ne!(mapped.port(), 0);
    assert!(stun.relay_address.is_none());
    assert!(stun.rtt_ms.is_some());

    let uri = format!("turn:u:p@127.0.0.1:{}?transport=udp", turn.port);
    let relay = check_ice_server(&uri, bound).await;
    eprintln!("{relay:?}");
    assert_eq!(relay.status, Status::Passed, "{relay:?}");
    assert_eq!(relay.kind, ServerKind::Turn);
    let relayed: SocketAddr = relay.relay_address.as_deref().unwrap().parse().unwrap();
    assert_eq!(relayed.ip(), LOOPBACK);
    assert!((40000..=40999).contains(&relayed.port()), "{relayed}");
    let mapped: SocketAddr = relay.mapped_address.as_deref().unwrap().parse().unwrap();
    assert_eq!(mapped.ip(), LOOPBACK);
    assert_eq!(
        relay.uri,
        format!("turn:u:***@127.0.0.1:{}?transport=udp", turn.port)
    );
    assert!(
        !format!("{relay:?}").contains(":p@"),
        "password never shown"
    );

    // The allocation was released: a second check from a new port works
    // just as well, many times over (no allocation piles up).
    for _ in 0..3 {
        assert_eq!(check_ice_server(&uri, bound).await.status, Status::Passed);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_with_a_wrong_password_is_an_auth_failure_not_a_timeout() {
    let turn = coturn().await;
    let started = Instant::now();
    let wrong = check_ice_server(
        &format!("turn:u:wrong@127.0.0.1:{}", turn.port),
        Duration::from_secs(5),
    )
    .await;
    eprintln!("{wrong:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "answered, not timed out"
    );
    assert_eq!(wrong.status, Status::Failed);
    assert!(
        matches!(wrong.error, Some(ServerError::AuthFailed { code: 401, .. })),
        "{wrong:?}"
    );
    assert!(wrong
        .hint
        .as_deref()
        .unwrap()
        .contains("user name and password"));
    assert_eq!(wrong.uri, format!("turn:u:***@127.0.0.1:{}", turn.port));

    let unknown_user = check_ice_server(
        &format!("turn:nobody:p@127.0.0.1:{}", turn.port),
        Duration::from_secs(5),
    )
    .await;
    assert!(
        matches!(unknown_user.error, Some(ServerError::AuthFailed { .. })),
        "{unknown_user:?}"
    );

    let no_credentials = check_ice_server(
        &format!("turn:127.0.0.1:{}", turn.port),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        no_credentials.error,
        Some(ServerError::NoCredentials),
        "{no_credentials:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_port_where_nothing_answers_is_unreachable_within_the_bound() {
    // A socket that swallows everything: a server that never answers.
    let hole = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let port = hole.local_addr().unwrap().port();
    let bound = Duration::from_millis(1500);
    for uri in [
        format!("stun:127.0.0.1:{port}"),
        format!("turn:u:p@127.0.0.1:{port}"),
    ] {
        let started = Instant::now();
        let row = check_ice_server(&uri, bound).await;
        let took = started.elapsed();
        eprintln!("{uri}: {row:?} in {took:?}");
        assert_eq!(row.status, Status::Failed);
        assert!(
            matches!(row.error, Some(ServerError::Unreachable { .. })),
            "{row:?}"
        );
        assert!(
            took >= Duration::from_millis(1400),
            "waited for the bound: {took:?}"
        );
        assert!(took < Duration::from_millis(2000), "bounded: {took:?}");
    }
    // A closed port: the host says so (ICMP), reported at once.
    drop(hole);
    let started = Instant::now();
    let row = check_ice_server(&format!("stun:127.0.0.1:{port}"), bound).await;
    assert!(
        matches!(row.error, Some(ServerError::Unreachable { .. })),
        "{row:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_are_reported_as_bad_urls_and_tcp_tls_as_not_checked() {
    for bad in [
        "http:127.0.0.1",
        "stun:127.0.0.1:99999",
        "turn:u:p@h?transport=sctp",
        "stun:u:p@h",
        "stun:",
    ] {
        let row = check_ice_server(bad, Duration::from_secs(1)).await;
        assert_eq!(row.status, Status::Failed, "{bad}");
        assert_eq!(row.kind, ServerKind::Unknown, "{bad}");
        assert!(
            matches!(row.error, Some(ServerError::BadUrl { .. })),
            "{bad}: {row:?}"
        );
        assert!(row.detail.starts_with("bad URL"), "{row:?}");
    }
    let row = check_ice_server("stun:u:secret@h", Duration::from_secs(1)).await;
    assert!(
        !row.detail.contains("secret") && !row.uri.contains("secret"),
        "{row:?}"
    );

    for unchecked in [
        "turns:u:p@127.0.0.1:5349",
        "turn:u:p@127.0.0.1:3478?transport=tcp",
    ] {
        let row = check_ice_server(unchecked, Duration::from_secs(1)).await;
        assert_eq!(row.status, Status::NotChecked, "{row:?}");
        assert!(row.detail.contains("UDP only"), "{row:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_are_checked_in_parallel_beside_the_loopback() {
    let turn = coturn().await;
    let server = bundled().await;
    let hole_a = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let hole_b = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let cfg = CheckConfig {
        ice_servers: vec![
            format!("stun:127.0.0.1:{}", turn.port),
            format!("turn:u:p@127.0.0.1:{}", turn.port),
            format!("turn:u:nope@127.0.0.1:{}", turn.port),
            format!("stun:127.0.0.1:{}", hole_a.local_addr().unwrap().port()),
            format!("stun:127.0.0.1:{}", hole_b.local_addr().unwrap().port()),
            "bogus:entry".to_owned(),
        ],
        server_timeout: Duration::from_millis(1500),
        ..config(&server.url())
    };
    let events: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let sink = events.clone();
    let started = Instant::now();
    let report = run_check(&cfg, move |p| sink.lock().unwrap().push(p)).await;
    let took = started.elapsed();
    let text = details_text(&report);
    eprintln!("{text}\nin {took:?}");
    // Two silent servers of 1.5 s each, checked at once: ~1.5 s, not 3.
    assert!(took < Duration::from_millis(2500), "{took:?}");
    assert_eq!(report.verdict, Verdict::Good);
    assert!(!report.passed(), "a failed server fails the whole check");
    let statuses: Vec<Status> = report.ice_servers.iter().map(|s| s.status).collect();
    use Status::{Failed, Passed};
    assert_eq!(
        statuses,
        vec![Passed, Passed, Failed, Failed, Failed, Failed]
    );
    assert!(
        report.summary.contains("4 of 6 server(s) failed"),
        "{}",
        report.summary
    );
    assert!(text.contains("wrong user name or password") || text.contains("authentication failed"));
    assert!(
        !text.contains(":nope@") && !text.contains("u:p@"),
        "no password in the details"
    );
    let finished = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Progress::ServerFinished { .. }))
        .count();
    assert_eq!(finished, 6);
    server.stop().await.unwrap();
}
