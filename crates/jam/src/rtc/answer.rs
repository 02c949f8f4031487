//! From a joiner's offer to our answer: [`answer_offer`] checks the offer,
//! picks our DTLS role and the sockets to bind, builds the connection with
//! our settings (retrying without mDNS when its socket cannot open), and
//! returns the answer once gathering is done or capped. What lives on after
//! that is in `link`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ::rtc::ice::mdns::MulticastDnsMode;
use ::rtc::peer_connection::configuration::setting_engine::SctpMaxMessageSize;
use ::rtc::peer_connection::transport::RTCDtlsRole;
use ::rtc::shared::error::Error as WebrtcError;
use tokio::sync::{mpsc, watch, OnceCell};
use tracing::{debug, warn};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, RTCConfigurationBuilder, RTCSessionDescription,
    SettingEngineBuilder,
};

use super::early_dtls::{DtlsGate, GatedRuntime};
use super::link::{forward_states, Core, Forwarding, Handler, LinkInner};
use super::{
    to_webrtc_ice_server, Answered, LinkState, PeerLink, RtcConfig, RtcError,
    EVENT_CHANNEL_CAPACITY, ICE_CHECK_INTERVAL, MAX_MESSAGE_SIZE, SEND_BUFFER_LIMIT,
};

/// Answers one joiner's offer: builds a connection, applies the offer,
/// creates the answer, waits for ICE gathering to complete or for
/// [`RtcConfig::gather_timeout`], and returns the complete answer SDP.
///
/// Must be called inside a Tokio runtime. The work runs in a spawned task, so
/// a panic inside webrtc-rs on a hostile offer becomes
/// [`RtcError::Internal`] instead of unwinding into the caller, and dropping
/// this future midway still cleans the connection up.
pub async fn answer_offer(offer_sdp: &str, cfg: &RtcConfig) -> Result<Answered, RtcError> {
    let (offer_sdp, cfg) = (offer_sdp.to_owned(), cfg.clone());
    match tokio::spawn(answer(offer_sdp, cfg)).await {
        Ok(result) => result,
        Err(err) if err.is_panic() => {
            let payload = err.into_panic();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic with a non-string payload".to_owned());
            Err(RtcError::Internal(message))
        }
        Err(err) => Err(RtcError::Internal(err.to_string())),
    }
}

/// When a connection last failed to open its mDNS socket, so the joiners
/// right after it do not pay for the failed attempt again. The failure is
/// not taken as permanent: on Linux it usually means no route to the mDNS
/// group yet (a network still coming up), so it is retried after
/// [`MDNS_RETRY_AFTER`].
static MDNS_FAILED_AT: Mutex<Option<Instant>> = Mutex::new(None);
const MDNS_RETRY_AFTER: Duration = Duration::from_secs(60);

fn mdns_recently_failed() -> bool {
    MDNS_FAILED_AT
        .lock()
        .map(|t| t.is_some_and(|at| at.elapsed() < MDNS_RETRY_AFTER))
        .unwrap_or(false)
}

/// Builds one connection with our settings; `mdns` chooses whether remote
/// `.local` candidates are resolved (we never gather them).
async fn build_connection(
    cfg: &RtcConfig,
    dtls_role: RTCDtlsRole,
    udp_addrs: &[SocketAddr],
    core: &Arc<Core>,
    mdns: bool,
) -> Result<impl PeerConnection + 'static, WebrtcError> {
    let setting_engine = SettingEngineBuilder::new()
        // Never gather `.local` candidates; resolve the remote ones only on
        // request, since that opens a multicast socket.
        .with_multicast_dns_mode(if mdns {
            MulticastDnsMode::QueryOnly
        } else {
            MulticastDnsMode::Disabled
        })
        // We choose the bound addresses ourselves; loopback ones are only
        // there when listed explicitly, and then they are wanted.
        .with_include_loopback_candidate(true)
        .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), None)
        .with_answering_dtls_role(dtls_role)
        .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(MAX_MESSAGE_SIZE as u32))
        .build();
    // Our own runtime, only to keep a joiner's DTLS flight that arrives before
    // our ICE agent has selected a pair (see `early_dtls`).
    let dtls_gate = Arc::new(DtlsGate::default());
    let configuration = RTCConfigurationBuilder::new()
        .with_ice_servers(cfg.ice_servers.iter().map(to_webrtc_ice_server).collect())
        .build();

    PeerConnectionBuilder::new()
        .with_configuration(configuration)
        .with_setting_engine(setting_engine)
        .with_handler(Arc::new(Handler {
            core: core.clone(),
            dtls_gate: dtls_gate.clone(),
        }))
        .with_runtime(Arc::new(GatedRuntime::new(dtls_gate)))
        .with_udp_addrs(udp_addrs.to_vec())
        .with_data_channel_send_buffer_limit(SEND_BUFFER_LIMIT)
        .build()
        .await
}

