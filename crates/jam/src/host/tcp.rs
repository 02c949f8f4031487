//! MidiEditor's LAN Live transport on the host side: joiners connect over
//! plain TCP and speak the same `[u32 BE length][JSON]` frames as on the
//! `midieditor` data channel (`docs/lan-live.md`).
//!
//! A TCP joiner is just another link kind. Each accepted connection becomes
//! a [`TcpLink`] handed to the engine (`Cmd::NewLink`), then reports the
//! same [`LinkEvent`]s a WebRTC link does: `ChannelOpen { "midieditor" }` at
//! once, one `Message` per whole frame, `ChannelClosed` at the end. The
//! engine, the protocol state machine ([`crate::protocol::Jam`]) and the
//! peer list cannot tell the two apart, so the peer limit, the hello
//! timeout, ghosts, chat and whatever is later sent over the channel apply
//! to both.
//!
//! # Bounds (everything a stranger on the LAN can make us hold)
//!
//! - **Sources**: only the addresses the caller's [`Admit`] lets in (the
//!   subnets the announcement reaches); others are closed at accept, with a
//!   log line for the first and every 100th.
//! - **Connections**: at most `max_connections` at once (the jam's peers
//!   plus a few half-open ones); the next is closed at accept, with a log
//!   line for the first refusal of a burst and every 100th after it.
//! - **Frame size**: a header declaring more than MidiEditor's own 32 MiB
//!   cap ([`MIDIEDITOR_MAX_FRAME`]) drops the peer at once, before anything
//!   is allocated for it (MidiEditor does the same). The body buffer grows
//!   with the bytes that really arrive, not with what the header claims.
//! - **Slowloris**: once the first byte of a frame is in, the whole frame
//!   must arrive within [`FRAME_DEADLINE`] plus one second per MiB it
//!   declares; a peer that trickles is dropped.
//! - **Silence**: a connection that never says `hello` is dropped by the
//!   protocol's hello timeout (10 s); a welcomed one by its 30 s silence
//!   rule, exactly as over WebRTC.
//! - **Writes**: a write that cannot complete within [`WRITE_TIMEOUT`] (the
//!   peer stopped reading) fails; the engine's bounded per-peer queue then
//!   fills and the peer is dropped as stalled.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;

use super::{Cmd, Link, MIDIEDITOR_CHANNEL, NEXT_PEER};
use crate::framing::{HEADER_LEN, MIDIEDITOR_MAX_FRAME};
use crate::protocol::PeerId;
use crate::rtc::{LinkEvent, LinkState, LinkStats, Route, RtcError};

/// Time a frame has from its first byte to its last, plus one second per
/// MiB it declares (32 MiB on a LAN takes well under a second; 37 s is for
/// a very bad Wi-Fi). Shorter than the hello timeout, so a trickled hello
/// is dropped for what it is.
pub const FRAME_DEADLINE: Duration = Duration::from_secs(5);
/// A write to a peer that stopped reading gives up after this long.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The write side of one TCP joiner, shared by the engine's writer task and
/// the reader (which counts received bytes into it).
#[derive(Clone)]
pub(crate) struct TcpLink {
    inner: Arc<Inner>,
}

struct Inner {
    writer: tokio::sync::Mutex<Option<OwnedWriteHalf>>,
    /// `true` once closed: the reader stops and sends fail.
    closed: watch::Sender<bool>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    addr: SocketAddr,
}

impl fmt::Debug for TcpLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpLink")
            .field("addr", &self.inner.addr)
            .field("closed", &*self.inner.closed.borrow())
            .finish()
    }
}

impl TcpLink {
    fn new(writer: OwnedWriteHalf, addr: SocketAddr) -> TcpLink {
        TcpLink {
            inner: Arc::new(Inner {
                writer: tokio::sync::Mutex::new(Some(writer)),
                closed: watch::channel(false).0,
                bytes_in: AtomicU64::new(0),
                bytes_out: AtomicU64::new(0),
                addr,
            }),
        }
    }

