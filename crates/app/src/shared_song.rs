//! The app as a session hub: the song MidiEditor joiners share, kept in the
//! app's state folder (`<config>/session/`: the host's machine id and the
//! saved versions of the song, see [`jam::hub::StateDir`]).
//!
//! A start continues the newest saved song when there is one, so closing
//! the app (or a crash) never loses the session; otherwise it shares a new
//! empty song. The machine id is created once and read back, so MidiEditor
//! joiners see the same host after a restart.

use std::path::{Path, PathBuf};

use jam::hub::{SongShare, StateDir};

/// What the host screen shows about the song.
pub use jam::hub::SongView;

use crate::session::Hub;

/// The name a new empty song is shared as.
pub const NEW_SONG_NAME: &str = "jam.mid";

/// The state folder's name in the app's config folder.
pub const STATE_FOLDER: &str = "session";

/// The hub a start shares: the saved song continued, or a new one, with
/// the stable machine id. Returns whether a saved song was continued.
pub fn start(state: &StateDir) -> Result<(Hub, bool), String> {
    let machine_id = state.machine_id()?;
    let (song, continued) = match state.offer() {
        Some(_) => match state.resume() {
            Ok(song) => (song, true),
            // An unreadable newest version must not stop hosting: a new
            // song starts and the old versions stay on disk.
            Err(e) => {
                tracing::warn!("cannot continue the saved song: {e}");
                (state.new_song(NEW_SONG_NAME)?, false)
            }
        },
        None => (state.new_song(NEW_SONG_NAME)?, false),
    };
    Ok((
        Hub {
            song: Some(song),
            machine_id,
        },
        continued,
    ))
}

/// Writes `song` as a Standard MIDI File to `path` (a temporary file
/// beside it, then renamed: a failed export never leaves half a file).
/// Returns the bytes written.
pub fn export(song: &SongShare, path: &Path) -> Result<usize, String> {
    if path.as_os_str().is_empty() {
        return Err("Choose a file to export to.".to_owned());
    }
    let bytes = song
        .export()
        .map_err(|e| format!("Cannot export the song: {e}"))?;
    let tmp = temp_beside(path);
    let written = std::fs::write(&tmp, &bytes).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("Cannot write {}: {e}", path.display()));
    }
    Ok(bytes.len())
}

fn temp_beside(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    path.with_file_name(name)
}
