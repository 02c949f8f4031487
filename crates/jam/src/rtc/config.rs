//! How a connection is built, as the host's settings say it: [`RtcConfig`]
//! (ICE servers, the gathering cap, the addresses to bind, mDNS) and our own
//! [`IceServer`], kept free of webrtc-rs types so settings and the UI need
//! no WebRTC dependency; [`to_webrtc_ice_server`] is the one conversion.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use webrtc::peer_connection::RTCIceServer;

/// A STUN or TURN server, as the host's settings list them.
///
/// Our own type rather than webrtc-rs's, so callers (settings, the UI) do not
/// depend on the WebRTC crate and its exact version.
#[derive(Clone, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, ... (several URLs of
    /// one server share its credentials).
    pub urls: Vec<String>,
    /// TURN user name; `None` for STUN.
    pub username: Option<String>,
    /// TURN password; `None` for STUN.
    pub credential: Option<String>,
}

impl fmt::Debug for IceServer {
    // Hand-written so a logged configuration never leaks a TURN password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field(
                "credential",
                &self.credential.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The WebRTC form of a parsed STUN/TURN entry: its URL with the default
/// port filled in, and its credentials (a STUN server has none).
impl From<&types::IceServer> for IceServer {
    fn from(server: &types::IceServer) -> Self {
        let turn = server.scheme().is_turn();
        IceServer {
            urls: vec![server.url()],
            username: server.username().filter(|_| turn).map(str::to_owned),
            credential: server.credential().filter(|_| turn).map(str::to_owned),
        }
    }
}

impl From<types::IceServer> for IceServer {
    fn from(server: types::IceServer) -> Self {
        IceServer::from(&server)
    }
}

/// How [`answer_offer`](super::answer_offer) builds a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcConfig {
    /// STUN/TURN servers used to gather server-reflexive and relay
    /// candidates. Empty for LAN-only use (and always in tests: no traffic may
    /// leave the machine there).
    pub ice_servers: Vec<IceServer>,
    /// Hard cap on ICE gathering. The answer is returned with whatever was
    /// gathered by then, so an unreachable STUN/TURN server can never hold a
    /// joiner longer than this. Without ICE servers gathering takes a few ms.
    pub gather_timeout: Duration,
    /// Addresses to gather host candidates from, one UDP socket each on an
    /// ephemeral port. Empty means every non-loopback, non-link-local address
    /// of the machine. Loopback is never picked implicitly, so loopback use
    /// (tests) must list `127.0.0.1` explicitly.
    pub bind_ips: Vec<IpAddr>,
    /// Resolve the `xxxx.local` candidates browsers send, by mDNS (opens a
    /// multicast socket on port 5353 per connection). When `false`, no
    /// multicast is done and such candidates are ignored (a browser joiner
    /// may still connect through peer-reflexive candidates). Our own
    /// candidates are raw IPs either way: MidiEditor cannot resolve `.local`.
    pub resolve_mdns: bool,
}

impl Default for RtcConfig {
    /// Production defaults for a LAN host: no ICE servers, a 2 s gathering cap
    /// (MidiEditor's own minimum gathering timeout), every interface, and
    /// browser `.local` candidates resolved.
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            gather_timeout: Duration::from_secs(2),
            bind_ips: Vec::new(),
            resolve_mdns: true,
        }
    }
}

pub(crate) fn to_webrtc_ice_server(server: &IceServer) -> RTCIceServer {
    RTCIceServer {
        urls: server.urls.clone(),
        username: server.username.clone().unwrap_or_default(),
        credential: server.credential.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_server_debug_output_hides_the_credential() {
        let server = IceServer {
            urls: vec!["turn:turn.example:3478".to_owned()],
            username: Some("user".to_owned()),
            credential: Some("hunter2".to_owned()),
        };
        let shown = format!("{server:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("user"), "{shown}");
    }
}
