//! "Test connection" from the settings pane: the jam crate's connection
//! test, configured from the settings being edited. It runs its own session
//! and peers, so a jam in progress is never disturbed.

use std::net::IpAddr;
use std::time::Duration;

use jam::check::{CheckConfig, Report, Verdict};
use serde::Serialize;

use crate::settings::{export_midieditor_ice, Settings};

/// The check for `settings`. A blank rendezvous URL means the bundled one,
/// reached at `bundled_url` (the address shared with joiners, so the test
/// goes the way a LAN joiner's requests would).
pub fn config_for(
    settings: &Settings,
    bundled_url: Option<&str>,
    bind_ips: &[IpAddr],
) -> Result<CheckConfig, String> {
    let url = match settings.rendezvous_url.trim() {
        "" => bundled_url.map(str::to_owned).ok_or_else(|| {
            "The bundled rendezvous is not running yet; try again in a moment.".to_owned()
        })?,
        u => u.to_owned(),
    };
    let mut cfg = CheckConfig::new(url);
    // One URI per row, credentials inline: the form the check parses.
    cfg.ice_servers = export_midieditor_ice(&settings.ice_servers)
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.trim().is_empty())
        .collect();
    cfg.bind_ips = bind_ips.to_vec();
    cfg.gather_timeout = Duration::from_millis(settings.gather_timeout_ms.clamp(100, 30_000));
    Ok(cfg)
}

/// The verdict as the pane shows it: a headline in plain words and a tone
/// (also written out, so colour is never the only signal).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub report: Report,
    pub headline: String,
    pub tone: &'static str,
    pub details: String,
}

pub fn outcome(report: Report) -> Outcome {
    let servers_failed = report
        .ice_servers
        .iter()
        .filter(|s| s.status == jam::check::Status::Failed)
        .count();
    let (headline, tone) = match (report.verdict, servers_failed) {
        (Verdict::Good, 0) => ("Good: ready to jam.".to_owned(), "ok"),
        (Verdict::Acceptable, 0) => ("Works, but slowly: expect a wait when people join.".to_owned(), "warning"),
        (Verdict::Good | Verdict::Acceptable, n) => (
            format!("The jam works here, but {n} STUN/TURN server(s) failed: people outside this network may not get in."),
            "warning",
        ),
        (Verdict::Inconclusive, _) => (
            "Partly working: the rendezvous answers, but the connection itself did not come up.".to_owned(),
            "error",
        ),
        (Verdict::Failed, _) => ("Not working: see the failed step below.".to_owned(), "error"),
    };
    let details = jam::check::details_text(&report);
    Outcome {
        report,
        headline,
        tone,
        details,
    }
}
