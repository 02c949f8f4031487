//! The accept loop: hyper's HTTP/1.1 connection driven directly, so that the
//! time and connection budgets of an open-internet server apply before any
//! handler runs.
//!
//! What this adds over `axum::serve`:
//! - a **header deadline**: the whole request head (and the wait for the
//!   next one on a keep-alive connection) must arrive within
//!   `Config::header_timeout`; trickling a byte at a time does not extend it
//!   (the idle timeout of [`BoundedStream`] does reset per byte, which is
//!   what long-polls need, so it cannot stop a slowloris on its own);
//! - a **per-source connection cap** (IPv4 address, IPv6 prefix), checked
//!   at accept, so one address cannot take the global cap;
//! - **HTTP/1.1 only**: no h2c upgrade or prior-knowledge HTTP/2, whose
//!   stream multiplexing would let one connection hold hundreds of
//!   responses;
//! - a **shutdown that never waits on a client**: connections with no
//!   request in a handler and no response being written (idle keep-alives,
//!   half-sent heads) are dropped at once; the others get the grace period.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::conn::{BoundedStream, ErrorsAsJson, Peer};
use crate::guard::source_key_prefix;
use crate::server::Rendezvous;
use crate::tls::Reloading;

/// Connections open per source, shared by the accept loop and the
/// connection tasks that give their slot back.
#[derive(Default)]
struct PerSource {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's claim on its source's budget; released on drop.
struct SourceSlot {
    table: Arc<PerSource>,
    key: IpAddr,
}

impl SourceSlot {
    fn take(table: &Arc<PerSource>, key: IpAddr, max: usize) -> Option<SourceSlot> {
        let mut open = table.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            table: table.clone(),
            key,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Counts requests of one connection that are in a handler or whose
/// response is still being written: while it is zero at shutdown, the
/// connection owes its client nothing and is dropped at once.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn enter(n: &Arc<AtomicUsize>) -> Busy {
        n.fetch_add(1, Ordering::SeqCst);
        Busy(n.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its connection marked busy until hyper has
/// written it out (or dropped it).
struct BusyBody {
    inner: Body,
    _busy: Busy,
}

impl hyper::body::Body for BusyBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `rdv` on `listener` until the rendezvous' shutdown flag is set,
/// then drops idle connections and gives busy ones `grace` to finish.
pub(crate) async fn run(listener: TcpListener, rdv: Rendezvous) -> std::io::Result<()> {
    let config = rdv.config().clone();
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let per_source = Arc::new(PerSource::default());
    let mut closing = rdv.shutdown_watch();
    let tls = match &config.tls {
        Some(files) => {
            let certs = Reloading::new(files.clone())?;
            let acceptor = tokio_rustls::TlsAcceptor::from(certs.server_config()?);
            let reloader = {
                let certs = certs.clone();
                let mut closing = rdv.shutdown_watch();
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(certs.files().reload_interval);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = tick.tick() => certs.check(),
                            _ = closing.wait_for(|c| *c) => break,
                        }
                    }
                })
            };
            Some((acceptor, reloader))
        }
        None => None,
    };
    let mut conns = JoinSet::new();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.ok(),
            _ = closing.wait_for(|c| *c) => break,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = closing.wait_for(|c| *c) => break,
        };
        let (stream, addr) = match accepted {
            Ok(a) => a,
            // Out of file descriptors or a connection reset before accept:
            // back off briefly instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let key = source_key_prefix(addr.ip(), config.ipv6_prefix);
        let Some(slot) = SourceSlot::take(&per_source, key, config.max_connections_per_source)
        else {
            rdv.note_connection_refused();
            tracing::debug!(source = %key, "connection refused: source at its connection cap");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = BoundedStream::new(stream, permit, config.idle_timeout);
        match &tls {
            None => {
                conns.spawn(connection(io, addr, rdv.clone(), slot));
            }
            Some((acceptor, _)) => {
                let acceptor = acceptor.clone();
                let rdv = rdv.clone();
                conns.spawn(async move {
                    // The handshake counts against the header deadline: a
                    // slow TLS client is a slowloris too.
                    let hs = tokio::time::timeout(rdv.config().header_timeout, acceptor.accept(io));
                    if let Ok(Ok(stream)) = hs.await {
                        connection(stream, addr, rdv, slot).await;
                    }
                });
            }
        }
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    if let Some((_, reloader)) = tls {
        reloader.abort();
    }
    // Every connection task watches the flag itself; wait for them all.
    while conns.join_next().await.is_some() {}
    Ok(())
}

async fn connection<T>(io: T, addr: SocketAddr, rdv: Rendezvous, _slot: SourceSlot)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = rdv.config();
    let busy = Arc::new(AtomicUsize::new(0));
    let service = {
        let rdv = rdv.clone();
        let busy = busy.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let rdv = rdv.clone();
            let guard = Busy::enter(&busy);
            async move {
                let mut req = req.map(Body::new);
                req.extensions_mut().insert(ConnectInfo(Peer(addr)));
                let resp = rdv.handle(req).await;
                Ok::<_, Infallible>(resp.map(|inner| BusyBody {
                    inner,
                    _busy: guard,
                }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .keep_alive(true)
        .max_buf_size(config.max_header_bytes.max(8192));
    let conn = builder.serve_connection(TokioIo::new(ErrorsAsJson::new(io)), service);
    tokio::pin!(conn);
    let mut closing: watch::Receiver<bool> = rdv.shutdown_watch();
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = closing.wait_for(|c| *c) => {}
    }
    if busy.load(Ordering::SeqCst) == 0 {
        // Nothing owed: an idle keep-alive or a request still arriving.
        return;
    }
    conn.as_mut().graceful_shutdown();
    let _ = tokio::time::timeout(config.shutdown_grace, conn).await;
}
