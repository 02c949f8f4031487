//! Request bodies and response shapes of the v3 wire format.
//!
//! Field access follows the Worker's reading of a body: it never rejects on
//! Content-Type, and a body that is JSON but not an object (or `null`) simply
//! has no fields. Where we deliberately differ (empty sessionId accepted,
//! non-string values refused instead of stored), it says so.

use serde::Serialize;
use serde_json::Value;

/// Length of a string the way JavaScript's `.length` counts it: UTF-16 code
/// units. The protocol's limits (256, 65,536, 64) are in these units.
pub fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// The first `max` UTF-16 units of `s`, like JavaScript's `slice(0, max)`,
/// except that a surrogate pair straddling the cut is dropped whole instead
/// of leaving half of it (Rust strings cannot hold a lone surrogate, and the
/// half would only ever render as a replacement character).
pub fn truncate_utf16(s: &str, max: usize) -> &str {
    let mut units = 0;
    for (i, c) in s.char_indices() {
        units += c.len_utf16();
        if units > max {
            return &s[..i];
        }
    }
    s
}

/// Whether `sdp` is text as SDP is (RFC 8866: lines of printable text
/// ending in CRLF): no control character but CR, LF and TAB. Control
/// characters are what turn a 64 Ki-unit SDP into 384 KiB of JSON escapes
/// in every listing, and what a terminal would interpret.
pub fn is_sdp_text(sdp: &str) -> bool {
    !sdp.chars()
        .any(|c| c.is_control() && !matches!(c, '\r' | '\n' | '\t'))
}

/// Why a body was not accepted, each with the exact error string clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    InvalidJson,
    SessionId,
    JoinerId,
    Sdp,
    SdpNotText,
}

impl BodyError {
    pub fn message(self) -> &'static str {
        match self {
            BodyError::InvalidJson => "invalid JSON body",
            BodyError::SessionId => "missing or oversized sessionId",
            BodyError::JoinerId => "invalid joinerId",
            BodyError::Sdp => "missing or oversized sdp",
            BodyError::SdpNotText => "sdp must be printable text",
        }
    }
}

pub const MAX_SESSION_ID_UNITS: usize = 256;
pub const MAX_DISPLAY_NAME_UNITS: usize = 64;
pub const MAX_SDP_UNITS: usize = 65_536;

/// Parses a raw body as JSON. A UTF-8 byte-order mark is skipped, as
/// `Request.json()` does in a browser or a Worker.
pub fn parse_body(raw: &[u8]) -> Result<Value, BodyError> {
    let raw = raw.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(raw);
    serde_json::from_slice(raw).map_err(|_| BodyError::InvalidJson)
}

fn field<'a>(body: &'a Value, name: &str) -> Option<&'a Value> {
    body.as_object().and_then(|o| o.get(name))
}

/// `POST /session` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub session_id: String,
    pub display_name: String,
    pub protect_answers: bool,
}

impl NewSession {
    pub fn from_json(body: &Value) -> Result<NewSession, BodyError> {
        // Improvement over the Worker: "" is accepted (MidiEditor sends it for
        // an unsaved file); a missing or non-string value is still refused.
        let session_id = match field(body, "sessionId") {
            Some(Value::String(s)) if utf16_len(s) <= MAX_SESSION_ID_UNITS => s.clone(),
            _ => return Err(BodyError::SessionId),
        };
        // Never rejected: truncated, and anything but a string reads as "".
        let display_name = match field(body, "displayName") {
            Some(Value::String(s)) => truncate_utf16(s, MAX_DISPLAY_NAME_UNITS).to_owned(),
            _ => String::new(),
        };
        let protect_answers = matches!(field(body, "protectAnswers"), Some(Value::Bool(true)));
        Ok(NewSession {
            session_id,
            display_name,
            protect_answers,
        })
    }
}

/// The `{joinerId, sdp}` body of `joiner-offer` and `host-answer`, checked in
/// the protocol's order: joinerId first, then sdp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinerSdp {
    pub joiner_id: String,
    pub sdp: String,
}

impl JoinerSdp {
    pub fn from_json(body: &Value) -> Result<JoinerSdp, BodyError> {
        let joiner_id = match field(body, "joinerId") {
            Some(Value::String(s)) if crate::code::is_valid_joiner_id(s) => s.clone(),
            _ => return Err(BodyError::JoinerId),
        };
        let sdp = match field(body, "sdp") {
            Some(Value::String(s)) if !s.is_empty() && utf16_len(s) <= MAX_SDP_UNITS => s.clone(),
            _ => return Err(BodyError::Sdp),
        };
        if !is_sdp_text(&sdp) {
            return Err(BodyError::SdpNotText);
        }
        Ok(JoinerSdp { joiner_id, sdp })
    }
}

