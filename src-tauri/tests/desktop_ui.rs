//! The real app under Xvfb, driven by WebDriver (`tauri-driver` in front of
//! Debian's `WebKitWebDriver`), each test in its own pair of network
//! namespaces with its own config folder.
//!
//! Layout of one test: namespace A ("the musician's computer") runs Xvfb's
//! clients, `tauri-driver`, and the app; namespace B ("a friend's laptop")
//! runs the aiortc joiner from `tests/interop`. They are joined by a veth
//! pair (10.78.n.1 <-> 10.78.n.2), so the app's default "listen and gather
//! everywhere" is exercised on an interface that exists only inside the
//! test. The test thread itself enters namespace A (`setns`), so its
//! WebDriver requests to 127.0.0.1 and every process it starts stay there.
//!
//! Screenshots of the host screen and the settings pane are written to
//! `target/ui-screenshots/`. Needs root, Xvfb, tauri-driver and
//! webkit2gtk-driver: `bash scripts/setup.sh` installs them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "common/rig.rs"]
mod rig;
use rig::{repo, Rig};

const APP: &str = env!("CARGO_BIN_EXE_midi-jam");
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How much longer than on a quiet machine a condition may take: the tests
/// must pass while other builds use both cores (WebKit, the app and the
/// joiners then get a fraction of the CPU).
const SLACK: u32 = 3;

/// One WebKit at a time: two cores do not run two apps and their joiners
/// well, and the timeouts below assume a quiet machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn screenshot_dir() -> PathBuf {
    let d = repo().join("target/ui-screenshots");
    std::fs::create_dir_all(&d).expect("screenshot dir");
    d
}

/// Starts the app through WebDriver and waits for its first screen.
fn launch(rig: &Rig) -> Session {
    let started = Instant::now();
    let body = json!({"capabilities": {"alwaysMatch": {
        "browserName": "wry",
        "tauri:options": {"application": APP}
    }}});
    let r = http(
        rig.driver_port,
        "POST",
        "/session",
        Some(&body),
        Duration::from_secs(60),
    );
    let id = r["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no WebDriver session: {r}"))
        .to_owned();
    let s = Session {
        port: rig.driver_port,
        id,
        started,
    };
    // Interaction starts once the window has its code and its settings
    // (the whole first screen), as a person would wait for it.
    s.code();
    s.wait_js(
        Duration::from_secs(10),
        "the settings loaded",
        "return !!document.getElementById('settings-form').dataset.loaded;",
    );
    // In its first seconds WebKitWebDriver sometimes loses a command (no
    // reply, then nulls) while the new webview settles; give it that time.
    let settle = Duration::from_millis(2500);
    if let Some(rest) = settle.checked_sub(s.started.elapsed()) {
        std::thread::sleep(rest);
    }
    s
}

/// A minimal HTTP/1.1 client: WebDriver needs nothing more, and it keeps
/// every socket on this thread (so in this test's namespace).
fn http(port: u16, method: &str, path: &str, body: Option<&Value>, timeout: Duration) -> Value {
    // tauri-driver now and then closes a connection without a reply while
    // the webview is busy starting; the same request a moment later works.
    // A click (or a launch) is not repeated: it may have happened, and the
    // test's next wait tells.
    if path.ends_with("/click") || path == "/session" {
        return http_once(port, method, path, body, timeout);
    }
    for _ in 0..5 {
        let r = http_once(port, method, path, body, timeout);
        if r.get("raw").and_then(Value::as_str) != Some("") {
            return r;
        }
        eprintln!("tauri-driver gave no reply to {method} {path}; again");
        std::thread::sleep(Duration::from_millis(300));
    }
    http_once(port, method, path, body, timeout)
}

