use serde_json::{json, Value};
use test_support::rng::XorShift;

use crate::event::{TEMPO_CHANNEL, TEXT_CHANNEL, TIME_SIG_CHANNEL};
use crate::{smf, Body, Event, Saved, Song, Store};

fn note(track: u16, channel: u8, tick: u32, n: u8, dur: u32) -> Event {
    Event {
        track,
        channel,
        tick,
        body: Body::Note {
            note: n,
            velocity: 90,
            duration: dur,
        },
    }
}

fn frame(hunks: Value) -> Value {
    json!({"type": "hunks", "author": "Bob", "machineId": "m", "hunks": hunks, "frameId": 1})
}

/// A hunks frame exactly as the real MidiEditor sent it for an MCP insert.
const REAL_FRAME: &str = r#"{"author":"j1","fileMaxTick":768,"frameId":0,"hunks":[{"added":[{"channel":1,"duration":24,"id":5,"note":100,"noteName":"E7","tick":48,"track":1,"type":"note","velocity":90}],"modified":[],"removed":[],"scope":{"channel":1,"measureEnd":0,"measureStart":0,"tick":48,"tickEnd":48,"tickStart":48,"track":1}}],"machineId":"5b1c","type":"hunks"}"#;

#[test]
fn a_real_midieditor_frame_applies() {
    let mut s = Song::new();
    let f: Value = serde_json::from_str(REAL_FRAME).unwrap();
    let r = s.apply_hunks(&f).unwrap();
    assert_eq!((r.added, r.skipped, r.applied()), (1, 0, 1));
    assert_eq!(s.events().next(), Some(&note(1, 1, 48, 100, 24)));
    assert_eq!(s.end_tick, 768);
}

#[test]
fn removed_modified_added_follow_event_identity() {
    let mut s = Song::new();
    s.insert(note(1, 0, 0, 60, 10));
    s.insert(note(1, 0, 0, 64, 10));
    s.insert(note(1, 0, 96, 67, 10));
    let f = frame(json!([{
        "removed": [{"type": "note", "tick": 0, "note": 60, "channel": 0, "track": 1, "velocity": 1, "duration": 5}],
        "modified": [{"before": {"type": "note", "tick": 96, "note": 67, "channel": 0, "track": 1},
                      "after": {"type": "note", "tick": 96, "note": 67, "channel": 0, "track": 1, "velocity": 20, "duration": 48}}],
        "added": [{"type": "cc", "tick": 5, "control": 7, "value": 100, "channel": 0, "track": 1}],
    }]));
    let r = s.apply_hunks(&f).unwrap();
    assert_eq!((r.removed, r.modified, r.added, r.skipped), (1, 1, 1, 0));
    let all: Vec<_> = s.events().cloned().collect();
    assert_eq!(all.len(), 3);
    assert!(all.contains(&note(1, 0, 0, 64, 10)));
    assert!(all.contains(&Event {
        track: 1,
        channel: 0,
        tick: 96,
        body: Body::Note {
            note: 67,
            velocity: 20,
            duration: 48
        }
    }));
    // Removing what is not there (another track, another channel) is skipped.
    let f = frame(json!([{"removed": [
        {"type": "note", "tick": 0, "note": 64, "channel": 0, "track": 0},
        {"type": "note", "tick": 0, "note": 64, "channel": 2, "track": 1},
    ]}]));
    let r = s.apply_hunks(&f).unwrap();
    assert_eq!((r.removed, r.skipped), (0, 2));
    // No track: any track matches, as in MidiEditor.
    let f = frame(json!([{"removed": [{"type": "note", "tick": 0, "note": 64, "channel": 0}]}]));
    assert_eq!(s.apply_hunks(&f).unwrap().removed, 1);
}

