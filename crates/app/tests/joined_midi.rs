//! This computer's MIDI ports in a jam it joined, end to end: two apps'
//! engines (each with its own in-memory keyboard and synth) on loopback,
//! the second joining the first over real WebRTC, as the Join view does.

mod common;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use app::joined_midi::{JoinedMidi, WallClock};
use app::session::Jam;
use app::settings::Settings;
use common::{free_port, options, releases, until, wait_midi_relayed, wait_view, LOOPBACK};
use midi::memory::{MemoryInput, MemoryMidi, MemoryOutput};
use midi::MidiMessage;

/// One musician's computer: the app's engine with a keyboard and a synth.
struct Musician {
    jam: Jam,
    keys: MemoryInput,
    synth: MemoryOutput,
}

fn musician(name: &str) -> Musician {
    let system = MemoryMidi::new();
    let keys = system.add_input("Keys");
    let synth = system.add_output("Synth");
    let settings = Settings {
        listen_port: free_port(),
        advertise: false,
        display_name: name.into(),
        midi_input: "Keys".into(),
        midi_output: "Synth".into(),
        ..Settings::default()
    };
    let jam = Jam::start_with_midi(settings, options(), Arc::new(system));
    Musician { jam, keys, synth }
}

fn msg(bytes: &[u8]) -> MidiMessage {
    MidiMessage::read(bytes).unwrap().0
}

/// Waits until `synth` got `m`.
async fn hears(synth: &MemoryOutput, m: &MidiMessage, what: &str) {
    until(
        what,
        Duration::from_secs(10),
        || synth.received().contains(m),
        || format!("the synth got {:?}", synth.received()),
    )
    .await;
}

/// Waits until `synth` got a release of `key` (channel 1).
async fn released(synth: &MemoryOutput, key: u8, limit: Duration, what: &str) {
    until(
        what,
        limit,
        || synth.received().iter().any(|m| releases(m, key)),
        || format!("{:?}", synth.received()),
    )
    .await;
}

/// `bea` joins `ana`'s jam and connects her ports to it, as the app's Join
/// view does. Returns once the `midi` channel is open.
async fn join(ana: &Musician, bea: &Musician) -> (jam::joiner::Joiner, JoinedMidi) {
    join_with(ana, bea, JoinedMidi::start).await
}

