//! The log file behind "Open log folder": plain text in the app's log folder,
//! kept small (the previous run's file is kept once as `.1`).

use std::path::Path;
use std::sync::Mutex;

const MAX_BYTES: u64 = 5 * 1024 * 1024;

pub fn init(dir: &Path) {
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let path = dir.join("midi-jam.log");
    if std::fs::metadata(&path)
        .map(|m| m.len() > MAX_BYTES)
        .unwrap_or(false)
    {
        let _ = std::fs::rename(&path, dir.join("midi-jam.log.1"));
    }
    let Ok(file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
    else {
        return;
    };
    // The WebRTC stack logs a peer closing its association as an error,
    // which no musician can act on; keep it out.
    let filter = std::env::var("MIDI_JAM_LOG").unwrap_or_else(|_| {
        "info,webrtc=off,rtc=off,rtc_sctp=off,rtc_dtls=off,rtc_ice=off,rtc_datachannel=off,rtc_mdns=off,rtc_srtp=off".to_owned()
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init();
}
