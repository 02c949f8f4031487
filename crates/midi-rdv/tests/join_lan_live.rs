//! Our joiner joins a **real MidiEditor LAN Live host** (issue 13, item 4):
//! `midi-rdv join --lan-code CODE --browse-on vB` hears MidiEditor's
//! `MIDIEDIT-PR-LAN` datagram, connects over plain TCP, says `hello`, gets
//! `sessionWelcome`, appears in MidiEditor's session (its log), and records
//! the song MidiEditor ships (`filetransfer`) when it ships one; then the
//! app's way: `app::discover::Discovery` lists the host (kind "MidiEditor
//! LAN Live", its code) and `Joiner::join_lan` joins it, song in the view.
//!
//! Two namespaces joined by a veth pair (MidiEditor hosts in A, we join from
//! B), so the multicast never leaves the test's namespaces. Needs root and
//! iproute2. Skipped, with the reason printed, when the tool is absent.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use app::discover::{Discovery, JamKind};
use jam::joiner::{JoinPhase, Joiner};
use serde_json::Value;
use test_support::netns::IF_B;
use test_support::{wait_until, VethPair};

#[path = "support/cli.rs"]
mod cli;

const BIN: &str = env!("CARGO_BIN_EXE_midi-rdv");

struct Me {
    script: PathBuf,
    ns: String,
    dir: PathBuf,
}

impl Me {
    fn run(&self, args: &[&str]) -> (bool, String) {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns])
            .arg(&self.script)
            .args(&args[..1])
            .arg("--dir")
            .arg(&self.dir)
            .args(&args[1..]);
        cli::plain(&mut cmd);
        let out = cmd.output().expect("midieditor");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("midieditor.log")).unwrap_or_default()
    }
}

impl Drop for Me {
    fn drop(&mut self) {
        let _ = self.run(&["stop"]);
    }
}

