//! The session hub: the host's shared song and what MidiEditor's host does
//! with it, without I/O and without knowing the transport.
//!
//! A MidiEditor host ships its file to each joiner right after
//! `sessionWelcome`, applies every `hunks` frame to its own document,
//! answers the sender with `hunksAck` and passes the frame on unchanged to
//! every other peer; in Show mode only the presenter's edits, `playback` and
//! `viewState` count. [`Hub`] does the same on decoded frames per peer and
//! returns [`Action::Send`]s, so a WebRTC peer and a LAN (TCP) peer are
//! served alike by whichever engine feeds it. Unlike MidiEditor's host it
//! outlives every peer and saves each change (see [`song::Store`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::{json, Value};
use song::{smf, Saved, Song, Store};

use crate::framing;
use crate::protocol::{Action, JamConfig, PeerId, SessionMode};

/// What the app shows about the song.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SongView {
    /// The file name joiners receive it as.
    pub name: String,
    pub tracks: usize,
    pub track_names: Vec<String>,
    pub events: usize,
    pub end_tick: u32,
    pub ticks_per_quarter: u16,
    pub seconds: f64,
    /// Display name of who changed it last; `None` until someone edits.
    pub last_editor: Option<String>,
    /// Changes applied since it was loaded or continued.
    pub edits: u64,
    /// Frames refused as malformed or hostile.
    pub refused: u64,
    /// Where versions are saved; `None`: not saved (tests).
    pub saved_in: Option<String>,
    /// The last save failure, if the last save failed.
    pub save_error: Option<String>,
}

/// Something the host should report.
#[derive(Debug, Clone, PartialEq)]
pub enum HubNote {
    /// The song changed (or was replaced).
    Changed(SongView),
    /// A peer's frame was refused, or saving failed; hosting goes on.
    Problem(String),
}

/// The song and the session rules; see the module doc.
#[derive(Debug)]
pub struct Hub {
    song: Song,
    name: String,
    last_editor: Option<String>,
    store: Option<Store>,
    edits: u64,
    refused: u64,
    save_error: Option<String>,
    /// The current Show-mode presenter's machine id; `None`: the host.
    presenter: Option<String>,
    /// The framed `filetransfer`, built once per version of the song.
    file_frame: Option<Vec<u8>>,
}

impl Hub {
    /// A hub sharing `song` as `name`, saving to `store` (its first version
    /// is saved at once, so a continue offer exists from the start).
    pub fn new(song: Song, name: &str, store: Option<Store>) -> Hub {
        let mut hub = Hub {
            song,
            name: file_name(name),
            last_editor: None,
            store,
            edits: 0,
            refused: 0,
            save_error: None,
            presenter: None,
            file_frame: None,
        };
        hub.save();
        hub
    }

    /// A hub continuing a saved version (its editor and name kept).
    pub fn resume(saved: Saved, store: Option<Store>) -> Hub {
        Hub {
            song: saved.song,
            name: file_name(&saved.name),
            last_editor: saved.last_editor,
            store,
            edits: 0,
            refused: 0,
            save_error: None,
            presenter: None,
            file_frame: None,
        }
    }

    pub fn song(&self) -> &Song {
        &self.song
    }

    pub fn view(&self) -> SongView {
        let tracks = usize::from(self.song.tracks);
        SongView {
            name: self.name.clone(),
            tracks,
            track_names: (0..self.song.tracks)
                .map(|t| self.song.track_name(t).unwrap_or("").to_owned())
                .collect(),
            events: self.song.len(),
            end_tick: self.song.end_tick,
            ticks_per_quarter: self.song.ticks_per_quarter,
            seconds: self.song.seconds(),
            last_editor: self.last_editor.clone(),
            edits: self.edits,
            refused: self.refused,
            saved_in: self.store.as_ref().map(|s| s.dir().display().to_string()),
            save_error: self.save_error.clone(),
        }
    }

    /// The song as a Standard MIDI File.
    pub fn export(&self) -> Result<Vec<u8>, smf::SmfError> {
        smf::export(&self.song)
    }