    /// Writes one whole frame (prefix included, as the engine queues it).
    pub(crate) async fn send(&self, frame: Bytes) -> Result<(), RtcError> {
        if *self.inner.closed.borrow() {
            return Err(RtcError::Closed);
        }
        let mut guard = self.inner.writer.lock().await;
        let Some(w) = guard.as_mut() else {
            return Err(RtcError::Closed);
        };
        match tokio::time::timeout(WRITE_TIMEOUT, w.write_all(&frame)).await {
            Ok(Ok(())) => {
                self.inner
                    .bytes_out
                    .fetch_add(frame.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(e)) => Err(RtcError::Send(e.to_string())),
            Err(_) => Err(RtcError::Send(format!(
                "the peer read nothing for {WRITE_TIMEOUT:?}"
            ))),
        }
    }

    /// Closes the connection: the reader stops, our side of the stream is
    /// shut down (the joiner sees the session end). Idempotent.
    pub(crate) async fn close(&self) {
        self.inner.closed.send_replace(true);
        let writer = self.inner.writer.lock().await.take();
        if let Some(mut w) = writer {
            let _ = tokio::time::timeout(Duration::from_secs(1), w.shutdown()).await;
        }
    }

    pub(crate) fn state(&self) -> LinkState {
        if *self.inner.closed.borrow() {
            LinkState::Closed
        } else {
            LinkState::Connected
        }
    }

    pub(crate) fn stats(&self) -> LinkStats {
        LinkStats {
            rtt: None,
            route: Route::Tcp,
            bytes_in: self.inner.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.inner.bytes_out.load(Ordering::Relaxed),
        }
    }
}

/// Which source addresses may connect to the LAN Live port (see
/// [`Host::listen_lan_tcp`](crate::host::Host::listen_lan_tcp)).
pub type Admit = Arc<dyn Fn(std::net::IpAddr) -> bool + Send + Sync>;

/// An [`Admit`] that lets every address in (tests on loopback, where the
/// listener's own address already confines it).
pub fn admit_all() -> Admit {
    Arc::new(|_| true)
}

/// Whether the `n`-th refusal of a kind is logged: the first of a burst
/// and every 100th after it, so a flood cannot flood the log too.
fn worth_a_line(n: u64) -> bool {
    n == 1 || n % 100 == 0
}

/// Accepts TCP joiners until the host stops (its command queue closes).
pub(super) async fn accept_loop(
    listener: TcpListener,
    cmd: mpsc::Sender<Cmd>,
    max_connections: usize,
    admit: Admit,
) {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut refused: u64 = 0;
    let mut outsiders: u64 = 0;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = cmd.closed() => return,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: do not spin.
                tracing::warn!("LAN Live: accepting a TCP joiner failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !admit(addr.ip()) {
            outsiders += 1;
            if worth_a_line(outsiders) {
                tracing::warn!(
                    "LAN Live: refused a TCP connection from {addr}: not on a network the jam is announced on ({outsiders} refused so far)"
                );
            }
            drop(stream);
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refused += 1;
            if worth_a_line(refused) {
                tracing::warn!(
                    "LAN Live: refused a TCP connection from {addr}: {max_connections} already open ({refused} refused so far)"
                );
            }
            drop(stream);
            continue;
        };
        if slots.available_permits() > 0 {
            refused = 0;
        }
        let cmd = cmd.clone();
        tokio::spawn(async move {
            serve(stream, addr, cmd).await;
            drop(permit);
        });
    }
}

/// How a connection's reading ended.
#[derive(Debug, PartialEq)]
pub(crate) enum End {
    /// The joiner closed (or reset) the stream.
    Eof,
    /// We closed it (kicked, rejected, host stopping).
    ClosedByUs,
    /// A header declared more than the cap.
    TooLarge(u64),
    /// A frame did not complete in time.
    TooSlow { declared: usize, within: Duration },
}

async fn serve(stream: TcpStream, addr: SocketAddr, cmd: mpsc::Sender<Cmd>) {
    let peer = PeerId(NEXT_PEER.fetch_add(1, Ordering::Relaxed));
    // Frames are small and interactive (chat, heartbeats, 1 s edit diffs).
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let link = TcpLink::new(writer, addr);
    tracing::info!("LAN Live: TCP joiner {peer} connected from {addr}");
    let opened = [
        Cmd::NewLink {
            peer,
            link: Link::Tcp(link.clone()),
        },
        Cmd::Link {
            peer,
            event: LinkEvent::ChannelOpen {
                label: MIDIEDITOR_CHANNEL.into(),
            },
        },
        // The row shows "LAN (TCP)" from the start, not after a stats poll.
        Cmd::Stats {
            peer,
            stats: link.stats(),
        },
    ];
    for c in opened {
        if cmd.send(c).await.is_err() {
            link.close().await;
            return;
        }
    }
    let closed = link.inner.closed.subscribe();
    let end = read_frames(&mut reader, &link, peer, &cmd, closed).await;
    let kick = match &end {
        End::Eof => {
            tracing::info!("LAN Live: TCP joiner {peer} ({addr}) closed the connection");
            let _ = cmd
                .send(Cmd::Link {
                    peer,
                    event: LinkEvent::ChannelClosed {
                        label: MIDIEDITOR_CHANNEL.into(),
                    },
                })
                .await;
            None
        }
        End::ClosedByUs => None,
        End::TooLarge(len) => Some(format!(
            "a frame of {len} bytes is over MidiEditor's 32 MiB cap"
        )),
        End::TooSlow { declared, within } => Some(format!(
            "a frame of {declared} bytes did not arrive within {}s (trickling sender)",
            within.as_secs()
        )),
    };
    if let Some(reason) = kick {
        tracing::warn!("LAN Live: dropped TCP joiner {peer} ({addr}): {reason}");
        let _ = cmd.send(Cmd::Kick { peer, reason }).await;
    }
    link.close().await;
}

