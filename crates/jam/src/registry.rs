//! The peer list the UI and the CLI show, and the events that keep them
//! current.
//!
//! It is fed from two sides: the protocol's [`PeerEvent`]s (who opened,
//! said hello, left) and the transport's [`LinkStats`] (round-trip time,
//! ICE route, byte counters). Each change comes out as one
//! [`RegistryEvent`] carrying a full snapshot of the peer, so a consumer
//! never has to merge partial updates: the CLI's `--json` mode prints each
//! event as one JSON line, and the desktop UI replaces the row.
//!
//! The JSON shape is an interface (scripts read it), so field names are
//! fixed here with explicit camelCase names and covered by a test.
//!
//! Like the protocol, it does no I/O and reads no clock, and it is bounded:
//! at most `capacity` peers, which [`Registry::for_jam`] sets to what the
//! [`Jam`](crate::protocol::Jam) itself can hold. Peers that left are
//! reported once, with state `left`, and forgotten.

use std::time::Duration;

use serde::{Serialize, Serializer};
use types::Millis;

use crate::protocol::{ClientKind, Hello, JamConfig, LeaveReason, PeerEvent, PeerId};

/// The `client` field our own joiners put in their `hello`, followed by
/// `/<version>`: `midi-jam/0.1.0` for this app in join mode. MidiEditor
/// ignores unknown fields, so the field is safe to send to any host.
pub const CLIENT_APP: &str = "midi-jam";
/// The same for our browser join page: `midi-jam-web/0.1.0`.
pub const CLIENT_BROWSER: &str = "midi-jam-web";

/// Which program a peer is, from its transport's hint and its `hello`.
///
/// The heuristic, strongest evidence first:
/// 1. a `client` field naming one of ours ([`CLIENT_BROWSER`],
///    [`CLIENT_APP`]) or containing `midieditor` decides;
/// 2. otherwise the transport's hint, when it has one (the I/O layer knows
///    for instance that a joiner came through the browser join page, or over
///    MidiEditor's LAN TCP mode);
/// 3. otherwise a `hello` with **no** `client` field but with `appVersion`
///    or MidiEditor's edit-history fields (`currentHead`,
///    `historyTailHashes`) is MidiEditor: MidiEditor 2.0.1 sends all three
///    and never a `client`, while our joiners always send `client`;
/// 4. anything else is `Unknown`.
///
/// It only labels a row in a list; nothing is trusted on the strength of it.
pub fn classify(hint: ClientKind, hello: &Hello) -> ClientKind {
    if let Some(client) = &hello.client {
        let c = client.to_ascii_lowercase();
        if is_ours(&c, CLIENT_BROWSER) {
            return ClientKind::Browser;
        }
        if is_ours(&c, CLIENT_APP) {
            return ClientKind::ThisApp;
        }
        if c.contains("midieditor") {
            return ClientKind::MidiEditor;
        }
    }
    if hint != ClientKind::Unknown {
        return hint;
    }
    if hello.client.is_none() && (hello.has_history || hello.app_version.is_some()) {
        return ClientKind::MidiEditor;
    }
    ClientKind::Unknown
}

/// `name` exactly, or `name/...`: so `midi-jam` does not match
/// `midi-jam-web`.
fn is_ours(client: &str, name: &str) -> bool {
    client
        .strip_prefix(name)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PeerState {
    /// Known to the transport or with its channel open, but not welcomed.
    Connecting,
    /// Said hello and was welcomed.
    Connected,
    /// Gone; only ever seen in the [`RegistryEvent::Left`] snapshot.
    Left,
}

/// The ICE candidate type of the local end of the selected pair: `host` is
/// a direct LAN path, `srflx`/`prflx` went through NAT discovery, `relay`
/// through TURN. A peer on MidiEditor's LAN mode has no ICE at all: its
/// route is `tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Host,
    Srflx,
    Prflx,
    Relay,
    /// MidiEditor's LAN Live transport: plain TCP, no WebRTC
    /// (`jam::host::tcp`).
    Tcp,
    #[default]
    Unknown,
}