/// [`join`] with the bridge started by `start`.
async fn join_with(
    ana: &Musician,
    bea: &Musician,
    start: impl FnOnce(&jam::joiner::Joiner) -> JoinedMidi,
) -> (jam::joiner::Joiner, JoinedMidi) {
    let v = wait_view(&ana.jam, "Ana's code", |v| v.code.is_some()).await;
    wait_view(&bea.jam, "Bea's own jam", |v| v.code.is_some()).await;
    let mut cfg =
        jam::joiner::JoinConfig::new(v.urls[0].parse().expect("url"), v.code.clone(), "Bea");
    cfg.rtc.bind_ips = vec![LOOPBACK];
    let (joiner, _events) = jam::joiner::Joiner::start(cfg);
    let midi = start(&joiner);
    bea.jam.route_ports(Some(midi.ports())).await;
    joiner.joined().await.expect("joined Ana's jam");
    until(
        "a midi channel",
        Duration::from_secs(10),
        || joiner.midi_open(),
        String::new,
    )
    .await;
    // Bea's side is open; Ana's host routes her a moment later.
    wait_midi_relayed(&ana.jam, &joiner).await;
    (joiner, midi)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_jam_hears_this_keyboard_and_sounds_on_this_synth_and_leaving_releases_both() {
    let ana = musician("Ana");
    let bea = musician("Bea");
    let (joiner, midi) = join(&ana, &bea).await;
    let v = bea.jam.view();
    assert!(
        v.notices
            .iter()
            .any(|n| n.message.contains("play in the jam you joined")),
        "{:?}",
        v.notices
    );

    // Bea plays C: Ana's synth sounds it. Ana plays E: Bea's synth does.
    let c = msg(&[0x90, 60, 100]);
    assert!(bea.keys.play(0, &c.to_vec()));
    hears(&ana.synth, &c, "Bea's C on Ana's synth").await;
    let e = msg(&[0x90, 64, 90]);
    assert!(ana.keys.play(0, &e.to_vec()));
    hears(&bea.synth, &e, "Ana's E on Bea's synth").await;
    // Bea's own keyboard is not echoed back to her.
    assert!(!bea.synth.received().contains(&c));

    // Bea leaves with both notes held: her synth releases Ana's E (her own
    // router), and Ana's synth gets the Note Off of Bea's C.
    let ports = midi.ports();
    midi.close().await;
    bea.jam.return_ports(ports).await;
    joiner.leave().await;
    let secs = Duration::from_secs;
    released(&bea.synth, 64, secs(5), "Bea's synth releases E").await;
    released(&ana.synth, 60, secs(10), "Ana's synth releases C").await;
    ana.jam.stop().await;
    bea.jam.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_joined_host_drops_us_this_synth_releases_what_it_heard_and_the_ports_come_back() {
    let ana = musician("Ana");
    let bea = musician("Bea");
    let (joiner, midi) = join(&ana, &bea).await;
    // Ana holds a chord with the pedal down; Bea hears it.
    for m in [[0x90, 60, 100], [0x90, 64, 100], [0xB0, 64, 127]] {
        assert!(ana.keys.play(0, &m));
    }
    hears(
        &bea.synth,
        &msg(&[0xB0, 64, 127]),
        "Ana's pedal on Bea's synth",
    )
    .await;

    // Ana's host removes Bea: nothing tells Bea's synth to stop but Bea's
    // own router, which releases every note and the pedal it heard.
    let bea_id = ana
        .jam
        .view()
        .peers
        .iter()
        .find(|p| p.display_name.as_deref() == Some("Bea"))
        .expect("Bea in Ana's list")
        .id
        .0;
    let before = bea.synth.received().len();
    ana.jam.kick(bea_id).await;
    let ended = midi.ended();
    tokio::time::timeout(Duration::from_secs(10), ended)
        .await
        .expect("the bridge sees the jam end");
    let after: Vec<MidiMessage> = bea.synth.received()[before..].to_vec();
    for key in [60, 64] {
        assert!(
            after.iter().any(|m| releases(m, key)),
            "key {key} not released: {after:?}"
        );
    }
    assert!(
        after.contains(&msg(&[0xB0, 64, 0])),
        "pedal not released: {after:?}"
    );

    // The ports go back to Bea's own jam (what the app does on `ended`).
    bea.jam.return_ports(midi.ports()).await;
    let v = wait_view(&bea.jam, "ports back", |v| {
        v.notices
            .iter()
            .any(|n| n.message.contains("back in your own jam"))
    })
    .await;
    assert_eq!(v.phase, app::session::Phase::Hosting);
    midi.close().await;
    joiner.leave().await;
    ana.jam.stop().await;
    bea.jam.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panic_while_joined_silences_this_synth_and_releases_our_notes_in_the_jam() {
    let ana = musician("Ana");
    let bea = musician("Bea");
    let (joiner, midi) = join(&ana, &bea).await;
    assert!(ana.keys.play(0, &[0x90, 48, 100]));
    assert!(bea.keys.play(0, &[0x90, 72, 100]));
    hears(
        &bea.synth,
        &msg(&[0x90, 48, 100]),
        "Ana's note on Bea's synth",
    )
    .await;
    hears(
        &ana.synth,
        &msg(&[0x90, 72, 100]),
        "Bea's note on Ana's synth",
    )
    .await;

    bea.jam.panic().await;
    // Bea's synth: Ana's note released and All Notes Off on every channel.
    until(
        "Bea's synth silenced",
        Duration::from_secs(5),
        || {
            bea.synth.received().iter().any(|m| releases(m, 48))
                && bea.synth.received().contains(&msg(&[0xB0, 123, 0]))
        },
        || format!("{:?}", bea.synth.received()),
    )
    .await;
    // Ana's synth: the note Bea's keyboard held is released there too.
    released(
        &ana.synth,
        72,
        Duration::from_secs(5),
        "Ana's synth releases it",
    )
    .await;
    midi.close().await;
    joiner.leave().await;
    ana.jam.stop().await;
    bea.jam.stop().await;
}

/// A host whose machine freezes says nothing; ICE would notice after ~5 s.
/// Our host promises keep-alives, so the bridge takes a second of silence
/// for a stall and releases what it heard from it. The host runs on a
/// runtime of its own with one worker, which the test then blocks: the
/// whole host (engine, WebRTC, timers) stops, as a frozen machine would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_host_is_taken_for_stalled_and_what_it_played_is_released_here_in_about_a_second()
{
    let ana_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let ana = {
        let _in = ana_rt.enter();
        musician("Ana")
    };
    let bea = musician("Bea");
    let (joiner, midi) = join(&ana, &bea).await;
    assert!(ana.keys.play(0, &[0x90, 60, 100]));
    hears(
        &bea.synth,
        &msg(&[0x90, 60, 100]),
        "Ana's note on Bea's synth",
    )
    .await;
    // Held for well over a second: the host's keep-alives keep it sounding.
    // (A negative check: nothing may be released within that time.)
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !bea.synth.received().iter().any(|m| releases(m, 60)),
        "released while the host was alive: {:?}",
        bea.synth.received()
    );

    let frozen = Instant::now();
    ana_rt.spawn(async { std::thread::sleep(Duration::from_secs(4)) });
    released(
        &bea.synth,
        60,
        Duration::from_millis(3000),
        "released after the host froze",
    )
    .await;
    eprintln!("released {:?} after the host froze", frozen.elapsed());
    midi.close().await;
    joiner.leave().await;
    bea.jam.stop().await;
    // Ana's runtime comes back after its 4 s freeze and stops cleanly.
    ana.jam.stop().await;
    ana_rt.shutdown_background();
}

/// NTP stepping the wall clock is not silence: while a host that promised
/// keep-alives holds a note (and keeps sending them), the clock jumping a
/// minute forward, or an hour back, releases nothing here, and the jam
/// goes on. The bridge's stall timer must run on a monotonic clock, as the
/// host's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wall_clock_step_does_not_release_what_the_host_holds() {
    let ana = musician("Ana");
    let bea = musician("Bea");
    let step_us = Arc::new(AtomicI64::new(0));
    let step = step_us.clone();
    let wall: WallClock =
        Arc::new(move || midi::wall_us().saturating_add_signed(step.load(Ordering::Relaxed)));
    let (joiner, midi) =
        join_with(&ana, &bea, |j| JoinedMidi::start_with_wall_clock(j, wall)).await;
    assert!(ana.keys.play(0, &[0x90, 60, 100]));
    hears(
        &bea.synth,
        &msg(&[0x90, 60, 100]),
        "Ana's note on Bea's synth",
    )
    .await;

    for (offset_us, what) in [
        (60_000_000, "a minute forward"),
        (-3_600_000_000, "an hour back"),
    ] {
        step_us.store(offset_us, Ordering::Relaxed);
        // A negative check: nothing may be released for longer than the
        // 1 s stall time, so a fixed wait is the point.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !bea.synth.received().iter().any(|m| releases(m, 60)),
            "the wall clock stepping {what} released the note Ana holds: {:?}",
            bea.synth.received()
        );
    }
    // Still routed: Ana's next note sounds here too.
    assert!(ana.keys.play(0, &[0x90, 62, 100]));
    hears(
        &bea.synth,
        &msg(&[0x90, 62, 100]),
        "Ana's next note on Bea's synth",
    )
    .await;
    midi.close().await;
    joiner.leave().await;
    ana.jam.stop().await;
    bea.jam.stop().await;
}
