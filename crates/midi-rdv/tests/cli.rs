//! The real `midi-rdv` binary, run as a subprocess: its startup line, flags
//! and their environment twins, refusal of bad values, graceful shutdown on
//! SIGTERM/SIGINT, and what it does (not) write to its logs.
//!
//! Every server started here listens on 127.0.0.1 only, on a port the OS
//! picks (`--port 0`); a guard kills it if a test fails half-way.

#[path = "../../rdv/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{client, fake_sdp, get, open_session, post, post_raw, Reply};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_midi-rdv");
const STARTUP_PREFIX: &str = "midi-rdv listening on ";
/// The only address a server in these tests may listen on.
const LOOPBACK: [&str; 4] = ["--bind", "127.0.0.1", "--port", "0"];

/// `midi-rdv` with the given arguments and environment, and with no
/// `MIDI_RDV_*` variable inherited from whoever runs the tests.
fn command(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MIDI_RDV_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// What a finished process left behind.
struct Exited {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// A running `midi-rdv`, killed on drop unless it already exited.
struct Proc {
    child: Child,
    /// The URL from the startup line, base path included.
    url: String,
    addr: SocketAddr,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn drain(mut r: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

impl Proc {
    /// Starts the server and waits for its startup line.
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Proc {
        let mut child = command(args, envs).spawn().expect("spawn midi-rdv");
        let stdout = child.stdout.take().unwrap();
        let stderr = drain(child.stderr.take().unwrap());
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            let _ = tx.send(first.clone());
            let mut rest = String::new();
            let _ = r.read_to_string(&mut rest);
            first + &rest
        });
        let mut p = Proc {
            child,
            url: String::new(),
            addr: "127.0.0.1:0".parse().unwrap(),
            stdout: Some(stdout),
            stderr: Some(stderr),
        };
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) if !l.is_empty() => l,
            other => {
                let _ = p.child.kill();
                let _ = p.child.wait();
                let err = p.stderr.take().unwrap().join().unwrap_or_default();
                panic!("no startup line ({other:?}); stderr:\n{err}");
            }
        };
        let line = line.trim_end_matches(['\r', '\n']);
        let url = line
            .strip_prefix(STARTUP_PREFIX)
            .unwrap_or_else(|| panic!("unexpected startup line {line:?}"));
        let hostport = url
            .strip_prefix("http://")
            .unwrap_or_else(|| panic!("startup URL without http:// {url:?}"));
        let hostport = hostport.split('/').next().unwrap();
        p.addr = hostport
            .parse()
            .unwrap_or_else(|e| panic!("startup address {hostport:?}: {e}"));
        p.url = url.to_owned();
        p
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Sends a signal by name (TERM, INT, ...) with the system's `kill`.
    fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid())
            .status()
            .expect("run kill");
        assert!(st.success(), "kill -{sig} failed");
    }

    /// Waits for the process to exit (killing it after `within`) and
    /// collects its output.
    async fn wait_exit(&mut self, within: Duration) -> Exited {
        let started = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                break st;
            }
            if started.elapsed() > within {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self.stderr.take().unwrap().join().unwrap_or_default();
                panic!("midi-rdv did not exit within {within:?}; stderr:\n{err}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Exited {
            status,
            stdout: self.stdout.take().unwrap().join().unwrap_or_default(),
            stderr: self.stderr.take().unwrap().join().unwrap_or_default(),
        }
    }

    /// SIGTERM, then the exit, which must be clean.
    async fn stop(&mut self) -> Exited {
        self.signal("TERM");
        let out = self.wait_exit(Duration::from_secs(10)).await;
        assert_eq!(out.status.code(), Some(0), "stderr:\n{}", out.stderr);
        assert_no_panic(&out.stderr);
        out
    }
}

/// Runs a command line expected to be refused: it must exit on its own,
/// non-zero, without printing the startup line.
async fn run_refused(args: &[&str], envs: &[(&str, &str)]) -> Exited {
    let mut child = command(args, envs).spawn().expect("spawn midi-rdv");
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let mut p = Proc {
        child,
        url: String::new(),
        addr: "127.0.0.1:0".parse().unwrap(),
        stdout: Some(stdout),
        stderr: Some(stderr),
    };
    let out = p.wait_exit(Duration::from_secs(10)).await;
    assert!(
        !out.status.success(),
        "{args:?} {envs:?} was accepted; stdout:\n{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains(STARTUP_PREFIX),
        "{args:?} {envs:?} started listening"
    );
    assert_no_panic(&out.stderr);
    out
}

fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "the process panicked:\n{stderr}"
    );
}

fn serve_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["serve"];
    v.extend_from_slice(&LOOPBACK);
    v.extend_from_slice(extra);
    v
}

// ---------------------------------------------------------------- startup

#[tokio::test]
async fn startup_line_names_the_url_and_it_answers_health() {
    let mut p = Proc::start(&serve_args(&[]), &[]);
    assert!(
        p.url.starts_with("http://127.0.0.1:"),
        "startup URL {:?}",
        p.url
    );
    assert_ne!(p.addr.port(), 0, "the startup line must give the real port");
    assert_eq!(
        p.url,
        format!("http://{}", p.addr),
        "no base path by default"
    );

    let c = client();
    let r = get(&c, &format!("{}/health", p.url)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["service"], "midi-rdv");
    assert_eq!(r.json["version"], 3);
    assert_eq!(r.json["build"], env!("CARGO_PKG_VERSION"));
    assert_eq!(r.json["protocol"], "joiner-initiated-multi-peer");
    assert_eq!(r.json["maxPeersPerSession"], 8);
    assert_eq!(get(&c, &format!("{}/", p.url)).await.status, 200);

    let out = p.stop().await;
    // Exactly one line on stdout; logs go to stderr.
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "stdout must hold only the startup line:\n{}",
        out.stdout
    );
    assert!(out.stdout.ends_with('\n'));
    assert!(
        out.stderr.contains("rendezvous ready"),
        "stderr:\n{}",
        out.stderr
    );
}

#[tokio::test]
async fn base_path_flag_is_normalised_in_the_startup_line() {
    let mut p = Proc::start(&serve_args(&["--base-path", "rdv/"]), &[]);
    assert_eq!(p.url, format!("http://{}/rdv", p.addr));
    let c = client();
    assert_eq!(get(&c, &format!("{}/health", p.url)).await.status, 200);
    // MidiEditor strips the trailing slash; the bare prefix is `/`.
    assert_eq!(get(&c, &p.url).await.status, 200);
    let outside = get(&c, &format!("http://{}/health", p.addr)).await;
    assert_eq!(outside.status, 404);
    assert_eq!(outside.error(), "not found");
    p.stop().await;
}

#[tokio::test]
async fn help_lists_an_environment_variable_for_every_flag() {
    let out = command(&["serve", "--help"], &[]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let mut blocks: Vec<String> = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        if t.starts_with("--") || t.starts_with("-h, --help") {
            blocks.push(String::new());
        }
        if let Some(b) = blocks.last_mut() {
            b.push_str(t);
            b.push('\n');
        }
    }
    assert!(blocks.len() >= 10, "too few flags in help:\n{help}");
    for b in blocks.iter().filter(|b| !b.contains("--help")) {
        assert!(b.contains("[env: MIDI_RDV_"), "flag without env var:\n{b}");
    }

    let v = command(&["--version"], &[]).output().unwrap();
    assert!(v.status.success());
    // The workspace version: the same number as the packages and /health's `build`.
    assert_eq!(
        String::from_utf8_lossy(&v.stdout).trim(),
        concat!("midi-rdv ", env!("CARGO_PKG_VERSION"))
    );
}

// ------------------------------------------------------- environment vars

