//! The app as one object: [`App`] owns everything the desktop window drives
//! (the hosted jam, the jam it joined with this computer's MIDI ports, the
//! LAN browser, the settings file, the connection test) and makes every
//! decision about them, so `cargo test -p app` reaches all of it. A front
//! end is an adapter: each of its commands calls one method here, and each
//! [`Event`] the facade sends goes out under [`Event::name`] unchanged.
//!
//! Views are pushed, never polled: the facade forwards the jam's, the joined
//! jam's and the LAN browser's `watch` channels to the front end's sink as
//! they change, newest value only.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{watch, Mutex, RwLock};

use crate::discover::{Discovery, DiscoveryView};
use crate::midi_ports::MidiPorts;
use crate::session::{Jam, JamOptions, JamView};
use crate::settings::{FieldError, IcePreset, IceRow, Settings};

/// Where the app keeps its files and how its jam runs.
#[derive(Clone)]
pub struct AppConfig {
    /// The settings file (`<config>/settings.json`).
    pub settings_path: PathBuf,
    /// The log folder ("Open log folder").
    pub log_dir: PathBuf,
    /// Where the jam listens and gathers; the connection test and the
    /// joiner gather there too.
    pub options: JamOptions,
    /// MidiEditor's settings for "Apply to MidiEditor"; `None`: unknown on
    /// this system.
    pub midieditor: Option<crate::midieditor::Location>,
    /// The MIDI ports; `None`: the system's (midir).
    pub midi: Option<Arc<dyn midi::ports::MidiSystem>>,
    /// When the process started, for the start-up figure.
    pub started: Instant,
    /// The session hub's folder (machine id, saved versions of the shared
    /// song); `None`: a jam without a shared song.
    pub state_dir: Option<PathBuf>,
}

impl AppConfig {
    /// The configuration of a real run: files in `config_dir` and
    /// `log_dir`, MidiEditor's settings where MidiEditor keeps them, the
    /// system's MIDI ports, and [`options_from_env`].
    pub fn new(config_dir: PathBuf, log_dir: PathBuf) -> AppConfig {
        AppConfig {
            settings_path: config_dir.join(SETTINGS_FILE),
            log_dir,
            options: options_from_env(|k| std::env::var(k).ok()),
            midieditor: crate::midieditor::default_settings_location(),
            midi: None,
            started: Instant::now(),
            state_dir: Some(config_dir.join(crate::shared_song::STATE_FOLDER)),
        }
    }
}

/// The settings file's name in the app's config folder.
pub const SETTINGS_FILE: &str = "settings.json";

/// Options that only tests and unusual setups need, read with `var` (the
/// environment): `MIDI_JAM_BIND` (the bundled rendezvous' address),
/// `MIDI_JAM_ICE_BIND` (comma-separated addresses to gather on),
/// `MIDI_JAM_NO_MDNS_RESOLVE`. Real users set none: the defaults listen and
/// gather everywhere. Unparsable values are ignored.
pub fn options_from_env(var: impl Fn(&str) -> Option<String>) -> JamOptions {
    let mut o = JamOptions::default();
    if let Some(ip) = var("MIDI_JAM_BIND").and_then(|v| v.trim().parse::<IpAddr>().ok()) {
        o.bind_ip = ip;
    }
    if let Some(v) = var("MIDI_JAM_ICE_BIND") {
        o.ice_bind = v
            .split(',')
            .filter_map(|s| s.trim().parse::<IpAddr>().ok())
            .collect();
    }
    if var("MIDI_JAM_NO_MDNS_RESOLVE").is_some() {
        o.resolve_mdns = false;
    }
    o
}

/// Something for the window, sent as it happens. Serialised as its payload
/// alone; the adapter sends it under [`Event::name`].
// Whole views by value: one event per view change, moved straight to the
// sink, so boxing the larger view would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Event {
    /// The hosted jam changed (`jam-view`).
    JamView(JamView),
    /// The joined jam changed (`join-view`).
    JoinView(jam::joiner::JoinView),
    /// The LAN list changed (`lan-jams`).
    LanJams(DiscoveryView),
    /// A step of a running connection test (`check-progress`).
    CheckProgress(jam::check::Progress),
    /// The window was closed with peers connected: ask, then
    /// [`App::quit`] if the user agrees (`confirm-close`, the peer count).
    ConfirmClose(usize),
}

