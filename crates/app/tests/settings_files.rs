//! The settings file (lenient load, corrupt file set aside, strict atomic
//! save) and "Apply to MidiEditor" on a real INI file, through the public
//! API only. Everything happens in a fresh temporary folder; nothing is sent
//! anywhere.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use app::midieditor::{
    self, apply, apply_to_ini, parse_qt_ini, ApplyReport, Location, QtValue, EMPTY_ICE_LIST,
    KEY_ICE_SERVERS, KEY_RENDEZVOUS_URL,
};
use app::settings::{
    export_midieditor_ice, import_midieditor_ice, load_file, save_file, IceRow, InvalidSettings,
    Settings, STORE_KEY,
};
use serde_json::{json, Value};

const SAMPLE: &[u8] = include_bytes!("data/midieditor-NONE.conf");

/// A temporary folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "app-settings-files-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// File names in the folder, sorted.
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn row(url: &str, username: &str, credential: &str) -> IceRow {
    IceRow {
        url: url.to_owned(),
        username: username.to_owned(),
        credential: credential.to_owned(),
    }
}

fn write_json(path: &Path, v: &Value) {
    fs::write(path, serde_json::to_vec(v).unwrap()).unwrap();
}

// ------------------------------------------------------- settings file ----

#[test]
fn missing_file_gives_defaults_without_warning() {
    let dir = TempDir::new("missing");
    let out = load_file(&dir.path("settings.json"));
    assert_eq!(out.settings, Settings::default());
    assert!(out.warnings.is_empty());
    assert_eq!(out.set_aside, None);
    assert!(dir.names().is_empty());
}

#[test]
fn old_file_with_only_display_name_loads() {
    let dir = TempDir::new("old");
    let path = dir.path("settings.json");
    write_json(&path, &json!({ "settings": { "displayName": "Ana" } }));
    let out = load_file(&path);
    assert_eq!(
        out.settings,
        Settings {
            display_name: "Ana".into(),
            ..Settings::default()
        }
    );
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert_eq!(out.set_aside, None);
}

#[test]
fn unknown_keys_are_ignored() {
    let dir = TempDir::new("unknown");
    let path = dir.path("settings.json");
    write_json(
        &path,
        &json!({
            "windowState": { "x": 1 },
            "settings": { "maxPeers": 3, "addedInVersion9": { "deep": [1, 2] } },
        }),
    );
    let out = load_file(&path);
    assert_eq!(out.settings.max_peers, 3);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}

#[test]
fn wrong_typed_field_gets_its_default_and_a_warning() {
    let dir = TempDir::new("wrongtype");
    let path = dir.path("settings.json");
    write_json(
        &path,
        &json!({ "settings": { "displayName": "Ana", "listenPort": "eighty", "openJam": true } }),
    );
    let out = load_file(&path);
    assert_eq!(out.settings.display_name, "Ana");
    assert!(out.settings.open_jam);
    assert_eq!(out.settings.listen_port, Settings::default().listen_port);
    assert_eq!(out.warnings.len(), 1);
    assert!(
        out.warnings[0].contains("listenPort"),
        "{}",
        out.warnings[0]
    );
    assert_eq!(out.set_aside, None);
    // The file itself is left alone: the user may want to fix it by hand.
    assert_eq!(dir.names(), ["settings.json"]);
}

#[test]
fn settings_key_of_the_wrong_kind_gives_defaults_and_a_warning() {
    let dir = TempDir::new("wrongkind");
    let path = dir.path("settings.json");
    write_json(&path, &json!({ "settings": [1, 2, 3] }));
    let out = load_file(&path);
    assert_eq!(out.settings, Settings::default());
    assert_eq!(out.warnings.len(), 1);
    assert_eq!(out.set_aside, None);
}

