//! Just enough STUN (RFC 5389) and TURN (RFC 5766) to ask a server two
//! questions: "what address do you see me at?" (Binding → XOR-MAPPED-ADDRESS)
//! and "will you relay for me with these credentials?" (Allocate →
//! XOR-RELAYED-ADDRESS, long-term credentials).
//!
//! Written here rather than borrowed from webrtc-rs because its ICE agent
//! hides *why* a server gave no candidate: a wrong password, a silent port
//! and a typo all look like "no relay candidate" from the outside, and a
//! person fixing their settings needs to know which one it was.
//!
//! Only UDP is spoken (what MidiEditor's libjuice uses for STUN and TURN).
//! Every receive is bounded by a deadline the caller gives; every parse is
//! bounds-checked, so a hostile or broken server cannot make us panic or
//! wait forever.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// The fixed value in every RFC 5389 header, also the XOR mask of addresses.
pub(crate) const MAGIC_COOKIE: u32 = 0x2112_A442;

pub(crate) const BINDING_REQUEST: u16 = 0x0001;
pub(crate) const BINDING_SUCCESS: u16 = 0x0101;
pub(crate) const BINDING_ERROR: u16 = 0x0111;
pub(crate) const ALLOCATE_REQUEST: u16 = 0x0003;
pub(crate) const ALLOCATE_SUCCESS: u16 = 0x0103;
pub(crate) const ALLOCATE_ERROR: u16 = 0x0113;
pub(crate) const REFRESH_REQUEST: u16 = 0x0004;

pub(crate) const ATTR_MAPPED_ADDRESS: u16 = 0x0001;
pub(crate) const ATTR_USERNAME: u16 = 0x0006;
pub(crate) const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
pub(crate) const ATTR_ERROR_CODE: u16 = 0x0009;
pub(crate) const ATTR_LIFETIME: u16 = 0x000D;
pub(crate) const ATTR_XOR_RELAYED_ADDRESS: u16 = 0x0016;
pub(crate) const ATTR_REALM: u16 = 0x0014;
pub(crate) const ATTR_NONCE: u16 = 0x0015;
pub(crate) const ATTR_REQUESTED_TRANSPORT: u16 = 0x0019;
pub(crate) const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
pub(crate) const ATTR_SOFTWARE: u16 = 0x8022;

/// REQUESTED-TRANSPORT value for UDP (IANA protocol number 17).
const TRANSPORT_UDP: u8 = 17;
/// First retransmission timeout; doubled after each retransmission
/// (RFC 5389 §7.2.1 suggests 500 ms; a check wants an answer sooner and
/// loses little by sending a few more 20-byte requests).
const INITIAL_RTO: Duration = Duration::from_millis(250);
/// Largest datagram read. STUN responses are small; anything beyond this is
/// not a STUN message we want.
const MAX_DATAGRAM: usize = 2048;
/// What we tell a server we are, so its logs say who asked.
const SOFTWARE: &str = "midi-rdv connection test";

/// Why a STUN/TURN exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StunError {
    /// No answer before the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The host said nothing listens on that port (ICMP port unreachable),
    /// or the network has no route to it.
    #[error("{0}")]
    Unreachable(String),
    /// A reply that is not a well-formed STUN response to our request.
    #[error("not a STUN answer: {0}")]
    Malformed(String),
    /// A local socket problem (binding, sending).
    #[error("local socket error: {0}")]
    Socket(String),
}

/// A parsed STUN message; attributes are kept as offsets into `raw`.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    pub msg_type: u16,
    pub txid: [u8; 12],
    /// (type, start of value, length of value) per attribute, in order.
    attrs: Vec<(u16, usize, usize)>,
    raw: Vec<u8>,
}