/// How a peer reaches the jam, in the words the peer list shows: one jam
/// has peers on both transports, and a user asking "why is this one slow?"
/// first wants to know which path it takes. Serialised as that text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum Transport {
    /// MidiEditor's LAN Live mode: framed JSON over plain TCP.
    #[serde(rename = "LAN (TCP)")]
    LanTcp,
    /// WebRTC on a host or peer-reflexive pair: straight across the LAN.
    #[serde(rename = "Direct (LAN)")]
    DirectLan,
    /// WebRTC on a server-reflexive pair: direct, found through STUN.
    #[serde(rename = "Direct (STUN)")]
    DirectStun,
    /// WebRTC through a TURN server.
    #[serde(rename = "Relayed")]
    Relayed,
    /// No path chosen yet (ICE still checking).
    #[default]
    #[serde(rename = "")]
    Unknown,
}

impl Transport {
    /// From the route of the selected path.
    pub fn of_route(route: Route) -> Transport {
        match route {
            Route::Tcp => Transport::LanTcp,
            Route::Host | Route::Prflx => Transport::DirectLan,
            Route::Srflx => Transport::DirectStun,
            Route::Relay => Transport::Relayed,
            Route::Unknown => Transport::Unknown,
        }
    }

    /// The text the peer list shows (empty while unknown).
    pub fn label(self) -> &'static str {
        match self {
            Transport::LanTcp => "LAN (TCP)",
            Transport::DirectLan => "Direct (LAN)",
            Transport::DirectStun => "Direct (STUN)",
            Transport::Relayed => "Relayed",
            Transport::Unknown => "",
        }
    }
}

impl Route {
    /// From an ICE candidate type as stats and SDP spell it (`host`,
    /// `srflx`, `prflx`, `relay`; the long W3C names are accepted too).
    pub fn from_candidate_type(s: &str) -> Route {
        match s.trim().to_ascii_lowercase().as_str() {
            "host" => Route::Host,
            "srflx" | "server-reflexive" | "serverreflexive" => Route::Srflx,
            "prflx" | "peer-reflexive" | "peerreflexive" => Route::Prflx,
            "relay" | "relayed" => Route::Relay,
            _ => Route::Unknown,
        }
    }
}

/// What the transport measured, as absolute values (not deltas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    /// Latest ICE round-trip time on the selected candidate pair; `None`
    /// until a check was answered on it (consent checks refresh it every ~2 s).
    pub rtt: Option<Duration>,
    pub route: Route,
    /// Bytes received on the transport so far (all protocols, encrypted).
    pub bytes_in: u64,
    /// Bytes sent on the transport so far.
    pub bytes_out: u64,
}

/// One row of the peer list. Serialises to the stable JSON snapshot:
/// `{"id","displayName","machineId","client","state","rttMs","route",
/// "transport","bytesIn","bytesOut","joinedAtMs","connectedAtMs"}`. Times are on the
/// engine's monotonic clock ([`Millis`]), not wall time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerEntry {
    #[serde(rename = "id")]
    pub id: PeerId,
    /// `None` until its hello.
    #[serde(rename = "displayName")]
    pub display_name: Option<String>,
    /// `None` until its hello.
    #[serde(rename = "machineId")]
    pub machine_id: Option<String>,
    #[serde(rename = "client")]
    pub client: ClientKind,
    #[serde(rename = "state")]
    pub state: PeerState,
    /// Serialised as fractional milliseconds: loopback RTTs are well under
    /// one.
    #[serde(rename = "rttMs", serialize_with = "ser_rtt_ms")]
    pub rtt: Option<Duration>,
    #[serde(rename = "route")]
    pub route: Route,
    /// Follows `route`: the words for it (`"LAN (TCP)"`, `"Direct (LAN)"`,
    /// `"Relayed"`, ...).
    #[serde(rename = "transport")]
    pub transport: Transport,
    #[serde(rename = "bytesIn")]
    pub bytes_in: u64,
    #[serde(rename = "bytesOut")]
    pub bytes_out: u64,
    /// When the registry first heard of it.
    #[serde(rename = "joinedAtMs", serialize_with = "ser_millis")]
    pub joined_at: Millis,
    /// When it was welcomed.
    #[serde(rename = "connectedAtMs", serialize_with = "ser_opt_millis")]
    pub connected_at: Option<Millis>,
}