#[test]
fn stacked_events_are_matched_in_insertion_order() {
    let mut s = Song::new();
    let mut a = note(0, 0, 10, 60, 5);
    let mut b = note(0, 0, 10, 60, 7);
    if let Body::Note { velocity, .. } = &mut a.body {
        *velocity = 1;
    }
    if let Body::Note { velocity, .. } = &mut b.body {
        *velocity = 2;
    }
    s.insert(a);
    s.insert(b.clone());
    let f = frame(
        json!([{"removed": [{"type": "note", "tick": 10, "note": 60, "channel": 0, "track": 0}]}]),
    );
    s.apply_hunks(&f).unwrap();
    assert_eq!(s.events().collect::<Vec<_>>(), [&b]);
}

#[test]
fn a_track_past_the_end_creates_tracks_up_to_it() {
    let mut s = Song::new();
    let f = frame(
        json!([{"added": [{"type": "note", "tick": 0, "note": 60, "velocity": 0,
                                     "duration": 0, "channel": 3, "track": 7}]}]),
    );
    s.apply_hunks(&f).unwrap();
    assert_eq!(s.tracks, 8);
    // Velocity 0 and duration 0 are lifted to 1, as MidiEditor does.
    assert_eq!(s.events().next().unwrap(), &{
        let mut n = note(7, 3, 0, 60, 1);
        n.body = Body::Note {
            note: 60,
            velocity: 1,
            duration: 1,
        };
        n
    });
    // A missing track means track 0.
    let f = frame(
        json!([{"added": [{"type": "program_change", "tick": 0, "program": 5, "channel": 0}]}]),
    );
    s.apply_hunks(&f).unwrap();
    assert!(s
        .events()
        .any(|e| e.track == 0 && e.body == Body::Program { program: 5 }));
}

#[test]
fn hostile_frames_are_refused_whole_and_change_nothing() {
    let mut s = Song::new();
    s.insert(note(1, 0, 0, 60, 10));
    let before = s.clone();
    let good = json!({"type": "note", "tick": 1, "note": 61, "velocity": 9, "duration": 3, "channel": 0, "track": 1});
    for bad in [
        json!({"type": "note", "tick": 1, "note": 61, "velocity": 9, "duration": 3, "channel": 0, "track": 1_000_000_000}),
        json!({"type": "note", "tick": -1, "note": 61, "velocity": 9, "duration": 3, "channel": 0}),
        json!({"type": "note", "tick": 1, "note": 128, "velocity": 9, "duration": 3, "channel": 0}),
        json!({"type": "note", "tick": 1, "note": 1, "velocity": 9, "duration": 3, "channel": 17}),
        json!({"type": "note", "tick": 1.5, "note": 1, "velocity": 9, "duration": 3, "channel": 0}),
        json!({"type": "sysex", "tick": 1, "channel": 0}),
        json!({"type": "text", "tick": 1, "channel": 16, "text": "x".repeat(5000)}),
        json!("note"),
    ] {
        let f = frame(json!([{"added": [good.clone(), bad.clone()]},
                             {"removed": [{"type": "note", "tick": 0, "note": 60, "channel": 0, "track": 1}]}]));
        let (_, r) = s.apply_hunks(&f).unwrap_err();
        assert!(r.refused, "{bad}");
        assert_eq!((r.applied(), r.skipped), (0, 3), "{bad}");
        assert_eq!(s, before, "{bad}");
    }
    for shape in [
        json!({"type": "hunks", "hunks": 5}),
        json!({"type": "hunks", "hunks": [1]}),
        json!({"type": "hunks", "hunks": [{"added": {}}]}),
    ] {
        assert!(s.apply_hunks(&shape).is_err());
        assert_eq!(s, before);
    }
}

#[test]
fn file_max_tick_sets_the_length_and_a_shorter_one_cuts() {
    let mut s = Song::new();
    s.insert(note(1, 0, 0, 60, 10));
    s.insert(note(1, 0, 500, 62, 10));
    let r = s
        .apply_hunks(&json!({"type": "hunks", "hunks": [], "fileMaxTick": 2000}))
        .unwrap();
    assert!(r.length_changed && s.end_tick == 2000 && s.len() == 2);
    // Not an exact integer in range: ignored.
    for v in [json!(-1), json!("9"), json!(1.5), json!(1u64 << 40)] {
        let r = s
            .apply_hunks(&json!({"type": "hunks", "fileMaxTick": v}))
            .unwrap();
        assert!(!r.length_changed);
    }
    s.apply_hunks(&json!({"type": "hunks", "hunks": [], "fileMaxTick": 400}))
        .unwrap();
    assert_eq!((s.end_tick, s.len()), (400, 1));
}

