//! What the app's engine tests share: loopback-only options, free ports,
//! and waiting for a view or a condition with a bound.

#![allow(dead_code)] // each test file uses its own subset

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use app::session::{Jam, JamOptions, JamView};
use midi::MidiMessage;

pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// The jam on loopback only: never a real interface from a test.
pub fn options() -> JamOptions {
    JamOptions {
        bind_ip: LOOPBACK,
        ice_bind: vec![LOOPBACK],
        resolve_mdns: false,
    }
}

/// A free port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first view of `jam` for which `ok` holds, within 10 s.
pub async fn wait_view(jam: &Jam, what: &str, ok: impl Fn(&JamView) -> bool) -> JamView {
    let mut rx = jam.subscribe();
    let r = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            {
                let v = rx.borrow_and_update();
                if ok(&v) {
                    return v.clone();
                }
            }
            rx.changed().await.expect("jam view closed");
        }
    })
    .await;
    r.unwrap_or_else(|_| {
        let v = jam.view();
        panic!(
            "timed out waiting for {what}: {:?} {:?} {:?}",
            v.phase, v.peers, v.notices
        )
    })
}

/// Waits until `jam`'s host relays `joiner`'s `midi` channel (its MIDI
/// light shows the channel open): from then on the joiner hears what this
/// computer plays and is heard. The joiner's own `midi_open` comes a
/// moment earlier, before the host has routed it. The lights are read
/// twice a second, so this takes up to half a second.
pub async fn wait_midi_relayed(jam: &Jam, joiner: &jam::joiner::Joiner) -> JamView {
    let machine = joiner.view().machine_id;
    wait_view(jam, "the host relays the joiner's midi channel", |v| {
        v.peers
            .iter()
            .find(|p| p.machine_id.as_deref() == Some(machine.as_str()))
            .is_some_and(|p| v.midi.iter().any(|m| m.peer == p.id.0 && m.channel_open))
    })
    .await
}

/// Waits until `ok` holds, checking every 10 ms; fails after `limit` with
/// `what` and what `show` says of the state.
pub async fn until(what: &str, limit: Duration, ok: impl Fn() -> bool, show: impl Fn() -> String) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "timed out: {what}: {}", show());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether `m` releases key `key` on channel 1 (Note Off, or Note On with
/// velocity 0).
pub fn releases(m: &MidiMessage, key: u8) -> bool {
    let b = m.to_vec();
    (b[0] == 0x80 && b[1] == key) || (b[0] == 0x90 && b[1] == key && b[2] == 0)
}