impl Message {
    /// Parses one message, checking every length against the buffer.
    pub fn parse(buf: &[u8]) -> Result<Message, String> {
        if buf.len() < 20 {
            return Err(format!("{} bytes is shorter than a STUN header", buf.len()));
        }
        if buf[0] & 0xC0 != 0 {
            return Err("the first two bits are not zero".to_owned());
        }
        let msg_type = u16::from_be_bytes([buf[0], buf[1]]);
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        let cookie = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        if cookie != MAGIC_COOKIE {
            return Err("no STUN magic cookie".to_owned());
        }
        if len % 4 != 0 || 20 + len > buf.len() {
            return Err(format!("bad message length {len}"));
        }
        let mut txid = [0u8; 12];
        txid.copy_from_slice(&buf[8..20]);
        let raw = buf[..20 + len].to_vec();
        let mut attrs = Vec::new();
        let mut at = 20;
        while at < raw.len() {
            if at + 4 > raw.len() {
                return Err("truncated attribute header".to_owned());
            }
            let kind = u16::from_be_bytes([raw[at], raw[at + 1]]);
            let vlen = usize::from(u16::from_be_bytes([raw[at + 2], raw[at + 3]]));
            let start = at + 4;
            if start + vlen > raw.len() {
                return Err(format!("attribute 0x{kind:04x} runs past the end"));
            }
            attrs.push((kind, start, vlen));
            at = start + vlen.div_ceil(4) * 4;
        }
        Ok(Message {
            msg_type,
            txid,
            attrs,
            raw,
        })
    }

    /// The value of the first attribute of that type.
    pub fn attr(&self, kind: u16) -> Option<&[u8]> {
        self.attrs
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|(_, start, len)| &self.raw[*start..*start + *len])
    }

    /// ERROR-CODE as (code, reason phrase).
    pub fn error_code(&self) -> Option<(u16, String)> {
        let value = self.attr(ATTR_ERROR_CODE)?;
        if value.len() < 4 {
            return None;
        }
        let code = u16::from(value[2] & 0x07) * 100 + u16::from(value[3]);
        let reason = String::from_utf8_lossy(&value[4..])
            .chars()
            .filter(|c| !c.is_control())
            .take(120)
            .collect();
        Some((code, reason))
    }

    /// A text attribute (REALM, NONCE, SOFTWARE), lossily decoded and bounded.
    pub fn text(&self, kind: u16) -> Option<String> {
        self.attr(kind)
            .map(|v| String::from_utf8_lossy(&v[..v.len().min(763)]).into_owned())
    }

    /// LIFETIME in seconds.
    pub fn lifetime(&self) -> Option<u32> {
        let v = self.attr(ATTR_LIFETIME)?;
        (v.len() == 4).then(|| u32::from_be_bytes([v[0], v[1], v[2], v[3]]))
    }

    /// An XOR-encoded address attribute (XOR-MAPPED-ADDRESS,
    /// XOR-RELAYED-ADDRESS), decoded with this message's transaction id.
    pub fn xor_address(&self, kind: u16) -> Option<SocketAddr> {
        let v = self.attr(kind)?;
        if v.len() < 4 {
            return None;
        }
        let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
        let cookie = MAGIC_COOKIE.to_be_bytes();
        match v[1] {
            0x01 if v.len() == 8 => {
                let mut ip = [0u8; 4];
                for i in 0..4 {
                    ip[i] = v[4 + i] ^ cookie[i];
                }
                Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
            }
            0x02 if v.len() == 20 => {
                let mut mask = [0u8; 16];
                mask[..4].copy_from_slice(&cookie);
                mask[4..].copy_from_slice(&self.txid);
                let mut ip = [0u8; 16];
                for i in 0..16 {
                    ip[i] = v[4 + i] ^ mask[i];
                }
                Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
            }
            _ => None,
        }
    }

    /// The plain MAPPED-ADDRESS some old servers send instead of the XOR one.
    pub fn plain_address(&self) -> Option<SocketAddr> {
        let v = self.attr(ATTR_MAPPED_ADDRESS)?;
        if v.len() < 4 {
            return None;
        }
        let port = u16::from_be_bytes([v[2], v[3]]);
        match v[1] {
            0x01 if v.len() == 8 => Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(v[4], v[5], v[6], v[7])),
                port,
            )),
            0x02 if v.len() == 20 => {
                let mut ip = [0u8; 16];
                ip.copy_from_slice(&v[4..20]);
                Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
            }
            _ => None,
        }
    }

    /// Checks MESSAGE-INTEGRITY with `key`: `None` when the message has none.
    pub fn integrity_ok(&self, key: &[u8]) -> Option<bool> {
        let (_, start, len) = *self
            .attrs
            .iter()
            .find(|(k, _, _)| *k == ATTR_MESSAGE_INTEGRITY)?;
        if len != 20 {
            return Some(false);
        }
        let attr_start = start - 4;
        // The HMAC covers everything before the attribute, with the header's
        // length counting up to the end of MESSAGE-INTEGRITY.
        let mut covered = self.raw[..attr_start].to_vec();
        let pretend_len = (attr_start + 24 - 20) as u16;
        covered[2..4].copy_from_slice(&pretend_len.to_be_bytes());
        let expected = hmac_sha1(key, &covered);
        Some(expected[..] == self.raw[start..start + 20])
    }
}

