//! A webrtc-rs joiner with a `midi` channel, for tests and benchmarks:
//! `jam::offer::Offerer` with `midieditor` plus `midi`, joined through a
//! rendezvous over real HTTP, welcomed, heartbeating in the background.
//!
//! Shared by `tests/midi_three_peers.rs` and `benches/midi_latency.rs`
//! (`#[path]`-included), so not every item is used by both.
//!
//! It plays as an older joiner would: its frames never set `KEEPALIVE`
//! (docs/midi-frames.md, "Keep-alive and stalls"), since it sends no
//! keep-alives, so it may hold notes in silence as long as a test likes
//! and is released only when it goes. [`MidiSender::play_flagged`] sends
//! with other flags. What it receives is read as a player would: the
//! host's empty keep-alive frames are counted ([`MidiPeer::keepalives`]),
//! not returned.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use jam::host::{Host, HostConfig, HostControl, HostEvent};
use jam::midi::frame::{self, Frame, FrameHeader};
use jam::midi::MidiMessage;
use jam::offer::{Offerer, OffererChannel, OffererEvent, OffererSender};
use jam::rtc::RtcConfig;
use jam::signal::Target;
use rdv::{Config, Rendezvous, RunningServer};
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

/// Bound on one step that takes milliseconds when things work.
pub const STEP: Duration = Duration::from_secs(15);

/// Our host with its bundled rendezvous on 127.0.0.1, hosting.
pub struct Hosted {
    /// The rendezvous; the jam ends when it is dropped.
    pub server: RunningServer,
    pub host: Host,
    pub ctl: HostControl,
    /// The rendezvous URL joiners use.
    pub base: String,
    pub code: String,
    /// The host's events after `Hosting`.
    pub events: broadcast::Receiver<HostEvent>,
}

/// Starts [`Hosted`] as `name`, with at most 8 peers, on loopback only.
pub async fn start_host(name: &str) -> Hosted {
    let server = RunningServer::start(
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        Rendezvous::new(Config::default()),
    )
    .await
    .expect("rendezvous on 127.0.0.1");
    let base = server.url();
    let (host, mut events) = Host::start(HostConfig {
        display_name: name.into(),
        machine_id: String::new(),
        session_id: "midi".into(),
        max_peers: 8,
        rtc: loopback(),
        target: Target::bundled(server.rdv.clone()),
        share_urls: vec![base.clone()],
        keep_code: None,
    })
    .await
    .expect("host starts");
    let code = match events.recv().await {
        Ok(HostEvent::Hosting { code, .. }) => code,
        other => panic!("expected Hosting, got {other:?}"),
    };
    Hosted {
        ctl: host.clone_handle(),
        server,
        host,
        base,
        code,
        events,
    }
}

pub fn loopback() -> RtcConfig {
    RtcConfig {
        ice_servers: Vec::new(),
        gather_timeout: Duration::from_secs(2),
        bind_ips: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        resolve_mdns: false,
    }
}

fn framed(v: &Value) -> Bytes {
    let payload = serde_json::to_vec(v).unwrap_or_default();
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(&payload);
    Bytes::from(out)
}

fn frame_type(msg: &[u8]) -> Option<String> {
    let payload = msg.get(4..)?;
    let v: Value = serde_json::from_slice(payload).ok()?;
    v.get("type")?.as_str().map(str::to_owned)
}

fn random_id(len: usize) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-";
    let mut b = vec![0u8; len];
    getrandom::fill(&mut b).expect("randomness");
    b.iter()
        .map(|x| A[usize::from(*x) % A.len()] as char)
        .collect()
}

/// Plays on a [`MidiPeer`]'s `midi` channel from any task.
#[derive(Clone)]
pub struct MidiSender(OffererSender);

impl MidiSender {
    /// Plays messages: one frame, origin 0, no flags, stamped with the
    /// wall clock.
    pub async fn play(&self, messages: &[MidiMessage]) -> Result<(), String> {
        self.play_flagged(0, messages).await
    }

    /// Like [`MidiSender::play`] with these flags (no messages: an empty
    /// frame, such as a keep-alive).
    pub async fn play_flagged(&self, flags: u8, messages: &[MidiMessage]) -> Result<(), String> {
        let f = frame::encode(
            &FrameHeader {
                flags,
                origin: 0,
                time_us: jam::midi::wall_us(),
            },
            messages,
        )
        .map_err(|e| e.to_string())?;
        self.0.send(Bytes::from(f)).await.map_err(|e| e.to_string())
    }
}

/// A joined joiner: its `midi` channel, and a background task that owns
/// the `midieditor` side (drains it, heartbeats every 5 s).
pub struct MidiPeer {
    pub machine_id: String,
    pub midi: OffererChannel,
    control: Option<JoinHandle<()>>,
    /// `true` once the host closed `midieditor` (or the link died).
    pub gone: watch::Receiver<bool>,
    /// Empty frames received (the host's keep-alives), skipped by
    /// [`MidiPeer::next_frame`].
    pub keepalives: u64,
}

impl MidiPeer {
    /// Joins the jam `code` at `base` (`http://127.0.0.1:port`), says hello
    /// as our app would, waits for the welcome and for `midi` to open.
    pub async fn join(base: &str, code: &str, name: &str) -> Result<MidiPeer, String> {
        Self::join_with(base, code, name, true).await
    }

