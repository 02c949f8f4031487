//! The desktop shell: a one-to-one adapter of the [`app::App`] facade.
//! Each command is one facade method; each facade [`app::Event`] goes to
//! the window under its own name. Nothing is decided here (which saves
//! restart the jam, how peers are counted, how settings are stored): that
//! is the facade's business, where `cargo test -p app` reaches it.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod logging;

use app::check::Outcome;
use app::discover::DiscoveryView;
use app::facade::{SaveImpact, Saved, SettingsPayload};
use app::midi_ports::MidiPorts;
use app::midieditor::ApplyReport;
use app::session::JamView;
use app::settings::{FieldError, IceRow};
use app::shared_song::SongView;
use app::{App, AppConfig, CloseAnswer};
use serde_json::Value;
use tauri::{AppHandle, Emitter, Manager, State, WebviewUrl, WebviewWindowBuilder, WindowEvent};

#[tauri::command]
fn get_view(app: State<'_, App>) -> JamView {
    app.view()
}

#[tauri::command]
async fn list_midi_ports(app: State<'_, App>) -> Result<MidiPorts, ()> {
    Ok(app.list_midi_ports().await)
}

#[tauri::command]
async fn get_settings(app: State<'_, App>) -> Result<SettingsPayload, ()> {
    Ok(app.settings_payload().await)
}

#[tauri::command]
async fn save_settings(app: State<'_, App>, settings: Value) -> Result<Saved, Vec<FieldError>> {
    app.save_settings(settings).await
}

#[tauri::command]
fn save_impact(app: State<'_, App>, settings: Value) -> Result<SaveImpact, Vec<FieldError>> {
    app.save_impact(settings)
}

#[tauri::command]
fn validate_settings(app: State<'_, App>, settings: Value) -> Result<(), Vec<FieldError>> {
    app.validate_settings(settings)
}

#[tauri::command]
async fn kick(app: State<'_, App>, peer: u64) -> Result<(), ()> {
    app.kick(peer).await;
    Ok(())
}

#[tauri::command]
async fn mute(app: State<'_, App>, peer: u64, muted: bool) -> Result<(), ()> {
    app.mute(peer, muted).await;
    Ok(())
}

#[tauri::command]
async fn panic_notes(app: State<'_, App>) -> Result<(), ()> {
    app.panic().await;
    Ok(())
}

#[tauri::command]
async fn set_record(app: State<'_, App>, on: bool) -> Result<(), ()> {
    app.set_record(on).await;
    Ok(())
}

#[tauri::command]
fn import_ice(app: State<'_, App>, text: String) -> Result<Vec<IceRow>, FieldError> {
    app.import_ice(&text)
}

#[tauri::command]
fn export_ice(app: State<'_, App>, rows: Vec<IceRow>) -> String {
    app.export_ice(&rows)
}

#[tauri::command]
async fn apply_to_midieditor(app: State<'_, App>) -> Result<ApplyReport, String> {
    app.apply_to_midieditor().await
}

#[tauri::command]
async fn test_connection(app: State<'_, App>, settings: Value) -> Result<Outcome, String> {
    app.test_connection(settings).await
}

#[tauri::command]
async fn browse_lan(app: State<'_, App>) -> Result<DiscoveryView, String> {
    app.browse_lan().await
}

#[tauri::command]
async fn join_jam(
    app: State<'_, App>,
    found: Option<String>,
    address: Option<String>,
    code: Option<String>,
) -> Result<(), String> {
    app.join(found, address, code).await
}

#[tauri::command]
async fn leave_jam(app: State<'_, App>) -> Result<(), ()> {
    app.leave().await;
    Ok(())
}

#[tauri::command]
fn get_song(app: State<'_, App>) -> Option<SongView> {
    app.song()
}

#[tauri::command]
async fn open_song(app: State<'_, App>, path: String) -> Result<SongView, String> {
    app.open_song(path).await
}

/// A file the window's picker read: its name and its bytes in base64.
#[tauri::command]
async fn open_song_data(
    app: State<'_, App>,
    name: String,
    data_b64: String,
) -> Result<SongView, String> {
    app.open_song_data(name, data_b64).await
}

