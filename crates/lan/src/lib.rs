//! LAN advertisement and discovery of hosted jams over mDNS / DNS-SD
//! (`docs/spec/PROTOCOL.md`, "LAN advertisement").
//!
//! - [`Advertiser`] announces the rendezvous a host is serving as
//!   `_midi-rdv._tcp.local.` and withdraws it (goodbye packets) on stop or drop.
//! - [`Browser`] watches for such announcements and reports [`BrowseEvent`]s.
//! - [`midieditor_lan`]: MidiEditor's own LAN Live discovery (UDP multicast
//!   datagrams), announced and heard on the same interface choice.
//! - [`LanSources`] says whether a connecting address is on a chosen
//!   interface's subnet (who may open MidiEditor's LAN Live TCP port).
//! - [`InterfaceChoice`] says which network interfaces either may use. There
//!   is no "all interfaces" option on purpose: mDNS on a VPN or container
//!   bridge leaks a jam to places the user did not mean, and on the
//!   development machines any interface but a test's own is off limits.
//!
//! Both sides run [`mdns_sd`]'s daemon, which is a plain thread with no async
//! runtime. It lives in the network namespace of the thread that created it,
//! which matters for tests (they run it in a child process inside a namespace
//! they made).
//!
//! This crate depends on no other crate of the workspace.

mod advertise;
mod browse;
mod iface;
pub mod midieditor_lan;
mod sources;
mod txt;

pub use advertise::{AdvertiseConfig, Advertiser, MIN_TXT_INTERVAL};
pub use browse::{BrowseConfig, BrowseEvent, Browser};
pub use iface::{is_virtual_interface_name, InterfaceChoice, VIRTUAL_INTERFACE_PREFIXES};
pub use sources::LanSources;
pub use txt::{JamInfo, TxtError, PROTO, VERSION};

/// The DNS-SD service type of a hosted jam's rendezvous.
pub const SERVICE_TYPE: &str = "_midi-rdv._tcp.local.";

/// Everything that can go wrong starting, changing or stopping an
/// advertisement or a browse.
#[derive(Debug, thiserror::Error)]
pub enum LanError {
    /// The configuration cannot be advertised as given (an empty interface
    /// list, a code or path that does not fit the TXT record, ...).
    #[error("invalid LAN configuration: {0}")]
    InvalidConfig(String),
    /// The mDNS daemon refused a command or could not start.
    #[error("mDNS daemon: {0}")]
    Mdns(#[from] mdns_sd::Error),
    /// The OS refused a thread for the daemon's helper.
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The advertisement or browse was already stopped.
    #[error("already stopped")]
    Stopped,
}
