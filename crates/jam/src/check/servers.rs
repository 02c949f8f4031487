//! Each STUN/TURN server on its own: a STUN Binding, or a TURN Allocate
//! with the entry's long-term credentials.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use types::{redact_entry as redact, IceServer, IceTransport};

use super::stun;
use super::{ms, Progress, ServerError, ServerKind, ServerReport, Sink, Status};

// ------------------------------------------------------------ ICE servers

/// Checks each server in parallel, each bounded by `timeout`; rows come
/// back in the order given.
pub async fn check_ice_servers(uris: &[String], timeout: Duration) -> Vec<ServerReport> {
    check_servers(uris, timeout, Arc::new(|_| {})).await
}

pub(crate) async fn check_servers(
    uris: &[String],
    timeout: Duration,
    sink: Sink,
) -> Vec<ServerReport> {
    let mut set = tokio::task::JoinSet::new();
    for (index, uri) in uris.iter().enumerate() {
        let (uri, sink) = (uri.clone(), sink.clone());
        set.spawn(async move {
            sink(Progress::ServerStarted {
                index,
                uri: redact(&uri),
            });
            let report = check_ice_server(&uri, timeout).await;
            sink(Progress::ServerFinished {
                index,
                report: report.clone(),
            });
            (index, report)
        });
    }
    let mut rows: Vec<Option<ServerReport>> = vec![None; uris.len()];
    while let Some(joined) = set.join_next().await {
        if let Ok((index, report)) = joined {
            rows[index] = Some(report);
        }
    }
    rows.into_iter()
        .enumerate()
        .map(|(index, row)| {
            row.unwrap_or_else(|| {
                failed_row(
                    &uris[index],
                    ServerKind::Unknown,
                    "",
                    0.0,
                    ServerError::Local {
                        detail: "the check task failed".to_owned(),
                    },
                )
            })
        })
        .collect()
}

/// Checks one STUN or TURN server within `timeout`: a Binding for `stun:`,
/// an Allocate with the entry's credentials for `turn:` (released at once).
pub async fn check_ice_server(uri: &str, timeout: Duration) -> ServerReport {
    let started = Instant::now();
    let deadline = started + timeout;
    let server = match IceServer::parse(uri) {
        Ok(server) => server,
        Err(e) => {
            // The error's words never repeat the entry (it may hold a
            // password); the row shows it redacted.
            return failed_row(
                uri,
                ServerKind::Unknown,
                "",
                0.0,
                ServerError::BadUrl {
                    detail: e.to_string(),
                },
            );
        }
    };
    let kind = if server.scheme().is_turn() {
        ServerKind::Turn
    } else {
        ServerKind::Stun
    };
    let transport = server.transport();
    if transport != IceTransport::Udp {
        return ServerReport {
            uri: redact(uri),
            kind,
            transport: transport.as_str().to_owned(),
            status: Status::NotChecked,
            mapped_address: None,
            relay_address: None,
            rtt_ms: None,
            duration_ms: 0.0,
            detail: format!(
                "not checked: this test speaks UDP only, and this entry uses {} (MidiEditor's libjuice also uses UDP only)",
                transport.as_str().to_ascii_uppercase()
            ),
            error: None,
            hint: None,
        };
    }
    let bounded = tokio::time::timeout_at(deadline, async {
        let addr = resolve(server.host(), server.port(), deadline).await?;
        match kind {
            ServerKind::Turn => {
                turn_allocate(addr, server.username(), server.credential(), deadline).await
            }
            _ => stun_binding(addr, deadline).await,
        }
    })
    .await;
    let duration_ms = ms(started.elapsed());
    let outcome = bounded.unwrap_or_else(|_| {
        Err(ServerError::Unreachable {
            detail: format!("no answer within {:.1} s", timeout.as_secs_f64()),
        })
    });
    match outcome {
        Ok(probe) => {
            let mut detail = match (&probe.relay, &probe.mapped) {
                (Some(relay), Some(mapped)) => format!("relay {relay} allocated; seen as {mapped}"),
                (Some(relay), None) => format!("relay {relay} allocated"),
                (None, Some(mapped)) => format!("seen as {mapped}"),
                (None, None) => "answered".to_owned(),
            };
            if let Some(lifetime) = probe.lifetime {
                detail.push_str(&format!(" (granted for {lifetime} s, released at once)"));
            }
            ServerReport {
                uri: redact(uri),
                kind,
                transport: "udp".to_owned(),
                status: Status::Passed,
                mapped_address: probe.mapped.map(|a| a.to_string()),
                relay_address: probe.relay.map(|a| a.to_string()),
                rtt_ms: Some(ms(probe.rtt)),
                duration_ms,
                detail,
                error: None,
                hint: None,
            }
        }
        Err(error) => failed_row(uri, kind, "udp", duration_ms, error),
    }
}

