//! MidiEditor's LAN Live discovery (`docs/lan-live.md`): a host sends one
//! UDP datagram a second to `239.42.42.42:42424`,
//! `MIDIEDIT-PR-LAN|v1|<sessionId>|<displayName>|<tcpPort>|<code>`; a
//! joiner listening on that group matches the code its user typed and
//! connects over TCP to the datagram's source address and that port.
//!
//! - [`Announcement`]: the datagram, parsed ([`Announcement::parse`]) and
//!   formatted ([`Announcement::to_datagram`]); no I/O.
//! - [`Announcer`]: sends it once a second, only out of the chosen
//!   interfaces (the same [`InterfaceChoice`] as the mDNS advert).
//! - [`Listener`]: joins the group on the chosen interfaces and keeps the
//!   hosts it hears, for the app's Join view.
//!
//! Both run on a plain thread (like the mDNS daemon), so this crate still
//! needs no async runtime.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::{InterfaceChoice, LanError};

/// The multicast group MidiEditor announces LAN Live sessions on.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 42, 42, 42);
/// Its UDP port.
pub const PORT: u16 = 42424;
/// The datagram's first field.
pub const MAGIC: &str = "MIDIEDIT-PR-LAN";
/// The only version MidiEditor 2.0.1 accepts.
pub const VERSION: &str = "v1";
/// How often a host announces (MidiEditor's `kAnnounceIntervalMs`).
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(1);
/// Longest datagram we read or write. MidiEditor's are well under 200
/// bytes; a name is capped at [`MAX_NAME_CHARS`].
pub const MAX_DATAGRAM: usize = 512;
/// Longest display name we put in (or accept from) a datagram.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest session id.
pub const MAX_SESSION_ID: usize = 128;
/// A host not heard from for this long leaves the Listener's list (five
/// missed announcements, in case a sender slows down).
pub const HOST_EXPIRY: Duration = Duration::from_secs(6);
/// Hosts a [`Listener`] keeps at once; more are ignored until some expire.
pub const MAX_HOSTS: usize = 64;

/// One LAN Live announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    pub session_id: String,
    pub display_name: String,
    pub tcp_port: u16,
    /// Four characters of `[A-Z0-9]` (MidiEditor draws from 32 symbols:
    /// A-Z and 2-9 without I and O).
    pub code: String,
}

/// Why a datagram is not an announcement we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatagramError {
    #[error("datagram of {0} bytes is over {MAX_DATAGRAM}")]
    TooLong(usize),
    #[error("not UTF-8")]
    NotUtf8,
    #[error("not a MIDIEDIT-PR-LAN datagram")]
    NotOurs,
    #[error("expected 6 |-separated fields, got {0}")]
    FieldCount(usize),
    #[error("unsupported version {0:?}")]
    Version(String),
    #[error("bad session id")]
    SessionId,
    #[error("bad display name")]
    DisplayName,
    #[error("bad TCP port {0:?}")]
    Port(String),
    #[error("bad code {0:?}")]
    Code(String),
}