#[tokio::test]
async fn environment_variables_configure_the_server() {
    let envs = [
        ("MIDI_RDV_BIND", "127.0.0.1"),
        ("MIDI_RDV_PORT", "0"),
        ("MIDI_RDV_BASE_PATH", "/rdv"),
        ("MIDI_RDV_TTL_SECS", "120"),
        ("MIDI_RDV_MAX_PEERS", "3"),
    ];
    let mut p = Proc::start(&["serve"], &envs);
    assert!(p.url.starts_with("http://127.0.0.1:"), "{}", p.url);
    assert!(
        p.url.ends_with("/rdv"),
        "startup line without /rdv: {}",
        p.url
    );
    assert_ne!(p.addr.port(), 0);

    let c = client();
    let h = get(&c, &format!("{}/health", p.url)).await;
    assert_eq!(h.status, 200, "{}", h.text);
    assert_eq!(h.json["maxPeersPerSession"], 3);
    assert_eq!(
        get(&c, &format!("http://{}/health", p.addr)).await.status,
        404,
        "routes must live under the base path only"
    );

    let s = post(
        &c,
        &format!("{}/session", p.url),
        json!({"sessionId": "env", "displayName": "Env"}),
    )
    .await;
    assert_eq!(s.status, 200, "{}", s.text);
    assert_eq!(s.json["expiresInSec"], 120);
    let code = s.json["code"].as_str().unwrap().to_owned();

    // The peer cap is really 3, not only advertised.
    for i in 0..3 {
        let r = post(
            &c,
            &format!("{}/code/{code}/joiner-offer", p.url),
            json!({"joinerId": format!("env-joiner-{i:04}"), "sdp": fake_sdp("envufrag")}),
        )
        .await;
        assert_eq!(r.status, 200, "offer {i}: {}", r.text);
    }
    let full = post(
        &c,
        &format!("{}/code/{code}/joiner-offer", p.url),
        json!({"joinerId": "env-joiner-0003", "sdp": fake_sdp("envufrag")}),
    )
    .await;
    assert_eq!(full.status, 503, "{}", full.text);
    assert_eq!(full.error(), "session is full (3 peers)");
    p.stop().await;
}

#[tokio::test]
async fn flags_override_environment_variables() {
    let envs = [
        ("MIDI_RDV_BIND", "127.0.0.1"),
        ("MIDI_RDV_PORT", "0"),
        ("MIDI_RDV_BASE_PATH", "/rdv"),
        ("MIDI_RDV_TTL_SECS", "120"),
        ("MIDI_RDV_MAX_PEERS", "3"),
        ("MIDI_RDV_LOG_FORMAT", "json"),
    ];
    let args = serve_args(&[
        "--base-path",
        "/other",
        "--ttl-secs",
        "60",
        "--max-peers",
        "5",
        "--log-format",
        "text",
    ]);
    let mut p = Proc::start(&args, &envs);
    assert!(p.url.ends_with("/other"), "flag must win: {}", p.url);
    let c = client();
    let h = get(&c, &format!("{}/health", p.url)).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.json["maxPeersPerSession"], 5);
    assert_eq!(
        get(&c, &format!("http://{}/rdv/health", p.addr))
            .await
            .status,
        404
    );
    let s = post(
        &c,
        &format!("{}/session", p.url),
        json!({"sessionId": "", "displayName": "Flags"}),
    )
    .await;
    assert_eq!(s.status, 200, "{}", s.text);
    assert_eq!(s.json["expiresInSec"], 60);
    let out = p.stop().await;
    // --log-format text beat MIDI_RDV_LOG_FORMAT=json.
    let first = out.stderr.lines().next().unwrap_or_default();
    assert!(
        serde_json::from_str::<Value>(first).is_err(),
        "logs are JSON although --log-format text was given:\n{}",
        out.stderr
    );
}

#[tokio::test]
async fn log_format_from_the_environment_gives_json_lines() {
    let mut p = Proc::start(&serve_args(&[]), &[("MIDI_RDV_LOG_FORMAT", "json")]);
    let c = client();
    open_session(&c, &p.url, "Json").await;
    let out = p.stop().await;
    assert_all_json(&out.stderr);
}

// ------------------------------------------------------- refused configs