pub(crate) fn failed_row(
    uri: &str,
    kind: ServerKind,
    transport: &str,
    duration_ms: f64,
    error: ServerError,
) -> ServerReport {
    ServerReport {
        uri: redact(uri),
        kind,
        transport: transport.to_owned(),
        status: Status::Failed,
        mapped_address: None,
        relay_address: None,
        rtt_ms: None,
        duration_ms,
        detail: error.to_string(),
        hint: Some(error.hint()),
        error: Some(error),
    }
}

async fn resolve(host: &str, port: u16, deadline: Instant) -> Result<SocketAddr, ServerError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let lookup = tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, port))).await;
    match lookup {
        Ok(Ok(mut addrs)) => addrs.next().ok_or_else(|| ServerError::Unresolvable {
            host: host.to_owned(),
        }),
        Ok(Err(_)) => Err(ServerError::Unresolvable {
            host: host.to_owned(),
        }),
        Err(_) => Err(ServerError::Unreachable {
            detail: format!("looking up {host:?} took too long"),
        }),
    }
}

struct Probe {
    mapped: Option<SocketAddr>,
    relay: Option<SocketAddr>,
    /// The allocation's LIFETIME the server granted, in seconds.
    lifetime: Option<u32>,
    rtt: Duration,
}

fn stun_error(e: stun::StunError) -> ServerError {
    match e {
        stun::StunError::Timeout(after) => ServerError::Unreachable {
            detail: format!("no answer within {:.1} s", after.as_secs_f64()),
        },
        stun::StunError::Unreachable(detail) => ServerError::Unreachable { detail },
        stun::StunError::Malformed(detail) => ServerError::BadResponse { detail },
        stun::StunError::Socket(detail) => ServerError::Local { detail },
    }
}

async fn stun_binding(addr: SocketAddr, deadline: Instant) -> Result<Probe, ServerError> {
    let client = stun::Client::connect(addr).await.map_err(stun_error)?;
    let (response, rtt) = client
        .transact(&stun::binding_request(stun::new_txid()), deadline)
        .await
        .map_err(stun_error)?;
    match response.msg_type {
        stun::BINDING_SUCCESS => {
            let mapped = response
                .xor_address(stun::ATTR_XOR_MAPPED_ADDRESS)
                .or_else(|| response.plain_address())
                .ok_or_else(|| ServerError::BadResponse {
                    detail: "a Binding success without a mapped address".to_owned(),
                })?;
            Ok(Probe {
                mapped: Some(mapped),
                relay: None,
                lifetime: None,
                rtt,
            })
        }
        stun::BINDING_ERROR => {
            let (code, reason) = response.error_code().unwrap_or((0, String::new()));
            Err(ServerError::Refused { code, reason })
        }
        other => Err(ServerError::BadResponse {
            detail: format!("message type 0x{other:04x} in answer to a Binding request"),
        }),
    }
}

