//! The browser join page (`/join/<code>`, `rdv::join_page`), end to end, as
//! a phone would use it: the real `midi-rdv host` in namespace A, headless
//! Debian Chromium in namespace B (390x844 touch viewport, no media
//! permission, so it offers `<uuid>.local` candidates like a stock phone
//! browser) driven by `tests/interop/join_page.mjs`, and an independent
//! aiortc peer (`tests/interop/midi_joiner.py`, which speaks the `midi`
//! frames from `docs/midi-frames.md` on its own) in A, on A's veth address.
//!
//! ```text
//!  namespace A: midi-rdv host + aiortc peer     namespace B: Chromium
//!  vA 10.77.0.1/24, route 224.0.0.0/4 dev vA    vB 10.77.0.2/24, default via 10.77.0.1
//! ```
//!
//! Needs root (`ip netns`), node + `tests/interop/node_modules`, and
//! `tests/interop/.venv` (`bash scripts/setup.sh`); FAILS, never skips,
//! without them. The phone screenshot is kept in `target/ui-screenshots/`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "support/cli.rs"]
mod cli;
#[path = "support/page.rs"]
mod page;
use page::{Page, Proc};
use test_support::VethPair;

const BIN: &str = env!("CARGO_BIN_EXE_midi-rdv");
const HOST_IP: &str = "10.77.0.1";
const HOST_START: Duration = Duration::from_secs(15);
/// Browser launch, page load, join (quantised by the host's polls), on a busy
/// 2-core machine.
const JOIN_WITHIN: Duration = Duration::from_secs(40);
/// A note from one peer to the other through the host (generous: busy CI).
const NOTE_WITHIN: Duration = Duration::from_secs(5);

fn interop_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop");
    d.canonicalize().unwrap_or(d)
}

fn repo() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    d.canonicalize().unwrap_or(d)
}

/// Fails (never skips) when the test cannot run here, saying why.
fn preflight() {
    test_support::require_root();
    let pw = interop_dir().join("node_modules/playwright-core");
    assert!(
        pw.exists(),
        "{} is missing: run `bash scripts/setup.sh` once",
        pw.display()
    );
    let py = interop_dir().join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run `bash scripts/setup.sh` once",
        py.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: run `bash scripts/setup.sh` once"
    );
}

/// Namespaces A and B, the host in A, and its code and URL.
struct Jam {
    pair: VethPair,
    host: Proc,
    code: String,
    url: String,
}

fn start_jam(prefix: &str) -> Jam {
    preflight();
    let pair = VethPair::new(prefix);
    pair.a.route_multicast("vA");
    pair.b.ip(&["route", "add", "default", "via", HOST_IP]);
    let args = [
        "host",
        "--bind",
        HOST_IP,
        "--port",
        "0",
        "--ice-bind",
        HOST_IP,
        "--json",
        "--no-advertise",
        "--name",
        "Ada's jam",
    ];
    let mut host = Proc::spawn("host", cli::command(&pair.a, Path::new(BIN), &args));
    let Some(hosting) = host.next(HOST_START, |v| v["event"] == "hosting") else {
        panic!("the host printed no hosting line\n{}", host.diag());
    };
    let code = hosting["code"].as_str().expect("code").to_owned();
    let url = hosting["urls"][0].as_str().expect("url").to_owned();
    Jam {
        pair,
        host,
        code,
        url,
    }
}

/// Note-on keys and note-off keys in a reported `midi` frame's messages.
fn notes(frame: &Value) -> (Vec<u8>, Vec<u8>) {
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for m in frame["messages"].as_array().into_iter().flatten() {
        let b: Vec<u8> = (0..m.as_str().unwrap_or("").len() / 2)
            .filter_map(|i| u8::from_str_radix(&m.as_str().unwrap()[2 * i..2 * i + 2], 16).ok())
            .collect();
        match b.as_slice() {
            [s, k, v] if s & 0xf0 == 0x90 && *v > 0 => on.push(*k),
            [s, k, _] if s & 0xf0 == 0x80 || s & 0xf0 == 0x90 => off.push(*k),
            _ => {}
        }
    }
    (on, off)
}

/// Waits until the aiortc peer has seen Note Ons (or Offs) for all of `keys`.
fn expect_notes(peer: &mut Proc, keys: &[u8], on: bool, within: Duration) -> Vec<Value> {
    let mut missing: BTreeSet<u8> = keys.iter().copied().collect();
    let mut frames = Vec::new();
    let until = Instant::now() + within;
    while !missing.is_empty() {
        let left = until.saturating_duration_since(Instant::now());
        let Some(f) = peer.next(left, |v| v["event"] == "midi") else {
            panic!(
                "the aiortc peer never got note {} for {missing:?}\n{}",
                if on { "on" } else { "off" },
                peer.diag()
            );
        };
        let (ons, offs) = notes(&f);
        for k in if on { ons } else { offs } {
            missing.remove(&k);
        }
        frames.push(f);
    }
    frames
}

