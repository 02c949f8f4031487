//! Keeps a joiner's first DTLS flight when it arrives before our ICE agent
//! has selected a candidate pair, and hands it to webrtc-rs once it has.
//!
//! # Why
//!
//! We answer as the DTLS server, so the joiner's ClientHello starts the
//! handshake. A libdatachannel joiner (libjuice, the stack MidiEditor uses)
//! calls ICE connected as soon as one of *its* checks succeeds and sends the
//! ClientHello at once, while our agent, the controlled one, selects a pair
//! only when the joiner's nominating check arrives after our own check on
//! that pair has succeeded. In between, `rtc` 0.21.1 drops every non-STUN
//! datagram: `IceHandler::handle_read` in
//! `rtc/src/peer_connection/handler/ice.rs` forwards DTLS only when
//! `agent.get_selected_candidate_pair().is_some()`, else it traces "drop
//! message ... before ICE connection is connected". Observed with the real
//! MidiEditor: the ClientHello was dropped 130 µs before our agent went
//! connected, and the handshake only completed on OpenSSL's 1 s
//! retransmission, so every MidiEditor joiner waited an extra second.
//! aiortc and Chromium nominate before they send DTLS, so they never hit it.
//!
//! # How
//!
//! webrtc-rs lets a connection bring its own [`Runtime`], which is where its
//! UDP sockets are wrapped. [`GatedRuntime`] is the stock Tokio runtime with
//! one change: each socket is a [`GatedSocket`] that, until the connection's
//! [`DtlsGate`] opens, keeps a copy of the DTLS datagrams (first byte 20..=63,
//! RFC 7983) it passes up. Our event handler opens the gate when the ICE
//! connection state becomes connected, i.e. right after the pair is
//! selected; the kept datagrams are then delivered again, in order, on the
//! socket they came in on, and the handshake goes on without waiting for a
//! retransmission. A datagram that was not dropped after all (read in the
//! same driver pass that selected the pair) reaches the DTLS server twice,
//! which DTLS treats as a retransmission.
//!
//! Bounded: at most [`MAX_HELD`] datagrams per connection are kept, only
//! before ICE connects, and the gate never closes again.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime,
    TokioRuntime, Transmit,
};

/// Most datagrams kept per connection: a ClientHello flight is one or two
/// datagrams; anything beyond is left to the joiner's retransmission.
pub(super) const MAX_HELD: usize = 8;

/// Whether a datagram is DTLS by RFC 7983's first-byte rule (what webrtc-rs's
/// demultiplexer uses too).
fn is_dtls(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(20..=63))
}

/// One connection's gate: closed until ICE selects a pair, then open.
#[derive(Default)]
pub(super) struct DtlsGate {
    open: AtomicBool,
    state: Mutex<GateState>,
}

#[derive(Default)]
struct GateState {
    /// Kept datagrams with the socket (by index) they arrived on.
    held: VecDeque<(usize, Vec<u8>, RecvMeta)>,
    /// Each socket's latest receive waker, so opening can wake the driver.
    wakers: Vec<(usize, Waker)>,
    /// How many datagrams were kept in all (for the log).
    kept: usize,
}

impl fmt::Debug for DtlsGate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsGate")
            .field("open", &self.is_open())
            .finish_non_exhaustive()
    }
}

impl DtlsGate {
    fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens the gate (idempotent): wakes the sockets so that the kept
    /// datagrams are read again now, not at the next packet.
    pub(super) fn open(&self) {
        if self.open.swap(true, Ordering::AcqRel) {
            return;
        }
        let wakers = {
            let mut state = self.state();
            if state.kept > 0 {
                tracing::debug!(
                    "ICE selected a pair; re-delivering {} early DTLS datagram(s)",
                    state.held.len()
                );
            }
            std::mem::take(&mut state.wakers)
        };
        for (_, waker) in wakers {
            waker.wake();
        }
    }

    fn register(&self, socket: usize, waker: &Waker) {
        let mut state = self.state();
        match state.wakers.iter_mut().find(|(id, _)| *id == socket) {
            Some((_, known)) if known.will_wake(waker) => {}
            Some((_, known)) => *known = waker.clone(),
            None => state.wakers.push((socket, waker.clone())),
        }
    }

    fn hold(&self, socket: usize, datagram: &[u8], meta: RecvMeta) {
        let mut state = self.state();
        if state.held.len() < MAX_HELD {
            let mut meta = meta;
            meta.len = datagram.len();
            meta.stride = datagram.len().max(1);
            state.held.push_back((socket, datagram.to_vec(), meta));
            state.kept += 1;
        }
    }

