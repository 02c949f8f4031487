//! This computer's MIDI ports in a jam it **joined**: the keyboard plays
//! into that jam (through its host, the hub), and what everyone there plays
//! comes out of the synth here.
//!
//! The bridge is a `midi::Router` in the joiner role, the same state machine
//! the host runs, so the "no stuck notes" rule holds on this side too: it
//! tracks every note heard through the host, and when the host is lost
//! (its connection closes, it ends the jam, we are kicked) or we leave,
//! the synth here gets a Note Off for each one still sounding, and the
//! host gets a release frame for what our keyboard still holds. A host
//! that promised keep-alives (ours does) and goes silent for a second while
//! its notes sound here is taken for stalled and released the same way,
//! without waiting ~5 s for ICE to notice (`docs/midi-frames.md`).
//!
//! [`JoinedMidi::ports`] is what [`crate::local_midi`] connects the ports
//! to; the app's own jam keeps running without them meanwhile
//! ([`crate::session::Jam::route_ports`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use jam::host::MidiEvent;
use jam::joiner::{JoinPhase, JoinView, Joiner, MidiSendError, MidiSender};
use jam::protocol::PeerId;
use midi::router::Routed;
use midi::{Link, MidiMessage, Origin, Router, RouterConfig};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::local_midi::JamPorts;

/// The one link of a joiner: its host.
const HOST: Link = Link(1);

/// Messages from the local inputs waiting for the bridge.
const INPUT_QUEUE: usize = 4096;

/// Messages for the local outputs (each output task reads them all; one
/// that falls this far behind silences its synth).
const OUTPUT_EVENTS: usize = 4096;

/// What the ports hand the bridge.
enum Input {
    /// A message an input played, with when (µs since the UNIX epoch).
    Play(u64, MidiMessage),
    /// The panic button.
    Panic,
}

/// How often the router's timers run while the host link is routed: the
/// keep-alives our promise needs (a frame every 250 ms while the host holds
/// our notes), and the release of a host that promised them and went
/// silent for 1 s (a frozen or killed host, found ~5x sooner than by ICE).
const TICK_EVERY: Duration = Duration::from_millis(100);

/// The ports' view of the joined jam.
struct Ports {
    input: mpsc::Sender<Input>,
    events: broadcast::Sender<MidiEvent>,
}

impl JamPorts for Ports {
    fn play(&self, time_us: u64, message: MidiMessage) {
        let _ = self.input.try_send(Input::Play(time_us, message));
    }

    fn panic(&self) {
        let _ = self.input.try_send(Input::Panic);
    }

    fn listen(&self) -> broadcast::Receiver<MidiEvent> {
        self.events.subscribe()
    }
}

/// Where the bridge reads the wall clock: µs since the UNIX epoch
/// ([`midi::wall_us`] in the app; a test may step it). Read once, when the
/// bridge starts: see [`Clock`].
pub type WallClock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The bridge between the local ports and a joined jam.
pub struct JoinedMidi {
    ports: Arc<Ports>,
    leave: Option<oneshot::Sender<()>>,
    ended: watch::Receiver<bool>,
    task: Option<JoinHandle<()>>,
}

impl JoinedMidi {
    /// Starts the bridge for `joiner` (joining or joined). Takes the
    /// joiner's MIDI receiver: nothing else may read it.
    pub fn start(joiner: &Joiner) -> JoinedMidi {
        JoinedMidi::start_with_wall_clock(joiner, Arc::new(midi::wall_us))
    }

    /// [`start`](Self::start) reading the wall clock from `wall`.
    pub fn start_with_wall_clock(joiner: &Joiner, wall: WallClock) -> JoinedMidi {
        let (input_tx, input) = mpsc::channel(INPUT_QUEUE);
        let (events, _) = broadcast::channel(OUTPUT_EVENTS);
        let ports = Arc::new(Ports {
            input: input_tx,
            events: events.clone(),
        });
        let (leave, leave_rx) = oneshot::channel();
        let (ended_tx, ended) = watch::channel(false);
        let mut router = Router::new(RouterConfig::joiner());
        // The timers start now, so every frame we send promises keep-alives.
        let clock = Clock::start(&wall);
        router.tick(clock.now_us(), &mut Routed::default());
        let bridge = Bridge {
            clock,
            router,
            routed: false,
            sender: joiner.midi_sender(),
            events,
            out: Routed::default(),
        };
        let task = tokio::spawn(bridge.run(
            joiner.watch(),
            joiner.take_midi_receiver(),
            input,
            leave_rx,
            ended_tx,
        ));
        JoinedMidi {
            ports,
            leave: Some(leave),
            ended,
            task: Some(task),
        }
    }

    /// What [`crate::local_midi`] connects the ports to.
    pub fn ports(&self) -> Arc<dyn JamPorts> {
        self.ports.clone()
    }

    /// Resolves once the joined jam is over (host lost, kicked, failed to
    /// join) and everything heard from it was released here. Not after
    /// [`close`](Self::close): leaving is the caller's own doing.
    pub fn ended(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut e = self.ended.clone();
        async move {
            let _ = e.wait_for(|v| *v).await;
        }
    }

    /// Leaving: releases what the synth here still sounds from the jam and
    /// tells the host to release what our keyboard holds, then ends.
    pub async fn close(mut self) {
        if let Some(l) = self.leave.take() {
            let _ = l.send(());
        }
        if let Some(mut t) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(2), &mut t)
                .await
                .is_err()
            {
                t.abort();
            }
        }
    }
}