    /// A welcomed peer gets the song as `filetransfer`, as MidiEditor's host
    /// does right after `sessionWelcome`. Any size: the writer splits frames
    /// larger than one message.
    pub fn joined(&mut self, peer: PeerId) -> Vec<Action> {
        if self.file_frame.is_none() {
            let Ok(bytes) = self.export() else {
                return Vec::new();
            };
            let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes);
            self.file_frame = Some(framing::encode_json(&json!({
                "type": "filetransfer",
                "filename": self.name,
                "bytesB64": b64,
            })));
        }
        let bytes = self.file_frame.clone().unwrap_or_default();
        vec![Action::Send { peer, bytes }]
    }

    /// A frame from a welcomed peer that the protocol itself does not act
    /// on. `others` are the other welcomed peers. Returns what to send and
    /// what to report; frames the hub does not know are ignored.
    pub fn frame(
        &mut self,
        from: Sender<'_>,
        kind: &str,
        body: &Value,
        others: &[PeerId],
        cfg: &JamConfig,
    ) -> (Vec<Action>, Vec<HubNote>) {
        let mut out = Vec::new();
        let mut notes = Vec::new();
        let is_presenter = self.presenter.as_deref() == Some(from.machine_id);
        let show = cfg.mode == SessionMode::Show;
        match kind {
            "hunks" => {
                // MidiEditor's host drops a viewer's edits silently in Show
                // mode (its UI should not have let them happen).
                if show && !is_presenter {
                    return (out, notes);
                }
                let frame_id = body.get("frameId").and_then(Value::as_u64).unwrap_or(0);
                let (applied, skipped) = match self.song.apply_hunks(body) {
                    Ok(r) => {
                        if r.changed() {
                            self.edits += 1;
                            self.last_editor = Some(from.display_name.to_owned());
                            self.file_frame = None;
                            self.save();
                            notes.push(HubNote::Changed(self.view()));
                        }
                        relay(body, others, &mut out);
                        (r.applied(), r.skipped)
                    }
                    Err((why, r)) => {
                        self.refused += 1;
                        notes.push(HubNote::Problem(format!(
                            "refused an edit from {}: {why}",
                            from.display_name
                        )));
                        (0, r.skipped)
                    }
                };
                let ack = json!({"type": "hunksAck", "frameId": frame_id, "applied": applied,
                                 "skipped": skipped, "ackBy": cfg.host_display_name});
                out.push(Action::Send {
                    peer: from.id,
                    bytes: framing::encode_json(&ack),
                });
            }
            // The presenter leads: its transport and view go to everyone
            // else, as MidiEditor's host relays them (in Show mode only).
            "playback" | "viewState" if show && is_presenter => relay(body, others, &mut out),
            // Hat passing (Show mode): the presenter hands the hat on or
            // gives it back; a request goes to the presenter, or is granted
            // at once while the host holds the hat (a hub has nobody at the
            // keyboard to ask).
            "hatTransferred" if show && is_presenter => {
                let to = body.get("newPresenterMachineId").and_then(Value::as_str);
                if let Some(to) = to.filter(|t| !t.is_empty() && t.len() <= 128) {
                    self.presenter = (to != cfg.host_machine_id).then(|| to.to_owned());
                    broadcast(body, others, Some(from.id), &mut out);
                }
            }
            "yieldHat" if show && is_presenter => {
                self.presenter = None;
                let f = json!({"type": "hatTransferred", "newPresenterMachineId": cfg.host_machine_id,
                               "newPresenterDisplayName": cfg.host_display_name, "reason": "yield"});
                broadcast(&f, others, Some(from.id), &mut out);
            }
            "requestHat" if show && !is_presenter => {
                if self.presenter.is_none() {
                    self.presenter = Some(from.machine_id.to_owned());
                    let f = json!({"type": "hatTransferred", "newPresenterMachineId": from.machine_id,
                                   "newPresenterDisplayName": from.display_name, "reason": "transfer"});
                    broadcast(&f, others, Some(from.id), &mut out);
                } else if let Some(p) = from.presenter_peer {
                    let f = json!({"type": "requestHat", "machineId": from.machine_id,
                                   "displayName": from.display_name});
                    out.push(Action::Send {
                        peer: p,
                        bytes: framing::encode_json(&f),
                    });
                }
            }
            _ => {}
        }
        (out, notes)
    }

    /// An edit the host itself made (the Record switch): applied like a
    /// peer's `hunks` and relayed to every welcomed peer in `to`, with no
    /// ack (nobody waits for one). A refused frame changes nothing.
    pub fn host_edit(
        &mut self,
        body: &Value,
        to: &[PeerId],
        editor: &str,
    ) -> (Vec<Action>, Vec<HubNote>) {
        let mut out = Vec::new();
        let mut notes = Vec::new();
        match self.song.apply_hunks(body) {
            Ok(r) if r.changed() => {
                self.edits += 1;
                self.last_editor = Some(editor.to_owned());
                self.file_frame = None;
                self.save();
                notes.push(HubNote::Changed(self.view()));
                relay(body, to, &mut out);
            }
            Ok(_) => {}
            Err((why, _)) => notes.push(HubNote::Problem(format!("recording refused: {why}"))),
        }
        (out, notes)
    }

    /// The tempo at tick 0 (µs per quarter; 0 when the song has none).
    pub fn first_tempo(&self) -> u32 {
        self.song
            .events()
            .filter(|e| e.tick == 0)
            .find_map(|e| match e.body {
                song::event::Body::Tempo { micros_per_quarter } => Some(micros_per_quarter),
                _ => None,
            })
            .unwrap_or(0)
    }

    /// The machine id of the current presenter, when it is a peer.
    pub fn presenter(&self) -> Option<&str> {
        self.presenter.as_deref()
    }

    /// A presenter who left gives the hat back to the host, so the session
    /// is never led by nobody.
    pub fn peer_left(&mut self, machine_id: Option<&str>) {
        if machine_id.is_some() && self.presenter.as_deref() == machine_id {
            self.presenter = None;
        }
    }

    fn save(&mut self) {
        let Some(store) = self.store.as_mut() else {
            return;
        };
        let saved = Saved {
            name: self.name.clone(),
            last_editor: self.last_editor.clone(),
            saved_at: types::wall_ms(),
            song: self.song.clone(),
        };
        self.save_error = store.save(&saved).err().map(|e| e.to_string());
    }
}

