//! MidiEditor's LAN Live datagrams on real sockets: our `Announcer` in
//! namespace A, our `Listener` in namespace B, joined by a veth pair made
//! for the test (multicast never leaves them). The threads each side starts
//! inherit the namespace of the test thread that entered it. Needs root.
//! The real MidiEditor hearing the Announcer is in
//! `crates/midi-rdv/tests/lan_live.rs`.

use std::sync::mpsc;
use std::time::Duration;

use lan::midieditor_lan::{Announcement, Announcer, Listener};
use lan::InterfaceChoice;
use test_support::netns::{VethPair, IF_A, IF_B};
use test_support::wait::wait_until;

#[test]
fn our_listener_hears_our_announcer_across_the_veth_and_finds_it_by_code() {
    let pair = VethPair::new("lanme");
    let ann = Announcement {
        session_id: "jam-1".into(),
        display_name: "Ann|Lee".into(),
        tcp_port: 40000,
        code: "QL9Z".into(),
    };
    let (stop, stopped) = mpsc::channel::<()>();
    let a = pair.a.spawn(move || {
        let an =
            Announcer::start(InterfaceChoice::Named(vec![IF_A.into()]), &ann).expect("announcer");
        let _ = stopped.recv();
        an.stop();
    });
    let heard = pair
        .b
        .spawn(|| {
            let l = Listener::start(InterfaceChoice::Named(vec![IF_B.into()])).expect("listener");
            let mut found = None;
            wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
                found = l.find("QL9Z");
                found.is_some()
            });
            (found, l.find("ABCD"), l.hosts().len())
        })
        .join()
        .unwrap();
    stop.send(()).unwrap();
    a.join().unwrap();
    let (found, other, count) = heard;
    let h = found.expect("the announcement was not heard in B within 10 s");
    assert_eq!(
        h.addr,
        "10.77.0.1:40000".parse().unwrap(),
        "source address + TCP port"
    );
    assert_eq!(h.announcement.session_id, "jam-1");
    assert_eq!(h.announcement.display_name, "Ann/Lee", "a | never goes out");
    assert_eq!(other, None, "no other code matches");
    assert_eq!(count, 1);
}

#[test]
fn bad_interface_choices_are_refused() {
    let ann = Announcement {
        session_id: "s".into(),
        display_name: "n".into(),
        tcp_port: 1,
        code: "ABCD".into(),
    };
    assert!(Announcer::start(InterfaceChoice::Named(vec![]), &ann).is_err());
    assert!(Listener::start(InterfaceChoice::Named(vec![" ".into()])).is_err());
    let bad = Announcement {
        code: "abcd".into(),
        ..ann
    };
    assert!(Announcer::start(InterfaceChoice::Named(vec!["lo".into()]), &bad).is_err());
}
