//! Joining up to the `midieditor` channel being open: the rendezvous
//! (health, code, offer, answer) through the one [`Client`], then the
//! connection.

use std::time::{Duration, Instant};

use types::{Code, RendezvousUrl};

use super::engine::{AnyLink, Connected, Ctx};
use super::link::{JoinLink, LinkMsg};
use super::tcp::{LanTarget, TcpJoinLink};
use super::*;
use crate::rendezvous::{Client, RendezvousError};
use crate::rtc::LinkState;

/// A fresh joinerId: a v4 UUID, 36 characters of `[0-9a-f-]`, within the
/// protocol's `^[A-Za-z0-9-]{8,64}$` (MidiEditor makes 16 characters; the
/// rendezvous accepts either).
pub(super) fn random_joiner_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Up to the `midieditor` channel being open.
pub(super) async fn connect(ctx: &Ctx) -> Result<Connected, JoinError> {
    if let Some(target) = &ctx.lan {
        return connect_lan(ctx, target).await;
    }
    let cfg = &ctx.cfg;
    let t = &cfg.timeouts;
    let url = &cfg.rendezvous_url;
    let code = match cfg.code.as_deref().map(normalise_code) {
        Some(c) if !c.is_empty() => c,
        _ => return Err(JoinError::CodeNeeded),
    };
    let Ok(code) = Code::parse(&code) else {
        return Err(JoinError::WrongCode { code });
    };

    ctx.step(JoinStep::CheckingRendezvous);
    let client = Client::new(url.clone(), t.request);
    let health = client
        .health(t.health)
        .await
        .map_err(|e| join_error(url, &code, Doing::Health, e))?;
    let long_poll = health.long_poll();

    ctx.step(JoinStep::VerifyingCode);
    let verified = client
        .verify(&code)
        .await
        .map_err(|e| join_error(url, &code, Doing::Verify, e))?;
    if !verified.display_name.is_empty() {
        let name = verified.display_name.clone();
        ctx.view.send_modify(|v| v.host_name = Some(name));
    }

    ctx.step(JoinStep::Offering);
    let mut rtc_cfg = cfg.rtc.clone();
    rtc_cfg.resolve_mdns = false;
    let (link, mut events) = JoinLink::new(
        &rtc_cfg,
        cfg.midi == MidiChannel::InOffer,
        ctx.midi.clone(),
        LINK_EVENTS,
    )
    .await
    .map_err(|e| match e {
        crate::rtc::RtcError::NoCandidates(_) => JoinError::Setup {
            detail: "no network address to connect from (no ICE candidate was gathered)".to_owned(),
        },
        other => JoinError::Setup {
            detail: other.to_string(),
        },
    })?;

    ctx.step(JoinStep::WaitingForHost);
    let joiner_id = random_joiner_id();
    let answer = exchange(&client, &code, &joiner_id, link.offer_sdp(), long_poll, t).await?;

    ctx.step(JoinStep::Connecting);
    link.accept(&answer)
        .await
        .map_err(|e| JoinError::ConnectionFailed {
            detail: format!("the host's answer is unusable ({e})"),
        })?;
    let mut state = link.state_watch();
    let opened = async {
        loop {
            tokio::select! {
                m = events.recv() => match m {
                    Some(LinkMsg::ControlOpen) => return Ok(()),
                    Some(LinkMsg::MidiOpen) => {
                        ctx.view.send_modify(|v| v.midi_open = true);
                        ctx.emit(JoinEvent::MidiOpen);
                    }
                    Some(_) => {}
                    None => return Err("the connection closed".to_owned()),
                },
                s = state.wait_for(|s| matches!(s, LinkState::Failed | LinkState::Closed)) => {
                    let _ = s;
                    return Err("the connection failed (no route between the two computers)".to_owned());
                }
            }
        }
    };
    match tokio::time::timeout(t.connect, opened).await {
        Ok(Ok(())) => {}
        Ok(Err(detail)) => return Err(JoinError::ConnectionFailed { detail }),
        Err(_) => {
            return Err(JoinError::ConnectionFailed {
                detail: format!("no connection within {} s", t.connect.as_secs()),
            })
        }
    }
    Ok(Connected {
        link: AnyLink::Rtc(link),
        events,
        session_id: verified.session_id,
    })
}