// Response bodies. Field order is declaration order, and matches the
// Worker's `JSON.stringify` output byte for byte.

#[derive(Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthBody<'a> {
    pub service: &'static str,
    pub version: u32,
    pub protocol: &'static str,
    pub max_peers_per_session: usize,
    pub docs: &'a str,
    pub extensions: &'static [&'static str],
    /// The release this server was built from (the workspace version):
    /// `version` above is the wire protocol MidiEditor checks, not this.
    pub build: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedBody<'a> {
    pub code: &'a str,
    pub expires_in_sec: u64,
    pub host_token: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionBody<'a> {
    pub session_id: &'a str,
    pub display_name: &'a str,
}

#[derive(Serialize)]
pub struct OkBody {
    pub ok: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferItem<'a> {
    pub joiner_id: &'a str,
    pub sdp: &'a str,
    pub ts: u64,
}

#[derive(Serialize)]
pub struct OffersBody<'a> {
    pub offers: Vec<OfferItem<'a>>,
}

#[derive(Serialize)]
pub struct SdpBody<'a> {
    pub sdp: &'a str,
}

#[derive(Serialize)]
pub struct StatusBody<'a> {
    pub status: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lengths_are_counted_in_utf16_units() {
        assert_eq!(utf16_len("abc"), 3);
        assert_eq!(utf16_len("é"), 1);
        assert_eq!(utf16_len("🎹"), 2);
    }

    #[test]
    fn truncation_counts_units_and_never_splits_a_pair() {
        let s = "a".repeat(63) + "🎹z";
        assert_eq!(truncate_utf16(&s, 64), "a".repeat(63));
        assert_eq!(truncate_utf16(&"é".repeat(70), 64), "é".repeat(64));
        assert_eq!(truncate_utf16("short", 64), "short");
    }

    #[test]
    fn session_id_rules() {
        let ok = |v: Value| NewSession::from_json(&v);
        assert_eq!(ok(json!({"sessionId": ""})).unwrap().session_id, "");
        assert_eq!(ok(json!({})), Err(BodyError::SessionId));
        assert_eq!(ok(json!({"sessionId": 5})), Err(BodyError::SessionId));
        assert_eq!(ok(json!(null)), Err(BodyError::SessionId));
        assert_eq!(ok(json!([1])), Err(BodyError::SessionId));
        assert!(ok(json!({"sessionId": "🎹".repeat(128)})).is_ok());
        assert_eq!(
            ok(json!({"sessionId": "🎹".repeat(128) + "x"})),
            Err(BodyError::SessionId)
        );
    }

    #[test]
    fn display_name_is_truncated_never_rejected() {
        let s = NewSession::from_json(&json!({"sessionId": "s", "displayName": "n".repeat(100)}))
            .unwrap();
        assert_eq!(s.display_name.len(), 64);
        let s = NewSession::from_json(&json!({"sessionId": "s", "displayName": 42})).unwrap();
        assert_eq!(s.display_name, "");
    }

    #[test]
    fn joiner_id_is_checked_before_sdp() {
        let r = JoinerSdp::from_json(&json!({"joinerId": "bad", "sdp": ""}));
        assert_eq!(r, Err(BodyError::JoinerId));
        let r = JoinerSdp::from_json(&json!({"joinerId": "abcdefgh", "sdp": ""}));
        assert_eq!(r, Err(BodyError::Sdp));
        let r = JoinerSdp::from_json(&json!({"joinerId": "abcdefgh", "sdp": "x".repeat(65_537)}));
        assert_eq!(r, Err(BodyError::Sdp));
        assert!(
            JoinerSdp::from_json(&json!({"joinerId": "abcdefgh", "sdp": "x".repeat(65_536)}))
                .is_ok()
        );
    }

    #[test]
    fn bom_is_skipped_and_garbage_is_invalid_json() {
        assert!(parse_body(b"\xEF\xBB\xBF{}").is_ok());
        assert_eq!(parse_body(b"{"), Err(BodyError::InvalidJson));
        assert_eq!(parse_body(b""), Err(BodyError::InvalidJson));
        assert_eq!(parse_body(b"\xff\xfe"), Err(BodyError::InvalidJson));
    }
}
