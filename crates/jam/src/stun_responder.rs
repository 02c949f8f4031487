//! A tiny STUN server for the LAN: answers Binding requests (RFC 5389) with
//! the address it saw, nothing else.
//!
//! Why: offline, a MidiEditor WAN joiner with default settings gathers ICE
//! against ten public STUN servers it cannot reach and waits for its
//! gathering timeout (8 s by default); a blank list cannot mean "none" in
//! MidiEditor. Pointed at a STUN server that answers (ours, on the host's
//! LAN address), gathering completes in milliseconds. It holds no state per
//! client and answers only well-formed Binding requests, one datagram for
//! one, never larger than the request plus 32 bytes, so it cannot be used
//! to amplify traffic.

use std::net::{IpAddr, SocketAddr};

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::check::stun::{
    Message, ATTR_XOR_MAPPED_ADDRESS, BINDING_REQUEST, BINDING_SUCCESS, MAGIC_COOKIE,
};

/// The STUN port MidiEditor assumes when a URI names none.
pub const STUN_PORT: u16 = 3478;
/// Ports tried after [`STUN_PORT`] when it is busy.
pub const PORT_ATTEMPTS: u16 = 20;

/// The Binding success response to `request` from `from`, or `None` when
/// it is not a Binding request (anything else is ignored, unanswered).
pub fn answer(request: &[u8], from: SocketAddr) -> Option<Vec<u8>> {
    let m = Message::parse(request).ok()?;
    if m.msg_type != BINDING_REQUEST {
        return None;
    }
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let mut value = Vec::with_capacity(20);
    value.push(0);
    let port = from.port() ^ (MAGIC_COOKIE >> 16) as u16;
    match from.ip() {
        IpAddr::V4(v4) => {
            value.push(0x01);
            value.extend_from_slice(&port.to_be_bytes());
            for (b, c) in v4.octets().iter().zip(cookie) {
                value.push(b ^ c);
            }
        }
        IpAddr::V6(v6) => {
            value.push(0x02);
            value.extend_from_slice(&port.to_be_bytes());
            let mask: Vec<u8> = cookie.iter().chain(m.txid.iter()).copied().collect();
            for (b, c) in v6.octets().iter().zip(mask) {
                value.push(b ^ c);
            }
        }
    }
    let mut out = Vec::with_capacity(20 + 4 + value.len());
    out.extend_from_slice(&BINDING_SUCCESS.to_be_bytes());
    out.extend_from_slice(&((4 + value.len()) as u16).to_be_bytes());
    out.extend_from_slice(&cookie);
    out.extend_from_slice(&m.txid);
    out.extend_from_slice(&ATTR_XOR_MAPPED_ADDRESS.to_be_bytes());
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(&value);
    Some(out)
}

/// Answers Binding requests on one UDP socket per address until dropped.
pub struct StunResponder {
    addrs: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl StunResponder {
    /// Binds each of `ips` on [`STUN_PORT`] or the next free one of
    /// [`PORT_ATTEMPTS`]. Addresses that cannot be bound at all are left
    /// out; fails only when none could be.
    pub async fn start(ips: &[IpAddr]) -> std::io::Result<StunResponder> {
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        let mut last = None;
        for ip in ips {
            for port in STUN_PORT..STUN_PORT + PORT_ATTEMPTS {
                match UdpSocket::bind(SocketAddr::new(*ip, port)).await {
                    Ok(socket) => {
                        addrs.push(socket.local_addr()?);
                        tasks.push(tokio::spawn(serve(socket)));
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
        }
        if addrs.is_empty() {
            return Err(last.unwrap_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "no address to listen on")
            }));
        }
        Ok(StunResponder { addrs, tasks })
    }

    /// Where it answers.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// Its addresses as MidiEditor ICE list entries (`stun:10.0.0.2:3478`).
    pub fn uris(&self) -> Vec<String> {
        self.addrs.iter().map(|a| format!("stun:{a}")).collect()
    }
}

impl Drop for StunResponder {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn serve(socket: UdpSocket) {
    let mut buf = [0u8; 1500];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        if let Some(reply) = answer(&buf[..n], from) {
            let _ = socket.send_to(&reply, from).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const XMA: u16 = ATTR_XOR_MAPPED_ADDRESS;

    fn request(txid: [u8; 12]) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&BINDING_REQUEST.to_be_bytes());
        r.extend_from_slice(&0u16.to_be_bytes());
        r.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        r.extend_from_slice(&txid);
        r
    }

    #[test]
    fn a_binding_request_gets_the_address_it_came_from() {
        for from in ["10.77.0.2:50123", "[fe80::1]:4000"] {
            let from: SocketAddr = from.parse().unwrap();
            let reply = answer(&request([7; 12]), from).unwrap();
            let m = Message::parse(&reply).unwrap();
            assert_eq!(m.msg_type, BINDING_SUCCESS);
            assert_eq!(m.txid, [7; 12]);
            assert_eq!(m.xor_address(XMA), Some(from));
        }
    }

    #[test]
    fn anything_else_is_not_answered() {
        let from: SocketAddr = "10.0.0.1:1".parse().unwrap();
        assert_eq!(answer(b"", from), None);
        assert_eq!(answer(&[0u8; 19], from), None);
        let mut wrong_cookie = request([1; 12]);
        wrong_cookie[4] ^= 1;
        assert_eq!(answer(&wrong_cookie, from), None);
        let mut not_binding = request([1; 12]);
        not_binding[1] = 0x03; // Allocate
        assert_eq!(answer(&not_binding, from), None);
        let mut rng = test_support::rng::XorShift(42);
        for _ in 0..5000 {
            let n = rng.below(64);
            if let Some(r) = answer(&rng.bytes(n), from) {
                assert!(r.len() <= n + 32);
            }
        }
    }

    #[tokio::test]
    async fn it_answers_over_udp_on_loopback() {
        let r = StunResponder::start(&["127.0.0.1".parse().unwrap()])
            .await
            .unwrap();
        let to = r.addrs()[0];
        assert!((STUN_PORT..STUN_PORT + PORT_ATTEMPTS).contains(&to.port()));
        let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        c.send_to(&request([9; 12]), to).await.unwrap();
        let mut buf = [0u8; 256];
        let (n, _) = tokio::time::timeout(std::time::Duration::from_secs(2), c.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let m = Message::parse(&buf[..n]).unwrap();
        assert_eq!(m.xor_address(XMA), Some(c.local_addr().unwrap()));
        assert_eq!(r.uris(), vec![format!("stun:{to}")]);
    }
}
