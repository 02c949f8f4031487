//! The ready-made STUN/TURN lists the settings pane offers.

use serde::Serialize;

use super::{IceRow, Settings};

/// A ready-made STUN/TURN list the pane offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IcePreset {
    /// Stable identifier (`none`, `public-stun`).
    pub id: &'static str,
    /// What the pane shows.
    pub label: &'static str,
    /// The rows the preset puts in the list.
    pub rows: Vec<IceRow>,
}

/// The presets, default first. Data only: nothing here is ever contacted
/// by the app's tests.
///
/// - `none`: no servers, the default. On one LAN the peers reach each other
///   by their LAN addresses; a STUN server only adds a wait for an answer
///   that is of no use there (and a failure when the LAN is offline).
/// - `public-stun`: Google's and Cloudflare's public STUN servers, for
///   peers on different networks (home routers with ordinary NAT).
pub fn ice_presets() -> Vec<IcePreset> {
    let stun = |url: &str| IceRow {
        url: url.to_owned(),
        ..IceRow::default()
    };
    vec![
        IcePreset {
            id: "none",
            label: "None (LAN only)",
            rows: Vec::new(),
        },
        IcePreset {
            id: "public-stun",
            label: "Public STUN servers (Google, Cloudflare)",
            rows: vec![
                stun("stun:stun.l.google.com:19302"),
                stun("stun:stun1.l.google.com:19302"),
                stun("stun:stun2.l.google.com:19302"),
                stun("stun:stun3.l.google.com:19302"),
                stun("stun:stun4.l.google.com:19302"),
                stun("stun:stun.cloudflare.com:3478"),
            ],
        },
    ]
}

/// The preset whose rows these are, if any (so the pane can show which
/// one is selected).
pub fn matching_preset(rows: &[IceRow]) -> Option<&'static str> {
    let rows: Vec<IceRow> = Settings {
        ice_servers: rows.to_vec(),
        ..Settings::default()
    }
    .normalized()
    .ice_servers;
    ice_presets()
        .into_iter()
        .find(|p| p.rows == rows)
        .map(|p| p.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::tests::row;

    #[test]
    fn presets_are_data_the_pane_can_show() {
        let presets = ice_presets();
        assert_eq!(presets[0].id, "none");
        assert!(presets[0].rows.is_empty());
        let public = presets.iter().find(|p| p.id == "public-stun").unwrap();
        assert!(public
            .rows
            .iter()
            .any(|r| r.url == "stun:stun.l.google.com:19302"));
        assert!(public
            .rows
            .iter()
            .any(|r| r.url == "stun:stun.cloudflare.com:3478"));
        assert!(public.rows.len() >= 5);
        assert_eq!(matching_preset(&[]), Some("none"));
        assert_eq!(matching_preset(&public.rows), Some("public-stun"));
        assert_eq!(matching_preset(&[row("stun:x", "", "")]), None);
        // The default settings use the "none" preset.
        assert_eq!(
            matching_preset(&Settings::default().ice_servers),
            Some("none")
        );
    }
}