    fn take(&self, socket: usize) -> Option<(Vec<u8>, RecvMeta)> {
        let mut state = self.state();
        let at = state.held.iter().position(|(id, _, _)| *id == socket)?;
        state.held.remove(at).map(|(_, data, meta)| (data, meta))
    }
}

/// A UDP socket that keeps early DTLS datagrams for its connection's gate.
#[derive(Debug)]
pub(super) struct GatedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    gate: Arc<DtlsGate>,
    id: usize,
}

impl AsyncUdpSocket for GatedSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        self.inner.poll_send(cx, transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let open = self.gate.is_open();
        if open {
            if let (Some((data, kept)), Some(buf), Some(slot)) =
                (self.gate.take(self.id), bufs.first_mut(), meta.first_mut())
            {
                let len = data.len().min(buf.len());
                buf[..len].copy_from_slice(&data[..len]);
                *slot = kept;
                slot.len = len;
                slot.stride = len.max(1);
                return Poll::Ready(Ok(1));
            }
        } else if !cx.waker().will_wake(Waker::noop()) {
            // The driver's burst drain probes with a no-op waker; only the
            // waker of its real receive future can bring it back here.
            self.gate.register(self.id, cx.waker());
        }
        let polled = self.inner.poll_recv(cx, bufs, meta);
        if !open {
            if let Poll::Ready(Ok(count)) = &polled {
                for (buf, m) in bufs.iter().zip(meta.iter()).take(*count) {
                    let filled = &buf[..m.len.min(buf.len())];
                    for datagram in filled.chunks(m.stride.max(1)) {
                        if is_dtls(datagram) {
                            self.gate.hold(self.id, datagram, *m);
                        }
                    }
                }
            }
        }
        polled
    }

    fn max_gso_segments(&self) -> usize {
        self.inner.max_gso_segments()
    }

    fn max_gro_segments(&self) -> usize {
        self.inner.max_gro_segments()
    }
}

/// webrtc-rs's Tokio runtime, with each UDP socket wrapped in a
/// [`GatedSocket`] of one connection's gate. One per connection.
#[derive(Debug)]
pub(super) struct GatedRuntime {
    base: TokioRuntime,
    gate: Arc<DtlsGate>,
    next_socket: AtomicUsize,
}

impl GatedRuntime {
    pub(super) fn new(gate: Arc<DtlsGate>) -> Self {
        Self {
            base: TokioRuntime,
            gate,
            next_socket: AtomicUsize::new(0),
        }
    }
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl Runtime for GatedRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.base.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.base.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        let inner = self.base.wrap_udp_socket(socket)?;
        Ok(Arc::new(GatedSocket {
            inner,
            gate: self.gate.clone(),
            id: self.next_socket.fetch_add(1, Ordering::Relaxed),
        }))
    }

    fn wrap_tcp_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.base.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> BoxFuture<'a, io::Result<Arc<dyn AsyncTcpStream>>> {
        self.base.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(&'a self, host: &'a str) -> BoxFuture<'a, io::Result<Vec<SocketAddr>>> {
        self.base.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.base.now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.base.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.base.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.base.block_on(future)
    }

    fn yield_now(&self) -> BoxFuture<'static, ()> {
        self.base.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio (early DTLS kept)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dtls_first_bytes_are_kept() {
        assert!(is_dtls(&[22, 254, 253]));
        assert!(is_dtls(&[20]));
        assert!(is_dtls(&[63]));
        assert!(!is_dtls(&[0, 1])); // STUN
        assert!(!is_dtls(&[64])); // TURN channel data
        assert!(!is_dtls(&[128])); // RTP
        assert!(!is_dtls(&[]));
    }

    #[test]
    fn the_gate_keeps_a_bounded_number_and_hands_them_back_per_socket() {
        let gate = DtlsGate::default();
        for i in 0..(MAX_HELD + 3) {
            gate.hold(i % 2, &[22, i as u8], RecvMeta::default());
        }
        assert_eq!(gate.state().held.len(), MAX_HELD);
        let (data, meta) = gate.take(1).unwrap();
        assert_eq!(data, vec![22, 1]);
        assert_eq!((meta.len, meta.stride), (2, 2));
        let (data, _) = gate.take(0).unwrap();
        assert_eq!(data, vec![22, 0]);
        gate.open();
        gate.open();
        assert!(gate.is_open());
    }
}