fn start_aiortc(jam: &Jam) -> Proc {
    let py = interop_dir().join(".venv/bin/python");
    let script = interop_dir().join("midi_joiner.py");
    let args = [
        script.to_str().expect("utf-8"),
        "--url",
        &jam.url,
        "--code",
        &jam.code,
        "--name",
        "Bea (aiortc)",
        "--midi-stdin",
        "--stay",
        "120",
    ];
    let mut peer = Proc::spawn("aiortc", cli::command(&jam.pair.a, &py, &args));
    if peer.next(JOIN_WITHIN, |v| v["event"] == "open").is_none() {
        panic!("the aiortc peer never opened its channels\n{}", peer.diag());
    }
    peer
}

/// Opens the page at the host's address, checks its weight, and joins.
fn open_and_join(page: &mut Page, jam: &Jam, name: &str) -> u64 {
    let loaded = page.ok(json!({"cmd": "open", "url": format!("{}/join/{}", jam.url, jam.code)}));
    assert_eq!(loaded["status"], 200, "{loaded}");
    let bytes = loaded["bytes"].as_u64().unwrap_or(0);
    assert!(
        bytes > 10_000 && bytes < 200_000,
        "page weight {bytes} bytes: not the page, or over the 200 KB aim"
    );
    page.wait(
        "document.getElementById('status').textContent.includes('Jam found')",
        NOTE_WITHIN,
    );
    assert_eq!(
        page.eval("document.getElementById('jam-name').textContent"),
        "Ada's jam"
    );
    page.ok(json!({"cmd": "fill", "sel": "#name", "text": name}));
    page.ok(json!({"cmd": "tap", "sel": "#join"}));
    page.wait("jamPage.phase() === 'joined'", JOIN_WITHIN);
    bytes
}

