//! Bounds on connections: how many are open at once, and how long one may sit
//! without moving a byte.
//!
//! hyper, as axum serves it, has neither: without them a client could hold
//! thousands of sockets open, or trickle a request header forever
//! (slowloris). The listener takes a semaphore permit before each accept, so
//! past the cap new clients wait in the kernel's backlog instead of costing
//! memory here; each stream carries its permit and an idle deadline.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// A TCP listener that holds at most `max` connections open at once.
pub struct BoundedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    idle: Duration,
}

impl BoundedListener {
    pub fn new(inner: TcpListener, max: usize, idle: Duration) -> Self {
        BoundedListener {
            inner,
            permits: Arc::new(Semaphore::new(max.max(1))),
            idle,
        }
    }
}

impl Listener for BoundedListener {
    type Io = BoundedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // The semaphore is never closed, so acquiring cannot fail; if it
        // somehow did, accepting without a permit is the lesser evil.
        let permit = self.permits.clone().acquire_owned().await.ok();
        loop {
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    return (BoundedStream::new(stream, permit, self.idle), addr);
                }
                // Out of file descriptors or a connection reset before accept:
                // back off briefly instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// The client address, as handlers see it through `ConnectInfo<Peer>`.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl Connected<IncomingStream<'_, BoundedListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, BoundedListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// A TCP stream that fails with `TimedOut` once neither side has moved a byte
/// for the idle period, and frees its connection slot when dropped.
pub struct BoundedStream {
    inner: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl BoundedStream {
    pub(crate) fn new(
        inner: TcpStream,
        permit: Option<OwnedSemaphorePermit>,
        idle: Duration,
    ) -> Self {
        BoundedStream {
            inner,
            _permit: permit,
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn touch(&mut self) {
        self.deadline.as_mut().reset(Instant::now() + self.idle);
    }

    /// Called when the inner stream is not ready: errors once the deadline
    /// passed, otherwise registers for the deadline's wake-up.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection idle for too long",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for BoundedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending => this.check_idle(cx).map(Err),
        }
    }
}

impl AsyncWrite for BoundedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending => this.check_idle(cx).map(Err),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                this.touch();
                Poll::Ready(r)
            }
            Poll::Pending => this.check_idle(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The stream hyper writes to, plain or TLS, with hyper's own bare error
/// responses replaced on the way out (see [`rewrite_bare_error`]).
pub(crate) struct ErrorsAsJson<T> {
    inner: T,
    /// A replacement response still to be written.
    pending: Vec<u8>,
}

impl<T: AsyncWrite + Unpin> ErrorsAsJson<T> {
    pub(crate) fn new(inner: T) -> Self {
        ErrorsAsJson {
            inner,
            pending: Vec::new(),
        }
    }

    /// Writes out a queued replacement. Ready(Ok) once nothing is left.
    fn flush_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.pending.drain(..n);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ErrorsAsJson<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ErrorsAsJson<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.flush_pending(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|()| 0)),
        }
        if let Some(replacement) = rewrite_bare_error(buf) {
            this.pending = replacement;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.flush_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.flush_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.flush_pending(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|()| 0)),
        }
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if let Some(replacement) = rewrite_bare_error(first) {
                this.pending = replacement;
                // Only the head is claimed written; hyper's automatic
                // responses have no body to follow it.
                return Poll::Ready(Ok(first.len()));
            }
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// hyper answers a request it cannot parse (400, a URI too long: 414,
/// headers too large: 431) by itself, before any handler runs, with an empty
/// body and no CORS headers: a browser client then sees an opaque network
/// error instead of the status. Every response the rendezvous writes itself
/// carries `access-control-allow-origin`, so a response head without it is
/// one of hyper's; it is replaced by the same status with a JSON error body
/// and the CORS headers, and the connection closes after it (hyper closes
/// it anyway after a parse error).
pub(crate) fn rewrite_bare_error(buf: &[u8]) -> Option<Vec<u8>> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let status = rest.get(..3)?;
    let message = match status {
        b"400" => "bad request",
        b"414" => "request URI too long",
        b"431" => "request header fields too large",
        _ => return None,
    };
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = &buf[..head_end];
    if head
        .windows(b"access-control-allow-origin".len())
        .any(|w| w.eq_ignore_ascii_case(b"access-control-allow-origin"))
    {
        return None;
    }
    let reason = std::str::from_utf8(&rest[..head_end.min(rest.len())])
        .ok()
        .and_then(|l| l.lines().next())
        .unwrap_or("");
    let body = format!("{{\"error\":\"{message}\"}}");
    Some(
        format!(
            "HTTP/1.1 {reason}\r\ncontent-type: application/json\r\n\
             access-control-allow-origin: *\r\n\
             access-control-allow-methods: GET, POST, OPTIONS\r\n\
             access-control-allow-headers: Content-Type\r\n\
             connection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::rewrite_bare_error;

    #[test]
    fn hyper_error_heads_gain_json_and_cors() {
        let bare =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let r = String::from_utf8(rewrite_bare_error(bare).unwrap()).unwrap();
        assert!(
            r.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{r}"
        );
        assert!(r.contains("access-control-allow-origin: *"));
        assert!(r.ends_with(r#"{"error":"request header fields too large"}"#));
        let ours = b"HTTP/1.1 400 Bad Request\r\naccess-control-allow-origin: *\r\n\r\n";
        assert!(rewrite_bare_error(ours).is_none());
        assert!(rewrite_bare_error(b"HTTP/1.1 200 OK\r\n\r\n").is_none());
        assert!(rewrite_bare_error(b"garbage").is_none());
    }
}