fn ser_rtt_ms<S: Serializer>(rtt: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match rtt {
        Some(d) => s.serialize_some(&(d.as_micros() as f64 / 1000.0)),
        None => s.serialize_none(),
    }
}

fn ser_millis<S: Serializer>(t: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(t.0)
}

fn ser_opt_millis<S: Serializer>(t: &Option<Millis>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_some(&t.0),
        None => s.serialize_none(),
    }
}

/// A change to the list, with the peer's snapshot after it. Serialised as
/// `{"event":"joined"|"connected"|"changed"|"left","peer":{...}}`, plus
/// `"reason":{"code":...}` for `left`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum RegistryEvent {
    /// A new row, state `connecting`.
    Joined { peer: PeerEntry },
    /// Welcomed: name, machineId and client kind are now known.
    Connected { peer: PeerEntry },
    /// Link stats or client kind changed.
    Changed { peer: PeerEntry },
    /// The row is gone; the snapshot has state `left`.
    Left {
        peer: PeerEntry,
        reason: LeaveReason,
    },
}

impl RegistryEvent {
    pub fn peer(&self) -> &PeerEntry {
        match self {
            RegistryEvent::Joined { peer }
            | RegistryEvent::Connected { peer }
            | RegistryEvent::Changed { peer }
            | RegistryEvent::Left { peer, .. } => peer,
        }
    }
}

/// The peer list.
#[derive(Debug)]
pub struct Registry {
    capacity: usize,
    /// In order of first appearance, as the list is shown.
    peers: Vec<PeerEntry>,
}

impl Registry {
    /// A list of at most `capacity` peers.
    pub fn new(capacity: usize) -> Self {
        Registry {
            capacity,
            peers: Vec::new(),
        }
    }

    /// Sized for everything `cfg`'s jam can hold: its welcomed peers plus
    /// the channels still waiting for their hello.
    pub fn for_jam(cfg: &JamConfig) -> Self {
        Self::new(cfg.max_peers.saturating_add(cfg.max_pending))
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Follows the jam's limits when they change live (see
    /// [`Registry::for_jam`]); rows already listed stay even above it.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
    }

    pub fn peers(&self) -> &[PeerEntry] {
        &self.peers
    }

    pub fn get(&self, peer: PeerId) -> Option<&PeerEntry> {
        self.peers.iter().find(|p| p.id == peer)
    }

    fn index(&self, peer: PeerId) -> Option<usize> {
        self.peers.iter().position(|p| p.id == peer)
    }

    fn new_entry(now: Millis, peer: PeerId, client: ClientKind) -> PeerEntry {
        PeerEntry {
            id: peer,
            display_name: None,
            machine_id: None,
            client,
            state: PeerState::Connecting,
            rtt: None,
            route: Route::Unknown,
            transport: Transport::Unknown,
            bytes_in: 0,
            bytes_out: 0,
            joined_at: now,
            connected_at: None,
        }
    }

    /// Adds a connecting row if there is room. When full, a peer about to be
    /// shown as connected (`for_connected`) takes the place of the oldest
    /// row still connecting, which is reported as left: a welcomed peer
    /// matters more than a half-open one.
    fn admit(
        &mut self,
        now: Millis,
        peer: PeerId,
        client: ClientKind,
        for_connected: bool,
        out: &mut Vec<RegistryEvent>,
    ) -> Option<usize> {
        if self.peers.len() >= self.capacity {
            let oldest = self
                .peers
                .iter()
                .position(|p| p.state == PeerState::Connecting)
                .filter(|_| for_connected)?;
            out.extend(self.remove(oldest, LeaveReason::TooManyPending));
        }
        self.peers.push(Self::new_entry(now, peer, client));
        let i = self.peers.len() - 1;
        out.push(RegistryEvent::Joined {
            peer: self.peers[i].clone(),
        });
        Some(i)
    }

