//! Live MIDI through our host on loopback: latency, relay cost, throughput.
//!
//! `cargo bench -p jam --bench midi_latency` prints a report and asserts
//! nothing. Everything stays on 127.0.0.1: a bundled rendezvous, a [`Host`]
//! in process (its own 2-thread runtime), and webrtc-rs joiners
//! (`jam::offer::Offerer` with `midieditor` + `midi`, on a second runtime)
//! joined over real HTTP; no ICE servers, no mDNS.
//!
//! 1. **Latency**: joiner A plays notes (one Note On or Off per frame, one
//!    every millisecond), joiner B hears them through the host. Latency is
//!    B's wall clock on arrival minus the frame's `time_us` (stamped by A
//!    just before sending): A's send path, the host's relay, B's receive
//!    path. p50 / p99 / max over `MIDI_BENCH_NOTES` (10,000) notes, after a
//!    warm-up.
//! 2. **Relay time per message**, measured two ways: in place (the host's
//!    own counters: from the frame event in the engine to every frame
//!    queued and every local message broadcast), and a microbenchmark of
//!    `midi::Router::frame` (decode, track, re-stamp, fan out to 7 links,
//!    local delivery) on a hub with 8 links.
//! 3. **Throughput with 8 peers**: eight joiners all play at once at rising
//!    rates (`MIDI_BENCH_RATES`, notes per second per peer, default
//!    `250,500,1000,2000,4000,8000`) for `MIDI_BENCH_SECS` (3) each; every note must
//!    reach the 7 others. Reported: notes in per second, deliveries per
//!    second, loss, latency under load. It stops at the first rate that
//!    loses a note or stalls a peer.
//! 4. **Stall release**: joiner A promises keep-alives (the `KEEPALIVE`
//!    flag, docs/midi-frames.md) on a frame holding a note, then sends
//!    nothing more, as a joiner killed right after playing it; the time
//!    until B gets the host's release of that note, from A's frame, over
//!    `MIDI_BENCH_STALLS` (10) runs. A joiner killed at any other moment
//!    had sent its last frame at most 250 ms before.
//!
//! Knobs (environment): `MIDI_BENCH_NOTES`, `MIDI_BENCH_RATES`,
//! `MIDI_BENCH_SECS`, `MIDI_BENCH_MICRO` (microbenchmark iterations,
//! 200,000), `MIDI_BENCH_STALLS`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jam::host::{HostControl, HostEvent};
use jam::midi::frame::{self, flags, FrameHeader};
use jam::midi::{Link, MidiMessage, Routed, Router, RouterConfig};
use jam::protocol::PeerId;
use jam::registry::RegistryEvent;
use tokio::runtime::Runtime;
use tokio::sync::broadcast;

#[path = "../tests/support/midi_peer.rs"]
mod midi_peer;
use midi_peer::{Hosted, MidiPeer};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// p-th percentile (0..=100) of sorted values.
fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

/// The host, with a local output that keeps up, as the app's would.
async fn start_host() -> Hosted {
    let hosted = midi_peer::start_host("bench host").await;
    let mut sink = hosted.host.midi_events();
    tokio::spawn(async move {
        while let Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) = sink.recv().await {}
    });
    hosted
}

/// The host's id of each peer, by machine id (blocking on the host's events).
fn ids_of(events: &mut broadcast::Receiver<HostEvent>, machine_ids: &[String]) -> Vec<PeerId> {
    let mut ids: Vec<Option<PeerId>> = vec![None; machine_ids.len()];
    let deadline = Instant::now() + Duration::from_secs(30);
    while ids.iter().any(Option::is_none) {
        assert!(Instant::now() < deadline, "peers not welcomed: {ids:?}");
        match events.try_recv() {
            Ok(HostEvent::Peer(RegistryEvent::Connected { peer })) => {
                for (i, m) in machine_ids.iter().enumerate() {
                    if peer.machine_id.as_deref() == Some(m.as_str()) {
                        ids[i] = Some(peer.id);
                    }
                }
            }
            Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
            Err(broadcast::error::TryRecvError::Empty) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("host events: {e}"),
        }
    }
    ids.into_iter().flatten().collect()
}

/// Plays Active Sensing from the host until every peer heard it: then all
/// are routed both ways.
async fn until_routed(ctl: &HostControl, peers: &mut [MidiPeer]) {
    for p in peers.iter_mut() {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            assert!(Instant::now() < deadline, "a peer was not routed");
            ctl.send_midi(&[0xFE]).expect("send");
            if p.next_frame(Duration::from_millis(50)).await.is_some() {
                break;
            }
        }
    }
    for p in peers.iter_mut() {
        while p.next_frame(Duration::from_millis(100)).await.is_some() {}
    }
}

