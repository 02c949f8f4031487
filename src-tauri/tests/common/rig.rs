//! What the desktop app's UI tests and its benchmark share: two network
//! namespaces joined by a veth pair (A: the musician's computer with the
//! app; B: a friend's laptop with the aiortc joiner), a config folder of
//! their own, Xvfb, and optionally tauri-driver. The calling thread enters
//! namespace A (`setns`), so every socket it opens and every process it
//! starts stays there. Everything is removed on drop.

#![allow(dead_code)]

use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use test_support::VethPair;

static NEXT: AtomicUsize = AtomicUsize::new(0);

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repo root")
}

pub fn preflight() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned));
    assert_eq!(
        euid.as_deref(),
        Some("0"),
        "the desktop UI tests must run as root (they create network namespaces)"
    );
    for (bin, pkg) in [
        ("Xvfb", "xvfb"),
        ("WebKitWebDriver", "webkit2gtk-driver"),
        (
            "tauri-driver",
            "`cargo install tauri-driver --version 2.1.0 --locked`",
        ),
    ] {
        assert!(
            which(bin).is_some(),
            "{bin} not found: install {pkg} (bash scripts/setup.sh does)"
        );
    }
    let py = repo().join("tests/interop/.venv/bin/python");
    assert!(
        py.exists(),
        "{} missing: run bash scripts/setup.sh",
        py.display()
    );
}

pub fn which(bin: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter().map(|d| d.join(bin)).find(|p| p.is_file())
}

/// Everything one test runs, torn down on drop (also when it fails).
pub struct Rig {
    pub n: usize,
    pub ns_a: String,
    pub ns_b: String,
    pub dir: PathBuf,
    pub display: String,
    xvfb: Option<Child>,
    /// The test's own D-Bus session bus, at `<dir>/bus`.
    bus: Option<Child>,
    driver: Option<Child>,
    pub driver_port: u16,
    /// A (the app, `vA`) and B (the joiners, `vB`); deleted last, on drop.
    pub net: VethPair,
}