impl Event {
    /// The event's name for the window.
    pub fn name(&self) -> &'static str {
        match self {
            Event::JamView(_) => "jam-view",
            Event::JoinView(_) => "join-view",
            Event::LanJams(_) => "lan-jams",
            Event::CheckProgress(_) => "check-progress",
            Event::ConfirmClose(_) => "confirm-close",
        }
    }
}

type Sink = Arc<dyn Fn(Event) + Send + Sync>;

/// What the settings pane opens with.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsPayload {
    pub settings: Settings,
    pub defaults: Settings,
    pub presets: Vec<IcePreset>,
    /// What loading the file had to say (a corrupt file set aside, a field
    /// reset).
    pub warnings: Vec<String>,
    pub midi: MidiPorts,
    /// The settings file.
    pub path: String,
    pub midieditor_path: Option<String>,
}

/// The answer to "Save".
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    pub settings: Settings,
    pub message: String,
}

/// What saving new settings will restart, for the window to show (and ask
/// about) before it saves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SaveImpact {
    /// The rendezvous moves (new URL or port).
    pub rendezvous: bool,
    /// The host restarts: everyone in the jam is dropped (the code stays).
    pub host: bool,
    /// Applied while the jam runs (peer limit, STUN/TURN list, gathering
    /// cap): same code, nobody dropped.
    pub live: bool,
    /// The LAN advert is renewed.
    pub advert: bool,
    /// What the save does, in one sentence (`None`: nothing visible).
    pub summary: Option<String>,
    /// Peers connected now that the save disconnects.
    pub dropped_peers: usize,
    /// What to ask before saving, when peers would be dropped; `None`: save
    /// without asking.
    pub question: Option<String>,
}

/// The impact of saving `new` over `old` with `connected` peers in the jam.
pub fn save_impact(old: &Settings, new: &Settings, connected: usize) -> SaveImpact {
    // The one restart decision, the same the running jam acts on.
    let impact = crate::session::impact(old, new);
    let (rendezvous, host) = (impact.rendezvous, impact.drops_peers());
    let dropped_peers = if host { connected } else { 0 };
    let question = (dropped_peers > 0).then(|| {
        if rendezvous {
            format!(
                "The jam moves to a new address: the {dropped_peers} peer(s) connected now are disconnected and must join again there. Save anyway?"
            )
        } else {
            format!(
                "The jam restarts (same code): the {dropped_peers} peer(s) connected now are disconnected; phones and MIDI Jam apps join again by themselves, MidiEditor users join again with the code. Save anyway?"
            )
        }
    });
    SaveImpact {
        rendezvous,
        host,
        live: impact.live,
        advert: impact.advert,
        summary: impact.describe(),
        dropped_peers,
        question,
    }
}

/// What closing the window does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseAnswer {
    /// The user already confirmed (or the app is quitting): let it close.
    Closing,
    /// Peers are connected: keep the window; [`Event::ConfirmClose`] was
    /// sent for the window to ask.
    Ask { peers: usize },
    /// Nobody to ask about: keep the window until [`App::shutdown`] is done,
    /// then exit.
    Quit,
}

/// The start-up figure: the window showed a code for the first time.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeShown {
    /// Always `codeShown` (the line's kind for scripts).
    pub event: &'static str,
    /// From process start, to a tenth of a millisecond.
    pub ms: f64,
    pub code: Option<String>,
    pub urls: Vec<String>,
}

/// A jam this app joined, and the bridge that plays this computer's MIDI
/// ports in it.
struct Joined {
    joiner: jam::joiner::Joiner,
    midi: crate::joined_midi::JoinedMidi,
}

/// Whether a join is the app joining again by itself after the host said
/// it restarts under the same code, and how many more tries it has.
#[derive(Debug, Clone, Copy)]
enum Rejoin {
    /// Joined by the user.
    Not,
    /// Joined again by itself; this many more tries if this one fails.
    Try(u32),
}