/// Arguments, environment, and what stderr must mention.
type RefusedCase<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test]
async fn invalid_flags_and_values_are_refused_with_a_clear_message() {
    // (arguments, environment, what stderr must mention)
    let cases: Vec<RefusedCase> = vec![
        (serve_args(&["--ttl-secs", "0"]), vec![], "--ttl-secs"),
        (serve_args(&["--ttl-secs", "86401"]), vec![], "--ttl-secs"),
        (serve_args(&["--ttl-secs", "abc"]), vec![], "--ttl-secs"),
        (serve_args(&["--guess-limit", "5"]), vec![], "--guess-limit"),
        (serve_args(&["--guess-limit=-1"]), vec![], "--guess-limit"),
        (serve_args(&["--max-peers", "0"]), vec![], "--max-peers"),
        (serve_args(&["--max-peers", "257"]), vec![], "--max-peers"),
        (
            serve_args(&["--max-sessions", "0"]),
            vec![],
            "--max-sessions",
        ),
        (
            serve_args(&["--max-sessions-per-source", "0"]),
            vec![],
            "--max-sessions-per-source",
        ),
        (
            serve_args(&["--max-body-bytes", "10"]),
            vec![],
            "--max-body-bytes",
        ),
        (
            serve_args(&["--guess-lockout-secs", "0"]),
            vec![],
            "--guess-lockout-secs",
        ),
        (serve_args(&["--max-waiters=-5"]), vec![], "--max-waiters"),
        (
            serve_args(&["--hold-plain-polls-ms=25001"]),
            vec![],
            "--hold-plain-polls-ms",
        ),
        (
            serve_args(&["--shutdown-grace-secs", "soon"]),
            vec![],
            "--shutdown-grace-secs",
        ),
        (
            serve_args(&["--shutdown-grace-secs", "0"]),
            vec![],
            "--shutdown-grace-secs",
        ),
        (
            serve_args(&["--client-ip-header", "x forwarded"]),
            vec![],
            "--client-ip-header",
        ),
        (
            serve_args(&["--idle-timeout-secs", "5"]),
            vec![],
            "--idle-timeout-secs",
        ),
        (
            serve_args(&["--max-connections", "0"]),
            vec![],
            "--max-connections",
        ),
        (serve_args(&["--log-format", "xml"]), vec![], "--log-format"),
        (serve_args(&["--log-level", "[["]), vec![], "log-level"),
        (serve_args(&["--no-such-flag"]), vec![], "--no-such-flag"),
        (
            vec!["serve", "--bind", "notanip", "--port", "0"],
            vec![],
            "--bind",
        ),
        (
            vec!["serve", "--bind", "127.0.0.1", "--port", "70000"],
            vec![],
            "--port",
        ),
        (
            vec!["serve", "--bind", "127.0.0.1", "--port=-1"],
            vec![],
            "--port",
        ),
        // The environment twins are validated the same way.
        (
            serve_args(&[]),
            vec![("MIDI_RDV_TTL_SECS", "0")],
            "--ttl-secs",
        ),
        (
            serve_args(&[]),
            vec![("MIDI_RDV_GUESS_LIMIT", "5")],
            "--guess-limit",
        ),
        (
            serve_args(&[]),
            vec![("MIDI_RDV_MAX_SESSIONS", "lots")],
            "--max-sessions",
        ),
        (serve_args(&[]), vec![("MIDI_RDV_LOG", "[[")], "log-level"),
        (
            vec!["serve", "--port", "0"],
            vec![("MIDI_RDV_BIND", "notanip")],
            "--bind",
        ),
        (vec![], vec![], "Usage"),
        (vec!["listen"], vec![], "listen"),
    ];
    for (args, envs, needle) in cases {
        let out = run_refused(&args, &envs).await;
        let err = out.stderr.trim();
        assert!(
            !err.is_empty(),
            "{args:?} {envs:?}: refused without a message"
        );
        assert!(
            err.contains(needle),
            "{args:?} {envs:?}: stderr does not mention {needle:?}:\n{err}"
        );
        // The bare usage lists each subcommand on a line of its own
        // (serve, host, check, help), hence 14 rather than a round 10.
        assert!(
            err.lines().count() <= 14,
            "{args:?} {envs:?}: message is not short and clear:\n{err}"
        );
    }
}

#[tokio::test]
async fn a_port_in_use_is_reported_not_panicked() {
    // Hold a loopback port ourselves, then ask midi-rdv for exactly it.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port().to_string();
    let out = run_refused(&["serve", "--bind", "127.0.0.1", "--port", &port], &[]).await;
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", out.stderr);
    assert!(
        out.stderr.contains("cannot listen on 127.0.0.1:"),
        "stderr:\n{}",
        out.stderr
    );
    drop(held);
}

// --------------------------------------------------------------- signals