fn sample_song() -> Song {
    let mut s = Song::empty(480, 3);
    let meta = |channel, body| Event {
        track: 0,
        channel,
        tick: 0,
        body,
    };
    s.insert(meta(
        TEMPO_CHANNEL,
        Body::Tempo {
            micros_per_quarter: 600_000,
        },
    ));
    s.insert(meta(
        TIME_SIG_CHANNEL,
        Body::TimeSig {
            num: 3,
            denom_midi: 2,
            midi_clocks: 24,
            num32_in4: 8,
        },
    ));
    s.insert(meta(
        TEXT_CHANNEL,
        Body::KeySig {
            tonality: -2,
            minor: true,
        },
    ));
    s.insert(Event {
        track: 1,
        channel: TEXT_CHANNEL,
        tick: 0,
        body: Body::Text {
            text_type: 3,
            text: "Piano ♪".into(),
        },
    });
    for i in 0..50u32 {
        s.insert(note(1, 0, i * 120, 40 + (i % 30) as u8, 100 + i));
        s.insert(note(2, 9, i * 60, 36, 30));
    }
    // Same key back to back on one channel: the first ends where the next
    // starts.
    s.insert(note(1, 2, 0, 70, 100));
    s.insert(note(1, 2, 100, 70, 50));
    for (ch, body) in [
        (
            0,
            Body::Cc {
                control: 7,
                value: 100,
            },
        ),
        (0, Body::PitchBend { value: 8192 }),
        (0, Body::Program { program: 33 }),
        (0, Body::ChanPressure { value: 5 }),
        (0, Body::KeyPressure { note: 60, value: 9 }),
    ] {
        s.insert(Event {
            track: 1,
            channel: ch,
            tick: 10,
            body,
        });
    }
    s.end_tick = 7000;
    s
}

#[test]
fn a_song_round_trips_through_a_midi_file() {
    let s = sample_song();
    let bytes = smf::export(&s).unwrap();
    let back = smf::load(&bytes).unwrap();
    assert_eq!(back.ticks_per_quarter, 480);
    assert_eq!(back.tracks, 3);
    assert_eq!(back.end_tick, 7000);
    let mut a: Vec<_> = s.events().map(|e| e.to_json().to_string()).collect();
    let mut b: Vec<_> = back.events().map(|e| e.to_json().to_string()).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(back.track_name(1), Some("Piano ♪"));
    // 7000 ticks at 480 tpq and 100 bpm.
    assert!((back.seconds() - 7000.0 / 480.0 * 0.6).abs() < 1e-9);
    // And again: export is stable.
    assert_eq!(smf::export(&back).unwrap(), bytes);
}

#[test]
fn garbage_files_are_errors_not_panics() {
    let mut rng = XorShift(0x5eed_0001);
    let good = smf::export(&sample_song()).unwrap();
    for _ in 0..300 {
        let mut b = good.clone();
        for _ in 0..1 + rng.below(8) {
            let i = rng.below(b.len());
            b[i] = rng.next_u64() as u8;
        }
        b.truncate(rng.below(b.len() + 1));
        let _ = smf::load(&b);
    }
    assert!(smf::load(b"MThd").is_err());
}

fn rand_event(rng: &mut XorShift, types: &[&str]) -> Value {
    let tick = [0i64, 10, 60, 120, -5, 1 << 33][rng.below(6)];
    let channel = [0i64, 1, 9, 16, 17, 18, 40][rng.below(7)];
    let track = [0i64, 1, 2, 5, 255, 256, -1][rng.below(7)];
    let mut o = json!({
        "type": types[rng.below(types.len())],
        "tick": tick, "channel": channel, "track": track,
        "note": 30 + rng.below(20) as i64, "velocity": rng.below(140) as i64,
        "duration": rng.below(200) as i64 - 10, "control": 7, "value": rng.below(130) as i64,
        "program": 3, "bpm": rng.below(1200) as i64, "num": 4, "denomMidi": 2,
        "tonality": rng.below(20) as i64 - 10, "text": "t", "textType": 1 + rng.below(7) as i64,
    });
    if rng.below(10) == 0 {
        o.as_object_mut()
            .unwrap()
            .remove(["tick", "channel", "type"][rng.below(3)]);
    }
    o
}

