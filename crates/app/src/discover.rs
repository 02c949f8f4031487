//! The Join view's list of jams on the LAN, and the typed-address fallback.
//!
//! [`Discovery`] wraps [`lan::Browser`] (mDNS, `_midi-rdv._tcp`) and keeps
//! the jams found as a list a window can show as is: name, the address to
//! join at (`http://ip:port/path`), players `x/y`, and whether the jam is
//! open (its code is in the advertisement, so nobody has to type it) or
//! needs a code. The list is pushed whole on a `watch` channel whenever a
//! jam appears, changes (a player joins) or vanishes (the host stopped, or
//! its records expired), so the window never polls and a slow one only sees
//! the newest list.
//!
//! The mDNS daemon is a plain thread (no async runtime), and so is the
//! thread that turns its events into the list; [`Discovery::start`] blocks
//! for the few milliseconds the daemon takes to start, so call it from
//! `spawn_blocking` in async code.
//!
//! Interfaces are always explicit: [`InterfaceChoice::DefaultLan`] (the
//! physical LAN interfaces) for users, named ones for tests.
//!
//! When a jam is not advertised (another subnet, multicast blocked), people
//! type the host's address; [`parse_address`] turns `10.0.0.5`,
//! `10.0.0.5:8787` or `http://host:port` into a rendezvous URL, or says
//! what is wrong.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use jam::joiner::{parse_address, AddressError};
use jam::joiner::{JoinConfig, LanTarget};
use lan::{BrowseConfig, Browser, InterfaceChoice, JamInfo};
use serde::Serialize;
use tokio::sync::watch;

/// How often the list thread looks at its stop flag (and at the browser's
/// exact list) while no event comes.
const IDLE_CHECK: Duration = Duration::from_millis(200);

/// One jam on the LAN, as the Join view lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FoundJam {
    /// Unique on the link (the mDNS instance name); the list's key.
    pub id: String,
    /// The host's display name.
    pub name: String,
    /// The rendezvous URL to join at: `http://ip:port` plus the base path.
    pub url: jam::types::RendezvousUrl,
    /// Every address the host was seen at.
    pub addresses: Vec<String>,
    pub peers: usize,
    pub max_peers: usize,
    /// No free place (`peers >= maxPeers`).
    pub full: bool,
    /// The host published its code: joining needs no typing.
    pub open: bool,
    /// The code, for an open jam.
    pub code: Option<String>,
    /// Speaks the protocol we speak (`v=3`, `proto=joiner-initiated-multi-peer`).
    pub compatible: bool,
    /// `midiRdv` (a jam advertised over mDNS: this app or `midi-rdv`) or
    /// `midiEditorLan` (a MidiEditor "LAN Live" host heard by its
    /// `MIDIEDIT-PR-LAN` datagram; joined over plain TCP).
    pub kind: JamKind,
    /// What the list shows for the kind ("MidiEditor LAN Live").
    pub kind_label: String,
    /// For a MidiEditor LAN Live host: where and what to join over TCP.
    #[serde(skip)]
    pub lan: Option<LanTarget>,
}

/// Where a listed jam was found, and so how it is joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum JamKind {
    MidiRdv,
    MidiEditorLan,
}

/// A MidiEditor LAN Live host as listed: always open (its datagram carries
/// the code), compatible, no player count (the datagram has none).
pub fn found_lan_host(h: &lan::midieditor_lan::HeardHost) -> Option<FoundJam> {
    let a = &h.announcement;
    // Shown as the host's TCP address; a rendezvous URL in form only, the
    // join goes over TCP (`lan`).
    let url = jam::joiner::url_for(&[h.addr.ip()], h.addr.port(), "/")?;
    Some(FoundJam {
        id: format!("midieditor-lan:{}:{}", h.addr, a.session_id),
        name: a.display_name.clone(),
        url,
        addresses: vec![h.addr.ip().to_string()],
        peers: 0,
        max_peers: 0,
        full: false,
        open: true,
        code: Some(a.code.clone()),
        compatible: true,
        kind: JamKind::MidiEditorLan,
        kind_label: "MidiEditor LAN Live".to_owned(),
        lan: Some(LanTarget {
            addr: h.addr,
            session_id: a.session_id.clone(),
            host_name: a.display_name.clone(),
            code: a.code.clone(),
        }),
    })
}

impl FoundJam {
    /// What to join this jam with: its URL, and the code the person typed
    /// or, for an open jam, the advertised one (`None` when neither: the
    /// join then fails with [`JoinError::CodeNeeded`](jam::joiner::JoinError)).
    pub fn join_config(&self, typed_code: Option<String>, display_name: &str) -> JoinConfig {
        let typed = typed_code.filter(|c| !c.trim().is_empty());
        JoinConfig::new(
            self.url.clone(),
            typed.or_else(|| self.code.clone()),
            display_name,
        )
    }
}