fn http_once(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Value {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to tauri-driver");
    s.set_read_timeout(Some(timeout)).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read WebDriver reply");
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_owned()
    };
    serde_json::from_str(&body).unwrap_or_else(|_| json!({"raw": body, "head": head}))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((len, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(len.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

struct Session {
    port: u16,
    id: String,
    started: Instant,
}

impl Session {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let p = format!("/session/{}{path}", self.id);
        http(
            self.port,
            method,
            &p,
            body.as_ref(),
            Duration::from_secs(30),
        )
    }

    /// Runs `script` in the window and returns its value.
    fn js(&self, script: &str) -> Value {
        let r = self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        );
        r["value"].clone()
    }

    fn find(&self, css: &str) -> String {
        let r = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        r["value"][ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {r}"))
            .to_owned()
    }

    /// Clicks like a user (WebDriver's pointer click) and checks that the
    /// click reached an element matching `css`; if none did (a layout
    /// change between WebDriver's scroll and its click), clicks again.
    ///
    /// The check listens on the document, not on the element found: a
    /// click that lands on a matching element which replaced the one found
    /// (the window re-rendering) did reach its target, and clicking again
    /// would toggle twice (the cause of "timed out waiting for Cleo
    /// muted" on a loaded machine).
    ///
    /// Before clicking, the element is scrolled to the middle of the view
    /// and its box must hold still: WebDriver scrolls and then clicks at
    /// coordinates, and a layout that moves in between sends the click to
    /// a neighbour. CI once saw a click meant for "Test connection" land
    /// on "Undo changes" just above it, which quietly reset the form. A
    /// click that reaches another element is named, and the test stops
    /// there, since that click may have changed what is tested.
    fn click(&self, css: &str) {
        let arm = format!(
            "const css = {}; if (!document.querySelector(css)) return false; window.__clicked = false; window.__strayClick = null; if (window.__clickArm) document.removeEventListener('click', window.__clickArm, true); window.__clickArm = (ev) => {{ if (ev.target instanceof Element && ev.target.closest(css)) window.__clicked = true; else if (ev.target instanceof Element) window.__strayClick = ev.target.outerHTML.slice(0, 200); }}; document.addEventListener('click', window.__clickArm, true); return true;",
            json!(css)
        );
        let centre = format!(
            "const e = document.querySelector({}); if (!e) return null; e.scrollIntoView({{block: 'center', inline: 'center', behavior: 'instant'}}); const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height];",
            json!(css)
        );
        for attempt in 0..4 {
            assert_eq!(self.js(&arm), json!(true), "no element {css}");
            let mut last = Value::Null;
            let t = Instant::now();
            loop {
                let rect = self.js(&centre);
                if rect == last || t.elapsed() > Duration::from_secs(3) {
                    break;
                }
                last = rect;
                std::thread::sleep(Duration::from_millis(100));
            }
            let e = self.find(css);
            let r = self.call("POST", &format!("/element/{e}/click"), Some(json!({})));
            let stale = r["value"]["error"].as_str() == Some("stale element reference");
            assert!(
                r["value"].is_null() || r.get("raw").is_some() || stale,
                "click {css}: {r}"
            );
            // Generous: on a loaded machine the click event can take a
            // while to be dispatched; a second click must never race it.
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(5) {
                if self.js("return window.__clicked === true;") == json!(true) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let stray = self.js("return window.__strayClick;");
            assert!(
                stray.is_null(),
                "the click meant for {css} reached another element: {stray}"
            );
            eprintln!("click on {css} did not arrive (attempt {attempt}); again");
        }
        panic!("clicks on {css} never reached it");
    }

    /// Replaces an input's text. The element is clicked through WebDriver
    /// (a real click), then its value is set and an `input` event fired, as
    /// typing would: WebKitWebDriver's synthesised key presses under Xvfb
    /// (no window manager, so no keyboard focus) drop keys now and then,
    /// which would make the test flaky without testing anything of ours.
    fn type_into(&self, css: &str, text: &str) {
        self.click(css);
        let r = self.js(&format!(
            "const e = document.querySelector({}); e.focus(); e.value = {}; e.dispatchEvent(new Event('input', {{bubbles: true}})); e.dispatchEvent(new Event('change', {{bubbles: true}})); return e.value;",
            json!(css),
            json!(text)
        ));
        assert_eq!(r, json!(text), "typed into {css}");
    }

    fn text(&self, css: &str) -> String {
        self.js(&format!(
            "const e = document.querySelector({}); return e ? e.textContent : null;",
            json!(css)
        ))
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Waits until `script` returns something truthy; returns it. `limit`
    /// is what a quiet machine needs; the wait allows [`SLACK`] times as
    /// much, since a condition met early returns at once anyway.
    fn wait_js(&self, limit: Duration, what: &str, script: &str) -> Value {
        let limit = limit * SLACK;
        let t = Instant::now();
        loop {
            let v = self.js(script);
            let truthy = !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0));
            if truthy {
                return v;
            }
            assert!(
                t.elapsed() < limit,
                "timed out after {limit:?} waiting for {what} (last: {v})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&self, name: &str) {
        // Let the last DOM change paint first.
        std::thread::sleep(Duration::from_millis(1000));
        let r = self.call("GET", "/screenshot", None);
        let b64 = r["value"]
            .as_str()
            .unwrap_or_else(|| panic!("screenshot: {r}"));
        let png = base64_decode(b64);
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = screenshot_dir().join(name);
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
    }

    /// Ends the WebDriver session, which closes the app, and waits until
    /// the app process is gone: it stops its jam first (peers told, advert
    /// withdrawn), which takes a while on a loaded machine, and a launch
    /// meanwhile would meet the old one's port and bus name.
    fn close(self) {
        self.call("DELETE", "", None);
        let t = Instant::now();
        rig::wait_for(
            Duration::from_secs(20) * SLACK,
            "the app process to exit",
            || app_pids().is_empty(),
        );
        eprintln!("app exited {:?} after the session ended", t.elapsed());
    }

    fn code(&self) -> String {
        let v = self.wait_js(
            Duration::from_secs(20),
            "the code",
            "const t = document.getElementById('code').textContent; return /^[A-Z0-9]{4}$/.test(t) ? t : null;",
        );
        v.as_str().unwrap().to_owned()
    }

    fn open_settings(&self) {
        self.click("#tab-settings");
        self.wait_js(
            Duration::from_secs(10),
            "the settings form",
            "return !!document.getElementById('settings-form').dataset.loaded && !document.getElementById('view-settings').hidden;",
        );
    }
}

/// The app's processes that are still running (one UI test runs at a
/// time, so they are this test's). Read from `/proc/<pid>/status`, not from
/// the executable link: while the app exits its main thread is gone first
/// (the process then looks like a zombie, with no executable) but its other
/// threads still hold its sockets, and its single-instance name on D-Bus.
fn app_pids() -> Vec<String> {
    let name = Path::new(APP)
        .file_name()
        .map(|n| n.to_string_lossy().chars().take(15).collect::<String>())
        .unwrap_or_default();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|pid| pid.chars().all(|c| c.is_ascii_digit()))
        .filter(|pid| {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                return false;
            };
            let field = |k: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default()
            };
            let reaped_only = field("State:").starts_with('Z') && field("Threads:") == "1";
            field("Name:") == name && !reaped_only
        })
        .collect()
}

fn base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn the_code_appears_and_a_joiner_shows_up_in_the_peer_list_then_leaves() {
    let _one = lock();
    let rig = Rig::new(true);
    rig.seed_settings(json!({}));
    let app = launch(&rig);
    let code = app.code();
    eprintln!("code {code} shown {:?} after launch", app.started.elapsed());
    // The address to share is this machine's LAN address with the port.
    let url = format!("http://{}:8787", rig.host_ip());
    app.wait_js(
        Duration::from_secs(5),
        "the share URL",
        &format!(
            "return [...document.querySelectorAll('#urls code')].some(c => c.textContent === {});",
            json!(url)
        ),
    );
    assert!(app.text("#qr").is_empty(), "the QR holds an SVG, not text");
    assert_eq!(
        app.js("return !!document.querySelector('#qr svg');"),
        json!(true)
    );
    // The QR code's link opens the browser join page; it can be copied too.
    assert_eq!(app.text("#join-link"), format!("{url}/join/{code}"));
    assert_eq!(
        app.js("return document.getElementById('copy-join-link').disabled;"),
        json!(false)
    );
    assert_eq!(
        app.js("return document.getElementById('code').getAttribute('aria-live');"),
        json!("polite")
    );
    // "Copy code" puts the code on the clipboard and says so.
    app.click("#copy-code");
    let said = app.wait_js(
        Duration::from_secs(5),
        "the copy confirmation",
        "const t = document.getElementById('status').textContent; return t.startsWith('Copied') || t.startsWith('Copying') ? t : null;",
    );
    assert_eq!(said, json!(format!("Copied {code}.")));

    let mut joiner = rig.joiner(&url, &code, "Ada", 6.0);
    app.wait_js(
        Duration::from_secs(30),
        "Ada connected in the peer list",
        "return [...document.querySelectorAll('#peers tbody tr')].some(r => r.cells[0].textContent === 'Ada' && r.cells[2].textContent === 'Connected');",
    );
    // Round trip and route follow from the link's stats (every 2 s).
    let row = app.wait_js(
        Duration::from_secs(10),
        "Ada's round trip and route",
        "const r = [...document.querySelectorAll('#peers tbody tr')].find(r => r.cells[0].textContent === 'Ada'); const c = r ? [...r.cells].slice(0, 5).map(c => c.textContent) : null; return c && c[3] !== '—' && c[4] !== '—' ? c : null;",
    );
    eprintln!("peer row: {row}");
    assert_eq!(
        row[4],
        json!("Direct (LAN)"),
        "route of a LAN joiner: {row}"
    );
    assert!(
        row[3].as_str().unwrap().ends_with("ms"),
        "round trip: {row}"
    );
    assert!(app
        .text("#peer-summary")
        .starts_with("1 of at most 8 connected"));
    app.screenshot("host-screen.png");

    // The joiner leaves after its stay: the row goes.
    let status = joiner.wait().unwrap();
    assert!(status.success(), "joiner exit: {status}");
    app.wait_js(
        Duration::from_secs(40),
        "Ada gone from the peer list",
        "return document.querySelectorAll('#peers tbody tr').length === 0;",
    );

    // A second joiner is kicked with the button: it goes from the list and
    // its connection is closed from our side (the joiner exits 6).
    let mut bob = rig.joiner(&url, &code, "Bob", 60.0);
    app.wait_js(
        Duration::from_secs(30),
        "Bob connected",
        "return [...document.querySelectorAll('#peers tbody tr')].some(r => r.cells[0].textContent === 'Bob' && r.cells[2].textContent === 'Connected');",
    );
    app.click("#peers tbody tr button.kick");
    app.wait_js(
        Duration::from_secs(15),
        "Bob gone after the kick",
        "return document.querySelectorAll('#peers tbody tr').length === 0;",
    );
    let t = Instant::now();
    let st = loop {
        if let Some(st) = bob.try_wait().unwrap() {
            break st;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20) * SLACK,
            "kicked joiner still connected"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        st.code(),
        Some(6),
        "kicked joiner should see the host close"
    );
    app.close();
}

#[test]
fn an_invalid_turn_url_is_refused_and_nothing_is_saved_then_settings_survive_a_restart() {
    let _one = lock();
    let rig = Rig::new(true);
    rig.seed_settings(json!({}));
    let file = rig.app_config().join("settings.json");
    let before = std::fs::read(&file).unwrap();

    let app = launch(&rig);
    app.code();
    app.open_settings();
    // The About line shows the workspace version (the packages' version).
    let about = app.wait_js(
        Duration::from_secs(5),
        "the About line",
        "const t = document.getElementById('about').textContent; return t ? t : null;",
    );
    assert_eq!(
        about,
        json!(concat!("MIDI Jam ", env!("CARGO_PKG_VERSION")))
    );
    app.type_into("#displayName", "Keys in the kitchen");
    app.click("#ice-add");
    app.type_into(
        "#ice-table tbody tr:last-child td:nth-child(1) input",
        "turn:relay.invalid:99999",
    );
    app.type_into(
        "#ice-table tbody tr:last-child td:nth-child(2) input",
        "alice",
    );
    app.type_into(
        "#ice-table tbody tr:last-child td:nth-child(3) input",
        "secret",
    );
    app.click("#save");
    let msg = app.wait_js(
        Duration::from_secs(5),
        "the refusal",
        "const t = document.getElementById('settings-msg').textContent; return t.startsWith('Not saved') ? t : null;",
    );
    eprintln!("refusal: {msg}");
    let row_error = app.text("[data-error-for='iceServers[0].url']");
    assert!(!row_error.is_empty(), "the row itself says what is wrong");
    assert_eq!(
        app.js("return document.querySelector('#ice-table tbody tr input').getAttribute('aria-invalid');"),
        json!("true")
    );
    assert_eq!(std::fs::read(&file).unwrap(), before, "nothing saved");
    app.screenshot("settings-refused.png");

    // Fixed: a TURN server on a real port, and a STUN one; saved.
    app.type_into(
        "#ice-table tbody tr:last-child td:nth-child(1) input",
        "turn:127.0.0.1:3478?transport=udp",
    );
    app.click("#ice-add");
    app.type_into(
        "#ice-table tbody tr:last-child td:nth-child(1) input",
        "stun:127.0.0.1:3479",
    );
    app.type_into("#gatherTimeoutMs", "1500");
    app.click("#save");
    app.wait_js(
        Duration::from_secs(10),
        "saved",
        "return document.getElementById('settings-msg').textContent === 'Settings saved.';",
    );
    app.js("document.getElementById('ice-table').scrollIntoView({block: 'center'}); return true;");
    app.screenshot("settings-pane.png");
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        on_disk["settings"]["displayName"],
        json!("Keys in the kitchen")
    );
    assert_eq!(
        on_disk["settings"]["iceServers"][0]["username"],
        json!("alice")
    );
    assert_eq!(on_disk["settings"]["gatherTimeoutMs"], json!(1500));
    app.close();

    // A new launch shows what was saved.
    let app = launch(&rig);
    app.code();
    app.open_settings();
    let shown = app.js(
        "return [document.getElementById('displayName').value, [...document.querySelectorAll('#ice-table tbody tr td:first-child input')].map(i => i.value), document.getElementById('gatherTimeoutMs').value];",
    );
    assert_eq!(
        shown,
        json!([
            "Keys in the kitchen",
            ["turn:127.0.0.1:3478?transport=udp", "stun:127.0.0.1:3479"],
            "1500"
        ])
    );
    // The host screen's Song panel shows the shared song the first launch
    // saved in the app's session folder, continued by this one.
    assert_eq!(
        app.js("return document.getElementById('song-name').textContent;"),
        json!("jam.mid")
    );
    assert!(rig.app_config().join("session/machine-id").is_file());
    app.close();
}

/// A Standard MIDI File of one note (format 0, 96 ticks a quarter).
const ONE_NOTE_SMF: &[u8] = &[
    b'M', b'T', b'h', b'd', 0, 0, 0, 6, 0, 0, 0, 1, 0, 96, //
    b'M', b'T', b'r', b'k', 0, 0, 0, 12, //
    0x00, 0x90, 60, 100, 0x60, 0x80, 60, 0, 0x00, 0xFF, 0x2F, 0x00,
];

#[test]
fn a_midi_file_picked_in_the_song_panel_is_shared_under_the_same_code() {
    let _one = lock();
    let rig = Rig::new(true);
    rig.seed_settings(json!({}));
    let app = launch(&rig);
    let code = app.code();
    let files = rig.dir.join("picked");
    std::fs::create_dir_all(&files).unwrap();
    let good = files.join("Late night blues é.mid");
    std::fs::write(&good, ONE_NOTE_SMF).unwrap();
    let bad = files.join("notes.mid");
    std::fs::write(&bad, b"not a MIDI file").unwrap();

    // What the system's file picker hands the page, set the WebDriver way
    // (a file input takes the chosen path as its "keys").
    let pick = |path: &std::path::Path| {
        let input = app.find("#song-file");
        let r = app.call(
            "POST",
            &format!("/element/{input}/value"),
            Some(json!({"text": path.display().to_string()})),
        );
        assert!(r["value"].is_null(), "file input: {r}");
    };

    pick(&bad);
    let said = app.wait_js(
        Duration::from_secs(10),
        "the refusal",
        "const t = document.getElementById('song-result').textContent; return t.startsWith('Not opened') ? t : null;",
    );
    eprintln!("a file that is not MIDI: {said}");
    assert!(said.as_str().unwrap().contains("notes.mid"), "{said}");
    assert_eq!(app.text("#song-name"), "jam.mid", "nothing changed");

    pick(&good);
    let shown = app.wait_js(
        Duration::from_secs(20),
        "the picked song shared",
        "const n = document.getElementById('song-name').textContent; return n !== 'jam.mid' && n !== '—' ? n : null;",
    );
    assert_eq!(shown, json!("Late night blues é.mid"));
    assert!(
        app.text("#song-result").contains("same code"),
        "{}",
        app.text("#song-result")
    );
    // The name shows once the restart is done (the command returns then).
    assert_eq!(app.code(), code, "the restarted jam keeps its code");
    app.close();
}

#[test]
fn apply_to_midieditor_writes_its_two_keys_and_keeps_the_others() {
    let _one = lock();
    let rig = Rig::new(true);
    rig.seed_settings(json!({
        "iceServers": [{"url": "turn:10.9.9.9:3478?transport=udp", "username": "u:1", "credential": "p@ss"}]
    }));
    let ini_dir = rig.config_home().join("MidiEditor");
    std::fs::create_dir_all(&ini_dir).unwrap();
    let ini = ini_dir.join("NONE.conf");
    let original =
        std::fs::read_to_string(repo().join("crates/app/tests/data/midieditor-NONE.conf"))
            .expect("sample INI");
    std::fs::write(&ini, &original).unwrap();

    let app = launch(&rig);
    app.code();
    app.open_settings();
    app.click("#apply-midieditor");
    let said = app.wait_js(
        Duration::from_secs(10),
        "the apply result",
        "const t = document.getElementById('apply-result').textContent; return t ? t : null;",
    );
    let said = said.as_str().unwrap();
    assert!(said.starts_with("Written to "), "{said}");
    assert!(
        said.contains(&ini.display().to_string()),
        "names the file: {said}"
    );
    app.close();

    let after = std::fs::read_to_string(&ini).unwrap();
    let url = format!("http://{}:8787", rig.host_ip());
    assert!(
        after.contains(&format!("wan\\rendezvousUrl={url}")),
        "{after}"
    );
    assert!(
        after.contains("turn:u%3A1:p%40ss@10.9.9.9:3478?transport=udp"),
        "{after}"
    );
    // Every line of the original that is not one of our two keys survives.
    for line in original.lines() {
        if line.starts_with("wan\\rendezvousUrl") || line.starts_with("lan\\iceServers") {
            continue;
        }
        assert!(
            after.lines().any(|l| l == line),
            "lost line {line:?}:\n{after}"
        );
    }
    let backups: Vec<_> = std::fs::read_dir(&ini_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("NONE.conf.bak"))
        .collect();
    assert_eq!(backups.len(), 1, "one backup");
    assert_eq!(
        std::fs::read_to_string(backups[0].path()).unwrap(),
        original
    );
}

#[test]
fn a_corrupt_settings_file_is_set_aside_and_a_second_launch_hands_over_to_the_first() {
    let _one = lock();
    let rig = Rig::new(true);
    std::fs::create_dir_all(rig.app_config()).unwrap();
    let file = rig.app_config().join("settings.json");
    std::fs::write(&file, b"{\"settings\": {\"displayName\": \"half a fi").unwrap();

    let app = launch(&rig);
    app.code();
    let warning = app.wait_js(
        Duration::from_secs(10),
        "the corrupt-file warning",
        "const w = document.getElementById('load-warnings'); return w.hidden ? null : w.textContent;",
    );
    eprintln!("warning: {warning}");
    let aside: Vec<_> = std::fs::read_dir(rig.app_config())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
        .collect();
    assert_eq!(aside.len(), 1, "the old file is kept aside");
    assert_eq!(
        std::fs::read(aside[0].path()).unwrap(),
        b"{\"settings\": {\"displayName\": \"half a fi"
    );

    // A second launch (same user, same session bus) hands over and exits;
    // the first is asked to bring its window to the front.
    let t = Instant::now();
    let mut second = Command::new(APP)
        .env("DISPLAY", &rig.display)
        .env("XDG_CONFIG_HOME", rig.config_home())
        .env("XDG_DATA_HOME", rig.dir.join("data"))
        .env("XDG_RUNTIME_DIR", &rig.dir)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
        .env("HOME", &rig.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("second launch");
    let status = loop {
        if let Some(st) = second.try_wait().unwrap() {
            break st;
        }
        if t.elapsed() > Duration::from_secs(20) * SLACK {
            let _ = second.kill();
            let _ = second.wait();
            panic!("the second launch kept running instead of handing over");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "second launch: {status}");
    eprintln!("second launch exited after {:?}", t.elapsed());
    let log = rig.dir.join("data/org.midijam.app/logs/midi-jam.log");
    rig::wait_for(
        Duration::from_secs(10) * SLACK,
        "the first app told of the second launch",
        || {
            std::fs::read_to_string(&log)
                .is_ok_and(|l| l.contains("a second launch asked for the window"))
        },
    );
    // The first still answers.
    let code = app.code();
    assert_eq!(code.len(), 4);
    app.close();
}

#[test]
fn test_connection_gives_a_verdict_in_words_and_reports_each_server() {
    let _one = lock();
    let rig = Rig::new(true);
    rig.seed_settings(json!({}));
    let app = launch(&rig);
    app.open_settings();

    // The bundled rendezvous, reached at the address joiners use: Good.
    app.click("#check-run");
    let verdict = app.wait_js(
        Duration::from_secs(30),
        "the verdict",
        "const v = document.getElementById('check-verdict'); return v.dataset.verdict ? [v.dataset.verdict, v.textContent, v.className] : null;",
    );
    eprintln!("verdict: {verdict}");
    assert_eq!(verdict[0], json!("good"), "{verdict}");
    assert!(
        verdict[1].as_str().unwrap().starts_with("Good"),
        "said in words: {verdict}"
    );
    let stages = app.js(
        "return [...document.querySelectorAll('#check-stages tbody tr')].map(r => r.cells[1].textContent);",
    );
    let stages = stages.as_array().unwrap();
    assert!(stages.len() >= 5, "{stages:?}");
    assert!(stages.iter().all(|s| s == "✔ Passed"), "{stages:?}");
    assert_eq!(
        app.js("return document.getElementById('check-copy').disabled;"),
        json!(false),
        "details can be copied"
    );

    // A STUN server where nothing answers (this namespace's loopback) is
    // named unreachable, and the headline says the jam works but that
    // server failed. The jam's code is unchanged: the test used its own.
    let code = app.code();
    app.click("#ice-add");
    app.type_into(
        "#ice-table tbody tr:last-child td:nth-child(1) input",
        "stun:127.0.0.1:9",
    );
    assert_eq!(
        app.js("return [...document.querySelectorAll('#ice-table tbody tr input')].map(i => i.value).filter(Boolean);"),
        json!(["stun:127.0.0.1:9"]),
        "the form holds the one server typed"
    );
    app.js("document.getElementById('check-verdict').dataset.verdict = ''; return true;");
    app.click("#check-run");
    let verdict = app.wait_js(
        Duration::from_secs(30),
        "the second verdict",
        "const v = document.getElementById('check-verdict'); return v.dataset.verdict ? [v.dataset.verdict, v.textContent, v.className] : null;",
    );
    eprintln!("verdict with a dead STUN server: {verdict}");
    assert!(
        verdict[2].as_str().unwrap().contains("warning"),
        "{verdict}"
    );
    let server = app.js(
        "const r = document.querySelector('#check-servers tbody tr'); return r ? [...r.cells].map(c => c.textContent) : null;",
    );
    eprintln!("server row: {server}");
    assert_eq!(server[1], json!("✖ Failed"), "{server}");
    assert!(
        server[3]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("unreachable")
            || server[3]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("no answer")
            || server[3]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("refused"),
        "{server}"
    );
    app.js("document.getElementById('check').scrollIntoView(); return true;");
    app.screenshot("test-connection.png");
    assert_eq!(app.code(), code, "the jam kept its code");
    app.close();
}

/// `midi-rdv` as built by `cargo test --workspace` (its own tests need it).
fn midi_rdv() -> PathBuf {
    let p = repo().join("target/debug/midi-rdv");
    assert!(
        p.exists(),
        "{} missing: cargo build -p midi-rdv (cargo test --workspace builds it)",
        p.display()
    );
    p
}

#[test]
fn the_join_view_lists_a_lan_jam_joins_it_and_loses_it_when_it_stops() {
    let _one = lock();
    let rig = Rig::new(true);
    rig.seed_settings(json!({"displayName": "Keys"}));
    // "A friend's laptop" hosts an open jam, announced on its veth only.
    let mut host = Command::new("ip")
        .args(["netns", "exec", &rig.ns_b])
        .arg(midi_rdv())
        .args([
            "host",
            "--name",
            "Bea",
            "--port",
            "8787",
            "--advertise-on",
            "vB",
        ])
        .args([
            "--open",
            "--json",
            "--no-mdns",
            "--ice-bind",
            &rig.joiner_ip(),
            "--state-dir",
            &rig.dir.join("bea-state").display().to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start midi-rdv host in namespace B");
    let out = std::io::BufReader::new(host.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in out.lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let app = launch(&rig);
    app.click("#tab-join");
    let t = Instant::now();
    app.wait_js(
        Duration::from_secs(15),
        "Bea's open jam in the list",
        "return [...document.querySelectorAll('#lan-jams tbody tr')].some(r => r.cells[0].textContent === 'Bea' && r.cells[3].textContent === 'Open');",
    );
    eprintln!("listed {:?} after opening the Join view", t.elapsed());

    // A wrong code typed with the address is refused in words.
    app.type_into("#join-address", &format!("{}:8787", rig.joiner_ip()));
    app.type_into("#join-code", "ZZZZ");
    app.click("#join-go");
    let said = app.wait_js(
        Duration::from_secs(15),
        "the wrong-code message",
        "const s = document.getElementById('join-status'); return s.classList.contains('error') ? [document.getElementById('joined').dataset.phase, s.textContent] : null;",
    );
    eprintln!("wrong code: {said}");
    assert_eq!(said[0], json!("failed"), "{said}");
    assert!(
        said[1].as_str().unwrap().to_lowercase().contains("code"),
        "{said}"
    );

    // One click on the open jam joins it.
    app.type_into("#join-code", "");
    app.click("#lan-jams tbody tr button.join");
    let status = app.wait_js(
        Duration::from_secs(20),
        "connected",
        "return document.getElementById('joined').dataset.phase === 'connected' ? document.getElementById('join-status').textContent : null;",
    );
    eprintln!("{status}");
    assert!(
        status.as_str().unwrap().starts_with("Connected to “Bea”"),
        "{status}"
    );
    let people = app.wait_js(
        Duration::from_secs(5),
        "the joined jam's people",
        "const l = [...document.querySelectorAll('#join-peers li')].map(li => li.textContent); return l.includes('Bea (host)') ? l : null;",
    );
    eprintln!("people: {people}");
    // Our host offers live MIDI: the Join view says this computer's ports
    // play there now.
    let midi = app.wait_js(
        Duration::from_secs(10),
        "the live-MIDI line",
        "const t = document.getElementById('join-midi').textContent; return t.includes('your keyboard plays in this jam') ? t : null;",
    );
    eprintln!("{midi}");
    // The host lists us as this app.
    let t = Instant::now();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10) * SLACK)
            .expect("host events");
        if line.contains("peerConnected") && line.contains("Keys") {
            assert!(line.contains("thisApp"), "{line}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10) * SLACK,
            "no peerConnected for Keys"
        );
    }
    app.screenshot("join-view.png");

    // Bea shares another song: her jam restarts under the same code, says
    // so, and this app joins it again by itself.
    {
        use std::io::Write;
        let stdin = host.stdin.as_mut().unwrap();
        writeln!(stdin, "song new").unwrap();
        stdin.flush().unwrap();
    }
    let t = Instant::now();
    let mut dropped = false;
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20) * SLACK)
            .expect("host events");
        // Dropped by the restart first, then in again.
        dropped |= line.contains("peerLeft") && line.contains("Keys");
        if dropped && line.contains("peerConnected") && line.contains("Keys") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20) * SLACK,
            "the app never joined Bea's restarted jam again"
        );
    }
    eprintln!(
        "joined the restarted jam again {:?} after song new",
        t.elapsed()
    );
    let status = app.wait_js(
        Duration::from_secs(20),
        "connected again",
        "return document.getElementById('joined').dataset.phase === 'connected' ? document.getElementById('join-status').textContent : null;",
    );
    assert!(
        status.as_str().unwrap().starts_with("Connected to “Bea”"),
        "{status}"
    );

    app.click("#join-leave");
    app.wait_js(
        Duration::from_secs(10),
        "left",
        "return document.getElementById('joined').dataset.phase === 'left';",
    );
    let t = Instant::now();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10) * SLACK)
            .expect("host events");
        if line.contains("peerLeft") {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(10) * SLACK, "no peerLeft");
    }

    // The host stops (quit on stdin): the jam goes from the list.
    {
        use std::io::Write;
        let mut stdin = host.stdin.take().unwrap();
        let _ = writeln!(stdin, "quit");
    }
    let _ = host.wait();
    app.wait_js(
        Duration::from_secs(10),
        "Bea gone from the list",
        "return ![...document.querySelectorAll('#lan-jams tbody tr')].some(r => r.cells[0].textContent === 'Bea');",
    );
    app.close();
}

