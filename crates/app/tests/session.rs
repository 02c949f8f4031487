//! The running jam as the window sees it: real servers on loopback ports.

mod common;

use std::time::Duration;

use app::session::{Jam, JamView, Level, Phase};
use app::settings::Settings;
use common::{free_port, options, releases, until, wait_midi_relayed, wait_view, LOOPBACK};
use rdv::{Config, Rendezvous, RunningServer};

fn settings(port: u16) -> Settings {
    Settings {
        listen_port: port,
        // Never on a real interface from a test.
        advertise: false,
        ..Settings::default()
    }
}

async fn code_exists(base: &str, code: &str) -> bool {
    let r = reqwest::get(format!("{base}/code/{code}")).await.unwrap();
    r.status() == 200
}

#[tokio::test]
async fn hosting_starts_with_a_code_on_the_configured_port() {
    let port = free_port();
    let jam = Jam::start(settings(port), options());
    let v = wait_view(&jam, "a code", |v| v.code.is_some()).await;
    assert_eq!(v.phase, Phase::Hosting);
    assert_eq!(v.port, Some(port));
    assert!(v.bundled);
    assert_eq!(v.urls, vec![format!("http://127.0.0.1:{port}")]);
    let code = v.code.unwrap();
    assert!(code_exists(&v.urls[0], &code).await);
    assert!(v.qr_svg.unwrap().contains("<svg"));
    jam.stop().await;
    // Stopped: the port is free again.
    assert!(std::net::TcpListener::bind((LOOPBACK, port)).is_ok());
}

#[tokio::test]
async fn a_busy_port_moves_to_the_next_free_one_and_says_so() {
    let holder = std::net::TcpListener::bind((LOOPBACK, 0)).unwrap();
    let busy = holder.local_addr().unwrap().port();
    let jam = Jam::start(settings(busy), options());
    let v = wait_view(&jam, "a code", |v| v.code.is_some()).await;
    let port = v.port.unwrap();
    assert!(port > busy, "{port} after busy {busy}");
    let n = v
        .notices
        .iter()
        .find(|n| n.level == Level::Warning)
        .expect("a notice");
    assert!(
        n.message.contains(&busy.to_string()) && n.message.contains(&port.to_string()),
        "{}",
        n.message
    );
    jam.stop().await;
}

#[tokio::test]
async fn switching_the_rendezvous_url_moves_the_jam_without_a_restart() {
    let remote = RunningServer::start((LOOPBACK, 0).into(), Rendezvous::new(Config::default()))
        .await
        .unwrap();
    let remote_url = format!("http://{}", remote.addr);
    let port = free_port();
    let jam = Jam::start(settings(port), options());
    let first = wait_view(&jam, "a code", |v| v.code.is_some()).await;
    let first_code = first.code.clone().unwrap();

    let mut moved = settings(port);
    moved.rendezvous_url = remote_url.clone();
    jam.apply(moved.clone()).await;
    let v = wait_view(&jam, "hosting at the remote", |v| {
        !v.bundled && v.code.is_some() && v.phase == Phase::Hosting
    })
    .await;
    assert_eq!(v.urls, vec![remote_url.clone()]);
    assert_eq!(v.port, None, "the bundled rendezvous stopped");
    assert!(code_exists(&remote_url, v.code.as_ref().unwrap()).await);
    // The bundled one is gone, so its old code with it.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/code/{first_code}"))
            .await
            .is_err()
    );

    // And back to the bundled one.
    jam.apply(settings(port)).await;
    let back = wait_view(&jam, "bundled again", |v| {
        v.bundled && v.code.is_some() && v.phase == Phase::Hosting
    })
    .await;
    assert_eq!(back.port, Some(port));
    jam.stop().await;
    remote.stop().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_remote_rendezvous_fails_with_a_reason_and_is_retried() {
    let dead = free_port();
    let mut s = settings(free_port());
    s.rendezvous_url = format!("http://127.0.0.1:{dead}");
    let jam = Jam::start(s, options());
    let v = wait_view(&jam, "the failure", |v| v.phase == Phase::Failed).await;
    let n = v.notices.last().expect("a notice");
    assert_eq!(n.level, Level::Error);
    assert!(n.message.contains(&dead.to_string()), "{}", n.message);
    // The rendezvous comes up on that port: the retry (every 5 s) hosts.
    let server = RunningServer::start((LOOPBACK, dead).into(), Rendezvous::new(Config::default()))
        .await
        .unwrap();
    let mut rx = jam.subscribe();
    let hosted = tokio::time::timeout(Duration::from_secs(12), async {
        loop {
            if rx.borrow_and_update().phase == Phase::Hosting {
                return;
            }
            rx.changed().await.unwrap();
        }
    })
    .await;
    assert!(hosted.is_ok(), "not retried: {:?}", jam.view());
    jam.stop().await;
    server.stop().await.unwrap();
}