/// What the Join view shows of the LAN.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryView {
    /// The browser is running.
    pub browsing: bool,
    /// Sorted by name.
    pub jams: Vec<FoundJam>,
}

/// Browsing could not start.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("cannot look for jams on the network: {0}")]
    Lan(#[from] lan::LanError),
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// A jam as listed, or `None` when it has no address we can use (only a
/// link-local IPv6 one, or port 0).
pub fn found_jam(info: &JamInfo) -> Option<FoundJam> {
    let url = jam::joiner::url_for(&info.addresses, info.port, &info.path)?;
    Some(FoundJam {
        id: info.instance.clone(),
        name: info.name.clone(),
        url,
        addresses: info.addresses.iter().map(ToString::to_string).collect(),
        peers: info.peers,
        max_peers: info.max_peers,
        full: info.max_peers > 0 && info.peers >= info.max_peers,
        open: info.code.is_some(),
        code: info.code.clone(),
        compatible: info.version == lan::VERSION
            && (info.proto.is_empty() || info.proto == lan::PROTO),
        kind: JamKind::MidiRdv,
        kind_label: "MIDI Jam".to_owned(),
        lan: None,
    })
}

/// The listed jams for a browser's current set and the MidiEditor LAN Live
/// hosts heard, sorted by name. Our own hosts send MidiEditor's datagram
/// too: a datagram from an address and name an mDNS jam already has is that
/// jam, listed once (as the mDNS one, which also shows its players).
pub fn list(infos: &[JamInfo], lan_hosts: &[lan::midieditor_lan::HeardHost]) -> Vec<FoundJam> {
    let ours = |h: &&lan::midieditor_lan::HeardHost| {
        infos
            .iter()
            .any(|i| i.name == h.announcement.display_name && i.addresses.contains(&h.addr.ip()))
    };
    let mut jams: Vec<FoundJam> = infos
        .iter()
        .filter_map(found_jam)
        .chain(
            lan_hosts
                .iter()
                .filter(|h| !ours(h))
                .filter_map(found_lan_host),
        )
        .collect();
    jams.sort_by(|a, b| {
        a.name
            .to_lowercase()
            .cmp(&b.name.to_lowercase())
            .then_with(|| a.id.cmp(&b.id))
    });
    jams
}

/// A running browse for the Join view. Stops on [`stop`](Self::stop) or drop.
pub struct Discovery {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    view: watch::Receiver<DiscoveryView>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("jams", &self.view.borrow().jams.len())
            .finish()
    }
}