    /// Like [`MidiPeer::join`]; with `hello: false` it opens both channels
    /// but never says hello (a stranger the host must not route).
    pub async fn join_with(
        base: &str,
        code: &str,
        name: &str,
        say_hello: bool,
    ) -> Result<MidiPeer, String> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let mut offerer = Offerer::with_channels(&loopback(), "midieditor", &["midi"])
            .await
            .map_err(|e| format!("offerer: {e}"))?;
        let mut midi = offerer.take_channel("midi").ok_or("no midi channel")?;
        let joiner_id = random_id(16);
        let r = http
            .post(format!("{base}/code/{code}/joiner-offer"))
            .json(&json!({"joinerId": joiner_id, "sdp": offerer.offer_sdp()}))
            .send()
            .await
            .map_err(|e| format!("POST offer: {e}"))?;
        if r.status().as_u16() != 200 {
            return Err(format!("POST offer answered {}", r.status()));
        }
        let answer = tokio::time::timeout(STEP, async {
            loop {
                let r = http
                    .get(format!(
                        "{base}/code/{code}/host-answer/{joiner_id}?wait=25000"
                    ))
                    .send()
                    .await
                    .map_err(|e| format!("GET answer: {e}"))?;
                if r.status().as_u16() == 200 {
                    let v: Value = r.json().await.map_err(|e| e.to_string())?;
                    return v["sdp"]
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| "no sdp".to_owned());
                }
            }
        })
        .await
        .map_err(|_| "no answer in time".to_owned())??;
        offerer
            .accept(&answer)
            .await
            .map_err(|e| format!("accept: {e}"))?;
        let machine_id = format!("{}-{}", name, random_id(8));
        tokio::time::timeout(STEP, async {
            loop {
                match offerer.next_event().await {
                    Some(OffererEvent::Open) => break Ok(()),
                    Some(_) => {}
                    None => break Err("midieditor closed before opening".to_owned()),
                }
            }
        })
        .await
        .map_err(|_| "midieditor did not open".to_owned())??;
        let hello = json!({
            "type": "hello", "sessionId": "test", "displayName": name,
            "machineId": machine_id, "client": "midi-jam/test",
        });
        if say_hello {
            offerer
                .send(framed(&hello))
                .await
                .map_err(|e| format!("hello: {e}"))?;
            tokio::time::timeout(STEP, async {
                loop {
                    match offerer.next_event().await {
                        Some(OffererEvent::Message(m)) => {
                            if frame_type(&m).as_deref() == Some("sessionWelcome") {
                                break Ok(());
                            }
                        }
                        Some(_) => {}
                        None => break Err("closed before the welcome".to_owned()),
                    }
                }
            })
            .await
            .map_err(|_| "no welcome".to_owned())??;
        }
        tokio::time::timeout(STEP, async {
            loop {
                match midi.next_event().await {
                    Some(OffererEvent::Open) => break Ok(()),
                    Some(_) => {}
                    None => break Err("midi closed before opening".to_owned()),
                }
            }
        })
        .await
        .map_err(|_| "midi did not open".to_owned())??;
        let (gone_tx, gone) = watch::channel(false);
        let control = tokio::spawn(async move {
            let mut beat = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    ev = offerer.next_event() => match ev {
                        Some(OffererEvent::Closed) | None => break,
                        Some(_) => {}
                    },
                    _ = beat.tick(), if say_hello => {
                        let _ = offerer.send(framed(&json!({"type": "heartbeat"}))).await;
                    }
                }
            }
            gone_tx.send_replace(true);
            // Keep the connection until this task is aborted.
            std::future::pending::<()>().await;
            drop(offerer);
        });
        Ok(MidiPeer {
            machine_id,
            midi,
            control: Some(control),
            gone,
            keepalives: 0,
        })
    }

    /// Plays messages: one frame, origin 0, stamped with the wall clock.
    pub async fn play(&self, messages: &[MidiMessage]) -> Result<(), String> {
        self.sender().play(messages).await
    }

    /// A handle that plays from another task.
    pub fn sender(&self) -> MidiSender {
        MidiSender(self.midi.sender())
    }

    /// The next `midi` frame that carries messages, decoded; `None` if
    /// none within `within`. Empty frames (keep-alives: nothing to play)
    /// are only counted in [`MidiPeer::keepalives`].
    pub async fn next_frame(&mut self, within: Duration) -> Option<(Frame, u64)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let ev = tokio::time::timeout_at(deadline, self.midi.next_event())
                .await
                .ok()??;
            if let OffererEvent::Message(data) = ev {
                let at = jam::midi::wall_us();
                match Frame::decode(&data) {
                    Ok(f) if f.messages.is_empty() => self.keepalives += 1,
                    f => return f.ok().map(|f| (f, at)),
                }
            }
        }
    }

    /// Waits for a frame matching `pred`, skipping others.
    pub async fn frame_where(
        &mut self,
        within: Duration,
        pred: impl Fn(&Frame) -> bool,
    ) -> Option<Frame> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (f, _) = self.next_frame(left).await?;
            if pred(&f) {
                return Some(f);
            }
        }
    }

    /// Drops the connection without a goodbye on `midieditor` (the
    /// connection itself closes as any dropped webrtc-rs peer does).
    pub fn vanish(mut self) {
        if let Some(c) = self.control.take() {
            c.abort();
        }
    }
}

impl Drop for MidiPeer {
    fn drop(&mut self) {
        if let Some(c) = self.control.take() {
            c.abort();
        }
    }
}
