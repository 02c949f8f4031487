//! The harness of the `*_redis` test targets: two rendezvous instances
//! sharing one real `redis-server` on loopback, behind a round-robin TCP
//! proxy that hands each new connection to the other instance; the client
//! opens a new connection per request, so requests alternate instances.
//! Included with `#[path]` as the `harness` module of each such target.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdv::redis_store::RedisConfig;
use rdv::{Clock, Config, ManualClock, Rendezvous, RunningServer, SystemClock};
use test_support::redis::{redis_available, RedisServer};
use tokio::net::{TcpListener, TcpStream};

/// Requests alternate between two instances: per-instance figures (request
/// counters, long-poll waiters) differ from one server's.
pub const ONE_INSTANCE: bool = false;

/// Two instances on one Redis behind a round-robin proxy, which is
/// what the suite sees as "the server".
pub struct Server {
    /// The proxy's address.
    pub addr: SocketAddr,
    a: RunningServer,
    b: RunningServer,
    proxy: tokio::task::JoinHandle<()>,
    _redis: RedisServer,
}

impl Server {
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, self.a.rdv.config().base_path)
    }

    pub async fn stop(self) -> std::io::Result<()> {
        self.proxy.abort();
        self.a.stop().await?;
        self.b.stop().await
    }
}

static PREFIX: AtomicU64 = AtomicU64::new(0);

async fn start_on(config: Config, clock: Arc<dyn Clock>) -> Server {
    assert!(
        redis_available("a *_redis test target"),
        "redis-server is needed for this suite (scripts/setup.sh installs it)"
    );
    let redis = RedisServer::start(false);
    let config = Config {
        store: Some(RedisConfig {
            url: redis.url(),
            prefix: format!("conf{}:", PREFIX.fetch_add(1, Ordering::SeqCst)),
        }),
        ..config
    };
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let a = RunningServer::start(bind, Rendezvous::with_clock(config.clone(), clock.clone()))
        .await
        .unwrap();
    let b = RunningServer::start(bind, Rendezvous::with_clock(config, clock))
        .await
        .unwrap();
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let backends = [a.addr, b.addr];
    let proxy = tokio::spawn(async move {
        let mut next = 0usize;
        loop {
            let Ok((inbound, _)) = listener.accept().await else {
                return;
            };
            let target = backends[next % 2];
            next += 1;
            tokio::spawn(async move {
                if let Ok(out) = TcpStream::connect(target).await {
                    relay(inbound, out).await;
                }
            });
        }
    });
    // Both instances follow the store's wake-up channel before the
    // suite's first long-poll.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Server {
        addr,
        a,
        b,
        proxy,
        _redis: redis,
    }
}

/// Relays one connection like a transparent hop: when the instance
/// answers early and stops reading (a 413 to a body still being sent),
/// the client's remaining bytes are read and dropped rather than left
/// unread, which would make the kernel reset the connection before the
/// client reads the answer (the instance itself drains the same way).
async fn relay(inbound: TcpStream, out: TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut ci, mut co) = inbound.into_split();
    let (mut si, mut so) = out.into_split();
    let up = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut forward = true;
        while let Ok(n) = ci.read(&mut buf).await {
            if n == 0 {
                break;
            }
            if forward && so.write_all(&buf[..n]).await.is_err() {
                forward = false;
            }
        }
        let _ = so.shutdown().await;
    });
    let _ = tokio::io::copy(&mut si, &mut co).await;
    let _ = co.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), up).await;
}

pub async fn start(config: Config) -> Server {
    start_on(config, Arc::new(SystemClock::new())).await
}

pub async fn start_with_clock(config: Config) -> (Server, Arc<ManualClock>) {
    let clock = ManualClock::new();
    (start_on(config, clock.clone()).await, clock)
}

/// The suite's client with no connection reuse, so each request is a
/// new connection and the proxy alternates instances request by request.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}