impl Discovery {
    /// Starts browsing on `interfaces`. The first jams usually show within
    /// 100 ms when they were already advertised, about a second when they
    /// start advertising after the browse started.
    pub fn start(interfaces: InterfaceChoice) -> Result<Discovery, DiscoverError> {
        // MidiEditor LAN Live hosts too, on the same interfaces. Without it
        // (UDP 42424 refused, no IPv4 address) our own jams still list.
        let heard = match lan::midieditor_lan::Listener::start(interfaces.clone()) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "not listening for MidiEditor LAN Live hosts");
                None
            }
        };
        let browser = Browser::start(BrowseConfig::new(interfaces))?;
        let (tx, view) = watch::channel(DiscoveryView {
            browsing: true,
            jams: Vec::new(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("jam-discovery".into())
            .spawn(move || follow(browser, heard, &tx, &flag))
            .map_err(DiscoverError::Thread)?;
        Ok(Discovery {
            stop,
            thread: Some(thread),
            view,
        })
    }

    /// A receiver of every new list.
    pub fn subscribe(&self) -> watch::Receiver<DiscoveryView> {
        self.view.clone()
    }

    pub fn view(&self) -> DiscoveryView {
        self.view.borrow().clone()
    }

    pub fn jams(&self) -> Vec<FoundJam> {
        self.view.borrow().jams.clone()
    }

    /// Stops browsing (the daemon included) and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Keeps the view equal to the browser's exact list until stopped. Events
/// only wake it up; the list itself is always read whole from the browser,
/// so a dropped event can never leave a stale entry.
fn follow(
    browser: Browser,
    heard: Option<lan::midieditor_lan::Listener>,
    tx: &watch::Sender<DiscoveryView>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::Relaxed) {
        let _ = browser.recv_timeout(IDLE_CHECK);
        while browser.try_recv().is_some() {}
        let lan_hosts = heard.as_ref().map(|l| l.hosts()).unwrap_or_default();
        let jams = list(&browser.jams(), &lan_hosts);
        tx.send_if_modified(|v| {
            if v.jams == jams {
                false
            } else {
                v.jams = jams;
                true
            }
        });
    }
    if let Some(l) = heard {
        l.stop();
    }
    if let Err(e) = browser.stop() {
        tracing::warn!(error = %e, "stopping the LAN browser");
    }
    tx.send_modify(|v| {
        v.browsing = false;
        v.jams.clear();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    fn info(name: &str, addresses: &[&str], code: Option<&str>, peers: (usize, usize)) -> JamInfo {
        JamInfo {
            instance: format!("{name}._midi-rdv._tcp.local."),
            name: name.into(),
            addresses: addresses
                .iter()
                .map(|a| a.parse::<IpAddr>().unwrap())
                .collect(),
            port: 8787,
            path: "/".into(),
            peers: peers.0,
            max_peers: peers.1,
            code: code.map(Into::into),
            version: 3,
            proto: lan::PROTO.into(),
        }
    }

    #[test]
    fn a_found_jam_has_a_url_to_join_and_says_whether_it_is_open() {
        let j = found_jam(&info("Ada", &["fe80::1", "10.0.0.5"], Some("M7P3"), (1, 8))).unwrap();
        assert_eq!(j.url, "http://10.0.0.5:8787");
        assert!(j.open);
        assert_eq!(j.code.as_deref(), Some("M7P3"));
        assert!(!j.full);
        assert!(j.compatible);
        let cfg = j.join_config(None, "Me");
        assert_eq!(cfg.rendezvous_url, "http://10.0.0.5:8787");
        assert_eq!(cfg.code.as_deref(), Some("M7P3"));
        assert_eq!(
            j.join_config(Some("ABCD".into()), "Me").code.as_deref(),
            Some("ABCD")
        );
        let j = found_jam(&info("Bob", &["10.0.0.6"], None, (8, 8))).unwrap();
        assert!(!j.open && j.full);
        assert_eq!(j.join_config(Some(" ".into()), "Me").code, None);
        let mut old = info("Old", &["10.0.0.7"], None, (0, 8));
        old.version = 2;
        assert!(!found_jam(&old).unwrap().compatible);
        assert!(found_jam(&info("LinkLocal", &["fe80::2"], None, (0, 8))).is_none());
    }

    #[test]
    fn the_list_is_sorted_by_name_and_serialises_in_camel_case() {
        let heard = lan::midieditor_lan::HeardHost {
            announcement: lan::midieditor_lan::Announcement {
                session_id: "s-1".into(),
                display_name: "Cy".into(),
                tcp_port: 40123,
                code: "L7QX".into(),
            },
            addr: "10.0.0.9:40123".parse().unwrap(),
            last_heard: std::time::Instant::now(),
        };
        let jams = list(
            &[
                info("zed", &["10.0.0.1"], None, (0, 8)),
                info("Ada", &["10.0.0.2"], Some("AAAA"), (0, 8)),
                info("bob", &["10.0.0.3"], None, (0, 8)),
            ],
            std::slice::from_ref(&heard),
        );
        let names: Vec<&str> = jams.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["Ada", "bob", "Cy", "zed"]);
        let v = serde_json::to_value(&jams[0]).unwrap();
        assert_eq!(v["maxPeers"], 8);
        assert_eq!(v["open"], true);
        assert_eq!(v["kind"], "midiRdv");
        // The MidiEditor host: open (its code is in the datagram), labelled,
        // joined over TCP at the datagram's source and port.
        let cy = &jams[2];
        let v = serde_json::to_value(cy).unwrap();
        assert_eq!(v["kind"], "midiEditorLan");
        assert_eq!(v["kindLabel"], "MidiEditor LAN Live");
        assert_eq!(v["code"], "L7QX");
        assert!(v.get("lan").is_none());
        let t = cy.lan.as_ref().unwrap();
        assert_eq!(t.addr, heard.addr);
        assert_eq!(t.session_id, "s-1");
        assert_eq!(t.code, "L7QX");
        // Our own jam's datagram (same name and address as its mDNS advert)
        // is not listed twice.
        let mut twin = heard.clone();
        twin.announcement.display_name = "Ada".into();
        twin.addr = "10.0.0.2:40999".parse().unwrap();
        let jams = list(&[info("Ada", &["10.0.0.2"], None, (0, 8))], &[twin]);
        assert_eq!(jams.len(), 1);
        assert_eq!(jams[0].kind, JamKind::MidiRdv);
    }

    #[test]
    fn typed_addresses_become_rendezvous_urls() {
        assert_eq!(parse_address("10.0.0.5").unwrap(), "http://10.0.0.5:8787");
        assert_eq!(
            parse_address("10.0.0.5:9000").unwrap(),
            "http://10.0.0.5:9000"
        );
        assert_eq!(
            parse_address("http://host:1/x/").unwrap(),
            "http://host:1/x"
        );
        assert!(parse_address("10.0.0.5:port").is_err());
    }
}
