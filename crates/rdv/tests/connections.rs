//! Connection-level bounds: a cap on open connections and an idle timeout,
//! against a real server on a loopback port with raw TCP clients.

mod common;

use std::time::{Duration, Instant};

use rdv::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends one HTTP/1.1 request on `s` and reads until the body of `/health`
/// (which ends with `}`) has arrived; returns the raw response.
async fn health_on(s: &mut TcpStream) -> String {
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.ends_with(b"}") {
        let n = s.read(&mut chunk).await.unwrap();
        assert!(n > 0, "closed before the response ended");
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(buf).unwrap()
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let server = common::start(Config {
        idle_timeout: Duration::from_millis(400),
        ..Config::default()
    })
    .await;
    // A slowloris client: half a request line, then nothing.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /hea").await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("server never closed the idle connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "expected the connection to be closed");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The server itself is fine.
    let r = common::get(&common::client(), &format!("{}/health", server.url())).await;
    assert_eq!(r.status, 200);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_active_keep_alive_connection_outlives_the_idle_timeout() {
    let server = common::start(Config {
        idle_timeout: Duration::from_millis(400),
        ..Config::default()
    })
    .await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    // Poll like MidiEditor, more often than the idle timeout, for 3 periods.
    for _ in 0..6 {
        let r = health_on(&mut s).await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        // Paces the polls (the scenario), not a wait for a result.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn connections_past_the_cap_wait_for_a_free_slot() {
    let server = common::start(Config {
        max_connections: 2,
        ..Config::default()
    })
    .await;
    let mut a = TcpStream::connect(server.addr).await.unwrap();
    let mut b = TcpStream::connect(server.addr).await.unwrap();
    assert!(health_on(&mut a).await.starts_with("HTTP/1.1 200"));
    assert!(health_on(&mut b).await.starts_with("HTTP/1.1 200"));

    // A third client connects (the kernel backlog accepts it) but is not
    // served while both slots are held.
    let mut c = TcpStream::connect(server.addr).await.unwrap();
    let third = tokio::spawn(async move { health_on(&mut c).await });
    // A negative check (not served), so a fixed wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third.is_finished(), "served past the connection cap");

    drop(a);
    let r = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("not served after a slot freed")
        .unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    drop(b);
    server.stop().await.unwrap();
}