#[test]
fn a_peer_playing_lights_up_is_recorded_into_the_song_can_be_muted_and_panic_releases_its_notes() {
    let _one = lock();
    let rig = Rig::new(true);
    rig.seed_settings(json!({}));
    let app = launch(&rig);
    let code = app.code();
    let url = format!("http://{}:8787", rig.host_ip());
    let mut cleo = rig.midi_joiner(&url, &code, "Cleo", 30.0, &[]);
    app.wait_js(
        Duration::from_secs(30),
        "Cleo connected",
        "return [...document.querySelectorAll('#peers tbody tr')].some(r => r.cells[0].textContent === 'Cleo' && r.cells[2].textContent === 'Connected');",
    );
    // Record on, through the Song panel's switch: what Cleo plays is to be
    // written into the shared song's "Live" track.
    assert_eq!(
        app.js("return document.getElementById('song-tracks').textContent.includes('Live');"),
        json!(false),
        "no Live track before recording"
    );
    app.click("#song-record");
    // Cleo holds middle C (note on, never off) on the live-MIDI channel;
    // played again each second until the light shows, since the host only
    // relays once her `midi` channel counts as open.
    let mut keys = cleo.stdin.take().unwrap();
    let t = Instant::now();
    let light = loop {
        use std::io::Write as _;
        let _ = writeln!(keys, "903c64");
        let _ = keys.flush();
        let v = app.js(
            "const r = [...document.querySelectorAll('#peers tbody tr')].find(r => r.cells[0].textContent === 'Cleo'); return r && r.cells[5].textContent.startsWith('●') ? r.cells[5].textContent : null;",
        );
        if !v.is_null() {
            break v;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20) * SLACK,
            "Cleo's MIDI light never came on (see {})",
            rig.dir.display()
        );
        std::thread::sleep(Duration::from_millis(1000));
    };
    eprintln!("light: {light}");
    // Struck again, middle C ends the note it restrikes: a finished note,
    // which Record writes into the song within its 250 ms flush.
    {
        use std::io::Write as _;
        let _ = writeln!(keys, "903c64");
        let _ = keys.flush();
    }
    let tracks = app.wait_js(
        Duration::from_secs(10),
        "the Live track in the Song panel",
        "const t = document.getElementById('song-tracks').textContent; return t.includes('Live') ? t : null;",
    );
    eprintln!("tracks while recording: {tracks}");
    assert_eq!(
        app.js("return document.getElementById('song-record').checked;"),
        json!(true)
    );
    app.click("#peers tbody tr button.mute");
    app.wait_js(
        Duration::from_secs(5),
        "Cleo muted",
        "const b = document.querySelector('#peers tbody tr button.mute'); return b && b.getAttribute('aria-pressed') === 'true' && b.textContent === 'Unmute';",
    );
    app.screenshot("host-screen-midi.png");
    app.click("#panic");
    app.wait_js(
        Duration::from_secs(5),
        "the panic notice",
        "return document.getElementById('status').textContent.startsWith('All notes released');",
    );
    app.wait_js(
        Duration::from_secs(5),
        "Cleo quiet after the panic",
        "const r = [...document.querySelectorAll('#peers tbody tr')].find(r => r.cells[0].textContent === 'Cleo'); return r && r.cells[5].textContent === '○ quiet';",
    );
    drop(keys);
    let _ = cleo.kill();
    let _ = cleo.wait();
    app.close();
}