/// This computer's MIDI ports in a jam, end to end: an in-memory keyboard
/// and synth on the host, a real joiner (`jam::joiner`, with the `midi`
/// channel) over loopback WebRTC.
#[tokio::test]
async fn the_chosen_midi_ports_play_to_peers_and_sound_what_peers_play() {
    use midi::frame::{encode, FrameHeader};
    use midi::memory::MemoryMidi;
    use midi::MidiMessage;

    let system = MemoryMidi::new();
    let keyboard = system.add_input("Keys In");
    let synth = system.add_output("Synth Out");
    let mut s = settings(free_port());
    s.midi_input = "Keys In".into();
    s.midi_output = "Synth Out".into();
    let jam = Jam::start_with_midi(s, options(), std::sync::Arc::new(system.clone()));
    let v = wait_view(&jam, "a code", |v| v.code.is_some()).await;
    assert!(
        v.notices.iter().all(|n| n.level != Level::Warning),
        "{:?}",
        v.notices
    );

    // A DAW on this computer uses the app's own virtual ports.
    use midi::ports::MidiSystem as _;
    let find = |list: Vec<midi::ports::PortInfo>, name: &str| {
        list.into_iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no port {name}"))
    };
    let jam_out = find(system.inputs().unwrap(), app::local_midi::VIRTUAL_OUT);
    let jam_in = find(system.outputs().unwrap(), app::local_midi::VIRTUAL_IN);
    let (daw_cb, daw_heard) = midi::ports::input_queue(64);
    let _daw_listen = system.open_input(&jam_out.id, daw_cb).unwrap();
    let mut daw_play = system.open_output(&jam_in.id).unwrap();

    let mut cfg =
        jam::joiner::JoinConfig::new(v.urls[0].parse().expect("url"), v.code.clone(), "Remote");
    cfg.rtc.bind_ips = vec![LOOPBACK];
    cfg.midi = jam::joiner::MidiChannel::InOffer;
    let (joiner, _events) = jam::joiner::Joiner::join(cfg).await.expect("joined");
    let mut heard = joiner.take_midi_receiver().expect("midi receiver");
    let t = std::time::Instant::now();
    while !joiner.midi_open() {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "midi channel never opened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The joiner's side is open; the host routes it a moment later.
    wait_midi_relayed(&jam, &joiner).await;

    // The keyboard plays middle C: the joiner hears it.
    assert!(keyboard.play(0, &[0x90, 60, 100]));
    let f = next_played(&mut heard, "the joiner hears the keyboard").await;
    assert_eq!(
        f.messages,
        vec![MidiMessage::read(&[0x90, 60, 100]).unwrap().0]
    );

    // The joiner plays E: the synth sounds it.
    let e = MidiMessage::read(&[0x90, 64, 90]).unwrap().0;
    let bytes = encode(
        &FrameHeader {
            flags: 0,
            origin: 0,
            time_us: midi::wall_us(),
        },
        std::slice::from_ref(&e),
    )
    .unwrap();
    joiner.send_midi(bytes.into()).await.unwrap();
    let t = std::time::Instant::now();
    while !synth.received().contains(&e) {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "synth got {:?}",
            synth.received()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The DAW hears E through the app's virtual output, and what it plays
    // into the app's virtual input reaches the joiner.
    let ev = daw_heard
        .events
        .recv_timeout(Duration::from_secs(5))
        .expect("the DAW hears the joiner");
    assert_eq!(ev.message, e);
    let g = MidiMessage::read(&[0x90, 67, 80]).unwrap().0;
    daw_play.send(&g).unwrap();
    let f = next_played(&mut heard, "the joiner hears the DAW").await;
    assert_eq!(f.messages, vec![g]);

    // The joiner leaves holding E: the synth gets its note-off.
    joiner.leave().await;
    let t = std::time::Instant::now();
    while !synth
        .received()
        .iter()
        .any(|m| m.is_note_off() || m.to_vec() == vec![0x90, 64, 0])
    {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "no release: {:?}",
            synth.received()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    jam.stop().await;
}

#[tokio::test]
async fn a_midi_port_that_is_not_there_is_a_notice_and_the_jam_goes_on() {
    let system = midi::memory::MemoryMidi::new();
    let mut s = settings(free_port());
    s.midi_output = "Gone Synth".into();
    let jam = Jam::start_with_midi(s, options(), std::sync::Arc::new(system));
    let v = wait_view(&jam, "hosting with a notice", |v| {
        v.code.is_some() && !v.notices.is_empty()
    })
    .await;
    assert!(
        v.notices.iter().any(|n| n.message.contains("Gone Synth")),
        "{:?}",
        v.notices
    );
    assert_eq!(v.phase, Phase::Hosting);
    jam.stop().await;
    let unavailable = midi::memory::MemoryMidi::unavailable("no ALSA");
    let mut s = settings(free_port());
    s.midi_input = "Keys".into();
    let jam = Jam::start_with_midi(s, options(), std::sync::Arc::new(unavailable));
    let v = wait_view(&jam, "the no-MIDI notice", |v| !v.notices.is_empty()).await;
    assert!(
        v.notices[0].message.starts_with("No MIDI system found"),
        "{:?}",
        v.notices
    );
    jam.stop().await;
}

/// The next frame that plays something (keep-alives, empty frames the
/// host sends while we hold its notes, are skipped).
async fn next_played(
    heard: &mut tokio::sync::mpsc::Receiver<bytes::Bytes>,
    what: &str,
) -> midi::frame::Frame {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let data = heard.recv().await.expect("midi channel open");
            let f = midi::frame::Frame::decode(&data).unwrap();
            if !f.messages.is_empty() {
                return f;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A joiner with the `midi` channel open on `jam` (whose view is `v`),
/// relayed by its host.
async fn midi_joiner(jam: &Jam, v: &JamView) -> jam::joiner::Joiner {
    let mut cfg =
        jam::joiner::JoinConfig::new(v.urls[0].parse().expect("url"), v.code.clone(), "Remote");
    cfg.rtc.bind_ips = vec![LOOPBACK];
    let (joiner, _events) = jam::joiner::Joiner::join(cfg).await.expect("joined");
    until(
        "the midi channel opens",
        Duration::from_secs(10),
        || joiner.midi_open(),
        String::new,
    )
    .await;
    // As above: the host routes the channel a moment after the joiner
    // sees it open.
    wait_midi_relayed(jam, &joiner).await;
    joiner
}

/// A frame of `messages` as a joiner sends it.
fn frame_of(messages: &[&[u8]]) -> bytes::Bytes {
    let messages: Vec<midi::MidiMessage> = messages
        .iter()
        .map(|m| midi::MidiMessage::read(m).unwrap().0)
        .collect();
    let header = midi::frame::FrameHeader {
        flags: 0,
        origin: 0,
        time_us: midi::wall_us(),
    };
    midi::frame::encode(&header, &messages).unwrap().into()
}

#[tokio::test]
async fn an_unplugged_keyboard_and_synth_are_used_again_when_plugged_back_in() {
    use midi::memory::MemoryMidi;

    let system = MemoryMidi::new();
    let keyboard = system.add_input("Keys In");
    let synth = system.add_output("Synth Out");
    let mut s = settings(free_port());
    s.midi_input = "Keys In".into();
    s.midi_output = "Synth Out".into();
    let jam = Jam::start_with_midi(s, options(), std::sync::Arc::new(system.clone()));
    let v = wait_view(&jam, "a code", |v| v.code.is_some()).await;
    let joiner = midi_joiner(&jam, &v).await;
    let mut heard = joiner.take_midi_receiver().unwrap();
    assert!(keyboard.is_open());

    // Both cables are pulled: the status line says so, and the jam goes on.
    system.remove(&keyboard.info().id);
    system.remove(&synth.info().id);
    wait_view(&jam, "the unplugged notices", |v| {
        v.notices
            .iter()
            .any(|n| n.message.contains("\"Keys In\" was unplugged"))
            && v.notices
                .iter()
                .any(|n| n.message.contains("\"Synth Out\" was unplugged"))
    })
    .await;

    // Plugged back in (the OS gives them new ids): used again without
    // touching the settings.
    let keyboard = system.add_input("Keys In");
    let synth = system.add_output("Synth Out");
    wait_view(&jam, "the plugged-in notices", |v| {
        v.notices
            .iter()
            .any(|n| n.message.contains("\"Keys In\" is connected"))
            && v.notices
                .iter()
                .any(|n| n.message.contains("\"Synth Out\" is connected"))
    })
    .await;
    assert!(keyboard.is_open());
    assert!(keyboard.play(0, &[0x90, 62, 100]));
    let f = next_played(&mut heard, "the joiner hears the replugged keyboard").await;
    assert_eq!(f.messages[0].to_vec(), vec![0x90, 62, 100]);
    joiner
        .send_midi(frame_of(&[&[0x90, 65, 90]]))
        .await
        .unwrap();
    until(
        "the replugged synth sounds the joiner",
        Duration::from_secs(10),
        || {
            synth
                .received()
                .iter()
                .any(|m| m.to_vec() == vec![0x90, 65, 90])
        },
        || format!("{:?}", synth.received()),
    )
    .await;
    joiner.leave().await;
    jam.stop().await;
}

#[tokio::test]
async fn stopping_the_jam_releases_what_peers_left_sounding_on_the_synth() {
    use midi::memory::MemoryMidi;

    let system = MemoryMidi::new();
    let synth = system.add_output("Synth Out");
    let mut s = settings(free_port());
    s.midi_output = "Synth Out".into();
    let jam = Jam::start_with_midi(s, options(), std::sync::Arc::new(system.clone()));
    let v = wait_view(&jam, "a code", |v| v.code.is_some()).await;
    let joiner = midi_joiner(&jam, &v).await;
    // The joiner holds a chord with the pedal down.
    joiner
        .send_midi(frame_of(&[
            &[0x90, 60, 100],
            &[0x90, 67, 100],
            &[0xB0, 64, 127],
        ]))
        .await
        .unwrap();
    until(
        "the synth sounds the chord",
        Duration::from_secs(10),
        || synth.received().len() >= 3,
        || format!("{:?}", synth.received()),
    )
    .await;

    // The app quits while it sounds: the synth gets every release before
    // its port closes.
    jam.stop().await;
    let got = synth.received();
    for key in [60u8, 67] {
        assert!(
            got.iter().any(|m| releases(m, key)),
            "key {key} still sounding: {got:?}"
        );
    }
    assert!(
        got.iter().any(|m| m.to_vec() == vec![0xB0, 64, 0]),
        "pedal still down: {got:?}"
    );
    joiner.leave().await;
}

/// `n` webrtc-rs joiners on `v`'s jam, joining at once; each result in order.
async fn join_many(
    v: &JamView,
    n: usize,
) -> Vec<Result<jam::joiner::Joiner, jam::joiner::JoinError>> {
    let joins = (0..n).map(|k| {
        let mut cfg = jam::joiner::JoinConfig::new(
            v.urls[0].parse().expect("url"),
            v.code.clone(),
            format!("Player {k}"),
        );
        cfg.rtc.bind_ips = vec![LOOPBACK];
        cfg.midi = jam::joiner::MidiChannel::Off;
        async move { jam::joiner::Joiner::join(cfg).await.map(|(j, _)| j) }
    });
    let mut out = Vec::new();
    for h in joins.map(tokio::spawn).collect::<Vec<_>>() {
        out.push(h.await.expect("join task"));
    }
    out
}

/// The issue-12 bug: the bundled rendezvous kept its own default cap of 8
/// joiners, so a jam set to take 10 refused the ninth with "session is full
/// (8 peers)".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jam_of_ten_takes_ten_joiners() {
    let mut s = settings(free_port());
    s.max_peers = 10;
    let jam = Jam::start(s, options());
    let v = wait_view(&jam, "a code", |v| v.code.is_some()).await;
    let joined = join_many(&v, 10).await;
    let refused: Vec<String> = joined
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(refused.is_empty(), "refused: {refused:?}");
    let v = wait_view(&jam, "ten connected", |v| v.connected() == 10).await;
    assert_eq!(v.max_peers, 10);
    for j in joined.into_iter().flatten() {
        j.leave().await;
    }
    jam.stop().await;
}

/// The issue-12 bug "saving a new STUN/TURN list, gathering cap or peer
/// limit restarts the jam (everyone dropped)": these apply live,
/// so the code and the peer in stay, and the new limit takes a newcomer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saving_a_peer_limit_stun_list_and_gathering_cap_keeps_the_code_and_the_peer() {
    let mut s = settings(free_port());
    s.max_peers = 1;
    let jam = Jam::start(s.clone(), options());
    let v = wait_view(&jam, "a code", |v| v.code.is_some()).await;
    let code = v.code.clone();
    let mut joined = join_many(&v, 1).await;
    let first = joined.pop().unwrap().expect("the first joins");
    let v = wait_view(&jam, "one connected", |v| v.connected() == 1).await;
    let first_id = v.peers[0].id;

    s.max_peers = 2;
    s.gather_timeout_ms = 700;
    // A STUN server on loopback that nobody runs (never a real one here).
    s.ice_servers = vec![app::settings::IceRow {
        url: "stun:127.0.0.1:9".into(),
        ..Default::default()
    }];
    jam.apply(s).await;
    let v = jam.view();
    assert_eq!(v.code, code, "the code changed");
    assert_eq!(v.max_peers, 2);
    assert!(
        v.peers.iter().any(|p| p.id == first_id),
        "the peer was dropped: {:?}",
        v.peers
    );
    let mut more = join_many(&v, 1).await;
    let second = more.pop().unwrap().expect("the second joins");
    let v = wait_view(&jam, "two connected", |v| v.connected() == 2).await;
    assert_eq!(v.code, code);
    second.leave().await;
    first.leave().await;
    jam.stop().await;
}