#[test]
fn our_joiner_finds_a_midieditor_lan_host_by_its_datagram_and_joins_over_tcp() {
    let script = test_support::tools::midieditor_tool().join("midieditor");
    if !script.is_file() {
        println!(
            "SKIPPED our_joiner_finds_a_midieditor_lan_host_by_its_datagram_and_joins_over_tcp: \
             the real MidiEditor is not at {} (set {})",
            script.display(),
            test_support::tools::MIDIEDITOR_TOOL_ENV
        );
        return;
    }
    let pair = VethPair::new("joinlv");
    let tmp = std::env::temp_dir().join(format!("joinlv-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    // The script resolves --dir with `readlink -f`: the dir must exist.
    let dir = tmp.join("host");
    std::fs::create_dir_all(&dir).expect("instance dir");
    let me = Me {
        script,
        ns: pair.a.name().to_owned(),
        dir: dir.canonicalize().expect("instance dir"),
    };
    let (ok, out) = me.run(&["start", "--name", "MeHost", "--mcp-port", "9481"]);
    assert!(ok, "midieditor start: {out}");
    let t = Instant::now();
    let (ok, out) = me.run(&["host", "lan", "--timeout", "30"]);
    assert!(ok, "midieditor host lan: {out}\n{}", me.log());
    // stdout (the code alone) comes before the script's stderr notes.
    let code = out
        .lines()
        .map(str::trim)
        .find(|l| l.len() == 4 && l.bytes().all(|b| b.is_ascii_alphanumeric()))
        .unwrap_or("")
        .to_owned();
    assert_eq!(code.len(), 4, "no code from `host lan`: {out}");
    println!(
        "MidiEditor LAN host up with code {code} in {:?}",
        t.elapsed()
    );

    let t = Instant::now();
    let out = cli::command(
        &pair.b,
        Path::new(BIN),
        &[
            "join",
            "--json",
            "--lan-code",
            &code,
            "--browse-on",
            IF_B,
            "--browse-timeout",
            "15",
            "--name",
            "RustJoe",
            "--stay",
            "6",
        ],
    )
    .output()
    .expect("midi-rdv join");
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let dump = || {
        format!(
            "lines: {lines:#?}\nstderr: {}\nMidiEditor log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            me.log()
        )
    };
    assert!(out.status.success(), "join failed: {}", dump());
    println!(
        "midi-rdv join --lan-code, run to the end: {:?}",
        t.elapsed()
    );

    let found = lines
        .iter()
        .find(|v| v["event"] == "found")
        .unwrap_or_else(|| panic!("no found line: {}", dump()));
    assert_eq!(found["kind"], "midiEditorLan");
    assert_eq!(found["code"], code.as_str());
    assert_eq!(found["name"], "MeHost", "{}", dump());
    assert!(
        found["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with(&pair.ip_a.to_string())),
        "{}",
        dump()
    );
    let joined = lines
        .iter()
        .find(|v| v["event"] == "joined")
        .unwrap_or_else(|| panic!("never welcomed: {}", dump()));
    println!(
        "datagram matched → sessionWelcome: {} ms after start",
        joined["ms"]
    );
    // MidiEditor's host saw our hello and lists us.
    let log = me.log();
    assert!(
        log.contains("RustJoe"),
        "MidiEditor never named us: {}",
        dump()
    );
    // The song, if MidiEditor shipped one.
    if let Some(f) = lines
        .iter()
        .find(|v| v["event"] == "frame" && v["kind"] == "filetransfer")
    {
        println!(
            "MidiEditor shipped {} ({} bytes framed)",
            f["body"]["filename"], f["len"]
        );
        assert!(f["body"]["filename"]
            .as_str()
            .is_some_and(|n| !n.is_empty()));
    } else {
        println!("MidiEditor sent no filetransfer frame to our joiner");
    }
    let done = lines.last().expect("a done line");
    assert_eq!(done["event"], "done", "{}", dump());
    assert_eq!(done["ok"], true, "{}", dump());

    // The app's way: its Join view's discovery lists the MidiEditor host
    // (kind, label, code from the datagram) and a click joins it over TCP.
    let want = code.clone();
    let (jam, view) = pair
        .b
        .spawn(move || {
            let d = Discovery::start(lan::InterfaceChoice::Named(vec![IF_B.into()]))
                .expect("discovery in B");
            let t = Instant::now();
            let mut jam = None;
            while jam.is_none() && t.elapsed() < Duration::from_secs(15) {
                jam = d.jams().into_iter().find(|j| {
                    j.kind == JamKind::MidiEditorLan && j.code.as_deref() == Some(want.as_str())
                });
                std::thread::sleep(Duration::from_millis(50));
            }
            d.stop();
            let jam = jam.expect("the MidiEditor host in the Join view's list");
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let view = rt.block_on(async {
                let target = jam.lan.clone().expect("a LAN target");
                let (j, _) = Joiner::join_lan(jam.join_config(None, "AppJoe"), target)
                    .await
                    .expect("the app joins the MidiEditor host");
                let mut w = j.watch();
                let _ =
                    tokio::time::timeout(Duration::from_secs(5), w.wait_for(|v| v.song.is_some()))
                        .await;
                let v = j.view();
                j.leave().await;
                v
            });
            (jam, view)
        })
        .join()
        .expect("the app's side");
    assert_eq!(jam.kind_label, "MidiEditor LAN Live");
    assert_eq!(jam.name, "MeHost");
    assert!(jam.open);
    // The view as it was just before leaving.
    assert_eq!(view.phase, JoinPhase::Connected, "{view:?}");
    assert!(
        view.rendezvous_url
            .starts_with(&format!("tcp://{}:", pair.ip_a)),
        "{view:?}"
    );
    let song = view
        .song
        .as_ref()
        .expect("MidiEditor shares its file on join");
    assert_eq!(song.filename, "host-default.mid");
    assert!(song.bytes > 0);
    assert!(view.join_ms.is_some(), "{view:?}");
    assert_eq!(view.host_name.as_deref(), Some("MeHost"));
    println!(
        "app discovery + TCP join: welcomed in {:?} ms, song {:?}",
        view.join_ms, view.song
    );
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(100), || me
            .log()
            .contains("AppJoe")),
        "MidiEditor never named the app's joiner: {}",
        me.log()
    );
    // Stop MidiEditor (it needs its dir) before the dir goes.
    drop(me);
    let _ = std::fs::remove_dir_all(&tmp);
}