/// How many times the app joins a restarting host again by itself.
const REJOINS: u32 = 4;
/// The wait before the first try; the n-th waits n times as long (the
/// host is usually back within a second; 0.7 + 1.4 + 2.1 + 2.8 s in all).
const REJOIN_AFTER: std::time::Duration = std::time::Duration::from_millis(700);

/// The application: see the module documentation.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

struct Inner {
    config: AppConfig,
    sink: Sink,
    /// The hosted jam; `None` once stopped. Read-locked by every intent
    /// (the jam queues them itself), write-locked only to stop it.
    jam: RwLock<Option<Jam>>,
    /// The hosted jam's view, readable without waiting for anything: a
    /// save that is restarting part of the jam never hides its peers.
    jam_view: watch::Receiver<JamView>,
    /// The saved settings.
    settings: StdMutex<Settings>,
    /// One save at a time, so the file and the jam end with the same one.
    saving: Mutex<()>,
    load_warnings: Vec<String>,
    /// Set once closing is decided (confirmed, or nobody to ask).
    closing: AtomicBool,
    /// One connection test at a time.
    checking: AtomicBool,
    code_reported: AtomicBool,
    /// The LAN browser, once the Join view was opened.
    discovery: Mutex<Option<Discovery>>,
    /// The jam this app joined, if any.
    joined: Mutex<Option<Joined>>,
    /// Which join the `join-view` forwarder may speak for: a join that was
    /// replaced says nothing more.
    join_generation: AtomicU64,
    /// Counts "Leave" clicks, so a rejoin waiting to start sees one.
    left_by_hand: AtomicU64,
    /// The session hub's folder, when it opened.
    state: Option<jam::hub::StateDir>,
    /// The song shared now (the jam's view follows it).
    song: StdMutex<Option<jam::hub::SongShare>>,
}

/// Clears a flag when dropped, whichever way the function ends.
struct Reset<'a>(&'a AtomicBool);

impl Drop for Reset<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl App {
    /// Loads the settings (a corrupt file is set aside, never deleted) and
    /// starts hosting. Every event goes to `sink`. Call inside a Tokio
    /// runtime; returns at once (the code follows in a `jam-view`).
    pub fn start(config: AppConfig, sink: impl Fn(Event) + Send + Sync + 'static) -> App {
        let loaded = crate::settings::load_file(&config.settings_path);
        for w in &loaded.warnings {
            tracing::warn!("settings: {w}");
        }
        let settings = loaded.settings;
        let midi = config
            .midi
            .clone()
            .unwrap_or_else(|| Arc::new(midi::midir_ports::MidirSystem::new("MIDI Jam")));
        let (state, hub, hub_notice) = open_hub(config.state_dir.as_deref());
        let song = hub.song.clone();
        let jam = Jam::start_hub(settings.clone(), config.options.clone(), midi, hub);
        if let Some((level, message)) = hub_notice {
            jam.hosted().notice(level, message);
        }
        let jam_view = jam.subscribe();
        let sink: Sink = Arc::new(sink);
        forward(sink.clone(), jam.subscribe(), Event::JamView, None);
        App {
            inner: Arc::new(Inner {
                config,
                sink,
                jam: RwLock::new(Some(jam)),
                jam_view,
                settings: StdMutex::new(settings),
                saving: Mutex::new(()),
                load_warnings: loaded.warnings,
                closing: AtomicBool::new(false),
                checking: AtomicBool::new(false),
                code_reported: AtomicBool::new(false),
                discovery: Mutex::new(None),
                joined: Mutex::new(None),
                join_generation: AtomicU64::new(0),
                left_by_hand: AtomicU64::new(0),
                state,
                song: StdMutex::new(song),
            }),
        }
    }

    /// The hosted jam as the host screen shows it now.
    pub fn view(&self) -> JamView {
        self.inner.jam_view.borrow().clone()
    }

    /// Every new view of the hosted jam.
    pub fn subscribe(&self) -> watch::Receiver<JamView> {
        self.inner.jam_view.clone()
    }

    /// The saved settings.
    pub fn settings(&self) -> Settings {
        self.saved()
    }