/// Whether the peer list shows `name` as connected.
fn connected_row(name: &str) -> String {
    format!(
        "return [...document.querySelectorAll('#peers tbody tr')].some(r => r.cells[0].textContent === {} && r.cells[2].textContent === 'Connected');",
        json!(name)
    )
}

#[test]
fn saving_a_new_name_with_a_peer_connected_asks_first_in_the_apps_words() {
    let _one = lock();
    let rig = Rig::new(true);
    rig.seed_settings(json!({}));
    let file = rig.app_config().join("settings.json");
    let app = launch(&rig);
    let code = app.code();
    let url = format!("http://{}:8787", rig.host_ip());
    let mut ada = rig.joiner(&url, &code, "Ada", 120.0);
    app.wait_js(
        Duration::from_secs(30),
        "Ada connected",
        &connected_row("Ada"),
    );
    let before = std::fs::read(&file).unwrap();

    // A new name restarts the host: the window asks, with Rust's words.
    app.open_settings();
    app.type_into("#displayName", "Keys in the kitchen");
    app.click("#save");
    let asked = app.wait_js(
        Duration::from_secs(15),
        "the question before saving",
        "const d = document.getElementById('confirm-save'); return d.open ? document.getElementById('confirm-save-text').textContent : null;",
    );
    eprintln!("asked: {asked}");
    let asked = asked.as_str().unwrap();
    assert!(
        asked.contains("1 peer(s)") && asked.contains("restarts") && asked.contains("join again"),
        "{asked}"
    );
    app.screenshot("settings-confirm-save.png");

    // "Do not save": nothing written, Ada stays.
    app.click("#confirm-save-cancel");
    app.wait_js(
        Duration::from_secs(10),
        "the question closed",
        "return !document.getElementById('confirm-save').open;",
    );
    assert_eq!(std::fs::read(&file).unwrap(), before, "nothing saved");
    assert_eq!(app.js(&connected_row("Ada")), json!(true), "Ada stays");
    assert_eq!(app.code(), code, "same code");

    // "Save anyway": saved, and the jam restarts without Ada.
    app.click("#save");
    app.wait_js(
        Duration::from_secs(15),
        "the question again",
        "return document.getElementById('confirm-save').open;",
    );
    app.click("#confirm-save-go");
    app.wait_js(
        Duration::from_secs(15),
        "saved",
        "return document.getElementById('settings-msg').textContent === 'Settings saved.';",
    );
    let on_disk: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(
        on_disk["settings"]["displayName"],
        json!("Keys in the kitchen")
    );
    app.wait_js(
        Duration::from_secs(30),
        "Ada dropped by the restart",
        "return ![...document.querySelectorAll('#peers tbody tr')].some(r => r.cells[0].textContent === 'Ada' && r.cells[2].textContent === 'Connected');",
    );
    // The restarted jam is back under the code Ada was given.
    assert_eq!(app.code(), code, "the restart keeps the code");
    let _ = ada.kill();
    let _ = ada.wait();
    app.close();
}

#[test]
fn an_emptied_number_field_is_named_beside_it_and_nothing_is_saved() {
    let _one = lock();
    let rig = Rig::new(true);
    rig.seed_settings(json!({}));
    let file = rig.app_config().join("settings.json");
    let before = std::fs::read(&file).unwrap();
    let app = launch(&rig);
    app.code();
    app.open_settings();
    app.type_into("#listenPort", "");
    app.click("#save");
    let said = app.wait_js(
        Duration::from_secs(10),
        "the port's own message",
        "const t = document.querySelector('[data-error-for=\"listenPort\"]').textContent; return t ? t : null;",
    );
    eprintln!("beside the port: {said}");
    let said = said.as_str().unwrap();
    assert!(said.contains("port"), "{said}");
    assert!(
        !said.contains("invalid") && !said.contains("expected"),
        "words, not a deserialiser's: {said}"
    );
    assert_eq!(
        app.js("return document.getElementById('listenPort').getAttribute('aria-invalid');"),
        json!("true")
    );
    assert_eq!(std::fs::read(&file).unwrap(), before, "nothing saved");
    app.close();
}
