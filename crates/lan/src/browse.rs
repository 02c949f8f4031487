//! Watching the LAN for hosted jams.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use mdns_sd::{ServiceDaemon, ServiceEvent};

use crate::iface::new_daemon;
use crate::{InterfaceChoice, JamInfo, LanError, SERVICE_TYPE};

/// How often the forwarding thread looks at its stop flag while idle.
const STOP_POLL: Duration = Duration::from_millis(100);

/// What to browse and how much to keep.
#[derive(Debug, Clone)]
pub struct BrowseConfig {
    pub interfaces: InterfaceChoice,
    /// Jams remembered at once; announcements of more are ignored until some
    /// vanish. A LAN with more jams than this is either a test or an attack.
    pub max_jams: usize,
    /// Events queued for the consumer. When the consumer falls behind, newer
    /// events are dropped (and counted) rather than blocking the mDNS daemon;
    /// [`Browser::jams`] stays exact regardless.
    pub channel_capacity: usize,
}

impl BrowseConfig {
    pub fn new(interfaces: InterfaceChoice) -> BrowseConfig {
        BrowseConfig {
            interfaces,
            max_jams: 64,
            channel_capacity: 64,
        }
    }
}

/// A change in the jams visible on the LAN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrowseEvent {
    /// A jam appeared, or one already known changed (peers, code, addresses):
    /// replace any entry with the same [`JamInfo::instance`].
    Found(JamInfo),
    /// The jam with this [`JamInfo::instance`] withdrew or expired.
    Lost(String),
}

#[derive(Default)]
struct Shared {
    known: Mutex<BTreeMap<String, JamInfo>>,
    dropped: AtomicU64,
    stop: AtomicBool,
}

impl Shared {
    /// The map stays usable even if a thread panicked while holding it; the
    /// map itself is always left consistent.
    fn known(&self) -> MutexGuard<'_, BTreeMap<String, JamInfo>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running browse. Stops on [`stop`](Self::stop) or drop.
pub struct Browser {
    daemon: Option<ServiceDaemon>,
    events: Receiver<BrowseEvent>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("jams", &self.shared.known().len())
            .field("running", &self.daemon.is_some())
            .finish()
    }
}

impl Browser {
    /// Starts a daemon on the chosen interfaces and browses for jams. Jams
    /// already on the link are usually reported within 100 ms.
    pub fn start(config: BrowseConfig) -> Result<Browser, LanError> {
        if config.max_jams == 0 || config.channel_capacity == 0 {
            return Err(LanError::InvalidConfig(
                "max_jams and channel_capacity must be > 0".into(),
            ));
        }
        let daemon = new_daemon(&config.interfaces)?;
        let source = match daemon.browse(SERVICE_TYPE) {
            Ok(rx) => rx,
            Err(e) => {
                let _ = daemon.shutdown();
                return Err(e.into());
            }
        };
        let (tx, events) = sync_channel(config.channel_capacity);
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        let max_jams = config.max_jams;
        let spawned = std::thread::Builder::new()
            .name("lan-browse".into())
            .spawn(move || forward(source, tx, &thread_shared, max_jams));
        let thread = match spawned {
            Ok(t) => t,
            Err(e) => {
                let _ = daemon.shutdown();
                return Err(LanError::Thread(e));
            }
        };
        Ok(Browser {
            daemon: Some(daemon),
            events,
            shared,
            thread: Some(thread),
        })
    }

    /// The next event, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<BrowseEvent> {
        self.events.recv_timeout(timeout).ok()
    }

    /// The next event if one is queued.
    pub fn try_recv(&self) -> Option<BrowseEvent> {
        self.events.try_recv().ok()
    }

    /// The event queue itself, for a consumer thread that blocks on it. It
    /// disconnects when the browser stops.
    pub fn events(&self) -> &Receiver<BrowseEvent> {
        &self.events
    }

    /// The jams known now, sorted by instance name. Exact even when events
    /// were dropped.
    pub fn jams(&self) -> Vec<JamInfo> {
        self.shared.known().values().cloned().collect()
    }

    /// Events dropped because the consumer did not keep up.
    pub fn dropped_events(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Stops browsing and the daemon.
    pub fn stop(mut self) -> Result<(), LanError> {
        self.halt()
    }

    fn halt(&mut self) -> Result<(), LanError> {
        let Some(daemon) = self.daemon.take() else {
            return Err(LanError::Stopped);
        };
        self.shared.stop.store(true, Ordering::Relaxed);
        let shutdown = daemon.shutdown();
        if let Some(t) = self.thread.take() {
            // The thread notices the flag within STOP_POLL.
            let _ = t.join();
        }
        shutdown?;
        Ok(())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.daemon.is_some() {
            if let Err(e) = self.halt() {
                tracing::warn!(error = %e, "stopping the LAN browser");
            }
        }
    }
}

/// Turns the daemon's events into [`BrowseEvent`]s until stopped or the
/// daemon goes away.
fn forward(
    source: mdns_sd::Receiver<ServiceEvent>,
    tx: SyncSender<BrowseEvent>,
    shared: &Shared,
    max_jams: usize,
) {
    let send = |ev: BrowseEvent| {
        if let Err(TrySendError::Full(_)) = tx.try_send(ev) {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    };
    while !shared.stop.load(Ordering::Relaxed) {
        let ev = match source.recv_timeout(STOP_POLL) {
            Ok(ev) => ev,
            Err(mdns_sd::RecvTimeoutError::Timeout) => continue,
            Err(mdns_sd::RecvTimeoutError::Disconnected) => break,
        };
        match ev {
            ServiceEvent::ServiceResolved(r) => {
                let fullname = r.get_fullname().to_string();
                let addresses = r.get_addresses().iter().map(|a| a.to_ip_addr()).collect();
                let txt = r.get_properties().clone().into_property_map_str();
                let mut known = shared.known();
                match JamInfo::from_txt(&fullname, addresses, r.get_port(), &txt) {
                    Ok(info) => {
                        if known.get(&fullname) == Some(&info) {
                            continue;
                        }
                        if !known.contains_key(&fullname) && known.len() >= max_jams {
                            tracing::warn!(name = %fullname, max_jams, "ignoring jam: list full");
                            continue;
                        }
                        known.insert(fullname, info.clone());
                        drop(known);
                        send(BrowseEvent::Found(info));
                    }
                    Err(e) => {
                        tracing::debug!(name = %fullname, error = %e, "not a jam");
                        // A jam whose TXT turned unusable is no longer joinable.
                        if known.remove(&fullname).is_some() {
                            drop(known);
                            send(BrowseEvent::Lost(fullname));
                        }
                    }
                }
            }
            ServiceEvent::ServiceRemoved(_, fullname) => {
                let removed = shared.known().remove(&fullname).is_some();
                if removed {
                    send(BrowseEvent::Lost(fullname));
                }
            }
            _ => {}
        }
    }
}