/// The peer a frame came from, as the protocol knows it (never what the
/// frame claims).
#[derive(Debug, Clone, Copy)]
pub struct Sender<'a> {
    pub id: PeerId,
    pub machine_id: &'a str,
    pub display_name: &'a str,
    /// The connection of the current presenter, if it is a peer.
    pub presenter_peer: Option<PeerId>,
}

fn relay(body: &Value, others: &[PeerId], out: &mut Vec<Action>) {
    broadcast(body, others, None, out);
}

/// Sends `body` to `others`, and also to `also` (the sender itself, for
/// frames everyone must see, like a hat change).
fn broadcast(body: &Value, others: &[PeerId], also: Option<PeerId>, out: &mut Vec<Action>) {
    let bytes = framing::encode_json(body);
    for &peer in others.iter().chain(also.as_ref()) {
        out.push(Action::Send {
            peer,
            bytes: bytes.clone(),
        });
    }
}

/// A plain `.mid` file name (MidiEditor saves what it receives under it).
fn file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base.chars().filter(|c| !c.is_control()).take(100).collect();
    let clean = clean.trim().to_owned();
    if clean.is_empty() || clean.starts_with('.') {
        "jam.mid".into()
    } else if clean.to_ascii_lowercase().ends_with(".mid") {
        clean
    } else {
        format!("{clean}.mid")
    }
}

/// The hub shared by the host engine and the app: the engine applies
/// frames, the app reads the view and exports, and a host restarted by the
/// hosted service keeps the same song.
#[derive(Clone, Debug)]
pub struct SongShare(Arc<Mutex<Hub>>);

impl PartialEq for SongShare {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl SongShare {
    pub fn new(hub: Hub) -> SongShare {
        SongShare(Arc::new(Mutex::new(hub)))
    }