    fn remove(&mut self, i: usize, reason: LeaveReason) -> Option<RegistryEvent> {
        if i >= self.peers.len() {
            return None;
        }
        let mut peer = self.peers.remove(i);
        peer.state = PeerState::Left;
        Some(RegistryEvent::Left { peer, reason })
    }

    /// The transport is setting up a connection (before any channel opens),
    /// so the row can show up at once. Known peers are left as they are.
    pub fn connecting(
        &mut self,
        now: Millis,
        peer: PeerId,
        hint: ClientKind,
    ) -> Option<RegistryEvent> {
        if self.index(peer).is_some() {
            return None;
        }
        let mut out = Vec::new();
        self.admit(now, peer, hint, false, &mut out);
        out.pop()
    }

    /// The transport gave up on a peer the protocol never heard of (ICE or
    /// DTLS failed before the channel opened).
    pub fn left(&mut self, peer: PeerId, reason: LeaveReason) -> Option<RegistryEvent> {
        let i = self.index(peer)?;
        self.remove(i, reason)
    }

    /// Folds in one protocol event. Events about chat, bad frames and other
    /// frames change nothing here.
    pub fn apply(&mut self, now: Millis, event: &PeerEvent) -> Vec<RegistryEvent> {
        let mut out = Vec::new();
        match event {
            PeerEvent::Opened { peer, hint } => match self.index(*peer) {
                None => {
                    self.admit(now, *peer, *hint, false, &mut out);
                }
                Some(i) => {
                    let p = &mut self.peers[i];
                    if p.client == ClientKind::Unknown && *hint != ClientKind::Unknown {
                        p.client = *hint;
                        out.push(RegistryEvent::Changed { peer: p.clone() });
                    }
                }
            },
            PeerEvent::Joined { peer, hello, hint } => {
                let i = match self.index(*peer) {
                    Some(i) => Some(i),
                    None => self.admit(now, *peer, *hint, true, &mut out),
                };
                if let Some(i) = i {
                    let p = &mut self.peers[i];
                    p.display_name = Some(hello.display_name.clone());
                    p.machine_id = Some(hello.machine_id.clone());
                    p.client = classify(*hint, hello);
                    p.state = PeerState::Connected;
                    p.connected_at = Some(now);
                    out.push(RegistryEvent::Connected { peer: p.clone() });
                }
            }
            PeerEvent::Left { peer, reason, .. } => {
                if let Some(i) = self.index(*peer) {
                    out.extend(self.remove(i, reason.clone()));
                }
            }
            PeerEvent::Chat { .. }
            | PeerEvent::ChatDropped { .. }
            | PeerEvent::BadFrame { .. }
            | PeerEvent::Other { .. } => {}
        }
        out
    }

