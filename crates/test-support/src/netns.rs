//! Network namespaces of the test's own.
//!
//! The rule for tests here: traffic only on loopback or inside namespaces
//! the test created. A [`Netns`] is such a namespace (its `lo` up), and a
//! [`VethPair`] is two of them joined by a veth pair, "two machines on a
//! LAN" for mDNS and WebRTC. Both are deleted on drop, also when the test
//! panics, together with whatever the test left running in them. Names are
//! `<prefix>-<pid>-<n>`, so tests running in parallel, or in several
//! processes at once, never share one. Creating namespaces needs root.
//!
//! Three ways to run something inside:
//! - [`Netns::command`]: a child process (`ip netns exec`);
//! - [`Netns::spawn`]: a thread of this process (`setns(2)`), for code that
//!   must run in process, such as an mDNS daemon or a Tokio runtime whose
//!   threads and sockets then all live in the namespace;
//! - [`Netns::enter`]: the calling thread itself moves in.

use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::wait::wait_until;

/// The interface name of the veth end in namespace A of a [`VethPair`].
pub const IF_A: &str = "vA";
/// The interface name of the veth end in namespace B of a [`VethPair`].
pub const IF_B: &str = "vB";

/// Runs `ip` with these arguments: its stdout, or `Err` with its stderr.
pub fn ip(args: &[&str]) -> Result<String, String> {
    let o = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e} (is iproute2 installed?)", args.join(" ")))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(format!(
            "ip {} failed ({}): {}",
            args.join(" "),
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// Panics, saying why, unless the effective user is root: the namespace
/// tests fail rather than skip when they cannot run.
pub fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned));
    assert_eq!(
        euid.as_deref(),
        Some("0"),
        "this test creates network namespaces (`ip netns`) and must run as root (CI does); \
         effective uid is {euid:?}"
    );
}

/// Sends `sig` (`TERM`, `KILL`, ...) to process `pid`, ignoring failure
/// (it may have exited already).
pub fn send_signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Moves the calling thread into the network namespace named `name`. Only
/// this thread moves; threads, sockets and processes it creates afterwards
/// live there too.
pub fn enter(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}"))
        .unwrap_or_else(|e| panic!("namespace {name}: {e}"));
    // SAFETY: setns(2) on a valid, open namespace file descriptor with the
    // matching namespace type only changes this thread's network namespace;
    // it touches no memory of ours.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns({name}): {}", std::io::Error::last_os_error());
}

fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// One network namespace of the test's own, `lo` up. Deleted on drop with
/// every process still in it (TERM, up to 2 s, then KILL; never this
/// process, whose thread may have entered it).
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// A fresh namespace named `<prefix>-<pid>-<n>`.
    pub fn new(prefix: &str) -> Netns {
        require_root();
        let name = unique(prefix);
        let _ = ip(&["netns", "del", &name]); // a leftover of a recycled pid
        ip(&["netns", "add", &name]).unwrap_or_else(|e| panic!("{e}"));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// A fresh namespace whose `lo` also carries 127.0.0.2/8: aiortc (aioice)
    /// never offers 127.0.0.1, so peers on one loopback need a second
    /// address.
    pub fn with_loopback_alias(prefix: &str) -> Netns {
        let ns = Netns::new(prefix);
        ns.ip(&["addr", "add", "127.0.0.2/8", "dev", "lo"]);
        ns
    }

    /// The namespace's name, for `ip -n` / `ip netns exec`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <name> args...`; panics with its stderr when it fails.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Routes multicast (224.0.0.0/4) out of `dev`: needed by programs that
    /// send to a multicast group without choosing an interface.
    pub fn route_multicast(&self, dev: &str) {
        self.ip(&["route", "add", "224.0.0.0/4", "dev", dev]);
    }

    /// Whether `dev` is operationally up (carrier), as mDNS daemons require.
    pub fn link_is_up(&self, dev: &str) -> bool {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(&["-o", "link", "show", dev]);
        ip(&all).is_ok_and(|s| s.contains("state UP"))
    }

    /// `ip netns exec <name> program`: add arguments, environment and stdio
    /// as usual. stdin is null unless the caller sets it. `ip netns exec`
    /// execs the program, so the child's pid is the program's.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name])
            .arg(program)
            .stdin(Stdio::null());
        cmd
    }

    /// Moves the calling thread into this namespace (see [`enter`]).
    pub fn enter(&self) {
        enter(&self.name);
    }

    /// Runs `f` on a new thread inside this namespace.
    pub fn spawn<T, F>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let name = self.name.clone();
        thread::spawn(move || {
            enter(&name);
            f()
        })
    }

    /// The processes whose network namespace this is (other than this one).
    pub fn pids(&self) -> Vec<u32> {
        let me = std::process::id();
        ip(&["netns", "pids", &self.name])
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .filter(|p| *p != me)
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Whatever is still in here was started by this test (a browser that
        // outlived its driver, say): TERM, a moment, then KILL.
        let left = self.pids();
        if !left.is_empty() {
            for p in &left {
                let cmdline =
                    std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default();
                eprintln!(
                    "still running in {} at teardown: pid {p} ({})",
                    self.name,
                    cmdline.replace('\0', " ").trim()
                );
                send_signal(*p, "TERM");
            }
            wait_until(Duration::from_secs(2), Duration::from_millis(50), || {
                self.pids().is_empty()
            });
            for p in self.pids() {
                send_signal(p, "KILL");
            }
        }
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            eprintln!("could not delete namespace: {e}");
        }
    }
}

