//! The app as a session hub: its hosted jam shares a song that a joiner
//! receives and edits, that survives a restart of the app (continued from
//! the state folder, same machine id) and exports as a valid Standard MIDI
//! File. Real parts: the bundled rendezvous on loopback, a real WebRTC
//! joiner (our own), real files.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use app::settings::Settings;
use app::{App, AppConfig};
use common::{free_port, options, LOOPBACK};
use midi::memory::MemoryMidi;
use serde_json::json;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(dir: &Path, settings: &Settings) -> App {
    let path = dir.join(app::facade::SETTINGS_FILE);
    app::settings::save_file(&path, settings).unwrap();
    let config = AppConfig {
        settings_path: path,
        log_dir: dir.join("logs"),
        options: options(),
        midieditor: None,
        midi: Some(Arc::new(MemoryMidi::new())),
        started: Instant::now(),
        state_dir: Some(dir.join(app::shared_song::STATE_FOLDER)),
    };
    App::start(config, |_| {})
}

/// The first view of `app` for which `ok` holds, within 15 s.
async fn wait(app: &App, what: &str, ok: impl Fn(&app::session::JamView) -> bool) {
    let t = Instant::now();
    loop {
        let v = app.view();
        if ok(&v) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "timed out: {what}: {:?} {:?} {:?}",
            v.phase,
            v.song,
            v.notices
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A WebRTC joiner of `app`'s jam; returns it with the `filetransfer` it
/// received (file name, base64 of the file).
async fn join(app: &App) -> (jam::joiner::Joiner, String, String) {
    wait(app, "a code", |v| v.code.is_some() && !v.urls.is_empty()).await;
    let v = app.view();
    let mut cfg =
        jam::joiner::JoinConfig::new(v.urls[0].parse().expect("url"), v.code.clone(), "Remote");
    cfg.rtc.bind_ips = vec![LOOPBACK];
    let (joiner, mut events) = jam::joiner::Joiner::join(cfg).await.expect("joined");
    let file = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(jam::joiner::JoinEvent::Frame { kind, body, .. }) if kind == "filetransfer" => {
                    return (
                        body["filename"].as_str().unwrap_or("").to_owned(),
                        body["bytesB64"].as_str().unwrap_or("").to_owned(),
                    );
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("joiner events ended: {e}"),
            }
        }
    })
    .await
    .expect("the song arrives as filetransfer");
    (joiner, file.0, file.1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_jam_shares_a_song_that_survives_a_restart_and_exports() {
    let dir = TempDir(std::env::temp_dir().join(format!("app-song-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&dir.0);
    std::fs::create_dir_all(&dir.0).unwrap();
    let settings = Settings {
        listen_port: free_port(),
        advertise: false,
        display_name: "Hub".into(),
        ..Settings::default()
    };

    // A first start shares a new empty song.
    let app = start(&dir.0, &settings);
    let first = app.song().expect("a shared song");
    assert_eq!(first.name, app::shared_song::NEW_SONG_NAME);
    assert_eq!(first.last_editor, None);
    let machine_id =
        std::fs::read_to_string(dir.0.join("session").join("machine-id")).expect("machine id");

    // A joiner receives it as a Standard MIDI File ("MThd" is "TVRoZ" in
    // base64) and edits it: a note inserted as MidiEditor sends it.
    let (joiner, name, b64) = join(&app).await;
    assert_eq!(name, "jam.mid");
    assert!(b64.starts_with("TVRoZ"), "not a MIDI file: {b64:.20}");
    joiner
        .send_frame(json!({
            "type": "hunks", "author": "Remote", "machineId": "remote-1", "frameId": 0,
            "fileMaxTick": 768,
            "hunks": [{"added": [{"type": "note", "track": 1, "channel": 0, "tick": 48,
                                  "note": 60, "velocity": 90, "duration": 24}],
                       "removed": [], "modified": []}],
        }))
        .await
        .expect("hunks sent");
    wait(&app, "the edit in the host's song", |v| {
        v.song.as_ref().is_some_and(|s| {
            s.events == first.events + 1 && s.last_editor.as_deref() == Some("Remote")
        })
    })
    .await;
    let edited = app.song().unwrap();
    assert_eq!(
        app.view().song.as_ref(),
        Some(&edited),
        "the view shows the song"
    );

    // Export: a valid SMF holding the same events.
    let out = dir.0.join("out.mid");
    let said = app
        .export_song(out.display().to_string())
        .await
        .expect("exported");
    assert!(said.contains("out.mid"), "{said}");
    let exported = song::smf::load(&std::fs::read(&out).unwrap()).expect("a valid SMF");
    assert_eq!(exported.len(), edited.events);
    assert!(app.export_song(String::new()).await.is_err());
    assert!(app
        .export_song(dir.0.join("no/such/dir/x.mid").display().to_string())
        .await
        .is_err());
    joiner.leave().await;
    app.shutdown().await;

    // A restart continues it: same song, same editor, same machine id; a
    // new joiner gets the edit.
    let app = start(&dir.0, &settings);
    let again = app.song().expect("continued");
    assert_eq!(
        (
            again.name.as_str(),
            again.events,
            again.last_editor.as_deref()
        ),
        ("jam.mid", edited.events, Some("Remote"))
    );
    assert_eq!(
        std::fs::read_to_string(dir.0.join("session").join("machine-id")).unwrap(),
        machine_id
    );
    let (joiner, _, b64_again) = join(&app).await;
    assert!(
        b64_again.len() > b64.len(),
        "the continued song holds the edit"
    );
    joiner.leave().await;

    // A file that is not MIDI changes nothing; a MIDI file becomes the
    // song (the jam restarts under the same code); "New song" empties it.
    let bad = dir.0.join("bad.mid");
    std::fs::write(&bad, b"not midi").unwrap();
    assert!(app.open_song(bad.display().to_string()).await.is_err());
    assert_eq!(app.song().unwrap(), again);
    // The same through the window's file picker (name and base64 bytes):
    // not base64, empty, not MIDI, over the size cap: each refused in
    // words, the song unchanged.
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let huge = "A".repeat(jam::hub::MAX_SONG_FILE / 3 * 4 + 8);
    for (name, data, says) in [
        ("x.mid", "%%%".to_owned(), "did not arrive whole"),
        ("x.mid", String::new(), "empty"),
        (
            "/tmp/../x.mid",
            b64(b"not midi"),
            "x.mid: not a Standard MIDI File",
        ),
        ("x.mid", huge, "larger than a shared song can be"),
    ] {
        let err = app
            .open_song_data(name.to_owned(), data)
            .await
            .expect_err("refused");
        assert!(err.contains(says), "{name}: {err}");
    }
    assert_eq!(app.song().unwrap(), again);
    let code = app.view().code;
    let opened = app
        .open_song(out.display().to_string())
        .await
        .expect("opened");
    assert_eq!(
        (opened.name.as_str(), opened.events),
        ("out.mid", edited.events)
    );
    wait(&app, "the jam shares the opened file", |v| {
        v.song.as_ref().is_some_and(|s| s.name == "out.mid") && v.code.is_some()
    })
    .await;
    assert_eq!(app.view().code, code, "the restarted jam keeps its code");
    let (joiner, name, _) = join(&app).await;
    assert_eq!(name, "out.mid");
    joiner.leave().await;
    let fresh = app.new_song().await.expect("new song");
    assert_eq!(
        (fresh.name.as_str(), fresh.events),
        ("jam.mid", first.events)
    );
    app.shutdown().await;
}
