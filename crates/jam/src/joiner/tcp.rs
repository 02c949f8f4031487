//! Joining a MidiEditor **LAN Live** host over plain TCP, as MidiEditor's
//! own LAN joiner does (`docs/lan-live.md`): the host's datagram gave us its
//! address, TCP port, session id and code, so there is no rendezvous and no
//! WebRTC; we connect, and the same `[u32 BE length][JSON]` frames flow on
//! the stream that flow on the `midieditor` data channel.
//!
//! The link reports the same [`LinkMsg`]s as the WebRTC one (the channel is
//! "open" once connected, one `Control` per whole frame, prefix included),
//! so the session state machine ([`super::session`]) and the engine's loop
//! run unchanged. Reading reuses the host's bounded frame reader
//! ([`crate::host::tcp::read_one`]): a header over MidiEditor's 32 MiB cap
//! or a trickled frame ends the link rather than growing a buffer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use super::link::LinkMsg;
use crate::host::tcp::{read_one, WRITE_TIMEOUT};
use crate::rtc::LinkState;

/// What the datagram of a LAN Live host says, enough to join it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanTarget {
    /// The datagram's source address and its TCP port.
    pub addr: SocketAddr,
    /// The session id our `hello` must carry.
    pub session_id: String,
    /// The host's display name, shown before the welcome.
    pub host_name: String,
    /// The host's 4-character code (shown; the TCP join itself needs none).
    pub code: String,
}

/// The TCP connection to a LAN Live host.
pub(crate) struct TcpJoinLink {
    writer: Arc<tokio::sync::Mutex<Option<OwnedWriteHalf>>>,
    state: watch::Receiver<LinkState>,
    state_tx: Arc<watch::Sender<LinkState>>,
}

impl TcpJoinLink {
    /// Connects within `timeout` and starts the reader.
    pub async fn connect(
        addr: SocketAddr,
        timeout: Duration,
        events: usize,
    ) -> Result<(TcpJoinLink, mpsc::Receiver<LinkMsg>), String> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("cannot connect to {addr}: {e}")),
            Err(_) => {
                return Err(format!(
                    "no TCP connection to {addr} within {} s",
                    timeout.as_secs()
                ))
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut reader, writer) = stream.into_split();
        let (state_tx, state) = watch::channel(LinkState::Connected);
        let state_tx = Arc::new(state_tx);
        let (tx, rx) = mpsc::channel(events.max(1));
        let _ = tx.try_send(LinkMsg::ControlOpen);
        let st = state_tx.clone();
        tokio::spawn(async move {
            let mut closed = st.subscribe();
            loop {
                let frame = tokio::select! {
                    f = read_one(&mut reader) => f,
                    _ = closed.wait_for(|s| *s == LinkState::Closed) => break,
                };
                match frame {
                    Ok(f) => {
                        if tx.send(LinkMsg::Control(Bytes::from(f))).await.is_err() {
                            break;
                        }
                    }
                    Err(end) => {
                        tracing::info!("LAN Live: connection to the host ended: {end:?}");
                        break;
                    }
                }
            }
            let _ = tx.send(LinkMsg::ControlClosed).await;
        });
        Ok((
            TcpJoinLink {
                writer: Arc::new(tokio::sync::Mutex::new(Some(writer))),
                state,
                state_tx,
            },
            rx,
        ))
    }

    pub fn state_watch(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    /// A sender of whole frames (prefix included), for the engine's writer.
    pub fn sender(&self) -> TcpSender {
        TcpSender {
            writer: self.writer.clone(),
            state: self.state_tx.clone(),
        }
    }

    pub async fn close(&mut self) {
        self.state_tx.send_replace(LinkState::Closed);
        if let Some(mut w) = self.writer.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), w.shutdown()).await;
        }
    }
}

impl Drop for TcpJoinLink {
    fn drop(&mut self) {
        self.state_tx.send_replace(LinkState::Closed);
    }
}

/// Writes frames to the host; a write the host does not take within
/// [`WRITE_TIMEOUT`] fails the link.
#[derive(Clone)]
pub(crate) struct TcpSender {
    writer: Arc<tokio::sync::Mutex<Option<OwnedWriteHalf>>>,
    state: Arc<watch::Sender<LinkState>>,
}

impl TcpSender {
    pub async fn send(&self, frame: &[u8]) -> Result<(), ()> {
        let mut guard = self.writer.lock().await;
        let Some(w) = guard.as_mut() else {
            return Err(());
        };
        match tokio::time::timeout(WRITE_TIMEOUT, w.write_all(frame)).await {
            Ok(Ok(())) => Ok(()),
            _ => {
                guard.take();
                self.state.send_replace(LinkState::Failed);
                Err(())
            }
        }
    }
}