fn valid_code(code: &str) -> bool {
    code.len() == 4
        && code
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

impl Announcement {
    /// Parses one datagram. Stricter than MidiEditor (which takes the sixth
    /// `|` field as the code even when there are more, and any port
    /// `toUShort` reads): exactly six fields, so a name with a `|` is refused
    /// rather than misread, a port from 1 to 65535 in plain digits, a
    /// 4-character code, no control characters anywhere.
    pub fn parse(datagram: &[u8]) -> Result<Announcement, DatagramError> {
        if datagram.len() > MAX_DATAGRAM {
            return Err(DatagramError::TooLong(datagram.len()));
        }
        let text = std::str::from_utf8(datagram).map_err(|_| DatagramError::NotUtf8)?;
        let fields: Vec<&str> = text.split('|').collect();
        if fields[0] != MAGIC {
            return Err(DatagramError::NotOurs);
        }
        if fields.len() != 6 {
            return Err(DatagramError::FieldCount(fields.len()));
        }
        if fields[1] != VERSION {
            return Err(DatagramError::Version(fields[1].to_owned()));
        }
        let session_id = fields[2];
        if session_id.is_empty()
            || session_id.len() > MAX_SESSION_ID
            || session_id.chars().any(char::is_control)
        {
            return Err(DatagramError::SessionId);
        }
        let display_name = fields[3];
        if display_name.chars().count() > MAX_NAME_CHARS
            || display_name.chars().any(char::is_control)
        {
            return Err(DatagramError::DisplayName);
        }
        let port = fields[4];
        let tcp_port =
            if !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()) {
                port.parse::<u16>().ok().filter(|p| *p != 0)
            } else {
                None
            }
            .ok_or_else(|| DatagramError::Port(port.to_owned()))?;
        let code = fields[5];
        if !valid_code(code) {
            return Err(DatagramError::Code(code.to_owned()));
        }
        Ok(Announcement {
            session_id: session_id.to_owned(),
            display_name: display_name.to_owned(),
            tcp_port,
            code: code.to_owned(),
        })
    }

    /// The datagram, after making every field safe to send: MidiEditor does
    /// no escaping, so a `|` (or a control character) in the name becomes a
    /// `/` (a space), and the name is cut to [`MAX_NAME_CHARS`]. Fails on a
    /// code, session id or port nobody could use.
    pub fn to_datagram(&self) -> Result<Vec<u8>, DatagramError> {
        if !valid_code(&self.code) {
            return Err(DatagramError::Code(self.code.clone()));
        }
        if self.session_id.is_empty()
            || self.session_id.len() > MAX_SESSION_ID
            || self.session_id.chars().any(|c| c == '|' || c.is_control())
        {
            return Err(DatagramError::SessionId);
        }
        if self.tcp_port == 0 {
            return Err(DatagramError::Port("0".into()));
        }
        let name: String = self
            .display_name
            .chars()
            .map(|c| match c {
                '|' => '/',
                c if c.is_control() => ' ',
                c => c,
            })
            .take(MAX_NAME_CHARS)
            .collect();
        let text = format!(
            "{MAGIC}|{VERSION}|{}|{}|{}|{}",
            self.session_id, name, self.tcp_port, self.code
        );
        Ok(text.into_bytes())
    }
}

