//! A browser join page as a peer of the app's jam: listed as Browser with its
//! name, and mute, panic and kick act on it like on any peer.
//!
//! The jam (`app::session::Jam`, with an in-memory synth as its MIDI output)
//! runs on a thread inside a network namespace of the test's own; headless
//! Chromium (`tests/interop/join_page.mjs --loopback`) opens the page from
//! the jam's bundled rendezvous in the same namespace, on loopback. Needs
//! root, node + `tests/interop/node_modules` and `/usr/bin/chromium`
//! (`bash scripts/setup.sh`); FAILS, never skips, without them.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use app::session::Jam;
use common::{free_port, options, releases, until, wait_view};
use jam::protocol::ClientKind;
use midi::memory::MemoryMidi;
use serde_json::json;
use test_support::Netns;

#[path = "../../midi-rdv/tests/support/cli.rs"]
mod cli;
#[path = "../../midi-rdv/tests/support/page.rs"]
mod page;
use page::Page;

fn preflight() {
    test_support::require_root();
    let pw = page::interop_dir().join("node_modules/playwright-core");
    assert!(
        pw.exists(),
        "{} is missing: run `bash scripts/setup.sh` once",
        pw.display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing: run `bash scripts/setup.sh` once"
    );
}

fn played(synth: &midi::memory::MemoryOutput, status: u8, key: u8) -> bool {
    synth.received().iter().any(|m| {
        let b = m.to_vec();
        b.len() == 3 && b[0] == status && b[1] == key && b[2] > 0
    })
}

/// What a test gets: the jam hosting in the test's namespace (its MIDI
/// output an in-memory synth), its settings, and the namespace for the
/// page driver.
struct Hosting {
    ns: Arc<Netns>,
    jam: Jam,
    synth: midi::memory::MemoryOutput,
    settings: app::settings::Settings,
}

/// Runs `test` on a runtime of its own inside a new namespace `name`, with
/// [`Hosting`]'s jam started there. The driver's blocking calls run on the
/// `block_on` thread; the jam runs on the runtime's workers.
fn with_jam<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Hosting) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    preflight();
    let ns = Arc::new(Netns::new(name));
    let inside = ns.clone();
    let t = ns.spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let system = MemoryMidi::new();
            let synth = system.add_output("Synth Out");
            let settings = app::settings::Settings {
                listen_port: free_port(),
                advertise: false,
                display_name: "Ada".into(),
                midi_output: "Synth Out".into(),
                ..app::settings::Settings::default()
            };
            let jam = Jam::start_with_midi(settings.clone(), options(), Arc::new(system.clone()));
            test(Hosting {
                ns: inside,
                jam,
                synth,
                settings,
            })
            .await;
        });
    });
    if let Err(e) = t.join() {
        std::panic::resume_unwind(e);
    }
}

/// The join page from `link`, opened in `ns` and joined as `name`.
fn joined_page(ns: &Netns, link: &str, name: &str) -> Page {
    let mut page = Page::start(ns, &["--loopback"]);
    page.ok(json!({"cmd": "open", "url": link}));
    page.ok(json!({"cmd": "fill", "sel": "#name", "text": name}));
    page.ok(json!({"cmd": "tap", "sel": "#join"}));
    page.wait("jamPage.phase() === 'joined'", Duration::from_secs(30));
    page
}

