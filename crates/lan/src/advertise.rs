//! Announcing a hosted jam.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mdns_sd::{DaemonEvent, RRType, Receiver, ServiceDaemon, ServiceInfo, UnregisterStatus};

use crate::iface::new_daemon;
use crate::txt::{check_code, Advert};
use crate::{InterfaceChoice, LanError, SERVICE_TYPE};

/// How long [`Advertiser::stop`] waits for each answer from the daemon. The
/// daemon thread answers within microseconds unless it is wedged; the bound
/// keeps a stuck daemon from hanging the app's shutdown.
const DAEMON_REPLY_TIMEOUT: Duration = Duration::from_millis(1000);
/// The daemon repeats each goodbye packet 120 ms after the first; waiting
/// for that repeat before shutting down means a single lost packet does not
/// leave the jam listed on other machines until its TTL runs out.
const GOODBYE_REPEAT_WAIT: Duration = Duration::from_millis(150);

/// The least time between two TXT changes on the wire. A receiver's cache
/// only flushes an old TXT when the new one arrives more than a second after
/// the old one was last received (RFC 6762 section 10.2), and each change is
/// sent twice: after a probe of up to ~750 ms, and again ~1.1 s later. Changes
/// closer together than this leave python-zeroconf and mdns-sd browsers
/// holding both TXTs, and they may go on showing the old one. So changes
/// are coalesced: at most one per interval, the latest value wins.
pub const MIN_TXT_INTERVAL: Duration = Duration::from_millis(3000);

/// What to advertise.
#[derive(Debug, Clone)]
pub struct AdvertiseConfig {
    pub interfaces: InterfaceChoice,
    /// The port the rendezvous listens on.
    pub port: u16,
    /// The rendezvous base path (`/` for the bundled rendezvous).
    pub base_path: String,
    /// The host's display name: the instance name and TXT `name`.
    pub name: String,
    /// The open session's code, advertised only when the host chose an open
    /// session; `None` keeps the code private.
    pub code: Option<String>,
    /// `(connected, max)` peers.
    pub peers: (usize, usize),
}

/// A running advertisement. Withdrawn (goodbye packets, then the daemon
/// stops) by [`stop`](Self::stop) or on drop.
pub struct Advertiser {
    /// `None` once withdrawn.
    daemon: Option<ServiceDaemon>,
    advert: Advert,
    interfaces: InterfaceChoice,
    port: u16,
    hostname: String,
    /// The full name as first registered. The daemon keys the service by it
    /// even after probing renamed it, so updates and unregister use it.
    fullname: String,
    /// The name other machines see, after any rename by conflict resolution.
    announced_name: String,
    monitor: Receiver<DaemonEvent>,
    updates: Arc<Updates>,
    updater: Option<JoinHandle<()>>,
}

/// The newest TXT waiting to be registered, handed from the API to the
/// updater thread. One slot: an update replaces any still waiting.
struct Updates {
    state: Mutex<UpdateState>,
    wake: Condvar,
}

struct UpdateState {
    next: Option<ServiceInfo>,
    last: Instant,
    stop: bool,
}

impl Updates {
    fn lock(&self) -> MutexGuard<'_, UpdateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Registers queued updates no closer together than [`MIN_TXT_INTERVAL`].
fn run_updates(daemon: ServiceDaemon, updates: &Updates) {
    loop {
        let info = {
            let mut st = updates.lock();
            loop {
                if st.stop {
                    return;
                }
                if st.next.is_none() {
                    st = updates.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                    continue;
                }
                let due = st.last + MIN_TXT_INTERVAL;
                let now = Instant::now();
                if now >= due {
                    st.last = now;
                    break st.next.take();
                }
                st = updates
                    .wake
                    .wait_timeout(st, due - now)
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        };
        if let Some(info) = info {
            if let Err(e) = daemon.register(info) {
                tracing::warn!(error = %e, "re-announcing the jam's TXT");
            }
        }
    }
}

impl std::fmt::Debug for Advertiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advertiser")
            .field("fullname", &self.fullname)
            .field("announced_name", &self.announced_name)
            .field("hostname", &self.hostname)
            .field("port", &self.port)
            .field("advert", &self.advert)
            .field("running", &self.daemon.is_some())
            .finish_non_exhaustive()
    }
}

/// A host name of our own (`midi-rdv-1a2b3c4d.local.`). Not the machine's
/// name: two copies of the app on one machine, or a machine whose name has
/// spaces, must still each get valid, distinct A records.
fn random_hostname() -> String {
    let mut h = RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("midi-rdv-{:08x}.local.", h.finish() as u32)
}