/// The deadline of a frame declaring `len` bytes, from its first byte.
fn frame_deadline(len: usize) -> Duration {
    FRAME_DEADLINE + Duration::from_secs((len as u64) >> 20)
}

/// Reads frames until the stream ends or breaks a bound; each whole frame,
/// prefix included, goes to the engine as one `Message`.
async fn read_frames<R: AsyncRead + Unpin>(
    reader: &mut R,
    link: &TcpLink,
    peer: PeerId,
    cmd: &mpsc::Sender<Cmd>,
    mut closed: watch::Receiver<bool>,
) -> End {
    loop {
        let frame = tokio::select! {
            f = read_one(reader) => f,
            _ = closed.wait_for(|c| *c) => return End::ClosedByUs,
        };
        let frame = match frame {
            Ok(f) => f,
            Err(end) => return end,
        };
        link.inner
            .bytes_in
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        let event = LinkEvent::Message {
            label: MIDIEDITOR_CHANNEL.into(),
            data: Bytes::from(frame),
            is_text: false,
        };
        if cmd.send(Cmd::Link { peer, event }).await.is_err() {
            return End::ClosedByUs;
        }
    }
}

/// One frame, prefix included. Waits without limit for its first byte (the
/// protocol's timers bound idle peers), then applies the frame deadline.
pub(crate) async fn read_one<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Vec<u8>, End> {
    let mut header = [0u8; HEADER_LEN];
    match reader.read(&mut header[..1]).await {
        Ok(0) | Err(_) => return Err(End::Eof),
        Ok(_) => {}
    }
    let started = Instant::now();
    let head_deadline = started + FRAME_DEADLINE;
    match tokio::time::timeout_at(head_deadline, reader.read_exact(&mut header[1..])).await {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => return Err(End::Eof),
        Err(_) => {
            return Err(End::TooSlow {
                declared: 0,
                within: FRAME_DEADLINE,
            })
        }
    }
    let declared = u32::from_be_bytes(header);
    let len = declared as usize;
    if len > MIDIEDITOR_MAX_FRAME {
        return Err(End::TooLarge(u64::from(declared)));
    }
    let within = frame_deadline(len);
    // Grows with what arrives: a header alone reserves nothing big.
    let mut frame = Vec::with_capacity(HEADER_LEN + len.min(64 * 1024));
    frame.extend_from_slice(&header);
    let mut body = (&mut *reader).take(len as u64);
    match tokio::time::timeout_at(started + within, body.read_to_end(&mut frame)).await {
        Ok(Ok(n)) if n == len => Ok(frame),
        Ok(_) => Err(End::Eof),
        Err(_) => Err(End::TooSlow {
            declared: len,
            within,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payload: &[u8]) -> Vec<u8> {
        crate::framing::encode(payload)
    }

    #[tokio::test]
    async fn frames_split_anywhere_come_out_whole_with_their_prefix() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let mut bytes = framed(br#"{"type":"hello"}"#);
        bytes.extend(framed(br#"{"type":"heartbeat"}"#));
        tokio::spawn(async move {
            for chunk in bytes.chunks(3) {
                a.write_all(chunk).await.unwrap();
            }
        });
        assert_eq!(
            read_one(&mut b).await.unwrap(),
            framed(br#"{"type":"hello"}"#)
        );
        assert_eq!(
            read_one(&mut b).await.unwrap(),
            framed(br#"{"type":"heartbeat"}"#)
        );
        assert_eq!(read_one(&mut b).await, Err(End::Eof));
    }

    #[tokio::test]
    async fn a_header_over_32_mib_is_refused_before_its_body() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let over = (MIDIEDITOR_MAX_FRAME as u32) + 1;
        a.write_all(&over.to_be_bytes()).await.unwrap();
        assert_eq!(read_one(&mut b).await, Err(End::TooLarge(u64::from(over))));
        // Exactly the cap is a legal header (the body just has not come).
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&(MIDIEDITOR_MAX_FRAME as u32).to_be_bytes())
            .await
            .unwrap();
        drop(a);
        assert_eq!(read_one(&mut b).await, Err(End::Eof));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_frame_misses_its_deadline() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let bytes = framed(&[b'x'; 100]);
        tokio::spawn(async move {
            for byte in bytes {
                if a.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        assert_eq!(
            read_one(&mut b).await,
            Err(End::TooSlow {
                declared: 100,
                within: FRAME_DEADLINE
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_header_misses_its_deadline() {
        let (mut a, mut b) = tokio::io::duplex(64);
        a.write_all(&[0, 0]).await.unwrap();
        let r = read_one(&mut b).await;
        assert_eq!(
            r,
            Err(End::TooSlow {
                declared: 0,
                within: FRAME_DEADLINE
            })
        );
        drop(a);
    }

    #[test]
    fn big_frames_get_more_time() {
        assert_eq!(frame_deadline(100), FRAME_DEADLINE);
        assert_eq!(
            frame_deadline(MIDIEDITOR_MAX_FRAME),
            FRAME_DEADLINE + Duration::from_secs(32)
        );
    }
}