/// Builds one request.
pub(crate) struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    pub fn new(msg_type: u16, txid: [u8; 12]) -> Builder {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&msg_type.to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&txid);
        Builder { buf }
    }

    pub fn attr(mut self, kind: u16, value: &[u8]) -> Builder {
        // Values here are user names, realms and nonces the server sent:
        // cap them so the 16-bit length can never wrap.
        let value = &value[..value.len().min(1024)];
        self.buf.extend_from_slice(&kind.to_be_bytes());
        self.buf
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
        self.set_len();
        self
    }

    /// Appends MESSAGE-INTEGRITY (HMAC-SHA1 with `key`) and returns the bytes.
    pub fn finish_with_integrity(mut self, key: &[u8]) -> Vec<u8> {
        let len = (self.buf.len() + 24 - 20) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
        let mac = hmac_sha1(key, &self.buf);
        self.attr(ATTR_MESSAGE_INTEGRITY, &mac).buf
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    fn set_len(&mut self) {
        let len = (self.buf.len() - 20) as u16;
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; 20] {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let mut mac = match <Hmac<Sha1> as Mac>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 20],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The long-term credential key, MD5(username ":" realm ":" password)
/// (RFC 5389 §15.4). SASLprep is not applied: it only changes exotic
/// Unicode, which the servers we know do not apply either.
pub(crate) fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(format!("{username}:{realm}:{password}").as_bytes());
    md5.finalize().into()
}

pub(crate) fn new_txid() -> [u8; 12] {
    let mut txid = [0u8; 12];
    if getrandom::fill(&mut txid).is_err() {
        // Uniqueness, not secrecy, is what a transaction id needs.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        txid.copy_from_slice(&nanos.to_be_bytes()[4..]);
    }
    txid
}

/// A UDP socket "connected" to one server: the kernel then drops datagrams
/// from anyone else and reports ICMP port-unreachable as an error.
pub(crate) struct Client {
    socket: UdpSocket,
}

impl Client {
    pub async fn connect(server: SocketAddr) -> Result<Client, StunError> {
        let local: SocketAddr = if server.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|e| StunError::Socket(e.to_string()))?;
        socket.connect(server).await.map_err(|e| io_error(&e))?;
        Ok(Client { socket })
    }

    /// Sends `request` and retransmits it (RTO 250 ms, doubling) until a
    /// response with the same transaction id arrives or `deadline` passes.
    /// Returns the response and the time from the first send.
    pub async fn transact(
        &self,
        request: &[u8],
        deadline: Instant,
    ) -> Result<(Message, Duration), StunError> {
        let txid: [u8; 12] = request
            .get(8..20)
            .and_then(|t| t.try_into().ok())
            .ok_or_else(|| StunError::Socket("request too short".to_owned()))?;
        let started = Instant::now();
        let mut rto = INITIAL_RTO;
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut last_malformed: Option<String> = None;
        loop {
            self.socket.send(request).await.map_err(|e| io_error(&e))?;
            let resend_at = (Instant::now() + rto).min(deadline);
            rto = rto.saturating_mul(2);
            loop {
                match tokio::time::timeout_at(resend_at, self.socket.recv(&mut buf)).await {
                    Err(_) => break, // time to retransmit (or give up)
                    Ok(Err(e)) => return Err(io_error(&e)),
                    Ok(Ok(n)) => match Message::parse(&buf[..n]) {
                        Ok(message) if message.txid == txid => {
                            return Ok((message, started.elapsed()))
                        }
                        Ok(_) => {} // a late answer to an earlier request
                        Err(why) => last_malformed = Some(why),
                    },
                }
            }
            if Instant::now() >= deadline {
                return Err(match last_malformed {
                    Some(why) => StunError::Malformed(why),
                    None => StunError::Timeout(started.elapsed()),
                });
            }
        }
    }

    /// Sends once without waiting for an answer (a best-effort release).
    pub async fn send_once(&self, request: &[u8]) {
        let _ = self.socket.send(request).await;
    }
}

