//! Shared helpers for the integration tests: a real rendezvous on a real
//! loopback port, and a plain HTTP client to talk to it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use rdv::{Config, ManualClock, Rendezvous, RunningServer};
use serde_json::Value;

/// A server on 127.0.0.1 with a port picked by the OS.
pub async fn start(config: Config) -> RunningServer {
    RunningServer::start("127.0.0.1:0".parse().unwrap(), Rendezvous::new(config))
        .await
        .expect("bind 127.0.0.1:0")
}

/// A server whose lifetimes follow a clock the test moves by hand.
pub async fn start_with_clock(config: Config) -> (RunningServer, Arc<ManualClock>) {
    let clock = ManualClock::new();
    let rdv = Rendezvous::with_clock(config, clock.clone());
    let server = RunningServer::start("127.0.0.1:0".parse().unwrap(), rdv)
        .await
        .expect("bind 127.0.0.1:0");
    (server, clock)
}

/// An HTTP/1.1 client like MidiEditor's: no proxy, short timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .http1_only()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Status, headers and body (as JSON, or Null when not JSON) of a response.
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub async fn from(r: reqwest::Response) -> Reply {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("<no error field>")
    }
}

pub async fn get(c: &reqwest::Client, url: &str) -> Reply {
    Reply::from(c.get(url).send().await.unwrap()).await
}

/// POST a raw body with the Content-Type MidiEditor sends.
pub async fn post_raw(c: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> Reply {
    Reply::from(
        c.post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

pub async fn post(c: &reqwest::Client, url: &str, body: Value) -> Reply {
    post_raw(c, url, body.to_string()).await
}

/// Opens a session and returns (code, hostToken).
pub async fn open_session(c: &reqwest::Client, base: &str, name: &str) -> (String, String) {
    let r = post(
        c,
        &format!("{base}/session"),
        serde_json::json!({"sessionId": "s-1", "displayName": name}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    (
        r.json["code"].as_str().unwrap().to_owned(),
        r.json["hostToken"].as_str().unwrap().to_owned(),
    )
}

/// A minimal but realistic offer SDP, with CRLF line ends like real ones.
pub fn fake_sdp(tag: &str) -> String {
    format!(
        "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
         a=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
         c=IN IP4 0.0.0.0\r\na=ice-ufrag:{tag}\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n\
         a=fingerprint:sha-256 00:11:22:33\r\na=setup:actpass\r\na=mid:0\r\n\
         a=sctp-port:5000\r\na=max-message-size:16777216\r\n"
    )
}
