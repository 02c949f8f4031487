//! One peer's link, whatever carries it: a WebRTC [`PeerLink`] or a TCP
//! connection of MidiEditor's LAN Live mode ([`super::tcp`]).
//!
//! The engine only ever sends frames, closes, reads the state and polls
//! statistics; both transports answer those four, so the protocol state
//! machine, the peer list, chat and everything a later feature sends over
//! the `midieditor` channel reach TCP peers without a line of extra code.

use bytes::Bytes;

use super::tcp::TcpLink;
use crate::rtc::{LinkState, LinkStats, PeerLink, RtcError};

/// A peer's transport.
#[derive(Clone, Debug)]
pub(crate) enum Link {
    Rtc(PeerLink),
    Tcp(TcpLink),
}

impl Link {
    /// One message on the channel `label`. A TCP link has a single stream,
    /// the `midieditor` one: any other label is [`RtcError::NoSuchChannel`].
    pub(crate) async fn send(&self, label: &str, data: Bytes) -> Result<(), RtcError> {
        match self {
            Link::Rtc(l) => l.send(label, data).await,
            Link::Tcp(l) if label == super::MIDIEDITOR_CHANNEL => l.send(data).await,
            Link::Tcp(_) => Err(RtcError::NoSuchChannel(label.to_owned())),
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            Link::Rtc(l) => l.close().await,
            Link::Tcp(l) => l.close().await,
        }
    }

    /// A TCP link is `Connected` until closed (the kernel tells us about a
    /// dead peer by closing the stream).
    pub(crate) fn state(&self) -> LinkState {
        match self {
            Link::Rtc(l) => l.state(),
            Link::Tcp(l) => l.state(),
        }
    }

    pub(crate) async fn stats(&self) -> LinkStats {
        match self {
            Link::Rtc(l) => l.stats().await,
            Link::Tcp(l) => l.stats(),
        }
    }

    /// The largest message the link carries in one piece: the SCTP limit the
    /// WebRTC peer negotiated, or none for TCP (a byte stream, so a frame of
    /// any size goes in one write).
    pub(crate) async fn max_message_size(&self) -> Option<usize> {
        match self {
            Link::Rtc(l) => l.max_message_size().await,
            Link::Tcp(_) => Some(usize::MAX),
        }
    }
}