fn note(i: usize) -> MidiMessage {
    let key = 36 + (i / 2 % 48) as u8;
    if i % 2 == 0 {
        MidiMessage::NoteOn {
            channel: 0,
            key,
            velocity: 100,
        }
    } else {
        MidiMessage::note_off(0, key)
    }
}

// ------------------------------------------------------------ 1. latency

fn latency(host_rt: &Runtime, peers_rt: &Runtime, hosted: &mut Hosted) {
    let n = env_or("MIDI_BENCH_NOTES", 10_000);
    let warmup = 500;
    let (base, code) = (hosted.base.clone(), hosted.code.clone());
    let (a, b) = peers_rt.block_on(async {
        let a = MidiPeer::join(&base, &code, "a").await.expect("a joins");
        let b = MidiPeer::join(&base, &code, "b").await.expect("b joins");
        (a, b)
    });
    let ids = ids_of(
        &mut hosted.events,
        &[a.machine_id.clone(), b.machine_id.clone()],
    );
    let mut peers = vec![a, b];
    peers_rt.block_on(until_routed(&hosted.ctl, &mut peers));
    let mut b = peers.pop().expect("b");
    let a = peers.pop().expect("a");
    let before = hosted.ctl.midi_stats();

    let lat = peers_rt.block_on(async {
        let a_id = ids[0].0;
        let total = warmup + n;
        let receiver = tokio::spawn(async move {
            let mut lat = Vec::with_capacity(total);
            while lat.len() < total {
                match b.next_frame(Duration::from_secs(5)).await {
                    Some((f, at)) if f.header.origin == a_id => {
                        lat.push(at.saturating_sub(f.header.time_us));
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            (lat, b)
        });
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        for i in 0..total {
            tick.tick().await;
            a.play(&[note(i)]).await.expect("a plays");
        }
        let (lat, b) = receiver.await.expect("receiver");
        drop((a, b));
        lat
    });
    let after = hosted.ctl.midi_stats();
    let mut l: Vec<u64> = lat.iter().skip(warmup).copied().collect();
    let got = l.len();
    l.sort_unstable();
    println!("\n## 1. Latency, joiner A input -> host -> joiner B output (loopback)");
    println!(
        "{got}/{n} notes, one a millisecond: p50 {}  p99 {}  max {}  (min {})",
        ms(pct(&l, 50.0)),
        ms(pct(&l, 99.0)),
        ms(pct(&l, 100.0)),
        ms(pct(&l, 0.0))
    );
    let frames = after.frames_in - before.frames_in;
    let mut window = after;
    for (w, b) in window
        .relay_histogram
        .iter_mut()
        .zip(before.relay_histogram.iter())
    {
        *w -= b;
    }
    let relay_total = after.relay_ns_total - before.relay_ns_total;
    println!(
        "host relay in place over these {frames} frames: mean {:.2} µs, max {:.2} µs, {} over \
         50 µs (engine: decode, track, fan out, local broadcast)",
        relay_total as f64 / frames.max(1) as f64 / 1000.0,
        after.relay_ns_max as f64 / 1000.0,
        after.relay_slow - before.relay_slow,
    );
    println!(
        "  in place, by histogram bucket: p50 <= {} µs, p90 <= {} µs, p99 <= {} µs; buckets \
         (<= 1,2,5,10,20,50,100,1000,more µs): {:?}",
        window.relay_percentile_us(50.0).unwrap_or(0),
        window.relay_percentile_us(90.0).unwrap_or(0),
        window.relay_percentile_us(99.0).unwrap_or(0),
        window.relay_histogram
    );
    // Let the host see them go before the next part.
    // Settles between the benchmark's parts (pacing, not a wait for a result).
    host_rt.block_on(async { tokio::time::sleep(Duration::from_millis(300)).await });
}

// ------------------------------------------------------------ 2. micro

fn micro() {
    let iters = env_or("MIDI_BENCH_MICRO", 200_000);
    let mut r = Router::new(RouterConfig::host());
    for l in 1..=8 {
        r.link_opened(Link(l));
    }
    let frames: Vec<Vec<u8>> = (0..2)
        .map(|i| {
            frame::encode(
                &FrameHeader {
                    flags: 0,
                    origin: 0,
                    time_us: 1_700_000_000_000_000,
                },
                &[note(i)],
            )
            .expect("frame")
        })
        .collect();
    let mut out = Routed::default();
    let mut times = Vec::with_capacity(iters);
    for i in 0..iters {
        out.clear();
        let t = Instant::now();
        let _ = r.frame(
            i as u64,
            Link(1 + (i as u64 / 2 % 8)),
            &frames[i % 2],
            &mut out,
        );
        std::hint::black_box(&out);
        times.push(t.elapsed().as_nanos() as u64);
    }
    assert_eq!(out.sends.len(), 7);
    times.sort_unstable();
    let mean = times.iter().sum::<u64>() as f64 / iters as f64;
    println!("\n## 2. Relay microbenchmark: Router::frame on a hub with 8 links");
    println!(
        "{iters} note frames, each decoded, tracked, re-stamped and queued for 7 links + local: \
         mean {:.0} ns, p50 {} ns, p99 {} ns, max {} ns",
        mean,
        pct(&times, 50.0),
        pct(&times, 99.0),
        pct(&times, 100.0)
    );
    let t = Instant::now();
    let mut n = 0usize;
    for i in 0..iters {
        let f = frame::FrameRef::decode(&frames[i % 2]).expect("decodes");
        n += f.messages().count();
        std::hint::black_box(frame::encode_with_body(&f.header, f.body()));
    }
    println!(
        "codec alone (decode + re-encode one note frame): {:.0} ns ({n} messages)",
        t.elapsed().as_nanos() as f64 / iters as f64
    );
}

// ------------------------------------------------------------ 4. stalls

fn stalls(host_rt: &Runtime, peers_rt: &Runtime, hosted: &mut Hosted) {
    let runs = env_or("MIDI_BENCH_STALLS", 10);
    let (base, code) = (hosted.base.clone(), hosted.code.clone());
    let (a, b) = peers_rt.block_on(async {
        let a = MidiPeer::join(&base, &code, "stall-a")
            .await
            .expect("a joins");
        let b = MidiPeer::join(&base, &code, "stall-b")
            .await
            .expect("b joins");
        (a, b)
    });
    let ids = ids_of(
        &mut hosted.events,
        &[a.machine_id.clone(), b.machine_id.clone()],
    );
    let mut peers = vec![a, b];
    peers_rt.block_on(until_routed(&hosted.ctl, &mut peers));
    let mut b = peers.pop().expect("b");
    let a = peers.pop().expect("a");
    let before = hosted.ctl.midi_stats().keepalive_stalls;
    let a_id = ids[0].0;
    let times: Vec<u64> = peers_rt.block_on(async {
        let mut times = Vec::new();
        for i in 0..runs {
            let key = 40 + (i % 40) as u8;
            let t = jam::midi::wall_us();
            let on = MidiMessage::NoteOn {
                channel: 0,
                key,
                velocity: 100,
            };
            a.sender()
                .play_flagged(flags::KEEPALIVE, &[on])
                .await
                .expect("a plays");
            let released = b
                .frame_where(Duration::from_secs(5), |f| {
                    f.header.origin == a_id && f.header.flags & flags::RELEASE != 0
                })
                .await;
            let Some(f) = released else {
                println!("(run {i}: no release within 5 s)");
                continue;
            };
            assert_eq!(f.messages, vec![MidiMessage::note_off(0, key)]);
            times.push(jam::midi::wall_us().saturating_sub(t));
        }
        drop((a, b));
        times
    });
    let stalled = hosted.ctl.midi_stats().keepalive_stalls - before;
    let mut t = times;
    t.sort_unstable();
    println!(
        "\n## 4. Stall release: a joiner that promised keep-alives goes silent holding a note"
    );
    println!(
        "{}/{runs} released ({stalled} stalls counted by the host), from its last frame to the \
         other joiner's release: min {}  p50 {}  max {}  (the promise: a frame every 250 ms; \
         a stall: 1 s of silence; the host checks every 100 ms)",
        t.len(),
        ms(pct(&t, 0.0)),
        ms(pct(&t, 50.0)),
        ms(pct(&t, 100.0)),
    );
    // Settles between the benchmark's parts (pacing, not a wait for a result).
    host_rt.block_on(async { tokio::time::sleep(Duration::from_millis(300)).await });
}

// ------------------------------------------------------------ 3. throughput

fn throughput(host_rt: &Runtime, peers_rt: &Runtime, hosted: &mut Hosted) {
    let rates: Vec<usize> = std::env::var("MIDI_BENCH_RATES")
        .unwrap_or_else(|_| "250,500,1000,2000,4000,8000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let secs = env_or("MIDI_BENCH_SECS", 3) as u64;
    let (base, code) = (hosted.base.clone(), hosted.code.clone());
    let peers: Vec<MidiPeer> = peers_rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..8 {
            v.push(
                MidiPeer::join(&base, &code, &format!("p{i}"))
                    .await
                    .expect("joins"),
            );
        }
        v
    });
    let machine_ids: Vec<String> = peers.iter().map(|p| p.machine_id.clone()).collect();
    let ids = ids_of(&mut hosted.events, &machine_ids);
    let mut peers = peers;
    peers_rt.block_on(until_routed(&hosted.ctl, &mut peers));
    println!("\n## 3. Throughput: 8 joiners playing at once, each note to the 7 others");
    println!(
        "{:>10} {:>12} {:>14} {:>10} {:>10} {:>10} {:>10}",
        "rate/peer", "notes in/s", "deliveries/s", "lost", "p50", "p99", "max"
    );
    let senders: Vec<_> = peers.iter().map(MidiPeer::sender).collect();
    let own: Vec<u64> = ids.iter().map(|p| p.0).collect();
    let mut peers: Vec<Option<MidiPeer>> = peers.into_iter().map(Some).collect();
    for rate in rates {
        let stalled_before = hosted.ctl.midi_stats().stalled;
        let sent = Arc::new(AtomicU64::new(0));
        let (delivered, lat, elapsed) = peers_rt.block_on(async {
            let stop_at = tokio::time::Instant::now() + Duration::from_secs(secs);
            let started = Instant::now();
            let mut receivers = Vec::new();
            let mut tasks = Vec::new();
            for (i, slot) in peers.iter_mut().enumerate() {
                // Each receiver takes everything from the others until
                // quiet, then hands its peer back.
                let Some(mut peer) = slot.take() else {
                    continue;
                };
                let me = own[i];
                receivers.push(tokio::spawn(async move {
                    let mut lat = Vec::new();
                    while let Some((f, at)) = peer.next_frame(Duration::from_millis(1500)).await {
                        if f.header.origin != 0 && f.header.origin != me {
                            lat.push(at.saturating_sub(f.header.time_us));
                        }
                    }
                    (lat, peer)
                }));
                let sent = sent.clone();
                let ch = senders[i].clone();
                tasks.push(tokio::spawn(async move {
                    // `per_tick` notes every `period`: `rate` notes a second.
                    let per_tick = rate.div_ceil(1000).max(1);
                    let period = Duration::from_micros((1_000_000 * per_tick / rate.max(1)) as u64);
                    let mut tick = tokio::time::interval(period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                    let mut n = 0;
                    while tokio::time::Instant::now() < stop_at {
                        tick.tick().await;
                        for _ in 0..per_tick {
                            if ch.play(&[note(n)]).await.is_err() {
                                return;
                            }
                            sent.fetch_add(1, Ordering::Relaxed);
                            n += 1;
                        }
                    }
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            let elapsed = started.elapsed();
            let mut all = Vec::new();
            for (slot, r) in peers.iter_mut().zip(receivers) {
                if let Ok((lat, peer)) = r.await {
                    all.extend(lat);
                    *slot = Some(peer);
                }
            }
            (all.len() as u64, all, elapsed)
        });
        let sent = sent.load(Ordering::Relaxed);
        let expected = sent * 7;
        let lost = expected.saturating_sub(delivered);
        let mut l = lat;
        l.sort_unstable();
        let stalled = hosted.ctl.midi_stats().stalled - stalled_before;
        println!(
            "{:>10} {:>12.0} {:>14.0} {:>10} {:>10} {:>10} {:>10}{}",
            rate,
            sent as f64 / elapsed.as_secs_f64(),
            delivered as f64 / elapsed.as_secs_f64(),
            lost,
            ms(pct(&l, 50.0)),
            ms(pct(&l, 99.0)),
            ms(pct(&l, 100.0)),
            if stalled > 0 {
                format!("  ({stalled} peers kicked as stalled)")
            } else {
                String::new()
            }
        );
        if lost > 0 || stalled > 0 {
            println!("(stopping: the jam did not sustain {rate} notes/s per peer)");
            break;
        }
    }
    let stats = hosted.ctl.midi_stats();
    println!(
        "host relay in place over the whole run: {} frames, mean {:.2} µs, max {:.2} µs, {} over \
         50 µs",
        stats.frames_in,
        stats.relay_ns_mean() as f64 / 1000.0,
        stats.relay_ns_max as f64 / 1000.0,
        stats.relay_slow
    );
    println!(
        "  by histogram bucket: p50 <= {} µs, p99 <= {} µs; buckets: {:?}",
        stats.relay_percentile_us(50.0).unwrap_or(0),
        stats.relay_percentile_us(99.0).unwrap_or(0),
        stats.relay_histogram
    );
    peers_rt.block_on(async move { drop(peers) });
    // Settles between the benchmark's parts (pacing, not a wait for a result).
    host_rt.block_on(async { tokio::time::sleep(Duration::from_millis(300)).await });
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let host_rt = runtime();
    let peers_rt = runtime();
    let mut hosted = host_rt.block_on(start_host());
    println!("# Live MIDI through the jam host (webrtc-rs joiners, loopback, release build)");
    latency(&host_rt, &peers_rt, &mut hosted);
    micro();
    throughput(&host_rt, &peers_rt, &mut hosted);
    stalls(&host_rt, &peers_rt, &mut hosted);
    host_rt.block_on(hosted.host.stop());
    let _ = hosted.ctl;
}
