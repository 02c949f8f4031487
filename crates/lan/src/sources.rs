//! Who may open a connection to what a jam announces on the LAN.
//!
//! MidiEditor's LAN Live joiner needs no code at the TCP port: the code only
//! picks the datagram, and whoever connects is in. The datagram goes out on
//! the chosen interfaces only, so the people meant to join are the ones on
//! those interfaces' subnets. A listener open on every address would also
//! let in anyone who reaches the machine another way (a VPN, a second
//! network, a port scan), skipping the code a protected jam asks of its
//! WebRTC joiners. [`LanSources`] says whether a source address is on one
//! of the chosen subnets (or on this machine).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::InterfaceChoice;

/// How long a reading of the machine's interfaces is trusted: a Wi-Fi that
/// connects after the jam started is admitted within this, and a flood of
/// connections costs one interface listing per period, not one each.
const REFRESH: Duration = Duration::from_secs(1);

/// The IPv4 subnets of the chosen interfaces, read again at most once per
/// [`REFRESH`].
pub struct LanSources {
    choice: InterfaceChoice,
    nets: Mutex<Option<(Instant, Vec<Subnet>)>>,
}

/// One interface address and its mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Subnet {
    ip: Ipv4Addr,
    mask: Ipv4Addr,
}

impl Subnet {
    fn contains(&self, ip: Ipv4Addr) -> bool {
        let m = u32::from(self.mask);
        u32::from(self.ip) & m == u32::from(ip) & m
    }
}

impl LanSources {
    /// The subnets of `choice` (read when first asked).
    pub fn new(choice: InterfaceChoice) -> LanSources {
        LanSources {
            choice,
            nets: Mutex::new(None),
        }
    }

    /// True when `ip` may connect: this machine (loopback), or an address
    /// on the subnet of a chosen interface. IPv4 only beyond loopback:
    /// MidiEditor's LAN Live is IPv4 multicast, and its joiner connects to
    /// the IPv4 address the datagram came from (an IPv4-mapped IPv6 source,
    /// on a dual-stack listener, counts as the IPv4 address it maps).
    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        if ip.is_loopback() {
            return true;
        }
        let IpAddr::V4(v4) = ip else { return false };
        let mut nets = self.nets.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = nets.as_ref().is_some_and(|(at, _)| at.elapsed() < REFRESH);
        if !fresh {
            *nets = Some((Instant::now(), subnets(&self.choice)));
        }
        nets.as_ref()
            .is_some_and(|(_, list)| list.iter().any(|n| n.contains(v4)))
    }
}

/// The IPv4 subnets of the chosen interfaces now (the same selection as the
/// datagram's [`interface_addrs`](crate::midieditor_lan::interface_addrs)).
fn subnets(choice: &InterfaceChoice) -> Vec<Subnet> {
    let Ok(all) = if_addrs::get_if_addrs() else {
        return Vec::new();
    };
    all.into_iter()
        .filter(|i| choice.includes(&i.name, i.is_loopback()))
        .filter_map(|i| match i.addr {
            if_addrs::IfAddr::V4(a) => Some(Subnet {
                ip: a.ip,
                mask: a.netmask,
            }),
            if_addrs::IfAddr::V6(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(ip: &str, mask: &str) -> Subnet {
        Subnet {
            ip: ip.parse().unwrap(),
            mask: mask.parse().unwrap(),
        }
    }

    #[test]
    fn a_subnet_holds_its_own_addresses_and_no_others() {
        let n = net("10.77.0.1", "255.255.255.0");
        assert!(n.contains("10.77.0.2".parse().unwrap()));
        assert!(n.contains("10.77.0.254".parse().unwrap()));
        assert!(!n.contains("10.77.1.2".parse().unwrap()));
        assert!(!n.contains("10.78.0.2".parse().unwrap()));
        let host = net("192.168.1.5", "255.255.255.255");
        assert!(host.contains("192.168.1.5".parse().unwrap()));
        assert!(!host.contains("192.168.1.6".parse().unwrap()));
    }

    #[test]
    fn loopback_is_admitted_whatever_the_choice_and_other_ipv6_is_not() {
        // An interface that does not exist: no subnet at all.
        let s = LanSources::new(InterfaceChoice::Named(vec!["no-such-if0".into()]));
        assert!(s.admits("127.0.0.1".parse().unwrap()));
        assert!(s.admits("::1".parse().unwrap()));
        assert!(s.admits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!s.admits("10.0.0.2".parse().unwrap()));
        assert!(!s.admits("fe80::1".parse().unwrap()));
        assert!(!s.admits("2001:db8::1".parse().unwrap()));
    }
}