/// Two namespaces, A and B, joined by a veth pair created inside them (its
/// ends never exist in the root namespace): [`IF_A`] in A and [`IF_B`] in B,
/// each with a /24 address, multicast on and up. [`VethPair::new`] returns
/// only once both ends have carrier.
#[derive(Debug)]
pub struct VethPair {
    /// Namespace A, with [`IF_A`] at [`VethPair::ip_a`].
    pub a: Netns,
    /// Namespace B, with [`IF_B`] at [`VethPair::ip_b`].
    pub b: Netns,
    /// A's address.
    pub ip_a: Ipv4Addr,
    /// B's address.
    pub ip_b: Ipv4Addr,
}

impl VethPair {
    /// A (10.77.0.1) and B (10.77.0.2), named `<prefix>A-...` and
    /// `<prefix>B-...`.
    pub fn new(prefix: &str) -> VethPair {
        VethPair::with_addresses(
            prefix,
            Ipv4Addr::new(10, 77, 0, 1),
            Ipv4Addr::new(10, 77, 0, 2),
        )
    }

    /// A and B at `ip_a`/24 and `ip_b`/24.
    pub fn with_addresses(prefix: &str, ip_a: Ipv4Addr, ip_b: Ipv4Addr) -> VethPair {
        let pair = VethPair {
            a: Netns::new(&format!("{prefix}A")),
            b: Netns::new(&format!("{prefix}B")),
            ip_a,
            ip_b,
        };
        let b = pair.b.name().to_owned();
        pair.a.ip(&[
            "link", "add", IF_A, "type", "veth", "peer", "name", IF_B, "netns", &b,
        ]);
        for (ns, dev, addr) in [(&pair.a, IF_A, ip_a), (&pair.b, IF_B, ip_b)] {
            ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", dev]);
            ns.ip(&["link", "set", dev, "multicast", "on", "up"]);
        }
        // mdns-sd only takes interfaces that are operationally up (and looks
        // again only every few seconds): wait for the carrier.
        assert!(
            wait_until(Duration::from_secs(5), Duration::from_millis(10), || {
                pair.a.link_is_up(IF_A) && pair.b.link_is_up(IF_B)
            }),
            "veth pair not up after 5 s"
        );
        pair
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// A pair is two separate stacks joined only by the veth: A reaches B's
    /// address, the root namespace does not, and both are gone after drop.
    #[test]
    fn a_veth_pair_joins_two_namespaces_and_vanishes_on_drop() {
        let pair = VethPair::new("tsup");
        let (a, b) = (pair.a.name().to_owned(), pair.b.name().to_owned());
        let ip_b = pair.ip_b;
        let listener = pair
            .b
            .spawn(move || TcpListener::bind((ip_b, 0)).expect("bind in B"))
            .join()
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let reached = pair
            .a
            .spawn(move || TcpStream::connect((ip_b, port)).is_ok())
            .join()
            .unwrap();
        assert!(reached, "A reaches B over the veth");
        let out = pair
            .a
            .command("ip")
            .args(["-o", "addr", "show", IF_A])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&out.stdout).contains("10.77.0.1/24"));
        assert!(
            ip(&["-o", "link", "show", IF_A]).is_err(),
            "not in the root namespace"
        );
        drop(listener);
        drop(pair);
        let list = ip(&["netns", "list"]).unwrap();
        assert!(!list.contains(&a) && !list.contains(&b), "{list}");
    }

    #[test]
    fn processes_left_inside_are_stopped_at_drop() {
        let ns = Netns::with_loopback_alias("tsupk");
        let mut child = ns.command("sleep").arg("600").spawn().unwrap();
        assert!(wait_until(
            Duration::from_secs(5),
            Duration::from_millis(10),
            || { ns.pids().contains(&child.id()) }
        ));
        assert!(ns.ip(&["-o", "addr", "show", "lo"]).contains("127.0.0.2/8"));
        drop(ns);
        assert!(child.wait().is_ok());
    }
}