#[tauri::command]
async fn new_song(app: State<'_, App>) -> Result<SongView, String> {
    app.new_song().await
}

#[tauri::command]
async fn export_song(app: State<'_, App>, path: String) -> Result<String, String> {
    app.export_song(path).await
}

#[tauri::command]
fn open_log_folder(app: State<'_, App>) -> (String, bool) {
    app.open_log_folder()
}

/// The start-up figure goes to stdout as one JSON line, for scripts and
/// the start-up benchmark.
#[tauri::command]
fn code_shown(app: State<'_, App>) {
    if let Some(line) = app.code_shown() {
        if let Ok(text) = serde_json::to_string(&line) {
            println!("{text}");
        }
    }
}

#[tauri::command]
async fn quit(handle: AppHandle, app: State<'_, App>) -> Result<(), ()> {
    app.quit();
    shutdown_and_exit(handle, app.inner().clone()).await;
    Ok(())
}

/// Stops the facade, then the process. The single-instance name goes
/// first: a launch while the jam is still stopping then starts normally
/// instead of handing over to a process that is leaving (which would never
/// answer, and the launch would fail).
async fn shutdown_and_exit(handle: AppHandle, app: App) {
    tauri_plugin_single_instance::destroy(&handle);
    app.shutdown().await;
    handle.exit(0);
}

fn main() {
    let started = std::time::Instant::now();
    tauri::Builder::default()
        // First: a second launch hands over to the first (which comes to
        // the front) and exits before anything else starts. Linux finds the
        // first over the D-Bus session bus, under the app's identifier;
        // without a session bus every launch runs on its own.
        .plugin(tauri_plugin_single_instance::init(|handle, _args, _cwd| {
            tracing::info!("a second launch asked for the window");
            focus_main(handle);
        }))
        .invoke_handler(tauri::generate_handler![
            get_view,
            get_settings,
            save_settings,
            save_impact,
            validate_settings,
            kick,
            mute,
            panic_notes,
            set_record,
            import_ice,
            export_ice,
            apply_to_midieditor,
            list_midi_ports,
            test_connection,
            browse_lan,
            join_jam,
            leave_jam,
            get_song,
            open_song,
            open_song_data,
            new_song,
            export_song,
            open_log_folder,
            code_shown,
            quit,
        ])
        .setup(move |tauri_app| {
            let config_dir = tauri_app.path().app_config_dir()?;
            std::fs::create_dir_all(&config_dir)?;
            let log_dir = tauri_app.path().app_log_dir()?;
            logging::init(&log_dir);
            let mut config = AppConfig::new(config_dir, log_dir);
            config.started = started;
            let handle = tauri_app.handle().clone();
            let app = tauri::async_runtime::block_on(async move {
                App::start(config, move |event| {
                    let _ = handle.emit(event.name(), event);
                })
            });
            tauri_app.manage(app);
            WebviewWindowBuilder::new(tauri_app, "main", WebviewUrl::App("index.html".into()))
                .title("MIDI Jam")
                .inner_size(980.0, 760.0)
                .min_inner_size(640.0, 520.0)
                .build()?;
            Ok(())
        })
        .on_window_event(|window, event| {
            if let WindowEvent::CloseRequested { api, .. } = event {
                let handle = window.app_handle().clone();
                let app = handle.state::<App>().inner().clone();
                match app.close_requested() {
                    CloseAnswer::Closing => {}
                    CloseAnswer::Ask { .. } => api.prevent_close(),
                    CloseAnswer::Quit => {
                        api.prevent_close();
                        tauri::async_runtime::spawn(shutdown_and_exit(handle, app));
                    }
                }
            }
        })
        .run(tauri::generate_context!())
        .unwrap_or_else(|e| {
            eprintln!("MIDI Jam could not start: {e}");
            std::process::exit(1);
        });
}

fn focus_main(app: &AppHandle) {
    if let Some(w) = app.get_webview_window("main") {
        let _ = w.unminimize();
        let _ = w.show();
        let _ = w.set_focus();
    }
}