fn io_error(e: &std::io::Error) -> StunError {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => StunError::Unreachable(
            "the host answered that nothing listens on this UDP port (ICMP port unreachable)"
                .to_owned(),
        ),
        ErrorKind::NetworkUnreachable | ErrorKind::HostUnreachable => {
            StunError::Unreachable(format!("no route to the server ({e})"))
        }
        _ => StunError::Socket(e.to_string()),
    }
}

/// A Binding request.
pub(crate) fn binding_request(txid: [u8; 12]) -> Vec<u8> {
    Builder::new(BINDING_REQUEST, txid)
        .attr(ATTR_SOFTWARE, SOFTWARE.as_bytes())
        .finish()
}

/// Credentials for an authenticated TURN request.
pub(crate) struct Auth<'a> {
    pub username: &'a str,
    pub realm: &'a str,
    pub nonce: &'a str,
    pub key: [u8; 16],
}

/// An Allocate request for a UDP relay, unauthenticated or with `auth`.
pub(crate) fn allocate_request(txid: [u8; 12], auth: Option<&Auth<'_>>) -> Vec<u8> {
    let b = Builder::new(ALLOCATE_REQUEST, txid)
        .attr(ATTR_REQUESTED_TRANSPORT, &[TRANSPORT_UDP, 0, 0, 0])
        .attr(ATTR_SOFTWARE, SOFTWARE.as_bytes());
    with_auth(b, auth)
}

/// A Refresh with LIFETIME 0: releases the allocation we just made, so a
/// check never holds a relay port on someone's server for 10 minutes.
pub(crate) fn release_request(txid: [u8; 12], auth: &Auth<'_>) -> Vec<u8> {
    let b = Builder::new(REFRESH_REQUEST, txid).attr(ATTR_LIFETIME, &0u32.to_be_bytes());
    with_auth(b, Some(auth))
}