async fn answer(offer_sdp: String, cfg: RtcConfig) -> Result<Answered, RtcError> {
    let (offer, dtls_role) = parse_offer(offer_sdp)?;
    let udp_addrs = bind_addrs(&cfg.bind_ips)?;

    let (events_tx, events_rx) = mpsc::channel(EVENT_CHANNEL_CAPACITY);
    let (alive_tx, alive_rx) = mpsc::channel(1);
    let (state_tx, state_rx) = watch::channel(LinkState::New);
    let (gathered_tx, mut gathered_rx) = watch::channel(false);
    let core = Arc::new(Core {
        forwarding: Mutex::new(Some(Forwarding {
            events: events_tx.clone(),
            _alive: alive_tx,
        })),
        channels: Mutex::new(HashMap::new()),
        state_tx,
        gathered_tx,
        closed: AtomicBool::new(false),
        close_once: OnceCell::new(),
        pc: OnceLock::new(),
    });

    // Resolving `.local` candidates needs a multicast socket, which some
    // hosts cannot open (no multicast-capable interface, a sandbox). Then we
    // answer without it rather than refuse every joiner: raw-IP candidates
    // (MidiEditor's, and browsers' with a routable address) still work.
    let want_mdns = cfg.resolve_mdns && !mdns_recently_failed();
    let pc = match build_connection(&cfg, dtls_role, &udp_addrs, &core, want_mdns).await {
        Ok(pc) => pc,
        Err(err) if want_mdns => {
            if let Ok(mut at) = MDNS_FAILED_AT.lock() {
                *at = Some(Instant::now());
            }
            warn!("cannot open the mDNS socket ({err}); .local candidates will not be resolved");
            build_connection(&cfg, dtls_role, &udp_addrs, &core, false)
                .await
                .map_err(|err| RtcError::Setup(err.to_string()))?
        }
        Err(err) => return Err(RtcError::Setup(err.to_string())),
    };
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    let _ = core.pc.set(Arc::downgrade(&pc));
    // From here on the link owns the connection: any early return drops it,
    // and dropping it closes the connection.
    let link = PeerLink {
        inner: Arc::new(LinkInner {
            core: core.clone(),
            pc: pc.clone(),
        }),
    };

    pc.set_remote_description(offer)
        .await
        .map_err(|err| RtcError::InvalidOffer(err.to_string()))?;
    let answer = pc
        .create_answer(None)
        .await
        .map_err(|err| RtcError::Setup(format!("creating the answer: {err}")))?;
    pc.set_local_description(answer)
        .await
        .map_err(|err| RtcError::Setup(format!("applying the answer: {err}")))?;

    let gathered = tokio::time::timeout(cfg.gather_timeout, gathered_rx.wait_for(|done| *done))
        .await
        .is_ok();
    if !gathered {
        debug!(
            "ICE gathering still running after {:?}; answering with the candidates so far",
            cfg.gather_timeout
        );
    }
    let answer_sdp = pc
        .local_description()
        .await
        .map(|description| description.sdp)
        .ok_or_else(|| RtcError::Setup("no local description after answering".to_owned()))?;
    if !answer_sdp.contains("a=candidate:") {
        return Err(RtcError::NoCandidates(cfg.gather_timeout));
    }

    tokio::spawn(forward_states(core, state_rx, events_tx, alive_rx));
    Ok(Answered {
        answer_sdp,
        link,
        events: events_rx,
    })
}

/// Parses the offer and checks it carries a data channel, so that anything
/// unusable is refused with a clear error before sockets are opened.
fn parse_offer(offer_sdp: String) -> Result<(RTCSessionDescription, RTCDtlsRole), RtcError> {
    if offer_sdp.trim().is_empty() {
        return Err(RtcError::InvalidOffer("the offer is empty".to_owned()));
    }
    let offer = RTCSessionDescription::offer(offer_sdp)
        .map_err(|err| RtcError::InvalidOffer(err.to_string()))?;
    let parsed = offer
        .unmarshal()
        .map_err(|err| RtcError::InvalidOffer(err.to_string()))?;
    let Some(data_section) = parsed
        .media_descriptions
        .iter()
        .find(|media| media.media_name.media == "application")
    else {
        return Err(RtcError::NoDataChannel);
    };
    let setup = data_section
        .attribute("setup")
        .flatten()
        .or_else(|| parsed.attribute("setup").map(String::as_str));
    Ok((offer, answering_dtls_role(setup)))
}

