//! The song on disk: every applied change is saved as a new numbered
//! version (written to a temporary file, synced, then renamed, so a crash
//! leaves either the old or the new version, never half of one), and only
//! the newest [`KEEP`] versions are kept. The next start finds the newest
//! readable one and offers to continue it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::doc::Song;

/// Versions kept on disk.
pub const KEEP: usize = 20;
/// A saved version larger than this is not read back (a song at the event
/// limit is well below it).
const MAX_SAVED_BYTES: u64 = 512 * 1024 * 1024;

/// One saved version: the song and what the app shows about it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    /// The file name the song is shared as (`filetransfer.filename`).
    pub name: String,
    /// Display name of whoever changed it last (`None`: loaded, not edited).
    pub last_editor: Option<String>,
    /// Wall-clock milliseconds of the save.
    pub saved_at: u64,
    pub song: Song,
}

/// A directory of versions.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    next: u64,
    keep: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("song directory {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("saved song {path} is unreadable: {why}")]
    Corrupt { path: PathBuf, why: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |error| StoreError::Io {
        path: path.to_owned(),
        error,
    }
}

impl Store {
    /// Opens (creating) the directory. Nothing is read yet.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let next = versions(&dir)?.last().map_or(1, |(n, _)| n + 1);
        Ok(Store {
            dir,
            next,
            keep: KEEP,
        })
    }

    pub fn with_keep(mut self, keep: usize) -> Store {
        self.keep = keep.max(1);
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The newest version that reads back, if any (an unreadable newer one,
    /// say cut short by a full disk, is passed over).
    pub fn latest(&self) -> Result<Option<(PathBuf, Saved)>, StoreError> {
        let mut all = versions(&self.dir)?;
        while let Some((_, path)) = all.pop() {
            if let Ok(saved) = read(&path) {
                return Ok(Some((path, saved)));
            }
        }
        Ok(None)
    }

    /// Saves a new version and prunes the oldest beyond the kept count.
    pub fn save(&mut self, saved: &Saved) -> Result<PathBuf, StoreError> {
        let bytes = serde_json::to_vec(saved).map_err(|e| StoreError::Corrupt {
            path: self.dir.clone(),
            why: e.to_string(),
        })?;
        let path = self.dir.join(format!("song-{:010}.json", self.next));
        let tmp = self.dir.join(format!(".song-{:010}.tmp", self.next));
        {
            let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &path).map_err(io(&path))?;
        if let Ok(d) = fs::File::open(&self.dir) {
            let _ = d.sync_all();
        }
        self.next += 1;
        let all = versions(&self.dir)?;
        if all.len() > self.keep {
            for (_, old) in &all[..all.len() - self.keep] {
                let _ = fs::remove_file(old);
            }
        }
        Ok(path)
    }

    /// How many versions are on disk.
    pub fn count(&self) -> Result<usize, StoreError> {
        Ok(versions(&self.dir)?.len())
    }
}

/// Reads one saved version.
pub fn read(path: &Path) -> Result<Saved, StoreError> {
    let len = fs::metadata(path).map_err(io(path))?.len();
    if len > MAX_SAVED_BYTES {
        return Err(StoreError::Corrupt {
            path: path.to_owned(),
            why: format!("{len} bytes"),
        });
    }
    let bytes = fs::read(path).map_err(io(path))?;
    let corrupt = |why: String| StoreError::Corrupt {
        path: path.to_owned(),
        why,
    };
    let v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let song_json = v.get("song").ok_or_else(|| corrupt("no song".into()))?;
    let song = Song::from_saved(song_json.to_string().as_bytes()).map_err(corrupt)?;
    let name = v
        .get("name")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("song.mid")
        .to_owned();
    Ok(Saved {
        name,
        last_editor: v
            .get("lastEditor")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
        saved_at: v
            .get("savedAt")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0),
        song,
    })
}

/// `song-N.json` files by N, oldest first.
fn versions(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|s| s.strip_prefix("song-"))
            .and_then(|s| s.strip_suffix(".json"))
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((n, entry.path()));
    }
    out.sort();
    Ok(out)
}