    fn saved(&self) -> Settings {
        self.inner
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Peers in the hosted jam that were welcomed.
    pub fn connected_peers(&self) -> usize {
        // From the view, not the jam: the jam may be busy applying a save,
        // and "busy" must never read as "nobody there".
        self.inner.jam_view.borrow().connected()
    }

    /// What the settings pane opens with (the MIDI ports listed now).
    pub async fn settings_payload(&self) -> SettingsPayload {
        SettingsPayload {
            settings: self.saved(),
            defaults: Settings::default(),
            presets: crate::settings::ice_presets(),
            warnings: self.inner.load_warnings.clone(),
            midi: self.list_midi_ports().await,
            path: self.inner.config.settings_path.display().to_string(),
            midieditor_path: self.inner.config.midieditor.as_ref().map(|l| l.to_string()),
        }
    }

    /// The MIDI ports as the system lists them now.
    pub async fn list_midi_ports(&self) -> MidiPorts {
        let system = self.inner.config.midi.clone();
        tokio::task::spawn_blocking(move || match system {
            Some(s) => crate::midi_ports::list_of(s.as_ref()),
            None => crate::midi_ports::list(),
        })
        .await
        .unwrap_or_default()
    }

    /// Checks the pane's values without saving.
    pub fn validate_settings(&self, form: Value) -> Result<(), Vec<FieldError>> {
        read_form(form).map(|_| ())
    }

    /// What saving the pane's values would restart now, and the question to
    /// ask first when that drops peers. Invalid values are the error, as
    /// [`save_settings`](Self::save_settings) would give them.
    pub fn save_impact(&self, form: Value) -> Result<SaveImpact, Vec<FieldError>> {
        let new = read_form(form)?;
        Ok(save_impact(&self.saved(), &new, self.connected_peers()))
    }

    /// Validates the pane's values, writes them to the settings file
    /// (atomically; other keys of the file are kept), and moves the hosted
    /// jam to them. Invalid values change nothing, on disk or live.
    pub async fn save_settings(&self, form: Value) -> Result<Saved, Vec<FieldError>> {
        let settings = read_form(form)?;
        let _one = self.inner.saving.lock().await;
        let path = self.inner.config.settings_path.clone();
        let to_write = settings.clone();
        tokio::task::spawn_blocking(move || crate::settings::save_file(&path, &to_write))
            .await
            .map_err(|e| one_error(format!("Cannot write the settings file: {e}")))?
            .map_err(|e| {
                match e
                    .get_ref()
                    .and_then(|i| i.downcast_ref::<crate::settings::InvalidSettings>())
                {
                    Some(invalid) => invalid.0.clone(),
                    None => one_error(format!("Cannot write the settings file: {e}")),
                }
            })?;
        *self
            .inner
            .settings
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = settings.clone();
        if let Some(jam) = self.inner.jam.read().await.as_ref() {
            jam.apply(settings.clone()).await;
        }
        Ok(Saved {
            settings,
            message: "Settings saved.".to_owned(),
        })
    }

    /// Drops a peer from the hosted jam.
    pub async fn kick(&self, peer: u64) {
        if let Some(jam) = self.inner.jam.read().await.as_ref() {
            jam.kick(peer).await;
        }
    }

    /// Mutes or unmutes a peer on this computer's MIDI output.
    pub async fn mute(&self, peer: u64, muted: bool) {
        if let Some(jam) = self.inner.jam.read().await.as_ref() {
            jam.set_muted(peer, muted).await;
        }
    }

    /// Releases every sounding note everywhere (the panic button).
    pub async fn panic(&self) {
        if let Some(jam) = self.inner.jam.read().await.as_ref() {
            jam.panic().await;
        }
    }

    /// The Record switch: notes that live-MIDI peers play go into the
    /// shared song (the view's `recording` says whether it is on; it stays
    /// off in a jam without a song).
    pub async fn set_record(&self, on: bool) {
        if let Some(jam) = self.inner.jam.read().await.as_ref() {
            jam.set_record(on).await;
        }
    }

    /// The shared song as the host screen shows it (name, length, tracks,
    /// last editor); `None`: this jam shares none.
    pub fn song(&self) -> Option<jam::hub::SongView> {
        self.current_song().map(|s| s.view())
    }

    fn current_song(&self) -> Option<jam::hub::SongShare> {
        self.inner
            .song
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Shares the Standard MIDI File at `path` from now on (saved as a new
    /// version). The jam restarts (same code) so every joiner receives it. A file that is not MIDI is refused and nothing changes.
    pub async fn open_song(&self, path: String) -> Result<jam::hub::SongView, String> {
        let path = PathBuf::from(path.trim());
        if path.as_os_str().is_empty() {
            return Err("Choose a MIDI file to open.".to_owned());
        }
        self.replace_song(move |state| state.from_file(&path)).await
    }

    /// Shares a MIDI file the window read with its file picker: the app
    /// gets the file's name and its bytes (base64, as JSON carries them on
    /// every platform's IPC), never its path. Refused, changing nothing,
    /// when it is empty, not MIDI, or larger than
    /// [`jam::hub::MAX_SONG_FILE`] (checked before decoding).
    pub async fn open_song_data(
        &self,
        name: String,
        data_b64: String,
    ) -> Result<jam::hub::SongView, String> {
        use base64::Engine as _;
        let shown = jam::hub::song_file_name(&name);
        if data_b64.len() > jam::hub::MAX_SONG_FILE / 3 * 4 + 4 {
            return Err(format!(
                "{shown} is larger than a shared song can be ({} MB).",
                jam::hub::MAX_SONG_FILE / 1_000_000
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data_b64.trim())
            .map_err(|e| format!("{shown}: the file did not arrive whole ({e})."))?;
        if bytes.is_empty() {
            return Err(format!("{shown} is empty."));
        }
        self.replace_song(move |state| {
            state
                .from_bytes(&name, &bytes)
                .map_err(|e| format!("{shown}: {e}"))
        })
        .await
    }

    /// Shares a new empty song from now on (the old one stays in the saved
    /// versions); the jam restarts under the same code.
    pub async fn new_song(&self) -> Result<jam::hub::SongView, String> {
        self.replace_song(|state| state.new_song(crate::shared_song::NEW_SONG_NAME))
            .await
    }

    async fn replace_song(
        &self,
        make: impl FnOnce(&jam::hub::StateDir) -> Result<jam::hub::SongShare, String> + Send + 'static,
    ) -> Result<jam::hub::SongView, String> {
        let state = self
            .inner
            .state
            .clone()
            .ok_or_else(|| "This jam has no song folder; see the log.".to_owned())?;
        let song = tokio::task::spawn_blocking(move || make(&state))
            .await
            .map_err(|e| e.to_string())??;
        let view = song.view();
        *self.inner.song.lock().unwrap_or_else(|e| e.into_inner()) = Some(song.clone());
        if let Some(jam) = self.inner.jam.read().await.as_ref() {
            jam.share_song(song).await;
        }
        Ok(view)
    }

    /// Writes the shared song as a Standard MIDI File to `path`; the answer
    /// says where and how big.
    pub async fn export_song(&self, path: String) -> Result<String, String> {
        let song = self
            .current_song()
            .ok_or_else(|| "This jam shares no song.".to_owned())?;
        let path = PathBuf::from(path.trim());
        let shown = path.display().to_string();
        let n = tokio::task::spawn_blocking(move || crate::shared_song::export(&song, &path))
            .await
            .map_err(|e| e.to_string())??;
        Ok(format!("Exported {n} bytes to {shown}."))
    }

    /// MidiEditor's STUN/TURN text read into rows.
    pub fn import_ice(&self, text: &str) -> Result<Vec<IceRow>, FieldError> {
        crate::settings::import_midieditor_ice(text)
    }

    /// Rows in MidiEditor's STUN/TURN syntax.
    pub fn export_ice(&self, rows: &[IceRow]) -> String {
        crate::settings::export_midieditor_ice(rows)
    }

    /// Writes the saved rendezvous URL (or, when it is the bundled one, the
    /// address of this jam) and the STUN/TURN list into MidiEditor's own
    /// settings.
    pub async fn apply_to_midieditor(&self) -> Result<crate::midieditor::ApplyReport, String> {
        let settings = self.saved();
        let url = match settings.rendezvous_url.trim() {
            "" => self.view().urls.first().cloned().unwrap_or_default(),
            u => u.to_owned(),
        };
        let location = self.inner.config.midieditor.clone().ok_or_else(|| {
            "MidiEditor's settings location is unknown on this system.".to_owned()
        })?;
        let mut rows = settings.ice_servers;
        // No servers of the user's own: MidiEditor's blank list means ten
        // public STUN servers, which offline cost every WAN join its whole
        // gathering timeout. Our LAN STUN responder answers at once.
        if rows.is_empty() {
            if let Some(stun) = self.view().stun_servers.first() {
                rows.push(crate::settings::IceRow {
                    url: stun.clone(),
                    username: String::new(),
                    credential: String::new(),
                });
            }
        }
        tokio::task::spawn_blocking(move || {
            crate::midieditor::apply(&location, &url, &rows).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// "Test connection" with the pane's values (saved or not): its own
    /// session and peers, one test at a time; progress goes out as
    /// [`Event::CheckProgress`], the verdict is the answer.
    pub async fn test_connection(&self, form: Value) -> Result<crate::check::Outcome, String> {
        let settings = read_form(form).map_err(|errors| {
            let words: Vec<String> = errors.into_iter().map(|e| e.message).collect();
            format!("Fix the settings first: {}", words.join(" "))
        })?;
        if self.inner.checking.swap(true, Ordering::SeqCst) {
            return Err("A test is already running.".to_owned());
        }
        let _reset = Reset(&self.inner.checking);
        let bundled = self.view().urls.first().cloned();
        let cfg = crate::check::config_for(
            &settings,
            bundled.as_deref(),
            &self.inner.config.options.ice_bind,
        )?;
        let sink = self.inner.sink.clone();
        let report = jam::check::run_check(&cfg, move |p| sink(Event::CheckProgress(p))).await;
        tracing::info!(
            "connection test: {:?} in {:.0} ms",
            report.verdict,
            report.duration_ms
        );
        Ok(crate::check::outcome(report))
    }

    /// Starts looking for jams on the LAN (on the interfaces the settings
    /// name; none named: the LAN ones). The list goes out as
    /// [`Event::LanJams`]; the answer is the list now.
    pub async fn browse_lan(&self) -> Result<DiscoveryView, String> {
        let mut slot = self.inner.discovery.lock().await;
        if let Some(d) = slot.as_ref() {
            return Ok(d.view());
        }
        let names = self.saved().mdns_interfaces;
        let choice = if names.is_empty() {
            lan::InterfaceChoice::DefaultLan
        } else {
            lan::InterfaceChoice::Named(names)
        };
        let d = tokio::task::spawn_blocking(move || Discovery::start(choice))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("Cannot look for jams on the local network: {e}"))?;
        let view = d.view();
        forward(self.inner.sink.clone(), d.subscribe(), Event::LanJams, None);
        *slot = Some(d);
        Ok(view)
    }

    /// Joins a jam: one found on the LAN (`found`, its id in the list) or a
    /// typed address, with a code unless the jam is open. A jam joined
    /// before is left first. Progress and the peers go out as
    /// [`Event::JoinView`]. This computer's MIDI ports play in the joined
    /// jam until it ends or we leave; the hosted jam goes on without them.
    pub async fn join(
        &self,
        found: Option<String>,
        address: Option<String>,
        code: Option<String>,
    ) -> Result<(), String> {
        let settings = self.saved();
        let jam_found = match &found {
            Some(id) => {
                let d = self.inner.discovery.lock().await;
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
            (Some(j), _) => crate::joining::JoinTarget::Found(j),
            (None, Some(a)) => crate::joining::JoinTarget::Typed(a),
            (None, None) => return Err("Choose a jam or type its address.".to_owned()),
        };
        let cfg = crate::joining::join_config(
            &settings,
            target,
            code,
            &self.inner.config.options.ice_bind,
        )?;
        let lan = jam_found.as_ref().and_then(|j| j.lan.clone());
        self.join_with(cfg, lan, Rejoin::Not).await
    }

    /// [`join`](Self::join) from its config: leaves a jam joined before,
    /// starts the joiner (over TCP to a MidiEditor LAN Live host), forwards
    /// its view, routes this computer's ports into it, and watches its end.
    /// A host that ends the session saying it restarts under the same code
    /// (another song or name on its side) is joined again by itself: after
    /// [`REJOIN_AFTER`], then on failure up to [`REJOINS`] times in all,
    /// unless the user left or joined elsewhere meanwhile. Boxed: the task
    /// watching the end calls it again, and a future cannot hold itself.
    fn join_with(
        &self,
        cfg: jam::joiner::JoinConfig,
        lan: Option<jam::joiner::LanTarget>,
        rejoin: Rejoin,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(async move {
            let mut joined = self.inner.joined.lock().await;
            if let Some(old) = joined.take() {
                self.leave_joined(old).await;
            }
            let (joiner, _events) = match lan.clone() {
                Some(target) => jam::joiner::Joiner::start_lan(cfg.clone(), target),
                None => jam::joiner::Joiner::start(cfg.clone()),
            };
            let left_by_hand = self.inner.left_by_hand.load(Ordering::SeqCst);
            let view = joiner.watch();
            let generation = self.inner.join_generation.fetch_add(1, Ordering::SeqCst) + 1;
            let inner = Arc::downgrade(&self.inner);
            forward(
                self.inner.sink.clone(),
                joiner.watch(),
                Event::JoinView,
                Some(Box::new(move || {
                    inner
                        .upgrade()
                        .is_some_and(|i| i.join_generation.load(Ordering::SeqCst) == generation)
                })),
            );
            let midi = crate::joined_midi::JoinedMidi::start(&joiner);
            let ports = midi.ports();
            if let Some(jam) = self.inner.jam.read().await.as_ref() {
                jam.route_ports(Some(ports.clone())).await;
            }
            // A joined jam that ends by itself (host gone, kicked) gives the
            // ports back; `return_ports` ignores ports that moved on since.
            // Weak: a join left by hand never "ends", and its task must not
            // keep the whole app alive.
            let ended = midi.ended();
            let back = Arc::downgrade(&self.inner);
            tokio::spawn(async move {
                ended.await;
                let Some(inner) = back.upgrade() else { return };
                {
                    let jam = inner.jam.read().await;
                    if let Some(jam) = jam.as_ref() {
                        jam.return_ports(ports).await;
                    }
                }
                // Join again? Only while nothing else happened: no leave by
                // hand, no other join since this one.
                let (restarting, failed) = {
                    let v = view.borrow();
                    (v.host_restarting, v.phase == jam::joiner::JoinPhase::Failed)
                };
                // A host that restarts again later gets the full count again;
                // a failed try of ours uses up one.
                let tries_left = match rejoin {
                    _ if restarting => REJOINS,
                    Rejoin::Try(n) if failed => n,
                    _ => 0,
                };
                let still = |i: &Inner| {
                    i.left_by_hand.load(Ordering::SeqCst) == left_by_hand
                        && i.join_generation.load(Ordering::SeqCst) == generation
                };
                if tries_left == 0 || !still(&inner) {
                    return;
                }
                let wait = REJOIN_AFTER * (REJOINS + 1 - tries_left);
                tracing::info!(
                    "the joined host restarts under the same code: joining again in {wait:?}"
                );
                tokio::time::sleep(wait).await;
                if !still(&inner) {
                    return;
                }
                let app = App { inner };
                if let Err(e) = app.join_with(cfg, lan, Rejoin::Try(tries_left - 1)).await {
                    tracing::warn!("joining the restarted jam again failed: {e}");
                }
            });
            *joined = Some(Joined { joiner, midi });
            Ok(())
        })
    }

    /// Leaves the joined jam (the host is told). A rejoin after a host
    /// restart that is still waiting is called off.
    pub async fn leave(&self) {
        self.inner.left_by_hand.fetch_add(1, Ordering::SeqCst);
        let j = self.inner.joined.lock().await.take();
        if let Some(j) = j {
            self.leave_joined(j).await;
        }
    }

    /// The order of leaving: the synth here and the host release what is
    /// still sounding, the ports go back to our own jam, then the host is
    /// told.
    async fn leave_joined(&self, j: Joined) {
        let ports = j.midi.ports();
        j.midi.close().await;
        if let Some(jam) = self.inner.jam.read().await.as_ref() {
            jam.return_ports(ports).await;
        }
        j.joiner.leave().await;
    }

    /// The window rendered a code: the start-up figure, once per run.
    pub fn code_shown(&self) -> Option<CodeShown> {
        if self.inner.code_reported.swap(true, Ordering::SeqCst) {
            return None;
        }
        let ms = self.inner.config.started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!("code shown {ms:.0} ms after start");
        let view = self.view();
        Some(CodeShown {
            event: "codeShown",
            ms: (ms * 10.0).round() / 10.0,
            code: view.code,
            urls: view.urls,
        })
    }

    /// Opens the log folder in the file manager. Returns the folder and
    /// whether a file manager was started, so the window can show the path
    /// where none exists.
    pub fn open_log_folder(&self) -> (String, bool) {
        let dir = self.inner.config.log_dir.clone();
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

    /// The user closed the window. With peers connected the window is asked
    /// to confirm ([`Event::ConfirmClose`]); otherwise the app quits.
    pub fn close_requested(&self) -> CloseAnswer {
        if self.inner.closing.load(Ordering::SeqCst) {
            return CloseAnswer::Closing;
        }
        let peers = self.connected_peers();
        if peers > 0 {
            (self.inner.sink)(Event::ConfirmClose(peers));
            CloseAnswer::Ask { peers }
        } else {
            self.inner.closing.store(true, Ordering::SeqCst);
            CloseAnswer::Quit
        }
    }

    /// The user confirmed quitting: from now on the window may close.
    /// Follow with [`shutdown`](Self::shutdown).
    pub fn quit(&self) {
        self.inner.closing.store(true, Ordering::SeqCst);
    }

    /// Stops everything, in order: the joined jam is left (ports back), the
    /// LAN browser stops, the hosted jam ends (peers told, session removed,
    /// advert withdrawn).
    pub async fn shutdown(&self) {
        self.leave().await;
        let discovery = self.inner.discovery.lock().await.take();
        if let Some(d) = discovery {
            // Stopping the browser joins its thread: off the async runtime.
            let _ = tokio::task::spawn_blocking(move || d.stop()).await;
        }
        let jam = self.inner.jam.write().await.take();
        if let Some(jam) = jam {
            jam.stop().await;
        }
    }
}

/// The session hub in `dir`: its folder, the song to share and what to
/// tell the user. A folder that cannot be used means a jam without a song,
/// said in a notice, never no jam.
fn open_hub(
    dir: Option<&std::path::Path>,
) -> (
    Option<jam::hub::StateDir>,
    crate::session::Hub,
    Option<(crate::session::Level, String)>,
) {
    use crate::session::Level;
    let Some(dir) = dir else {
        return (None, crate::session::Hub::default(), None);
    };
    let opened = jam::hub::StateDir::open(dir)
        .and_then(|state| crate::shared_song::start(&state).map(|h| (state, h)));
    match opened {
        Ok((state, (hub, continued))) => {
            let notice = continued.then(|| {
                let name = hub.song.as_ref().map(|s| s.view().name).unwrap_or_default();
                (Level::Info, format!("Continuing the saved song {name}."))
            });
            (Some(state), hub, notice)
        }
        Err(e) => {
            tracing::warn!("session folder {}: {e}", dir.display());
            (
                None,
                crate::session::Hub::default(),
                Some((
                    Level::Warning,
                    format!("No shared song: cannot use {} ({e}).", dir.display()),
                )),
            )
        }
    }
}

fn one_error(message: String) -> Vec<FieldError> {
    vec![FieldError {
        field: String::new(),
        message,
    }]
}

/// The pane's values as settings, normalised and validated.
fn read_form(form: Value) -> Result<Settings, Vec<FieldError>> {
    crate::settings::from_form(form)
}

/// Sends every new value of `rx` to `sink` as `wrap(value)` (the current
/// one first), until its sender is gone or `still` says this forwarder no
/// longer speaks for the view.
fn forward<T>(
    sink: Sink,
    mut rx: watch::Receiver<T>,
    wrap: fn(T) -> Event,
    still: Option<Box<dyn Fn() -> bool + Send + Sync>>,
) where
    T: Clone + Send + Sync + 'static,
{
    tokio::spawn(async move {
        loop {
            let v = rx.borrow_and_update().clone();
            if still.as_ref().is_some_and(|f| !f()) {
                break;
            }
            sink(wrap(v));
            if rx.changed().await.is_err() {
                break;
            }
        }
    });
}
