//! The app facade as the window drives it: real jams on loopback, real
//! joiners, the settings file in a folder of the test's own.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::settings::Settings;
use app::{App, AppConfig, CloseAnswer, Event};
use common::{free_port, options, until, LOOPBACK};
use midi::memory::MemoryMidi;
use serde_json::{json, Value};

/// A folder of this test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "app-facade-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An app with its settings file seeded with `settings` (advert off: never
/// a real interface from a test), in-memory MIDI with a keyboard "Keys",
/// and every event collected.
struct Running {
    app: App,
    events: Arc<Mutex<Vec<Event>>>,
    dir: TempDir,
}

impl Running {
    fn settings_path(&self) -> PathBuf {
        self.dir.0.join(app::facade::SETTINGS_FILE)
    }
}

fn start(name: &str, settings: Settings) -> Running {
    let dir = TempDir::new(name);
    let path = dir.0.join(app::facade::SETTINGS_FILE);
    app::settings::save_file(&path, &settings).unwrap();
    let midi = MemoryMidi::new();
    let _keys = midi.add_input("Keys");
    let config = AppConfig {
        settings_path: path,
        log_dir: dir.0.join("logs"),
        options: options(),
        midieditor: None,
        midi: Some(Arc::new(midi)),
        started: Instant::now(),
        state_dir: Some(dir.0.join("session")),
    };
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let app = App::start(config, move |e| seen.lock().unwrap().push(e));
    Running { app, events, dir }
}

fn local() -> Settings {
    Settings {
        listen_port: free_port(),
        advertise: false,
        ..Settings::default()
    }
}

/// The pane's values for `s`, as the window sends them: numbers as typed.
fn form(s: &Settings) -> Value {
    let mut v = serde_json::to_value(s).unwrap();
    for k in ["listenPort", "maxPeers", "gatherTimeoutMs"] {
        let typed = v[k].to_string();
        v[k] = json!(typed);
    }
    v
}

async fn hosting(app: &App) -> app::session::JamView {
    let mut rx = app.subscribe();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            {
                let v = rx.borrow_and_update();
                if v.code.is_some() {
                    return v.clone();
                }
            }
            rx.changed().await.expect("jam view");
        }
    })
    .await
    .expect("a code within 10 s")
}

/// A joiner on loopback, welcomed by `app`'s jam.
async fn joiner(app: &App, name: &str) -> jam::joiner::Joiner {
    let v = hosting(app).await;
    let mut cfg =
        jam::joiner::JoinConfig::new(v.urls[0].parse().expect("url"), v.code.clone(), name);
    cfg.rtc.bind_ips = vec![LOOPBACK];
    let (joiner, _events) = jam::joiner::Joiner::join(cfg).await.expect("joined");
    until(
        "the peer counted as connected",
        Duration::from_secs(10),
        || app.view().connected() == 1,
        || format!("{:?}", app.view().peers),
    )
    .await;
    joiner
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_while_a_save_applies_still_asks_about_the_connected_peer() {
    let r = start("close-save", local());
    let _ada = joiner(&r.app, "Ada").await;
    // Saves that touch no peer (the MIDI input, back and forth) while the
    // window is closed again and again: every time it must ask, never
    // quit as if nobody were there.
    let mut s = r.app.settings();
    for round in 0..20 {
        s.midi_input = if round % 2 == 0 { "Keys" } else { "" }.to_owned();
        let saving = {
            let app = r.app.clone();
            let f = serde_json::to_value(&s).unwrap();
            tokio::spawn(async move { app.save_settings(f).await })
        };
        while !saving.is_finished() {
            let answer = r.app.close_requested();
            assert_eq!(
                answer,
                CloseAnswer::Ask { peers: 1 },
                "round {round}: closing during a save"
            );
            tokio::task::yield_now().await;
        }
        saving.await.unwrap().expect("saved");
    }
    assert_eq!(r.app.view().connected(), 1, "nobody was dropped");
    let asked = r
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::ConfirmClose(1)))
        .count();
    assert!(asked >= 20, "the window was asked each time ({asked})");

    // A new name restarts the host: the window must ask first, in words.
    let mut renamed = r.app.settings();
    renamed.display_name = "Keys in the kitchen".to_owned();
    let impact = r.app.save_impact(form(&renamed)).unwrap();
    assert!(impact.host && !impact.rendezvous, "{impact:?}");
    assert_eq!(impact.dropped_peers, 1);
    let q = impact.question.expect("a question");
    assert!(
        q.contains("1 peer(s)") && q.contains("restarts") && q.contains("join again"),
        "{q}"
    );
    // A MIDI port change drops nobody: no question.
    let impact = r.app.save_impact(form(&r.app.settings())).unwrap();
    assert_eq!(impact.question, None);
    r.app.shutdown().await;
}

