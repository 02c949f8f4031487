//! The desktop shell. It owns one running [`app::session::Jam`], turns the
//! front end's intents (commands) into calls on it, and pushes its state to
//! the window as events. No protocol logic lives here: what a code is, how
//! a peer is answered, how settings are checked, is in the `app` and `jam`
//! crates, where `cargo test` reaches it without a window.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod instance;
mod logging;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use app::session::{Jam, JamOptions, JamView};
use app::settings::{FieldError, IceRow, Settings};
use serde::Serialize;
use tauri::{AppHandle, Emitter, Manager, State, WebviewUrl, WebviewWindowBuilder, WindowEvent};
use tauri_plugin_store::StoreExt;
use tokio::sync::Mutex;

/// The settings file, in the app's config folder (one per user; tests give
/// each run its own folder through `XDG_CONFIG_HOME`).
const SETTINGS_FILE: &str = "settings.json";

struct Shell {
    jam: Mutex<Option<Jam>>,
    settings: Mutex<Settings>,
    settings_path: PathBuf,
    /// What loading the settings had to say (corrupt file set aside, a field
    /// reset), shown once in the window.
    load_warnings: Vec<String>,
    log_dir: PathBuf,
    started: Instant,
    code_reported: AtomicBool,
    /// Set once the user confirmed closing with peers connected.
    closing: AtomicBool,
    /// Where the jam listens and gathers (the connection test gathers there too).
    options: JamOptions,
    /// One connection test at a time.
    checking: AtomicBool,
    /// The LAN browser, while the Join view has been opened.
    discovery: Mutex<Option<app::discover::Discovery>>,
    /// The jam this app has joined, if any.
    joined: Mutex<Option<Joined>>,
}

/// A jam this app joined, and the bridge that plays this computer's MIDI
/// ports in it.
struct Joined {
    joiner: jam::joiner::Joiner,
    midi: app::joined_midi::JoinedMidi,
}

impl Joined {
    /// Leaves: the synth here and the host release what is still sounding,
    /// the ports go back to our own jam, then the host is told.
    async fn leave(self, shell: &Shell) {
        let ports = self.midi.ports();
        self.midi.close().await;
        if let Some(jam) = shell.jam.lock().await.as_ref() {
            jam.return_ports(ports).await;
        }
        self.joiner.leave().await;
    }
}

/// Clears a flag when dropped, whichever way the function ends.
struct Reset<'a>(&'a AtomicBool);

impl Drop for Reset<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// What the settings pane opens with.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SettingsPayload {
    settings: Settings,
    defaults: Settings,
    presets: Vec<app::settings::IcePreset>,
    warnings: Vec<String>,
    midi: app::midi_ports::MidiPorts,
    path: String,
    midieditor_path: Option<String>,
}

/// The answer to "Save".
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Saved {
    settings: Settings,
    message: String,
}

/// Options that only tests and unusual setups need, from the environment.
/// Real users never set them: the defaults listen and gather everywhere.
fn jam_options() -> JamOptions {
    let mut o = JamOptions::default();
    if let Ok(v) = std::env::var("MIDI_JAM_BIND") {
        if let Ok(ip) = v.trim().parse::<IpAddr>() {
            o.bind_ip = ip;
        }
    }
    if let Ok(v) = std::env::var("MIDI_JAM_ICE_BIND") {
        o.ice_bind = v
            .split(',')
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .collect();
    }
    if std::env::var_os("MIDI_JAM_NO_MDNS_RESOLVE").is_some() {
        o.resolve_mdns = false;
    }
    o
}

#[tauri::command]
fn get_view(shell: State<'_, Arc<Shell>>) -> Result<JamView, String> {
    let jam = shell.jam.try_lock().map_err(|_| "busy".to_owned())?;
    Ok(jam.as_ref().map(Jam::view).unwrap_or_default())
}

