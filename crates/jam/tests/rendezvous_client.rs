//! The host's rendezvous client against a real HTTP server on 127.0.0.1
//! that misbehaves: a poll of `joiner-offers` answered with a body far
//! larger than any rendezvous sends. The client must stop reading at its
//! cap, say so in words, and not buffer the rest.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use jam::signal::{Signaller, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the flooding server sends as a `joiner-offers` body: far beyond any
/// cap a client could reasonably use, and finite so that an uncapped client
/// finishes (and the test can tell how much it read).
const FLOOD: u64 = 64 * 1024 * 1024;

/// Reads one request head; returns its request line.
async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
        if buf.len() > 64 * 1024 {
            return None;
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    // POST bodies: read Content-Length bytes.
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())
                .flatten()
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    head.lines().next().map(str::to_owned)
}

/// A rendezvous that opens sessions normally and floods every offers poll,
/// announcing the flood's length or not (then the body ends when the
/// connection does, and only counting what arrives can stop it). Counts
/// the body bytes the client accepted from the flood.
async fn flooding_server(announce_length: bool) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                while let Some(line) = read_head(&mut s).await {
                    if line.starts_with("POST /session") {
                        let body = r#"{"code":"M7P3","expiresInSec":300,"hostToken":"t0ken"}"#;
                        let head = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        if s.write_all(head.as_bytes()).await.is_err()
                            || s.write_all(body.as_bytes()).await.is_err()
                        {
                            return;
                        }
                        continue;
                    }
                    // Everything else: a huge offers list.
                    let head = if announce_length {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {FLOOD}\r\n\r\n"
                        )
                    } else {
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                            .to_owned()
                    };
                    if s.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = vec![b' '; 64 * 1024];
                    let mut left = FLOOD;
                    while left > 0 {
                        let n = left.min(chunk.len() as u64) as usize;
                        if s.write_all(&chunk[..n]).await.is_err() {
                            return;
                        }
                        counter.fetch_add(n as u64, Ordering::SeqCst);
                        left -= n as u64;
                    }
                    return;
                }
            });
        }
    });
    (url, sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_offers_poll_stops_at_the_body_cap() {
    flooded_poll_stops_at_the_cap(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unannounced_length_stops_at_the_body_cap_too() {
    flooded_poll_stops_at_the_cap(false).await;
}

async fn flooded_poll_stops_at_the_cap(announce_length: bool) {
    let (url, sent) = flooding_server(announce_length).await;
    let signaller = Signaller::new(Target::Remote(url.parse().unwrap()));
    let session = signaller.open("sess", "Host", None).await.expect("open");
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        signaller.next_offers(&session, &HashSet::new()),
    )
    .await
    .expect("the poll ends")
    .expect_err("a flood is no offers list");
    let text = err.to_string();
    assert!(
        text.contains("more than") && text.contains("KiB"),
        "the error names the cap: {text}"
    );
    // Let the server notice the closed connection. (The check below is an
    // upper bound, a negative: waiting longer only makes it stricter.)
    tokio::time::sleep(Duration::from_millis(200)).await;
    let read = sent.load(Ordering::SeqCst);
    // The socket buffers of both ends hold a few MiB at most; an uncapped
    // client takes the whole flood.
    assert!(
        read < FLOOD / 4,
        "the client stopped reading early, but the server sent {read} bytes"
    );
}

/// How many long-polls the rendezvous holds now, read from its metrics.
fn held_long_polls(rdv: &rdv::Rendezvous) -> u64 {
    rdv.metrics_text()
        .lines()
        .find_map(|l| l.strip_prefix("rdv_longpoll_waiters "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// A host on a remote rendezvous (our server over HTTP) holds a long-poll
/// of `joiner-offers` instead of polling every second, and host and joiner
/// talk through the same client with the protocol's meanings of 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_host_long_polls_and_answers_through_the_one_client() {
    use jam::rendezvous::{Client, RendezvousError};
    use jam::signal::SignalError;
    use jam::types::{Code, RendezvousUrl};

    let server = rdv::RunningServer::start(
        "127.0.0.1:0".parse().unwrap(),
        rdv::Rendezvous::new(rdv::Config::default()),
    )
    .await
    .unwrap();
    let url: RendezvousUrl = server.url().parse().unwrap();
    let host = Signaller::new(Target::Remote(url.clone()));
    host.health().await.expect("our rendezvous is healthy");
    let session = host.open("sess", "Host", None).await.expect("open");

    let polling = tokio::spawn({
        let host = host.clone();
        let session = session.clone();
        async move { host.next_offers(&session, &HashSet::new()).await }
    });
    // The host's poll is held by the rendezvous, not repeated.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while held_long_polls(&server.rdv) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "no long-poll held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let joiner = Client::new(url, Duration::from_secs(5));
    let verified = joiner.verify(&session.code).await.expect("verify");
    assert_eq!(verified.session_id, "sess");
    assert_eq!(verified.display_name, "Host");
    assert_eq!(
        joiner
            .poll_answer(&session.code, "joiner-0001", None)
            .await
            .expect("404 is not yet"),
        None
    );
    joiner
        .post_offer(&session.code, "joiner-0001", "v=0 offer")
        .await
        .expect("offer");
    let offers = polling.await.unwrap().expect("offers");
    assert_eq!(offers.len(), 1);
    assert_eq!(offers[0].joiner_id, "joiner-0001");
    assert_eq!(offers[0].sdp, "v=0 offer");

    host.answer(&session, "joiner-0001", "v=0 answer".into())
        .await
        .expect("answer");
    assert_eq!(
        joiner
            .poll_answer(&session.code, "joiner-0001", None)
            .await
            .expect("answer poll")
            .as_deref(),
        Some("v=0 answer")
    );
    // A second answer is refused, in the rendezvous's own words.
    match host
        .answer(&session, "joiner-0001", "v=0 again".into())
        .await
    {
        Err(SignalError::Remote(RendezvousError::Status {
            status: 409,
            message,
        })) => {
            assert!(message.unwrap_or_default().contains("already posted"))
        }
        other => panic!("{other:?}"),
    }
    // An unknown code is "no session", said so.
    let unknown = Code::parse_route("ZZZZ").unwrap();
    let e = joiner.verify(&unknown).await.unwrap_err();
    assert!(matches!(e, RendezvousError::NoSession { .. }), "{e:?}");
    assert!(e.to_string().contains("code ZZZZ"), "{e}");
    server.stop().await.unwrap();
}