/// Up to the TCP connection to a LAN Live host being open: no rendezvous,
/// the datagram told us everything.
async fn connect_lan(ctx: &Ctx, target: &LanTarget) -> Result<Connected, JoinError> {
    ctx.step(JoinStep::Connecting);
    let (link, events) = TcpJoinLink::connect(target.addr, ctx.cfg.timeouts.connect, LINK_EVENTS)
        .await
        .map_err(|detail| JoinError::ConnectionFailed { detail })?;
    Ok(Connected {
        link: AnyLink::Tcp(link),
        events,
        session_id: target.session_id.clone(),
    })
}

/// Which request failed, for the words of [`JoinError::Rendezvous`].
#[derive(Clone, Copy)]
enum Doing {
    Health,
    Verify,
    Offer,
    Answer,
}

/// A rendezvous failure in a joiner's terms.
fn join_error(url: &RendezvousUrl, code: &Code, doing: Doing, e: RendezvousError) -> JoinError {
    use RendezvousError as R;
    let url = url.to_string();
    match e {
        R::NoSession { .. } => JoinError::WrongCode {
            code: code.to_string(),
        },
        R::TooManyTries => JoinError::TooManyTries,
        R::SessionFull { message } => JoinError::JamFull { detail: message },
        R::NotARendezvous { detail } => JoinError::NotAJam { url, detail },
        R::ProtocolTooOld { .. } | R::TooLarge { .. } => JoinError::NotAJam {
            url,
            detail: e.to_string(),
        },
        R::Status { .. } | R::Misbehaved { .. } => match doing {
            Doing::Health => JoinError::NotAJam {
                url,
                detail: e.to_string(),
            },
            Doing::Verify => JoinError::Rendezvous {
                detail: format!("checking the code got {e}"),
            },
            Doing::Offer => JoinError::Rendezvous {
                detail: format!("posting our offer got {e}"),
            },
            Doing::Answer => JoinError::Rendezvous {
                detail: format!("waiting for the host's answer got {e}"),
            },
        },
        R::ConnectionRefused { .. } => JoinError::Unreachable {
            url,
            detail: "nothing answers there (connection refused)".to_owned(),
        },
        R::TimedOut { ms } => JoinError::Unreachable {
            url,
            detail: format!("no answer within {:.1} s", ms as f64 / 1000.0),
        },
        other => JoinError::Unreachable {
            url,
            detail: other.to_string(),
        },
    }
}

/// Posts the offer and fetches the answer in parallel, as MidiEditor does.
async fn exchange(
    client: &Client,
    code: &Code,
    joiner_id: &str,
    sdp: &str,
    long_poll: bool,
    t: &JoinTimeouts,
) -> Result<String, JoinError> {
    let url = client.url();
    let post = async {
        client
            .post_offer(code, joiner_id, sdp)
            .await
            .map_err(|e| join_error(url, code, Doing::Offer, e))
    };
    let poll = poll_answer(client, code, joiner_id, long_poll);
    let deadline = tokio::time::sleep(t.answer);
    tokio::pin!(post, poll, deadline);
    let mut posted = false;
    loop {
        tokio::select! {
            r = &mut post, if !posted => {
                r?;
                posted = true;
            }
            r = &mut poll => return r,
            _ = &mut deadline => {
                return Err(JoinError::NoAnswer { secs: t.answer.as_secs() });
            }
        }
    }
}

async fn poll_answer(
    client: &Client,
    code: &Code,
    joiner_id: &str,
    long_poll: bool,
) -> Result<String, JoinError> {
    let mut polls: u32 = 0;
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !long_poll {
            tick.tick().await;
        }
        let started = Instant::now();
        let wait = long_poll.then_some(LONG_POLL);
        let url = client.url();
        if let Some(sdp) = client
            .poll_answer(code, joiner_id, wait)
            .await
            .map_err(|e| join_error(url, code, Doing::Answer, e))?
        {
            return Ok(sdp);
        }
        polls = polls.saturating_add(1);
        // A jam that ended while we wait: its code is gone.
        if long_poll || polls % REVERIFY_EVERY == 0 {
            client
                .verify(code)
                .await
                .map_err(|e| join_error(url, code, Doing::Verify, e))?;
        }
        // A long-poll answered at once (the first one races our offer, or
        // a server that does not really wait) must not spin.
        if long_poll && started.elapsed() < Duration::from_millis(100) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