/// Random hunks built from a small vocabulary (so removals hit): a refused
/// frame changes nothing, an accepted one keeps the counts consistent.
#[test]
fn fuzzed_hunks_never_panic_and_refusal_changes_nothing() {
    let mut rng = XorShift(0xfeed_beef_1234);
    let mut s = sample_song();
    let types = [
        "note",
        "cc",
        "pitch_bend",
        "program_change",
        "tempo",
        "time_sig",
        "key_sig",
        "text",
        "chan_pressure",
        "key_pressure",
        "bogus",
    ];
    let mut refused = 0;
    let mut accepted = 0;
    for _ in 0..3000 {
        let mut hunks = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let mut h = json!({"removed": [], "added": [], "modified": []});
            for _ in 0..rng.below(3) {
                h["removed"]
                    .as_array_mut()
                    .unwrap()
                    .push(rand_event(&mut rng, &types));
            }
            for _ in 0..rng.below(3) {
                h["added"]
                    .as_array_mut()
                    .unwrap()
                    .push(rand_event(&mut rng, &types));
            }
            for _ in 0..rng.below(2) {
                let m = json!({"before": rand_event(&mut rng, &types), "after": rand_event(&mut rng, &types)});
                h["modified"].as_array_mut().unwrap().push(m);
            }
            hunks.push(h);
        }
        let mut f = frame(Value::Array(hunks));
        if rng.below(5) == 0 {
            f["fileMaxTick"] = json!(rng.below(9000));
        }
        let before = s.clone();
        match s.apply_hunks(&f) {
            Err((_, r)) => {
                refused += 1;
                assert!(r.refused && r.applied() == 0);
                assert_eq!(s, before);
            }
            Ok(r) => {
                accepted += 1;
                let n = s.events().count();
                assert_eq!(n, s.len());
                assert!(s.tracks as usize <= crate::event::MAX_TRACKS);
                if !r.length_changed {
                    // A modification whose `before` is gone still inserts
                    // its `after` (MidiEditor's rule).
                    let base = before.len() + r.added - r.removed;
                    assert!((base..=base + r.modified).contains(&n));
                }
            }
        }
        // What the song holds always exports and loads.
        if rng.below(50) == 0 {
            smf::load(&smf::export(&s).unwrap()).unwrap();
        }
    }
    assert!(refused > 100 && accepted > 100, "{refused} {accepted}");
}

#[test]
fn versions_are_saved_atomically_and_pruned() {
    let dir = std::env::temp_dir().join(format!("song-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut st = Store::open(&dir).unwrap().with_keep(3);
    assert!(st.latest().unwrap().is_none());
    let mut s = sample_song();
    for i in 0..5u32 {
        s.insert(note(1, 0, 9000 + i, 60, 1));
        st.save(&Saved {
            name: "a.mid".into(),
            last_editor: Some(format!("ed{i}")),
            saved_at: u64::from(i),
            song: s.clone(),
        })
        .unwrap();
    }
    assert_eq!(st.count().unwrap(), 3);
    let (_, latest) = st.latest().unwrap().unwrap();
    assert_eq!(latest.last_editor.as_deref(), Some("ed4"));
    assert_eq!(latest.song, s);
    // A reopened store continues the numbering; a corrupt newest version
    // is passed over.
    let st2 = Store::open(&dir).unwrap();
    std::fs::write(dir.join("song-0000000099.json"), b"{\"song\": 5").unwrap();
    assert_eq!(
        st2.latest().unwrap().unwrap().1.last_editor.as_deref(),
        Some("ed4")
    );
    let _ = std::fs::remove_dir_all(&dir);
}