fn assert_set_aside(bytes: &[u8], name: &str) {
    let dir = TempDir::new(name);
    let path = dir.path("settings.json");
    fs::write(&path, bytes).unwrap();
    let out = load_file(&path);
    assert_eq!(out.settings, Settings::default());
    let aside = out.set_aside.clone().expect("set aside");
    assert_eq!(fs::read(&aside).unwrap(), bytes, "original bytes kept");
    assert!(!path.exists(), "moved out of the way");
    let aside_name = aside.file_name().unwrap().to_string_lossy().into_owned();
    let secs = aside_name
        .strip_prefix("settings.json.corrupt-")
        .expect("named <name>.corrupt-<unix-seconds>");
    assert!(
        secs.parse::<u64>().is_ok_and(|s| s > 1_600_000_000),
        "{aside_name}"
    );
    assert_eq!(aside.parent(), path.parent());
    assert_eq!(out.warnings.len(), 1);
    assert!(
        out.warnings[0].contains(&aside.display().to_string()),
        "{}",
        out.warnings[0]
    );
    // A second corrupt file the same second gets its own name.
    fs::write(&path, bytes).unwrap();
    let again = load_file(&path).set_aside.unwrap();
    assert_ne!(again, aside);
    assert!(aside.exists() && again.exists());
}

#[test]
fn corrupt_file_is_set_aside() {
    assert_set_aside(b"{\"settings\": {\"displayName\": \"An", "truncated");
    assert_set_aside(b"\x00\xff not json", "binary");
    assert_set_aside(b"", "empty");
}

#[test]
fn json_that_is_not_an_object_is_set_aside() {
    assert_set_aside(b"[1, 2, 3]", "array");
    assert_set_aside(b"\"settings\"", "string");
}

#[test]
fn save_then_load_round_trips_in_the_store_layout() {
    let dir = TempDir::new("roundtrip");
    let path = dir.path("settings.json");
    let s = Settings {
        display_name: "  Ana  ".into(),
        rendezvous_url: "https://rdv.example.org".into(),
        ice_servers: vec![row("turn:relay.example.org", "us:er", "p@ss w%rd")],
        max_peers: 12,
        ..Settings::default()
    };
    save_file(&path, &s).unwrap();
    let on_disk: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let obj = on_disk.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), [STORE_KEY]);
    assert_eq!(on_disk[STORE_KEY]["displayName"], "Ana", "saved normalized");
    assert_eq!(
        on_disk[STORE_KEY]["iceServers"][0]["credential"],
        "p@ss w%rd"
    );
    let out = load_file(&path);
    assert_eq!(out.settings, s.normalized());
    assert!(out.warnings.is_empty());
    assert_eq!(dir.names(), ["settings.json"], "no temporary file left");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "TURN passwords: owner only");
    }
}

#[test]
fn save_keeps_other_store_keys_and_creates_folders() {
    let dir = TempDir::new("otherkeys");
    let path = dir.path("settings.json");
    write_json(
        &path,
        &json!({ "windowState": { "w": 800 }, "settings": { "displayName": "Old" } }),
    );
    save_file(&path, &Settings::default()).unwrap();
    let on_disk: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    assert_eq!(on_disk["windowState"]["w"], 800);
    assert_eq!(on_disk["settings"]["displayName"], "Jam host");

    let nested = dir.path("a/b/settings.json");
    save_file(&nested, &Settings::default()).unwrap();
    assert_eq!(load_file(&nested).settings, Settings::default());
}

#[test]
fn save_refuses_invalid_settings_and_leaves_the_old_file_byte_identical() {
    let dir = TempDir::new("refuse");
    let path = dir.path("settings.json");
    let original = b"{ \"settings\": { \"displayName\": \"Ana\" },\n  \"x\": 1 }\n";
    fs::write(&path, original).unwrap();
    let bad = Settings {
        display_name: String::new(),
        ice_servers: vec![row("turn:host:99999", "", "")],
        listen_port: 0,
        ..Settings::default()
    };
    let err = save_file(&path, &bad).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    let fields: Vec<String> = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<InvalidSettings>())
        .expect("carries the field errors")
        .0
        .iter()
        .map(|e| e.field.clone())
        .collect();
    assert_eq!(fields, ["displayName", "iceServers[0].url", "listenPort"]);
    assert_eq!(fs::read(&path).unwrap(), original);
    assert_eq!(dir.names(), ["settings.json"]);
    // Nothing created where there was no file either.
    let none = dir.path("new.json");
    assert!(save_file(&none, &bad).is_err());
    assert!(!none.exists());
}