impl Drop for JoinedMidi {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// The router's clock, as the host's (`jam::host::live`): the wall clock
/// when the bridge started, advanced by the monotonic clock. It reads as µs
/// since the UNIX epoch (what frame timestamps carry), but a step of the
/// system clock (NTP setting it) can neither fake a stall of the host,
/// releasing the notes it holds, nor hide one.
struct Clock {
    started: Instant,
    wall_us: u64,
}

impl Clock {
    fn start(wall: &WallClock) -> Clock {
        Clock {
            started: Instant::now(),
            wall_us: wall(),
        }
    }

    fn now_us(&self) -> u64 {
        let since = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.wall_us.saturating_add(since)
    }
}

struct Bridge {
    clock: Clock,
    router: Router,
    /// The host link is routed (the `midi` channel is open).
    routed: bool,
    sender: MidiSender,
    events: broadcast::Sender<MidiEvent>,
    out: Routed,
}

impl Bridge {
    /// `now` for the router (see [`Clock`]).
    fn now_us(&self) -> u64 {
        self.clock.now_us()
    }

    async fn run(
        mut self,
        mut view: watch::Receiver<JoinView>,
        mut frames: Option<mpsc::Receiver<Bytes>>,
        mut input: mpsc::Receiver<Input>,
        mut leave: oneshot::Receiver<()>,
        ended: watch::Sender<bool>,
    ) {
        let mut tick = tokio::time::interval(TICK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let v = view.borrow_and_update().clone();
            if self.follow(&v).await {
                break;
            }
            tokio::select! {
                _ = &mut leave => {
                    let now = self.now_us();
                    self.router.release_all(now, &mut self.out);
                    self.carry_out().await;
                    let _ = ended.send(true);
                    return;
                }
                r = view.changed() => {
                    if r.is_err() {
                        // The joiner is gone: as good as the host lost.
                        self.lost().await;
                        break;
                    }
                }
                f = recv(&mut frames) => match f {
                    Some(data) => {
                        // The channel's first frames can come before the
                        // view says it is open: route it now, not drop them.
                        if !self.routed && self.sender.is_open() {
                            self.routed = self.router.link_opened(HOST);
                        }
                        let now = self.now_us();
                        if let Err(e) = self.router.frame(now, HOST, &data, &mut self.out) {
                            tracing::debug!("bad midi frame from the host: {e}");
                        }
                        self.carry_out().await;
                    }
                    None => frames = None,
                },
                _ = tick.tick(), if self.routed => {
                    self.router.tick(self.now_us(), &mut self.out);
                    self.carry_out().await;
                }
                m = input.recv() => {
                    let now = self.now_us();
                    match m {
                        None => break,
                        Some(Input::Panic) => self.router.panic(now, &mut self.out),
                        Some(Input::Play(time_us, first)) => {
                            // What else the ports have at once goes in the same frame.
                            // A panic right behind them comes after them.
                            let mut batch = vec![first];
                            let mut panic = false;
                            while batch.len() < 64 && !panic {
                                match input.try_recv() {
                                    Ok(Input::Play(_, m)) => batch.push(m),
                                    Ok(Input::Panic) => panic = true,
                                    Err(_) => break,
                                }
                            }
                            self.router.local_input(now, time_us, &batch, &mut self.out);
                            if panic {
                                self.router.panic(now, &mut self.out);
                            }
                        }
                    }
                    self.carry_out().await;
                }
            }
        }
        let _ = ended.send(true);
        // Wait to be told to leave, so the ports stay connected (and
        // silent) until the app takes them back.
        let _ = leave.await;
    }

    /// Follows the `midi` channel opening and closing; `true` when the
    /// join is over.
    async fn follow(&mut self, v: &JoinView) -> bool {
        if v.midi_open && !self.routed {
            self.routed = self.router.link_opened(HOST);
        } else if !v.midi_open && self.routed {
            self.lost().await;
        }
        matches!(v.phase, JoinPhase::Failed | JoinPhase::Left)
    }

    /// The host is gone: the synth here releases what it heard from it.
    async fn lost(&mut self) {
        if self.routed {
            self.routed = false;
            self.router.link_closed(self.now_us(), HOST, &mut self.out);
            self.carry_out().await;
        }
    }

    /// Sends the frames to the host and the local deliveries to the ports.
    async fn carry_out(&mut self) {
        for (_, frame) in self.out.sends.drain(..) {
            match self.sender.send(frame).await {
                Ok(()) | Err(MidiSendError::NotOpen) => {}
                // A host that does not read loses frames; its own stall
                // handling (and ours, on its silence) takes it from there.
                Err(e) => tracing::debug!("midi to the host: {e}"),
            }
        }
        for d in self.out.local.drain(..) {
            let peer = match d.origin {
                Origin::Remote { player, .. } if player != 0 => Some(PeerId(player)),
                _ => None,
            };
            let _ = self.events.send(MidiEvent {
                peer,
                time_us: d.time_us,
                message: d.message,
                release: d.release,
            });
        }
    }
}

/// The next frame, or never when there is no receiver.
async fn recv(frames: &mut Option<mpsc::Receiver<Bytes>>) -> Option<Bytes> {
    match frames {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
