//! Reading a settings file leniently, field by field: a missing field takes
//! its default, an unknown one is ignored, a field of the wrong type takes
//! its default and a warning, so one bad hand edit never costs the user the
//! rest of their settings.

use serde_json::{Map, Value};

use super::Settings;

impl Settings {
    /// Reads settings from the JSON a settings file held, as leniently as
    /// possible: every field is taken on its own, so a field of the wrong
    /// type (a hand edit) falls back to its default with a warning naming
    /// it, while the others keep their saved values. Missing fields take
    /// their defaults silently (a file from an older version), unknown
    /// fields are ignored (a file from a newer version).
    pub fn from_json_value(v: Value) -> (Settings, Vec<String>) {
        let mut warnings = Vec::new();
        let Value::Object(file) = v else {
            warnings.push(format!(
                "The saved settings were {} instead of a set of named values; \
                 the default settings are used.",
                json_kind(&v)
            ));
            return (Settings::default(), warnings);
        };
        let defaults = match serde_json::to_value(Settings::default()) {
            Ok(Value::Object(m)) => m,
            // Cannot happen for this struct; stay panic-free anyway.
            _ => return (Settings::default(), warnings),
        };
        let mut merged = defaults.clone();
        for (key, default_value) in &defaults {
            let Some(saved) = file.get(key) else {
                continue;
            };
            let candidate = match key.as_str() {
                "iceServers" => lenient_ice_rows(saved, &mut warnings),
                "mdnsInterfaces" => lenient_strings(key, saved, &mut warnings),
                _ => Some(saved.clone()),
            };
            let Some(candidate) = candidate else {
                continue;
            };
            let mut trial = merged.clone();
            trial.insert(key.clone(), candidate.clone());
            match serde_json::from_value::<Settings>(Value::Object(trial)) {
                Ok(_) => {
                    merged.insert(key.clone(), candidate);
                }
                Err(e) => warnings.push(format!(
                    "The saved value of \"{key}\" could not be used ({e}); \
                     it was reset to the default, {default_value}."
                )),
            }
        }
        match serde_json::from_value::<Settings>(Value::Object(merged)) {
            Ok(s) => (s, warnings),
            Err(e) => {
                warnings.push(format!(
                    "The saved settings could not be read ({e}); the default settings are used."
                ));
                (Settings::default(), warnings)
            }
        }
    }
}

/// [`Settings::from_json_value`] as a free function.
pub fn from_json_value(v: Value) -> (Settings, Vec<String>) {
    Settings::from_json_value(v)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "empty (null)",
        Value::Bool(_) => "a true/false value",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "a set of named values",
    }
}

/// The STUN/TURN list, row by row: a bad row (or a bad field in a row) is
/// dropped or defaulted on its own instead of emptying the whole list.
/// `None` when the value is not a list at all (the caller then warns and
/// keeps the default).
fn lenient_ice_rows(saved: &Value, warnings: &mut Vec<String>) -> Option<Value> {
    let Value::Array(items) = saved else {
        return Some(saved.clone());
    };
    let mut rows = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Object(fields) = item else {
            warnings.push(format!(
                "STUN/TURN server {} in the saved settings was {} instead of a server entry; it was left out.",
                i + 1,
                json_kind(item)
            ));
            continue;
        };
        let mut row = Map::new();
        for name in ["url", "username", "credential"] {
            match fields.get(name) {
                None => {}
                Some(Value::String(s)) => {
                    row.insert(name.to_owned(), Value::String(s.clone()));
                }
                Some(other) => warnings.push(format!(
                    "The saved value of \"iceServers[{i}].{name}\" was {} instead of text; it was left empty.",
                    json_kind(other)
                )),
            }
        }
        rows.push(Value::Object(row));
    }
    Some(Value::Array(rows))
}

/// A list of strings, skipping (with a warning) the entries that are not.
fn lenient_strings(key: &str, saved: &Value, warnings: &mut Vec<String>) -> Option<Value> {
    let Value::Array(items) = saved else {
        return Some(saved.clone());
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item {
            Value::String(_) => out.push(item.clone()),
            other => warnings.push(format!(
                "The saved value of \"{key}[{i}]\" was {} instead of text; it was left out.",
                json_kind(other)
            )),
        }
    }
    Some(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::tests::row;
    use serde_json::json;

    #[test]
    fn lenient_loading_keeps_what_it_can() {
        // An old file: only some fields.
        let (s, w) = Settings::from_json_value(json!({"displayName": "Ana"}));
        assert_eq!(s.display_name, "Ana");
        assert_eq!(s.listen_port, Settings::default().listen_port);
        assert!(w.is_empty());
        // Unknown fields are ignored silently.
        let (s, w) = Settings::from_json_value(json!({"maxPeers": 4, "futureThing": [1, 2]}));
        assert_eq!(s.max_peers, 4);
        assert!(w.is_empty());
        // Wrong types: default plus a warning naming the field; the rest kept.
        let (s, w) = Settings::from_json_value(json!({
            "displayName": "Ana",
            "listenPort": "8787",
            "maxPeers": -1,
            "gatherTimeoutMs": 1.5,
            "advertise": null,
            "openJam": true,
        }));
        assert_eq!(s.display_name, "Ana");
        assert!(s.open_jam);
        // A settings file from before LAN Live gets it on.
        assert!(s.midieditor_lan);
        assert_eq!(s.listen_port, 8787);
        assert_eq!(s.max_peers, 8);
        assert_eq!(s.gather_timeout_ms, 2000);
        assert!(s.advertise);
        assert_eq!(w.len(), 4, "{w:#?}");
        for field in ["listenPort", "maxPeers", "gatherTimeoutMs", "advertise"] {
            assert!(w.iter().any(|m| m.contains(field)), "{field}: {w:#?}");
        }
        // Out of range for the type is a wrong type too.
        let (s, w) = Settings::from_json_value(json!({"listenPort": 70000}));
        assert_eq!(s.listen_port, 8787);
        assert_eq!(w.len(), 1);
        // Not an object at all.
        for v in [json!(null), json!([1]), json!("x"), json!(3)] {
            let (s, w) = Settings::from_json_value(v);
            assert_eq!(s, Settings::default());
            assert_eq!(w.len(), 1);
        }
    }

    #[test]
    fn lenient_loading_of_lists_is_per_item() {
        let (s, w) = Settings::from_json_value(json!({
            "iceServers": [
                {"url": "stun:a"},
                "stun:not-an-object",
                {"url": "turn:b", "username": 5, "credential": "p", "extra": 1},
            ],
            "mdnsInterfaces": ["eth0", 7, "en0"],
        }));
        assert_eq!(
            s.ice_servers,
            vec![row("stun:a", "", ""), row("turn:b", "", "p")]
        );
        assert_eq!(s.mdns_interfaces, vec!["eth0".to_owned(), "en0".to_owned()]);
        assert_eq!(w.len(), 3, "{w:#?}");
        assert!(w.iter().any(|m| m.contains("iceServers[2].username")));
        assert!(w.iter().any(|m| m.contains("mdnsInterfaces[1]")));
        // Not a list: default and a warning.
        let (s, w) = Settings::from_json_value(json!({"iceServers": "stun:a"}));
        assert!(s.ice_servers.is_empty());
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("iceServers"));
    }
}
