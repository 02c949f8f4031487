//! Which interfaces mDNS may use, and how that choice is applied to a daemon.

use mdns_sd::{IfKind, IfPredicate, ServiceDaemon};

use crate::LanError;

/// The interfaces an [`Advertiser`](crate::Advertiser) or
/// [`Browser`](crate::Browser) sends and listens on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InterfaceChoice {
    /// Exactly these interfaces, by name (`"eth0"`, `"wlan0"`, or `"lo"` for a
    /// one-machine test). This is what settings and tests use.
    Named(Vec<String>),
    /// The machine's physical LAN interfaces, by a heuristic: every interface
    /// except loopback, point-to-point links (most VPNs) and interfaces whose
    /// name starts with one of [`VIRTUAL_INTERFACE_PREFIXES`]. The heuristic
    /// is re-applied by the daemon when interfaces come and go.
    ///
    /// Tests must not use this: on the development machines the real
    /// interface must never see mDNS.
    DefaultLan,
}

/// Name prefixes of VPN, container and virtual-machine adapters, which
/// [`InterfaceChoice::DefaultLan`] skips. A jam advertised there would reach
/// a VPN's far side, a container network or a VM host-only network, none of
/// which is "the LAN" to a musician. Linux (`tun`, `tap`, `wg`, `docker`,
/// `veth`, `virbr`, `br-`, `vboxnet`, `zt`, `tailscale`), macOS (`utun`,
/// `awdl`, `llw`, `bridge`, `vmnet`, `ipsec`, `ppp`) names; Windows adapters
/// have opaque names and are only filtered by the loopback and
/// point-to-point checks.
pub const VIRTUAL_INTERFACE_PREFIXES: &[&str] = &[
    "tun",
    "tap",
    "wg",
    "docker",
    "veth",
    "virbr",
    "br-",
    "vmnet",
    "vboxnet",
    "utun",
    "zt",
    "tailscale",
    "awdl",
    "llw",
    "bridge",
    "ipsec",
    "ppp",
    "lxc",
    "lxd",
    "cni",
    "flannel",
    "cali",
    "kube",
    "podman",
    "vnet",
];

/// True when `name` looks like a VPN or virtual adapter (see
/// [`VIRTUAL_INTERFACE_PREFIXES`]).
pub fn is_virtual_interface_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    VIRTUAL_INTERFACE_PREFIXES
        .iter()
        .any(|p| lower.starts_with(p))
}

impl InterfaceChoice {
    /// Whether an interface (by name, and whether it is loopback) is one
    /// of this choice, for the addresses read directly from the system
    /// (MidiEditor's datagram, who may connect to its TCP port). The mDNS
    /// daemon applies the same choice through [`if_kinds`](Self::if_kinds).
    pub fn includes(&self, name: &str, is_loopback: bool) -> bool {
        match self {
            InterfaceChoice::Named(names) => names.iter().any(|n| n == name),
            InterfaceChoice::DefaultLan => !is_loopback && !is_virtual_interface_name(name),
        }
    }

    /// Checks the choice before any daemon starts, so a bad setting is an
    /// error and never a silent "advertise nowhere".
    pub(crate) fn validate(&self) -> Result<(), LanError> {
        match self {
            InterfaceChoice::Named(names) => {
                if names.is_empty() {
                    return Err(LanError::InvalidConfig("no interface named".into()));
                }
                if let Some(bad) = names
                    .iter()
                    .find(|n| n.is_empty() || n.len() > 64 || n.chars().any(char::is_whitespace))
                {
                    return Err(LanError::InvalidConfig(format!(
                        "bad interface name {bad:?}"
                    )));
                }
                Ok(())
            }
            InterfaceChoice::DefaultLan => Ok(()),
        }
    }

    /// The `IfKind`s to enable, after everything has been disabled.
    pub(crate) fn if_kinds(&self) -> Vec<IfKind> {
        match self {
            InterfaceChoice::Named(names) => {
                names.iter().map(|n| IfKind::Name(n.clone())).collect()
            }
            InterfaceChoice::DefaultLan => vec![IfKind::Predicate(IfPredicate::new(|intf| {
                !intf.is_loopback() && !intf.is_p2p() && !is_virtual_interface_name(&intf.name)
            }))],
        }
    }

    /// Restricts a freshly created daemon to this choice. Must run right
    /// after `ServiceDaemon::new()`: the daemon starts with every interface
    /// (loopback included) enabled, and its commands apply in order, so
    /// these land before any browse or register.
    pub(crate) fn apply(&self, daemon: &ServiceDaemon) -> Result<(), LanError> {
        daemon.disable_interface(IfKind::All)?;
        // Loopback has its own default-on selection; disable it explicitly.
        daemon.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])?;
        daemon.enable_interface(self.if_kinds())?;
        Ok(())
    }
}

/// Creates a daemon confined to `choice`, shutting it down again if the
/// restriction cannot be applied (so it never runs unrestricted).
pub(crate) fn new_daemon(choice: &InterfaceChoice) -> Result<ServiceDaemon, LanError> {
    choice.validate()?;
    let daemon = ServiceDaemon::new()?;
    if let Err(e) = choice.apply(&daemon) {
        let _ = daemon.shutdown();
        return Err(e);
    }
    Ok(daemon)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_names_are_recognised() {
        for n in [
            "tun0",
            "tap1",
            "wg0",
            "docker0",
            "veth12ab",
            "virbr0",
            "br-1a2b",
            "vmnet8",
            "utun3",
            "ztabc",
            "Tailscale0",
        ] {
            assert!(is_virtual_interface_name(n), "{n}");
        }
        for n in ["eth0", "enp3s0", "wlan0", "wlp2s0", "en0", "eno1"] {
            assert!(!is_virtual_interface_name(n), "{n}");
        }
    }

    #[test]
    fn empty_or_bad_named_lists_are_refused() {
        assert!(InterfaceChoice::Named(vec![]).validate().is_err());
        assert!(InterfaceChoice::Named(vec![String::new()])
            .validate()
            .is_err());
        assert!(InterfaceChoice::Named(vec!["eth 0".into()])
            .validate()
            .is_err());
        assert!(InterfaceChoice::Named(vec!["eth0".into()])
            .validate()
            .is_ok());
        assert!(InterfaceChoice::DefaultLan.validate().is_ok());
    }
}
