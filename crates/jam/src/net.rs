//! The addresses a host tells people to use.

use std::net::{IpAddr, SocketAddr};

/// The rendezvous URLs to share for a server bound to `bound`: the bound
/// address itself when it is specific, otherwise one URL per non-loopback
/// interface address (IPv4 first, since MidiEditor users type them), with
/// loopback as the last resort on a machine with no network.
pub fn share_urls(bound: SocketAddr, base_path: &str) -> Vec<String> {
    let url = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{}{base_path}", bound.port()),
        IpAddr::V6(v6) => format!("http://[{v6}]:{}{base_path}", bound.port()),
    };
    if !bound.ip().is_unspecified() {
        return vec![url(bound.ip())];
    }
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| !ip.is_loopback())
        // Link-local IPv6 needs a zone id no one can type.
        .filter(|ip| match ip {
            IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80 && bound.ip().is_ipv6(),
            IpAddr::V4(_) => true,
        })
        .collect();
    ips.sort_by_key(|ip| (ip.is_ipv6(), *ip));
    ips.dedup();
    if ips.is_empty() {
        ips.push(if bound.is_ipv6() {
            IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        } else {
            IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        });
    }
    ips.into_iter().map(url).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_specific_bind_address_is_the_url() {
        let u = share_urls("127.0.0.1:8787".parse().unwrap(), "");
        assert_eq!(u, vec!["http://127.0.0.1:8787"]);
        let u = share_urls("10.1.2.3:80".parse().unwrap(), "/rdv");
        assert_eq!(u, vec!["http://10.1.2.3:80/rdv"]);
    }

    #[test]
    fn a_wildcard_bind_lists_at_least_one_typable_url() {
        let u = share_urls("0.0.0.0:8787".parse().unwrap(), "");
        assert!(!u.is_empty());
        for url in &u {
            assert!(
                url.starts_with("http://") && url.ends_with(":8787"),
                "{url}"
            );
            assert!(!url.contains("fe80"), "{url}");
        }
    }
}
