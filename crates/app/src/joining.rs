//! Joining someone else's jam from the app: what the Join view asks for
//! (a jam found on the LAN, or a typed address, and maybe a code) turned
//! into the jam crate's joiner configuration, with this app's settings.

use std::net::IpAddr;
use std::time::Duration;

use jam::joiner::JoinConfig;

use crate::discover::FoundJam;
use crate::settings::{ice_rows_to_servers, Settings};

/// Where to join.
pub enum JoinTarget<'a> {
    /// A jam from the LAN list (its code comes from the advert when open).
    Found(&'a FoundJam),
    /// An address as typed: `10.0.0.5`, `10.0.0.5:8787`, `http://host:port/path`.
    Typed(&'a str),
}

/// The joiner's configuration; a bad address or STUN/TURN list is an error
/// in words.
pub fn join_config(
    settings: &Settings,
    target: JoinTarget<'_>,
    code: Option<String>,
    bind_ips: &[IpAddr],
) -> Result<JoinConfig, String> {
    let code = code
        .map(|c| c.trim().to_ascii_uppercase())
        .filter(|c| !c.is_empty());
    let name = settings.display_name.trim();
    let mut cfg = match target {
        JoinTarget::Found(jam) => jam.join_config(code, name),
        JoinTarget::Typed(addr) => {
            let url = crate::discover::parse_address(addr).map_err(|e| e.to_string())?;
            JoinConfig::new(url, code, name)
        }
    };
    cfg.rtc.ice_servers = ice_rows_to_servers(&settings.ice_servers).map_err(|e| e.message)?;
    cfg.rtc.bind_ips = bind_ips.to_vec();
    cfg.rtc.gather_timeout = Duration::from_millis(settings.gather_timeout_ms.clamp(100, 30_000));
    Ok(cfg)
}