/// TURN Allocate with the long-term credential mechanism (RFC 5766 §6,
/// RFC 5389 §10.2): an unauthenticated try, the server's 401 with REALM and
/// NONCE, then a signed try. A 401 (or 441) on the signed try means the
/// credentials are wrong; a 438 (stale nonce) is retried once with the new
/// nonce. A successful allocation is released at once.
async fn turn_allocate(
    addr: SocketAddr,
    username: Option<&str>,
    password: Option<&str>,
    deadline: Instant,
) -> Result<Probe, ServerError> {
    let client = stun::Client::connect(addr).await.map_err(stun_error)?;
    let (first, first_rtt) = client
        .transact(&stun::allocate_request(stun::new_txid(), None), deadline)
        .await
        .map_err(stun_error)?;
    let challenge = match first.msg_type {
        stun::ALLOCATE_SUCCESS => {
            // A server without authentication: nothing to sign.
            return allocated(&first, first_rtt, None, &client).await;
        }
        stun::ALLOCATE_ERROR => first,
        stun::BINDING_SUCCESS | stun::BINDING_ERROR => {
            return Err(ServerError::BadResponse {
                detail: "it answers STUN but not TURN Allocate".to_owned(),
            })
        }
        other => {
            return Err(ServerError::BadResponse {
                detail: format!("message type 0x{other:04x} in answer to an Allocate"),
            })
        }
    };
    let (code, reason) = challenge.error_code().unwrap_or((0, String::new()));
    if code != 401 {
        return Err(ServerError::Refused { code, reason });
    }
    let (Some(username), Some(password)) = (username, password) else {
        return Err(ServerError::NoCredentials);
    };
    let mut realm = challenge.text(stun::ATTR_REALM).unwrap_or_default();
    let mut nonce = challenge
        .text(stun::ATTR_NONCE)
        .ok_or_else(|| ServerError::BadResponse {
            detail: "a 401 without a NONCE".to_owned(),
        })?;
    let mut stale_retried = false;
    loop {
        let auth = stun::Auth {
            username,
            realm: &realm,
            nonce: &nonce,
            key: stun::long_term_key(username, &realm, password),
        };
        let (response, rtt) = client
            .transact(
                &stun::allocate_request(stun::new_txid(), Some(&auth)),
                deadline,
            )
            .await
            .map_err(stun_error)?;
        match response.msg_type {
            stun::ALLOCATE_SUCCESS => {
                if response.integrity_ok(&auth.key) == Some(false) {
                    return Err(ServerError::BadResponse {
                        detail: "the allocation's MESSAGE-INTEGRITY does not verify with these credentials"
                            .to_owned(),
                    });
                }
                return allocated(&response, rtt, Some(&auth), &client).await;
            }
            stun::ALLOCATE_ERROR => {
                let (code, reason) = response.error_code().unwrap_or((0, String::new()));
                match code {
                    401 | 441 => return Err(ServerError::AuthFailed { code, reason }),
                    438 if !stale_retried => {
                        stale_retried = true;
                        if let Some(new_nonce) = response.text(stun::ATTR_NONCE) {
                            nonce = new_nonce;
                        }
                        if let Some(new_realm) = response.text(stun::ATTR_REALM) {
                            realm = new_realm;
                        }
                    }
                    _ => return Err(ServerError::Refused { code, reason }),
                }
            }
            other => {
                return Err(ServerError::BadResponse {
                    detail: format!("message type 0x{other:04x} in answer to an Allocate"),
                })
            }
        }
    }
}

/// Reads the addresses of an Allocate success and releases the allocation.
async fn allocated(
    response: &stun::Message,
    rtt: Duration,
    auth: Option<&stun::Auth<'_>>,
    client: &stun::Client,
) -> Result<Probe, ServerError> {
    let relay = response
        .xor_address(stun::ATTR_XOR_RELAYED_ADDRESS)
        .ok_or_else(|| ServerError::BadResponse {
            detail: "an Allocate success without a relayed address".to_owned(),
        })?;
    let mapped = response.xor_address(stun::ATTR_XOR_MAPPED_ADDRESS);
    if let Some(auth) = auth {
        client
            .send_once(&stun::release_request(stun::new_txid(), auth))
            .await;
    }
    Ok(Probe {
        mapped,
        relay: Some(relay),
        lifetime: response.lifetime(),
        rtt,
    })
}