#[test]
fn a_phone_joins_from_the_host_address_plays_to_a_peer_hears_it_and_leaves_no_note_on() {
    let mut jam = start_jam("jpg");
    let mut bea = start_aiortc(&jam);
    let mut page = Page::start(&jam.pair.b, &[]);
    let bytes = open_and_join(&mut page, &jam, "Ann");
    println!("join page first load: {bytes} bytes");

    // The host lists the page as a Browser peer with its name.
    let Some(ann) = jam.host.next(JOIN_WITHIN, |v| {
        v["event"] == "peerConnected" && v["peer"]["displayName"] == "Ann"
    }) else {
        panic!("the host never listed Ann\n{}", jam.host.diag());
    };
    assert_eq!(ann["peer"]["client"], "browser", "{ann}");
    let ann_id = ann["peer"]["id"].as_u64().expect("peer id");
    // The page shows the people in the jam (from the roster frames).
    page.wait(
        "jamPage.peers().includes('Bea (aiortc)') && jamPage.peers().includes('Ann')",
        NOTE_WITHIN,
    );
    page.wait(
        "jamPage.state.midi && jamPage.state.midi.readyState === 'open'",
        NOTE_WITHIN,
    );
    assert_eq!(
        page.eval("document.documentElement.scrollWidth <= 390"),
        true,
        "horizontal scroll at 390 px"
    );

    // A three-finger chord on the touch screen arrives at the other peer, from Ann.
    page.ok(json!({"cmd": "touch", "keys": [60, 64, 67]}));
    let frames = expect_notes(&mut bea, &[60, 64, 67], true, NOTE_WITHIN);
    assert!(frames.iter().all(|f| f["origin"] == ann_id), "{frames:?}");
    let shots = repo().join("target/ui-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let shot = shots.join("join-page-phone-390x844.png");
    page.ok(json!({"cmd": "screenshot", "path": shot.to_str().expect("utf-8")}));
    page.ok(json!({"cmd": "theme", "scheme": "dark"}));
    let dark = shots.join("join-page-phone-390x844-dark.png");
    page.ok(json!({"cmd": "screenshot", "path": dark.to_str().expect("utf-8")}));
    page.ok(json!({"cmd": "theme", "scheme": "light"}));
    page.ok(json!({"cmd": "untouch"}));
    expect_notes(&mut bea, &[60, 64, 67], false, NOTE_WITHIN);

    // A mouse click and a computer key play too.
    page.ok(json!({"cmd": "click_key", "key": 62, "hold_ms": 50}));
    expect_notes(&mut bea, &[62], true, NOTE_WITHIN);
    expect_notes(&mut bea, &[62], false, NOTE_WITHIN);
    page.ok(json!({"cmd": "press", "key": "g"}));
    expect_notes(&mut bea, &[67], true, NOTE_WITHIN);
    expect_notes(&mut bea, &[67], false, NOTE_WITHIN);

    // The other peer's notes sound on the page's synth.
    // (The page's own notes sound locally too: let their release end first.)
    page.wait("jamPage.voices() === 0", NOTE_WITHIN);
    bea.send_line("90 45 64 90 48 64");
    page.wait("jamPage.voices() === 2", NOTE_WITHIN);
    page.wait("jamPage.level() > 0.001", NOTE_WITHIN);
    bea.send_line("80 45 40 80 48 40");
    page.wait("jamPage.voices() === 0", NOTE_WITHIN);

    // The page closed mid-chord: every note it held ends at the other peer.
    page.ok(json!({"cmd": "touch", "keys": [65, 69, 72]}));
    expect_notes(&mut bea, &[65, 69, 72], true, NOTE_WITHIN);
    page.ok(json!({"cmd": "close"}));
    expect_notes(&mut bea, &[65, 69, 72], false, NOTE_WITHIN);
    if jam
        .host
        .next(NOTE_WITHIN * 2, |v| {
            v["event"] == "peerLeft" && v["peer"]["id"] == ann_id
        })
        .is_none()
    {
        panic!("the host never saw Ann leave\n{}", jam.host.diag());
    }
}

#[test]
fn the_page_says_in_words_when_the_code_is_unknown_the_host_is_gone_or_unreachable() {
    let mut jam = start_jam("jpw");
    let mut page = Page::start(&jam.pair.b, &[]);

    // An unknown code (well-formed, not open here), then one that is no code.
    let r = page.ok(json!({"cmd": "open", "url": format!("{}/join/ZZZZ", jam.url)}));
    assert_eq!(r["status"], 200, "{r}");
    let text = page.wait("jamPage.problem()", NOTE_WITHIN);
    assert!(
        text.as_str()
            .unwrap_or("")
            .contains("No jam with code ZZZZ"),
        "{text}"
    );
    assert_eq!(page.eval("document.getElementById('code').value"), "ZZZZ");
    page.ok(json!({"cmd": "fill", "sel": "#code", "text": "ab"}));
    page.ok(json!({"cmd": "tap", "sel": "#join"}));
    page.wait("jamPage.problem().includes('not a jam code')", NOTE_WITHIN);
    let text = page.eval("jamPage.problem()");
    assert!(text.as_str().unwrap_or("").contains("\"AB\""), "{text}");

    // The right code typed in joins.
    page.ok(json!({"cmd": "fill", "sel": "#code", "text": jam.code.to_lowercase()}));
    page.ok(json!({"cmd": "tap", "sel": "#join"}));
    page.wait("jamPage.phase() === 'joined'", JOIN_WITHIN);

    let Some(me) = jam.host.next(JOIN_WITHIN, |v| {
        v["event"] == "peerConnected" && v["peer"]["client"] == "browser"
    }) else {
        panic!("the host never listed the page\n{}", jam.host.diag());
    };
    // Kicked like any other peer: the page says the host closed the connection.
    jam.host
        .send_line(&format!("kick {} too loud", me["peer"]["id"]));
    page.wait(
        "jamPage.problem().includes('removed this device')",
        NOTE_WITHIN,
    );
    if jam
        .host
        .next(NOTE_WITHIN, |v| {
            v["event"] == "peerLeft" && v["peer"]["id"] == me["peer"]["id"]
        })
        .is_none()
    {
        panic!(
            "the host never dropped the kicked page\n{}",
            jam.host.diag()
        );
    }
    // Back in with the code still in its field.
    page.ok(json!({"cmd": "tap", "sel": "#join"}));
    page.wait("jamPage.phase() === 'joined'", JOIN_WITHIN);

    // The host goes away: the page says so and offers the code field again.
    jam.host.send_line("quit");
    let text = page.wait("jamPage.problem()", Duration::from_secs(15));
    let text = text.as_str().unwrap_or("").to_owned();
    assert!(text.contains("host"), "{text}");
    assert_eq!(
        page.eval("document.getElementById('join-form').hidden"),
        false
    );
    assert_eq!(page.eval("jamPage.voices()"), 0);

    // Joining again now: the rendezvous (on the host) cannot be reached.
    page.ok(json!({"cmd": "fill", "sel": "#code", "text": jam.code.clone()}));
    page.ok(json!({"cmd": "tap", "sel": "#join"}));
    page.wait(
        "jamPage.problem().includes('Cannot reach')",
        Duration::from_secs(15),
    );
    let text = page.eval("jamPage.problem()");
    assert!(text.as_str().unwrap_or("").contains(HOST_IP), "{text}");
}