/// The MIDI ports as the system lists them now (the pane's "look again").
#[tauri::command]
async fn list_midi_ports() -> app::midi_ports::MidiPorts {
    tauri::async_runtime::spawn_blocking(app::midi_ports::list)
        .await
        .unwrap_or_default()
}

#[tauri::command]
async fn get_settings(shell: State<'_, Arc<Shell>>) -> Result<SettingsPayload, String> {
    let settings = shell.settings.lock().await.clone();
    let midi = list_midi_ports().await;
    Ok(SettingsPayload {
        settings,
        defaults: Settings::default(),
        presets: app::settings::ice_presets(),
        warnings: shell.load_warnings.clone(),
        midi,
        path: shell.settings_path.display().to_string(),
        midieditor_path: app::midieditor::default_settings_location().map(|l| l.to_string()),
    })
}

/// Validates, persists through the store plugin, and moves the running jam
/// to the new settings. Invalid settings change nothing, on disk or live.
#[tauri::command]
async fn save_settings(
    app: AppHandle,
    shell: State<'_, Arc<Shell>>,
    settings: Settings,
) -> Result<Saved, Vec<FieldError>> {
    let settings = settings.normalized();
    settings.validate()?;
    let one = |message: String| {
        vec![FieldError {
            field: String::new(),
            message,
        }]
    };
    let value = serde_json::to_value(&settings).map_err(|e| one(e.to_string()))?;
    let store = app
        .store(shell.settings_path.clone())
        .map_err(|e| one(format!("Cannot open the settings file: {e}")))?;
    store.set(app::settings::STORE_KEY, value);
    store
        .save()
        .map_err(|e| one(format!("Cannot write the settings file: {e}")))?;
    *shell.settings.lock().await = settings.clone();
    if let Some(jam) = shell.jam.lock().await.as_ref() {
        jam.apply(settings.clone()).await;
    }
    Ok(Saved {
        settings,
        message: "Settings saved.".to_owned(),
    })
}

#[tauri::command]
async fn kick(shell: State<'_, Arc<Shell>>, peer: u64) -> Result<(), String> {
    if let Some(jam) = shell.jam.lock().await.as_ref() {
        jam.kick(peer).await;
    }
    Ok(())
}

/// Mutes or unmutes a peer on this computer's MIDI output.
#[tauri::command]
async fn mute(shell: State<'_, Arc<Shell>>, peer: u64, muted: bool) -> Result<(), String> {
    if let Some(jam) = shell.jam.lock().await.as_ref() {
        jam.set_muted(peer, muted).await;
    }
    Ok(())
}

/// Releases every sounding note everywhere (the panic button).
#[tauri::command]
async fn panic_notes(shell: State<'_, Arc<Shell>>) -> Result<(), String> {
    if let Some(jam) = shell.jam.lock().await.as_ref() {
        jam.panic().await;
    }
    Ok(())
}

#[tauri::command]
fn import_ice(text: String) -> Result<Vec<IceRow>, FieldError> {
    app::settings::import_midieditor_ice(&text)
}

#[tauri::command]
fn export_ice(rows: Vec<IceRow>) -> String {
    app::settings::export_midieditor_ice(&rows)
}

#[tauri::command]
fn validate_settings(settings: Settings) -> Result<(), Vec<FieldError>> {
    settings.normalized().validate()
}