impl Advertiser {
    /// Starts a daemon on the chosen interfaces and registers the jam. The
    /// announcement goes out after the mDNS probe (about a second); a name
    /// already taken on the link gets a ` (2)` suffix from the mDNS layer.
    pub fn start(config: AdvertiseConfig) -> Result<Advertiser, LanError> {
        let AdvertiseConfig {
            interfaces,
            port,
            base_path,
            name,
            code,
            peers,
        } = config;
        if port == 0 {
            return Err(LanError::InvalidConfig("port 0".into()));
        }
        let advert = Advert::new(&name, &base_path, code, peers)?;
        let daemon = new_daemon(&interfaces)?;
        let monitor = match daemon.monitor() {
            Ok(m) => m,
            Err(e) => {
                let _ = daemon.shutdown();
                return Err(e.into());
            }
        };
        let updates = Arc::new(Updates {
            state: Mutex::new(UpdateState {
                next: None,
                last: Instant::now(),
                stop: false,
            }),
            wake: Condvar::new(),
        });
        // From here on, drop withdraws and shuts the daemon down on any error.
        let mut this = Advertiser {
            daemon: Some(daemon.clone()),
            fullname: String::new(),
            announced_name: String::new(),
            advert,
            interfaces,
            port,
            hostname: random_hostname(),
            monitor,
            updates: Arc::clone(&updates),
            updater: None,
        };
        let info = this.service_info()?;
        this.fullname = info.get_fullname().to_string();
        this.announced_name = this.fullname.clone();
        daemon.register(info)?;
        let updater = std::thread::Builder::new()
            .name("lan-advertise".into())
            .spawn(move || run_updates(daemon, &updates))
            .map_err(LanError::Thread)?;
        this.updater = Some(updater);
        Ok(this)
    }

    fn service_info(&self) -> Result<ServiceInfo, LanError> {
        let txt = self.advert.txt();
        let mut info = ServiceInfo::new(
            SERVICE_TYPE,
            &self.advert.instance,
            &self.hostname,
            (),
            self.port,
            &txt[..],
        )?
        // Addresses come from the chosen interfaces only, and follow them
        // when DHCP hands out a new one.
        .enable_addr_auto();
        info.set_interfaces(self.interfaces.if_kinds());
        Ok(info)
    }

    /// Queues a re-registration with the current TXT. The daemon replaces
    /// the record and announces it (after a probe of under a second), at
    /// most once per [`MIN_TXT_INTERVAL`].
    fn reannounce(&self) -> Result<(), LanError> {
        if self.daemon.is_none() {
            return Err(LanError::Stopped);
        }
        let info = self.service_info()?;
        self.updates.lock().next = Some(info);
        self.updates.wake.notify_one();
        Ok(())
    }

    /// Updates TXT `peers`. Does nothing when the numbers did not change, so
    /// callers may call it on every registry event. Returns at once; the
    /// change reaches the LAN within [`MIN_TXT_INTERVAL`] plus about a second.
    pub fn set_peers(&mut self, connected: usize, max: usize) -> Result<(), LanError> {
        if self.daemon.is_none() {
            return Err(LanError::Stopped);
        }
        if self.advert.peers == (connected, max) {
            return Ok(());
        }
        self.advert.peers = (connected, max);
        self.reannounce()
    }

    /// Shows (`Some`) or hides (`None`) TXT `code`: only an open session's
    /// code is advertised.
    pub fn set_open_code(&mut self, code: Option<String>) -> Result<(), LanError> {
        if self.daemon.is_none() {
            return Err(LanError::Stopped);
        }
        let code = check_code(code)?;
        if self.advert.code == code {
            return Ok(());
        }
        self.advert.code = code;
        self.reannounce()
    }

    /// The full instance name other machines see, including a suffix the
    /// mDNS layer added to resolve a conflict.
    pub fn instance_name(&mut self) -> &str {
        while let Ok(ev) = self.monitor.try_recv() {
            if let DaemonEvent::NameChange(c) = ev {
                if c.rr_type == RRType::SRV && c.original.eq_ignore_ascii_case(&self.fullname) {
                    self.announced_name = c.new_name;
                }
            }
        }
        &self.announced_name
    }

    /// The TXT pairs currently advertised.
    pub fn txt(&self) -> Vec<(String, String)> {
        self.advert.txt()
    }

    /// Withdraws the advertisement (goodbye packets on every interface) and
    /// stops the daemon. Blocks for about 150 ms.
    pub fn stop(mut self) -> Result<(), LanError> {
        self.withdraw()
    }

    fn withdraw(&mut self) -> Result<(), LanError> {
        let Some(daemon) = self.daemon.take() else {
            return Err(LanError::Stopped);
        };
        // An update still waiting is moot: the service is going away.
        self.updates.lock().stop = true;
        self.updates.wake.notify_one();
        if let Some(t) = self.updater.take() {
            let _ = t.join();
        }
        let unregistered = daemon.unregister(&self.fullname).map(|rx| {
            match rx.recv_timeout(DAEMON_REPLY_TIMEOUT) {
                Ok(UnregisterStatus::OK) => std::thread::sleep(GOODBYE_REPEAT_WAIT),
                Ok(UnregisterStatus::NotFound) => {
                    tracing::warn!(name = %self.fullname, "mDNS service was not registered")
                }
                Err(e) => tracing::warn!(error = %e, "no reply to mDNS unregister"),
            }
        });
        // Shut down even when unregister failed: a daemon left running would
        // keep answering queries for the jam.
        let shutdown = daemon.shutdown().map(|rx| {
            if let Err(e) = rx.recv_timeout(DAEMON_REPLY_TIMEOUT) {
                tracing::warn!(error = %e, "no reply to mDNS shutdown");
            }
        });
        unregistered?;
        shutdown?;
        Ok(())
    }
}

impl Drop for Advertiser {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            if let Err(e) = self.withdraw() {
                tracing::warn!(error = %e, "withdrawing the LAN advertisement");
            }
        }
    }
}