/// Our DTLS role for an offer's `a=setup` value (RFC 5763 §5).
///
/// When the offerer lets us choose (`actpass`, what MidiEditor and browsers
/// send) we take the DTLS **server** role (`a=setup:passive`), against
/// webrtc-rs's default of client. The reason is a latency bug in the webrtc
/// 0.21.1 driver: packets the core produces while the driver pumps events
/// (the DTLS ClientHello after ICE connects, the SCTP INIT after DTLS
/// completes, the DCEP OPEN after SCTP connects) are not flushed until the
/// driver's next timer tick, which is 200 ms once ICE is connected. The DTLS
/// client also starts SCTP, so as client we measured offer → channel open at
/// ~430 ms on loopback. As server every packet we send answers one we received,
/// and replies are flushed at once. An offer that fixes the roles is obeyed.
fn answering_dtls_role(offer_setup: Option<&str>) -> RTCDtlsRole {
    match offer_setup.map(str::trim) {
        Some(value) if value.eq_ignore_ascii_case("passive") => RTCDtlsRole::Client,
        _ => RTCDtlsRole::Server,
    }
}

/// The UDP sockets to bind: one ephemeral port per configured address, or,
/// with none configured, per usable interface address. We enumerate
/// interfaces ourselves rather than binding a wildcard, because webrtc-rs
/// binds the bare wildcard when it finds no usable interface, and a `0.0.0.0`
/// or `::` candidate in an answer is useless to the joiner.
pub(crate) fn bind_addrs(bind_ips: &[IpAddr]) -> Result<Vec<SocketAddr>, RtcError> {
    let mut ips: Vec<IpAddr> = Vec::new();
    if bind_ips.is_empty() {
        let interfaces = ::rtc::shared::ifaces::ifaces()
            .map_err(|err| RtcError::Setup(format!("listing network interfaces: {err}")))?;
        for ip in interfaces
            .iter()
            .filter_map(|interface| interface.addr)
            .map(|a| a.ip())
        {
            if !ip.is_loopback()
                && !ip.is_unspecified()
                && !is_link_local(&ip)
                && !ips.contains(&ip)
            {
                ips.push(ip);
            }
        }
        if ips.is_empty() {
            return Err(RtcError::Setup(
                "no usable network interface (only loopback or link-local addresses); \
                 list addresses in bind_ips"
                    .to_owned(),
            ));
        }
    } else {
        for ip in bind_ips {
            if !ips.contains(ip) {
                ips.push(*ip);
            }
        }
    }
    Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect())
}

/// Link-local addresses (`169.254/16`, `fe80::/10`) make useless candidates:
/// an IPv6 one is meaningless without its scope id, which SDP cannot carry.
fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_link_local(),
        IpAddr::V6(ip) => (ip.segments()[0] & 0xffc0) == 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn we_take_the_dtls_server_role_unless_the_offerer_insists_on_it() {
        assert_eq!(answering_dtls_role(Some("actpass")), RTCDtlsRole::Server);
        assert_eq!(answering_dtls_role(None), RTCDtlsRole::Server);
        assert_eq!(answering_dtls_role(Some("active")), RTCDtlsRole::Server);
        assert_eq!(answering_dtls_role(Some("passive")), RTCDtlsRole::Client);
        assert_eq!(answering_dtls_role(Some(" PASSIVE ")), RTCDtlsRole::Client);
    }

    #[test]
    fn explicit_bind_ips_are_bound_once_each_on_ephemeral_ports() {
        let loopback = IpAddr::from([127, 0, 0, 1]);
        let addrs = bind_addrs(&[loopback, loopback]).unwrap();
        assert_eq!(addrs, vec![SocketAddr::new(loopback, 0)]);
    }

    #[test]
    fn link_local_addresses_are_recognised() {
        assert!(is_link_local(&IpAddr::from([169, 254, 1, 2])));
        assert!(is_link_local(&"fe80::1".parse().unwrap()));
        assert!(!is_link_local(&IpAddr::from([192, 168, 1, 2])));
        assert!(!is_link_local(&"2001:db8::1".parse().unwrap()));
    }
}