impl Rig {
    /// Namespaces, a config folder and Xvfb; with `driver`, tauri-driver too.
    pub fn new(driver: bool) -> Rig {
        preflight();
        let n = NEXT.fetch_add(1, Ordering::Relaxed) + (std::process::id() as usize % 50) * 4;
        let pid = std::process::id();
        let net = VethPair::with_addresses(
            "ui",
            Ipv4Addr::new(10, 78, (n % 250) as u8, 1),
            Ipv4Addr::new(10, 78, (n % 250) as u8, 2),
        );
        net.a.route_multicast("vA");
        let (ns_a, ns_b) = (net.a.name().to_owned(), net.b.name().to_owned());
        let dir = std::env::temp_dir().join(format!("midi-jam-ui-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("config")).unwrap();
        let mut rig = Rig {
            n,
            ns_a,
            ns_b,
            dir,
            display: format!(":{}", 140 + n % 100),
            xvfb: None,
            bus: None,
            driver: None,
            driver_port: 4444,
            net,
        };
        rig.net.a.enter();
        rig.start_xvfb();
        rig.start_bus();
        if driver {
            rig.start_driver();
        }
        rig
    }

    pub fn host_ip(&self) -> String {
        self.net.ip_a.to_string()
    }

    pub fn joiner_ip(&self) -> String {
        self.net.ip_b.to_string()
    }

    pub fn config_home(&self) -> PathBuf {
        self.dir.join("config")
    }

    /// The app's own folder inside the config home (its identifier).
    pub fn app_config(&self) -> PathBuf {
        self.config_home().join("org.midijam.app")
    }

    pub fn start_xvfb(&mut self) {
        let num = self.display.trim_start_matches(':').to_owned();
        let _ = std::fs::remove_file(format!("/tmp/.X11-unix/X{num}"));
        let _ = std::fs::remove_file(format!("/tmp/.X{num}-lock"));
        let child = Command::new("Xvfb")
            .args([
                &self.display,
                "-screen",
                "0",
                "1280x900x24",
                "-nolisten",
                "tcp",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Xvfb");
        self.xvfb = Some(child);
        wait_for(Duration::from_secs(10), "Xvfb socket", || {
            Path::new(&format!("/tmp/.X11-unix/X{num}")).exists()
        });
    }

    /// A D-Bus session bus for this test alone, where the app's
    /// single-instance check (tauri-plugin-single-instance, a name derived
    /// from the app's identifier) looks for a running app. The app finds it
    /// as `$XDG_RUNTIME_DIR/bus` (the rig's folder; every launch from a
    /// test gets `XDG_RUNTIME_DIR` and no `DBUS_SESSION_BUS_ADDRESS`), so
    /// tests running at once, or a real session on the same machine, never
    /// see each other's app.
    pub fn start_bus(&mut self) {
        let socket = self.dir.join("bus");
        let child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile", "--nosyslog"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("dbus.log")).unwrap())
            .spawn()
            .expect("start dbus-daemon (package dbus-daemon)");
        self.bus = Some(child);
        wait_for(Duration::from_secs(10), "the D-Bus socket", || {
            socket.exists()
        });
    }

    /// Environment of tauri-driver, and so of WebKitWebDriver and the app.
    pub fn start_driver(&mut self) {
        let driver = which("tauri-driver").unwrap();
        self.driver_port = 4444;
        let child = Command::new(driver)
            .args(["--port", &self.driver_port.to_string()])
            .args(["--native-port", &(self.driver_port + 1).to_string()])
            .env("DISPLAY", &self.display)
            .env("XDG_CONFIG_HOME", self.config_home())
            .env("XDG_DATA_HOME", self.dir.join("data"))
            .env("XDG_CACHE_HOME", self.dir.join("cache"))
            .env("XDG_RUNTIME_DIR", &self.dir)
            .env("HOME", &self.dir)
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join("tauri-driver.log")).unwrap())
            .spawn()
            .expect("start tauri-driver");
        self.driver = Some(child);
        let port = self.driver_port;
        wait_for(Duration::from_secs(10), "tauri-driver port", || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        // tauri-driver starts WebKitWebDriver (on the next port) itself and
        // answers a new session before that one listens by dropping the
        // connection: wait for both, as a cold first run showed.
        wait_for(Duration::from_secs(10), "WebKitWebDriver port", || {
            TcpStream::connect(("127.0.0.1", port + 1)).is_ok()
        });
    }

    /// Writes a settings file before launch: the LAN advert on the test's
    /// own veth only (never a real interface), the rest defaults.
    pub fn seed_settings(&self, extra: Value) {
        let mut s =
            json!({"displayName": "Test host", "mdnsInterfaces": ["vA"], "listenPort": 8787});
        if let (Some(o), Some(e)) = (s.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                o.insert(k.clone(), v.clone());
            }
        }
        std::fs::create_dir_all(self.app_config()).unwrap();
        std::fs::write(
            self.app_config().join("settings.json"),
            serde_json::to_vec_pretty(&json!({ "settings": s })).unwrap(),
        )
        .unwrap();
    }

    /// Runs the aiortc joiner from namespace B against `url` with `code`.
    pub fn joiner(&self, url: &str, code: &str, name: &str, stay_s: f64) -> Child {
        let interop = repo().join("tests/interop");
        self.net
            .b
            .command(interop.join(".venv/bin/python"))
            .arg(interop.join("aiortc_joiner.py"))
            .args(["--url", url, "--code", code, "--name", name])
            .args([
                "--stay",
                &stay_s.to_string(),
                "--send-heartbeats",
                "--heartbeat-interval",
                "2",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(self.dir.join(format!("joiner-{name}.log"))).unwrap())
            .spawn()
            .expect("start the aiortc joiner")
    }
}

impl Rig {
    /// The aiortc joiner that also opens the `midi` channel; it sends one
    /// frame per line written to its stdin (hex MIDI messages).
    pub fn midi_joiner(
        &self,
        url: &str,
        code: &str,
        name: &str,
        stay_s: f64,
        sends: &[&str],
    ) -> Child {
        let interop = repo().join("tests/interop");
        let mut cmd = self.net.b.command(interop.join(".venv/bin/python"));
        cmd.arg(interop.join("midi_joiner.py"))
            .args(["--url", url, "--code", code, "--name", name])
            .args([
                "--stay",
                &stay_s.to_string(),
                "--send-heartbeats",
                "--heartbeat-interval",
                "2",
            ]);
        for s in sends {
            cmd.args(["--midi-send", s]);
        }
        cmd.arg("--midi-stdin")
            .stdin(Stdio::piped())
            .stdout(
                std::fs::File::create(self.dir.join(format!("midi-joiner-{name}.out"))).unwrap(),
            )
            .stderr(
                std::fs::File::create(self.dir.join(format!("midi-joiner-{name}.log"))).unwrap(),
            )
            .spawn()
            .expect("start the aiortc midi joiner")
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        for c in [self.driver.as_mut(), self.xvfb.as_mut(), self.bus.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        // `net` is dropped after this: it stops what still runs in the
        // namespaces (never this process, whose thread entered A) and
        // deletes them.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("kept {} for inspection", self.dir.display());
        }
    }
}

pub fn wait_for(limit: Duration, what: &str, ok: impl FnMut() -> bool) {
    test_support::wait_for(what, limit, ok);
}