#[test]
fn a_browser_peer_is_listed_as_browser_and_mute_panic_and_kick_work_on_it() {
    with_jam("jbp", |h| async move {
        let Hosting { ns, jam, synth, .. } = h;
        let v = wait_view(&jam, "a code", |v| v.code.is_some()).await;
        let link = v.join_link.clone().expect("a join link");
        assert!(
            link.ends_with(&format!("/join/{}", v.code.as_deref().unwrap())),
            "{link}"
        );

        let mut page = joined_page(&ns, &link, "Ann");
        page.wait(
            "jamPage.state.midi && jamPage.state.midi.readyState === 'open'",
            Duration::from_secs(10),
        );

        // Listed as a Browser peer with its name.
        let v = wait_view(&jam, "the page as a Browser peer", |v| {
            v.peers.iter().any(|p| {
                p.client == ClientKind::Browser && p.display_name.as_deref() == Some("Ann")
            }) && v.midi.iter().any(|m| m.channel_open)
        })
        .await;
        let id = v
            .peers
            .iter()
            .find(|p| p.client == ClientKind::Browser)
            .expect("browser peer")
            .id
            .0;

        // It plays on the host's synth.
        page.ok(json!({"cmd": "touch", "keys": [60]}));
        until(
            "the synth plays the page's C",
            Duration::from_secs(5),
            || played(&synth, 0x90, 60),
            || format!("{:?}", synth.received()),
        )
        .await;

        // Muted: its held note is released here, and what it plays now
        // is not played (the later note after unmuting arrives, on the
        // same ordered channel, while this one never does).
        jam.set_muted(id, true).await;
        until(
            "muting releases the held C",
            Duration::from_secs(5),
            || synth.received().iter().any(|m| releases(m, 60)),
            || format!("{:?}", synth.received()),
        )
        .await;
        page.ok(json!({"cmd": "untouch"}));
        page.ok(json!({"cmd": "touch", "keys": [64]}));
        page.ok(json!({"cmd": "untouch"}));
        jam.set_muted(id, false).await;
        wait_view(&jam, "unmuted", |v| {
            v.midi.iter().any(|m| m.peer == id && !m.muted)
        })
        .await;
        page.ok(json!({"cmd": "touch", "keys": [67]}));
        until(
            "the synth plays the G after unmuting",
            Duration::from_secs(5),
            || played(&synth, 0x90, 67),
            || format!("{:?}", synth.received()),
        )
        .await;
        assert!(
            !played(&synth, 0x90, 64),
            "the E played while muted sounded: {:?}",
            synth.received()
        );

        // Panic releases the G the page still holds.
        jam.panic().await;
        until(
            "panic releases the held G",
            Duration::from_secs(5),
            || synth.received().iter().any(|m| releases(m, 67)),
            || format!("{:?}", synth.received()),
        )
        .await;
        page.ok(json!({"cmd": "untouch"}));

        // Kicked: gone from the list, and the page says so in words.
        jam.kick(id).await;
        wait_view(&jam, "the kicked page gone", |v| {
            v.peers
                .iter()
                .all(|p| p.id.0 != id || p.state != jam::registry::PeerState::Connected)
        })
        .await;
        page.wait(
            "jamPage.problem().includes('removed this device')",
            Duration::from_secs(10),
        );
        page.ok(json!({"cmd": "quit"}));
        jam.stop().await;
    });
}

/// The host restarts under the same code (a new name here; a new song does
/// the same): the page is told so in `sessionEnded` and joins again by
/// itself, with its name, and plays on the host's synth again.
#[test]
fn a_browser_peer_joins_again_by_itself_when_the_host_restarts_under_the_same_code() {
    with_jam("jbr", |h| async move {
        let Hosting {
            ns,
            jam,
            synth,
            settings,
        } = h;
        let v = wait_view(&jam, "a code", |v| v.code.is_some()).await;
        let code = v.code.clone();
        let link = v.join_link.clone().expect("a join link");

        let mut page = joined_page(&ns, &link, "Ann");

        // A new name restarts the host on the same rendezvous.
        let restart = std::time::Instant::now();
        let impact = jam
            .apply(app::settings::Settings {
                display_name: "Ada's band".into(),
                ..settings
            })
            .await;
        assert!(impact.host, "{impact:?}");
        page.wait(
            "jamPage.state.rejoins === 1 && jamPage.phase() === 'joined'",
            Duration::from_secs(30),
        );
        eprintln!(
            "restart asked -> the page in the jam again: {:?}",
            restart.elapsed()
        );
        let v = wait_view(&jam, "Ann back as a Browser peer", |v| {
            v.peers.iter().any(|p| {
                p.client == ClientKind::Browser
                    && p.display_name.as_deref() == Some("Ann")
                    && p.state == jam::registry::PeerState::Connected
            }) && v.midi.iter().any(|m| m.channel_open)
        })
        .await;
        assert_eq!(v.code, code, "the same code");
        page.wait(
            "jamPage.state.midi && jamPage.state.midi.readyState === 'open'",
            Duration::from_secs(10),
        );
        page.ok(json!({"cmd": "touch", "keys": [62]}));
        until(
            "the synth plays the page's D after the restart",
            Duration::from_secs(5),
            || played(&synth, 0x90, 62),
            || format!("{:?}", synth.received()),
        )
        .await;
        page.ok(json!({"cmd": "untouch"}));

        // A host that ends the jam is not followed: the page says so.
        jam.stop().await;
        page.wait(
            "jamPage.phase() === 'failed' && jamPage.problem().includes('ended the jam')",
            Duration::from_secs(10),
        );
        assert_eq!(page.eval("jamPage.state.rejoins"), json!(1));
        page.ok(json!({"cmd": "quit"}));
    });
}
