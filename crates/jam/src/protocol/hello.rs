//! A joiner's `hello`, read and sanitised into a [`Hello`]: the one inbound
//! message whose fields the host keeps (shown in lists, relayed with every
//! chat, used for ghost detection), so it is where hostile input is bounded.
//! Also the string bounds the rest of the protocol reuses.

use serde_json::Value;

/// Bounds on the strings kept from a `hello`. Names are shown in lists and
/// relayed in every chat, so a hostile one must not be a megabyte.
pub const MAX_NAME_CHARS: usize = 64;
pub const MAX_ID_BYTES: usize = 128;
const MAX_FIELD_CHARS: usize = 128;
pub(super) const MAX_REASON_CHARS: usize = 200;

/// Display name used when a `hello` carries none worth showing.
pub const DEFAULT_DISPLAY_NAME: &str = "Guest";

/// What a joiner said about itself in its `hello`, sanitised: control
/// characters removed and lengths capped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub machine_id: String,
    pub display_name: String,
    pub app_version: Option<String>,
    pub session_id: Option<String>,
    /// Our own joiners name themselves here (`midi-jam/<version>` or
    /// `midi-jam-web/<version>`); MidiEditor sends no such field.
    pub client: Option<String>,
    /// Whether it carried MidiEditor's edit-history fields (`currentHead`,
    /// `historyTailHashes`).
    pub has_history: bool,
}

impl Hello {
    /// Reads a `hello` object. Only a usable `machineId` is required: it is
    /// what ghost detection and chat attribution rest on.
    pub fn from_json(body: &Value) -> Result<Hello, String> {
        let machine_id = match body.get("machineId") {
            Some(Value::String(s)) => s.trim(),
            Some(_) => return Err("machineId is not a string".into()),
            None => return Err("no machineId".into()),
        };
        if machine_id.is_empty() {
            return Err("empty machineId".into());
        }
        if machine_id.len() > MAX_ID_BYTES {
            return Err("machineId too long".into());
        }
        if machine_id.chars().any(char::is_control) {
            return Err("machineId has control characters".into());
        }
        let field = |k: &str, max: usize| {
            body.get(k)
                .and_then(Value::as_str)
                .map(|s| clean(s, max))
                .filter(|s| !s.is_empty())
        };
        Ok(Hello {
            machine_id: machine_id.to_owned(),
            display_name: field("displayName", MAX_NAME_CHARS)
                .unwrap_or_else(|| DEFAULT_DISPLAY_NAME.into()),
            app_version: field("appVersion", MAX_FIELD_CHARS),
            session_id: field("sessionId", MAX_FIELD_CHARS),
            client: field("client", MAX_FIELD_CHARS),
            has_history: body.get("currentHead").is_some()
                || body.get("historyTailHashes").is_some(),
        })
    }
}

/// Drops control characters, keeps at most `max` characters, trims.
pub(super) fn clean(s: &str, max: usize) -> String {
    let kept: String = s.chars().filter(|c| !c.is_control()).take(max).collect();
    kept.trim().to_owned()
}