fn with_auth(b: Builder, auth: Option<&Auth<'_>>) -> Vec<u8> {
    match auth {
        Some(a) => b
            .attr(ATTR_USERNAME, a.username.as_bytes())
            .attr(ATTR_REALM, a.realm.as_bytes())
            .attr(ATTR_NONCE, a.nonce.as_bytes())
            .finish_with_integrity(&a.key),
        None => b.finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5769_sample_ipv4_response_decodes_and_verifies() {
        // RFC 5769 §2.2: a Binding success response, password "VOkJxbRl1RmTxUk/WvJxBt".
        let hex = "0101003c2112a442b7e7a701bc34d686fa87dfae8022000b7465737420766563746f7220\
                   002000080001a147e112a643000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7\
                   80280004c07d4c96";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let m = Message::parse(&bytes).unwrap();
        assert_eq!(m.msg_type, BINDING_SUCCESS);
        assert_eq!(
            m.xor_address(ATTR_XOR_MAPPED_ADDRESS),
            Some("192.0.2.1:32853".parse().unwrap())
        );
        assert_eq!(m.text(ATTR_SOFTWARE).as_deref(), Some("test vector"));
        // Short-term credentials: the key is the password itself.
        assert_eq!(m.integrity_ok(b"VOkJxbRl1RmTxUk/WvJxBt"), Some(true));
        assert_eq!(m.integrity_ok(b"wrong"), Some(false));
    }

    #[test]
    fn long_term_key_is_md5_of_user_realm_password() {
        let hex: String = long_term_key("u", "test", "p")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, "5c8157fd8ef5f6b56629b7399d83ce25");
    }

    #[test]
    fn built_requests_parse_back_and_their_integrity_verifies() {
        let txid = new_txid();
        let key = long_term_key("u", "test", "p");
        let auth = Auth {
            username: "u",
            realm: "test",
            nonce: "abc123",
            key,
        };
        let raw = allocate_request(txid, Some(&auth));
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.msg_type, ALLOCATE_REQUEST);
        assert_eq!(m.txid, txid);
        assert_eq!(m.text(ATTR_USERNAME).as_deref(), Some("u"));
        assert_eq!(m.text(ATTR_NONCE).as_deref(), Some("abc123"));
        assert_eq!(m.integrity_ok(&key), Some(true));
        assert_eq!(
            m.integrity_ok(&long_term_key("u", "test", "x")),
            Some(false)
        );
        assert_eq!(raw.len() % 4, 0);

        let plain = Message::parse(&binding_request(txid)).unwrap();
        assert_eq!(plain.msg_type, BINDING_REQUEST);
        assert_eq!(plain.integrity_ok(&key), None);
    }

    #[test]
    fn xor_addresses_round_trip_for_v4_and_v6() {
        let txid = [7u8; 12];
        for addr in ["203.0.113.9:5000", "[2001:db8::42]:61000"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut value = vec![0u8];
            let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
            let cookie = MAGIC_COOKIE.to_be_bytes();
            match addr.ip() {
                IpAddr::V4(ip) => {
                    value.push(1);
                    value.extend_from_slice(&port.to_be_bytes());
                    value.extend(ip.octets().iter().zip(cookie).map(|(a, b)| a ^ b));
                }
                IpAddr::V6(ip) => {
                    value.push(2);
                    value.extend_from_slice(&port.to_be_bytes());
                    let mut mask = cookie.to_vec();
                    mask.extend_from_slice(&txid);
                    value.extend(ip.octets().iter().zip(mask).map(|(a, b)| a ^ b));
                }
            }
            let raw = Builder::new(ALLOCATE_SUCCESS, txid)
                .attr(ATTR_XOR_RELAYED_ADDRESS, &value)
                .finish();
            let m = Message::parse(&raw).unwrap();
            assert_eq!(m.xor_address(ATTR_XOR_RELAYED_ADDRESS), Some(addr));
        }
    }

    #[test]
    fn error_codes_decode() {
        let raw = Builder::new(ALLOCATE_ERROR, [1; 12])
            .attr(
                ATTR_ERROR_CODE,
                &[0, 0, 4, 38, b'S', b't', b'a', b'l', b'e'],
            )
            .finish();
        let m = Message::parse(&raw).unwrap();
        assert_eq!(m.error_code(), Some((438, "Stale".to_owned())));
        assert_eq!(BINDING_ERROR & 0x0110, 0x0110);
    }

    #[test]
    fn garbage_never_panics_and_is_refused() {
        let mut seed = 0x1234_5678_u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let valid = allocate_request([3; 12], None);
        for round in 0..5000 {
            let mut bytes = if round % 2 == 0 {
                valid.clone()
            } else {
                (0..(next() % 64)).map(|_| next() as u8).collect()
            };
            for _ in 0..(next() % 6) {
                if !bytes.is_empty() {
                    let i = next() as usize % bytes.len();
                    bytes[i] = next() as u8;
                }
            }
            if next() % 3 == 0 {
                bytes.truncate(next() as usize % (bytes.len() + 1));
            }
            if let Ok(m) = Message::parse(&bytes) {
                let _ = m.error_code();
                let _ = m.xor_address(ATTR_XOR_MAPPED_ADDRESS);
                let _ = m.plain_address();
                let _ = m.integrity_ok(b"k");
                let _ = m.lifetime();
            }
        }
        assert!(Message::parse(&[0u8; 19]).is_err());
        assert!(Message::parse(&[0u8; 20]).is_err(), "no magic cookie");
    }
}