#[tokio::test]
async fn an_emptied_or_non_numeric_number_field_is_an_error_beside_that_field() {
    let r = start("numbers", local());
    hosting(&r.app).await;
    let before = std::fs::read(r.settings_path()).unwrap();
    let mut f = form(&r.app.settings());
    f["listenPort"] = json!("");
    f["maxPeers"] = json!("eight");
    f["gatherTimeoutMs"] = json!(" 1500 ");
    f["displayName"] = json!("");
    let errors = r.app.save_settings(f.clone()).await.unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["displayName", "listenPort", "maxPeers"],
        "{errors:?}"
    );
    for e in &errors {
        assert!(
            !e.message.contains("invalid") && !e.message.contains("expected"),
            "words for a musician, not serde's: {e:?}"
        );
    }
    assert!(errors[1].message.contains("port"), "{errors:?}");
    assert_eq!(r.app.validate_settings(f).unwrap_err(), errors);
    assert_eq!(
        std::fs::read(r.settings_path()).unwrap(),
        before,
        "nothing written"
    );

    // A number as JSON (an older window) and as text both save.
    let mut f = form(&r.app.settings());
    f["listenPort"] = json!(r.app.settings().listen_port);
    f["gatherTimeoutMs"] = json!(" 1500 ");
    let saved = r.app.save_settings(f).await.expect("saved");
    assert_eq!(saved.settings.gather_timeout_ms, 1500);
    let on_disk = app::settings::load_file(&r.settings_path());
    assert_eq!(on_disk.settings.gather_timeout_ms, 1500);
    r.app.shutdown().await;
}

#[test]
fn a_save_that_drops_peers_asks_and_a_live_change_does_not() {
    use app::facade::save_impact;
    let old = Settings::default();
    let change = |f: fn(&mut Settings)| {
        let mut s = old.clone();
        f(&mut s);
        s
    };
    let restarting = [
        ("name", change(|s| s.display_name = "Other".into())),
        ("port", change(|s| s.listen_port = 9000)),
        (
            "rendezvous URL",
            change(|s| s.rendezvous_url = "http://127.0.0.1:9".into()),
        ),
    ];
    for (what, new) in &restarting {
        let i = save_impact(&old, new, 2);
        assert!(i.host, "{what}: {i:?}");
        assert_eq!(i.dropped_peers, 2, "{what}");
        assert!(
            i.question
                .as_deref()
                .is_some_and(|q| q.contains("2 peer(s)")),
            "{what}: {i:?}"
        );
        assert_eq!(
            save_impact(&old, new, 0).question,
            None,
            "{what}: nobody to drop"
        );
    }
    // Applied while the jam runs (hosted::Impact): same code, nobody dropped,
    // so nothing to ask; the summary says the jam goes on.
    let live = [
        (
            "STUN/TURN list",
            change(|s| {
                s.ice_servers = vec![app::settings::IceRow {
                    url: "stun:127.0.0.1:3478".into(),
                    ..Default::default()
                }]
            }),
        ),
        ("gathering cap", change(|s| s.gather_timeout_ms = 1500)),
        ("peer limit", change(|s| s.max_peers = 12)),
    ];
    for (what, new) in &live {
        let i = save_impact(&old, new, 2);
        assert!(i.live && !i.host, "{what}: {i:?}");
        assert_eq!(
            (i.dropped_peers, i.question.as_deref()),
            (0, None),
            "{what}"
        );
        assert!(
            i.summary
                .as_deref()
                .is_some_and(|s| s.contains("nobody is dropped")),
            "{what}: {i:?}"
        );
    }
    let quiet = [
        ("LAN advert", change(|s| s.open_jam = true)),
        ("MIDI input", change(|s| s.midi_input = "Keys".into())),
        ("nothing", old.clone()),
    ];
    for (what, new) in &quiet {
        let i = save_impact(&old, new, 2);
        assert!(!i.host && i.question.is_none(), "{what}: {i:?}");
    }
}