    /// New link measurements for `peer`. Emits `Changed` only when a value
    /// actually changed, so a stats poll on an idle link is silent.
    pub fn link_stats(&mut self, peer: PeerId, stats: &LinkStats) -> Option<RegistryEvent> {
        let i = self.index(peer)?;
        let p = &mut self.peers[i];
        let before = (p.rtt, p.route, p.bytes_in, p.bytes_out);
        let after = (stats.rtt, stats.route, stats.bytes_in, stats.bytes_out);
        if before == after {
            return None;
        }
        (p.rtt, p.route, p.bytes_in, p.bytes_out) = after;
        p.transport = Transport::of_route(p.route);
        Some(RegistryEvent::Changed { peer: p.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::encode_json;
    use crate::protocol::{Action, Jam};
    use serde_json::json;

    fn t(ms: u64) -> Millis {
        Millis(ms)
    }

    fn hello_of(client: Option<&str>, app_version: Option<&str>, has_history: bool) -> Hello {
        Hello {
            machine_id: "m1".into(),
            display_name: "Bob".into(),
            app_version: app_version.map(Into::into),
            session_id: None,
            client: client.map(Into::into),
            has_history,
        }
    }

    fn opened(peer: u64) -> PeerEvent {
        PeerEvent::Opened {
            peer: PeerId(peer),
            hint: ClientKind::Unknown,
        }
    }

    fn joined(peer: u64, hello: Hello) -> PeerEvent {
        PeerEvent::Joined {
            peer: PeerId(peer),
            hello,
            hint: ClientKind::Unknown,
        }
    }

    fn left(peer: u64, reason: LeaveReason) -> PeerEvent {
        PeerEvent::Left {
            peer: PeerId(peer),
            machine_id: None,
            reason,
        }
    }

    fn names(evs: &[RegistryEvent]) -> Vec<&'static str> {
        evs.iter()
            .map(|e| match e {
                RegistryEvent::Joined { .. } => "joined",
                RegistryEvent::Connected { .. } => "connected",
                RegistryEvent::Changed { .. } => "changed",
                RegistryEvent::Left { .. } => "left",
            })
            .collect()
    }

    #[test]
    fn midieditor_hello_is_classified_as_midieditor() {
        let h = hello_of(None, Some("2.0.1"), true);
        assert_eq!(classify(ClientKind::Unknown, &h), ClientKind::MidiEditor);
        assert_eq!(
            classify(ClientKind::Unknown, &hello_of(None, Some("2.1"), false)),
            ClientKind::MidiEditor
        );
        assert_eq!(
            classify(
                ClientKind::Unknown,
                &hello_of(Some("MidiEditor AI 2.0.1"), None, false)
            ),
            ClientKind::MidiEditor
        );
    }

    #[test]
    fn our_joiners_are_recognised_by_their_client_field() {
        let app = hello_of(Some("midi-jam/0.1.0"), Some("0.1.0"), false);
        assert_eq!(classify(ClientKind::Unknown, &app), ClientKind::ThisApp);
        let web = hello_of(Some("midi-jam-web/0.1.0"), None, false);
        assert_eq!(classify(ClientKind::Unknown, &web), ClientKind::Browser);
        // The field beats the transport's guess.
        assert_eq!(classify(ClientKind::MidiEditor, &web), ClientKind::Browser);
        assert_eq!(
            classify(
                ClientKind::Unknown,
                &hello_of(Some("midi-jam"), None, false)
            ),
            ClientKind::ThisApp
        );
        // A prefix that merely looks alike is not ours.
        assert_eq!(
            classify(
                ClientKind::Unknown,
                &hello_of(Some("midi-jammer/1"), None, false)
            ),
            ClientKind::Unknown
        );
    }

    #[test]
    fn the_transport_hint_decides_when_the_hello_does_not() {
        let bare = hello_of(None, None, false);
        assert_eq!(classify(ClientKind::Browser, &bare), ClientKind::Browser);
        assert_eq!(classify(ClientKind::Unknown, &bare), ClientKind::Unknown);
        // An unrecognised client field is not stock MidiEditor, whatever else
        // it sends.
        let other = hello_of(Some("somebot/1"), Some("2.0.1"), true);
        assert_eq!(classify(ClientKind::Unknown, &other), ClientKind::Unknown);
        assert_eq!(classify(ClientKind::ThisApp, &other), ClientKind::ThisApp);
    }

    #[test]
    fn routes_parse_from_candidate_types() {
        assert_eq!(Route::from_candidate_type("host"), Route::Host);
        assert_eq!(Route::from_candidate_type("SRFLX"), Route::Srflx);
        assert_eq!(Route::from_candidate_type("prflx"), Route::Prflx);
        assert_eq!(Route::from_candidate_type("peer-reflexive"), Route::Prflx);
        assert_eq!(Route::from_candidate_type("relay"), Route::Relay);
        assert_eq!(Route::from_candidate_type("relayed"), Route::Relay);
        assert_eq!(Route::from_candidate_type(""), Route::Unknown);
        assert_eq!(Route::from_candidate_type("mdns"), Route::Unknown);
    }

    #[test]
    fn an_opened_channel_shows_up_as_connecting() {
        let mut r = Registry::new(4);
        let evs = r.apply(t(100), &opened(1));
        assert_eq!(names(&evs), ["joined"]);
        let p = evs[0].peer();
        assert_eq!(p.state, PeerState::Connecting);
        assert_eq!(p.joined_at, t(100));
        assert_eq!(p.display_name, None);
        assert_eq!(r.peers().len(), 1);
    }

    #[test]
    fn hello_makes_a_peer_connected_with_its_name_and_kind() {
        let mut r = Registry::new(4);
        r.apply(t(100), &opened(1));
        let evs = r.apply(t(150), &joined(1, hello_of(None, Some("2.0.1"), true)));
        assert_eq!(names(&evs), ["connected"]);
        let p = r.get(PeerId(1)).unwrap();
        assert_eq!(p.state, PeerState::Connected);
        assert_eq!(p.display_name.as_deref(), Some("Bob"));
        assert_eq!(p.machine_id.as_deref(), Some("m1"));
        assert_eq!(p.client, ClientKind::MidiEditor);
        assert_eq!(p.joined_at, t(100));
        assert_eq!(p.connected_at, Some(t(150)));
        assert_eq!(evs[0].peer(), p);
    }

    #[test]
    fn a_peer_first_seen_at_its_hello_gets_both_events() {
        let mut r = Registry::new(4);
        let evs = r.apply(t(1), &joined(7, hello_of(None, None, false)));
        assert_eq!(names(&evs), ["joined", "connected"]);
        assert_eq!(evs[0].peer().state, PeerState::Connecting);
        assert_eq!(evs[1].peer().state, PeerState::Connected);
    }

    #[test]
    fn a_peer_seen_connecting_by_the_transport_keeps_its_row() {
        let mut r = Registry::new(4);
        let ev = r.connecting(t(10), PeerId(1), ClientKind::Unknown).unwrap();
        assert_eq!(names(&[ev]), ["joined"]);
        assert_eq!(r.connecting(t(11), PeerId(1), ClientKind::Browser), None);
        // The channel opening with a better hint refines it.
        let evs = r.apply(
            t(20),
            &PeerEvent::Opened {
                peer: PeerId(1),
                hint: ClientKind::Browser,
            },
        );
        assert_eq!(names(&evs), ["changed"]);
        assert_eq!(r.get(PeerId(1)).unwrap().client, ClientKind::Browser);
        assert_eq!(r.get(PeerId(1)).unwrap().joined_at, t(10));
        assert!(r.apply(t(21), &opened(1)).is_empty());
    }

    #[test]
    fn a_transport_failure_before_the_channel_removes_the_row() {
        let mut r = Registry::new(4);
        r.connecting(t(0), PeerId(1), ClientKind::Unknown);
        let ev = r.left(PeerId(1), LeaveReason::Closed).unwrap();
        assert_eq!(ev.peer().state, PeerState::Left);
        assert!(r.peers().is_empty());
        assert_eq!(r.left(PeerId(1), LeaveReason::Closed), None);
    }

    #[test]
    fn a_left_peer_is_reported_once_with_state_left_then_forgotten() {
        let mut r = Registry::new(4);
        r.apply(t(0), &opened(1));
        r.apply(t(0), &joined(1, hello_of(None, None, false)));
        let evs = r.apply(t(5), &left(1, LeaveReason::Ghost));
        assert_eq!(names(&evs), ["left"]);
        let RegistryEvent::Left { peer, reason } = &evs[0] else {
            unreachable!()
        };
        assert_eq!(peer.state, PeerState::Left);
        assert_eq!(peer.machine_id.as_deref(), Some("m1"));
        assert_eq!(*reason, LeaveReason::Ghost);
        assert!(r.peers().is_empty());
        assert!(r.apply(t(6), &left(1, LeaveReason::Closed)).is_empty());
    }

    #[test]
    fn link_stats_emit_changed_only_when_something_changed() {
        let mut r = Registry::new(4);
        r.apply(t(0), &opened(1));
        let s = LinkStats {
            rtt: Some(Duration::from_micros(420)),
            route: Route::Host,
            bytes_in: 100,
            bytes_out: 200,
        };
        let ev = r.link_stats(PeerId(1), &s).unwrap();
        assert_eq!(names(std::slice::from_ref(&ev)), ["changed"]);
        assert_eq!(ev.peer().rtt, Some(Duration::from_micros(420)));
        assert_eq!(ev.peer().route, Route::Host);
        assert_eq!(r.link_stats(PeerId(1), &s), None);
        let more = LinkStats { bytes_in: 101, ..s };
        assert!(r.link_stats(PeerId(1), &more).is_some());
        assert_eq!(r.link_stats(PeerId(9), &more), None, "unknown peer");
    }

    #[test]
    fn other_protocol_events_change_nothing() {
        let mut r = Registry::new(4);
        r.apply(t(0), &opened(1));
        let ev = PeerEvent::ChatDropped {
            peer: PeerId(1),
            why: crate::protocol::ChatDrop::TooFast,
        };
        assert!(r.apply(t(1), &ev).is_empty());
    }

    #[test]
    fn the_list_is_bounded_and_a_connected_peer_displaces_a_connecting_one() {
        let mut r = Registry::new(3);
        for id in 1..=3 {
            r.apply(t(id), &opened(id));
        }
        assert!(r.apply(t(4), &opened(4)).is_empty(), "full: not listed");
        assert_eq!(r.connecting(t(4), PeerId(5), ClientKind::Unknown), None);
        assert_eq!(r.peers().len(), 3);
        r.apply(t(5), &joined(2, hello_of(None, None, false)));
        // A welcomed peer we never listed still gets a row: the oldest
        // connecting one (1) makes way.
        let evs = r.apply(t(6), &joined(4, hello_of(None, None, false)));
        assert_eq!(names(&evs), ["left", "joined", "connected"]);
        assert_eq!(evs[0].peer().id, PeerId(1));
        let ids: Vec<_> = r.peers().iter().map(|p| p.id.0).collect();
        assert_eq!(ids, [2, 3, 4]);
        // With no connecting row left, nothing more fits.
        r.apply(t(7), &joined(3, hello_of(None, None, false)));
        assert!(r
            .apply(t(8), &joined(5, hello_of(None, None, false)))
            .is_empty());
        assert_eq!(r.peers().len(), 3);
    }

    #[test]
    fn for_jam_fits_everything_the_jam_can_hold() {
        let cfg = JamConfig::default();
        assert_eq!(Registry::for_jam(&cfg).capacity(), 8 + 4);
    }

    #[test]
    fn json_snapshot_has_stable_camel_case_fields() {
        let mut r = Registry::new(4);
        r.apply(t(1000), &opened(3));
        r.apply(t(1500), &joined(3, hello_of(None, Some("2.0.1"), true)));
        let ev = r
            .link_stats(
                PeerId(3),
                &LinkStats {
                    rtt: Some(Duration::from_micros(1250)),
                    route: Route::Srflx,
                    bytes_in: 10,
                    bytes_out: 20,
                },
            )
            .unwrap();
        assert_eq!(
            serde_json::to_value(&ev).unwrap(),
            json!({
                "event": "changed",
                "peer": {
                    "id": 3,
                    "displayName": "Bob",
                    "machineId": "m1",
                    "client": "midiEditor",
                    "state": "connected",
                    "rttMs": 1.25,
                    "route": "srflx",
                    "transport": "Direct (STUN)",
                    "bytesIn": 10,
                    "bytesOut": 20,
                    "joinedAtMs": 1000,
                    "connectedAtMs": 1500,
                }
            })
        );
        let evs = r.apply(
            t(2000),
            &left(
                3,
                LeaveReason::Kicked {
                    reason: "bye".into(),
                },
            ),
        );
        let v = serde_json::to_value(&evs[0]).unwrap();
        assert_eq!(v["event"], "left");
        assert_eq!(v["peer"]["state"], "left");
        assert_eq!(v["reason"], json!({"code": "kicked", "reason": "bye"}));
        let v = serde_json::to_value(r.apply(t(0), &opened(4))).unwrap();
        assert_eq!(
            v,
            json!([{"event": "joined", "peer": {
                "id": 4, "displayName": null, "machineId": null, "client": "unknown",
                "state": "connecting", "rttMs": null, "route": "unknown", "transport": "", "bytesIn": 0,
                "bytesOut": 0, "joinedAtMs": 0, "connectedAtMs": null,
            }}])
        );
    }

    #[test]
    fn every_leave_reason_serialises_with_a_code() {
        for (reason, code) in [
            (LeaveReason::Closed, "closed"),
            (LeaveReason::Ghost, "ghost"),
            (LeaveReason::Silent, "silent"),
            (LeaveReason::HelloTimeout, "helloTimeout"),
            (LeaveReason::Garbage, "garbage"),
            (LeaveReason::Full { max: 8 }, "full"),
            (LeaveReason::BadHello { why: "x".into() }, "badHello"),
            (LeaveReason::TooManyPending, "tooManyPending"),
            (LeaveReason::Kicked { reason: "x".into() }, "kicked"),
            (LeaveReason::LinkLost, "linkLost"),
        ] {
            assert_eq!(serde_json::to_value(&reason).unwrap()["code"], code);
        }
    }

    #[test]
    fn registry_follows_a_jam_through_join_ghost_and_silence() {
        let mut jam = Jam::new(JamConfig {
            host_machine_id: "host".into(),
            ..JamConfig::default()
        });
        let mut reg = Registry::for_jam(jam.config());
        let mut log = Vec::new();
        let mut feed = |reg: &mut Registry, now: u64, actions: Vec<Action>| {
            for a in actions {
                if let Action::Event(e) = a {
                    log.extend(reg.apply(t(now), &e));
                }
            }
        };
        let hello = |m: &str, client: &str| {
            encode_json(
                &json!({"type": "hello", "machineId": m, "displayName": m, "client": client}),
            )
        };
        let a = jam.channel_opened(t(0), PeerId(1), ClientKind::Unknown);
        feed(&mut reg, 0, a);
        let a = jam.frame_received(t(10), PeerId(1), &hello("alice", "midi-jam/0.1.0"));
        feed(&mut reg, 10, a);
        let a = jam.channel_opened(t(20), PeerId(2), ClientKind::Unknown);
        feed(&mut reg, 20, a);
        let a = jam.frame_received(t(30), PeerId(2), &hello("alice", "midi-jam/0.1.0"));
        feed(&mut reg, 30, a);
        let a = jam.tick(t(30_030));
        feed(&mut reg, 30_030, a);
        let summary: Vec<_> = log
            .iter()
            .map(|e| {
                (
                    names(std::slice::from_ref(e))[0],
                    e.peer().id.0,
                    e.peer().state,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("joined", 1, PeerState::Connecting),
                ("connected", 1, PeerState::Connected),
                ("joined", 2, PeerState::Connecting),
                ("left", 1, PeerState::Left),
                ("connected", 2, PeerState::Connected),
                ("left", 2, PeerState::Left),
            ]
        );
        assert_eq!(log[1].peer().client, ClientKind::ThisApp);
        assert!(reg.peers().is_empty());
    }
}