/// Writes the saved rendezvous URL (or the address of this jam when it is
/// the bundled one) and the STUN/TURN list into MidiEditor's own settings.
#[tauri::command]
async fn apply_to_midieditor(
    shell: State<'_, Arc<Shell>>,
) -> Result<app::midieditor::ApplyReport, String> {
    let settings = shell.settings.lock().await.clone();
    let url = if settings.rendezvous_url.trim().is_empty() {
        let jam = shell.jam.lock().await;
        jam.as_ref()
            .and_then(|j| j.view().urls.first().cloned())
            .unwrap_or_default()
    } else {
        settings.rendezvous_url.trim().to_owned()
    };
    let location = app::midieditor::default_settings_location()
        .ok_or_else(|| "MidiEditor's settings location is unknown on this system.".to_owned())?;
    let rows = settings.ice_servers.clone();
    tauri::async_runtime::spawn_blocking(move || {
        app::midieditor::apply(&location, &url, &rows).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// "Test connection": the settings as edited (not yet saved) are tested with
/// a session and peers of the test's own; progress goes to the window as
/// `check-progress` events, the verdict is the answer.
#[tauri::command]
async fn test_connection(
    app: AppHandle,
    shell: State<'_, Arc<Shell>>,
    settings: Settings,
) -> Result<app::check::Outcome, String> {
    let settings = settings.normalized();
    if let Err(errors) = settings.validate() {
        let words: Vec<String> = errors.into_iter().map(|e| e.message).collect();
        return Err(format!("Fix the settings first: {}", words.join(" ")));
    }
    if shell.checking.swap(true, Ordering::SeqCst) {
        return Err("A test is already running.".to_owned());
    }
    let _reset = Reset(&shell.checking);
    let bundled = shell
        .jam
        .lock()
        .await
        .as_ref()
        .and_then(|j| j.view().urls.first().cloned());
    let cfg = app::check::config_for(&settings, bundled.as_deref(), &shell.options.ice_bind)?;
    let handle = app.clone();
    let report = jam::check::run_check(&cfg, move |p| {
        let _ = handle.emit("check-progress", p);
    })
    .await;
    tracing::info!(
        "connection test: {:?} in {:.0} ms",
        report.verdict,
        report.duration_ms
    );
    Ok(app::check::outcome(report))
}

/// Starts looking for jams on the LAN (on the interfaces the settings name;
/// none named: the LAN ones). The list goes to the window as `lan-jams`.
#[tauri::command]
async fn browse_lan(
    app: AppHandle,
    shell: State<'_, Arc<Shell>>,
) -> Result<app::discover::DiscoveryView, String> {
    let mut slot = shell.discovery.lock().await;
    if let Some(d) = slot.as_ref() {
        return Ok(d.view());
    }
    let names = shell.settings.lock().await.mdns_interfaces.clone();
    let choice = if names.is_empty() {
        lan::InterfaceChoice::DefaultLan
    } else {
        lan::InterfaceChoice::Named(names)
    };
    let d = tauri::async_runtime::spawn_blocking(move || app::discover::Discovery::start(choice))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("Cannot look for jams on the local network: {e}"))?;
    let view = d.view();
    forward(app, "lan-jams", d.subscribe());
    *slot = Some(d);
    Ok(view)
}

/// Joins a jam: one found on the LAN (`found`, its id in the list) or a
/// typed address, with a code unless the jam is open. Progress and the
/// peers go to the window as `join-view`.
#[tauri::command]
async fn join_jam(
    app: AppHandle,
    shell: State<'_, Arc<Shell>>,
    found: Option<String>,
    address: Option<String>,
    code: Option<String>,
) -> Result<(), String> {
    let settings = shell.settings.lock().await.clone();
    let jam_found = match &found {
        Some(id) => {
            let d = shell.discovery.lock().await;
            let list = d.as_ref().map(|d| d.jams()).unwrap_or_default();
            Some(
                list.into_iter()
                    .find(|j| &j.id == id)
                    .ok_or_else(|| "That jam is no longer on the local network.".to_owned())?,
            )
        }
        None => None,
    };
    let target = match (&jam_found, &address) {
        (Some(j), _) => app::joining::JoinTarget::Found(j),
        (None, Some(a)) => app::joining::JoinTarget::Typed(a),
        (None, None) => return Err("Choose a jam or type its address.".to_owned()),
    };
    let cfg = app::joining::join_config(&settings, target, code, &shell.options.ice_bind)?;
    let old = shell.joined.lock().await.take();
    if let Some(old) = old {
        old.leave(&shell).await;
    }
    let (joiner, _events) = jam::joiner::Joiner::start(cfg);
    forward(app, "join-view", joiner.watch());
    // This computer's MIDI ports play in the joined jam until it ends or
    // we leave; our own jam goes on hosting without them meanwhile.
    let midi = app::joined_midi::JoinedMidi::start(&joiner);
    let ports = midi.ports();
    if let Some(jam) = shell.jam.lock().await.as_ref() {
        jam.route_ports(Some(ports.clone())).await;
    }
    let ended = midi.ended();
    let back = shell.inner().clone();
    tauri::async_runtime::spawn(async move {
        ended.await;
        if let Some(jam) = back.jam.lock().await.as_ref() {
            jam.return_ports(ports).await;
        }
    });
    *shell.joined.lock().await = Some(Joined { joiner, midi });
    Ok(())
}

/// Leaves the joined jam (the host is told).
#[tauri::command]
async fn leave_jam(shell: State<'_, Arc<Shell>>) -> Result<(), String> {
    let j = shell.joined.lock().await.take();
    if let Some(j) = j {
        j.leave(&shell).await;
    }
    Ok(())
}

/// Opens the log folder in the file manager; returns its path either way,
/// so the window can show it where no file manager exists.
#[tauri::command]
fn open_log_folder(shell: State<'_, Arc<Shell>>) -> (String, bool) {
    let dir = shell.log_dir.clone();
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    let opened = std::process::Command::new(opener)
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .is_ok();
    (dir.display().to_string(), opened)
}

/// The window rendered a code for the first time: the start-up figure.
/// Printed on stdout as one JSON line (with the code and the addresses) so
/// scripts and the start-up benchmark can follow the app.
#[tauri::command]
async fn code_shown(shell: State<'_, Arc<Shell>>) -> Result<(), String> {
    if !shell.code_reported.swap(true, Ordering::SeqCst) {
        let ms = shell.started.elapsed().as_secs_f64() * 1000.0;
        let view = shell
            .jam
            .lock()
            .await
            .as_ref()
            .map(Jam::view)
            .unwrap_or_default();
        tracing::info!("code shown {ms:.0} ms after start");
        let line = serde_json::json!({
            "event": "codeShown",
            "ms": (ms * 10.0).round() / 10.0,
            "code": view.code,
            "urls": view.urls,
        });
        println!("{line}");
    }
    Ok(())
}

/// Quits after the user confirmed: peers are told, the LAN advert is
/// withdrawn, the session removed.
#[tauri::command]
async fn quit(app: AppHandle, shell: State<'_, Arc<Shell>>) -> Result<(), String> {
    shell.closing.store(true, Ordering::SeqCst);
    stop_and_exit(app, shell.inner().clone()).await;
    Ok(())
}

async fn stop_and_exit(app: AppHandle, shell: Arc<Shell>) {
    let joined = shell.joined.lock().await.take();
    if let Some(j) = joined {
        j.leave(&shell).await;
    }
    let discovery = shell.discovery.lock().await.take();
    if let Some(d) = discovery {
        // Stopping the browser joins its thread: off the async runtime.
        let _ = tauri::async_runtime::spawn_blocking(move || d.stop()).await;
    }
    let jam = shell.jam.lock().await.take();
    if let Some(jam) = jam {
        jam.stop().await;
    }
    app.exit(0);
}

/// Loads the settings, setting a corrupt file aside (never deleting it).
fn load_settings(path: &std::path::Path) -> (Settings, Vec<String>) {
    let outcome = app::settings::load_file(path);
    (outcome.settings, outcome.warnings)
}

fn main() {
    let started = Instant::now();
    tauri::Builder::default()
        .plugin(tauri_plugin_store::Builder::new().build())
        .invoke_handler(tauri::generate_handler![
            get_view,
            get_settings,
            save_settings,
            validate_settings,
            kick,
            mute,
            panic_notes,
            import_ice,
            export_ice,
            apply_to_midieditor,
            list_midi_ports,
            test_connection,
            browse_lan,
            join_jam,
            leave_jam,
            open_log_folder,
            code_shown,
            quit,
        ])
        .setup(move |tauri_app| {
            let config_dir = tauri_app.path().app_config_dir()?;
            std::fs::create_dir_all(&config_dir)?;
            // A second launch hands over to the first and leaves.
            let handle = tauri_app.handle().clone();
            match instance::claim(&config_dir, move || focus_main(&handle)) {
                instance::Claim::First => {}
                instance::Claim::Other => {
                    println!("MIDI Jam is already running; its window was brought to the front.");
                    std::process::exit(0);
                }
            }
            let log_dir = tauri_app.path().app_log_dir()?;
            logging::init(&log_dir);
            let settings_path = config_dir.join(SETTINGS_FILE);
            let (settings, warnings) = load_settings(&settings_path);
            for w in &warnings {
                tracing::warn!("settings: {w}");
            }
            // The store holds the same file from now on (saves go through it).
            let _ = tauri_app.store(settings_path.clone());
            let options = jam_options();
            let jam = tauri::async_runtime::block_on(async {
                Jam::start(settings.clone(), options.clone())
            });
            let views = jam.subscribe();
            let shell = Arc::new(Shell {
                jam: Mutex::new(Some(jam)),
                settings: Mutex::new(settings),
                settings_path,
                load_warnings: warnings,
                log_dir,
                started,
                code_reported: AtomicBool::new(false),
                closing: AtomicBool::new(false),
                options,
                checking: AtomicBool::new(false),
                discovery: Mutex::new(None),
                joined: Mutex::new(None),
            });
            tauri_app.manage(shell);
            // Every change of the jam goes to the window as it happens.
            forward(tauri_app.handle().clone(), "jam-view", views);
            WebviewWindowBuilder::new(tauri_app, "main", WebviewUrl::App("index.html".into()))
                .title("MIDI Jam")
                .inner_size(980.0, 760.0)
                .min_inner_size(640.0, 520.0)
                .build()?;
            Ok(())
        })
        .on_window_event(|window, event| {
            if let WindowEvent::CloseRequested { api, .. } = event {
                let app = window.app_handle().clone();
                let shell = app.state::<Arc<Shell>>().inner().clone();
                if shell.closing.load(Ordering::SeqCst) {
                    return;
                }
                api.prevent_close();
                let peers = shell
                    .jam
                    .try_lock()
                    .ok()
                    .and_then(|j| j.as_ref().map(|j| j.view().connected()))
                    .unwrap_or(0);
                if peers > 0 {
                    // The window asks; `quit` follows if the user agrees.
                    let _ = app.emit("confirm-close", peers);
                } else {
                    shell.closing.store(true, Ordering::SeqCst);
                    tauri::async_runtime::spawn(stop_and_exit(app, shell));
                }
            }
        })
        .run(tauri::generate_context!())
        .unwrap_or_else(|e| {
            eprintln!("MIDI Jam could not start: {e}");
            std::process::exit(1);
        });
}

/// Pushes every new value of `rx` to the window as event `name` (the
/// current one first), until its sender is gone. The window never polls.
fn forward<T>(app: AppHandle, name: &'static str, mut rx: tokio::sync::watch::Receiver<T>)
where
    T: Clone + Serialize + Send + Sync + 'static,
{
    tauri::async_runtime::spawn(async move {
        loop {
            let v = rx.borrow_and_update().clone();
            let _ = app.emit(name, v);
            if rx.changed().await.is_err() {
                break;
            }
        }
    });
}

fn focus_main(app: &AppHandle) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.unminimize();
        let _ = w.show();
        let _ = w.set_focus();
    }
}