#[test]
fn save_over_a_corrupt_file_sets_it_aside_first() {
    let dir = TempDir::new("saveovercorrupt");
    let path = dir.path("settings.json");
    fs::write(&path, b"not json").unwrap();
    save_file(&path, &Settings::default()).unwrap();
    let names = dir.names();
    assert_eq!(names.len(), 2, "{names:?}");
    let aside = names
        .iter()
        .find(|n| n.starts_with("settings.json.corrupt-"))
        .unwrap();
    assert_eq!(fs::read(dir.path(aside)).unwrap(), b"not json");
}

// ------------------------------------------------- Apply to MidiEditor ----

/// Rows with every awkward character a TURN credential can have.
fn awkward_rows() -> Vec<IceRow> {
    vec![
        row("stun:stun.example.org:3478", "", ""),
        row(
            "turn:relay.example.org:3478?transport=udp",
            "ana:keys@band",
            "p@ss w%rd;,=\"\\ é🎹",
        ),
        row("turns:[2001:db8::1]:5349", "only-user", "x"),
    ]
}

const URL: &str = "http://192.168.1.20:8787";

fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split(|&b| b == b'\n').collect()
}

fn is_our_key_line(line: &[u8]) -> bool {
    line.starts_with(b"wan\\rendezvousUrl=") || line.starts_with(b"lan\\iceServers=")
}

fn sample_in(dir: &TempDir) -> PathBuf {
    let path = dir.path("MidiEditor/NONE.conf");
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, SAMPLE).unwrap();
    path
}

#[test]
fn the_sample_reads_as_qsettings_would() {
    let map = parse_qt_ini(SAMPLE);
    let text = |k: &str| map.get(k).and_then(QtValue::to_text);
    assert_eq!(
        text("Collab/identity/displayName").as_deref(),
        Some("Ana \"Keys\" Müller")
    );
    assert_eq!(
        text(KEY_ICE_SERVERS).as_deref(),
        Some("stun:stun.l.google.com:19302\nstun:stun1.l.google.com:3478")
    );
    assert_eq!(
        text(KEY_RENDEZVOUS_URL).as_deref(),
        Some("https://midi-rdv.happytunesai.workers.dev")
    );
    assert_eq!(
        text("language").as_deref(),
        Some("en"),
        "[General] is the root"
    );
    assert_eq!(
        text("AI/api_base_url").as_deref(),
        Some("https://api.example.com/v1?x=1")
    );
    assert_eq!(
        map.get("recentFiles"),
        Some(&QtValue::List(vec![
            "/home/ana/midi/song one.mid".into(),
            "/home/ana/midi/b,c.mid".into()
        ]))
    );
    assert_eq!(text("MIDI/in_port").as_deref(), Some(""));
    assert!(text("geometry").unwrap().starts_with("@ByteArray("));
}

