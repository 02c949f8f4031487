//! The join's engine: one task that connects ([`super::connect`]), then
//! runs the session until the jam ends for us, applying what the session
//! state machine decides to the link and the view.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, watch};
use types::Millis;

use super::connect::connect;
use super::link::{JoinLink, LinkMsg, MidiShared};
use super::session::{Out, Session, SessionConfig};
use super::tcp::{LanTarget, TcpJoinLink};
use super::*;
use crate::rtc::LinkState;

pub(super) struct Ctx {
    pub(super) cfg: JoinConfig,
    pub(super) view: Arc<watch::Sender<JoinView>>,
    pub(super) events: broadcast::Sender<JoinEvent>,
    pub(super) started: Instant,
    pub(super) midi: Arc<MidiShared>,
    /// A MidiEditor LAN Live host to join over TCP instead of the
    /// rendezvous and WebRTC.
    pub(super) lan: Option<LanTarget>,
}

impl Ctx {
    /// Milliseconds since the start, to 0.01 ms (enough for a log line).
    pub(super) fn ms(&self) -> f64 {
        (self.started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0
    }

    pub(super) fn now(&self) -> Millis {
        Millis(u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn emit(&self, e: JoinEvent) {
        let _ = self.events.send(e);
    }

    pub(super) fn step(&self, step: JoinStep) {
        self.emit(JoinEvent::Step {
            step,
            ms: self.ms(),
        });
        self.view.send_modify(|v| v.step = step);
    }

    // Events go out before the view changes, so that whoever wakes up on
    // the view (`Joiner::join` returning) finds the event already queued.

    pub(super) fn fail(&self, error: JoinError) {
        let message = error.to_string();
        self.emit(JoinEvent::Failed {
            error: error.clone(),
            message: message.clone(),
        });
        self.view.send_modify(|v| {
            v.phase = JoinPhase::Failed;
            v.step = JoinStep::Done;
            v.error = Some(error);
            v.error_message = Some(message);
            v.midi_open = false;
        });
    }

    pub(super) fn left(&self, reason: &str) {
        self.emit(JoinEvent::Left {
            reason: reason.to_owned(),
        });
        self.view.send_modify(|v| {
            v.phase = JoinPhase::Left;
            v.step = JoinStep::Done;
            v.left_reason = Some(reason.to_owned());
            v.midi_open = false;
        });
    }
}

/// What connecting hands to the session loop.
pub(super) struct Connected {
    pub link: AnyLink,
    pub events: mpsc::Receiver<LinkMsg>,
    pub session_id: String,
}

pub(super) async fn run(ctx: Ctx, mut cmd: mpsc::Receiver<Cmd>) {
    let connecting = connect(&ctx);
    tokio::pin!(connecting);
    let connected = loop {
        tokio::select! {
            r = &mut connecting => break r,
            c = cmd.recv() => match c {
                Some(Cmd::Leave(done)) => {
                    ctx.fail(JoinError::Cancelled);
                    let _ = done.send(());
                    return;
                }
                None => {
                    ctx.fail(JoinError::Cancelled);
                    return;
                }
                Some(Cmd::Chat(_, reply) | Cmd::Frame(_, reply)) => {
                    let _ = reply.send(Err("not in the jam yet".to_owned()));
                }
            },
        }
    };
    match connected {
        Err(e) => ctx.fail(e),
        Ok(c) => session(&ctx, c, &mut cmd).await,
    }
}

/// The connection to the host: WebRTC (through a rendezvous) or TCP (LAN
/// Live). The session loop only needs these few operations.
pub(super) enum AnyLink {
    Rtc(JoinLink),
    Tcp(TcpJoinLink),
}

impl AnyLink {
    fn state_watch(&self) -> watch::Receiver<LinkState> {
        match self {
            AnyLink::Rtc(l) => l.state_watch(),
            AnyLink::Tcp(l) => l.state_watch(),
        }
    }

    /// Live MIDI has its own data channel, which a TCP link does not have.
    async fn open_midi(&self) -> Result<(), String> {
        match self {
            AnyLink::Rtc(l) => l.open_midi().await.map_err(|e| e.to_string()),
            AnyLink::Tcp(_) => Err("not over a LAN Live (TCP) connection".to_owned()),
        }
    }

    async fn close(&mut self) {
        match self {
            AnyLink::Rtc(l) => l.close().await,
            AnyLink::Tcp(l) => l.close().await,
        }
    }

    /// One writer task: frames go out in order.
    fn spawn_writer(&self, mut out_rx: mpsc::Receiver<Bytes>) -> tokio::task::JoinHandle<()> {
        match self {
            AnyLink::Rtc(l) => {
                let control = l.control();
                tokio::spawn(async move {
                    while let Some(frame) = out_rx.recv().await {
                        if control.send(BytesMut::from(frame)).await.is_err() {
                            break;
                        }
                    }
                })
            }
            AnyLink::Tcp(l) => {
                let sender = l.sender();
                tokio::spawn(async move {
                    while let Some(frame) = out_rx.recv().await {
                        if sender.send(&frame).await.is_err() {
                            break;
                        }
                    }
                })
            }
        }
    }
}

/// Maps the roster to the view's peer list.
fn view_peers(session: &Session, me: &str) -> Vec<JoinPeer> {
    session
        .peers()
        .iter()
        .map(|p| JoinPeer {
            id: p.id,
            display_name: p.display_name.clone(),
            machine_id: p.machine_id.clone(),
            client: p.client.clone(),
            you: p.machine_id == me,
        })
        .collect()
}

/// Greeting, then the jam, until it ends one way or another.
async fn session(ctx: &Ctx, c: Connected, cmd: &mut mpsc::Receiver<Cmd>) {
    let Connected {
        mut link,
        mut events,
        session_id,
    } = c;
    let cfg = &ctx.cfg;
    let mut s = Session::new(
        SessionConfig {
            heartbeat_every: cfg.timeouts.heartbeat_every,
            silence_timeout: cfg.timeouts.silence,
            welcome_timeout: cfg.timeouts.welcome,
            max_frame: crate::framing::MIDIEDITOR_MAX_FRAME,
        },
        &cfg.machine_id,
        &cfg.display_name,
    );
    // One writer task: frames go out in order, and a host that stops
    // reading fills a bounded queue instead of stalling this loop.
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let writer = link.spawn_writer(out_rx);
    let send = |bytes: Vec<u8>| {
        // Full: the host is not reading; it will drop us, or we notice its
        // silence. Closed: the link is going away anyway.
        let _ = out_tx.try_send(Bytes::from(bytes));
    };
    ctx.step(JoinStep::Greeting);
    send(s.hello(ctx.now(), &session_id));

    let mut state = link.state_watch();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut leave_reply: Option<oneshot::Sender<()>> = None;
    // What ended it: Ok(reason) → left, Err(error) → failed.
    let end: Result<String, JoinError> = loop {
        let outs = tokio::select! {
            m = events.recv() => match m {
                Some(LinkMsg::Control(data)) => s.on_message(ctx.now(), &data),
                Some(LinkMsg::MidiOpen) => {
                    ctx.view.send_modify(|v| v.midi_open = true);
                    ctx.emit(JoinEvent::MidiOpen);
                    continue;
                }
                Some(LinkMsg::MidiClosed) => {
                    ctx.view.send_modify(|v| v.midi_open = false);
                    ctx.emit(JoinEvent::MidiClosed);
                    continue;
                }
                Some(LinkMsg::ControlOpen) => continue,
                Some(LinkMsg::ControlClosed) | None => {
                    break if s.is_joined() {
                        Ok("The host closed the connection.".to_owned())
                    } else {
                        Err(JoinError::ConnectionFailed {
                            detail: "the host closed the connection before welcoming us".to_owned(),
                        })
                    };
                }
            },
            st = state.changed() => {
                let st = if st.is_ok() { *state.borrow_and_update() } else { LinkState::Closed };
                match st {
                    LinkState::Failed | LinkState::Closed => {
                        break if s.is_joined() {
                            Ok("Lost the connection to the host.".to_owned())
                        } else {
                            Err(JoinError::ConnectionFailed {
                                detail: "the connection dropped before the host welcomed us".to_owned(),
                            })
                        };
                    }
                    LinkState::Disconnected => {
                        ctx.view.send_modify(|v| {
                            v.notice = Some("The connection to the host is shaky.".to_owned())
                        });
                    }
                    LinkState::Connected => {
                        ctx.view.send_modify(|v| {
                            if v.notice.as_deref() == Some("The connection to the host is shaky.") {
                                v.notice = None;
                            }
                        });
                    }
                    _ => {}
                }
                continue;
            }
            _ = tick.tick() => {
                let dropped = ctx.midi.dropped.load(Ordering::Relaxed);
                if dropped != ctx.view.borrow().midi_dropped {
                    ctx.view.send_modify(|v| v.midi_dropped = dropped);
                }
                s.tick(ctx.now())
            }
            c = cmd.recv() => match c {
                Some(Cmd::Leave(done)) => {
                    leave_reply = Some(done);
                    break Ok("You left the jam.".to_owned());
                }
                None => break Ok("You left the jam.".to_owned()),
                Some(Cmd::Chat(text, reply)) => {
                    let r = if s.is_joined() {
                        let ts = types::wall_ms();
                        s.chat(&text, ts).map(send)
                    } else {
                        Err("not in the jam yet".to_owned())
                    };
                    let _ = reply.send(r);
                    continue;
                }
                Some(Cmd::Frame(value, reply)) => {
                    let r = if s.is_joined() {
                        send(crate::framing::encode_json(&value));
                        Ok(())
                    } else {
                        Err("not in the jam yet".to_owned())
                    };
                    let _ = reply.send(r);
                    continue;
                }
            },
        };
        if let Some(end) = apply(ctx, &mut s, &link, outs, &send).await {
            break end;
        }
    };
    drop(out_tx);
    // Let a queued frame (a last chat) go out, then close.
    let _ = tokio::time::timeout(Duration::from_millis(200), writer).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), link.close()).await;
    match end {
        Ok(reason) => {
            if ctx.view.borrow().phase == JoinPhase::Connected {
                ctx.left(&reason);
            } else {
                ctx.fail(JoinError::Cancelled);
            }
        }
        Err(e) => ctx.fail(e),
    }
    if let Some(done) = leave_reply {
        let _ = done.send(());
    }
}

/// Carries out what the session said; `Some` when the jam is over for us.
async fn apply(
    ctx: &Ctx,
    s: &mut Session,
    link: &AnyLink,
    outs: Vec<Out>,
    send: &impl Fn(Vec<u8>),
) -> Option<Result<String, JoinError>> {
    for o in outs {
        match o {
            Out::Send(bytes) => send(bytes),
            Out::Welcomed(w) => {
                let ms = ctx.ms();
                let host_name = ctx.view.borrow().host_name.clone();
                ctx.emit(JoinEvent::Step {
                    step: JoinStep::Joined,
                    ms,
                });
                ctx.emit(JoinEvent::Joined {
                    host_name,
                    mode: w.mode.clone(),
                    ms,
                    legacy: w.legacy.clone(),
                });
                ctx.view.send_modify(|v| {
                    v.phase = JoinPhase::Connected;
                    v.step = JoinStep::Joined;
                    v.join_ms = Some(ms);
                    v.mode = w.mode;
                    v.host_app_version = w.app_version;
                    if let Some(p) = w.presenter {
                        v.host_machine_id = Some(p);
                    }
                    if let Some(kind) = &w.legacy {
                        v.legacy_host = true;
                        v.notice = Some(format!(
                            "The host runs an older build: it sent \"{kind}\" instead of a welcome."
                        ));
                    }
                });
            }
            Out::Rejected(reason) => {
                if !s.is_joined() && ctx.view.borrow().phase == JoinPhase::Connecting {
                    return Some(Err(if reason.to_ascii_lowercase().contains("full") {
                        JoinError::JamFull { detail: reason }
                    } else {
                        JoinError::Rejected { reason }
                    }));
                }
                return Some(Ok(format!("The host removed you: {reason}.")));
            }
            Out::Ended { restarting } => {
                if restarting {
                    ctx.view.send_modify(|v| v.host_restarting = true);
                }
                if ctx.view.borrow().phase == JoinPhase::Connecting {
                    return Some(Err(JoinError::Rejected {
                        reason: "the host ended the jam".to_owned(),
                    }));
                }
                return Some(Ok(if restarting {
                    "The host is restarting the jam under the same code: join again in a moment."
                } else {
                    "The host ended the jam."
                }
                .to_owned()));
            }
            Out::NoWelcome => {
                return Some(Err(JoinError::NoWelcome {
                    secs: ctx.cfg.timeouts.welcome.as_secs(),
                }))
            }
            Out::Silent => {
                return Some(Ok(format!(
                    "The host went silent for {} s; the connection is lost.",
                    ctx.cfg.timeouts.silence.as_secs()
                )))
            }
            Out::Roster => {
                let before = ctx.view.borrow().peers.clone();
                let after = view_peers(s, &ctx.cfg.machine_id);
                let host = s.host().clone();
                let max = s.max_peers();
                ctx.view.send_modify(|v| {
                    v.peers = after.clone();
                    v.max_peers = max.or(v.max_peers);
                    if !host.display_name.is_empty() {
                        v.host_name = Some(host.display_name.clone());
                    }
                    if !host.machine_id.is_empty() {
                        v.host_machine_id = Some(host.machine_id.clone());
                    }
                    if !host.client.is_empty() {
                        v.host_client = Some(host.client.clone());
                    }
                });
                if before.is_empty() {
                    ctx.emit(JoinEvent::Peers { peers: after });
                } else {
                    for p in after
                        .iter()
                        .filter(|p| !before.iter().any(|q| q.id == p.id))
                    {
                        ctx.emit(JoinEvent::PeerJoined { peer: p.clone() });
                    }
                    for p in before
                        .iter()
                        .filter(|p| !after.iter().any(|q| q.id == p.id))
                    {
                        ctx.emit(JoinEvent::PeerLeft { peer: p.clone() });
                    }
                }
            }
            Out::MidiWelcome => {
                if ctx.cfg.midi == MidiChannel::WhenHostOffers {
                    if let Err(e) = link.open_midi().await {
                        ctx.view.send_modify(|v| {
                            v.notice = Some(format!("Live MIDI is not available: {e}"))
                        });
                    }
                }
            }
            Out::Chat {
                machine_id,
                display_name,
                text,
            } => ctx.emit(JoinEvent::Chat {
                machine_id,
                display_name,
                text,
            }),
            Out::Other { kind, body, len } if kind == "filetransfer" => {
                if let Some(song) = JoinSong::from_frame(&body) {
                    ctx.view.send_modify(|v| v.song = Some(song));
                }
                ctx.emit(JoinEvent::Frame {
                    kind,
                    body: if len <= MAX_EVENT_FRAME {
                        body
                    } else {
                        Value::Null
                    },
                    len,
                })
            }
            Out::Other { kind, body, len } => ctx.emit(JoinEvent::Frame {
                kind,
                body: if len <= MAX_EVENT_FRAME {
                    body
                } else {
                    Value::Null
                },
                len,
            }),
            Out::BadFrame(e) => {
                tracing::debug!(error = %e, "ignoring a malformed frame from the host")
            }
        }
    }
    None
}