/// The IPv4 addresses of the chosen interfaces, now (interfaces come and
/// go, so senders and listeners look again every few seconds). Loopback is
/// only used when named explicitly.
pub fn interface_addrs(choice: &InterfaceChoice) -> Vec<(String, Ipv4Addr)> {
    let Ok(all) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    let mut out: Vec<(String, Ipv4Addr)> = all
        .into_iter()
        .filter_map(|i| match i.ip() {
            IpAddr::V4(v4) => Some((i.name.clone(), v4, i.is_loopback())),
            IpAddr::V6(_) => None,
        })
        .filter(|(name, _, loopback)| choice.includes(name, *loopback))
        .map(|(name, ip, _)| (name, ip))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Sends an [`Announcement`] once a second on the chosen interfaces, until
/// stopped or dropped.
pub struct Announcer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Announcer {
    /// Starts at once (the first datagram goes out before this returns to
    /// the thread's loop; MidiEditor's joiner connects on the first match).
    pub fn start(
        interfaces: InterfaceChoice,
        announcement: &Announcement,
    ) -> Result<Announcer, LanError> {
        interfaces.validate()?;
        let datagram = announcement
            .to_datagram()
            .map_err(|e| LanError::InvalidConfig(e.to_string()))?;
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
            .map_err(|e| LanError::InvalidConfig(format!("UDP socket: {e}")))?;
        // One hop: a LAN announcement has no business past the router.
        let _ = socket.set_multicast_ttl_v4(1);
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("lan-live-announce".into())
            .spawn(move || announce_loop(socket, interfaces, datagram, stopped))
            .map_err(LanError::Thread)?;
        Ok(Announcer {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops sending (within one tick).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Announcer {
    fn drop(&mut self) {
        self.halt();
    }
}

fn announce_loop(
    socket: Socket,
    interfaces: InterfaceChoice,
    datagram: Vec<u8>,
    stopped: mpsc::Receiver<()>,
) {
    let to = SocketAddr::V4(SocketAddrV4::new(GROUP, PORT)).into();
    let mut addrs = Vec::new();
    let mut looked = None::<Instant>;
    let mut failures: u64 = 0;
    loop {
        if looked.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            addrs = interface_addrs(&interfaces);
            looked = Some(Instant::now());
            if addrs.is_empty() {
                tracing::debug!("LAN Live: no chosen interface has an IPv4 address");
            }
        }
        for (name, ip) in &addrs {
            let sent = socket
                .set_multicast_if_v4(ip)
                .and_then(|()| socket.send_to(&datagram, &to));
            if let Err(e) = sent {
                failures += 1;
                if failures == 1 || failures % 60 == 0 {
                    tracing::warn!("LAN Live: announcing on {name} ({ip}) failed: {e}");
                }
            }
        }
        match stopped.recv_timeout(ANNOUNCE_EVERY) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // Stopped, or the Announcer was dropped.
            _ => return,
        }
    }
}

/// A LAN Live host heard by a [`Listener`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeardHost {
    pub announcement: Announcement,
    /// Where to connect: the datagram's source address and its TCP port.
    pub addr: SocketAddr,
    /// When it was last heard.
    pub last_heard: Instant,
}

type Heard = Arc<Mutex<HashMap<(IpAddr, u16, String), HeardHost>>>;

/// Listens for announcements on the chosen interfaces and keeps the hosts
/// heard in the last [`HOST_EXPIRY`], at most [`MAX_HOSTS`].
pub struct Listener {
    heard: Heard,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Binds UDP 42424 (shared, as MidiEditor binds it, so both can listen
    /// on one machine) and joins the group on each chosen interface.
    pub fn start(interfaces: InterfaceChoice) -> Result<Listener, LanError> {
        interfaces.validate()?;
        let io = |what: &str, e: std::io::Error| LanError::InvalidConfig(format!("{what}: {e}"));
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
            .map_err(|e| io("UDP socket", e))?;
        socket
            .set_reuse_address(true)
            .map_err(|e| io("SO_REUSEADDR", e))?;
        let bind = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PORT));
        socket
            .bind(&bind.into())
            .map_err(|e| io("binding UDP 42424", e))?;
        let socket: UdpSocket = socket.into();
        socket
            .set_read_timeout(Some(Duration::from_millis(250)))
            .map_err(|e| io("read timeout", e))?;
        let joined = join_group(&socket, &interfaces, &mut Vec::new());
        if joined == 0 {
            return Err(LanError::InvalidConfig(
                "no chosen interface has an IPv4 address to listen on".into(),
            ));
        }
        let heard: Heard = Arc::default();
        let (stop, stopped) = mpsc::channel::<()>();
        let table = heard.clone();
        let thread = std::thread::Builder::new()
            .name("lan-live-listen".into())
            .spawn(move || listen_loop(socket, interfaces, table, stopped))
            .map_err(LanError::Thread)?;
        Ok(Listener {
            heard,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The hosts heard recently, oldest first.
    pub fn hosts(&self) -> Vec<HeardHost> {
        let mut map = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, h| h.last_heard.elapsed() < HOST_EXPIRY);
        let mut v: Vec<HeardHost> = map.values().cloned().collect();
        v.sort_by_key(|h| (h.addr, h.announcement.code.clone()));
        v
    }

    /// The host announcing `code`, if one was heard recently.
    pub fn find(&self, code: &str) -> Option<HeardHost> {
        self.hosts()
            .into_iter()
            .find(|h| h.announcement.code == code)
    }

    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Joins the group on every chosen interface not yet in `done`; returns how
/// many are joined in all.
fn join_group(socket: &UdpSocket, interfaces: &InterfaceChoice, done: &mut Vec<Ipv4Addr>) -> usize {
    for (name, ip) in interface_addrs(interfaces) {
        if done.contains(&ip) {
            continue;
        }
        match socket.join_multicast_v4(&GROUP, &ip) {
            Ok(()) => done.push(ip),
            Err(e) => tracing::debug!("LAN Live: cannot listen on {name} ({ip}): {e}"),
        }
    }
    done.len()
}

fn listen_loop(
    socket: UdpSocket,
    interfaces: InterfaceChoice,
    heard: Heard,
    stopped: mpsc::Receiver<()>,
) {
    let mut joined = Vec::new();
    join_group(&socket, &interfaces, &mut joined);
    let mut looked = Instant::now();
    let mut buf = [0u8; MAX_DATAGRAM + 1];
    loop {
        match stopped.try_recv() {
            Err(mpsc::TryRecvError::Empty) => {}
            _ => return,
        }
        if looked.elapsed() >= Duration::from_secs(5) {
            join_group(&socket, &interfaces, &mut joined);
            looked = Instant::now();
        }
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(r) => r,
            Err(_) => continue, // the read timeout: check for stop
        };
        let a = match Announcement::parse(&buf[..n]) {
            Ok(a) => a,
            Err(DatagramError::NotOurs) => continue,
            Err(e) => {
                tracing::debug!("LAN Live: ignored a datagram from {from}: {e}");
                continue;
            }
        };
        let addr = SocketAddr::new(from.ip(), a.tcp_port);
        let key = (from.ip(), a.tcp_port, a.code.clone());
        let mut map = heard.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, h| h.last_heard.elapsed() < HOST_EXPIRY);
        if map.len() >= MAX_HOSTS && !map.contains_key(&key) {
            continue;
        }
        map.insert(
            key,
            HeardHost {
                announcement: a,
                addr,
                last_heard: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> Announcement {
        Announcement {
            session_id: "jam-1".into(),
            display_name: "Ann".into(),
            tcp_port: 40000,
            code: "M7P3".into(),
        }
    }

    #[test]
    fn a_datagram_round_trips() {
        let d = ann().to_datagram().unwrap();
        assert_eq!(d, b"MIDIEDIT-PR-LAN|v1|jam-1|Ann|40000|M7P3");
        assert_eq!(Announcement::parse(&d).unwrap(), ann());
    }

    #[test]
    fn midieditors_own_datagram_parses() {
        // As MidiEditor 2.0.1 sends it: a {uuid} session id, an L in the code.
        let d = b"MIDIEDIT-PR-LAN|v1|{0f8e0c1a-1111-4b2c-9d3e-123456789abc}|Bob|38211|QL9Z";
        let a = Announcement::parse(d).unwrap();
        assert_eq!(a.code, "QL9Z");
        assert_eq!(a.tcp_port, 38211);
        assert_eq!(a.display_name, "Bob");
    }

    #[test]
    fn every_malformed_shape_is_refused_with_its_reason() {
        use DatagramError as E;
        let cases: Vec<(&[u8], E)> = vec![
            (b"", E::NotOurs),
            (b"hello", E::NotOurs),
            (b"MIDIEDIT-PR-LA|v1|s|n|1|ABCD", E::NotOurs),
            (b"midiedit-pr-lan|v1|s|n|1|ABCD", E::NotOurs),
            (b" MIDIEDIT-PR-LAN|v1|s|n|1|ABCD", E::NotOurs),
            (b"MIDIEDIT-PR-LAN", E::FieldCount(1)),
            (b"MIDIEDIT-PR-LAN|v1|s|n|1", E::FieldCount(5)),
            (b"MIDIEDIT-PR-LAN|v1|s|a|b|1|ABCD", E::FieldCount(7)),
            (b"MIDIEDIT-PR-LAN|v1|s|n|1|ABCD|", E::FieldCount(7)),
            (b"MIDIEDIT-PR-LAN|v2|s|n|1|ABCD", E::Version("v2".into())),
            (b"MIDIEDIT-PR-LAN||s|n|1|ABCD", E::Version(String::new())),
            (b"MIDIEDIT-PR-LAN|v1||n|1|ABCD", E::SessionId),
            (b"MIDIEDIT-PR-LAN|v1|s\x01|n|1|ABCD", E::SessionId),
            (b"MIDIEDIT-PR-LAN|v1|s|n\n|1|ABCD", E::DisplayName),
            (b"MIDIEDIT-PR-LAN|v1|s|n||ABCD", E::Port(String::new())),
            (b"MIDIEDIT-PR-LAN|v1|s|n|0|ABCD", E::Port("0".into())),
            (
                b"MIDIEDIT-PR-LAN|v1|s|n|65536|ABCD",
                E::Port("65536".into()),
            ),
            (b"MIDIEDIT-PR-LAN|v1|s|n|-1|ABCD", E::Port("-1".into())),
            (b"MIDIEDIT-PR-LAN|v1|s|n|+80|ABCD", E::Port("+80".into())),
            (b"MIDIEDIT-PR-LAN|v1|s|n| 80|ABCD", E::Port(" 80".into())),
            (b"MIDIEDIT-PR-LAN|v1|s|n|0x50|ABCD", E::Port("0x50".into())),
            (
                b"MIDIEDIT-PR-LAN|v1|s|n|000080|ABCD",
                E::Port("000080".into()),
            ),
            (b"MIDIEDIT-PR-LAN|v1|s|n|80|", E::Code(String::new())),
            (b"MIDIEDIT-PR-LAN|v1|s|n|80|abcd", E::Code("abcd".into())),
            (b"MIDIEDIT-PR-LAN|v1|s|n|80|ABC", E::Code("ABC".into())),
            (b"MIDIEDIT-PR-LAN|v1|s|n|80|ABCDE", E::Code("ABCDE".into())),
            (b"MIDIEDIT-PR-LAN|v1|s|n|80|AB D", E::Code("AB D".into())),
            (
                b"MIDIEDIT-PR-LAN|v1|s|n|80|ABCD\n",
                E::Code("ABCD\n".into()),
            ),
            (
                b"MIDIEDIT-PR-LAN|v1|s|n|80|\xc3\x84BCD",
                E::Code("\u{c4}BCD".into()),
            ),
            (b"MIDIEDIT-PR-LAN|v1|s|\xff|80|ABCD", E::NotUtf8),
        ];
        for (d, want) in cases {
            assert_eq!(
                Announcement::parse(d),
                Err(want),
                "{:?}",
                String::from_utf8_lossy(d)
            );
        }
        let long_name = format!("MIDIEDIT-PR-LAN|v1|s|{}|80|ABCD", "x".repeat(65));
        assert_eq!(
            Announcement::parse(long_name.as_bytes()),
            Err(DatagramError::DisplayName)
        );
        let long_id = format!("MIDIEDIT-PR-LAN|v1|{}|n|80|ABCD", "s".repeat(129));
        assert_eq!(
            Announcement::parse(long_id.as_bytes()),
            Err(DatagramError::SessionId)
        );
        let huge = vec![b'x'; MAX_DATAGRAM + 1];
        assert_eq!(
            Announcement::parse(&huge),
            Err(DatagramError::TooLong(MAX_DATAGRAM + 1))
        );
    }

    #[test]
    fn an_empty_name_and_unicode_names_are_fine() {
        let a = Announcement::parse("MIDIEDIT-PR-LAN|v1|s||80|ABCD".as_bytes()).unwrap();
        assert_eq!(a.display_name, "");
        let a = Announcement::parse("MIDIEDIT-PR-LAN|v1|s|Zoë 🎹|80|ABCD".as_bytes()).unwrap();
        assert_eq!(a.display_name, "Zoë 🎹");
    }

    #[test]
    fn formatting_makes_the_name_safe_and_refuses_what_cannot_be_sent() {
        let mut a = ann();
        a.display_name = format!("a|b\nc{}", "y".repeat(100));
        let d = a.to_datagram().unwrap();
        let back = Announcement::parse(&d).unwrap();
        assert!(back.display_name.starts_with("a/b c"));
        assert_eq!(back.display_name.chars().count(), MAX_NAME_CHARS);
        let mut bad = ann();
        bad.code = "m7p3".into();
        assert!(bad.to_datagram().is_err());
        let mut bad = ann();
        bad.session_id = "a|b".into();
        assert_eq!(bad.to_datagram(), Err(DatagramError::SessionId));
        let mut bad = ann();
        bad.tcp_port = 0;
        assert!(bad.to_datagram().is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut rng = test_support::rng::XorShift(0x9e37_79b9_7f4a_7c15);
        let symbols = b"|v1AZ09 \xff\x00x";
        for _ in 0..20_000 {
            let mut d = b"MIDIEDIT-PR-LAN|".to_vec();
            for _ in 0..rng.below(80) {
                d.push(symbols[rng.below(symbols.len())]);
            }
            let _ = Announcement::parse(&d);
            let n = rng.below(600);
            let _ = Announcement::parse(&rng.bytes(n));
        }
    }
}