#[test]
fn apply_changes_only_the_two_keys_after_a_backup() {
    let dir = TempDir::new("apply");
    let path = sample_in(&dir);
    let rows = awkward_rows();
    let report = apply(&Location::IniFile { path: path.clone() }, URL, &rows).unwrap();

    let after = fs::read(&path).unwrap();
    let (old_lines, new_lines) = (lines(SAMPLE), lines(&after));
    assert_eq!(old_lines.len(), new_lines.len());
    let mut changed = 0;
    for (old, new) in old_lines.iter().zip(&new_lines) {
        if is_our_key_line(old) {
            assert!(is_our_key_line(new));
            changed += 1;
        } else {
            assert_eq!(old, new, "every other line is byte-identical");
        }
    }
    assert_eq!(changed, 2);
    assert!(new_lines.contains(&&b"wan\\rendezvousUrl=http://192.168.1.20:8787"[..]));
    let ice_line = new_lines
        .iter()
        .find(|l| l.starts_with(b"lan\\iceServers="))
        .unwrap();
    // Multi-line, with '=' from ?transport=: one quoted line, \n escapes.
    assert!(ice_line.starts_with(b"lan\\iceServers=\"stun:stun.example.org:3478\\nturn:"));
    assert!(ice_line.ends_with(b"\""));
    assert!(ice_line.is_ascii());

    // The backup is the original, next to it, named .bak-<unix-seconds>.
    let backup = report.backup.clone().expect("backup");
    assert_eq!(fs::read(&backup).unwrap(), SAMPLE);
    assert_eq!(backup.parent(), path.parent());
    let name = backup.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name
        .strip_prefix("NONE.conf.bak-")
        .is_some_and(|s| s.parse::<u64>().is_ok()));

    assert_eq!(
        report,
        ApplyReport {
            path: path.clone(),
            backup: Some(backup),
            keys_written: vec![KEY_RENDEZVOUS_URL.into(), KEY_ICE_SERVERS.into()],
            changed: true,
            previous: report.previous.clone(),
            notes: report.notes.clone(),
        }
    );
    assert_eq!(
        report.previous[0].value.as_deref(),
        Some("https://midi-rdv.happytunesai.workers.dev")
    );
    assert!(report.notes.iter().any(|n| n.contains("UDP only")));

    // Read back as QSettings would: our values, everything else unchanged,
    // and the multi-line list round-trips to the same rows.
    let before = parse_qt_ini(SAMPLE);
    let now = parse_qt_ini(&after);
    assert_eq!(
        now.get(KEY_RENDEZVOUS_URL),
        Some(&QtValue::Text(URL.into()))
    );
    let ice = now.get(KEY_ICE_SERVERS).and_then(QtValue::to_text).unwrap();
    assert_eq!(ice, export_midieditor_ice(&rows));
    assert_eq!(ice.lines().count(), 3);
    assert_eq!(import_midieditor_ice(&ice).unwrap(), rows);
    assert_eq!(before.len(), now.len());
    for (k, v) in &before {
        if k != KEY_RENDEZVOUS_URL && k != KEY_ICE_SERVERS {
            assert_eq!(now.get(k), Some(v), "{k}");
        }
    }
}

#[test]
fn applying_twice_is_idempotent() {
    let dir = TempDir::new("twice");
    let path = sample_in(&dir);
    let loc = Location::IniFile { path: path.clone() };
    let first = apply(&loc, URL, &awkward_rows()).unwrap();
    assert!(first.changed);
    let once = fs::read(&path).unwrap();
    let files = dir.names();
    let second = apply(&loc, URL, &awkward_rows()).unwrap();
    assert!(!second.changed);
    assert_eq!(second.backup, None, "no backup when nothing changes");
    assert_eq!(fs::read(&path).unwrap(), once);
    assert_eq!(dir.names(), files);
    assert_eq!(
        second.previous[0].value.as_deref(),
        Some(URL),
        "previous is what the first apply wrote"
    );
}

#[test]
fn missing_file_and_folder_are_created() {
    let dir = TempDir::new("create");
    let path = dir.path("config/MidiEditor/NONE.conf");
    let report = apply(
        &Location::IniFile { path: path.clone() },
        "",
        &[row("stun:stun.example.org:3478", "", "")],
    )
    .unwrap();
    assert_eq!(report.backup, None);
    assert!(report.changed);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "[Collab]\nwan\\rendezvousUrl=\nlan\\iceServers=stun:stun.example.org:3478\n"
    );
    assert_eq!(
        report.previous.iter().filter(|p| p.value.is_some()).count(),
        0
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "as QSettings creates its files");
    }
}