/// Reads `/metrics` until `rdv_longpoll_waiters` reaches `n`.
async fn wait_for_waiters(c: &reqwest::Client, url: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = get(c, &format!("{url}/metrics")).await;
        let current = m
            .text
            .lines()
            .find_map(|l| l.strip_prefix("rdv_longpoll_waiters "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if current == Some(n as f64) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "waiters never reached {n}: {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn graceful_stop_on(sig: &str) {
    let mut p = Proc::start(&serve_args(&[]), &[]);
    let url = p.url.clone();
    let c = client();
    // Leaves an idle keep-alive connection in `c`'s pool: it must not hold
    // the shutdown up.
    assert_eq!(get(&c, &format!("{url}/health")).await.status, 200);
    let (code, _) = open_session(&c, &url, "Signals").await;
    // And a connection that never sends a byte.
    let silent = TcpStream::connect(p.addr).unwrap();

    let poll_url = format!("{url}/code/{code}/host-answer/signal-joiner-01?wait=20000");
    let poller = tokio::spawn(async move {
        let c = client();
        let started = Instant::now();
        let r = c.get(poll_url).send().await;
        let r = match r {
            Ok(r) => {
                let status = r.status().as_u16();
                r.text().await.map(|t| (status, t))
            }
            Err(e) => Err(e),
        };
        (r, started.elapsed())
    });
    wait_for_waiters(&c, &url, 1).await;

    let signalled = Instant::now();
    p.signal(sig);
    let (reply, held) = tokio::time::timeout(Duration::from_secs(10), poller)
        .await
        .expect("the long-poll was not answered after the signal")
        .unwrap();
    let (status, body) = reply.unwrap_or_else(|e| {
        panic!("in-flight long-poll got no complete answer after SIG{sig}: {e:?}")
    });
    assert_eq!(status, 404, "{body}");
    let body: Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(body, json!({"error": "not yet"}));
    assert!(
        held < Duration::from_secs(15),
        "long-poll held {held:?}: it should be released by the shutdown"
    );

    let out = p.wait_exit(Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "SIG{sig} must be a clean exit; stderr:\n{}",
        out.stderr
    );
    assert!(
        took < Duration::from_secs(5),
        "exit took {took:?} after SIG{sig}"
    );
    assert_no_panic(&out.stderr);
    assert!(out.stderr.contains("shutting down"), "{}", out.stderr);
    drop(silent);

    // The port is released: nobody answers there, and it can be bound again.
    assert!(
        TcpStream::connect_timeout(&p.addr, Duration::from_secs(2)).is_err(),
        "something still accepts on {} after exit",
        p.addr
    );
    let again = TcpListener::bind(p.addr);
    assert!(again.is_ok(), "port not released: {:?}", again.err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_answers_in_flight_long_polls_and_exits_zero() {
    graceful_stop_on("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_answers_in_flight_long_polls_and_exits_zero() {
    graceful_stop_on("INT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_is_dropped_at_shutdown_and_the_exit_is_clean() {
    let mut p = Proc::start(&serve_args(&["--shutdown-grace-secs", "1"]), &[]);
    let prefix = p.url.trim_start_matches(&format!("http://{}", p.addr));
    // Headers promise 100 bytes; only one arrives.
    let mut s = TcpStream::connect(p.addr).unwrap();
    write!(
        s,
        "POST {prefix}/session HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 100\r\n\r\n{{",
        p.addr
    )
    .unwrap();
    s.flush().unwrap();
    // Lets the server start reading the partial request (the scenario: a
    // request in flight at the signal); nothing outside shows that moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let signalled = Instant::now();
    p.signal("TERM");
    let out = p.wait_exit(Duration::from_secs(10)).await;
    let took = signalled.elapsed();
    // The unfinished upload is dropped at once, not waited on for the grace.
    assert!(
        took < Duration::from_millis(900),
        "a stalled upload held shutdown for {took:?}"
    );
    assert_no_panic(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "dropping an unfinished request is a clean stop; stderr:\n{}",
        out.stderr
    );
}

/// A closed stdout (a service manager or a pipe reader that went away)
/// must not make the startup line panic the server.
#[tokio::test]
async fn a_closed_stdout_does_not_panic_the_server() {
    let mut child = command(&serve_args(&[]), &[]).spawn().expect("spawn");
    // Close the read end before the child gets to its startup line.
    drop(child.stdout.take());
    let stderr = drain(child.stderr.take().unwrap());
    let mut p = Proc {
        child,
        url: String::new(),
        addr: "127.0.0.1:0".parse().unwrap(),
        stdout: Some(std::thread::spawn(String::new)),
        stderr: Some(stderr),
    };
    // A negative check (it must not exit on its own), so a fixed wait.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let running = matches!(p.child.try_wait(), Ok(None));
    if running {
        p.signal("TERM");
    }
    let out = p.wait_exit(Duration::from_secs(10)).await;
    assert_no_panic(&out.stderr);
    if running {
        assert_eq!(out.status.code(), Some(0), "stderr:\n{}", out.stderr);
    } else {
        assert_eq!(
            out.status.code(),
            Some(1),
            "exit with a message, not a crash; stderr:\n{}",
            out.stderr
        );
    }
}

// ------------------------------------------------------------ log privacy

fn assert_all_json(stderr: &str) {
    assert!(!stderr.trim().is_empty(), "no logs at all");
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: Result<Value, _> = serde_json::from_str(line);
        assert!(
            matches!(v, Ok(Value::Object(_))),
            "a stderr line is not a JSON object: {line:?}\nwhole stderr:\n{stderr}"
        );
    }
}

/// Codes that are certainly not `live`, for failed lookups.
fn unknown_codes(live: &str, n: usize) -> Vec<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
    (0..n)
        .map(|i| {
            let pick = |k: usize| ALPHABET[k % ALPHABET.len()] as char;
            format!("{}{}{}{}", pick(i * 7 + 3), pick(i * 11 + 5), 'Q', pick(i))
        })
        .filter(|c| c != live)
        .collect()
}

async fn full_join_keeps_secrets_out_of_the_logs(extra: &[&str]) -> String {
    let mut p = Proc::start(&serve_args(extra), &[]);
    let url = p.url.clone();
    let c = client();
    let session_id = "private-session-id-7781";
    let display_name = "Alice's secret laptop";
    let joiner = "jX9-privacy-joiner-q";
    let offer_ufrag = "OfferUfragZq81";
    let answer_ufrag = "AnswerUfragYp27";
    let offer = fake_sdp(offer_ufrag);
    let answer = fake_sdp(answer_ufrag);

    assert_eq!(get(&c, &format!("{url}/health")).await.status, 200);
    let s = post(
        &c,
        &format!("{url}/session"),
        json!({"sessionId": session_id, "displayName": display_name, "protectAnswers": true}),
    )
    .await;
    assert_eq!(s.status, 200, "{}", s.text);
    let code = s.json["code"].as_str().unwrap().to_owned();
    let token = s.json["hostToken"].as_str().unwrap().to_owned();
    let base = format!("{url}/code/{code}");

    // Joiner: verify, an early answer poll, the offer.
    let v = get(&c, &base).await;
    assert_eq!(v.status, 200, "{}", v.text);
    assert_eq!(v.json["sessionId"], session_id);
    let early = get(&c, &format!("{base}/host-answer/{joiner}")).await;
    assert_eq!(early.status, 404);
    assert_eq!(early.error(), "not yet");
    let o = post(
        &c,
        &format!("{base}/joiner-offer"),
        json!({"joinerId": joiner, "sdp": offer}),
    )
    .await;
    assert_eq!(o.status, 200, "{}", o.text);
    let dup = post(
        &c,
        &format!("{base}/joiner-offer"),
        json!({"joinerId": joiner, "sdp": offer}),
    )
    .await;
    assert_eq!(dup.status, 409);

    // Host: offers poll (plain and long-poll), answer without and with token.
    let list = send(c.get(format!("{base}/joiner-offers")).bearer_auth(&token)).await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.json["offers"][0]["joinerId"], joiner);
    assert_eq!(list.json["offers"][0]["sdp"], offer.as_str());
    let lp = send(
        c.get(format!("{base}/joiner-offers?wait=100"))
            .bearer_auth(&token),
    )
    .await;
    assert_eq!(lp.status, 200);
    let no_token = post(
        &c,
        &format!("{base}/host-answer"),
        json!({"joinerId": joiner, "sdp": answer}),
    )
    .await;
    assert_eq!(no_token.status, 403, "{}", no_token.text);
    let a = send(
        c.post(format!("{base}/host-answer"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(json!({"joinerId": joiner, "sdp": answer}).to_string()),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let again = send(
        c.post(format!("{base}/host-answer"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(json!({"joinerId": joiner, "sdp": answer}).to_string()),
    )
    .await;
    assert_eq!(again.status, 409);

    // Joiner: the answer, plain and as a long-poll.
    let got = get(&c, &format!("{base}/host-answer/{joiner}")).await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert_eq!(got.json["sdp"], answer.as_str());
    let got = get(&c, &format!("{base}/host-answer/{joiner}?wait=1000")).await;
    assert_eq!(got.status, 200);

    // Malformed bodies that carry SDP-looking text.
    let bad = post_raw(
        &c,
        &format!("{base}/joiner-offer"),
        format!(
            "{{\"joinerId\":\"{joiner}-2\",\"sdp\":\"a=fingerprint:sha-256 AA:BB {offer_ufrag}"
        ),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    let bad_id = post(
        &c,
        &format!("{base}/joiner-offer"),
        json!({"joinerId": format!("{joiner}!!"), "sdp": offer}),
    )
    .await;
    assert_eq!(bad_id.status, 400);

    // Failed lookups, enough to trip the guessing guard (and its warning).
    let wrong = unknown_codes(&code, 40);
    for (i, w) in wrong.iter().enumerate() {
        let r = match i % 3 {
            0 => get(&c, &format!("{url}/code/{w}")).await,
            1 => get(&c, &format!("{url}/code/{w}/joiner-offers")).await,
            _ => {
                post(
                    &c,
                    &format!("{url}/code/{w}/joiner-offer"),
                    json!({"joinerId": joiner, "sdp": offer}),
                )
                .await
            }
        };
        assert!(
            r.status == 404 || r.status == 429,
            "{w}: {} {}",
            r.status,
            r.text
        );
    }
    let r = get(&c, &format!("{url}/code/{}/host-answer/{joiner}", wrong[0])).await;
    assert_eq!(r.status, 404);
    let r = get(&c, &format!("{url}/code/{}", code.to_lowercase())).await;
    assert_eq!(r.status, 404);

    let out = p.stop().await;
    let logs = out.stderr;
    assert!(logs.contains("rendezvous ready"), "logs:\n{logs}");
    assert!(logs.contains("session opened"), "logs:\n{logs}");
    assert!(
        logs.contains("locked out"),
        "the guard warning is missing:\n{logs}"
    );

    let mut secrets: Vec<(&str, String)> = vec![
        ("the code", code.clone()),
        ("the lowercase code", code.to_lowercase()),
        ("the joinerId", joiner.to_owned()),
        ("the hostToken", token.clone()),
        ("the offer ice-ufrag", offer_ufrag.to_owned()),
        ("the answer ice-ufrag", answer_ufrag.to_owned()),
        ("an SDP fingerprint line", "a=fingerprint".to_owned()),
        ("an SDP ice-pwd line", "a=ice-pwd".to_owned()),
        (
            "an SDP ice-pwd value",
            "abcdefghijklmnopqrstuvwx".to_owned(),
        ),
        ("an SDP origin line", "4611731400430051336".to_owned()),
        ("an SDP media line", "webrtc-datachannel".to_owned()),
        ("the sessionId", session_id.to_owned()),
        ("the displayName", display_name.to_owned()),
    ];
    for w in &wrong {
        secrets.push(("a guessed code", w.clone()));
    }
    for (what, s) in &secrets {
        assert!(
            !logs.contains(s.as_str()),
            "{what} ({s:?}) appears in the logs:\n{logs}"
        );
    }
    logs
}

/// Sends a request built with reqwest's builder and reads the reply.
async fn send(b: reqwest::RequestBuilder) -> Reply {
    Reply::from(b.send().await.unwrap()).await
}

#[tokio::test]
async fn default_logs_carry_no_codes_ids_sdp_or_tokens() {
    let logs = full_join_keeps_secrets_out_of_the_logs(&[]).await;
    assert!(
        logs.lines().any(|l| l.contains("INFO")),
        "expected info lines:\n{logs}"
    );
}

#[tokio::test]
async fn json_logs_are_json_and_carry_no_secrets() {
    let logs = full_join_keeps_secrets_out_of_the_logs(&["--log-format", "json"]).await;
    assert_all_json(&logs);
    assert!(logs.lines().count() >= 4, "logs:\n{logs}");
}
