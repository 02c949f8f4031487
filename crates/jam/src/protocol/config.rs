//! The knobs of a jam: [`JamConfig`] (limits, timeouts, the host's identity)
//! and the [`SessionMode`] announced in `sessionWelcome`. Separate from the
//! state machine because the host's settings build it without needing any
//! of the machinery.

use std::time::Duration;

use serde::Serialize;

use crate::framing;

/// The session mode announced in `sessionWelcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SessionMode {
    /// Everyone may edit.
    #[default]
    Edit,
    /// Joiners follow the presenter.
    Show,
}

impl SessionMode {
    /// The wire value: `"edit"` or `"show"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionMode::Edit => "edit",
            SessionMode::Show => "show",
        }
    }
}

/// Chat limits MidiEditor's own host enforces; a peer used to them will not
/// notice ours.
pub const CHAT_MAX_BYTES: usize = 4096;
pub const CHAT_MIN_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct JamConfig {
    /// Welcomed peers at once; the next `hello` gets `joinrejected`.
    pub max_peers: usize,
    /// Channels open but still without a `hello`. Bounds what a stranger
    /// opening channels and staying mute can hold.
    pub max_pending: usize,
    /// Sent as `presenterMachineId`, and the `sender` of the host's chat.
    pub host_machine_id: String,
    /// The `displayName` of the host's chat.
    pub host_display_name: String,
    /// Sent as `appVersion` in `sessionWelcome`; a MidiEditor joiner on a
    /// different version only shows a note.
    pub app_version: String,
    pub mode: SessionMode,
    pub heartbeat_every: Duration,
    /// A welcomed peer with no frame for this long is dropped.
    pub silence_timeout: Duration,
    /// A channel with no `hello` for this long after it opened is dropped.
    pub hello_timeout: Duration,
    /// Largest inbound frame payload; MidiEditor's own limit is 32 MiB.
    pub max_frame: usize,
    /// Malformed frames in a row that get a peer dropped. One bad frame never
    /// does: a glitch should not end a jam.
    pub max_bad_frames: u32,
    pub chat_max_bytes: usize,
    /// At most one chat message per sender in this interval.
    pub chat_min_interval: Duration,
}

impl Default for JamConfig {
    fn default() -> Self {
        JamConfig {
            max_peers: 8,
            max_pending: 4,
            host_machine_id: String::new(),
            host_display_name: "Host".into(),
            app_version: env!("CARGO_PKG_VERSION").into(),
            mode: SessionMode::Edit,
            heartbeat_every: Duration::from_secs(10),
            silence_timeout: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(10),
            max_frame: framing::MIDIEDITOR_MAX_FRAME,
            max_bad_frames: 20,
            chat_max_bytes: CHAT_MAX_BYTES,
            chat_min_interval: CHAT_MIN_INTERVAL,
        }
    }
}