#[test]
fn missing_keys_join_the_collab_section() {
    let dir = TempDir::new("missingkeys");
    let path = dir.path("NONE.conf");
    let without: Vec<&[u8]> = lines(SAMPLE)
        .into_iter()
        .filter(|l| !is_our_key_line(l))
        .collect();
    let original = without.join(&b'\n');
    fs::write(&path, &original).unwrap();
    apply(&Location::IniFile { path: path.clone() }, URL, &[]).unwrap();
    let after = fs::read_to_string(&path).unwrap();
    let expected = String::from_utf8(original.clone()).unwrap().replace(
        "webhookUrl=\"https://discord.example/api/webhooks/1/abc?wait=true\"\n",
        &format!(
            "webhookUrl=\"https://discord.example/api/webhooks/1/abc?wait=true\"\n\
             wan\\rendezvousUrl={URL}\nlan\\iceServers={EMPTY_ICE_LIST}\n"
        ),
    );
    assert_eq!(after, expected);
}

#[test]
fn a_file_without_collab_gets_the_section_appended() {
    let dir = TempDir::new("nosection");
    let path = dir.path("NONE.conf");
    let original = b"; MidiEditor settings\n[General]\nlanguage=de\n\n[MIDI]\nthru=true";
    fs::write(&path, original).unwrap();
    let report = apply_to_ini(&path, URL, "stun:a:1\nstun:b:2").unwrap();
    let after = fs::read(&path).unwrap();
    assert!(after.starts_with(original));
    assert_eq!(
        &after[original.len()..],
        b"\n\n[Collab]\nwan\\rendezvousUrl=http://192.168.1.20:8787\nlan\\iceServers=stun:a:1\\nstun:b:2\n"
    );
    assert_eq!(fs::read(report.backup.unwrap()).unwrap(), original);
}

#[test]
fn an_empty_list_writes_the_comment_midieditor_reads_as_its_default() {
    let dir = TempDir::new("emptylist");
    let path = sample_in(&dir);
    let report = apply(&Location::IniFile { path: path.clone() }, "", &[]).unwrap();
    let now = parse_qt_ini(&fs::read(&path).unwrap());
    assert_eq!(
        now.get(KEY_ICE_SERVERS),
        Some(&QtValue::Text(EMPTY_ICE_LIST.into()))
    );
    assert_eq!(
        now.get(KEY_RENDEZVOUS_URL),
        Some(&QtValue::Text(String::new()))
    );
    // What MidiEditor's IceConfig::load() then sees: no usable line, so it
    // falls back to its Google STUN list; the user is told.
    assert!(import_midieditor_ice(EMPTY_ICE_LIST).unwrap().is_empty());
    assert!(report.notes.iter().any(|n| n.contains("Google")));
}

#[test]
fn invalid_input_touches_nothing() {
    let dir = TempDir::new("invalid");
    let path = sample_in(&dir);
    let loc = Location::IniFile { path: path.clone() };
    assert!(apply(&loc, "not a url", &[]).is_err());
    assert!(apply(&loc, "", &[row("turn:relay.example.org", "", "")]).is_err());
    assert_eq!(fs::read(&path).unwrap(), SAMPLE);
    assert_eq!(dir.names(), ["MidiEditor"]);
}

#[test]
fn location_is_shown_as_a_path() {
    let loc = Location::IniFile {
        path: PathBuf::from("/home/ana/.config/MidiEditor/NONE.conf"),
    };
    assert_eq!(loc.to_string(), "/home/ana/.config/MidiEditor/NONE.conf");
    assert_eq!(
        serde_json::to_value(&loc).unwrap(),
        json!({"kind": "iniFile", "path": "/home/ana/.config/MidiEditor/NONE.conf"})
    );
    let reg = Location::Registry {
        key: midieditor::REGISTRY_KEY.into(),
    };
    assert_eq!(
        reg.to_string(),
        r"HKEY_CURRENT_USER\Software\MidiEditor\NONE"
    );
}