    /// The hub, even if a panic elsewhere poisoned the lock (its state is
    /// changed only by whole-frame operations).
    pub fn lock(&self) -> MutexGuard<'_, Hub> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn view(&self) -> SongView {
        self.lock().view()
    }

    pub fn export(&self) -> Result<Vec<u8>, smf::SmfError> {
        self.lock().export()
    }
}

/// The host's state directory: its stable machine id and the saved
/// versions of the shared song (`song/`). The app and `midi-rdv host` both
/// start their session through it.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// What a start finds to continue.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Offer {
    pub name: String,
    pub tracks: usize,
    pub events: usize,
    pub seconds: f64,
    pub last_editor: Option<String>,
    pub saved_at: u64,
}

impl StateDir {
    pub fn open(root: impl Into<PathBuf>) -> Result<StateDir, String> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
        Ok(StateDir { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host's machine id, created once and then read back, so
    /// MidiEditor sees the same presenter after a restart.
    pub fn machine_id(&self) -> Result<String, String> {
        let path = self.root.join("machine-id");
        if let Ok(s) = std::fs::read_to_string(&path) {
            let id = s.trim();
            if !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_graphic()) {
                return Ok(id.to_owned());
            }
        }
        let id = crate::host::new_machine_id();
        let tmp = self.root.join(".machine-id.tmp");
        std::fs::write(&tmp, &id)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(id)
    }

    fn store(&self) -> Result<Store, String> {
        Store::open(self.root.join("song")).map_err(|e| e.to_string())
    }

    /// The saved song a start may continue.
    pub fn offer(&self) -> Option<Offer> {
        let (_, saved) = self.store().ok()?.latest().ok()??;
        Some(Offer {
            name: saved.name,
            tracks: usize::from(saved.song.tracks),
            events: saved.song.len(),
            seconds: saved.song.seconds(),
            last_editor: saved.last_editor,
            saved_at: saved.saved_at,
        })
    }

    /// Continues the newest saved song.
    pub fn resume(&self) -> Result<SongShare, String> {
        let store = self.store()?;
        let (_, saved) = store
            .latest()
            .map_err(|e| e.to_string())?
            .ok_or("no saved song to continue")?;
        Ok(SongShare::new(Hub::resume(saved, Some(store))))
    }

    /// Shares a Standard MIDI File from now on (saved as a new version).
    pub fn from_file(&self, path: &Path) -> Result<SongShare, String> {
        let size = std::fs::metadata(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        if size > MAX_SONG_FILE as u64 {
            return Err(too_big(&path.display().to_string(), size));
        }
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        self.from_bytes(name, &bytes)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Shares the Standard MIDI File `bytes` under the file name `name`
    /// (what a file picker hands over: the window reads the file, the app
    /// never sees its path). Only the last path component of `name` is
    /// kept, without control characters and at most 120 characters;
    /// nothing usable left gives `jam.mid`.
    pub fn from_bytes(&self, name: &str, bytes: &[u8]) -> Result<SongShare, String> {
        if bytes.len() > MAX_SONG_FILE {
            return Err(too_big("the file", bytes.len() as u64));
        }
        let song = smf::load(bytes).map_err(|e| e.to_string())?;
        Ok(SongShare::new(Hub::new(
            song,
            &song_file_name(name),
            Some(self.store()?),
        )))
    }

    /// Shares a new empty song (MidiEditor's new-file shape).
    pub fn new_song(&self, name: &str) -> Result<SongShare, String> {
        let mut song = Song::new();
        song.add_midieditor_defaults();
        Ok(SongShare::new(Hub::new(song, name, Some(self.store()?))))
    }
}

/// The largest MIDI file a jam shares: its `filetransfer` frame (base64,
/// 4/3 of the file, plus JSON) stays well under MidiEditor's 32 MiB frame
/// cap. Real songs are a few hundred KB.
pub const MAX_SONG_FILE: usize = 16 * 1024 * 1024;

fn too_big(what: &str, size: u64) -> String {
    format!(
        "{what} is {} MB; a shared song can be at most {} MB",
        size / 1_000_000,
        MAX_SONG_FILE / 1_000_000
    )
}

/// A file name as a picker gives it, made safe to show and to send (see
/// [`StateDir::from_bytes`]).
pub fn song_file_name(name: &str) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last.chars().filter(|c| !c.is_control()).take(120).collect();
    let clean = clean.trim();
    if clean.is_empty() || clean == "." || clean == ".." {
        "jam.mid".to_owned()
    } else {
        clean.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::decode;

    #[test]
    fn a_picked_file_name_keeps_its_last_component_only() {
        assert_eq!(song_file_name("Blues.mid"), "Blues.mid");
        assert_eq!(song_file_name("/home/me/Blues.mid"), "Blues.mid");
        assert_eq!(song_file_name("C:\\Music\\Blues.mid"), "Blues.mid");
        assert_eq!(song_file_name("bad\u{1b}[2Jname.mid"), "bad[2Jname.mid");
        assert_eq!(song_file_name(""), "jam.mid");
        assert_eq!(song_file_name("../"), "jam.mid");
        assert_eq!(song_file_name(".."), "jam.mid");
        assert_eq!(song_file_name(&"x".repeat(500)).chars().count(), 120);
    }

    fn cfg(mode: SessionMode) -> JamConfig {
        JamConfig {
            mode,
            host_machine_id: "host".into(),
            host_display_name: "Hub".into(),
            ..JamConfig::default()
        }
    }

    fn from(id: u64, m: &str) -> Sender<'_> {
        Sender {
            id: PeerId(id),
            machine_id: m,
            display_name: m,
            presenter_peer: None,
        }
    }

    fn sent(a: &[Action]) -> Vec<(u64, Value)> {
        a.iter()
            .filter_map(|a| match a {
                Action::Send { peer, bytes } => match decode(bytes, usize::MAX).ok()? {
                    crate::framing::Frame::Json { body, .. } => Some((peer.0, body)),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }

    fn note_hunks(tick: u32) -> Value {
        json!({"type": "hunks", "author": "A", "machineId": "a", "frameId": 7, "hunks": [{
            "added": [{"type": "note", "tick": tick, "note": 60, "velocity": 90, "duration": 24,
                       "channel": 0, "track": 1}]}]})
    }

    #[test]
    fn a_joiner_gets_the_song_as_a_midi_file() {
        let mut s = Song::new();
        s.add_midieditor_defaults();
        s.apply_hunks(&note_hunks(48)).unwrap();
        let mut hub = Hub::new(s.clone(), "/x/My Song", None);
        let f = sent(&hub.joined(PeerId(3)));
        assert_eq!(f[0].0, 3);
        assert_eq!(f[0].1["filename"], "My Song.mid");
        let b64 = f[0].1["bytesB64"].as_str().unwrap();
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
        let back = smf::load(&bytes).unwrap();
        assert_eq!(
            back.events().collect::<Vec<_>>(),
            s.events().collect::<Vec<_>>()
        );
    }

    #[test]
    fn hunks_are_applied_acked_and_relayed_to_the_others() {
        let mut hub = Hub::new(Song::new(), "a.mid", None);
        let c = cfg(SessionMode::Edit);
        let (a, notes) = hub.frame(
            from(1, "a"),
            "hunks",
            &note_hunks(48),
            &[2, 3].map(PeerId),
            &c,
        );
        let f = sent(&a);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0].1, note_hunks(48));
        assert_eq!((f[0].0, f[1].0), (2, 3));
        assert_eq!(f[2].0, 1);
        assert_eq!(
            f[2].1,
            json!({"type": "hunksAck", "frameId": 7, "applied": 1, "skipped": 0, "ackBy": "Hub"})
        );
        assert!(
            matches!(&notes[..], [HubNote::Changed(v)] if v.events == 1 && v.last_editor.as_deref() == Some("a"))
        );
        // A late joiner's file has the edit.
        let late = sent(&hub.joined(PeerId(9)));
        let b64 = late[0].1["bytesB64"].as_str().unwrap();
        let bytes =
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).unwrap();
        // (Plus the tempo and time signature every opened file has.)
        assert_eq!(smf::load(&bytes).unwrap().len(), 3);
    }

    #[test]
    fn a_hostile_frame_is_refused_acked_and_not_relayed() {
        let mut hub = Hub::new(Song::new(), "a.mid", None);
        let mut bad = note_hunks(48);
        bad["hunks"][0]["added"][0]["track"] = json!(100_000);
        let (a, notes) = hub.frame(
            from(1, "a"),
            "hunks",
            &bad,
            &[PeerId(2)],
            &cfg(SessionMode::Edit),
        );
        let f = sent(&a);
        assert_eq!(f.len(), 1);
        assert_eq!(
            (f[0].1["applied"].as_u64(), f[0].1["skipped"].as_u64()),
            (Some(0), Some(1))
        );
        assert!(matches!(&notes[..], [HubNote::Problem(_)]));
        assert!(hub.song().is_empty());
        assert_eq!(hub.view().refused, 1);
    }

    #[test]
    fn show_mode_follows_the_presenter_only() {
        let mut hub = Hub::new(Song::new(), "a.mid", None);
        let c = cfg(SessionMode::Show);
        let others = [PeerId(2)];
        // Nobody but the host holds the hat: a viewer's edit is dropped.
        let (a, _) = hub.frame(from(1, "a"), "hunks", &note_hunks(0), &others, &c);
        assert!(a.is_empty() && hub.song().is_empty());
        let play = json!({"type": "playback", "action": "start", "tickPosition": 0, "sender": "a"});
        assert!(hub
            .frame(from(1, "a"), "playback", &play, &others, &c)
            .0
            .is_empty());
        // It asks for the hat and, the host holding it, gets it.
        let (a, _) = hub.frame(
            from(1, "a"),
            "requestHat",
            &json!({"type": "requestHat"}),
            &others,
            &c,
        );
        let f = sent(&a);
        assert_eq!(f.len(), 2);
        assert!(f.iter().all(|(_, b)| b["newPresenterMachineId"] == "a"));
        assert_eq!(hub.presenter(), Some("a"));
        // Now its playback and edits go through.
        assert_eq!(
            sent(&hub.frame(from(1, "a"), "playback", &play, &others, &c).0),
            [(2, play)]
        );
        assert_eq!(
            sent(
                &hub.frame(from(1, "a"), "hunks", &note_hunks(0), &others, &c)
                    .0
            )
            .len(),
            2
        );
        // Edit mode ignores playback, as MidiEditor's host does.
        let e = cfg(SessionMode::Edit);
        assert!(hub
            .frame(from(1, "a"), "playback", &json!({}), &others, &e)
            .0
            .is_empty());
        // Leaving gives the hat back.
        hub.peer_left(Some("a"));
        assert_eq!(hub.presenter(), None);
    }

    #[test]
    fn a_state_dir_keeps_the_machine_id_and_offers_the_song() {
        let root = std::env::temp_dir().join(format!("hub-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let d = StateDir::open(&root).unwrap();
        let id = d.machine_id().unwrap();
        assert_eq!(StateDir::open(&root).unwrap().machine_id().unwrap(), id);
        assert!(d.offer().is_none());
        let share = d.new_song("x").unwrap();
        let c = cfg(SessionMode::Edit);
        share
            .lock()
            .frame(from(1, "a"), "hunks", &note_hunks(5), &[], &c);
        drop(share);
        let o = d.offer().unwrap();
        assert_eq!(
            (o.name.as_str(), o.events, o.last_editor.as_deref()),
            ("x.mid", 3, Some("a"))
        );
        let again = d.resume().unwrap();
        assert_eq!(again.view().events, 3);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn file_names_are_plain_mid_names() {
        for (i, o) in [
            ("a/b/c.mid", "c.mid"),
            ("", "jam.mid"),
            ("..", "jam.mid"),
            ("x\n", "x.mid"),
            ("C:\\s\\t.MID", "t.MID"),
        ] {
            assert_eq!(file_name(i), o);
        }
    }
}
