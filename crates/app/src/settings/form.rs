//! The settings pane's values as the window sends them: numbers as typed
//! (text, possibly empty or not a number at all), everything else as the
//! settings file has it. Reading them gives settings, normalised and
//! validated, or every problem at once, each beside its field, in words;
//! never a deserialiser's message about types.

use serde_json::{Map, Value};

use super::{FieldError, Settings, GATHER_TIMEOUT_MS, MAX_PEERS};

/// A number field of the pane.
struct NumberField {
    key: &'static str,
    /// The largest value its type holds.
    max: u64,
    /// What to enter, for the messages.
    what: String,
}

fn number_fields() -> [NumberField; 3] {
    [
        NumberField {
            key: "listenPort",
            max: u64::from(u16::MAX),
            what: "a port from 1 to 65535 (8787 is the usual one)".to_owned(),
        },
        NumberField {
            key: "maxPeers",
            max: u64::from(u32::MAX),
            what: format!(
                "how many musicians may be in the jam, from {} to {}",
                MAX_PEERS.start(),
                MAX_PEERS.end()
            ),
        },
        NumberField {
            key: "gatherTimeoutMs",
            max: u64::MAX,
            what: format!(
                "a wait from {} to {} milliseconds (0.1 to 30 seconds)",
                GATHER_TIMEOUT_MS.start(),
                GATHER_TIMEOUT_MS.end()
            ),
        },
    ]
}

/// Where a field sits in the pane's order (the struct's), so errors come
/// in the order the fields are read.
fn rank(field: &str) -> usize {
    const ORDER: [&str; 12] = [
        "displayName",
        "rendezvousUrl",
        "iceServers",
        "gatherTimeoutMs",
        "listenPort",
        "midiInput",
        "midiOutput",
        "mdnsInterfaces",
        "advertise",
        "openJam",
        "midieditorLan",
        "maxPeers",
    ];
    let base = field.split(['[', '.']).next().unwrap_or(field);
    ORDER.iter().position(|k| *k == base).unwrap_or(ORDER.len())
}

/// One number as typed: digits, spaces around them allowed.
fn number(field: &NumberField, v: &Value) -> Result<u64, FieldError> {
    let err = |message: String| FieldError::new(field.key, message);
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => {
            let t = s.trim();
            if t.is_empty() {
                return Err(err(format!("Enter {}.", field.what)));
            }
            if !t.chars().all(|c| c.is_ascii_digit()) {
                return Err(err(format!("Use digits only: {}.", field.what)));
            }
            // All digits: only too many of them fails to parse.
            t.parse::<u64>().ok()
        }
        _ => None,
    };
    match n {
        Some(n) if n <= field.max => Ok(n),
        Some(_) => Err(err(format!("Too large: enter {}.", field.what))),
        None => Err(err(format!("Enter {}, as a whole number.", field.what))),
    }
}

/// The pane's values as settings: numbers read from their text, then
/// [`normalized`](Settings::normalized) and [validated](Settings::validate).
/// All problems come back together, in the pane's order; a field that was
/// not sent takes its default.
pub fn from_form(form: Value) -> Result<Settings, Vec<FieldError>> {
    let Value::Object(mut fields) = form else {
        return Err(vec![FieldError::new(
            "",
            "The settings pane sent no values; reopen it and try again.",
        )]);
    };
    let mut errors = Vec::new();
    for field in number_fields() {
        let Some(v) = fields.remove(field.key) else {
            continue;
        };
        match number(&field, &v) {
            Ok(n) => {
                fields.insert(field.key.to_owned(), Value::from(n));
            }
            // Left out: the default stands in while the rest is checked.
            Err(e) => errors.push(e),
        }
    }
    let settings = match serde_json::from_value::<Settings>(Value::Object(fields.clone())) {
        Ok(s) => s.normalized(),
        Err(_) => {
            // Only a window that sends the wrong kind of value gets here;
            // name the fields that could not be read.
            errors.extend(unreadable(&fields));
            Settings::default()
        }
    };
    if let Err(more) = settings.validate() {
        let bad: Vec<String> = errors.iter().map(|e| e.field.clone()).collect();
        errors.extend(more.into_iter().filter(|e| !bad.contains(&e.field)));
    }
    if errors.is_empty() {
        Ok(settings)
    } else {
        errors.sort_by_key(|e| rank(&e.field));
        Err(errors)
    }
}

/// The fields whose values do not fit the settings struct, one by one.
fn unreadable(fields: &Map<String, Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for (key, value) in fields {
        let mut one = Map::new();
        one.insert(key.clone(), value.clone());
        if serde_json::from_value::<Settings>(Value::Object(one)).is_err() {
            errors.push(FieldError::new(
                key.clone(),
                "This value could not be read; reopen the settings and enter it again.",
            ));
        }
    }
    if errors.is_empty() {
        errors.push(FieldError::new(
            "",
            "The settings could not be read; reopen the settings and try again.",
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(r: Result<Settings, Vec<FieldError>>) -> Vec<String> {
        r.unwrap_err().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn numbers_are_read_from_their_text() {
        let s =
            from_form(json!({"listenPort": " 9000 ", "maxPeers": 12, "gatherTimeoutMs": "1500"}))
                .unwrap();
        assert_eq!(
            (s.listen_port, s.max_peers, s.gather_timeout_ms),
            (9000, 12, 1500)
        );
    }

    #[test]
    fn empty_signed_fractional_and_huge_numbers_are_each_named() {
        for bad in [
            json!(""),
            json!("  "),
            json!("-1"),
            json!("1.5"),
            json!("8o8o"),
            json!(-1),
            json!(1.5),
            json!(null),
            json!(true),
        ] {
            assert_eq!(
                fields(from_form(json!({"listenPort": bad.clone()}))),
                ["listenPort"],
                "{bad}"
            );
        }
        assert_eq!(
            fields(from_form(json!({"listenPort": "70000"}))),
            ["listenPort"]
        );
        assert_eq!(
            fields(from_form(json!({"maxPeers": "99999999999"}))),
            ["maxPeers"]
        );
        assert_eq!(
            fields(from_form(
                json!({"gatherTimeoutMs": "999999999999999999999999"})
            )),
            ["gatherTimeoutMs"]
        );
    }

    #[test]
    fn every_problem_comes_back_at_once_in_the_panes_order() {
        let e = from_form(json!({"maxPeers": "", "displayName": " ", "listenPort": "0", "rendezvousUrl": "ftp://x"}))
            .unwrap_err();
        let f: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            f,
            ["displayName", "rendezvousUrl", "listenPort", "maxPeers"]
        );
        assert!(
            e[3].message.starts_with("Enter how many musicians"),
            "{e:?}"
        );
    }

    #[test]
    fn a_value_of_the_wrong_kind_names_its_field() {
        assert_eq!(
            fields(from_form(json!({"advertise": "yes"}))),
            ["advertise"]
        );
        assert_eq!(fields(from_form(json!([1, 2]))), [""]);
    }
}
